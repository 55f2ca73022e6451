"""Argument types of the command line: each bad value is a one-line argparse error."""

from __future__ import annotations

import argparse

from blocktui.core.errors import BlocktuiError
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value
