"""`intonation.scale_pitch_range`: TD-PSOLA range change of a voiced signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dubstudio.engine.analysis import pitch_track
from dubstudio.engine.intonation import period_ratios, scale_pitch_range

RATE = 22050


def _voice(seconds: float = 2.0, centre: float = 150.0, depth: float = 25.0) -> torch.Tensor:
    """A harmonic tone whose pitch glides around ``centre`` (a sung vowel), with a stretch of
    noise (an unvoiced consonant) in the middle."""
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = centre + depth * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    # A fixed spectral envelope: harmonics weighted by a resonance near 700 Hz.
    x = sum(
        np.sin(k * phase) * np.exp(-(((k * f0 - 700.0) / 400.0) ** 2)) / k for k in range(1, 30)
    )
    x = 0.3 * x / np.abs(x).max()
    mid = slice(int(0.45 * len(t)), int(0.55 * len(t)))
    x[mid] = np.random.default_rng(0).normal(0, 0.02, mid.stop - mid.start)
    return torch.tensor(x, dtype=torch.float32)


def _log_f0(wave: torch.Tensor) -> np.ndarray:
    f0 = pitch_track(wave.numpy(), RATE, 110).numpy()
    return np.log(f0[f0 > 0])


@pytest.mark.parametrize("factor", [0.5, 1.2, 1.6])
def test_the_log_f0_contour_is_scaled_around_its_median(factor: float) -> None:
    wave = _voice()
    out = scale_pitch_range(wave, RATE, factor)
    assert out.shape == wave.shape and out.dtype == wave.dtype  # exact length
    before, after = _log_f0(wave), _log_f0(out)
    assert np.std(after) / np.std(before) == pytest.approx(factor, rel=0.08)
    assert np.exp(np.median(after) - np.median(before)) == pytest.approx(1.0, abs=0.02)


def test_timbre_level_and_unvoiced_sounds_are_kept() -> None:
    wave = _voice()
    out = scale_pitch_range(wave, RATE, 1.5)

    def envelope(x: torch.Tensor) -> np.ndarray:
        spec = torch.stft(x, 1024, 256, window=torch.hann_window(1024), return_complex=True)
        power = spec.abs().pow(2).mean(dim=1).numpy()  # long-term spectrum
        bands = power[:184].reshape(-1, 8).mean(1)  # 0-4 kHz in 172 Hz bands
        return 10 * np.log10(bands / bands.sum())

    # The resonance stays put (the harmonics move under it), and the level with it.
    assert int(np.argmax(envelope(out))) == int(np.argmax(envelope(wave)))
    level = 20 * np.log10(float(out.pow(2).mean().sqrt()) / float(wave.pow(2).mean().sqrt()))
    assert abs(level) < 1.0
    # The noise in the middle is copied through, sample for sample, away from its edges.
    core = slice(int(0.47 * len(wave)), int(0.53 * len(wave)))
    assert torch.allclose(out[core], wave[core], atol=1e-6)


def test_nothing_to_change_returns_the_input() -> None:
    wave = _voice()
    assert scale_pitch_range(wave, RATE, 1.0) is wave
    noise = torch.from_numpy(np.random.default_rng(1).normal(0, 0.1, RATE).astype(np.float32))
    assert scale_pitch_range(noise, RATE, 1.4) is noise  # nothing voiced
    assert scale_pitch_range(torch.zeros(10), RATE, 1.4).shape == (10,)
    with pytest.raises(ValueError, match="positive"):
        scale_pitch_range(wave, RATE, 0.0)


def test_frames_far_from_the_median_are_taken_for_octave_slips() -> None:
    f0 = np.full(40, 120.0)
    f0[10:20] = 120.0 * np.linspace(1.0, 1.3, 10)  # a real rise
    f0[25:30] = 60.0  # the tracker slipped an octave down
    f0[32:34] = 0.0  # unvoiced
    ratio = period_ratios(f0, 1.5)
    rise = ratio[10:20]
    assert np.all(np.diff(rise) >= -1e-12) and rise[-3] == pytest.approx(1.3**0.5, rel=0.03)
    assert np.all(ratio[25:30] == 1.0) and np.all(ratio[32:34] == 1.0)
    assert np.all(ratio[:8] == 1.0)  # at the median: nothing to scale
    narrow = period_ratios(f0, 0.5)
    assert narrow[17] == pytest.approx(1.0 / rise[7], rel=1e-6)  # the same move, mirrored
    assert np.all(period_ratios(np.zeros(5), 2.0) == 1.0)
