"""Where a disk's data lives: ranges from qemu-img's map, merged, added up and drawn as a strip."""

from __future__ import annotations

import random

import pytest

from blocktui.core.allocation import ASCII_CELLS, DiskMap, Extent, Where, merge

pytestmark = pytest.mark.timeout(30)

MIB = 1024**2
L, B, U = Where.LOCAL, Where.BACKING, Where.UNALLOCATED

#: ``qemu-img map -U --output=json`` of a 16 MiB overlay (QEMU 7.2): 1 MiB written in the overlay,
#: a zero cluster written there, data and a zero range in the backing file, and ranges nothing holds.
QEMU_IMG_MAP = [
    {"start": 0, "length": 1048576, "depth": 0, "present": True, "zero": False, "data": True},
    {"start": 1048576, "length": 3145728, "depth": 1, "present": True, "zero": False, "data": True},
    {"start": 4194304, "length": 65536, "depth": 0, "present": True, "zero": True, "data": False},
    {"start": 4259840, "length": 4128768, "depth": 1, "present": True, "zero": False, "data": True},
    {"start": 8388608, "length": 4194304, "depth": 1, "present": False, "zero": True, "data": False},
    {"start": 12582912, "length": 1048576, "depth": 1, "present": True, "zero": True, "data": False},
    {"start": 13631488, "length": 3145728, "depth": 1, "present": False, "zero": True, "data": False},
]


def test_qemu_img_map_becomes_local_backing_and_unallocated_ranges() -> None:
    disk = DiskMap.from_qemu_img(QEMU_IMG_MAP)

    assert [(e.start, e.length, e.where) for e in disk.ranges] == [
        (0, 1 * MIB, L),
        (1 * MIB, 3 * MIB, B),
        (4 * MIB, 64 * 1024, L),  # zeros written in the overlay are the overlay's own
        (4 * MIB + 64 * 1024, 8 * MIB - (4 * MIB + 64 * 1024), B),
        (8 * MIB, 4 * MIB, U),
        (12 * MIB, 1 * MIB, B),  # zeros written in the backing file still have to be pulled
        (13 * MIB, 3 * MIB, U),
    ]
    totals = disk.totals()
    assert sum(totals.values()) == disk.size == 16 * MIB
    assert totals[L] == 1 * MIB + 64 * 1024
    assert totals[U] == 7 * MIB


def test_neighbours_of_one_state_are_joined_and_holes_are_unallocated() -> None:
    given = [Extent(8, 4, B), Extent(0, 2, L), Extent(2, 2, L), Extent(12, 4, B), Extent(20, 4, U)]
    ranges = merge([*given, Extent(6, 1, U)])

    assert ranges == (
        Extent(0, 4, L),
        Extent(4, 4, U),  # the hole 4..6, the range 6..7 and the hole 7..8 are one
        Extent(8, 8, B),
        Extent(16, 8, U),
    )


def test_overlapping_input_never_counts_a_byte_twice() -> None:
    ranges = merge([Extent(0, 10, L), Extent(5, 10, B), Extent(6, 2, U)])

    assert ranges == (Extent(0, 10, L), Extent(10, 5, B))
    assert DiskMap(ranges).size == 15


def test_random_maps_always_add_up_to_the_disk_size() -> None:
    rng = random.Random(16)
    for _ in range(200):
        at, extents = 0, []
        for _ in range(rng.randint(1, 30)):
            length = rng.randint(1, 5000)
            extents.append(Extent(at, length, rng.choice(list(Where))))
            at += length
        rng.shuffle(extents)
        disk = DiskMap.of(extents)
        assert sum(disk.totals().values()) == disk.size == at
        assert sum(e.length for e in disk.ranges) == at
        assert all(a.where is not b.where for a, b in zip(disk.ranges, disk.ranges[1:], strict=False))
        assert all(a.end == b.start for a, b in zip(disk.ranges, disk.ranges[1:], strict=False))
        assert len(disk.strip(37)) == 37


def test_the_strip_draws_each_cells_dominant_state() -> None:
    disk = DiskMap.of([Extent(0, 25, L), Extent(25, 50, B), Extent(75, 25, U)])

    assert disk.strip(4) == "█▒▒·"
    assert disk.strip(8, ASCII_CELLS) == "##++++.."
    assert disk.strip(0) == ""


def test_a_cell_split_evenly_shows_what_is_still_to_pull() -> None:
    disk = DiskMap.of([Extent(0, 50, L), Extent(50, 50, B)])

    assert disk.strip(1) == "▒"
    assert DiskMap.of([Extent(0, 60, L), Extent(60, 40, B)]).strip(1) == "█"


def test_a_strip_wider_than_the_disk_still_fills_every_cell() -> None:
    disk = DiskMap.of([Extent(0, 1, L), Extent(1, 2, B)])

    assert disk.strip(9) == "███▒▒▒▒▒▒"


def test_percent_local_counts_data_only_and_never_rounds_up_to_100() -> None:
    assert DiskMap.of([Extent(0, 25, L), Extent(25, 75, B)]).percent_text() == "25% local"
    # Zeros nothing holds need no pulling: a fully pulled disk with holes is 100 % local.
    streamed = DiskMap.of([Extent(0, 60, L), Extent(60, 40, U)])
    assert streamed.percent_local == 100.0 and streamed.percent_text() == "100% local"
    almost = DiskMap.of([Extent(0, 99_999, L), Extent(99_999, 1, B)])
    assert almost.percent_text() == "99.9% local"
    assert DiskMap.of([Extent(0, 10, U)]).percent_text() == "100% local"


def test_json_ranges_add_up_to_the_size_with_totals() -> None:
    record = DiskMap.from_qemu_img(QEMU_IMG_MAP).as_json()

    assert sum(r["length"] for r in record["ranges"]) == record["size"] == 16 * MIB
    assert set(record["totals"]) == {"local", "backing", "unallocated"}
    assert sum(record["totals"].values()) == record["size"]
    assert record["ranges"][0] == {"start": 0, "length": MIB, "state": "local"}


def test_an_extent_without_its_length_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="start or length"):
        DiskMap.from_qemu_img([{"start": 0, "depth": 0, "data": True}])


def test_maps_from_qemu_img_before_present_was_written() -> None:
    old = [
        {"start": 0, "length": 10, "depth": 0, "zero": False, "data": True},
        {"start": 10, "length": 10, "depth": 1, "zero": True, "data": False},
    ]
    assert DiskMap.from_qemu_img(old).totals() == {L: 10, B: 10, U: 0}
