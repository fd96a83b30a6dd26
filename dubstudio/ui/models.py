"""Qt item models: thin adapters over `core.Project` (the project owns the data; they show it).

`LineTableModel` translates the project's change events into Qt's model signals and turns edits
made in the table into calls of an ``edit_line`` callback, which the main window routes through
the undo stack as core commands. It never changes a line itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from PySide6 import QtCore, QtGui

from dubstudio.core import timing
from dubstudio.core.errors import DubStudioError, ValidationError
from dubstudio.core.model import (
    EMOTION_NAMES,
    EmotionMode,
    Line,
    LineChanged,
    LinesInserted,
    LinesRemoved,
    Project,
    ProjectChanged,
    ProjectEvent,
    VoiceProfilesChanged,
)
from dubstudio.ui.timeline import FORECAST_COLOURS

logger = logging.getLogger(__name__)

#: Render states the table shows, keyed by what `RenderStates` stores.
RENDER_STATE_TEXT = {
    "none": "—",
    "queued": "queued",
    "rendering": "rendering…",
    "done": "rendered",
    "stale": "outdated",
    "error": "error",
    "cancelled": "stopped",
}

ForecastFn = Callable[[Project, Line], tuple[str, str]]
EditFn = Callable[[str, dict[str, Any]], bool]


def format_timecode(frame: int, fps: Fraction) -> str:
    """SMPTE timecode of a frame (``HH:MM:SS:FF``; ``;`` before the frames for drop-frame)."""
    return timing.format_timecode(max(0, frame), fps)


def parse_timecode(text: str, fps: Fraction) -> int:
    """Frame index from a timecode (``HH:MM:SS:FF``), ``HH:MM:SS.mmm`` or a bare frame number.

    Raises:
        ValidationError: If the text is not a time.
    """
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        return timing.parse_timecode(value, fps)
    except ValidationError:
        pass
    match = _CLOCK.match(value)
    if match is None:
        raise ValidationError(
            f"'{text}' is not a time; type HH:MM:SS:FF, HH:MM:SS.mmm or a frame number."
        )
    hh, mm, ss, fraction = match.groups()
    seconds = Fraction(int(hh or 0) * 3600 + int(mm) * 60 + int(ss)) + Fraction(
        int(fraction), 10 ** len(fraction)
    )
    return timing.seconds_to_frame(seconds, fps)


_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,6})$")


def emotion_summary(line: Line) -> str:
    """A short text for the table: ``voice``, ``happy 0.8, calm 0.3``, ``ref: x.wav``, ``"…"``."""
    emotion = line.emotion
    if emotion.mode is EmotionMode.SAME_AS_VOICE:
        return "as voice"
    if emotion.mode is EmotionMode.SLIDERS:
        ranked = sorted(
            ((v, n) for n, v in zip(EMOTION_NAMES, emotion.vector, strict=True) if v > 0.005),
            reverse=True,
        )
        if not ranked:
            return "neutral"
        return ", ".join(f"{name} {value:.1f}" for value, name in ranked[:2])
    if emotion.mode is EmotionMode.REFERENCE_AUDIO:
        name = (emotion.reference_path or "").replace("\\", "/").rsplit("/", 1)[-1]
        return f"ref: {name}"
    return f'"{emotion.description}"' if emotion.description else "from text"


class LineTableModel(QtCore.QAbstractTableModel):
    """The subtitle table: one row per line of the project.

    Args:
        project: The project shown.
        forecast: ``forecast(project, line) -> (status, explanation)`` with status ``fits``,
            ``tight``, ``impossible`` or ``unknown``.
        edit_line: Called with ``(line_id, changes)`` when a cell is edited; it must route the
            change through the undo stack. The table changes when the project announces it.
    """

    COLUMNS = (
        "#",
        "In",
        "Out",
        "Duration",
        "Character",
        "Voice",
        "Fit",
        "Render",
        "Emotion",
        "Text",
    )
    (
        COL_INDEX,
        COL_IN,
        COL_OUT,
        COL_DUR,
        COL_CHAR,
        COL_VOICE,
        COL_FIT,
        COL_RENDER,
        COL_EMO,
        COL_TEXT,
    ) = range(10)
    EDITABLE = frozenset({COL_IN, COL_OUT, COL_CHAR, COL_TEXT})

    #: A cell edit could not be understood (the message says why).
    edit_refused = QtCore.Signal(str)

    #: Role carrying a row's line id.
    LineIdRole = QtCore.Qt.ItemDataRole.UserRole + 1

    def __init__(
        self,
        project: Project,
        forecast: ForecastFn,
        edit_line: EditFn,
        parent: QtCore.QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.project = project
        self._forecast = forecast
        self._edit_line = edit_line
        self.render_states: dict[str, str] = {}
        self._forecast_cache: dict[tuple[Any, ...], tuple[str, str]] = {}
        self._unsubscribe = project.subscribe(self._on_project_event)

    def detach(self) -> None:
        """Stop listening to the project (before it is replaced)."""
        self._unsubscribe()

    # -- reading -------------------------------------------------------------------------------

    def rowCount(self, parent: QtCore.QModelIndex | None = None) -> int:
        if parent is not None and parent.isValid():
            return 0
        return len(self.project)

    def columnCount(self, parent: QtCore.QModelIndex | None = None) -> int:
        if parent is not None and parent.isValid():
            return 0
        return len(self.COLUMNS)

    def headerData(self, section: int, orientation: QtCore.Qt.Orientation, role: int = 0) -> Any:
        if role != QtCore.Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == QtCore.Qt.Orientation.Horizontal:
            return self.COLUMNS[section]
        return None

    def line_at(self, row: int) -> Line:
        """The line shown in ``row``."""
        return self.project.lines[row]

    def row_of(self, line_id: str) -> int:
        """The row showing ``line_id`` (-1 when absent)."""
        return self.project.index_of(line_id) if self.project.has_line(line_id) else -1

    def forecast_of(self, line: Line) -> str:
        """Fit status of a line (cached until its revision, slot or active take changes)."""
        return self.forecast_detail(line)[0]

    def forecast_detail(self, line: Line) -> tuple[str, str]:
        """``(status, explanation)`` of a line's fit."""
        key = (line.id, line.revision, line.start_frame, line.end_frame, line.active_take_id)
        value = self._forecast_cache.get(key)
        if value is None:
            try:
                value = self._forecast(self.project, line)
            except DubStudioError as exc:
                logger.debug("forecast of %s failed: %s", line.id, exc)
                value = ("unknown", str(exc))
            self._forecast_cache[key] = value
        return value

    def data(self, index: QtCore.QModelIndex, role: int = 0) -> Any:
        if not index.isValid() or index.row() >= len(self.project):
            return None
        line = self.line_at(index.row())
        col = index.column()
        display = QtCore.Qt.ItemDataRole.DisplayRole
        if role == self.LineIdRole:
            return line.id
        if role in (display, QtCore.Qt.ItemDataRole.EditRole):
            return self._text(line, index.row(), col, role == display)
        if role == QtCore.Qt.ItemDataRole.BackgroundRole and col == self.COL_FIT:
            red, green, blue = FORECAST_COLOURS[self.forecast_of(line)]
            return QtGui.QBrush(QtGui.QColor(red, green, blue, 150))
        if role == QtCore.Qt.ItemDataRole.ForegroundRole and col == self.COL_RENDER:
            state = self.render_states.get(line.id, "none")
            if state == "error":
                return QtGui.QBrush(QtGui.QColor(230, 80, 80))
            if state == "done":
                return QtGui.QBrush(QtGui.QColor(90, 200, 110))
        if role == QtCore.Qt.ItemDataRole.ToolTipRole and col in (self.COL_TEXT, self.COL_FIT):
            if col == self.COL_TEXT:
                return line.text
            status, detail = self.forecast_detail(line)
            return f"{line.fit_mode.value}: {status}. {detail}"
        if role == QtCore.Qt.ItemDataRole.TextAlignmentRole and col in (
            self.COL_INDEX,
            self.COL_IN,
            self.COL_OUT,
            self.COL_DUR,
        ):
            return int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        return None

    def _text(self, line: Line, row: int, col: int, display: bool) -> Any:
        fps = self.project.fps
        if col == self.COL_INDEX:
            return str(row + 1)
        if col == self.COL_IN:
            return format_timecode(line.start_frame, fps)
        if col == self.COL_OUT:
            return format_timecode(line.end_frame, fps)
        if col == self.COL_DUR:
            seconds = float(line.slot.duration_seconds(fps))
            return f"{seconds:.2f}s ({line.slot.n_frames}f)"
        if col == self.COL_CHAR:
            return line.character
        if col == self.COL_VOICE:
            voice_id = self.project.effective_voice_id(line)
            if voice_id is None:
                return "—"
            try:
                name = self.project.voice(voice_id).name
            except DubStudioError:
                return "?"
            return name if line.voice_id is None else f"{name} *"
        if col == self.COL_EMO:
            return emotion_summary(line)
        if col == self.COL_FIT:
            return self.forecast_of(line)
        if col == self.COL_RENDER:
            return RENDER_STATE_TEXT.get(self.render_states.get(line.id, "none"), "")
        if col == self.COL_TEXT:
            return line.text.replace("\n", " / ") if display else line.text
        return None

    def flags(self, index: QtCore.QModelIndex) -> QtCore.Qt.ItemFlag:
        base = super().flags(index)
        if index.isValid() and index.column() in self.EDITABLE:
            return base | QtCore.Qt.ItemFlag.ItemIsEditable
        return base

    # -- editing (through the command layer) ----------------------------------------------------

    def setData(
        self, index: QtCore.QModelIndex, value: Any, role: int = QtCore.Qt.ItemDataRole.EditRole
    ) -> bool:
        if not index.isValid() or role != QtCore.Qt.ItemDataRole.EditRole:
            return False
        line = self.line_at(index.row())
        col = index.column()
        changes: dict[str, Any]
        try:
            if col == self.COL_IN:
                start = parse_timecode(str(value), self.project.fps)
                changes = {"start_frame": start}
                if start >= line.end_frame:  # keep the length when the start moves past the end
                    changes["end_frame"] = start + line.slot.n_frames
            elif col == self.COL_OUT:
                changes = {"end_frame": parse_timecode(str(value), self.project.fps)}
            elif col == self.COL_CHAR:
                changes = {"character": str(value).strip()}
            elif col == self.COL_TEXT:
                changes = {"text": str(value)}
            else:
                return False
        except DubStudioError as exc:
            self.edit_refused.emit(str(exc))
            return False
        return bool(self._edit_line(line.id, changes))

    # -- render states -------------------------------------------------------------------------

    def set_render_state(self, line_id: str, state: str) -> None:
        """Show a line's render state (``queued``, ``rendering``, ``done``, ``error``, ...)."""
        if self.render_states.get(line_id) == state:
            return
        self.render_states[line_id] = state
        row = self.row_of(line_id)
        if row >= 0:
            cell = self.index(row, self.COL_RENDER)
            self.dataChanged.emit(cell, cell)

    # -- project events ------------------------------------------------------------------------

    def _on_project_event(self, event: ProjectEvent) -> None:
        if isinstance(event, LinesInserted):
            # Events arrive after the change; indices are ascending and contiguous per call.
            for first, last in _runs(event.indices):
                self.beginInsertRows(QtCore.QModelIndex(), first, last)
                self.endInsertRows()
            self._renumber()
        elif isinstance(event, LinesRemoved):
            # The project has already dropped them, so reset is the only honest notification.
            self.beginResetModel()
            for line_id in event.ids:
                self.render_states.pop(line_id, None)
            self.endResetModel()
        elif isinstance(event, LineChanged):
            row = self.row_of(event.line_id)
            if row >= 0:
                self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.COLUMNS) - 1))
        elif isinstance(event, VoiceProfilesChanged | ProjectChanged):
            self._forecast_cache.clear()
            if self.rowCount():
                self.dataChanged.emit(
                    self.index(0, 0), self.index(self.rowCount() - 1, len(self.COLUMNS) - 1)
                )

    def _renumber(self) -> None:
        if self.rowCount():
            self.dataChanged.emit(
                self.index(0, self.COL_INDEX), self.index(self.rowCount() - 1, self.COL_INDEX)
            )


def _runs(indices: tuple[int, ...]) -> list[tuple[int, int]]:
    """Contiguous ``(first, last)`` runs of ascending indices."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs
