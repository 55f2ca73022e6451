"""Counts in words: a noun (and its verb) in the number its count asks for."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 job``, ``2 jobs``, ``0 jobs``; ``plural`` for nouns that do not just take an s."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def agrees(count: int, singular: str, plural: str) -> str:
    """The verb form for ``count`` subjects: ``agrees(1, "continues", "continue")``."""
    return singular if count == 1 else plural
