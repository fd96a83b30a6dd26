"""Build the bundled demo project in resources/demo/ from resources/demo/demo.srt.

Makes, reproducibly:

- ``maya.flac`` / ``otto.flac``: voice-profile reference clips spoken by CMU Flite voices
  (``slt`` and ``rms``; Flite and its voices are under CMU's permissive licence);
- ``demo.mp4``: 640x360, 25 fps H.264 with burned-in SMPTE timecode, frame number and the name
  of who speaks, and an AAC "original dialogue" track: the same lines spoken by two other Flite
  voices (``awb``, ``kal16``) at the subtitle times, standing in for the original actors;
- ``demo.dubproj``: the project: 25 fps, the video, the two voices bound to MAYA and OTTO.

Needs the ``flite`` program (Debian: ``apt install flite``), a DejaVu font (``fonts-dejavu-core``)
and ``imageio-ffmpeg`` (dev extra) for its ffmpeg binary. Run from the repository root:

    .venv/bin/python scripts/make_demo.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"
FPS = 25
RATE = 16000  # Flite's native rate
SIZE = (640, 360)

VOICES = {
    # character: (profile name, reference voice, reference text, "original actor" voice)
    "Maya": (
        "Maya (flite slt)",
        "slt",
        "Every night I write down the sounds the old house makes.",
        "awb",
    ),
    "Otto": (
        "Otto (flite rms)",
        "rms",
        "There is a good reason for everything. Pipes, wind, mice.",
        "kal16",
    ),
}
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
)


def flite(text: str, voice: str, out: Path, stretch: float = 1.0) -> np.ndarray:
    """Speak ``text`` with a Flite voice; returns mono float32 at `RATE`."""
    cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", text, "-o"]
    subprocess.run([*cmd, str(out)], check=True, capture_output=True)
    audio, rate = sf.read(str(out), dtype="float32")
    if rate != RATE:
        raise SystemExit(f"flite voice {voice} speaks at {rate} Hz, expected {RATE}")
    return audio


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def font() -> str:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    raise SystemExit("No DejaVu font found; apt install fonts-dejavu-core")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEMO)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if shutil.which("flite") is None:
        raise SystemExit("flite is not installed (apt install flite)")

    sys.path.insert(0, str(REPO))
    from dubstudio.core.model import Project, ReferenceClip, VoiceProfile
    from dubstudio.core.projectfile import save_project
    from dubstudio.core.subtitles import cues_to_lines, read_subtitles

    cues = read_subtitles(DEMO / "demo.srt").cues
    end_s = max(c.end_ms for c in cues) / 1000 + 1.0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # Reference clips (about 4 s: short references clone best) with 0.2 s of silence either
        # side, as FLAC (lossless, half the size of WAV).
        for character, (_name, voice, text, _orig) in VOICES.items():
            audio = flite(text, voice, tmp / f"{character}.wav")
            pad = np.zeros(RATE // 5, dtype=np.float32)
            sf.write(out / f"{character.lower()}.flac", np.concatenate([pad, audio, pad]), RATE)

        # The "original dialogue": every cue spoken at its time by another voice, fitted into
        # the cue by Flite's duration stretch.
        track = np.zeros(round(end_s * RATE), dtype=np.float32)
        for n, cue in enumerate(cues):
            orig_voice = VOICES[cue.character.title()][3]
            slot = (cue.end_ms - cue.start_ms) / 1000
            speech = flite(cue.text, orig_voice, tmp / f"cue{n}.wav")
            stretch = min(1.3, max(0.7, 0.92 * slot / (len(speech) / RATE)))
            speech = flite(cue.text, orig_voice, tmp / f"cue{n}.wav", stretch)[: round(slot * RATE)]
            start = round(cue.start_ms / 1000 * RATE)
            track[start : start + len(speech)] += 0.8 * speech
        sf.write(tmp / "original.wav", np.clip(track, -1, 1), RATE)

        fontfile = font()
        text_style = f"fontfile={fontfile}:fontcolor=white:borderw=2:bordercolor=black"
        filters = [
            f"drawtext={text_style}:fontsize=44:x=(w-tw)/2:y=24:"
            f"timecode='00\\:00\\:00\\:00':rate={FPS}",
            f"drawtext={text_style}:fontsize=24:x=(w-tw)/2:y=82:text='frame %{{frame_num}}'",
            f"drawtext={text_style}:fontsize=18:x=12:y=h-30:text='DubStudio demo  {FPS} fps'",
            # A dot that crosses the frame once a second: motion makes dropped frames visible.
            f"drawtext={text_style}:fontsize=28:x=20+(w-60)*mod(t\\,1):y=h-80:text='o'",
        ]
        for cue in cues:
            who = cue.character.upper()
            colour = "0xffb347" if who == "MAYA" else "0x7ec8ff"
            filters.append(
                f"drawtext=fontfile={fontfile}:fontcolor={colour}:borderw=3:bordercolor=black:"
                f"fontsize=64:x=(w-tw)/2:y=(h-th)/2+20:text='{who}':"
                f"enable='between(t,{cue.start_ms / 1000},{cue.end_ms / 1000})'"
            )
        width, height = SIZE
        cmd = [
            ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
            "-f", "lavfi", "-i", f"color=c=0x1d2b3a:s={width}x{height}:r={FPS}:d={end_s}",
            "-i", str(tmp / "original.wav"),
            "-vf", ",".join(filters),
            "-c:v", "libx264", "-preset", "veryslow", "-crf", "30", "-pix_fmt", "yuv420p",
            "-g", str(2 * FPS), "-bf", "0",
            "-c:a", "aac", "-b:a", "40k", "-ac", "1", "-ar", "16000",
            "-movflags", "+faststart", "-shortest", "-map_metadata", "-1",
            "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            str(out / "demo.mp4"),
        ]  # fmt: skip
        subprocess.run(cmd, check=True)

    voices = []
    characters: dict[str, str | None] = {}
    for character, (name, _voice, _text, _orig) in VOICES.items():
        voice_id = f"voice-{character.lower()}"
        clip = ReferenceClip(str(out / f"{character.lower()}.flac"))
        voices.append(VoiceProfile(id=voice_id, name=name, clips=(clip,), language="en"))
        characters[character] = voice_id
    lines, _problems = cues_to_lines(cues, Fraction(FPS))
    for n, line in enumerate(lines):
        line.id = f"line-{n + 1}"  # stable ids keep the file reproducible
    project = Project(
        fps=FPS,
        sample_rate=48000,
        video_path=str(out / "demo.mp4"),
        lines=lines,
        voices=voices,
        characters=characters,
        settings={"model": "default"},
    )
    save_project(project, out / "demo.dubproj")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"demo written to {out} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
