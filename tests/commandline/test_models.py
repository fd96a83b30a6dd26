"""`dubstudio models list | verify | fetch` on tiny bundles and a local hub cache."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from dubstudio.commandline import models
from dubstudio.core.errors import ModelLoadError
from dubstudio.engine.bundles import ModelBundle, sha256_file, write_bundle_manifest


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dubstudio")
    models.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture()
def bundle_copy(tiny_bundle: ModelBundle, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(tiny_bundle.root, root)
    return root


def test_verify_accepts_an_intact_bundle(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["models", "verify", str(bundle_copy)]) == 0
    out = capsys.readouterr().out
    assert "intact" in out
    assert "keys ok" in out


def test_verify_reports_a_corrupted_file(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bundle_copy / "s2m.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert run(["models", "verify", str(bundle_copy)]) == 1
    captured = capsys.readouterr()
    assert "hash mismatch: s2m.safetensors" in captured.out
    assert "1 problem" in captured.err


def test_verify_names_a_renamed_weight(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A consistent manifest over a checkpoint with a renamed key: hashes pass, keys must not.
    path = bundle_copy / "t2s.safetensors"
    state = load_file(str(path))
    state["final_norm.weight_renamed"] = state.pop("final_norm.weight")
    save_file(state, str(path))
    import json

    manifest = json.loads((bundle_copy / "bundle.json").read_text())
    manifest["files"]["t2s.safetensors"] = sha256_file(path)
    (bundle_copy / "bundle.json").write_text(json.dumps(manifest))
    assert run(["models", "verify", str(bundle_copy)]) == 1
    out = capsys.readouterr().out
    assert "final_norm.weight" in out and "missing" in out


def test_verify_reports_a_missing_file(
    bundle_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bundle_copy / "t2e.safetensors").unlink()
    assert run(["models", "verify", "--no-keys", str(bundle_copy)]) == 1
    assert "missing file: t2e.safetensors" in capsys.readouterr().out


def test_list_finds_user_models(
    bundle_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    shutil.copytree(bundle_copy, data / "models" / "mine")
    monkeypatch.setenv("DUBSTUDIO_DATA_DIR", str(data))
    assert run(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "dubstudio-small" in out and str(data / "models" / "mine") in out
    assert "official IndexTTS-2 not installed" in out


def test_fetch_offline_explains_what_to_do(tmp_path: Path) -> None:
    argv = ["models", "fetch", "indextts2", "--dir", str(tmp_path / "m")]
    argv += ["--cache-dir", str(tmp_path / "empty"), "--offline"]
    with pytest.raises(ModelLoadError) as info:
        run(argv)
    message = str(info.value)
    assert "Could not get 14 of 14 files" in message
    assert "dubstudio models fetch indextts2 --dir" in message


def test_write_manifest_roundtrip(bundle_copy: Path) -> None:
    from dubstudio.engine.bundles import MelSpec, load_bundle

    before = load_bundle(bundle_copy)
    write_bundle_manifest(
        bundle_copy,
        name=before.name,
        config=before.config,
        token_rate=before.token_rate,
        mel=before.mel,
        vocoder=before.vocoder,
        cfm_steps=before.cfm_steps,
        files=list(before.files),
    )
    after = load_bundle(bundle_copy)
    assert after.identity == before.identity
    assert after.files == before.files
    assert after.mel == MelSpec(fmax=8000.0)
