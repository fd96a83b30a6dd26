"""`dubstudio bench [NAME ...]`: run the benchmark scripts in the repository's benchmarks/ folder.

Each benchmark measures variants side by side in one run and prints their ratios; this command
only finds and runs them, so `dubstudio bench` and `python benchmarks/bench_x.py` are the same.
"""

from __future__ import annotations

import argparse
import runpy
import shlex
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `bench` sub-command."""
    parser = subparsers.add_parser(
        "bench",
        help="run benchmarks (side-by-side timings and ratios)",
        description="Run the benchmark scripts in benchmarks/ (all, or those named).",
    )
    parser.add_argument("names", nargs="*", help="benchmark names, e.g. t2s mixdown (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--args",
        default="",
        help="options passed to each benchmark, e.g. --args='--compare precision'",
    )
    parser.set_defaults(func=run)


def available() -> dict[str, Path]:
    """Benchmark name -> script path, from benchmarks/bench_<name>.py."""
    if not BENCH_DIR.is_dir():
        return {}
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def run(args: argparse.Namespace) -> int:
    """Run the selected benchmarks in this process, one after the other."""
    scripts = available()
    if not scripts:
        print(f"No benchmarks found in {BENCH_DIR} (they ship with the source checkout).")
        return 1
    if args.list:
        print("\n".join(scripts))
        return 0
    unknown = [n for n in args.names if n not in scripts]
    if unknown:
        print(f"Unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(scripts)}")
        return 2
    for name in args.names or list(scripts):
        print(f"== {name} ==", flush=True)
        saved_argv = sys.argv
        sys.argv = [str(scripts[name]), *shlex.split(args.args)]
        try:
            runpy.run_path(str(scripts[name]), run_name="__main__")
        finally:
            sys.argv = saved_argv
    return 0
