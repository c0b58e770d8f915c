"""Template storage behind the Gallery: one private SQLite file, encrypted at rest with a key.

A template's signatures are float32 bytes. With a key (a Fernet key, given or read from
``SIAMID_GALLERY_KEY``) each template is encrypted and authenticated with Fernet (AES-128-CBC +
HMAC-SHA256), its subject's name included: the indexed column holds only a keyed hash of the
name (HMAC-SHA256 under a key derived from the gallery key), so the file alone does not say who
is enrolled. Without a key everything is stored in the clear and the column holds the name.

Each payload starts with a small header naming its subject and model, so a row copied onto
another subject's row is detected instead of silently verifying the wrong person. Since template
format 2 the header also carries each signature's origin (enrolled or adapted, when it was
added, the distance an adapted one was accepted at), encrypted with the rest; templates of
format 1 are rewritten as format 2 when the gallery is opened with its key (their signatures are
enrollment signatures, added when the row was last written).

The file is created with mode 0600 whatever the umask (SQLite gives its journal the same mode),
only when asked (``create=True``): a mistyped path never turns into an empty gallery that
rejects everyone. ``secure_delete`` is on, so a removed or replaced template is overwritten with
zeros in the file rather than left recoverable in free space. Every write is one SQLite
transaction: a crash leaves the old template or the new one, never half of either.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import NotEnrolledError, TemplateError
from .types import ADAPTED, ENROLLED, TEMPLATE_FORMAT_VERSION, SignatureOrigin, Template

#: Environment variable holding the gallery's Fernet key.
KEY_ENV = "SIAMID_GALLERY_KEY"
#: Version of the SQLite layout (tables and columns), distinct from the template format.
#: 1: subject names in the clear; 2: keyed name lookups, enrollment times, secure delete.
SCHEMA_VERSION = 2
#: Permissions of a gallery file (and, through SQLite, of its journal): the owner only.
FILE_MODE = 0o600
# A known plaintext encrypted with the gallery key at creation: a wrong key is then reported once,
# up front, instead of as a corrupt row later.
_KEY_CHECK = b"siamid gallery key check"
# HKDF context of the name-lookup key: never the encryption key itself, so the lookups reveal
# nothing about it, and a change of scheme gets a new label.
_LOOKUP_INFO = b"siamid gallery subject lookup v1"

_META_TABLE = "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
# ``lookup`` is the subject's name in a clear gallery, its keyed hash in an encrypted one.
_TEMPLATES_TABLE = """CREATE TABLE {name} (
    lookup         TEXT PRIMARY KEY,
    model_id       TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    dim            INTEGER NOT NULL,
    payload        BLOB NOT NULL,
    enrolled       REAL NOT NULL,
    updated        REAL NOT NULL
)"""
_COLUMNS = "lookup, model_id, format_version, count, dim, payload, enrolled, updated"


def new_key() -> bytes:
    """A fresh random Fernet key (url-safe base64, 44 bytes) for TemplateStore or the env var."""
    return Fernet.generate_key()


def write_key_file(path: str | Path) -> bytes:
    """Write a fresh key to a new file readable by its owner only; the key.

    TemplateError if the file exists: overwriting a key would lose every gallery it encrypts.
    """
    path = Path(path)
    if path.is_dir() or not path.parent.is_dir():
        raise TemplateError(f"cannot write a key to {path}: give a file in an existing folder")
    key = new_key()
    if not _create_private_file(path, key + b"\n"):
        raise TemplateError(
            f"{path} already exists; not overwriting it (a lost key loses every gallery it "
            "encrypts): choose another file name"
        )
    return key


def missing_gallery_message(path: Path) -> str:
    """What to say when a gallery file does not exist: how to create one."""
    return (
        f"gallery {path} does not exist; create it by enrolling someone into it "
        f"(`siamid enroll NAME IMAGES... --gallery {path}`) or with `siamid gallery new {path}`, "
        "or give the path of an existing gallery"
    )


@dataclass(frozen=True)
class TemplateEntry:
    """What a listing shows of one stored template (its signatures stay in the store).

    ``count`` signatures of ``dim`` values made by ``model_id``; ``enrolled`` and ``updated`` are
    Unix times of the first enrollment and of the last write (a replacement or an adaptation).
    ``n_enrolled`` and ``n_adapted`` count the signatures by origin; ``newest`` is when the
    newest of them was added (ISO 8601 UTC; None if no date is known); ``poses`` are the poses
    the enrollment recorded, in order (empty if none was).
    """

    subject: str
    model_id: str
    count: int
    dim: int
    enrolled: float
    updated: float
    n_enrolled: int = 0
    n_adapted: int = 0
    newest: str | None = None
    poses: tuple[str, ...] = ()


def create_gallery(path: str | Path, key: bytes | str | None = None) -> "TemplateStore":
    """A new, empty gallery at ``path``; TemplateError if a file is already there."""
    path = Path(path)
    _check_location(path)
    if not _create_private_file(path):
        raise TemplateError(
            f"gallery {path} already exists; choose another file name, or remove it with "
            "`siamid gallery remove` (one subject) or by deleting the file (everyone)"
        )
    return TemplateStore(path, key=key, create=True)


class TemplateStore:
    """Templates in a SQLite file, one row per subject.

    ``key`` is a Fernet key (bytes or str); ``None`` reads ``SIAMID_GALLERY_KEY``; if that is unset
    too the gallery is stored unencrypted. A gallery remembers whether it was created
    encrypted: opening an encrypted gallery without its key, or with another key, raises
    TemplateError, and so does opening a clear one with a key (rather than silently keep writing
    signatures in the clear that the user believes encrypted).

    ``create``: make the file if it does not exist (enrollment and an explicit "new gallery" do
    this; everything else must find an existing gallery). A gallery of the previous schema is
    migrated in one transaction when it is opened with the right key.

    Safe to share between threads (one connection behind a lock). Use as a context manager or call
    ``close()`` to release the file.
    """

    def __init__(
        self, path: str | Path, key: bytes | str | None = None, create: bool = False
    ) -> None:
        self.path = Path(path)
        if key is None:
            key = os.environ.get(KEY_ENV) or None
        self._fernet = _make_fernet(key) if key is not None else None
        self._lookup_key = _lookup_key(key) if key is not None else None
        self._lock = threading.Lock()
        _check_location(self.path)
        if not self.path.exists():
            if not create:
                raise TemplateError(missing_gallery_message(self.path))
            _create_private_file(self.path)
        try:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE so a
            # check-then-write (put without replace) cannot race another process.
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise TemplateError(f"cannot open gallery {self.path}: {exc}") from exc
        try:
            self._enable_secure_delete()
            self.schema_version = self._init_schema(create)
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
        """Whether this gallery's templates and names are encrypted at rest."""
        return self._fernet is not None

    # -- public API ------------------------------------------------------------------------------

    def put(self, template: Template, replace: bool = False) -> None:
        """Store ``template``; an existing subject raises TemplateError unless ``replace``.

        A replaced template keeps its first enrollment time; its old bytes are zeroed.
        """
        sigs = _check_template(template)
        payload = self._seal(template.subject, template.model_id, sigs, template.origins)
        lookup = self._lookup(template.subject)
        now = time.time()
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT enrolled FROM templates WHERE lookup = ?", (lookup,)
            ).fetchone()
            if row and not replace:
                raise TemplateError(
                    f"subject {template.subject!r} is already enrolled in {self.path}; "
                    "pass replace=True (--replace) to re-enroll"
                )
            values = (template.model_id, template.format_version, *sigs.shape, payload)
            if row:
                cur.execute(
                    "UPDATE templates SET model_id = ?, format_version = ?, count = ?, dim = ?, "
                    "payload = ?, updated = ? WHERE lookup = ?",
                    (*values, now, lookup),
                )
            else:
                cur.execute(
                    f"INSERT INTO templates ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (lookup, *values, now, now),
                )

    def replace_if_unchanged(self, old: Template, new: Template) -> bool:
        """Store ``new`` in place of ``old`` only if the stored template is still exactly
        ``old`` (same signatures and origins); False, writing nothing, if it changed or was
        removed meanwhile (a re-enrollment or another adaptation won the race). One
        transaction: an adaptation never overwrites a template it was not decided on."""
        if new.subject != old.subject:
            raise TemplateError(f"cannot replace the template of {old.subject!r} with one of "
                                f"{new.subject!r}")
        sigs = _check_template(new)
        payload = self._seal(new.subject, new.model_id, sigs, new.origins)
        lookup = self._lookup(new.subject)
        with self._transaction() as cur:
            row = cur.execute(f"SELECT {_COLUMNS} FROM templates WHERE lookup = ?",
                              (lookup,)).fetchone()
            if row is None:
                return False
            current = self._open_row(row)[0]
            if (current.model_id != old.model_id or current.origins != old.origins
                    or not np.array_equal(current.signatures, np.asarray(old.signatures,
                                                                         np.float32))):
                return False
            cur.execute(
                "UPDATE templates SET model_id = ?, format_version = ?, count = ?, dim = ?, "
                "payload = ?, updated = ? WHERE lookup = ?",
                (new.model_id, new.format_version, *sigs.shape, payload, time.time(), lookup),
            )
        return True

    def get(self, subject: str) -> Template:
        """The template of ``subject``; NotEnrolledError if there is none."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM templates WHERE lookup = ?", (self._lookup(subject),)
        )
        if not rows:
            raise NotEnrolledError(
                f"subject {subject!r} is not enrolled in {self.path}; enroll first "
                f"(`siamid gallery list --gallery {self.path}` shows who is)"
            )
        return self._open_row(rows[0])[0]

    def subjects(self) -> list[str]:
        """Enrolled subject names, sorted (decrypted: an encrypted gallery stores no names)."""
        return [entry.subject for entry in self.entries()]

    def all(self) -> list[Template]:
        """Every template, sorted by subject."""
        opened = [self._open_row(row) for row in self._query(f"SELECT {_COLUMNS} FROM templates")]
        return [template for template, _ in sorted(opened, key=lambda o: o[0].subject)]

    def entries(self) -> list[TemplateEntry]:
        """What a listing shows of every template, sorted by subject."""
        return sorted(
            (entry for _, entry in map(self._open_row,
                                       self._query(f"SELECT {_COLUMNS} FROM templates"))),
            key=lambda e: e.subject,
        )

    def models(self) -> list[str]:
        """The model ids of the stored templates, sorted."""
        return [r[0] for r in self._query("SELECT DISTINCT model_id FROM templates ORDER BY 1")]

    def delete(self, subject: str) -> None:
        """Remove ``subject``'s template (its bytes are zeroed); NotEnrolledError if none."""
        with self._transaction() as cur:
            cur.execute("DELETE FROM templates WHERE lookup = ?", (self._lookup(subject),))
            if cur.rowcount == 0:
                raise NotEnrolledError(
                    f"subject {subject!r} is not enrolled in {self.path}; nothing was removed "
                    f"(`siamid gallery list --gallery {self.path}` shows who is enrolled)"
                )

    def check(self) -> list[str]:
        """Problems found reading the whole gallery (empty if none): SQLite's integrity check,
        then every template opened (decrypted, authenticated, shape and header checked)."""
        problems = [r[0] for r in self._query("PRAGMA integrity_check") if r[0] != "ok"]
        for row in self._query(f"SELECT {_COLUMNS} FROM templates"):
            try:
                self._open_row(row)
            except TemplateError as exc:
                problems.append(str(exc))
        return problems

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM templates")[0][0])

    def __contains__(self, subject: object) -> bool:
        if not isinstance(subject, str):
            return False
        return bool(
            self._query("SELECT 1 FROM templates WHERE lookup = ?", (self._lookup(subject),))
        )

    # -- internals -------------------------------------------------------------------------------

    def _transaction(self) -> "_Transaction":
        return _Transaction(self)

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise _db_error(self.path, exc) from exc

    def _lookup(self, subject: str) -> str:
        """The indexed value of ``subject``: its name, or with a key its keyed hash."""
        if self._lookup_key is None:
            return subject
        return hmac.new(self._lookup_key, subject.encode("utf-8"), hashlib.sha256).hexdigest()

    def _enable_secure_delete(self) -> None:
        try:
            (on,) = self._conn.execute("PRAGMA secure_delete = ON").fetchone()
        except sqlite3.DatabaseError as exc:
            raise _db_error(self.path, exc) from exc
        if on != 1:  # a SQLite built to ignore it would leave removed templates in free pages
            raise TemplateError(
                f"this SQLite ({sqlite3.sqlite_version}) ignores secure_delete, so removed "
                f"templates would stay recoverable in {self.path}; use a Python whose SQLite "
                "honours it"
            )

    def _init_schema(self, create: bool) -> int:
        """Create, check or migrate the tables; the schema version now in the file."""
        with self._transaction() as cur:
            tables = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                if not create:
                    raise TemplateError(
                        f"{self.path} is an empty file, not a siamid gallery; enroll someone "
                        "into it to make it one, or give the path of an existing gallery"
                    )
                self._create_tables(cur)
            elif "meta" not in tables or "templates" not in tables:
                raise TemplateError(
                    f"{self.path} is a SQLite database but not a siamid gallery (tables "
                    f"{sorted(tables)}); give the path of a gallery or a new file name"
                )
            meta = dict(cur.execute("SELECT name, value FROM meta").fetchall())
            self._check_key(meta)
            version = meta.get("schema_version", "?")
            if version == "1":
                self._migrate_from_1(cur)
                version = str(SCHEMA_VERSION)
            if version == str(SCHEMA_VERSION):
                self._upgrade_templates(cur)
        if version != str(SCHEMA_VERSION):
            raise TemplateError(
                f"gallery {self.path} has schema version {version}, this siamid reads "
                f"{SCHEMA_VERSION}; upgrade siamid or re-enroll into a new gallery"
            )
        return SCHEMA_VERSION

    def _create_tables(self, cur: sqlite3.Cursor) -> None:
        cur.execute(_META_TABLE)
        cur.execute(_TEMPLATES_TABLE.format(name="templates"))
        meta = {"schema_version": str(SCHEMA_VERSION), "encrypted": "1" if self._fernet else "0"}
        if self._fernet:
            meta["key_check"] = self._fernet.encrypt(_KEY_CHECK).decode("ascii")
        cur.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", list(meta.items()))

    def _check_key(self, meta: dict[str, str]) -> None:
        if meta.get("encrypted") == "1":
            if self._fernet is None:
                raise TemplateError(
                    f"gallery {self.path} is encrypted; give its key (set {KEY_ENV} or pass "
                    "--key-file)"
                )
            try:
                ok = self._fernet.decrypt(meta.get("key_check", "").encode("ascii")) == _KEY_CHECK
            except InvalidToken:
                ok = False
            if not ok:
                raise TemplateError(
                    f"the key does not match gallery {self.path}: it was encrypted with another "
                    f"key; give the key it was created with ({KEY_ENV} or --key-file)"
                )
        elif self._fernet is not None:
            raise TemplateError(
                f"gallery {self.path} was created unencrypted but a key was given; unset "
                f"{KEY_ENV} (or drop --key-file) to use it, or enroll into a new gallery file "
                "to encrypt templates"
            )

    def _migrate_from_1(self, cur: sqlite3.Cursor) -> None:
        """Schema 1 -> 2 inside the caller's transaction: names become lookups, the first
        enrollment time is taken to be the last update, and the old table's pages (names in the
        clear) are zeroed as it is dropped. The payload format did not change."""
        rows = cur.execute(
            "SELECT subject, model_id, format_version, count, dim, payload, updated FROM templates"
        ).fetchall()
        cur.execute(_TEMPLATES_TABLE.format(name="templates_new"))
        cur.executemany(
            f"INSERT INTO templates_new ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(self._lookup(s), m, v, c, d, p, u, u) for s, m, v, c, d, p, u in rows],
        )
        cur.execute("DROP TABLE templates")
        cur.execute("ALTER TABLE templates_new RENAME TO templates")
        cur.execute(
            "UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),)
        )
        try:  # galleries of schema 1 were created with the umask's mode
            os.chmod(self.path, FILE_MODE)
        except OSError:
            pass  # not the owner: the data is still migrated; the owner can tighten it

    def _upgrade_templates(self, cur: sqlite3.Cursor) -> None:
        """Rewrite templates of an older format as the current one, inside the caller's
        transaction: format 1 stored signatures only, all of them enrollment signatures, whose
        date is the row's last write (before adaptation a row was only ever written whole).
        A row that cannot be opened is left as it is, to report its own error when read."""
        rows = cur.execute(f"SELECT {_COLUMNS} FROM templates WHERE format_version < ?",
                           (TEMPLATE_FORMAT_VERSION,)).fetchall()
        for row in rows:
            try:
                template = self._open_row(row)[0]
            except TemplateError:
                continue
            sigs = np.asarray(template.signatures, np.float32)
            cur.execute(
                "UPDATE templates SET format_version = ?, payload = ? WHERE lookup = ?",
                (TEMPLATE_FORMAT_VERSION,
                 self._seal(template.subject, template.model_id, sigs, template.origins),
                 row[0]),
            )

    def _seal(self, subject: str, model_id: str, sigs: np.ndarray,
              origins: tuple[SignatureOrigin, ...]) -> bytes:
        header = json.dumps({"subject": subject, "model_id": model_id,
                             "origins": [o.to_dict() for o in origins]}).encode("utf-8")
        plain = len(header).to_bytes(4, "little") + header + sigs.astype("<f4").tobytes()
        return self._fernet.encrypt(plain) if self._fernet else plain

    def _open_row(self, row: tuple) -> tuple[Template, TemplateEntry]:
        """A stored row -> its template and listing entry; TemplateError if it cannot be trusted."""
        lookup, model_id, version, count, dim, payload, enrolled, updated = row
        # In an encrypted gallery the row names nobody until its payload is decrypted.
        where = f"template of {lookup!r}" if self._lookup_key is None else "a template"
        plain = bytes(payload)
        if self._fernet is not None:
            try:
                plain = self._fernet.decrypt(plain)
            except InvalidToken as exc:
                raise TemplateError(
                    f"{where} in {self.path} fails authentication (corrupt or tampered with); "
                    "remove it (`siamid gallery list` shows which subjects still open) and "
                    "re-enroll"
                ) from exc
        try:
            n = int.from_bytes(plain[:4], "little")
            header = json.loads(plain[4 : 4 + n].decode("utf-8"))
            subject = header["subject"]
            sigs = np.frombuffer(plain[4 + n :], dtype="<f4").astype(np.float32).reshape(count, dim)
            if version == 1:  # signatures only: enrolled, when the row was last written
                origins = (SignatureOrigin(ENROLLED, iso_time(updated)),) * count
            else:
                origins = tuple(SignatureOrigin.from_dict(o) for o in header["origins"])
                if len(origins) != count:
                    raise ValueError(f"{len(origins)} origins for {count} signatures")
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise TemplateError(
                f"{where} in {self.path} is malformed ({exc}); delete and re-enroll"
            ) from exc
        if not isinstance(subject, str) or self._lookup(subject) != lookup or (
            header.get("model_id") != model_id
        ):
            raise TemplateError(
                f"{where} in {self.path} belongs to {subject!r}, not to the subject it is "
                "stored under (tampered with?); delete and re-enroll both"
            )
        if version not in (1, TEMPLATE_FORMAT_VERSION):
            raise TemplateError(
                f"template of {subject!r} in {self.path} has format version {version}, this "
                f"siamid reads 1 to {TEMPLATE_FORMAT_VERSION}; upgrade siamid or re-enroll "
                f"{subject!r}"
            )
        template = Template(subject=subject, model_id=model_id, signatures=sigs,
                            origins=origins)
        return template, TemplateEntry(subject, model_id, count, dim, enrolled, updated,
                                       template.n_enrolled, template.n_adapted, template.newest,
                                       tuple(o.pose for o in origins if o.pose is not None))


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


def _check_location(path: Path) -> None:
    if path.is_dir():
        raise TemplateError(f"gallery path {path} is a folder; give a file such as gallery.db")
    if not path.parent.exists():
        raise TemplateError(
            f"folder {path.parent} for gallery {path.name} does not exist; create it first"
        )


def _create_private_file(path: Path, content: bytes = b"") -> bool:
    """Create ``path`` holding ``content`` with mode FILE_MODE; False if it already exists.

    O_EXCL makes creation atomic; chmod afterwards because the umask may have removed bits
    from the mode asked for (a umask of 0277 would leave a file its owner cannot write).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    except OSError as exc:
        raise TemplateError(f"cannot create {path}: {exc.strerror}; check the folder's "
                            "permissions and free space") from exc
    try:
        os.chmod(path, FILE_MODE)
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _lookup_key(key: bytes | str) -> bytes:
    """The key of the subject-name lookups, derived from (never equal to) the gallery key."""
    raw = base64.urlsafe_b64decode(key.encode("ascii") if isinstance(key, str) else key)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LOOKUP_INFO).derive(raw)


def _make_fernet(key: bytes | str) -> Fernet:
    try:
        return Fernet(key.encode("ascii") if isinstance(key, str) else key)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        # The key itself is a secret: name where it came from, never its value.
        raise TemplateError(
            f"the gallery key (argument or {KEY_ENV}) is not a valid Fernet key (32 url-safe "
            "base64-encoded bytes); make one with `siamid gallery new-key`"
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
    _check_origins(template, len(sigs))
    return sigs


def _check_origins(template: Template, count: int) -> None:
    """TemplateError unless ``template.origins`` describe its ``count`` rows: one per row,
    enrolled rows first, at least one of them, dates as text, finite distances."""
    origins = template.origins
    where = f"template of {template.subject!r}"
    if len(origins) != count:
        raise TemplateError(f"{where} has {len(origins)} signature origins for {count} signatures")
    kinds = [o.kind for o in origins]
    if any(k not in (ENROLLED, ADAPTED) for k in kinds):
        raise TemplateError(f"{where}: a signature's origin must be {ENROLLED!r} or "
                            f"{ADAPTED!r}, got {sorted(set(kinds) - {ENROLLED, ADAPTED})}")
    if ENROLLED not in kinds or kinds != sorted(kinds, key=lambda k: k != ENROLLED):
        raise TemplateError(f"{where} needs its enrollment signatures first and at least one "
                            "of them")
    for o in origins:
        if o.added is not None and not isinstance(o.added, str):
            raise TemplateError(f"{where}: a signature's date must be ISO 8601 text")
        if o.distance is not None and not np.isfinite(o.distance):
            raise TemplateError(f"{where}: an adapted signature's distance must be finite")
        if o.pose is not None and not isinstance(o.pose, str):
            raise TemplateError(f"{where}: a signature's pose must be text")


def iso_time(timestamp: float | None = None) -> str:
    """A Unix time (default: now) as ISO 8601 UTC to the second, ``2026-03-01T09:30:00Z``."""
    moment = (datetime.datetime.now(datetime.timezone.utc) if timestamp is None else
              datetime.datetime.fromtimestamp(float(timestamp), datetime.timezone.utc))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
