"""The export dialog: mixed WAV, stems per character, per-line clips, subtitles and the recipe.

The exports themselves are the render service's (`dubstudio.services.export` and `.recipe`);
they run as a task on the engine worker thread so a long programme never freezes the window,
report progress through a queued signal and stop when the dialog's Cancel sets a
`threading.Event`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import QtCore, QtWidgets

from dubstudio.core.errors import DubStudioError

if TYPE_CHECKING:
    from dubstudio.ui.main_window import MainWindow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportChoice:
    """What to export (None: skip that output).

    Attributes:
        folder: Output folder.
        mix: File name of the mixed dialogue (``.wav`` or ``.flac``).
        stems: Sub-folder for one file per character.
        clips: Sub-folder for one file per line.
        subtitles: File name of the subtitles (``.srt`` or ``.ass``).
        recipe: File name of the render recipe (``.json``).
        bit_depth: 16, 24 or 32.
        missing_ok: Leave unrendered lines silent instead of failing.
    """

    folder: Path
    mix: str | None = "dub_mix.wav"
    stems: str | None = None
    clips: str | None = None
    subtitles: str | None = "dub.srt"
    recipe: str | None = "dub_recipe.json"
    bit_depth: int = 24
    missing_ok: bool = False


def run_export(
    window: MainWindow,
    choice: ExportChoice,
    on_progress: Any = None,
    should_stop: Any = None,
) -> list[Path]:
    """Write the chosen outputs; returns the files written (any thread; reads the project).

    Raises:
        ExportError: An output could not be written (or lines are missing, unless allowed).
    """
    from dubstudio.services import export, recipe

    project, cache = window.project, window.cache
    choice.folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if choice.mix or choice.stems:
        result = export.export_mix(
            project,
            cache,
            choice.folder / choice.mix if choice.mix else None,
            stems_dir=choice.folder / choice.stems if choice.stems else None,
            bit_depth=choice.bit_depth,
            missing_ok=choice.missing_ok,
            on_progress=on_progress,
            should_stop=should_stop,
        )
        written.extend(result.files)
    if choice.clips:
        result = export.export_clips(
            project, cache, choice.folder / choice.clips, bit_depth=choice.bit_depth,
            missing_ok=choice.missing_ok,
        )  # fmt: skip
        written.extend(result.files)
    if choice.subtitles:
        written.append(export.export_subtitles(project, choice.folder / choice.subtitles))
    if choice.recipe:
        data = recipe.build_recipe(
            project,
            model_identity=window.engine_setup.identity(),
            model_name=str(window.engine_setup.bundle),
            cache=cache,
            options=window.render_options,
            base_dir=choice.folder,
        )
        written.append(recipe.write_recipe(data, choice.folder / choice.recipe))
    return written


class ExportDialog(QtWidgets.QDialog):
    """Choose outputs, export with progress, cancel.

    Signals:
        progressed(float, str): fraction and stage (emitted from the worker thread; queued).
        finished_export(object): the list of files, or the exception.
    """

    progressed = QtCore.Signal(float, str)
    finished_export = QtCore.Signal(object)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window_ = window
        self.setWindowTitle("Export")
        self.stop_event = threading.Event()
        self.result: Any = None
        form = QtWidgets.QFormLayout(self)

        folder_row = QtWidgets.QHBoxLayout()
        default = (
            window.project.path.parent / "export" if window.project.path else Path.cwd() / "export"
        )
        self.folder_edit = QtWidgets.QLineEdit(str(default))
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        form.addRow("Folder", folder_row)

        self.outputs: dict[str, tuple[QtWidgets.QCheckBox, QtWidgets.QLineEdit]] = {}
        for key, label, name, checked in (
            ("mix", "Mixed dialogue", "dub_mix.wav", True),
            ("stems", "Stems per character (folder)", "stems", False),
            ("clips", "Clip per line (folder)", "clips", False),
            ("subtitles", "Subtitles (.srt / .ass)", "dub.srt", True),
            ("recipe", "Render recipe", "dub_recipe.json", True),
        ):
            box = QtWidgets.QCheckBox(label)
            box.setChecked(checked)
            edit = QtWidgets.QLineEdit(name)
            row = QtWidgets.QHBoxLayout()
            row.addWidget(box)
            row.addWidget(edit, 1)
            form.addRow(row)
            self.outputs[key] = (box, edit)

        self.depth_combo = QtWidgets.QComboBox()
        for depth in (16, 24, 32):
            self.depth_combo.addItem(f"{depth}-bit", depth)
        self.depth_combo.setCurrentIndex(
            max(0, self.depth_combo.findData(window.project.bit_depth))
        )
        form.addRow("Bit depth", self.depth_combo)
        self.missing_box = QtWidgets.QCheckBox("Leave unrendered lines silent")
        form.addRow(self.missing_box)

        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        form.addRow(self.progress)
        form.addRow(self.status)
        self.buttons = QtWidgets.QDialogButtonBox()
        self.export_button = self.buttons.addButton(
            "Export", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.cancel_button = self.buttons.addButton(
            QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self._cancel)
        form.addRow(self.buttons)
        self.progressed.connect(self._on_progress)
        self.finished_export.connect(self._on_finished)
        self.running = False

    def choice(self) -> ExportChoice:
        """The outputs chosen in the dialog."""

        def value(key: str) -> str | None:
            box, edit = self.outputs[key]
            return edit.text().strip() or None if box.isChecked() else None

        return ExportChoice(
            folder=Path(self.folder_edit.text()).expanduser(),
            mix=value("mix"),
            stems=value("stems"),
            clips=value("clips"),
            subtitles=value("subtitles"),
            recipe=value("recipe"),
            bit_depth=int(self.depth_combo.currentData()),
            missing_ok=self.missing_box.isChecked(),
        )

    def start(self) -> None:
        """Run the export on the engine thread."""
        from dubstudio.ui.worker import TaskJob

        if self.running:
            return
        choice = self.choice()
        self.running = True
        self.stop_event.clear()
        self.export_button.setEnabled(False)
        self.status.setText("Exporting…")

        def work(_synth: Any) -> Any:
            try:
                return run_export(
                    self.window_,
                    choice,
                    on_progress=lambda f, stage: self.progressed.emit(float(f), stage),
                    should_stop=self.stop_event.is_set,
                )
            except Exception as exc:  # shown in the dialog
                return exc

        def done(name: str, payload: Any) -> None:
            if name == "export":
                self.window_.engine.worker.task_finished.disconnect(done)
                self.finished_export.emit(payload)

        self.window_.engine.worker.task_finished.connect(done)
        self.window_.engine.worker.add_task(TaskJob("export", work, needs_model=False))

    def _on_progress(self, fraction: float, stage: str) -> None:
        self.progress.setValue(round(1000 * fraction))
        self.status.setText(f"{stage}…")

    def _on_finished(self, payload: Any) -> None:
        self.running = False
        self.result = payload
        self.export_button.setEnabled(True)
        if isinstance(payload, Exception):
            text = str(payload) if isinstance(payload, DubStudioError) else repr(payload)
            self.status.setText(f"Export failed: {text}")
            return
        self.progress.setValue(1000)
        self.status.setText(f"Wrote {len(payload)} file(s) to {self.choice().folder}.")
        self.window_.statusBar().showMessage(f"Exported {len(payload)} file(s).", 8000)

    def _cancel(self) -> None:
        if self.running:
            self.stop_event.set()
            self.status.setText("Stopping…")
        else:
            self.reject()

    def _browse(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Export folder", self.folder_edit.text()
        )
        if folder:
            self.folder_edit.setText(folder)
