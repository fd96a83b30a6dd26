"""Bundled small model runtime: phoneme front-end, GE2E parity with resemblyzer, tokenizer
shapes, tiny small bundles through the real pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from dubstudio.engine.text.phonemes import (
    PHONE_INDEX,
    TEXT_SPECIALS,
    VOCAB_SIZE,
    PhonemeFrontEnd,
    phone_of,
)


def _front_end() -> PhonemeFrontEnd:
    return PhonemeFrontEnd({"hello": ["hh", "ax", "l", "ow"], "world": ["w", "er", "l", "d"]})


def test_phone_of_maps_stress_and_schwa() -> None:
    assert phone_of("AH0") == "ax" and phone_of("AH1") == "ah" and phone_of("IY2") == "iy"


def test_front_end_units_marks_and_spelling() -> None:
    fe = _front_end()
    assert fe.units("Hello, world!") == ["hh", "ax", "l", "ow", ",", "w", "er", "l", "d", "!"]
    # Unknown words are spelled; digits are read out.
    assert fe.units("xy") == ["x", "y"]
    assert "_" in fe.units("hello 7")
    ids = fe.encode("Hello world zq")
    assert all(TEXT_SPECIALS <= i < VOCAB_SIZE for i in ids)
    assert ids[0] == TEXT_SPECIALS + PHONE_INDEX["hh"]


def test_front_end_segments_respect_limit() -> None:
    fe = _front_end()
    segs = fe.segments("Hello world. " * 20, max_tokens=7)
    assert all(0 < len(s) <= 7 for s in segs)
    assert sum(len(s) for s in segs) == len(fe.encode("Hello world. " * 20))


def test_ge2e_matches_resemblyzer(tmp_path: Path) -> None:
    resemblyzer = pytest.importorskip("resemblyzer")
    from dubstudio.engine.small import GE2EEncoder

    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    wav = (0.2 * np.sin(2 * np.pi * 150 * t * (1 + 0.1 * np.sin(3 * t)))).astype(np.float32)
    wav += 0.01 * rng.standard_normal(wav.shape).astype(np.float32)
    ours = GE2EEncoder.pretrained().embed(torch.from_numpy(wav)).numpy()
    theirs = resemblyzer.VoiceEncoder("cpu", verbose=False).embed_utterance(wav)
    # Partial slicing differs slightly from resemblyzer (its 1.3 partials per second); other
    # voices score ~0.6-0.8, the same audio ~0.98.
    assert float(ours @ theirs) > 0.95


def test_tiny_small_bundle_renders_exact_budget(tmp_path: Path) -> None:
    from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle, verify_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle

    root = create_tiny_small_bundle(tmp_path / "b", seed=1)
    bundle = load_bundle(root)
    assert bundle.kind == "dubstudio-small" and bundle.token_rate == 50
    assert verify_bundle(bundle).ok
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "v.wav", (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), 22050)
    synth = Synthesizer.from_bundle(bundle)
    emo = EmotionRequest(mode="vector", vector=(0, 1.0, 0, 0, 0, 0, 0, 0))
    out = synth.synthesize(
        SynthesisRequest(
            text="hello world",
            voice=VoiceRef(str(tmp_path / "v.wav")),
            emotion=emo,
            sample_rate=16000,
            target_samples=12345,
            duration_mode="exact",
            seed=3,
        )
    )
    assert len(out.audio) == 12345 and np.isfinite(out.audio).all()
    # Same seed files: identical weights.
    again = create_tiny_small_bundle(tmp_path / "c", seed=1)
    assert load_bundle(again).identity == bundle.identity


def test_decoder_settings_come_from_the_bundle_config(tmp_path: Path) -> None:
    """Guidance, step schedule and timbre match are bundle settings: the small builder reads
    them, changing the schedule changes the render (same seed, same steps), and an envelope
    that is not a whole number of cosines is refused by name."""
    import json

    from dubstudio.core.errors import ModelLoadError
    from dubstudio.engine.api import SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle, small_config

    t = np.arange(22050) / 22050
    sf.write(tmp_path / "v.wav", (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), 22050)
    request = SynthesisRequest(
        text="hello world", voice=VoiceRef(str(tmp_path / "v.wav")), sample_rate=16000,
        target_samples=8000, duration_mode="exact", seed=3,
    )  # fmt: skip
    renders = []
    for sway, cfg in ((-1.0, 1.6), (0.0, 0.7)):
        root = create_tiny_small_bundle(tmp_path / f"b{sway}", seed=1)
        manifest = json.loads((root / "bundle.json").read_text())
        assert manifest["config"]["cfm_sway"] == small_config("tiny")["cfm_sway"] == -1.0
        manifest["config"].update(
            cfm_sway=sway, cfg_rate=cfg, timbre_match=0.5, timbre_match_envelope=6
        )
        (root / "bundle.json").write_text(json.dumps(manifest))
        synth = Synthesizer.from_bundle(load_bundle(root))
        c = synth.components
        assert (c.cfm_sway, c.cfg_rate, c.timbre_match) == (sway, cfg, 0.5)
        assert c.timbre_match_envelope == 6
        renders.append(synth.synthesize(request).audio)
    assert len(renders[0]) == len(renders[1]) == 8000
    assert not np.allclose(renders[0], renders[1])
    for bad in (-1, 2.5, True, "12"):
        manifest["config"]["timbre_match_envelope"] = bad
        (root / "bundle.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelLoadError, match="timbre_match_envelope"):
            Synthesizer.from_bundle(load_bundle(root))


def _record_vocoder(synth: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keep a copy of every mel ``synth`` hands its vocoder and of the waveform it gets back,
    in order (the list returned)."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    vocoder = synth.components.vocoder

    def recording(mel: torch.Tensor) -> torch.Tensor:
        wave = vocoder(mel)
        seen.append((mel.detach().clone(), wave.detach().reshape(-1).clone()))
        return wave

    synth.components.vocoder = recording
    return seen


def test_voice_scope_timbre_match_adds_one_gain_per_voice_to_every_line(tmp_path: Path) -> None:
    """``timbre_match_scope`` "voice": the gain is measured once, on the voice's calibration
    render, and the same gain is added to every line's decoded mel, so lines keep their level
    and pitch differences; "line" matches each render to the reference on its own."""
    import json

    from dubstudio.core.errors import ModelLoadError
    from dubstudio.engine.api import SynthesisRequest, VoiceRef
    from dubstudio.engine.audio import _active_band_means
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.device import cpu_bf16_autocast
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle, small_config
    from dubstudio.engine.stylefit import FIT_TEXT

    assert small_config("tiny")["timbre_match_scope"] == "voice"
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "v.wav", (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), 22050)
    voice = VoiceRef(str(tmp_path / "v.wav"))
    root = create_tiny_small_bundle(tmp_path / "b", seed=1)
    manifest = json.loads((root / "bundle.json").read_text())

    def decoded_mels(scope: str, strength: float) -> tuple[Synthesizer, list[torch.Tensor]]:
        """The mel each of two lines hands the vocoder, with these settings."""
        # Without the emotion loudness, which would set each line's level on top.
        manifest["config"].update(
            timbre_match=strength, timbre_match_scope=scope, emotion_loudness=False
        )
        (root / "bundle.json").write_text(json.dumps(manifest))
        synth = Synthesizer.from_bundle(load_bundle(root))
        seen = _record_vocoder(synth)
        for text in ("hello world", "a much longer line of speech"):
            request = SynthesisRequest(text=text, voice=voice, seed=4, sample_rate=16000)
            synth.synthesize(request)
        return synth, [mel for mel, _ in seen]

    _, raw = decoded_mels("line", 0.0)
    synth, per_voice = decoded_mels("voice", 1.0)
    state = synth._voice(voice)
    assert state.timbre_gain is not None and state.timbre_gain.shape == (80,)
    for mel, plain in zip(per_voice, raw, strict=True):
        assert torch.allclose(
            mel - plain, state.timbre_gain[None, :, None].expand_as(mel), atol=1e-4
        )
    # The gain is the one that matches the calibration render to the reference clip (rendered
    # as the pipeline renders it: under bf16 autocast on a CPU that computes bf16 natively).
    cond, frames = synth._calibration_condition(voice, state, FIT_TEXT)
    with cpu_bf16_autocast(synth.device, enabled=synth.s2m_bf16):
        calib = synth._calibration_mel(state, cond, frames, state.features.style)[0].float()
    reference = _active_band_means(state.features.ref_mel.reshape(80, -1), 3.0)
    assert torch.allclose(_active_band_means(calib, 3.0) + state.timbre_gain, reference, atol=1e-3)

    _, per_line = decoded_mels("line", 1.0)
    for mel in per_line:  # each line matched to the reference on its own
        assert torch.allclose(_active_band_means(mel[0], 3.0), reference, atol=1e-3)

    manifest["config"]["timbre_match_scope"] = "song"
    (root / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="timbre_match_scope"):
        Synthesizer.from_bundle(load_bundle(root))


def test_emotion_loudness_sets_each_lines_level_from_the_voice_and_its_emotion(
    tmp_path: Path,
) -> None:
    """With ``emotion_loudness`` each line comes out at the reference clip's level plus its
    emotion's change: nothing for the voice's own emotion, the style's change for a slider,
    the mix of changes for a slider mix (scaled by alpha), the bounded read-out difference for
    an emotion clip. Levels are `mel_level_db` of the audio's mel, as for the clip; the level
    is set by one gain on the vocoder's output."""
    import json

    from dubstudio.core.errors import ModelLoadError
    from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
    from dubstudio.engine.audio import mel_level_db, mel_spectrogram
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle, mel_config, small_config
    from dubstudio.engine.t2s.emotion import EmotionLoudness, mix_weights

    assert small_config("tiny")["emotion_loudness"] is True
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "v.wav", (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), 22050)
    sf.write(tmp_path / "e.wav", (0.1 * np.sin(2 * np.pi * 260 * t)).astype(np.float32), 22050)
    voice, clip = VoiceRef(str(tmp_path / "v.wav")), VoiceRef(str(tmp_path / "e.wav"))
    root = create_tiny_small_bundle(tmp_path / "b", seed=1)
    synth = Synthesizer.from_bundle(load_bundle(root))
    loaded = synth.components.emotion_loudness
    assert isinstance(loaded, EmotionLoudness) and loaded.per_style.shape == (8,)
    # Distinct changes per style (the tiny bundle's are random and small).
    gen = torch.Generator().manual_seed(0)
    style_db = torch.tensor([3.5, 6.0, -6.5, -2.5, 0.5, -4.5, 4.0, 0.0])
    loudness = EmotionLoudness(style_db, torch.randn(loaded.weight.shape, generator=gen), 0.3)
    synth.components.emotion_loudness = loudness
    # Emotion guidance changes an emotional line's codes, and with them where the tiny random
    # vocoder peaks; it has a test of its own, so these lines keep one rendering.
    synth.components.emotion_guidance = 0.0
    seen = _record_vocoder(synth)

    def level(emotion: EmotionRequest, text: str = "hello world") -> float:
        """The line's level, measured on its audio as the clip's is on the clip."""
        audio = synth.synthesize(
            SynthesisRequest(text=text, voice=voice, emotion=emotion, seed=4, sample_rate=22050)
        ).audio
        wave = seen[-1][1]
        assert audio.shape == wave.shape  # natural length at the vocoder's rate
        factor = float(torch.from_numpy(audio) @ wave / (wave @ wave))
        assert np.allclose(audio, factor * wave.numpy(), atol=1e-6)  # a gain, nothing else
        return mel_level_db(mel_spectrogram(torch.from_numpy(audio), mel_config()))

    own = level(EmotionRequest())
    state = synth._voice(voice)
    # A line in the voice's own emotion comes out at the reference clip's level.
    assert state.level_db == pytest.approx(mel_level_db(state.features.ref_mel[0]))
    assert own == pytest.approx(state.level_db, abs=1e-3)
    assert level(EmotionRequest(), "a much longer line of speech") == pytest.approx(own, abs=1e-3)
    for k in (0, 2, 7):
        slider = EmotionRequest(mode="vector", vector=tuple(float(i == k) for i in range(8)))
        assert level(slider) == pytest.approx(own + float(style_db[k]), abs=1e-3)
    mix = (0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0)
    expected = sum(w * d for w, d in zip(mix_weights(mix, 0.8), style_db.tolist(), strict=True))
    assert expected == pytest.approx(0.8 * (0.5 * 3.5 - 0.25 * 6.5))
    assert level(EmotionRequest(mode="vector", vector=mix, alpha=0.8)) == pytest.approx(
        own + expected, abs=1e-3
    )
    # An emotion clip: the read-outs' difference, within the styles' range.
    emotion = EmotionRequest(mode="audio", audio=clip, alpha=0.7)
    merged = synth._emovec(SynthesisRequest(text="x", voice=voice, emotion=emotion), state)
    change = loudness.read(merged) - loudness.read(state.base_emovec)
    bounded = min(max(change, -6.5), 6.0)
    assert loudness.of_clip(merged, state.base_emovec) == pytest.approx(bounded)
    assert level(emotion) == pytest.approx(own + bounded, abs=1e-3)

    # A change that would push the line far past full scale lowers the whole line to peak
    # MAX_LIMIT_DB over, and the limiter brings those peaks under it.
    synth.components.emotion_loudness = EmotionLoudness(
        torch.full((8,), 60.0), loudness.weight, 0.0
    )
    loud = synth.synthesize(
        SynthesisRequest(
            text="hello world", voice=voice, seed=4, sample_rate=22050,
            emotion=EmotionRequest(mode="vector", vector=(1.0,) + (0.0,) * 7),
        )
    ).audio  # fmt: skip
    wave = seen[-1][1].numpy()
    assert 0.95 < float(np.abs(loud).max()) <= 0.98 + 1e-6
    strong = np.abs(wave) > 0.2 * np.abs(wave).max()
    gain = loud[strong] / wave[strong]
    assert float(gain.min()) > 0.0
    assert float(gain.max()) <= 2 * 0.98 / float(np.abs(wave).max()) * (1 + 1e-5)

    manifest = json.loads((root / "bundle.json").read_text())
    manifest["config"]["emotion_loudness"] = "yes"
    (root / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="emotion_loudness"):
        Synthesizer.from_bundle(load_bundle(root))
    manifest["config"]["emotion_loudness"] = False  # off: no read-out, no level set
    (root / "bundle.json").write_text(json.dumps(manifest))
    plain = Synthesizer.from_bundle(load_bundle(root))
    assert plain.components.emotion_loudness is None
    assert plain._voice(voice).level_db is None


def test_emotion_range_rescales_the_pitch_of_emotional_lines_only(tmp_path: Path) -> None:
    """With an emotion range, an emotional line's vocoder output has its log-F0 contour scaled
    around its median by ``exp(change)`` (the slider mix or the clip read-out, as the emotion
    loudness mixes its changes); a line in the voice's own emotion is left as it came."""
    from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.intonation import scale_pitch_range
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle, small_config
    from dubstudio.engine.t2s.emotion import EmotionRange, mix_weights

    assert small_config("tiny")["emotion_range"] is True
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "v.wav", (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), 22050)
    sf.write(tmp_path / "e.wav", (0.1 * np.sin(2 * np.pi * 260 * t)).astype(np.float32), 22050)
    voice, clip = VoiceRef(str(tmp_path / "v.wav")), VoiceRef(str(tmp_path / "e.wav"))
    synth = Synthesizer.from_bundle(load_bundle(create_tiny_small_bundle(tmp_path / "b", seed=1)))
    loaded = synth.components.emotion_range
    assert isinstance(loaded, EmotionRange) and loaded.per_style.shape == (8,)
    gen = torch.Generator().manual_seed(0)
    per_style = torch.tensor([0.4, 0.3, -0.5, 0.2, 0.25, -0.3, 0.45, 0.0])
    pitch_range = EmotionRange(per_style, torch.randn(loaded.weight.shape, generator=gen), 0.1)
    synth.components.emotion_range = pitch_range
    synth.components.emotion_loudness = None  # the vocoder's output as it comes, level too
    synth.components.emotion_guidance = 0.0
    # The tiny random vocoder makes no voiced sound: it hands on a gliding harmonic tone of
    # its output's length instead, so there is a pitch contour to move.
    vocoder = synth.components.vocoder
    made: list[torch.Tensor] = []

    def voiced(mel: torch.Tensor) -> torch.Tensor:
        n = vocoder(mel).numel()
        k = torch.arange(n) / 22050
        f0 = 150 + 30 * torch.sin(2 * np.pi * 2.0 * k)
        phase = 2 * np.pi * torch.cumsum(f0, 0) / 22050
        made.append(sum(torch.sin(h * phase) / h for h in range(1, 12)) * 0.1)
        return made[-1]

    synth.components.vocoder = voiced

    def render(emotion: EmotionRequest) -> torch.Tensor:
        request = SynthesisRequest(
            text="hello world world", voice=voice, emotion=emotion, seed=4, sample_rate=22050
        )
        return torch.from_numpy(synth.synthesize(request).audio)

    assert torch.equal(render(EmotionRequest()), made[-1])  # the voice's own emotion
    for k in (0, 2, 7):
        slider = EmotionRequest(mode="vector", vector=tuple(float(i == k) for i in range(8)))
        out = render(slider)
        factor = float(per_style[k].exp())
        assert torch.allclose(out, scale_pitch_range(made[-1], 22050, factor), atol=1e-6)
        if k == 7:  # calm: no change asked
            assert torch.equal(out, made[-1])
    mix = (0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0)
    change = pitch_range.of_weights(mix_weights(mix, 0.8))
    assert change == pytest.approx(0.8 * (0.5 * 0.4 - 0.25 * 0.5))
    out = render(EmotionRequest(mode="vector", vector=mix, alpha=0.8))
    assert torch.allclose(out, scale_pitch_range(made[-1], 22050, np.exp(change)), atol=1e-6)
    # An emotion clip: the read-outs' difference, within the styles' range.
    emotion = EmotionRequest(mode="audio", audio=clip, alpha=0.7)
    state = synth._voice(voice)
    merged = synth._emovec(SynthesisRequest(text="x", voice=voice, emotion=emotion), state)
    change = min(max(pitch_range.read(merged) - pitch_range.read(state.base_emovec), -0.5), 0.45)
    out = render(emotion)
    assert torch.allclose(out, scale_pitch_range(made[-1], 22050, np.exp(change)), atol=1e-6)


def test_repel_style_moves_away_from_the_nearest_anchor_only() -> None:
    from dubstudio.engine.small import repel_style

    gen = torch.Generator().manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(4, 256, generator=gen), dim=-1)
    # An unseen voice between anchors 0 and 1, closer to 0.
    s = torch.nn.functional.normalize(0.7 * anchors[0] + 0.3 * anchors[1], dim=0)
    moved = repel_style(s, anchors, 1.0)
    assert moved.shape == s.shape and float(moved.norm()) == pytest.approx(1.0, abs=1e-6)
    assert float(moved @ anchors[0]) < float(s @ anchors[0]) - 0.05
    # s + (s - a0): the component along the difference doubles, nothing else is added.
    expected = torch.nn.functional.normalize(2 * s - anchors[0], dim=0)
    assert torch.allclose(moved, expected, atol=1e-6)
    # A training voice's own clip sits on its anchor: unchanged.
    assert torch.allclose(repel_style(anchors[2][None], anchors, 1.0), anchors[2][None], atol=1e-6)
    # Strength 0, or no anchors: unchanged; batched input keeps its shape.
    assert torch.equal(repel_style(s, anchors, 0.0), s)
    assert torch.equal(repel_style(s, None, 1.0), s)
    batch = torch.stack([s, anchors[3]])
    out = repel_style(batch, anchors, 0.5)
    assert out.shape == (2, 256) and torch.allclose(out[1], anchors[3], atol=1e-6)


def test_bundle_style_anchors_load_and_repel_the_reference_style(tmp_path: Path) -> None:
    """A config naming training voices gets speakers.safetensors; the builder loads the anchors
    and the reference encoder repels a clip's style from the nearest by ``style_repel``."""
    import json

    from dubstudio.engine.bundles import load_bundle, verify_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import build_modules, small_config, write_small_bundle

    t = np.arange(22050) / 22050
    clip = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    config = small_config("tiny")
    config["style_anchors"] = ["a", "b"]
    torch.manual_seed(0)
    modules = build_modules(config)
    anchors = torch.nn.functional.normalize(torch.randn(2, 256), dim=-1)
    with torch.no_grad():
        modules["speakers"]["anchors"].copy_(anchors)  # type: ignore[index,operator]
    styles = []
    for repel in (0.0, 1.0):
        config["style_repel"] = repel
        root = write_small_bundle(
            tmp_path / f"r{repel}", modules, config, name="anchored", lexicon=None, cfm_steps=2
        )
        assert (root / "speakers.safetensors").is_file()
        manifest = json.loads((root / "bundle.json").read_text())
        assert "speakers.safetensors" in manifest["files"]
        bundle = load_bundle(root)
        assert verify_bundle(bundle).ok
        ref = Synthesizer.from_bundle(bundle).components.reference_encoder
        assert torch.allclose(ref.anchors, anchors) and ref.repel == repel
        styles.append(ref.encode(clip.astype(np.float32), 22050).style[0])
    near = anchors[int(torch.argmax(anchors @ styles[0]))]
    assert float(styles[1] @ near) < float(styles[0] @ near)
    # Without training voices in the config there is no anchor file and nothing moves.
    plain = build_modules(small_config("tiny"))
    assert "speakers" not in plain


def test_tokenizer_codes_have_token_rate_length() -> None:
    from dubstudio.engine.small import FrameTokenizer

    tok = FrameTokenizer(16, 2)
    mel = torch.randn(2, 80, 173)  # 2 s of frames
    codes = tok.codes(mel, 50)
    assert codes.shape == (2, 50) and int(codes.max()) < len(PHONE_INDEX)


def test_pitch_track_follows_sines_and_marks_silence_unvoiced() -> None:
    from dubstudio.engine.analysis import pitch_track

    rate = 16000
    t = np.arange(rate) / rate
    for f0 in (75.0, 140.0, 310.0):
        track = pitch_track(np.sin(2 * np.pi * f0 * t), rate, 320)
        assert track.shape == (50,)
        assert abs(float(track[3:-3].median()) - f0) < 0.02 * f0
    silence = pitch_track(np.zeros(rate), rate, 320)
    assert float(silence.abs().max()) == 0.0
    noise = pitch_track(np.random.default_rng(0).normal(0, 0.3, rate), rate, 320)
    assert float((noise > 0).float().mean()) < 0.2


def test_pitch_codes_bin_voiced_phone_runs_against_the_speaker() -> None:
    from dubstudio.engine.small import N_PHONES, log_f0_stats, phone_log_f0, pitch_codes

    aa, s = PHONE_INDEX["aa"], PHONE_INDEX["s"]
    phones = torch.tensor([aa, aa, s, s, aa, aa, aa])
    f0 = torch.tensor([100.0, 104.0, 0.0, 0.0, 150.0, 0.0, 155.0])
    log_f0 = phone_log_f0(phones, f0)
    # One value per phone run (median of its voiced frames); unvoiced phones have none.
    assert torch.isnan(log_f0[2:4]).all()
    assert log_f0[0] == log_f0[1] and log_f0[4] == log_f0[6]
    mean, std = float(np.log(120.0)), 0.1
    codes = pitch_codes(phones, log_f0, mean, std)
    assert codes.tolist() == [aa, aa, N_PHONES + s, N_PHONES + s, *[2 * N_PHONES + aa] * 3]
    assert pitch_codes(phones, log_f0, mean, std, bins=1).tolist() == phones.tolist()
    # The same contour a speaker an octave up is read against that speaker: same codes.
    up = phone_log_f0(phones, f0 * 2)
    assert pitch_codes(phones, up, mean + float(np.log(2.0)), std).tolist() == codes.tolist()
    assert log_f0_stats([]) == (float(np.log(120.0)), 0.15)


def test_five_pitch_levels_split_the_outer_levels_of_three() -> None:
    from dubstudio.engine.small import N_PHONES, PITCH_EDGES, coarser_level, pitch_codes

    aa = PHONE_INDEX["aa"]
    z = torch.tensor([-2.5, -1.0, -0.2, 0.0, 0.3, 1.0, 2.5, float("nan")])
    phones = torch.full(z.shape, aa)
    assert (pitch_codes(phones, z, 0.0, 1.0, 3) // N_PHONES).tolist() == [0, 0, 1, 1, 1, 2, 2, 1]
    five = pitch_codes(phones, z, 0.0, 1.0, 5)
    assert (five // N_PHONES).tolist() == [0, 1, 2, 2, 2, 3, 4, 2]
    assert (five % N_PHONES == aa).all()
    # Every 5-level code lies within the 3-level code of the same phone and log-F0.
    rand = torch.randn(500) * 1.5
    many = torch.full(rand.shape, aa)
    fine = (pitch_codes(many, rand, 0.0, 1.0, 5) // N_PHONES).tolist()
    coarse = (pitch_codes(many, rand, 0.0, 1.0, 3) // N_PHONES).tolist()
    assert [coarser_level(x, 5, 3) for x in fine] == coarse
    assert set(fine) == {0, 1, 2, 3, 4} and PITCH_EDGES[5][1:3] == PITCH_EDGES[3]
    with pytest.raises(ValueError, match="pitch bins"):
        pitch_codes(many, rand, 0.0, 1.0, 4)


def test_a_fresh_export_has_the_shipped_bundles_inference_settings() -> None:
    """`dubstudio train export` writes `small_config("default")`: what the shipped bundle sets
    for inference (style fit, timbre match, repel, decoder schedule, sampling) must be there."""
    import json

    from dubstudio.engine.small import small_config

    shipped_path = (
        Path(__file__).resolve().parents[3]
        / "resources" / "models" / "dubstudio-small-en" / "bundle.json"
    )  # fmt: skip
    shipped = json.loads(shipped_path.read_text())["config"]
    fresh = small_config("default")
    settings = ("style_fit", "style_fit_keep", "timbre_match", "timbre_match_envelope",
                "timbre_match_scope", "style_repel", "cfg_rate", "cfm_sway", "decode",
                "pitch_bins", "cpu_vocoder", "t2s_candidates", "emotion_guidance",
                "emotion_loudness", "emotion_range")  # fmt: skip
    assert {k: fresh[k] for k in settings} == {k: shipped[k] for k in settings}


def test_phone_mismatch_reads_the_phones_the_codes_say() -> None:
    """Codes name a phone (``code % 41``) at a pitch level; repeats, pauses and the schwa/``ah``
    split do not count, a skipped or swapped phone does."""
    from dubstudio.engine.small import N_PHONES, phone_mismatch

    text = torch.tensor(_front_end().encode("hello world"))  # hh ax l ow _ w er l d
    p = PHONE_INDEX

    def codes(*runs: tuple[str, int, int]) -> torch.Tensor:
        """(phone, pitch level, frames) runs -> codes."""
        return torch.tensor([lvl * N_PHONES + p[ph] for ph, lvl, n in runs for _ in range(n)])

    said = [("pau", 1, 3), ("hh", 1, 2), ("ah", 2, 3), ("l", 0, 2), ("ow", 1, 4), ("pau", 1, 1),
            ("w", 1, 2), ("er", 2, 3), ("l", 1, 2), ("d", 1, 2), ("pau", 1, 5)]  # fmt: skip
    assert phone_mismatch(codes(*said), text) == 0.0
    skipped = [r for r in said if r[0] != "w"]
    assert phone_mismatch(codes(*skipped), text) == pytest.approx(1 / 8)
    swapped = [("m", 1, 2) if r[0] == "hh" else r for r in said]
    assert phone_mismatch(codes(*swapped), text) == pytest.approx(1 / 8)
    # Spelled letters and marks are not phones: only the lexicon word is scored.
    spelled = torch.tensor(_front_end().encode("hello, xq."))
    assert phone_mismatch(codes(*said[:5]), spelled) == 0.0


def _tiny_bundle_with(tmp_path: Path, **config: object) -> tuple[Path, dict[str, Any], Path]:
    """A tiny small bundle with ``config`` set in its manifest, that manifest, and a 140 Hz
    voice clip."""
    import json

    from dubstudio.engine.small import create_tiny_small_bundle

    root = create_tiny_small_bundle(tmp_path / "b", seed=1)
    manifest = json.loads((root / "bundle.json").read_text())
    manifest["config"].update(config)
    (root / "bundle.json").write_text(json.dumps(manifest))
    t = np.arange(22050) / 22050
    clip = tmp_path / "v.wav"
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), 22050)
    return root, manifest, clip


def test_t2s_candidates_keep_the_sample_most_faithful_to_the_text(tmp_path: Path) -> None:
    """With ``t2s_candidates`` 4 every segment is decoded four times in one batch and the sample
    the ranker scores lowest is the one rendered (free length, so its token count shows which)."""
    import json

    from dubstudio.core.errors import ModelLoadError
    from dubstudio.engine.api import SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import phone_mismatch

    root, manifest, clip = _tiny_bundle_with(tmp_path, t2s_candidates=4)
    synth = Synthesizer.from_bundle(load_bundle(root))
    assert synth.components.t2s_candidates == 4
    seen: list[tuple[float, int]] = []

    def ranker(codes: torch.Tensor, text: torch.Tensor) -> float:
        score = phone_mismatch(codes, text)
        seen.append((score, int(codes.numel())))
        return score

    synth.components.code_ranker = ranker
    request = SynthesisRequest(text="hello world", voice=VoiceRef(str(clip)), seed=5)
    out = synth.synthesize(request)
    calibration = len(seen) - 4  # a style fit's calibration render, where the bundle has one
    line = seen[calibration:]
    assert len(line) == 4
    best = min(range(4), key=lambda i: (line[i][0], i))
    assert out.tokens == line[best][1]

    manifest["config"]["t2s_candidates"] = 0
    (root / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="t2s_candidates"):
        Synthesizer.from_bundle(load_bundle(root))


def test_emotion_guidance_pushes_emotional_lines_away_from_the_voices_own_reading(
    tmp_path: Path,
) -> None:
    """A line with an emotion of its own decodes against the voice's own emotion vector at the
    bundle's weight and still fills its budget exactly; a line in the voice's own emotion
    decodes plainly."""
    import json

    from dubstudio.core.errors import ModelLoadError
    from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer

    root, manifest, clip = _tiny_bundle_with(tmp_path, emotion_guidance=1.5)
    voice = VoiceRef(str(clip))
    synth = Synthesizer.from_bundle(load_bundle(root))
    t2s = synth.components.t2s
    calls: list[tuple[torch.Tensor | None, float]] = []
    plain_generate = t2s.generate

    def generate(*args: object, **kwargs: object) -> list[torch.Tensor]:
        calls.append((kwargs.get("guide_emovec"), float(kwargs.get("guidance", 0.0))))  # type: ignore[arg-type]
        return plain_generate(*args, **kwargs)  # type: ignore[no-any-return]

    t2s.generate = generate
    sad = EmotionRequest(mode="vector", vector=(0, 0, 1, 0, 0, 0, 0, 0))
    for emotion in (sad, EmotionRequest()):
        calls.clear()
        out = synth.synthesize(
            SynthesisRequest(
                text="hello world",
                voice=voice,
                emotion=emotion,
                target_samples=20000,
                duration_mode="exact",
                seed=3,
            )
        )
        assert len(out.audio) == 20000
        guide, weight = calls[-1]
        if emotion.mode == "voice":
            assert guide is None and weight == 0.0
        else:
            state = synth._voice(voice)
            assert guide is not None and torch.equal(guide, state.base_emovec)
            assert weight == 1.5

    manifest["config"]["emotion_guidance"] = -1
    (root / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="emotion_guidance"):
        Synthesizer.from_bundle(load_bundle(root))
