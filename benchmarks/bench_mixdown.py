"""Mixdown/export of a long programme from cached takes: seconds and peak memory.

A synthetic project (default: 2,000 lines over 90 minutes at 23.976 fps, 48 kHz, four
characters, some overlapping lines) gets one cached take per line (exactly its slot's samples),
then the exports run from the cache: the 24-bit WAV mix alone at three block sizes, the FLAC mix,
the WAV mix plus four stems in one pass, and the per-line clips. For each: wall seconds, peak
Python/numpy heap (tracemalloc) and the process's peak resident memory (ru_maxrss; it also counts
file pages of the memory-mapped takes, which the kernel can drop at any time).

    python benchmarks/bench_mixdown.py [--lines 2000] [--minutes 90] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dubstudio.core.model import EmotionSpec, Line, Project
from dubstudio.services.cache import RenderCache
from dubstudio.services.export import export_clips, export_mix, programme_samples
from dubstudio.services.takes import make_take

CHARACTERS = ("Ann", "Bob", "Cleo", "Dev")


def build_project(n_lines: int, minutes: float, rate: int) -> Project:
    """Lines spread evenly, 60-90 % of each slot spoken, every 10th overlapping the next."""
    fps = Fraction(24000, 1001)
    total_frames = int(minutes * 60 * fps)
    step = total_frames // n_lines
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n_lines):
        start = i * step + int(rng.integers(0, max(1, step // 10)))
        length = max(12, int(step * rng.uniform(0.6, 0.9)))
        if i % 10 == 9:
            length += step // 2  # runs into the next line: overlaps sum
        lines.append(
            Line(
                text=f"Line number {i}.",
                start_frame=start,
                end_frame=start + length,
                character=CHARACTERS[i % 4],
            )
        )
    project = Project(fps=fps, sample_rate=rate, lines=lines)
    project.set_setting("programme_frames", total_frames)
    return project


def fill_cache(project: Project, cache: RenderCache) -> None:
    """One cached take per line (a decaying noise burst of exactly the slot's length)."""
    rng = np.random.default_rng(1)
    for line in project.lines:
        n = project.line_budget(line).slot_samples
        audio = (rng.standard_normal(n) * 0.1 * np.exp(-np.arange(n) / n)).astype(np.float32)
        key = f"{abs(hash(line.id)) % (1 << 60):016x}".ljust(64, "0")
        cache.put(key, audio, project.sample_rate)
        take = make_take(
            cache_key=key,
            sample_rate=project.sample_rate,
            n_samples=n,
            seed=0,
            emotion=EmotionSpec(),
            budget_samples=n,
            model_identity="bench",
            text=line.text,
            line_revision=line.revision,
        )
        project.update_line(line.id, takes=(take,), active_take_id=take.id)


def measure(label: str, work: Callable[[], Any]) -> dict[str, float]:
    """Run ``work`` once; wall and CPU seconds, tracemalloc peak MiB, ru_maxrss MiB after it.

    CPU seconds are reported beside wall seconds because the wall time of a disk-bound export
    on a shared machine varies with what else runs.
    """
    gc.collect()
    tracemalloc.start()
    began = time.perf_counter()
    cpu_began = time.process_time()
    work()
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"seconds": seconds, "cpu_seconds": cpu, "heap_mib": peak / 2**20, "maxrss_mib": rss}
    print(
        f"{label:<30} {seconds:7.2f} s wall {cpu:7.2f} s CPU   "
        f"heap peak {row['heap_mib']:8.1f} MiB   maxrss {rss:8.1f} MiB"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=90.0)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep the files")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_mixdown_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        project = build_project(args.lines, args.minutes, args.rate)
        cache = RenderCache(folder / "cache", max_bytes=1 << 40)
        began = time.perf_counter()
        fill_cache(project, cache)
        total = programme_samples(project)
        audio_s = sum(line.active_take.n_samples for line in project.lines) / args.rate  # type: ignore[union-attr]
        print(
            f"{args.lines} lines, {total / args.rate / 60:.1f} min programme at {args.rate} Hz, "
            f"{audio_s / 60:.1f} min of takes ({cache.size_bytes() / 2**20:.0f} MiB cached, "
            f"filled in {time.perf_counter() - began:.1f} s)"
        )
        out = folder / "out"
        rows = {}
        for block in (16384, 65536, 262144):
            rows[f"wav block {block}"] = measure(
                f"mix WAV 24-bit, block {block}",
                lambda block=block: export_mix(project, cache, out / "mix.wav", block_size=block),
            )
        rows["flac"] = measure(
            "mix FLAC 24-bit", lambda: export_mix(project, cache, out / "mix.flac")
        )
        rows["stems"] = measure(
            "mix WAV + 4 stems, one pass",
            lambda: export_mix(project, cache, out / "mix.wav", stems_dir=out / "stems"),
        )
        rows["clips"] = measure(
            f"{args.lines} per-line clips", lambda: export_clips(project, cache, out / "clips")
        )
        base = rows["wav block 65536"]["seconds"]
        print(f"realtime factor of the WAV mix: {total / args.rate / base:.0f}x")
        cpu_base = rows["wav block 65536"]["cpu_seconds"]
        for name, row in rows.items():
            print(
                f"  {name:<18} {row['seconds'] / base:5.2f}x wall, "
                f"{row['cpu_seconds'] / cpu_base:5.2f}x CPU of the WAV mix"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
