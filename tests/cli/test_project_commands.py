"""Tests of `dubstudio info` and `dubstudio new` on messy subtitle files, through the real CLI."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from dubstudio.cli import main
from dubstudio.core.projectfile import load_project
from dubstudio.core.timing import frame_to_sample, round_half_up

REPO = Path(__file__).resolve().parents[2]
DEMO_SRT = REPO / "resources" / "demo" / "demo.srt"

MESSY = (
    "1\n00:00:01,000 --> 00:00:03,000\nMAYA: <i>Did you hear that?</i>\n\n"  # lines 1-3
    "2\n00:00:02,500 --> 00:00:04,000\nOTTO: It's the wind.\n"  # 5-7 (overlap, no blank)
    "3\n00:00:05,000 --> 00:00:0x,000\nBroken block\n\n"  # 8-10
    "4\n00:00:07,000 --> 00:00:09,000\nCafé au lait, s'il vous plaît.\n"  # 12-14
)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: t.encode("utf-8"),
        lambda t: b"\xef\xbb\xbf" + t.replace("\n", "\r\n").encode("utf-8"),
        lambda t: t.replace("\n", "\r\n").encode("cp1252"),
        lambda t: t.encode("utf-16"),
    ],
    ids=["utf8", "bom-crlf", "cp1252-crlf", "utf16"],
)
def test_info_json_on_messy_srt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encode: Any
) -> None:
    path = tmp_path / "messy.srt"
    path.write_bytes(encode(MESSY))
    report = run_json(capsys, str(path), "--fps", "25")
    assert report["fps"] == "25"
    rows = report["lines"]
    assert [r["speech_text"] for r in rows] == [
        "Did you hear that?",
        "It's the wind.",
        "Café au lait, s'il vous plaît.",
    ]
    assert [r["character"] for r in rows] == ["Maya", "Otto", ""]
    first = rows[0]
    # 1.000 s -> frame 25, 3.000 s -> frame 75 at 25 fps: 50 frames = 2 s = 96000 samples.
    assert (first["start_frame"], first["end_frame"], first["slot_frames"]) == (25, 75, 50)
    assert first["timecode_in"] == "00:00:01:00" and first["timecode_out"] == "00:00:03:00"
    assert first["slot_seconds"] == 2.0
    assert first["output_samples"] == 96000
    assert first["token_budget"] == 100
    assert first["mel_frame_budget"] == round_half_up(Fraction(2 * 22050, 256))
    assert first["forecast"] in {"fits", "tight", "impossible"}
    problems = {p["line_number"]: p for p in report["problems"]}
    assert "overlaps the previous cue by 500 ms" in problems[6]["message"]
    assert problems[9]["severity"] == "error" and "00:00:0x,000" in problems[9]["message"]
    assert "no blank line" in problems[8]["message"]
    assert report["skipped"] == 1
    assert report["summary"]["errors"] == 1


def test_info_exact_budgets_at_29_97(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "late.srt"
    # A line an hour and a half in: samples are computed from the frame, exactly.
    path.write_text("1\n01:30:00,000 --> 01:30:02,000\nLate line.\n", encoding="utf-8")
    report = run_json(capsys, str(path), "--fps", "29.97")
    row = report["lines"][0]
    fps = Fraction(30000, 1001)
    assert report["fps"] == "30000/1001"
    assert row["start_sample"] == frame_to_sample(row["start_frame"], fps, 48000)
    assert row["output_samples"] == (
        frame_to_sample(row["end_frame"], fps, 48000) - row["start_sample"]
    )
    assert row["timecode_in"].count(";") == 1  # drop-frame timecode


def test_info_strict_fails_with_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "messy.srt"
    path.write_text(MESSY, encoding="utf-8")
    assert main(["info", str(path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "line 9" in err and "strict" in err


def test_info_table_on_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(DEMO_SRT), "--fps", "24000/1001"]) == 0
    out = capsys.readouterr().out
    assert "23.976 (24000/1001) fps" in out
    assert "[Maya] Did you hear that?" in out
    assert "6 line(s)" in out


def test_new_then_info_on_the_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "media" / "demo.mp4"
    video.parent.mkdir()
    video.write_bytes(b"not really a video")
    out = tmp_path / "proj" / "demo.dubproj"
    out.parent.mkdir()
    assert (
        main(
            [
                "new",
                "--subtitles",
                str(DEMO_SRT),
                "--video",
                str(video),
                "--fps",
                "25",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert "Created" in capsys.readouterr().out
    project = load_project(out)
    assert len(project) == 6
    assert project.fps == 25
    assert project.video_path == "../media/demo.mp4"
    assert set(project.characters) == {"Maya", "Otto"}
    # Refuses to overwrite without --force.
    assert main(["new", "--subtitles", str(DEMO_SRT), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    report = run_json(capsys, str(out))
    assert report["kind"] == "project"
    assert [r["index"] for r in report["lines"]] == [1, 2, 3, 4, 5, 6]
    assert report["lines"][0]["start_frame"] == 25


def test_unknown_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path / "nope.srt")]) == 2
    assert "Cannot read subtitle file" in capsys.readouterr().err


def test_global_option_before_a_project_still_opens_the_editor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dubstudio import cli

    parser = cli.build_parser()
    opened: list[str] = []
    # The editor's action is replaced by a recorder: the dispatch is what is under test.
    edit_parser = parser._subparsers._group_actions[0].choices["edit"]  # type: ignore[union-attr]
    edit_parser.set_defaults(func=lambda args: opened.append(str(args.project)) or 0)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(["-v", "show.dubproj"]) == 0
    assert cli.main(["-v"]) == 0
    assert opened == ["show.dubproj", "None"]
