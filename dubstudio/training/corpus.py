"""Corpus generator: project-written sentences x local voices x eight emotion style recipes.

Engines and voices (each voice's licence is recorded in MODEL_CARD.md):

* Flite (CMU, BSD-style licence): kal16, awb, rms, slt, with the engine's phone timings
  (``-psdur``);
* Festival with the diphone voice ked (Debian ``festvox-kdlpc16k``, CSTR licence: use, modify
  and distribute without restriction), phone timings from its Segment relation;
* RHVoice (Debian ``rhvoice-english``, voice data LGPL-2.1+): bdl, clb, alan;
* SVOX Pico (Debian ``libttspico-utils``, Apache-2.0): pico-us (en-US), pico-gb (en-GB).

RHVoice and Pico report no phone timings: their utterances are stored with ``phones = []``
and aligned afterwards (`dubstudio.training.align`) by the frame tokenizer trained on the timed
voices. Everything is stored as 16 kHz WAVs with its metadata (voice, style, text, duration,
timbre shift, phone timings).

Training utterances are augmented with a timbre shift: ``sox pitch`` moves pitch and formants
together by a few semitones while keeping the timing, so each real voice yields several
"pseudo-speakers" (`speaker_of`). Shifted copies are augmentation only: the evaluation uses
unshifted voices, and the held-out voices are never shifted copies of a training voice.

The eight styles are prosody recipes (a stand-in for an emotional data set, used honestly as
such): rate (Flite ``duration_stretch`` = 1 / rate, RHVoice ``-r``, Pico ``<speed>``), pitch
level (Flite ``int_f0_target_mean`` relative to the voice's calm mean, RHVoice ``-t``, Pico
``<pitch>``), pitch range (``int_f0_target_stddev`` relative to calm; RHVoice and Pico have no
range control, so their styles keep the voice's own range, or with
``CorpusPlan.range_for_every_engine`` get it afterwards by WORLD resynthesis, `scale_pitch`,
the level staying the engine's) and loudness (gain in dB applied to the samples). Flite's
``rms`` ignores the ``int_f0_target_*`` settings (its F0 is the same whatever they say), so
its styles get their pitch level and range afterwards, by WORLD analysis and resynthesis with
the F0 contour scaled around its mean (`scale_pitch`); calm utterances, which ask for no
change, stay the engine's own output.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EMOTION_NAMES

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class StyleRecipe:
    """Prosody settings of one emotion style.

    Attributes:
        name: One of `EMOTION_NAMES`.
        rate: Speaking-rate factor (>1 faster).
        pitch: Pitch-level factor on the voice's calm F0 mean.
        pitch_range: Factor on the voice's calm F0 standard deviation.
        gain_db: Loudness change in dB.
    """

    name: str
    rate: float
    pitch: float
    pitch_range: float
    gain_db: float


#: The eight recipes, documented in MODEL_CARD.md; directions follow common acoustic findings on
#: acted emotion (raised pitch/range/energy for high arousal, lowered for sad/melancholic).
STYLES: dict[str, StyleRecipe] = {
    r.name: r
    for r in (
        StyleRecipe("happy", 1.10, 1.15, 1.6, 3.0),
        StyleRecipe("angry", 1.15, 1.05, 1.4, 6.0),
        StyleRecipe("sad", 0.80, 0.88, 0.5, -6.0),
        StyleRecipe("afraid", 1.20, 1.22, 1.3, -3.0),
        StyleRecipe("disgusted", 0.88, 0.92, 1.2, 1.0),
        StyleRecipe("melancholic", 0.85, 0.92, 0.6, -4.0),
        StyleRecipe("surprised", 1.05, 1.28, 1.9, 3.0),
        StyleRecipe("calm", 1.00, 1.00, 1.0, 0.0),
    )
}
assert tuple(STYLES) == EMOTION_NAMES

#: Calm F0 mean / standard deviation (Hz) of each voice (measured on its default output).
VOICES: dict[str, tuple[float, float]] = {
    "kal16": (105.0, 15.0),
    "awb": (120.0, 20.0),
    "slt": (175.0, 25.0),
    "rms": (110.0, 18.0),
    "ked": (105.0, 15.0),
}
#: Voices synthesized by Festival (the rest by Flite), with the Scheme call selecting them.
FESTIVAL_VOICES = {"ked": "voice_ked_diphone"}
#: RHVoice voices (``RHVoice-test -p NAME``).
RHVOICE_VOICES = ("bdl", "clb", "alan")
#: SVOX Pico voices and their language codes (``pico2wave -l``).
PICO_VOICES = {"pico-us": "en-US", "pico-gb": "en-GB"}
#: Voices whose engine reports no phone timings (aligned after synthesis).
UNTIMED_VOICES = frozenset((*RHVOICE_VOICES, *PICO_VOICES))
TRAIN_VOICES = ("kal16", "awb", "slt", "ked", "bdl", "clb", "alan", "pico-us", "pico-gb")
HELDOUT_VOICES = ("rms",)
#: Voices whose engine ignores the pitch settings: `synthesize` applies the style's pitch level
#: and range to their output with `scale_pitch`.
PITCH_BY_RESYNTHESIS = frozenset({"rms"})
#: Voices whose engine sets the pitch level but has no range control (RHVoice, Pico): with
#: ``range_for_every_engine`` `synthesize` applies the style's range alone with `scale_pitch`.
RANGE_BY_RESYNTHESIS = UNTIMED_VOICES
#: Timbre shifts (cents) drawn for training utterances.
SHIFTS = (-300, -150, 0, 150, 300)


# ----------------------------------------------------------------------------------------------
# Sentences: a project-written grammar (CC0), so every text the model was trained on is ours.

_SUBJECTS = (
    "the old sailor",
    "my sister",
    "a tall man",
    "the young doctor",
    "our neighbour",
    "the quiet child",
    "his mother",
    "the baker",
    "a stranger",
    "the teacher",
    "my friend",
    "the captain",
    "her brother",
    "the farmer",
    "a small dog",
    "the driver",
    "the nurse",
    "the singer",
    "our guide",
    "the king",
    "a tired student",
    "the pilot",
    "the painter",
)
_VERBS = (
    "found",
    "carried",
    "painted",
    "opened",
    "closed",
    "watched",
    "dropped",
    "cleaned",
    "bought",
    "sold",
    "fixed",
    "lost",
    "followed",
    "pushed",
    "pulled",
    "hid",
    "counted",
    "read",
    "wrote",
    "kept",
    "broke",
    "lifted",
    "washed",
    "threw",
)
_OBJECTS = (
    "a red box",
    "the green door",
    "seven apples",
    "the heavy stone",
    "a letter",
    "the map",
    "an empty bottle",
    "the black coat",
    "a wooden chair",
    "the silver key",
    "two books",
    "the broken clock",
    "a warm blanket",
    "the yellow kite",
    "a loaf of bread",
    "the garden gate",
    "a paper boat",
    "the rusty bicycle",
    "a basket of fish",
    "the glass jar",
    "a blue umbrella",
)
_PLACES = (
    "near the river",
    "in the kitchen",
    "at the station",
    "behind the barn",
    "on the hill",
    "by the window",
    "under the bridge",
    "in the morning",
    "after dinner",
    "before the storm",
    "at midnight",
    "in the market",
    "on the beach",
    "across the field",
    "inside the tent",
    "next to the church",
    "during the rain",
    "at the harbour",
    "in the dark forest",
)
_QUESTIONS = (
    "where did you put {o}",
    "why is {s} so late today",
    "who left {o} {p}",
    "can you hear the wind {p}",
    "did {s} really say that",
    "what happened {p}",
)
_EXCLAIMS = (
    "look at {o}",
    "do not touch {o}",
    "come back here right now",
    "we won the game",
    "that was the best day of my life",
    "stop shouting at me",
    "I cannot believe it",
)


def make_sentences(count: int, seed: int) -> list[str]:
    """``count`` distinct sentences from the project grammar (deterministic in ``seed``)."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < count:
        s, v, o, p = (rng.choice(x) for x in (_SUBJECTS, _VERBS, _OBJECTS, _PLACES))
        kind = rng.random()
        if kind < 0.7:
            text = f"{s} {v} {o} {p}."
        elif kind < 0.85:
            text = rng.choice(_QUESTIONS).format(s=s, o=o, p=p) + "?"
        else:
            text = rng.choice(_EXCLAIMS).format(s=s, o=o, p=p) + "!"
        text = text[0].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# ----------------------------------------------------------------------------------------------
# Synthesis


@dataclass
class Utterance:
    """Metadata of one corpus utterance (one line of ``metadata.jsonl``)."""

    uid: str
    voice: str
    style: str
    text: str
    split: str
    wav: str
    duration: float
    phones: list[tuple[str, float]]
    shift: int = 0


def speaker_of(utt: Utterance) -> str:
    """The (pseudo-)speaker of an utterance: its voice, with the timbre shift when there is one."""
    return f"{utt.voice}{utt.shift:+d}" if utt.shift else utt.voice


#: The program each engine needs, and the Debian package that provides it.
_PROGRAMS = {
    "flite": ("flite", "flite"),
    "festival": ("festival", "festival"),
    "rhvoice": ("RHVoice-test", "rhvoice-english"),
    "pico": ("pico2wave", "libttspico-utils"),
}


def engine_of(voice: str) -> str:
    """The engine that synthesizes ``voice``: flite, festival, rhvoice or pico."""
    if voice in FESTIVAL_VOICES:
        return "festival"
    if voice in RHVOICE_VOICES:
        return "rhvoice"
    if voice in PICO_VOICES:
        return "pico"
    return "flite"


def _require(engine: str) -> None:
    program, package = _PROGRAMS[engine]
    if shutil.which(program) is None:
        raise ValidationError(
            f"{program} is not installed (apt-get install {package}; RHVoice and Pico are in "
            "Debian's non-free component)."
        )


def synthesize(
    text: str,
    voice: str,
    style: StyleRecipe,
    out_wav: Path,
    shift: int = 0,
    *,
    range_for_every_engine: bool = False,
) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """Synthesize one utterance in a style with the voice's engine, then shift its timbre.

    With ``range_for_every_engine`` a voice whose engine has no range control still gets the
    style's pitch range (`RANGE_BY_RESYNTHESIS`).

    Returns:
        (samples (N,) float32 at 16 kHz after the gain, phone timings [(phone, end_s)]).

    Raises:
        ValidationError: The engine (or sox, for a shift) is missing or failed.
    """
    import soundfile as sf

    engine = engine_of(voice)
    _require(engine)
    phones = _ENGINES[engine](text, voice, style, out_wav)
    by_pitch = voice in PITCH_BY_RESYNTHESIS
    by_range = by_pitch or (range_for_every_engine and voice in RANGE_BY_RESYNTHESIS)
    level = style.pitch if by_pitch else 1.0
    spread = style.pitch_range if by_range else 1.0
    if (level, spread) != (1.0, 1.0):
        audio, rate = sf.read(str(out_wav), dtype="float64")
        audio = scale_pitch(audio, rate, level, spread)
        sf.write(str(out_wav), audio.astype(np.float32), rate, subtype="PCM_16")
    if shift:
        if shutil.which("sox") is None:
            raise ValidationError("Timbre shifts need sox (apt-get install sox).")
        tmp = out_wav.with_suffix(".shift.wav")
        proc = subprocess.run(
            ["sox", str(out_wav), str(tmp), "pitch", str(shift)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise ValidationError(f"sox pitch failed: {proc.stderr.strip()}")
        tmp.replace(out_wav)
    audio, rate = sf.read(str(out_wav), dtype="float32")
    if rate != SAMPLE_RATE:
        raise ValidationError(f"{voice} wrote {rate} Hz, expected {SAMPLE_RATE}.")
    audio = np.clip(audio * 10 ** (style.gain_db / 20.0), -1.0, 1.0).astype(np.float32)
    sf.write(str(out_wav), audio, SAMPLE_RATE, subtype="PCM_16")
    return audio, phones


def scale_pitch(audio: np.ndarray, rate: int, level: float, spread: float) -> np.ndarray:
    """Move a clip's pitch by WORLD analysis and resynthesis, timing and spectral envelope kept.

    Each voiced frame's log-F0 is scaled around the clip's mean log-F0 by ``spread`` and the
    whole contour raised by ``level``: the recipe's pitch level and pitch range.

    Args:
        audio: (N,) float64 samples.
        rate: Sample rate (Hz).
        level: Pitch-level factor (> 0).
        spread: Pitch-range factor on the log-F0 deviations (>= 0).

    Returns:
        (N,) float64 samples at ``rate``.
    """
    import warnings

    with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        import pyworld

    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, times = pyworld.harvest(x, rate, f0_floor=60.0, f0_ceil=400.0, frame_period=5.0)
    envelope = pyworld.cheaptrick(x, f0, times, rate)
    aperiodicity = pyworld.d4c(x, f0, times, rate)
    voiced = f0 > 0
    if voiced.any():
        log_f0 = np.log(f0[voiced])
        centre = log_f0.mean()
        f0 = f0.copy()
        f0[voiced] = np.exp(centre + np.log(level) + spread * (log_f0 - centre))
    out = np.asarray(pyworld.synthesize(f0, envelope, aperiodicity, rate, 5.0), np.float64)
    return np.pad(out[: len(x)], (0, max(0, len(x) - len(out))))


def _festival(text: str, voice: str, style: StyleRecipe, out_wav: Path) -> list[tuple[str, float]]:
    """Festival diphone synthesis; rate through Duration_Stretch, pitch through int_lr_params."""
    mean, std = VOICES[voice]
    quoted = text.replace("\\", " ").replace('"', " ")
    segs = out_wav.with_suffix(".segs")
    script = f"""({FESTIVAL_VOICES[voice]})
(Parameter.set 'Duration_Stretch {1.0 / style.rate:.4f})
(set! int_lr_params '((target_f0_mean {mean * style.pitch:.2f})
  (target_f0_std {std * style.pitch_range:.2f}) (model_f0_mean 170) (model_f0_std 34)))
(set! u (utt.synth (Utterance Text "{quoted}")))
(utt.save.wave u "{out_wav}" 'riff)
(utt.save.segs u "{segs}")
"""
    proc = subprocess.run(
        ["festival", "--pipe"], input=script, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not out_wav.is_file() or not segs.is_file():
        raise ValidationError(f"Festival failed on {text!r}: {proc.stderr.strip()}")
    phones = []
    body = segs.read_text().split("#", 1)[-1]
    for row in body.splitlines():
        parts = row.split()
        if len(parts) == 3:
            phones.append((parts[2], float(parts[0])))
    segs.unlink()
    return phones


def _flite(text: str, voice: str, style: StyleRecipe, out_wav: Path) -> list[tuple[str, float]]:
    mean, std = VOICES[voice]
    cmd = [
        "flite",
        "-voice",
        voice,
        "--setf",
        f"duration_stretch={1.0 / style.rate:.4f}",
        "--setf",
        f"int_f0_target_mean={mean * style.pitch:.2f}",
        "--setf",
        f"int_f0_target_stddev={std * style.pitch_range:.2f}",
        "-psdur",
        "-t",
        text,
        "-o",
        str(out_wav),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out_wav.is_file():
        raise ValidationError(f"Flite failed on {text!r}: {proc.stderr.strip()}")
    phones = []
    for item in proc.stdout.split():
        name, _, end = item.rpartition(":")
        phones.append((name, float(end)))
    return phones


def _rhvoice(text: str, voice: str, style: StyleRecipe, out_wav: Path) -> list[tuple[str, float]]:
    """RHVoice synthesis (24 kHz, converted to 16 kHz); rate and pitch are percentages."""
    raw = out_wav.with_suffix(".raw.wav")
    cmd = ["RHVoice-test", "-p", voice, "-r", f"{100 * style.rate:.0f}",
           "-t", f"{100 * style.pitch:.0f}", "-o", str(raw)]  # fmt: skip
    proc = subprocess.run(cmd, input=text, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not raw.is_file():
        raise ValidationError(f"RHVoice failed on {text!r}: {proc.stderr.strip()}")
    _to_16k(raw, out_wav)
    return []


def _pico(text: str, voice: str, style: StyleRecipe, out_wav: Path) -> list[tuple[str, float]]:
    """SVOX Pico synthesis (16 kHz); rate and pitch through its <speed> and <pitch> tags."""
    quoted = text.replace("<", " ").replace(">", " ")
    markup = (
        f"<speed level='{100 * style.rate:.0f}'><pitch level='{100 * style.pitch:.0f}'>"
        f"{quoted}</pitch></speed>"
    )
    raw = out_wav.with_suffix(".raw.wav")  # pico2wave insists on a .wav name
    cmd = ["pico2wave", "-l", PICO_VOICES[voice], "-w", str(raw), markup]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not raw.is_file():
        raise ValidationError(f"pico2wave failed on {text!r}: {proc.stderr.strip()}")
    _to_16k(raw, out_wav)
    return []


def _to_16k(src: Path, dst: Path) -> None:
    """Mono 16 kHz 16-bit copy of ``src`` at ``dst`` (sox), then ``src`` is removed."""
    proc = subprocess.run(
        ["sox", str(src), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(dst)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    src.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise ValidationError(f"sox could not convert {src.name}: {proc.stderr.strip()}")


_ENGINES: dict[str, Callable[[str, str, StyleRecipe, Path], list[tuple[str, float]]]] = {
    "flite": _flite,
    "festival": _festival,
    "rhvoice": _rhvoice,
    "pico": _pico,
}


@dataclass(frozen=True)
class CorpusPlan:
    """What `build_corpus` synthesizes.

    Attributes:
        train_sentences: Sentences for training.
        test_sentences: Held-out sentences.
        train_voices: Voices in training.
        heldout_voices: Voices never seen in training (evaluation only).
        styles_per_sentence: Non-calm styles per (sentence, voice) besides calm.
        shifts: Timbre shifts (cents) drawn per training utterance; ``(0,)`` for none.
        seed: Seed of sentences and style choices.
        test_only: Synthesize only the held-out split (the same sentences and voices as the
            full plan): what `dubstudio eval` needs to measure a bundle.
        range_for_every_engine: Give the voices whose engine has no range control their
            style's pitch range too, by WORLD resynthesis (`RANGE_BY_RESYNTHESIS`). Off by
            default: the corpus the bundled model's emotion conditioner was trained on.
    """

    train_sentences: int = 600
    test_sentences: int = 24
    train_voices: tuple[str, ...] = TRAIN_VOICES
    heldout_voices: tuple[str, ...] = HELDOUT_VOICES
    styles_per_sentence: int = 1
    shifts: tuple[int, ...] = SHIFTS
    seed: int = 1234
    test_only: bool = False
    range_for_every_engine: bool = False


def plan_items(plan: CorpusPlan) -> Iterator[tuple[str, str, str, str, int]]:
    """(split, voice, style, text, shift) for every utterance of the plan."""
    rng = random.Random(plan.seed)
    sentences = make_sentences(plan.train_sentences + plan.test_sentences, plan.seed)
    train, test = sentences[: plan.train_sentences], sentences[plan.train_sentences :]
    emotional = [n for n in EMOTION_NAMES if n != "calm"]
    for text in train:
        for voice in plan.train_voices:
            styles = ["calm", *rng.sample(emotional, plan.styles_per_sentence)]
            for style in styles:
                shift = rng.choice(plan.shifts)  # drawn either way: the random stream is shared
                if not plan.test_only:
                    yield "train", voice, style, text, shift
    for text in test:
        for voice in (*plan.train_voices, *plan.heldout_voices):
            for style in EMOTION_NAMES:
                # Every style on held-out text: the emotion evaluation compares it with calm.
                yield "test", voice, style, text, 0


def build_corpus(
    out_dir: str | Path,
    plan: CorpusPlan | None = None,
    *,
    on_progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Synthesize the corpus into ``out_dir`` (wavs/ + metadata.jsonl); resumes if present.

    Returns:
        Path of ``metadata.jsonl``.
    """
    plan = plan or CorpusPlan()
    out = Path(out_dir)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    meta_path = out / "metadata.jsonl"
    done: set[str] = set()
    if meta_path.is_file():
        done = {json.loads(line)["uid"] for line in meta_path.read_text().splitlines() if line}
    items = [
        (f"{split}-{voice}-{style}-{_text_id(text)}", split, voice, style, text, shift)
        for split, voice, style, text, shift in plan_items(plan)
    ]
    todo = [item for item in items if item[0] not in done]
    plan_path = out / "plan.json"
    if done and plan_path.is_file():
        made = bool(json.loads(plan_path.read_text(encoding="utf-8")).get("range_for_every_engine"))
        if made != plan.range_for_every_engine:
            raise ValidationError(
                f"{out} was made with range_for_every_engine={made}; "
                "resuming it with the other setting would mix two corpora. Use another --data "
                "directory, or remove this one."
            )
    plan_path.write_text(json.dumps(asdict(plan), indent=2))

    def make(item: tuple[str, str, str, str, str, int]) -> Utterance:
        uid, split, voice, style, text, shift = item
        wav = out / "wavs" / f"{uid}.wav"
        audio, phones = synthesize(
            text, voice, STYLES[style], wav, shift,
            range_for_every_engine=plan.range_for_every_engine,
        )  # fmt: skip
        duration = len(audio) / SAMPLE_RATE
        return Utterance(uid, voice, style, text, split, f"wavs/{uid}.wav", duration, phones, shift)

    # The engines are single-threaded programs: two at a time use both cores.
    with (
        meta_path.open("a", encoding="utf-8") as meta,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        for start in range(0, len(todo), 64):
            if should_stop is not None and should_stop():
                break
            for utt in pool.map(make, todo[start : start + 64]):
                meta.write(json.dumps(asdict(utt)) + "\n")
            meta.flush()
            if on_progress is not None:
                on_progress((len(items) - len(todo) + start) / len(items), "corpus")
    return meta_path


def _text_id(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def read_metadata(corpus_dir: str | Path) -> list[Utterance]:
    """All utterances of a corpus directory."""
    path = Path(corpus_dir) / "metadata.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            d["phones"] = [tuple(p) for p in d["phones"]]
            out.append(Utterance(**d))
    return out


def training_voices(corpus_dir: str | Path, utts: list[Utterance]) -> list[str]:
    """The voices a corpus trains on: those of its training utterances, or, for a corpus built
    with ``test_only``, the plan's (``plan.json``)."""
    voices = sorted({u.voice for u in utts if u.split == "train"})
    plan = Path(corpus_dir) / "plan.json"
    if not voices and plan.is_file():
        voices = sorted(json.loads(plan.read_text(encoding="utf-8")).get("train_voices", []))
    return voices


def write_metadata(corpus_dir: str | Path, utts: list[Utterance]) -> None:
    """Rewrite ``metadata.jsonl`` of a corpus directory atomically (temporary file, fsync,
    rename), e.g. after the alignment filled in phone timings."""
    path = Path(corpus_dir) / "metadata.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for u in utts:
            handle.write(json.dumps(asdict(u)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
