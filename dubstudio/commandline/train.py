"""`dubstudio train ...` and `dubstudio eval MODEL`: the bundled model's training and evaluation."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

STAGES = (
    "corpus", "timed-features", "tokenizer", "align", "features", "t2s", "s2m", "t2e", "export",
    "range", "all",
)  # fmt: skip


def _share(text: str) -> float:
    """argparse type: a fraction from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {text})")
    return value


def register(subparsers: Any) -> None:
    """Add the ``train`` and ``eval`` sub-commands."""
    train = subparsers.add_parser(
        "train",
        help="train the bundled default voice model (corpus, tokenizer, t2s, s2m, t2e, export)",
        description="Reproduce the bundled model: `dubstudio train all` runs every stage.",
    )
    train.add_argument("stage", choices=STAGES)
    train.add_argument("--data", default="data", help="corpus and features directory")
    train.add_argument("--runs", default="runs", help="checkpoints and loss logs")
    train.add_argument("--out", default="resources/models/dubstudio-small-en", help="bundle dir")
    train.add_argument("--size", default="default", choices=("default", "tiny"))
    train.add_argument("--name", default="dubstudio-small-en", help="bundle name (export)")
    train.add_argument("--steps", type=int, default=100000, help="step cap per trainer")
    train.add_argument("--minutes", type=float, default=30.0, help="time cap per trainer")
    train.add_argument("--sentences", type=int, default=600, help="training sentences (corpus)")
    train.add_argument("--test-sentences", type=int, default=24, help="held-out sentences")
    train.add_argument(
        "--test-only",
        action="store_true",
        help="corpus: only the held-out split, enough for 'dubstudio eval' (1,920 utterances)",
    )
    train.add_argument(
        "--range-for-every-engine",
        action="store_true",
        help="corpus: give the RHVoice and Pico voices (no range control) their style's pitch "
        "range by WORLD resynthesis too",
    )
    train.add_argument(
        "--tokenizer-minutes", type=float, default=5.0, help="time cap of the tokenizer in 'all'"
    )
    train.add_argument(
        "--init",
        help="bundle (directory or name) whose T2S and S2M weights a new run starts from",
    )
    train.add_argument(
        "--t2s-start-stage",
        type=int,
        choices=(1, 2, 3),
        default=1,
        help="2: skip T2S stage 1 and re-run stages 2 and 3 on the --init model; 3: only the "
        "fine-tuning stage (both conditioners frozen)",
    )
    train.add_argument(
        "--t2s-end-stage",
        type=int,
        choices=(2, 3),
        default=3,
        help="2: stop after T2S stage 2 (with --t2s-start-stage 2, only the emotion "
        "conditioner retrains, on the whole budget)",
    )
    train.add_argument(
        "--s2m-cross-prompt",
        type=_share,
        default=0.0,
        help="share (0-1) of S2M prompts cut from another utterance of the speaker, as at "
        "inference (each such step costs about three plain ones)",
    )
    train.add_argument(
        "--s2m-calm-prompts",
        action="store_true",
        help="cut those S2M prompts from the speaker's calm readings and give the decoder a "
        "calm reading's style vector, as at inference (emotions then reach the decoder through "
        "the codes and GPT latents only)",
    )
    train.add_argument(
        "--pitch-bins",
        type=int,
        choices=(3, 5),
        default=3,
        help="features: pitch levels per phone in the semantic codes (5 adds very low and very "
        "high); the model stages follow the features, starting from an --init bundle with "
        "fewer levels by refining its code tables",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1, help="torch threads")
    train.set_defaults(func=_run_train)

    ev = subparsers.add_parser(
        "eval", help="evaluate a model bundle and write its model card table"
    )
    ev.add_argument("model", help="bundle directory or name")
    ev.add_argument("--data", default="data", help="corpus with the held-out split")
    ev.add_argument("--runs", default="runs", help="checkpoints (for the GRL probe)")
    ev.add_argument("--lines", type=int, default=12, help="held-out sentences used")
    ev.add_argument(
        "--emotion-lines", type=int, default=3, help="held-out sentences per emotion measure"
    )
    ev.add_argument(
        "--emotion-draws",
        type=int,
        default=1,
        help="T2S draws (seeds) per emotion line, calm's included; the changes are of the means",
    )
    ev.add_argument("--card", action="store_true", help="write the table into MODEL_CARD.md")
    ev.add_argument("--threads", type=int, default=1)
    ev.set_defaults(func=_run_eval)


def _progress(fraction: float, stage: str) -> None:
    print(f"\r{stage}: {100 * fraction:5.1f} %", end="", file=sys.stderr, flush=True)


def _run_train(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    if args.stage == "all":
        # The tokenizer comes first: it aligns the voices whose engines give no phone timings.
        # Then it continues on every voice beside T2S and S2M, which are independent too (S2M
        # re-reads the T2S checkpoint for its GPT latents as it improves), one thread each.
        _run_stages(args, ("corpus", "timed-features"))
        _run_stages(args, ("tokenizer",), minutes=args.tokenizer_minutes)
        _run_stages(args, ("align", "features"))
        _run_parallel(args, {"tokenizer": args.tokenizer_minutes, "t2s": args.minutes,
                             "s2m": args.minutes}, steps={"tokenizer": 2 * args.steps})  # fmt: skip
        _run_stages(args, ("t2e", "export"))
    else:
        _run_stages(args, (args.stage,))
    return 0


def _run_parallel(
    args: argparse.Namespace, minutes: dict[str, float], steps: dict[str, int] | None = None
) -> None:
    """Run training stages as side-by-side processes (one thread each); ``steps`` overrides the
    step cap of some (a resumed trainer's cap counts the steps it already made)."""
    import subprocess

    t0 = time.monotonic()
    procs = {}
    for stage, mins in minutes.items():
        cap = (steps or {}).get(stage, args.steps)
        cmd = [sys.executable, "-m", "dubstudio.cli", "train", stage, "--data", args.data,
               "--runs", args.runs, "--size", args.size, "--steps", str(cap),
               "--minutes", str(mins), "--seed", str(args.seed), "--threads", "1",
               "--s2m-cross-prompt", str(args.s2m_cross_prompt)]  # fmt: skip
        if args.s2m_calm_prompts:
            cmd.append("--s2m-calm-prompts")
        if args.init:
            cmd += ["--init", args.init, "--t2s-start-stage", str(args.t2s_start_stage)]
        cmd += ["--t2s-end-stage", str(args.t2s_end_stage)]
        procs[stage] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    failed = [stage for stage, proc in procs.items() if proc.wait() != 0]
    if failed:
        raise SystemExit(f"training stage(s) {', '.join(failed)} failed; see {args.runs}/*.log")
    print(f"{', '.join(minutes)}: done in {time.monotonic() - t0:.0f} s", flush=True)


def _run_stages(
    args: argparse.Namespace, stages: tuple[str, ...], minutes: float | None = None
) -> None:
    from dubstudio.training import workflow
    from dubstudio.training.corpus import CorpusPlan

    plan = CorpusPlan(
        train_sentences=args.sentences,
        test_sentences=args.test_sentences,
        test_only=args.test_only,
        range_for_every_engine=args.range_for_every_engine,
    )
    init = None
    if args.init:
        from dubstudio.engine.bundles import load_bundle

        init = load_bundle(args.init).root
    for stage in stages:
        t0 = time.monotonic()
        if stage == "export":
            path = workflow.export_bundle(
                args.data, args.runs, args.out, size=args.size, name=args.name, init=init
            )
            print(f"bundle written to {path}")
        elif stage == "range":
            path = _range_target(args, init)
            fit = workflow.fit_bundle_range(args.data, path, seed=args.seed, on_progress=_progress)
            print(
                f"\nemotion range of {path}, from {fit.recordings} recordings and "
                f"{fit.renders} lines x 8 renders (log ratio of log-F0 spreads against calm; "
                "corpus - model = added):"
            )
            for line in fit.lines():
                print(f"  {line}")
        else:
            result = workflow.run_stage(
                stage,
                args.data,
                args.runs,
                size=args.size,
                steps=args.steps,
                minutes=args.minutes if minutes is None else minutes,
                seed=args.seed,
                plan=plan,
                init=init,
                t2s_start_stage=args.t2s_start_stage,
                t2s_end_stage=args.t2s_end_stage,
                s2m_cross_prompt=args.s2m_cross_prompt,
                s2m_calm_prompts=args.s2m_calm_prompts,
                pitch_bins=args.pitch_bins,
                on_progress=_progress,
            )
            if isinstance(result, dict):
                print(result)
        print(f"\n{stage}: done in {time.monotonic() - t0:.0f} s", flush=True)


def _run_eval(args: argparse.Namespace) -> int:
    import torch

    from dubstudio.training.evaluate import evaluate, format_table, write_card

    torch.set_num_threads(args.threads)
    results = evaluate(
        args.model,
        args.data,
        args.runs,
        lines=args.lines,
        emotion_lines=args.emotion_lines,
        emotion_draws=args.emotion_draws,
    )
    table = format_table(results)
    print(table)
    if args.card:
        print(f"written to {write_card(args.model, table)}")
    return 0


def _range_target(args: argparse.Namespace, init: Any) -> Any:
    """The bundle `train range` fits: ``--out``, first copied from ``--init`` when that is
    another bundle."""
    import shutil
    from pathlib import Path

    out = Path(args.out)
    if init is not None and out.resolve() != Path(init).resolve():
        shutil.copytree(init, out, dirs_exist_ok=True)
    if not (out / "bundle.json").is_file():
        raise SystemExit(f"train range: {out} is not a bundle; pass --init BUNDLE to copy one.")
    return out
