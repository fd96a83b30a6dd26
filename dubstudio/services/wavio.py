"""Streaming WAV writer with a Broadcast Wave `bext` chunk, and a reader for that chunk.

soundfile cannot write a `bext` chunk, so WAV output of the mixdown is written here: a RIFF header
(``RIFF``/``WAVE``, ``bext`` when a time reference is known, ``fmt``, ``fact`` for float data,
``data``) followed by sample blocks streamed as they are mixed; the sizes are patched on close.
The file is written under a temporary name, fsynced and renamed, so a crash never leaves a
truncated file under the final name.

Layout of the `bext` chunk (EBU Tech 3285, version 1): Description 256 bytes, Originator 32,
OriginatorReference 32, OriginationDate 10 (``yyyy-mm-dd``), OriginationTime 8 (``hh:mm:ss``),
TimeReference as two little-endian uint32 (low, high) counting samples since midnight,
Version uint16, UMID 64 bytes, 190 reserved bytes, then the CodingHistory text.

Shapes: audio blocks are ``(N,)`` mono float32/float64 in [-1, 1].
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from dubstudio.core.errors import ExportError

#: Sample formats the writer supports: name -> (bits per sample, WAVE format tag).
SUBTYPES: dict[str, tuple[int, int]] = {
    "PCM_16": (16, 1),
    "PCM_24": (24, 1),
    "PCM_32": (32, 1),
    "FLOAT": (32, 3),
}

_BEXT_FIXED_SIZE = 602


@dataclass(frozen=True)
class BextInfo:
    """Broadcast Wave metadata.

    Attributes:
        time_reference: First sample's position, in samples since midnight at the file's rate.
        description: Free text (at most 256 bytes in ASCII).
        originator: Who made the file (at most 32 bytes).
        originator_reference: An identifier (at most 32 bytes).
        origination_date: ``yyyy-mm-dd``; today when empty.
        origination_time: ``hh:mm:ss``; now when empty.
        coding_history: Free text appended after the fixed fields.
    """

    time_reference: int
    description: str = ""
    originator: str = "DubStudio"
    originator_reference: str = ""
    origination_date: str = ""
    origination_time: str = ""
    coding_history: str = ""

    def to_bytes(self) -> bytes:
        """The chunk payload (without the ``bext`` id and size)."""
        if not 0 <= self.time_reference < 1 << 64:
            raise ExportError(
                f"Broadcast Wave time reference {self.time_reference} is out of range; "
                "check the programme start timecode."
            )
        now = _dt.datetime.now()
        date = self.origination_date or now.strftime("%Y-%m-%d")
        time = self.origination_time or now.strftime("%H:%M:%S")
        history = self.coding_history.encode("ascii", "replace")
        payload = b"".join(
            (
                _fixed(self.description, 256),
                _fixed(self.originator, 32),
                _fixed(self.originator_reference, 32),
                _fixed(date, 10),
                _fixed(time, 8),
                struct.pack(
                    "<IIH",
                    self.time_reference & 0xFFFFFFFF,
                    self.time_reference >> 32,
                    1,
                ),
                bytes(64),  # UMID: none
                bytes(190),  # reserved (version 1 has no loudness fields)
                history,
            )
        )
        if len(payload) % 2:
            payload += b"\0"  # RIFF chunks are word-aligned
        return payload

    @classmethod
    def from_bytes(cls, payload: bytes) -> BextInfo:
        """Parse a chunk payload written by any Broadcast Wave tool."""
        if len(payload) < _BEXT_FIXED_SIZE:
            raise ExportError(f"The bext chunk is {len(payload)} bytes, shorter than its fields.")
        low, high = struct.unpack_from("<II", payload, 338)
        return cls(
            time_reference=low | (high << 32),
            description=_unfixed(payload[0:256]),
            originator=_unfixed(payload[256:288]),
            originator_reference=_unfixed(payload[288:320]),
            origination_date=_unfixed(payload[320:330]),
            origination_time=_unfixed(payload[330:338]),
            coding_history=_unfixed(payload[_BEXT_FIXED_SIZE:]),
        )


def _fixed(text: str, size: int) -> bytes:
    return text.encode("ascii", "replace")[:size].ljust(size, b"\0")


def _unfixed(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def read_chunks(path: str | Path) -> dict[str, bytes]:
    """All top-level RIFF chunks of a WAV file except ``data`` (id -> payload).

    The ``data`` chunk is reported by its size only (an 8-byte little-endian integer) so a
    2-hour file is never read into memory.
    """
    chunks: dict[str, bytes] = {}
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ExportError(f"{path} is not a RIFF/WAVE file.")
        while True:
            header = handle.read(8)
            if len(header) < 8:
                break
            chunk_id = header[:4].decode("ascii", "replace")
            (size,) = struct.unpack("<I", header[4:])
            if chunk_id == "data":
                chunks["data"] = struct.pack("<Q", size)
                handle.seek(size + (size & 1), os.SEEK_CUR)
            else:
                chunks[chunk_id] = handle.read(size)
                if size & 1:
                    handle.read(1)
    return chunks


def read_bext(path: str | Path) -> BextInfo | None:
    """The `bext` metadata of a WAV file, or None when it has none."""
    payload = read_chunks(path).get("bext")
    return None if payload is None else BextInfo.from_bytes(payload)


def _to_pcm_bytes(block: npt.NDArray[np.floating], subtype: str) -> bytes:
    """Quantise a float block in [-1, 1] to little-endian sample bytes (clipping at full scale)."""
    if subtype == "FLOAT":
        return np.asarray(block, dtype="<f4").tobytes()
    bits = SUBTYPES[subtype][0]
    full = float(1 << (bits - 1))
    # Same convention as libsndfile: scale by 2^(bits-1), round, clip to the signed range.
    ints = np.clip(np.rint(np.asarray(block, dtype=np.float64) * full), -full, full - 1)
    if bits == 16:
        return ints.astype("<i2").tobytes()
    as32 = ints.astype("<i4")
    if bits == 32:
        return as32.tobytes()
    # 24-bit: the low three bytes of each int32, little-endian. Filling a contiguous (N, 3)
    # byte array column by column is ~9x faster than copying a strided view of the int32s.
    packed = np.empty((len(as32), 3), dtype=np.uint8)
    packed[:, 0] = as32 & 0xFF
    packed[:, 1] = (as32 >> 8) & 0xFF
    packed[:, 2] = (as32 >> 16) & 0xFF
    return packed.tobytes()


class WavWriter:
    """Mono WAV file written block by block; use as a context manager.

    Args:
        path: Final file name; it appears only when the writer closes without an error.
        sample_rate: Hz.
        subtype: One of `SUBTYPES` (``PCM_24`` by default).
        bext: Broadcast Wave metadata, or None for a plain WAV.

    Raises:
        ExportError: Unknown subtype, or the file cannot be written (disk full, no permission).
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int,
        subtype: str = "PCM_24",
        bext: BextInfo | None = None,
    ) -> None:
        if subtype not in SUBTYPES:
            raise ExportError(
                f"Unknown WAV sample format {subtype!r}; use one of {list(SUBTYPES)}."
            )
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.subtype = subtype
        self.frames = 0
        self._bits, self._tag = SUBTYPES[subtype]
        self._tmp = self.path.with_name(
            f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle: BinaryIO = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ExportError(f"Cannot write {self.path}: {exc.strerror}.") from exc
        self._write_header(bext)

    def _write_header(self, bext: BextInfo | None) -> None:
        block_align = self._bits // 8
        parts = [b"RIFF", b"\0\0\0\0", b"WAVE"]
        if bext is not None:
            payload = bext.to_bytes()
            parts += [b"bext", struct.pack("<I", len(payload)), payload]
        fmt = struct.pack(
            "<HHIIHH",
            self._tag,
            1,
            self.sample_rate,
            self.sample_rate * block_align,
            block_align,
            self._bits,
        )
        if self._tag == 3:
            fmt += struct.pack("<H", 0)  # cbSize: non-PCM formats carry it
        parts += [b"fmt ", struct.pack("<I", len(fmt)), fmt]
        self._fact_offset: int | None = None
        if self._tag == 3:
            self._fact_offset = sum(len(p) for p in parts) + 8
            parts += [b"fact", struct.pack("<I", 4), b"\0\0\0\0"]
        parts += [b"data", b"\0\0\0\0"]
        header = b"".join(parts)
        self._data_size_offset = len(header) - 4
        self._header_size = len(header)
        self._handle.write(header)

    def write(self, block: npt.NDArray[np.floating]) -> None:
        """Append samples ``(N,)``; values beyond ±1 are clipped by the integer formats."""
        data = _to_pcm_bytes(np.ravel(block), self.subtype)
        try:
            self._handle.write(data)
        except OSError as exc:
            self.abort()
            raise ExportError(f"Cannot write {self.path}: {exc.strerror}.") from exc
        self.frames += len(data) // (self._bits // 8)

    def close(self) -> None:
        """Patch the sizes, fsync and move the file to its final name."""
        if self._handle.closed:
            return
        data_bytes = self.frames * (self._bits // 8)
        if self._header_size + data_bytes + (data_bytes & 1) - 8 >= 1 << 32:
            self.abort()
            raise ExportError(
                f"{self.path} would exceed the 4 GiB WAV limit; export FLAC or split the programme."
            )
        try:
            if data_bytes & 1:
                self._handle.write(b"\0")
            self._handle.seek(4)
            self._handle.write(
                struct.pack("<I", self._header_size + data_bytes + (data_bytes & 1) - 8)
            )
            if self._fact_offset is not None:
                self._handle.seek(self._fact_offset)
                self._handle.write(struct.pack("<I", self.frames))
            self._handle.seek(self._data_size_offset)
            self._handle.write(struct.pack("<I", data_bytes))
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise ExportError(f"Cannot finish {self.path}: {exc.strerror}.") from exc

    def abort(self) -> None:
        """Drop the partial file."""
        if not self._handle.closed:
            self._handle.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
