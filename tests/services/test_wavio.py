"""Tests of the streaming WAV writer and its Broadcast Wave `bext` chunk."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubstudio.core.errors import ExportError
from dubstudio.services.wavio import BextInfo, WavWriter, read_bext, read_chunks


@pytest.mark.parametrize(
    ("subtype", "tolerance"),
    [("PCM_16", 2.0**-15), ("PCM_24", 2.0**-23), ("PCM_32", 2.0**-31), ("FLOAT", 1e-7)],
)
def test_blocks_read_back_by_libsndfile(tmp_path: Path, subtype: str, tolerance: float) -> None:
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.99, 0.99, 4097)
    path = tmp_path / "out.wav"
    with WavWriter(path, 44100, subtype) as writer:
        for start in range(0, len(audio), 1000):
            writer.write(audio[start : start + 1000])
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 1, 4097, subtype)
    back, _ = sf.read(path, dtype="float64")
    assert np.max(np.abs(back - audio)) <= tolerance


def test_integer_formats_clip_at_full_scale(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    with WavWriter(path, 48000, "PCM_24") as writer:
        writer.write(np.array([2.0, -2.0, 0.5]))
    back, _ = sf.read(path, dtype="int32")
    assert back[0] == (2**23 - 1) << 8 and back[1] == -(2**23) << 8


def test_bext_time_reference_parses_back(tmp_path: Path) -> None:
    # 30 hours at 48 kHz is past 2^32 samples, so the high word of TimeReference is used.
    reference = 48000 * 3600 * 30 + 7
    path = tmp_path / "bwf.wav"
    bext = BextInfo(time_reference=reference, description="mix", coding_history="A=PCM")
    with WavWriter(path, 48000, "PCM_24", bext=bext) as writer:
        writer.write(np.zeros(10))
    chunks = read_chunks(path)
    assert list(chunks)[:3] == ["bext", "fmt ", "data"]
    payload = chunks["bext"]
    low, high = struct.unpack_from("<II", payload, 338)
    assert low + (high << 32) == reference
    parsed = read_bext(path)
    assert parsed is not None
    assert parsed.time_reference == reference
    assert parsed.description == "mix" and parsed.originator == "DubStudio"
    assert parsed.coding_history == "A=PCM"
    assert sf.info(path).frames == 10  # libsndfile still reads the audio


def test_plain_wav_has_no_bext(tmp_path: Path) -> None:
    path = tmp_path / "plain.wav"
    with WavWriter(path, 48000) as writer:
        writer.write(np.zeros(3))
    assert read_bext(path) is None


def test_error_inside_writer_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "never.wav"
    with pytest.raises(RuntimeError), WavWriter(path, 48000) as writer:
        writer.write(np.zeros(100))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_unknown_subtype_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="PCM_8"):
        WavWriter(tmp_path / "x.wav", 48000, "PCM_8")
