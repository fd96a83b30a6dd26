"""Exports: the mixed dialogue track, stems per character, per-line clips, subtitles, recipe.

Every audio export places takes with the same exact time math (`Project.line_budget`), so the mix,
the stems and the clips line up to the sample. WAV files carry a Broadcast Wave `bext` chunk
whose TimeReference is the programme start timecode (project setting
``programme_start_timecode``, e.g. ``"10:00:00:00"``) plus the file's own offset, so a DAW
spots them at the right time.

The programme's length is the project setting ``programme_frames`` when set (the video's length
in frames), else the end of the last line's slot.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dubstudio.core.errors import DubStudioError, ExportError
from dubstudio.core.model import Line, Project
from dubstudio.core.timing import format_timecode, frame_to_sample, parse_timecode
from dubstudio.services.cache import RenderCache
from dubstudio.services.mixdown import DEFAULT_BLOCK_SIZE, MixReport, Placement, mixdown, open_sink
from dubstudio.services.wavio import BextInfo, WavWriter

logger = logging.getLogger(__name__)

#: Project setting: SMPTE timecode of the programme's first frame (for the `bext` chunk).
START_TIMECODE_SETTING = "programme_start_timecode"
#: Project setting: the programme's length in frames (the video's length).
PROGRAMME_FRAMES_SETTING = "programme_frames"


def programme_samples(project: Project) -> int:
    """Length of the programme in output samples (see the module docstring)."""
    frames = project.settings.get(PROGRAMME_FRAMES_SETTING)
    end_frame = max((line.end_frame for line in project.lines), default=0)
    if frames is not None:
        end_frame = int(frames)
    return frame_to_sample(end_frame, project.fps, project.sample_rate)


def start_time_reference(project: Project, timecode: str | None = None) -> int | None:
    """Samples since midnight of the programme's first frame, or None when unknown.

    Args:
        project: The project (frame rate, sample rate, ``programme_start_timecode`` setting).
        timecode: Overrides the project setting.
    """
    text = timecode or project.settings.get(START_TIMECODE_SETTING)
    if not text:
        return None
    frame = parse_timecode(str(text), project.fps)
    return frame_to_sample(frame, project.fps, project.sample_rate)


def line_label(index: int, line: Line, project: Project) -> str:
    """How reports and clip names refer to a line: ``#12 00:01:02:03``."""
    return f"#{index + 1} {format_timecode(line.start_frame, project.fps)}"


def _stem_name(line: Line) -> str:
    return line.character or "unassigned"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def placements(
    project: Project, cache: RenderCache, *, missing_ok: bool = False
) -> list[Placement]:
    """Every line's selected take at its exact first sample.

    Args:
        project: The project.
        cache: Where the takes' audio is.
        missing_ok: Leave lines without audio silent instead of failing.

    Raises:
        ExportError: Lines without a selected take or whose audio is gone from the cache
            (named, so they can be rendered first).
    """
    result: list[Placement] = []
    missing: list[str] = []
    for index, line in enumerate(project.lines):
        take = line.active_take
        if not line.speech_text:
            continue
        entry = cache.get(take.cache_key, touch=False) if take is not None else None
        if take is None or entry is None:
            missing.append(line_label(index, line, project))
            continue
        if entry.sample_rate != project.sample_rate:
            missing.append(line_label(index, line, project) + " (other sample rate)")
            continue
        start = project.line_budget(line).start_sample
        gain_db = float(project.settings.get("line_gain_db", {}).get(line.id, 0.0))
        result.append(
            Placement(
                start_sample=start,
                length=entry.samples,
                load=entry.audio,
                gain=10.0 ** (gain_db / 20.0),
                stem=_stem_name(line),
                label=line_label(index, line, project),
            )
        )
    if missing and not missing_ok:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise ExportError(
            f"{len(missing)} line(s) have no rendered audio: {shown}. Render them first."
        )
    return result


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        mix: The mixdown report (None when no mix was written).
        files: Every file written.
    """

    mix: MixReport | None = None
    files: list[Path] = field(default_factory=list)


def export_mix(
    project: Project,
    cache: RenderCache,
    out: str | Path | None,
    *,
    stems_dir: str | Path | None = None,
    stem_format: str = "wav",
    bit_depth: int | None = None,
    float_output: bool = False,
    soft_limiter: bool = False,
    start_timecode: str | None = None,
    missing_ok: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    on_progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ExportResult:
    """Write the mixed dialogue track and/or one stem per character, in one streaming pass.

    Args:
        project: The project.
        cache: Where the takes' audio is.
        out: Mix file (``.wav`` or ``.flac``), or None for stems only.
        stems_dir: Folder for ``<character>.<stem_format>`` stems (same length and start as
            the mix), or None.
        stem_format: ``wav`` or ``flac``.
        bit_depth: 16, 24 or 32 (default: the project's bit depth).
        float_output: 32-bit float WAV instead of integers.
        soft_limiter: Bend peaks instead of clipping (clipping is reported either way).
        start_timecode: Programme start (overrides the project setting) for `bext`.
        missing_ok: Leave unrendered lines silent instead of failing.
        block_size: Samples mixed per step (memory vs. per-block overhead).
        on_progress: ``(fraction, "mixdown")``.
        should_stop: Polled once per block.
    """
    rate = project.sample_rate
    depth = bit_depth or project.bit_depth
    reference = start_time_reference(project, start_timecode)
    bext = (
        None
        if reference is None
        else BextInfo(time_reference=reference, description="DubStudio mix")
    )
    placed = placements(project, cache, missing_ok=missing_ok)
    total = programme_samples(project)
    mix_sink = None
    if out is not None:
        mix_sink = open_sink(out, rate, bit_depth=depth, float_output=float_output, bext=bext)
    stems = {}
    if stems_dir is not None:
        for name in sorted({p.stem for p in placed}):
            stem_bext = (
                None
                if bext is None
                else BextInfo(time_reference=reference or 0, description=f"DubStudio stem {name}")
            )
            path = Path(stems_dir) / f"{_safe(name)}.{stem_format}"
            stems[name] = open_sink(
                path, rate, bit_depth=depth, float_output=float_output, bext=stem_bext
            )
    report = mixdown(
        placed,
        total,
        rate,
        mix_sink,
        stems,
        soft_limiter=soft_limiter,
        block_size=block_size,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    return ExportResult(mix=report if out is not None else None, files=list(report.files))


def clip_name(index: int, line: Line, project: Project, ext: str = "wav") -> str:
    """File name of a per-line clip: index, timecode and character, e.g.
    ``0012_00-01-02-03_Ann.wav`` (sorts in programme order)."""
    timecode = re.sub(r"[:;]", "-", format_timecode(line.start_frame, project.fps))
    who = f"_{_safe(line.character)}" if line.character else ""
    return f"{index + 1:04d}_{timecode}{who}.{ext}"


def export_clips(
    project: Project,
    cache: RenderCache,
    folder: str | Path,
    *,
    bit_depth: int | None = None,
    start_timecode: str | None = None,
    missing_ok: bool = False,
) -> ExportResult:
    """Write every line's selected take as its own WAV file (with `bext` at the line's time)."""
    folder = Path(folder)
    depth = bit_depth or project.bit_depth
    reference = start_time_reference(project, start_timecode)
    result = ExportResult()
    missing = []
    for index, line in enumerate(project.lines):
        take = line.active_take
        entry = cache.get(take.cache_key, touch=False) if take is not None else None
        if entry is None:
            if line.speech_text:
                missing.append(line_label(index, line, project))
            continue
        start = project.line_budget(line).start_sample
        bext = None
        if reference is not None:
            bext = BextInfo(time_reference=reference + start, description=line.speech_text[:250])
        path = folder / clip_name(index, line, project)
        with WavWriter(path, entry.sample_rate, f"PCM_{depth}", bext=bext) as writer:
            writer.write(entry.audio())
        result.files.append(path)
    if missing and not missing_ok:
        raise ExportError(
            f"{len(missing)} line(s) have no rendered audio: {', '.join(missing[:10])}."
        )
    return result


def export_subtitles(project: Project, path: str | Path) -> Path:
    """Write the lines back as SRT or ASS (by extension) with their frame-snapped timing and
    character names."""
    from dubstudio.core.subtitles import write_subtitles

    path = Path(path)
    try:
        write_subtitles(project.lines, project.fps, path, with_characters=True)
    except (DubStudioError, OSError) as exc:
        raise ExportError(f"Cannot write subtitles to {path}: {exc}") from exc
    return path
