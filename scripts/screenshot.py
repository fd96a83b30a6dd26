"""Take the README screenshot: the editor on the demo project, with a rendered line.

Run under an X server (the picture of the video comes from the server, so offscreen Qt would show
it black):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py

It opens a copy of the demo project, renders the first two lines with the bundled default model
(or, when none is installed, a tiny random model that makes noise: pass ``--model tiny``), seeks
the video into the first line and saves ``docs/screenshot.png``. It also prints the GUI event-loop
lateness measured while rendering (a 10 ms QTimer; see `dubstudio.ui.latency`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--model", default="default", help="bundle name/dir, or 'tiny'")
    parser.add_argument("--lines", type=int, default=2, help="lines to render first")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for renders")
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="override sys.setswitchinterval (s)"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))

    from PySide6 import QtCore, QtWidgets

    from dubstudio.core.errors import DubStudioError
    from dubstudio.engine.bundles import create_tiny_bundle, load_bundle
    from dubstudio.ui import app as editor_app
    from dubstudio.ui import files
    from dubstudio.ui.main_window import EngineSetup, MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="dubstudio-shot-"))
    model: str | Path = args.model
    if model == "tiny":
        model = create_tiny_bundle(tmp / "tiny")
    else:
        try:
            load_bundle(model)
        except DubStudioError as exc:
            print(f"model {model!r} not available ({exc}); using a tiny random model")
            model = create_tiny_bundle(tmp / "tiny")

    qapp = editor_app.application()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    print(f"GIL switch interval {sys.getswitchinterval() * 1000:.1f} ms")
    window = MainWindow(engine=EngineSetup(model, "cpu"), cache_root=tmp / "cache")
    window.setProperty("skip_confirm", True)
    project_path = editor_app.demo_project_path(tmp / "demo")
    files.open_path(window, project_path, ask_recovery=False)
    window.resize(1560, 940)
    window.show()

    def spin(seconds: float, until: object = None) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            qapp.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            if until is not None and until():  # type: ignore[operator]
                return True
        return until is None

    # Baseline: the same probe with the engine idle (shows what the machine's load alone costs).
    window.latency.reset()
    window.latency.start()
    spin(5.0)
    window.latency.stop()
    print(
        f"idle baseline: max {window.latency.max_late_ms:.1f} ms, "
        f"p99 {window.latency.percentile(99):.1f} ms, "
        f"median {window.latency.percentile(50):.1f} ms over {window.latency.ticks} ticks"
    )

    lines = window.project.lines[: args.lines]
    window.latency.reset()
    during_load: dict[str, float] = {}

    def model_loaded(_text: str) -> None:
        # Loading weights is measured apart: it happens once per session.
        during_load["max"] = window.latency.max_late_ms
        window.latency.reset()

    window.engine.worker.model_loaded.connect(model_loaded)
    window.render_lines([line.id for line in lines])
    started = time.monotonic()
    done = spin(args.timeout, lambda: all(line.active_take is not None for line in lines))
    elapsed = time.monotonic() - started
    print(
        f"rendered {sum(line.active_take is not None for line in lines)}/{len(lines)} lines in "
        f"{elapsed:.1f} s; GUI event-loop lateness during the render: max "
        f"{window.latency.max_late_ms:.1f} ms, p99 {window.latency.percentile(99):.1f} ms, "
        f"median {window.latency.percentile(50):.1f} ms over {window.latency.ticks} ticks "
        f"of a 10 ms timer"
    )
    if "max" in during_load:
        print(f"(while the model loaded: max lateness {during_load['max']:.1f} ms)")
    if not done:
        print("warning: not every line finished rendering before the timeout")

    first = window.project.lines[0]
    window.select_line(first.id)
    window.timeline.view.setXRange(0, 21.5, padding=0)
    window.set_playhead(float(first.slot.start_seconds(window.project.fps)) + 1.0)
    spin(3.0, lambda: window.original_audio is not None)
    spin(1.5)  # let the video show the sought frame
    screen = window.screen() or QtWidgets.QApplication.primaryScreen()
    picture = screen.grabWindow(window.winId())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not picture.save(str(args.out)):
        print(f"could not write {args.out}")
        return 1
    print(f"saved {args.out} ({picture.width()}x{picture.height()})")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
