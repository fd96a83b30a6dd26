"""CAMPPlus, semantic codec and w2v-BERT extractors: official key sets, strict loads, behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dubstudio.core.errors import CheckpointMismatchError, ModelLoadError
from dubstudio.engine import checkpoints
from dubstudio.engine.audio import kaldi_fbank
from dubstudio.engine.campplus import CAMPPlus, CAMPPlusConfig
from dubstudio.engine.codec import CodecConfig, RepCodec
from dubstudio.engine.w2vbert import W2VBertFeatures

MANIFESTS = Path(__file__).resolve().parents[2] / "data" / "indextts2-manifests"


@pytest.mark.parametrize(
    ("component", "manifest"),
    [("campplus", "manifest_campplus.tsv"), ("semantic_codec", "manifest_semantic_codec.tsv")],
)
def test_official_shapes_equal_the_manifests(component: str, manifest: str) -> None:
    expected = checkpoints.read_manifest(MANIFESTS / manifest)
    assert checkpoints.official_state_dict_shapes(component) == expected


# ---------------------------------------------------------------- CAMPPlus
def _campplus() -> CAMPPlus:
    torch.manual_seed(0)
    model = CAMPPlus.from_config(CAMPPlusConfig.tiny())
    # Calibrate the BatchNorm statistics on random features (as training would), so the
    # embedding is not dominated by init-time buffers and the round trip checks real buffers.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    model.train()
    model(torch.randn(4, 150, 80, generator=torch.Generator().manual_seed(2)))
    return model.eval()


def test_campplus_style_shape_and_speaker_sensitivity() -> None:
    model = _campplus()
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    chirp = torch.sin(2 * torch.pi * (100 + 800 * t) * t)
    low = kaldi_fbank(0.3 * chirp + 0.01 * torch.randn(16000, generator=g))
    high = torch.randn(low.shape, generator=g)
    s_low, s_high = model(low[None]), model(high[None])
    assert s_low.shape == (1, 16)
    cosine = torch.nn.functional.cosine_similarity(s_low, s_high).item()
    assert cosine < 0.95
    both = model(torch.stack([low, high]))
    torch.testing.assert_close(both, torch.cat([s_low, s_high]), atol=1e-5, rtol=1e-4)


def test_campplus_round_trip_with_bn_buffers_and_missing_key(tmp_path: Path) -> None:
    model = _campplus()
    state = model.state_dict()
    assert any(k.endswith("num_batches_tracked") for k in state)
    path = tmp_path / "campplus_cn_common.bin"
    torch.save(state, path)
    loaded = CAMPPlus.from_checkpoint(path, CAMPPlusConfig.tiny())
    feats = torch.randn(1, 120, 80)
    torch.testing.assert_close(loaded(feats), model(feats))
    del state["xvector.block2.tdnnd1.nonlinear1.batchnorm.running_var"]
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"block2\.tdnnd1\.nonlinear1\.batchnorm"):
        CAMPPlus.from_checkpoint(path, CAMPPlusConfig.tiny())


# ---------------------------------------------------------------- codec
def _wn_form(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k.startswith("quantizer.") and k.endswith("_project.weight"):
            base = k[: -len(".weight")]
            out[f"{base}.weight_g"] = v.norm(dim=(1, 2), keepdim=True)
            out[f"{base}.weight_v"] = 5.0 * v
        else:
            out[k] = v.contiguous()
    return out


def test_codec_quantize_and_vq2emb_agree_for_batches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = RepCodec.from_config(CodecConfig.tiny())
    path = tmp_path / "semantic_codec_model.safetensors"
    save_file(_wn_form(source.state_dict()), str(path))
    codec = RepCodec.from_checkpoint(path, CodecConfig.tiny())
    x = torch.randn(3, 17, 24)
    codes, quantized = codec.quantize(x)
    ref_codes, _ = source.quantize(x)
    assert codes.shape == (3, 17) and quantized.shape == (3, 17, 24)
    assert torch.equal(codes, ref_codes)
    assert codes.min() >= 0 and codes.max() < 32 and codes.unique().numel() > 3
    # batch > 1: every item's embedding is its own codes' embedding
    torch.testing.assert_close(codec.vq2emb(codes), quantized)
    torch.testing.assert_close(codec.vq2emb(codes[1:2]), quantized[1:2])
    # nearest code by cosine: the chosen code scores at least as high as every other
    vq = codec.quantizer.quantizers[0]
    with torch.no_grad():
        z = torch.nn.functional.normalize(
            vq.in_project(codec.encoder(x.transpose(1, 2)).transpose(1, 2)).transpose(1, 2), dim=-1
        )
        sims = z @ torch.nn.functional.normalize(vq.codebook.weight, dim=-1).T
    assert torch.equal(sims.argmax(-1), codes)


def test_codec_missing_key_is_named(tmp_path: Path) -> None:
    state = _wn_form(RepCodec(CodecConfig.tiny()).state_dict())
    del state["decoder.0.convnext.1.gamma"]
    with pytest.raises(CheckpointMismatchError, match=r"decoder\.0\.convnext\.1\.gamma"):
        RepCodec.from_state_dict(CodecConfig.tiny(), state)


# ---------------------------------------------------------------- w2v-BERT
@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    directory = tmp_path_factory.mktemp("w2v-bert-2.0")
    torch.manual_seed(0)
    config = Wav2Vec2BertConfig(
        hidden_size=16,
        num_hidden_layers=17,
        num_attention_heads=2,
        intermediate_size=32,
        output_hidden_size=16,
        conv_depthwise_kernel_size=3,
        feature_projection_input_dim=160,
    )
    Wav2Vec2BertModel(config).save_pretrained(directory)
    SeamlessM4TFeatureExtractor().save_pretrained(directory)
    torch.save({"mean": torch.randn(16), "var": torch.rand(16) + 0.5}, directory / "stats.pt")
    return directory


def test_w2vbert_layer17_features_normalised(w2v_dir: Path) -> None:
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

    feats = W2VBertFeatures(w2v_dir, w2v_dir / "stats.pt")
    wave = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(1))
    out = feats(wave)
    assert out.shape[0] == 1 and out.shape[2] == 16
    assert abs(out.shape[1] - 50) <= 1  # 50 frames per second
    # independent computation of the same quantity
    fe = SeamlessM4TFeatureExtractor.from_pretrained(w2v_dir)
    model = Wav2Vec2BertModel.from_pretrained(w2v_dir).eval()
    inputs = fe(wave.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states[17]
    stats = torch.load(w2v_dir / "stats.pt", weights_only=True)
    expected = (hidden - stats["mean"]) / stats["var"].sqrt()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_w2vbert_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="models fetch indextts2"):
        W2VBertFeatures(tmp_path, tmp_path / "stats.pt")
