"""Template storage behind the Gallery: one SQLite file, signatures encrypted at rest.

A template's signatures are float32 bytes. With a key (a Fernet key, given or read from
``SIAMID_GALLERY_KEY``) they are encrypted and authenticated with Fernet (AES-128-CBC +
HMAC-SHA256); without one they are stored in the clear. Subject names and model ids stay
readable so a gallery can be listed without decrypting everything.

Each encrypted payload starts with a small header naming its subject and model, so a row copied
onto another subject's row is detected instead of silently verifying the wrong person.
Every write is a single SQLite transaction: a crash leaves the old template or the new one,
never half of either.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
from cryptography.fernet import Fernet, InvalidToken

from .errors import NotEnrolledError, TemplateError
from .types import TEMPLATE_FORMAT_VERSION, Template

#: Environment variable holding the gallery's Fernet key.
KEY_ENV = "SIAMID_GALLERY_KEY"
#: Version of the SQLite layout (tables and columns), distinct from the template format.
SCHEMA_VERSION = 1
# A known plaintext encrypted with the gallery key at creation: a wrong key is then reported once,
# up front, instead of as a corrupt row later.
_KEY_CHECK = b"siamid gallery key check"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    subject        TEXT PRIMARY KEY,
    model_id       TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    dim            INTEGER NOT NULL,
    payload        BLOB NOT NULL,
    updated        REAL NOT NULL
);
"""


def new_key() -> bytes:
    """A fresh random Fernet key (url-safe base64, 44 bytes) for TemplateStore or the env var."""
    return Fernet.generate_key()


class TemplateStore:
    """Templates in a SQLite file, one row per subject.

    ``key`` is a Fernet key (bytes or str); ``None`` reads ``SIAMID_GALLERY_KEY``; if that is unset
    too the signatures are stored unencrypted. A gallery remembers whether it was created
    encrypted: opening an encrypted gallery without its key, or with another key, raises
    TemplateError, and so does opening a clear one with a key (rather than silently keep writing
    signatures in the clear that the user believes encrypted).

    Safe to share between threads (one connection behind a lock). Use as a context manager or call
    ``close()`` to release the file.
    """

    def __init__(self, path: str | Path, key: bytes | str | None = None) -> None:
        self.path = Path(path)
        if key is None:
            key = os.environ.get(KEY_ENV) or None
        self._fernet = _make_fernet(key) if key is not None else None
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise TemplateError(
                f"gallery path {self.path} is a folder; give a file such as gallery.db"
            )
        if not self.path.parent.exists():
            raise TemplateError(
                f"folder {self.path.parent} for gallery {self.path.name} does not exist; "
                "create it first"
            )
        try:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE so a
            # check-then-write (put without replace) cannot race another process.
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise TemplateError(f"cannot open gallery {self.path}: {exc}") from exc
        try:
            self._init_schema()
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection; the store cannot be used afterwards."""
        self._conn.close()

    def __enter__(self) -> "TemplateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def encrypted(self) -> bool:
        """Whether this gallery's signatures are encrypted at rest."""
        return self._fernet is not None

    # -- public API ------------------------------------------------------------------------------

    def put(self, template: Template, replace: bool = False) -> None:
        """Store ``template``; an existing subject raises TemplateError unless ``replace``."""
        sigs = _check_template(template)
        payload = self._seal(template.subject, template.model_id, sigs)
        with self._transaction() as cur:
            exists = cur.execute(
                "SELECT 1 FROM templates WHERE subject = ?", (template.subject,)
            ).fetchone()
            if exists and not replace:
                raise TemplateError(
                    f"subject {template.subject!r} is already enrolled in {self.path}; "
                    "pass replace=True (--replace) to re-enroll"
                )
            cur.execute(
                "INSERT OR REPLACE INTO templates "
                "(subject, model_id, format_version, count, dim, payload, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    template.subject,
                    template.model_id,
                    template.format_version,
                    sigs.shape[0],
                    sigs.shape[1],
                    payload,
                    time.time(),
                ),
            )

    def get(self, subject: str) -> Template:
        """The template of ``subject``; NotEnrolledError if there is none."""
        rows = self._query(
            "SELECT subject, model_id, format_version, count, dim, payload FROM templates "
            "WHERE subject = ?",
            (subject,),
        )
        if not rows:
            raise NotEnrolledError(
                f"subject {subject!r} is not enrolled in {self.path}; enroll first"
            )
        return self._row_to_template(rows[0])

    def subjects(self) -> list[str]:
        """Enrolled subject names, sorted."""
        return [r[0] for r in self._query("SELECT subject FROM templates ORDER BY subject")]

    def all(self) -> list[Template]:
        """Every template, sorted by subject."""
        rows = self._query(
            "SELECT subject, model_id, format_version, count, dim, payload FROM templates "
            "ORDER BY subject"
        )
        return [self._row_to_template(r) for r in rows]

    def delete(self, subject: str) -> None:
        """Remove ``subject``'s template; NotEnrolledError if there is none."""
        with self._transaction() as cur:
            cur.execute("DELETE FROM templates WHERE subject = ?", (subject,))
            if cur.rowcount == 0:
                raise NotEnrolledError(f"subject {subject!r} is not enrolled in {self.path}")

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM templates")[0][0])

    def __contains__(self, subject: object) -> bool:
        return bool(self._query("SELECT 1 FROM templates WHERE subject = ?", (subject,)))

    # -- internals -------------------------------------------------------------------------------

    def _transaction(self) -> "_Transaction":
        return _Transaction(self)

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise _db_error(self.path, exc) from exc

    def _init_schema(self) -> None:
        with self._transaction() as cur:
            # executescript() would commit on its own, so run the statements one by one.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)
            meta = dict(cur.execute("SELECT name, value FROM meta").fetchall())
            if not meta:
                meta = {
                    "schema_version": str(SCHEMA_VERSION),
                    "encrypted": "1" if self._fernet else "0",
                }
                if self._fernet:
                    meta["key_check"] = self._fernet.encrypt(_KEY_CHECK).decode("ascii")
                cur.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", list(meta.items()))
        version = meta.get("schema_version", "?")
        if version != str(SCHEMA_VERSION):
            raise TemplateError(
                f"gallery {self.path} has schema version {version}, this siamid reads "
                f"{SCHEMA_VERSION}; upgrade siamid or re-enroll into a new gallery"
            )
        if meta.get("encrypted") == "1":
            if self._fernet is None:
                raise TemplateError(
                    f"gallery {self.path} is encrypted; give its key (set {KEY_ENV})"
                )
            try:
                ok = self._fernet.decrypt(meta.get("key_check", "").encode("ascii")) == _KEY_CHECK
            except InvalidToken:
                ok = False
            if not ok:
                raise TemplateError(
                    f"the key does not match gallery {self.path}: it was encrypted with another "
                    f"key; set {KEY_ENV} to the key it was created with"
                )
        elif self._fernet is not None:
            raise TemplateError(
                f"gallery {self.path} was created unencrypted but a key was given; unset "
                f"{KEY_ENV} to use it, or enroll into a new gallery file to encrypt templates"
            )

    def _seal(self, subject: str, model_id: str, sigs: np.ndarray) -> bytes:
        header = json.dumps({"subject": subject, "model_id": model_id}).encode("utf-8")
        plain = len(header).to_bytes(4, "little") + header + sigs.astype("<f4").tobytes()
        return self._fernet.encrypt(plain) if self._fernet else plain

    def _row_to_template(self, row: tuple) -> Template:
        subject, model_id, version, count, dim, payload = row
        if version != TEMPLATE_FORMAT_VERSION:
            raise TemplateError(
                f"template of {subject!r} in {self.path} has format version {version}, this "
                f"siamid reads {TEMPLATE_FORMAT_VERSION}; re-enroll {subject!r}"
            )
        plain = bytes(payload)
        if self._fernet is not None:
            try:
                plain = self._fernet.decrypt(plain)
            except InvalidToken as exc:
                raise TemplateError(
                    f"template of {subject!r} in {self.path} fails authentication (corrupt or "
                    f"tampered with); delete and re-enroll {subject!r}"
                ) from exc
        try:
            n = int.from_bytes(plain[:4], "little")
            header = json.loads(plain[4 : 4 + n].decode("utf-8"))
            body = plain[4 + n :]
            sigs = np.frombuffer(body, dtype="<f4").astype(np.float32).reshape(count, dim)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TemplateError(
                f"template of {subject!r} in {self.path} is malformed ({exc}); delete and re-enroll"
            ) from exc
        if header.get("subject") != subject or header.get("model_id") != model_id:
            raise TemplateError(
                f"template stored under {subject!r} in {self.path} belongs to "
                f"{header.get('subject')!r} (tampered with?); delete and re-enroll {subject!r}"
            )
        return Template(subject=subject, model_id=model_id, signatures=sigs, format_version=version)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception), under the store lock."""

    def __init__(self, store: TemplateStore) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Cursor:
        self._store._lock.acquire()
        try:
            self._cur = self._store._conn.cursor()
            self._cur.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            self._store._lock.release()
            raise _db_error(self._store.path, exc) from exc
        except BaseException:
            self._store._lock.release()
            raise
        return self._cur

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        try:
            if kind is None:
                try:
                    self._cur.execute("COMMIT")
                except sqlite3.DatabaseError as err:
                    self._cur.execute("ROLLBACK")
                    raise _db_error(self._store.path, err) from err
                return False
            try:
                self._cur.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error matters more than a failed rollback
            if isinstance(exc, sqlite3.DatabaseError):
                raise _db_error(self._store.path, exc) from exc
            return False
        finally:
            self._store._lock.release()


def _db_error(path: Path, exc: sqlite3.Error) -> TemplateError:
    """A SQLite error as a TemplateError that says what to do about it."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        advice = "another process holds it; try again"
    elif "readonly" in lowered or "read-only" in lowered:
        advice = "check the file's permissions"
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return TemplateError(
            f"gallery {path} cannot be read as a siamid gallery ({text}); restore it from a "
            "backup or enroll into a new file"
        )
    else:
        advice = "nothing was written; check the disk and the file"
    return TemplateError(f"gallery {path}: database error ({text}); {advice}")


def _make_fernet(key: bytes | str) -> Fernet:
    try:
        return Fernet(key.encode("ascii") if isinstance(key, str) else key)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        # The key itself is a secret: name where it came from, never its value.
        raise TemplateError(
            f"the gallery key (argument or {KEY_ENV}) is not a valid Fernet key (32 url-safe "
            "base64-encoded bytes); make one with `siamid.store.new_key()`"
        ) from exc


def _check_template(template: Template) -> np.ndarray:
    if not isinstance(template.subject, str) or not template.subject.strip():
        raise TemplateError(
            f"template subject must be a non-empty string, got {template.subject!r}"
        )
    if not template.model_id:
        raise TemplateError(f"template of {template.subject!r} has no model_id")
    if template.format_version != TEMPLATE_FORMAT_VERSION:
        raise TemplateError(
            f"template of {template.subject!r} has format version {template.format_version}, "
            f"this siamid writes {TEMPLATE_FORMAT_VERSION}"
        )
    sigs = np.asarray(template.signatures)
    if sigs.ndim != 2 or sigs.shape[0] < 1 or sigs.shape[1] < 1:
        raise TemplateError(
            f"template of {template.subject!r}: signatures must be (k, D) with k >= 1, got "
            f"shape {sigs.shape}"
        )
    sigs = sigs.astype(np.float32)
    if not np.all(np.isfinite(sigs)):
        raise TemplateError(f"template of {template.subject!r} has non-finite signature values")
    return sigs
