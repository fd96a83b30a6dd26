"""Audio front-end: file loading, resampling, the S2M/vocoder log-mel and the Kaldi fbank.

Dimension legend: N samples, B batch, M mel bands, F mel frames (N // hop), T fbank frames (100 Hz).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from dubstudio.core.errors import ValidationError

log = logging.getLogger(__name__)


class AudioFileError(ValidationError):
    """An audio file is missing, unreadable, empty or its trim range is invalid."""


def load_audio(
    path: str | Path,
    sample_rate: int,
    *,
    trim: tuple[float, float | None] | None = None,
    max_seconds: float | None = None,
) -> torch.Tensor:
    """Read any soundfile-supported file as mono float32 at ``sample_rate``.

    Args:
        path: WAV, FLAC, OGG/Vorbis, MP3 (libsndfile ≥ 1.1) ...
        sample_rate: Output rate in Hz.
        trim: (start_s, end_s) to keep, in seconds of the file; end None means to the end.
        max_seconds: Keep at most this many seconds (after trimming).

    Returns:
        (N,) float32 waveform, channels averaged.

    Raises:
        AudioFileError: The file is missing, cannot be decoded, or the range is empty.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"Audio file not found: {path}.")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = 0
            stop = f.frames
            if trim is not None:
                start_s, end_s = trim
                if start_s < 0 or (end_s is not None and end_s <= start_s):
                    raise AudioFileError(
                        f"Invalid trim range {trim} for {path.name}: the end must come after the "
                        "start and the start must not be negative."
                    )
                start = min(round(start_s * sr), f.frames)
                if end_s is not None:
                    stop = min(round(end_s * sr), f.frames)
            if max_seconds is not None:
                stop = min(stop, start + round(max_seconds * sr))
            f.seek(start)
            data = f.read(max(stop - start, 0), dtype="float32", always_2d=True)
    except AudioFileError:
        raise
    except Exception as exc:  # libsndfile reports every decode failure as a RuntimeError-ish
        raise AudioFileError(
            f"Cannot read audio file {path.name}: {exc}. Convert it to WAV or FLAC and try again."
        ) from exc
    if data.shape[0] == 0:
        raise AudioFileError(f"{path.name} has no audio in the requested range.")
    wave = torch.from_numpy(data).mean(dim=1)  # (N, channels) -> (N,)
    return resample(wave, sr, sample_rate)


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling (torchaudio's sinc interpolation) along the last axis.

    Args:
        wave: (..., N) waveform.
        orig_sr: Its rate.
        new_sr: The wanted rate.

    Returns:
        (..., ceil(N·new/orig)) waveform; the input itself when the rates are equal.
    """
    if int(orig_sr) == int(new_sr):
        return wave
    import torchaudio

    return torchaudio.functional.resample(wave, int(orig_sr), int(new_sr))


@dataclass(frozen=True)
class MelConfig:
    """Log-mel convention shared by S2M targets and the vocoder input.

    Attributes:
        sample_rate: Hz (22050 for IndexTTS-2 and HiFi-GAN universal).
        n_fft: FFT size.
        hop: Hop length in samples (frames = N // hop).
        win: Hann window length.
        n_mels: Mel bands.
        fmin: Lowest filter frequency (Hz).
        fmax: Highest filter frequency (Hz); None means Nyquist.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop: int = 256
    win: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None

    @classmethod
    def indextts2(cls) -> MelConfig:
        """IndexTTS-2 / BigVGAN v2 22 kHz 80-band: fmax None (Nyquist)."""
        return cls()

    @classmethod
    def hifigan_universal(cls) -> MelConfig:
        """HiFi-GAN V1 universal generator: fmax 8000 Hz."""
        return cls(fmax=8000.0)

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop


@lru_cache(maxsize=16)
def mel_filters(cfg: MelConfig) -> torch.Tensor:
    """Slaney-normalised slaney-scale mel filters (as librosa.filters.mel gives): (M, K)."""
    import torchaudio

    fb = torchaudio.functional.melscale_fbanks(
        n_freqs=cfg.n_fft // 2 + 1,
        f_min=float(cfg.fmin),
        f_max=float(cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2),
        n_mels=cfg.n_mels,
        sample_rate=cfg.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return fb.T.contiguous()  # (K, M) -> (M, K)


@lru_cache(maxsize=8)
def _hann(win: int) -> torch.Tensor:
    return torch.hann_window(win)


def mel_spectrogram(wave: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Natural-log mel magnitude spectrogram in the IndexTTS-2 / HiFi-GAN convention.

    Reflect-pads (n_fft − hop)/2 on both sides, STFT without centring (periodic Hann),
    magnitude sqrt(re² + im² + 1e-9), slaney mel filters, log(clamp(x, 1e-5)).

    Args:
        wave: (B, N) or (N,) waveform in [-1, 1] at ``cfg.sample_rate``.
        cfg: The convention.

    Returns:
        (B, M, N // hop) log-mel ((M, F) for 1-D input).
    """
    squeeze = wave.dim() == 1
    x = wave[None] if squeeze else wave
    pad = (cfg.n_fft - cfg.hop) // 2
    if x.shape[-1] <= pad:
        raise ValueError(f"Audio too short for a mel spectrogram ({x.shape[-1]} samples)")
    x = F.pad(x[:, None, :].float(), (pad, pad), mode="reflect")[:, 0]
    spec = torch.stft(
        x,
        cfg.n_fft,
        hop_length=cfg.hop,
        win_length=cfg.win,
        window=_hann(cfg.win).to(x.device),
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)  # (B, K, F)
    mel = torch.matmul(mel_filters(cfg).to(x.device), mag)
    out = torch.log(torch.clamp(mel, min=1e-5))
    return out[0] if squeeze else out


def kaldi_fbank(wave16k: torch.Tensor) -> torch.Tensor:
    """Mean-normalised 80-bin Kaldi fbank for the CAMPPlus speaker-style encoder.

    Kaldi defaults (25 ms / 10 ms, povey window, pre-emphasis 0.97, snip edges, log energies) with
    dither 0; the waveform stays in [-1, 1] (no ×32768). The per-utterance mean over time is
    subtracted.

    Args:
        wave16k: (N,) or (1, N) waveform at 16 kHz.

    Returns:
        (T, 80) features, T = 1 + (N − 400) // 160.
    """
    import torchaudio

    x = wave16k.reshape(1, -1).float()
    if x.shape[-1] < 400:
        raise ValueError("Audio too short for a speaker-style fbank (needs at least 25 ms).")
    feats = torchaudio.compliance.kaldi.fbank(
        x, num_mel_bins=80, dither=0.0, sample_frequency=16000
    )
    return feats - feats.mean(dim=0, keepdim=True)


def _active_band_means(mel: torch.Tensor, floor: float) -> torch.Tensor:
    """Per-band mean of a log-mel (M, F) over its frames within ``floor`` (log units) of the
    loudest frame, so pauses and leading silence do not pull the spectral average down. (M,)"""
    level = mel.mean(dim=0)  # (F,) mean log magnitude per frame
    active = level > level.max() - floor
    return mel[:, active].mean(dim=1)


def _band_envelope(gain: torch.Tensor, coefficients: int) -> torch.Tensor:
    """The smooth part of a per-band curve (M,): its projection onto the first ``coefficients``
    cosines over the bands (a DCT-II low-pass, a cepstral lifter in log-mel terms)."""
    m = gain.shape[0]
    n = torch.arange(m, dtype=gain.dtype, device=gain.device)
    k = torch.arange(min(coefficients, m), dtype=gain.dtype, device=gain.device)
    basis = torch.cos(math.pi * (n[None, :] + 0.5) * k[:, None] / m)  # (K, M), orthogonal rows
    coef = (basis @ gain) / (basis * basis).sum(dim=1)
    return coef @ basis


def spectral_mean_gain(
    mel: torch.Tensor,
    reference: torch.Tensor,
    strength: float = 1.0,
    floor: float = 3.0,
    envelope: int = 0,
) -> torch.Tensor:
    """Per-band log gain that moves a generated log-mel's long-term spectrum to a reference
    clip's: ``strength`` times the difference between the reference's and the render's mean
    log magnitude per band over speech frames, the log-mel form of matching the long-term
    average spectrum (the voice's overall spectral tilt and formant balance), which a decoder
    trained on few speakers reproduces only approximately.

    Below about 1 kHz the mel bands are narrower than a voice's harmonic spacing, so the
    reference's band means also hold its pitch: a gain matched band by band pulls the render's
    harmonics towards the reference's and flattens an emotion's pitch change. ``envelope``
    keeps only the gain curve's first cosines over the bands (its spectral envelope: tilt and
    formant balance) and leaves the harmonic ripple alone.

    Args:
        mel: (M, F) generated natural-log mel.
        reference: (1, M, F_ref) or (M, F_ref) log-mel of the voice's reference clip.
        strength: 0 gives no gain, 1 matches the band means exactly.
        floor: Frames quieter than the loudest by more than this (log units) are not averaged.
        envelope: Cosine coefficients kept of the gain curve; 0 keeps every band's own gain.

    Returns:
        (M,) gain to add to every frame.
    """
    ref = reference.reshape(reference.shape[-2], reference.shape[-1]).to(mel)
    gain = _active_band_means(ref, floor) - _active_band_means(mel, floor)
    if envelope > 0:
        gain = _band_envelope(gain, envelope)
    return strength * gain


def mel_level_db(mel: torch.Tensor, floor_db: float = 20.0) -> float:
    """Speech level of a natural-log magnitude mel (M, F) in dB: the mean frame power
    (the sum over bands of the squared magnitudes) over the frames within ``floor_db`` of the
    loudest, so pauses and silence around the speech do not count. Adding ``g`` to every band
    of the log-mel raises it by ``20 g / ln 10`` dB, as does scaling the waveform by ``e ** g``."""
    if mel.shape[-1] == 0:
        return float("-inf")
    power = torch.exp(2.0 * mel.detach().reshape(mel.shape[-2], -1).double()).sum(dim=0)  # (F,)
    active = power >= power.max() * 10.0 ** (-floor_db / 10.0)
    return float(10.0 * torch.log10(power[active].mean().clamp(min=1e-30)))


#: Highest sample magnitude `with_gain` lets a waveform reach.
MAX_PEAK = 0.98
#: Most gain reduction (dB) `with_gain` leaves to `limit_peaks`; past it the whole line is
#: scaled down as well.
MAX_LIMIT_DB = 6.0


def limit_peaks(
    wave: torch.Tensor,
    ceiling: float,
    sample_rate: int,
    *,
    attack_ms: float = 5.0,
    release_ms: float = 60.0,
) -> torch.Tensor:
    """A look-ahead peak limiter: ``wave`` (N,) times a smooth gain that keeps every sample at
    or below ``ceiling``, and is 1 away from the peaks.

    The gain each sample needs (``ceiling / |x|``, at most 1) is taken as the minimum over the
    next ``attack_ms``, held by a release that recovers exponentially (time constant
    ``release_ms``; computed in closed form as a running maximum), then averaged over the
    attack window. The average ends at each peak over gains no higher than that peak needs, so
    the gain has ramped down smoothly before it and the ceiling holds; nothing is clipped or
    bent, so no harmonics are added.
    """
    if wave.numel() == 0:
        return wave
    x = wave.reshape(-1).double()
    n = x.numel()
    need = (ceiling / x.abs().clamp(min=1e-12)).clamp(max=1.0)  # (N,)
    look = max(1, round(attack_ms * 1e-3 * sample_rate))
    # Minimum of the needed gain over [n, n + look): a sliding minimum on the padded signal.
    padded = F.pad(need[None, None], (0, look - 1), value=1.0)
    ahead = -F.max_pool1d(-padded, look, stride=1)[0, 0]  # (N,)
    # Release: reduction d[n] = max_k (1 - ahead[k]) * exp(-(n - k) / tau), in the log domain.
    tau = max(1e-3, release_ms * 1e-3 * sample_rate)
    idx = torch.arange(n, dtype=torch.float64)
    reduction = (1.0 - ahead).clamp(min=0.0)
    log_red = torch.where(reduction > 0, reduction.clamp(min=1e-300).log(), -math.inf)
    held = torch.cummax(log_red + idx / tau, dim=0).values - idx / tau
    gain = 1.0 - held.exp()
    # Trailing mean over the attack window.
    csum = F.pad(torch.cumsum(gain, 0), (1, 0))
    lo = (torch.arange(n) - look + 1).clamp(min=0)
    smooth = (csum[1:] - csum[lo]) / (torch.arange(n) + 1 - lo).double()
    out = (x * torch.minimum(smooth, need)).to(wave.dtype)
    return out.reshape(wave.shape)


def with_gain(
    wave: torch.Tensor,
    db: float,
    sample_rate: int,
    max_peak: float = MAX_PEAK,
    max_limit_db: float = MAX_LIMIT_DB,
) -> torch.Tensor:
    """``wave`` scaled by ``db``, never clipped: peaks that would pass ``max_peak`` by up to
    ``max_limit_db`` are brought down by `limit_peaks` (the line keeps its level); past that,
    the whole waveform is first scaled so that its peak is ``max_limit_db`` over."""
    factor = 10.0 ** (db / 20.0)
    peak = float(wave.abs().max()) * factor if wave.numel() else 0.0
    allowed = max_peak * 10.0 ** (max_limit_db / 20.0)
    if peak > allowed:
        factor *= allowed / peak
    out = wave * factor
    if peak > max_peak:
        out = limit_peaks(out, max_peak, sample_rate)
    return out


def match_spectral_mean(
    mel: torch.Tensor, reference: torch.Tensor, strength: float = 1.0, envelope: int = 0
) -> torch.Tensor:
    """Each row of a generated log-mel (B, M, F) with its own `spectral_mean_gain` towards the
    reference clip's long-term spectrum added; frame-to-frame detail (phones, intonation) is
    untouched. ``strength`` 0 returns ``mel`` itself."""
    if strength == 0.0 or mel.shape[-1] == 0 or reference.shape[-1] == 0:
        return mel
    out = mel.clone()
    for b in range(mel.shape[0]):
        gain = spectral_mean_gain(mel[b], reference, strength, envelope=envelope)
        out[b] = mel[b] + gain[:, None]
    return out
