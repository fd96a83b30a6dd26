"""T2S stage 2 pieces: the gradient reversal layer, the re-initialised speaker adversaries, the
cross-speaker emotion prompts and the style-invariance criterion."""

from __future__ import annotations

import torch

from dubstudio.core.model import EMOTION_NAMES
from dubstudio.training.corpus import Utterance
from dubstudio.training.features import Item
from dubstudio.training.recipes import (
    _SpeakerAdversaries,
    _StyleCentroids,
    _T2SData,
    grad_reverse,
)


def test_grad_reverse_is_identity_forward_and_negated_backward() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    y = grad_reverse(x, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))  # type: ignore[arg-type]


def test_adversaries_learn_a_separable_voice_and_restart_on_schedule() -> None:
    torch.manual_seed(0)
    adv = _SpeakerAdversaries(dim=8, n_voices=3, seed=0, period=50, fit_steps=200)
    voice = torch.arange(3).repeat(20)
    vecs = torch.nn.functional.one_hot(voice, 8).float() * 3 + 0.1 * torch.randn(60, 8)
    before = float(adv.loss(vecs, voice).detach())
    adv.fit(vecs, voice)
    trained = float(adv.loss(vecs, voice).detach())
    assert trained < 0.5 * before
    adv.refresh(10)  # inside the period: kept
    assert float(adv.loss(vecs, voice).detach()) == trained
    adv.refresh(50)  # a new period: fresh heads, back near chance (ln 3)
    assert abs(float(adv.loss(vecs, voice).detach()) - torch.log(torch.tensor(3.0))) < 0.6
    assert adv.born == 50


class _Letters:
    """Front-end stand-in: one token per character (the data class only needs ``encode``)."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 50 for c in text]


def _items() -> list[Item]:
    out = []
    for voice in ("a", "b", "c"):
        for style in ("calm", "sad", "happy"):
            for k in range(3):
                utt = Utterance(f"{voice}{style}{k}", voice, style, f"text {k}", "train",
                                "x.wav", 1.0, [("pau", 1.0)], 150 if k == 2 else 0)  # fmt: skip
                out.append(Item(utt, torch.randn(80, 40), torch.zeros(40, dtype=torch.long),
                                torch.zeros(50, dtype=torch.long), torch.randn(256)))  # fmt: skip
    return out


def test_stage2_emotion_prompts_cross_speakers_but_keep_the_style() -> None:
    items = _items()
    data = _T2SData(items, _Letters(), seed=0)  # type: ignore[arg-type]
    # Timbre-shifted copies are their own pseudo-speakers, but the adversaries' labels are the
    # real voices.
    assert len(data.by_voice) == 6 and data.real_voices == ["a", "b", "c"]
    crossed = 0
    for _ in range(30):
        picks = [data.rng.randrange(len(items)) for _ in range(6)]
        _, emo_idx = data.prompts(picks, cross_speaker=True)
        for i, j in zip(picks, emo_idx, strict=True):
            assert items[j].utt.style == items[i].utt.style
            crossed += items[j].utt.voice != items[i].utt.voice
        _, same_idx = data.prompts(picks)
        assert all(data.group(i) == data.group(j) for i, j in zip(picks, same_idx, strict=True))
    assert crossed > 60  # about two thirds of 180 prompts come from another voice
    b = data.batch(8, cross_speaker=True)
    assert set(b["style"].tolist()) <= {EMOTION_NAMES.index(s) for s in ("calm", "sad", "happy")}
    assert b["voice"].max() < 3


def test_style_invariance_is_low_only_when_vectors_tell_the_style_not_the_voice() -> None:
    torch.manual_seed(0)
    style = torch.arange(4).repeat(16)  # (64,)
    voice = torch.arange(64) % 8
    style_dirs, voice_dirs = torch.randn(4, 16) * 3, torch.randn(8, 16) * 3

    def spread(vecs: torch.Tensor) -> float:
        crit = _StyleCentroids(16, 4, momentum=0.0)  # means = this batch's
        return float(crit.loss(vecs, style))

    noise = 0.05 * torch.randn(64, 16)
    styled = style_dirs[style] + noise
    voiced = style_dirs[style] + voice_dirs[voice] + noise
    assert spread(styled) < 0.01 < 0.2 < spread(voiced)
    # Scaling every vector changes nothing: the encoder cannot lower it by shrinking them.
    assert abs(spread(voiced * 0.01) - spread(voiced)) < 1e-3
    # Its gradient pulls each vector towards its style's mean.
    x = voiced.clone().requires_grad_(True)
    crit = _StyleCentroids(16, 4, momentum=0.0)
    crit.loss(x, style).backward()
    assert x.grad is not None
    moved = x.detach() - 10.0 * x.grad
    assert spread(moved) < spread(voiced)
    # One style seen so far: nothing to compare with, no gradient.
    one = _StyleCentroids(16, 4).loss(x[style == 0], style[style == 0])
    assert float(one.detach()) == 0.0


def test_reversal_stops_at_chance() -> None:
    """A head already at or beyond chance passes no gradient back: the encoder removes the voice
    rather than making the heads confidently wrong."""
    torch.manual_seed(0)
    adv = _SpeakerAdversaries(dim=8, n_voices=3, seed=0, fit_steps=200)
    voice = torch.arange(3).repeat(20)
    vecs = torch.nn.functional.one_hot(voice, 8).float() * 3 + 0.1 * torch.randn(60, 8)
    adv.fit(vecs, voice)  # well below chance now
    x = vecs.clone().requires_grad_(True)
    adv.reversed_loss(grad_reverse(x, 1.0), voice).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    wrong = (voice + 1) % 3  # labels the heads get confidently wrong: far above ln 3
    x = vecs.clone().requires_grad_(True)
    loss = adv.reversed_loss(grad_reverse(x, 1.0), wrong)
    assert float(loss.detach()) > adv.chance and not loss.requires_grad
    # Layer-normalised heads: scaling the vectors up changes nothing they predict.
    assert torch.allclose(adv.loss(vecs * 50, voice), adv.loss(vecs, voice), atol=1e-3)
