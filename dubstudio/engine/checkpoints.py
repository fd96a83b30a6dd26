"""The one module that reads weight files: safetensors or torch.load(weights_only=True).

Every loader in the engine goes through `read_state_dict` and `load_strict`, so a checkpoint can
never execute pickled code and a renamed or missing key is always reported by name.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dubstudio.core.errors import CheckpointMismatchError, ModelLoadError

log = logging.getLogger(__name__)

# Containers the official downloads wrap state dicts in (gpt.pth: 'model', BigVGAN and
# HiFi-GAN: 'generator'). `read_state_dict(..., container=...)` picks one explicitly.
KNOWN_CONTAINERS = ("model", "generator", "state_dict")

# component -> (module, function) that returns the official-config state-dict shapes. The
# functions build the module on the meta device, so no weights are allocated.
_OFFICIAL_SHAPE_FUNCTIONS: dict[str, tuple[str, str]] = {
    "gpt": ("dubstudio.engine.t2s.official", "official_gpt_shapes"),
    "s2mel": ("dubstudio.engine.s2m.official", "official_s2mel_shapes"),
    "bigvgan": ("dubstudio.engine.vocoders.bigvgan", "official_bigvgan_shapes"),
    "bigvgan_nown": ("dubstudio.engine.vocoders.bigvgan", "official_bigvgan_nown_shapes"),
    "campplus": ("dubstudio.engine.campplus", "official_campplus_shapes"),
    "semantic_codec": ("dubstudio.engine.codec", "official_codec_shapes"),
}


def read_object(path: str | Path) -> Any:
    """Read a `.safetensors` file (a dict of tensors) or any weights-only torch file.

    Raises:
        ModelLoadError: The file is missing, truncated, or would need pickled code to load.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Weight file not found: {path}. Check the model directory.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any decoder error means the same thing to a user
        raise ModelLoadError(
            f"Could not read weights from {path}: {exc}. The file may be truncated or not a "
            "checkpoint; download it again."
        ) from exc


def read_state_dict(path: str | Path, *, container: str | None = None) -> dict[str, torch.Tensor]:
    """Read tensors from a `.safetensors` file or a `.pt/.pth/.bin/.tar` file without pickled code.

    Args:
        path: The weight file.
        container: Key of a wrapping dict (e.g. ``"model"``). With None, a single known container
            (`KNOWN_CONTAINERS`) is unwrapped automatically.

    Returns:
        A flat mapping of parameter name to tensor (on the CPU).
    """
    path = Path(path)
    obj = read_object(path)
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{path} does not hold a state dict (found {type(obj).__name__}).")
    if container is not None:
        if container not in obj:
            raise ModelLoadError(f"{path} has no '{container}' entry (found: {sorted(obj)[:8]}).")
        obj = obj[container]
    elif not any(isinstance(v, torch.Tensor) for v in obj.values()):
        wrapped = [k for k in KNOWN_CONTAINERS if k in obj and isinstance(obj[k], Mapping)]
        if len(wrapped) == 1:
            obj = obj[wrapped[0]]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelLoadError(f"{path} contains no tensors.")
    return tensors


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop a leading ``prefix`` from every key that has it (e.g. DataParallel's ``module.``)."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def check_keys(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, tuple[int, ...]],
    *,
    component: str,
    ignore: Iterable[str] = (),
) -> None:
    """Raise `CheckpointMismatchError` naming every missing, unexpected or mis-shaped key."""
    ignored = set(ignore)
    missing = sorted(k for k in expected if k not in found and k not in ignored)
    unexpected = sorted(k for k in found if k not in expected and k not in ignored)
    wrong = sorted(
        f"{k}: checkpoint {tuple(found[k])} vs model {tuple(expected[k])}"
        for k in expected
        if k in found and tuple(found[k]) != tuple(expected[k])
    )
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
    if wrong:
        parts.append(f"shape mismatches ({len(wrong)}): {'; '.join(wrong[:20])}")
    raise CheckpointMismatchError(
        f"The {component} checkpoint does not match the model: " + " | ".join(parts)
    )


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    component: str,
    ignore: Iterable[str] = (),
) -> nn.Module:
    """Load ``state`` into ``module`` requiring the exact key set and shapes.

    Args:
        module: The target module.
        state: Tensors by name.
        component: Name used in error messages (``"gpt"``, ``"s2mel.cfm"`` ...).
        ignore: Keys allowed to be absent or extra (e.g. non-persistent caches).
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    check_keys(expected, found, component=component, ignore=ignore)
    ignored = set(ignore)
    module.load_state_dict({k: v for k, v in state.items() if k not in ignored}, strict=False)
    return module


def module_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of ``module`` with its shape (works on the meta device)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def official_state_dict_shapes(component: str) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of an official IndexTTS-2 component, built on the meta device.

    Args:
        component: One of ``gpt``, ``s2mel`` (keys ``<submodel>.<name>``), ``bigvgan``
            (weight-norm form), ``bigvgan_nown``, ``campplus``, ``semantic_codec``.
    """
    try:
        module_name, function_name = _OFFICIAL_SHAPE_FUNCTIONS[component]
    except KeyError:
        known = ", ".join(sorted(_OFFICIAL_SHAPE_FUNCTIONS))
        raise ValueError(f"Unknown component '{component}'; known: {known}") from None
    function: Callable[[], dict[str, tuple[int, ...]]] = getattr(
        importlib.import_module(module_name), function_name
    )
    return function()


def read_manifest(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Parse an official manifest TSV (``name, shape, dtype`` or ``submodel, name, shape, dtype``).

    The s2mel manifest's two leading columns are joined as ``<submodel>.<name>``.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        cols = raw.split("\t")
        if len(cols) == 4:
            name, shape = f"{cols[0]}.{cols[1]}", cols[2]
        else:
            name, shape = cols[0], cols[1]
        inner = shape.strip().strip("[]").strip()
        shapes[name] = tuple(int(x) for x in inner.split(",")) if inner else ()
    return shapes


def read_official_s2mel(path: str | Path) -> dict[str, torch.Tensor]:
    """Flatten the official ``s2mel.pth`` to ``<submodel>.<name>`` keys.

    The release nests its state as ``state['net'][<submodel>][<name>]`` and keeps DataParallel's
    ``module.`` prefixes; both are undone here so the result loads with `load_strict`.
    """
    raw = read_object(path)
    net = raw.get("net", raw) if isinstance(raw, Mapping) else None
    if not isinstance(net, Mapping):
        raise ModelLoadError(f"{path} is not an IndexTTS-2 s2mel checkpoint (no 'net' dict).")
    state: dict[str, torch.Tensor] = {}
    for sub, sub_state in net.items():
        if not isinstance(sub_state, Mapping):
            continue
        for key, tensor in strip_prefix(sub_state, "module.").items():
            state[f"{sub}.{key}"] = tensor
    return state


def read_tensor(path: str | Path) -> torch.Tensor:
    """A file holding one bare tensor (the official ``feat1.pt`` / ``feat2.pt``)."""
    obj = read_object(path)
    if not isinstance(obj, torch.Tensor):
        raise ModelLoadError(f"{path} should hold one tensor, found {type(obj).__name__}.")
    return obj
