"""Voice-profile analysis: length, loudness, speaking rate and problems of a reference clip.

Speech regions come from silero-vad (its model ships in the wheel). The speaking-rate estimate
counts syllable-like energy peaks inside speech, so it needs no transcript; it is a relative
measure (fast vs slow readers), good to about ±20 %.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio

from dubstudio.core.errors import ValidationError

log = logging.getLogger(__name__)

VAD_RATE = 16000
MIN_REFERENCE_SECONDS = 3.0
CLIP_LEVEL = 0.999
# Share of samples at full scale above which a clip counts as clipped (a few isolated peaks at
# full scale are normal for normalised audio).
CLIP_FRACTION = 1e-3
# Below this speech-to-noise ratio (dB, speech RMS vs non-speech RMS) a clip is called noisy.
NOISY_SNR_DB = 15.0
# Less than this share of the clip detected as speech: mostly silence.
MIN_SPEECH_FRACTION = 0.5


@dataclass(frozen=True)
class VoiceAnalysis:
    """What `analyse_voice` measured.

    Attributes:
        duration_s: Length of the clip.
        speech_s: Seconds detected as speech.
        loudness_dbfs: RMS level of the speech regions in dBFS.
        peak_dbfs: Sample peak in dBFS.
        snr_db: Speech RMS over non-speech RMS in dB (inf without non-speech).
        syllables_per_second: Speaking-rate estimate over the speech regions.
        speech_regions: (start_s, end_s) of each speech region.
        warnings: Human-readable problems: too short, clipped, noisy, mostly silence.
    """

    duration_s: float
    speech_s: float
    loudness_dbfs: float
    peak_dbfs: float
    snr_db: float
    syllables_per_second: float
    speech_regions: list[tuple[float, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def trim_bounds(self) -> tuple[float, float]:
        """(start_s, end_s) around the speech with 0.1 s of context, for `VoiceRef` trims."""
        if not self.speech_regions:
            return 0.0, self.duration_s
        start = max(0.0, self.speech_regions[0][0] - 0.1)
        end = min(self.duration_s, self.speech_regions[-1][1] + 0.1)
        return start, end

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "duration_s": self.duration_s,
            "speech_s": self.speech_s,
            "loudness_dbfs": self.loudness_dbfs,
            "peak_dbfs": self.peak_dbfs,
            "snr_db": self.snr_db,
            "syllables_per_second": self.syllables_per_second,
            "speech_regions": [list(r) for r in self.speech_regions],
            "warnings": list(self.warnings),
        }


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """Read any soundfile-supported file as float32 mono (N,) and its sample rate."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ValidationError(f"Cannot read audio from {path}: {exc}") from exc
    return data.mean(axis=1), int(rate)


@lru_cache(maxsize=1)
def _vad_model() -> Any:
    import warnings

    from silero_vad import load_silero_vad

    with warnings.catch_warnings():
        # silero-vad 6 uses the deprecated importlib.resources.path to find its bundled model.
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad()


def speech_regions(audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """Speech regions (start_s, end_s) found by silero-vad.

    Args:
        audio: float32 mono samples (N,).
        sample_rate: Their rate.
    """
    from silero_vad import get_speech_timestamps

    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if sample_rate != VAD_RATE:
        wav = torchaudio.functional.resample(wav, sample_rate, VAD_RATE)
    with torch.inference_mode():
        stamps = get_speech_timestamps(wav, _vad_model(), sampling_rate=VAD_RATE)
    return [(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in stamps]


def _dbfs(rms: float) -> float:
    return 20.0 * math.log10(max(rms, 1e-10))


def _syllable_rate(
    audio: np.ndarray, sample_rate: int, regions: list[tuple[float, float]]
) -> float:
    """Energy peaks per second of speech: a transcript-free speaking-rate estimate."""
    speech_s = sum(e - s for s, e in regions)
    if speech_s <= 0:
        return 0.0
    hop = sample_rate // 100  # 10 ms envelope
    frames = len(audio) // hop
    if frames < 3:
        return 0.0
    env = np.sqrt((audio[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1) + 1e-12)
    # Smooth over ~50 ms so one syllable gives one peak.
    kernel = np.hanning(7)
    env = np.convolve(env, kernel / kernel.sum(), mode="same")
    db = 20 * np.log10(env + 1e-10)
    in_speech = np.zeros(frames, dtype=bool)
    for s, e in regions:
        in_speech[int(s * 100) : int(e * 100)] = True
    threshold = np.percentile(db[in_speech], 30) if in_speech.any() else db.max()
    peaks = 0
    last = -10
    for i in range(1, frames - 1):
        if (
            in_speech[i]
            and db[i] > threshold
            and db[i] >= db[i - 1]
            and db[i] > db[i + 1]
            and i - last >= 8  # syllables are at least ~80 ms apart
        ):
            peaks += 1
            last = i
    return peaks / speech_s


def analyse_audio(audio: np.ndarray, sample_rate: int) -> VoiceAnalysis:
    """Analyse float32 mono samples; see `analyse_voice`."""
    audio = np.asarray(audio, dtype=np.float32)
    duration = len(audio) / sample_rate
    regions = speech_regions(audio, sample_rate) if len(audio) else []
    speech_s = sum(e - s for s, e in regions)
    mask = np.zeros(len(audio), dtype=bool)
    for s, e in regions:
        mask[int(s * sample_rate) : int(e * sample_rate)] = True
    speech = audio[mask]
    rest = audio[~mask]
    speech_rms = float(np.sqrt(np.mean(speech**2))) if len(speech) else 0.0
    rest_rms = float(np.sqrt(np.mean(rest**2))) if len(rest) else 0.0
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    snr = math.inf if rest_rms <= 1e-8 else _dbfs(speech_rms) - _dbfs(rest_rms)
    warnings: list[str] = []
    if duration < MIN_REFERENCE_SECONDS:
        warnings.append(
            f"too short: {duration:.1f} s (use at least {MIN_REFERENCE_SECONDS:.0f} s of speech)"
        )
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL)) if len(audio) else 0.0
    if clipped > CLIP_FRACTION:
        warnings.append(f"clipped: {100 * clipped:.2f} % of samples at full scale")
    if regions and snr < NOISY_SNR_DB:
        warnings.append(f"noisy: speech is only {snr:.0f} dB above the background")
    if duration > 0 and speech_s / duration < MIN_SPEECH_FRACTION:
        warnings.append(f"mostly silence: {speech_s:.1f} s of speech in {duration:.1f} s")
    return VoiceAnalysis(
        duration_s=duration,
        speech_s=speech_s,
        loudness_dbfs=_dbfs(speech_rms) if len(speech) else -math.inf,
        peak_dbfs=_dbfs(peak),
        snr_db=snr,
        syllables_per_second=_syllable_rate(audio, sample_rate, regions),
        speech_regions=regions,
        warnings=warnings,
    )


def analyse_voice(path: str | Path) -> VoiceAnalysis:
    """Measure a reference clip and list its problems.

    Args:
        path: Any audio file soundfile reads.
    """
    audio, rate = read_mono(path)
    return analyse_audio(audio, rate)


def trim_silence(
    audio: np.ndarray, sample_rate: int, *, margin_s: float = 0.1
) -> tuple[np.ndarray, float, float]:
    """Cut leading and trailing non-speech, keeping ``margin_s`` around the speech.

    Returns:
        (trimmed samples, start_s, end_s) of the kept region in the input.
    """
    regions = speech_regions(audio, sample_rate)
    duration = len(audio) / sample_rate
    if not regions:
        return audio, 0.0, duration
    start = max(0.0, regions[0][0] - margin_s)
    end = min(duration, regions[-1][1] + margin_s)
    return audio[int(start * sample_rate) : int(end * sample_rate)], start, end


def pitch_track(
    audio: np.ndarray | torch.Tensor,
    sample_rate: int,
    hop: int,
    *,
    fmin: float = 60.0,
    fmax: float = 450.0,
    threshold: float = 0.2,
) -> torch.Tensor:
    """F0 per hop (Hz, 0 = unvoiced) by YIN's cumulative-mean-normalised difference.

    Frame k is centred on sample ``(k + 0.5) * hop``, so with ``hop = sample_rate / token_rate``
    frame k is token k. Vectorised over frames (the correlation terms by FFT).

    Args:
        audio: (N,) mono samples.
        sample_rate: Their rate.
        hop: Samples between frame centres.
        fmin, fmax: Search range.
        threshold: YIN's aperiodicity threshold; frames whose best dip is above twice it are
            unvoiced.
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32)).float()
    n_frames = max(1, len(x) // hop)
    tau_max = int(sample_rate / fmin) + 1
    tau_min = max(2, int(sample_rate / fmax))
    win = tau_max
    span = win + tau_max
    centres = (torch.arange(n_frames) * hop + hop // 2).long()
    pad = torch.nn.functional.pad(x, (span, span))
    idx = centres[:, None] + span - span // 2 + torch.arange(span)[None]
    frames = pad[idx]  # (K, win + tau_max)
    frames = frames - frames.mean(dim=1, keepdim=True)
    a = frames[:, :win]
    n_fft = 1 << (2 * span - 1).bit_length()
    cross = torch.fft.irfft(torch.fft.rfft(frames, n_fft) * torch.fft.rfft(a, n_fft).conj(), n_fft)[
        :, : tau_max + 1
    ]  # r(tau) = sum_j a_j x_{j+tau}
    sq = torch.nn.functional.pad(frames.pow(2).cumsum(dim=1), (1, 0))
    energy_a = sq[:, win : win + 1]
    taus = torch.arange(tau_max + 1)
    energy_b = sq[:, taus + win] - sq[:, taus]
    diff = (energy_a + energy_b - 2 * cross).clamp(min=0)  # d(tau)
    cum = diff[:, 1:].cumsum(dim=1) / taus[1:]
    cmnd = torch.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] / cum.clamp(min=1e-9)
    search = cmnd[:, tau_min:]
    below = search < threshold
    first = torch.where(below.any(dim=1), below.float().argmax(dim=1), search.argmin(dim=1))
    # Walk down to the local minimum after the first crossing.
    k = first.clone()
    for _ in range(tau_max):
        nxt = (k + 1).clamp(max=search.shape[1] - 1)
        step = search.gather(1, nxt[:, None])[:, 0] < search.gather(1, k[:, None])[:, 0]
        if not bool(step.any()):
            break
        k = torch.where(step, nxt, k)
    best = search.gather(1, k[:, None])[:, 0]
    silent = a.pow(2).mean(dim=1) < 1e-7
    voiced = (best < 2 * threshold) & ~silent
    f0 = sample_rate / (k + tau_min).float()
    return torch.where(voiced, f0, torch.zeros_like(f0))
