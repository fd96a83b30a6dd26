"""A rendered line's pitch range, widened or narrowed by TD-PSOLA, its length and timbre kept.

Dimension legend: N samples, K pitch frames (one per ``hop`` samples), G glottal marks.

The small model's semantic codes carry three pitch levels per phone: enough to say where a
line's pitch sits, not how far it moves around that. `scale_pitch_range` supplies the rest of
an emotion's range change after the vocoder: every voiced period is moved in time so that the
line's log-F0 contour is scaled around its median (``f0 -> median * (f0 / median) ** factor``),
the way the corpus recipes set their styles' pitch range. Pitch-synchronous overlap-add moves
whole periods, so the spectral envelope (the voice and its phones) stays where it was, the
line keeps its exact sample count, and unvoiced sounds are passed through untouched.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dubstudio.engine.analysis import pitch_track

#: Pitch frame hop in seconds (the marks themselves are placed on the waveform).
FRAME_SECONDS = 0.01
#: Spacing of the marks in unvoiced stretches, seconds (copied through unchanged).
UNVOICED_SECONDS = 0.01
#: Largest pitch change any one period is given (a ratio).
MAX_RATIO = 1.3
#: Frames further than this from the median log-F0 (a ratio of 1.5 either way) are taken for
#: the tracker's octave slips, which low voices' creaky stretches give it, and left unchanged:
#: scaling a slipped frame's "excursion" would move a period that sits at the median.
MAX_DEVIATION = math.log(1.5)


def scale_pitch_range(
    wave: torch.Tensor,
    sample_rate: int,
    factor: float,
    *,
    fmin: float = 60.0,
    fmax: float = 450.0,
) -> torch.Tensor:
    """``wave`` (N,) with its log-F0 excursions around the median voiced F0 scaled by
    ``factor`` (1 keeps it, 1.2 widens the range by a fifth, 0.5 halves it), same length.

    Args:
        wave: (N,) mono samples.
        sample_rate: Their rate.
        factor: Scale of the log-F0 contour around its median; must be positive.
        fmin, fmax: The pitch tracker's search range (Hz).

    Returns:
        (N,) samples in ``wave``'s dtype. ``wave`` itself when there is nothing to change: a
        factor of 1, or fewer than three voiced frames.
    """
    if not factor > 0 or not math.isfinite(factor):
        raise ValueError(f"A pitch-range factor must be a positive number, got {factor!r}.")
    hop = max(1, round(FRAME_SECONDS * sample_rate))
    if factor == 1.0 or wave.numel() < 4 * hop:
        return wave
    x = wave.reshape(-1).detach().double().cpu().numpy()
    f0 = pitch_track(x, sample_rate, hop, fmin=fmin, fmax=fmax).double().numpy()  # (K,)
    voiced = f0 > 0
    if int(voiced.sum()) < 3:
        return wave
    ratio = period_ratios(f0, factor)
    marks, periods = _glottal_marks(x, f0, hop, sample_rate)
    out = _overlap_add(x, marks, periods, ratio, voiced, hop, sample_rate)
    return torch.from_numpy(out).to(wave.dtype).reshape(wave.shape)


def period_ratios(f0: np.ndarray, factor: float) -> np.ndarray:
    """(K,) pitch change each frame of an F0 track (Hz, 0 = unvoiced) gets from a range factor:
    ``(f0 / median) ** (factor - 1)`` on a 5-frame median of the voiced log-F0 (one-frame slips
    do not count), bounded by `MAX_RATIO`; 1 for unvoiced frames and for those further than
    `MAX_DEVIATION` from the median."""
    voiced = f0 > 0
    if not voiced.any():
        return np.ones_like(f0, dtype=np.float64)
    log_f0 = np.where(voiced, np.log(np.where(voiced, f0, 1.0)), 0.0)
    centre = float(np.median(log_f0[voiced]))
    deviation = _voiced_median(log_f0, voiced, 5) - centre
    bound = math.log(MAX_RATIO)
    ratio = np.exp(np.clip((factor - 1.0) * deviation, -bound, bound))
    return np.where(voiced & (np.abs(deviation) <= MAX_DEVIATION), ratio, 1.0)


def _voiced_median(values: np.ndarray, voiced: np.ndarray, width: int) -> np.ndarray:
    """(K,) running median of ``values`` over the voiced frames within ``width`` frames."""
    out = values.copy()
    half = width // 2
    for k in np.flatnonzero(voiced):
        lo, hi = max(0, k - half), min(len(values), k + half + 1)
        out[k] = float(np.median(values[lo:hi][voiced[lo:hi]]))
    return out


def _glottal_marks(
    x: np.ndarray, f0: np.ndarray, hop: int, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Analysis marks (G,) over the whole signal and the period (samples) each one spans.

    In voiced frames one mark per period, each on the largest sample (of the signal's dominant
    polarity) within a quarter period of where the last period says it should fall; in
    unvoiced frames marks every `UNVOICED_SECONDS`."""
    n = len(x)
    signed = x if x.max() >= -x.min() else -x
    unvoiced_step = max(2, round(UNVOICED_SECONDS * sample_rate))
    marks: list[int] = []
    periods: list[int] = []
    pos = 0
    in_voice = False
    while pos < n:
        k = min(len(f0) - 1, pos // hop)
        if f0[k] > 0:
            period = max(2, round(sample_rate / f0[k]))
            if in_voice:  # a quarter period either side of where the last period ends
                lo, hi = max(marks[-1] + 1, pos - period // 4), min(n, pos + period // 4 + 1)
            else:  # the first period of a voiced stretch: its largest peak
                lo, hi = pos, min(n, pos + period)
            if lo >= hi:
                break
            pos = lo + int(np.argmax(signed[lo:hi]))
            in_voice = True
        else:
            period = unvoiced_step
            in_voice = False
        marks.append(pos)
        periods.append(period)
        pos += period
    return np.asarray(marks, np.int64), np.asarray(periods, np.int64)


def _overlap_add(
    x: np.ndarray,
    marks: np.ndarray,
    periods: np.ndarray,
    ratio: np.ndarray,
    voiced: np.ndarray,
    hop: int,
    sample_rate: int,
) -> np.ndarray:
    """(N,) PSOLA synthesis: two-period Hann grains taken at the analysis marks nearest each
    synthesis mark; voiced synthesis marks are spaced by the local period over ``ratio``,
    unvoiced ones fall on the analysis marks. The sum is divided by the summed windows, so a
    grain put back where it was taken reproduces the signal exactly."""
    n = len(x)
    pad = int(periods.max()) + 1
    padded = np.pad(x, (pad, pad))
    out = np.zeros(n + 2 * pad)
    weight = np.zeros(n + 2 * pad)
    windows: dict[int, np.ndarray] = {}
    pos = int(marks[0])
    while pos < n:
        i = int(np.clip(np.searchsorted(marks, pos), 0, len(marks) - 1))
        if i > 0 and pos - marks[i - 1] < marks[i] - pos:
            i -= 1
        k = min(len(voiced) - 1, pos // hop)
        span = int(periods[i])
        window = windows.get(span)
        if window is None:
            window = windows[span] = np.hanning(2 * span + 1)
        src = int(marks[i]) + pad
        dst = pos + pad
        out[dst - span : dst + span + 1] += padded[src - span : src + span + 1] * window
        weight[dst - span : dst + span + 1] += window
        if voiced[k]:
            pos += max(1, round(span / float(ratio[k])))
        else:
            j = int(np.searchsorted(marks, pos, side="right"))  # the next analysis mark
            pos = int(marks[j]) if j < len(marks) else n
    body = slice(pad, pad + n)
    covered = weight[body] > 1e-3
    return np.where(covered, out[body] / np.maximum(weight[body], 1e-3), x)
