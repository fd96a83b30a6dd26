"""File-system helpers that never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never a mix.

    The bytes go to a temporary file in the same folder, are flushed and fsync'ed, and the
    temporary file is renamed over ``path`` (atomic on POSIX and Windows); the folder is then
    fsync'ed so the rename itself survives a power cut.

    Args:
        path: Destination file; its folder must exist.
        data: The complete new contents.

    Raises:
        OSError: If the folder is not writable or the disk is full (the old file is untouched).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            # Keep the permissions of the file being replaced (mkstemp creates 0600).
            with contextlib.suppress(OSError):
                os.chmod(tmp_name, path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(folder)


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """:func:`atomic_write_bytes` for text (no newline translation: write ``\\n`` or ``\\r\\n``)."""
    atomic_write_bytes(path, text.encode(encoding))


def fsync_dir(folder: Path | str) -> None:
    """Flush a folder's entries to disk (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync of folder %s not supported", folder)
    finally:
        os.close(fd)
