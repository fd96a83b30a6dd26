"""End to end: the bundled default model renders the demo's first line through the editor."""

from __future__ import annotations

import pytest

from dubstudio.core.errors import ModelLoadError
from dubstudio.ui import files
from dubstudio.ui.app import demo_project_path


def _default_bundle():
    from dubstudio.engine.bundles import load_bundle

    try:
        return load_bundle("default")
    except ModelLoadError as exc:
        pytest.skip(f"no bundled default model in resources/models yet ({exc})")


@pytest.mark.slow
def test_default_model_renders_first_demo_line_exactly(
    qtbot, tmp_path, audio_backend, no_engine_threads_left
):
    from PySide6 import QtCore

    from dubstudio.ui.main_window import EngineSetup, MainWindow
    from dubstudio.ui.playback import AudioOutput

    bundle = _default_bundle()
    window = MainWindow(
        engine=EngineSetup(bundle.root, "cpu"),
        audio_output=AudioOutput(audio_backend),
        settings=QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat),
        cache_root=tmp_path / "cache",
    )
    window.setProperty("skip_confirm", True)
    qtbot.addWidget(window)
    try:
        assert files.open_path(window, demo_project_path(tmp_path / "demo"), ask_recovery=False)
        line = window.project.lines[0]
        assert (line.start_frame, line.end_frame) == (25, 88)  # 1.00 s .. 3.52 s at 25 fps
        window.select_line(line.id)
        with qtbot.waitSignal(window.engine.worker.model_loaded, timeout=600_000):
            window.render_current()  # Ctrl+R
        qtbot.waitUntil(lambda: line.active_take is not None, timeout=600_000)

        expected = (88 - 25) * 48000 // 25  # 2.52 s of the slot at the project's 48 kHz
        assert expected == 120960
        take = line.active_take
        assert take.n_samples == expected and take.sample_rate == 48000
        audio, rate = window.take_audio(line.id)
        assert rate == 48000 and len(audio) == expected
        assert window.timeline.has_take_curve(line.id)
        assert window.play_current_line()
        assert len(audio_backend.played[-1][0]) == expected
    finally:
        window.close()
