"""Free space from libvirt's storage pools, on libvirt's own test driver (no daemon)."""

from __future__ import annotations

from blocktui.backends.libvirt import LibvirtBackend


def test_free_space_of_a_volume_is_its_storage_pools() -> None:
    """On libvirt's own test driver: a volume in a pool reports the pool's space left, any other path none."""
    backend = LibvirtBackend("test:///default")
    backend.connect()
    try:
        pool = backend.libvirt_connection().storagePoolLookupByName("default-pool")
        volume = pool.createXML(
            "<volume><name>blocktui-free.qcow2</name><capacity>1048576</capacity></volume>", 0
        )
        assert backend.free_bytes(volume.path()) == pool.info()[3] > 0
        assert backend.free_bytes("/nowhere/top.qcow2") is None
    finally:
        backend.close()
