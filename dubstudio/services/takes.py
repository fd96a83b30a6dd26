"""Takes: every render of a line is kept (by cache key) and one of them is selected.

Takes live in the project file by reference (`Take.cache_key`, the content key of the audio in
the render cache); the audio itself is in the cache. Takes rendered for the same budget have the
same length by construction (the engine returns exactly ``target_samples``), so selecting another
take never moves anything on the timeline.

All functions here change the project through `Project.update_line`, so observers (the editor's
item models) see every change; call them on the thread that owns the project.
"""

from __future__ import annotations

import datetime as _dt

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EmotionSpec, Line, Project, Take, new_id


def find_take(line: Line, cache_key: str) -> Take | None:
    """The line's take with this audio, if any."""
    for take in line.takes:
        if take.cache_key == cache_key:
            return take
    return None


def make_take(
    *,
    cache_key: str,
    sample_rate: int,
    n_samples: int,
    seed: int,
    emotion: EmotionSpec,
    budget_samples: int | None,
    model_identity: str,
    text: str,
    line_revision: int,
) -> Take:
    """A new take record, stamped with the current UTC time."""
    if budget_samples is not None and n_samples != budget_samples:
        raise ValidationError(
            f"A take of {n_samples} samples does not fit its budget of {budget_samples}; "
            "the engine broke its length contract."
        )
    return Take(
        id=new_id(),
        cache_key=cache_key,
        sample_rate=sample_rate,
        n_samples=n_samples,
        seed=seed,
        emotion=emotion,
        budget_samples=budget_samples,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        model_identity=model_identity,
        text=text,
        line_revision=line_revision,
    )


def add_take(project: Project, line_id: str, take: Take, *, select: bool = True) -> Take:
    """Attach a take to a line (or re-use the line's take with the same audio) and select it.

    Returns:
        The take now on the line (an existing one when its audio matched).
    """
    line = project.line(line_id)
    existing = find_take(line, take.cache_key)
    if existing is not None:
        if select:
            project.update_line(line_id, active_take_id=existing.id)
        return existing
    changes: dict[str, object] = {"takes": (*line.takes, take)}
    if select:
        changes["active_take_id"] = take.id
    project.update_line(line_id, **changes)
    return take


def select_take(project: Project, line_id: str, take_id: str) -> None:
    """Make ``take_id`` the line's selected take."""
    line = project.line(line_id)
    if not any(t.id == take_id for t in line.takes):
        raise ValidationError(f"Line {line_id} has no take {take_id}.")
    project.update_line(line_id, active_take_id=take_id)


def remove_take(project: Project, line_id: str, take_id: str) -> None:
    """Forget a take (its audio stays in the cache until evicted)."""
    line = project.line(line_id)
    takes = tuple(t for t in line.takes if t.id != take_id)
    changes: dict[str, object] = {"takes": takes}
    if line.active_take_id == take_id:
        changes["active_take_id"] = takes[-1].id if takes else None
    project.update_line(line_id, **changes)


def takes_at_budget(line: Line, budget_samples: int | None) -> list[Take]:
    """The line's takes rendered for this budget (interchangeable without retiming)."""
    return [t for t in line.takes if t.budget_samples == budget_samples]
