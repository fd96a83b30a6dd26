"""Tests of subtitle import (messy real-world files) and export."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from dubstudio.core.errors import SubtitleError
from dubstudio.core.model import Line
from dubstudio.core.subtitles import (
    Severity,
    cues_to_lines,
    parse_subtitles,
    parse_timestamp,
    read_subtitles,
    split_speaker,
    to_ass,
    to_srt,
    write_subtitles,
)

MESSY_SRT = (
    "1\n00:00:01,000 --> 00:00:02,500\nMAYA: <i>Héllo</i> there\n\n"  # lines 1-3
    "2\n00:00:03,000 --> 00:00:04,000\nNo blank line after me\n"  # lines 5-7
    "3\n00:00:03,500 --> 00:00:05,000\nI overlap\n\n"  # lines 8-10
    "4\n00:00:0x,000 --> 00:00:07,000\nBroken timestamp\n\n"  # lines 12-14
    "5\n00:00:08,000 --> 00:00:08,000\nZero length\n\n"  # lines 16-18
    "6\n00:00:10,000 --> 00:00:09,000\nBackwards\n\n"  # lines 20-22
    "7\n0:00:11.5 --> 00:00:13,000\nLoose timestamp\n"  # lines 24-26
)


def problems_by_line(result: object) -> dict[int, str]:
    return {p.line_number: f"{p.severity}: {p.message}" for p in result.problems}  # type: ignore[attr-defined]


def check_messy(result: object) -> None:
    cues = result.cues  # type: ignore[attr-defined]
    assert [c.text for c in cues] == [
        "<i>Héllo</i> there",
        "No blank line after me",
        "I overlap",
        "Loose timestamp",
    ]
    assert cues[0].character == "Maya"
    assert cues[3].start_ms == 11500
    found = problems_by_line(result)
    assert "no blank line" in found[8]
    assert "overlaps the previous cue by 500 ms" in found[9]
    assert found[13].startswith("error:") and "00:00:0x,000" in found[13]
    assert found[17].startswith("error:") and "zero duration" in found[17]
    assert found[21].startswith("error:") and "ends before it starts" in found[21]
    assert "loosely" in found[25]
    assert result.skipped == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("encode", "expected_encoding"),
    [
        (lambda t: t.encode("utf-8"), "utf-8"),
        (lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"), "utf-8-sig"),
        (lambda t: t.replace("\n", "\r\n").encode("utf-8"), "utf-8"),
        (lambda t: t.encode("cp1252"), "cp1252"),
        (lambda t: t.encode("utf-16"), "utf-16"),
        (lambda t: t.encode("utf-16-le"), "utf-16-le"),
        (lambda t: t.replace("\n", "\r").encode("utf-8"), "utf-8"),
    ],
    ids=["utf8", "bom", "crlf", "cp1252", "utf16-bom", "utf16-nobom", "cr"],
)
def test_messy_srt_in_every_encoding(
    tmp_path: Path, encode: object, expected_encoding: str
) -> None:
    path = tmp_path / "messy.srt"
    path.write_bytes(encode(MESSY_SRT))  # type: ignore[operator]
    result = read_subtitles(path)
    assert result.encoding == expected_encoding
    check_messy(result)
    if expected_encoding == "cp1252":
        assert any("Windows-1252" in p.message and p.line_number == 3 for p in result.problems)


def test_strict_mode_rejects_with_every_line_number(tmp_path: Path) -> None:
    path = tmp_path / "messy.srt"
    path.write_text(MESSY_SRT, encoding="utf-8")
    with pytest.raises(SubtitleError) as info:
        read_subtitles(path, strict=True)
    message = str(info.value)
    assert "3 broken cue(s)" in message
    for line in ("line 13", "line 17", "line 21"):
        assert line in message
    assert [p.line_number for p in info.value.problems] == [13, 17, 21]  # type: ignore[attr-defined]


def test_text_outside_cues_is_reported_not_dropped_silently() -> None:
    text = "Some header garbage\n\n1\n00:00:01,000 --> 00:00:02,000\nHi\n"
    result = parse_subtitles(text, "srt")
    assert [c.text for c in result.cues] == ["Hi"]
    assert any(p.line_number == 1 and "outside any cue" in p.message for p in result.problems)


def test_missing_numbers_and_blank_line_inside_text() -> None:
    text = (
        "00:00:01,000 --> 00:00:02,000\nFirst\n\nstill first\n\n"
        "2\n00:00:03,000 --> 00:00:04,000\nSecond\n"
    )
    result = parse_subtitles(text, "srt")
    assert [c.text for c in result.cues] == ["First\nstill first", "Second"]
    found = problems_by_line(result)
    assert "no number" in found[1]
    assert "blank line inside" in found[4]


def test_out_of_order_cues_are_sorted_and_reported() -> None:
    text = "1\n00:00:05,000 --> 00:00:06,000\nLater\n\n2\n00:00:01,000 --> 00:00:02,000\nEarlier\n"
    result = parse_subtitles(text, "srt")
    assert [c.text for c in result.cues] == ["Earlier", "Later"]
    assert any("not in time order" in p.message for p in result.problems)


def test_timestamps() -> None:
    assert parse_timestamp("01:02:03,456") == 3723456
    assert parse_timestamp("00:01.5") == 1500
    assert parse_timestamp("0:00:01") == 1000
    for bad in ("1:99:00,000", "abc", "-00:00:01,000"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_speaker_prefix() -> None:
    assert split_speaker("MAYA: Hello") == ("Maya", "Hello")
    assert split_speaker("DR. OTTO: Hi") == ("Dr. Otto", "Hi")
    assert split_speaker("<i>MAYA: Hello</i>") == ("Maya", "<i>Hello</i>")
    assert split_speaker("Note: lowercase is text") == ("", "Note: lowercase is text")
    assert split_speaker("A: single letter") == ("", "A: single letter")


def test_webvtt_voices_and_identifiers() -> None:
    text = (
        "WEBVTT - demo\n\nNOTE this is\na comment\n\nintro\n00:01.000 --> 00:02.500 align:start\n"
        "<v Maya>Hi <i>there</i></v>\n\n00:00:03.000 --> 00:00:04.000\n"
        "<v.loud Otto>Yo<00:00:03.500> man\n"
    )
    result = parse_subtitles(text, "vtt")
    assert [(c.character, c.text, c.start_ms) for c in result.cues] == [
        ("Maya", "Hi <i>there</i>", 1000),
        ("Otto", "Yo man", 3000),
    ]
    assert result.problems == []


ASS = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.50,Default,Maya,0,0,0,,{\\i1}Hello{\\i0}\\Nthere, you
Comment: 0,0:00:01.00,0:00:02.50,Default,Maya,0,0,0,,a comment
Dialogue: 0,0:00:0x.00,0:00:02.50,Default,Maya,0,0,0,,bad
Dialogue: 0,0:00:03.00,0:00:03.00,Default,Otto,0,0,0,,zero
Dialogue: 0,0:00:04.00,0:00:05.50,Default,Otto,0,0,0,,Fine.
"""  # noqa: E501


def test_ass_names_become_characters_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "dialogue.ass"
    path.write_text(ASS, encoding="utf-8")
    result = read_subtitles(path)
    assert result.format == "ass"
    assert [(c.character, c.text, c.line_number) for c in result.cues] == [
        ("Maya", "{\\i1}Hello{\\i0}\\Nthere, you", 10),
        ("Otto", "Fine.", 14),
    ]
    found = problems_by_line(result)
    assert found[12].startswith("error:")
    assert "zero duration" in found[13]


def test_export_round_trip_keeps_times_characters_and_markup(tmp_path: Path) -> None:
    fps = Fraction(25)
    lines = [
        Line("<i>Hello</i>\nthere", 25, 63, character="Maya"),
        Line("{\\i1}Fine{\\i0}.", 100, 130, character="Otto"),
    ]
    srt = to_srt(lines, fps, with_characters=True)
    assert "00:00:01,000 --> 00:00:02,520" in srt
    assert "MAYA: <i>Hello</i>\nthere" in srt
    assert "OTTO: <i>Fine</i>." in srt
    back = parse_subtitles(srt, "srt")
    assert [(c.character, c.start_ms, c.end_ms) for c in back.cues] == [
        ("Maya", 1000, 2520),
        ("Otto", 4000, 5200),
    ]
    again, _ = cues_to_lines(back.cues, fps)
    assert [(x.start_frame, x.end_frame) for x in again] == [(25, 63), (100, 130)]

    path = tmp_path / "out.ass"
    write_subtitles(lines, fps, path)
    assert "Dialogue: 0,0:00:01.00,0:00:02.52,Default,Maya" in path.read_text()
    assert "{\\i1}Hello{\\i0}\\Nthere" in to_ass(lines, fps)
    reread = read_subtitles(path)
    assert [c.character for c in reread.cues] == ["Maya", "Otto"]
    with pytest.raises(SubtitleError, match=r"\.srt or \.ass"):
        write_subtitles(lines, fps, tmp_path / "out.txt")


def test_sub_frame_cue_is_widened_and_reported() -> None:
    result = parse_subtitles("1\n00:00:01,000 --> 00:00:01,010\nBlip\n", "srt")
    lines, problems = cues_to_lines(result.cues, Fraction(25))
    assert lines[0].end_frame - lines[0].start_frame == 1
    assert problems and problems[0].severity is Severity.WARNING


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.srt"
    path.write_bytes(b"")
    with pytest.raises(SubtitleError, match="No usable cues"):
        read_subtitles(path)
