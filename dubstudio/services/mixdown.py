"""Streaming mixdown: place each take at its exact first sample and sum, block by block, to files.

The programme is processed in fixed blocks (``block_size`` samples); only the takes that overlap
the current block are open (as memory maps of cached files), so memory stays bounded by the block
size and the number of simultaneously sounding lines, whatever the programme's length. The mix and
any stems (one per character) are written in the same pass; a stem holds exactly the samples its
lines contribute to the mix, so the stems sum to the mix.

Shapes: takes ``(N,)`` float32; blocks ``(block_size,)`` float64 while summing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import soundfile as sf

from dubstudio.core.errors import ExportError, RenderCancelled
from dubstudio.services.wavio import BextInfo, WavWriter

logger = logging.getLogger(__name__)

#: Samples per processing block (about 1.4 s at 48 kHz).
DEFAULT_BLOCK_SIZE = 65536
#: Level above which the optional soft limiter starts to bend the signal.
LIMITER_THRESHOLD = 0.891  # -1 dBFS
_MAX_CLIP_REPORT = 50

AudioLoader = Callable[[], npt.ArrayLike]


@dataclass(frozen=True)
class Placement:
    """One take on the programme's timeline.

    Attributes:
        start_sample: First sample of the take in the programme (may be negative: the part
            before 0 is cut).
        length: Samples of the take.
        load: Returns the take's samples ``(length,)``; called only while the take sounds
            (a memory map of the cache entry is ideal).
        gain: Linear gain applied to the take.
        stem: Stem (character) name the take belongs to.
        label: How reports name the line (for example ``"#12 00:01:02:03"``).
    """

    start_sample: int
    length: int
    load: AudioLoader
    gain: float = 1.0
    stem: str = ""
    label: str = ""

    @property
    def end_sample(self) -> int:
        """First sample after the take."""
        return self.start_sample + self.length


@dataclass
class MixReport:
    """What a mixdown produced.

    Attributes:
        samples: Length of the mix in samples.
        sample_rate: Hz.
        peak: Highest absolute sample value before quantisation (1.0 = full scale).
        clipped_samples: Samples whose magnitude exceeded full scale (before any limiter).
        clipped_lines: Labels of lines sounding where the mix clipped (at most 50).
        limited: Whether the soft limiter was on.
        files: Files written.
    """

    samples: int
    sample_rate: int
    peak: float = 0.0
    clipped_samples: int = 0
    clipped_lines: list[str] = field(default_factory=list)
    limited: bool = False
    files: list[Path] = field(default_factory=list)

    @property
    def peak_dbfs(self) -> float:
        """Peak in dB relative to full scale (-inf for silence)."""
        return 20.0 * math.log10(self.peak) if self.peak > 0 else float("-inf")


class AudioSink(Protocol):
    """Where mixed blocks go (a WAV or FLAC writer)."""

    def write(self, block: npt.NDArray[np.floating]) -> None:
        """Append samples ``(N,)``."""

    def close(self) -> None:
        """Finish the file."""

    def abort(self) -> None:
        """Drop the partial file."""


class _SoundFileSink:
    """FLAC (or other soundfile format) output, written under a temporary name then renamed."""

    def __init__(self, path: Path, sample_rate: int, subtype: str, fmt: str) -> None:
        self.path = path
        self._tmp = path.with_name(f".{path.name}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = sf.SoundFile(
                self._tmp, "w", samplerate=sample_rate, channels=1, subtype=subtype, format=fmt
            )
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise ExportError(f"Cannot write {path}: {exc}.") from exc

    def write(self, block: npt.NDArray[np.floating]) -> None:
        self._file.write(np.clip(block, -1.0, 1.0))

    def close(self) -> None:
        self._file.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def open_sink(
    path: str | Path,
    sample_rate: int,
    *,
    bit_depth: int = 24,
    float_output: bool = False,
    bext: BextInfo | None = None,
) -> AudioSink:
    """A writer for ``path``: ``.wav`` (with `bext` when given) or ``.flac`` (16/24-bit).

    Raises:
        ExportError: Unsupported extension or bit depth.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if bit_depth not in (16, 24, 32):
        raise ExportError(f"Bit depth {bit_depth} is not supported; use 16, 24 or 32.")
    if suffix == ".wav":
        subtype = "FLOAT" if float_output else f"PCM_{bit_depth}"
        return WavWriter(path, sample_rate, subtype=subtype, bext=bext)
    if suffix == ".flac":
        if float_output or bit_depth == 32:
            raise ExportError("FLAC stores at most 24-bit integers; export WAV for 32-bit.")
        return _SoundFileSink(path, sample_rate, f"PCM_{bit_depth}", "FLAC")
    raise ExportError(
        f"Cannot export audio as {suffix or 'a file without extension'}; use .wav or .flac."
    )


def soft_limit(block: npt.NDArray[np.float64], threshold: float = LIMITER_THRESHOLD) -> None:
    """Bend samples above ``threshold`` smoothly towards ±1 (in place; never exceeds 1)."""
    magnitude = np.abs(block)
    over = magnitude > threshold
    if not over.any():
        return
    headroom = 1.0 - threshold
    bent = threshold + headroom * np.tanh((magnitude[over] - threshold) / headroom)
    block[over] = np.sign(block[over]) * bent


def mixdown(
    placements: Sequence[Placement],
    total_samples: int,
    sample_rate: int,
    mix: AudioSink | None,
    stems: dict[str, AudioSink] | None = None,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    soft_limiter: bool = False,
    on_progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MixReport:
    """Sum the placements into ``total_samples`` samples, streaming to ``mix`` and ``stems``.

    Args:
        placements: Takes and where they go; any order.
        total_samples: Length of the output (the programme); takes reaching past it are cut.
        sample_rate: Hz (only reported; the takes must already be at this rate).
        mix: Sink of the summed programme, or None to write only stems.
        stems: Stem name -> sink; each receives its placements only (same length and start as
            the mix). Placements whose stem has no sink still sound in the mix.
        block_size: Samples per block.
        soft_limiter: Bend peaks above -1 dBFS in the mix instead of clipping (off by default:
            clipping is reported, not hidden). Stems are never limited.
        on_progress: ``(fraction, "mixdown")`` once per block.
        should_stop: Polled once per block; True aborts all files and raises `RenderCancelled`.

    Returns:
        The `MixReport`; the sinks are closed (finished) on success and aborted on error.
    """
    if total_samples < 0:
        raise ExportError(f"The programme length cannot be negative ({total_samples} samples).")
    stems = stems or {}
    sinks: list[AudioSink] = ([mix] if mix is not None else []) + list(stems.values())
    report = MixReport(samples=total_samples, sample_rate=sample_rate, limited=soft_limiter)
    ordered = sorted(
        (
            p
            for p in placements
            if p.length > 0 and p.end_sample > 0 and p.start_sample < total_samples
        ),
        key=lambda p: p.start_sample,
    )
    clipped_labels: dict[str, None] = {}
    try:
        next_index = 0
        active: list[tuple[Placement, npt.NDArray[np.floating]]] = []
        mix_block = np.zeros(block_size, dtype=np.float64)
        stem_blocks = {name: np.zeros(block_size, dtype=np.float64) for name in stems}
        for block_start in range(0, total_samples, block_size):
            if should_stop is not None and should_stop():
                raise RenderCancelled("The export was stopped; no file was written.")
            block_end = min(block_start + block_size, total_samples)
            n = block_end - block_start
            while next_index < len(ordered) and ordered[next_index].start_sample < block_end:
                placement = ordered[next_index]
                audio = np.asarray(placement.load())
                if audio.shape != (placement.length,):
                    raise ExportError(
                        f"Line {placement.label}: its take has {audio.shape} samples, expected "
                        f"({placement.length},); re-render the line."
                    )
                active.append((placement, audio))
                next_index += 1
            mix_view = mix_block[:n]
            mix_view.fill(0.0)
            for block in stem_blocks.values():
                block[:n].fill(0.0)
            sounding: list[Placement] = []
            for placement, audio in active:
                lo = max(block_start, placement.start_sample)
                hi = min(block_end, placement.end_sample)
                if hi <= lo:
                    continue
                sounding.append(placement)
                src = audio[lo - placement.start_sample : hi - placement.start_sample]
                piece = np.asarray(src, dtype=np.float64)
                if placement.gain != 1.0:
                    piece = piece * placement.gain
                mix_view[lo - block_start : hi - block_start] += piece
                stem_block = stem_blocks.get(placement.stem)
                if stem_block is not None:
                    stem_block[lo - block_start : hi - block_start] += piece
            # Takes that ended inside this block are released (their memory maps close).
            active = [(p, a) for p, a in active if p.end_sample > block_end]
            peak = float(np.max(np.abs(mix_view))) if n else 0.0
            report.peak = max(report.peak, peak)
            if peak > 1.0:
                report.clipped_samples += int(np.count_nonzero(np.abs(mix_view) > 1.0))
                for placement in sounding:
                    if len(clipped_labels) < _MAX_CLIP_REPORT:
                        clipped_labels.setdefault(placement.label or str(placement.start_sample))
            if soft_limiter:
                soft_limit(mix_view)
            if mix is not None:
                mix.write(mix_view)
            for name, sink in stems.items():
                sink.write(stem_blocks[name][:n])
            if on_progress is not None:
                on_progress(block_end / total_samples, "mixdown")
        for sink in sinks:
            sink.close()
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    report.clipped_lines = list(clipped_labels)
    if report.clipped_samples:
        logger.warning(
            "The mix clips in %d samples (peak %.2f dBFS); lower the gain of: %s",
            report.clipped_samples,
            report.peak_dbfs,
            ", ".join(report.clipped_lines),
        )
    for sink in sinks:
        path = getattr(sink, "path", None)
        if isinstance(path, Path):
            report.files.append(path)
    return report
