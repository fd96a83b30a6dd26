"""S2M: official keys/shapes, exact frame counts, CFG inference, cancellation, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dubstudio.core.errors import CheckpointMismatchError, RenderCancelled
from dubstudio.engine import checkpoints
from dubstudio.engine.s2m import S2MConfig, S2MModel
from dubstudio.engine.s2m.model import sway_schedule

MANIFESTS = Path(__file__).resolve().parents[2] / "data" / "indextts2-manifests"


def _model(seed: int = 0, **kw: object) -> S2MModel:
    torch.manual_seed(seed)
    return S2MModel.from_config(S2MConfig.tiny(**kw))  # type: ignore[arg-type]


def _inputs(model: S2MModel, frames: int = 23, f_ref: int = 11) -> tuple[torch.Tensor, ...]:
    cfg = model.cfg
    g = torch.Generator().manual_seed(1)
    codes = torch.randn(1, 9, cfg.content_dim, generator=g)
    latents = torch.randn(1, 9, cfg.gpt_dim or 1, generator=g)
    prompt = torch.randn(1, 6, cfg.content_dim, generator=g)
    ref_mel = torch.randn(1, cfg.n_mels, f_ref, generator=g)
    style = torch.randn(1, cfg.style_dim, generator=g)
    cond = model.content(codes, latents, frames)
    return cond, model.prompt_condition(prompt, f_ref), ref_mel, style


def test_official_shapes_equal_the_manifest() -> None:
    expected = checkpoints.read_manifest(MANIFESTS / "manifest_s2mel.tsv")
    assert checkpoints.official_state_dict_shapes("s2mel") == expected


@pytest.mark.parametrize("frames", [1, 7, 50, 173])
def test_regulator_gives_exactly_the_requested_frames(frames: int) -> None:
    model = _model()
    out = model.content(torch.randn(2, 13, 24), torch.randn(2, 13, 24), frames)
    assert out.shape == (2, frames, 32)


def test_per_item_frames_are_masked_beyond_each_length() -> None:
    model = _model()
    x = torch.randn(2, 13, 24)
    out = model.content(x, None, [10, 17], content_lens=[13, 8])
    assert out.shape == (2, 17, 32)
    assert torch.all(out[0, 10:] == 0) and out[0, :10].abs().sum() > 0
    # item 1 is stretched from its own 8 content frames, as if it were alone
    alone = model.content(x[1:2, :8], None, 17)
    torch.testing.assert_close(out[1], alone[0])


def test_generate_shape_determinism_and_prompt_excluded() -> None:
    model = _model()
    cond, pc, ref_mel, style = _inputs(model)
    a = model.generate(
        cond, pc, ref_mel, style, steps=3, generator=torch.Generator().manual_seed(5)
    )
    b = model.generate(
        cond, pc, ref_mel, style, steps=3, generator=torch.Generator().manual_seed(5)
    )
    c = model.generate(
        cond, pc, ref_mel, style, steps=3, generator=torch.Generator().manual_seed(6)
    )
    assert a.shape == (1, 80, 23)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()


def test_cfg_matches_two_separate_estimator_calls() -> None:
    """The batched CFG step equals (1+r)·v_cond − r·v_uncond with zeroed prompt/style/content."""
    model = _model()
    cond, pc, ref_mel, style = _inputs(model, frames=9, f_ref=5)
    r = 0.7
    out = model.generate(
        cond, pc, ref_mel, style, steps=1, cfg_rate=r, generator=torch.Generator().manual_seed(3)
    )
    x0 = torch.randn(1, 80, 14, generator=torch.Generator().manual_seed(3))
    x0[:, :, :5] = 0
    prompt = torch.zeros_like(x0)
    prompt[:, :, :5] = ref_mel
    mu = torch.cat([pc, cond], dim=1)
    est, lens, t = model.estimator, torch.tensor([14]), torch.zeros(1)
    with torch.inference_mode():
        vc = est(x0, prompt, lens, t, style, mu)
        vu = est(
            x0, torch.zeros_like(prompt), lens, t, torch.zeros_like(style), torch.zeros_like(mu)
        )
    expected = (x0 + (1 + r) * vc - r * vu)[:, :, 5:]
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sway", [-1.0, -0.5, 0.0, 0.7, 1.0])
def test_sway_schedule_runs_from_noise_to_data_monotonically(sway: float) -> None:
    t = sway_schedule(8, sway)
    assert t.shape == (9,)
    assert t[0].item() == 0.0 and abs(t[-1].item() - 1.0) < 1e-6
    assert torch.all(t[1:] > t[:-1])


def test_negative_sway_puts_the_first_steps_nearer_the_noise() -> None:
    torch.testing.assert_close(sway_schedule(5, 0.0), torch.linspace(0, 1, 6))
    uniform, swayed = sway_schedule(6, 0.0), sway_schedule(6, -1.0)
    assert torch.all(swayed[1:-1] < uniform[1:-1])
    # s = -1 is 1 - cos(pi/2 u)
    u = torch.linspace(0, 1, 7)
    torch.testing.assert_close(swayed, 1 - torch.cos(torch.pi / 2 * u))


def test_one_step_with_sway_is_one_euler_step_of_the_whole_interval() -> None:
    """A single step spans t = 0..1 whatever the sway, so the result equals the uniform one;
    with more steps the schedule changes the result."""
    model = _model()
    cond, pc, ref_mel, style = _inputs(model, frames=9, f_ref=5)

    def run(steps: int, sway: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(3)
        return model.generate(cond, pc, ref_mel, style, steps=steps, sway=sway, generator=g)

    torch.testing.assert_close(run(1, -1.0), run(1, 0.0))
    assert not torch.allclose(run(4, -1.0), run(4, 0.0))
    with pytest.raises(ValueError, match="sway"):
        run(2, -1.5)


def test_cancellation_mid_cfm_and_progress() -> None:
    model = _model()
    cond, pc, ref_mel, style = _inputs(model)
    seen: list[float] = []

    def stop() -> bool:
        return len(seen) >= 2

    with pytest.raises(RenderCancelled):
        model.generate(
            cond,
            pc,
            ref_mel,
            style,
            steps=10,
            on_progress=lambda f, s: seen.append(f),
            should_stop=stop,
        )
    assert seen == [0.1, 0.2]


def test_training_loss_backpropagates_and_ignores_prompt_frames() -> None:
    model = _model().train()
    b, f = 2, 20
    x1 = torch.randn(b, 80, f)
    cond = torch.randn(b, f, 32)
    style = torch.randn(b, 16)
    x_lens, p_lens = torch.tensor([20, 15]), torch.tensor([5, 3])
    loss = model.training_loss(
        x1, x_lens, p_lens, cond, style, generator=torch.Generator().manual_seed(0)
    )
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    grads = [p.grad for p in model.cfm.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_a_few_training_steps_reduce_the_loss() -> None:
    model = _model().train()
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(2, 80, 1, generator=g).expand(2, 80, 16).contiguous()
    cond = torch.randn(2, 16, 32, generator=g)
    style = torch.randn(2, 16, generator=g)
    x_lens, p_lens = torch.tensor([16, 12]), torch.tensor([4, 3])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_now() -> float:
        model.eval()
        torch.manual_seed(123)
        with torch.no_grad():
            value = model.training_loss(
                x1, x_lens, p_lens, cond, style, generator=torch.Generator().manual_seed(9)
            ).item()
        model.train()
        return value

    before = loss_now()
    for _ in range(30):
        opt.zero_grad()
        model.training_loss(x1, x_lens, p_lens, cond, style).backward()
        opt.step()
    assert loss_now() < 0.85 * before


def test_checkpoint_round_trip_and_missing_key_named(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "s2m.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    loaded = S2MModel.from_checkpoint(path, S2MConfig.tiny())
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    del state["cfm.estimator.wavenet.in_layers.1.conv.conv.weight_g"]
    save_file(state, str(path))
    with pytest.raises(
        CheckpointMismatchError, match=r"wavenet\.in_layers\.1\.conv\.conv\.weight_g"
    ):
        S2MModel.from_checkpoint(path, S2MConfig.tiny())


def test_model_without_gpt_layer_rejects_latents() -> None:
    model = _model(gpt_dim=None)
    assert model.gpt_layer is None
    assert not any(k.startswith("gpt_layer") for k in model.state_dict())
    with pytest.raises(ValueError, match="gpt_layer"):
        model.content(torch.randn(1, 4, 24), torch.randn(1, 4, 24), 8)


def test_cfg_rate_zero_is_the_plain_conditional_flow() -> None:
    model = _model()
    cond, pc, ref_mel, style = _inputs(model, frames=6, f_ref=4)
    out = model.generate(
        cond, pc, ref_mel, style, steps=2, cfg_rate=0.0, generator=torch.Generator().manual_seed(4)
    )
    x = torch.randn(1, 80, 10, generator=torch.Generator().manual_seed(4))
    x[:, :, :4] = 0
    prompt = torch.zeros_like(x)
    prompt[:, :, :4] = ref_mel
    mu = torch.cat([pc, cond], dim=1)
    with torch.inference_mode():
        for t in (0.0, 0.5):
            x = x + 0.5 * model.estimator(
                x, prompt, torch.tensor([10]), torch.tensor([t]), style, mu
            )
            x[:, :, :4] = 0
    torch.testing.assert_close(out, x[:, :, 4:], atol=1e-5, rtol=1e-4)


def test_regulate_is_differentiable_through_gpt_layer_and_regulator() -> None:
    model = _model().train()
    cond = model.regulate(torch.randn(2, 7, 24), torch.randn(2, 7, 24), [12, 9])
    assert cond.shape == (2, 12, 32) and cond.requires_grad
    cond.square().mean().backward()
    assert model.gpt_layer is not None and model.gpt_layer[0].weight.grad is not None
    assert model.length_regulator.content_in_proj.weight.grad.abs().sum() > 0
