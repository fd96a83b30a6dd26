"""Bundle descriptions: kinds, identities, listing, verification of the official layout."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine.bundles import (
    OFFICIAL_FILES,
    ModelBundle,
    create_tiny_bundle,
    load_bundle,
    read_official_s2mel,
    verify_bundle,
)

OFFICIAL_CONFIG = """\
gpt: {model_dim: 1280, layers: 24}
s2mel:
  preprocess_params: {sr: 22050, spect_params: {n_fft: 1024, win_length: 1024, hop_length: 256,
                      n_mels: 80, fmin: 0, fmax: "None"}}
emo_num: [3, 17, 2, 8, 4, 5, 10, 24]
version: 2.0
"""


def test_tiny_bundle_identity_follows_weights(tmp_path: Path, tiny_bundle: ModelBundle) -> None:
    a = load_bundle(create_tiny_bundle(tmp_path / "a", seed=0))
    b = load_bundle(create_tiny_bundle(tmp_path / "b", seed=0))
    c = load_bundle(create_tiny_bundle(tmp_path / "c", seed=1))
    assert a.identity == b.identity == tiny_bundle.identity
    assert a.identity != c.identity
    assert a.kind == "dubstudio-small"
    assert a.token_rate == Fraction(50)  # the small model's token rate
    assert a.mel_rate == Fraction(22050, 256)
    assert a.mel.fmax == 8000.0
    assert a.vocoder == "hifigan-universal"
    assert verify_bundle(a).ok


def test_fast_tiny_bundle_is_another_identity(tmp_path: Path) -> None:
    fast = load_bundle(create_tiny_bundle(tmp_path / "f", kind="fast"))
    assert fast.config["builder"] == "tiny"
    assert fast.token_rate == Fraction(50)
    assert verify_bundle(fast).ok
    with pytest.raises(ValueError, match="unknown tiny bundle kind"):
        create_tiny_bundle(tmp_path / "x", kind="huge")


def test_official_directory_is_recognised(tmp_path: Path) -> None:
    root = tmp_path / "IndexTTS-2"
    root.mkdir()
    (root / "config.yaml").write_text(OFFICIAL_CONFIG)
    bundle = load_bundle(root)
    assert (bundle.kind, bundle.name, bundle.vocoder) == ("indextts2", "indextts2", "bigvgan")
    assert bundle.token_rate == 50  # not the legacy 24000/1024
    assert bundle.mel.fmax is None and bundle.mel.n_mels == 80
    report = verify_bundle(bundle)
    assert not report.ok
    assert f"missing file: {OFFICIAL_FILES[1]}" in report.problems
    assert len(report.problems) == len(OFFICIAL_FILES) - 1


def test_official_verify_names_wrong_keys(tmp_path: Path) -> None:
    root = tmp_path / "IndexTTS-2"
    root.mkdir()
    (root / "config.yaml").write_text(OFFICIAL_CONFIG)
    for rel in OFFICIAL_FILES[1:]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    torch.save({"model": {"not_a_gpt_key": torch.zeros(2)}}, root / "gpt.pth")
    report = verify_bundle(load_bundle(root))
    joined = "\n".join(report.problems)
    assert "gpt checkpoint does not match" in joined
    assert "not_a_gpt_key" in joined
    assert "missing keys (665)" in joined


def test_read_official_s2mel_flattens_and_strips_module(tmp_path: Path) -> None:
    path = tmp_path / "s2mel.pth"
    torch.save(
        {
            "net": {
                "cfm": {"module.estimator.w": torch.ones(3)},
                "gpt_layer": {"0.weight": torch.ones(2, 2)},
            },
            "epoch": 3,
        },
        path,
    )
    state = read_official_s2mel(path)
    assert sorted(state) == ["cfm.estimator.w", "gpt_layer.0.weight"]


def test_unknown_model_name_lists_what_exists(
    tmp_path: Path, tiny_bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUBSTUDIO_DATA_DIR", str(tmp_path))
    (tmp_path / "models").mkdir()
    shutil.copytree(tiny_bundle.root, tmp_path / "models" / "mine")
    assert load_bundle("tiny").root == tmp_path / "models" / "mine"
    with pytest.raises(ModelLoadError, match=r"known: [^)]*\btiny\b"):
        load_bundle("nope")


def test_not_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a model directory"):
        load_bundle(tmp_path)


def test_default_is_the_first_shipped_model(
    tmp_path: Path, tiny_bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dubstudio.engine.bundles as bundles

    shipped = tmp_path / "resources" / "models"
    shipped.mkdir(parents=True)
    shutil.copytree(tiny_bundle.root, shipped / "small-en")
    monkeypatch.setattr(bundles, "bundled_models_dirs", lambda: [shipped])
    monkeypatch.setenv("DUBSTUDIO_DATA_DIR", str(tmp_path / "user"))
    default = load_bundle("default")
    assert default.root == shipped / "small-en"
    assert default.identity == tiny_bundle.identity  # content, not location
