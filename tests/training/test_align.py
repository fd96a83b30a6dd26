"""Forced alignment of untimed utterances: the Viterbi pass on constructed posteriors, and the
bundled tokenizer aligning real Flite speech against Flite's own phone timings."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dubstudio.training.align import phone_sequence, viterbi_align


def _posteriors(spans: list[tuple[int, int]], classes: int = 6, sharp: float = 4.0) -> np.ndarray:
    """(P, F) log-probabilities peaked on class c over each (class, frames) span."""
    frames = sum(n for _, n in spans)
    logits = np.zeros((classes, frames))
    f = 0
    for c, n in spans:
        logits[c, f : f + n] = sharp
        f += n
    return logits - np.log(np.exp(logits).sum(0, keepdims=True))


def test_viterbi_recovers_a_known_segmentation() -> None:
    spans = [(0, 5), (3, 4), (1, 7), (2, 2), (4, 6), (0, 3)]
    ends = viterbi_align(_posteriors(spans), [c for c, _ in spans])
    assert ends == list(np.cumsum([n for _, n in spans]))


def test_viterbi_keeps_repeated_phones_apart_and_every_phone_nonempty() -> None:
    # The same class twice in a row (e.g. "l l" across a word boundary) with no evidence of
    # the boundary still gets both phones at least one frame.
    spans = [(0, 2), (1, 6), (0, 2)]
    ends = viterbi_align(_posteriors(spans), [0, 1, 1, 0])
    starts = [0, *ends[:-1]]
    assert all(e > a for a, e in zip(starts[1:3], ends[1:3], strict=True))
    assert ends[-1] == 10


def test_viterbi_lets_the_edge_pauses_be_empty() -> None:
    spans = [(3, 4), (1, 5)]  # no leading or trailing silence in the audio
    ends = viterbi_align(_posteriors(spans), [0, 3, 1, 0])
    assert ends == [0, 4, 9, 9]


def test_viterbi_rejects_too_few_frames() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        viterbi_align(np.zeros((4, 2)), [0, 1, 2, 3, 1, 0])


def test_phone_sequence_is_the_lexicon_reading_between_pauses() -> None:
    from dubstudio.training.workflow import front_end

    seq = phone_sequence(front_end(), "The red box.")
    assert seq[0] == seq[-1] == "pau"
    assert seq[1:-1] == ["dh", "ah", "r", "eh", "d", "b", "aa", "k", "s"]


@pytest.mark.skipif(shutil.which("flite") is None, reason="needs Debian flite")
def test_bundled_tokenizer_aligns_flite_speech_close_to_flites_timings(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.small import build_modules
    from dubstudio.training.align import align_utterance
    from dubstudio.training.corpus import STYLES, synthesize
    from dubstudio.training.workflow import front_end

    bundle = load_bundle("default")
    reference = build_modules(bundle.config)["reference"]
    reference.load_state_dict(load_file(str(bundle.root / "reference.safetensors")))
    text = "The quiet child painted the wooden chair behind the barn."
    audio, truth = synthesize(text, "rms", STYLES["sad"], tmp_path / "rms.wav")  # held-out voice
    got = align_utterance(reference.tokenizer, front_end(), audio, 16000, text)
    # Same phones in the same order (the lexicon's schwa resolved to Flite's ``ax``) ...
    truth_words = [p for p, _ in truth if p != "pau"]
    got_words = [p for p, _ in got if p != "pau"]
    assert len(got_words) == len(truth_words)
    agree = np.mean([a == b for a, b in zip(got_words, truth_words, strict=True)])
    assert agree >= 0.9
    # ... and boundaries within a few frames of Flite's own (median over the sentence).
    t_truth = np.array([e for p, e in truth if p != "pau"])
    t_got = np.array([e for p, e in got if p != "pau"])
    assert float(np.median(np.abs(t_truth - t_got))) < 0.025
    assert got[-1][1] == pytest.approx(len(audio) / 16000, abs=0.02)
