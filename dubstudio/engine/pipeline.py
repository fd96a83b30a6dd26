"""The Synthesizer: one line request in, exactly the budgeted number of samples out.

Dataflow (ENGINE_SPEC §2): reference clip → `ReferenceFeatures` (cached per voice) → T2S GPT
speaker latents and emotion vector → semantic codes per text segment (token budget) → GPT
latents → S2M content regulated to exactly the segment's mel-frame budget → flow-matching mel
→ vocoder → resampled to the requested rate, fitted to the sample budget, framed by silence.

Dimension legend: B batch (segments of one line, or lines of one voice), T semantic tokens,
D GPT width, D_c content width, C regulator channels, M mel bands, F mel frames, N samples.

The budget is applied at three levels, all derived from one call of
`core.timing.budget_for_samples` on the speech part of the slot:
1. T2S tokens: the GPT is asked for exactly that many tokens (``exact``) or told it (``budget``).
2. S2M mel frames: the length regulator stretches the content to exactly that many frames.
3. Samples: the vocoder output (``hop`` samples per frame) is cut or zero-padded by less than
   one frame at the vocoder rate to the rate-converted budget, resampled, and a final fix of
   at most `MAX_FINAL_FIX` samples (asserted) lands it on the exact count.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dubstudio.core.errors import DubStudioError, ModelLoadError, RenderError, ValidationError
from dubstudio.core.timing import budget_for_samples, round_half_up
from dubstudio.engine import stylefit
from dubstudio.engine.api import (
    ProgressCallback,
    StopCallback,
    SynthesisRequest,
    SynthesisResult,
    VoiceRef,
    raise_if_stopped,
)
from dubstudio.engine.audio import (
    match_spectral_mean,
    mel_level_db,
    mel_spectrogram,
    resample,
    spectral_mean_gain,
    with_gain,
)
from dubstudio.engine.bundles import KIND_OFFICIAL, KIND_SMALL, ModelBundle, load_bundle
from dubstudio.engine.device import autocast_context, cpu_bf16_autocast, select_device
from dubstudio.engine.intonation import scale_pitch_range
from dubstudio.engine.reference import (
    CodeEmbedder,
    ReferenceEncoder,
    ReferenceFeatures,
    load_reference,
)
from dubstudio.engine.t2s.emotion import (
    EmotionLoudness,
    EmotionRange,
    emotion_vector_from_weights,
    mix_weights,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ProsodyChange:
    """What a line's emotion changes after the vocoder, against the voice's own reading.

    Attributes:
        level_db: Level change in dB (`EngineComponents.emotion_loudness`).
        log_range: Log of the pitch-range factor (`EngineComponents.emotion_range`).
    """

    level_db: float = 0.0
    log_range: float = 0.0


#: Largest final trim/pad (samples at the output rate) after resampling; anything larger is a bug.
MAX_FINAL_FIX = 3
#: Voices kept in the per-voice cache.
VOICE_CACHE_SIZE = 32
#: Share of a request's progress bar per stage.
_STAGE_SPAN = {"conditioning": (0.0, 0.05), "t2s": (0.05, 0.5), "s2m": (0.5, 0.92)}


# ----------------------------------------------------------------------------------------------
# Components


@dataclass
class EngineComponents:
    """The loaded parts of one bundle.

    Attributes:
        bundle: The bundle they came from.
        device: Where they live.
        front_end: Text front-end: ``segments(text) -> list of token-id lists``.
        reference_encoder: Voice clip -> `ReferenceFeatures`.
        code_embedder: Semantic codes -> S2M content.
        t2s: `dubstudio.engine.t2s.model.UnifiedVoice`.
        s2m: `dubstudio.engine.s2m.S2MModel`.
        vocoder: Mel (B, M, F) -> waveform (B, N) at ``bundle.mel.sample_rate``.
        emotion_matrices: `t2s.emotion.EmotionMatrices` or None (no eight-value emotions).
        text_to_emotion: Description -> eight weights, or None.
        decode_params: T2S sampling settings (None = the T2S defaults).
        cfg_rate: Classifier-free guidance strength of the S2M decoder.
        cfm_sway: Sway coefficient of the S2M decoder's step schedule (0 = uniform; see
            `s2m.model.sway_schedule`).
        timbre_match: Strength of `audio.match_spectral_mean` between the decoded mel and the
            voice's reference mel (0 = off; the bundled model uses 1).
        timbre_match_envelope: Cosine coefficients of the match's per-band gain curve that are
            applied (its spectral envelope; 0 = every band, which also imprints the reference's
            pitch on the render).
        timbre_match_scope: ``"line"``: every render's long-term spectrum is matched to the
            reference's, which also sets its level and band by band its pitch to the clip's,
            whatever the emotion asks; ``"voice"``: the gain is measured once per voice, on a
            calibration render in the voice's own emotion, and added to every line, so a line's
            loudness and pitch change against the voice's own reading survive.
        style_fit_steps: Gradient steps of the per-voice style fit (`dubstudio.engine.stylefit`;
            0 = off). Needs ``speaker_encoder`` and ``mel_speaker_encoder``.
        style_fit_keep: Share of the fitted move from the voice's own style that is used, in
            (0, 1] (`stylefit.fit_style`'s ``keep``).
        style_fit_known: Speaker cosine between a reference clip and a training voice's style
            anchor (``style_anchors``) at or above which the voice counts as one the decoder
            was trained on and is not fitted; None fits every voice.
        style_anchors: (V, S) speaker embeddings of the training voices (their directions are
            compared), or None.
        speaker_encoder: 16 kHz waveform -> unit speaker embedding (``embed``), or None.
        mel_speaker_encoder: The same embedding from a decoded log-mel (1, M, F), differentiable
            (`stylefit.MelSpeakerEncoder`), or None.
        emotion_loudness: Each emotion's level change against the voice's own reading
            (`t2s.emotion.EmotionLoudness`), or None. With it each line is set to the
            reference clip's level plus this change, both measured the same way on the
            waveform (`audio.mel_level_db` of its mel), by a gain on the vocoder's output
            (`audio.with_gain`), so the vocoder is never driven past the levels it learnt;
            peaks the gain would put past full scale go through a look-ahead limiter
            (`audio.limit_peaks`), so a loud emotion keeps its level.
        emotion_range: How much further each emotion's pitch range has to move than the
            decoder moves it (`t2s.emotion.EmotionRange`), or None. With it the vocoder's
            output of an emotional line has its log-F0 contour scaled around its median by
            ``exp(change)`` (`intonation.scale_pitch_range`; before the level is set); lines
            in the voice's own emotion and calm lines are not touched.
        t2s_candidates: T2S samples decoded per segment (in the same batch); the one that
            ``code_ranker`` scores lowest is kept (the earliest on a tie). 1 = plain sampling.
        emotion_guidance: Weight w of emotion guidance in T2S sampling for lines that ask for
            an emotion (sliders, description or clip): each step samples from
            ``l + w * (l - l_voice)``, ``l_voice`` the logits under the voice's own emotion
            vector, so what the emotion changes comes out stronger (`t2s.decoding`). 0 = off;
            one beam only.
        code_ranker: ``(codes (T_tok,), text_ids (L,)) -> score``, lower is better (the small
            model's `small.phone_mismatch`), or None.
    """

    bundle: ModelBundle
    device: torch.device
    front_end: Any
    reference_encoder: ReferenceEncoder
    code_embedder: CodeEmbedder
    t2s: Any
    s2m: Any
    vocoder: Callable[[torch.Tensor], torch.Tensor]
    emotion_matrices: Any = None
    text_to_emotion: Callable[[str], Sequence[float]] | None = None
    decode_params: Any = None
    cfg_rate: float = 0.7
    cfm_sway: float = 0.0
    timbre_match: float = 0.0
    timbre_match_envelope: int = 0
    timbre_match_scope: str = "line"
    style_fit_steps: int = 0
    style_fit_keep: float = 1.0
    style_fit_known: float | None = None
    style_anchors: torch.Tensor | None = None
    speaker_encoder: Any = None
    mel_speaker_encoder: Any = None
    emotion_loudness: EmotionLoudness | None = None
    emotion_range: EmotionRange | None = None
    t2s_candidates: int = 1
    emotion_guidance: float = 0.0
    code_ranker: Callable[[torch.Tensor, torch.Tensor], float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def build_components(bundle: ModelBundle, device: torch.device | None) -> EngineComponents:
    """Load every component of ``bundle`` strictly (each missing key is named).

    Args:
        bundle: The bundle.
        device: Target device (None = CPU).
    """
    device = device or torch.device("cpu")
    if bundle.kind == KIND_OFFICIAL:
        return _build_official(bundle, device)
    if bundle.kind == KIND_SMALL:
        return _build_small(bundle, device)
    raise ModelLoadError(f"Unknown model kind '{bundle.kind}' in {bundle.root}.")


class _CodecEmbedder:
    """Official `CodeEmbedder`: the semantic codec's `vq2emb` (codes -> 1024-d content)."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) -> content (B, T, 1024)."""
        return self.codec.vq2emb(codes)  # type: ignore[no-any-return]


def _build_official(bundle: ModelBundle, device: torch.device) -> EngineComponents:
    """The official IndexTTS-2 directory (ENGINE_SPEC §1): every component loaded strictly."""
    from dubstudio.engine.audio import MelConfig, kaldi_fbank, mel_spectrogram
    from dubstudio.engine.bundles import read_official_s2mel, read_official_tensor
    from dubstudio.engine.campplus import CAMPPlus
    from dubstudio.engine.codec import RepCodec
    from dubstudio.engine.reference import OfficialReferenceEncoder
    from dubstudio.engine.s2m import S2MConfig, S2MModel
    from dubstudio.engine.t2s.config import T2SConfig
    from dubstudio.engine.t2s.emotion import EmotionMatrices
    from dubstudio.engine.t2s.model import UnifiedVoice
    from dubstudio.engine.text import BpeFrontEnd
    from dubstudio.engine.vocoders.bigvgan import BigVGAN
    from dubstudio.engine.w2vbert import W2VBertFeatures

    root = bundle.root
    cache = root / "hf_cache"
    missing = [rel for rel in bundle.files if not (root / rel).is_file()]
    if missing:
        raise ModelLoadError(
            f"The IndexTTS-2 directory {root} is incomplete; missing: {', '.join(missing)}. "
            "Run `dubstudio models fetch indextts2 --dir` on it (it resumes)."
        )
    front_end = BpeFrontEnd.from_bundle_dir(root)
    t2s = UnifiedVoice.from_checkpoint(root / "gpt.pth", T2SConfig.official(), device=device)
    s2m = S2MModel.from_state_dict(S2MConfig.official(), read_official_s2mel(root / "s2mel.pth"))
    s2m = s2m.to(device).eval()
    codec = RepCodec.from_checkpoint(cache / "semantic_codec_model.safetensors").to(device)
    campplus = CAMPPlus.from_checkpoint(cache / "campplus_cn_common.bin").to(device)
    semantic = W2VBertFeatures(
        cache / "w2v-bert-2.0", root / "wav2vec2bert_stats.pt", device=device
    )
    vocoder = BigVGAN.from_pretrained_dir(cache / "bigvgan").to(device).eval()
    mel_cfg = MelConfig.indextts2()
    emo_num = tuple(int(n) for n in bundle.config.get("emo_num", (3, 17, 2, 8, 4, 5, 10, 24)))
    matrices = EmotionMatrices(
        read_official_tensor(root / "feat1.pt").float().to(device),
        read_official_tensor(root / "feat2.pt").float().to(device),
        emo_num,
    )

    def style(wave16k: torch.Tensor) -> torch.Tensor:
        return campplus(kaldi_fbank(wave16k).to(device)[None])  # type: ignore[no-any-return]

    reference = OfficialReferenceEncoder(
        semantic,
        codec,
        style,
        lambda wave22k: mel_spectrogram(wave22k, mel_cfg),
        mel_rate=mel_cfg.sample_rate,
        device=device,
    )
    return EngineComponents(
        bundle=bundle,
        device=device,
        front_end=front_end,
        reference_encoder=reference,
        code_embedder=_CodecEmbedder(codec),
        t2s=t2s,
        s2m=s2m,
        vocoder=vocoder,
        emotion_matrices=matrices,
    )


def _build_small(bundle: ModelBundle, device: torch.device) -> EngineComponents:
    """DubStudio bundles: the bundled-model builder of `dubstudio.engine.small`, or tiny."""
    builder = bundle.config.get("builder", "small")
    if builder == "tiny":
        from dubstudio.engine.bundles import build_tiny_components

        return build_tiny_components(bundle, device)  # type: ignore[no-any-return]
    try:
        small = importlib.import_module("dubstudio.engine.small")
    except ImportError as exc:
        raise ModelLoadError(
            f"{bundle.root} needs the bundled-model components (dubstudio.engine.small): {exc}"
        ) from exc
    parts = small.build_components(bundle, device)
    if isinstance(parts, EngineComponents):
        return parts
    return EngineComponents(bundle=bundle, device=device, **dict(parts))


# ----------------------------------------------------------------------------------------------
# Per-voice state


@dataclass
class _VoiceState:
    """Everything the voice costs once: features, speaker latents, own emotion, S2M prompt."""

    features: ReferenceFeatures
    speaker_latents: torch.Tensor  # (1, N_lat, D)
    base_emovec: torch.Tensor  # (1, D)
    prompt_condition: torch.Tensor  # (1, F_ref, C)
    timbre_gain: torch.Tensor | None = None  # (M,) per-voice timbre match, when measured once
    # Level (dB, `audio.mel_level_db`) of the reference clip, with an emotion loudness.
    level_db: float | None = None


@dataclass
class _Plan:
    """Per-request decisions shared by the single and batched paths."""

    request: SynthesisRequest
    segments: list[torch.Tensor]
    speech_samples: int | None  # at the output rate; None = natural
    seg_tokens: list[int | None]
    seg_frames: list[int | None]
    mode: str
    natural_tokens: int | None = None


def _split_counts(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` into len(weights) integers >= 1 proportional to ``weights`` (sum exact)."""
    n = len(weights)
    if total < n:
        raise ValueError("total smaller than the number of parts")
    wsum = sum(weights)
    spare = total - n  # every part gets 1, the rest proportionally (largest remainder)
    raw = [Fraction(spare * w, wsum) for w in weights]
    parts = [math.floor(r) for r in raw]
    order = sorted(range(n), key=lambda i: raw[i] - parts[i], reverse=True)
    for i in order[: spare - sum(parts)]:
        parts[i] += 1
    return [p + 1 for p in parts]


class Synthesizer:
    """Turns `SynthesisRequest`s into audio with one loaded bundle.

    Build with `from_bundle`; the model stays loaded between requests. Not thread-safe for
    concurrent calls (the editor and render service call it from one worker thread); the voice
    cache is guarded so `analyse_voice` may be called from elsewhere.

    Attributes:
        s2m_bf16: Run the S2M decoder under bf16 autocast where the CPU computes bf16 natively
            (`device.cpu_bf16_autocast`); on by default, off gives the float32 decoder.
    """

    def __init__(self, components: EngineComponents) -> None:
        self.components = components
        self.bundle = components.bundle
        self.device = components.device
        self.s2m_bf16 = True
        self._voices: OrderedDict[str, _VoiceState] = OrderedDict()
        self._emotions: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.voice_cache_hits = 0
        self.voice_cache_misses = 0

    @classmethod
    def from_bundle(
        cls, bundle: ModelBundle | str | Path, device: str | torch.device | None = None
    ) -> Synthesizer:
        """Load a bundle (object, name or directory) onto a device.

        Args:
            bundle: The bundle, or what `load_bundle` accepts.
            device: ``"cpu"``, ``"cuda"``, ``"mps"``, a device, or None for the best available.
        """
        if not isinstance(bundle, ModelBundle):
            bundle = load_bundle(bundle)
        dev = device if isinstance(device, torch.device) else select_device(device)
        t0 = time.perf_counter()
        components = build_components(bundle, dev)
        log.info("loaded %s on %s in %.1f s", bundle.name, dev, time.perf_counter() - t0)
        return cls(components)

    @property
    def identity(self) -> str:
        """Content hash of the loaded bundle (config + weights)."""
        return self.bundle.identity

    @property
    def output_rate(self) -> int:
        """The vocoder's native sample rate."""
        return self.bundle.mel.sample_rate

    def analyse_voice(self, path: str | Path) -> Any:
        """`dubstudio.engine.analysis.analyse_voice` of a reference clip."""
        from dubstudio.engine.analysis import analyse_voice

        return analyse_voice(path)

    # ------------------------------------------------------------------ voices and emotions

    @torch.inference_mode()
    def prepare_voice(self, voice: VoiceRef, *, should_stop: StopCallback | None = None) -> None:
        """Compute what every render with ``voice`` needs (its conditioning and, for bundles
        that fit styles, the fitted style, which is also kept on disk), so that the first
        render with it pays nothing extra."""
        self._voice(voice, should_stop=should_stop)

    def _voice(
        self,
        voice: VoiceRef,
        on_fraction: Callable[[float], None] | None = None,
        should_stop: StopCallback | None = None,
    ) -> _VoiceState:
        key = voice.content_hash
        with self._lock:
            state = self._voices.get(key)
            if state is not None:
                self._voices.move_to_end(key)
                self.voice_cache_hits += 1
                return state
        self.voice_cache_misses += 1
        c = self.components
        audio, rate = load_reference(voice.audio_path, voice.trim_start_s, voice.trim_end_s)
        feats = c.reference_encoder.encode(audio, rate).to(self.device)
        with autocast_context(self.device):
            latents = c.t2s.speaker_latents(feats.cond_feats)
            base = c.t2s.emotion_vector(feats.emotion_feats)
        prompt = c.s2m.prompt_condition(feats.prompt_content, feats.ref_mel.shape[-1])
        level = mel_level_db(feats.ref_mel) if c.emotion_loudness is not None else None
        state = _VoiceState(feats, latents.float(), base.float(), prompt, level_db=level)
        # The calibration sentences in the voice's own emotion, rendered by the style fit and
        # for the per-voice timbre gain alike (its T2S part does not depend on the style, so
        # the unfitted state is bound here).
        calibration = functools.cache(
            functools.partial(self._calibration_condition, voice, state, stylefit.FIT_TEXT)
        )
        if c.style_fit_steps > 0 and c.mel_speaker_encoder is not None:
            wave16 = resample(torch.from_numpy(np.ascontiguousarray(audio)).float(), rate, 16000)
            target = c.speaker_encoder.embed(wave16.to(self.device))
            if not self._known_voice(target):
                state = self._fitted_style(
                    voice,
                    state,
                    lambda: self._fit_style(state, target, calibration(), on_fraction, should_stop),
                )
        if c.timbre_match != 0.0 and c.timbre_match_scope == "voice":
            state = replace(state, timbre_gain=self._voice_timbre_gain(state, calibration()))
        with self._lock:
            self._voices[key] = state
            while len(self._voices) > VOICE_CACHE_SIZE:
                self._voices.popitem(last=False)
        return state

    def _known_voice(self, embedding: torch.Tensor) -> bool:
        """Whether a clip with this speaker embedding is of a voice the decoder was trained on:
        within ``style_fit_known`` of a training voice's anchor. Such a voice renders best with
        its own style; a fit moved it off that style and cost words (MODEL_CARD.md)."""
        c = self.components
        if c.style_fit_known is None or c.style_anchors is None:
            return False
        embedding = embedding.reshape(-1).float()
        anchors = torch.nn.functional.normalize(c.style_anchors.to(embedding), dim=-1)
        return bool(anchors.shape[0]) and float((anchors @ embedding).max()) >= c.style_fit_known

    def _fitted_style(
        self, voice: VoiceRef, state: _VoiceState, fit: Callable[[], Any]
    ) -> _VoiceState:
        """``state`` with the S2M style replaced by the voice's fitted one: from the disk cache
        when this voice was fitted for this model before, else ``fit()``'s."""
        from dubstudio.engine.bundles import user_cache_dir

        c = self.components
        key = (
            f"{self.identity[:16]}-{voice.content_hash[:24]}-{c.style_fit_steps}"
            f"-{c.style_fit_keep:g}-{stylefit.fit_recipe_tag()}"
        )
        cache = stylefit.StyleCache(user_cache_dir() / "styles")
        style = cache.get(key)
        if style is None or style.shape != state.features.style.shape:
            result = fit()
            style = result.style
            cache.put(key, style, result)
            log.info(
                "fitted the style of %s in %.1f s: speaker cosine %.3f -> %.3f",
                voice.audio_path, result.seconds, result.start, result.best,
            )  # fmt: skip
        features = replace(state.features, style=style.to(self.device))
        return replace(state, features=features)

    def _fit_style(
        self,
        state: _VoiceState,
        target: torch.Tensor,
        calibration: tuple[torch.Tensor, list[int]],
        on_fraction: Callable[[float], None] | None = None,
        should_stop: StopCallback | None = None,
    ) -> Any:
        """`stylefit.fit_style` on the voice's calibration render (``calibration``: its decoder
        condition, free length, seed 0), towards ``target``, the speaker embedding of the
        voice's clip."""
        c = self.components
        cond, frames = calibration

        def decode(style: torch.Tensor) -> torch.Tensor:
            mel = self._calibration_mel(inputs, cond, frames, style)
            return match_spectral_mean(
                mel, inputs.features.ref_mel, c.timbre_match, envelope=c.timbre_match_envelope
            )

        with torch.inference_mode(False), torch.enable_grad():
            # Inference tensors cannot be saved for backward: ordinary copies of the inputs.
            cond = cond.clone()
            features = replace(state.features, ref_mel=state.features.ref_mel.clone())
            inputs = replace(
                state, features=features, prompt_condition=state.prompt_condition.clone()
            )
            return stylefit.fit_style(
                decode,
                c.mel_speaker_encoder,
                target.clone(),
                state.features.style.clone(),
                steps=c.style_fit_steps,
                keep=c.style_fit_keep,
                on_fraction=on_fraction,
                should_stop=should_stop,
            )

    def _calibration_mel(
        self, state: _VoiceState, cond: torch.Tensor, frames: list[int], style: torch.Tensor
    ) -> torch.Tensor:
        """The decoder's mel (1, M, F) of a calibration condition in ``style`` (fixed noise, the
        bundle's schedule), before any timbre match."""
        c = self.components
        generator = torch.Generator(device=self.device).manual_seed(12345)
        mel = c.s2m.sample(
            cond, state.prompt_condition, state.features.ref_mel, style,
            steps=self.bundle.cfm_steps, cfg_rate=c.cfg_rate, sway=c.cfm_sway,
            frame_lens=frames, generator=generator,
        )  # fmt: skip
        return torch.cat([mel[i, :, :f] for i, f in enumerate(frames)], dim=-1)[None]

    def _voice_timbre_gain(
        self, state: _VoiceState, calibration: tuple[torch.Tensor, list[int]]
    ) -> torch.Tensor:
        """The voice's timbre-match gain (M,): measured on the calibration sentences
        (``calibration``, their decoder condition) rendered in the voice's own emotion and
        (fitted) style, then added to every line of the voice."""
        c = self.components
        cond, frames = calibration
        with cpu_bf16_autocast(self.device, enabled=self.s2m_bf16):
            mel = self._calibration_mel(state, cond, frames, state.features.style).float()
        return spectral_mean_gain(
            mel[0], state.features.ref_mel, c.timbre_match, envelope=c.timbre_match_envelope
        )

    def _calibration_condition(
        self, voice: VoiceRef, state: _VoiceState, text: str
    ) -> tuple[torch.Tensor, list[int]]:
        """The decoder's content condition and segment frame counts for ``text`` in ``voice``:
        T2S at free length, seed 0, the voice's own emotion, one plain sample (as when the
        fit's settings were chosen: a calibration render picked among candidates moved the fit
        for a training voice off its own style, MODEL_CARD.md)."""
        c = self.components
        plan = self._plan(
            SynthesisRequest(text=text, voice=voice, sample_rate=self.output_rate), None
        )
        emovec = state.base_emovec
        codes = self._generate(
            state, emovec, plan.segments, plan.seg_tokens, "free", 0, None, None, candidates=1
        )
        with autocast_context(self.device):
            latents = c.t2s.latents(state.speaker_latents, emovec, plan.segments, codes)
        return self._s2m_condition(plan, codes, latents)

    def _emotion_clip_vector(self, clip: VoiceRef) -> torch.Tensor:
        key = clip.content_hash
        with self._lock:
            cached = self._emotions.get(key)
        if cached is not None:
            return cached
        c = self.components
        audio, rate = load_reference(clip.audio_path, clip.trim_start_s, clip.trim_end_s)
        feats = c.reference_encoder.encode(audio, rate).to(self.device)
        with autocast_context(self.device):
            vec: torch.Tensor = c.t2s.emotion_vector(feats.emotion_feats).float()
        with self._lock:
            self._emotions[key] = vec
            while len(self._emotions) > VOICE_CACHE_SIZE:
                self._emotions.popitem(last=False)
        return vec

    def _guide(self, request: SynthesisRequest, voice: _VoiceState) -> torch.Tensor | None:
        """The emotion vector T2S sampling is guided away from: the voice's own, for a line
        that asks for an emotion of its own (None in the voice's own emotion, or without
        emotion guidance)."""
        if self.components.emotion_guidance <= 0 or request.emotion.mode == "voice":
            return None
        return voice.base_emovec

    def _emovec(self, request: SynthesisRequest, voice: _VoiceState) -> torch.Tensor:
        """(1, D) emotion vector for the request's emotion mode (ENGINE_SPEC §2.4)."""
        return self._emotion(request, voice)[0]

    def _emotion(
        self, request: SynthesisRequest, voice: _VoiceState
    ) -> tuple[torch.Tensor, _ProsodyChange]:
        """(1, D) emotion vector for the request's emotion mode (ENGINE_SPEC §2.4), and the
        changes against the voice's own reading that the bundle's emotion loudness and emotion
        range give it (none without them)."""
        emotion = request.emotion
        c = self.components
        if emotion.mode == "voice":
            return voice.base_emovec, _ProsodyChange()
        if emotion.mode == "audio":
            assert emotion.audio is not None
            emo = self._emotion_clip_vector(emotion.audio)
            vec = c.t2s.merge_emovec(voice.base_emovec, emo, emotion.alpha)
            own = voice.base_emovec
            return vec, _ProsodyChange(
                0.0 if c.emotion_loudness is None else c.emotion_loudness.of_clip(vec, own),
                0.0 if c.emotion_range is None else c.emotion_range.of_clip(vec, own),
            )
        if emotion.mode == "text":
            if c.text_to_emotion is None:
                raise ValidationError(
                    f"The model {self.bundle.name} cannot read emotion descriptions; use the "
                    "emotion sliders or an emotion clip instead."
                )
            weights = list(c.text_to_emotion(emotion.description or request.text))
        else:
            weights = list(emotion.vector)
        if c.emotion_matrices is None:
            raise ValidationError(
                f"The model {self.bundle.name} has no emotion matrices; use the voice's own "
                "emotion or an emotion clip."
            )
        vec = emotion_vector_from_weights(
            weights, voice.features.style, c.emotion_matrices, voice.base_emovec, emotion.alpha
        )
        mixed = mix_weights(weights, emotion.alpha)
        return vec.reshape(1, -1), _ProsodyChange(
            0.0 if c.emotion_loudness is None else c.emotion_loudness.of_weights(mixed),
            0.0 if c.emotion_range is None else c.emotion_range.of_weights(mixed),
        )

    # ------------------------------------------------------------------ planning

    def _segments(self, text: str) -> list[torch.Tensor]:
        # Official default 120 text tokens per segment, never more than the model's table.
        limit = min(120, int(getattr(self.components.t2s.config, "max_text_tokens", 120)))
        segs = self.components.front_end.segments(text, max_tokens=limit)
        out = [torch.as_tensor(list(s), dtype=torch.long) for s in segs]
        out = [s for s in out if s.numel() > 0]
        if not out:
            raise ValidationError(f"Nothing speakable in the line text {text!r}.")
        return out

    def _frames_for_tokens(self, tokens: int) -> int:
        """Natural mel frames for a token count (token and mel rates of the bundle)."""
        ratio = self.bundle.mel_rate / self.bundle.token_rate
        return max(1, round_half_up(tokens * ratio))

    def _plan(
        self,
        request: SynthesisRequest,
        natural_tokens: int | None,
    ) -> _Plan:
        segments = self._segments(request.text)
        speech = request.speech_budget_samples
        if speech is None:
            n = len(segments)
            return _Plan(request, segments, None, [None] * n, [None] * n, "free")
        natural = natural_tokens
        if request.fit_dial < 1.0 and natural is not None:
            # Speech length between the natural one and the slot; the rest becomes lead-out.
            natural_samples = natural * Fraction(request.sample_rate) / self.bundle.token_rate
            dial = Fraction(request.fit_dial).limit_denominator(1_000_000)
            speech = min(
                speech,
                max(
                    1,
                    round_half_up(natural_samples + dial * (speech - natural_samples)),
                ),
            )
        tokens, frames = budget_for_samples(
            speech, request.sample_rate, self.bundle.token_rate, self.bundle.mel_rate
        )
        tokens, frames = max(tokens, 1), max(frames, 1)
        if tokens < len(segments) or frames < len(segments):
            segments = [torch.cat(segments)]  # too short a slot to split: one segment
        weights = [int(s.numel()) + 2 for s in segments]
        seg_tokens: list[int | None] = list(_split_counts(tokens, weights))
        seg_frames: list[int | None] = list(_split_counts(frames, weights))
        return _Plan(
            request, segments, speech, seg_tokens, seg_frames, request.duration_mode, natural
        )

    # ------------------------------------------------------------------ synthesis

    @torch.inference_mode()
    def synthesize(
        self,
        request: SynthesisRequest,
        *,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> SynthesisResult:
        """Render one line.

        Args:
            request: The line.
            on_progress: ``(fraction, stage)`` callback.
            should_stop: Polled every decoding and Euler step; True raises `RenderCancelled`.

        Returns:
            The audio, exactly ``request.target_samples`` long when set.
        """
        return self.synthesize_batch([request], on_progress=on_progress, should_stop=should_stop)[0]

    @torch.inference_mode()
    def synthesize_batch(
        self,
        requests: Sequence[SynthesisRequest],
        *,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> list[SynthesisResult]:
        """Render several lines; lines sharing voice, emotion, mode and seed decode together.

        A group's T2S decoding is one batched `UnifiedVoice.generate` call, so its sampling
        noise is drawn for the whole group: the same batch with the same seeds gives identical
        samples, but a line may sound slightly different rendered alone. S2M noise is drawn per
        line from the line's own seed, so it never depends on the batch.

        Returns:
            One result per request, in order.
        """
        if not requests:
            return []
        groups: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        for i, r in enumerate(requests):
            key = (r.voice.content_hash, repr(r.emotion.identity()), r.seed, r.duration_mode)
            groups.setdefault(key, []).append(i)
        results: list[SynthesisResult | None] = [None] * len(requests)
        done = 0
        for indices in groups.values():
            span = (done / len(requests), (done + len(indices)) / len(requests))

            def scaled(frac: float, stage: str, span: tuple[float, float] = span) -> None:
                if on_progress is not None:
                    on_progress(span[0] + frac * (span[1] - span[0]), stage)

            try:
                group = self._render_group(
                    [requests[i] for i in indices], scaled if on_progress else None, should_stop
                )
            except DubStudioError:
                raise
            except (RuntimeError, ValueError, IndexError) as exc:
                # Torch and shape errors mean a broken model or an engine bug; say which line.
                ids = ", ".join(
                    requests[i].request_id or repr(requests[i].text[:30]) for i in indices
                )
                raise RenderError(f"Synthesis failed for {ids}: {exc}") from exc
            for i, res in zip(indices, group, strict=True):
                results[i] = res
            done += len(indices)
        if on_progress is not None:
            on_progress(1.0, "done")
        return [r for r in results if r is not None]

    def _render_group(
        self,
        requests: list[SynthesisRequest],
        on_progress: ProgressCallback | None,
        should_stop: StopCallback | None,
    ) -> list[SynthesisResult]:
        c = self.components
        first = requests[0]
        timings = {"conditioning": 0.0, "t2s": 0.0, "s2m": 0.0, "vocoder": 0.0, "post": 0.0}

        def progress(stage: str, frac: float) -> None:
            if on_progress is not None:
                lo, hi = _STAGE_SPAN.get(stage, (0.92, 1.0))
                on_progress(lo + max(0.0, min(1.0, frac)) * (hi - lo), stage)

        raise_if_stopped(should_stop, "conditioning")
        t0 = time.perf_counter()
        progress("conditioning", 0.0)
        voice = self._voice(first.voice, lambda f: progress("conditioning", f), should_stop)
        emovec, change = self._emotion(first, voice)
        guide = self._guide(first, voice)
        timings["conditioning"] = time.perf_counter() - t0
        progress("conditioning", 1.0)

        # Natural lengths, only when a fit dial below 1 needs them.
        naturals: list[int | None] = [None] * len(requests)
        need_natural = [
            i for i, r in enumerate(requests) if r.target_samples is not None and r.fit_dial < 1.0
        ]
        t0 = time.perf_counter()
        if need_natural:
            seg_lists = [self._segments(requests[i].text) for i in need_natural]
            flat = [s for segs in seg_lists for s in segs]
            codes = self._generate(
                voice,
                emovec,
                flat,
                [None] * len(flat),
                "free",
                first.seed + 7919,
                None,
                should_stop,
                guide=guide,
            )
            pos = 0
            for i, segs in zip(need_natural, seg_lists, strict=True):
                naturals[i] = sum(int(x.numel()) for x in codes[pos : pos + len(segs)])
                pos += len(segs)
        plans = [self._plan(r, n) for r, n in zip(requests, naturals, strict=True)]

        # T2S: every segment of every line of the group in one batched decode.
        flat_segments = [s for p in plans for s in p.segments]
        flat_budgets: list[int | None] = []
        for p in plans:
            flat_budgets.extend(p.seg_tokens if p.mode != "free" else [None] * len(p.segments))
        # One mode per group (the group key includes it); None budgets decode at natural length.
        mode = first.duration_mode
        codes = self._generate(
            voice,
            emovec,
            flat_segments,
            flat_budgets,
            mode,
            first.seed,
            lambda f: progress("t2s", f),
            should_stop,
            guide=guide,
        )
        codes = [x if x.numel() > 0 else x.new_zeros(1) for x in codes]
        with autocast_context(self.device):
            latents = c.t2s.latents(voice.speaker_latents, emovec, flat_segments, codes)
        timings["t2s"] = time.perf_counter() - t0

        results = []
        pos = 0
        for p in plans:
            n = len(p.segments)
            seg_codes, seg_latents = codes[pos : pos + n], latents[pos : pos + n]
            pos += n
            results.append(
                self._finish(
                    p, voice, change, seg_codes, seg_latents, dict(timings), progress, should_stop
                )
            )
        return results

    def _generate(
        self,
        voice: _VoiceState,
        emovec: torch.Tensor,
        segments: list[torch.Tensor],
        budgets: list[int | None],
        mode: str,
        seed: int,
        on_fraction: Callable[[float], None] | None,
        should_stop: StopCallback | None,
        candidates: int | None = None,
        guide: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Codes of each segment: ``candidates`` samples (default ``t2s_candidates``) decoded
        side by side, the one the code ranker scores lowest kept (the earliest on a tie); with
        ``guide`` (an emotion vector, see `_guide`) under the bundle's emotion guidance."""
        c = self.components
        generator = torch.Generator(device=self.device).manual_seed(int(seed) & 0x7FFF_FFFF_FFFF)
        if all(b is None for b in budgets):
            mode = "free"
        ranker = c.code_ranker
        k = (candidates or c.t2s_candidates) if ranker is not None else 1
        with autocast_context(self.device):
            codes = list(
                c.t2s.generate(
                    voice.speaker_latents,
                    emovec,
                    [s.to(self.device) for s in segments for _ in range(k)],
                    budgets=[b for b in budgets for _ in range(k)],
                    mode=mode,
                    params=c.decode_params,
                    generator=generator,
                    on_progress=(lambda f, _s: on_fraction(f)) if on_fraction else None,
                    should_stop=should_stop,
                    guide_emovec=guide,
                    guidance=c.emotion_guidance if guide is not None else 0.0,
                )
            )
        if ranker is None or k == 1:
            return codes
        picked = []
        for i, text in enumerate(segments):
            options = codes[i * k : (i + 1) * k]
            picked.append(min(options, key=lambda x: ranker(x.cpu(), text)))
        return picked

    def _s2m_condition(
        self, plan: _Plan, codes: list[torch.Tensor], latents: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[int]]:
        """Regulated S2M content of a line's segments, one batch row each (B, F_max, C), and
        each segment's mel frames (its budget, or the natural count of its codes)."""
        c = self.components
        frames = [
            f if f is not None else self._frames_for_tokens(int(x.numel()))
            for f, x in zip(plan.seg_frames, codes, strict=True)
        ]
        content = [c.code_embedder.embed(x.reshape(1, -1).to(self.device))[0] for x in codes]
        t_max = max(int(x.shape[0]) for x in content)
        dc = content[0].shape[-1]
        content_b = content[0].new_zeros(len(content), t_max, dc)
        latent_b = latents[0].new_zeros(len(latents), t_max, latents[0].shape[-1])
        for i, (x, lat) in enumerate(zip(content, latents, strict=True)):
            content_b[i, : x.shape[0]] = x
            latent_b[i, : lat.shape[0]] = lat
        content_lens = [int(x.shape[0]) for x in content]
        use_latent = getattr(c.s2m, "gpt_layer", None) is not None
        cond = c.s2m.content(
            content_b, latent_b if use_latent else None, frames, content_lens=content_lens
        )
        return cond, frames

    def _finish(
        self,
        plan: _Plan,
        voice: _VoiceState,
        change: _ProsodyChange,
        codes: list[torch.Tensor],
        latents: list[torch.Tensor],
        timings: dict[str, float],
        progress: Callable[[str, float], None],
        should_stop: StopCallback | None,
    ) -> SynthesisResult:
        c = self.components
        request = plan.request
        # ---- S2M: each segment regulated to its frame budget, all segments in one CFM batch.
        t0 = time.perf_counter()
        cond, frames = self._s2m_condition(plan, codes, latents)
        steps = request.cfm_steps or self.bundle.cfm_steps
        generator = torch.Generator(device=self.device).manual_seed(
            (int(request.seed) * 1_000_003 + 12345) & 0x7FFF_FFFF_FFFF
        )
        with cpu_bf16_autocast(self.device, enabled=self.s2m_bf16):
            mel = c.s2m.generate(
                cond,
                voice.prompt_condition,
                voice.features.ref_mel,
                voice.features.style,
                steps=steps,
                cfg_rate=c.cfg_rate,
                sway=c.cfm_sway,
                frame_lens=frames,
                generator=generator,
                on_progress=lambda f, _s: progress("s2m", f),
                should_stop=should_stop,
            ).float()  # (B, M, F_max)
        mel = torch.cat([mel[i, :, :f] for i, f in enumerate(frames)], dim=-1)[None]  # (1, M, F)
        if voice.timbre_gain is not None:
            mel = mel + voice.timbre_gain.to(mel)[:, None]
        else:
            mel = match_spectral_mean(
                mel, voice.features.ref_mel, c.timbre_match, envelope=c.timbre_match_envelope
            )
        timings["s2m"] = time.perf_counter() - t0
        raise_if_stopped(should_stop, "vocoder")

        # ---- Vocoder and the sample budget.
        t0 = time.perf_counter()
        wave = c.vocoder(mel.float()).reshape(-1).float().cpu()  # (N_voc,)
        if change.log_range != 0.0:
            # The rest of the emotion's pitch range, which three pitch levels do not carry.
            wave = scale_pitch_range(wave, self.bundle.mel.sample_rate, math.exp(change.log_range))
        if voice.level_db is not None and wave.numel() > self.bundle.mel.n_fft:
            # The line's level, measured as the clip's was, set by the emotion loudness.
            rendered = mel_level_db(mel_spectrogram(wave, self.bundle.mel.config()))
            wave = with_gain(
                wave, voice.level_db + change.level_db - rendered, self.bundle.mel.sample_rate
            )
        timings["vocoder"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        speech = self._fit_to_rate(wave, plan.speech_samples, request.sample_rate)
        lead_out = request.lead_out_samples
        if request.target_samples is not None:
            lead_out = request.target_samples - request.lead_in_samples - len(speech)
        audio = np.concatenate(
            [
                np.zeros(request.lead_in_samples, np.float32),
                speech,
                np.zeros(lead_out, np.float32),
            ]
        )
        if request.target_samples is not None and len(audio) != request.target_samples:
            raise RenderError(
                f"Internal length error: {len(audio)} samples instead of {request.target_samples}."
            )
        timings["post"] = time.perf_counter() - t0
        progress("vocoder", 1.0)
        return SynthesisResult(
            audio=audio,
            sample_rate=request.sample_rate,
            tokens=sum(int(x.numel()) for x in codes),
            mel_frames=sum(frames),
            natural_tokens=plan.natural_tokens,
            stage_seconds=timings,
            request_id=request.request_id,
        )

    def _fit_to_rate(self, wave: torch.Tensor, samples: int | None, rate: int) -> np.ndarray:
        """Vocoder output -> float32 at ``rate``, exactly ``samples`` long when given.

        The mel budget is whole frames; the sub-frame remainder is cut (or zero-padded) at the
        vocoder rate, where it is less than one hop, before resampling. Resampling then lands
        within a sample or two, which the final fix absorbs (asserted).
        """
        voc_rate = self.bundle.mel.sample_rate
        if samples is not None:
            at_voc = round_half_up(Fraction(samples * voc_rate, rate))
            diff = at_voc - wave.numel()
            if abs(diff) > self.bundle.mel.hop_length:
                raise RenderError(
                    f"Internal budget error: vocoder gave {wave.numel()} samples for {at_voc}."
                )
            wave = wave[:at_voc] if diff < 0 else torch.nn.functional.pad(wave, (0, diff))
            if at_voc == 0:  # a budget under one vocoder sample: nothing audible fits
                return np.zeros(samples, np.float32)
        out = resample(wave[None], voc_rate, rate)[0].clamp(-1.0, 1.0).numpy().astype(np.float32)
        if samples is None:
            return out
        fix = samples - len(out)
        if abs(fix) > MAX_FINAL_FIX:
            raise RenderError(f"Internal resampling error: {len(out)} samples for {samples}.")
        if fix < 0:
            return out[:samples]
        return np.concatenate([out, np.zeros(fix, np.float32)])
