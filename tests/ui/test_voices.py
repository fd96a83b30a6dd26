"""Voice-profile panel and emotion presets, through the real widgets."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtTest import QTest

from dubstudio.core.model import EmotionMode


def test_drop_import_trim_assign_and_undo(make_window, voiced_project, voice_wav, qtbot):
    window = make_window(voiced_project)
    panel = window.voice_panel

    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(voice_wav))])
    drop = QtGui.QDropEvent(
        QtCore.QPointF(10, 10), QtCore.Qt.DropAction.CopyAction, mime,
        QtCore.Qt.MouseButton.NoButton, QtCore.Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    panel.dropEvent(drop)
    assert len(voiced_project.voices) == 2
    new = voiced_project.voices[-1]
    assert new.name == "voice" and panel.list.count() == 2

    panel.list.setCurrentRow(1)
    assert panel.current_voice_id() == new.id
    assert panel.wave_curve.xData is not None and len(panel.wave_curve.xData) > 0
    panel.trim_region.setRegion((0.5, 2.25))  # as a drag of the trim edges would end
    clip = voiced_project.voice(new.id).clips[0]
    assert (clip.trim_start_s, clip.trim_end_s) == (0.5, 2.25)

    panel.name_edit.setText("Narrator")
    panel.name_edit.editingFinished.emit()
    assert voiced_project.voice(new.id).name == "Narrator"

    panel.character_combo.setCurrentText("OTTO")
    otto_line = voiced_project.lines[1]
    revision = otto_line.revision
    QTest.mouseClick(
        panel.findChild(QtWidgets.QPushButton, "assign-voice"), QtCore.Qt.MouseButton.LeftButton
    )
    assert voiced_project.characters["OTTO"] == new.id
    assert otto_line.revision > revision  # a new voice is a new render
    assert "Narrator" in window.table_model.index(1, 5).data()

    window.undo_stack.undo()  # assignment
    assert voiced_project.characters["OTTO"] == "v1"
    window.undo_stack.undo()  # rename
    window.undo_stack.undo()  # trim
    assert voiced_project.voice(new.id).clips[0].trim_end_s is None
    window.undo_stack.undo()  # import
    assert len(voiced_project.voices) == 1

    qtbot.waitUntil(lambda: new.id in panel.analysis_text, timeout=120_000)  # engine analysis
    assert "syllables/s" in panel.analysis_text[new.id] or "⚠" in panel.analysis_text[new.id]


def test_emotion_presets_with_number_keys(make_window, voiced_project, monkeypatch):
    window = make_window(voiced_project)
    first, _second, third = voiced_project.lines  # MAYA, OTTO, MAYA
    window.select_line(first.id)
    panel = window.emotion_panel
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData(EmotionMode.SLIDERS.value))
    panel.sliders[0].setValue(80)  # happy
    window.save_preset("cheerful")
    assert panel.preset_combo.itemText(0) == "1: cheerful"

    window.select_line(third.id)
    assert third.emotion.mode is EmotionMode.SAME_AS_VOICE
    shortcut = next(a for a in window.actions() if a.shortcut().toString() == "1")
    shortcut.trigger()
    assert third.emotion.mode is EmotionMode.SLIDERS and third.emotion.vector[0] == 0.8
    assert panel.sliders[0].value() == 80  # the panel follows the model


def test_emotion_description_shows_eight_values(make_window, voiced_project, qtbot):
    window = make_window(voiced_project)
    line = voiced_project.lines[0]
    window.select_line(line.id)
    panel = window.emotion_panel
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData(EmotionMode.TEXT.value))
    panel.description_edit.setText("quietly furious")
    with qtbot.waitSignal(window.engine.worker.task_finished, timeout=120_000):
        panel.description_edit.editingFinished.emit()
    assert line.emotion.mode is EmotionMode.TEXT and line.emotion.description == "quietly furious"
    qtbot.waitUntil(lambda: panel.description_result.text() != "", timeout=10_000)
    shown = panel.description_result.text()
    assert shown.startswith("happ") and shown.count(".") == 8, shown


def test_an_imported_voice_is_prepared_before_its_first_render(
    make_window, voiced_project, voice_wav, qtbot, tmp_path
):
    import numpy as np
    import soundfile as sf

    audio, rate = sf.read(str(voice_wav), dtype="float32")
    clip = tmp_path / "narrator.wav"
    sf.write(str(clip), np.roll(audio, rate // 3), rate)  # another voice than the project's
    window = make_window(voiced_project)
    with qtbot.waitSignal(
        window.engine.worker.task_finished,
        check_params_cb=lambda name, _payload: name == "prepare_voice",
        timeout=120_000,
    ) as prepared:
        window.import_voice(str(clip))
    name, seconds = prepared.args[1]
    assert name == "narrator" and seconds >= 0.0
    assert "'narrator' ready for rendering" in window.statusBar().currentMessage()
    synth = window.engine.worker.synthesizer
    misses, hits = synth.voice_cache_misses, synth.voice_cache_hits
    assert misses == 1  # the import computed the voice, nothing else did

    window.assign_character_voice("OTTO", voiced_project.voices[-1].id)
    line = voiced_project.lines[1]
    window.render_lines([line.id])
    qtbot.waitUntil(lambda: line.active_take is not None, timeout=120_000)
    assert synth.voice_cache_misses == misses  # the render found the voice ready
    assert synth.voice_cache_hits > hits
