"""Decoding on a tiny random UnifiedVoice: exact lengths, determinism, cancellation, KV cache."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

import pytest
import torch

from dubstudio.core.errors import RenderCancelled, ValidationError
from dubstudio.engine.t2s import DecodeParams, T2SConfig, UnifiedVoice, fit_target


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny per-step ops: with 2 shared cores, one thread is several times faster than two.
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def model() -> UnifiedVoice:
    torch.manual_seed(0)
    return UnifiedVoice.from_config(T2SConfig.tiny())


@pytest.fixture(scope="module")
def voice(model: UnifiedVoice) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(1, 30, model.config.cond_input_dim, generator=g)
    return model.speaker_latents(feats), model.emotion_vector(feats)


def _texts(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 20, (n,), generator=g).tolist()
    return [torch.randint(2, 60, (n_i,), generator=g) for n_i in lengths]


def _exact_lengths(lines: int, batch: int) -> None:
    torch.manual_seed(2)
    # One narrow layer keeps thousands of lines of up to 600 tokens cheap; a stop-favouring
    # head makes the test adversarial (unmasked, most lines would stop within a few tokens).
    model = UnifiedVoice.from_config(
        dataclasses.replace(T2SConfig.tiny(), layers=1, model_dim=16, heads=1)
    )
    with torch.no_grad():
        model.mel_head.bias[model.config.stop_mel_token] = 3.0
    feats = torch.randn(1, 30, model.config.cond_input_dim)
    lat, emo = model.speaker_latents(feats), model.emotion_vector(feats)
    rng = random.Random(lines)
    checked = 0
    for index in range(lines // batch):
        budgets = [rng.randint(1, 600) for _ in range(batch)]
        if index == 0:
            budgets[:3] = [1, 600, model.config.max_budget]
        codes = model.generate(
            lat,
            emo,
            _texts(batch, index),
            budgets=budgets,
            mode="exact",
            params=DecodeParams.sampling(),
            generator=torch.Generator().manual_seed(index),
        )
        assert [c.numel() for c in codes] == budgets
        for c in codes:
            assert int(c.min()) >= 0 and int(c.max()) < model.config.start_mel_token
        checked += len(budgets)
    assert checked == lines


def test_exact_mode_returns_exactly_the_budget() -> None:
    _exact_lengths(200, 100)


@pytest.mark.slow
def test_exact_mode_returns_exactly_the_budget_for_thousands_of_lines() -> None:
    _exact_lengths(2000, 500)


def test_exact_mode_with_beams_returns_exact_lengths(model, voice) -> None:
    lat, emo = voice
    budgets = [1, 2, 3, 17, 64, 5, 40, 9]
    codes = model.generate(
        lat,
        emo,
        _texts(8, 3),
        budgets=budgets,
        mode="exact",
        params=DecodeParams(num_beams=3),
        generator=torch.Generator().manual_seed(0),
    )
    assert [c.numel() for c in codes] == budgets


def test_exact_mode_without_slot_and_budget_validation(model, voice) -> None:
    lat, emo = voice
    codes = model.generate(
        lat,
        emo,
        _texts(2, 4),
        budgets=[12, 30],
        mode="exact",
        params=DecodeParams.sampling(slot_in_exact=False),
        generator=torch.Generator().manual_seed(0),
    )
    assert [c.numel() for c in codes] == [12, 30]
    with pytest.raises(ValidationError, match="budget"):
        model.generate(lat, emo, _texts(1, 4), budgets=[None], mode="exact")
    with pytest.raises(ValidationError, match="semantic tokens"):
        model.generate(lat, emo, _texts(1, 4), budgets=[model.config.max_budget + 1], mode="exact")


@pytest.mark.parametrize("params", [DecodeParams.sampling(), DecodeParams(num_beams=3)])
def test_same_seed_same_tokens(model, voice, params) -> None:
    lat, emo = voice
    texts = _texts(3, 5)

    def run(seed: int) -> list[list[int]]:
        out = model.generate(
            lat,
            emo,
            texts,
            budgets=[40, 25, 60],
            mode="exact",
            params=params,
            generator=torch.Generator().manual_seed(seed),
        )
        return [c.tolist() for c in out]

    assert run(11) == run(11)
    assert run(11) != run(12)


@pytest.mark.parametrize("beams", [1, 3])
def test_kv_cache_matches_full_recomputation(model, voice, beams) -> None:
    lat, emo = voice
    texts = _texts(3, 6)

    def run(use_cache: bool) -> list[list[int]]:
        out = model.generate(
            lat,
            emo,
            texts,
            budgets=[20, 7, 33],
            mode="exact",
            params=DecodeParams(num_beams=beams, use_cache=use_cache),
            generator=torch.Generator().manual_seed(3),
        )
        return [c.tolist() for c in out]

    assert run(True) == run(False)


@pytest.mark.parametrize("beams", [1, 3])
def test_batched_lines_decode_like_single_lines(model, voice, beams) -> None:
    lat, emo = voice
    texts = _texts(4, 8)  # different lengths: the batch is left-padded
    budgets = [15, 40, 3, 22]
    greedy = DecodeParams(num_beams=beams, do_sample=False)
    together = model.generate(lat, emo, texts, budgets=budgets, mode="exact", params=greedy)
    for text, budget, codes in zip(texts, budgets, together, strict=True):
        alone = model.generate(lat, emo, [text], budgets=[budget], mode="exact", params=greedy)
        assert alone[0].tolist() == codes.tolist()


@pytest.mark.parametrize("beams", [1, 3])
def test_free_lines_finishing_at_different_steps_decode_like_single_lines(voice, beams) -> None:
    torch.manual_seed(5)
    m = UnifiedVoice.from_config(T2SConfig.tiny())
    with torch.no_grad():
        m.mel_head.bias[m.config.stop_mel_token] = 0.0  # lines stop after 6 to 51 tokens
    lat, emo = voice
    texts = _texts(9, 13)
    greedy = DecodeParams(num_beams=beams, do_sample=False, max_tokens=60)
    together = m.decode(lat, emo, texts, mode="free", params=greedy)
    lengths = {c.numel() for c in together.codes}
    assert len(lengths) > 1  # finished lines are dropped from the batch mid-way
    for text, codes in zip(texts, together.codes, strict=True):
        alone = m.generate(lat, emo, [text], mode="free", params=greedy)
        assert alone[0].tolist() == codes.tolist()


def test_cancellation_stops_within_one_step(model, voice) -> None:
    lat, emo = voice
    polls: list[int] = []
    steps: list[float] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 5

    with pytest.raises(RenderCancelled):
        model.generate(
            lat,
            emo,
            _texts(2, 9),
            budgets=[300, 300],
            mode="exact",
            params=DecodeParams.sampling(),
            on_progress=lambda f, s: steps.append(f),
            should_stop=should_stop,
        )
    assert len(polls) == 6
    assert len(steps) == 5  # the step after the request never ran


def test_progress_is_reported_every_step_and_reaches_one(model, voice) -> None:
    lat, emo = voice
    seen: list[tuple[float, str]] = []
    model.generate(
        lat,
        emo,
        _texts(1, 10),
        budgets=[50],
        mode="exact",
        params=DecodeParams.sampling(),
        on_progress=lambda f, s: seen.append((f, s)),
    )
    assert len(seen) == 51
    assert {s for _, s in seen} == {"t2s"}
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_free_mode_stops_on_the_models_stop_token_and_respects_the_cap(voice) -> None:
    torch.manual_seed(0)
    m = UnifiedVoice.from_config(T2SConfig.tiny())
    lat, emo = voice
    with torch.no_grad():
        m.mel_head.bias[m.config.stop_mel_token] = 6.0  # the stop id dominates
    out = m.decode(
        lat,
        emo,
        _texts(4, 11),
        mode="free",
        params=DecodeParams.sampling(repetition_penalty=1.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert all(out.stopped)
    assert max(c.numel() for c in out.codes) < 10
    assert min(c.numel() for c in out.codes) >= 1  # never an empty line
    with torch.no_grad():
        m.mel_head.bias[m.config.stop_mel_token] = -50.0  # it never stops
    out = m.decode(
        lat, emo, _texts(2, 11), mode="free", params=DecodeParams(num_beams=3, max_tokens=25)
    )
    assert [c.numel() for c in out.codes] == [25, 25] and not any(out.stopped)


def test_budget_mode_puts_the_target_in_the_duration_slot(model, voice) -> None:
    lat, emo = voice
    conds = model.build_conds(lat, emo, [None, 123])
    assert torch.equal(conds[0, -2], model.speed_emb.weight[1])
    assert torch.equal(conds[1, -2], model.mel_pos_embedding.emb.weight[123])
    assert torch.equal(conds[1, -1], model.speed_emb.weight[0])
    codes = model.generate(
        lat,
        emo,
        _texts(2, 12),
        budgets=[None, 30],
        mode="budget",
        params=DecodeParams.sampling(max_tokens=40),
    )
    assert all(1 <= c.numel() <= 40 for c in codes)


def test_fit_dial() -> None:
    assert fit_target(100, 150, 0.0) == 100
    assert fit_target(100, 150, 1.0) == 150
    assert fit_target(100, 150, 0.5) == 125
    assert fit_target(5, 0, 1.0) == 1


@pytest.mark.parametrize("mode", ["exact", "free"])
def test_guidance_against_the_lines_own_emotion_changes_nothing(voice, mode) -> None:
    # Each line's shadow row, guided against the same vector, gives l + w * (l - l) = l, and
    # the pair draws one noise row: the codes are those of plain sampling, through lines that
    # stop at different steps (free mode) and the row drops that follow.
    torch.manual_seed(5)
    m = UnifiedVoice.from_config(T2SConfig.tiny())
    with torch.no_grad():
        m.mel_head.bias[m.config.stop_mel_token] = 0.0  # free lines stop after 6 to 51 tokens
    lat, emo = voice
    texts = _texts(9, 13)
    budgets = [12, 30, 5, 44, 9, 21, 17, 3, 26] if mode == "exact" else None
    params = DecodeParams.sampling(max_tokens=60)

    def run(**guide: object) -> list[list[int]]:
        out = m.generate(
            lat,
            emo,
            texts,
            budgets=budgets,
            mode=mode,  # type: ignore[arg-type]
            params=params,
            generator=torch.Generator().manual_seed(4),
            **guide,  # type: ignore[arg-type]
        )
        return [c.tolist() for c in out]

    plain = run()
    assert len({len(c) for c in plain}) > 1
    assert run(guide_emovec=emo, guidance=1.5) == plain


def test_guided_greedy_codes_follow_the_guided_logits(model, voice) -> None:
    lat, emo = voice
    # A vector far from the line's own (a random model's clips all read alike).
    other = emo + 3.0 * torch.randn(emo.shape, generator=torch.Generator().manual_seed(8))
    texts = _texts(3, 21)
    greedy = DecodeParams(num_beams=1, do_sample=False, repetition_penalty=1.0, max_tokens=25)
    w = 2.0
    guided = model.generate(
        lat, emo, texts, mode="free", params=greedy, guide_emovec=other, guidance=w
    )
    plain = model.generate(lat, emo, texts, mode="free", params=greedy)
    assert [c.tolist() for c in guided] != [c.tolist() for c in plain]
    # Each line's decoding-time logits under either vector, recomputed over its whole code
    # prefix (as the decoder's full-recomputation path feeds them: code k at mel position k + 2).
    cfg = model.config
    for text, codes in zip(texts, guided, strict=True):
        steps = []
        with torch.no_grad():
            for vec in (emo, other):
                prefix, _, _ = model.build_prefix(model.build_conds(lat, vec, [None]), [text])
                start = model.embed_mel(torch.tensor([cfg.start_mel_token]), torch.tensor([0]))
                fed = model.embed_mel(codes[:-1], torch.arange(codes.numel() - 1) + 2)
                x = torch.cat([prefix, start[None], fed[None]], dim=1)
                hidden = model.final_norm(model.gpt(x))[0, prefix.shape[1] :]
                steps.append(model.mel_head(hidden).float())
        own, shadow = steps
        scores = own + w * (own - shadow)
        scores[:, cfg.start_mel_token] = float("-inf")
        scores[0, cfg.stop_mel_token] = float("-inf")
        picked = scores.gather(1, codes[:, None])[:, 0]
        assert torch.allclose(picked, scores.max(dim=1).values, atol=1e-4)


def test_guidance_needs_one_beam(model, voice) -> None:
    lat, emo = voice
    with pytest.raises(ValidationError, match="one beam"):
        model.generate(
            lat,
            emo,
            _texts(1, 3),
            budgets=[10],
            mode="exact",
            params=DecodeParams(num_beams=3),
            guide_emovec=emo,
            guidance=1.0,
        )
