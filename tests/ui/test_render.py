"""Rendering through the editor's worker thread with the tiny real engine."""

from __future__ import annotations

import threading

import numpy as np
import soundfile as sf

from dubstudio.core.model import FitMode, Line, Project, ReferenceClip, VoiceProfile
from dubstudio.ui.models import LineTableModel

RENDER_TIMEOUT_MS = 180_000


def test_render_shows_take_waveform_fit_status_and_plays(
    make_window, voiced_project, qtbot, audio_backend
):
    window = make_window(voiced_project)
    line = voiced_project.lines[0]
    window.edit_line(line.id, {"fit_mode": FitMode.NATURAL})
    window.select_line(line.id)
    model = window.table_model
    assert "measured" not in model.index(0, LineTableModel.COL_FIT).data(
        __import__("PySide6").QtCore.Qt.ItemDataRole.ToolTipRole
    )
    window.stop_rendering()  # the fit-mode change queued it in the background; ask explicitly
    assert not window.timeline.has_take_curve(line.id)

    window.render_current()
    assert model.index(0, LineTableModel.COL_RENDER).data() in ("queued", "rendering…")
    qtbot.waitUntil(lambda: line.active_take is not None, timeout=RENDER_TIMEOUT_MS)

    take = line.active_take
    assert take.line_revision == line.revision
    # The model was built (and ran) on the worker thread, never on the GUI thread.
    assert window.engine.worker.model_thread_id != threading.get_ident()
    assert window.engine.worker.synthesizer is not None
    assert window.timeline.has_take_curve(line.id)
    curve = window.timeline.take_curves[line.id]
    assert curve.xData[0] >= 1.0  # drawn from the line's start (frame 25 at 25 fps)
    assert model.index(0, LineTableModel.COL_RENDER).data() == "rendered"
    tooltip = model.index(0, LineTableModel.COL_FIT).data(
        __import__("PySide6").QtCore.Qt.ItemDataRole.ToolTipRole
    )
    assert "measured from the rendered take" in tooltip
    assert window.inspector.takes_list.count() == 1

    assert window.play_current_line()
    played, rate = audio_backend.played[-1]
    assert rate == 16000 and len(played) == take.n_samples


def test_exact_render_has_exact_length(make_window, voiced_project, qtbot):
    window = make_window(voiced_project)
    line = voiced_project.lines[1]  # frames 55..80 at 25 fps, 16 kHz: exactly 16000 samples
    window.render_lines([line.id])
    qtbot.waitUntil(lambda: line.active_take is not None, timeout=RENDER_TIMEOUT_MS)
    audio, rate = window.take_audio(line.id)
    assert rate == 16000 and len(audio) == 16000
    mix = window.mix_range(2.0, 4.0)
    start = round((55 / 25 - 2.0) * 16000)
    np.testing.assert_allclose(mix[start : start + 16000], np.clip(audio, -1, 1), atol=1e-6)


def test_stale_result_is_dropped(make_window, voiced_project, qtbot):
    window = make_window(voiced_project)
    worker = window.engine.worker
    line = voiced_project.lines[0]
    old_revision = line.revision
    worker.outcome_emitted.clear()
    window.render_lines([line.id])
    # Block the GUI thread until the worker has sent its result, so the result is still waiting in
    # the event queue when the line changes.
    assert worker.outcome_emitted.wait(RENDER_TIMEOUT_MS / 1000)
    window.edit_line(line.id, {"text": "Something else entirely."})
    assert line.revision > old_revision

    qtbot.waitUntil(lambda: window.stale_dropped == 1, timeout=10_000)
    assert all(t.line_revision != old_revision for t in line.takes)  # never attached
    window.stop_rendering()


def test_stop_cancels_running_render_and_worker_goes_on(make_window, qtbot, voice_wav):
    voice = VoiceProfile(id="v", name="V", clips=(ReferenceClip(str(voice_wav)),))
    long_line = Line("A long line " * 12, 0, 25 * 14, character="A")
    short_line = Line("Short.", 800, 825, character="A")
    project = Project(
        fps=25, sample_rate=16000, lines=[long_line, short_line], voices=[voice],
        characters={"A": "v"},
    )  # fmt: skip
    window = make_window(project, cfm_steps=16)
    worker = window.engine.worker
    with qtbot.waitSignal(
        worker.job_event,
        timeout=RENDER_TIMEOUT_MS,
        check_params_cb=lambda event, job: event == "started" and job.line_id == long_line.id,
    ):
        window.render_lines([long_line.id])

    with qtbot.waitSignal(
        worker.job_event,
        timeout=60_000,
        check_params_cb=lambda event, job: (
            event in ("superseded", "cancelled") and job.line_id == long_line.id
        ),
    ):
        window.stop_rendering()
    assert long_line.active_take is None
    assert len(window.service) == 0
    qtbot.waitUntil(
        lambda: window.table_model.index(0, LineTableModel.COL_RENDER).data() != "rendering…",
        timeout=10_000,
    )

    window.render_lines([short_line.id])  # the worker thread survived the cancellation
    qtbot.waitUntil(lambda: short_line.active_take is not None, timeout=RENDER_TIMEOUT_MS)


def test_engine_error_is_reported_and_worker_survives(make_window, qtbot, voice_wav, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"this is not audio at all" * 10)
    project = Project(
        fps=25, sample_rate=16000,
        lines=[
            Line("Bad voice.", 0, 25, character="B"),
            Line("Good voice.", 30, 55, character="G"),
        ],
        voices=[
            VoiceProfile(id="b", name="Broken", clips=(ReferenceClip(str(broken)),)),
            VoiceProfile(id="g", name="Good", clips=(ReferenceClip(str(voice_wav)),)),
        ],
        characters={"B": "b", "G": "g"},
    )  # fmt: skip
    window = make_window(project)
    bad, good = project.lines
    with qtbot.waitSignal(
        window.engine.worker.job_event,
        timeout=RENDER_TIMEOUT_MS,
        check_params_cb=lambda event, job: event == "failed" and job.line_id == bad.id,
    ):
        window.render_lines([bad.id])
    # The failure reaches the window through a queued signal after the worker's own event.
    qtbot.waitUntil(lambda: window.error_button.isVisibleTo(window), timeout=10_000)
    assert "Line 1" in window.statusBar().currentMessage()
    assert "broken.wav" in window.last_error_details or "audio" in window.last_error_details.lower()
    assert window.table_model.index(0, LineTableModel.COL_RENDER).data() == "error"

    window.render_lines([good.id])
    qtbot.waitUntil(lambda: good.active_take is not None, timeout=RENDER_TIMEOUT_MS)


def test_playback_without_audio_device_says_so(make_window, voiced_project, audio_backend):
    audio_backend.has_device = False
    window = make_window(voiced_project)
    window.audition_voice("v1")
    assert "No audio output device" in window.statusBar().currentMessage()
    assert not audio_backend.played


def test_audition_plays_trimmed_clip(make_window, voiced_project, audio_backend, voice_wav):
    window = make_window(voiced_project)
    voice = voiced_project.voice("v1")
    clip = ReferenceClip(voice.clips[0].path, 0.5, 2.0)
    window.edit_voice(VoiceProfile(id="v1", name="Tester", clips=(clip,)))
    window.audition_voice("v1")
    played, rate = audio_backend.played[-1]
    assert rate == sf.info(str(voice_wav)).samplerate
    assert len(played) == round(1.5 * rate)


def test_closing_stops_the_engine_thread(make_window):
    window = make_window(Project(fps=25))
    thread = window.engine.qthread
    assert thread.isRunning()
    window.close()
    assert thread.isFinished()


def test_opening_a_project_renders_its_lines_in_the_background(make_window, voiced_project, qtbot):
    window = make_window(voiced_project, render_on_open=True)
    qtbot.waitUntil(
        lambda: all(line.active_take is not None for line in voiced_project.lines),
        timeout=RENDER_TIMEOUT_MS,
    )
    for line in voiced_project.lines:
        assert window.timeline.has_take_curve(line.id)
