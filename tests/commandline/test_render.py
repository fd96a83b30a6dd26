"""`dubstudio render` end to end with the real tiny engine: subtitles + one voice, projects,
re-runs from the cache, recipes, and a render killed with SIGKILL that continues correctly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dubstudio.core.projectfile import load_project, save_project
from dubstudio.services.wavio import read_bext

REPO = Path(__file__).resolve().parents[2]


def _write_voice(path: Path, pitch: float = 170.0) -> Path:
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6))
    sf.write(path, (0.2 * tone * 0.5 * (1 - np.cos(2 * np.pi * 3 * t))).astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dubstudio.engine.bundles import create_tiny_bundle

    # The "fast" tiny kind (real classes, tiny HiFi-GAN): these tests render many lines.
    return create_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny", kind="fast")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def _render(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "dubstudio.cli", "render", *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


SRT = """1
00:00:00,200 --> 00:00:01,000
ANN: Hello there.

2
00:00:01,200 --> 00:00:01,800
<i>Who</i> is it?

3
00:00:02,000 --> 00:00:02,960
BOB: Only me.
"""


def test_subtitles_plus_one_voice_renders_and_exports(tmp_path: Path, bundle: Path) -> None:
    srt = tmp_path / "dub.srt"
    srt.write_text(SRT, encoding="utf-8")
    voice = _write_voice(tmp_path / "me.wav")
    out = tmp_path / "out"
    common = [srt, "--voice", voice, "--model", bundle, "--device", "cpu", "--fps", "25"]
    common += ["--sample-rate", "22050", "--cache", tmp_path / "cache", "--json"]
    first = json.loads(
        _render(
            *common,
            "--out",
            out / "mix.wav",
            "--stems",
            out / "stems",
            "--clips",
            out / "clips",
            "--recipe",
            out / "recipe.json",
            "--subtitles-out",
            out / "dub.ass",
            "--start-timecode",
            "10:00:00:00",
            "--emotion",
            "happy=0.7",
        ).stdout
    )
    assert (first["lines"], first["rendered"], first["cached"], first["failed"]) == (3, 3, 0, 0)
    mix, rate = sf.read(out / "mix.wav")
    assert rate == 22050 and sf.info(out / "mix.wav").subtype == "PCM_24"
    assert len(mix) == first["mix"]["samples"] == 74 * 22050 // 25  # last cue ends at frame 74
    for row in first["per_line"]:
        assert row["rendered_samples"] == row["budget_samples"] > 0
    bext = read_bext(out / "mix.wav")
    assert bext is not None and bext.time_reference == 10 * 3600 * 22050
    clips = sorted(p.name for p in (out / "clips").iterdir())
    assert clips == ["0001_00-00-00-05_Ann.wav", "0002_00-00-01-05.wav", "0003_00-00-02-00_Bob.wav"]
    clip_bext = read_bext(out / "clips" / clips[2])
    assert clip_bext is not None
    assert clip_bext.time_reference == 10 * 3600 * 22050 + first["per_line"][2]["start_sample"]
    stems = sorted(p.name for p in (out / "stems").iterdir())
    assert stems == ["Ann.wav", "Bob.wav", "unassigned.wav"]
    assert "Dialogue:" in (out / "dub.ass").read_text()
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["lines"][0]["emotion"]["vector"][0] == 0.7
    assert all(line["take"]["sha256"] for line in recipe["lines"])

    # Same command again: nothing is rendered, everything comes from the cache.
    again = json.loads(_render(*common, "--emotion", "happy=0.7").stdout)
    assert (again["rendered"], again["cached"]) == (0, 3)
    assert again["model"]["loaded"] is False  # nothing to render: the weights never load

    # The recipe re-creates the same audio into a cold cache.
    remade = json.loads(
        _render(
            out / "recipe.json",
            "--model",
            bundle,
            "--device",
            "cpu",
            "--json",
            "--cache",
            tmp_path / "cold",
            "--out",
            tmp_path / "remade.wav",
        ).stdout
    )
    assert remade["rendered"] == 3
    np.testing.assert_array_equal(sf.read(tmp_path / "remade.wav")[0], mix)


def _project(folder: Path, n_lines: int) -> Path:
    from dubstudio.core.model import Line, Project, ReferenceClip, VoiceProfile

    _write_voice(folder / "ann.wav")
    _write_voice(folder / "bob.wav", pitch=110.0)
    voices = [
        VoiceProfile(id="ann", name="Ann", clips=(ReferenceClip(str(folder / "ann.wav")),)),
        VoiceProfile(id="bob", name="Bob", clips=(ReferenceClip(str(folder / "bob.wav")),)),
    ]
    words = ["Hello there", "Who is it", "Only me", "Come in then", "Lovely day", "Indeed it is"]
    lines = [
        Line(
            text=f"{words[i % len(words)]}, number {i}.",
            start_frame=10 + 30 * i,
            end_frame=35 + 30 * i,
            character="Ann" if i % 2 == 0 else "Bob",
        )
        for i in range(n_lines)
    ]
    project = Project(
        fps="30000/1001",
        sample_rate=22050,
        lines=lines,
        voices=voices,
        characters={"Ann": "ann", "Bob": "bob"},
    )
    return save_project(project, folder / "show.dubproj")


def _complete_entries(cache_dir: Path) -> int:
    return len(list((cache_dir / "objects").glob("*/*.json"))) if cache_dir.exists() else 0


@pytest.mark.slow
def test_sigkill_mid_render_leaves_project_and_cache_that_continue(
    tmp_path: Path, bundle: Path
) -> None:
    n_lines = 12
    path = _project(tmp_path, n_lines)
    cache_dir = tmp_path / ".dubstudio-cache"
    cmd = [sys.executable, "-m", "dubstudio.cli", "render", str(path), "--model", str(bundle)]
    cmd += ["--device", "cpu", "--json"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while _complete_entries(cache_dir) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline, "render made no progress"
            time.sleep(0.02)
        if proc.poll() is not None:
            pytest.fail(f"render ended before it could be killed: {proc.communicate()[1]!r}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    survived = _complete_entries(cache_dir)
    assert 3 <= survived < n_lines

    # The project still opens; any takes it recorded point at complete cache entries.
    project = load_project(path)
    from dubstudio.services.cache import RenderCache

    cache = RenderCache(cache_dir)
    for line in project.lines:
        if line.active_take is not None:
            assert cache.get(line.active_take.cache_key, verify=True) is not None

    # Running again continues: finished lines are cache hits, only the rest is rendered.
    result = _render(
        path, "--model", bundle, "--device", "cpu", "--json", "--out", tmp_path / "mix.wav"
    )
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["failed"] == 0
    assert summary["cached"] + summary["rendered"] + _already_current(summary) == n_lines
    assert summary["rendered"] <= n_lines - survived
    final = load_project(path)
    for line in final.lines:
        take = line.active_take
        assert take is not None and take.n_samples == final.line_budget(line).slot_samples
        entry = cache.get(take.cache_key, verify=True)
        assert entry is not None and entry.samples == take.n_samples
    assert len(sf.read(tmp_path / "mix.wav")[0]) == summary["mix"]["samples"]
    # A write the kill interrupted leaves at most a temp file, which is never an entry.
    leftovers = list((cache_dir / "objects").glob("*/.*.tmp"))
    assert all(p.stem not in cache for p in leftovers)
    cache.scrub(min_age_s=0)
    assert not list((cache_dir / "objects").glob("*/.*.tmp"))
    assert len(cache.keys()) == n_lines


def _already_current(summary: dict[str, Any]) -> int:
    return sum(1 for row in summary["per_line"] if row["status"] == "current")


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_the_cache(tmp_path: Path, bundle: Path) -> None:
    n_lines = 12
    path = _project(tmp_path, n_lines)
    cache_dir = tmp_path / ".dubstudio-cache"
    cmd = [sys.executable, "-m", "dubstudio.cli", "render", str(path), "--model", str(bundle)]
    cmd += ["--device", "cpu", "--json", "--out", str(tmp_path / "mix.wav")]
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    try:
        while _complete_entries(cache_dir) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "render made no progress"
            time.sleep(0.02)
        if proc.poll() is not None:
            pytest.fail(f"render ended before Ctrl-C: {proc.communicate()[1]!r}")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True and summary["files"] == []
    assert not (tmp_path / "mix.wav").exists()  # no half-finished export
    cached = _complete_entries(cache_dir)
    assert 2 <= cached < n_lines
    # The project was saved with a take for every line that finished.
    project = load_project(path)
    with_takes = [line for line in project.lines if line.active_take is not None]
    assert len(with_takes) == summary["rendered"] >= 2
