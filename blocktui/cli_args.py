"""Argument types of the command line: each bad value is a one-line argparse error."""

from __future__ import annotations

import argparse

from blocktui.core.errors import BlocktuiError
from blocktui.core.scheduler import check_max_active
from blocktui.core.units import parse_bandwidth, parse_size


def bandwidth_arg(text: str) -> int:
    try:
        return parse_bandwidth(text)
    except BlocktuiError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except BlocktuiError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def max_active_arg(text: str) -> int:
    """``--max-active N``, by the rule the dashboard's field uses too (``check_max_active``)."""
    value = _whole(text)
    try:
        check_max_active(value)
    except BlocktuiError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value
