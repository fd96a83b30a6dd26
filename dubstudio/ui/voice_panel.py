"""The voice-profile panel: import a reference clip, trim it, analyse it, audition, name, assign.

Profiles live in the project. The panel shows them and reports what the user wants through
signals; the main window turns those into undoable core commands. A clip can be imported from a
file dialog or dropped onto the panel.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import soundfile as sf
from PySide6 import QtCore, QtGui, QtWidgets

from dubstudio.core.model import Project, ReferenceClip, VoiceProfile
from dubstudio.ui.timeline import envelope

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class VoicePanel(QtWidgets.QWidget):
    """List, edit and assign voice profiles.

    Signals:
        import_requested(str): import this audio file as a new profile.
        voice_edited(object): replace a profile with this `VoiceProfile` (rename, trim).
        voice_removed(str): remove the profile with this id.
        character_voice_assigned(str, object): character name, voice id (or None).
        audition_requested(str): play the (trimmed) reference clip of this profile.
        analyse_requested(str): analyse this profile's clip with the engine.
    """

    import_requested = QtCore.Signal(str)
    voice_edited = QtCore.Signal(object)
    voice_removed = QtCore.Signal(str)
    character_voice_assigned = QtCore.Signal(str, object)
    audition_requested = QtCore.Signal(str)
    analyse_requested = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.project: Project | None = None
        self.setAcceptDrops(True)
        self._updating = False
        self.analysis_text: dict[str, str] = {}

        layout = QtWidgets.QVBoxLayout(self)
        self.list = QtWidgets.QListWidget()
        self.list.setMaximumHeight(90)
        self.list.currentRowChanged.connect(lambda _row: self._show_current())
        layout.addWidget(self.list)

        buttons = QtWidgets.QHBoxLayout()
        for text, slot in (
            ("Import…", self._import_dialog),
            ("Audition", lambda: self._emit_for_current(self.audition_requested)),
            ("Analyse", lambda: self._emit_for_current(self.analyse_requested)),
            ("Remove", lambda: self._emit_for_current(self.voice_removed)),
        ):
            button = QtWidgets.QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        layout.addLayout(buttons)

        form = QtWidgets.QFormLayout()
        self.name_edit = QtWidgets.QLineEdit()
        self.name_edit.editingFinished.connect(self._commit_name)
        form.addRow("Name", self.name_edit)
        assign = QtWidgets.QHBoxLayout()
        self.character_combo = QtWidgets.QComboBox()
        assign_button = QtWidgets.QPushButton("Assign")
        assign_button.setObjectName("assign-voice")
        assign_button.setToolTip("Make this the character's voice")
        assign_button.clicked.connect(self._assign)
        assign.addWidget(self.character_combo, 1)
        assign.addWidget(assign_button)
        form.addRow("Character", assign)
        layout.addLayout(form)

        self.wave = pg.PlotWidget(background=pg.mkColor(32, 34, 38))
        self.wave.setFixedHeight(70)
        self.wave.hideAxis("left")
        self.wave.setMouseEnabled(x=False, y=False)
        self.wave.setMenuEnabled(False)
        self.wave_curve = pg.PlotDataItem(pen=pg.mkPen(150, 190, 240))
        self.wave.addItem(self.wave_curve)
        self.trim_region = pg.LinearRegionItem(values=(0, 1), brush=pg.mkBrush(90, 160, 90, 60))
        self.trim_region.sigRegionChangeFinished.connect(self._commit_trim)
        self.wave.addItem(self.trim_region)
        layout.addWidget(QtWidgets.QLabel("Reference clip (drag the green edges to trim):"))
        layout.addWidget(self.wave)
        self.info_label = QtWidgets.QLabel("Drop an audio file here to make a voice.")
        self.info_label.setWordWrap(True)
        layout.addWidget(self.info_label)
        layout.addStretch(1)
        self._clip_seconds = 0.0

    # -- showing -------------------------------------------------------------------------------

    def set_project(self, project: Project | None) -> None:
        """Show this project's profiles."""
        self.project = project
        self.refresh()

    def refresh(self) -> None:
        """Reload the list and the character choices from the project."""
        current = self.current_voice_id()
        self._updating = True
        try:
            self.list.clear()
            self.character_combo.clear()
            if self.project is None:
                return
            for voice in self.project.voices:
                users = [c for c, v in self.project.characters.items() if v == voice.id]
                label = voice.name + (f"  ({', '.join(users)})" if users else "")
                item = QtWidgets.QListWidgetItem(label)
                item.setData(QtCore.Qt.ItemDataRole.UserRole, voice.id)
                self.list.addItem(item)
            for character in sorted(self.project.characters):
                self.character_combo.addItem(character)
            ids = [v.id for v in self.project.voices]
            if ids:
                self.list.setCurrentRow(ids.index(current) if current in ids else 0)
        finally:
            self._updating = False
        self._show_current()

    def current_voice_id(self) -> str | None:
        """Id of the selected profile."""
        item = self.list.currentItem()
        return None if item is None else item.data(QtCore.Qt.ItemDataRole.UserRole)

    def current_voice(self) -> VoiceProfile | None:
        """The selected profile."""
        voice_id = self.current_voice_id()
        if self.project is None or voice_id is None:
            return None
        return next((v for v in self.project.voices if v.id == voice_id), None)

    def show_analysis(self, voice_id: str, text: str) -> None:
        """Show the engine's analysis of a profile's clip."""
        self.analysis_text[voice_id] = text
        if voice_id == self.current_voice_id():
            self.info_label.setText(text)

    def _show_current(self) -> None:
        voice = self.current_voice()
        self._updating = True
        try:
            if voice is None or self.project is None:
                self.name_edit.clear()
                self.wave_curve.setData([], [])
                return
            self.name_edit.setText(voice.name)
            self.info_label.setText(
                self.analysis_text.get(voice.id, "Press Analyse to check the clip.")
            )
            if not voice.clips:
                self.wave_curve.setData([], [])
                return
            clip = voice.clips[0]
            path = self.project.resolve_path(clip.path)
            try:
                audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
            except (OSError, RuntimeError) as exc:
                self.info_label.setText(f"Cannot read {path.name}: {exc}")
                self.wave_curve.setData([], [])
                return
            mono = audio.mean(axis=1)
            self._clip_seconds = len(mono) / rate
            x, y = envelope(mono, bins=600)
            self.wave_curve.setData(x / rate, y)
            self.wave.setXRange(0, self._clip_seconds, padding=0.01)
            end = clip.trim_end_s if clip.trim_end_s is not None else self._clip_seconds
            self.trim_region.setBounds((0, self._clip_seconds))
            self.trim_region.blockSignals(True)
            self.trim_region.setRegion((clip.trim_start_s, end))
            self.trim_region.blockSignals(False)
        finally:
            self._updating = False

    # -- editing -------------------------------------------------------------------------------

    def _emit_for_current(self, signal: QtCore.SignalInstance) -> None:
        voice_id = self.current_voice_id()
        if voice_id is not None:
            signal.emit(voice_id)

    def _commit_name(self) -> None:
        voice = self.current_voice()
        name = self.name_edit.text().strip()
        if self._updating or voice is None or not name or name == voice.name:
            return
        self.voice_edited.emit(dataclasses.replace(voice, name=name))

    def _commit_trim(self) -> None:
        voice = self.current_voice()
        if self._updating or voice is None or not voice.clips:
            return
        start, end = (round(float(v), 3) for v in self.trim_region.getRegion())
        start = max(0.0, start)
        trim_end = None if end >= self._clip_seconds - 1e-3 else end
        clip = voice.clips[0]
        if (clip.trim_start_s, clip.trim_end_s) == (start, trim_end) or (
            trim_end is not None and trim_end <= start
        ):
            return
        new_clip = ReferenceClip(clip.path, start, trim_end)
        self.voice_edited.emit(dataclasses.replace(voice, clips=(new_clip, *voice.clips[1:])))

    def _assign(self) -> None:
        character = self.character_combo.currentText()
        if character:
            self.character_voice_assigned.emit(character, self.current_voice_id())

    def _import_dialog(self) -> None:
        patterns = " ".join(f"*{s}" for s in AUDIO_SUFFIXES)
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Import a voice reference clip", "", f"Audio ({patterns});;All files (*)"
        )
        if path:
            self.import_requested.emit(path)

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if any(
            Path(url.toLocalFile()).suffix.lower() in AUDIO_SUFFIXES
            for url in event.mimeData().urls()
        ):
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        for url in event.mimeData().urls():
            path = url.toLocalFile()
            if Path(path).suffix.lower() in AUDIO_SUFFIXES:
                self.import_requested.emit(path)
        event.acceptProposedAction()


def clip_audio(project: Project, voice: VoiceProfile) -> tuple[np.ndarray, int]:
    """The trimmed main reference clip of a profile, mono float32 ``(N,)``, and its rate."""
    clip = voice.clips[0]
    audio, rate = sf.read(str(project.resolve_path(clip.path)), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    start = round(clip.trim_start_s * rate)
    end = len(mono) if clip.trim_end_s is None else round(clip.trim_end_s * rate)
    return mono[start:end], rate
