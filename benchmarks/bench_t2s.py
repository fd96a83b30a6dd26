"""T2S decoding throughput, variants measured side by side in one run (random weights).

Compares, in tokens per second of generated semantic codes ("exact" mode so every variant
produces the same number of tokens): sampling vs beam-3, KV cache vs full recomputation,
1 line vs a batch of 8, and the cost of the official teacher-forced latent pass against
reusing the states captured while decoding (with the relative difference between the two).

    python benchmarks/bench_t2s.py [--tokens 120] [--device cpu] [--threads 1] [--official-width]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import torch

from dubstudio.engine.device import select_device
from dubstudio.engine.t2s import ConformerConfig, DecodeParams, T2SConfig, UnifiedVoice


def bench_config(official_width: bool) -> T2SConfig:
    """A small but not tiny model: real vocabularies and table sizes, narrow and shallow."""
    if official_width:
        return T2SConfig.official()
    cond = ConformerConfig(output_size=128, linear_units=256, attention_heads=2, num_blocks=1)
    return dataclasses.replace(
        T2SConfig.official(),
        cond_input_dim=80,
        model_dim=256,
        layers=6,
        heads=4,
        number_text_tokens=2000,
        speaker=cond,
        emotion=cond,
        emo_perceiver_dim=128,
    )


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Best wall time of `repeats` runs (after one warm-up run)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=120, help="codes per line (exact mode)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch default; 1 gives the steadiest ratios on a shared CPU)",
    )
    parser.add_argument("--official-width", action="store_true", help="use the 1280x24 config")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    torch.manual_seed(0)
    config = bench_config(args.official_width)
    model = UnifiedVoice.from_config(config).to(device)
    feats = torch.randn(1, 200, config.cond_input_dim, device=device)
    lat, emo = model.speaker_latents(feats), model.emotion_vector(feats)
    gen = torch.Generator(device=device)
    text = torch.randint(2, config.number_text_tokens, (30,), device=device)
    t = args.tokens

    def run(params: DecodeParams, lines: int = 1, tokens: int = t) -> Callable[[], object]:
        def go() -> object:
            gen.manual_seed(0)
            return model.generate(
                lat, emo, [text] * lines, budgets=[tokens] * lines, mode="exact",
                params=params, generator=gen,
            )  # fmt: skip

        return go

    print(
        f"T2S decoding benchmark: D={config.model_dim}, layers={config.layers}, "
        f"vocab={config.number_mel_codes}, text=30 tokens, {t} codes per line, device={device}, "
        f"threads={torch.get_num_threads()}"
    )
    rows: list[tuple[str, float]] = []

    def report(name: str, seconds: float, tokens: int) -> float:
        rate = tokens / seconds
        rows.append((name, rate))
        print(f"  {name:<34} {rate:9.1f} tok/s  ({seconds:.3f} s for {tokens} tokens)")
        return rate

    sampling = report("sampling, 1 line, KV cache", timed(run(DecodeParams.sampling()), device), t)
    beam = report("beam-3, 1 line, KV cache", timed(run(DecodeParams()), device), t)
    nocache = report(
        "sampling, 1 line, no KV cache",
        timed(run(DecodeParams.sampling(use_cache=False)), device),
        t,
    )
    batch8_s = timed(run(DecodeParams.sampling(), lines=8), device)
    batch8 = report("sampling, batch of 8, KV cache", batch8_s, 8 * t)
    beam8_s = timed(run(DecodeParams(), lines=8), device)
    beam8 = report("beam-3, batch of 8, KV cache", beam8_s, 8 * t)

    # Latent pass: the official second (teacher-forced) pass vs states captured while decoding.
    gen.manual_seed(0)
    out = model.decode(
        lat, emo, [text] * 8, budgets=[t] * 8, mode="exact",
        params=DecodeParams.sampling(), generator=gen, capture_hidden=True,
    )  # fmt: skip
    decode_s = batch8_s

    def latent_pass() -> list[torch.Tensor]:
        return model.latents(lat, emo, [text] * 8, out.codes, budgets=[t] * 8)

    latent_s = timed(latent_pass, device)
    official = latent_pass()
    assert out.hidden is not None
    rel = [float((h - o).norm() / o.norm()) for h, o in zip(out.hidden, official, strict=True)]
    first = max(float((h[0] - o[0]).abs().max()) for h, o in zip(out.hidden, official, strict=True))

    print("Ratios (same run, same machine):")
    print(f"  beam-3 / sampling speed (1 line):        {beam / sampling:6.3f}")
    print(f"  beam-3 / sampling speed (batch of 8):    {beam8 / batch8:6.3f}")
    print(f"  KV cache / no cache speed (1 line):      {sampling / nocache:6.2f}x")
    print(f"  batch of 8 / 1 line throughput:          {batch8 / sampling:6.2f}x")
    print(
        f"  latent pass time / decoding time (8x{t}): {latent_s / decode_s:6.3f}  "
        f"({latent_s * 1000:.0f} ms vs {decode_s * 1000:.0f} ms)"
    )
    print(
        "  captured-while-decoding vs official latents: relative L2 difference "
        f"mean {sum(rel) / len(rel):.3f} (max {max(rel):.3f}); row 0 max abs diff {first:.2e}"
    )
    print(
        "  -> keep the official second pass: it costs little next to decoding, and the "
        "captured states are not the ones S2M was trained on (mel positions k+2 vs k+1)."
    )


if __name__ == "__main__":
    main()
