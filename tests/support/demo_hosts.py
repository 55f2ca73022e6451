"""The demo hosts of the fake backend: domains with hostile names, jobs in every state, for UI tests."""

from __future__ import annotations

from fake_backend import FakeBackend, FakeJob, GiB, MiB

from blocktui.core.model import ChainLayer, Disk, Domain, DomainState

#: Names a hostile or careless host could hand us: terminal escapes, C1 CSI, a bidi override, markup.
HOSTILE_DOMAIN = "evil\x1b[31mred\x9b2J\u202eexe.[/]"
HOSTILE_DISK_SOURCE = "/srv/vm[/]a[@click=app.quit]x.qcow2"
CLICK_DOMAIN = "[@click=app.quit]click-me[/]"


def _chain(*paths: str) -> tuple[ChainLayer, ...]:
    return tuple(ChainLayer(path, "qcow2") for path in paths)


def _disk(target: str, source: str, *chain: str) -> Disk:
    return Disk(target=target, source=source, format="qcow2", bus="virtio", chain=_chain(*chain))


def demo_backends(*, hostile: bool = True, readonly: bool = False) -> list[FakeBackend]:
    """Two fake hosts with a few domains and disks (some with backing chains); no jobs yet.

    Use ``demo_jobs`` afterwards, once a session listens, so outcomes arrive as events.
    """
    img = "/var/lib/libvirt/images"
    alpha = FakeBackend(
        "qemu+ssh://alpha/system",
        [
            Domain(
                "",
                "web01",
                DomainState.RUNNING,
                (
                    _disk("vda", f"{img}/web01-top.qcow2", f"{img}/web01-mid.qcow2", f"{img}/debian.qcow2"),
                    _disk(
                        "vdb", f"{img}/web01-data.qcow2", f"{img}/data-snap.qcow2", f"{img}/data-base.qcow2"
                    ),
                ),
            ),
            Domain(
                "",
                "db01",
                DomainState.RUNNING,
                (
                    _disk("vda", f"{img}/db01-top.qcow2", f"{img}/debian.qcow2"),
                    _disk("vdb", f"{img}/db01-logs.qcow2"),
                ),
            ),
            Domain("", "build", DomainState.SHUTOFF, (_disk("vda", f"{img}/build.qcow2"),)),
        ],
        readonly=readonly,
    )
    beta_domains = [
        Domain(
            "",
            "cache",
            DomainState.RUNNING,
            (_disk("vda", "/srv/cache-top.qcow2", "/srv/cache-base.qcow2"),),
        ),
        Domain(
            "",
            "mail",
            DomainState.PAUSED,
            (_disk("sda", "/srv/mail.qcow2", "/srv/mail-base.qcow2"),),
        ),
    ]
    if hostile:
        beta_domains.append(
            Domain(
                "",
                HOSTILE_DOMAIN,
                DomainState.RUNNING,
                (_disk("vd\x1bz", HOSTILE_DISK_SOURCE, "/srv/\u202ebase.qcow2"),),
            )
        )
        beta_domains.append(
            Domain("", CLICK_DOMAIN, DomainState.RUNNING, (_disk("vda", "/srv/click.qcow2", "/srv/b.qcow2"),))
        )
    beta = FakeBackend(
        "qmp:///run/beta", beta_domains, readonly=readonly, supports_pause=True, hypervisor="qmp"
    )
    return [alpha, beta]


def demo_jobs(backends: list[FakeBackend]) -> None:
    """Script jobs on ``demo_backends``: two running, one paused-capable, and three that end.

    After this, ``advance(2)`` on every backend completes db01/vda, fails web01/vdb with a reason,
    and a cancelled job arrives at once; web01/vda and cache/vda keep running.
    """
    alpha, beta = backends[0], backends[1]
    alpha.add_job(FakeJob("web01", "vda", end=20 * GiB, cur=5 * GiB, bandwidth=100 * MiB))
    alpha.add_job(
        FakeJob(
            "web01",
            "vdb",
            end=8 * GiB,
            cur=GiB,
            fail_at=GiB + 300 * MiB,
            fail_reason="No space left on device",
        )
    )
    alpha.add_job(FakeJob("db01", "vda", end=4 * GiB, cur=3 * GiB + 900 * MiB))
    beta.add_job(FakeJob("cache", "vda", end=6 * GiB, cur=2 * GiB))
    beta.add_job(FakeJob("mail", "sda", end=2 * GiB, cur=512 * MiB))


def demo_outcomes(backends: list[FakeBackend]) -> None:
    """Let the scripted outcomes happen: a completion, a failure with its reason, a cancellation."""
    for backend in backends:
        backend.advance(2)
    backends[1].abort("mail", "sda")
