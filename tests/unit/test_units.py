"""Sizes and bandwidths: what people type, and what they are told when it cannot be used."""

from __future__ import annotations

import pytest

from blocktui.core.errors import InvalidInput
from blocktui.core.units import (
    MAX_BYTES,
    format_bandwidth,
    format_duration,
    format_eta,
    format_size,
    parse_bandwidth,
    parse_size,
)

MIB = 1024**2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("50M", 50 * MIB),
        ("50MiB", 50 * MIB),
        ("50mb", 50 * MIB),
        ("1.5G", 1536 * MIB),
        ("0.5k", 512),
        (" 64 M ", 64 * MIB),
        ("0", 0),
        ("1T", 1024**4),
    ],
)
def test_parse_size_accepts_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50M", 50 * MIB),
        ("50MiB/s", 50 * MIB),
        ("50MB/s", 50 * MIB),
        ("20mbps", 20 * MIB),
        ("512k", 512 * 1024),
        ("1.5G", 1536 * MIB),
        ("0", 0),
        ("unlimited", 0),
        ("Unlimited", 0),
        ("1048576", MIB),
    ],
)
def test_parse_bandwidth(text: str, expected: int) -> None:
    assert parse_bandwidth(text) == expected


@pytest.mark.parametrize("text", ["-1", "-5M", "fast", "", "M", "12 parsecs", "1e6", "0x10", "5M/h"])
def test_junk_and_negative_are_refused_with_what_is_accepted(text: str) -> None:
    with pytest.raises(InvalidInput, match="use a rate such as"):
        parse_bandwidth(text)


@pytest.mark.parametrize("text", ["1.5", "0.3k", "1.0000001M"])
def test_fractional_bytes_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="whole number of bytes"):
        parse_size(text)


def test_values_libvirt_cannot_carry_are_refused() -> None:
    assert parse_bandwidth(str(MAX_BYTES)) == MAX_BYTES
    with pytest.raises(InvalidInput, match="too large"):
        parse_bandwidth(str(2**63))
    with pytest.raises(InvalidInput, match="too large"):
        parse_size("8192P")


def test_formatting_reads_naturally() -> None:
    assert format_size(1536 * MIB) == "1.5 GiB"
    assert format_bandwidth(0) == "unlimited"
    assert format_bandwidth(20 * MIB) == "20.0 MiB/s"
    assert format_duration(42) == "42s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3720) == "1h02m"
    assert format_duration(None) == "—"
    assert format_duration(float("nan")) == "—"


def test_an_eta_is_shown_to_the_precision_it_has() -> None:
    assert format_eta(185) == "3m05s"  # under 10 minutes, to the second
    assert format_eta(1002) == "17m"  # 16m42s: good to 5 %, so to the minute
    assert format_eta(3590) == "1h00m"
    assert format_eta(7380) == "2h03m"
    assert format_eta(None) == "—"
    assert format_eta(float("inf")) == "—"
