"""The line inspector: text, timing, character, voice, fit mode, budget, forecast, seed, takes.

Like every view here it edits nothing directly: finished edits go out through `line_edited`
(line id, changes) and come back through the project's change notification (`show_line`). The
fit forecast is recomputed on every keystroke in the text box, on a detached copy of the line,
so the user sees "impossible" before committing the text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from dubstudio.core.errors import DubStudioError
from dubstudio.core.model import FitMode, Line, Project
from dubstudio.ui.models import format_timecode, parse_timecode
from dubstudio.ui.timeline import FORECAST_COLOURS

logger = logging.getLogger(__name__)

FIT_LABELS: dict[FitMode, str] = {
    FitMode.NATURAL: "Natural length",
    FitMode.EXACT: "Exact slot",
    FitMode.EXACT_WITH_MARGINS: "Exact with margins",
}

ForecastDetail = Callable[[Project, Line], tuple[str, str]]


class _CommitTextEdit(QtWidgets.QPlainTextEdit):
    """A text box that commits on focus-out and on Ctrl+Enter."""

    committed = QtCore.Signal()

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if event.key() in (QtCore.Qt.Key.Key_Return, QtCore.Qt.Key.Key_Enter) and (
            event.modifiers() & QtCore.Qt.KeyboardModifier.ControlModifier
        ):
            self.committed.emit()
            return
        super().keyPressEvent(event)

    def focusOutEvent(self, event: QtGui.QFocusEvent) -> None:
        self.committed.emit()
        super().focusOutEvent(event)


class LineInspector(QtWidgets.QWidget):
    """Edit one line.

    Args:
        forecast_detail: ``f(project, line) -> (status, explanation)``.

    Signals:
        line_edited(str, dict): a finished edit (line id, changes for ``Project.update_line``).
        render_requested(str): render this line now.
        play_take_requested(str, str): play this line's take (line id, take id).
        take_activated(str, str): make this take the active one (line id, take id).
    """

    line_edited = QtCore.Signal(str, dict)
    render_requested = QtCore.Signal(str)
    play_take_requested = QtCore.Signal(str, str)
    take_activated = QtCore.Signal(str, str)

    def __init__(
        self, forecast_detail: ForecastDetail, parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._forecast_detail = forecast_detail
        self.project: Project | None = None
        self.line_id: str | None = None
        self._updating = False

        form = QtWidgets.QFormLayout(self)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.title = QtWidgets.QLabel("No line selected")
        self.title.setStyleSheet("font-weight: bold;")
        form.addRow(self.title)

        self.text_edit = _CommitTextEdit()
        self.text_edit.setFixedHeight(58)
        self.text_edit.setPlaceholderText("Line text (Ctrl+Enter to apply)")
        self.text_edit.textChanged.connect(self._update_forecast)
        self.text_edit.committed.connect(self._commit_text)
        form.addRow("Text", self.text_edit)

        timing = QtWidgets.QHBoxLayout()
        self.in_edit = QtWidgets.QLineEdit()
        self.out_edit = QtWidgets.QLineEdit()
        for edit in (self.in_edit, self.out_edit):
            edit.setToolTip("HH:MM:SS:FF, HH:MM:SS.mmm or a frame number")
            edit.editingFinished.connect(self._commit_timing)
            timing.addWidget(edit)
        form.addRow("In / out", timing)

        self.character_combo = QtWidgets.QComboBox()
        self.character_combo.setEditable(True)
        self.character_combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.character_combo.lineEdit().editingFinished.connect(self._commit_character)
        self.character_combo.activated.connect(lambda _i: self._commit_character())
        form.addRow("Character", self.character_combo)

        self.voice_combo = QtWidgets.QComboBox()
        self.voice_combo.activated.connect(self._commit_voice)
        form.addRow("Voice", self.voice_combo)

        self.fit_combo = QtWidgets.QComboBox()
        for mode, label in FIT_LABELS.items():
            self.fit_combo.addItem(label, mode.value)
        self.fit_combo.activated.connect(self._commit_fit)
        form.addRow("Fit", self.fit_combo)

        margins = QtWidgets.QHBoxLayout()
        self.lead_in_spin = QtWidgets.QDoubleSpinBox()
        self.lead_out_spin = QtWidgets.QDoubleSpinBox()
        for spin, tip in ((self.lead_in_spin, "lead-in"), (self.lead_out_spin, "lead-out")):
            spin.setRange(0.0, 5.0)
            spin.setSingleStep(0.05)
            spin.setSuffix(" s")
            spin.setToolTip(f"{tip} silence (exact with margins)")
            spin.editingFinished.connect(self._commit_margins)
            margins.addWidget(spin)
        form.addRow("Margins", margins)

        self.budget_label = QtWidgets.QLabel("")
        form.addRow("Budget", self.budget_label)
        self.forecast_label = QtWidgets.QLabel("")
        self.forecast_label.setWordWrap(True)
        form.addRow("Forecast", self.forecast_label)

        seed_row = QtWidgets.QHBoxLayout()
        self.seed_spin = QtWidgets.QSpinBox()
        self.seed_spin.setRange(-1, 2**31 - 1)
        self.seed_spin.setSpecialValueText("auto")
        self.seed_spin.editingFinished.connect(self._commit_seed)
        self.render_button = QtWidgets.QPushButton("Render (Ctrl+R)")
        self.render_button.clicked.connect(
            lambda: self.line_id and self.render_requested.emit(self.line_id)
        )
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.render_button)
        form.addRow("Seed", seed_row)

        takes_row = QtWidgets.QHBoxLayout()
        self.takes_list = QtWidgets.QListWidget()
        self.takes_list.setFixedHeight(64)
        self.takes_list.itemDoubleClicked.connect(self._play_item)
        buttons = QtWidgets.QVBoxLayout()
        self.use_take_button = QtWidgets.QPushButton("Use")
        self.use_take_button.clicked.connect(self._activate_selected_take)
        self.play_take_button = QtWidgets.QPushButton("Play")
        self.play_take_button.clicked.connect(
            lambda: self._play_item(self.takes_list.currentItem())
        )
        buttons.addWidget(self.use_take_button)
        buttons.addWidget(self.play_take_button)
        takes_row.addWidget(self.takes_list, 1)
        takes_row.addLayout(buttons)
        form.addRow("Takes", takes_row)
        self.setEnabled(False)

    # -- showing -------------------------------------------------------------------------------

    def set_project(self, project: Project | None) -> None:
        """Inspect lines of this project."""
        self.project = project
        self.line_id = None
        self.refresh_choices()
        self.show_line(None)

    def refresh_choices(self) -> None:
        """Reload the character and voice lists from the project."""
        self._updating = True
        try:
            self.character_combo.clear()
            self.voice_combo.clear()
            self.voice_combo.addItem("(character's voice)", None)
            if self.project is not None:
                for name in sorted(self.project.characters):
                    self.character_combo.addItem(name)
                for voice in self.project.voices:
                    self.voice_combo.addItem(voice.name, voice.id)
        finally:
            self._updating = False
        if self.line_id is not None:
            self.show_line(self.line_id)

    @property
    def line(self) -> Line | None:
        """The inspected line (None when none or deleted)."""
        if self.project is None or self.line_id is None or not self.project.has_line(self.line_id):
            return None
        return self.project.line(self.line_id)

    def show_line(self, line_id: str | None) -> None:
        """Inspect ``line_id`` (None clears the panel)."""
        self.line_id = line_id
        line = self.line
        self.setEnabled(line is not None)
        if line is None or self.project is None:
            self.title.setText("No line selected")
            return
        fps = self.project.fps
        self._updating = True
        try:
            index = self.project.index_of(line.id) + 1
            self.title.setText(f"Line {index} of {len(self.project)}   (revision {line.revision})")
            if self.text_edit.toPlainText() != line.text and not self.text_edit.hasFocus():
                self.text_edit.setPlainText(line.text)
            self.in_edit.setText(format_timecode(line.start_frame, fps))
            self.out_edit.setText(format_timecode(line.end_frame, fps))
            self.character_combo.setEditText(line.character)
            self.voice_combo.setCurrentIndex(max(0, self.voice_combo.findData(line.voice_id)))
            self.fit_combo.setCurrentIndex(self.fit_combo.findData(line.fit_mode.value))
            self.lead_in_spin.setValue(line.lead_in_s)
            self.lead_out_spin.setValue(line.lead_out_s)
            margins = line.fit_mode is FitMode.EXACT_WITH_MARGINS
            self.lead_in_spin.setEnabled(margins)
            self.lead_out_spin.setEnabled(margins)
            self.seed_spin.setValue(-1 if line.seed is None else line.seed)
            self.takes_list.clear()
            for n, take in enumerate(line.takes):
                letter = chr(ord("A") + n) if n < 26 else str(n + 1)
                active = "▶ " if take.id == line.active_take_id else "   "
                seconds = take.n_samples / max(1, take.sample_rate)
                item = QtWidgets.QListWidgetItem(
                    f"{active}{letter}  {seconds:.3f} s  seed {take.seed}"
                    + ("  (outdated)" if take.line_revision != line.revision else "")
                )
                item.setData(QtCore.Qt.ItemDataRole.UserRole, take.id)
                self.takes_list.addItem(item)
                if take.id == line.active_take_id:
                    self.takes_list.setCurrentItem(item)
        finally:
            self._updating = False
        self._update_forecast()

    def _update_forecast(self) -> None:
        line = self.line
        if line is None or self.project is None:
            return
        candidate = line.copy()
        candidate.text = self.text_edit.toPlainText() or line.text
        budget = self.project.line_budget(candidate)
        seconds = budget.speech_samples / self.project.sample_rate
        self.budget_label.setText(
            f"{candidate.slot.n_frames} frames · {seconds:.3f} s · {budget.tokens} tokens"
        )
        try:
            status, detail = self._forecast_detail(self.project, candidate)
        except DubStudioError as exc:
            status, detail = "unknown", str(exc)
        red, green, blue = FORECAST_COLOURS.get(status, FORECAST_COLOURS["unknown"])
        self.forecast_label.setText(
            f'<span style="color: rgb({red},{green},{blue}); font-weight: bold;">{status}</span>'
            f"  {detail}"
        )
        self.forecast_status = status

    # -- committing ----------------------------------------------------------------------------

    def _emit(self, changes: dict[str, Any]) -> None:
        line = self.line
        if self._updating or line is None:
            return
        changes = {k: v for k, v in changes.items() if getattr(line, k) != v}
        if changes:
            self.line_edited.emit(line.id, changes)

    def _commit_text(self) -> None:
        text = self.text_edit.toPlainText()
        if text.strip():
            self._emit({"text": text})

    def _commit_timing(self) -> None:
        if self.project is None or self.line is None:
            return
        try:
            start = parse_timecode(self.in_edit.text(), self.project.fps)
            end = parse_timecode(self.out_edit.text(), self.project.fps)
        except DubStudioError as exc:
            self.forecast_label.setText(str(exc))
            return
        self._emit({"start_frame": start, "end_frame": end})

    def _commit_character(self) -> None:
        self._emit({"character": self.character_combo.currentText().strip()})

    def _commit_voice(self, _index: int = 0) -> None:
        self._emit({"voice_id": self.voice_combo.currentData()})

    def _commit_fit(self, _index: int = 0) -> None:
        self._emit({"fit_mode": FitMode(self.fit_combo.currentData())})

    def _commit_margins(self) -> None:
        self._emit(
            {"lead_in_s": self.lead_in_spin.value(), "lead_out_s": self.lead_out_spin.value()}
        )

    def _commit_seed(self) -> None:
        value = self.seed_spin.value()
        self._emit({"seed": None if value < 0 else value})

    def _selected_take_id(self, item: QtWidgets.QListWidgetItem | None = None) -> str | None:
        item = item or self.takes_list.currentItem()
        return None if item is None else item.data(QtCore.Qt.ItemDataRole.UserRole)

    def _play_item(self, item: QtWidgets.QListWidgetItem | None) -> None:
        take_id = self._selected_take_id(item)
        if take_id and self.line_id:
            self.play_take_requested.emit(self.line_id, take_id)

    def _activate_selected_take(self) -> None:
        take_id = self._selected_take_id()
        if take_id and self.line_id:
            self.take_activated.emit(self.line_id, take_id)
