"""Fixtures of the services tests: the real tiny random engine, a voice clip, small projects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dubstudio.core.model import Line, Project, ReferenceClip, VoiceProfile
from dubstudio.engine.api import SynthesisRequest, SynthesisResult


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random bundle of the real engine classes (written once per session)."""
    from dubstudio.engine.bundles import create_tiny_bundle

    # The "fast" tiny kind (real classes, tiny HiFi-GAN): these tests render many lines.
    return create_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", kind="fast")


@pytest.fixture(scope="session")
def tiny_synth(tiny_bundle_dir: Path) -> Any:
    """The real Synthesizer on the tiny bundle, on the CPU."""
    import torch

    from dubstudio.engine.pipeline import Synthesizer

    # One thread: the tiny model gains nothing from more, and the machine's cores are shared.
    torch.set_num_threads(1)

    return Synthesizer.from_bundle(tiny_bundle_dir, device="cpu")


class CountingSynthesizer:
    """The real synthesizer, counting the requests that reach it (to prove cache hits)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[SynthesisRequest] = []
        self.hook: Callable[[SynthesisRequest, float, str], None] | None = None

    @property
    def identity(self) -> str:
        return str(self.inner.identity)

    def synthesize(self, request: SynthesisRequest, **kwargs: Any) -> SynthesisResult:
        self.calls.append(request)
        on_progress = kwargs.pop("on_progress", None)
        hook = self.hook

        def progress(fraction: float, stage: str) -> None:
            if on_progress is not None:
                on_progress(fraction, stage)
            if hook is not None:
                hook(request, fraction, stage)

        return self.inner.synthesize(request, on_progress=progress, **kwargs)  # type: ignore[no-any-return]


@pytest.fixture
def synth(tiny_synth: Any) -> CountingSynthesizer:
    return CountingSynthesizer(tiny_synth)


def write_voice(path: Path, seconds: float = 1.5, rate: int = 16000, pitch: float = 180.0) -> Path:
    """A short voiced-sounding reference clip (harmonics with a syllable envelope)."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3.0 * t))
    sf.write(path, (0.2 * tone * envelope).astype(np.float32), rate)
    return path


@pytest.fixture
def voice_wav(tmp_path: Path) -> Path:
    return write_voice(tmp_path / "voice.wav")


def make_project(
    folder: Path, voice: Path, *, fps: str = "25", sample_rate: int = 22050
) -> Project:
    """Four short lines by two characters (one overlap) with voice profiles, saved beside
    ``folder/demo.dubproj``."""
    other = write_voice(folder / "voice2.wav", pitch=120.0)
    voices = [
        VoiceProfile(id="v1", name="Ann", clips=(ReferenceClip(voice.name),)),
        VoiceProfile(id="v2", name="Bob", clips=(ReferenceClip(other.name),)),
    ]
    lines = [
        Line(text="Hello there.", start_frame=5, end_frame=25, character="Ann"),
        Line(text="<i>Who</i> is it?", start_frame=30, end_frame=45, character="Bob"),
        Line(text="Only me.", start_frame=40, end_frame=60, character="Ann"),  # overlaps Bob
        Line(text="Come in then.", start_frame=70, end_frame=90, character="Bob"),
    ]
    return Project(
        fps=fps,
        sample_rate=sample_rate,
        lines=lines,
        voices=voices,
        characters={"Ann": "v1", "Bob": "v2"},
        path=folder / "demo.dubproj",
    )


@pytest.fixture
def project(tmp_path: Path, voice_wav: Path) -> Project:
    """The four-line project of `make_project` at 25 fps, 22.05 kHz."""
    return make_project(tmp_path, voice_wav)


@pytest.fixture
def cache(tmp_path: Path) -> Any:
    from dubstudio.services.cache import RenderCache

    return RenderCache(tmp_path / "cache")
