"""`dubstudio models list | verify | fetch`: find, check and download speech models."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `models` sub-command and its actions."""
    parser = subparsers.add_parser(
        "models",
        help="list, verify or fetch speech models",
        description="Find, check and download the speech models DubStudio renders with.",
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION", required=True)

    list_parser = actions.add_parser("list", help="list the models found on this machine")
    list_parser.set_defaults(func=run_list)

    verify = actions.add_parser(
        "verify",
        help="check a model's files, hashes and weight names",
        description="Check that every file of a model exists, matches its recorded hash, and "
        "holds exactly the weights the model expects (each wrong key is named).",
    )
    verify.add_argument("model", nargs="?", default="default", help="model name or directory")
    verify.add_argument("--no-keys", action="store_true", help="check files and hashes only (fast)")
    verify.set_defaults(func=run_verify)

    fetch = actions.add_parser(
        "fetch",
        help="download the official IndexTTS-2 model (about 6 GB)",
        description="Download IndexTeam/IndexTTS-2 and its four external models "
        "(w2v-bert-2.0, MaskGCT semantic codec, CAMPPlus, BigVGAN v2) from the Hugging Face "
        "hub into one directory. Interrupted downloads resume. Files placed under hf_cache/: "
        "semantic_codec_model.safetensors, campplus_cn_common.bin, bigvgan/, w2v-bert-2.0/.",
    )
    fetch.add_argument("name", choices=["indextts2"], help="the model to fetch")
    fetch.add_argument("--dir", default=None, help="target directory (default: user models dir)")
    fetch.add_argument("--cache-dir", default=None, help="huggingface_hub cache directory")
    fetch.add_argument(
        "--offline", action="store_true", help="use only files already in the hub cache"
    )
    fetch.set_defaults(func=run_fetch)


def run_list(args: argparse.Namespace) -> int:
    """Print one line per model found."""
    from dubstudio.engine.bundles import list_bundles, official_dir_candidates

    bundles = list_bundles()
    if not bundles:
        print("No models found.")
    for bundle in bundles:
        print(f"{bundle.name:24s} {bundle.kind:16s} {bundle.identity[:12]}  {bundle.root}")
    if not any(b.kind == "indextts2" for b in bundles):
        where = official_dir_candidates()[-1]
        print(f"(official IndexTTS-2 not installed; `dubstudio models fetch indextts2` -> {where})")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Verify one model; exit status 0 when it is intact, 1 otherwise."""
    from dubstudio.engine.bundles import load_bundle, verify_bundle

    bundle = load_bundle(args.model)
    report = verify_bundle(bundle, check_keys=not args.no_keys)
    for line in report.checked:
        print(f"ok       {line}")
    for line in report.problems:
        print(f"PROBLEM  {line}")
    if report.ok:
        print(f"{bundle.name}: intact ({len(report.checked)} checks)")
        return 0
    print(f"{bundle.name}: {len(report.problems)} problem(s) in {bundle.root}", file=sys.stderr)
    return 1


def run_fetch(args: argparse.Namespace) -> int:
    """Download the official model and verify its layout."""
    from pathlib import Path

    from dubstudio.engine.bundles import official_dir_candidates
    from dubstudio.engine.hub import fetch_official

    dest = Path(args.dir) if args.dir else official_dir_candidates()[-1]

    def progress(fraction: float, name: str) -> None:
        print(f"[{100 * fraction:5.1f} %] {name}", flush=True)

    fetch_official(
        dest,
        cache_dir=args.cache_dir,
        local_files_only=True if args.offline else None,
        on_progress=progress,
    )
    print(f"IndexTTS-2 is ready in {dest}; use it with --model {dest}")
    return 0
