"""Host strings are shown with every control and formatting character made visible."""

from __future__ import annotations

import pytest

from blocktui.core.text import visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("web01", "web01"),
        ("evil\x1b[31mred", "evil\\e[31mred"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("two\nlines", "two\\nlines"),
        ("tab\there", "tab\\there"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("back\\slash", "back\\\\slash"),
        ("/srv/vm[/]a.qcow2", "/srv/vm[/]a.qcow2"),
        ("[@click=app.quit]", "[@click=app.quit]"),
        ("ünïcödé 日本", "ünïcödé 日本"),
    ],
)
def test_visible(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_nothing_invisible_survives() -> None:
    hostile = "".join(
        chr(c) for c in [*range(0, 32), 127, *range(0x80, 0xA0), 0x200E, 0x202A, 0x2066, 0x2028]
    )
    shown = visible(hostile)
    assert shown.isprintable()
