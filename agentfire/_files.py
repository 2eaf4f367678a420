"""Files that matter are written atomically and under a lock (DESIGN.md rule 7)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from agentfire.errors import StateFileError


@contextmanager
def locked(path: Path, timeout: float = 10.0) -> Iterator[None]:
    """An exclusive cross-process lock beside `path` (path + '.lock')."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path) + ".lock", timeout=timeout)
    # only failures to take the lock are mapped here; errors in the caller's block pass through
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise StateFileError(f"{path}: another agentfire holds its lock (waited {timeout:.1f}s)") from None
    except OSError as exc:  # read-only filesystem, a file where a directory is expected, EACCES
        raise StateFileError(f"{path.parent}: not writable ({exc.strerror or exc})") from None
    try:
        yield
    finally:
        lock.release()


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Temp file in the same directory, fsync, os.replace, fsync the directory.

    Refuses to replace anything but a regular file: `--out /dev/null` run as root must not turn
    the device into a file.
    """
    if path.exists() and not path.is_file():
        raise StateFileError(f"{path}: not a regular file; refusing to replace it")
    if path.is_symlink():
        raise StateFileError(f"{path}: is a symbolic link; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StateFileError(f"{path.parent}: not writable ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def append_line(path: Path, line: str) -> None:
    """Append one line (already without newline) and fsync; caller holds the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
