"""BigVGAN v2: official key sets, both key forms, anti-aliasing filters, exact output length."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dubstudio.core.errors import CheckpointMismatchError
from dubstudio.engine import checkpoints
from dubstudio.engine.vocoders import Vocoder
from dubstudio.engine.vocoders.bigvgan import (
    Activation1d,
    BigVGAN,
    BigVGANConfig,
    DownSample1d,
    UpSample1d,
    kaiser_sinc_filter,
)

MANIFESTS = Path(__file__).resolve().parents[2] / "data" / "indextts2-manifests"


@pytest.mark.parametrize(
    ("component", "manifest"),
    [("bigvgan", "manifest_bigvgan.tsv"), ("bigvgan_nown", "manifest_bigvgan_nown.tsv")],
)
def test_official_shapes_equal_the_manifests(component: str, manifest: str) -> None:
    expected = checkpoints.read_manifest(MANIFESTS / manifest)
    assert checkpoints.official_state_dict_shapes(component) == expected


def test_kaiser_sinc_filter_is_symmetric_low_pass_with_unit_gain() -> None:
    taps = kaiser_sinc_filter(0.25, 0.3, 12)[0, 0]
    assert taps.sum().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(taps, taps.flip(0))
    # Nyquist (alternating signal) is strongly attenuated
    nyquist = (taps * torch.tensor([(-1.0) ** i for i in range(12)])).sum().abs().item()
    assert nyquist < 0.05


def test_resampling_keeps_constants_and_lengths() -> None:
    x = torch.full((1, 3, 40), 0.7)
    up = UpSample1d()(x)
    assert up.shape == (1, 3, 80)
    torch.testing.assert_close(up, torch.full_like(up, 0.7), atol=1e-5, rtol=0)
    down = DownSample1d()(up)
    assert down.shape == (1, 3, 40)
    torch.testing.assert_close(down, x, atol=1e-5, rtol=0)


def test_snake_activation_is_identity_plus_periodic_term() -> None:
    act = Activation1d(2, logscale=True)
    x = torch.linspace(-3, 3, 64).repeat(1, 2, 1)
    y = act(x)
    assert y.shape == x.shape
    # with α = β = 1 the term sin²(x) is non-negative, so the output is above x (filters aside)
    assert (y[..., 8:-8] - x[..., 8:-8]).mean() > 0.2


def _tiny(seed: int = 0) -> BigVGAN:
    torch.manual_seed(seed)
    model = BigVGAN.from_config(BigVGANConfig.tiny())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def test_tiny_generator_output_length_and_range() -> None:
    model = _tiny()
    assert isinstance(model, Vocoder) and model.hop_length == 256
    wave = model(torch.randn(2, 80, 7))
    assert wave.shape == (2, 7 * 256)
    assert wave.abs().max() <= 1.0 and wave.std() > 0


def test_both_key_forms_load_strictly_and_missing_key_is_named(tmp_path: Path) -> None:
    model = _tiny()
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    wn = {}
    for k, v in plain.items():
        if k.endswith(".weight") and v.dim() == 3:
            base = k[: -len(".weight")]
            wn[f"{base}.weight_g"] = v.norm(dim=(1, 2), keepdim=True)
            wn[f"{base}.weight_v"] = 3.0 * v
        else:
            wn[k] = v
    mel = torch.randn(1, 80, 5)
    ref = model(mel)
    path = tmp_path / "bigvgan_generator.pt"
    for state in (plain, wn):
        torch.save({"generator": state}, path)
        torch.testing.assert_close(BigVGAN.from_checkpoint(path, BigVGANConfig.tiny())(mel), ref)
    del wn["resblocks.1.convs2.0.weight_v"]
    torch.save({"generator": wn}, path)
    with pytest.raises(CheckpointMismatchError, match=r"resblocks\.1\.convs2\.0\.weight"):
        BigVGAN.from_checkpoint(path, BigVGANConfig.tiny())


def test_pretrained_dir_reads_config_json(tmp_path: Path) -> None:
    model = _tiny()
    cfg = BigVGANConfig.tiny()
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "resblock": "1",
                "activation": "snakebeta",
                "num_mels": 80,
                "upsample_rates": list(cfg.upsample_rates),
                "upsample_kernel_sizes": list(cfg.upsample_kernel_sizes),
                "upsample_initial_channel": cfg.upsample_initial_channel,
                "resblock_kernel_sizes": list(cfg.resblock_kernel_sizes),
                "resblock_dilation_sizes": [list(d) for d in cfg.resblock_dilation_sizes],
                "snake_logscale": True,
                "use_tanh_at_final": False,
                "use_bias_at_final": False,
                "sampling_rate": 22050,
                "n_fft": 1024,
                "hop_size": 256,
                "win_size": 1024,
                "fmin": 0,
                "fmax": None,
            }
        )
    )
    torch.save({"generator": model.state_dict()}, tmp_path / "bigvgan_generator.pt")
    loaded = BigVGAN.from_pretrained_dir(tmp_path)
    assert loaded.mel_config.fmax is None and loaded.sample_rate == 22050
    mel = torch.randn(1, 80, 4)
    torch.testing.assert_close(loaded(mel), model(mel))


def test_onnx_runtime_vocoder_matches_eager_for_any_frame_count(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from dubstudio.engine.vocoders.cpu import accelerated
    from dubstudio.engine.vocoders.onnx import OnnxVocoder

    model = _tiny()
    cache = tmp_path / "bigvgan.onnx"
    fast = OnnxVocoder.from_vocoder(model, cache_path=cache)
    assert isinstance(fast, Vocoder) and cache.is_file()
    for frames in (3, 41):
        mel = torch.randn(2, 80, frames)
        out = fast(mel)
        assert out.shape == (2, frames * 256)
        torch.testing.assert_close(out, model(mel), atol=1e-4, rtol=1e-3)
    reopened = accelerated(model, backend="onnx", cache_path=cache)  # served from the cache file
    assert isinstance(reopened, OnnxVocoder)
    mel = torch.randn(1, 80, 5)
    torch.testing.assert_close(reopened(mel), model(mel), atol=1e-4, rtol=1e-3)
