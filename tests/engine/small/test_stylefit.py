"""Per-voice style fit: the mel-to-encoder bridge on real speech, the optimiser on a real small
torch decoder, the on-disk cache, and the pipeline path (voices the decoder knows left unfitted)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from dubstudio.core.errors import RenderCancelled
from dubstudio.engine import stylefit
from dubstudio.engine.stylefit import (
    SpectrumBridge,
    StyleCache,
    StyleFitResult,
    fit_style,
)


def _espeak(text: str, path: Path, voice: str = "en-us") -> tuple[np.ndarray, int]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    audio, rate = sf.read(str(path), dtype="float32")
    return audio, rate


def test_bridge_gives_the_encoder_what_the_waveform_gives(tmp_path: Path) -> None:
    """Real speech: the encoder's embedding from the log-mel (no vocoder) is the embedding of
    the waveform itself, and the bridged power mel sits at the encoder's own level."""
    from dubstudio.engine.audio import mel_spectrogram, resample
    from dubstudio.engine.small import GE2EEncoder, mel_config

    audio, rate = _espeak(
        "The quick brown fox jumps over the lazy dog near the river.", tmp_path / "a.wav"
    )
    wave = torch.from_numpy(audio)
    ge2e, cfg = GE2EEncoder.pretrained(), mel_config()
    log_mel = mel_spectrogram(resample(wave, rate, cfg.sample_rate)[None], cfg)
    bridged = SpectrumBridge(cfg)(log_mel)
    own = ge2e.mel(resample(wave, rate, 16000))
    n = min(len(own), len(bridged))
    assert abs(len(own) - len(bridged)) <= 3
    level = float(bridged[:n].sum() / own[:n].sum())
    assert 0.7 < level < 1.5
    with torch.inference_mode():
        cos = float(ge2e.embed_mel(bridged) @ ge2e.embed(resample(wave, rate, 16000)))
    assert cos > 0.85
    # Another voice reading other words is further away than the bridge's error.
    other, orate = _espeak(
        "Seven silver spoons lay on the kitchen table.", tmp_path / "b.wav", "en-gb"
    )
    far = float(
        ge2e.embed(resample(torch.from_numpy(other), orate, 16000))
        @ ge2e.embed(resample(wave, rate, 16000))
    )
    assert cos > far
    # Differentiable in the log-mel.
    x = log_mel.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ge2e.embed_mel(SpectrumBridge(cfg)(x)).sum(), [x])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


class _Decoder(torch.nn.Module):
    """A small real decoder: style (1, S) -> features (F, D) through a fixed random MLP."""

    def __init__(self, style: int = 16, frames: int = 20, dim: int = 12) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(style, 64, generator=g) / 4)
        self.w2 = torch.nn.Parameter(torch.randn(64, frames * dim, generator=g) / 8)
        self.frames, self.dim = frames, dim

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(s @ self.w1) @ self.w2).reshape(self.frames, self.dim)


def _encoder(features: torch.Tensor) -> torch.Tensor:
    return F.normalize(features.mean(dim=0) + 0.5 * features.std(dim=0), dim=-1)


def test_fit_style_moves_towards_the_reference_and_keeps_the_best() -> None:
    decoder = _Decoder()
    g = torch.Generator().manual_seed(1)
    truth = F.normalize(torch.randn(1, 16, generator=g), dim=-1)
    init = F.normalize(torch.randn(1, 16, generator=g), dim=-1)
    with torch.no_grad():
        target = _encoder(decoder(truth))
    result = fit_style(decoder, _encoder, target, init, steps=40, lr=0.05)
    assert result.steps == 40 and result.best > result.start + 0.05
    assert result.style.shape == (1, 16)
    assert abs(float(result.style.norm()) - 1.0) < 1e-5
    with torch.no_grad():  # the returned style is the one that scored ``best``
        assert float(_encoder(decoder(result.style)) @ target) == pytest.approx(
            result.best, abs=1e-5
        )
    fractions: list[float] = []
    fit_style(decoder, _encoder, target, init, steps=3, on_fraction=fractions.append)
    assert fractions == [0.25, 0.5, 0.75, 1.0]
    # No steps: the initial style, measured.
    none = fit_style(decoder, _encoder, target, init, steps=0)
    assert torch.equal(none.style, init) and none.best == none.start == pytest.approx(result.start)
    # ``keep``: the same search, and the style returned goes that share of the way to the best.
    half = fit_style(decoder, _encoder, target, init, steps=40, lr=0.05, keep=0.5)
    expected = F.normalize(init + 0.5 * (result.style - init), dim=-1)
    assert torch.allclose(half.style, expected, atol=1e-6)
    with torch.no_grad():  # ``best`` is measured on the style returned
        assert float(_encoder(decoder(half.style)) @ target) == pytest.approx(half.best, abs=1e-5)
    assert half.start == pytest.approx(result.start) and half.start < half.best < result.best
    with pytest.raises(ValueError, match="keep"):
        fit_style(decoder, _encoder, target, init, steps=1, keep=0.0)
    # The model's own weights are not trained by the fit.
    assert decoder.w1.grad is None
    with pytest.raises(RenderCancelled):
        fit_style(decoder, _encoder, target, init, steps=3, should_stop=lambda: True)


def test_style_cache_round_trip_and_damage(tmp_path: Path) -> None:
    cache = StyleCache(tmp_path / "styles")
    assert cache.get("k") is None
    style = F.normalize(torch.randn(1, 8), dim=-1)
    cache.put("k", style, StyleFitResult(style, 0.5, 0.6, 3, 1.0))
    assert torch.equal(cache.get("k"), style)  # type: ignore[arg-type]
    assert list((tmp_path / "styles").iterdir()) == [tmp_path / "styles" / "k.safetensors"]
    (tmp_path / "styles" / "k.safetensors").write_bytes(b"not a safetensors file")
    assert cache.get("k") is None  # refitted rather than failing the render
    blocked = tmp_path / "file"
    blocked.write_text("x")
    StyleCache(blocked / "sub").put("k", style, StyleFitResult(style, 0.5, 0.6, 3, 1.0))


def test_pipeline_fits_a_voice_once_and_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tiny small bundle with ``style_fit``: the first use of a voice fits and stores its
    style; a new Synthesizer takes it from disk without fitting; budgets stay exact."""
    from dubstudio.engine.api import SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle

    monkeypatch.setenv("DUBSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    root = create_tiny_small_bundle(tmp_path / "b", seed=1)
    manifest = json.loads((root / "bundle.json").read_text())
    manifest["config"]["style_fit"] = 2
    manifest["config"]["style_fit_keep"] = 0.75
    (root / "bundle.json").write_text(json.dumps(manifest))
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "v.wav", (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), 22050)
    voice = VoiceRef(str(tmp_path / "v.wav"))
    request = SynthesisRequest(
        text="hello world", voice=voice, sample_rate=16000, target_samples=9000, seed=3
    )
    synth = Synthesizer.from_bundle(load_bundle(root))
    assert synth.components.style_fit_steps == 2
    assert synth.components.style_fit_keep == 0.75
    rendered: list[str] = []
    condition = synth._calibration_condition
    monkeypatch.setattr(
        synth, "_calibration_condition",
        lambda v, state, text: (rendered.append(text), condition(v, state, text))[1],
    )  # fmt: skip
    seen: list[tuple[float, str]] = []
    first = synth.synthesize(request, on_progress=lambda f, stage: seen.append((f, stage)))
    # The fit reports its steps as conditioning progress (the stage's 0-5 % of the bar).
    assert len([f for f, stage in seen if stage == "conditioning"]) >= 4
    assert len(first.audio) == 9000 and np.isfinite(first.audio).all()
    stored = list((tmp_path / "cache" / "styles").glob("*.safetensors"))
    assert len(stored) == 1
    cached = StyleCache(tmp_path / "cache" / "styles").get(stored[0].stem)
    assert cached is not None
    assert torch.equal(synth._voice(voice).features.style.cpu(), cached)

    def no_fit(*_args: object) -> None:
        raise AssertionError("the stored style should have been used")

    again = Synthesizer.from_bundle(load_bundle(root))
    monkeypatch.setattr(again, "_fit_style", no_fit)
    again.prepare_voice(voice)  # done ahead of the render: the render finds the voice ready
    assert (again.voice_cache_misses, again.voice_cache_hits) == (1, 0)
    second = again.synthesize(request)
    assert (again.voice_cache_misses, again.voice_cache_hits) == (1, 1)
    np.testing.assert_array_equal(second.audio, first.audio)
    assert rendered == [stylefit.FIT_TEXT]
    # A style fitted on other sentences is not reused: the voice is fitted again.
    monkeypatch.setattr(stylefit, "FIT_TEXT", "a different calibration sentence")
    Synthesizer.from_bundle(load_bundle(root)).prepare_voice(voice)
    assert len(list((tmp_path / "cache" / "styles").glob("*.safetensors"))) == 2


def test_a_voice_the_decoder_knows_is_not_fitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clip within ``style_fit_known`` of a training voice's style anchor keeps its own style
    (no calibration render, nothing stored); a clip far from every anchor is fitted."""
    from dubstudio.engine.api import VoiceRef
    from dubstudio.engine.audio import resample
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle

    monkeypatch.setenv("DUBSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    root = create_tiny_small_bundle(tmp_path / "b", seed=1)
    manifest = json.loads((root / "bundle.json").read_text())
    manifest["config"].update(style_fit=1, style_fit_known=0.8)
    (root / "bundle.json").write_text(json.dumps(manifest))
    audio, rate = _espeak("The boats came in at seven.", tmp_path / "v.wav")
    voice = VoiceRef(str(tmp_path / "v.wav"))
    synth = Synthesizer.from_bundle(load_bundle(root))
    assert synth.components.style_fit_known == 0.8
    embedding = synth.components.speaker_encoder.embed(
        resample(torch.from_numpy(audio).float(), rate, 16000)
    )
    other = F.normalize(
        torch.randn(2, embedding.numel(), generator=torch.Generator().manual_seed(0))
    )
    styles = tmp_path / "cache" / "styles"
    # Nearly this voice's own embedding among the anchors: a training voice.
    synth.components.style_anchors = torch.cat([other, 0.9 * embedding.reshape(1, -1)])
    own = synth.components.reference_encoder.encode(audio, rate).style
    assert torch.equal(synth._voice(voice).features.style.cpu(), own.cpu())
    assert not styles.exists()
    # Only other voices' anchors: fitted and stored.
    fresh = Synthesizer.from_bundle(load_bundle(root))
    fresh.components.style_anchors = other
    fresh.prepare_voice(voice)
    assert len(list(styles.glob("*.safetensors"))) == 1
    # With the guard off, the known voice is fitted too.
    monkeypatch.setenv("DUBSTUDIO_CACHE_DIR", str(tmp_path / "cache2"))
    again = Synthesizer.from_bundle(load_bundle(root))
    again.components.style_anchors = torch.cat([other, embedding.reshape(1, -1)])
    again.components.style_fit_known = None
    again.prepare_voice(voice)
    assert len(list((tmp_path / "cache2" / "styles").glob("*.safetensors"))) == 1


def test_a_voice_fits_after_a_longer_render_with_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoder's cached position table grows with the longest line: one grown by a render
    (inference mode) must still serve the next voice's style fit, which runs autograd."""
    from dubstudio.engine.api import SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle

    monkeypatch.setenv("DUBSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    root = create_tiny_small_bundle(tmp_path / "b", seed=1)
    manifest = json.loads((root / "bundle.json").read_text())
    manifest["config"]["style_fit"] = 1
    (root / "bundle.json").write_text(json.dumps(manifest))
    t = np.arange(22050) / 22050
    voices = []
    for k, hz in enumerate((140, 210)):
        sf.write(tmp_path / f"v{k}.wav", (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32),
                 22050)  # fmt: skip
        voices.append(VoiceRef(str(tmp_path / f"v{k}.wav")))
    synth = Synthesizer.from_bundle(load_bundle(root))
    long_line = SynthesisRequest(
        text="hello world", voice=voices[0], sample_rate=16000, target_samples=6 * 16000, seed=3,
        duration_mode="exact",
    )  # fmt: skip
    assert len(synth.synthesize(long_line).audio) == 6 * 16000
    synth.prepare_voice(voices[1])
    assert len(list((tmp_path / "cache" / "styles").glob("*.safetensors"))) == 2


def test_a_bundle_with_an_impossible_style_fit_share_is_refused(tmp_path: Path) -> None:
    from dubstudio.core.errors import ModelLoadError
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle

    root = create_tiny_small_bundle(tmp_path / "b", seed=1)
    manifest = json.loads((root / "bundle.json").read_text())
    manifest["config"].update(style_fit=2, style_fit_keep=1.5)
    (root / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="style_fit_keep"):
        Synthesizer.from_bundle(load_bundle(root))
    for known in (1.5, "high"):
        manifest["config"].update(style_fit_keep=0.75, style_fit_known=known)
        (root / "bundle.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelLoadError, match="style_fit_known"):
            Synthesizer.from_bundle(load_bundle(root))
