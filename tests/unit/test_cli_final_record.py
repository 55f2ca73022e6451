"""``stream --wait --json`` prints one record whose state agrees with the exit code."""

from __future__ import annotations

from blocktui.cli.plans import final_record
from blocktui.core.model import JobKey, JobKind, JobState
from blocktui.core.views import JobView
from blocktui.engine.journal import Entry

KEY = JobKey("qemu:///system", "web1", "vda")
MIB = 1024**2


def _entry(status: str, error: str | None = None) -> Entry:
    return Entry(
        id=1, host=KEY.host, domain=KEY.domain, disk=KEY.disk, kind="pull", origin="planned",
        chain_before=("/b.qcow2",), base=None, bandwidth=MIB, size=16 * MIB, chunk=0, gap=0.0,
        position=1.0, status=status, pause_requested=False, owner=None, started_at=0.0,
        ended_at=1.0, bytes_done=3 * MIB, error=error, note="",
    )  # fmt: skip


def _view(state: JobState) -> JobView:
    return JobView(
        key=KEY, kind=JobKind.PULL, state=state, cur=3 * MIB, end=16 * MIB, remaining=13 * MIB,
        fraction=3 / 16, rate=None, eta=None, elapsed=1.0, bandwidth=MIB, error=None, note="",
        history=(),
    )  # fmt: skip


def test_a_plan_that_failed_while_the_job_was_last_seen_running_reads_failed() -> None:
    record = final_record(KEY, _view(JobState.ACTIVE), _entry("failed", "domain 'web1' is gone"))

    assert (record["state"], record["error"]) == ("failed", "domain 'web1' is gone")
    assert record["cur"] == 3 * MIB and record["plan"]["status"] == "failed"


def test_without_a_view_the_record_comes_from_the_journal() -> None:
    record = final_record(KEY, None, _entry("unknown"))

    assert {k: record[k] for k in ("uri", "domain", "disk", "kind", "state", "cur", "end", "remaining")} == {
        "uri": KEY.host, "domain": "web1", "disk": "vda", "kind": "pull", "state": "unknown",
        "cur": 3 * MIB, "end": 16 * MIB, "remaining": 13 * MIB,
    }  # fmt: skip


def test_a_final_view_keeps_its_own_state() -> None:
    assert final_record(KEY, _view(JobState.COMPLETED), _entry("completed"))["state"] == "completed"
