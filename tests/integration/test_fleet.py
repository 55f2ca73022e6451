"""The fleet lab over SSH: what it reports, streams on three remote hosts at once, naming a host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from blocktui.lab.images import backing_file, check, compare

from .fleet_support import HOSTS, Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMES = [f"fleet-{n}" for n in range(1, HOSTS + 1)]


def test_status_lists_every_host_and_a_second_up_keeps_them_as_they_are(fleet: Fleet) -> None:
    listed = json.loads(fleet.run("lab", "fleet", "status", "--json").stdout)
    assert [host["name"] for host in listed] == NAMES
    for number, host in enumerate(listed, start=1):
        assert host["uri"].startswith(f"qemu+ssh://blocktui-fleet-{number}@fleet-{number}/session")
    assert all(host["sshd_pid"] and host["daemon_pid"] for host in listed)
    # A second up (without --size) keeps every process and every disk as they are.
    again = fleet.run("lab", "fleet", "up", "--hosts", str(HOSTS), "--domains", "2", "--json")
    assert again.returncode == 0, again.stderr
    kept = json.loads(again.stdout)

    def facts(hosts: list[dict[str, Any]]) -> list[tuple[int, int, list[int]]]:
        return [(h["sshd_pid"], h["daemon_pid"], [d["size"] for d in h["disks"]]) for h in hosts]

    assert facts(kept) == facts(listed)
    # Every host answers over SSH, each with its own domains.
    domains = json.loads(fleet.run("--fleet", "ls", "--json").stdout)
    assert sorted((d["uri"].split("@")[1].split("/")[0], d["name"]) for d in domains) == [
        (name, vm) for name in NAMES for vm in ("vm-1", "vm-2")
    ]


def test_a_domain_on_several_hosts_needs_on_and_a_refused_key_says_needs_authentication(fleet: Fleet) -> None:
    ambiguous = fleet.run("--fleet", "speed", "vm-1", "vda", "1M")
    assert ambiguous.returncode == 4
    assert ambiguous.stderr.strip().splitlines() == [
        "blocktui: domain 'vm-1' exists on several hosts (fleet-1, fleet-2, fleet-3); name one with --on HOST"
    ]
    unknown = fleet.run("--fleet", "speed", "vm-1", "vda", "1M", "--on", "fleet-9")
    assert unknown.returncode == 3
    assert "no open host is called 'fleet-9' (hosts: fleet-1, fleet-2, fleet-3)" in unknown.stderr
    # A user the host does not know: ssh, in batch mode, refuses at once instead of prompting.
    stranger = fleet.status("fleet-1").uri.replace("blocktui-fleet-1@", "nobody@")
    refused = fleet.run("-c", stranger, "ls", timeout=60)
    assert refused.returncode == 5
    assert "needs authentication: nobody@127.0.1.1: Permission denied (publickey)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_streams_on_three_remote_hosts_at_once_complete_with_identical_content(
    fleet: Fleet, tmp_path: Path
) -> None:
    saved = {name: fleet.save(name, "vm-1", tmp_path) for name in NAMES}
    argv = [sys.executable, "-m", "blocktui", "--fleet", "stream", "vm-1", "vda", "--bandwidth", "4M"]
    runs = {
        name: subprocess.Popen(
            [*argv, "--on", name, "--wait", "--json"],
            env=fleet.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in NAMES
    }
    ends = {name: run.communicate(timeout=150) for name, run in runs.items()}
    for name, (out, err) in ends.items():
        assert runs[name].returncode == 0, f"{name}: {err}"
        record = json.loads(out)
        assert (record["state"], record["cur"], record["remaining"]) == ("completed", record["end"], 0)
        assert "fleet-" + record["uri"].split("@fleet-")[1].split("/")[0] == name
    for name in NAMES:
        fleet.lab.flush(name, "vm-1")
        top = fleet.top(name, "vm-1")
        assert backing_file(top) is None, f"{name}: the overlay still names a backing file"
        assert compare(top, saved[name]), f"{name}: the disk reads differently after the stream"
        assert check(top)
