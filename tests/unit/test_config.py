"""The configuration file: what it may say, and a one-line error naming the line for what it may not."""

from __future__ import annotations

import pytest

from blocktui.core.config import ConfigError, parse_config
from blocktui.core.scheduler import HostPolicy

MIB = 1024**2

GOOD = """
[defaults]
hosts = ["web", "lab"]
bandwidth = "50M"
chunk = "1G"
gap = 5

[dashboard]
theme = "textual-light"
bell = true

[keys]
stream = "s,ctrl+s"

[hosts.web]
uri = "qemu+ssh://root@web/system"
max_active = 2
budget = "200M"

[hosts.lab]
lab = true

[hosts.vms]
qmp_dir = "/run/qemu"
"""


def test_everything_the_file_may_say_is_read() -> None:
    config = parse_config(GOOD)

    assert config.default_hosts == ("web", "lab")
    assert config.hosts["web"].uri == "qemu+ssh://root@web/system"
    assert config.hosts["web"].policy == HostPolicy(max_active=2, budget=200 * MIB)
    assert config.hosts["lab"].lab and config.hosts["lab"].policy is None
    assert config.hosts["vms"].qmp_dir == "/run/qemu"
    assert (config.bandwidth, config.chunk, config.gap) == (50 * MIB, 1024 * MIB, 5.0)
    assert (config.theme, config.bell, config.desktop) == ("textual-light", True, False)
    assert config.keys == {"stream": "s,ctrl+s"}


def test_an_empty_file_is_all_defaults() -> None:
    config = parse_config("")
    assert not config.hosts and config.bandwidth is None and not config.bell and not config.keys


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[defaults]\nbandwidth = 'fast'\n", "line 2: [defaults] bandwidth"),
        ("[defaults]\ngap = -1\n", "line 2: [defaults] gap"),
        ("[defaults]\nspeed = '5M'\n", "line 2: [defaults] speed: unknown key"),
        ("[hosts.web]\nuri = 'qemu:///system'\nmax_active = 0\n", "line 3: [hosts.web] max_active"),
        (
            "[hosts.web]\nuri = 'qemu:///system'\nlab = true\n",
            "line 1: [hosts.web] hosts.web: needs exactly one",
        ),
        ("[defaults]\nhosts = ['nowhere']\n", "line 2: [defaults] hosts: names 'nowhere'"),
        ("[dashboard]\nbell = 'yes'\n", "line 2: [dashboard] bell: must be true or false"),
        ("[colours]\n", "line 1: [colours] colours: unknown section"),
        ("[defaults\n", "not valid TOML"),
    ],
)
def test_a_bad_value_is_one_line_naming_where_it_is(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(text, "config.toml")
    message = str(error.value)
    assert message.startswith("config.toml") and where in message and "\n" not in message
