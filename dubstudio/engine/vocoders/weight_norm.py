"""Folding legacy weight-norm parameters (`weight_g`, `weight_v`) into plain `weight` tensors.

Inference-only models (vocoders, the semantic codec) keep plain convolutions and fold the
official weight-norm form when loading; the shape helpers rebuild the weight-norm key set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def fold_weight_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every complete ``X.weight_g`` + ``X.weight_v`` pair by ``X.weight = g·v/‖v‖``.

    The norm runs over every dimension but the first (torch's legacy ``weight_norm(dim=0)``).
    An incomplete pair is left as it is, so strict loading then names the orphan key.
    """
    out = dict(state)
    for key in list(state):
        if not key.endswith(".weight_g"):
            continue
        base = key[: -len("_g")]
        v_key = base + "_v"
        if v_key not in state:
            continue
        g = state[key].float()
        v = state[v_key].float()
        norm = v.norm(dim=tuple(range(1, v.dim())), keepdim=True)
        out[base] = (g * v / norm).to(state[v_key].dtype)
        del out[key], out[v_key]
    return out


def weight_norm_shapes(
    shapes: Mapping[str, tuple[int, ...]], modules: Iterable[str]
) -> dict[str, tuple[int, ...]]:
    """Key shapes as the weight-norm form would have them for the given module prefixes.

    Args:
        shapes: Plain state-dict shapes.
        modules: Prefixes (``"conv_pre"``, ``"ups.0.0"`` ...) whose ``weight`` is weight-normed.

    Returns:
        Shapes with ``P.weight`` replaced by ``P.weight_g`` (d0, 1, ...) and ``P.weight_v``.
    """
    out = dict(shapes)
    for prefix in modules:
        w = out.pop(f"{prefix}.weight")
        out[f"{prefix}.weight_g"] = (w[0],) + (1,) * (len(w) - 1)
        out[f"{prefix}.weight_v"] = w
    return out
