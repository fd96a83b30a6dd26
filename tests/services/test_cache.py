"""Tests of the content-addressed render cache: round trip, crash safety, LRU eviction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubstudio.services.cache import RenderCache


def _key(n: int) -> str:
    return f"{n:064x}"


def test_put_get_round_trip_is_exact_and_playable(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    audio = np.random.default_rng(1).standard_normal(12345).astype(np.float32) * 0.1
    stored = cache.put(_key(1), audio, 48000, {"tokens": 7})
    entry = cache.get(_key(1), verify=True)
    assert entry is not None
    assert entry.sha256 == stored.sha256 and entry.meta == {"tokens": 7}
    assert np.array_equal(entry.audio(), audio)
    played, rate = sf.read(entry.path, dtype="float32")
    assert rate == 48000 and np.array_equal(played, audio)
    assert cache.get(_key(2)) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_truncated_audio_is_a_miss_not_garbage(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    entry = cache.put(_key(3), np.ones(1000, np.float32), 48000)
    with open(entry.path, "r+b") as handle:
        handle.truncate(entry.data_offset + 400)  # a crash that cut the audio short
    assert cache.get(_key(3)) is None
    assert _key(3) not in cache


def test_corrupt_bytes_are_caught_by_verify(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    entry = cache.put(_key(4), np.zeros(100, np.float32), 48000)
    with open(entry.path, "r+b") as handle:
        handle.seek(entry.data_offset + 8)
        handle.write(b"\x01\x02\x03\x04")
    assert cache.get(_key(4), verify=False) is not None  # size is right
    assert cache.get(_key(4), verify=True) is None


def test_audio_without_manifest_is_never_read_and_scrubbed(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    entry = cache.put(_key(5), np.zeros(10, np.float32), 48000)
    entry.path.with_suffix(".json").unlink()  # crash after the audio, before the manifest
    tmp = entry.path.with_name(".x.wav.1.tmp")
    tmp.write_bytes(b"partial")
    assert cache.get(_key(5)) is None
    assert cache.scrub(min_age_s=3600) == 0  # too fresh: could be another process writing
    assert cache.scrub(min_age_s=0) == 2
    assert not entry.path.exists() and not tmp.exists()


def test_lru_eviction_keeps_recent_and_protected(tmp_path: Path) -> None:
    one_entry = 4 * 1000 + 58
    cache = RenderCache(tmp_path, max_bytes=3 * one_entry)
    for i in range(3):
        entry = cache.put(_key(i), np.zeros(1000, np.float32), 48000)
        os.utime(entry.path.with_suffix(".json"), (1000 + i, 1000 + i))
    assert cache.get(_key(0)) is not None  # touching 0 makes 1 the least recently used
    cache.put(_key(9), np.zeros(1000, np.float32), 48000, protect=[_key(0)])
    assert sorted(cache.keys()) == sorted([_key(0), _key(2), _key(9)])
    assert cache.size_bytes() <= cache.max_bytes
    # Protected keys survive even when they are the oldest.
    os.utime(cache.get(_key(0)).path.with_suffix(".json"), (1, 1))  # type: ignore[union-attr]
    cache.put(_key(10), np.zeros(1000, np.float32), 48000, protect=[_key(0)])
    assert _key(0) in cache and _key(2) not in cache


def test_manifest_is_the_commit_point(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path)
    entry = cache.put(_key(6), np.zeros(10, np.float32), 22050)
    manifest = json.loads(entry.path.with_suffix(".json").read_text())
    assert manifest["samples"] == 10 and manifest["sample_rate"] == 22050
    assert not list(entry.path.parent.glob("*.tmp"))


def test_bad_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="Invalid cache key"):
        RenderCache(tmp_path).get("../../etc/passwd")
