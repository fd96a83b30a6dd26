"""Pipeline stage costs: seconds of compute per second of audio, per stage, per model.

Stages: conditioning (per second of reference clip, paid once per voice), T2S (token decoding
plus the latent pass), S2M per Euler step, vocoder, and the whole line. Runs both tiny random
bundle kinds always, and the bundled default model (or ``--model NAME_OR_DIR``) when installed:
its decoder schedule as shipped beside ``--compare-steps`` uniform Euler steps, alternating
``--rounds`` times, with the ratio of the two.

    python benchmarks/bench_pipeline.py [--model default] [--lines 3] [--seconds 3] [--steps N]
        [--compare-steps 10] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dubstudio.core.errors import DubStudioError
from dubstudio.engine.api import SynthesisRequest, VoiceRef
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


def bench(
    label: str, syn: Synthesizer, voice: Path, lines: int, seconds: float, steps: int | None
) -> dict[str, float]:
    """Print and return seconds per second of audio for each stage (``steps`` None: the
    bundle's default)."""
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
    return {"s2m": totals["s2m"] / audio_s, "line": wall / audio_s}


def compare_schedules(name: str, syn: Synthesizer, voice: Path, args: argparse.Namespace) -> None:
    """The bundle's decoder schedule (its steps and sway) vs uniform ``args.compare_steps``
    steps, alternating, then the ratios of the per-schedule means."""
    shipped_sway = syn.components.cfm_sway
    runs: dict[str, list[dict[str, float]]] = {"shipped": [], "uniform": []}
    for _ in range(args.rounds):
        syn.components.cfm_sway = shipped_sway
        label = f"{name}, as shipped (sway {shipped_sway:g})"
        runs["shipped"].append(bench(label, syn, voice, args.lines, args.seconds, args.steps))
        syn.components.cfm_sway = 0.0
        label = f"{name}, uniform schedule"
        runs["uniform"].append(
            bench(label, syn, voice, args.lines, args.seconds, args.compare_steps)
        )
    syn.components.cfm_sway = shipped_sway
    mean = {
        k: {s: float(np.mean([r[s] for r in v])) for s in ("s2m", "line")} for k, v in runs.items()
    }
    print(
        f"\nshipped schedule vs {args.compare_steps} uniform steps, mean of {args.rounds} rounds:"
    )
    for stage in ("s2m", "line"):
        a, b = mean["shipped"][stage], mean["uniform"][stage]
        print(f"  {stage:6s} {a:.4f} vs {b:.4f} s per s of audio  ({b / a:.2f}x faster)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model name or directory")
    parser.add_argument("--lines", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=None, help="CFM steps (bundle default)")
    parser.add_argument("--compare-steps", type=int, default=10, help="uniform steps to compare")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the pair")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    args = parser.parse_args(argv)
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
        compare_schedules(f"{bundle.name} ({bundle.kind})", syn, voice, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
