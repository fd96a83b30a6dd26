"""`dubstudio eval`: measure a small bundle on held-out sentences and voices.

Measures (each printed in the table and written to MODEL_CARD.md):
* intelligibility: pocketsphinx WER of renders vs the source voice's own WER on the same
  held-out sentences;
* speaker similarity (GE2E cosine): each render vs its own reference and vs every other
  speaker's reference; share of lines closer to their own;
* budget compliance: renders in ``exact`` mode have exactly the requested sample count;
* emotion: each emotion at weight 1 vs calm at the same exact budget, over one or more T2S
  draws per sentence (calm's too): F0 median, F0 range (p90 - p10), RMS energy; speaking rate
  from the T2S natural token count in free mode; the same changes in that voice's own corpus
  recordings of the sentences, beside them;
* disentanglement: logistic-regression probe accuracy of the speaker from emotion vectors,
  the model entering stage 2 (no GRL) vs final (GRL), on held-out utterances; chance = 1 / speakers;
  the final model's accuracy per voice, and a probe over the training voices alone;
* speed: seconds per second of audio for each pipeline stage, and the one-time cost of
  preparing a voice (its conditioning and style fit), timed apart from the lines.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EMOTION_NAMES
from dubstudio.engine.analysis import pitch_track
from dubstudio.engine.small import N_PHONES, collapse_repeats, edit_distance
from dubstudio.training.corpus import STYLES, read_metadata, training_voices

log = logging.getLogger(__name__)

EXTRA_HELDOUT = "espeak-en-us"  # a second held-out voice, from a different engine


@dataclass
class EvalResults:
    """Everything `evaluate` measured (see the module docstring)."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    emotion_rows: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    #: The same changes measured on the emotion voice's own corpus recordings of the sentences.
    source_emotion_rows: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Measures


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def wer(ref: str, hyp: str) -> tuple[int, int]:
    """(edit distance in words, reference word count)."""
    r = _words(ref)
    return edit_distance(r, _words(hyp)), len(r)


class Recognizer:
    """pocketsphinx en-US recognizer over float audio.

    Every clip gets a decoder of its own (0.3 s): one decoder carries adaptive state from one
    utterance to the next, so a clip's transcript would depend on what was decoded before it
    (measured: 0.160 against 0.147 WER on the same eight clips; resetting the cepstral mean
    alone did not remove it).
    """

    def __call__(self, audio: np.ndarray, rate: int) -> str:
        from pocketsphinx import Decoder

        from dubstudio.engine.audio import resample

        wav = resample(torch.from_numpy(audio).float(), rate, 16000).numpy()
        pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16)
        decoder = Decoder(samprate=16000, logfn="/dev/null")
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def prosody(audio: np.ndarray, rate: int) -> tuple[float, float, float]:
    """(F0 median Hz, F0 range p90-p10 Hz, RMS energy dB) over voiced, non-silent frames.

    F0 comes from the YIN tracker the semantic codes are made with
    (`dubstudio.engine.analysis.pitch_track`, 10 ms hop at 16 kHz).
    """
    if rate > 16000:
        audio = _resample16(audio, rate)
        rate = 16000
    wav = torch.from_numpy(np.ascontiguousarray(audio)).float()
    hop = rate // 100
    frames = wav[: len(wav) // hop * hop].reshape(-1, hop)
    rms = frames.pow(2).mean(1).sqrt()
    active = rms > rms.max() * 0.1
    energy = float(20 * torch.log10(rms[active].mean().clamp(min=1e-8)))
    f0 = pitch_track(audio, rate, hop).numpy()
    f0 = f0[f0 > 0]
    if f0.size < 3:
        return float("nan"), float("nan"), energy
    p10, p50, p90 = np.percentile(f0, [10, 50, 90])
    return float(p50), float(p90 - p10), energy


def _espeak_reference(text: str, out: Path) -> Path | None:
    if shutil.which("espeak-ng") is None:
        return None
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), text], check=True)
    return out


# ----------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    model: str | Path,
    data: str | Path,
    runs: str | Path | None = None,
    *,
    lines: int = 6,
    emotion_lines: int = 1,
    emotion_draws: int = 1,
    emotions: tuple[str, ...] = EMOTION_NAMES,
    seed: int = 0,
) -> EvalResults:
    """Run every measure on a bundle (see the module docstring).

    ``emotion_draws`` renders each emotion line (calm, the baseline, included) with that many
    seeds from ``seed`` on: T2S samples each phone's pitch level, so one draw of calm moves the
    range by a few Hz, and every emotion's change is read against that one draw."""
    if emotion_draws < 1:
        raise ValidationError(f"emotion draws must be at least 1, not {emotion_draws}.")
    import soundfile as sf

    from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import GE2EEncoder

    data = Path(data)
    corpus = data / "corpus"
    bundle = load_bundle(model)
    synth = Synthesizer.from_bundle(bundle)
    ge2e = GE2EEncoder.pretrained()
    asr = Recognizer()
    res = EvalResults()
    utts = read_metadata(corpus)
    test = [u for u in utts if u.split == "test"]
    sentences = sorted({u.text for u in test})
    eval_sents, ref_sents = sentences[:lines], sentences[-2:]
    voices = sorted({u.voice for u in test})
    train_voices = training_voices(corpus, utts)
    heldout = [v for v in voices if v not in train_voices]
    tmp = Path(tempfile.mkdtemp(prefix="dubstudio-eval-"))

    def ref_for(voice: str) -> Path:
        if voice == EXTRA_HELDOUT:
            p = _espeak_reference(" ".join(ref_sents), tmp / "espeak_ref.wav")
            assert p is not None
            return p
        u = next(
            u for u in test if u.voice == voice and u.style == "calm" and u.text == ref_sents[0]
        )
        return corpus / u.wav

    if shutil.which("espeak-ng") is not None:
        heldout.append(EXTRA_HELDOUT)
    all_voices = [*voices, *([EXTRA_HELDOUT] if EXTRA_HELDOUT in heldout else [])]
    refs = {v: ref_for(v) for v in all_voices}
    ref_emb = {}
    for v, p in refs.items():
        audio, rate = sf.read(str(p), dtype="float32")
        from dubstudio.engine.audio import resample

        ref_emb[v] = ge2e.embed(resample(torch.from_numpy(audio), rate, 16000))

    # ---- intelligibility, similarity, budgets, speed
    eval_voices = [train_voices[-1], *heldout]
    source_codes = {it.utt.uid: it.codes for it in _test_items(data)}
    err_model = err_src = err_oracle = n_words = 0
    exact_ok = exact_n = 0
    src_closer = src_total = 0
    per_voice: dict[str, list[int]] = {}  # voice -> [model errors, source errors, words]
    clone_voice: dict[str, list[int]] = {}  # held-out voice -> [lines closer to own, lines]
    own_sims: list[float] = []
    pitch_ratios: list[float] = []
    ref_f0 = {v: prosody(*sf.read(str(refs[v]), dtype="float32"))[0] for v in heldout}
    other_sims: list[float] = []
    # The same question asked of other clips: each voice's own recording of the line's sentence
    # (never the reference, so never what a per-voice style fit was fitted to).
    rec_emb: dict[tuple[str, str], torch.Tensor] = {}

    def calm_take(voice: str, text: str) -> Any:
        """The voice's calm corpus recording of ``text``, or None."""
        return next(
            (u for u in test if u.voice == voice and u.style == "calm" and u.text == text), None
        )

    def recording_embedding(voice: str, text: str) -> torch.Tensor | None:
        if (voice, text) not in rec_emb:
            if voice == EXTRA_HELDOUT:
                path = _espeak_reference(text, tmp / f"espeak_{len(rec_emb)}.wav")
            else:
                u = calm_take(voice, text)
                path = None if u is None else corpus / u.wav
            if path is None:
                return None
            audio, rate = sf.read(str(path), dtype="float32")
            rec_emb[voice, text] = ge2e.embed(torch.from_numpy(_resample16(audio, rate)))
        return rec_emb[voice, text]

    rec_closer = rec_total = 0
    stage_sec: dict[str, float] = {}
    audio_sec = 0.0
    prepare_sec: list[float] = []
    for voice in eval_voices:
        vref = VoiceRef(str(refs[voice]))
        # Once per voice (the style fit, where the bundle has one): timed on its own, not
        # spread over the lines as if every render paid it.
        t0 = time.perf_counter()
        synth.prepare_voice(vref)
        prepare_sec.append(time.perf_counter() - t0)
        for text in eval_sents:
            src = calm_take(voice, text)
            if src is not None:
                src_audio, src_rate = sf.read(str(corpus / src.wav), dtype="float32")
                target = round(len(src_audio) / src_rate * 22050)
            else:
                src_audio, src_rate, target = None, 16000, round(2.6 * 22050)
            req = SynthesisRequest(
                text=text, voice=vref, sample_rate=22050, target_samples=target,
                duration_mode="exact", seed=seed,
            )  # fmt: skip
            out = synth.synthesize(req)
            exact_n += 1
            exact_ok += int(len(out.audio) == target)
            for k, v in out.stage_seconds.items():
                stage_sec[k] = stage_sec.get(k, 0.0) + v
            audio_sec += len(out.audio) / 22050
            e, n = wer(text, asr(out.audio, 22050))
            if src is not None:
                es, _ = wer(text, asr(src_audio, src_rate))
                oracle = decode_codes(synth, req, source_codes[src.uid])
                eo, _ = wer(text, asr(oracle.audio, 22050))
                err_src += es
                err_model += e
                err_oracle += eo
                n_words += n
                counts = per_voice.setdefault(voice, [0, 0, 0])
                counts[0], counts[1], counts[2] = counts[0] + e, counts[1] + es, counts[2] + n
            emb = ge2e.embed(torch.from_numpy(_resample16(out.audio, 22050)))
            sims = {v: float(emb @ ref_emb[v]) for v in all_voices}
            own = sims.pop(voice)
            own_sims.append(own)
            other_sims.append(max(sims.values()))
            if voice in heldout:
                counts = clone_voice.setdefault(voice, [0, 0])
                counts[0] += int(own > max(sims.values()))
                counts[1] += 1
                pitch_ratios.append(prosody(out.audio, 22050)[0] / ref_f0[voice])
                recs = {v: recording_embedding(v, text) for v in all_voices}
                own_rec = recs.pop(voice)
                others = [float(emb @ r) for r in recs.values() if r is not None]
                if own_rec is not None and others:
                    rec_total += 1
                    rec_closer += int(float(emb @ own_rec) > max(others))
                if own_rec is not None and src is not None:
                    # The same measure on the voice's own recording: its ceiling.
                    src_emb = own_rec
                    src_sims = {v: float(src_emb @ ref_emb[v]) for v in all_voices}
                    src_own = src_sims.pop(voice)
                    src_total += 1
                    src_closer += int(src_own > max(src_sims.values()))
    closer = sum(c for c, _ in clone_voice.values())
    total = sum(n for _, n in clone_voice.values())
    wer_m = err_model / max(1, n_words)
    wer_s = err_src / max(1, n_words)
    wer_o = err_oracle / max(1, n_words)
    res.rows += [
        ("held-out sentences / voices used", f"{len(eval_sents)} / {', '.join(eval_voices)}"),
        ("WER model (pocketsphinx)", f"{wer_m:.3f}"),
        ("WER source voices, same sentences", f"{wer_s:.3f}"),
        ("WER ratio model / source (target <= 1.5)", f"{wer_m / max(wer_s, 1e-9):.2f}"),
        ("WER of S2M + vocoder on the source's own codes (T2S bypassed)", f"{wer_o:.3f}"),
        ("GE2E cosine to own reference (mean)", f"{np.mean(own_sims):.3f}"),
        ("GE2E cosine to closest other speaker (mean)", f"{np.mean(other_sims):.3f}"),
        ("held-out-voice lines closer to own reference (target >= 80 %)",
         f"{100 * closer / max(1, total):.0f} % ({closer}/{total})"),
        ("the same against the voices' own recordings of each line's sentence",
         f"{100 * rec_closer / max(1, rec_total):.0f} % ({rec_closer}/{rec_total})"),
        ("held-out voices: median F0 of the render / of the reference (median over lines)",
         _median_text([r for r in pitch_ratios if np.isfinite(r)])),
        ("the same for the held-out voices' own recordings (ceiling)",
         f"{100 * src_closer / max(1, src_total):.0f} % ({src_closer}/{src_total})"),
        ("exact-budget renders with exact length", f"{exact_ok}/{exact_n}"),
    ]  # fmt: skip
    for v, (c, n) in sorted(clone_voice.items()):
        res.rows.append((f"held-out-voice lines closer to own reference, {v}", f"{c}/{n}"))
    for v, (e, es, n) in sorted(per_voice.items()):
        res.rows.append((f"WER model / source, {v}", f"{e / max(1, n):.3f} / {es / max(1, n):.3f}"))
    for k, v in sorted(stage_sec.items()):
        res.rows.append((f"speed: {k} seconds per audio second", f"{v / audio_sec:.3f}"))
    res.rows.append(("speed: total real-time factor", f"{sum(stage_sec.values()) / audio_sec:.3f}"))
    res.rows.append(
        (
            "speed: preparing a voice, once per voice (seconds, mean over voices)",
            f"{np.mean(prepare_sec):.1f}",
        )
    )
    res.data.update(wer_model=wer_m, wer_source=wer_s, wer_oracle=wer_o, closer=closer, total=total)

    # ---- emotions at a fixed budget vs calm
    voice = train_voices[-1]
    vref = VoiceRef(str(refs[voice]))
    comp = synth.components
    measures: dict[str, list[tuple[float, float, float, float]]] = {}
    for text in eval_sents[:emotion_lines]:
        for k, name in enumerate(EMOTION_NAMES):
            if name not in emotions and name != "calm":
                continue
            vec = tuple(1.0 if i == k else 0.0 for i in range(8))
            emo = EmotionRequest(mode="vector", vector=vec)
            tokens = _natural_tokens(synth, comp, vref, emo, text, seed)
            for draw in range(emotion_draws):
                out = synth.synthesize(
                    SynthesisRequest(
                        text=text,
                        voice=vref,
                        emotion=emo,
                        sample_rate=22050,
                        target_samples=round(2.8 * 22050),
                        duration_mode="exact",
                        seed=seed + draw,
                    )
                )
                f0, rng_, en = prosody(out.audio, 22050)
                measures.setdefault(name, []).append((f0, rng_, en, tokens))
    res.emotion_rows = _changes_from_calm(measures)
    res.data.update(emotion_lines=emotion_lines, emotion_draws=emotion_draws, emotion_voice=voice)
    # What the corpus recordings of the same sentences by that voice do (natural lengths; rate
    # from their durations): the direction each recipe really takes in the training data.
    recorded: dict[str, list[tuple[float, float, float, float]]] = {}
    for u in test:
        if u.voice == voice and u.text in eval_sents[:emotion_lines] and u.style in measures:
            audio, rate = sf.read(str(corpus / u.wav), dtype="float32")
            recorded.setdefault(u.style, []).append((*prosody(audio, rate), u.duration))
    if "calm" in recorded:
        res.source_emotion_rows = _changes_from_calm(recorded)
    # ---- the slowest stage, eager vs ONNX Runtime, on the same mel
    res.rows += vocoder_rows()
    # ---- tokenizer speaker independence
    res.rows += tokenizer_rows(comp.reference_encoder, data)
    # ---- GRL probe
    if runs is not None and (Path(runs) / "t2s_stage1.ckpt").is_file():
        res.rows += grl_probe(comp.t2s, Path(runs) / "t2s_stage1.ckpt", data, train_voices)
    shutil.rmtree(tmp, ignore_errors=True)
    return res


def _changes_from_calm(
    measures: dict[str, list[tuple[float, float, float, float]]],
) -> list[tuple[str, float, float, float, float]]:
    """Per emotion (F0 median, F0 range, energy, length) means -> (name, ΔF0, Δrange, Δenergy,
    rate vs calm), the rate being calm's length over the emotion's."""
    calm = _column_means(measures["calm"])
    rows = []
    for name in [n for n in EMOTION_NAMES if n in measures]:
        m = _column_means(measures[name])
        rate_change = calm[3] / m[3] if m[3] else float("nan")
        rows.append((name, m[0] - calm[0], m[1] - calm[1], m[2] - calm[2], rate_change))
    return rows


def _median_text(values: list[float]) -> str:
    return f"{np.median(values):.2f}" if values else "n/a (nothing voiced)"


def _column_means(rows: list[tuple[float, ...]]) -> np.ndarray:
    """Mean of each column over its finite entries; NaN where there are none (e.g. no line had
    a pitch to measure), without numpy's empty-slice warning."""
    arr = np.array(rows, dtype=np.float64)
    finite = np.isfinite(arr)
    counts = finite.sum(axis=0)
    sums = np.where(finite, arr, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


@lru_cache(maxsize=2)
def _test_items(data: Path) -> list[Any]:
    """Held-out items of ``data/features.pt`` (read once: the file holds the whole corpus)."""
    from dubstudio.training.features import load_items

    return [it for it in load_items(data / "features.pt") if it.utt.split == "test"]


@torch.inference_mode()
def decode_codes(synth: Any, request: Any, codes: torch.Tensor) -> Any:
    """Render ``request`` from given semantic ``codes`` instead of the T2S model's (one segment,
    the request's exact frame budget): the decoder half of the pipeline on its own."""
    plan = synth._plan(request, None)
    frames = sum(plan.seg_frames)
    plan.segments, plan.seg_tokens, plan.seg_frames = [torch.cat(plan.segments)], [None], [frames]
    voice = synth._voice(request.voice)
    emovec, change = synth._emotion(request, voice)
    codes = codes.long().to(synth.device)
    latents = synth.components.t2s.latents(voice.speaker_latents, emovec, plan.segments, [codes])
    return synth._finish(plan, voice, change, [codes], latents, {}, lambda *_: None, None)


def _resample16(audio: np.ndarray, rate: int) -> np.ndarray:
    from dubstudio.engine.audio import resample

    return resample(torch.from_numpy(audio).float(), rate, 16000).numpy()


@torch.inference_mode()
def _natural_tokens(synth: Any, comp: Any, vref: Any, emo: Any, text: str, seed: int) -> float:
    """Tokens the T2S model chooses in free mode for this emotion (speaking-rate proxy)."""
    from dubstudio.engine.api import SynthesisRequest

    voice = synth._voice(vref)
    request = SynthesisRequest(text=text, voice=vref, emotion=emo)
    emovec, guide = synth._emovec(request, voice), synth._guide(request, voice)
    segs = synth._segments(text)
    counts = []
    for s in range(3):
        codes = synth._generate(
            voice, emovec, segs, [None] * len(segs), "free", seed + s, None, None, guide=guide
        )
        counts.append(sum(int(c.numel()) for c in codes))
    return float(np.mean(counts))


@torch.inference_mode()
def grl_probe(
    t2s: Any, stage1_ckpt: Path, data: Path, train_voices: list[str]
) -> list[tuple[str, str]]:
    """Speaker-probe accuracy from emotion vectors: stage-1 model (no GRL) vs final model.

    Besides the probe over every held-out utterance, the final model's rows say where what
    the probe reads comes from: its accuracy on each voice's utterances, and a probe over the
    voices the reversal was trained against alone (``train_voices``; chance 1 / their count).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict, cross_val_score

    from dubstudio.engine.small import normalize_frames

    items = _test_items(data)
    feats = [normalize_frames(it.mel[None]) for it in items]
    speakers = np.array([it.utt.voice for it in items])
    styles = np.array([it.utt.style for it in items])
    import copy

    from dubstudio.training.recipes import refine_code_tables

    stage1 = copy.deepcopy(t2s)
    state = torch.load(str(stage1_ckpt), map_location="cpu", weights_only=True)["model"]
    # A stage-1 model with fewer pitch levels than the final one: its code tables refined (the
    # probe reads the emotion conditioner only).
    stage1.load_state_dict(refine_code_tables(state, stage1, stage1_ckpt.name))
    out = []
    chance = 1.0 / len(set(speakers))
    models = (("without GRL (the model entering stage 2)", stage1), ("with GRL (final)", t2s))
    probe = LogisticRegression(max_iter=2000)
    for label, model in models:
        vecs = np.stack([model.emotion_vector(f)[0].float().numpy() for f in feats])
        spk = float(cross_val_score(probe, vecs, speakers, cv=4).mean())
        emo = float(cross_val_score(probe, vecs, styles, cv=4).mean())
        out.append((f"GRL probe {label}: speaker acc / emotion acc", f"{spk:.2f} / {emo:.2f}"))
    out.append(("GRL probe chance (speaker)", f"{chance:.2f}"))
    final = vecs  # the last model of ``models``: the one trained with the reversal
    predicted = cross_val_predict(probe, final, speakers, cv=4)
    per_voice = ", ".join(
        f"{v} {float((predicted[speakers == v] == v).mean()):.2f}" for v in sorted(set(speakers))
    )
    out.append(("GRL probe with GRL, speaker acc per voice", per_voice))
    trained = np.isin(speakers, train_voices)
    if 0 < trained.sum() < len(speakers) and len(set(speakers[trained])) > 1:
        acc = float(cross_val_score(probe, final[trained], speakers[trained], cv=4).mean())
        n = len(set(speakers[trained]))
        out.append(
            (
                f"GRL probe with GRL, the {n} training voices only: speaker acc (chance)",
                f"{acc:.2f} ({1.0 / n:.2f})",
            )
        )
    return out


@torch.inference_mode()
def vocoder_rows(seconds: float = 3.0, repeats: int = 2) -> list[tuple[str, str]]:
    """HiFi-GAN universal seconds per audio second in each CPU backend, interleaved repeats
    (minimum), and the backend ``auto`` picks on this CPU."""
    from dubstudio.engine.device import cpu_bf16_native
    from dubstudio.engine.vocoders.cpu import accelerated, resolve_backend
    from dubstudio.engine.vocoders.hifigan import load_hifigan_universal

    eager = load_hifigan_universal().eval()
    backends = {"eager PyTorch": eager, "ONNX Runtime": accelerated(eager, backend="onnx")}
    if cpu_bf16_native():  # emulated bf16 elsewhere: slower, never chosen
        backends["bf16 autocast"] = accelerated(eager, backend="bf16")
    mel = torch.randn(1, 80, int(seconds * 22050 / 256)) - 5.0
    best = dict.fromkeys(backends, float("inf"))
    for fn in backends.values():
        fn(mel)  # warm-up
    for _ in range(repeats):
        for label, fn in backends.items():
            t0 = time.perf_counter()
            fn(mel)
            best[label] = min(best[label], (time.perf_counter() - t0) / seconds)
    rows = [(f"vocoder {label}: seconds per audio second", f"{v:.3f}") for label, v in best.items()]
    rows.append(("vocoder backend used on this CPU", resolve_backend("auto")))
    return rows


@torch.inference_mode()
def tokenizer_rows(encoder: Any, data: Path) -> list[tuple[str, str]]:
    """Per-token phone accuracy vs the engines' timings per voice, and cross-voice agreement of the
    collapsed token sequences (1 - edit distance / length) on the same held-out sentences."""
    items = [it for it in _test_items(data) if it.utt.style == "calm"]
    acc: dict[str, list[float]] = {}
    seqs: dict[tuple[str, str], list[int]] = {}
    for it in items:
        codes = encoder.reference.tokenizer.codes(it.mel[None], it.codes.numel())[0]
        phones = it.codes % N_PHONES  # the tokenizer predicts the phone part of each code
        acc.setdefault(it.utt.voice, []).append(float((codes == phones).float().mean()))
        seqs[(it.utt.text, it.utt.voice)] = collapse_repeats(codes.tolist())
    rows = [
        (f"tokenizer phone accuracy per token vs engine timings, {v}", f"{np.mean(a):.3f}")
        for v, a in sorted(acc.items())
    ]
    voices = sorted(acc)
    agree = []
    for text in {t for t, _ in seqs}:
        for i, va in enumerate(voices):
            for vb in voices[i + 1 :]:
                a, b = seqs.get((text, va)), seqs.get((text, vb))
                if a and b:
                    agree.append(1 - edit_distance(a, b) / max(len(a), len(b)))
    rows.append(("tokenizer cross-voice agreement (collapsed sequences)", f"{np.mean(agree):.3f}"))
    return rows


def format_table(res: EvalResults) -> str:
    """Markdown tables of the results."""
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in res.rows]
    lines += [
        "",
        f"Emotion at weight 1 vs calm, same exact budget{_emotion_sample(res)} (recipe "
        "direction in brackets: pitch, range, energy, rate):",
        "",
        "| emotion | ΔF0 median (Hz) | ΔF0 range (Hz) | Δenergy (dB) | rate vs calm (free mode) |",
        "|---|---|---|---|---|",
    ]
    source = {row[0]: row for row in res.source_emotion_rows}
    for name, f0, rng_, en, rate in res.emotion_rows:
        r = STYLES[name]
        cells = f"{f0:+.1f} | {rng_:+.1f} | {en:+.1f} | ×{rate:.2f}"
        if name in source:
            _, sf0, srng, sen, srate = source[name]
            cells = (
                f"{f0:+.1f} ({sf0:+.1f}) | {rng_:+.1f} ({srng:+.1f}) | {en:+.1f} ({sen:+.1f}) | "
                f"×{rate:.2f} (×{srate:.2f})"
            )
        recipe = f"×{r.pitch:g}, ×{r.pitch_range:g}, {r.gain_db:+g} dB, ×{r.rate:g}"
        lines.append(f"| {name} ({recipe}) | {cells} |")
    agree, total = direction_agreement(res.emotion_rows)
    if total:
        lines += ["", f"Measures moving in their recipe's direction: {agree}/{total}."]
    if source:
        agree, total = direction_agreement(res.emotion_rows, res.source_emotion_rows)
        lines[-1] += (
            " In parentheses: the same changes in the voice's own corpus recordings of the same "
            "sentences (natural lengths); measures moving the way those recordings move: "
            f"{agree}/{total}."
        )
    return "\n".join(lines)


def _emotion_sample(res: EvalResults) -> str:
    """', voice V, N sentences x K draws each' for the emotion table's heading ('' if unknown)."""
    if "emotion_lines" not in res.data:
        return ""
    lines, draws = res.data["emotion_lines"], res.data["emotion_draws"]
    sample = f"{lines} sentence{'s' * (lines != 1)}"
    if draws > 1:
        sample += f" × {draws} T2S draws each, calm's as well"
    return f", voice {res.data['emotion_voice']}, {sample}"


def direction_agreement(
    emotion_rows: list[tuple[str, float, float, float, float]],
    reference: list[tuple[str, float, float, float, float]] | None = None,
) -> tuple[int, int]:
    """(agreeing, total) signs of every emotion's four prosody changes against its recipe, or
    against the changes in ``reference`` rows (the corpus recordings) where given.

    Calm and entries with no change (factor 1, 0 dB) are not counted; a measured change of
    exactly zero (or NaN) counts as disagreeing.
    """
    if reference is None:  # the recipes as changes: pitch and range factors, gain, rate
        recipes = {row[0]: STYLES[row[0]] for row in emotion_rows}
        reference = [
            (name, r.pitch - 1.0, r.pitch_range - 1.0, r.gain_db, r.rate)
            for name, r in recipes.items()
        ]
    wanted_of = {row[0]: row[1:] for row in reference}
    agree = total = 0
    for name, f0, rng_, en, rate in emotion_rows:
        if name not in wanted_of:
            continue
        w_f0, w_rng, w_en, w_rate = wanted_of[name]
        for wanted, got in (
            (w_f0, f0),
            (w_rng, rng_),
            (w_en, en),
            (w_rate - 1.0, rate - 1.0),
        ):
            if wanted == 0:
                continue
            total += 1
            agree += int(np.sign(wanted) == np.sign(got) and got != 0)
    return agree, total


def write_card(model: str | Path, table: str) -> Path:
    """Replace the evaluation section of the bundle's MODEL_CARD.md with ``table``."""
    from dubstudio.engine.bundles import load_bundle

    card = load_bundle(model).root / "MODEL_CARD.md"
    begin, end = "<!-- eval:begin -->", "<!-- eval:end -->"
    text = card.read_text(encoding="utf-8") if card.is_file() else f"{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    card.write_text(f"{head}{begin}\n{table}\n{end}{tail}", encoding="utf-8")
    return card
