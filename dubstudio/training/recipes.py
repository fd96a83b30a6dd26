"""Training recipes of the small model: tokenizer, T2S (three stages with GRL), S2M (CFM), T2E.

Every trainer is time- and step-budgeted, seeds its random sources, checkpoints to
``<run>/<name>.ckpt`` (resumed when present) and appends its losses to ``<run>/<name>.log``.

Dimension legend: B batch, M mel bands (80), F mel frames, T_tok token frames, L text tokens,
D GPT width, S style width, P phone classes.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EMOTION_NAMES
from dubstudio.engine.small import (
    T2EHead,
    build_modules,
    minilm_embed,
    normalize_frames,
)
from dubstudio.engine.text.phonemes import PhonemeFrontEnd
from dubstudio.training.corpus import speaker_of
from dubstudio.training.features import Item

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


@dataclass
class Budget:
    """How long a trainer runs: whichever of steps / seconds is reached first."""

    steps: int
    seconds: float = float("inf")


class _Run:
    """Checkpoint + loss-log helper of one trainer."""

    def __init__(self, run_dir: str | Path, name: str) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ckpt = self.dir / f"{name}.ckpt"
        self.log_path = self.dir / f"{name}.log"

    def load(self) -> dict[str, Any] | None:
        if not self.ckpt.is_file():
            return None
        return torch.load(str(self.ckpt), map_location="cpu", weights_only=True)  # type: ignore[no-any-return]

    def save(self, state: Mapping[str, Any]) -> None:
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save(dict(state), str(tmp))
        tmp.replace(self.ckpt)

    def log(self, **values: Any) -> None:
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(values) + "\n")


def warm_start(module: nn.Module, path: Path, prefix: str = "") -> None:
    """Load a trainer's fresh ``module`` strictly from a bundle weight file (a warm start).

    Args:
        module: The freshly built module.
        path: The bundle's weight file.
        prefix: Only keys under this prefix (stripped), e.g. ``"embedding."``.
    """
    from dubstudio.engine.checkpoints import load_strict, read_state_dict

    state = read_state_dict(path)
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    state = refine_code_tables(state, module, path.name)
    load_strict(module, state, component=path.name)
    log.info("warm start from %s", path)


#: Per-code tables of the small model (keys as the T2S and the code embedding name them), and
#: whether each is an output-head bias whose probability the refined codes share.
CODE_TABLES = {
    "mel_embedding.weight": False,
    "mel_head.weight": False,
    "mel_head.bias": True,
    "weight": False,  # the code embedding, read under the prefix "embedding."
}


def refine_code_tables(
    state: dict[str, torch.Tensor], module: nn.Module, source: str
) -> dict[str, torch.Tensor]:
    """A bundle state whose codes have fewer pitch levels than ``module``'s, with its per-code
    tables expanded (`small.expand_pitch_bins`), so a 5-level model starts from a 3-level one."""
    from dubstudio.engine.small import N_PHONES, PITCH_EDGES, expand_pitch_bins

    own = module.state_dict()
    out = dict(state)
    for key, split_mass in CODE_TABLES.items():
        if key not in state or key not in own or state[key].shape == own[key].shape:
            continue
        # Rows are codes (N_PHONES per level) plus at most two specials (start / stop).
        old_bins, old_specials = divmod(state[key].shape[0], N_PHONES)
        new_bins, new_specials = divmod(own[key].shape[0], N_PHONES)
        if (
            old_specials != new_specials
            or not old_bins < new_bins
            or not {old_bins, new_bins} <= PITCH_EDGES.keys()
            or state[key].shape[1:] != own[key].shape[1:]
        ):
            continue  # not a pitch-level refinement: load_strict says what does not fit
        out[key] = expand_pitch_bins(state[key], old_bins, new_bins, split_mass=split_mass)
        log.info("%s: %s from %d to %d pitch levels", source, key, old_bins, new_bins)
    return out


def load_run_or_bundle(
    module: nn.Module, ckpt: Path, init: Path | None, weights: str, prefix: str = ""
) -> str | None:
    """Load ``module`` from the run's checkpoint ``ckpt`` (its ``"model"`` entry) when there is
    one, else warm-start it from the ``init`` bundle's ``weights`` file (keys under ``prefix``).

    Returns:
        ``"run"``, ``"bundle"``, or None when there is neither (``module`` is left as built).
    """
    if ckpt.is_file():
        state = torch.load(str(ckpt), map_location="cpu", weights_only=True)
        module.load_state_dict(state["model"])
        return "run"
    if init is not None:
        warm_start(module, Path(init) / weights, prefix=prefix)
        return "bundle"
    return None


def _set_lr(opt: torch.optim.Optimizer, base: float, step: int, progress: float) -> None:
    """Linear warm-up over 100 steps, then cosine decay to 10 % of ``base`` at the budget's end."""
    warm = min(1.0, (step + 1) / 100)
    decay = 0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    for group in opt.param_groups:
        group["lr"] = base * warm * decay


def _pad_frames(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (F_i, M) -> (B, F_max, M) zero-padded, lengths (B,)."""
    lens = torch.tensor([s.shape[0] for s in seqs])
    out = seqs[0].new_zeros(len(seqs), int(lens.max()), seqs[0].shape[1])
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lens


def _crop(x: torch.Tensor, length: int, rng: random.Random) -> torch.Tensor:
    """Random crop of at most ``length`` along the last axis."""
    n = x.shape[-1]
    if n <= length:
        return x
    a = rng.randrange(0, n - length + 1)
    return x[..., a : a + length]


# ----------------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer(
    items: Sequence[Item],
    config: Mapping[str, Any],
    run_dir: str | Path,
    budget: Budget,
    *,
    seed: int = 0,
    batch: int = 16,
    crop: int = 200,
    on_progress: Progress | None = None,
) -> nn.Module:
    """Train the frame tokenizer (`SmallReference.tokenizer`) on phone labels of mel frames."""
    run = _Run(run_dir, "tokenizer")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    reference = build_modules(config)["reference"]
    tok = reference.tokenizer  # type: ignore[union-attr]
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-3, weight_decay=1e-4)
    step = 0
    state = run.load()
    if state is not None:
        tok.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
    start = time.monotonic()
    tok.train()
    while step < budget.steps and time.monotonic() - start < budget.seconds:
        picks = [rng.choice(items) for _ in range(batch)]
        mels, labels = [], []
        for it in picks:
            joint = torch.cat([it.mel, it.frame_labels[None].float()], dim=0)
            joint = _crop(joint, crop, rng)
            mels.append(joint[:-1].T)
            labels.append(joint[-1].long())
        x, lens = _pad_frames(mels)  # (B, F, M)
        y = torch.full(x.shape[:2], -100, dtype=torch.long)
        for i, lab in enumerate(labels):
            y[i, : lab.numel()] = lab
        # Padding frames sit at log(1e-5); normalisation sees them, so crop-pad like inference
        # never happens: pad with the item's own minimum instead.
        for i, n in enumerate(lens.tolist()):
            x[i, n:] = x[i, :n].min()
        logits = tok(x.transpose(1, 2))  # (B, P, F)
        loss = F.cross_entropy(logits, y, ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0 or step == budget.steps:
            run.log(step=step, loss=float(loss.detach()))
            if on_progress is not None:
                on_progress(step / budget.steps, "tokenizer")
        if step % 200 == 0:
            run.save({"model": tok.state_dict(), "opt": opt.state_dict(), "step": step})
    run.save({"model": tok.state_dict(), "opt": opt.state_dict(), "step": step})
    return tok.eval()


# ----------------------------------------------------------------------------------------------
# T2S


class _GradReverse(torch.autograd.Function):
    """Identity forward, gradient multiplied by -lambda backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lam: float) -> torch.Tensor:  # type: ignore[override]
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Gradient reversal layer (Ganin & Lempitsky): identity forward, -lam * grad backward."""
    return _GradReverse.apply(x, lam)  # type: ignore[no-any-return]


EMOTION_PARTS = (
    "emo_conditioning_encoder",
    "emo_perceiver_encoder",
    "emovec_layer",
    "emo_layer",
)
SPEAKER_PARTS = ("conditioning_encoder", "perceiver_encoder")


def _set_trainable(model: nn.Module, prefixes: Sequence[str], flag: bool) -> None:
    for name, p in model.named_parameters():
        if name.split(".")[0] in prefixes:
            p.requires_grad_(flag)


class _T2SData:
    """Batches for the T2S recipe: speaker prompt = another utterance of the same (pseudo-)speaker,
    emotion prompt = another utterance of the same speaker and style (so the emotion path sees
    the style, never the target sentence)."""

    def __init__(self, items: Sequence[Item], front_end: PhonemeFrontEnd, seed: int) -> None:
        self.items = list(items)
        self.rng = random.Random(seed)
        self.text = [torch.tensor(front_end.encode(it.utt.text)) for it in self.items]
        self.by_voice: dict[str, list[int]] = {}
        self.by_group: dict[tuple[str, str], list[int]] = {}
        self.speaker = [speaker_of(it.utt) for it in self.items]
        for i, spk in enumerate(self.speaker):
            self.by_voice.setdefault(spk, []).append(i)
            self.by_group.setdefault((spk, self.items[i].utt.style), []).append(i)
        self.real_voices = sorted({it.utt.voice for it in self.items})
        self.by_style: dict[str, list[int]] = {}
        for i, it in enumerate(self.items):
            self.by_style.setdefault(it.utt.style, []).append(i)

    def group(self, idx: int) -> tuple[str, str]:
        """(speaker, style) of item ``idx``."""
        return self.speaker[idx], self.items[idx].utt.style

    def cond(self, idx: int, crop: int = 200) -> torch.Tensor:
        return normalize_frames(_crop(self.items[idx].mel, crop, self.rng)[None])[0]

    def prompts(
        self, idx: Sequence[int], cross_speaker: bool = False
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], list[int]]:
        """Padded speaker and emotion prompt features of items ``idx``:
        ((spk (B, F, M), spk_len (B,), emo (B, F, M), emo_len (B,)), emotion prompt items).

        With ``cross_speaker`` the emotion prompt is an utterance of the same style by any
        speaker, so the emotion vector gains nothing by carrying its prompt's voice.
        """
        spk = [self.cond(self.rng.choice(self.by_voice[self.speaker[i]])) for i in idx]
        if cross_speaker:
            emo_idx = [self.rng.choice(self.by_style[self.items[i].utt.style]) for i in idx]
        else:
            emo_idx = [self.rng.choice(self.by_group[self.group(i)]) for i in idx]
        emo = [self.cond(j) for j in emo_idx]
        return (*_pad_frames(spk), *_pad_frames(emo)), emo_idx

    def batch(self, size: int, cross_speaker: bool = False) -> dict[str, Any]:
        picks = [self.rng.randrange(len(self.items)) for _ in range(size)]
        (spk_x, spk_len, emo_x, emo_len), emo_idx = self.prompts(picks, cross_speaker)
        return {
            "cond": spk_x,
            "cond_len": spk_len,
            "emo": emo_x,
            "emo_len": emo_len,
            "text": [self.text[i] for i in picks],
            "codes": [self.items[i].codes for i in picks],
            # The adversaries read the emotion prompt's voice (which, cross-speaker, is not the
            # target's).
            "voice": torch.tensor(
                [self.real_voices.index(self.items[j].utt.voice) for j in emo_idx]
            ),
            "style": torch.tensor([EMOTION_NAMES.index(self.items[i].utt.style) for i in picks]),
        }


class _SpeakerAdversaries(nn.Module):
    """The speaker classifiers the emotion conditioner is trained against in T2S stage 2.

    One adversary that the encoder has learnt to fool is not evidence that the speaker is gone
    (a fresh linear probe still read it at 0.97 from a model trained that way), so: several
    heads (one linear, two MLPs), each re-initialised every ``period`` steps with its optimiser
    state, each fitted for ``fit_steps`` extra steps per batch on the detached emotion vectors
    (so the reversed gradient comes from classifiers that are as good as they can be on the
    current encoder), predicting the real voice (timbre-shifted copies share their voice's
    label, as a probe of identity would). They are not checkpointed: a resumed run starts a
    fresh period.
    """

    def __init__(
        self, dim: int, n_voices: int, seed: int, period: int = 200, fit_steps: int = 2
    ) -> None:
        super().__init__()
        self.period, self.fit_steps = period, fit_steps
        self.chance = math.log(n_voices)
        self.gen = torch.Generator().manual_seed(seed + 17)
        # Each head sees the layer-normalised vector: scaling the vectors up (which the encoder
        # did, to make fresh heads wildly wrong) then neither hides the voice nor slows the
        # heads' fitting.
        self.heads = nn.ModuleList(
            [
                nn.Sequential(nn.LayerNorm(dim, elementwise_affine=False), *layers)
                for layers in (
                    [nn.Linear(dim, n_voices)],
                    [nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, n_voices)],
                    [nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, n_voices)],
                )
            ]
        )
        self.opt = self._optimizer()
        self.born = 0

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=5e-3, weight_decay=0.01)

    def refresh(self, step: int) -> None:
        """Re-initialise every head (and its optimiser) once per ``period`` steps."""
        if step - self.born < self.period:
            return
        self.born = step
        with torch.no_grad():
            for module in self.heads.modules():
                if isinstance(module, nn.Linear):
                    bound = 1.0 / math.sqrt(module.in_features)
                    module.weight.uniform_(-bound, bound, generator=self.gen)
                    module.bias.uniform_(-bound, bound, generator=self.gen)
        self.opt = self._optimizer()

    def loss(self, emovec: torch.Tensor, voice: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the heads: emotion vectors (B, D), voice labels (B,)."""
        return torch.stack([F.cross_entropy(h(emovec), voice) for h in self.heads]).mean()

    def reversed_loss(self, emovec: torch.Tensor, voice: torch.Tensor) -> torch.Tensor:
        """`loss` for the encoder's side of the reversal, emotion vectors (B, D) taken through
        `grad_reverse`: a head whose cross-entropy is already at or above chance (ln voices)
        passes no gradient back. Maximising the cross-entropy without that ceiling lets the
        encoder make the heads confidently wrong (it rose to 8–19 nats against ln 9 = 2.2),
        which keeps the voice in the vectors under another labelling instead of removing it.
        """
        terms = []
        for head in self.heads:
            ce = F.cross_entropy(head(emovec), voice)
            terms.append(ce if float(ce.detach()) < self.chance else ce.detach())
        return torch.stack(terms).mean()

    def fit(self, emovec: torch.Tensor, voice: torch.Tensor) -> None:
        """A few steps of the heads alone on detached vectors (B, D)."""
        for _ in range(self.fit_steps):
            self.opt.zero_grad()
            self.loss(emovec, voice).backward()
            self.opt.step()
        self.opt.zero_grad()


class _StyleCentroids:
    """Running per-style means of the emotion vectors, for T2S stage 2's invariance criterion.

    Adversaries alone left the voice readable: a fresh probe on held-out vectors found it at
    0.94 while the adversaries sat at chance on their batches. The criterion says directly what
    a speaker-free emotion vector is: every vector of one style close to that style's mean over
    all speakers. `loss` is the within-style spread relative to the spread between the style
    means (both squared distances), so shrinking every vector does not lower it.

    Args:
        dim: Emotion vector width D.
        styles: Number of styles.
        momentum: EMA factor of the means per update.
    """

    def __init__(self, dim: int, styles: int, momentum: float = 0.98) -> None:
        self.means = torch.zeros(styles, dim)
        self.seen = torch.zeros(styles, dtype=torch.bool)
        self.momentum = momentum

    def loss(self, emovec: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Within-style / between-style spread of emotion vectors (B, D) with styles (B,).

        The means are updated from the (detached) batch first; zero until two styles are seen.
        """
        with torch.no_grad():
            for k in style.unique().tolist():
                batch_mean = emovec[style == k].detach().mean(0)
                if self.seen[k]:
                    self.means[k].lerp_(batch_mean, 1.0 - self.momentum)
                else:
                    self.means[k], self.seen[k] = batch_mean, True
        if int(self.seen.sum()) < 2:
            return emovec.sum() * 0.0
        means = self.means[self.seen]
        between = (means - means.mean(0)).pow(2).sum(-1).mean().clamp(min=1e-6)
        within = (emovec - self.means[style]).pow(2).sum(-1).mean()
        return within / between


def train_t2s(
    items: Sequence[Item],
    config: Mapping[str, Any],
    front_end: PhonemeFrontEnd,
    run_dir: str | Path,
    budget: Budget,
    *,
    stage_split: tuple[float, float] = (0.55, 0.8),
    start_stage: int = 1,
    end_stage: int = 3,
    seed: int = 0,
    batch: int = 16,
    lr: float = 5e-4,
    style_weight: float = 1.0,
    invariance_weight: float = 10.0,
    init: Path | None = None,
    on_progress: Progress | None = None,
) -> nn.Module:
    """The three-stage T2S recipe on `UnifiedVoice`.

    With ``init`` (a bundle directory) and no checkpoint yet, the model starts from the
    bundle's ``t2s.safetensors`` instead of random weights.

    Stage 1 (steps < stage_split[0]·N): all data, everything trained, duration slot = W_sem[T]
    with 30 % replaced by the free embedding. Stage 2 (< stage_split[1]·N): only the emotion
    conditioner trains, on emotion prompts by any speaker of the target's style, against speaker
    classifiers behind a gradient reversal layer whose λ ramps from 0.1 to 1
    (`_SpeakerAdversaries`), and with the style-invariance criterion (`_StyleCentroids`,
    weighted by ``invariance_weight``). The emotional subset is the whole corpus here: every
    utterance carries one of the eight emotions, calm included, and a calm vector that still
    told the voice would leave it readable. Stage 3: all data, both conditioners frozen. A copy
    of the model entering stage 2 is kept (``t2s_stage1.ckpt``) for the GRL probe.

    ``start_stage=2`` (with ``init``) skips stage 1 and ``end_stage=2`` stage 3: the stages run
    share the budget in the proportions ``stage_split`` gives them, for re-running some of
    them on a trained model (stage 2 alone retrains only the emotion conditioner).

    In stages 1 and 2 a linear classifier on the emotion vector predicts the utterance's style
    (cross-entropy, weighted by ``style_weight``): the corpus labels every style, and without
    this supervision the emotion conditioner learned too little of it to steer prosody.
    """
    run = _Run(run_dir, "t2s")
    if not 1 <= start_stage <= end_stage <= 3:
        raise ValidationError(
            f"T2S stages {start_stage} to {end_stage}: the recipe has stages 1 to 3, and the "
            "last stage run cannot come before the first."
        )
    if start_stage > 1 and init is None and not run.ckpt.is_file():
        raise ValidationError(
            f"Starting T2S at stage {start_stage} needs a trained model: pass --init BUNDLE (or "
            f"resume a run in {run_dir})."
        )
    # The stages run share the budget in the proportions ``stage_split`` gives them.
    bounds = (0.0, *stage_split, 1.0)
    lo, hi = bounds[start_stage - 1], bounds[end_stage]
    stage_split = (
        min(max((stage_split[0] - lo) / (hi - lo), 0.0), 1.0),
        min(max((stage_split[1] - lo) / (hi - lo), 0.0), 1.0),
    )
    torch.manual_seed(seed)
    model = build_modules(config)["t2s"]
    n_voices = len(_T2SData(items, front_end, seed).real_voices)
    d = model.config.model_dim  # type: ignore[union-attr]
    adversaries = _SpeakerAdversaries(d, n_voices, seed)
    centroids = _StyleCentroids(d, len(EMOTION_NAMES))
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    # Style supervision of the emotion vector (the corpus labels every utterance's style).
    style_clf = nn.Linear(d, len(EMOTION_NAMES))
    style_opt = torch.optim.AdamW(style_clf.parameters(), lr=lr, weight_decay=0.01)
    step = 0
    state = run.load()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if "style_clf" in state:  # checkpoints from before the style supervision lack it
            style_clf.load_state_dict(state["style_clf"])
            style_opt.load_state_dict(state["style_opt"])
        step = int(state["step"])
    elif init is not None:
        warm_start(model, Path(init) / "t2s.safetensors")
    data = _T2SData(items, front_end, seed + step)
    grl_rng = random.Random(seed + step)
    # Stages follow the budget's progress (steps or time, whichever is further along), so a
    # time-capped run still goes through all three.
    prior = float(state["elapsed"]) if state is not None else 0.0
    start = time.monotonic()
    model.train()
    stage1_saved = (run.dir / "t2s_stage1.ckpt").is_file()

    def progress() -> float:
        elapsed = prior + time.monotonic() - start
        return max(step / budget.steps, elapsed / budget.seconds)

    def save() -> None:
        run.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "style_clf": style_clf.state_dict(),
                "style_opt": style_opt.state_dict(),
                "step": step,
                "elapsed": prior + time.monotonic() - start,
            }
        )

    while progress() < 1.0:
        frac_done = progress()
        stage = 1 if frac_done < stage_split[0] else (2 if frac_done < stage_split[1] else 3)
        if stage > 1 and not stage1_saved:
            torch.save({"model": model.state_dict()}, str(run.dir / "t2s_stage1.ckpt"))
            stage1_saved = True
        for p in model.parameters():
            p.requires_grad_(True)
        if stage == 2:
            for name, p in model.named_parameters():
                p.requires_grad_(name.split(".")[0] in EMOTION_PARTS)
        elif stage == 3:
            _set_trainable(model, (*EMOTION_PARTS, *SPEAKER_PARTS), False)
        b = data.batch(batch, cross_speaker=stage == 2)
        _set_lr(opt, lr, step, frac_done)
        _set_lr(style_opt, lr, step, frac_done)
        out = model.forward_train(  # type: ignore[operator]
            b["cond"],
            b["text"],
            b["codes"],
            cond_lengths=b["cond_len"],
            emo_feats=b["emo"],
            emo_lengths=b["emo_len"],
            durations=[int(c.numel()) for c in b["codes"]],
            duration_drop=0.3,
            rng=grl_rng,
        )
        loss = out.loss_mel + 0.01 * out.loss_text
        adv = style_loss = invariance = torch.zeros(())
        if stage < 3:
            emovec = model._emotion_vector(b["emo"], b["emo_len"])  # type: ignore[operator]
            style_loss = F.cross_entropy(style_clf(emovec), b["style"])
            loss = loss + style_weight * style_loss
        if stage == 2:
            frac = min(1.0, (progress() - stage_split[0]) / (stage_split[1] - stage_split[0]))
            lam = 0.1 + 0.9 * max(0.0, frac)
            adversaries.refresh(step)
            adversaries.fit(emovec.detach(), b["voice"])
            adv = adversaries.reversed_loss(grad_reverse(emovec, lam), b["voice"])
            invariance = centroids.loss(emovec, b["style"])
            loss = loss + adv + invariance_weight * invariance
        opt.zero_grad()
        style_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        style_opt.step()
        if stage == 2:
            adversaries.opt.step()
        adversaries.opt.zero_grad()
        step += 1
        if step % 10 == 0 or step == budget.steps:
            run.log(
                step=step,
                stage=stage,
                loss_mel=float(out.loss_mel.detach()),
                loss_text=float(out.loss_text.detach()),
                adv=float(adv.detach()),
                style=float(style_loss.detach()),
                invariance=float(invariance.detach()),
                t=round(time.monotonic() - start, 1),
            )
            if on_progress is not None:
                on_progress(progress(), f"t2s stage {stage}")
        if step % 100 == 0:
            save()
    save()
    return model.eval()


# ----------------------------------------------------------------------------------------------
# S2M


def train_s2m(
    items: Sequence[Item],
    config: Mapping[str, Any],
    run_dir: str | Path,
    budget: Budget,
    *,
    seed: int = 0,
    batch: int = 12,
    crop: int = 256,
    lr: float = 5e-4,
    cross_prompt: float = 0.0,
    calm_prompts: bool = False,
    prompt_frames: tuple[int, int] = (64, 160),
    init: Path | None = None,
    on_progress: Progress | None = None,
) -> tuple[nn.Module, nn.Module]:
    """OT-CFM training of `S2MModel` with the code embedding (`SmallReference.embedding`).

    With ``init`` (a bundle directory) and no checkpoint yet, S2M and the code embedding start
    from the bundle's ``s2m.safetensors`` and ``reference.safetensors``.

    Content = embedded codes regulated to the utterance's frames; class dropout inside
    `S2MModel.training_loss`; L1 loss. The prompt (masked out of the loss) is, with
    probability ``cross_prompt``, a ``prompt_frames`` long piece of another utterance of the
    same (pseudo-)speaker placed before the crop — as at inference, where the prompt is a
    reference clip of other words, so the decoder learns to take the voice from it — and
    otherwise a random 0–40 % prefix of the crop. With ``calm_prompts`` the decoder is
    conditioned as at inference, where the voice's clip is a calm reading: those other
    utterances are the speaker's calm ones, and every crop's style vector is a calm
    utterance's (the prompt's, or another's) instead of its own, so an emotion has to reach
    the decoder through the codes and GPT latents rather than through the prompt and style.

    Returns:
        (s2m, reference) with the trained embedding in ``reference``.
    """
    if not 0.0 <= cross_prompt <= 1.0:
        raise ValidationError(
            f"The S2M cross-prompt share must be between 0 and 1 (got {cross_prompt})."
        )
    run = _Run(run_dir, "s2m")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    mods = build_modules(config)
    s2m, reference = mods["s2m"], mods["reference"]
    emb = reference.embedding  # type: ignore[union-attr]
    fusion = s2m.gpt_layer is not None  # type: ignore[union-attr]
    if fusion:
        # Start the fusion neutral, so it can be added to an S2M trained without it.
        last = s2m.gpt_layer[-1]  # type: ignore[index]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    params = list(s2m.parameters()) + list(emb.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    step = 0
    state = run.load()
    if state is not None:
        missing, _ = s2m.load_state_dict(state["s2m"], strict=False)
        emb.load_state_dict(state["embedding"])
        if not missing:
            opt.load_state_dict(state["opt"])
        else:  # a checkpoint from before the GPT-latent fusion: fresh optimizer state
            log.info("S2M checkpoint lacks %s; fusion layers start neutral", missing)
        step = int(state["step"])
    elif init is not None:
        warm_start(s2m, Path(init) / "s2m.safetensors")
        warm_start(emb, Path(init) / "reference.safetensors", prefix="embedding.")
    teacher = _LatentTeacher(items, config, Path(run_dir), seed, init) if fusion else None
    gen = torch.Generator().manual_seed(seed + step)
    prior = float(state.get("elapsed", 0.0)) if state is not None else 0.0
    start = time.monotonic()
    s2m.train()

    def progress() -> float:
        elapsed = prior + time.monotonic() - start
        return max(step / budget.steps, elapsed / budget.seconds)

    def save() -> None:
        run.save(
            {"s2m": s2m.state_dict(), "embedding": emb.state_dict(), "opt": opt.state_dict(),
             "step": step, "elapsed": prior + time.monotonic() - start}
        )  # fmt: skip

    batches = _S2MBatches(
        items, s2m, emb, teacher, rng, crop, cross_prompt, prompt_frames, calm_prompts
    )
    while progress() < 1.0:
        _set_lr(opt, lr, step, progress())
        x1, lens, prompt, cond_b, style = batches.batch(batch)
        loss = s2m.training_loss(x1, lens, prompt, cond_b, style, generator=gen)  # type: ignore[operator]
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 10 == 0 or step == budget.steps:
            run.log(step=step, loss=float(loss.detach()), t=round(time.monotonic() - start, 1))
            if on_progress is not None:
                on_progress(progress(), "s2m")
        if step % 100 == 0:
            save()
    save()
    return s2m.eval(), reference


class _S2MBatches:
    """S2M training batches: crops of random utterances with their regulated content, each with
    a prompt — with probability ``cross_prompt`` a piece of another utterance of the same
    (pseudo-)speaker placed before the crop, otherwise a random 0–40 % prefix of the crop.
    With ``calm_prompts`` that other utterance is one of the speaker's calm readings, and each
    crop's style vector a calm reading's (see `train_s2m`); a speaker without calm readings
    keeps its own."""

    def __init__(
        self,
        items: Sequence[Item],
        s2m: nn.Module,
        emb: nn.Module,
        teacher: _LatentTeacher | None,
        rng: random.Random,
        crop: int,
        cross_prompt: float,
        prompt_frames: tuple[int, int],
        calm_prompts: bool = False,
    ) -> None:
        self.items, self.s2m, self.emb, self.teacher, self.rng = items, s2m, emb, teacher, rng
        self.crop, self.cross_prompt, self.prompt_frames = crop, cross_prompt, prompt_frames
        self.by_speaker: dict[str, list[int]] = {}
        calm: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            self.by_speaker.setdefault(speaker_of(it.utt), []).append(i)
            if it.utt.style == "calm":
                calm.setdefault(speaker_of(it.utt), []).append(i)
        # Where prompts and styles come from, per speaker.
        self.prompt_pool = (
            {s: calm.get(s) or pool for s, pool in self.by_speaker.items()}
            if calm_prompts else self.by_speaker
        )  # fmt: skip
        self.calm_prompts = calm_prompts

    def _content(self, idx: int, lat: torch.Tensor | None) -> torch.Tensor:
        """(F, C) content of item ``idx`` regulated to its mel frames."""
        it = self.items[idx]
        content = self.emb(it.codes[None])  # (1, T_tok, Dc)
        if lat is not None:
            content = content + self.s2m.gpt_layer(lat[None])  # type: ignore[operator]
        return self.s2m.length_regulator(content, [it.mel.shape[-1]])[0]  # type: ignore[operator,no-any-return]

    def batch(
        self, size: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x1 (B, M, F), lengths (B,), prompt lengths (B,), content (B, F, C), style (B, S))."""
        items, rng = self.items, self.rng
        pick = [rng.randrange(len(items)) for _ in range(size)]
        prompt_of = [
            rng.choice(self.prompt_pool[speaker_of(items[i].utt)])
            if rng.random() < self.cross_prompt else None
            for i in pick
        ]  # fmt: skip
        sources = [*pick, *(j for j in prompt_of if j is not None)]
        latents = self.teacher.latents(sources) if self.teacher is not None else None
        lat_of = dict(zip(sources, latents, strict=True)) if latents is not None else {}
        conds, mels, prompt_lens = [], [], []
        for i, j in zip(pick, prompt_of, strict=True):
            frames = items[i].mel.shape[-1]
            a = rng.randrange(0, max(1, frames - self.crop + 1))
            cond = self._content(i, lat_of.get(i))[a : a + self.crop]
            mel = items[i].mel[:, a : a + self.crop]
            if j is None:
                prompt_lens.append(rng.randint(0, int(0.4 * mel.shape[-1])))
            else:
                other = items[j].mel.shape[-1]
                n = min(other, rng.randint(*self.prompt_frames))
                b = rng.randrange(0, other - n + 1)
                cond = torch.cat([self._content(j, lat_of.get(j))[b : b + n], cond])
                mel = torch.cat([items[j].mel[:, b : b + n], mel], dim=-1)
                prompt_lens.append(n)
            conds.append(cond)
            mels.append(mel.T)
        cond_b, lens = _pad_frames(conds)
        mel_b, _ = _pad_frames(mels)
        # Padding frames are outside the lengths (masked from loss and attention).
        if self.calm_prompts:
            style_of = [
                j if j is not None else rng.choice(self.prompt_pool[speaker_of(items[i].utt)])
                for i, j in zip(pick, prompt_of, strict=True)
            ]  # fmt: skip
        else:
            style_of = pick
        style = torch.stack([items[i].style for i in style_of])
        return mel_b.transpose(1, 2), lens, torch.tensor(prompt_lens), cond_b, style


class _LatentTeacher:
    """GPT latents for S2M training from the T2S checkpoint in the run directory.

    As at inference, the latents come from the teacher-forced pass with speaker latents of
    another utterance of the voice and the emotion vector of another utterance of the same voice
    and style. The checkpoint is re-read when it changes, so S2M can train while T2S does. Until
    there is one, the teacher is the ``init`` bundle's T2S (a warm-started S2M continues on the
    latents it was trained on), or without ``init`` the random initialisation (tests).
    """

    def __init__(
        self,
        items: Sequence[Item],
        config: Mapping[str, Any],
        run_dir: Path,
        seed: int,
        init: Path | None = None,
    ):
        from dubstudio.training.workflow import front_end

        self.model = build_modules(config)["t2s"].eval()
        self.path = run_dir / "t2s.ckpt"
        if init is not None and not self.path.is_file():
            warm_start(self.model, Path(init) / "t2s.safetensors")
        self.mtime = 0.0
        self.data = _T2SData(items, front_end(), seed + 1)
        self.refresh()

    def refresh(self) -> None:
        if self.path.is_file() and self.path.stat().st_mtime != self.mtime:
            self.mtime = self.path.stat().st_mtime
            state = torch.load(str(self.path), map_location="cpu", weights_only=True)
            self.model.load_state_dict(state["model"])
            log.info("S2M teacher: reloaded %s", self.path)

    @torch.no_grad()
    def latents(self, idx: Sequence[int]) -> list[torch.Tensor]:
        """(T_tok_i, D) latents of items ``idx``."""
        self.refresh()
        d = self.data
        (spk_x, spk_len, emo_x, emo_len), _ = d.prompts(idx)
        m = self.model
        lat = m._speaker_latents(spk_x, spk_len)  # type: ignore[operator]
        emovec = m._emotion_vector(emo_x, emo_len)  # type: ignore[operator]
        conds = m.build_conds(lat, emovec, [None] * len(idx))  # type: ignore[operator]
        hidden, _, start, lens = m._teacher_forced(  # type: ignore[operator]
            conds, [d.text[i] for i in idx], [d.items[i].codes for i in idx]
        )
        return [hidden[j, start : start + n] for j, n in enumerate(lens)]


# ----------------------------------------------------------------------------------------------
# T2E


def read_descriptions(path: str | Path) -> list[tuple[str, list[float]]]:
    """Project-written emotion descriptions: JSON lines ``{"text": ..., "labels": {name: w}}``."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        weights = [float(d["labels"].get(n, 0.0)) for n in EMOTION_NAMES]
        total = sum(weights) or 1.0
        out.append((d["text"], [w / total for w in weights]))
    return out


def train_t2e(
    descriptions: Sequence[tuple[str, Sequence[float]]],
    config: Mapping[str, Any],
    run_dir: str | Path,
    *,
    epochs: int = 300,
    seed: int = 0,
    holdout: float = 0.15,
) -> tuple[T2EHead, dict[str, float]]:
    """Distil soft labels into `T2EHead` over MiniLM embeddings (KL divergence).

    Returns:
        (head, metrics) where metrics holds held-out top-1 agreement and mean KL.
    """
    run = _Run(run_dir, "t2e")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    order = list(range(len(descriptions)))
    rng.shuffle(order)
    n_test = max(1, int(holdout * len(order)))
    test, train = order[:n_test], order[n_test:]
    emb = minilm_embed([d[0] for d in descriptions])
    target = torch.tensor([list(d[1]) for d in descriptions], dtype=torch.float32)
    head = T2EHead(int(config["t2e"]["hidden"]))
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=0.01)
    for epoch in range(epochs):
        head.train()
        logp = head(emb[train]).log_softmax(-1)
        loss = F.kl_div(logp, target[train], reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % 50 == 0:
            run.log(epoch=epoch, kl=float(loss.detach()))
    head.eval()
    with torch.no_grad():
        logp = head(emb[test]).log_softmax(-1)
        kl = float(F.kl_div(logp, target[test], reduction="batchmean"))
        agree = float((logp.argmax(-1) == target[test].argmax(-1)).float().mean())
    metrics = {"heldout_top1": agree, "heldout_kl": kl, "n_train": len(train), "n_test": n_test}
    run.log(**metrics)
    return head, metrics


# ----------------------------------------------------------------------------------------------
# Emotion loudness


@dataclass
class LoudnessFit:
    """A fitted `t2s.emotion.EmotionLoudness` and how well it does on held-out utterances.

    Attributes:
        style_db: `(K,)` mean change per style over the training utterances, dB.
        weight: `(D,)` read-out weights.
        bias: dB.
        samples: Training utterances the read-out was fitted on.
        held_out: Per style, (utterances, measured mean change, read-out's mean change) over
            the held-out split's utterances that have a calm reading to compare with.
        mae_db: Mean absolute error of the read-out over those utterances, dB.
    """

    style_db: torch.Tensor
    weight: torch.Tensor
    bias: float
    samples: int
    held_out: dict[str, tuple[int, float, float]]
    mae_db: float


def loudness_changes(items: Sequence[Item]) -> list[float | None]:
    """Each item's level against the same voice reading the same sentence calmly (same pitch
    shift), in dB (`audio.mel_level_db`); None where the corpus has no such calm reading."""
    from dubstudio.engine.audio import mel_level_db

    levels = [mel_level_db(it.mel.float()) for it in items]
    calm = {
        (it.utt.voice, it.utt.text, it.utt.shift): level
        for it, level in zip(items, levels, strict=True)
        if it.utt.style == "calm"
    }
    out: list[float | None] = []
    for it, level in zip(items, levels, strict=True):
        ref = calm.get((it.utt.voice, it.utt.text, it.utt.shift))
        out.append(None if ref is None else level - ref)
    return out


@torch.no_grad()
def emotion_vectors(
    t2s: nn.Module, items: Sequence[Item], idx: Sequence[int], batch: int = 64
) -> torch.Tensor:
    """(len(idx), D) emotion vectors of the items at ``idx`` (the T2S emotion conditioner on
    each whole utterance)."""
    dim = int(t2s.config.model_dim)  # type: ignore[union-attr]
    out = [torch.zeros(0, dim)]
    for a in range(0, len(idx), batch):
        feats = [normalize_frames(items[i].mel.float()[None])[0] for i in idx[a : a + batch]]
        x, lens = _pad_frames(feats)
        out.append(t2s._emotion_vector(x, lens).float())  # type: ignore[operator]
    return torch.cat(out)


@torch.no_grad()
def fit_readout(
    t2s: nn.Module,
    items: Sequence[Item],
    idx: Sequence[int],
    targets: Sequence[float],
    *,
    ridge: float = 0.1,
    batch: int = 64,
) -> tuple[torch.Tensor, float]:
    """Ridge regression from the emotion vectors of the items at ``idx`` to ``targets``:
    (`(D,)` weights, bias). ``ridge`` is the penalty relative to the vectors' mean variance;
    with fewer than two items the read-out is zero."""
    dim = int(t2s.config.model_dim)  # type: ignore[union-attr]
    if len(idx) < 2:
        return torch.zeros(dim), 0.0
    x = emotion_vectors(t2s, items, idx, batch).double()
    y = torch.tensor(list(targets), dtype=torch.float64)
    mean_x, mean_y = x.mean(0), y.mean()
    xc = x - mean_x
    gram = xc.T @ xc
    penalty = ridge * float(gram.diagonal().mean())
    w = torch.linalg.solve(gram + penalty * torch.eye(dim, dtype=gram.dtype), xc.T @ (y - mean_y))
    return w.float(), float(mean_y - mean_x @ w)


@torch.no_grad()
def fit_emotion_loudness(
    t2s: nn.Module, items: Sequence[Item], *, ridge: float = 0.1, seed: int = 0, batch: int = 64
) -> LoudnessFit:
    """Fit the emotion loudness from the training split's utterances that have a calm reading
    of the same sentence by the same voice (`loudness_changes`):

    * ``style_db``: each style's mean change (`EMOTION_NAMES` order; 0 for a style the corpus
      lacks);
    * the read-out: ridge regression from an utterance's emotion vector (the T2S emotion
      conditioner on the whole utterance) to its change, on every non-calm such utterance and
      as many calm ones (change 0) as the styles have on average; ``ridge`` is the penalty
      relative to the vectors' mean variance. Without non-calm utterances it is zero.

    The held-out split (``split == "test"``) is read out too, for `LoudnessFit.held_out`.
    """
    changes = loudness_changes(items)
    rng = random.Random(seed)
    train = [i for i, it in enumerate(items) if it.utt.split == "train" and changes[i] is not None]
    emotional = [i for i in train if items[i].utt.style != "calm"]
    calm = [i for i in train if items[i].utt.style == "calm"]
    styles = {items[i].utt.style for i in emotional}
    chosen = emotional + rng.sample(calm, min(len(calm), len(emotional) // max(1, len(styles))))
    held = [i for i, it in enumerate(items) if it.utt.split == "test" and changes[i] is not None]
    style_db = torch.zeros(len(EMOTION_NAMES))
    for k, style in enumerate(EMOTION_NAMES):
        own = [float(changes[i]) for i in train if items[i].utt.style == style]  # type: ignore[arg-type]
        style_db[k] = sum(own) / len(own) if own else 0.0
    if len(emotional) >= 2:
        targets = [float(changes[i]) for i in chosen]  # type: ignore[arg-type]
        weight, bias = fit_readout(t2s, items, chosen, targets, ridge=ridge, batch=batch)
    else:
        weight, bias = torch.zeros(int(t2s.config.model_dim)), 0.0  # type: ignore[union-attr]
    held_out: dict[str, tuple[int, float, float]] = {}
    errors: list[float] = []
    if held:
        predicted = (emotion_vectors(t2s, items, held, batch) @ weight + bias).tolist()
        by_style: dict[str, list[tuple[float, float]]] = {}
        for i, p in zip(held, predicted, strict=True):
            measured = float(changes[i])  # type: ignore[arg-type]
            by_style.setdefault(items[i].utt.style, []).append((measured, p))
            errors.append(abs(p - measured))
        for style in [s for s in EMOTION_NAMES if s in by_style]:
            pairs = by_style[style]
            held_out[style] = (
                len(pairs),
                sum(m for m, _ in pairs) / len(pairs),
                sum(p for _, p in pairs) / len(pairs),
            )
    mae = sum(errors) / len(errors) if errors else float("nan")
    return LoudnessFit(style_db, weight, bias, len(chosen), held_out, mae)
