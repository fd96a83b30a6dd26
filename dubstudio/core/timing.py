"""Exact rational time: subtitle milliseconds -> frame slots -> seconds -> integer audio budgets.

Everything here is computed with :class:`fractions.Fraction` and one rounding rule (round half
up), never with floats, so that a line's first output sample is the same number whether it is the
first line of a programme or one two hours in: there is no accumulated drift.

Units used in names: ``ms`` (integer milliseconds, as in SRT), ``frame`` (integer video frame
index at the project frame rate ``fps``), ``seconds`` (exact ``Fraction``), ``sample`` (integer
output sample index at ``sample_rate`` Hz), ``tokens`` (semantic tokens at ``token_rate`` Hz),
``mel_frames`` (S2M mel frames at ``mel_rate`` Hz).

A line occupying the frame slot ``[start_frame, end_frame)`` owns the output samples
``[frame_to_sample(start_frame), frame_to_sample(end_frame))``. Two adjacent lines share the
boundary frame and therefore the boundary sample, so they can never overlap or leave a gap.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from dubstudio.core.errors import ValidationError

#: Semantic-token rate of IndexTTS-2's T2S model (tokens per second of speech).
INDEXTTS2_TOKEN_RATE = Fraction(50)
#: Mel-frame rate of IndexTTS-2's S2M model: 22050 Hz audio with a hop of 256 samples.
INDEXTTS2_MEL_RATE = Fraction(22050, 256)

#: Default output sample rate of a project (Hz).
DEFAULT_SAMPLE_RATE = 48000
#: Frame rate used when neither the project nor the user names one (23.976 fps, the usual rate of
#: film transferred to video and of most streaming programmes).
DEFAULT_FPS = Fraction(24000, 1001)

#: The frame rates DubStudio knows by name; any other positive rate is accepted too.
STANDARD_FPS: tuple[Fraction, ...] = (
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
    Fraction(48),
    Fraction(50),
    Fraction(60000, 1001),
    Fraction(60),
)

_RATIONAL = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_MAX_FPS = 1000


def round_half_up(value: Fraction) -> int:
    """Round an exact fraction to the nearest integer, halves going up (towards +infinity)."""
    return math.floor(value + Fraction(1, 2))


def parse_fps(value: str | int | float | Fraction) -> Fraction:
    """Parse a frame rate into an exact fraction.

    Accepts ``"24000/1001"``, ``Fraction(30000, 1001)``, integers, and the decimal spellings
    people use for NTSC-family rates (``"23.976"``, ``"23.98"``, ``"29.97"``, ``"59.94"``), which
    are mapped to the exact ``N*1000/1001`` rate they abbreviate.

    Args:
        value: The frame rate.

    Returns:
        The frame rate in frames per second.

    Raises:
        ValidationError: If the value is not a positive rate up to 1000 fps.
    """
    fps: Fraction
    if isinstance(value, Fraction):
        fps = value
    elif isinstance(value, bool):
        raise ValidationError(f"Frame rate {value!r} is not a number; use e.g. 25 or 24000/1001.")
    elif isinstance(value, int):
        fps = Fraction(value)
    else:
        text = str(value).strip()
        match = _RATIONAL.match(text)
        try:
            if match:
                fps = Fraction(int(match.group(1)), int(match.group(2)))
            else:
                fps = Fraction(Decimal(text))
        except (InvalidOperation, ValueError, ZeroDivisionError):
            raise ValidationError(
                f"Frame rate {value!r} is not understood; use e.g. 25, 29.97 or 30000/1001."
            ) from None
        if not match and fps.denominator != 1:
            fps = _snap_ntsc(fps)
    if fps <= 0 or fps > _MAX_FPS:
        raise ValidationError(f"Frame rate {value!r} must be above 0 and at most {_MAX_FPS} fps.")
    return fps


def _snap_ntsc(fps: Fraction) -> Fraction:
    """Map a decimal abbreviation such as 23.976 or 29.97 to the exact N*1000/1001 rate."""
    nominal = round(fps * Fraction(1001, 1000))
    exact = Fraction(nominal * 1000, 1001)
    # 23.98 differs from 24000/1001 by 0.004; a genuine non-NTSC decimal rate such as 12.5 is
    # far from any N*1000/1001 and is kept as written.
    if nominal > 0 and abs(exact - fps) <= Fraction(6, 1000):
        return exact
    return fps


def format_fps(fps: Fraction) -> str:
    """A frame rate as people read it: ``"25"``, ``"23.976 (24000/1001)"``."""
    if fps.denominator == 1:
        return str(fps.numerator)
    return f"{float(fps):.3f} ({fps.numerator}/{fps.denominator})"


def ms_to_frame(ms: int, fps: Fraction) -> int:
    """Snap a time in milliseconds to the nearest frame boundary (round half up).

    Args:
        ms: Time in integer milliseconds (may be negative; the result then is too).
        fps: Frame rate.

    Returns:
        Frame index whose start is nearest to ``ms``.
    """
    return round_half_up(Fraction(ms) * fps / 1000)


def seconds_to_frame(seconds: Fraction | int, fps: Fraction) -> int:
    """Snap an exact time in seconds to the nearest frame boundary (round half up)."""
    return round_half_up(Fraction(seconds) * fps)


def frame_to_seconds(frame: int, fps: Fraction) -> Fraction:
    """The exact start time of a frame, in seconds."""
    return Fraction(frame) / fps


def frame_to_ms(frame: int, fps: Fraction) -> int:
    """The start time of a frame rounded (half up) to integer milliseconds, for SRT export."""
    return round_half_up(Fraction(frame) * 1000 / fps)


def frame_to_sample(frame: int, fps: Fraction, sample_rate: int) -> int:
    """The first output sample of a frame: ``round_half_up(frame * sample_rate / fps)``, exactly."""
    return round_half_up(Fraction(frame) * sample_rate / fps)


def seconds_to_samples(seconds: Fraction | float | int, sample_rate: int) -> int:
    """A duration in seconds as a whole number of samples (round half up).

    Floats are read through their shortest decimal spelling, so ``0.1`` means exactly 1/10 s.
    """
    exact = Fraction(repr(seconds)) if isinstance(seconds, float) else Fraction(seconds)
    return round_half_up(exact * sample_rate)


def budget_for_samples(
    samples: int, sample_rate: int, token_rate: Fraction, mel_rate: Fraction
) -> tuple[int, int]:
    """Convert an output sample budget into the engine's integer budgets.

    This is the one place the engine turns a duration into a semantic-token count (T2S) and an
    S2M mel-frame count. Both are ``round_half_up(samples * rate / sample_rate)``, so they never
    decrease when the sample budget grows.

    Args:
        samples: Output samples available for speech (>= 0).
        sample_rate: Output sample rate in Hz.
        token_rate: Semantic tokens per second (IndexTTS-2: 50).
        mel_rate: Mel frames per second (IndexTTS-2: 22050/256).

    Returns:
        ``(tokens, mel_frames)``.
    """
    if samples < 0:
        raise ValidationError(f"A sample budget cannot be negative (got {samples}).")
    tokens = round_half_up(Fraction(samples) * Fraction(token_rate) / sample_rate)
    mel_frames = round_half_up(Fraction(samples) * Fraction(mel_rate) / sample_rate)
    return tokens, mel_frames


@dataclass(frozen=True, slots=True)
class Slot:
    """A line's place in the picture: the frames ``[start_frame, end_frame)``.

    Attributes:
        start_frame: First frame of the line (>= 0).
        end_frame: First frame after the line (> start_frame).
    """

    start_frame: int
    end_frame: int

    def __post_init__(self) -> None:
        if self.start_frame < 0:
            raise ValidationError(f"A line cannot start before frame 0 (got {self.start_frame}).")
        if self.end_frame <= self.start_frame:
            raise ValidationError(
                f"A line must end after it starts (frames {self.start_frame}..{self.end_frame}); "
                "make it at least one frame long."
            )

    @classmethod
    def from_ms(cls, start_ms: int, end_ms: int, fps: Fraction) -> Slot:
        """Snap subtitle times to frames; a cue shorter than one frame keeps one frame."""
        start = max(0, ms_to_frame(start_ms, fps))
        end = max(start + 1, ms_to_frame(end_ms, fps))
        return cls(start, end)

    @property
    def n_frames(self) -> int:
        """Length of the slot in frames."""
        return self.end_frame - self.start_frame

    def start_seconds(self, fps: Fraction) -> Fraction:
        """Exact start time in seconds."""
        return frame_to_seconds(self.start_frame, fps)

    def end_seconds(self, fps: Fraction) -> Fraction:
        """Exact end time in seconds."""
        return frame_to_seconds(self.end_frame, fps)

    def duration_seconds(self, fps: Fraction) -> Fraction:
        """Exact length in seconds."""
        return Fraction(self.n_frames) / fps

    def start_sample(self, fps: Fraction, sample_rate: int) -> int:
        """First output sample of the slot."""
        return frame_to_sample(self.start_frame, fps, sample_rate)

    def end_sample(self, fps: Fraction, sample_rate: int) -> int:
        """First output sample after the slot (the next line's first sample when adjacent)."""
        return frame_to_sample(self.end_frame, fps, sample_rate)

    def n_samples(self, fps: Fraction, sample_rate: int) -> int:
        """Output samples the slot owns: ``end_sample - start_sample`` (no drift, no overlap)."""
        return self.end_sample(fps, sample_rate) - self.start_sample(fps, sample_rate)


@dataclass(frozen=True, slots=True)
class LineBudget:
    """Everything the renderer needs to know about how long a line's speech must be.

    Attributes:
        start_sample: First output sample of the slot.
        end_sample: First output sample after the slot.
        lead_in_samples: Silence kept before the speech (exact-with-margins), else 0.
        lead_out_samples: Silence kept after the speech (exact-with-margins), else 0.
        speech_samples: Samples the speech itself fills: slot minus the margins.
        tokens: Semantic-token budget for ``speech_samples``.
        mel_frames: S2M mel-frame budget for ``speech_samples``.
    """

    start_sample: int
    end_sample: int
    lead_in_samples: int
    lead_out_samples: int
    speech_samples: int
    tokens: int
    mel_frames: int

    @property
    def slot_samples(self) -> int:
        """Samples of the whole slot, margins included."""
        return self.end_sample - self.start_sample


def line_budget(
    slot: Slot,
    fps: Fraction,
    sample_rate: int,
    *,
    lead_in_seconds: Fraction | float = 0,
    lead_out_seconds: Fraction | float = 0,
    token_rate: Fraction = INDEXTTS2_TOKEN_RATE,
    mel_rate: Fraction = INDEXTTS2_MEL_RATE,
) -> LineBudget:
    """The budget of one line: its slot's samples, minus optional margins, as engine budgets.

    Margins never eat more than half the slot: when the requested lead-in plus lead-out exceed
    half of it, both shrink in proportion, so a short line still gets speech.
    """
    start = slot.start_sample(fps, sample_rate)
    end = slot.end_sample(fps, sample_rate)
    total = end - start
    lead_in = seconds_to_samples(lead_in_seconds, sample_rate)
    lead_out = seconds_to_samples(lead_out_seconds, sample_rate)
    if lead_in < 0 or lead_out < 0:
        raise ValidationError("Lead-in and lead-out margins cannot be negative.")
    if lead_in + lead_out > total // 2:
        allowed = total // 2
        requested = lead_in + lead_out
        lead_in = lead_in * allowed // requested
        lead_out = lead_out * allowed // requested
    speech = total - lead_in - lead_out
    tokens, mel_frames = budget_for_samples(speech, sample_rate, token_rate, mel_rate)
    return LineBudget(start, end, lead_in, lead_out, speech, tokens, mel_frames)


def _drop_frame_params(fps: Fraction) -> tuple[int, int]:
    """(nominal frames per second, frames dropped per minute) for a drop-frame rate, else drop 0."""
    nominal = round(fps)
    if fps.denominator != 1 and fps == Fraction(nominal * 1000, 1001) and nominal % 30 == 0:
        return nominal, nominal // 15  # 29.97 drops 2, 59.94 drops 4 frame numbers a minute
    return nominal, 0


def is_drop_frame(fps: Fraction) -> bool:
    """Whether SMPTE drop-frame timecode applies to this rate (29.97 and 59.94 fps)."""
    return _drop_frame_params(fps)[1] > 0


def format_timecode(frame: int, fps: Fraction, *, drop_frame: bool | None = None) -> str:
    """SMPTE timecode of a frame: ``HH:MM:SS:FF``, or ``HH:MM:SS;FF`` for drop-frame.

    Args:
        frame: Frame index (>= 0).
        fps: Frame rate.
        drop_frame: Use drop-frame numbering; default: whenever the rate is 29.97 or 59.94.

    Returns:
        The timecode. Hours are not wrapped at 24.
    """
    if frame < 0:
        raise ValidationError(f"Timecode of a negative frame ({frame}) is undefined.")
    nominal, drop = _drop_frame_params(fps)
    if drop_frame is False:
        drop = 0
    if drop:
        per_10_min = nominal * 600 - drop * 9
        per_min = nominal * 60 - drop
        tens, rest = divmod(frame, per_10_min)
        frame += drop * 9 * tens
        if rest > drop:
            frame += drop * ((rest - drop) // per_min)
    seconds_total, ff = divmod(frame, nominal)
    minutes_total, ss = divmod(seconds_total, 60)
    hh, mm = divmod(minutes_total, 60)
    sep = ";" if drop else ":"
    return f"{hh:02d}:{mm:02d}:{ss:02d}{sep}{ff:02d}"


_TIMECODE = re.compile(r"^(\d+):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")


def parse_timecode(text: str, fps: Fraction) -> int:
    """The frame index of an SMPTE timecode (``;`` or ``,`` before the frames means drop-frame)."""
    match = _TIMECODE.match(text.strip())
    if not match:
        raise ValidationError(f"Timecode {text!r} is not HH:MM:SS:FF.")
    hh, mm, ss, sep, ff = match.groups()
    nominal, drop = _drop_frame_params(fps)
    if sep in ":.":
        drop = 0
    if int(mm) >= 60 or int(ss) >= 60 or int(ff) >= nominal:
        raise ValidationError(f"Timecode {text!r} is out of range at {format_fps(fps)} fps.")
    minutes = int(hh) * 60 + int(mm)
    frame = (minutes * 60 + int(ss)) * nominal + int(ff)
    return frame - drop * (minutes - minutes // 10)
