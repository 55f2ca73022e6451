"""The configuration file: named hosts, their queue and budget, stream defaults, look and keys.

TOML, read with the standard library. Every value is checked by the same rules as the flags
that override it; a bad file is one ``ConfigError`` naming the line and key.

```toml
[defaults]
hosts = ["web", "lab"]   # opened when no host is named on the command line
bandwidth = "50M"
chunk = "1G"
gap = 5

[dashboard]
theme = "textual-light"
bell = true              # ring the terminal bell when a job ends
desktop = true           # and send a desktop notification (OSC 9 / OSC 777)

[keys]                   # binding id = keys (see ?)
stream = "s,ctrl+s"

[hosts.web]
uri = "qemu+ssh://root@web/system"
max_active = 2
budget = "200M"

[hosts.lab]
lab = true

[hosts.vms]
qmp_dir = "/run/qemu"    # or qmp = "/run/qemu/vm1.qmp"
```
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from blocktui.core.chunks import check_gap
from blocktui.core.errors import BlocktuiError, InvalidInput
from blocktui.core.scheduler import HostPolicy
from blocktui.core.units import parse_bandwidth, parse_size

T = TypeVar("T")


class ConfigError(InvalidInput):
    """The configuration file cannot be used: where, and what to change."""


@dataclass(frozen=True)
class NamedHost:
    """One ``[hosts.NAME]`` table: exactly one of uri, qmp, qmp_dir or lab, and its policy."""

    name: str
    uri: str | None = None
    qmp: str | None = None
    qmp_dir: str | None = None
    lab: bool = False
    policy: HostPolicy | None = None


@dataclass(frozen=True)
class Config:
    """Everything the file says; an empty file (or none) is all defaults."""

    hosts: Mapping[str, NamedHost] = field(default_factory=dict)
    default_hosts: tuple[str, ...] = ()
    bandwidth: int | None = None
    chunk: int | None = None
    gap: float | None = None
    theme: str | None = None
    bell: bool = False
    desktop: bool = False
    keys: Mapping[str, str] = field(default_factory=dict)


_SECTIONS = {"defaults", "dashboard", "keys", "hosts"}
_HOST_KINDS = ("uri", "qmp", "qmp_dir", "lab")


def parse_config(text: str, where: str = "config") -> Config:
    """The configuration ``text`` holds (``where`` names the file in errors).

    Raises:
        ConfigError: not TOML, an unknown section or key, or a value its flag would refuse.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    reader = _Reader(text, where)
    for section in data:
        if section not in _SECTIONS:
            reader.fail(
                section, section, f"unknown section [{section}] (known: {', '.join(sorted(_SECTIONS))})"
            )
    defaults = reader.table(data, "defaults", {"hosts", "bandwidth", "chunk", "gap"})
    dashboard = reader.table(data, "dashboard", {"theme", "bell", "desktop"})
    keys = reader.table(data, "keys", None)
    hosts = {name: reader.host(name, table) for name, table in reader.table(data, "hosts", None).items()}
    no_hosts: list[str] = []
    default_hosts = tuple(reader.value("defaults", defaults, "hosts", _names, no_hosts))
    for name in default_hosts:
        if name not in hosts:
            reader.fail("defaults", "hosts", f"names {name!r}, which no [hosts.{name}] table defines")
    return Config(
        hosts=hosts,
        default_hosts=default_hosts,
        bandwidth=reader.value("defaults", defaults, "bandwidth", _text(parse_bandwidth), None),
        chunk=reader.value("defaults", defaults, "chunk", _text(parse_size), None),
        gap=reader.value("defaults", defaults, "gap", _seconds, None),
        theme=reader.value("dashboard", dashboard, "theme", _string, None),
        bell=reader.value("dashboard", dashboard, "bell", _flag, False),
        desktop=reader.value("dashboard", dashboard, "desktop", _flag, False),
        keys={key: reader.value("keys", keys, key, _string, "") for key in keys},
    )


class _Reader:
    """Reads tables and values, and says where in the text a bad one is."""

    def __init__(self, text: str, where: str) -> None:
        self.lines = text.splitlines()
        self.where = where

    def fail(self, section: str, key: str, message: str) -> None:
        line = self._line(section, key)
        at = f"{self.where}, line {line}" if line else self.where
        raise ConfigError(f"{at}: [{section}] {key}: {message}")

    def _line(self, section: str, key: str) -> int | None:
        """The line that sets ``key`` in ``[section]`` (or the section's header)."""
        header = re.compile(r"^\s*\[+\s*" + re.escape(section) + r"\s*\]+")
        setting = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        inside = False
        for number, line in enumerate(self.lines, 1):
            if line.lstrip().startswith("["):
                if inside and not header.match(line):
                    inside = False
                if header.match(line):
                    if key == section:
                        return number
                    inside = True
            elif inside and setting.match(line):
                return number
        return None

    def table(self, data: Mapping[str, Any], name: str, known: set[str] | None) -> dict[str, Any]:
        table = data.get(name, {})
        if not isinstance(table, dict):
            self.fail(name, name, "must be a table")
        if known is not None:
            for key in table:
                if key not in known:
                    self.fail(name, key, f"unknown key (known: {', '.join(sorted(known))})")
        return dict(table)

    def value(
        self, section: str, table: Mapping[str, Any], key: str, read: Callable[[Any], T], default: T
    ) -> T:
        if key not in table:
            return default
        try:
            return read(table[key])
        except (BlocktuiError, TypeError, ValueError) as exc:
            self.fail(section, key, str(exc))
            raise  # not reached: fail raises

    def host(self, name: str, table: Any) -> NamedHost:
        section = f"hosts.{name}"
        if not isinstance(table, dict):
            self.fail(section, section, "must be a table")
        known = {*_HOST_KINDS, "max_active", "budget"}
        for key in table:
            if key not in known:
                self.fail(section, key, f"unknown key (known: {', '.join(sorted(known))})")
        kinds = [kind for kind in _HOST_KINDS if table.get(kind)]
        if len(kinds) != 1:
            self.fail(section, section, "needs exactly one of uri, qmp, qmp_dir or lab = true")
        max_active = self.value(section, table, "max_active", _count, None)
        budget = self.value(section, table, "budget", _text(parse_bandwidth), 0)
        policy = (
            HostPolicy(max_active=max_active, budget=budget)
            if {"max_active", "budget"} & table.keys()
            else None
        )
        return NamedHost(
            name=name,
            uri=self.value(section, table, "uri", _string, None),
            qmp=self.value(section, table, "qmp", _string, None),
            qmp_dir=self.value(section, table, "qmp_dir", _string, None),
            lab=self.value(section, table, "lab", _flag, False),
            policy=policy,
        )


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("must be a non-empty string")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("must be a whole number")
    policy = HostPolicy(max_active=value)  # the flag's own rule
    assert policy.max_active is not None
    return policy.max_active


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("must be a number of seconds")
    return check_gap(float(value))


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError('must be a list of host names, e.g. ["web", "lab"]')
    return list(value)


def _text(parse: Callable[[str], int]) -> Callable[[Any], int]:
    """A size or rate given as text ("50M") or as a plain number of bytes."""

    def read(value: Any) -> int:
        if isinstance(value, bool):
            raise TypeError("must be a size such as 50M")
        return parse(str(value))

    return read
