"""Autoregressive decoding of semantic codes: sampling and beam-sample, KV cache, duration modes.

Dimension legend: B sequences (lines), n beams per sequence, N = B * n rows, V mel vocabulary,
K kept candidates per row after top-k, D model width, P padded prefix length.

Per step (official order, ENGINE_SPEC 2.6): log_softmax -> repetition penalty on log-probs
(ids already generated, plus the official fake-prefix ids 1 and start) -> temperature -> top-k ->
top-p -> (beam: + beam scores) -> sample. With one beam HF applies the penalty to the raw
logits before log_softmax, and so do we by default (`DecodeParams.penalty_on_logits`); greedy
decoding matches the official `inference_speech` token for token. Sampling without
replacement uses the Gumbel-top-k trick with the caller's generator (same distribution as
torch.multinomial without replacement, and it never fails when fewer candidates than
requested have non-zero mass).
The start id is never sampled (it is not a codec code; the official sampler could emit it),
and the stop id not at the first step (no line comes back empty).
Rows of finished lines are dropped from the batch (and the KV cache) in batches, so a scene
of short and long lines does not keep paying for the finished ones.

Emotion guidance (one beam only): each line is decoded beside a shadow row conditioned on a
second emotion vector (the voice's own reading), both rows take the same tokens, and each step
samples from ``l + w * (l - l_shadow)``, the line's logits pushed away from the shadow's
(classifier-free guidance on the emotion condition). It sharpens what the requested emotion
changes against the voice's own reading, at twice the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from dubstudio.core.errors import RenderCancelled, ValidationError
from dubstudio.engine.t2s.gpt2 import KVCache

if TYPE_CHECKING:
    from dubstudio.engine.t2s.model import UnifiedVoice

log = logging.getLogger(__name__)

MODES = ("free", "budget", "exact")


@dataclass(frozen=True)
class DecodeParams:
    """Sampling settings; the defaults are the official IndexTTS-2 ones (beam-sample, 3 beams).

    Attributes:
        num_beams: Beams per sequence; 1 = plain sampling (faster).
        do_sample: Sample (True, official) or take the best candidates (greedy / beam search).
        top_k: Candidates kept per row (0 = all).
        top_p: Nucleus mass kept (1.0 = off).
        temperature: Divides the (penalised) log-probabilities.
        repetition_penalty: Multiplies the log-probability of every id already seen.
        max_tokens: Longest output in "free"/"budget" modes (official 1500, ~30 s).
        use_cache: Keep keys/values between steps (False recomputes the whole sequence each
            step; only for benchmarks and checks).
        slot_in_exact: In "exact" mode also put the target in the duration slot ("budget" +
            forced stop); False keeps the free slot and only forces the length.
        penalize_prefix: Reproduce the official quirk that ids 1 and start are penalised from
            the first step (they are in HF's fake input_ids).
        length_penalty: Beam hypothesis score = sum log-prob / length**length_penalty.
        penalty_on_logits: Apply the repetition penalty to raw logits instead of
            log-probabilities. None follows HF `generate` as the official code runs it: on
            log-probabilities with beams (the official default), on logits with one beam.
    """

    num_beams: int = 3
    do_sample: bool = True
    top_k: int = 30
    top_p: float = 0.8
    temperature: float = 0.8
    repetition_penalty: float = 10.0
    max_tokens: int = 1500
    use_cache: bool = True
    slot_in_exact: bool = True
    penalize_prefix: bool = True
    length_penalty: float = 0.0
    penalty_on_logits: bool | None = None

    @classmethod
    def sampling(cls, **overrides: object) -> DecodeParams:
        """Plain top-k/top-p sampling (one beam): the fast option."""
        return cls(**{"num_beams": 1, **overrides})  # type: ignore[arg-type]


@dataclass
class DecodeResult:
    """Output of `UnifiedVoice.decode`.

    Attributes:
        codes: B tensors `(T_i,)`, stop token excluded.
        stopped: Per sequence, True if it ended on a stop token (emitted or forced by "exact"),
            False if it hit `max_tokens`.
        hidden: With `capture_hidden`, B tensors `(T_i, D)`: the decoding-time states (after
            final_norm) that predicted each code; else None.
        steps: Decoding steps run.
    """

    codes: list[torch.Tensor]
    stopped: list[bool]
    hidden: list[torch.Tensor] | None
    steps: int


def _penalize(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """HF repetition penalty: seen ids' negative scores times `penalty`, positive ones divided."""
    if penalty == 1.0:
        return scores
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


def process_scores(
    logp: torch.Tensor,
    seen: torch.Tensor | None,
    params: DecodeParams,
    min_keep: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penalty, temperature, top-k, top-p on log-probs.

    Args:
        logp: `(N, V)` log-probabilities (masked ids at -inf).
        seen: `(N, V)` bool ids to penalise, or None.
        params: Settings.
        min_keep: Candidates top-k/top-p always keep (2 with beams, as HF).

    Returns:
        values `(N, K)` sorted descending (-inf = filtered) and their ids `(N, K)`.
    """
    if seen is not None and params.repetition_penalty != 1.0:
        logp = _penalize(logp, seen, params.repetition_penalty)
    if params.temperature != 1.0:
        logp = logp / params.temperature
    k = logp.shape[-1] if params.top_k <= 0 else min(max(params.top_k, min_keep), logp.shape[-1])
    vals, idx = logp.topk(k, dim=-1)
    if params.top_p < 1.0:
        probs = vals.softmax(dim=-1)
        # HF TopP: ascending cumulative mass <= 1 - p is removed; in descending order that
        # cumulative mass is the tail sum from each position to the end.
        tail = probs.flip(-1).cumsum(-1).flip(-1)
        remove = tail <= (1.0 - params.top_p)
        remove[:, :min_keep] = False
        vals = vals.masked_fill(remove, float("-inf"))
    return vals, idx


def _gumbel(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    # Noise is drawn on the generator's own device, so a CPU generator also drives a GPU
    # model (and gives the same draws on every device).
    source = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=source).to(device)
    return -torch.log(-torch.log(u.clamp_(1e-20, 1.0 - 1e-7)))


class _Stepper:
    """Runs the GPT one position at a time, with a KV cache or by full recomputation.

    The prompt is prefilled once per line and then copied for each beam.
    """

    def __init__(
        self,
        model: UnifiedVoice,
        x0: torch.Tensor,
        key_valid: torch.Tensor | None,
        use_cache: bool,
        capacity: int,
        beams: int,
    ) -> None:
        self.model = model
        self.key_valid = key_valid
        self.beams = beams
        self.prompt = x0.shape[1]
        self.cache: KVCache | None = None
        self.seq = x0
        if use_cache:
            self.cache = model.gpt.new_cache(x0.shape[0], capacity)

    def first(self) -> torch.Tensor:
        """Hidden (after ln_f) of the last prompt position, `(N, D)` (N = lines x beams)."""
        hidden = self.model.gpt(self.seq, key_valid=self.key_valid, cache=self.cache)[:, -1]
        if self.beams > 1:
            if self.cache is not None:
                self.cache.repeat_rows(self.beams)
            self.seq = self.seq.repeat_interleave(self.beams, dim=0)
            if self.key_valid is not None:
                self.key_valid = self.key_valid.repeat_interleave(self.beams, dim=0)
            hidden = hidden.repeat_interleave(self.beams, dim=0)
        return hidden

    def step(self, emb: torch.Tensor) -> torch.Tensor:
        """Feed `(N, D)` embeddings of the next position; return its hidden `(N, D)`."""
        if self.cache is not None:
            return self.model.gpt(emb[:, None], key_valid=self.key_valid, cache=self.cache)[:, 0]
        self.seq = torch.cat([self.seq, emb[:, None]], dim=1)
        return self.model.gpt(self.seq, key_valid=self.key_valid)[:, -1]

    def select(self, rows: torch.Tensor, compact: bool) -> None:
        """Reorder beams within their lines, or keep only some rows (finished lines dropped)."""
        if self.key_valid is not None:
            self.key_valid = self.key_valid[rows]
        if self.cache is None:
            self.seq = self.seq[rows]
            return
        if compact:
            c = self.cache
            if c.k is not None and c.v is not None:
                c.k = c.k[:, rows].contiguous()
                c.v = c.v[:, rows].contiguous()
            c.shape = (c.shape[0], int(rows.numel()), *c.shape[2:])
        else:
            # Beams of one line share their prompt: only generated positions move.
            self.cache.reorder(rows, start=self.prompt)


class _Hypotheses:
    """Finished beams of one line, best `capacity` kept (HF BeamHypotheses, length_penalty)."""

    def __init__(self, capacity: int, length_penalty: float) -> None:
        self.capacity = capacity
        self.length_penalty = length_penalty
        self.items: list[tuple[float, torch.Tensor]] = []

    def add(self, tokens: torch.Tensor, sum_logprob: float) -> None:
        score = sum_logprob / (max(tokens.numel(), 1) ** self.length_penalty)
        self.items.append((score, tokens))
        self.items.sort(key=lambda item: -item[0])
        del self.items[self.capacity :]

    def is_done(self, best_running: float, length: int) -> bool:
        if len(self.items) < self.capacity:
            return False
        return self.items[-1][0] >= best_running / (max(length, 1) ** self.length_penalty)


def run_decode(
    model: UnifiedVoice,
    speaker_latents: torch.Tensor,
    emovec: torch.Tensor,
    text_ids: list[torch.Tensor],
    *,
    budgets: list[int | None],
    mode: str,
    params: DecodeParams,
    generator: torch.Generator | None,
    on_progress: Callable[[float, str], None] | None,
    should_stop: Callable[[], bool] | None,
    capture_hidden: bool,
    guide_emovec: torch.Tensor | None = None,
    guidance: float = 0.0,
) -> DecodeResult:
    """Decode B lines together (see `UnifiedVoice.generate` for the arguments; ``guidance``
    w > 0 with ``guide_emovec`` `(1, D)` turns on emotion guidance, see the module docstring)."""
    cfg = model.config
    b = len(text_ids)
    if b == 0:
        return DecodeResult([], [], [] if capture_hidden else None, 0)
    if mode not in MODES:
        raise ValidationError(f"Unknown duration mode '{mode}'; use one of {', '.join(MODES)}.")
    if len(budgets) != b:
        raise ValidationError(f"{len(budgets)} budgets given for {b} lines.")
    for t in budgets:
        if t is not None:
            model.check_budget(t)
    if mode == "exact" and any(t is None for t in budgets):
        raise ValidationError("Mode 'exact' needs a token budget for every line.")
    nb = max(1, params.num_beams)
    pairs = False
    if guidance > 0 and guide_emovec is not None:
        pairs = True
        if nb > 1:
            raise ValidationError(
                "Emotion guidance samples with one beam; set num_beams to 1 or guidance to 0."
            )
        # Rows 2i (line i) and 2i + 1 (its shadow) stay adjacent through every row drop: they
        # take the same tokens, so they finish together.
        lines = len(text_ids)
        own = emovec.expand(lines, -1) if emovec.shape[0] == 1 else emovec
        shadow = guide_emovec.reshape(1, -1).to(own).expand(lines, -1)
        emovec = torch.stack([own, shadow], dim=1).reshape(2 * lines, -1)
        text_ids = [t for t in text_ids for _ in range(2)]
        budgets = [t for t in budgets for _ in range(2)]
        b = 2 * lines
    dev = model.device
    stop_id, start_id = cfg.stop_mel_token, cfg.start_mel_token
    cap = max(1, min(params.max_tokens, cfg.max_budget))

    # Slot A gets the target in "budget", and in "exact" unless disabled.
    use_slot = mode == "budget" or (mode == "exact" and params.slot_in_exact)
    slot_budgets = list(budgets) if use_slot else [None] * b
    # A line ends at its forced length ("exact") or at the cap; free lines end on stop too.
    limits = torch.tensor(
        [int(t) if mode == "exact" and t is not None else cap for t in budgets], device=dev
    )
    max_limit = int(limits.max())

    conds = model.build_conds(speaker_latents.to(dev), emovec.to(dev), slot_budgets)
    prefix, valid, _ = model.build_prefix(conds, text_ids)
    p = prefix.shape[1]
    start_emb = model.embed_mel(torch.tensor([start_id], device=dev), torch.tensor([0], device=dev))
    x0 = torch.cat([prefix, start_emb.expand(b, 1, -1)], dim=1)
    key_valid = None
    if valid is not None:
        key_valid = torch.ones(b, p + 2 + max_limit, dtype=torch.bool, device=dev)
        key_valid[:, :p] = valid
    capacity = p + 1 + (max_limit if mode == "exact" else min(max_limit, 256))
    stepper = _Stepper(model, x0, key_valid, params.use_cache, capacity, nb)

    # Row state. Rows of item i are contiguous: i * nb .. i * nb + nb - 1 (over active items).
    items = list(range(b))
    row_limit = limits.repeat_interleave(nb)
    hist = torch.zeros(b * nb, max_limit, dtype=torch.long, device=dev)
    seen: torch.Tensor | None = None
    if params.repetition_penalty != 1.0:
        seen = torch.zeros(b * nb, cfg.number_mel_codes, dtype=torch.bool, device=dev)
        if params.penalize_prefix:
            seen[:, 1] = True
            seen[:, start_id] = True
    beam_scores = torch.zeros(b, nb, device=dev)
    beam_scores[:, 1:] = -1e9  # only the first beam is live at step 0 (HF)
    beam_scores = beam_scores.view(-1)
    hyps = [_Hypotheses(nb, params.length_penalty) for _ in range(b)]
    hid_hist = None
    if capture_hidden:
        hid_hist = torch.zeros(b * nb, max_limit, cfg.model_dim, device=dev)
    out_codes: list[torch.Tensor | None] = [None] * b
    out_hidden: list[torch.Tensor | None] = [None] * b
    out_stopped = [False] * b
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    min_keep = 2 if nb > 1 else 1
    on_logits = params.penalty_on_logits if params.penalty_on_logits is not None else nb == 1

    hidden = stepper.first()
    step = 0
    for step in range(max_limit + 1):
        if should_stop is not None and should_stop():
            raise RenderCancelled("Rendering was cancelled.")
        n_items = len(items)
        normed = model.final_norm(hidden)
        if hid_hist is not None and step < max_limit:
            hid_hist[:, step] = normed
        logits = model.mel_head(normed).float()
        if pairs:
            line, shadow_line = logits.view(-1, 2, logits.shape[-1]).unbind(dim=1)
            logits = (line + guidance * (line - shadow_line)).repeat_interleave(2, dim=0)
        if on_logits and seen is not None:
            logits = _penalize(logits, seen, params.repetition_penalty)
        logp = torch.log_softmax(logits, dim=-1)
        logp[:, start_id] = float("-inf")
        at_limit = row_limit == step  # forced stop (exact) or truncation (cap)
        if step == 0 or mode == "exact":
            # Every line gets at least one code (an empty line is never useful downstream).
            logp[:, stop_id] = torch.where(
                row_limit > step, torch.full_like(logp[:, stop_id], float("-inf")), logp[:, stop_id]
            )
        vals, idx = process_scores(logp, None if on_logits else seen, params, min_keep)
        item_at_limit = at_limit.view(n_items, nb)[:, 0]

        if nb == 1:
            if params.do_sample:
                if pairs:  # one draw per pair: the shadow row takes the line's token
                    noise = _gumbel((vals.shape[0] // 2, vals.shape[1]), generator, dev)
                    keys = vals + noise.repeat_interleave(2, dim=0)
                else:
                    keys = vals + _gumbel(vals.shape, generator, dev)
                choice = keys.argmax(dim=-1, keepdim=True)
            else:
                choice = vals.argmax(dim=-1, keepdim=True)
            tokens = idx.gather(1, choice)[:, 0]
            tokens = torch.where(at_limit | done, torch.full_like(tokens, stop_id), tokens)
            finished = (tokens == stop_id) & ~done
            for r in finished.nonzero()[:, 0].tolist():
                item = items[r]
                out_codes[item] = hist[r, :step].clone()
                out_stopped[item] = mode == "exact" or not bool(at_limit[r])
                if hid_hist is not None:
                    out_hidden[item] = hid_hist[r, :step].clone()
            done = done | finished
            if step < max_limit:
                hist[:, step] = tokens
            src_rows = None
        else:
            k = vals.shape[1]
            cand = (vals + beam_scores[:, None]).view(n_items, nb * k)
            cand_tok = idx.view(n_items, nb * k)
            keys = cand + _gumbel(cand.shape, generator, dev) if params.do_sample else cand
            pick = keys.topk(2 * nb, dim=1).indices
            pick_scores = cand.gather(1, pick)
            order = pick_scores.argsort(dim=1, descending=True)
            pick = pick.gather(1, order)
            pick_scores = pick_scores.gather(1, order)
            pick_tok = cand_tok.gather(1, pick)
            pick_beam = pick // k
            is_eos = pick_tok == stop_id
            rank = torch.arange(2 * nb, device=dev)[None]
            add = is_eos & (rank < nb) & torch.isfinite(pick_scores)
            add &= ~(done | item_at_limit)[:, None]
            for i, r in add.nonzero().tolist():
                row = i * nb + int(pick_beam[i, r])
                hyps[items[i]].add(hist[row, :step].clone(), float(pick_scores[i, r]))
            # Next beams: the first nb non-stop candidates in score order.
            keep = ~is_eos
            keep &= (keep.cumsum(dim=1) - 1) < nb
            if not bool((keep.sum(dim=1) == nb).all()):
                raise RuntimeError("beam search: not enough candidates (check top_k/top_p)")
            new_scores = pick_scores[keep].view(n_items, nb)
            new_tok = pick_tok[keep].view(n_items, nb)
            new_src = pick_beam[keep].view(n_items, nb)
            src_rows = (torch.arange(n_items, device=dev)[:, None] * nb + new_src).view(-1)
            # Lines at their limit finish now with their running beams (exact: forced stop).
            for i in item_at_limit.nonzero()[:, 0].tolist():
                if bool(done[i]):
                    continue
                for j in range(nb):
                    row = i * nb + j
                    hyps[items[i]].add(hist[row, :step].clone(), float(beam_scores[row]))
            finished_items = item_at_limit & ~done
            # Lines whose best finished beam beats every running one are done (HF is_done).
            best_running = new_scores.max(dim=1).values
            for i in range(n_items):
                if bool(done[i]) or bool(finished_items[i]):
                    continue
                if hyps[items[i]].is_done(float(best_running[i]), step + 1):
                    finished_items[i] = True
            for i in finished_items.nonzero()[:, 0].tolist():
                item = items[i]
                best_score, best = hyps[item].items[0]
                out_codes[item] = best
                out_stopped[item] = not (mode != "exact" and best.numel() >= int(limits[item]))
                if hid_hist is not None:
                    # The winning beam's hidden history: find a row whose tokens match.
                    beam_rows = range(i * nb, i * nb + nb)
                    match = [r for r in beam_rows if torch.equal(hist[r, : best.numel()], best)]
                    out_hidden[item] = hid_hist[match[0], : best.numel()].clone() if match else None
                del best_score
            done = done | finished_items
            beam_scores = new_scores.view(-1)
            hist = hist[src_rows]
            if step < max_limit:
                hist[:, step] = new_tok.view(-1)
            if hid_hist is not None:
                hid_hist = hid_hist[src_rows]
            if seen is not None:
                seen = seen[src_rows]
            flat_tok = new_tok.view(-1)
            tokens = torch.where(
                done.repeat_interleave(nb), torch.full_like(flat_tok, stop_id), flat_tok
            )
            if not bool((src_rows == torch.arange(src_rows.numel(), device=dev)).all()):
                stepper.select(src_rows, compact=False)

        if on_progress is not None:
            on_progress(min(1.0, (step + 1) / (max_limit + 1)), "t2s")
        if bool(done.all()) or step == max_limit:
            break
        if seen is not None:
            seen.scatter_(1, tokens[:, None], True)

        # Drop finished lines once they are an eighth of the batch (amortises the cache copy).
        n_done = int(done.sum())
        if n_done and n_done * 8 >= n_items:
            keep_items = (~done).nonzero()[:, 0]
            rows = (keep_items[:, None] * nb + torch.arange(nb, device=dev)[None]).view(-1)
            items = [items[i] for i in keep_items.tolist()]
            stepper.select(rows, compact=True)
            hist, row_limit, beam_scores, tokens = (
                hist[rows],
                row_limit[rows],
                beam_scores[rows],
                tokens[rows],
            )
            if seen is not None:
                seen = seen[rows]
            if hid_hist is not None:
                hid_hist = hid_hist[rows]
            done = done[keep_items]

        pos = torch.full_like(tokens, step + 2)  # code k sits at mel position k + 2 (official)
        hidden = stepper.step(model.embed_mel(tokens, pos))

    empty = torch.zeros(0, dtype=torch.long, device=dev)
    codes = [c if c is not None else empty for c in out_codes]
    if any(c is None for c in out_codes):
        log.warning("decoding ended with unfinished lines; returning what was generated")
    hidden_out = None
    if capture_hidden:
        hidden_out = [
            h if h is not None else torch.zeros(0, model.config.model_dim, device=dev)
            for h in out_hidden
        ]
    if pairs:  # the lines, without their shadow rows
        codes, out_stopped = codes[::2], out_stopped[::2]
        hidden_out = None if hidden_out is None else hidden_out[::2]
    return DecodeResult(codes, out_stopped, hidden_out, step + 1)
