"""Host strings are shown with every control and formatting character made visible."""

from __future__ import annotations

import pytest

from blocktui.core.text import counted, jobs_continue, printable, visible


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


@pytest.mark.parametrize(
    ("running", "hosts", "said"),
    [
        (1, 1, "1 running job continues on the host"),
        (2, 2, "2 running jobs continue on the hosts"),
        (3, 1, "3 running jobs continue on the host"),
        (1, 2, "1 running job continues on the hosts"),
        (0, 1, "no running jobs seen; any on the host keep running"),
        (0, 3, "no running jobs seen; any on the hosts keep running"),
    ],
)
def test_leaving_messages_agree_in_number(running: int, hosts: int, said: str) -> None:
    assert jobs_continue(running, hosts) == said


def test_counts_take_the_right_noun() -> None:
    assert [counted(n, "domain") for n in (0, 1, 2)] == ["0 domains", "1 domain", "2 domains"]
    assert counted(2, "QEMU process", "QEMU processes") == "2 QEMU processes"


def test_printable_escapes_controls_but_not_backslashes() -> None:
    assert printable("a\\x1bb\x1b]0;t\x07") == "a\\x1bb\\e]0;t\\x07"
