"""TemplateStore: round trips, encryption at rest, key handling, replace semantics, corruption."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import numpy as np
import pytest

from siamid.errors import NotEnrolledError, TemplateError
from siamid.store import KEY_ENV, SCHEMA_VERSION, TemplateStore, create_gallery, new_key
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
    with TemplateStore(tmp_path / "g.db", create=True) as store:
        assert len(store) == 0 and not store.encrypted
        store.put(t)
    with TemplateStore(tmp_path / "g.db") as store:  # survives reopening
        got = store.get("alice")
        assert got.subject == "alice" and got.model_id == t.model_id
        assert got.signatures.dtype == np.float32 and got.signatures.shape == (3, 8)
        np.testing.assert_array_equal(got.signatures, t.signatures)
        assert len(store) == 1 and store.subjects() == ["alice"] and "alice" in store


def test_subjects_all_delete(tmp_path):
    with TemplateStore(tmp_path / "g.db", create=True) as store:
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
    with TemplateStore(tmp_path / "g.db", create=True) as store:
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
    with TemplateStore(path, key=key, create=True) as store:
        assert store.encrypted
        store.put(t)
        np.testing.assert_array_equal(store.get("alice").signatures, t.signatures)
    raw = path.read_bytes()
    # No signature row (64 bytes) nor even one float's 4 bytes of the first row leaks.
    for row in t.signatures:
        assert row.astype("<f4").tobytes() not in raw
    assert t.signatures[0, :2].astype("<f4").tobytes() not in raw
    # A clear gallery, by contrast, does contain them (so the check above can fail).
    with TemplateStore(tmp_path / "clear.db", create=True) as store:
        store.put(t)
    assert t.signatures[0].astype("<f4").tobytes() in (tmp_path / "clear.db").read_bytes()


def test_key_from_environment(tmp_path, monkeypatch):
    key = new_key()
    monkeypatch.setenv(KEY_ENV, key.decode())
    with TemplateStore(tmp_path / "g.db", create=True) as store:
        assert store.encrypted
        store.put(_template())
    with TemplateStore(tmp_path / "g.db", key=key) as store:
        assert store.get("alice").subject == "alice"


def test_wrong_or_missing_key(tmp_path):
    path = tmp_path / "g.db"
    with TemplateStore(path, key=new_key(), create=True) as store:
        store.put(_template())
    with pytest.raises(TemplateError, match="key does not match"):
        TemplateStore(path, key=new_key())
    with pytest.raises(TemplateError, match="is encrypted"):
        TemplateStore(path)
    with pytest.raises(TemplateError, match="not a valid Fernet key"):
        TemplateStore(path, key=b"not-a-key")


def test_key_given_for_clear_gallery_is_refused(tmp_path):
    path = tmp_path / "g.db"
    TemplateStore(path, create=True).close()
    with pytest.raises(TemplateError, match="created unencrypted"):
        TemplateStore(path, key=new_key())


def test_unknown_format_version_on_read(tmp_path):
    path = tmp_path / "g.db"
    with TemplateStore(path, create=True) as store:
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
    with TemplateStore(path, key=(key := new_key()), create=True) as store:
        store.put(_template("alice", seed=0))
        store.put(_template("mallory", seed=1))
    con = sqlite3.connect(path)
    with TemplateStore(path, key=key) as store:
        lookup = store._lookup  # rows are keyed by a hash of the name, not the name
    (payload,) = con.execute(
        "SELECT payload FROM templates WHERE lookup = ?", (lookup("mallory"),)
    ).fetchone()
    con.execute("UPDATE templates SET payload = ? WHERE lookup = ?", (payload, lookup("alice")))
    con.commit()
    con.close()
    with TemplateStore(path, key=key) as store:
        with pytest.raises(TemplateError, match="belongs to 'mallory'"):
            store.get("alice")


def test_tampered_ciphertext(tmp_path):
    path = tmp_path / "g.db"
    with TemplateStore(path, key=(key := new_key()), create=True) as store:
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
    with TemplateStore(tmp_path / "g.db", create=True) as store:
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
    with TemplateStore(path, create=True) as store:
        store.put(_template(seed=0))
    # A write that fails after the old row was updated (an AFTER trigger aborts it) must roll
    # back to the old template, and surface as a TemplateError.
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TRIGGER boom AFTER UPDATE ON templates BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    con.commit()
    con.close()
    with TemplateStore(path) as store:
        with pytest.raises(TemplateError, match="disk on fire"):
            store.put(_template(seed=1), replace=True)
        np.testing.assert_array_equal(store.get("alice").signatures, _template(seed=0).signatures)


def test_missing_folder(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        TemplateStore(tmp_path / "nope" / "g.db", create=True)


# -- a gallery is created only on purpose ----------------------------------------------------------


def test_missing_gallery_is_not_created_unless_asked(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(TemplateError, match="does not exist") as info:
        TemplateStore(path)
    assert "siamid gallery new" in str(info.value) and "enroll" in str(info.value)
    assert not path.exists()
    with TemplateStore(path, create=True) as store:
        assert len(store) == 0
    assert path.exists()
    TemplateStore(path).close()  # once created it opens without create


def test_create_gallery_refuses_an_existing_file(tmp_path):
    path = tmp_path / "g.db"
    create_gallery(path).close()
    with pytest.raises(TemplateError, match="already exists"):
        create_gallery(path)


def test_empty_file_is_not_a_gallery_until_enrollment(tmp_path):
    path = tmp_path / "g.db"
    path.write_bytes(b"")
    with pytest.raises(TemplateError, match="not a siamid gallery"):
        TemplateStore(path)
    with TemplateStore(path, create=True) as store:
        store.put(_template())
    with TemplateStore(path) as store:
        assert store.subjects() == ["alice"]


# -- privacy at rest -------------------------------------------------------------------------------


@pytest.fixture
def open_umask():
    old = os.umask(0)  # the most permissive umask: files would be world-writable by default
    yield
    os.umask(old)


def test_gallery_and_journal_are_private_whatever_the_umask(tmp_path, open_umask):
    path = tmp_path / "g.db"
    with TemplateStore(path, create=True) as store:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        store.put(_template("alice"))
        # Look at the rollback journal while a write is in flight, then roll the write back.
        with pytest.raises(RuntimeError):
            with store._transaction() as cur:
                cur.execute("DELETE FROM templates")
                journal = tmp_path / "g.db-journal"
                assert stat.S_IMODE(journal.stat().st_mode) == 0o600
                raise RuntimeError("roll back")
        assert store.subjects() == ["alice"]
    key_path = tmp_path / "k.db"
    create_gallery(key_path, key=new_key()).close()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_encrypted_gallery_hides_subject_names(tmp_path):
    key = new_key()
    path = tmp_path / "g.db"
    names = ["alice-unique-name", "Zoë Ωmega"]
    with TemplateStore(path, key=key, create=True) as store:
        for i, name in enumerate(names):
            store.put(_template(name, seed=i))
        assert store.subjects() == sorted(names)
        assert names[0] in store and "nobody" not in store
        assert store.get(names[1]).subject == names[1]
    raw = path.read_bytes()
    for name in names:
        assert name.encode() not in raw
    # The same names are visible in a clear gallery, so the check above can fail.
    with TemplateStore(tmp_path / "clear.db", create=True) as store:
        store.put(_template(names[0]))
    assert names[0].encode() in (tmp_path / "clear.db").read_bytes()
    # Another key derives other lookups: nothing about the names is shared between galleries.
    with TemplateStore(path, key=key) as store:
        with pytest.raises(NotEnrolledError):
            store.get("mallory")
        store.delete(names[0])
        assert store.subjects() == [names[1]]


def test_removed_and_replaced_templates_leave_no_bytes_behind(tmp_path):
    path = tmp_path / "g.db"
    gone, old = _template("zachary-removed", seed=3), _template("bob", seed=4)
    with TemplateStore(path, create=True) as store:
        store.put(_template("alice", seed=1))
        store.put(gone)
        store.put(old)
    raw = path.read_bytes()
    assert b"zachary-removed" in raw and gone.signatures[0].astype("<f4").tobytes() in raw
    with TemplateStore(path) as store:
        store.delete("zachary-removed")
        store.put(_template("bob", seed=5), replace=True)
        assert store.subjects() == ["alice", "bob"]
    raw = path.read_bytes()
    assert b"zachary-removed" not in raw
    for row in (*gone.signatures, *old.signatures):
        assert row.astype("<f4").tobytes() not in raw


def test_listing_keeps_enrollment_and_update_times(tmp_path):
    with TemplateStore(tmp_path / "g.db", create=True) as store:
        store.put(_template("bob", seed=0, k=4))
        store.put(_template("alice", seed=1))
        (first,) = [e for e in store.entries() if e.subject == "bob"]
        store.put(_template("bob", seed=2, k=5), replace=True)
        entries = store.entries()
        assert [e.subject for e in entries] == ["alice", "bob"]
        bob = entries[1]
        assert (bob.count, bob.dim, bob.model_id) == (5, 8, "small-0123456789ab")
        assert bob.enrolled == first.enrolled and bob.updated >= first.updated
        assert store.schema_version == SCHEMA_VERSION and store.models() == ["small-0123456789ab"]
        assert store.check() == []


# -- galleries of the previous schema ----------------------------------------------------------------

_V1_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE templates (subject TEXT PRIMARY KEY, model_id TEXT NOT NULL,
    format_version INTEGER NOT NULL, count INTEGER NOT NULL, dim INTEGER NOT NULL,
    payload BLOB NOT NULL, updated REAL NOT NULL);
"""


def _write_v1_gallery(path, templates, key=None) -> None:
    """A gallery exactly as the first schema wrote it: names in the clear beside the payloads."""
    from cryptography.fernet import Fernet

    fernet = Fernet(key) if key else None
    con = sqlite3.connect(path)
    con.executescript(_V1_SCHEMA)
    meta = {"schema_version": "1", "encrypted": "1" if key else "0"}
    if fernet:
        meta["key_check"] = fernet.encrypt(b"siamid gallery key check").decode()
    con.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
    for t in templates:
        header = json.dumps({"subject": t.subject, "model_id": t.model_id}).encode()
        plain = len(header).to_bytes(4, "little") + header + t.signatures.astype("<f4").tobytes()
        con.execute("INSERT INTO templates VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (t.subject, t.model_id, 1, *t.signatures.shape,
                     fernet.encrypt(plain) if fernet else plain, 1.7e9))
    con.commit()
    con.close()


@pytest.mark.parametrize("encrypted", [False, True])
def test_previous_schema_is_migrated_on_open(tmp_path, encrypted):
    key = new_key() if encrypted else None
    path = tmp_path / "old.db"
    old = [_template("alice-old-name", seed=0), _template("bob", seed=1, k=4)]
    _write_v1_gallery(path, old, key)
    with TemplateStore(path, key=key) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.subjects() == ["alice-old-name", "bob"]
        np.testing.assert_array_equal(store.get("bob").signatures, old[1].signatures)
        assert store.entries()[0].enrolled == 1.7e9
        store.put(_template("carol", seed=2))
    with TemplateStore(path, key=key) as store:  # migrated once, reopens as the new schema
        assert len(store) == 3 and store.check() == []
    assert (b"alice-old-name" in path.read_bytes()) is not encrypted


def test_previous_schema_with_a_wrong_key_is_left_untouched(tmp_path):
    path = tmp_path / "old.db"
    _write_v1_gallery(path, [_template()], new_key())
    before = path.read_bytes()
    with pytest.raises(TemplateError, match="key does not match"):
        TemplateStore(path, key=new_key())
    assert path.read_bytes() == before


# -- crash safety: the benchmark's checker on a few kills ------------------------------------------


def _crash_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "crash_safety.py"
    spec = importlib.util.spec_from_file_location("crash_safety", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_killed_writer_leaves_only_complete_templates(tmp_path):
    bench = _crash_bench()
    result = bench.run_mode("encrypted", kills=4, cli_kills=0, seed=3, workdir=tmp_path,
                            prints=None)
    assert result["store"]["kills"] == 4 and result["store"]["failures"] == 0, result["problems"]
    assert result["store"]["templates_checked"] > 0
    # The checker itself catches a template mixing two writes (so the zero above can fail).
    path = tmp_path / "mixed.db"
    with TemplateStore(path, create=True) as store:
        sigs = bench.signatures("subject-0", 7)
        sigs[0] = bench.signatures("subject-0", 8)[0]
        store.put(Template("subject-0", f"{bench.MODEL_PREFIX}7", sigs))
    state, problems = bench.observe(path, None, {})
    assert state == {"subject-0": None} and "incomplete or mixed" in problems[0]


# -- templates of the previous format (signatures only, before adaptation) -----------------------


def _downgrade_to_format_1(path, key=None) -> None:
    """Rewrite every row as the previous template format wrote it: a header naming subject and
    model, no signature origins, format_version 1 (the schema-2 layout is unchanged)."""
    from cryptography.fernet import Fernet

    fernet = Fernet(key) if key else None
    con = sqlite3.connect(path)
    for lookup, payload in con.execute("SELECT lookup, payload FROM templates").fetchall():
        plain = fernet.decrypt(payload) if fernet else bytes(payload)
        n = int.from_bytes(plain[:4], "little")
        header = json.loads(plain[4 : 4 + n])
        old = json.dumps({"subject": header["subject"], "model_id": header["model_id"]}).encode()
        plain = len(old).to_bytes(4, "little") + old + plain[4 + n :]
        con.execute("UPDATE templates SET payload = ?, format_version = 1, updated = 1.7e9 "
                    "WHERE lookup = ?", (fernet.encrypt(plain) if fernet else plain, lookup))
    con.commit()
    con.close()


@pytest.mark.parametrize("encrypted", [False, True])
def test_previous_template_format_is_upgraded_on_open(tmp_path, encrypted):
    from siamid.store import iso_time
    from siamid.types import ENROLLED, TEMPLATE_FORMAT_VERSION, SignatureOrigin

    key = new_key() if encrypted else None
    path = tmp_path / "g.db"
    with TemplateStore(path, key=key, create=True) as store:
        store.put(_template("alice", k=3))
        store.put(_template("bob", seed=1, k=4))
    _downgrade_to_format_1(path, key)
    with TemplateStore(path, key=key) as store:
        bob = store.get("bob")
        assert bob.origins == (SignatureOrigin(ENROLLED, iso_time(1.7e9)),) * 4
        np.testing.assert_array_equal(bob.signatures, _template("bob", seed=1, k=4).signatures)
        entry = store.entries()[1]
        assert (entry.n_enrolled, entry.n_adapted, entry.newest) == (4, 0, "2023-11-14T22:13:20Z")
        assert store.check() == []
    con = sqlite3.connect(path)
    assert {v for (v,) in con.execute("SELECT format_version FROM templates")} == {
        TEMPLATE_FORMAT_VERSION}
    con.close()


def test_schema_1_galleries_reach_the_current_template_format(tmp_path):
    from siamid.types import ENROLLED

    path = tmp_path / "old.db"
    _write_v1_gallery(path, [_template("bob", seed=1, k=4)])
    with TemplateStore(path) as store:
        (entry,) = store.entries()
        assert (entry.n_enrolled, entry.n_adapted) == (4, 0)
        assert all(o.kind == ENROLLED for o in store.get("bob").origins)
