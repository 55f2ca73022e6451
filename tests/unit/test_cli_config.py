"""Named hosts from the configuration file on the command line: ``--host``, defaults, their policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocktui.cli.commands import build_parser, main
from blocktui.cli.config_file import CONFIG_ENV
from blocktui.cli.hosts import host_spec
from blocktui.core.config import parse_config
from blocktui.core.errors import InvalidInput
from blocktui.core.scheduler import HostPolicy
from blocktui.engine import HostSpec

MIB = 1024**2
CONFIG = parse_config(
    """
[defaults]
hosts = ["web"]

[hosts.web]
uri = "qemu+ssh://root@web/system"
max_active = 2

[hosts.vms]
qmp_dir = "/run/qemu"
budget = "100M"
"""
)


def spec(*argv: str) -> HostSpec:
    return host_spec(build_parser().parse_args([*argv, "ls"]), CONFIG, call_timeout=None)


def test_two_named_hosts_open_with_their_own_queue_and_budget() -> None:
    chosen = spec("--host", "web", "--host", "vms")
    assert chosen.uris == ("qemu+ssh://root@web/system",)
    assert chosen.qmp_dirs == (Path("/run/qemu"),)
    assert dict(chosen.policies) == {
        "qemu+ssh://root@web/system": HostPolicy(max_active=2),
        "/run/qemu": HostPolicy(budget=100 * MIB),
    }


def test_without_a_host_option_the_files_default_hosts_open() -> None:
    assert spec().uris == ("qemu+ssh://root@web/system",)
    assert spec("-c", "qemu:///system").uris == ("qemu:///system",)  # a flag overrides the file


def test_policy_flags_override_the_files_per_host_policy() -> None:
    assert spec("--host", "web", "--max-active", "5").policies == ()


def test_an_unknown_host_name_says_which_there_are() -> None:
    with pytest.raises(InvalidInput, match="hosts: web, vms"):
        spec("--host", "nowhere")


def test_a_bad_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[hosts.web]\nuri = 'qemu:///system'\nmax_active = 0\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert main(["ls"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"{path}, line 3: [hosts.web] max_active" in line
    assert main(["config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
