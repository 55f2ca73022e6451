"""Counts read right in the singular and the plural."""

from __future__ import annotations

from blocktui.core.words import agrees, counted


def test_one_is_singular_everything_else_plural() -> None:
    assert counted(1, "running job") == "1 running job"
    assert counted(2, "running job") == "2 running jobs"
    assert counted(0, "layer") == "0 layers"
    assert counted(3, "process", "processes") == "3 processes"
    assert f"{counted(1, 'job')} {agrees(1, 'continues', 'continue')}" == "1 job continues"
    assert f"{counted(2, 'job')} {agrees(2, 'continues', 'continue')}" == "2 jobs continue"
