"""Device and precision selection on this machine's CPU."""

from __future__ import annotations

import pytest
import torch

from dubstudio.engine.device import (
    autocast_context,
    cpu_bf16_autocast,
    cpu_bf16_native,
    select_device,
)


def test_auto_selects_an_available_device_and_unavailable_ones_say_what_to_use() -> None:
    device = select_device("auto")
    assert device.type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cpu"):
            select_device("cuda")


def test_cpu_bf16_autocast_follows_the_cpu_and_plain_autocast_stays_off_on_cpu() -> None:
    cpu = torch.device("cpu")
    conv = torch.nn.Conv1d(4, 4, 3)
    x = torch.randn(1, 4, 16)
    with cpu_bf16_autocast(cpu):
        assert torch.is_autocast_enabled("cpu") == cpu_bf16_native()
        out = conv(x)
    assert out.dtype == (torch.bfloat16 if cpu_bf16_native() else torch.float32)
    assert not torch.is_autocast_enabled("cpu")
    with cpu_bf16_autocast(cpu, enabled=False):
        assert conv(x).dtype == torch.float32
    with autocast_context(cpu):
        assert conv(x).dtype == torch.float32
