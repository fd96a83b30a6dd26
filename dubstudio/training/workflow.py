"""The small model's training workflow: corpus -> timed features -> tokenizer -> alignment of the
untimed voices -> features -> T2S / S2M / T2E -> bundle.

Directory layout: ``<data>/corpus/`` (WAVs + metadata.jsonl), ``<data>/features.pt``,
``<runs>/*.ckpt`` and ``*.log``; the bundle is written to the ``--out`` directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EMOTION_NAMES
from dubstudio.engine.small import build_modules, small_config, write_small_bundle
from dubstudio.engine.text.phonemes import PhonemeFrontEnd, default_lexicon_path
from dubstudio.training import emotion_range, recipes
from dubstudio.training.align import align_corpus
from dubstudio.training.corpus import CorpusPlan, build_corpus
from dubstudio.training.features import BINS, Item, extract, load_features

log = logging.getLogger(__name__)

DESCRIPTIONS = (
    Path(__file__).resolve().parents[2] / "resources" / "data" / "emotion_descriptions.jsonl"
)
Progress = Callable[[float, str], None]


def front_end() -> PhonemeFrontEnd:
    """The training front-end (CMU lexicon from the pocketsphinx package)."""
    path = default_lexicon_path()
    if path is None:
        raise ValidationError("Training needs the 'pocketsphinx' package (its CMU dictionary).")
    return PhonemeFrontEnd.from_file(path)


def train_items(data: Path) -> list[Item]:
    """Training-split items."""
    return training_set(data)[0]


def training_set(data: Path) -> tuple[list[Item], int]:
    """Training-split items and the pitch levels of their codes."""
    items, bins = load_features(data / "features.pt")
    return [it for it in items if it.utt.split == "train"], bins


def style_anchors(items: list[Item]) -> tuple[list[str], torch.Tensor]:
    """The training voices (sorted) and their style anchors for `repel_style`, (V, S): each
    voice's style as the decoder learnt it (the GE2E mean of its calm, unshifted training
    utterances; of all its unshifted ones, or of all its ones, when the corpus lacks those)."""
    voices = sorted({it.utt.voice for it in items})
    rows = []
    for voice in voices:
        own = [it for it in items if it.utt.voice == voice]
        unshifted = [it for it in own if it.utt.shift == 0]
        calm = [it for it in unshifted if it.utt.style == "calm"]
        mean = torch.stack([it.style.float() for it in calm or unshifted or own]).mean(0)
        rows.append(mean / mean.norm().clamp(min=1e-8))
    return voices, torch.stack(rows)


def run_stage(
    stage: str,
    data: str | Path,
    runs: str | Path,
    *,
    size: str = "default",
    steps: int = 1000,
    minutes: float = 30.0,
    seed: int = 0,
    plan: CorpusPlan | None = None,
    init: Path | None = None,
    t2s_start_stage: int = 1,
    t2s_end_stage: int = 3,
    s2m_cross_prompt: float = 0.0,
    s2m_calm_prompts: bool = False,
    pitch_bins: int = BINS,
    on_progress: Progress | None = None,
) -> Any:
    """Run one stage (``corpus``, ``timed-features``, ``tokenizer``, ``align``, ``features``,
    ``t2s``, ``s2m``, ``t2e``); ``init`` is a bundle directory T2S and S2M start from when
    they have no checkpoint yet; ``t2s_start_stage`` 2 skips T2S stage 1 and ``t2s_end_stage``
    2 stage 3 (see `recipes.train_t2s`); ``s2m_cross_prompt`` is the share of S2M prompts cut
    from another utterance of the speaker and ``s2m_calm_prompts`` makes those utterances, and
    the style vectors, the speaker's calm readings (see `recipes.train_s2m`); ``pitch_bins``
    the pitch levels of the codes ``features`` writes. The model stages build their model for
    the pitch levels of the features they train on."""
    data, runs = Path(data), Path(runs)
    config = small_config(size)
    budget = recipes.Budget(steps, minutes * 60.0)
    if stage == "corpus":
        return build_corpus(data / "corpus", plan, on_progress=on_progress)
    if stage in ("features", "timed-features"):
        return extract(
            data / "corpus",
            data / "features.pt",
            timed_only=stage == "timed-features",
            bins=pitch_bins,
            on_progress=on_progress,
        )
    if stage == "tokenizer":
        # Before alignment the features hold only the engine-timed utterances; run again after
        # it, the tokenizer continues on every voice (its own alignments of the untimed ones,
        # as an aligner is refined on the alignments it made).
        return recipes.train_tokenizer(
            train_items(data), config, runs, budget, seed=seed, on_progress=on_progress
        )
    if stage == "align":
        tok = build_modules(config)["reference"].tokenizer  # type: ignore[union-attr]
        ckpt = runs / "tokenizer.ckpt"
        # A warm-started run may align with the bundle's tokenizer (trained on every voice)
        # instead of training one on the timed voices first; it becomes the run's tokenizer.
        source = recipes.load_run_or_bundle(
            tok, ckpt, init, "reference.safetensors", prefix="tokenizer."
        )
        if source == "bundle":
            runs.mkdir(parents=True, exist_ok=True)
            torch.save({"model": tok.state_dict(), "step": 0}, str(ckpt))
        elif source is None:
            raise ValidationError(
                f"No tokenizer to align with in {runs}: run 'dubstudio train tokenizer' first, "
                "or pass --init BUNDLE to align with that bundle's tokenizer."
            )
        return align_corpus(data / "corpus", tok, front_end(), on_progress=on_progress)
    if stage == "t2s":
        items, bins = training_set(data)
        return recipes.train_t2s(
            items,
            small_config(size, bins),
            front_end(),
            runs,
            budget,
            seed=seed,
            batch=8 if size == "default" else 4,
            init=init,
            start_stage=t2s_start_stage,
            end_stage=t2s_end_stage,
            on_progress=on_progress,
        )
    if stage == "s2m":
        items, bins = training_set(data)
        return recipes.train_s2m(
            items,
            small_config(size, bins),
            runs,
            budget,
            seed=seed,
            batch=8 if size == "default" else 4,
            crop=160,
            cross_prompt=s2m_cross_prompt,
            calm_prompts=s2m_calm_prompts,
            init=init,
            on_progress=on_progress,
        )
    if stage == "t2e":
        head, metrics = recipes.train_t2e(
            recipes.read_descriptions(DESCRIPTIONS), config, runs, seed=seed
        )
        torch.save({"model": head.state_dict(), "metrics": metrics}, str(runs / "t2e.ckpt"))
        return metrics
    raise ValueError(f"unknown stage {stage}")


@torch.no_grad()
def export_bundle(
    data: str | Path,
    runs: str | Path,
    out: str | Path,
    *,
    size: str = "default",
    name: str = "dubstudio-small-en",
    cfm_steps: int = 6,
    init: Path | None = None,
) -> Path:
    """Assemble a bundle from the checkpoints in ``runs``.

    The emotion matrices are derived from the trained T2S: emo_matrix row k is the mean emotion
    vector of training utterances in style k (prompted by another utterance of that voice and
    style), spk_matrix row k the mean GE2E style of that style's utterances (one row per class,
    so `EmotionMatrices.nearest_rows` always picks it); the style anchors are
    `style_anchors`; the emotion loudness is `recipes.fit_emotion_loudness`. A checkpoint the
    run lacks (T2S, S2M, tokenizer, T2E) comes from the ``init`` bundle (a run that continued
    only S2M, or only T2S).
    """
    data, runs = Path(data), Path(runs)
    everything, bins = load_features(data / "features.pt")
    items = [it for it in everything if it.utt.split == "train"]
    voices, anchors = style_anchors(items)
    config = small_config(size, bins)
    config["style_anchors"] = voices
    mods = build_modules(config)
    mods["speakers"]["anchors"].copy_(anchors)  # type: ignore[index,operator]

    def ck(name: str) -> dict[str, Any]:
        return torch.load(str(runs / f"{name}.ckpt"), map_location="cpu", weights_only=True)  # type: ignore[no-any-return]

    if recipes.load_run_or_bundle(mods["t2s"], runs / "t2s.ckpt", init, "t2s.safetensors") is None:
        raise ValidationError(
            f"No T2S checkpoint in {runs}: run 'dubstudio train t2s' first, or pass --init BUNDLE "
            "to export that bundle's T2S."
        )
    embedding = mods["reference"].embedding  # type: ignore[union-attr]
    tokenizer = mods["reference"].tokenizer  # type: ignore[union-attr]
    if (runs / "s2m.ckpt").is_file():
        s2m_state = ck("s2m")
        mods["s2m"].load_state_dict(s2m_state["s2m"])
        embedding.load_state_dict(s2m_state["embedding"])
    elif init is not None:  # a run that re-trained only T2S
        recipes.warm_start(mods["s2m"], Path(init) / "s2m.safetensors")
        recipes.warm_start(embedding, Path(init) / "reference.safetensors", prefix="embedding.")
    else:
        raise ValidationError(
            f"No S2M checkpoint in {runs}: run 'dubstudio train s2m' first, or pass --init BUNDLE "
            "to export that bundle's S2M."
        )
    source = recipes.load_run_or_bundle(
        tokenizer, runs / "tokenizer.ckpt", init, "reference.safetensors", prefix="tokenizer."
    )
    if source is None:
        raise ValidationError(
            f"No tokenizer checkpoint in {runs}: run 'dubstudio train tokenizer'."
        )
    recipes.load_run_or_bundle(mods["t2e"], runs / "t2e.ckpt", init, "t2e.safetensors")
    t2s = mods["t2s"].eval()
    data_src = recipes._T2SData(items, front_end(), seed=0)
    emo_rows, spk_rows = [], []
    for k, style in enumerate(EMOTION_NAMES):
        idx = [i for i, it in enumerate(items) if it.utt.style == style][:48]
        if not idx:  # a tiny corpus may lack a style: fall back to every utterance (neutral)
            idx = list(range(min(48, len(items))))
        feats = [data_src.cond(i) for i in idx]
        x, lens = recipes._pad_frames(feats)
        emo_rows.append(t2s._emotion_vector(x, lens).mean(0))  # type: ignore[operator]
        spk_rows.append(torch.stack([items[i].style for i in idx]).mean(0))
        log.info("emotion row %d (%s) from %d utterances", k, style, len(idx))
    emotion = mods["emotion"]
    emotion["spk_matrix"].copy_(torch.stack(spk_rows))  # type: ignore[index,operator]
    emotion["emo_matrix"].copy_(torch.stack(emo_rows))  # type: ignore[index,operator]
    if "loudness" in mods:
        fit = recipes.fit_emotion_loudness(t2s, everything)
        loudness = mods["loudness"]
        loudness["style_db"].copy_(fit.style_db)  # type: ignore[index,operator]
        loudness["weight"].copy_(fit.weight)  # type: ignore[index,operator]
        loudness["bias"].fill_(fit.bias)  # type: ignore[index,operator]
        log.info(
            "emotion loudness: %s dB; clip read-out from %d utterances, held out: mean error "
            "%.2f dB, %s",
            " ".join(f"{v:+.1f}" for v in fit.style_db.tolist()),
            fit.samples,
            fit.mae_db,
            ", ".join(
                f"{style} {measured:+.1f} (read {read:+.1f})"
                for style, (_, measured, read) in fit.held_out.items()
            ),
        )
    root = write_small_bundle(
        out, mods, config, name=name, lexicon=default_lexicon_path(), cfm_steps=cfm_steps
    )
    if config.get("emotion_range"):
        # A tiny model's fit only has to work, not to measure: one line per voice (8 renders).
        fit_bundle_range(data, root, per_voice=1 if size == "tiny" else 3)
    card = DESCRIPTIONS.parent / "MODEL_CARD.template.md"
    if card.is_file() and not (root / "MODEL_CARD.md").is_file():
        (root / "MODEL_CARD.md").write_text(card.read_text(encoding="utf-8"), encoding="utf-8")
    return root


def fit_bundle_range(
    data: str | Path,
    bundle: str | Path,
    *,
    per_voice: int = 3,
    per_cell: int = 24,
    seed: int = 0,
    on_progress: Progress | None = None,
) -> emotion_range.RangeFit:
    """Fit the emotion range of the bundle at ``bundle`` on the corpus in ``data`` and write it
    into the bundle (`emotion_range`): the corpus side from up to ``per_cell`` training
    recordings per (voice, style), the model side from ``per_voice`` training sentences per
    training voice, each rendered in all eight emotions with the range stage off."""
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer

    data, root = Path(data), Path(bundle)
    items, _ = load_features(data / "features.pt")
    corpus = data / "corpus"
    plan = json.loads((corpus / "plan.json").read_text(encoding="utf-8"))
    synth = Synthesizer.from_bundle(load_bundle(root))
    synth.components.emotion_range = None  # the decoder's own range changes
    recorded = emotion_range.recorded_changes(
        items,
        corpus,
        range_for_every_engine=bool(plan.get("range_for_every_engine")),
        per_cell=per_cell,
        seed=seed,
    )
    if not any(items[i].utt.style != "calm" for i, _ in recorded):
        raise ValidationError(
            f"{corpus} has no emotional training recordings of a voice whose engine carries the "
            "recipes' range, with calm readings to compare them with; make the whole corpus "
            "with 'dubstudio train corpus' (not --test-only) and its features."
        )
    lines = emotion_range.training_lines(items, corpus, per_voice=per_voice, seed=seed)
    rendered = emotion_range.rendered_changes(synth, lines, seed=seed, on_progress=on_progress)
    fit = emotion_range.fit_emotion_range(synth.components.t2s, items, recorded, rendered)
    emotion_range.write_emotion_range(root, fit)
    log.info(
        "emotion range from %d recordings and %d lines: %s",
        fit.recordings,
        fit.renders,
        "; ".join(fit.lines()),
    )
    return fit
