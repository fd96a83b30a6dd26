"""Subtitles in and out: SRT, WebVTT and ASS/SSA import with line-numbered problem reports;
SRT and ASS export.

Real subtitle files are messy. The importer accepts UTF-8 with or without BOM, UTF-16/32 with a
BOM (or a recognisable UTF-16 without one), Windows-1252, any line ending, cues without the blank
line between them, cues without a number, sloppy timestamps (``0:00:01.5``), and markup (HTML
tags, ASS override blocks). Every problem it meets becomes a :class:`SubtitleProblem` naming the
line of the file. Broken cues (unreadable timestamps, zero or negative durations, no text) are
*errors*: by default the cue is skipped and the error says so; in strict mode the import fails
with a :class:`~dubstudio.core.errors.SubtitleError` listing them all. Repairs the importer makes
and things worth a look (overlaps, out-of-order cues) are *warnings*. Nothing is dropped silently.

Who speaks: ASS/SSA's Name (Actor) field, WebVTT's ``<v Name>`` span, or -- in SRT and WebVTT --
a speaker prefix in capitals at the start of a cue (``MAYA: Hello``), the common convention of
dubbing scripts and SDH subtitles. The prefix is removed from the text and its name title-cased.

pysrt provides SRT cue structure and SRT writing, pysubs2 the ASS/SSA reader and writer; the
line-numbered scanning and validation here exist because both libraries silently turn a broken
timestamp into zero and do not report where in the file a problem is.
"""

from __future__ import annotations

import enum
import itertools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pysrt
import pysubs2

from dubstudio.core.errors import SubtitleError
from dubstudio.core.fsutil import atomic_write_text
from dubstudio.core.model import Line, Project
from dubstudio.core.timing import Slot, frame_to_ms

logger = logging.getLogger(__name__)

FORMATS = ("srt", "vtt", "ass", "ssa")
_SUFFIX_FORMATS = {".srt": "srt", ".vtt": "vtt", ".webvtt": "vtt", ".ass": "ass", ".ssa": "ssa"}


class Severity(enum.StrEnum):
    """How bad a problem is."""

    WARNING = "warning"  # repaired or worth a look; the cue is kept
    ERROR = "error"  # the cue is skipped (default) or the import fails (strict)


@dataclass(frozen=True, slots=True)
class SubtitleProblem:
    """One problem found in a subtitle file.

    Attributes:
        line_number: 1-based line of the file where the problem is (0: the file as a whole).
        message: What is wrong and what the importer did about it.
        severity: Warning (kept) or error (cue skipped).
        cue_number: The cue's own number in the file, when it has one.
    """

    line_number: int
    message: str
    severity: Severity = Severity.WARNING
    cue_number: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line_number}" if self.line_number else "file"
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle cue as read from a file.

    Attributes:
        start_ms: Start time in milliseconds.
        end_ms: End time in milliseconds.
        text: Text with markup kept (lines joined with ``\\n``).
        character: Speaker, "" when unknown.
        line_number: Line of the cue's timing line in the file.
        number: The cue's own number in the file, if any.
    """

    start_ms: int
    end_ms: int
    text: str
    character: str = ""
    line_number: int = 0
    number: int | None = None


@dataclass(slots=True)
class SubtitleImport:
    """Result of reading a subtitle file.

    Attributes:
        cues: Cues kept, in time order.
        problems: Every problem found, in file order.
        format: ``"srt"``, ``"vtt"``, ``"ass"`` or ``"ssa"``.
        encoding: The text encoding the file was read with.
        skipped: Number of cues skipped because of errors.
    """

    cues: list[Cue] = field(default_factory=list)
    problems: list[SubtitleProblem] = field(default_factory=list)
    format: str = "srt"
    encoding: str = "utf-8"
    skipped: int = 0

    @property
    def errors(self) -> list[SubtitleProblem]:
        """Problems that made a cue be skipped."""
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[SubtitleProblem]:
        """Problems that were repaired or are worth a look."""
        return [p for p in self.problems if p.severity is Severity.WARNING]


# ----------------------------------------------------------------------------------------------
# Decoding


def decode_subtitle_bytes(
    data: bytes, encoding: str | None = None
) -> tuple[str, str, list[SubtitleProblem]]:
    """Decode a subtitle file's bytes, guessing the encoding unless one is given.

    Returns:
        ``(text, encoding used, problems)``.

    Raises:
        SubtitleError: If ``encoding`` is given and the bytes are not in it.
    """
    problems: list[SubtitleProblem] = []
    if encoding:
        try:
            return data.decode(encoding), encoding, problems
        except (UnicodeDecodeError, LookupError) as exc:
            raise SubtitleError(
                f"The file is not valid {encoding} ({exc}); try without --encoding."
            ) from None
    boms = (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    )
    for bom, name in boms:
        if data.startswith(bom):
            try:
                return data.decode(name), name, problems
            except UnicodeDecodeError as exc:
                raise SubtitleError(
                    f"The file starts with a {name} mark but is not {name}: {exc}."
                ) from None
    if data and data.count(b"\x00") > len(data) // 4:
        # UTF-16 without a byte-order mark: ASCII text leaves every other byte zero.
        name = "utf-16-le" if data[1::2].count(0) > data[0::2].count(0) else "utf-16-be"
        try:
            return data.decode(name), name, problems
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), "utf-8", problems
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        text = data.decode("cp1252", errors="replace")
        problems.append(
            SubtitleProblem(
                line,
                "not valid UTF-8 here; the file was read as Windows-1252 (cp1252). Check accented "
                "letters, or save the file as UTF-8.",
            )
        )
        return text, "cp1252", problems


# ----------------------------------------------------------------------------------------------
# Timestamps

_STRICT_SRT_TIME = re.compile(r"^\d{2}:\d{2}:\d{2},\d{3}$")
_STRICT_VTT_TIME = re.compile(r"^(?:\d{2,}:)?\d{2}:\d{2}\.\d{3}$")
_LENIENT_TIME = re.compile(
    r"^(-?)(?:(\d{1,3})\s*[:;]\s*)?(\d{1,2})\s*[:;]\s*(\d{1,2})(?:[,.:](\d{1,3}))?$"
)
_ARROW = re.compile(r"\s*-+>\s*")


def parse_timestamp(text: str) -> int:
    """Milliseconds of a subtitle timestamp, accepting common sloppy spellings.

    ``00:00:01,500``, ``00:00:01.500``, ``0:00:01.5`` (= 1500 ms), ``00:01.500`` (WebVTT without
    hours) and ``00:00:01`` are all read.

    Raises:
        ValueError: If the timestamp is unreadable or a field is out of range.
    """
    match = _LENIENT_TIME.match(text.strip())
    if not match:
        raise ValueError(f"timestamp {text.strip()!r} is not HH:MM:SS,mmm")
    sign, hh, mm, ss, frac = match.groups()
    minutes, seconds = int(mm), int(ss)
    if seconds >= 60 or (hh is not None and minutes >= 60):
        raise ValueError(f"timestamp {text.strip()!r} has minutes or seconds above 59")
    ms = int((frac or "0").ljust(3, "0"))
    total = ((int(hh or 0) * 60 + minutes) * 60 + seconds) * 1000 + ms
    if sign:
        raise ValueError(f"timestamp {text.strip()!r} is negative")
    return total


def _parse_timing_line(line: str, strict_re: re.Pattern[str]) -> tuple[int, int, bool]:
    """(start ms, end ms, was_repaired) of a ``start --> end [settings]`` line."""
    parts = _ARROW.split(line.strip(), maxsplit=1)
    if len(parts) != 2:
        raise ValueError(f"timing line {line.strip()!r} needs 'start --> end'")
    start_text = parts[0].strip()
    end_text = parts[1].strip().split()[0] if parts[1].strip() else ""
    start = parse_timestamp(start_text)
    end = parse_timestamp(end_text)
    arrow_ok = " --> " in line
    repaired = not (strict_re.match(start_text) and strict_re.match(end_text) and arrow_ok)
    return start, end, repaired


# ----------------------------------------------------------------------------------------------
# Speakers and markup

_SPEAKER_PREFIX = re.compile(r"^((?:<[^>]+>|\{[^}]*\})*)([A-Z][A-Z0-9 .'\-]{0,29}[A-Z0-9.])\s*:\s+")
_VTT_VOICE = re.compile(r"<v(?:\.[\w.\-]+)?\s+([^>]+)>")
_VTT_TIMESTAMP_TAG = re.compile(r"<\d{1,2}:\d{2}(?::\d{2})?\.\d{3}>")


def split_speaker(text: str) -> tuple[str, str]:
    """Split a ``NAME: text`` speaker prefix off a cue: ``(character, text)``.

    Only names in capitals count (``MAYA:``, ``DR. OTTO:``), so "Note: ..." stays text.
    """
    match = _SPEAKER_PREFIX.match(text)
    if not match or sum(ch.isalpha() for ch in match.group(2)) < 2:
        return "", text
    name = match.group(2).strip()
    return name.title(), match.group(1) + text[match.end() :]


def _vtt_text(raw: str) -> tuple[str, str]:
    """(character, text) of a WebVTT cue body: ``<v Name>`` gives the speaker."""
    character = ""
    match = _VTT_VOICE.search(raw)
    if match:
        character = match.group(1).strip()
    text = _VTT_VOICE.sub("", raw).replace("</v>", "")
    text = _VTT_TIMESTAMP_TAG.sub("", text)
    return character, text.strip()


# ----------------------------------------------------------------------------------------------
# Readers


def detect_format(path: Path | None, text: str) -> str:
    """The subtitle format of a file, from its content first and its suffix second."""
    head = text.lstrip("\ufeff \t\r\n")[:2000]
    if head.startswith("WEBVTT"):
        return "vtt"
    if "[Script Info]" in head or "[V4+ Styles]" in head or "[Events]" in head:
        return "ssa" if "[V4 Styles]" in head else "ass"
    if path is not None and path.suffix.lower() in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[path.suffix.lower()]
    return "srt"


def read_subtitles(
    path: Path | str,
    *,
    strict: bool = False,
    encoding: str | None = None,
    format: str | None = None,
    detect_speakers: bool = True,
) -> SubtitleImport:
    """Read a subtitle file (SRT, WebVTT, ASS or SSA).

    Args:
        path: The file.
        strict: Fail on any broken cue instead of skipping it.
        encoding: Text encoding; guessed when None.
        format: ``"srt"``, ``"vtt"``, ``"ass"`` or ``"ssa"``; detected when None.
        detect_speakers: Read ``NAME:`` prefixes in SRT/WebVTT cues as the character.

    Returns:
        The cues and every problem found.

    Raises:
        SubtitleError: If the file cannot be read, has no cues at all, or (strict) has errors.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SubtitleError(f"Cannot read subtitle file {path}: {exc.strerror or exc}.") from None
    text, used_encoding, problems = decode_subtitle_bytes(data, encoding)
    fmt = format or detect_format(path, text)
    result = parse_subtitles(text, fmt, strict=strict, detect_speakers=detect_speakers)
    result.encoding = used_encoding
    result.problems[:0] = problems
    if not result.cues:
        detail = "; ".join(str(p) for p in result.problems[:5])
        raise SubtitleError(
            f"No usable cues in {path} (read as {fmt}, {used_encoding})."
            + (f" {detail}" if detail else " Is it a subtitle file?")
        )
    return result


def parse_subtitles(
    text: str, format: str = "srt", *, strict: bool = False, detect_speakers: bool = True
) -> SubtitleImport:
    """Parse subtitle text (already decoded); see :func:`read_subtitles`."""
    text = text.lstrip("\ufeff")
    fmt = format.lower().lstrip(".")
    if fmt in ("srt", "vtt", "webvtt"):
        fmt = "vtt" if fmt == "webvtt" else fmt
        result = _parse_blocks(text, fmt, detect_speakers)
    elif fmt in ("ass", "ssa"):
        result = _parse_ass(text, fmt)
    else:
        raise SubtitleError(f"Unknown subtitle format {format!r}; use one of {', '.join(FORMATS)}.")
    _check_order_and_overlaps(result)
    if strict and result.errors:
        listing = "\n".join(f"  {p}" for p in result.errors)
        raise SubtitleError(
            f"{len(result.errors)} broken cue(s) (strict mode); fix them or import without "
            f"--strict to skip them:\n{listing}",
            result.errors,
        )
    return result


def _is_index(line: str) -> bool:
    return line.strip().isdigit()


def _parse_blocks(text: str, fmt: str, detect_speakers: bool) -> SubtitleImport:
    """SRT and WebVTT: cues anchored on their timing lines, so missing blank lines do no harm."""
    lines = text.splitlines()
    result = SubtitleImport(format=fmt)
    strict_re = _STRICT_SRT_TIME if fmt == "srt" else _STRICT_VTT_TIME
    timing = [i for i, line in enumerate(lines) if "-->" in line]
    if fmt == "vtt":
        timing = [i for i in timing if not lines[i].lstrip().startswith("NOTE")]
    claimed = [False] * len(lines)
    if fmt == "vtt":
        _claim_vtt_header(lines, claimed, timing[0] if timing else len(lines))
    for k, ti in enumerate(timing):
        claimed[ti] = True
        next_ti = timing[k + 1] if k + 1 < len(timing) else len(lines)
        # The cue's number (SRT) or identifier (WebVTT) is the non-blank line just before.
        number: int | None = None
        if ti > 0 and lines[ti - 1].strip() and not claimed[ti - 1]:
            label = lines[ti - 1].strip()
            if fmt == "srt" and _is_index(label):
                number = int(label)
                claimed[ti - 1] = True
            elif fmt == "vtt" and (ti < 2 or not lines[ti - 2].strip()):
                number = int(label) if label.isdigit() else None
                claimed[ti - 1] = True
        elif fmt == "srt":
            result.problems.append(SubtitleProblem(ti + 1, "cue has no number before its timing."))
        # Its text runs to the next blank line; a next cue that starts without a blank line
        # (number + timing line right after the text) ends it too.
        body_end = next_ti
        if k + 1 < len(timing) and next_ti - 1 > ti:
            prev = lines[next_ti - 1].strip()
            if (fmt == "srt" and _is_index(prev)) or (
                fmt == "vtt" and prev and not lines[next_ti - 2].strip()
            ):
                body_end = next_ti - 1
        body: list[str] = []
        j = ti + 1
        while j < body_end and lines[j].strip():
            body.append(lines[j].rstrip())
            claimed[j] = True
            j += 1
        if k + 1 < len(timing) and j == body_end and body:
            # The text ran straight into the next cue's number/timing: no blank line between.
            result.problems.append(
                SubtitleProblem(body_end + 1, "no blank line before this cue; read anyway.")
            )
        rest = [i for i in range(j, body_end) if lines[i].strip()]
        if rest and fmt == "srt":
            for i in rest:
                claimed[i] = True
            body.extend(lines[i].rstrip() for i in rest)
            result.problems.append(
                SubtitleProblem(
                    rest[0] + 1, "blank line inside a cue's text; kept as text.", cue_number=number
                )
            )
        try:
            start, end, repaired = _parse_timing_line(lines[ti], strict_re)
        except ValueError as exc:
            result.problems.append(
                SubtitleProblem(ti + 1, f"{exc}; cue skipped.", Severity.ERROR, number)
            )
            result.skipped += 1
            continue
        raw = "\n".join(body).strip()
        if fmt == "srt":
            raw = _srt_body(number, lines[ti], body)
        if repaired:
            result.problems.append(
                SubtitleProblem(
                    ti + 1,
                    f"timestamp written loosely; read as {_fmt_ms(start)} --> {_fmt_ms(end)}.",
                    cue_number=number,
                )
            )
        _add_cue(result, fmt, start, end, raw, ti + 1, number, detect_speakers)
    for i, line in enumerate(lines):
        if line.strip() and not claimed[i]:
            result.problems.append(
                SubtitleProblem(i + 1, f"text outside any cue ignored: {line.strip()[:40]!r}.")
            )
    return result


def _claim_vtt_header(lines: list[str], claimed: list[bool], first_timing: int) -> None:
    """Mark the WEBVTT header and NOTE/STYLE/REGION blocks as read (they are not cues)."""
    in_block = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            in_block = False
            continue
        starts_block = stripped.startswith(("NOTE", "STYLE", "REGION"))
        if i == 0 or starts_block or (in_block and i < first_timing):
            in_block = i == 0 or starts_block or in_block
            claimed[i] = True
        elif in_block:
            claimed[i] = True


def _srt_body(number: int | None, timing_line: str, body: list[str]) -> str:
    """The cue text through pysrt's item parser (which keeps position suffixes out of the text)."""
    try:
        item = pysrt.SubRipItem.from_lines(
            [str(number or 0), timing_line.replace("->", "-->").replace("--->", "-->"), *body]
        )
        return str(item.text).strip()
    except (pysrt.Error, ValueError):
        return "\n".join(body).strip()


def _add_cue(
    result: SubtitleImport,
    fmt: str,
    start: int,
    end: int,
    raw: str,
    line_number: int,
    number: int | None,
    detect_speakers: bool,
) -> None:
    character = ""
    if fmt == "vtt":
        character, raw = _vtt_text(raw)
    if detect_speakers and not character:
        character, raw = split_speaker(raw)
    if end <= start:
        what = "zero duration" if end == start else "ends before it starts"
        result.problems.append(
            SubtitleProblem(
                line_number,
                f"cue has {what} ({_fmt_ms(start)} --> {_fmt_ms(end)}); cue skipped.",
                Severity.ERROR,
                number,
            )
        )
        result.skipped += 1
        return
    if not raw.strip():
        result.problems.append(
            SubtitleProblem(line_number, "cue has no text; cue skipped.", Severity.ERROR, number)
        )
        result.skipped += 1
        return
    result.cues.append(Cue(start, end, raw, character, line_number, number))


def _parse_ass(text: str, fmt: str) -> SubtitleImport:
    """ASS/SSA through pysubs2, with Dialogue lines pre-checked so problems carry line numbers."""
    result = SubtitleImport(format=fmt)
    lines = text.splitlines()
    dialogue_lines: list[int] = []
    good_text: list[str] = []
    for i, line in enumerate(lines):
        if line.lstrip().lower().startswith("dialogue:"):
            fields = line.split(":", 1)[1].split(",", 9)
            try:
                if len(fields) < 10:
                    raise ValueError("Dialogue line has fewer than 10 fields")
                parse_timestamp(fields[1])
                parse_timestamp(fields[2])
            except ValueError as exc:
                result.problems.append(
                    SubtitleProblem(i + 1, f"{exc}; cue skipped.", Severity.ERROR)
                )
                result.skipped += 1
                continue
            dialogue_lines.append(i + 1)
        good_text.append(line)
    try:
        subs = pysubs2.SSAFile.from_string("\n".join(good_text), format_=fmt)
    except Exception as exc:  # pysubs2 raises several unrelated types on damaged files
        raise SubtitleError(f"Cannot read this {fmt.upper()} file: {exc}.") from None
    events = [e for e in subs.events if e.type == "Dialogue"]
    if len(events) != len(dialogue_lines):
        logger.warning(
            "ASS line mapping mismatch: %d events, %d lines", len(events), len(dialogue_lines)
        )
        dialogue_lines = [0] * len(events)
    for event, line_number in zip(events, dialogue_lines, strict=True):
        _add_cue(
            result, fmt, int(event.start), int(event.end), event.text, line_number, None, False
        )
        if result.cues and result.cues[-1].line_number == line_number and event.name:
            cue = result.cues[-1]
            result.cues[-1] = Cue(
                cue.start_ms, cue.end_ms, cue.text, event.name.strip(), cue.line_number
            )
    return result


def _check_order_and_overlaps(result: SubtitleImport) -> None:
    """Sort cues by time, saying so, and report overlaps (kept: two people may talk at once)."""
    cues = result.cues
    if any(b.start_ms < a.start_ms for a, b in itertools.pairwise(cues)):
        first = next(b for a, b in itertools.pairwise(cues) if b.start_ms < a.start_ms)
        result.problems.append(
            SubtitleProblem(
                first.line_number,
                "cues are not in time order; sorted by start time.",
                cue_number=first.number,
            )
        )
        cues.sort(key=lambda c: (c.start_ms, c.end_ms))
    for a, b in itertools.pairwise(cues):
        if b.start_ms < a.end_ms:
            result.problems.append(
                SubtitleProblem(
                    b.line_number,
                    f"overlaps the previous cue by {a.end_ms - b.start_ms} ms; both kept.",
                    cue_number=b.number,
                )
            )
    result.problems.sort(key=lambda p: p.line_number)


def _fmt_ms(ms: int) -> str:
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    return f"{sign}{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


# ----------------------------------------------------------------------------------------------
# Cues <-> lines


def project_from_subtitles(
    path: Path | str,
    fps: Fraction,
    *,
    sample_rate: int = 48000,
    strict: bool = False,
    encoding: str | None = None,
) -> tuple[Project, SubtitleImport]:
    """Read a subtitle file into a new (unsaved) project; the import's problems include the
    frame-snapping warnings, sorted by line."""
    result = read_subtitles(path, strict=strict, encoding=encoding)
    lines, snap_problems = cues_to_lines(result.cues, fps)
    result.problems.extend(snap_problems)
    result.problems.sort(key=lambda p: p.line_number)
    return Project(fps=fps, sample_rate=sample_rate, lines=lines), result


def cues_to_lines(cues: Iterable[Cue], fps: Fraction) -> tuple[list[Line], list[SubtitleProblem]]:
    """Snap cues to the frame grid and make project lines of them.

    A cue shorter than one frame keeps one frame (with a warning).
    """
    lines: list[Line] = []
    problems: list[SubtitleProblem] = []
    for cue in cues:
        slot = Slot.from_ms(cue.start_ms, cue.end_ms, fps)
        if (cue.end_ms - cue.start_ms) * fps < 500:
            problems.append(
                SubtitleProblem(
                    cue.line_number,
                    "cue is shorter than one frame; widened to one frame.",
                    cue_number=cue.number,
                )
            )
        lines.append(Line(cue.text, slot.start_frame, slot.end_frame, character=cue.character))
    return lines, problems


_ASS_TO_HTML = ((r"{\i1}", "<i>"), (r"{\i0}", "</i>"), (r"{\b1}", "<b>"), (r"{\b0}", "</b>"))


def _text_for_srt(text: str) -> str:
    for ass, html in _ASS_TO_HTML:
        text = text.replace(ass, html)
    text = re.sub(r"\{[^{}]*\}", "", text)
    return text.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", "\u00a0")


def _text_for_ass(text: str) -> str:
    for ass, html in _ASS_TO_HTML:
        text = text.replace(html, ass)
    text = re.sub(r"</?[A-Za-z][^<>]*>", "", text)
    return text.replace("\r\n", "\n").replace("\n", "\\N")


def to_srt(lines: Sequence[Line], fps: Fraction, *, with_characters: bool = False) -> str:
    """SRT text of lines, in time order; ``with_characters`` prefixes ``NAME:`` to each cue."""
    items = pysrt.SubRipFile()
    ordered = sorted(lines, key=lambda line: (line.start_frame, line.end_frame))
    for n, line in enumerate(ordered, start=1):
        text = _text_for_srt(line.text)
        if with_characters and line.character:
            text = f"{line.character.upper()}: {text}"
        items.append(
            pysrt.SubRipItem(
                n,
                start=pysrt.SubRipTime.from_ordinal(frame_to_ms(line.start_frame, fps)),
                end=pysrt.SubRipTime.from_ordinal(frame_to_ms(line.end_frame, fps)),
                text=text,
            )
        )
    return "".join(str(item) + "\n" for item in items).rstrip("\n") + "\n"


def to_ass(lines: Sequence[Line], fps: Fraction, *, title: str = "DubStudio export") -> str:
    """ASS text of lines, in time order, with each line's character in the Name field."""
    subs = pysubs2.SSAFile()
    subs.info["Title"] = title
    ordered = sorted(lines, key=lambda line: (line.start_frame, line.end_frame))
    for line in ordered:
        subs.events.append(
            pysubs2.SSAEvent(
                start=frame_to_ms(line.start_frame, fps),
                end=frame_to_ms(line.end_frame, fps),
                text=_text_for_ass(line.text),
                name=line.character,
            )
        )
    return str(subs.to_string("ass"))


def write_subtitles(
    lines: Sequence[Line],
    fps: Fraction,
    path: Path | str,
    *,
    format: str | None = None,
    with_characters: bool = False,
) -> None:
    """Export lines as SRT or ASS (chosen by ``format`` or the file suffix), atomically."""
    path = Path(path)
    fmt = (format or _SUFFIX_FORMATS.get(path.suffix.lower(), "")).lower()
    if fmt == "srt":
        content = to_srt(lines, fps, with_characters=with_characters)
    elif fmt in ("ass", "ssa"):
        content = to_ass(lines, fps)
    else:
        raise SubtitleError(f"Cannot export subtitles as {path.suffix or fmt!r}; use .srt or .ass.")
    try:
        atomic_write_text(path, content)
    except OSError as exc:
        raise SubtitleError(f"Cannot write {path}: {exc.strerror or exc}.") from None
