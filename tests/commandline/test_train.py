"""`dubstudio train all` end to end on a tiny corpus: every stage, the trainers side by side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_train_all_writes_a_verified_bundle(tmp_path: Path) -> None:
    from dubstudio.engine.bundles import load_bundle, verify_bundle
    from dubstudio.training.corpus import UNTIMED_VOICES, read_metadata

    data, runs, out = tmp_path / "data", tmp_path / "runs", tmp_path / "bundle"
    cmd = [sys.executable, "-m", "dubstudio.cli", "train", "all", "--size", "tiny",
           "--sentences", "2", "--test-sentences", "1", "--steps", "3", "--minutes", "2",
           "--tokenizer-minutes", "1", "--data", str(data), "--runs", str(runs),
           "--out", str(out), "--name", "tiny-all"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # 2 sentences x 9 voices x (calm + 1 style) + 1 sentence x 10 voices x 8 styles.
    utts = read_metadata(data / "corpus")
    assert len(utts) == 2 * 9 * 2 + 10 * 8
    # RHVoice and Pico give no timings: every utterance of theirs was aligned, to its end.
    assert all(u.phones for u in utts)
    aligned = [u for u in utts if u.voice in UNTIMED_VOICES]
    assert len(aligned) == 2 * 5 * 2 + 5 * 8
    assert all(abs(u.phones[-1][1] - u.duration) < 0.03 for u in aligned)
    for name in ("t2s", "s2m"):
        steps = [json.loads(x)["step"] for x in (runs / f"{name}.log").read_text().splitlines()]
        assert steps[-1] == 3
    # The tokenizer trains twice: before the alignment, then on every voice beside the others.
    steps = [json.loads(x)["step"] for x in (runs / "tokenizer.log").read_text().splitlines()]
    assert steps[-1] == 6
    bundle = load_bundle(out)
    assert bundle.name == "tiny-all" and verify_bundle(bundle).ok
    assert "tokenizer, t2s, s2m: done" in proc.stdout
    assert "align: done" in proc.stdout
