"""S2MModel: GPT-latent fusion, length regulation and conditional flow matching to a mel.

Dimension legend: B batch, T content frames (semantic tokens, 50 Hz officially), F generated mel
frames, F_ref prompt (reference) mel frames, Dc content width (1024), Dg GPT latent width (1280),
C regulator channels (512), M mel bands (80), S style width (192).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dubstudio.core.errors import RenderCancelled
from dubstudio.engine import checkpoints
from dubstudio.engine.s2m.config import S2MConfig
from dubstudio.engine.s2m.dit import DiT
from dubstudio.engine.s2m.regulator import InterpolateRegulator

log = logging.getLogger(__name__)

SIGMA_MIN = 1e-6


def strip_data_parallel(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DataParallel's ``module.`` after the submodel name (official training saves it)."""
    out = {}
    for key, value in state.items():
        sub, _, rest = key.partition(".")
        if rest.startswith("module."):
            rest = rest[len("module.") :]
        out[f"{sub}.{rest}" if rest else sub] = value
    return out


def sway_schedule(steps: int, sway: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Time points 0 = t_0 < … < t_n = 1 of an n-step flow-matching solve with sway
    coefficient ``sway`` (F5-TTS's sway sampling; 0 gives the uniform grid). (n + 1,)"""
    u = torch.linspace(0, 1, steps + 1, device=device)
    return u + sway * (torch.cos(torch.pi / 2 * u) - 1 + u)


class CFM(nn.Module):
    """Holder of the velocity estimator (official key prefix `cfm.estimator.`)."""

    def __init__(self, cfg: S2MConfig) -> None:
        super().__init__()
        self.estimator = DiT(cfg)


class S2MModel(nn.Module):
    """IndexTTS-2 S2M with official submodule names `cfm`, `length_regulator`, `gpt_layer`."""

    def __init__(self, cfg: S2MConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.cfm = CFM(cfg)
        self.length_regulator = InterpolateRegulator(cfg)
        self.gpt_layer: nn.Sequential | None = None
        if cfg.gpt_dim is not None:
            h1, h2 = cfg.gpt_hidden
            # No activations between the three projections: that is the official graph.
            self.gpt_layer = nn.Sequential(
                nn.Linear(cfg.gpt_dim, h1), nn.Linear(h1, h2), nn.Linear(h2, cfg.content_dim)
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg: S2MConfig) -> S2MModel:
        """A randomly initialised model in eval mode."""
        return cls(cfg).eval()

    @classmethod
    def from_state_dict(
        cls, cfg: S2MConfig, state: dict[str, torch.Tensor], *, component: str = "s2mel"
    ) -> S2MModel:
        """Build and load strictly from flat `<submodel>.<name>` keys (``module.`` stripped)."""
        model = cls(cfg)
        checkpoints.load_strict(model, strip_data_parallel(state), component=component)
        return model.eval()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, cfg: S2MConfig | None = None, *, container: str | None = None
    ) -> S2MModel:
        """Load a flat S2M state dict (safetensors or weights-only torch file) strictly.

        Args:
            path: Weight file with keys ``cfm.*``, ``length_regulator.*``, ``gpt_layer.*``.
            cfg: Model dimensions (official when None).
            container: Wrapping dict key, if any.
        """
        state = checkpoints.read_state_dict(path, container=container)
        return cls.from_state_dict(cfg or S2MConfig.official(), state)

    @property
    def estimator(self) -> DiT:
        """The DiT velocity estimator."""
        return self.cfm.estimator

    # ------------------------------------------------------------------ conditioning
    @torch.inference_mode()
    def prompt_condition(self, prompt_content: torch.Tensor, ref_frames: int) -> torch.Tensor:
        """Regulated content of the reference clip.

        Args:
            prompt_content: Reference semantic content (1, T_ref, Dc) (official: codec-quantised
                w2v-BERT features, no GPT latent).
            ref_frames: Mel frames of the reference mel, F_ref.

        Returns:
            (1, F_ref, C).
        """
        return self.length_regulator(prompt_content, [int(ref_frames)])

    def regulate(
        self,
        code_content: torch.Tensor,
        gpt_latents: torch.Tensor | None,
        target_frames: list[int] | int,
        content_lens: list[int] | None = None,
    ) -> torch.Tensor:
        """Differentiable form of `content` (for training the regulator and `gpt_layer`).

        Args:
            code_content: Embedded semantic codes (B, T, Dc).
            gpt_latents: GPT latents (B, T, Dg) or None (must be None without a `gpt_layer`).
            target_frames: Mel frames per item (an int applies to all items).
            content_lens: Valid content frames per item; None means all T.

        Returns:
            (B, max(F), C), zero beyond each item's frame count.
        """
        frames = (
            [int(target_frames)] * code_content.shape[0]
            if isinstance(target_frames, int)
            else [int(f) for f in target_frames]
        )
        if len(frames) != code_content.shape[0] or min(frames) < 1:
            raise ValueError(f"target_frames {frames} must give a positive count per batch item")
        x = code_content
        if gpt_latents is not None:
            if self.gpt_layer is None:
                raise ValueError("This S2M model has no gpt_layer; pass gpt_latents=None.")
            x = x + self.gpt_layer(gpt_latents)
        return self.length_regulator(x, frames, content_lens)

    @torch.inference_mode()
    def content(
        self,
        code_content: torch.Tensor,
        gpt_latents: torch.Tensor | None,
        target_frames: list[int] | int,
        content_lens: list[int] | None = None,
    ) -> torch.Tensor:
        """Fuse GPT latents into code embeddings and stretch to the target frame counts.

        This is where a slot's exact mel-frame budget is applied.

        Args:
            code_content: Embedded semantic codes (B, T, Dc).
            gpt_latents: GPT latents (B, T, Dg) or None (skipped; required None when the model
                has no `gpt_layer`).
            target_frames: Mel frames per item (an int applies to all items).
            content_lens: Valid content frames per item; None means all T.

        Returns:
            (B, max(F), C), zero beyond each item's frame count.
        """
        return self.regulate(code_content, gpt_latents, target_frames, content_lens)

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def generate(
        self,
        cond: torch.Tensor,
        prompt_condition: torch.Tensor,
        ref_mel: torch.Tensor,
        style: torch.Tensor,
        **options: Any,
    ) -> torch.Tensor:
        """`sample` under inference mode: what rendering runs (the same arguments)."""
        return self.sample(cond, prompt_condition, ref_mel, style, **options)

    def sample(
        self,
        cond: torch.Tensor,
        prompt_condition: torch.Tensor,
        ref_mel: torch.Tensor,
        style: torch.Tensor,
        *,
        steps: int = 25,
        cfg_rate: float = 0.7,
        sway: float = 0.0,
        temperature: float = 1.0,
        frame_lens: list[int] | None = None,
        generator: torch.Generator | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> torch.Tensor:
        """Flow-matching decode of the mel for the generated region.

        Differentiable with respect to its inputs (``style`` in `dubstudio.engine.stylefit`);
        `generate` runs it without autograd.

        Euler over the schedule t_k = u + s·(cos(π/2·u) − 1 + u), u = k/n (sway sampling; s = 0
        is the uniform schedule, s < 0 spends more steps near the noise, where the flow's
        direction changes most, which keeps quality at fewer steps). Classifier-free guidance
        evaluates the conditional and unconditional branches in one batch; the unconditional
        branch zeroes the prompt mel, style and content (before the content projection). The
        prompt region is zeroed in x at the start and after every step, and returned frames
        exclude it.

        Args:
            cond: Regulated content of the generated part (B, F, C).
            prompt_condition: Regulated content of the reference (B or 1, F_ref, C).
            ref_mel: Reference log-mel (B or 1, M, F_ref).
            style: Speaker style (B or 1, S).
            steps: Euler steps (25 official; fewer trade quality for speed).
            cfg_rate: Guidance strength r in v = (1+r)·v_cond − r·v_uncond (0 disables CFG).
            sway: Sway coefficient s of the schedule, in [-1, 1] (0 = uniform).
            temperature: Scale of the initial noise.
            frame_lens: Valid generated frames per item (default all F).
            generator: Random generator for the initial noise (reproducible renders).
            on_progress: Called with (fraction, "s2m") after every step.
            should_stop: Polled before every step; True raises `RenderCancelled`.

        Returns:
            Mel (B, M, F) for the generated frames.
        """
        if steps < 1:
            raise ValueError("steps must be at least 1")
        if not -1.0 <= sway <= 1.0:
            raise ValueError(f"sway must lie in [-1, 1], got {sway}")
        b, f_gen, _ = cond.shape
        f_ref = prompt_condition.shape[1]
        if ref_mel.shape[-1] != f_ref:
            raise ValueError(
                f"ref_mel has {ref_mel.shape[-1]} frames but prompt_condition has {f_ref}"
            )
        prompt_condition = prompt_condition.expand(b, -1, -1)
        ref_mel = ref_mel.expand(b, -1, -1)
        style = style.expand(b, -1)
        mu = torch.cat([prompt_condition, cond], dim=1)  # (B, F_ref + F, C)
        total = f_ref + f_gen
        gen_lens = list(frame_lens) if frame_lens is not None else [f_gen] * b
        lens = torch.tensor([f_ref + int(f) for f in gen_lens], device=cond.device)
        m = self.cfg.n_mels
        x = (
            torch.randn((b, m, total), generator=generator, device=cond.device, dtype=cond.dtype)
            * temperature
        )
        x[:, :, :f_ref] = 0
        prompt_x = torch.zeros_like(x)
        prompt_x[:, :, :f_ref] = ref_mel
        est = self.cfm.estimator
        use_cfg = cfg_rate > 0
        if use_cfg:
            prompt_in = torch.cat([prompt_x, torch.zeros_like(prompt_x)])
            style_in = torch.cat([style, torch.zeros_like(style)])
            mu_in = torch.cat([mu, torch.zeros_like(mu)])
            lens_in = torch.cat([lens, lens])
        t_span = sway_schedule(steps, sway, cond.device)
        for k in range(1, steps + 1):
            if should_stop is not None and should_stop():
                raise RenderCancelled("Rendering was cancelled.")
            t = t_span[k - 1]
            dt = t_span[k] - t
            if use_cfg:
                out = est(torch.cat([x, x]), prompt_in, lens_in, t.expand(2 * b), style_in, mu_in)
                v_cond, v_uncond = out[:b], out[b:]
                v = (1.0 + cfg_rate) * v_cond - cfg_rate * v_uncond
            else:
                v = est(x, prompt_x, lens, t.expand(b), style, mu)
            x = x + dt * v
            x[:, :, :f_ref] = 0
            if on_progress is not None:
                on_progress(k / steps, "s2m")
        return x[:, :, f_ref:]

    # ------------------------------------------------------------------ training
    def training_loss(
        self,
        x1: torch.Tensor,
        x_lens: torch.Tensor,
        prompt_lens: torch.Tensor,
        cond: torch.Tensor,
        style: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """OT-CFM loss (σ_min 1e-6), L1 on non-prompt valid frames, class dropout 0.1.

        Args:
            x1: Target log-mel (B, M, F) (prompt frames included at the start of each item).
            x_lens: Valid frames per item (B,).
            prompt_lens: Prompt frames per item (B,), each < x_lens.
            cond: Regulated content for all F frames (B, F, C) (prompt part included).
            style: Speaker style (B, S).
            generator: Optional random generator for noise and t.

        Returns:
            Scalar loss (mean over items of the per-item mean absolute error).
        """
        b, m, f = x1.shape
        dev = x1.device
        z = torch.randn(x1.shape, generator=generator, device=dev, dtype=x1.dtype)
        t = torch.rand(b, generator=generator, device=dev, dtype=x1.dtype)
        tt = t[:, None, None]
        y = (1 - (1 - SIGMA_MIN) * tt) * z + tt * x1
        u = x1 - (1 - SIGMA_MIN) * z
        frames = torch.arange(f, device=dev)[None, None, :]
        in_prompt = frames < prompt_lens[:, None, None].to(dev)
        prompt = torch.where(in_prompt, x1, torch.zeros_like(x1))
        y = torch.where(in_prompt, torch.zeros_like(y), y)
        out = self.cfm.estimator(y, prompt, x_lens, t, style, cond, class_dropout=True)
        target = (frames < x_lens[:, None, None].to(dev)) & ~in_prompt  # (B, 1, F)
        err = (out - u).abs() * target
        per_item = err.sum(dim=(1, 2)) / (target.sum(dim=(1, 2)) * m).clamp(min=1)
        return per_item.mean()
