"""The header line keeps every host's health and policy in view."""

from __future__ import annotations

from blocktui.core.model import ConnectionState, HostInfo
from blocktui.ui.board import HostPlan
from blocktui.ui.widgets.hosts_bar import hosts_text

EXTRA = {"hostname": "hv01.example.org", "libvirt": "9.0.0"}


def test_one_host_shows_its_details() -> None:
    hosts = [HostInfo("qemu:///system", ConnectionState.CONNECTED, extra=EXTRA)]
    text = hosts_text(hosts, {"qemu:///system": "system"}, False, {"qemu:///system": HostPlan(2, 0, True)})
    assert "system connected (max 2 · budget ∞ · guard on)" in text.plain
    assert "hostname=hv01.example.org" in text.plain


def test_several_hosts_fit_health_and_policy_before_details() -> None:
    hosts = [
        HostInfo("qemu:///system", ConnectionState.CONNECTED, extra=EXTRA),
        HostInfo("qmp:/run/qemu", ConnectionState.RECONNECTING, extra=EXTRA),
    ]
    labels = {"qemu:///system": "system", "qmp:/run/qemu": "qmp"}
    plans = {uri: HostPlan(None, 60 * 1024**2, False) for uri in labels}
    plain = hosts_text(hosts, labels, False, plans).plain
    assert "system connected (max ∞ · budget 60M/s · guard off)" in plain
    assert "qmp reconnecting (max ∞ · budget 60M/s · guard off)" in plain
    assert "hostname=" not in plain
    assert len(plain) <= 120


def test_ten_hosts_count_the_well_ones_and_name_those_that_need_a_look() -> None:
    uris = [f"qemu+ssh://ops@hv{n:02d}/system" for n in range(10)]
    hosts = [HostInfo(uri, ConnectionState.CONNECTED) for uri in uris]
    hosts[3] = HostInfo(uris[3], ConnectionState.CONNECTED, silent_for=3.0)
    hosts[7] = HostInfo(uris[7], ConnectionState.NEEDS_AUTH, message="Permission denied (publickey)")
    labels = {uri: f"hv{n:02d}" for n, uri in enumerate(uris)}
    plans = {uri: HostPlan(2, 0, True) for uri in uris}
    plain = hosts_text(hosts, labels, False, plans).plain
    assert plain == "blocktui  ● 8 connected  ● hv03 not answering for 3s  ⊘ hv07 needs authentication"
