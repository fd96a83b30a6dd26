"""`dubstudio edit [PROJECT]`: open the editor (the default command; no project = the demo)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `edit` sub-command."""
    parser = subparsers.add_parser(
        "edit",
        help="open the editor (default; without PROJECT it opens the demo project)",
        description=(
            "Open the DubStudio editor on a project file. Without PROJECT it opens a copy of "
            "the bundled demo (a short video, two voices) so you can press Render and listen."
        ),
    )
    parser.add_argument("project", nargs="?", type=Path, help="a .dubproj file")
    parser.add_argument(
        "--model", default="default", help="model bundle name or directory (default: bundled)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: best)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the Qt application."""
    from dubstudio.ui.app import run as run_editor

    return run_editor(args.project, model=args.model, device=args.device)
