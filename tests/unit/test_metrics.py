"""``blocktui metrics``: what the collector exposes, as Prometheus parses it."""

from __future__ import annotations

import argparse

import pytest
from demo_hosts import HOSTILE_DOMAIN, demo_backends, demo_jobs
from fake_backend import FakeBackend, FakeJob
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from blocktui.cli.metrics import SnapshotCollector, listen_arg
from blocktui.core.text import visible
from blocktui.engine.session import Session

MIB = 1024**2


def scrape(collector: SnapshotCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert "\x1b" not in text and "\x9b" not in text  # nothing from a host reaches a terminal raw
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_every_job_and_host_is_exposed_with_its_figures() -> None:
    backends = demo_backends()
    backends[1].add_job(FakeJob(HOSTILE_DOMAIN, "vd\x1bz", end=64 * MIB, cur=16 * MIB, bandwidth=8 * MIB))
    session = Session(backends, poll_interval=0.05)
    session.open()
    try:
        demo_jobs(backends)
        collector = SnapshotCollector()
        collector.update(session.step())
        metrics = scrape(collector)
    finally:
        session.close()

    done = {(labels["domain"], labels["disk"]): value for labels, value in metrics["blocktui_job_bytes_done"]}
    assert done[("web01", "vda")] == 5 * 1024 * MIB
    assert done[(visible(HOSTILE_DOMAIN), visible("vd\x1bz"))] == 16 * MIB
    limits = {
        (labels["domain"], labels["disk"]): value for labels, value in metrics["blocktui_job_limit_bytes"]
    }
    assert limits[("web01", "vda")] == 100 * MIB
    states = {labels["domain"]: labels["state"] for labels, value in metrics["blocktui_job_state"] if value}
    assert states["web01"] == "active"
    up = {labels["host"]: value for labels, value in metrics["blocktui_host_up"]}
    assert set(up.values()) == {1.0} and len(up) == len(backends)
    jobs = {(labels["host"], labels["state"]): value for labels, value in metrics["blocktui_host_jobs"]}
    assert jobs[(backends[0].uri, "active")] == 3


def test_before_the_first_poll_nothing_is_exposed() -> None:
    assert scrape(SnapshotCollector()) == {}


def test_a_host_that_does_not_answer_is_down() -> None:
    backend = FakeBackend("qemu+ssh://far/system", [])
    session = Session([backend], poll_interval=0.05)
    try:
        collector = SnapshotCollector()
        collector.update(session.snapshot())  # never opened: still connecting
        metrics = scrape(collector)
    finally:
        session.close()
    assert metrics["blocktui_host_up"] == [({"host": "qemu+ssh://far/system"}, 0.0)]


@pytest.mark.parametrize(
    ("text", "address"), [("127.0.0.1:9177", ("127.0.0.1", 9177)), ("[::1]:80", ("::1", 80))]
)
def test_the_listen_address_is_host_and_port(text: str, address: tuple[str, int]) -> None:
    assert listen_arg(text) == address


@pytest.mark.parametrize("text", ["9177", "localhost:", "localhost:http", "h:70000"])
def test_a_listen_address_without_a_port_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT"):
        listen_arg(text)
