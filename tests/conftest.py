"""Shared pytest set-up: offscreen Qt, few CPU threads, deterministic torch."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "DUBSTUDIO_CACHE_DIR" not in os.environ:  # fitted voice styles, vocoder exports: not the user's
    import tempfile

    os.environ["DUBSTUDIO_CACHE_DIR"] = tempfile.mkdtemp(prefix="dubstudio-test-cache-")


# ---------------------------------------------------------------------------------------------
# Engine fixtures (shared by engine, services and editor tests).

import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A tiny random model bundle of the real engine classes (`ModelBundle`), CPU, seconds.

    Same kind and layout as the bundled default model (`dubstudio.engine.small`). Load it with
    `Synthesizer.from_bundle(tiny_bundle, "cpu")`; its directory is ``tiny_bundle.root``. It
    makes noise, not speech, but obeys every length rule.
    """
    from dubstudio.engine.bundles import create_tiny_bundle, load_bundle

    return load_bundle(create_tiny_bundle(tmp_path_factory.mktemp("tiny_bundle") / "tiny"))


@pytest.fixture(scope="session")
def fast_tiny_bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Like `tiny_bundle` but several times cheaper per line (character front-end, tiny
    HiFi-GAN): for tests that render many lines and do not care about the small-model path."""
    from dubstudio.engine.bundles import create_tiny_bundle, load_bundle

    root = tmp_path_factory.mktemp("fast_tiny_bundle") / "fast-tiny"
    return load_bundle(create_tiny_bundle(root, kind="fast", name="fast-tiny"))


@pytest.fixture(scope="session")
def tiny_synthesizer(tiny_bundle):  # type: ignore[no-untyped-def]
    """A `Synthesizer` on the CPU over `tiny_bundle` (shared; its voice cache persists)."""
    from dubstudio.engine.pipeline import Synthesizer

    return Synthesizer.from_bundle(tiny_bundle, "cpu")


@pytest.fixture(scope="session")
def voice_wav(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A 3 s reference clip (22.05 kHz WAV, a chirp with noise) as a `pathlib.Path`."""
    import numpy as np
    import soundfile as sf

    path = tmp_path_factory.mktemp("voice") / "voice.wav"
    sr = 22050
    t = np.arange(3 * sr) / sr
    rng = np.random.default_rng(0)
    wave = 0.3 * np.sin(2 * np.pi * (120 + 40 * t) * t) + 0.02 * rng.standard_normal(len(t))
    sf.write(path, wave.astype(np.float32), sr)
    return path
