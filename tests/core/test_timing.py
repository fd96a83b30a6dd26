"""Tests of exact time math: fps parsing, snapping, zero drift, no overlap, monotone budgets."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dubstudio.core.errors import ValidationError
from dubstudio.core.timing import (
    INDEXTTS2_MEL_RATE,
    INDEXTTS2_TOKEN_RATE,
    STANDARD_FPS,
    Slot,
    budget_for_samples,
    format_timecode,
    frame_to_sample,
    frame_to_seconds,
    line_budget,
    ms_to_frame,
    parse_fps,
    parse_timecode,
    round_half_up,
)

NTSC_FILM = Fraction(24000, 1001)
NTSC_VIDEO = Fraction(30000, 1001)
TWO_HOURS_MS = 2 * 3600 * 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24000/1001", NTSC_FILM),
        ("23.976", NTSC_FILM),
        ("23.98", NTSC_FILM),
        ("29.97", NTSC_VIDEO),
        ("59.94", Fraction(60000, 1001)),
        ("25", Fraction(25)),
        (25, Fraction(25)),
        ("12.5", Fraction(25, 2)),
        (Fraction(48), Fraction(48)),
        (29.97, NTSC_VIDEO),
    ],
)
def test_parse_fps_maps_spellings_to_exact_rates(text: object, expected: Fraction) -> None:
    assert parse_fps(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["0", "-25", "abc", "25/0", "", "2000", True])
def test_parse_fps_rejects_nonsense_with_a_usable_message(bad: object) -> None:
    with pytest.raises(ValidationError, match=r"[Ff]rame rate"):
        parse_fps(bad)  # type: ignore[arg-type]


def test_round_half_up_rounds_halves_towards_plus_infinity() -> None:
    assert round_half_up(Fraction(5, 2)) == 3
    assert round_half_up(Fraction(-5, 2)) == -2
    assert round_half_up(Fraction(7, 3)) == 2


def test_known_sample_positions_at_ntsc_rates() -> None:
    # Frame 1 at 23.976 fps starts at 1001/24000 s = 2002 samples at 48 kHz exactly.
    assert frame_to_sample(1, NTSC_FILM, 48000) == 2002
    # 29.97: 1001/30000 s * 48000 = 1601.6 -> 1602.
    assert frame_to_sample(1, NTSC_VIDEO, 48000) == 1602
    # One hour of 29.97 material: 107892 frames is exactly 3600*1.001*... check exactness.
    frames = 107892
    assert frame_to_seconds(frames, NTSC_VIDEO) == Fraction(frames * 1001, 30000)
    assert ms_to_frame(1000, Fraction(25)) == 25
    assert ms_to_frame(20, Fraction(25)) == 1  # 0.5 frame rounds half up


@settings(max_examples=200, deadline=None)
@given(
    fps=st.sampled_from([NTSC_FILM, NTSC_VIDEO]),
    start_ms=st.integers(0, TWO_HOURS_MS),
    sample_rate=st.sampled_from([22050, 44100, 48000, 96000]),
)
def test_zero_drift_over_two_hours(fps: Fraction, start_ms: int, sample_rate: int) -> None:
    """A line's first sample equals the exact time of its frame, to within half a sample."""
    frame = ms_to_frame(start_ms, fps)
    exact = Fraction(frame) / fps * sample_rate  # exact sample position, no accumulation
    sample = frame_to_sample(frame, fps, sample_rate)
    assert abs(sample - exact) <= Fraction(1, 2)
    # And it does not depend on how the programme was walked: summing per-frame sample counts
    # from a distant anchor lands on the same sample.
    anchor = max(0, frame - 500)
    walked = frame_to_sample(anchor, fps, sample_rate) + sum(
        Slot(f, f + 1).n_samples(fps, sample_rate) for f in range(anchor, frame)
    )
    assert walked == sample


def test_zero_drift_at_the_end_of_two_hours_at_29_97() -> None:
    fps = NTSC_VIDEO
    last_frame = ms_to_frame(TWO_HOURS_MS, fps)
    # Sum of every frame's sample count over two hours equals the exact position.
    total = sum(Slot(f, f + 1).n_samples(fps, 48000) for f in range(last_frame))
    assert total == round_half_up(Fraction(last_frame) * 48000 / fps)
    assert abs(total - Fraction(last_frame) * 48000 / fps) <= Fraction(1, 2)


@settings(max_examples=200, deadline=None)
@given(
    fps=st.sampled_from(STANDARD_FPS),
    cues=st.lists(
        st.tuples(st.integers(0, TWO_HOURS_MS), st.integers(1, 8000)), min_size=2, max_size=20
    ),
    sample_rate=st.sampled_from([44100, 48000]),
)
def test_adjacent_lines_never_overlap_after_snapping(
    fps: Fraction, cues: list[tuple[int, int]], sample_rate: int
) -> None:
    """Cues laid end to end (each starts where the previous ends) share exactly one boundary."""
    cues.sort()
    start = cues[0][0]
    slots = []
    for _, length in cues:
        end = start + length
        slots.append(Slot.from_ms(start, end, fps))
        start = end
    for a, b in itertools.pairwise(slots):
        if a.end_frame == b.start_frame:
            assert a.end_sample(fps, sample_rate) == b.start_sample(fps, sample_rate)
        else:  # a sub-frame cue was widened to one frame and now overlaps its neighbour
            assert a.end_frame > b.start_frame
    # Lines that start at or after another's end never share a sample with it.
    for a in slots:
        for b in slots:
            if b.start_frame >= a.end_frame:
                assert b.start_sample(fps, sample_rate) >= a.end_sample(fps, sample_rate)
    # Samples of back-to-back slots add up exactly to the span they cover.
    if all(a.end_frame == b.start_frame for a, b in itertools.pairwise(slots)):
        total = sum(s.n_samples(fps, sample_rate) for s in slots)
        whole = Slot(slots[0].start_frame, slots[-1].end_frame)
        assert total == whole.n_samples(fps, sample_rate)


@settings(max_examples=300, deadline=None)
@given(
    a=st.integers(0, 10_000_000),
    b=st.integers(0, 10_000_000),
    sample_rate=st.sampled_from([16000, 22050, 24000, 44100, 48000]),
)
def test_budgets_are_monotone_in_samples(a: int, b: int, sample_rate: int) -> None:
    small, large = sorted((a, b))
    t1, m1 = budget_for_samples(small, sample_rate, INDEXTTS2_TOKEN_RATE, INDEXTTS2_MEL_RATE)
    t2, m2 = budget_for_samples(large, sample_rate, INDEXTTS2_TOKEN_RATE, INDEXTTS2_MEL_RATE)
    assert t1 <= t2
    assert m1 <= m2


@settings(max_examples=200, deadline=None)
@given(
    fps=st.sampled_from(STANDARD_FPS),
    start=st.integers(0, 200_000),
    n1=st.integers(1, 500),
    n2=st.integers(1, 500),
)
def test_budgets_are_monotone_in_slot_length(fps: Fraction, start: int, n1: int, n2: int) -> None:
    short, long_ = sorted((n1, n2))
    b1 = line_budget(Slot(start, start + short), fps, 48000)
    b2 = line_budget(Slot(start, start + long_), fps, 48000)
    assert b1.speech_samples <= b2.speech_samples
    assert b1.tokens <= b2.tokens
    assert b1.mel_frames <= b2.mel_frames


def test_budget_for_one_second() -> None:
    assert budget_for_samples(48000, 48000, INDEXTTS2_TOKEN_RATE, INDEXTTS2_MEL_RATE) == (
        50,
        round_half_up(Fraction(22050, 256)),
    )
    with pytest.raises(ValidationError):
        budget_for_samples(-1, 48000, INDEXTTS2_TOKEN_RATE, INDEXTTS2_MEL_RATE)


def test_line_budget_margins() -> None:
    slot = Slot(0, 50)  # 2 s at 25 fps
    budget = line_budget(slot, Fraction(25), 48000, lead_in_seconds=0.1, lead_out_seconds=0.1)
    assert budget.slot_samples == 96000
    assert budget.lead_in_samples == 4800
    assert budget.lead_out_samples == 4800
    assert budget.speech_samples == 86400
    assert budget.tokens == 90
    # Margins never take more than half of a short slot.
    tiny = line_budget(Slot(0, 5), Fraction(25), 48000, lead_in_seconds=1, lead_out_seconds=1)
    assert tiny.speech_samples >= tiny.slot_samples // 2


def test_slot_validation() -> None:
    with pytest.raises(ValidationError, match="end after"):
        Slot(10, 10)
    with pytest.raises(ValidationError, match="before frame 0"):
        Slot(-1, 3)
    # A cue shorter than a frame keeps one frame.
    assert Slot.from_ms(1000, 1001, Fraction(25)).n_frames == 1


@pytest.mark.parametrize(
    ("frame", "fps", "expected"),
    [
        (0, Fraction(25), "00:00:00:00"),
        (25 * 3661 + 7, Fraction(25), "01:01:01:07"),
        (1800, NTSC_VIDEO, "00:01:00;02"),  # frames :00 and :01 of minute 1 are skipped
        (1799, NTSC_VIDEO, "00:00:59;29"),
        (17982, NTSC_VIDEO, "00:10:00;00"),  # minute 10 does not drop
        (107892, NTSC_VIDEO, "01:00:00;00"),  # one hour of 29.97 is exactly 01:00:00;00
        (3600, Fraction(60000, 1001), "00:01:00;04"),
        (24000, NTSC_FILM, "00:16:40:00"),  # 23.976 has no drop-frame counting
    ],
)
def test_timecodes(frame: int, fps: Fraction, expected: str) -> None:
    assert format_timecode(frame, fps) == expected
    assert parse_timecode(expected, fps) == frame


@settings(max_examples=300, deadline=None)
@given(frame=st.integers(0, 2_000_000), fps=st.sampled_from(STANDARD_FPS))
def test_timecode_round_trips(frame: int, fps: Fraction) -> None:
    assert parse_timecode(format_timecode(frame, fps), fps) == frame
