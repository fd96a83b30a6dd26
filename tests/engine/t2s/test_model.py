"""UnifiedVoice structure, loading, conditioning, latents pass and training forward."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dubstudio.core.errors import CheckpointMismatchError, ModelLoadError, ValidationError
from dubstudio.engine import checkpoints
from dubstudio.engine.t2s import (
    DecodeParams,
    EmotionLoudness,
    EmotionMatrices,
    T2SConfig,
    UnifiedVoice,
    emotion_vector_from_weights,
    webui_adjust,
)

MANIFESTS = Path(__file__).resolve().parents[2] / "data" / "indextts2-manifests"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def model() -> UnifiedVoice:
    torch.manual_seed(0)
    return UnifiedVoice.from_config(T2SConfig.tiny())


def _feats(model: UnifiedVoice, b: int = 1, t: int = 30, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, model.config.cond_input_dim, generator=g)


def test_official_shapes_equal_the_manifest() -> None:
    expected = checkpoints.read_manifest(MANIFESTS / "manifest_gpt.tsv")
    assert checkpoints.official_state_dict_shapes("gpt") == expected


def test_tiny_model_uses_only_official_key_names(model: UnifiedVoice) -> None:
    official = checkpoints.read_manifest(MANIFESTS / "manifest_gpt.tsv")
    keys = set(model.state_dict())
    assert keys <= set(official)
    assert {k.split(".")[0] for k in keys} == {k.split(".")[0] for k in official}


def test_config_round_trips_through_a_dict() -> None:
    cfg = T2SConfig.tiny(cond_input_dim=80)
    assert T2SConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError):
        T2SConfig.from_dict({**cfg.to_dict(), "modle_dim": 3})


@pytest.mark.parametrize("wrapped", [True, False])
def test_official_style_checkpoint_loads_strictly(model, tmp_path: Path, wrapped: bool) -> None:
    path = tmp_path / "gpt.pth"
    state = model.state_dict()
    torch.save({"model": state} if wrapped else state, path)
    loaded = UnifiedVoice.from_checkpoint(path, T2SConfig.tiny())
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not loaded.training


def test_safetensors_checkpoint_loads(model, tmp_path: Path) -> None:
    path = tmp_path / "gpt.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = UnifiedVoice.from_checkpoint(path, T2SConfig.tiny())
    assert torch.equal(loaded.mel_head.weight, model.mel_head.weight)


def test_renamed_key_fails_naming_it(model) -> None:
    state = dict(model.state_dict())
    state["final_norm.gamma"] = state.pop("final_norm.weight")
    with pytest.raises(CheckpointMismatchError) as err:
        UnifiedVoice.from_checkpoint(state, T2SConfig.tiny())
    assert "final_norm.weight" in str(err.value) and "final_norm.gamma" in str(err.value)


def test_wrong_shape_and_missing_file_are_reported(model, tmp_path: Path) -> None:
    state = dict(model.state_dict())
    state["mel_head.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError, match=r"mel_head\.bias"):
        UnifiedVoice.from_checkpoint(state, T2SConfig.tiny())
    with pytest.raises(ModelLoadError, match="not found"):
        UnifiedVoice.from_checkpoint(tmp_path / "nope.pth", T2SConfig.tiny())


def test_conditioning_shapes_and_padding(model) -> None:
    cfg = model.config
    feats = _feats(model, b=2, t=40)
    lat = model.speaker_latents(feats)
    emo = model.emotion_vector(feats)
    assert lat.shape == (2, cfg.num_latents, cfg.model_dim)
    assert emo.shape == (2, cfg.model_dim)
    full = torch.tensor([40, 40])
    torch.testing.assert_close(model.speaker_latents(feats, full), lat)
    # A short clip padded into a batch: with lengths the padding is masked out of attention
    # (the conformer's depthwise conv still sees the padded frames' biases, as in wenet), so
    # the result is much closer to the clip alone than without lengths.
    short = feats[:1, :25]
    padded = torch.cat([short, torch.zeros(1, 15, cfg.cond_input_dim)], dim=1)
    batch = torch.cat([padded, feats[1:]], dim=0)
    alone = model.speaker_latents(short)[0]
    masked = model.speaker_latents(batch, torch.tensor([25, 40]))[0]
    unmasked = model.speaker_latents(batch)[0]
    assert (masked - alone).norm() < 0.5 * (unmasked - alone).norm()
    merged = model.merge_emovec(emo[:1], emo[1:], 0.25)
    torch.testing.assert_close(merged, emo[:1] + 0.25 * (emo[1:] - emo[:1]))


def test_latents_are_aligned_to_the_codes_they_predict(model) -> None:
    feats = _feats(model)
    lat, emo = model.speaker_latents(feats), model.emotion_vector(feats)
    text = [torch.tensor([5, 6, 7, 8])]
    codes = torch.randint(0, 64, (12,), generator=torch.Generator().manual_seed(0))
    base = model.latents(lat, emo, text, [codes])[0]
    assert base.shape == (12, model.config.model_dim)
    changed = codes.clone()
    changed[5] = (changed[5] + 1) % 64  # c_6: seen from row 6 on
    other = model.latents(lat, emo, text, [changed])[0]
    torch.testing.assert_close(other[:6], base[:6])
    assert not torch.allclose(other[6], base[6])


def test_latents_batched_equal_single(model) -> None:
    feats = _feats(model)
    lat, emo = model.speaker_latents(feats), model.emotion_vector(feats)
    g = torch.Generator().manual_seed(2)
    texts = [torch.randint(2, 60, (n,), generator=g) for n in (3, 11, 6)]
    codes = [torch.randint(0, 64, (n,), generator=g) for n in (9, 2, 17)]
    together = model.latents(lat, emo, texts, codes)
    for text, code, rows in zip(texts, codes, together, strict=True):
        torch.testing.assert_close(model.latents(lat, emo, [text], [code])[0], rows)


def test_decoding_states_differ_from_the_latent_pass_after_the_first(model) -> None:
    feats = _feats(model)
    lat, emo = model.speaker_latents(feats), model.emotion_vector(feats)
    text = [torch.tensor([9, 10, 11])]
    out = model.decode(
        lat,
        emo,
        text,
        budgets=[20],
        mode="exact",
        params=DecodeParams.sampling(),
        generator=torch.Generator().manual_seed(0),
        capture_hidden=True,
    )
    assert out.hidden is not None
    captured = out.hidden[0]
    official = model.latents(lat, emo, text, out.codes, budgets=[20])[0]
    torch.testing.assert_close(captured[0], official[0])  # start token: position 0 in both
    assert not torch.allclose(captured[1:], official[1:], atol=1e-3)  # k + 2 vs k + 1


def test_forward_train_layout_matches_the_latent_pass(model) -> None:
    feats = _feats(model, b=2)
    g = torch.Generator().manual_seed(3)
    texts = [torch.randint(2, 60, (n,), generator=g) for n in (4, 7)]
    codes = [torch.randint(0, 64, (n,), generator=g) for n in (10, 6)]
    out = model.forward_train(feats, texts, codes, durations=None)
    assert out.mel_logits.shape == (2, 11, model.config.number_mel_codes)
    assert (
        out.mel_targets[1].tolist()
        == [*codes[1].tolist(), model.config.stop_mel_token] + [-100] * 4
    )
    assert out.text_targets[0].tolist() == [*texts[0].tolist(), 1, -100, -100, -100]
    with torch.inference_mode():
        lat, emo = model.speaker_latents(feats), model.emotion_vector(feats)
        rows = model.latents(lat, emo, texts, codes)
        for i in range(2):
            n = codes[i].numel()
            torch.testing.assert_close(out.mel_logits[i, :n].detach(), model.mel_head(rows[i]))
    (out.loss_mel + out.loss_text).backward()
    assert model.conditioning_encoder.embed.out[0].weight.grad is not None
    assert model.emo_layer.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_forward_train_duration_slot_and_drop(model) -> None:
    feats = _feats(model, b=1)
    texts, codes = [torch.tensor([3, 4, 5])], [torch.tensor([1, 2, 3, 4])]
    with torch.no_grad():
        free = model.forward_train(feats, texts, codes).mel_logits
        dropped = model.forward_train(
            feats, texts, codes, durations=[4], duration_drop=1.0, rng=random.Random(0)
        ).mel_logits
        kept = model.forward_train(feats, texts, codes, durations=[4], duration_drop=0.0).mel_logits
    torch.testing.assert_close(dropped, free)
    assert not torch.allclose(kept, free)


def _matrices() -> EmotionMatrices:
    emo_num = (1, 2, 1, 1, 1, 1, 1, 1)
    spk = torch.eye(9, 4)[:, :4].clone()
    spk[1] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # class 1, row 0: along axis 0
    spk[2] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # class 1, row 1: along axis 3
    spk[3:] = 1.0
    emo = torch.arange(9 * 3, dtype=torch.float32).view(9, 3)
    return EmotionMatrices(spk_matrix=spk, emo_matrix=emo, emo_num=emo_num)


def test_emotion_vector_uses_the_row_nearest_the_style() -> None:
    mats = _matrices()
    base = torch.tensor([10.0, 20.0, 30.0])
    style = torch.tensor([0.1, 0.0, 0.0, 2.0])  # nearest class-1 row: row 1 (axis 3)
    assert mats.nearest_rows(style)[1] == 1
    weights = [0.0, 0.5, 0, 0, 0, 0, 0, 0]
    vec = emotion_vector_from_weights(weights, style, mats, base)
    torch.testing.assert_close(vec, 0.5 * mats.emo_matrix[2] + 0.5 * base)
    # alpha scales and truncates to 4 decimals before mixing
    vec = emotion_vector_from_weights([0, 0.33333, 0, 0, 0, 0, 0, 0], style, mats, base, 0.5)
    w = int(0.33333 * 0.5 * 10000) / 10000
    torch.testing.assert_close(vec, w * mats.emo_matrix[2] + (1 - w) * base)


def test_webui_bias_caps_the_sum() -> None:
    adjusted = webui_adjust([1.0] * 8)
    assert sum(adjusted) == pytest.approx(0.8)
    assert webui_adjust([0.0, 0.0, 0.5, 0, 0, 0, 0, 0]) == [0.0, 0.0, 0.5, 0, 0, 0, 0, 0]
    with pytest.raises(ValidationError):
        webui_adjust([1.0])


def test_emotion_matrices_must_match_emo_num() -> None:
    with pytest.raises(ModelLoadError, match="emo_num"):
        EmotionMatrices(torch.zeros(5, 4), torch.zeros(5, 3))


def test_decoding_states_use_the_official_positions(model) -> None:
    """While decoding, the start token sits at mel position 0 and code k at k + 2."""
    feats = _feats(model)
    lat, emo = model.speaker_latents(feats), model.emotion_vector(feats)
    text = [torch.tensor([9, 10, 11])]
    out = model.decode(
        lat, emo, text, budgets=[12], mode="exact", params=DecodeParams(num_beams=3),
        generator=torch.Generator().manual_seed(1), capture_hidden=True,
    )  # fmt: skip
    assert out.hidden is not None
    codes = out.codes[0]
    with torch.inference_mode():
        conds = model.build_conds(lat, emo, [12])
        prefix, _, _ = model.build_prefix(conds, text)
        ids = torch.cat([torch.tensor([model.config.start_mel_token]), codes[:-1]])
        pos = torch.cat([torch.tensor([0]), torch.arange(2, codes.numel() + 1)])
        x = torch.cat([prefix, model.embed_mel(ids, pos)[None]], dim=1)
        direct = model.final_norm(model.gpt(x))[0, prefix.shape[1] :]
    torch.testing.assert_close(out.hidden[0], direct, atol=1e-5, rtol=1e-4)


def test_in_memory_state_is_copied_not_shared(model) -> None:
    state = model.state_dict()
    loaded = UnifiedVoice.from_checkpoint(state, T2SConfig.tiny())
    with torch.no_grad():
        loaded.mel_head.bias.add_(1.0)
    assert not torch.equal(loaded.mel_head.bias, model.mel_head.bias)


def test_emotion_loudness_mixes_style_changes_and_bounds_clip_reads() -> None:
    loudness = EmotionLoudness(
        per_style=torch.tensor([2.0, -4.0, 0, 0, 0, 0, 0, 0]),
        weight=torch.tensor([1.0, 0.0, -0.5]),
        bias=0.5,
    )
    assert loudness.of_weights([0.5, 0.25, 0, 0, 0, 0, 0, 0]) == pytest.approx(0.0)
    assert loudness.of_weights([1.0, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx(2.0)
    assert loudness.read(torch.tensor([[3.0, 1.0, 2.0]])) == pytest.approx(2.5)
    own = torch.tensor([0.5, 0.0, 0.0])
    assert loudness.of_clip(torch.tensor([-1.0, 0.0, 0.0]), own) == pytest.approx(-1.5)
    assert loudness.of_clip(torch.tensor([20.0, 0.0, 0.0]), own) == pytest.approx(2.0)  # at most
    assert loudness.of_clip(torch.tensor([0.0, 0.0, 30.0]), own) == pytest.approx(-4.0)  # least
    with pytest.raises(ValidationError, match="8 values"):
        loudness.of_weights([1.0])
    with pytest.raises(ValidationError, match="width"):
        loudness.read(torch.zeros(4))
