"""Atomic file writes: a reader never sees a half-written file, even after SIGKILL or Ctrl-C.

Every writer goes through :func:`atomic_path`: data goes to a hidden temp file in the target's
folder, is flushed to disk, then renamed over the target (``os.replace`` is atomic on POSIX and
Windows). On any exception, KeyboardInterrupt included, the temp file is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

TEMP_PREFIX = ".tmp-"
LIVE_TEMP_AGE_S = 3600.0  # a temp file younger than this may belong to a run still writing it


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; finished files get the usual 0666 & ~umask.
FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def remove_stale_temps(folder: str | os.PathLike, min_age_s: float = 0.0) -> int:
    """Delete temp files left in ``folder`` by killed writers; return how many were removed.

    With ``min_age_s > 0`` only those older than that: other live runs may be writing into the same folder
    (shards of one job, a second run started on the folder), and an atomic write takes seconds, not
    :data:`LIVE_TEMP_AGE_S`."""
    n, now = 0, time.time()
    for p in Path(folder).glob(TEMP_PREFIX + "*"):
        try:
            if p.is_file() and (min_age_s <= 0 or now - p.stat().st_mtime > min_age_s):
                p.unlink()
                n += 1
        except FileNotFoundError:  # its writer finished (or another run removed it) meanwhile
            pass
    return n
