"""``blocktui history``: the journal as text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blocktui.cli import main
from blocktui.engine.journal import STATE_DIR_ENV, Journal

MIB = 1024**2


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    journal = Journal()
    job_id = journal.record_job(
        host="qemu:///system",
        domain="web\x1b1",
        disk="vda",
        kind="pull",
        origin="planned",
        chain_before=["/srv/base.qcow2"],
        status="queued",
        size=128 * MIB,
        chunk=64 * MIB,
    )
    journal.add_checkpoint(job_id, boundary=64 * MIB, offset=64 * MIB + 4096)
    journal.finish(job_id, "completed", bytes_done=128 * MIB)
    journal.close()
    return tmp_path


def test_history_json_lists_plan_and_checkpoints(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["status"] == "completed"
    assert record["chain_before"] == ["/srv/base.qcow2"]
    assert record["checkpoints"][0]["overshoot"] == 4096


def test_history_text_shows_names_safely(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "web\\e1/vda" in out
    assert "checkpoint 1: 64.0 MiB, overshoot 4096 B" in out


def test_empty_history_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    assert main(["history"]) == 0
    assert "no jobs in the journal" in capsys.readouterr().out
