"""Pipeline stage costs: seconds of compute per second of audio, per stage, per model.

Stages: conditioning (per second of reference clip, paid once per voice), T2S (token decoding
plus the latent pass), S2M per Euler step, vocoder, and the whole line. Runs both tiny random
bundle kinds always, and the bundled default model (or ``--model NAME_OR_DIR``) when installed:
alternating ``--rounds`` times, with the ratios: ``--compare schedule`` (default) its decoder
schedule as shipped beside ``--compare-steps`` uniform Euler steps; ``--compare precision`` as
shipped (bf16 S2M and vocoder where the CPU computes bf16 natively) beside float32 S2M with
the ONNX Runtime vocoder; ``--compare candidates`` its T2S candidates per segment as shipped
beside one plain sample; ``--compare guidance`` lines in an emotion (``--emotion``, happy
unless given) with the bundle's emotion guidance as shipped beside none. Lines read in the
voice's own emotion unless ``--emotion`` names one.

    python benchmarks/bench_pipeline.py [--model default] [--lines 3] [--seconds 3] [--steps N]
        [--compare schedule|precision|candidates|guidance] [--emotion NAME]
        [--compare-steps 10] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from dubstudio.core.errors import DubStudioError
from dubstudio.core.model import EMOTION_NAMES
from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
from dubstudio.engine.bundles import create_tiny_bundle, load_bundle
from dubstudio.engine.pipeline import Synthesizer

LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "We will meet at the station at half past nine, unless the train is late again.",
]


def make_voice(folder: Path) -> Path:
    """A reference clip: espeak-ng speech when available, else a chirp."""
    path = folder / "voice.wav"
    if shutil.which("espeak-ng"):
        text = "This is the voice we clone for the benchmark. It speaks for about five seconds."
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    else:
        sr = 22050
        t = np.arange(5 * sr) / sr
        sf.write(path, (0.3 * np.sin(2 * np.pi * (110 + 30 * t) * t)).astype(np.float32), sr)
    return path


def emotion_request(name: str | None) -> EmotionRequest:
    """The emotion ``name`` at weight 1, or the voice's own (None)."""
    if name is None:
        return EmotionRequest()
    return EmotionRequest(mode="vector", vector=tuple(float(n == name) for n in EMOTION_NAMES))


def bench(
    label: str,
    syn: Synthesizer,
    voice: Path,
    lines: int,
    seconds: float,
    steps: int | None,
    emotion: str | None = None,
) -> dict[str, float]:
    """Print and return seconds per second of audio for each stage (``steps`` None: the
    bundle's default; ``emotion`` None: the voice's own)."""
    steps = steps or syn.bundle.cfm_steps
    ref_seconds = sf.info(str(voice)).duration
    vref = VoiceRef.from_file(voice)
    t0 = time.perf_counter()
    syn._voice(vref)  # conditioning, cold
    cond = time.perf_counter() - t0
    rate = syn.output_rate
    totals = {"t2s": 0.0, "s2m": 0.0, "vocoder": 0.0, "post": 0.0}
    audio_s = 0.0
    wall = 0.0
    for i in range(lines):
        request = SynthesisRequest(
            LINES[i % len(LINES)],
            vref,
            emotion=emotion_request(emotion),
            sample_rate=rate,
            target_samples=int(seconds * rate),
            seed=i,
            cfm_steps=steps,
        )
        t0 = time.perf_counter()
        result = syn.synthesize(request)
        wall += time.perf_counter() - t0
        for k in totals:
            totals[k] += result.stage_seconds.get(k, 0.0)
        audio_s += len(result.audio) / rate
    print(
        f"\n{label}  ({lines} lines x {seconds:g} s, {steps} CFM steps, {syn.device}, "
        f"{torch.get_num_threads()} threads)"
    )
    print(f"  {'stage':24s} {'s per s of audio':>18s}")
    print(f"  {'conditioning (per s ref)':24s} {cond / ref_seconds:18.4f}")
    print(f"  {'t2s':24s} {totals['t2s'] / audio_s:18.4f}")
    print(f"  {'s2m per step':24s} {totals['s2m'] / steps / audio_s:18.4f}")
    print(f"  {'s2m all steps':24s} {totals['s2m'] / audio_s:18.4f}")
    print(f"  {'vocoder':24s} {totals['vocoder'] / audio_s:18.4f}")
    print(f"  {'whole line (RTF)':24s} {wall / audio_s:18.4f}")
    return {
        "t2s": totals["t2s"] / audio_s,
        "s2m": totals["s2m"] / audio_s,
        "vocoder": totals["vocoder"] / audio_s,
        "line": wall / audio_s,
    }


Variant = tuple[Callable[[], None], int | None]  # (set the synthesizer up, CFM steps)


def compare_variants(
    title: str,
    syn: Synthesizer,
    voice: Path,
    args: argparse.Namespace,
    variants: dict[str, Variant],
) -> None:
    """Bench each variant in turn, ``args.rounds`` times alternating, then the ratios of the
    per-variant means against the first (the shipped set-up, restored at the end)."""
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in variants}
    for _ in range(args.rounds):
        for label, (apply, steps) in variants.items():
            apply()
            runs[label].append(
                bench(label, syn, voice, args.lines, args.seconds, steps, args.emotion)
            )
    next(iter(variants.values()))[0]()
    mean = {
        label: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for label, rs in runs.items()
    }
    first, *others = mean
    print(f"\n{title}, mean of {args.rounds} rounds (seconds per second of audio):")
    for other in others:
        for stage in mean[first]:
            a, b = mean[first][stage], mean[other][stage]
            print(f"  {stage:8s} {a:.4f} as shipped vs {b:.4f} ({other}): ratio {b / a:.2f}")


def _setting(syn: Synthesizer, name: str) -> Callable[[Any], Callable[[], None]]:
    """value -> a variant's ``apply`` that sets the component setting ``name`` to it."""
    return lambda value: lambda: setattr(syn.components, name, value)


def schedules(name: str, syn: Synthesizer, args: argparse.Namespace) -> dict[str, Variant]:
    """The bundle's decoder schedule (its steps and sway) vs uniform ``args.compare_steps``."""
    shipped, sway = syn.components.cfm_sway, _setting(syn, "cfm_sway")
    return {
        f"{name}, as shipped (sway {shipped:g})": (sway(shipped), args.steps),
        f"{name}, {args.compare_steps} uniform steps": (sway(0.0), args.compare_steps),
    }


def precisions(name: str, syn: Synthesizer, args: argparse.Namespace) -> dict[str, Variant]:
    """As shipped (bf16 S2M and vocoder on bf16-native CPUs) vs float32 S2M + ONNX vocoder."""
    from dubstudio.engine.vocoders.cpu import accelerated, resolve_backend

    shipped = syn.components.vocoder
    eager = getattr(shipped, "vocoder", shipped)  # the module inside a Bf16Vocoder
    fp32 = accelerated(eager, backend="onnx") if hasattr(eager, "vocode_graph") else shipped

    def use(vocoder: Any, bf16: bool) -> Callable[[], None]:
        def apply() -> None:
            syn.components.vocoder = vocoder
            syn.s2m_bf16 = bf16

        return apply

    return {
        f"{name}, as shipped (vocoder {resolve_backend('auto')})": (use(shipped, True), args.steps),
        f"{name}, float32 S2M, ONNX vocoder": (use(fp32, False), args.steps),
    }


def candidates(name: str, syn: Synthesizer, args: argparse.Namespace) -> dict[str, Variant]:
    """The bundle's T2S candidates per segment (`EngineComponents.t2s_candidates`) vs one."""
    shipped, use = syn.components.t2s_candidates, _setting(syn, "t2s_candidates")
    return {
        f"{name}, as shipped ({shipped} T2S candidates)": (use(shipped), args.steps),
        f"{name}, one T2S sample": (use(1), args.steps),
    }


def guidance(name: str, syn: Synthesizer, args: argparse.Namespace) -> dict[str, Variant]:
    """The bundle's emotion guidance (`EngineComponents.emotion_guidance`) vs none."""
    shipped, use = syn.components.emotion_guidance, _setting(syn, "emotion_guidance")
    return {
        f"{name}, {args.emotion}, as shipped (emotion guidance {shipped:g})": (
            use(shipped),
            args.steps,
        ),
        f"{name}, {args.emotion}, no emotion guidance": (use(0.0), args.steps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model name or directory")
    parser.add_argument("--lines", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=None, help="CFM steps (bundle default)")
    parser.add_argument("--compare-steps", type=int, default=10, help="uniform steps to compare")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the pair")
    parser.add_argument(
        "--compare",
        choices=("schedule", "precision", "candidates", "guidance"),
        default="schedule",
        help="schedule: shipped vs uniform steps; precision: bf16 paths vs float32 + ONNX; "
        "candidates: shipped T2S candidates vs one sample; guidance: emotion guidance as "
        "shipped vs none",
    )
    parser.add_argument(
        "--emotion",
        choices=EMOTION_NAMES,
        default=None,
        help="lines in this emotion at weight 1 (default: the voice's own; happy for "
        "--compare guidance)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args(argv)
    if args.compare == "guidance" and args.emotion is None:
        args.emotion = "happy"
    if args.threads:
        # On a busy machine one thread per process avoids oversubscription stalls.
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        voice = make_voice(folder)
        for kind, label in (
            ("fast", "tiny random bundle, fast kind (char text, tiny HiFi-GAN)"),
            ("small", "tiny random bundle, small kind (phonemes, GE2E, HiFi-GAN universal)"),
        ):
            tiny = Synthesizer.from_bundle(
                load_bundle(create_tiny_bundle(folder / kind, kind=kind)), args.device
            )
            bench(label, tiny, voice, args.lines, args.seconds, args.steps)
        try:
            bundle = load_bundle(args.model)
        except DubStudioError as exc:
            print(f"\nmodel '{args.model}' not available: {exc}")
            return 0
        syn = Synthesizer.from_bundle(bundle, args.device)
        name = f"{bundle.name} ({bundle.kind})"
        variants = {"precision": precisions, "candidates": candidates, "guidance": guidance}.get(
            args.compare, schedules
        )
        compare_variants(
            f"{args.compare} side by side", syn, voice, args, variants(name, syn, args)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
