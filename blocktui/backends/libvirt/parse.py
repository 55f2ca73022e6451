"""What libvirt hands back, read: domain XML to disks and backing chains (lenient with what libvirt
lets into names and paths), block job info, packed version numbers. Pure: no call reaches a host."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import NamedTuple

from blocktui.backends.libvirt.errors import JOB_KINDS, MIRROR_KINDS
from blocktui.core.model import ChainLayer, Disk, JobKind, JobState

#: What stands in for a character XML 1.0 cannot carry (the real name comes from ``virDomainGetName``).
REPLACEMENT = "\ufffd"

# XML 1.0 allows only TAB, LF, CR, U+0020..U+D7FF, U+E000..U+FFFD and U+10000 up. libvirt copies
# names and paths into its XML as given, so a domain renamed to hold ESC yields a document that
# every conforming parser refuses.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# The same characters written as references (``&#27;``, ``&#x1b;``) are refused just the same.
_REFERENCE = re.compile(r"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")


class UnreadableXml(ValueError):
    """A domain's XML that cannot be read even leniently; the message is one line."""


def _allowed(code: int) -> bool:
    return (
        code in (0x09, 0x0A, 0x0D)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _reference(match: re.Match[str]) -> str:
    hex_digits, decimal = match.groups()
    code = int(hex_digits, 16) if hex_digits else int(decimal)
    return match.group(0) if _allowed(code) else REPLACEMENT


# A parser turns a raw newline or tab inside an attribute value into a space (XML attribute-value
# normalisation); libvirt writes them raw, so a path holding one would come back changed.
_ATTRIBUTE = re.compile(r"='[^'<]*'|=\"[^\"<]*\"")
_WHITESPACE_REFERENCES = {"\n": "&#10;", "\t": "&#9;", "\r": "&#13;"}


def _keep_whitespace(match: re.Match[str]) -> str:
    value = match.group(0)
    for char, reference in _WHITESPACE_REFERENCES.items():
        value = value.replace(char, reference)
    return value


def well_formed(xml: str) -> str:
    """``xml`` with every character XML 1.0 forbids (raw or as a reference) replaced by U+FFFD.

    Newlines and tabs inside attribute values are written as references, so they survive parsing.
    """
    cleaned = _REFERENCE.sub(_reference, _FORBIDDEN.sub(REPLACEMENT, xml))
    return _ATTRIBUTE.sub(_keep_whitespace, cleaned)


def read_xml(xml: str) -> ET.Element:
    """Parse a domain XML document, replacing the characters XML 1.0 forbids first.

    Raises:
        UnreadableXml: the document is broken in some other way.
    """
    try:
        # The XML comes from libvirt itself, not from an untrusted party.
        return ET.fromstring(well_formed(xml))  # noqa: S314
    except ET.ParseError as exc:
        raise UnreadableXml(f"libvirt's XML for it cannot be read ({exc})") from exc


def _network_source(element: ET.Element) -> str | None:
    """A URL for a network disk in QEMU's spelling: ``rbd://mon:6789/pool/img``, ``nbd+unix:///e?socket=S``."""
    protocol = element.get("protocol", "")
    name = element.get("name", "")
    if not protocol:
        return name or None
    host = element.find("host")
    if host is not None and host.get("socket"):
        return f"{protocol}+unix:///{name}?socket={host.get('socket')}"
    server = ""
    if host is not None and host.get("name"):
        port = host.get("port")
        server = f"{host.get('name')}:{port}" if port else host.get("name", "")
    return f"{protocol}://{server}/{name}"


def source_of(element: ET.Element | None) -> str | None:
    """The path or URL a ``<source>`` names, whatever the disk type (file, block, dir, volume, network)."""
    if element is None:
        return None
    for attribute in ("file", "dev", "dir"):
        value = element.get(attribute)
        if value:
            return value
    volume = element.get("volume")
    if volume:
        return f"{element.get('pool', '')}/{volume}"
    if element.get("protocol") or element.get("name"):
        return _network_source(element)
    return None


def chain_of(disk: ET.Element) -> tuple[ChainLayer, ...]:
    """The ``<backingStore>`` nesting of a live disk, nearest first."""
    layers: list[ChainLayer] = []
    store = disk.find("backingStore")
    while store is not None:
        path = source_of(store.find("source"))
        if path is None:  # ``<backingStore/>``: the chain ends here
            break
        fmt = store.find("format")
        layers.append(ChainLayer(path, fmt.get("type") if fmt is not None else None))
        store = store.find("backingStore")
    return tuple(layers)


def disks_of(root: ET.Element) -> tuple[Disk, ...]:
    """The disks of a parsed domain document."""
    disks: list[Disk] = []
    for element in root.findall("./devices/disk"):
        target = element.find("target")
        if target is None or not target.get("dev"):
            continue
        driver = element.find("driver")
        disks.append(
            Disk(
                target=target.get("dev", ""),
                source=source_of(element.find("source")),
                format=driver.get("type") if driver is not None else None,
                bus=target.get("bus"),
                device=element.get("device", "disk"),
                readonly=element.find("readonly") is not None,
                chain=chain_of(element),
                # Live XML ends every chain with ``<backingStore/>``; inactive XML has none at all.
                chain_known=element.find("backingStore") is not None,
            )
        )
    return tuple(disks)


def parse_disks(xml: str) -> tuple[Disk, ...]:
    """The disks of a domain XML document (live XML gives backing chains; inactive XML usually not).

    Raises:
        UnreadableXml: the document cannot be read even after replacing forbidden characters.
    """
    return disks_of(read_xml(xml))


class JobInfo(NamedTuple):
    """One disk's job as ``virDomainGetBlockJobInfo`` reports it (bandwidth in bytes/s)."""

    kind: JobKind
    cur: int
    end: int
    bandwidth: int

    def state(self, ready: bool) -> JobState:
        """ACTIVE, or READY for a mirror that said so (``ready``) or has copied everything."""
        if self.kind in MIRROR_KINDS and (ready or (self.end > 0 and self.cur == self.end)):
            return JobState.READY
        return JobState.ACTIVE


def job_info_of(raw: Mapping[str, int]) -> JobInfo | None:
    """``virDomainGetBlockJobInfo``'s dict; None for the empty dict of a disk without a job."""
    if not raw:
        return None
    return JobInfo(
        kind=JOB_KINDS.get(int(raw.get("type", 0)), JobKind.UNKNOWN),
        cur=int(raw.get("cur", 0)),
        end=int(raw.get("end", 0)),
        bandwidth=int(raw.get("bandwidth", 0)),
    )


def libvirt_version(number: int) -> str:
    """A version as libvirt packs it (major * 1,000,000 + minor * 1,000 + release), as text."""
    major, rest = divmod(number, 1_000_000)
    minor, release = divmod(rest, 1_000)
    return f"{major}.{minor}.{release}"
