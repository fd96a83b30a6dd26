"""`dubstudio` command line: a thin dispatcher over the sub-command modules in `commandline/`.

Each sub-command module exposes ``register(subparsers)`` and keeps its heavy imports (torch, Qt,
training code) inside the function that runs the command, so `dubstudio --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from dubstudio import __version__
from dubstudio.core.errors import DubStudioError

# Sub-command modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "dubstudio.commandline.project",  # info, new
    "dubstudio.commandline.editor",  # edit (also the default with no arguments)
    "dubstudio.commandline.render",  # render
    "dubstudio.commandline.models",  # models list | verify | fetch
    "dubstudio.commandline.train",  # train ..., eval
    "dubstudio.commandline.bench",  # bench
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="dubstudio",
        description="DubStudio: dub a video line by line with speech that fits the picture.",
    )
    parser.add_argument("--version", action="version", version=f"dubstudio {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A sub-command whose module is not in this checkout yet is left out, not fatal.
            if exc.name != module_name:
                raise
            logging.getLogger(__name__).debug("sub-command module %s not present", module_name)
            continue
        module.register(subparsers)
    return parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The registered sub-command names."""
    return parser._subparsers._group_actions[0].choices  # type: ignore[union-attr,return-value]


def _demo_hint() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1] / "resources" / "demo" / "demo.srt")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dubstudio` script; returns the process exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `dubstudio` alone opens the editor on the demo; `dubstudio PROJECT.dubproj` opens a project
    # (global options such as -v may come first).
    first = next((i for i, a in enumerate(args_list) if not a.startswith("-")), len(args_list))
    asks_help = bool({"-h", "--help", "--version"} & set(args_list))
    if not asks_help and (first == len(args_list) or args_list[first] not in _commands(parser)):
        args_list.insert(first, "edit")
    if "edit" in args_list[first : first + 1] and "edit" not in _commands(parser):
        print(
            "dubstudio: the editor is not part of this build yet. Try "
            f"'dubstudio info {_demo_hint()}' to see the demo's line budgets.",
            file=sys.stderr,
        )
        return 1
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except DubStudioError as exc:
        print(f"dubstudio: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dubstudio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
