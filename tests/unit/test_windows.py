"""Windows: widened to whole clusters, cut at the disk's end, what is left to read, and the pace."""

from __future__ import annotations

import pytest

from blocktui.backends.qmp.leftovers import LEFTOVER
from blocktui.core.errors import InvalidInput
from blocktui.core.windows import (
    GRAIN,
    MAX_PIECE,
    Pacer,
    Window,
    fit_to_disk,
    local_extents,
    piece_size,
    ranges_to_read,
    window_of,
)

MIB = 1024**2


def test_a_window_on_cluster_boundaries_is_taken_as_given() -> None:
    assert window_of(16 * MIB, 8 * MIB) == (Window(16 * MIB, 8 * MIB), "")


def test_a_window_off_the_clusters_is_widened_outward_and_says_so() -> None:
    window, said = window_of(GRAIN + 1, GRAIN)
    assert window == Window(GRAIN, 2 * GRAIN)
    assert "widened" in said and "\n" not in said


@pytest.mark.parametrize(("offset", "length"), [(-1, GRAIN), (0, 0), (0, -5)])
def test_impossible_windows_are_refused(offset: int, length: int) -> None:
    with pytest.raises(InvalidInput):
        window_of(offset, length)


def test_a_window_is_cut_at_the_disk_end_and_one_past_it_is_refused() -> None:
    assert fit_to_disk(Window(48 * MIB, 32 * MIB), 64 * MIB) == Window(48 * MIB, 16 * MIB)
    with pytest.raises(InvalidInput, match="past the end"):
        fit_to_disk(Window(64 * MIB, MIB), 64 * MIB)


def test_only_what_the_top_image_lacks_is_read() -> None:
    extents = [
        {"start": 0, "length": MIB, "depth": 0, "present": True, "data": True},
        {"start": MIB, "length": 3 * MIB, "depth": 1, "present": True, "data": True},
        {"start": 4 * MIB, "length": MIB, "depth": 0, "present": True, "zero": True},
        {"start": 5 * MIB, "length": 3 * MIB, "depth": 1, "present": True, "data": True},
        {"start": 8 * MIB, "length": MIB, "depth": 2, "present": False, "zero": True},
    ]
    local = local_extents(extents)
    assert local == [(0, MIB), (4 * MIB, MIB)]
    assert ranges_to_read(Window(0, 8 * MIB), local) == [(MIB, 3 * MIB), (5 * MIB, 3 * MIB)]
    assert ranges_to_read(Window(4 * MIB, MIB), local) == []
    assert ranges_to_read(Window(2 * MIB, 4 * MIB), local) == [(2 * MIB, 2 * MIB), (5 * MIB, MIB)]


def test_pieces_follow_the_speed_in_whole_clusters() -> None:
    assert piece_size(0) == MAX_PIECE
    assert piece_size(1024) == GRAIN
    assert piece_size(8 * MIB) == MIB
    assert piece_size(10**12) == MAX_PIECE


def test_the_pacer_holds_the_speed_and_a_new_one_counts_from_its_change() -> None:
    pacer = Pacer(MIB, now=100.0)
    assert pacer.delay(100.0) == 0.0
    pacer.read(MIB)
    assert pacer.delay(100.25) == pytest.approx(0.75)
    pacer.restart(4 * MIB, now=100.25)
    assert pacer.delay(100.25) == 0.0
    pacer.read(MIB)
    assert pacer.delay(100.25) == pytest.approx(0.25)
    pacer.restart(0, now=101.0)
    pacer.read(10 * MIB)
    assert pacer.delay(101.0) == 0.0


def test_leftover_names_carry_the_owner_pid() -> None:
    match = LEFTOVER.match("blocktui-4194304-w12")
    assert match is not None and match.group(1) == "4194304"
    assert len("blocktui-4194304-w9999") <= 31  # QEMU's node-name limit
    assert LEFTOVER.match("blocktui-vda") is None
