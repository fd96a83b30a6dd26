"""RenderService with the real tiny engine: exact lengths, cache hits, re-render only what changed,
supersession, priorities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dubstudio.core.errors import RenderCancelled
from dubstudio.core.model import EmotionSpec, FitMode, Project
from dubstudio.engine.api import SynthesisRequest
from dubstudio.services.cache import RenderCache
from dubstudio.services.export import export_mix, programme_samples
from dubstudio.services.render_service import RenderService

from .conftest import make_project


def _render_all(project: Project, cache: RenderCache, synth: Any) -> RenderService:
    service = RenderService(project, cache, model_identity=synth.identity)
    service.plan()
    service.render_pending(synth)
    return service


def test_render_mix_exact_lengths_placement_and_stems(
    tmp_path: Path, project: Project, cache: RenderCache, synth: Any
) -> None:
    service = _render_all(project, cache, synth)
    assert len(synth.calls) == 4 and service.progress.lines_done == 4
    assert service.progress.audio_seconds_done == pytest.approx(
        sum(project.line_budget(line).slot_samples for line in project.lines) / 22050
    )
    for line in project.lines:
        take = line.active_take
        assert take is not None
        budget = project.line_budget(line)
        assert take.n_samples == budget.slot_samples == take.budget_samples
        assert take.model_identity == synth.identity
    result = export_mix(
        project, cache, tmp_path / "mix.wav", stems_dir=tmp_path / "stems", float_output=True
    )
    mix, rate = sf.read(tmp_path / "mix.wav", dtype="float32")
    assert rate == 22050
    assert len(mix) == programme_samples(project) == 90 * 22050 // 25
    # Each take sits at its exact first sample: where lines do not overlap the mix equals it.
    lines = project.lines
    for line in (lines[0], lines[3]):
        budget = project.line_budget(line)
        audio = cache.get(line.active_take.cache_key).audio()  # type: ignore[union-attr]
        np.testing.assert_array_equal(mix[budget.start_sample : budget.end_sample], audio)
        assert np.any(audio != 0)
    assert np.all(mix[: project.line_budget(lines[0]).start_sample] == 0)
    gap = slice(
        project.line_budget(lines[2]).end_sample, project.line_budget(lines[3]).start_sample
    )
    assert np.all(mix[gap] == 0)
    stems = {p.stem: sf.read(p, dtype="float64")[0] for p in (tmp_path / "stems").iterdir()}
    assert set(stems) == {"Ann", "Bob"}
    assert all(len(s) == len(mix) for s in stems.values())
    np.testing.assert_allclose(stems["Ann"] + stems["Bob"], mix, atol=1e-6)
    # The overlap of lines 2 and 3 sums.
    b2, b3 = project.line_budget(lines[1]), project.line_budget(lines[2])
    a2 = cache.get(lines[1].active_take.cache_key).audio()  # type: ignore[union-attr]
    a3 = cache.get(lines[2].active_take.cache_key).audio()  # type: ignore[union-attr]
    i = b3.start_sample + 10
    assert mix[i] == pytest.approx(a2[i - b2.start_sample] + a3[i - b3.start_sample], abs=1e-6)
    # The peak check describes the float mix exactly (the random model may well clip).
    assert result.mix is not None
    assert result.mix.peak == pytest.approx(float(np.max(np.abs(mix))), rel=1e-6)
    assert result.mix.clipped_samples == int(np.count_nonzero(np.abs(mix) > 1.0))


def test_rerun_renders_nothing_and_one_change_renders_one(
    project: Project, cache: RenderCache, synth: Any
) -> None:
    _render_all(project, cache, synth)
    first_keys = [line.active_take.cache_key for line in project.lines]  # type: ignore[union-attr]
    synth.calls.clear()
    again = RenderService(project, cache, model_identity=synth.identity)
    assert again.plan() == 0  # every selected take is current

    # A fresh project (no takes) over the warm cache: all cache hits, no engine call.
    fresh = RenderService(_without_takes(project), cache, model_identity=synth.identity)
    assert fresh.plan() == 4
    fresh.render_pending(synth)
    assert synth.calls == [] and fresh.progress.cache_hits == 4

    # Change one line: only it is re-rendered.
    watch = RenderService(project, cache, model_identity=synth.identity)
    target = project.lines[2]
    project.update_line(target.id, text="Only me, again.")
    assert [job.line_id for job in watch.pending()] == [target.id]
    watch.render_pending(synth)
    assert len(synth.calls) == 1 and synth.calls[0].text == "Only me, again."
    assert project.lines[2].active_take.cache_key != first_keys[2]  # type: ignore[union-attr]
    assert len(project.lines[2].takes) == 2

    # Undo (text back): the old audio is found at no cost and its take is selected again.
    synth.calls.clear()
    project.update_line(target.id, text="Only me.")
    watch.render_pending(synth)
    assert synth.calls == []
    assert project.lines[2].active_take.cache_key == first_keys[2]  # type: ignore[union-attr]
    assert len(project.lines[2].takes) == 2


def _without_takes(project: Project) -> Project:
    clone = Project(
        fps=project.fps,
        sample_rate=project.sample_rate,
        lines=[line.copy() for line in project.lines],
        voices=project.voices,
        characters=project.characters,
        path=project.path,
    )
    for line in clone.lines:
        clone.update_line(line.id, takes=(), active_take_id=None)
    return clone


def test_moving_a_cue_keeps_its_audio(project: Project, cache: RenderCache, synth: Any) -> None:
    service = _render_all(project, cache, synth)
    synth.calls.clear()
    line = project.lines[3]
    key = line.active_take.cache_key  # type: ignore[union-attr]
    project.update_line(line.id, start_frame=100, end_frame=120)  # same length, 25 fps
    assert service.plan() == 0 and service.is_current(line.id)
    assert project.lines[3].active_take.cache_key == key  # type: ignore[union-attr]
    # Lengthening the cue changes the budget: a new take of the new length.
    project.update_line(line.id, end_frame=125)
    service.plan()
    service.render_pending(synth)
    assert len(synth.calls) == 1
    assert project.lines[3].active_take.n_samples == 25 * 22050 // 25  # type: ignore[union-attr]


def test_takes_at_one_budget_share_length(project: Project, cache: RenderCache, synth: Any) -> None:
    service = _render_all(project, cache, synth)
    line = project.lines[0]
    service.request([line.id], new_take=True)  # another seed
    service.render_pending(synth)
    project.update_line(line.id, emotion=EmotionSpec.from_values(angry=0.9))
    service.render_pending(synth)
    takes = project.lines[0].takes
    assert len(takes) == 3
    assert project.lines[0].active_take is takes[-1]
    assert len({t.n_samples for t in takes}) == 1  # swapping takes never moves anything
    assert len({t.cache_key for t in takes}) == 3
    assert takes[0].seed != takes[1].seed == takes[2].seed  # an edit keeps the chosen seed
    audio = [cache.get(t.cache_key).audio() for t in takes]  # type: ignore[union-attr]
    assert not np.array_equal(audio[0], audio[1])


def test_newer_revision_cancels_the_running_job(
    project: Project, cache: RenderCache, synth: Any
) -> None:
    service = RenderService(project, cache, model_identity=synth.identity)
    line = project.lines[0]
    service.request([line.id])
    events: list[str] = []
    service.listener = lambda event, job, progress: events.append(event)

    def edit_once(request: SynthesisRequest, fraction: float, stage: str) -> None:
        if request.text == "Hello there." and stage == "s2m":
            project.update_line(line.id, text="Hello over there.")

    synth.hook = edit_once
    outcomes = service.run_next(synth)
    assert [o.status for o in outcomes] == ["cancelled"]
    assert "superseded" in events
    assert project.lines[0].active_take is None
    assert [job.request.text for job in service.pending()] == ["Hello over there."]
    synth.hook = None
    service.render_pending(synth)
    assert project.lines[0].active_take.text == "Hello over there."  # type: ignore[union-attr]


def test_global_stop_keeps_the_job_queued(project: Project, cache: RenderCache, synth: Any) -> None:
    service = RenderService(project, cache, model_identity=synth.identity)
    service.plan()
    stop = {"now": False}

    def stop_midway(request: SynthesisRequest, fraction: float, stage: str) -> None:
        stop["now"] = True

    synth.hook = stop_midway
    service.render_pending(synth, should_stop=lambda: stop["now"])
    assert len(service) == 4 and cache.keys() == []
    with pytest.raises(RenderCancelled):
        synth.inner.synthesize(synth.calls[0], should_stop=lambda: True)


def test_stale_result_is_dropped(project: Project, cache: RenderCache, synth: Any) -> None:
    service = RenderService(project, cache, model_identity=synth.identity, watch=False)
    service.plan()
    outcome = service.run_next(synth, apply=False)[0]
    project.update_line(outcome.job.line_id, fit_mode=FitMode.EXACT_WITH_MARGINS)
    assert service.apply(outcome) is False
    assert project.line(outcome.job.line_id).active_take is None


def test_priority_requested_then_playhead_then_time(
    project: Project, cache: RenderCache, synth: Any
) -> None:
    lines = project.lines
    service = RenderService(project, cache, model_identity=synth.identity, near_seconds=1.5)
    service.plan()
    assert [j.line_id for j in service.pending()] == [line.id for line in lines]  # time order
    service.set_focus(playhead_seconds=2.7)  # line 4 starts at 2.8 s, line 3 at 1.6 s
    assert [j.line_id for j in service.pending()][:2] == [lines[3].id, lines[2].id]
    service.request([lines[1].id])
    order = [j.line_id for j in service.pending()]
    assert order[0] == lines[1].id and order[1] == lines[3].id
    assert service.next_batch()[0].line_id == lines[1].id


def test_batches_group_one_voice(project: Project, cache: RenderCache, synth: Any) -> None:
    service = RenderService(project, cache, model_identity=synth.identity, batch_size=3)
    service.plan()
    batch = service.next_batch()
    assert [j.line_id for j in batch] == [project.lines[0].id, project.lines[2].id]  # Ann's lines


def test_line_without_voice_is_reported(project: Project, cache: RenderCache, synth: Any) -> None:
    project.update_line(project.lines[0].id, character="Nobody")
    service = RenderService(project, cache, model_identity=synth.identity)
    assert service.plan() == 3
    assert "No voice" in service.problems[project.lines[0].id]


def test_batched_render_gives_the_same_audio_as_single(
    tmp_path: Path, project: Project, tiny_synth: Any, synth: Any
) -> None:
    batched = RenderCache(tmp_path / "batched")
    service = RenderService(project, batched, model_identity=tiny_synth.identity, batch_size=2)
    service.plan()
    first = service.run_next(tiny_synth)  # Ann's two lines in one synthesize_batch call
    assert [o.status for o in first] == ["rendered", "rendered"]
    service.render_pending(tiny_synth)
    single = RenderCache(tmp_path / "single")
    _render_all(_without_takes(project), single, synth)
    keys = sorted(single.keys())
    assert sorted(batched.keys()) == keys
    for key in keys:
        assert batched.get(key).sha256 == single.get(key).sha256  # type: ignore[union-attr]


def test_one_sample_budget_change_reuses_the_take(
    tmp_path: Path, voice_wav: Path, synth: Any
) -> None:
    from dubstudio.services.cache import RenderCache as Cache

    project = make_project(tmp_path, voice_wav, fps="30000/1001", sample_rate=48000)
    line = project.lines[3]
    project.update_line(line.id, end_frame=line.start_frame + 21)  # 21 frames: 33633.6 samples
    # Find a move that changes the slot by exactly one sample (1601.6 samples/frame).
    before = project.line_budget(line).slot_samples
    shift = next(
        s for s in range(1, 10) if abs(_slot_after_move(project, line.id, s) - before) == 1
    )
    cache = Cache(tmp_path / "c")
    service = _render_all(project, cache, synth)
    old_audio = np.array(cache.get(line.active_take.cache_key).audio())  # type: ignore[union-attr]
    synth.calls.clear()
    project.update_line(
        line.id, start_frame=line.start_frame + shift, end_frame=line.end_frame + shift
    )
    service.render_pending(synth)
    assert synth.calls == []
    take = project.line(line.id).active_take
    assert take is not None and take.n_samples == project.line_budget(line).slot_samples
    new_audio = cache.get(take.cache_key).audio()  # type: ignore[union-attr]
    n = min(len(old_audio), len(new_audio))
    np.testing.assert_array_equal(new_audio[:n], old_audio[:n])


def _slot_after_move(project: Project, line_id: str, shift: int) -> int:
    from dubstudio.core.timing import Slot

    line = project.line(line_id)
    slot = Slot(line.start_frame + shift, line.end_frame + shift)
    return slot.n_samples(project.fps, project.sample_rate)


def test_setting_a_seed_re_renders_with_it(
    project: Project, cache: RenderCache, synth: Any
) -> None:
    service = _render_all(project, cache, synth)
    line = project.lines[0]
    synth.calls.clear()
    project.update_line(line.id, seed=4242)
    service.render_pending(synth)
    assert [r.seed for r in synth.calls] == [4242]
    assert project.line(line.id).active_take.seed == 4242  # type: ignore[union-attr]
    # A new take at this revision keeps its own seed and stays selected.
    service.request([line.id], new_take=True)
    service.render_pending(synth)
    take = project.line(line.id).active_take
    assert take is not None and take.seed != 4242
    assert service.plan() == 0


def test_progress_counts_lines_seconds_and_eta(
    project: Project, cache: RenderCache, synth: Any
) -> None:
    seen: list[tuple[str, int]] = []
    service = RenderService(
        project,
        cache,
        model_identity=synth.identity,
        listener=lambda event, job, progress: seen.append((event, progress.lines_done)),
    )
    service.plan()
    progress = service.progress
    assert progress.eta_seconds is None  # no speed measured yet
    service.run_next(synth)
    service.run_next(synth)
    assert (progress.lines_total, progress.lines_done) == (4, 2)
    done_seconds = sum(project.line_budget(line).slot_samples for line in project.lines[:2]) / 22050
    assert progress.audio_seconds_done == pytest.approx(done_seconds)
    assert progress.eta_seconds is not None and progress.eta_seconds > 0
    assert 0 < progress.fraction < 1
    service.render_pending(synth)
    assert progress.eta_seconds == 0 and progress.fraction == 1
    assert [e for e, _ in seen if e != "progress"] == ["started", "finished"] * 4
