"""Tests of the streaming mixdown: exact placement, overlaps, gain, stems, clipping report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubstudio.core.errors import ExportError, RenderCancelled
from dubstudio.services.mixdown import Placement, mixdown, open_sink, soft_limit


def _tone(n: int, value: float) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


def _placements() -> list[Placement]:
    a = _tone(300, 0.25)
    b = _tone(200, 0.125)
    c = np.linspace(-0.5, 0.5, 150, dtype=np.float32)
    return [
        Placement(1000, 200, lambda: b, gain=2.0, stem="Bob", label="#2"),
        Placement(7, 300, lambda: a, stem="Ann", label="#1"),
        Placement(1100, 150, lambda: c, stem="Ann", label="#3"),  # overlaps #2
    ]


def _expected(total: int) -> dict[str, np.ndarray]:
    ann = np.zeros(total)
    bob = np.zeros(total)
    ann[7:307] += 0.25
    bob[1000:1200] += 0.25
    ann[1100:1250] += np.linspace(-0.5, 0.5, 150, dtype=np.float32)
    return {"Ann": ann, "Bob": bob, "mix": ann + bob}


@pytest.mark.parametrize("block_size", [64, 100, 4096])
def test_exact_placement_and_stems_sum_to_mix(tmp_path: Path, block_size: int) -> None:
    total = 1500
    report = mixdown(
        _placements(),
        total,
        48000,
        open_sink(tmp_path / "mix.wav", 48000, float_output=True),
        {
            name: open_sink(tmp_path / f"{name}.wav", 48000, float_output=True)
            for name in ("Ann", "Bob")
        },
        block_size=block_size,
    )
    expected = _expected(total)
    mix, rate = sf.read(tmp_path / "mix.wav", dtype="float64")
    assert rate == 48000 and len(mix) == total
    np.testing.assert_allclose(mix, expected["mix"], atol=1e-7)
    assert mix[6] == 0.0 and mix[7] == 0.25 and mix[307] == 0.0  # exact first/last sample
    stems = {n: sf.read(tmp_path / f"{n}.wav", dtype="float64")[0] for n in ("Ann", "Bob")}
    for name, stem in stems.items():
        assert len(stem) == total
        np.testing.assert_allclose(stem, expected[name], atol=1e-7)
    np.testing.assert_allclose(stems["Ann"] + stems["Bob"], mix, atol=1e-7)
    assert report.clipped_samples == 0
    assert report.peak == pytest.approx(np.max(np.abs(expected["mix"])), abs=1e-6)


def test_24_bit_default_and_flac(tmp_path: Path) -> None:
    for name in ("mix.wav", "mix.flac"):
        mixdown(_placements(), 1500, 44100, open_sink(tmp_path / name, 44100), None)
        info = sf.info(tmp_path / name)
        assert (info.subtype, info.frames, info.samplerate) == ("PCM_24", 1500, 44100)
        back = sf.read(tmp_path / name)[0]
        np.testing.assert_allclose(back, _expected(1500)["mix"], atol=2.0**-22)


def test_takes_past_the_end_are_cut_and_silence_elsewhere(tmp_path: Path) -> None:
    report = mixdown(_placements(), 1050, 48000, open_sink(tmp_path / "m.wav", 48000), None)
    mix = sf.read(tmp_path / "m.wav")[0]
    assert len(mix) == report.samples == 1050
    assert np.all(mix[307:1000] == 0.0)


def test_clipping_is_reported_not_hidden(tmp_path: Path) -> None:
    loud = _tone(100, 0.8)
    placements = [
        Placement(0, 100, lambda: loud, label="#1"),
        Placement(50, 100, lambda: loud, label="#2"),
        Placement(500, 100, lambda: loud, label="#3"),
    ]
    report = mixdown(placements, 600, 48000, open_sink(tmp_path / "m.wav", 48000), None)
    assert report.clipped_samples == 50
    assert report.peak == pytest.approx(1.6, abs=1e-6)
    assert set(report.clipped_lines) >= {"#1", "#2"}
    limited = mixdown(
        placements,
        600,
        48000,
        open_sink(tmp_path / "l.wav", 48000, float_output=True),
        None,
        soft_limiter=True,
    )
    assert limited.clipped_samples == 50  # still reported
    back = sf.read(tmp_path / "l.wav")[0]
    assert np.max(np.abs(back)) < 1.0 and back[75] > 0.95


def test_soft_limit_leaves_quiet_samples_alone() -> None:
    block = np.array([0.1, -0.5, 0.95, -3.0])
    soft_limit(block)
    assert block[0] == 0.1 and block[1] == -0.5
    assert 0.891 < block[2] < 1.0 and -1.0 <= block[3] < -0.99


def test_wrong_take_length_names_the_line(tmp_path: Path) -> None:
    bad = Placement(0, 10, lambda: np.zeros(9, np.float32), label="#4 00:00:01:00")
    with pytest.raises(ExportError, match="#4"):
        mixdown([bad], 100, 48000, open_sink(tmp_path / "m.wav", 48000), None)
    assert not (tmp_path / "m.wav").exists()


def test_stop_aborts_without_files(tmp_path: Path) -> None:
    with pytest.raises(RenderCancelled):
        mixdown(
            _placements(),
            1500,
            48000,
            open_sink(tmp_path / "m.wav", 48000),
            None,
            block_size=100,
            should_stop=lambda: True,
        )
    assert list(tmp_path.iterdir()) == []


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"\.mp3"):
        open_sink(tmp_path / "x.mp3", 48000)
