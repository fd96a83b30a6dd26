"""The small model's training workflow on a tiny corpus (Flite, Festival, Pico): corpus -> timed
features -> tokenizer -> alignment -> features -> T2S (three stages) -> S2M -> T2E -> bundle ->
pipeline render -> evaluation pieces."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from dubstudio.core.errors import ValidationError
from dubstudio.training.corpus import SHIFTS, CorpusPlan, make_sentences, read_metadata
from dubstudio.training.evaluate import prosody, wer

if TYPE_CHECKING:
    from dubstudio.training.features import Item

pytestmark = pytest.mark.skipif(
    shutil.which("flite") is None or shutil.which("pico2wave") is None,
    reason="needs Debian flite and libttspico-utils",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from dubstudio.training import workflow

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("train")
    data, runs, out = root / "data", root / "runs", root / "bundle"
    plan = CorpusPlan(
        train_sentences=4, test_sentences=1, train_voices=("kal16", "ked", "pico-us"),
        heldout_voices=("awb",), styles_per_sentence=1, seed=3,
    )  # fmt: skip
    stages = ("corpus", "timed-features", "tokenizer", "align", "features", "t2s", "s2m")
    for stage in stages:
        workflow.run_stage(stage, data, runs, size="tiny", steps=6, plan=plan)
    workflow.export_bundle(data, runs, out, size="tiny", name="tiny-trained", cfm_steps=2)
    return data, runs, out


def test_sentences_are_deterministic_and_distinct() -> None:
    a, b = make_sentences(50, 1), make_sentences(50, 1)
    assert a == b and len(set(a)) == 50
    assert make_sentences(50, 2) != a


def test_test_only_plan_is_the_full_plans_held_out_split(tmp_path: Path) -> None:
    """``--test-only`` synthesizes exactly the held-out utterances of the full plan (same
    sentences, voices and styles), and the corpus still knows its training voices."""
    from dataclasses import asdict, replace

    from dubstudio.training.corpus import plan_items, training_voices

    full = CorpusPlan(train_sentences=6, test_sentences=2, seed=5)
    held_out = [item for item in plan_items(full) if item[0] == "test"]
    only = list(plan_items(replace(full, test_only=True)))
    assert only == held_out and len(only) == 2 * (len(full.train_voices) + 1) * 8
    (tmp_path / "plan.json").write_text(json.dumps(asdict(replace(full, test_only=True))))
    assert training_voices(tmp_path, []) == sorted(full.train_voices)


def test_corpus_has_metadata_and_phone_timings(trained: tuple[Path, Path, Path]) -> None:
    data, _, _ = trained
    utts = read_metadata(data / "corpus")
    # 4 sentences x 3 voices x (calm + 1 style) + 1 test sentence x 4 voices x 8 styles.
    assert len(utts) == 4 * 3 * 2 + 1 * 4 * 8
    assert {u.voice for u in utts if u.split == "train"} == {"kal16", "ked", "pico-us"}
    # Training utterances carry a timbre shift drawn from the plan; evaluation ones never do.
    assert {u.shift for u in utts if u.split == "train"} <= set(SHIFTS)
    assert len({u.shift for u in utts if u.split == "train"}) > 1
    assert {u.shift for u in utts if u.split == "test"} == {0}
    for u in utts:  # Pico's timings come from the alignment stage, the others' from the engine
        assert u.phones[-1][1] == pytest.approx(u.duration, abs=0.25)
        assert all(a[1] <= b[1] for a, b in zip(u.phones, u.phones[1:], strict=False))
    pico = next(u for u in utts if u.voice == "pico-us")
    assert [p for p, _ in pico.phones if p != "pau"]  # the sentence's phones, in order


@pytest.mark.parametrize("voice", ["ked", "awb"])  # Festival and Flite
def test_style_recipes_change_duration_and_pitch(
    trained: tuple[Path, Path, Path], voice: str
) -> None:
    import soundfile as sf

    from dubstudio.engine.analysis import pitch_track

    data, _, _ = trained
    test = [u for u in read_metadata(data / "corpus") if u.split == "test" and u.voice == voice]
    by_style = {u.style: u for u in test if u.text == test[0].text}
    duration = {k: u.duration for k, u in by_style.items()}
    assert duration["sad"] > duration["calm"] > duration["afraid"]  # rate 0.8 < 1 < 1.2

    def median_f0(style: str) -> float:
        audio, rate = sf.read(str(data / "corpus" / by_style[style].wav), dtype="float32")
        f0 = pitch_track(audio, rate, 160)
        return float(f0[f0 > 0].median())

    assert median_f0("surprised") > median_f0("calm") > median_f0("sad")  # x1.28, x1, x0.88


def test_a_voice_that_ignores_pitch_settings_still_gets_its_styles_pitch(tmp_path: Path) -> None:
    """Flite's rms ignores int_f0_target_*: its styles' pitch comes from WORLD resynthesis."""
    from dubstudio.engine.analysis import pitch_track
    from dubstudio.training.corpus import STYLES, scale_pitch, synthesize

    text = "The captain sold a warm blanket next to the church."
    clips = {s: synthesize(text, "rms", STYLES[s], tmp_path / f"{s}.wav")[0] for s in STYLES}

    def log_f0(audio: np.ndarray) -> torch.Tensor:
        f0 = pitch_track(audio.astype(np.float32), 16000, 160)
        return f0[f0 > 0].log()

    level = {s: float(log_f0(a).median().exp()) for s, a in clips.items()}
    assert 1.15 < level["surprised"] / level["calm"] < 1.45  # recipe x1.28
    assert 0.80 < level["sad"] / level["calm"] < 0.95  # recipe x0.88
    assert len(clips["calm"]) < len(clips["sad"])  # rate still from the engine
    calm = clips["calm"].astype(np.float64)
    narrow, wide = (scale_pitch(calm, 16000, 1.0, k) for k in (0.5, 1.9))
    assert len(narrow) == len(wide) == len(clips["calm"])
    assert float(log_f0(narrow).std()) < 0.8 * float(log_f0(wide).std())


def test_a_voice_without_range_control_gets_its_styles_range_on_request(tmp_path: Path) -> None:
    """Pico sets the pitch level but has no range control: by default its styles keep its own
    range; with ``range_for_every_engine`` WORLD resynthesis scales the log-F0 spread by the
    recipe's range (sad x0.5, surprised x1.9), the level staying Pico's."""
    from dubstudio.engine.analysis import pitch_track
    from dubstudio.training.corpus import STYLES, synthesize

    text = "The captain sold a warm blanket next to the church."

    def measure(style: str, resynthesize: bool) -> tuple[float, float]:
        """(spread p90 - p10 of log-F0, median F0) of one rendering."""
        wav = tmp_path / f"{style}-{resynthesize}.wav"
        audio = synthesize(
            text, "pico-us", STYLES[style], wav, range_for_every_engine=resynthesize
        )[0]
        f0 = pitch_track(audio, 16000, 160)
        log_f0 = f0[f0 > 0].log()
        return float(log_f0.quantile(0.9) - log_f0.quantile(0.1)), float(log_f0.median().exp())

    calm = measure("calm", True)
    assert measure("calm", False) == calm, "calm asks for no change: the engine's own output"
    sad, surprised = measure("sad", True), measure("surprised", True)
    assert sad[0] < 0.7 * calm[0] < 0.7 * 0.7 * surprised[0]
    assert 0.80 < sad[1] / calm[1] < 0.95  # the engine's x0.88
    assert 1.15 < surprised[1] / calm[1] < 1.45  # the engine's x1.28
    own = measure("sad", False)
    assert 0.8 * calm[0] < own[0] < 1.25 * calm[0], "by default Pico keeps its own range"


def test_a_corpus_is_not_resumed_with_the_other_range_setting(tmp_path: Path) -> None:
    """Resuming a corpus made with the other ``range_for_every_engine`` would mix two corpora:
    refused before anything is synthesized, the corpus left as it was."""
    from dataclasses import asdict

    from dubstudio.training.corpus import build_corpus

    made = CorpusPlan(train_sentences=1, test_sentences=1, range_for_every_engine=True)
    (tmp_path / "plan.json").write_text(json.dumps(asdict(made)))
    meta = tmp_path / "metadata.jsonl"
    meta.write_text(json.dumps({"uid": "train-slt-calm-0000000000"}) + "\n")
    before = meta.read_text()
    with pytest.raises(ValidationError, match="range_for_every_engine=True"):
        build_corpus(tmp_path, CorpusPlan(train_sentences=1, test_sentences=1))
    assert not any((tmp_path / "wavs").iterdir())
    assert json.loads((tmp_path / "plan.json").read_text())["range_for_every_engine"] is True
    assert meta.read_text() == before


def test_codes_are_phone_classes_with_pitch_bins(trained: tuple[Path, Path, Path]) -> None:
    from dubstudio.engine.small import N_PHONES, VOICED_PHONES
    from dubstudio.engine.text.phonemes import PHONES
    from dubstudio.training.features import TOKEN_RATE, labels_at, load_items

    data, _, _ = trained
    items = load_items(data / "features.pt")
    assert TOKEN_RATE == 50
    levels: set[int] = set()
    for it in items:
        t_tok = (np.arange(it.codes.numel()) + 0.5) / 50
        phones = labels_at(t_tok, it.utt.phones)
        assert torch.equal(it.codes % N_PHONES, phones)
        level = it.codes // N_PHONES
        unvoiced = torch.tensor([PHONES[p] not in VOICED_PHONES for p in phones.tolist()])
        assert (level[unvoiced] == 1).all()
        levels |= set(level.tolist())
    assert levels == {0, 1, 2}


def test_training_logs_and_stage1_checkpoint(trained: tuple[Path, Path, Path]) -> None:
    _, runs, _ = trained
    for name in ("tokenizer", "t2s", "s2m"):
        assert (runs / f"{name}.ckpt").is_file()
    assert (runs / "t2s_stage1.ckpt").is_file()
    losses = [json.loads(x) for x in (runs / "s2m.log").read_text().splitlines()]
    assert losses and all(np.isfinite(x["loss"]) for x in losses)


def test_resume_continues_step_count(trained: tuple[Path, Path, Path]) -> None:
    from dubstudio.training import workflow

    data, runs, _ = trained
    workflow.run_stage("s2m", data, runs, size="tiny", steps=8)
    state = torch.load(str(runs / "s2m.ckpt"), weights_only=True)
    assert state["step"] == 8


def test_exported_bundle_renders_exact_budget(trained: tuple[Path, Path, Path]) -> None:
    from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle, verify_bundle
    from dubstudio.engine.pipeline import Synthesizer

    data, _, out = trained
    bundle = load_bundle(out)
    assert verify_bundle(bundle).ok
    synth = Synthesizer.from_bundle(bundle)
    # The export fitted the emotion range on the corpus and the model's own renders.
    assert bundle.config["emotion_range"] is True and (out / "range.safetensors").is_file()
    assert synth.components.emotion_range is not None
    per_style = synth.components.emotion_range.per_style
    assert bool(torch.isfinite(per_style).all()) and float(per_style[-1]) == 0.0  # calm: none
    # The style anchors are the training voices' (the held-out voice is not one of them).
    assert bundle.config["style_anchors"] == ["kal16", "ked", "pico-us"]
    anchors = synth.components.reference_encoder.anchors
    assert anchors.shape == (3, 256)
    assert torch.allclose(anchors.norm(dim=-1), torch.ones(3), atol=1e-5)
    from dubstudio.training.workflow import style_anchors, train_items

    items = train_items(data)
    assert torch.allclose(style_anchors(items)[1], anchors)
    for k, voice in enumerate(("kal16", "ked", "pico-us")):
        own = [it for it in items if it.utt.voice == voice]
        calm = [it for it in own if it.utt.shift == 0 and it.utt.style == "calm"]
        # The anchor is the voice's style as the decoder saw it in training: its calm,
        # unshifted style group's (one group: one style) when the corpus has one.
        best = max(float(anchors[k] @ it.style.float()) for it in own)
        assert best > 0.5
        if calm:
            assert torch.allclose(anchors[k], calm[0].style.float(), atol=1e-5)
    ref = next(u for u in read_metadata(data / "corpus") if u.voice == "awb")  # held out
    voice = VoiceRef(str(data / "corpus" / ref.wav))
    emo = EmotionRequest(mode="vector", vector=(0, 0, 1.0, 0, 0, 0, 0, 0))
    result = synth.synthesize(
        SynthesisRequest(
            text="The old sailor found a letter.",
            voice=voice,
            emotion=emo,
            sample_rate=22050,
            target_samples=30000,
            duration_mode="exact",
        )
    )
    assert len(result.audio) == 30000 and np.isfinite(result.audio).all()


def test_wer_counts_edits() -> None:
    assert wer("the red box", "the red box") == (0, 3)
    assert wer("the red box", "a red") == (2, 3)


def test_prosody_tracks_pitch_and_energy() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    low = (0.1 * np.sin(2 * np.pi * 120 * t)).astype(np.float32)
    high = (0.4 * np.sin(2 * np.pi * 240 * t)).astype(np.float32)
    f_low, _, e_low = prosody(low, rate)
    f_high, _, e_high = prosody(high, rate)
    assert f_low == pytest.approx(120, rel=0.1) and f_high == pytest.approx(240, rel=0.1)
    assert e_high - e_low == pytest.approx(20 * np.log10(4), abs=0.5)


def test_features_are_kept_for_unchanged_speakers(
    trained: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from dubstudio.training.features import extract, load_items

    data, _, _ = trained
    before = {it.utt.uid: it for it in load_items(data / "features.pt")}
    with caplog.at_level(logging.INFO, logger="dubstudio.training.features"):
        extract(data / "corpus", data / "features.pt")
    assert f"0 computed, {len(before)} kept" in caplog.text
    after = {it.utt.uid: it for it in load_items(data / "features.pt")}
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k].codes, before[k].codes) for k in before)


def test_features_follow_a_changed_recording(
    trained: tuple[Path, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A recording re-synthesized under the same metadata (same uid, duration and phones)
    makes its speaker's features be computed again."""
    import logging

    import soundfile as sf

    from dubstudio.training.corpus import speaker_of
    from dubstudio.training.features import extract, load_items

    data, _, _ = trained
    shutil.copytree(data / "corpus", tmp_path / "corpus")
    shutil.copy(data / "features.pt", tmp_path / "features.pt")
    before = {it.utt.uid: it for it in load_items(tmp_path / "features.pt")}
    changed = next(iter(before.values())).utt
    wav = tmp_path / "corpus" / changed.wav
    audio, rate = sf.read(str(wav), dtype="float32")
    sf.write(str(wav), 0.5 * audio, rate, subtype="PCM_16")
    with caplog.at_level(logging.INFO, logger="dubstudio.training.features"):
        extract(tmp_path / "corpus", tmp_path / "features.pt")
    redone = sum(speaker_of(it.utt) == speaker_of(changed) for it in before.values())
    assert f"{redone} computed, {len(before) - redone} kept" in caplog.text
    after = {it.utt.uid: it for it in load_items(tmp_path / "features.pt")}
    assert not torch.equal(after[changed.uid].mel, before[changed.uid].mel)


def test_warm_start_begins_from_the_bundle_weights(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from dubstudio.engine.checkpoints import read_state_dict
    from dubstudio.training import workflow

    data, _, out = trained
    runs = tmp_path / "runs"
    for stage in ("t2s", "s2m"):
        workflow.run_stage(stage, data, runs, size="tiny", steps=1, init=out)
    t2s = torch.load(str(runs / "t2s.ckpt"), weights_only=True)["model"]
    s2m = torch.load(str(runs / "s2m.ckpt"), weights_only=True)
    for got, path in ((t2s, "t2s"), (s2m["s2m"], "s2m")):
        want = read_state_dict(out / f"{path}.safetensors")
        # One warm-up step (lr 5e-4 x 1/100) away from the bundle, not a random initialisation.
        drift = max(float((got[k].float() - v.float()).abs().max()) for k, v in want.items())
        assert drift < 1e-4, path
    emb = read_state_dict(out / "reference.safetensors")["embedding.weight"]
    assert float((s2m["embedding"]["weight"] - emb).abs().max()) < 1e-4


def _exact_sources(items: Sequence[Item], piece: torch.Tensor) -> list[tuple[int, int]]:
    """(item, offset) whose mel holds ``piece`` (M, n) exactly (silent frames may repeat
    across utterances, so there can be several)."""
    n = piece.shape[-1]
    return [
        (i, a)
        for i, it in enumerate(items)
        for a in range(it.mel.shape[-1] - n + 1)
        if torch.equal(it.mel[:, a : a + n], piece)
    ]


@pytest.mark.parametrize("cross", [0.0, 1.0])
def test_s2m_prompts_are_own_prefixes_or_other_utterances_of_the_speaker(
    trained: tuple[Path, Path, Path], cross: float
) -> None:
    """Cross prompts: a piece of another utterance of the same (pseudo-)speaker, with its own
    content, before the target crop; otherwise the prompt is a prefix of the crop."""
    import random

    from dubstudio.training import recipes, workflow
    from dubstudio.training.corpus import speaker_of
    from dubstudio.training.workflow import train_items

    data, _, _ = trained
    items = train_items(data)
    mods = workflow.build_modules(workflow.small_config("tiny"))
    s2m, emb = mods["s2m"], mods["reference"].embedding  # type: ignore[union-attr]
    batches = recipes._S2MBatches(items, s2m, emb, None, random.Random(1), 40, cross, (10, 30))

    with torch.no_grad():
        x1, lens, prompt, cond, style = batches.batch(6)
    for b in range(6):
        n, p = int(lens[b]), int(prompt[b])
        # Silent frames may repeat across utterances, so every exact source is a candidate.
        targets = [
            (i, a)
            for i, a in _exact_sources(items, x1[b, :, p:n])
            if torch.equal(style[b], items[i].style)
            and torch.equal(cond[b, p:n], batches._content(i, None)[a : a + n - p])
        ]
        assert targets, "the frames after the prompt are a crop of one utterance, with its content"
        if cross == 0.0:
            assert p <= 0.4 * n
            assert any(torch.equal(x1[b, :, :p], items[i].mel[:, a - p : a]) for i, a in targets)
            continue
        assert 10 <= p <= 30
        speakers = {speaker_of(items[i].utt) for i, _ in targets}
        assert any(
            speaker_of(items[j].utt) in speakers
            and torch.equal(cond[b, :p], batches._content(j, None)[off : off + p])
            for j, off in _exact_sources(items, x1[b, :, :p])
        ), "the prompt is a piece of another utterance of the speaker, with its content"


@pytest.mark.parametrize("cross", [0.0, 1.0])
def test_calm_prompts_condition_s2m_on_the_speakers_calm_readings(
    trained: tuple[Path, Path, Path], cross: float
) -> None:
    """With calm prompts every crop's style vector is one of its speaker's calm readings', and
    a cross prompt is a piece of such a reading, whatever the crop's own emotion; a speaker
    with no calm reading keeps its own readings."""
    import random

    from dubstudio.training import recipes, workflow
    from dubstudio.training.corpus import speaker_of
    from dubstudio.training.workflow import train_items

    data, _, _ = trained
    items = train_items(data)
    mods = workflow.build_modules(workflow.small_config("tiny"))
    s2m, emb = mods["s2m"], mods["reference"].embedding  # type: ignore[union-attr]
    batches = recipes._S2MBatches(
        items, s2m, emb, None, random.Random(3), 40, cross, (10, 30), calm_prompts=True
    )
    pool: dict[str, list[Item]] = {}
    for it in items:
        pool.setdefault(speaker_of(it.utt), []).append(it)
    pool = {s: [it for it in its if it.utt.style == "calm"] or its for s, its in pool.items()}
    seen_emotional = 0
    with torch.no_grad():
        for _ in range(4):
            x1, lens, prompt, _, style = batches.batch(6)
            for b in range(6):
                n, p = int(lens[b]), int(prompt[b])
                # Every exact source of the crop is a candidate.
                targets = [items[i] for i in {i for i, _ in _exact_sources(items, x1[b, :, p:n])}]
                own = [it for t in targets for it in pool[speaker_of(t.utt)]]
                seen_emotional += all(
                    t.utt.style != "calm" and pool[speaker_of(t.utt)][0].utt.style == "calm"
                    for t in targets
                )
                assert any(torch.equal(style[b], it.style) for it in own)
                if cross == 1.0:
                    own_ids = {id(it) for it in own}
                    assert any(
                        id(items[j]) in own_ids for j, _ in _exact_sources(items, x1[b, :, :p])
                    ), "the prompt is a piece of one of the speaker's calm readings"
    assert seen_emotional, "some crops were emotional readings of a speaker with calm ones"


def _assert_same_parts(root: Path, source: Path, parts: tuple[str, ...]) -> None:
    """The bundle ``root`` holds exactly ``source``'s weights for each of ``parts``."""
    from dubstudio.engine.checkpoints import read_state_dict

    for part in parts:
        got = read_state_dict(root / f"{part}.safetensors")
        ref = read_state_dict(source / f"{part}.safetensors")
        assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref), part


def test_s2m_alone_continues_on_the_init_bundle_and_exports_its_other_parts(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A run that continues only S2M: the latent teacher is the init bundle's T2S (not a random
    one), and export takes T2S and T2E from the init bundle."""
    from dubstudio.engine.checkpoints import read_state_dict
    from dubstudio.training import recipes, workflow
    from dubstudio.training.workflow import train_items

    data, runs_trained, out = trained
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(runs_trained / "tokenizer.ckpt", runs / "tokenizer.ckpt")
    teacher = recipes._LatentTeacher(
        train_items(data), workflow.small_config("tiny"), runs, 0, init=out
    )
    want = read_state_dict(out / "t2s.safetensors")
    assert all(torch.equal(teacher.model.state_dict()[k], v) for k, v in want.items())
    workflow.run_stage("s2m", data, runs, size="tiny", steps=2, init=out)
    assert not (runs / "t2s.ckpt").exists() and not (runs / "t2e.ckpt").exists()
    root = workflow.export_bundle(data, runs, tmp_path / "bundle", size="tiny", init=out)
    _assert_same_parts(root, out, ("t2s", "t2e"))
    # S2M itself is the run's: two steps away from the bundle's.
    got, ref = read_state_dict(root / "s2m.safetensors"), read_state_dict(out / "s2m.safetensors")
    assert any(not torch.equal(got[k], ref[k]) for k in ref)


def test_cross_prompt_share_reaches_s2m_training_from_the_command_line(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """``--s2m-cross-prompt`` and ``--s2m-calm-prompts`` are parsed and reach S2M training; a
    share outside 0-1 is refused with a message naming the option's range (which prompts they
    give is `test_s2m_prompts_are_own_prefixes_or_other_utterances_of_the_speaker` and
    `test_calm_prompts_condition_s2m_on_the_speakers_calm_readings`)."""
    from dubstudio.cli import build_parser
    from dubstudio.training import workflow

    data, runs_trained, out = trained
    args = build_parser().parse_args(["train", "s2m", "--s2m-cross-prompt", "1"])
    assert args.s2m_cross_prompt == 1.0 and not args.s2m_calm_prompts
    args = build_parser().parse_args(
        ["train", "s2m", "--s2m-cross-prompt", "1", "--s2m-calm-prompts"]
    )
    assert args.s2m_calm_prompts
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(runs_trained / "tokenizer.ckpt", runs / "tokenizer.ckpt")
    workflow.run_stage(
        "s2m", data, runs, size="tiny", steps=2, init=out,
        s2m_cross_prompt=args.s2m_cross_prompt, s2m_calm_prompts=args.s2m_calm_prompts,
    )  # fmt: skip
    log = [json.loads(x) for x in (runs / "s2m.log").read_text().splitlines()]
    assert log[-1]["step"] == 2 and np.isfinite(log[-1]["loss"])
    with pytest.raises(ValidationError, match="between 0 and 1"):
        workflow.run_stage("s2m", data, tmp_path / "bad", size="tiny", s2m_cross_prompt=1.5)


def test_a_t2s_only_run_exports_the_init_bundles_decoder_and_tokenizer(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A run that re-trained only T2S (``--t2s-start-stage 2``) exports the init bundle's S2M,
    code embedding and tokenizer; without an init bundle the missing S2M is named."""
    from dubstudio.training import workflow

    data, runs_trained, out = trained
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(runs_trained / "t2s.ckpt", runs / "t2s.ckpt")
    root = workflow.export_bundle(data, runs, tmp_path / "bundle", size="tiny", init=out)
    _assert_same_parts(root, out, ("s2m", "reference"))
    with pytest.raises(ValidationError, match="No S2M checkpoint"):
        workflow.export_bundle(data, runs, tmp_path / "other", size="tiny")


def test_align_can_take_the_tokenizer_of_the_init_bundle(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from dubstudio.engine.checkpoints import read_state_dict
    from dubstudio.training import workflow

    data, _, out = trained
    runs = tmp_path / "runs"
    workflow.run_stage("align", data, runs, size="tiny", init=out)
    state = torch.load(str(runs / "tokenizer.ckpt"), weights_only=True)["model"]
    want = read_state_dict(out / "reference.safetensors")
    assert all(torch.equal(v, want[f"tokenizer.{k}"]) for k, v in state.items())
    assert all(u.phones for u in read_metadata(data / "corpus"))


def test_t2s_from_stage_two_keeps_the_warm_start_as_its_stage1_model(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from dubstudio.engine.checkpoints import read_state_dict
    from dubstudio.training import workflow

    data, _, out = trained
    runs = tmp_path / "runs"
    workflow.run_stage("t2s", data, runs, size="tiny", steps=20, init=out, t2s_start_stage=2)
    log = [json.loads(x) for x in (runs / "t2s.log").read_text().splitlines()]
    # Logged at steps 10 and 20: stage 2 takes the first 25/45 of the budget, stage 3 the rest.
    assert [x["stage"] for x in log] == [2, 3]
    assert log[0]["invariance"] > 0
    stage1 = torch.load(str(runs / "t2s_stage1.ckpt"), weights_only=True)["model"]
    want = read_state_dict(out / "t2s.safetensors")
    # Without a model to start from, stage 2 would train on random weights: refused.
    with pytest.raises(ValidationError, match="--init"):
        workflow.run_stage("t2s", data, tmp_path / "empty", size="tiny", t2s_start_stage=2)
    with pytest.raises(ValidationError, match="train tokenizer"):
        workflow.run_stage("align", data, tmp_path / "empty", size="tiny")
    assert all(torch.equal(stage1[k], v) for k, v in want.items())


def test_t2s_stage_two_alone_retrains_only_the_emotion_conditioner(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from dubstudio.engine.checkpoints import read_state_dict
    from dubstudio.training import workflow
    from dubstudio.training.recipes import EMOTION_PARTS

    data, _, out = trained
    runs = tmp_path / "runs"
    workflow.run_stage(
        "t2s", data, runs, size="tiny", steps=20, init=out, t2s_start_stage=2, t2s_end_stage=2
    )
    log = [json.loads(x) for x in (runs / "t2s.log").read_text().splitlines()]
    assert [x["stage"] for x in log] == [2, 2]  # the whole budget, no stage 3
    before = read_state_dict(out / "t2s.safetensors")
    after = torch.load(str(runs / "t2s.ckpt"), weights_only=True)["model"]
    moved = {k.split(".")[0] for k, v in before.items() if not torch.equal(after[k], v)}
    assert moved and moved <= set(EMOTION_PARTS)
    with pytest.raises(ValidationError, match="stages 2 to 1"):
        workflow.run_stage("t2s", data, runs, size="tiny", t2s_start_stage=2, t2s_end_stage=1)


@pytest.mark.slow
def test_evaluate_measures_the_trained_bundle(trained: tuple[Path, Path, Path]) -> None:
    from dubstudio.training.evaluate import evaluate, format_table

    data, runs, out = trained
    res = evaluate(out, data, runs, lines=1, emotion_lines=1, emotion_draws=2, emotions=("sad",))
    rows = dict(res.rows)
    # Every line rendered to its exact budget; WER and similarity measured on real audio.
    done, asked = rows["exact-budget renders with exact length"].split("/")
    assert done == asked and int(asked) >= 2
    assert res.data["wer_model"] >= 0.0 and 0.0 <= res.data["wer_source"] <= 1.0
    assert res.data["total"] >= 1  # lines of held-out voices were compared with every reference
    assert "the same for the held-out voices' own recordings (ceiling)" in rows
    pitch = rows["held-out voices: median F0 of the render / of the reference (median over lines)"]
    assert pitch.startswith("n/a") or float(pitch) > 0
    assert any(k.startswith("WER model / source, ") for k in rows)
    assert any(k.startswith("GRL probe with GRL") for k in rows)
    # Where the probe's accuracy comes from: one share per held-out utterance's voice.
    per_voice = [
        x.rsplit(" ", 1) for x in rows["GRL probe with GRL, speaker acc per voice"].split(", ")
    ]
    assert len(per_voice) >= 2 and all(0.0 <= float(acc) <= 1.0 for _, acc in per_voice)
    assert [r[0] for r in res.emotion_rows] == ["sad", "calm"]
    # The corpus recordings of the voice: sad is slower than calm there (rate x0.8).
    source = dict((r[0], r[1:]) for r in res.source_emotion_rows)
    assert set(source) == {"sad", "calm"} and source["sad"][3] < 1.0
    table = format_table(res)
    assert "| sad (" in table and "1 sentence × 2 T2S draws each" in table
    with pytest.raises(ValidationError, match="at least 1"):
        evaluate(out, data, runs, lines=1, emotion_lines=1, emotion_draws=0)


def test_five_pitch_levels_refine_a_three_level_bundle(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Features with 5 pitch levels refine the 3-level codes (same phones, same mid, each outer
    level split); T2S stage 3 starts from the 3-level bundle with its code tables expanded
    (the refined head gives each coarse code the probability the old head gave it), the S2M
    code embedding too, and the exported 5-level bundle renders."""
    from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.checkpoints import read_state_dict
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import N_PHONES, build_modules, coarser_level, small_config
    from dubstudio.training import recipes, workflow
    from dubstudio.training.features import load_features

    data, _, out = trained
    fine = tmp_path / "data"
    fine.mkdir()
    (fine / "corpus").symlink_to(data / "corpus")
    shutil.copy(data / "features.pt", fine / "features.pt")
    workflow.run_stage("features", fine, tmp_path / "runs", size="tiny", pitch_bins=5)
    coarse_items, coarse_bins = load_features(data / "features.pt")
    fine_items, fine_bins = load_features(fine / "features.pt")
    assert (coarse_bins, fine_bins) == (3, 5)
    coarse = {it.utt.uid: it.codes for it in coarse_items}
    levels: set[int] = set()
    for it in fine_items:
        old = coarse[it.utt.uid]
        assert torch.equal(it.codes % N_PHONES, old % N_PHONES)
        mapped = [coarser_level(int(x), 5, 3) for x in (it.codes // N_PHONES).tolist()]
        assert mapped == (old // N_PHONES).tolist()
        levels |= set((it.codes // N_PHONES).tolist())
    assert {1, 2, 3} <= levels  # the tiny corpus reaches beyond mid on both sides

    # The warm start: the refined head's probabilities, summed per coarse code, are the old ones.
    t2s = build_modules(small_config("tiny", 5))["t2s"]
    recipes.warm_start(t2s, out / "t2s.safetensors")
    old = read_state_dict(out / "t2s.safetensors")
    hidden = torch.randn(3, old["mel_head.weight"].shape[1])
    p_old = torch.softmax(hidden @ old["mel_head.weight"].T + old["mel_head.bias"], -1)
    p_new = torch.softmax(t2s.mel_head(hidden), -1).detach()
    source = torch.tensor(
        [coarser_level(c // N_PHONES, 5, 3) * N_PHONES + c % N_PHONES for c in range(5 * N_PHONES)]
        + [3 * N_PHONES, 3 * N_PHONES + 1]
    )
    assert torch.allclose(torch.zeros_like(p_old).index_add_(1, source, p_new), p_old, atol=1e-5)

    runs = tmp_path / "runs"
    workflow.run_stage("t2s", fine, runs, size="tiny", steps=2, init=out, t2s_start_stage=3)
    root = workflow.export_bundle(fine, runs, tmp_path / "bundle", size="tiny", init=out)
    bundle = load_bundle(root)
    assert bundle.config["pitch_bins"] == 5
    emb = read_state_dict(root / "reference.safetensors")["embedding.weight"]
    assert (
        emb.shape[0]
        == read_state_dict(out / "reference.safetensors")["embedding.weight"].shape[0]
        + 2 * N_PHONES
    )
    ref = next(u for u in read_metadata(data / "corpus") if u.voice == "awb")
    result = Synthesizer.from_bundle(bundle).synthesize(
        SynthesisRequest(
            text="The old sailor found a letter.",
            voice=VoiceRef(str(data / "corpus" / ref.wav)),
            emotion=EmotionRequest(mode="vector", vector=(0, 0, 1.0, 0, 0, 0, 0, 0)),
            sample_rate=22050,
            target_samples=20000,
            duration_mode="exact",
        )
    )
    assert len(result.audio) == 20000 and np.isfinite(result.audio).all()
