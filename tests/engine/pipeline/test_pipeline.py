"""The Synthesizer on a tiny random bundle: exact lengths, determinism, cache, cancellation."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dubstudio.core.errors import RenderCancelled, ValidationError
from dubstudio.core.timing import Slot, budget_for_samples
from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
from dubstudio.engine.pipeline import Synthesizer

FPS = [Fraction(24000, 1001), Fraction(25), Fraction(30000, 1001)]
RATES = [22050, 44100, 48000]


@pytest.fixture(scope="module")
def fast_synthesizer(fast_tiny_bundle: object) -> Synthesizer:
    return Synthesizer.from_bundle(fast_tiny_bundle, "cpu")  # type: ignore[arg-type]


@given(
    fps=st.sampled_from(FPS),
    rate=st.sampled_from(RATES),
    start=st.integers(0, 10_000),
    frames=st.integers(1, 90),
    mode=st.sampled_from(["exact", "budget", "free"]),
    lead_in=st.integers(0, 2000),
    seed=st.integers(0, 2**31),
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_every_output_has_exactly_the_budgeted_samples(
    fast_synthesizer: Synthesizer,
    voice_wav: Path,
    fps: Fraction,
    rate: int,
    start: int,
    frames: int,
    mode: str,
    lead_in: int,
    seed: int,
) -> None:
    slot = Slot(start, start + frames)
    target = slot.n_samples(fps, rate)
    lead_in = min(lead_in, target // 4)
    request = SynthesisRequest(
        "Hello there. This is a test line!",
        VoiceRef.from_file(voice_wav),
        sample_rate=rate,
        target_samples=target,
        duration_mode=mode,  # type: ignore[arg-type]
        lead_in_samples=lead_in,
        seed=seed,
        cfm_steps=2,
    )
    check_exact_length(fast_synthesizer, request, mode)


@given(
    fps=st.sampled_from(FPS),
    rate=st.sampled_from(RATES),
    frames=st.integers(1, 60),
    mode=st.sampled_from(["exact", "budget", "free"]),
)
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_small_kind_outputs_have_exactly_the_budgeted_samples(
    tiny_synthesizer: Synthesizer, voice_wav: Path, fps: Fraction, rate: int, frames: int, mode: str
) -> None:
    target = Slot(100, 100 + frames).n_samples(fps, rate)
    request = SynthesisRequest(
        "Hello world, the voice.",
        VoiceRef.from_file(voice_wav),
        sample_rate=rate,
        target_samples=target,
        duration_mode=mode,  # type: ignore[arg-type]
        cfm_steps=2,
    )
    check_exact_length(tiny_synthesizer, request, mode)


def check_exact_length(syn: Synthesizer, request: SynthesisRequest, mode: str) -> None:
    target = request.target_samples
    assert target is not None
    rate = request.sample_rate
    lead_in = request.lead_in_samples
    result = syn.synthesize(request)
    assert result.audio.shape == (target,)
    assert result.audio.dtype == np.float32
    assert result.sample_rate == rate
    assert not result.audio[:lead_in].any()
    speech = target - lead_in
    tokens, mel_frames = budget_for_samples(
        speech, rate, syn.bundle.token_rate, syn.bundle.mel_rate
    )
    # S2M always decodes exactly the slot's mel frames; "exact" also fixes the token count.
    assert result.mel_frames == max(1, mel_frames)
    if mode == "exact":
        assert result.tokens == max(1, tokens)


def test_same_request_and_seed_give_identical_samples(tiny_bundle: object, voice_wav: Path) -> None:
    request = SynthesisRequest(
        "Same words, same seed.", VoiceRef.from_file(voice_wav), target_samples=36000, seed=5
    )
    # Two separately loaded synthesizers: nothing but the request and seed decides the samples.
    second = Synthesizer.from_bundle(tiny_bundle, "cpu")  # type: ignore[arg-type]
    a = Synthesizer.from_bundle(tiny_bundle, "cpu").synthesize(request)  # type: ignore[arg-type]
    b = second.synthesize(request)
    assert np.array_equal(a.audio, b.audio)
    other = second.synthesize(
        SynthesisRequest(
            "Same words, same seed.", VoiceRef.from_file(voice_wav), target_samples=36000, seed=6
        )
    )
    assert not np.array_equal(a.audio, other.audio)


def test_second_line_of_a_voice_hits_the_cache(
    tiny_bundle: object, voice_wav: Path, tmp_path: Path
) -> None:
    syn = Synthesizer.from_bundle(tiny_bundle, "cpu")  # type: ignore[arg-type]
    voice = VoiceRef.from_file(voice_wav)
    first = syn.synthesize(SynthesisRequest("First line.", voice, target_samples=20000))
    assert (syn.voice_cache_misses, syn.voice_cache_hits) == (1, 0)
    second = syn.synthesize(SynthesisRequest("Second line.", voice, target_samples=20000))
    assert (syn.voice_cache_misses, syn.voice_cache_hits) == (1, 1)
    assert second.stage_seconds["conditioning"] < first.stage_seconds["conditioning"] + 1.0
    # A copy of the same file under another name is the same voice.
    copy = tmp_path / "copy.wav"
    shutil.copy(voice_wav, copy)
    syn.synthesize(SynthesisRequest("Third line.", VoiceRef.from_file(copy), target_samples=9000))
    assert (syn.voice_cache_misses, syn.voice_cache_hits) == (1, 2)
    # A different clip is a new voice.
    data, sr = sf.read(voice_wav, dtype="float32")
    sf.write(copy, data[::-1].copy(), sr)
    syn.synthesize(SynthesisRequest("Fourth.", VoiceRef.from_file(copy), target_samples=9000))
    assert syn.voice_cache_misses == 2


def test_cancellation_mid_cfm(tiny_synthesizer: Synthesizer, voice_wav: Path) -> None:
    stages: list[str] = []
    stop_after = {"s2m": 2}

    def on_progress(fraction: float, stage: str) -> None:
        stages.append(stage)

    def should_stop() -> bool:
        return stages.count("s2m") >= stop_after["s2m"]

    request = SynthesisRequest(
        "Stop me while the mel is being drawn.",
        VoiceRef.from_file(voice_wav),
        target_samples=30000,
        cfm_steps=8,
    )
    with pytest.raises(RenderCancelled):
        tiny_synthesizer.synthesize(request, on_progress=on_progress, should_stop=should_stop)
    # Stopped within one Euler step of the request: exactly two S2M steps ran.
    assert stages.count("s2m") == 2
    assert "vocoder" not in stages


def test_cancellation_during_t2s(tiny_synthesizer: Synthesizer, voice_wav: Path) -> None:
    stages: list[str] = []
    request = SynthesisRequest("Stop early.", VoiceRef.from_file(voice_wav), target_samples=30000)
    with pytest.raises(RenderCancelled):
        tiny_synthesizer.synthesize(
            request,
            on_progress=lambda f, s: stages.append(s),
            should_stop=lambda: stages.count("t2s") >= 3,
        )
    assert stages.count("t2s") == 3
    assert "s2m" not in stages


def test_progress_is_monotonic_and_ends_at_one(
    tiny_synthesizer: Synthesizer, voice_wav: Path
) -> None:
    seen: list[tuple[float, str]] = []
    tiny_synthesizer.synthesize(
        SynthesisRequest("Progress.", VoiceRef.from_file(voice_wav), target_samples=12000),
        on_progress=lambda f, s: seen.append((f, s)),
    )
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert seen[-1] == (1.0, "done")
    assert {"conditioning", "t2s", "s2m", "vocoder"} <= {s for _, s in seen}


def test_margins_are_silence_and_fit_dial_shortens_speech(
    tiny_synthesizer: Synthesizer, voice_wav: Path
) -> None:
    voice = VoiceRef.from_file(voice_wav)
    full = tiny_synthesizer.synthesize(
        SynthesisRequest(
            "Margins.", voice, target_samples=48000, lead_in_samples=4800, lead_out_samples=9600
        )
    )
    assert not full.audio[:4800].any() and not full.audio[-9600:].any()
    assert np.abs(full.audio[4800:-9600]).max() > 0
    natural = tiny_synthesizer.synthesize(
        SynthesisRequest("Margins.", voice, target_samples=96000, fit_dial=0.0, seed=3)
    )
    assert natural.natural_tokens is not None
    assert len(natural.audio) == 96000
    # At dial 0 the speech takes its natural token count; the rest of the slot is silence.
    assert abs(natural.tokens - natural.natural_tokens) <= 1


def test_natural_length_without_a_target(tiny_synthesizer: Synthesizer, voice_wav: Path) -> None:
    result = tiny_synthesizer.synthesize(
        SynthesisRequest("No slot given.", VoiceRef.from_file(voice_wav), sample_rate=22050)
    )
    assert len(result.audio) == result.mel_frames * 256


def test_emotion_modes(tiny_synthesizer: Synthesizer, voice_wav: Path, tmp_path: Path) -> None:
    voice = VoiceRef.from_file(voice_wav)
    data, sr = sf.read(voice_wav, dtype="float32")
    emo_clip = tmp_path / "angry.wav"
    sf.write(emo_clip, (data * np.linspace(0.2, 1.0, len(data))).astype(np.float32), sr)
    emotions = {
        "voice": EmotionRequest(),
        "vector": EmotionRequest("vector", (0, 0.8, 0, 0, 0, 0, 0, 0)),
        "audio": EmotionRequest("audio", audio=VoiceRef.from_file(emo_clip), alpha=1.0),
        "half-audio": EmotionRequest("audio", audio=VoiceRef.from_file(emo_clip), alpha=0.5),
        "text": EmotionRequest("text", description="trembling with fear"),
    }
    vectors = {}
    for name, emotion in emotions.items():
        request = SynthesisRequest("Feel it.", voice, emotion=emotion, target_samples=9000)
        vectors[name] = tiny_synthesizer._emovec(request, tiny_synthesizer._voice(voice))
        assert len(tiny_synthesizer.synthesize(request).audio) == 9000
    for name in ("vector", "audio", "text"):
        assert not torch.allclose(vectors[name], vectors["voice"]), name
    # alpha blends linearly between the voice's own emotion and the clip's.
    torch.testing.assert_close(
        vectors["half-audio"], (vectors["voice"] + vectors["audio"]) / 2, rtol=1e-5, atol=1e-6
    )


def test_text_emotion_needs_a_t2e_head(fast_synthesizer: Synthesizer, voice_wav: Path) -> None:
    voice = VoiceRef.from_file(voice_wav)
    with pytest.raises(ValidationError, match="emotion descriptions"):
        fast_synthesizer.synthesize(
            SynthesisRequest(
                "Feel it.",
                voice,
                emotion=EmotionRequest("text", description="quietly furious"),
                target_samples=20000,
            )
        )


def test_batch_matches_lengths_and_is_reproducible(
    fast_synthesizer: Synthesizer, voice_wav: Path
) -> None:
    voice = VoiceRef.from_file(voice_wav)
    requests = [
        SynthesisRequest(text, voice, target_samples=n, seed=2, request_id=str(i))
        for i, (text, n) in enumerate(
            [("One.", 8000), ("Two lines here.", 30000), ("Three, a longer line!", 41000)]
        )
    ]
    first = fast_synthesizer.synthesize_batch(requests)
    again = fast_synthesizer.synthesize_batch(requests)
    assert [len(r.audio) for r in first] == [8000, 30000, 41000]
    assert [r.request_id for r in first] == ["0", "1", "2"]
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.audio, b.audio)


def test_long_text_is_segmented_within_the_budget(
    fast_synthesizer: Synthesizer, voice_wav: Path
) -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(12))
    assert len(fast_synthesizer._segments(text)) > 1
    result = fast_synthesizer.synthesize(
        SynthesisRequest(text, VoiceRef.from_file(voice_wav), target_samples=48000 * 8)
    )
    assert len(result.audio) == 48000 * 8
    assert result.tokens == 8 * 50


@given(
    weights=st.lists(st.integers(1, 200), min_size=1, max_size=12),
    extra=st.integers(0, 5000),
)
def test_budget_split_across_segments_is_exact(weights: list[int], extra: int) -> None:
    from dubstudio.engine.pipeline import _split_counts

    total = len(weights) + extra
    parts = _split_counts(total, weights)
    assert sum(parts) == total
    assert min(parts) >= 1
    # Proportional within one unit of the ideal share.
    for part, w in zip(parts, weights, strict=True):
        assert abs((part - 1) - extra * w / sum(weights)) < 1 + 1e-9


def test_engine_failures_become_render_errors_naming_the_line(
    fast_tiny_bundle: object, voice_wav: Path
) -> None:
    from dubstudio.core.errors import RenderError

    syn = Synthesizer.from_bundle(fast_tiny_bundle, "cpu")  # type: ignore[arg-type]

    def broken_vocoder(mel: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("mel has the wrong number of bands")

    syn.components.vocoder = broken_vocoder
    request = SynthesisRequest(
        "Line.", VoiceRef.from_file(voice_wav), target_samples=9000, request_id="line-7"
    )
    with pytest.raises(RenderError, match=r"line-7.*wrong number of bands"):
        syn.synthesize(request)


@given(
    samples=st.integers(1, 48000 * 8),
    rate=st.sampled_from([16000, 22050, 24000, 32000, 44100, 48000, 96000]),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_sample_fit_lands_exactly_for_any_budget(
    samples: int, rate: int, fast_synthesizer: Synthesizer
) -> None:
    # The vocoder gives hop samples per budgeted mel frame; the fit must land on `samples`.
    _, frames = budget_for_samples(
        samples, rate, fast_synthesizer.bundle.token_rate, fast_synthesizer.bundle.mel_rate
    )
    wave = torch.full((max(frames, 1) * 256,), 0.25)
    out = fast_synthesizer._fit_to_rate(wave, samples, rate)
    assert out.shape == (samples,)
    assert out.dtype == np.float32
