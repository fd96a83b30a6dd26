"""The official IndexTTS-2 dataflow at tiny scale: BPE text, semantic-codec prompt and content,
CAMPPlus style, BigVGAN — the same `Synthesizer` code the official bundle runs.

w2v-BERT cannot be loaded offline, so its place is taken by a fixed random projection of
20 ms audio frames (same rate, 50 Hz, and shape); everything else is a real class.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
from dubstudio.engine.audio import MelConfig, kaldi_fbank, mel_spectrogram
from dubstudio.engine.bundles import MelSpec, ModelBundle
from dubstudio.engine.campplus import CAMPPlus, CAMPPlusConfig
from dubstudio.engine.codec import CodecConfig, RepCodec
from dubstudio.engine.pipeline import EngineComponents, Synthesizer, _CodecEmbedder
from dubstudio.engine.reference import OfficialReferenceEncoder
from dubstudio.engine.s2m import S2MConfig, S2MModel
from dubstudio.engine.t2s.config import T2SConfig
from dubstudio.engine.t2s.emotion import EmotionMatrices
from dubstudio.engine.t2s.model import UnifiedVoice
from dubstudio.engine.text import BpeFrontEnd
from dubstudio.engine.vocoders.bigvgan import BigVGAN, BigVGANConfig

TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "please call stella and ask her to bring these things",
    "we will meet at the station at half past nine",
    "a large size in stockings is hard to sell",
] * 20


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("bpe")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(t.upper() for t in TEXT))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "bpe"),
        vocab_size=60,
        model_type="bpe",
        character_coverage=1.0,
        minloglevel=2,
    )
    return folder / "bpe.model"


@pytest.fixture(scope="module")
def official_tiny(bpe_model: Path) -> Synthesizer:
    torch.manual_seed(0)
    codec_cfg = CodecConfig.tiny()
    width = codec_cfg.hidden_size
    codec = RepCodec.from_config(codec_cfg)
    campplus = CAMPPlus.from_config(CAMPPlusConfig.tiny())
    projection = torch.randn(320, width) / 20

    def semantic(wave16k: torch.Tensor) -> torch.Tensor:
        frames = wave16k.reshape(-1)[: wave16k.numel() // 320 * 320].reshape(1, -1, 320)
        return frames @ projection  # (1, T50, width)

    def style(wave16k: torch.Tensor) -> torch.Tensor:
        return campplus(kaldi_fbank(wave16k)[None])

    mel_cfg = MelConfig.indextts2()
    reference = OfficialReferenceEncoder(
        semantic, codec, style, lambda w: mel_spectrogram(w, mel_cfg), mel_rate=22050
    )
    # Semantic vocabulary = the codec's codebook, plus the start and stop ids.
    k = codec_cfg.codebook_size
    t2s_cfg = replace(
        T2SConfig.tiny(cond_input_dim=width),
        number_mel_codes=k + 2,
        start_mel_token=k,
        stop_mel_token=k + 1,
    )
    style_dim = CAMPPlusConfig.tiny().embedding_size
    emo_num = (1, 1, 1, 1, 1, 1, 1, 1)
    bundle = ModelBundle(
        name="official-tiny",
        kind="indextts2",
        root=bpe_model.parent,
        config={},
        files={},
        token_rate=Fraction(50),
        mel=MelSpec(),
        vocoder="bigvgan",
        cfm_steps=3,
        identity="official-tiny",
    )
    components = EngineComponents(
        bundle=bundle,
        device=torch.device("cpu"),
        front_end=BpeFrontEnd(bpe_model),
        reference_encoder=reference,
        code_embedder=_CodecEmbedder(codec),
        t2s=UnifiedVoice.from_config(t2s_cfg),
        s2m=S2MModel.from_config(
            replace(
                S2MConfig.tiny(style_dim=style_dim, gpt_dim=t2s_cfg.model_dim), content_dim=width
            )
        ),
        vocoder=BigVGAN.from_config(BigVGANConfig.tiny()),
        emotion_matrices=EmotionMatrices(
            torch.randn(8, style_dim), 0.1 * torch.randn(8, t2s_cfg.model_dim), emo_num
        ),
    )
    return Synthesizer(components)


def test_reference_features_follow_the_official_rates(
    official_tiny: Synthesizer, voice_wav: Path
) -> None:
    import soundfile as sf

    audio, sr = sf.read(voice_wav, dtype="float32")
    feats = official_tiny.components.reference_encoder.encode(audio, sr)
    n22 = round(len(audio) * 22050 / sr)
    assert feats.ref_mel.shape == (1, 80, n22 // 256)
    assert feats.cond_feats.shape[1] == round(len(audio) / sr * 50)
    assert feats.prompt_content.shape == feats.cond_feats.shape  # codec-quantised, same grid
    assert feats.style.shape == (1, CAMPPlusConfig.tiny().embedding_size)


@pytest.mark.parametrize("rate", [22050, 48000])
def test_official_path_meets_the_budget(
    official_tiny: Synthesizer, voice_wav: Path, rate: int
) -> None:
    result = official_tiny.synthesize(
        SynthesisRequest(
            "The quick brown fox. Please call Stella!",
            VoiceRef.from_file(voice_wav),
            emotion=EmotionRequest("vector", (0.3, 0, 0, 0, 0, 0, 0, 0.2), alpha=0.8),
            sample_rate=rate,
            target_samples=rate * 2 + 17,
            seed=4,
        )
    )
    assert result.audio.shape == (rate * 2 + 17,)
    assert result.tokens == 100
    assert np.isfinite(result.audio).all()
