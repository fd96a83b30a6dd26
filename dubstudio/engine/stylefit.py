"""Per-voice style fit: the decoder's style input chosen so that its renders sound like the voice.

A mel decoder trained on a handful of voices reads an unseen voice's speaker-encoder style and
renders something near the closest training voice it knows. The style vector is only an input,
so it can be searched per voice: `fit_style` follows the gradient of the speaker-encoder cosine
between a calibration render and the reference clip, through the speaker encoder, a linear
stand-in for the vocoder (`SpectrumBridge`) and every Euler step of the decoder, with the
content, prompt and noise of the calibration render held fixed. The result is one vector per
voice (and model), computed once when the voice is first used and kept on disk (`StyleCache`,
safetensors, keyed by the voice's content, the model's identity and what the fit renders), so
later renders and later sessions pay nothing for it. Voices the decoder was trained on need no
fit; the pipeline recognises them by their closeness to the training voices' styles.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dubstudio.core.errors import RenderCancelled
from dubstudio.core.fsutil import atomic_write_bytes
from dubstudio.engine.audio import MelConfig, mel_filters

log = logging.getLogger(__name__)

#: What the calibration render the style is fitted on says: two sentences, about six seconds
#: of varied phones. Fitted on one sentence, the style also took on what is peculiar to it,
#: and a one-sentence check of the fit on what is heard was no better than chance at telling
#: a helpful fit from a harmful one (see the bundled model's card).
FIT_TEXT = (
    "Every morning she walked along the river to watch the boats come in. "
    "Nobody could tell why the old clock in the hall had stopped at seven."
)


def fit_recipe_tag() -> str:
    """A short digest of what the fit renders, part of the style cache's key: styles fitted on
    other sentences are fitted again rather than reused."""
    return hashlib.sha256(FIT_TEXT.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class StyleFitResult:
    """Outcome of `fit_style`.

    Attributes:
        style: (1, S) unit-norm style of the best calibration render.
        start: Speaker cosine of the calibration render with the initial style (as the fit
            measures it).
        best: The same with ``style``.
        steps: Gradient steps taken.
        seconds: Wall time of the fit.
    """

    style: torch.Tensor
    start: float
    best: float
    steps: int
    seconds: float


def fit_style(
    render: Callable[[torch.Tensor], torch.Tensor],
    encoder: Callable[[torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    init: torch.Tensor,
    *,
    steps: int,
    lr: float = 0.02,
    keep: float = 1.0,
    on_fraction: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> StyleFitResult:
    """Search the style whose render the speaker encoder finds closest to ``target``.

    Adam on the unnormalised vector, evaluated on its projection onto the unit sphere; the
    best style seen (the initial one included) is returned, so the fit never does worse on
    the calibration render than no fit. With ``keep`` < 1 the style returned goes only that
    share of the way from ``init`` to the best one (``normalise(init + keep · (best - init))``,
    measured once more): the whole move also fits what is peculiar to the calibration
    sentence and to the encoder, and on other sentences a shorter one sounded closer to the
    voice and was recognised better (see the bundled model's card).

    Args:
        render: (1, S) style -> waveform, differentiable in the style.
        encoder: Waveform -> (S',) unit speaker embedding, differentiable.
        target: (S',) unit speaker embedding of the reference clip.
        init: (1, S) starting style.
        steps: Gradient steps (0 only measures ``init``).
        lr: Adam step size.
        keep: Share of the move from ``init`` to the best style that is kept, in (0, 1].
        on_fraction: Called with the fraction done after every step.
        should_stop: Polled before every step; True raises `RenderCancelled`.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    t0 = time.perf_counter()
    target = target.detach().reshape(-1).float()
    param = init.detach().clone().float().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)
    best_style, best, start = init.detach().clone(), -2.0, 0.0

    def similarity(style: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(encoder(render(style)).reshape(1, -1), target[None])[0]

    for step in range(steps + 1):
        if should_stop is not None and should_stop():
            raise RenderCancelled("Rendering was cancelled.")
        style = F.normalize(param, dim=-1)
        sim = similarity(style)
        value = float(sim.detach())
        if step == 0:
            start = value
        if value > best:
            best, best_style = value, style.detach().clone()
        log.debug("style fit step %d: cosine %.4f", step, value)
        if on_fraction is not None:
            on_fraction((step + 1) / (steps + 1))
        if step == steps:
            break
        (grad,) = torch.autograd.grad(-sim, [param])
        param.grad = grad
        opt.step()
    if keep < 1.0 and not torch.equal(best_style, init):
        best_style = F.normalize(init.detach() + keep * (best_style - init.detach()), dim=-1)
        with torch.no_grad():
            best = float(similarity(best_style))
    return StyleFitResult(best_style, start, best, steps, time.perf_counter() - t0)


class MelSpeakerEncoder:
    """A speaker encoder applied to a decoded log-mel through `SpectrumBridge`: differentiable.

    Args:
        encoder: Has ``embed_mel`` (power mel (F, bands) -> unit embedding), e.g. `GE2EEncoder`.
        mel: The decoder's mel convention.
    """

    def __init__(self, encoder: Any, mel: MelConfig) -> None:
        self.encoder = encoder
        self.bridge = SpectrumBridge(mel)

    def __call__(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(1, M, F) log-mel -> (S,) unit speaker embedding."""
        return self.encoder.embed_mel(self.bridge(log_mel))  # type: ignore[no-any-return]


class SpectrumBridge:
    """A decoder log-mel turned into a speaker encoder's power mel without a vocoder.

    Back-propagating through a neural vocoder costs several times the decoder's own backward
    pass on a CPU, so the fit measures the decoder's mel directly: each linear-frequency
    magnitude is estimated from the mel bands covering it (inverting the band weights), moved
    onto the encoder's frequency grid, squared, scaled by the two windows' energy ratio, filtered
    by the encoder's mel bands and interpolated to its frame rate. Linear in the magnitudes,
    hence differentiable and cheap.

    Args:
        mel: The decoder's mel convention (natural-log magnitude, slaney bands).
        rate: The encoder's sample rate.
        n_fft: The encoder's FFT (and Hann window) size.
        hop: The encoder's hop.
        bands: The encoder's slaney mel bands (0 Hz to ``rate / 2``).
    """

    def __init__(
        self, mel: MelConfig, rate: int = 16000, n_fft: int = 400, hop: int = 160, bands: int = 40
    ) -> None:
        import torchaudio

        basis = mel_filters(mel)  # (M, K)
        cover = basis.sum(dim=0)  # (K,) how much band weight each bin has
        share = basis.T / cover.clamp(min=1e-12)[:, None]  # (K, M): bins outside all bands -> 0
        self._amplitude = share / basis.sum(dim=1).clamp(min=1e-12)[None, :]  # (K, M)
        k_src, k_dst = basis.shape[1], n_fft // 2 + 1
        f_src = torch.linspace(0.0, mel.sample_rate / 2, k_src)
        f_dst = torch.linspace(0.0, rate / 2, k_dst)
        pos = (f_dst / f_src[1]).clamp(max=k_src - 1)
        lo = pos.floor().long().clamp(max=k_src - 2)
        frac = pos - lo
        grid = torch.zeros(k_dst, k_src)
        grid[torch.arange(k_dst), lo] = 1 - frac
        grid[torch.arange(k_dst), lo + 1] = frac
        self._grid = grid  # (K', K) linear interpolation in frequency
        # Speech spectra scale with the window's energy, as noise does (measured: this level
        # matches the encoder's own mel of the vocoded audio within about 10 %).
        gain = torch.hann_window(n_fft).square().sum() / torch.hann_window(mel.win).square().sum()
        fb = torchaudio.functional.melscale_fbanks(
            k_dst, 0.0, rate / 2, bands, rate, norm="slaney", mel_scale="slaney"
        )
        self._bands = fb.T.contiguous() * gain  # (bands, K')
        self._ratio = (rate / hop) / (mel.sample_rate / mel.hop)  # output frames per input frame

    def __call__(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(1, M, F) or (M, F) log-mel -> (F', bands) power mel at the encoder's frame rate."""
        x = log_mel.reshape(log_mel.shape[-2], log_mel.shape[-1]).float()
        amplitude = self._grid.to(x) @ (self._amplitude.to(x) @ x.exp())  # (K', F)
        power = self._bands.to(x) @ amplitude.square()  # (bands, F)
        frames = max(1, round(x.shape[-1] * self._ratio))
        out = F.interpolate(power[None], size=frames, mode="linear", align_corners=False)[0]
        return out.T


class StyleCache:
    """Fitted styles on disk: one safetensors file per (model identity, voice content, settings).

    Args:
        root: Directory of the files (created when the first one is written).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        """The stored style, or None (also for an unreadable file, which is then refitted)."""
        from safetensors.torch import load_file

        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["style"]
        except Exception as exc:  # a damaged cache entry only costs a new fit
            log.warning("ignoring the unreadable style cache entry %s: %s", path, exc)
            return None

    def put(self, key: str, style: torch.Tensor, result: StyleFitResult) -> None:
        """Store ``style`` atomically, with the fit's measurements as metadata."""
        from safetensors.torch import save

        data = save(
            {"style": style.detach().float().cpu().contiguous()},
            metadata={
                "start": f"{result.start:.4f}",
                "best": f"{result.best:.4f}",
                "steps": str(result.steps),
            },
        )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self._path(key), data)
        except OSError as exc:  # an unwritable cache only costs a new fit next time
            log.warning("could not store the fitted style in %s: %s", self.root, exc)
