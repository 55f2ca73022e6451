"""The libvirt backend: block pull/rebase jobs on any libvirt URI, with events and reconnection.

``connection`` keeps the link (keepalive, reconnection), ``domains`` reads domains, ``backend``
runs the jobs and hears their events (registered by ``events``), ``parse`` reads what libvirt
returns (pure), ``errors`` maps libvirt's codes into ours, ``shared`` opens URIs and holds what one
process shares.
"""

from blocktui.backends.libvirt.backend import LibvirtBackend
from blocktui.backends.libvirt.errors import map_error
from blocktui.backends.libvirt.parse import UnreadableXml, parse_disks
from blocktui.backends.libvirt.shared import embed_root, embedded_root, non_interactive, steady_cpu

__all__ = [
    "LibvirtBackend",
    "UnreadableXml",
    "embed_root",
    "embedded_root",
    "map_error",
    "non_interactive",
    "parse_disks",
    "steady_cpu",
]
