"""Chunk plans: boundaries, which chunk an offset is in, where to stop."""

from __future__ import annotations

import pytest

from blocktui.core.chunks import ChunkPlan, approach_speed
from blocktui.core.errors import InvalidInput

MIB = 1024**2


def test_even_plan_has_four_chunks_and_three_boundaries() -> None:
    plan = ChunkPlan(256 * MIB, 64 * MIB)
    assert plan.count == 4
    assert plan.boundaries == (64 * MIB, 128 * MIB, 192 * MIB)


def test_short_last_chunk() -> None:
    plan = ChunkPlan(100 * MIB, 64 * MIB)
    assert plan.count == 2
    assert plan.boundaries == (64 * MIB,)
    assert plan.label(99 * MIB) == (2, 2)


def test_chunk_larger_than_disk_is_one_chunk_that_never_stops() -> None:
    plan = ChunkPlan(10 * MIB, 64 * MIB)
    assert plan.count == 1
    assert plan.boundaries == ()
    assert plan.stop_at(0) is None


def test_offset_on_a_boundary_starts_the_next_chunk() -> None:
    plan = ChunkPlan(256 * MIB, 64 * MIB)
    assert plan.index_of(0) == 0
    assert plan.index_of(64 * MIB - 1) == 0
    assert plan.index_of(64 * MIB) == 1
    assert plan.stop_at(64 * MIB) == 128 * MIB
    assert plan.stop_at(1) == 64 * MIB
    assert plan.stop_at(192 * MIB) is None
    assert plan.label(192 * MIB) == (4, 4)


def test_offsets_past_the_end_stay_in_the_last_chunk() -> None:
    plan = ChunkPlan(256 * MIB, 64 * MIB)
    assert plan.index_of(300 * MIB) == 3


@pytest.mark.parametrize(("size", "chunk"), [(0, MIB), (MIB, 0), (-1, MIB)])
def test_invalid_plans_are_refused(size: int, chunk: int) -> None:
    with pytest.raises(InvalidInput):
        ChunkPlan(size, chunk)


def test_approach_speed_tapers_to_the_floor_and_respects_the_limit() -> None:
    assert approach_speed(64 * MIB, 0) == 64 * MIB
    assert approach_speed(64 * MIB, 10 * MIB) == 10 * MIB
    assert approach_speed(1, 0) == 4 * MIB
    assert approach_speed(-5, 0) == 4 * MIB
    assert approach_speed(MIB, MIB // 2) == MIB // 2
