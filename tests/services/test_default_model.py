"""The render service with the bundled default model (slow): exact lengths, placement, cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dubstudio.core.errors import ModelLoadError
from dubstudio.services.cache import RenderCache
from dubstudio.services.export import export_mix, programme_samples
from dubstudio.services.render_service import RenderService

from .conftest import CountingSynthesizer, make_project


@pytest.fixture(scope="module")
def default_synth() -> Any:
    import torch

    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer

    try:
        bundle = load_bundle("default")
    except ModelLoadError as exc:
        pytest.skip(f"bundled default model not installed: {exc}")
    torch.set_num_threads(2)
    return Synthesizer.from_bundle(bundle, device="cpu")


@pytest.mark.slow
def test_default_model_mix_is_exact_and_cached(
    tmp_path: Path, voice_wav: Path, default_synth: Any
) -> None:
    project = make_project(tmp_path, voice_wav, fps="24000/1001", sample_rate=48000)
    project.remove_lines([project.lines[1].id, project.lines[2].id])
    synth = CountingSynthesizer(default_synth)
    cache = RenderCache(tmp_path / "cache")
    service = RenderService(project, cache, model_identity=synth.identity)
    service.plan()
    service.render_pending(synth)
    assert len(synth.calls) == 2
    stems_dir = tmp_path / "stems"
    export_mix(project, cache, tmp_path / "mix.wav", stems_dir=stems_dir, float_output=True)
    mix = sf.read(tmp_path / "mix.wav", dtype="float32")[0]
    assert len(mix) == programme_samples(project)
    for line in project.lines:
        budget = project.line_budget(line)
        take = line.active_take
        assert take is not None and take.n_samples == budget.slot_samples
        audio = cache.get(take.cache_key).audio()  # type: ignore[union-attr]
        np.testing.assert_array_equal(mix[budget.start_sample : budget.end_sample], audio)
    stems = [sf.read(p, dtype="float64")[0] for p in stems_dir.iterdir()]
    np.testing.assert_allclose(np.sum(stems, axis=0), mix, atol=1e-6)
    synth.calls.clear()
    assert service.plan() == 0
    project.update_line(project.lines[0].id, text="Hello again.")
    service.plan()
    service.render_pending(synth)
    assert [r.text for r in synth.calls] == ["Hello again."]
