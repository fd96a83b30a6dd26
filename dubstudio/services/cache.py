"""Content-addressed render cache on disk: audio keyed by the hash of everything that shapes it.

An entry is two files under ``<root>/objects/<key[:2]>/``:

- ``<key>.wav``: mono 32-bit float WAV (playable by any tool; read back with a memory map);
- ``<key>.json``: the manifest (sample count, rate, data offset, sha256 of the WAV bytes, and the
  caller's metadata such as the request identity and token counts).

Both are written under temporary names, fsynced and renamed, audio first and manifest last, so the
manifest's presence is the commit point: a crash at any moment leaves either a complete entry or
an orphan WAV without a manifest, which is never read and is swept by `RenderCache.scrub`. A
manifest whose WAV is missing or has the wrong size is treated as a miss and removed.

The cache is shared by processes (the editor and a CLI render of the same project): writes are
atomic renames and readers only trust complete entries, so no lock is needed. Least-recently-used
entries are evicted when the total size passes ``max_bytes``; the manifest's modification time
is the "last used" stamp (touched on every hit). Keys a caller passes as ``protect`` (for example
the selected takes of an open project) are never evicted.

Shapes: audio ``(N,)`` float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dubstudio.core.errors import RenderError
from dubstudio.services.wavio import WavWriter

logger = logging.getLogger(__name__)

#: Default size limit of a cache (bytes): about 2.5 hours of 48 kHz float audio.
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Folder name of a project's cache, next to the project file.
PROJECT_CACHE_DIRNAME = ".dubstudio-cache"
_FORMAT = 1


def user_cache_dir() -> Path:
    """The per-user cache: ``$DUBSTUDIO_CACHE``, else ``$XDG_CACHE_HOME/dubstudio/renders``."""
    env = os.environ.get("DUBSTUDIO_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dubstudio" / "renders"


def project_cache_dir(project_path: str | Path) -> Path:
    """The cache folder that belongs to a project file (beside it, hidden)."""
    return Path(project_path).resolve().parent / PROJECT_CACHE_DIRNAME


@dataclass(frozen=True)
class CacheEntry:
    """A complete cached render.

    Attributes:
        key: The content key (64 hex digits).
        path: The WAV file.
        samples: Length in samples.
        sample_rate: Hz.
        data_offset: Byte offset of the float32 samples inside the WAV file.
        sha256: Hash of the WAV file's bytes (the take hash stored in projects and recipes).
        meta: Caller metadata stored with the audio (JSON values).
    """

    key: str
    path: Path
    samples: int
    sample_rate: int
    data_offset: int
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)

    def audio(self) -> npt.NDArray[np.float32]:
        """The samples ``(N,)`` as a read-only memory map (no copy, cheap for long files)."""
        if self.samples == 0:
            return np.zeros(0, dtype=np.float32)
        return np.memmap(
            self.path, dtype="<f4", mode="r", offset=self.data_offset, shape=(self.samples,)
        )

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.samples / self.sample_rate


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory itself is synced (POSIX).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class RenderCache:
    """Content-addressed, crash-safe, size-limited store of rendered audio.

    Args:
        root: Folder of the cache (created on first write).
        max_bytes: Size limit; the least recently used unprotected entries go first.

    Thread-safe: a lock guards the in-memory size estimate; files are written atomically.
    """

    def __init__(self, root: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._size: int | None = None
        self.hits = 0
        self.misses = 0

    # -- lookup ----------------------------------------------------------------------------

    def _paths(self, key: str) -> tuple[Path, Path]:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise RenderError(f"Invalid cache key {key!r}.")
        folder = self.root / "objects" / key[:2]
        return folder / f"{key}.wav", folder / f"{key}.json"

    def get(self, key: str, *, verify: bool = False, touch: bool = True) -> CacheEntry | None:
        """The complete entry for ``key``, or None (a miss).

        Args:
            key: Content key.
            verify: Also re-hash the WAV bytes against the manifest (slow for long audio;
                the size check always runs).
            touch: Mark the entry as just used (LRU).
        """
        entry = self._load(key, verify=verify)
        with self._lock:
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
        if entry is not None and touch:
            with contextlib.suppress(OSError):
                os.utime(self._paths(key)[1])
        return entry

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._load(key, verify=False) is not None

    def _load(self, key: str, *, verify: bool) -> CacheEntry | None:
        wav, manifest = self._paths(key)
        try:
            info = json.loads(manifest.read_text("utf-8"))
            samples = int(info["samples"])
            offset = int(info["data_offset"])
            size = wav.stat().st_size
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Discarding unreadable cache entry %s: %s", key, exc)
            self._remove(key)
            return None
        if info.get("format") != _FORMAT or size != offset + 4 * samples:
            logger.warning("Discarding incomplete cache entry %s", key)
            self._remove(key)
            return None
        if verify and _file_sha256(wav) != info["sha256"]:
            logger.warning("Discarding corrupt cache entry %s (checksum mismatch)", key)
            self._remove(key)
            return None
        return CacheEntry(
            key=key,
            path=wav,
            samples=samples,
            sample_rate=int(info["sample_rate"]),
            data_offset=offset,
            sha256=str(info["sha256"]),
            meta=dict(info.get("meta", {})),
        )

    # -- store -----------------------------------------------------------------------------

    def put(
        self,
        key: str,
        audio: npt.ArrayLike,
        sample_rate: int,
        meta: dict[str, Any] | None = None,
        *,
        protect: Iterable[str] = (),
    ) -> CacheEntry:
        """Store audio ``(N,)`` under ``key`` (replacing any entry) and return the entry.

        Audio first, manifest last, each fsynced and renamed: see the module docstring.
        Evicts old entries afterwards if the cache grew past its limit.
        """
        samples = np.ascontiguousarray(np.ravel(audio), dtype=np.float32)
        wav, manifest = self._paths(key)
        wav.parent.mkdir(parents=True, exist_ok=True)
        writer = WavWriter(wav, sample_rate, subtype="FLOAT")
        with writer:
            writer.write(samples)
        offset = wav.stat().st_size - 4 * len(samples)
        info = {
            "format": _FORMAT,
            "key": key,
            "samples": len(samples),
            "sample_rate": int(sample_rate),
            "data_offset": offset,
            "sha256": _file_sha256(wav),
            "created": time.time(),
            "meta": meta or {},
        }
        _write_atomic(manifest, json.dumps(info, sort_keys=True).encode("utf-8"))
        _fsync_dir(wav.parent)
        with self._lock:
            if self._size is not None:
                self._size += wav.stat().st_size
        entry = self._load(key, verify=False)
        if entry is None:  # pragma: no cover - only if the disk lies to us
            raise RenderError(f"The render cache at {self.root} could not store an entry.")
        self.evict(protect=set(protect) | {key})
        return entry

    # -- housekeeping ----------------------------------------------------------------------

    def _manifests(self) -> Iterator[Path]:
        objects = self.root / "objects"
        if objects.is_dir():
            yield from objects.glob("*/*.json")

    def keys(self) -> list[str]:
        """Keys of the complete entries (manifests present)."""
        return [p.stem for p in self._manifests()]

    def size_bytes(self) -> int:
        """Total bytes of cached audio (scanned once, then tracked)."""
        with self._lock:
            if self._size is None:
                total = 0
                for wav in (self.root / "objects").glob("*/*.wav"):
                    with contextlib.suppress(OSError):
                        total += wav.stat().st_size
                self._size = total
            return self._size

    def evict(self, protect: Iterable[str] = ()) -> list[str]:
        """Remove least recently used entries until the cache fits ``max_bytes``.

        Returns:
            The evicted keys.
        """
        if self.size_bytes() <= self.max_bytes:
            return []
        keep = set(protect)
        stamped: list[tuple[float, str]] = []
        for manifest in self._manifests():
            try:
                stamped.append((manifest.stat().st_mtime, manifest.stem))
            except OSError:
                continue
        stamped.sort()
        evicted = []
        for _, key in stamped:
            if self.size_bytes() <= self.max_bytes:
                break
            if key in keep:
                continue
            self._remove(key)
            evicted.append(key)
        if evicted:
            logger.info(
                "Render cache: evicted %d entries to stay under %d bytes",
                len(evicted),
                self.max_bytes,
            )
        return evicted

    def _remove(self, key: str) -> None:
        wav, manifest = self._paths(key)
        # Manifest first: once it is gone the entry is a miss even if the WAV removal fails.
        manifest.unlink(missing_ok=True)
        try:
            size = wav.stat().st_size
            wav.unlink()
        except OSError:
            size = 0
        with self._lock:
            if self._size is not None:
                self._size = max(0, self._size - size)

    def remove(self, key: str) -> None:
        """Delete an entry (no error when it is absent)."""
        self._remove(key)

    def scrub(self, min_age_s: float = 60.0) -> int:
        """Delete leftovers of interrupted writes (temp files, WAVs without manifest).

        Args:
            min_age_s: Only files older than this go, so a write in progress in another
                process (the editor rendering while the CLI scrubs) is left alone.

        Returns:
            Number of files removed.
        """
        removed = 0
        objects = self.root / "objects"
        if not objects.is_dir():
            return 0
        now = time.time()
        for path in objects.glob("*/*"):
            orphan = path.suffix == ".wav" and not path.with_suffix(".json").exists()
            try:
                old = now - path.stat().st_mtime >= min_age_s
            except OSError:
                continue
            if old and (path.name.endswith(".tmp") or orphan):
                path.unlink(missing_ok=True)
                removed += 1
        with self._lock:
            self._size = None
        return removed
