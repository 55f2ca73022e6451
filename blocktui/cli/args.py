"""Argument types of the command line: each bad value is a one-line argparse error.

Each type is the core's own rule for the value (the dashboard's fields use the same ones).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from blocktui.core.chunks import parse_gap
from blocktui.core.errors import BlocktuiError
from blocktui.core.scheduler import parse_max_active
from blocktui.core.units import parse_bandwidth, parse_size

T = TypeVar("T")


def argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from one of the core's parsers: its error becomes argparse's message."""

    def typed(text: str) -> T:
        try:
            return parse(text)
        except BlocktuiError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = parse.__name__.removeprefix("parse_")  # argparse names the type in errors
    return typed


bandwidth_arg = argument(parse_bandwidth)
size_arg = argument(parse_size)
gap_arg = argument(parse_gap)
max_active_arg = argument(parse_max_active)


def positive_int(text: str) -> int:
    """A count: a whole number from 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value
