"""What tells a disk from another one made under the same name and paths: the rule, no I/O.

A plan in the journal names its disk by host, domain and target, and records the chain it was made
for. A disk destroyed and recreated from the same template has all of those again, so the plan also
records identity facts read when it was made, and a re-attach compares them with the facts now:

- the top image file's device, inode and birth time, where blocktui can see the host's files (the
  host is this machine). A file made anew gets a new birth time even when the filesystem hands out
  the same inode number again (ext4 does, at once); partial pulls never change either.
- where the file cannot be seen (a remote host, a network disk): the top image's path, the domain's
  UUID (libvirt gives a domain defined anew a new one) and the backing chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ImageFile:
    """Facts about an image file that writes leave alone and that a new file does not share.

    Attributes:
        born_ns: the birth time in nanoseconds (statx), or None where the filesystem keeps none.
    """

    device: int
    inode: int
    born_ns: int | None = None


@dataclass(frozen=True, slots=True)
class DiskIdentity:
    """What identified a disk when a plan was made (or identifies it now).

    Attributes:
        source: the top image's path (or URL) as the host names it.
        domain_uuid: the domain's UUID; None where the host has none (QMP).
        image: the top image file's facts; None when blocktui cannot see the file.
    """

    source: str | None
    domain_uuid: str | None = None
    image: ImageFile | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form (the journal's ``identity`` column, ``history --json``)."""
        record: dict[str, Any] = {"source": self.source, "domain_uuid": self.domain_uuid, "image": None}
        if self.image is not None:
            record["image"] = {
                "device": self.image.device,
                "inode": self.image.inode,
                "born_ns": self.image.born_ns,
            }
        return record

    @classmethod
    def from_json(cls, data: object) -> DiskIdentity | None:
        """The identity ``as_json`` wrote; None for anything else (rows older than the column)."""
        if not isinstance(data, dict):
            return None
        image = data.get("image")
        facts = None
        if isinstance(image, dict):
            device, inode, born = image.get("device"), image.get("inode"), image.get("born_ns")
            if isinstance(device, int) and isinstance(inode, int):
                facts = ImageFile(device, inode, born if isinstance(born, int) else None)
        source = data.get("source")
        uuid = data.get("domain_uuid")
        return cls(
            source=source if isinstance(source, str) else None,
            domain_uuid=uuid if isinstance(uuid, str) else None,
            image=facts,
        )


def _same_file(before: ImageFile, now: ImageFile) -> bool:
    if (before.device, before.inode) != (now.device, now.inode):
        return False
    # Birth times decide only where both reads had one (the same filesystem always gives one or none).
    return before.born_ns is None or now.born_ns is None or before.born_ns == now.born_ns


def replacement(
    before: DiskIdentity | None,
    now: DiskIdentity | None,
    chain_before: Sequence[str],
    chain_now: Sequence[str] | None,
) -> str | None:
    """Why the disk now is not the one a plan was made for, or None when nothing says so.

    Args:
        before: the identity recorded with the plan (None for plans recorded before identities were).
        now: the disk's identity now (None when it cannot be read: nothing is concluded then).
        chain_before: the backing paths recorded with the plan, nearest first.
        chain_now: the backing paths now, or None when the host does not show them (a shut-off
            libvirt domain). A pull only ever removes the nearest layers, so the chain of the same
            disk is always a tail of the chain before.
    """
    if now is None:
        return None
    if before is not None:
        if before.image is not None and now.image is not None:
            # The file itself is the surest witness: the same file, whatever else changed, is the same disk.
            if _same_file(before.image, now.image):
                return None
            return f"its image {now.source or 'file'} is a new file (another inode or birth time)"
        if before.source and now.source and before.source != now.source:
            return f"it now uses {now.source} instead of {before.source}"
        if before.domain_uuid and now.domain_uuid and before.domain_uuid != now.domain_uuid:
            return f"its domain was defined anew (UUID {before.domain_uuid} is now {now.domain_uuid})"
    if chain_now is not None:
        kept = len(chain_before) - len(chain_now)
        if kept < 0 or list(chain_before[kept:]) != list(chain_now):
            return "its backing chain is not the one the plan was made for"
    return None
