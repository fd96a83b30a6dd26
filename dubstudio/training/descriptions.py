"""Project-written emotion descriptions with soft labels (the T2E distillation data).

The official model distils a large LLM's readings of emotion descriptions into a small one; here
the "teacher" is this hand-written table: for each emotion a set of cue phrases, each with the
emotions it also suggests, composed with intensity adverbs and delivery frames. `generate`
writes the JSON lines shipped as ``resources/data/emotion_descriptions.jsonl`` (CC0).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# cue phrase -> soft labels (before the intensity mix). Written for DubStudio.
CUES: dict[str, list[tuple[str, dict[str, float]]]] = {
    "happy": [
        ("happy", {"happy": 1.0}),
        ("cheerful", {"happy": 1.0}),
        ("delighted", {"happy": 0.85, "surprised": 0.15}),
        ("overjoyed", {"happy": 0.9, "surprised": 0.1}),
        ("beaming with pride", {"happy": 1.0}),
        ("laughing", {"happy": 1.0}),
        ("giddy with excitement", {"happy": 0.8, "surprised": 0.2}),
        ("warm and friendly", {"happy": 0.7, "calm": 0.3}),
        ("relieved and glad", {"happy": 0.7, "calm": 0.3}),
        ("playful", {"happy": 0.9, "surprised": 0.1}),
    ],
    "angry": [
        ("angry", {"angry": 1.0}),
        ("furious", {"angry": 1.0}),
        ("quietly furious", {"angry": 0.8, "disgusted": 0.2}),
        ("shouting in rage", {"angry": 1.0}),
        ("irritated", {"angry": 0.8, "disgusted": 0.2}),
        ("fed up", {"angry": 0.6, "disgusted": 0.2, "melancholic": 0.2}),
        ("seething", {"angry": 0.9, "disgusted": 0.1}),
        ("bitter and hostile", {"angry": 0.7, "disgusted": 0.3}),
        ("losing their temper", {"angry": 1.0}),
        ("snapping impatiently", {"angry": 0.9, "surprised": 0.1}),
    ],
    "sad": [
        ("sad", {"sad": 1.0}),
        ("heartbroken", {"sad": 0.9, "melancholic": 0.1}),
        ("crying", {"sad": 1.0}),
        ("grieving", {"sad": 0.8, "melancholic": 0.2}),
        ("on the verge of tears", {"sad": 0.8, "afraid": 0.2}),
        ("sobbing", {"sad": 1.0}),
        ("devastated", {"sad": 0.9, "surprised": 0.1}),
        ("hurt and disappointed", {"sad": 0.7, "angry": 0.1, "melancholic": 0.2}),
        ("mournful", {"sad": 0.6, "melancholic": 0.4}),
        ("lonely", {"sad": 0.5, "melancholic": 0.5}),
    ],
    "afraid": [
        ("afraid", {"afraid": 1.0}),
        ("trembling with fear", {"afraid": 1.0}),
        ("terrified", {"afraid": 0.9, "surprised": 0.1}),
        ("nervous", {"afraid": 0.8, "calm": 0.2}),
        ("panicking", {"afraid": 0.9, "surprised": 0.1}),
        ("anxious and worried", {"afraid": 0.8, "sad": 0.2}),
        ("whispering in dread", {"afraid": 0.9, "melancholic": 0.1}),
        ("scared out of their wits", {"afraid": 1.0}),
        ("uneasy", {"afraid": 0.7, "calm": 0.3}),
        ("frightened", {"afraid": 1.0}),
    ],
    "disgusted": [
        ("disgusted", {"disgusted": 1.0}),
        ("revolted", {"disgusted": 1.0}),
        ("sneering with contempt", {"disgusted": 0.8, "angry": 0.2}),
        ("grossed out", {"disgusted": 0.9, "surprised": 0.1}),
        ("repulsed", {"disgusted": 1.0}),
        ("scornful", {"disgusted": 0.7, "angry": 0.3}),
        ("nauseated", {"disgusted": 1.0}),
        ("full of distaste", {"disgusted": 1.0}),
        ("appalled", {"disgusted": 0.6, "surprised": 0.2, "angry": 0.2}),
        ("sickened", {"disgusted": 0.9, "sad": 0.1}),
    ],
    "melancholic": [
        ("melancholic", {"melancholic": 1.0}),
        ("gloomy", {"melancholic": 0.9, "sad": 0.1}),
        ("wistful", {"melancholic": 0.8, "calm": 0.2}),
        ("downcast", {"melancholic": 0.7, "sad": 0.3}),
        ("tired and low", {"melancholic": 0.9, "calm": 0.1}),
        ("nostalgic", {"melancholic": 0.7, "happy": 0.1, "calm": 0.2}),
        ("listless", {"melancholic": 0.9, "calm": 0.1}),
        ("resigned", {"melancholic": 0.8, "sad": 0.2}),
        ("depressed", {"melancholic": 0.8, "sad": 0.2}),
        ("brooding", {"melancholic": 0.8, "angry": 0.2}),
    ],
    "surprised": [
        ("surprised", {"surprised": 1.0}),
        ("astonished", {"surprised": 1.0}),
        ("amazed", {"surprised": 0.8, "happy": 0.2}),
        ("shocked", {"surprised": 0.8, "afraid": 0.2}),
        ("caught off guard", {"surprised": 0.9, "afraid": 0.1}),
        ("stunned", {"surprised": 1.0}),
        ("in disbelief", {"surprised": 0.8, "sad": 0.1, "angry": 0.1}),
        ("gasping", {"surprised": 0.8, "afraid": 0.2}),
        ("startled", {"surprised": 0.7, "afraid": 0.3}),
        ("pleasantly surprised", {"surprised": 0.6, "happy": 0.4}),
    ],
    "calm": [
        ("calm", {"calm": 1.0}),
        ("neutral", {"calm": 1.0}),
        ("relaxed", {"calm": 0.9, "happy": 0.1}),
        ("matter-of-fact", {"calm": 1.0}),
        ("composed", {"calm": 1.0}),
        ("even-toned", {"calm": 1.0}),
        ("reading the news", {"calm": 1.0}),
        ("patient and gentle", {"calm": 0.8, "happy": 0.2}),
        ("soothing", {"calm": 0.9, "happy": 0.1}),
        ("businesslike", {"calm": 1.0}),
    ],
}

# (template, intensity): intensity < 1 blends toward calm.
FRAMES: list[tuple[str, float]] = [
    ("{cue}", 1.0),
    ("very {cue}", 1.0),
    ("slightly {cue}", 0.5),
    ("a little {cue}", 0.5),
    ("speaks as if {cue}", 0.9),
    ("sounds {cue}", 0.9),
    ("she is {cue}", 1.0),
    ("he says it {cue}", 0.9),
    ("somewhat {cue}", 0.6),
    ("extremely {cue}", 1.0),
]


def generate(seed: int = 7, per_emotion: int = 60) -> list[dict[str, object]]:
    """Descriptions with soft labels (``per_emotion`` per emotion, deterministic)."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    for _emotion, cues in CUES.items():
        combos = [(c, f) for c in cues for f in FRAMES]
        rng.shuffle(combos)
        for (cue, labels), (frame, intensity) in combos[:per_emotion]:
            text = frame.format(cue=cue)
            if text in seen:
                continue
            seen.add(text)
            mixed = {k: v * intensity for k, v in labels.items()}
            mixed["calm"] = mixed.get("calm", 0.0) + (1.0 - intensity)
            out.append({"text": text, "labels": {k: round(v, 3) for k, v in mixed.items()}})
    return out


def write(path: str | Path) -> Path:
    """Write `generate()` as JSON lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(d, sort_keys=True) for d in generate()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
