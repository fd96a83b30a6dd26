"""Audio front-end: loading real files, resampling, the log-mel convention against librosa."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dubstudio.core.errors import ValidationError
from dubstudio.engine.audio import (
    AudioFileError,
    MelConfig,
    kaldi_fbank,
    limit_peaks,
    load_audio,
    match_spectral_mean,
    mel_level_db,
    mel_spectrogram,
    resample,
    with_gain,
)


def _tone(sr: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_flac_is_mixed_down_and_resampled(tmp_path: Path) -> None:
    left, right = _tone(44100, 1.0), np.zeros(44100, np.float32)
    path = tmp_path / "s.flac"
    sf.write(path, np.stack([left, right], axis=1), 44100)
    wave = load_audio(path, 22050)
    assert wave.shape == (22050,) and wave.dtype == torch.float32
    assert abs(wave.abs().max().item() - 0.25) < 0.01  # mean of the channels


def test_trim_and_max_seconds(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, _tone(16000, 3.0), 16000)
    assert load_audio(path, 16000, trim=(0.5, 2.0)).shape == (24000,)
    assert load_audio(path, 16000, trim=(1.0, None), max_seconds=0.25).shape == (4000,)
    with pytest.raises(AudioFileError, match="Invalid trim"):
        load_audio(path, 16000, trim=(2.0, 1.0))
    with pytest.raises(AudioFileError, match="no audio"):
        load_audio(path, 16000, trim=(5.0, 6.0))


def test_unreadable_and_missing_files_raise_user_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio")
    with pytest.raises(ValidationError, match=r"Cannot read audio file bad\.wav"):
        load_audio(bad, 22050)
    with pytest.raises(AudioFileError, match="not found"):
        load_audio(tmp_path / "nope.wav", 22050)


def test_resample_length_and_identity() -> None:
    x = torch.from_numpy(_tone(48000, 0.5))
    assert resample(x, 48000, 48000) is x
    assert resample(x, 48000, 16000).shape == (8000,)


@pytest.mark.parametrize("cfg", [MelConfig.indextts2(), MelConfig.hifigan_universal()])
def test_mel_matches_librosa_reference(cfg: MelConfig) -> None:
    import librosa

    rng = np.random.default_rng(0)
    wave = (0.3 * rng.standard_normal(22050)).astype(np.float32)
    ours = mel_spectrogram(torch.from_numpy(wave)[None], cfg)[0].numpy()
    # Independent reference: librosa filters and STFT with the same padding convention.
    pad = (cfg.n_fft - cfg.hop) // 2
    padded = np.pad(wave, (pad, pad), mode="reflect")
    stft = librosa.stft(
        padded, n_fft=cfg.n_fft, hop_length=cfg.hop, win_length=cfg.win, window="hann", center=False
    )
    mag = np.sqrt(np.abs(stft) ** 2 + 1e-9)
    basis = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
    )
    ref = np.log(np.clip(basis @ mag, 1e-5, None))
    assert ours.shape == ref.shape == (80, 22050 // 256)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_mel_frame_count_is_floor_of_samples_over_hop() -> None:
    cfg = MelConfig.indextts2()
    for n in (1000, 25600, 25855):
        assert mel_spectrogram(torch.zeros(2, n), cfg).shape == (2, 80, n // 256)


def test_kaldi_fbank_is_mean_normalised() -> None:
    # a tone that switches on half-way, so frames differ
    wave = torch.from_numpy(_tone(16000, 1.0, 300.0)) * (torch.arange(16000) > 8000)
    wave = wave + 1e-3 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    feats = kaldi_fbank(wave)
    assert feats.shape == (1 + (16000 - 400) // 160, 80)
    assert feats.mean(dim=0).abs().max() < 1e-4
    assert feats.std() > 0.1


def test_spectral_mean_matching_moves_speech_bands_and_keeps_detail() -> None:
    """The generated mel takes the reference's per-band speech level; silent frames of either do
    not count, and the frame-to-frame pattern is kept."""
    torch.manual_seed(0)
    bands, frames = 6, 40
    tilt = torch.linspace(-1.0, 1.0, bands)[:, None]  # the reference voice's spectral balance
    speech = torch.randn(bands, frames) * 0.3 - 2.0
    ref = speech + tilt
    ref[:, :10] = -11.5  # leading silence in the reference
    gen = speech.clone()[None]
    gen[0, :, -5:] = -11.5  # trailing silence in the render
    out = match_spectral_mean(gen, ref[None])
    active = slice(0, frames - 5)
    want = ref[:, 10:].mean(1)
    assert torch.allclose(out[0, :, active].mean(1), want, atol=1e-4)
    # A per-band constant: the render's own frame pattern is untouched.
    diff = out[0] - gen[0]
    assert torch.allclose(diff, diff[:, :1].expand_as(diff))
    half = match_spectral_mean(gen, ref[None], strength=0.5)
    assert torch.allclose(half - gen, 0.5 * (out - gen), atol=1e-5)
    assert match_spectral_mean(gen, ref, strength=0.0) is gen


def _voiced(f0: float, seconds: float = 1.0, sr: int = 22050) -> torch.Tensor:
    """A buzzy vowel-like tone: 30 harmonics of ``f0`` falling 6 dB per octave."""
    t = torch.arange(int(sr * seconds)) / sr
    harmonics = [torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 31) if k * f0 < 8000]
    return 0.2 * torch.stack(harmonics).sum(0)


def _lowest_peak_band(mel: torch.Tensor) -> int:
    """Band of the long-term spectrum's first local maximum: where the fundamental sits."""
    profile = mel.mean(-1).reshape(-1)
    for b in range(1, len(profile) - 1):
        if profile[b] > profile[b - 1] and profile[b] >= profile[b + 1] and profile[b] > -6:
            return b
    raise AssertionError("no spectral peak")


def test_envelope_match_keeps_the_renders_pitch_where_the_band_match_imprints_the_clips() -> None:
    """Below 1 kHz the mel bands resolve harmonics: a gain matched band by band carries the
    reference's fundamental over (its band gains, the render's loses), while the envelope
    match moves tilt and level only and the render's own fundamental stays the strongest."""
    cfg = MelConfig.hifigan_universal()
    render = mel_spectrogram(_voiced(220.0)[None], cfg)  # (1, 80, F)
    reference = mel_spectrogram(0.5 * _voiced(120.0)[None], cfg)
    own, clip = _lowest_peak_band(render), _lowest_peak_band(reference)
    assert clip < own
    banded = match_spectral_mean(render, reference)
    smooth = match_spectral_mean(render, reference, envelope=12)

    def low_band_gap(mel: torch.Tensor) -> float:
        """How far the render's fundamental band stands above the clip's one."""
        profile = mel.mean(-1).reshape(-1)
        return float(profile[own] - profile[clip])

    assert low_band_gap(render) > 2.0
    assert low_band_gap(banded) < 0.5  # the clip's band means, fundamental included
    assert low_band_gap(smooth) > 2.0
    # The envelope still moves the overall level and tilt to the reference's.
    for out in (banded, smooth):
        assert abs(float(out.mean() - reference.mean())) < 0.3
    assert abs(float(render.mean() - reference.mean())) > 0.5


def test_envelope_match_applies_the_smooth_part_of_the_gain_only() -> None:
    """A gain curve made of a few low cosines passes whole; a ripple every five bands (a
    harmonic comb) does not."""
    torch.manual_seed(0)
    bands, frames = 80, 30
    n = torch.arange(bands).float()
    smooth = 0.6 * torch.cos(torch.pi * (n + 0.5) / bands) + 0.3 * torch.cos(
        torch.pi * (n + 0.5) * 4 / bands
    )
    ripple = 0.5 * torch.cos(2 * torch.pi * n / 5)
    gen = torch.randn(bands, frames) * 0.2 - 3.0
    ref = gen + (smooth + ripple + 0.4)[:, None]
    out = match_spectral_mean(gen[None], ref[None], envelope=12)
    gain = (out[0] - gen).mean(1)
    assert torch.allclose(gain, smooth + 0.4, atol=0.1)
    assert float((gain - smooth - 0.4).abs().mean()) < 0.03
    full = (match_spectral_mean(gen[None], ref[None])[0] - gen).mean(1)
    assert torch.allclose(full, smooth + ripple + 0.4, atol=1e-4)


def test_mel_level_follows_the_speech_level_and_ignores_silence() -> None:
    """`mel_level_db` of real tones through the project's mel: halving the amplitude lowers it
    by 6.02 dB, a second of silence on each side barely moves it, and adding a log gain to
    every band moves it by that gain in dB."""
    cfg = MelConfig.hifigan_universal()
    loud = torch.from_numpy(_tone(22050, 1.0, 220.0))
    mel = mel_spectrogram(loud, cfg)
    level = mel_level_db(mel)
    assert mel_level_db(mel_spectrogram(loud * 0.5, cfg)) == pytest.approx(level - 6.02, abs=0.02)
    padded = torch.cat([torch.zeros(22050), loud, torch.zeros(22050)])
    # (within a quarter dB: the frames at the tone's edges, half sound, half silence)
    assert mel_level_db(mel_spectrogram(padded, cfg)) == pytest.approx(level, abs=0.25)
    for change in (-6.5, 0.0, 3.25):
        shifted = mel + change * math.log(10.0) / 20.0
        assert mel_level_db(shifted) == pytest.approx(level + change, abs=1e-6)
    assert mel_level_db(mel[:, :0]) == float("-inf")


def test_gain_scales_a_waveform_without_clipping_it() -> None:
    cfg = MelConfig.hifigan_universal()
    wave = torch.from_numpy(_tone(22050, 0.5, 220.0)) * 0.4  # peak 0.2
    quieter = with_gain(wave, -6.0, 22050)
    assert torch.allclose(quieter, wave * 10 ** (-6 / 20))
    level = mel_level_db(mel_spectrogram(wave, cfg))
    assert mel_level_db(mel_spectrogram(quieter, cfg)) == pytest.approx(level - 6.0, abs=1e-3)
    assert torch.allclose(with_gain(wave, 6.0, 22050), wave * 10 ** (6 / 20))  # peak 0.4: as asked
    # Peak 2.0 asked, more than MAX_LIMIT_DB over: the line is first scaled to peak 2 x 0.98,
    # and the limiter takes it the rest of the way.
    limited = with_gain(wave, 20.0, 22050)
    assert 0.97 < float(limited.abs().max()) <= 0.98 + 1e-6
    gain = limited[wave.abs() > 0.1] / wave[wave.abs() > 0.1]
    assert float(gain.max()) <= 2 * 0.98 / 0.2 * (1 + 1e-6)
    assert with_gain(wave[:0], 6.0, 22050).numel() == 0


def _speech_like(rate: int = 22050) -> torch.Tensor:
    """2 s of a 150 Hz buzz with a syllable-rate envelope and three louder accents."""
    t = np.arange(2 * rate) / rate
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    for c in (0.4, 1.0, 1.6):
        env = env * (1 + 1.2 * np.exp(-(((t - c) / 0.03) ** 2)))
    wave = buzz * env
    return torch.from_numpy((0.5 * wave / np.abs(wave).max()).astype(np.float32))  # peak 0.5


def test_the_limiter_holds_the_ceiling_and_leaves_the_rest_alone() -> None:
    rate = 22050
    wave = _speech_like(rate)
    loud = wave * 10 ** (9 / 20)  # accents up to 1.41, the rest mostly under 0.98
    out = limit_peaks(loud, 0.98, rate)
    assert float(out.abs().max()) <= 0.98 + 1e-6
    gain = (out / loud.where(loud.abs() > 1e-4, torch.ones(()))).numpy()
    gain[loud.abs().numpy() <= 1e-4] = np.nan
    assert np.nanmin(gain) < 0.75  # the accents were brought down...
    # ...by a gain that never moves faster than the attack allows (5 ms from 1 to ~0.7)...
    step = np.abs(np.diff(gain))
    assert float(np.nanmax(step)) < 0.01
    # ...and is back to 1 between them (0.8-0.95 s: the release's 60 ms time constant five
    # times over after the first accent, before the next one's 5 ms look-ahead).
    quiet = slice(int(0.8 * rate), int(0.95 * rate))
    assert torch.allclose(out[quiet], loud[quiet], atol=2e-3)
    # The line keeps its level (the old whole-line scaling lost the 3.2 dB of the accents).
    cfg = MelConfig.hifigan_universal()
    asked = mel_level_db(mel_spectrogram(loud, cfg))
    assert mel_level_db(mel_spectrogram(out, cfg)) > asked - 1.5
    # No bending: a limited pure tone stays a pure tone, where clipping adds harmonics.
    tone = torch.from_numpy(_tone(rate, 0.5, 200.0)) * 3.0  # peak 1.5
    spec = np.abs(np.fft.rfft(limit_peaks(tone, 0.98, rate).numpy()[2205:]))
    clip = np.abs(np.fft.rfft(tone.clamp(-0.98, 0.98).numpy()[2205:]))
    bins = (np.arange(1, 6) * 200 * len(spec) * 2 / rate).round().astype(int)

    def harmonics(s: np.ndarray) -> float:
        return float(np.sqrt((s[bins[1:]] ** 2).sum()) / s[bins[0]])

    assert harmonics(spec) < 0.01 < 0.1 < harmonics(clip)
    assert limit_peaks(tone[:0], 0.98, rate).numel() == 0
