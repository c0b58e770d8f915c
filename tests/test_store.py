"""TemplateStore: round trips, encryption at rest, key handling, replace semantics, corruption."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from siamid.errors import NotEnrolledError, TemplateError
from siamid.store import KEY_ENV, TemplateStore, new_key
from siamid.types import Template


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    # A key in the developer's environment must not change what these tests exercise.
    monkeypatch.delenv(KEY_ENV, raising=False)


def _template(subject: str = "alice", seed: int = 0, k: int = 3, d: int = 8) -> Template:
    rng = np.random.default_rng(seed)
    sigs = rng.normal(size=(k, d)).astype(np.float32)
    sigs /= np.linalg.norm(sigs, axis=1, keepdims=True)
    return Template(subject=subject, model_id="small-0123456789ab", signatures=sigs)


def test_round_trip_unencrypted(tmp_path):
    t = _template()
    with TemplateStore(tmp_path / "g.db") as store:
        assert len(store) == 0 and not store.encrypted
        store.put(t)
    with TemplateStore(tmp_path / "g.db") as store:  # survives reopening
        got = store.get("alice")
        assert got.subject == "alice" and got.model_id == t.model_id
        assert got.signatures.dtype == np.float32 and got.signatures.shape == (3, 8)
        np.testing.assert_array_equal(got.signatures, t.signatures)
        assert len(store) == 1 and store.subjects() == ["alice"] and "alice" in store


def test_subjects_all_delete(tmp_path):
    with TemplateStore(tmp_path / "g.db") as store:
        for i, name in enumerate(["carol", "alice", "bob"]):
            store.put(_template(name, seed=i))
        assert store.subjects() == ["alice", "bob", "carol"]
        assert [t.subject for t in store.all()] == ["alice", "bob", "carol"]
        np.testing.assert_array_equal(store.all()[1].signatures, _template("bob", seed=2).signatures)
        store.delete("bob")
        assert store.subjects() == ["alice", "carol"] and len(store) == 2
        with pytest.raises(NotEnrolledError, match="bob"):
            store.delete("bob")
        with pytest.raises(NotEnrolledError, match="bob"):
            store.get("bob")


def test_replace_semantics(tmp_path):
    with TemplateStore(tmp_path / "g.db") as store:
        store.put(_template(seed=0))
        with pytest.raises(TemplateError, match="already enrolled"):
            store.put(_template(seed=1))
        # The refused put left the first template untouched.
        np.testing.assert_array_equal(store.get("alice").signatures, _template(seed=0).signatures)
        store.put(_template(seed=1, k=5), replace=True)
        assert store.get("alice").signatures.shape == (5, 8)
        np.testing.assert_array_equal(store.get("alice").signatures, _template(seed=1, k=5).signatures)
        assert len(store) == 1


def test_encrypted_at_rest(tmp_path):
    key = new_key()
    t = _template(d=16)
    path = tmp_path / "g.db"
    with TemplateStore(path, key=key) as store:
        assert store.encrypted
        store.put(t)
        np.testing.assert_array_equal(store.get("alice").signatures, t.signatures)
    raw = path.read_bytes()
    # No signature row (64 bytes) nor even one float's 4 bytes of the first row leaks.
    for row in t.signatures:
        assert row.astype("<f4").tobytes() not in raw
    assert t.signatures[0, :2].astype("<f4").tobytes() not in raw
    # A clear gallery, by contrast, does contain them (so the check above can fail).
    with TemplateStore(tmp_path / "clear.db") as store:
        store.put(t)
    assert t.signatures[0].astype("<f4").tobytes() in (tmp_path / "clear.db").read_bytes()


def test_key_from_environment(tmp_path, monkeypatch):
    key = new_key()
    monkeypatch.setenv(KEY_ENV, key.decode())
    with TemplateStore(tmp_path / "g.db") as store:
        assert store.encrypted
        store.put(_template())
    with TemplateStore(tmp_path / "g.db", key=key) as store:
        assert store.get("alice").subject == "alice"


def test_wrong_or_missing_key(tmp_path):
    path = tmp_path / "g.db"
    with TemplateStore(path, key=new_key()) as store:
        store.put(_template())
    with pytest.raises(TemplateError, match="key does not match"):
        TemplateStore(path, key=new_key())
    with pytest.raises(TemplateError, match="is encrypted"):
        TemplateStore(path)
    with pytest.raises(TemplateError, match="not a valid Fernet key"):
        TemplateStore(path, key=b"not-a-key")


def test_key_given_for_clear_gallery_is_refused(tmp_path):
    path = tmp_path / "g.db"
    TemplateStore(path).close()
    with pytest.raises(TemplateError, match="created unencrypted"):
        TemplateStore(path, key=new_key())


def test_unknown_format_version_on_read(tmp_path):
    path = tmp_path / "g.db"
    with TemplateStore(path) as store:
        store.put(_template())
    con = sqlite3.connect(path)
    con.execute("UPDATE templates SET format_version = 99")
    con.commit()
    con.close()
    with TemplateStore(path) as store:
        with pytest.raises(TemplateError, match="format version 99"):
            store.get("alice")


def test_swapped_rows_are_detected(tmp_path):
    path = tmp_path / "g.db"
    with TemplateStore(path, key=(key := new_key())) as store:
        store.put(_template("alice", seed=0))
        store.put(_template("mallory", seed=1))
    con = sqlite3.connect(path)
    (payload,) = con.execute("SELECT payload FROM templates WHERE subject='mallory'").fetchone()
    con.execute("UPDATE templates SET payload = ? WHERE subject = 'alice'", (payload,))
    con.commit()
    con.close()
    with TemplateStore(path, key=key) as store:
        with pytest.raises(TemplateError, match="belongs to 'mallory'"):
            store.get("alice")


def test_tampered_ciphertext(tmp_path):
    path = tmp_path / "g.db"
    with TemplateStore(path, key=(key := new_key())) as store:
        store.put(_template())
    con = sqlite3.connect(path)
    (payload,) = con.execute("SELECT payload FROM templates").fetchone()
    bad = bytearray(payload)
    bad[40] ^= 0x01
    con.execute("UPDATE templates SET payload = ?", (bytes(bad),))
    con.commit()
    con.close()
    with TemplateStore(path, key=key) as store:
        with pytest.raises(TemplateError, match="fails authentication"):
            store.get("alice")


def test_corrupt_database(tmp_path):
    path = tmp_path / "g.db"
    path.write_bytes(b"this is not a sqlite database at all" * 200)
    with pytest.raises(TemplateError, match="cannot be read"):
        TemplateStore(path)


def test_invalid_templates_are_refused(tmp_path):
    with TemplateStore(tmp_path / "g.db") as store:
        with pytest.raises(TemplateError, match="shape"):
            store.put(Template("a", "m", np.zeros(8, np.float32)))
        with pytest.raises(TemplateError, match="non-finite"):
            store.put(Template("a", "m", np.full((1, 4), np.nan, np.float32)))
        with pytest.raises(TemplateError, match="non-empty"):
            store.put(Template(" ", "m", np.zeros((1, 4), np.float32)))
        with pytest.raises(TemplateError, match="format version 7"):
            store.put(Template("a", "m", np.zeros((1, 4), np.float32), format_version=7))
        assert len(store) == 0


def test_failed_write_leaves_old_template(tmp_path):
    path = tmp_path / "g.db"
    with TemplateStore(path) as store:
        store.put(_template(seed=0))
    # A write that fails after the old row was replaced (an AFTER trigger aborts it) must roll
    # back to the old template, and surface as a TemplateError.
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TRIGGER boom AFTER INSERT ON templates BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    con.commit()
    con.close()
    with TemplateStore(path) as store:
        with pytest.raises(TemplateError, match="disk on fire"):
            store.put(_template(seed=1), replace=True)
        np.testing.assert_array_equal(store.get("alice").signatures, _template(seed=0).signatures)


def test_missing_folder(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        TemplateStore(tmp_path / "nope" / "g.db")
