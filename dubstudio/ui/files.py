"""File handling of the editor: new project from video + subtitles, open, save, save as, recent
files, autosave with a recovery prompt, and subtitle import into the open project.

Reading and writing project files is `dubstudio.core.projectfile`'s job; this module only adds
the dialogs and the timer.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import QtCore, QtWidgets

from dubstudio.core import projectfile
from dubstudio.core.errors import DubStudioError, ProjectFileError
from dubstudio.core.model import Project
from dubstudio.core.subtitles import cues_to_lines, read_subtitles
from dubstudio.core.timing import STANDARD_FPS, format_fps, parse_fps

if TYPE_CHECKING:
    from dubstudio.ui.main_window import MainWindow

logger = logging.getLogger(__name__)

RECENT_KEY = "recent_files"
MAX_RECENT = 8
#: Seconds between autosaves of a modified project.
AUTOSAVE_INTERVAL_S = 60
PROJECT_FILTER = "DubStudio projects (*.dubproj);;All files (*)"
SUBTITLE_FILTER = "Subtitles (*.srt *.vtt *.ass *.ssa);;All files (*)"
VIDEO_FILTER = "Video (*.mp4 *.mov *.mkv *.avi *.webm);;All files (*)"


def load_project(path: Path, *, recover: bool = False) -> Project:
    """Read a project file (its newer autosave copy with ``recover``)."""
    return projectfile.load_project(path, recover=recover)


def save_project(project: Project, path: Path) -> Path:
    """Write a project file (atomically); returns where it went."""
    return projectfile.save_project(project, path)


def import_subtitle_lines(project: Project, path: Path) -> tuple[list[Any], list[str]]:
    """Lines made from a subtitle file at the project's frame rate, and the problems found."""
    result = read_subtitles(path)
    lines, more = cues_to_lines(result.cues, project.fps)
    problems = [str(p) for p in (*result.problems, *more)]
    return lines, problems


def project_from_files(
    video: Path | None, subtitles: Path, fps: Fraction
) -> tuple[Project, list[str]]:
    """A new project of a video and its subtitles."""
    project = Project(fps=fps, video_path=str(video) if video else None)
    lines, problems = import_subtitle_lines(project, subtitles)
    project.append_lines(lines)
    return project, problems


# ---------------------------------------------------------------------------------------------
# Dialogs


class NewProjectDialog(QtWidgets.QDialog):
    """Pick a video, a subtitle file and the frame rate."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New project")
        form = QtWidgets.QFormLayout(self)
        self.video_edit = QtWidgets.QLineEdit()
        self.subs_edit = QtWidgets.QLineEdit()
        for edit, caption, filt in (
            (self.video_edit, "Video", VIDEO_FILTER),
            (self.subs_edit, "Subtitles", SUBTITLE_FILTER),
        ):
            row = QtWidgets.QHBoxLayout()
            button = QtWidgets.QPushButton("Browse…")
            button.clicked.connect(
                lambda _c=False, e=edit, c=caption, f=filt: self._browse(e, c, f)
            )
            row.addWidget(edit, 1)
            row.addWidget(button)
            form.addRow(caption, row)
        self.fps_combo = QtWidgets.QComboBox()
        self.fps_combo.setEditable(True)
        for fps in STANDARD_FPS:
            self.fps_combo.addItem(format_fps(fps), f"{fps.numerator}/{fps.denominator}")
        self.fps_combo.setCurrentIndex(2)  # 25
        form.addRow("Frame rate", self.fps_combo)
        buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok
            | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self, edit: QtWidgets.QLineEdit, caption: str, filt: str) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, caption, "", filt)
        if path:
            edit.setText(path)

    def fps(self) -> Fraction:
        """The chosen frame rate."""
        data = self.fps_combo.currentData()
        text = self.fps_combo.currentText()
        if data is not None and self.fps_combo.itemText(self.fps_combo.currentIndex()) == text:
            return parse_fps(data)
        return parse_fps(text.split(" ")[0])


def new_project_dialog(window: MainWindow) -> None:
    """Ask for video, subtitles and frame rate, then open the new project."""
    if not confirm_discard(window):
        return
    dialog = NewProjectDialog(window)
    if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
        return
    try:
        video = Path(dialog.video_edit.text()) if dialog.video_edit.text().strip() else None
        project, problems = project_from_files(video, Path(dialog.subs_edit.text()), dialog.fps())
    except DubStudioError as exc:
        QtWidgets.QMessageBox.warning(window, "New project", str(exc))
        return
    window.set_project(project)
    _report_problems(window, problems)


def import_subtitles_dialog(window: MainWindow) -> None:
    """Add the lines of a subtitle file to the open project (undoable)."""
    path, _ = QtWidgets.QFileDialog.getOpenFileName(window, "Import subtitles", "", SUBTITLE_FILTER)
    if path:
        import_subtitles(window, Path(path))


def import_subtitles(window: MainWindow, path: Path) -> int:
    """Append a subtitle file's lines to the project as one undo step; returns how many."""
    from dubstudio.ui import editing

    try:
        lines, problems = import_subtitle_lines(window.project, path)
    except DubStudioError as exc:
        window.statusBar().showMessage(str(exc), 10000)
        return 0
    command = editing.insert_lines(window.project, len(window.project), lines)
    command.text = f"Import {len(lines)} line(s) from {path.name}"
    if window.push(command):
        _report_problems(window, problems)
        end = max(float(line.slot.end_seconds(window.project.fps)) for line in window.project.lines)
        window.timeline.set_duration(end + 1.0)
        if window.current_line_id is None and lines:
            window.select_line(lines[0].id)
        return len(lines)
    return 0


def _report_problems(window: MainWindow, problems: list[str]) -> None:
    if problems:
        window.statusBar().showMessage(
            f"Subtitles imported with {len(problems)} problem(s): {problems[0]}", 15000
        )


def open_dialog(window: MainWindow) -> None:
    """Ask for a project file and open it."""
    if not confirm_discard(window):
        return
    path, _ = QtWidgets.QFileDialog.getOpenFileName(window, "Open project", "", PROJECT_FILTER)
    if path:
        open_path(window, Path(path))


def open_path(window: MainWindow, path: Path, *, ask_recovery: bool = True) -> bool:
    """Open a project file, offering its autosave copy when that is newer (after a crash)."""
    recover = False
    if ask_recovery and projectfile.recovery_candidate(path) is not None:
        answer = QtWidgets.QMessageBox.question(
            window,
            "Recover unsaved work?",
            f"DubStudio found autosaved changes to {path.name} that were never saved (the "
            "editor may have crashed). Open the autosaved version?",
        )
        recover = answer == QtWidgets.QMessageBox.StandardButton.Yes
    try:
        project = load_project(path, recover=recover)
    except (DubStudioError, OSError) as exc:
        QtWidgets.QMessageBox.warning(window, "Open project", str(exc))
        return False
    window.set_project(project)
    if recover:
        # The recovered edits are not in the file yet: keep the title's "modified" mark.
        window.undo_stack.resetClean()
        window.statusBar().showMessage("Recovered autosaved work; save to keep it.", 10000)
    problems = projectfile.missing_media(project)
    if problems:
        window.statusBar().showMessage(problems[0], 15000)
    add_recent(window, path)
    start_autosave(window)
    return True


def save(window: MainWindow) -> bool:
    """Save to the project's file (asks for a name the first time)."""
    if window.project.path is None:
        return save_as_dialog(window)
    return save_to(window, window.project.path)


def save_as_dialog(window: MainWindow) -> bool:
    """Ask for a file name and save there."""
    path, _ = QtWidgets.QFileDialog.getSaveFileName(window, "Save project", "", PROJECT_FILTER)
    if not path:
        return False
    if not path.endswith(".dubproj"):
        path += ".dubproj"
    return save_to(window, Path(path))


def save_to(window: MainWindow, path: Path) -> bool:
    """Write the project to ``path`` and mark it clean."""
    try:
        path = save_project(window.project, path)
    except (DubStudioError, OSError) as exc:
        QtWidgets.QMessageBox.warning(window, "Save project", str(exc))
        return False
    window.undo_stack.setClean()
    window.saved_change_count = window.project.change_count
    add_recent(window, path)
    window.statusBar().showMessage(f"Saved {path}", 4000)
    window._update_title()
    start_autosave(window)
    return True


def confirm_discard(window: MainWindow) -> bool:
    """Whether unsaved changes may be dropped (asks; Save saves first)."""
    if window.undo_stack.isClean() or window.property("skip_confirm"):
        return True
    answer = QtWidgets.QMessageBox.question(
        window,
        "Unsaved changes",
        "The project has unsaved changes. Save them first?",
        QtWidgets.QMessageBox.StandardButton.Save
        | QtWidgets.QMessageBox.StandardButton.Discard
        | QtWidgets.QMessageBox.StandardButton.Cancel,
    )
    if answer == QtWidgets.QMessageBox.StandardButton.Save:
        return save(window)
    return answer == QtWidgets.QMessageBox.StandardButton.Discard


# ---------------------------------------------------------------------------------------------
# Recent files


def recent_files(window: MainWindow) -> list[str]:
    """Recently opened or saved projects, newest first."""
    value = window.settings.value(RECENT_KEY, [])
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def add_recent(window: MainWindow, path: Path) -> None:
    """Put ``path`` at the top of the recent files."""
    text = str(path.resolve())
    items = [text, *[p for p in recent_files(window) if p != text]][:MAX_RECENT]
    window.settings.setValue(RECENT_KEY, items)
    refresh_recent_menu(window)


def refresh_recent_menu(window: MainWindow) -> None:
    """Rebuild File ▸ Open recent."""
    menu = window.recent_menu
    menu.clear()
    items = recent_files(window)
    for n, item in enumerate(items):
        action = menu.addAction(f"&{n + 1} {Path(item).name}")
        action.setToolTip(item)
        action.triggered.connect(
            lambda _c=False, p=item: confirm_discard(window) and open_path(window, Path(p))
        )
    menu.setEnabled(bool(items))


# ---------------------------------------------------------------------------------------------
# Autosave


def start_autosave(window: MainWindow) -> None:
    """Autosave the project every `AUTOSAVE_INTERVAL_S` seconds while it has unsaved changes."""
    timer = getattr(window, "_autosave_timer", None)
    if timer is None:
        timer = QtCore.QTimer(window)
        timer.setInterval(AUTOSAVE_INTERVAL_S * 1000)
        timer.timeout.connect(lambda: autosave_now(window))
        window._autosave_timer = timer  # type: ignore[attr-defined]
    timer.start()


def autosave_now(window: MainWindow) -> Path | None:
    """Write the autosave file now if the project changed; returns its path."""
    project = window.project
    if project.path is None or project.change_count == window.saved_change_count:
        return None
    try:
        written = projectfile.write_autosave(project)
    except (DubStudioError, OSError) as exc:
        logger.warning("autosave failed: %s", exc)
        return None
    window.saved_change_count = project.change_count
    return written


def stop_autosave(window: MainWindow) -> None:
    """Stop the autosave timer (on close)."""
    timer = getattr(window, "_autosave_timer", None)
    if timer is not None:
        timer.stop()


__all__ = [
    "ProjectFileError",
    "add_recent",
    "autosave_now",
    "confirm_discard",
    "import_subtitles",
    "load_project",
    "new_project_dialog",
    "open_path",
    "project_from_files",
    "save",
    "save_project",
    "save_to",
]
