"""Out-of-template check of the text-to-emotion head on hand-written descriptions.

The T2E head is distilled from descriptions composed of a fixed cue table
(`dubstudio.training.descriptions`), so its own held-out split shares phrasing with the
training split. This probe scores it on ``resources/data/emotion_descriptions_probe.jsonl``:
free-form descriptions written separately, sharing no cue phrase, each labelled with the one
emotion it describes.

Dimensions: B descriptions, 8 emotions (`EMOTION_NAMES` order).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dubstudio.core.model import EMOTION_NAMES

log = logging.getLogger(__name__)

PROBE_FILE = Path(__file__).resolve().parents[2] / "resources/data/emotion_descriptions_probe.jsonl"


@dataclass
class ProbeResult:
    """Top-1 / top-2 agreement overall and per emotion, plus the confusion counts."""

    top1: float
    top2: float
    per_emotion: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    n: int = 0


def read_probe(path: str | Path = PROBE_FILE) -> list[tuple[str, str]]:
    """(description, emotion name) pairs from a JSON-lines probe file."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            if d["emotion"] not in EMOTION_NAMES:
                raise ValueError(f"Unknown emotion {d['emotion']!r} in {path}.")
            out.append((str(d["text"]), str(d["emotion"])))
    return out


def score(
    predict: Callable[[str], Sequence[float]], items: Sequence[tuple[str, str]]
) -> ProbeResult:
    """Score ``predict`` (description -> eight weights) against single-emotion labels."""
    if not items:
        raise ValueError("The probe set is empty.")
    hits1 = hits2 = 0
    per: dict[str, list[int]] = {}
    confusion: dict[str, dict[str, int]] = {n: {} for n in EMOTION_NAMES}
    for text, name in items:
        weights = list(predict(text))
        order = sorted(range(len(weights)), key=lambda i: -weights[i])
        best = EMOTION_NAMES[order[0]]
        want = EMOTION_NAMES.index(name)
        hit = int(order[0] == want)
        hits1 += hit
        hits2 += int(want in order[:2])
        per.setdefault(name, []).append(hit)
        confusion[name][best] = confusion[name].get(best, 0) + 1
    return ProbeResult(
        top1=hits1 / len(items),
        top2=hits2 / len(items),
        per_emotion={k: sum(v) / len(v) for k, v in per.items()},
        confusion={k: v for k, v in confusion.items() if v},
        n=len(items),
    )


def format_probe(res: ProbeResult) -> str:
    """A markdown table of a `ProbeResult`."""
    lines = [
        f"T2E on {res.n} free-form descriptions outside the training templates: "
        f"top-1 {res.top1:.2f}, top-2 {res.top2:.2f} (chance top-1 {1 / 8:.3f}).",
        "",
        "| emotion | top-1 | most often predicted as |",
        "|---|---|---|",
    ]
    for name in EMOTION_NAMES:
        if name in res.per_emotion:
            conf = res.confusion.get(name, {})
            top = ", ".join(f"{k} {v}" for k, v in sorted(conf.items(), key=lambda kv: -kv[1]))
            lines.append(f"| {name} | {res.per_emotion[name]:.2f} | {top} |")
    return "\n".join(lines)
