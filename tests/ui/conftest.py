"""Editor test fixtures: a main window over a real project, the tiny engine, a fake audio device."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_SRT = REPO / "resources" / "demo" / "demo.srt"


class FakeAudioBackend:
    """Stands in for sounddevice (the device boundary): records what would have played."""

    def __init__(self, has_device: bool = True) -> None:
        self.has_device = has_device
        self.played: list[tuple[np.ndarray, int]] = []
        self.stops = 0

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        if not self.has_device:
            raise ValueError("No output device matching 'output'")  # what sounddevice raises
        return {"name": "fake speakers", "max_output_channels": 2}

    def play(self, data: np.ndarray, samplerate: int) -> None:
        self.played.append((np.asarray(data), samplerate))

    def stop(self) -> None:
        self.stops += 1


@pytest.fixture
def no_engine_threads_left():
    """Fails the test if an editor engine QThread is still running after it."""
    yield
    from dubstudio.ui.worker import EngineThread

    running = [t for t in list(EngineThread.instances) if t.qthread.isRunning()]
    assert not running, f"{len(running)} engine QThread(s) still running after the test"


@pytest.fixture
def srt_file(tmp_path: Path) -> Path:
    """A copy of the demo subtitles."""
    target = tmp_path / "demo.srt"
    shutil.copy(DEMO_SRT, target)
    return target


@pytest.fixture
def audio_backend() -> FakeAudioBackend:
    return FakeAudioBackend()


@pytest.fixture
def make_window(qtbot, tmp_path, tiny_bundle, audio_backend, no_engine_threads_left):
    """Builds a MainWindow on the tiny engine; closes it (and its thread) after the test."""
    from PySide6 import QtCore

    from dubstudio.ui.main_window import EngineSetup, MainWindow
    from dubstudio.ui.playback import AudioOutput

    windows = []

    def make(project=None, *, cfm_steps: int = 2, render_on_open: bool = False):
        from dubstudio.services.requests import RequestOptions

        settings = QtCore.QSettings(
            str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat
        )
        window = MainWindow(
            project,
            engine=EngineSetup(tiny_bundle.root, "cpu"),
            audio_output=AudioOutput(audio_backend),
            settings=settings,
            cache_root=tmp_path / "cache",
            render_options=RequestOptions(cfm_steps=cfm_steps),
            render_on_open=render_on_open,
        )
        window.setProperty("skip_confirm", True)
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


@pytest.fixture
def voiced_project(voice_wav):
    """Three short lines (25 fps, 16 kHz) of two characters, both with a voice profile."""
    from dubstudio.core.model import Line, Project, ReferenceClip, VoiceProfile

    voice = VoiceProfile(id="v1", name="Tester", clips=(ReferenceClip(str(voice_wav)),))
    lines = [
        Line("Did you hear that?", 25, 50, character="MAYA"),
        Line("It is the wind.", 55, 80, character="OTTO"),
        Line("It never knocks.", 85, 110, character="MAYA"),
    ]
    return Project(
        fps=25,
        sample_rate=16000,
        lines=lines,
        voices=[voice],
        characters={"MAYA": "v1", "OTTO": "v1"},
    )
