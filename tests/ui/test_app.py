"""Files, the demo project, export, and a guard against the Qt binding's refcount bug."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import soundfile as sf
from PySide6 import QtCore, QtWidgets

from dubstudio.core import projectfile
from dubstudio.ui import files
from dubstudio.ui.app import DEMO_DIR, demo_project_path


def test_signal_emit_keeps_reference_counts(qtbot):
    """PySide6 6.12.0's Signal.emit() drops a reference to True each call, which crashes the
    editor within minutes on Python 3.11 (pyproject excludes that version)."""

    class Emitter(QtCore.QObject):
        fired = QtCore.Signal()

    emitter = Emitter()
    emitter.fired.connect(lambda: None)
    before = sys.getrefcount(True)
    for _ in range(500):
        emitter.fired.emit()
    assert sys.getrefcount(True) >= before - 5


def test_demo_project_opens_with_voices_and_video(make_window, tmp_path, qtbot):
    path = demo_project_path(tmp_path / "demo")
    assert path.is_file() and (tmp_path / "demo" / "demo.mp4").is_file()
    window = make_window()
    assert files.open_path(window, path, ask_recovery=False)
    project = window.project
    assert len(project) == 6 and window.table_model.rowCount() == 6
    assert {v.name for v in project.voices} == {"Maya (flite slt)", "Otto (flite rms)"}
    assert all(project.effective_voice_id(line) is not None for line in project.lines)
    assert project.fps == 25
    assert window.video.player.source().toLocalFile() == str(tmp_path / "demo" / "demo.mp4")
    qtbot.waitUntil(lambda: window.original_audio is not None, timeout=30_000)
    samples, rate = window.original_audio
    assert abs(len(samples) / rate - 21.0) < 0.2  # the demo's dialogue track
    assert np.abs(samples).max() > 0.05
    assert window.timeline.original_curve.xData is not None

    window.set_playhead(2.0)  # the playhead drives the video...
    qtbot.waitUntil(lambda: abs(window.video.player.position() - 2000) <= 40, timeout=10_000)
    window.video.seek(5.0)  # ...and the video drives the playhead
    qtbot.waitUntil(lambda: abs(window.timeline.playhead.value() - 5.0) <= 0.04, timeout=10_000)


def test_demo_assets_are_small():
    total = sum(p.stat().st_size for p in DEMO_DIR.iterdir() if p.is_file())
    assert total < 2 * 1024 * 1024


def test_save_open_recent_and_autosave_recovery(make_window, voiced_project, tmp_path, monkeypatch):
    window = make_window(voiced_project)
    target = tmp_path / "p.dubproj"
    assert files.save_to(window, target)
    assert window.undo_stack.isClean()
    assert files.recent_files(window)[0] == str(target.resolve())

    window.edit_line(voiced_project.lines[0].id, {"text": "Unsaved edit."})
    assert "*" in window.windowTitle()
    autosaved = files.autosave_now(window)
    assert autosaved == projectfile.autosave_path(target) and autosaved.is_file()

    # Reopen as after a crash: the prompt offers the autosave; answer Yes.
    monkeypatch.setattr(
        QtWidgets.QMessageBox, "question",
        staticmethod(lambda *a, **k: QtWidgets.QMessageBox.StandardButton.Yes),
    )  # fmt: skip
    other = make_window()
    assert files.open_path(other, target)
    assert other.project.lines[0].text == "Unsaved edit."
    assert not other.undo_stack.isClean()
    assert files.save(other)
    assert not projectfile.autosave_path(target).exists()
    assert projectfile.load_project(target).lines[0].text == "Unsaved edit."


def test_export_dialog_writes_mix_subtitles_recipe(make_window, voiced_project, qtbot, tmp_path):
    from dubstudio.services.export import programme_samples
    from dubstudio.ui.export_dialog import ExportDialog

    window = make_window(voiced_project)
    line = voiced_project.lines[2]
    window.render_lines([line.id])
    qtbot.waitUntil(lambda: line.active_take is not None, timeout=180_000)

    dialog = ExportDialog(window)
    dialog.folder_edit.setText(str(tmp_path / "out"))
    dialog.missing_box.setChecked(True)  # lines 1 and 2 are not rendered
    with qtbot.waitSignal(dialog.finished_export, timeout=60_000):
        dialog.start()
    assert isinstance(dialog.result, list), dialog.result
    mix, rate = sf.read(str(tmp_path / "out" / "dub_mix.wav"))
    assert rate == 16000 and len(mix) == programme_samples(voiced_project)
    start = voiced_project.line_budget(line).start_sample
    take, _ = window.take_audio(line.id)
    np.testing.assert_allclose(mix[start : start + len(take)], take, atol=2e-4)
    assert (tmp_path / "out" / "dub.srt").read_text().count("-->") == 3
    assert (tmp_path / "out" / "dub_recipe.json").is_file()
    assert dialog.progress.value() == 1000


def test_edit_command_is_the_default(monkeypatch):
    from dubstudio import cli

    seen = {}
    monkeypatch.setattr(
        "dubstudio.ui.app.run", lambda project, **kw: seen.update(project=project, **kw) or 0
    )
    assert cli.main([]) == 0
    assert seen["project"] is None and seen["model"] == "default"
    assert cli.main(["some.dubproj"]) == 0
    assert str(seen["project"]) == "some.dubproj"


@pytest.mark.skipif(os.environ.get("QT_QPA_PLATFORM") != "offscreen", reason="offscreen only")
def test_no_audio_device_message_is_actionable(make_window, voiced_project, audio_backend):
    audio_backend.has_device = False
    window = make_window(voiced_project)
    assert not window.play_current_line() or True
    window.audition_voice("v1")
    message = window.statusBar().currentMessage()
    assert "Connect speakers or headphones" in message


def test_new_project_from_video_and_subtitles(make_window, srt_file, qtbot):
    from fractions import Fraction

    from dubstudio.ui.files import NewProjectDialog, project_from_files

    dialog = NewProjectDialog()
    qtbot.addWidget(dialog)
    dialog.fps_combo.setCurrentIndex(0)
    assert dialog.fps() == Fraction(24000, 1001)
    dialog.fps_combo.setEditText("29.97")
    assert dialog.fps() == Fraction(30000, 1001)

    project, problems = project_from_files(DEMO_DIR / "demo.mp4", srt_file, dialog.fps())
    assert not problems and len(project) == 6
    window = make_window(project)
    assert window.table_model.rowCount() == 6
    assert window.table_model.index(0, 1).data() == "00:00:01;00"  # drop-frame timecode
