"""Checkpoint reading: safetensors and weights-only torch files, strict keys named in errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dubstudio.core.errors import CheckpointMismatchError, ModelLoadError
from dubstudio.engine import checkpoints

MANIFESTS = Path(__file__).resolve().parents[1] / "data" / "indextts2-manifests"


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))


def test_safetensors_round_trip_loads_strictly(tmp_path: Path) -> None:
    source = _tiny()
    path = tmp_path / "w.safetensors"
    save_file(source.state_dict(), str(path))
    target = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    checkpoints.load_strict(target, checkpoints.read_state_dict(path), component="tiny")
    assert torch.equal(target[0].weight, source[0].weight)


def test_wrapped_torch_file_is_unwrapped(tmp_path: Path) -> None:
    source = _tiny()
    path = tmp_path / "gpt.pth"
    torch.save({"model": source.state_dict()}, path)
    state = checkpoints.read_state_dict(path)
    assert set(state) == set(source.state_dict())


def test_renamed_key_is_named_in_the_error(tmp_path: Path) -> None:
    state = _tiny().state_dict()
    state["0.weights"] = state.pop("0.weight")
    with pytest.raises(CheckpointMismatchError) as info:
        checkpoints.load_strict(
            nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)), state, component="t"
        )
    assert "0.weight" in str(info.value) and "0.weights" in str(info.value)


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    state = _tiny().state_dict()
    with pytest.raises(CheckpointMismatchError, match=r"0\.weight: checkpoint \(3, 4\)"):
        checkpoints.load_strict(
            nn.Sequential(nn.Linear(5, 3), nn.LayerNorm(3)), state, component="t"
        )


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pickled code ran",))


def test_pickled_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(ModelLoadError):
        checkpoints.read_state_dict(path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_missing_file_message_names_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        checkpoints.read_state_dict(tmp_path / "nope.safetensors")


def test_manifest_parser_reads_both_layouts() -> None:
    gpt = checkpoints.read_manifest(MANIFESTS / "manifest_gpt.tsv")
    assert gpt["conditioning_encoder.embed.out.0.weight"] == (512, 261632)
    s2mel = checkpoints.read_manifest(MANIFESTS / "manifest_s2mel.tsv")
    assert any(k.startswith("cfm.estimator.") for k in s2mel)
    assert len(s2mel) == 284
