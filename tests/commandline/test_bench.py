"""`dubstudio bench`: finds the repository's benchmark scripts and passes options on to them."""

from __future__ import annotations

import pytest

from dubstudio.cli import main


def test_list_names_the_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert {"pipeline", "s2m_vocoder", "t2s", "mixdown"} <= set(names)


def test_args_reach_the_benchmark_and_unknown_names_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:  # the script's own --help exits
        main(["bench", "pipeline", "--args=--help"])
    assert exit_info.value.code == 0
    assert "--compare {schedule,precision,candidates,guidance}" in capsys.readouterr().out
    assert main(["bench", "no_such_bench"]) == 2
    assert "known:" in capsys.readouterr().out
