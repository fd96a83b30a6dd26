"""`fetch_official` against a local directory laid out like a huggingface_hub cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine.bundles import OFFICIAL_FILES
from dubstudio.engine.hub import OFFICIAL_HUB_FILES, fetch_official, verify_official_layout

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(cache: Path, skip: str | None = None) -> None:
    """Write every official file into `cache` the way huggingface_hub stores snapshots."""
    for item in OFFICIAL_HUB_FILES:
        if item.filename == skip:
            continue
        repo_dir = cache / ("models--" + item.repo_id.replace("/", "--"))
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(COMMIT)
        path = repo_dir / "snapshots" / COMMIT / item.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{item.repo_id}:{item.filename}".encode())


def test_fetch_from_local_cache_builds_the_official_layout(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    make_hub_cache(cache)
    seen: list[float] = []
    dest = fetch_official(
        tmp_path / "model",
        cache_dir=cache,
        local_files_only=True,
        on_progress=lambda f, _: seen.append(f),
    )
    assert verify_official_layout(dest) == []
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == sorted(
        OFFICIAL_FILES
    )
    assert (dest / "hf_cache/campplus_cn_common.bin").read_bytes() == (
        b"funasr/campplus:campplus_cn_common.bin"
    )
    assert seen[-1] == 1.0
    # A second run finds everything in place and changes nothing.
    fetch_official(dest, cache_dir=cache, local_files_only=True)
    assert verify_official_layout(dest) == []


def test_offline_failure_names_the_file_and_the_workaround(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    make_hub_cache(cache, skip="bigvgan_generator.pt")
    with pytest.raises(ModelLoadError) as info:
        fetch_official(tmp_path / "model", cache_dir=cache, local_files_only=True)
    message = str(info.value)
    assert "bigvgan_generator.pt" in message
    assert "dubstudio models fetch indextts2 --dir" in message
    assert verify_official_layout(tmp_path / "model") == ["hf_cache/bigvgan/bigvgan_generator.pt"]


def test_unreachable_hub_fails_fast_and_uses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # Port 9 on the loopback refuses connections: a machine without network, in a second.
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    cache = tmp_path / "hub"
    make_hub_cache(cache, skip="model.safetensors")
    with pytest.raises(ModelLoadError) as info:
        fetch_official(tmp_path / "model", cache_dir=cache, local_files_only=False)
    assert "cannot be reached" in str(info.value)
    # Everything the cache held was placed; only the skipped w2v-BERT weights are missing.
    assert verify_official_layout(tmp_path / "model") == ["hf_cache/w2v-bert-2.0/model.safetensors"]
