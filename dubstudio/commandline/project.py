"""`dubstudio info` and `dubstudio new`: inspect budgets of a subtitle or project file; make a
project from subtitles.

``info`` prints one row per line -- timecodes, the frame slot, and the integer budgets the engine
will be given (semantic tokens, mel frames, output samples) -- with the fit forecast, then every
problem found in the file with its line number. ``--json`` prints the same as one JSON object
(other tools and the tests read it).
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

from dubstudio.core.errors import DubStudioError, ProjectFileError
from dubstudio.core.forecast import FitStatus, forecast_line
from dubstudio.core.model import Project
from dubstudio.core.projectfile import PROJECT_SUFFIX, load_project, missing_media, save_project
from dubstudio.core.subtitles import SubtitleImport, SubtitleProblem, project_from_subtitles
from dubstudio.core.timing import (
    DEFAULT_FPS,
    DEFAULT_SAMPLE_RATE,
    INDEXTTS2_MEL_RATE,
    INDEXTTS2_TOKEN_RATE,
    format_fps,
    format_timecode,
    parse_fps,
)

REPO_DEMO_SRT = Path(__file__).resolve().parents[2] / "resources" / "demo" / "demo.srt"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `info` and `new` sub-commands."""
    info = subparsers.add_parser(
        "info",
        help="show every line's slot, budgets and fit forecast, and the file's problems",
        description=(
            "Show, for a subtitle file (SRT, WebVTT, ASS/SSA) or a .dubproj project, one row per "
            "line: timecodes, slot frames and seconds, the semantic-token, mel-frame and output-"
            "sample budgets, and the fit forecast; then each problem with its line number."
        ),
    )
    info.add_argument("file", type=Path, help="subtitle file or .dubproj project")
    info.add_argument("--fps", help="frame rate, e.g. 25, 29.97 or 24000/1001 (subtitles: "
                      f"default {format_fps(DEFAULT_FPS)}; projects: their own)")  # fmt: skip
    info.add_argument("--sample-rate", type=int, default=None, help="output sample rate in Hz")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--strict", action="store_true", help="fail on any broken cue")
    info.add_argument("--encoding", help="subtitle text encoding (default: detected)")
    info.set_defaults(func=run_info)

    new = subparsers.add_parser(
        "new",
        help="create a project from a subtitle file",
        description="Create a .dubproj project from a subtitle file (and optionally a video).",
    )
    new.add_argument("--subtitles", type=Path, required=True, help="SRT, WebVTT or ASS/SSA file")
    new.add_argument("--video", type=Path, help="the video to dub")
    new.add_argument("--fps", help=f"frame rate (default {format_fps(DEFAULT_FPS)})")
    new.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE, help="output Hz")
    new.add_argument("--strict", action="store_true", help="fail on any broken cue")
    new.add_argument("--encoding", help="subtitle text encoding (default: detected)")
    new.add_argument("--force", action="store_true", help="overwrite an existing project file")
    new.add_argument("-o", "--output", type=Path, required=True, help="the .dubproj to write")
    new.set_defaults(func=run_new)


def _is_project(path: Path) -> bool:
    if path.suffix == PROJECT_SUFFIX:
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(64).lstrip().startswith(b"{")
    except OSError:
        return False


def _project_from_subtitles(
    path: Path, fps: Fraction, sample_rate: int, *, strict: bool, encoding: str | None
) -> tuple[Project, SubtitleImport]:
    return project_from_subtitles(
        path, fps, sample_rate=sample_rate, strict=strict, encoding=encoding
    )


def _problem_json(problem: SubtitleProblem) -> dict[str, Any]:
    return {
        "line_number": problem.line_number,
        "severity": str(problem.severity),
        "message": problem.message,
        "cue_number": problem.cue_number,
    }


def _fraction_text(value: Fraction) -> str:
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


def project_rows(project: Project) -> list[dict[str, Any]]:
    """One dict per line with its slot, budgets and forecast (the rows of `dubstudio info`)."""
    fps = project.fps
    rows = []
    for index, line in enumerate(project.lines, start=1):
        slot = line.slot
        budget = project.line_budget(line)
        forecast = forecast_line(project, line)
        seconds = slot.duration_seconds(fps)
        rows.append(
            {
                "index": index,
                "id": line.id,
                "character": line.character,
                "text": line.text,
                "speech_text": line.speech_text,
                "timecode_in": format_timecode(slot.start_frame, fps),
                "timecode_out": format_timecode(slot.end_frame, fps),
                "start_frame": slot.start_frame,
                "end_frame": slot.end_frame,
                "slot_frames": slot.n_frames,
                "slot_seconds": float(seconds),
                "slot_seconds_exact": _fraction_text(seconds),
                "fit_mode": str(line.fit_mode),
                "start_sample": budget.start_sample,
                "slot_samples": budget.slot_samples,
                "lead_in_samples": budget.lead_in_samples,
                "lead_out_samples": budget.lead_out_samples,
                "output_samples": budget.speech_samples,
                "token_budget": budget.tokens,
                "mel_frame_budget": budget.mel_frames,
                "forecast": str(forecast.status),
                "forecast_message": forecast.message,
                "natural_seconds": round(forecast.natural_seconds, 3),
                "speaking_rate": round(forecast.implied_rate, 2),
                "rate_unit": f"{forecast.unit_name}/s",
                "rate_warning": forecast.warning,
            }
        )
    return rows


def info_report(
    path: Path,
    *,
    fps: str | None = None,
    sample_rate: int | None = None,
    strict: bool = False,
    encoding: str | None = None,
) -> dict[str, Any]:
    """Everything `dubstudio info` shows, as a JSON-ready dict."""
    problems: list[dict[str, Any]] = []
    notes: list[str] = []
    if _is_project(path):
        project = load_project(path)
        kind, fmt, used_encoding, skipped = "project", "dubproj", "utf-8", 0
        if fps is not None:
            project.set_fps(fps)
            notes.append(f"Times re-snapped to {format_fps(project.fps)} fps (file unchanged).")
        if sample_rate is not None:
            project.set_sample_rate(sample_rate)
        notes.extend(missing_media(project))
    else:
        rate = parse_fps(fps) if fps is not None else DEFAULT_FPS
        if fps is None:
            notes.append(f"No --fps given; assuming {format_fps(rate)} fps.")
        project, result = _project_from_subtitles(
            path, rate, sample_rate or DEFAULT_SAMPLE_RATE, strict=strict, encoding=encoding
        )
        kind, fmt, used_encoding, skipped = (
            "subtitles",
            result.format,
            result.encoding,
            result.skipped,
        )
        problems = [_problem_json(p) for p in result.problems]
    rows = project_rows(project)
    counts = {
        status.value: sum(r["forecast"] == status.value for r in rows) for status in FitStatus
    }
    return {
        "file": str(path),
        "kind": kind,
        "format": fmt,
        "encoding": used_encoding,
        "fps": _fraction_text(project.fps),
        "fps_display": format_fps(project.fps),
        "sample_rate": project.sample_rate,
        "token_rate": _fraction_text(INDEXTTS2_TOKEN_RATE),
        "mel_rate": _fraction_text(INDEXTTS2_MEL_RATE),
        "lines": rows,
        "problems": problems,
        "skipped": skipped,
        "notes": notes,
        "summary": {
            "lines": len(rows),
            **counts,
            "errors": sum(p["severity"] == "error" for p in problems),
            "warnings": sum(p["severity"] == "warning" for p in problems),
        },
    }


def _print_table(report: dict[str, Any]) -> None:
    print(
        f"{report['file']}: {report['kind']} ({report['format']}, {report['encoding']}), "
        f"{report['fps_display']} fps, {report['sample_rate']} Hz, "
        f"budgets at {float(Fraction(report['token_rate'])):g} tokens/s and "
        f"{float(Fraction(report['mel_rate'])):.2f} mel frames/s"
    )
    header = (
        f"{'#':>3}  {'in':<11}  {'out':<11}  {'frames':>6}  {'sec':>7}  {'tokens':>6}  "
        f"{'mel':>5}  {'samples':>8}  {'fit':<10}  text"
    )
    print(header)
    print("-" * len(header))
    for row in report["lines"]:
        text = row["speech_text"]
        if row["character"]:
            text = f"[{row['character']}] {text}"
        if len(text) > 48:
            text = text[:47] + "…"
        print(
            f"{row['index']:>3}  {row['timecode_in']:<11}  {row['timecode_out']:<11}  "
            f"{row['slot_frames']:>6}  {row['slot_seconds']:>7.3f}  {row['token_budget']:>6}  "
            f"{row['mel_frame_budget']:>5}  {row['output_samples']:>8}  {row['forecast']:<10}  "
            f"{text}"
        )
    flagged = [r for r in report["lines"] if r["forecast"] != "fits" or r["rate_warning"]]
    if flagged:
        print()
        for row in flagged:
            extra = f" {row['rate_warning']}" if row["rate_warning"] else ""
            print(f"  line {row['index']}: {row['forecast']}: {row['forecast_message']}{extra}")
    if report["problems"]:
        print()
        print(f"{len(report['problems'])} problem(s) in the file:")
        for p in report["problems"]:
            where = f"line {p['line_number']}" if p["line_number"] else "file"
            print(f"  {where}: {p['severity']}: {p['message']}")
    for note in report["notes"]:
        print(f"note: {note}")
    s = report["summary"]
    print(
        f"\n{s['lines']} line(s): {s['fits']} fit, {s['tight']} tight, "
        f"{s['impossible']} impossible; {report['skipped']} cue(s) skipped."
    )


def run_info(args: argparse.Namespace) -> int:
    """`dubstudio info`."""
    report = info_report(
        args.file,
        fps=args.fps,
        sample_rate=args.sample_rate,
        strict=args.strict,
        encoding=args.encoding,
    )
    if args.json:
        json.dump(report, sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        _print_table(report)
    return 0


def run_new(args: argparse.Namespace) -> int:
    """`dubstudio new`."""
    output: Path = args.output.absolute()
    if output.suffix != PROJECT_SUFFIX:
        output = output.with_name(output.name + PROJECT_SUFFIX)
    if output.exists() and not args.force:
        raise ProjectFileError(f"{output} already exists; choose another name or add --force.")
    if not output.parent.is_dir():
        raise ProjectFileError(f"Folder {output.parent} does not exist; create it first.")
    fps = parse_fps(args.fps) if args.fps else DEFAULT_FPS
    project, result = _project_from_subtitles(
        args.subtitles, fps, args.sample_rate, strict=args.strict, encoding=args.encoding
    )
    if args.video is not None:
        if not args.video.exists():
            raise DubStudioError(f"Video {args.video} does not exist; check the path.")
        project.set_video_path(str(args.video.absolute()))
    project.set_setting("source_subtitles", str(args.subtitles.absolute()))
    saved = save_project(project, output)
    characters = ", ".join(project.characters) or "none named"
    print(
        f"Created {saved}: {len(project)} line(s) at {format_fps(fps)} fps, "
        f"{project.sample_rate} Hz; characters: {characters}."
    )
    if args.fps is None:
        print(f"note: no --fps given; assumed {format_fps(fps)} fps.")
    for problem in result.problems:
        print(f"  {problem}")
    if result.skipped:
        print(f"{result.skipped} broken cue(s) skipped (listed above).")
    return 0
