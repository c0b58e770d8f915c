"""Writing a file so that a crash never leaves half of it: a private temporary file, then rename."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | Path, data: bytes, private: bool = False) -> None:
    """Replace ``path`` with ``data`` in one step; ``private`` makes it readable by its owner only.

    The bytes go to a temporary file beside ``path``, are flushed to disk, and the temporary file
    is renamed over ``path``; on any failure it is removed and the error propagates.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["write_atomic"]
