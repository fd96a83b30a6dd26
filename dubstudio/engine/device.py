"""The one place where the engine picks its device and numeric precision."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)


def select_device(preference: str | None = None) -> torch.device:
    """Pick a torch device.

    Args:
        preference: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or None/``"auto"`` (CUDA, then
            Apple MPS, then CPU).

    Raises:
        ValueError: The requested device is not available on this machine.
    """
    if preference in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no CUDA GPU is available; use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS was requested but is not available; use --device cpu.")
    return device


@functools.cache
def cpu_bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles).

    Where it does, bf16 autocast speeds convolutions up; elsewhere bf16 is emulated and slower.
    Asked once per process (the S2M decoder asks on every line).
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype for ``device``: bf16/fp16 on CUDA, none on CPU and MPS."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


@contextlib.contextmanager
def autocast_context(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Autocast for model forward passes where it helps (CUDA); a no-op elsewhere."""
    dtype = autocast_dtype(device)
    if enabled and dtype is not None:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield
    else:
        yield


@contextlib.contextmanager
def cpu_bf16_autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """bf16 autocast on a CPU that computes bf16 natively (`cpu_bf16_native`); else a no-op.

    For convolution- and attention-heavy decoders (S2M, the vocoder): about 1.2–1.6× faster on
    such CPUs. The autoregressive T2S, a chain of small matrix products, is slower in bf16.
    """
    if enabled and device.type == "cpu" and cpu_bf16_native():
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            yield
    else:
        yield
