"""`dubstudio render INPUT`: render a project, a subtitle file or a recipe headless, then export.

INPUT is a ``.dubproj`` project, a subtitle file (SRT/ASS/SSA/VTT; one ``--voice`` is enough for
a first dub) or a render recipe (``.json``). Audio goes to the render cache (beside a project,
else the user cache), so re-running renders only what changed; Ctrl-C stops after the current
step and keeps everything cached (and the project's takes saved).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SUBTITLE_SUFFIXES = (".srt", ".ass", ".ssa", ".vtt")
# Save the project at most this often while rendering (a kill loses at most this much).
_SAVE_INTERVAL_S = 2.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `render` sub-command."""
    parser = subparsers.add_parser(
        "render",
        help="render lines headless and export the mix, stems, clips and recipe",
        description=(
            "Render every line of a project, subtitle file or recipe that has no current take "
            "(cached lines cost nothing), then write the requested exports."
        ),
    )
    parser.add_argument(
        "input", help="project (.dubproj), subtitles (.srt/.ass/.vtt) or recipe (.json)"
    )
    parser.add_argument(
        "--voice", metavar="REF.wav", help="voice for lines without a voice profile"
    )
    parser.add_argument(
        "--emotion",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="emotion for every line, e.g. --emotion happy=0.8 --emotion alpha=0.7 (repeatable)",
    )
    parser.add_argument(
        "--model", default=None, help="model name or directory (default: the bundled model)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    parser.add_argument(
        "--fps", default=None, help="frame rate for subtitle input (default 24000/1001)"
    )
    parser.add_argument(
        "--sample-rate", type=int, default=None, help="output rate for subtitle input"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="flow-matching steps (quality vs speed)"
    )
    parser.add_argument(
        "--out", metavar="MIX.wav", help="write the mixed dialogue track (.wav or .flac)"
    )
    parser.add_argument("--stems", metavar="DIR", help="write one stem per character into DIR")
    parser.add_argument("--clips", metavar="DIR", help="write one clip per line into DIR")
    parser.add_argument("--recipe", metavar="FILE", help="write the render recipe (JSON)")
    parser.add_argument(
        "--subtitles-out", metavar="FILE", help="write the subtitles back (.srt/.ass)"
    )
    parser.add_argument(
        "--start-timecode", metavar="HH:MM:SS:FF", help="programme start (BWF time reference)"
    )
    parser.add_argument("--cache", metavar="DIR", help="render cache folder")
    parser.add_argument(
        "--cache-max-gb", type=float, default=None, help="cache size limit (least recently used go)"
    )
    parser.add_argument("--bit-depth", type=int, choices=(16, 24, 32), default=None)
    parser.add_argument(
        "--soft-limit", action="store_true", help="soft-limit peaks instead of clipping"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.set_defaults(func=run)


class _StopFlag:
    """Ctrl-C sets the flag; the engine notices within one step. A second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        print("\nStopping after the current step (Ctrl-C again to abort)...", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def __call__(self) -> bool:
        return self.event.is_set()


class _LazySynthesizer:
    """Loads the model on first use; the bundle's identity is known without loading it."""

    def __init__(self, load: Any) -> None:
        self._load = load
        self._synth: Any = None
        self.identity = ""

    def _get(self) -> Any:
        if self._synth is None:
            self._synth = self._load()
        return self._synth

    def synthesize(self, request: Any, **kwargs: Any) -> Any:
        return self._get().synthesize(request, **kwargs)

    @property
    def loaded(self) -> bool:
        """Whether the model was needed."""
        return self._synth is not None


def _emotion_override(values: list[str]) -> Any:
    from dubstudio.core.errors import ValidationError
    from dubstudio.core.model import EmotionSpec

    if not values:
        return None
    parsed: dict[str, float] = {}
    for item in values:
        name, sep, value = item.partition("=")
        try:
            parsed[name.strip().lower()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValidationError(f"--emotion {item!r}: write NAME=VALUE, e.g. happy=0.8.")
    alpha = parsed.pop("alpha", 1.0)
    return EmotionSpec.from_values(alpha=alpha, **parsed)


def _load_input(args: argparse.Namespace) -> tuple[Any, str]:
    """(project, kind) for the INPUT argument; kind is ``project``, ``subtitles`` or ``recipe``."""
    from dubstudio.core.errors import ValidationError
    from dubstudio.services.recipe import is_recipe, project_from_recipe

    path = Path(args.input)
    if not path.exists():
        raise ValidationError(f"{path} does not exist.")
    if is_recipe(path):
        project, _ = project_from_recipe(path)
        return project, "recipe"
    if path.suffix.lower() in SUBTITLE_SUFFIXES:
        from dubstudio.core.model import Project
        from dubstudio.core.subtitles import cues_to_lines, read_subtitles
        from dubstudio.core.timing import DEFAULT_FPS, DEFAULT_SAMPLE_RATE, parse_fps

        fps = parse_fps(args.fps) if args.fps else DEFAULT_FPS
        imported = read_subtitles(path)
        lines, problems = cues_to_lines(imported.cues, fps)
        for problem in [*imported.problems, *problems]:
            logger.warning("%s: %s", path.name, problem)
        # Stable ids: seeds derive from them, so re-running the same file hits the cache.
        for number, line in enumerate(lines, start=1):
            line.id = f"cue{number:05d}"
        project = Project(
            fps=fps,
            sample_rate=args.sample_rate or DEFAULT_SAMPLE_RATE,
            lines=lines,
            path=path.with_suffix(".dubproj").resolve(),
        )
        return project, "subtitles"
    from dubstudio.core.projectfile import load_project

    return load_project(path), "project"


def run(args: argparse.Namespace) -> int:
    """Render and export; returns the exit status (130 when interrupted)."""
    from dubstudio.engine.api import VoiceRef
    from dubstudio.services.cache import RenderCache, project_cache_dir, user_cache_dir
    from dubstudio.services.export import export_clips, export_mix, export_subtitles
    from dubstudio.services.recipe import build_recipe, write_recipe
    from dubstudio.services.render_service import RenderJob, RenderProgress, RenderService
    from dubstudio.services.requests import RequestOptions

    project, kind = _load_input(args)
    if args.start_timecode:
        project.set_setting("programme_start_timecode", args.start_timecode)
    emotion = _emotion_override(args.emotion)
    voice = VoiceRef.from_file(args.voice) if args.voice else None
    if args.cache:
        cache_root = Path(args.cache)
    elif kind == "project" and project.path is not None:
        cache_root = project_cache_dir(project.path)
    else:
        cache_root = user_cache_dir()
    cache = RenderCache(cache_root)
    if args.cache_max_gb is not None:
        cache.max_bytes = int(args.cache_max_gb * 1024**3)
    cache.scrub()

    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer

    model_name = args.model or str(project.settings.get("model", "default"))
    bundle = load_bundle(model_name)
    # The weights load only when a line misses the cache: a re-run with nothing changed is fast.
    synthesizer = _LazySynthesizer(lambda: Synthesizer.from_bundle(bundle, device=args.device))
    synthesizer.identity = bundle.identity
    options = RequestOptions(default_voice=voice, emotion_override=emotion, cfm_steps=args.steps)

    status: dict[str, str] = {}
    bar: Any = None
    last_save = time.monotonic()

    def listener(event: str, job: RenderJob, progress: RenderProgress) -> None:
        if event in ("finished", "cached", "failed"):
            status[job.line_id] = {"finished": "rendered"}.get(event, event)
            if bar is not None:
                bar.update(job.expected_seconds)
                bar.set_postfix(
                    lines=f"{progress.lines_done}/{progress.lines_total}", hits=progress.cache_hits
                )

    service = RenderService(
        project,
        cache,
        model_identity=synthesizer.identity,
        options=options,
        listener=listener,
        watch=False,
    )
    queued = service.plan()
    for line_id in service.problems:
        status[line_id] = "failed"
    quiet = args.json or not sys.stderr.isatty()
    if not quiet and queued:
        from tqdm import tqdm

        bar = tqdm(
            total=round(service.progress.audio_seconds_total, 2),
            unit="s",
            desc="rendering",
            file=sys.stderr,
            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}{postfix}]",
        )
    interrupted = False
    with _StopFlag() as stop:
        try:
            while len(service) and not stop():
                service.run_next(synthesizer, should_stop=stop)
                if kind == "project" and time.monotonic() - last_save > _SAVE_INTERVAL_S:
                    _save(project)
                    last_save = time.monotonic()
        finally:
            if bar is not None:
                bar.close()
            if kind == "project":
                _save(project)
        interrupted = stop()
    for line_id, problem in service.problems.items():
        logger.warning("Line %s: %s", line_id, problem)

    files: list[str] = []
    mix_info: dict[str, Any] | None = None
    if not interrupted:
        if args.out or args.stems:
            result = export_mix(
                project,
                cache,
                args.out,
                stems_dir=args.stems,
                bit_depth=args.bit_depth,
                soft_limiter=args.soft_limit,
                missing_ok=bool(service.problems),
            )
            files += [str(p) for p in result.files]
            if result.mix is not None:
                mix_info = {
                    "samples": result.mix.samples,
                    "sample_rate": result.mix.sample_rate,
                    "peak_dbfs": round(result.mix.peak_dbfs, 2) if result.mix.peak > 0 else None,
                    "clipped_samples": result.mix.clipped_samples,
                    "clipped_lines": result.mix.clipped_lines,
                }
        if args.clips:
            clips = export_clips(
                project, cache, args.clips, bit_depth=args.bit_depth, missing_ok=True
            )
            files += [str(p) for p in clips.files]
        if args.subtitles_out:
            files.append(str(export_subtitles(project, args.subtitles_out)))
        if args.recipe:
            recipe_path = Path(args.recipe)
            recipe = build_recipe(
                project,
                model_identity=synthesizer.identity,
                model_name=bundle.name,
                cache=cache,
                options=options,
                base_dir=recipe_path.resolve().parent,
            )
            files.append(str(write_recipe(recipe, recipe_path)))

    progress = service.progress
    per_line = []
    for index, line in enumerate(project.lines):
        take = line.active_take
        budget = project.line_budget(line)
        per_line.append(
            {
                "index": index + 1,
                "id": line.id,
                "start_sample": budget.start_sample,
                "budget_samples": budget.slot_samples if line.fit_mode.value != "natural" else None,
                "rendered_samples": take.n_samples if take is not None else None,
                "status": status.get(line.id, "current" if take is not None else "empty"),
                "problem": service.problems.get(line.id),
            }
        )
    summary = {
        "input": str(args.input),
        "kind": kind,
        "model": {
            "name": bundle.name,
            "identity": synthesizer.identity,
            "loaded": synthesizer.loaded,
        },
        "cache": str(cache_root),
        "lines": len(project.lines),
        "rendered": sum(1 for s in status.values() if s == "rendered"),
        "cached": progress.cache_hits,
        "failed": sum(1 for s in status.values() if s == "failed"),
        "seconds": round(
            sum((p["rendered_samples"] or 0) for p in per_line) / project.sample_rate, 3
        ),
        "render_seconds": round(progress.render_seconds, 3),
        "interrupted": interrupted,
        "mix": mix_info,
        "files": files,
        "per_line": per_line,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['lines']} lines: {summary['rendered']} rendered, {summary['cached']} from "
            f"cache, {summary['failed']} failed; {summary['seconds']} s of audio."
        )
        if mix_info and mix_info["clipped_samples"]:
            print(f"Warning: the mix clips in {mix_info['clipped_samples']} samples.")
        for path in files:
            print(f"wrote {path}")
        if interrupted:
            print("Interrupted: rendered lines are cached; run the same command to continue.")
    if service.problems and not interrupted:
        for line_id, problem in service.problems.items():
            print(f"line {line_id}: {problem}", file=sys.stderr)
    if interrupted:
        return 130
    if service.problems:
        return 1
    return 0


def _save(project: Any) -> None:
    from dubstudio.core.projectfile import save_project

    if project.path is not None:
        save_project(project, project.path)


def main(argv: list[str] | None = None) -> int:
    """Run `render` alone (``python -m dubstudio.commandline.render ...``), as `dubstudio` would."""
    from dubstudio.core.errors import DubStudioError

    parser = argparse.ArgumentParser(prog="dubstudio")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["render", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2))
    try:
        return run(args)
    except DubStudioError as exc:
        print(f"dubstudio: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dubstudio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
