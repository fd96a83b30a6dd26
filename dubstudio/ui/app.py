"""Starting the editor: the QApplication, the demo project, the main window."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from PySide6 import QtGui, QtWidgets

from dubstudio.core.errors import DubStudioError
from dubstudio.ui import files
from dubstudio.ui.main_window import EngineSetup, MainWindow

logger = logging.getLogger(__name__)

#: The bundled demo (in a source checkout: resources/demo next to the package).
DEMO_DIR = Path(__file__).resolve().parents[2] / "resources" / "demo"
DEMO_PROJECT = "demo.dubproj"


def user_demo_dir() -> Path:
    """Writable copy of the demo (so the user can save it and its render cache lives there)."""
    from dubstudio.engine.bundles import user_data_dir

    return user_data_dir() / "demo"


def demo_project_path(target: Path | None = None) -> Path:
    """The demo project, copied to a writable folder on first use (or when the bundle is newer).

    Raises:
        DubStudioError: If this installation has no demo.
    """
    source = DEMO_DIR / DEMO_PROJECT
    if not source.is_file():
        raise DubStudioError(
            f"The demo project is not installed ({source} is missing); open a project instead: "
            "dubstudio edit PROJECT.dubproj"
        )
    target = target or user_demo_dir()
    copied = target / DEMO_PROJECT
    if not copied.is_file() or copied.stat().st_mtime < source.stat().st_mtime:
        target.mkdir(parents=True, exist_ok=True)
        for item in DEMO_DIR.iterdir():
            if item.is_file():
                shutil.copy2(item, target / item.name)
    return copied


def application(argv: list[str] | None = None) -> QtWidgets.QApplication:
    """The running QApplication (created on first call)."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        # QtMultimedia probes optional system libraries (VA-API, PipeWire) and logs every miss;
        # those lines mean nothing to a user.
        os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia.symbolsresolver=false")
        app = QtWidgets.QApplication(argv if argv is not None else sys.argv[:1])
        app.setApplicationName("DubStudio")
        app.setOrganizationName("DubStudio")
        app.setStyle("Fusion")
        app.setPalette(dark_palette())
    return app  # type: ignore[return-value]


def dark_palette() -> QtGui.QPalette:
    """A dark palette like the ones audio and video editors use."""
    palette = QtGui.QPalette()
    colours = {
        QtGui.QPalette.ColorRole.Window: (45, 47, 52),
        QtGui.QPalette.ColorRole.WindowText: (222, 222, 222),
        QtGui.QPalette.ColorRole.Base: (32, 34, 38),
        QtGui.QPalette.ColorRole.AlternateBase: (40, 42, 47),
        QtGui.QPalette.ColorRole.Text: (222, 222, 222),
        QtGui.QPalette.ColorRole.Button: (55, 58, 64),
        QtGui.QPalette.ColorRole.ButtonText: (222, 222, 222),
        QtGui.QPalette.ColorRole.Highlight: (52, 110, 180),
        QtGui.QPalette.ColorRole.HighlightedText: (255, 255, 255),
        QtGui.QPalette.ColorRole.ToolTipBase: (60, 60, 60),
        QtGui.QPalette.ColorRole.ToolTipText: (230, 230, 230),
        QtGui.QPalette.ColorRole.PlaceholderText: (130, 130, 130),
    }
    for role, rgb in colours.items():
        palette.setColor(role, QtGui.QColor(*rgb))
    palette.setColor(
        QtGui.QPalette.ColorGroup.Disabled,
        QtGui.QPalette.ColorRole.Text,
        QtGui.QColor(120, 120, 120),
    )
    palette.setColor(
        QtGui.QPalette.ColorGroup.Disabled,
        QtGui.QPalette.ColorRole.WindowText,
        QtGui.QColor(120, 120, 120),
    )
    return palette


def open_editor(
    project_path: Path | None = None,
    *,
    model: str = "default",
    device: str | None = None,
) -> MainWindow:
    """Create the main window on a project file (None: the demo project)."""
    application()
    path = project_path if project_path is not None else demo_project_path()
    window = MainWindow(engine=EngineSetup(model, device), render_on_open=True)
    if not files.open_path(window, path):
        logger.warning("could not open %s", path)
    return window


def run(
    project_path: Path | None = None, *, model: str = "default", device: str | None = None
) -> int:
    """Open the editor and run the event loop until the window closes; returns the exit code."""
    app = application()
    window = open_editor(project_path, model=model, device=device)
    window.show()
    code = app.exec()
    window.deleteLater()
    return int(code)
