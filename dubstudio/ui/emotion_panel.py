"""The emotion panel: mode, eight sliders (IndexTTS-2 order), strength, reference, description.

The panel edits a copy of the current line's `EmotionSpec`. It reports a finished edit (slider
released, mode picked, description confirmed) through `emotion_edited`; the main window turns it
into an undoable command, and the project's change notification brings the new spec back through
`show_emotion`. Presets are per character and live in the project settings; keys 1..9 apply them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PySide6 import QtCore, QtWidgets

from dubstudio.core.errors import DubStudioError
from dubstudio.core.model import EMOTION_NAMES, EmotionMode, EmotionSpec

logger = logging.getLogger(__name__)

# Sliders are integers; one step is 0.01.
_SCALE = 100

MODE_LABELS: dict[EmotionMode, str] = {
    EmotionMode.SAME_AS_VOICE: "Same as voice",
    EmotionMode.SLIDERS: "Sliders",
    EmotionMode.REFERENCE_AUDIO: "Reference clip",
    EmotionMode.TEXT: "Description",
}


class EmotionPanel(QtWidgets.QGroupBox):
    """Edit one line's emotion.

    Signals:
        emotion_edited(object): a finished edit; the argument is the new `EmotionSpec`.
        description_analysis_requested(str): ask the engine for the eight values of a text.
        preset_saved(str): save the current emotion as a preset under this name.
        preset_applied(int): apply the preset with this index (0-based).
    """

    emotion_edited = QtCore.Signal(object)
    description_analysis_requested = QtCore.Signal(str)
    preset_saved = QtCore.Signal(str)
    preset_applied = QtCore.Signal(int)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Emotion", parent)
        self._spec = EmotionSpec()
        self._updating = False
        layout = QtWidgets.QGridLayout(self)
        layout.setVerticalSpacing(2)

        self.mode_combo = QtWidgets.QComboBox()
        for mode, label in MODE_LABELS.items():
            self.mode_combo.addItem(label, mode.value)
        self.mode_combo.currentIndexChanged.connect(self._on_mode_changed)
        layout.addWidget(QtWidgets.QLabel("Mode"), 0, 0)
        layout.addWidget(self.mode_combo, 0, 1, 1, 2)

        self.sliders: list[QtWidgets.QSlider] = []
        self.value_labels: list[QtWidgets.QLabel] = []
        for i, name in enumerate(EMOTION_NAMES):
            slider = self._make_slider()
            value_label = QtWidgets.QLabel("0.00")
            value_label.setMinimumWidth(34)
            slider.valueChanged.connect(
                lambda value, lbl=value_label: lbl.setText(f"{value / _SCALE:.2f}")
            )
            layout.addWidget(QtWidgets.QLabel(name), 1 + i, 0)
            layout.addWidget(slider, 1 + i, 1)
            layout.addWidget(value_label, 1 + i, 2)
            self.sliders.append(slider)
            self.value_labels.append(value_label)

        row = 1 + len(EMOTION_NAMES)
        self.alpha_slider = self._make_slider()
        self.alpha_label = QtWidgets.QLabel("1.00")
        self.alpha_slider.valueChanged.connect(
            lambda value: self.alpha_label.setText(f"{value / _SCALE:.2f}")
        )
        layout.addWidget(QtWidgets.QLabel("strength α"), row, 0)
        layout.addWidget(self.alpha_slider, row, 1)
        layout.addWidget(self.alpha_label, row, 2)

        self.reference_combo = QtWidgets.QComboBox()
        self.reference_combo.setToolTip("Emotion reference clip (e.g. the original actor's line)")
        self.reference_combo.activated.connect(lambda _i: self._commit())
        self.browse_button = QtWidgets.QPushButton("…")
        self.browse_button.setMaximumWidth(28)
        self.browse_button.clicked.connect(self._browse_reference)
        layout.addWidget(QtWidgets.QLabel("reference"), row + 1, 0)
        layout.addWidget(self.reference_combo, row + 1, 1)
        layout.addWidget(self.browse_button, row + 1, 2)

        self.description_edit = QtWidgets.QLineEdit()
        self.description_edit.setPlaceholderText("e.g. quietly furious")
        self.description_edit.editingFinished.connect(self._on_description_finished)
        layout.addWidget(QtWidgets.QLabel("description"), row + 2, 0)
        layout.addWidget(self.description_edit, row + 2, 1, 1, 2)
        self.description_result = QtWidgets.QLabel("")
        self.description_result.setWordWrap(True)
        self.description_result.setStyleSheet("color: #8a8;")
        layout.addWidget(self.description_result, row + 3, 0, 1, 3)

        presets = QtWidgets.QHBoxLayout()
        self.preset_combo = QtWidgets.QComboBox()
        self.preset_combo.setToolTip("Presets of this character; keys 1-9 apply them")
        self.preset_combo.activated.connect(self.preset_applied.emit)
        save = QtWidgets.QPushButton("Save preset…")
        save.clicked.connect(self._ask_preset_name)
        presets.addWidget(self.preset_combo, 1)
        presets.addWidget(save)
        layout.addLayout(presets, row + 4, 0, 1, 3)
        self._sync_enabled()

    def _make_slider(self) -> QtWidgets.QSlider:
        slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        slider.setRange(0, _SCALE)
        slider.setPageStep(10)
        slider.setMinimumWidth(80)
        # Commit when the mouse lets go, or at once for keyboard/wheel changes.
        slider.sliderReleased.connect(self._commit)
        slider.valueChanged.connect(self._on_slider_value)
        return slider

    # -- showing -------------------------------------------------------------------------------

    @property
    def spec(self) -> EmotionSpec:
        """The emotion shown."""
        return self._spec

    def set_reference_choices(self, paths: Sequence[str]) -> None:
        """Offer these clips in the reference picker (voice clips and the original's lines)."""
        current = self.reference_combo.currentData()
        self._updating = True
        try:
            self.reference_combo.clear()
            self.reference_combo.addItem("(none)", None)
            for path in paths:
                self.reference_combo.addItem(path.replace("\\", "/").rsplit("/", 1)[-1], path)
            index = self.reference_combo.findData(current)
            self.reference_combo.setCurrentIndex(max(0, index))
        finally:
            self._updating = False

    def set_presets(self, names: Sequence[str]) -> None:
        """List the presets of the current line's character."""
        self.preset_combo.clear()
        for i, name in enumerate(names):
            self.preset_combo.addItem(f"{i + 1}: {name}" if i < 9 else name)

    def show_emotion(self, spec: EmotionSpec) -> None:
        """Display ``spec`` without reporting an edit."""
        self._spec = spec
        self._updating = True
        try:
            self.mode_combo.setCurrentIndex(self.mode_combo.findData(spec.mode.value))
            for slider, value in zip(self.sliders, spec.vector, strict=True):
                slider.setValue(round(value * _SCALE))
            self.alpha_slider.setValue(round(spec.alpha * _SCALE))
            if spec.reference_path and self.reference_combo.findData(spec.reference_path) < 0:
                self.reference_combo.addItem(
                    spec.reference_path.replace("\\", "/").rsplit("/", 1)[-1], spec.reference_path
                )
            self.reference_combo.setCurrentIndex(
                max(0, self.reference_combo.findData(spec.reference_path))
            )
            if self.description_edit.text() != spec.description:
                self.description_edit.setText(spec.description)
        finally:
            self._updating = False
        self._sync_enabled()

    def show_description_result(self, vector: Sequence[float]) -> None:
        """Show the eight values the engine derived from the description."""
        self.description_result.setText(
            "  ".join(
                f"{name[:4]} {value:.2f}"
                for name, value in zip(EMOTION_NAMES, vector, strict=False)
            )
        )

    def _sync_enabled(self) -> None:
        mode = EmotionMode(self.mode_combo.currentData())
        for slider in self.sliders:
            slider.setEnabled(mode is EmotionMode.SLIDERS)
        self.alpha_slider.setEnabled(mode is not EmotionMode.SAME_AS_VOICE)
        self.reference_combo.setEnabled(mode is EmotionMode.REFERENCE_AUDIO)
        self.browse_button.setEnabled(mode is EmotionMode.REFERENCE_AUDIO)
        self.description_edit.setEnabled(mode is EmotionMode.TEXT)

    # -- editing -------------------------------------------------------------------------------

    def current_spec(self) -> EmotionSpec:
        """The spec the widgets show now (may raise `ValidationError` for a missing clip)."""
        return EmotionSpec(
            mode=EmotionMode(self.mode_combo.currentData()),
            vector=tuple(s.value() / _SCALE for s in self.sliders),
            alpha=self.alpha_slider.value() / _SCALE,
            reference_path=self.reference_combo.currentData(),
            description=self.description_edit.text().strip(),
        )

    def _on_slider_value(self, _value: int) -> None:
        if self._updating:
            return
        slider = self.sender()
        if isinstance(slider, QtWidgets.QSlider) and slider.isSliderDown():
            return  # committed on release
        self._commit()

    def _on_mode_changed(self, _index: int) -> None:
        self._sync_enabled()
        if not self._updating:
            self._commit()

    def _on_description_finished(self) -> None:
        if self._updating:
            return
        text = self.description_edit.text().strip()
        if text:
            self.description_analysis_requested.emit(text)
        self._commit()

    def _commit(self) -> None:
        if self._updating:
            return
        try:
            spec = self.current_spec()
        except DubStudioError as exc:
            # e.g. reference mode with no clip chosen yet: wait for the clip.
            logger.debug("emotion not committed: %s", exc)
            return
        if spec != self._spec:
            self._spec = spec
            self.emotion_edited.emit(spec)

    def _browse_reference(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Emotion reference clip", "", "Audio (*.wav *.flac *.ogg *.mp3);;All files (*)"
        )
        if path:
            self.reference_combo.addItem(path.rsplit("/", 1)[-1], path)
            self.reference_combo.setCurrentIndex(self.reference_combo.count() - 1)
            self._commit()

    def _ask_preset_name(self) -> None:
        name, ok = QtWidgets.QInputDialog.getText(self, "Save emotion preset", "Preset name:")
        if ok and name.strip():
            self.preset_saved.emit(name.strip())
