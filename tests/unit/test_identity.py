"""A disk's identity: telling the disk a plan was made for from one recreated under the same names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blocktui.core.identity import DiskIdentity, ImageFile, replacement
from blocktui.engine.disk_identity import image_file

TOP = "/srv/vm/web1.qcow2"
CHAIN = ("/srv/tpl/mid.qcow2", "/srv/tpl/base.qcow2")


FILE = ImageFile(64769, 1201, 1_700_000_000_000_000_001)


def ident(
    image: ImageFile | None = FILE,
    source: str = TOP,
    uuid: str | None = "7c1e-old",
) -> DiskIdentity:
    return DiskIdentity(source=source, domain_uuid=uuid, image=image)


def test_the_same_file_is_the_same_disk_whatever_else_changed() -> None:
    before = ident()
    # Partly pulled (the chain lost its nearest layer) in a domain defined anew around it.
    assert replacement(before, ident(uuid="9f00-new"), CHAIN, CHAIN[1:]) is None
    assert replacement(before, ident(), CHAIN, ()) is None  # completed while away


def test_a_file_made_anew_is_another_disk_even_with_the_inode_number_reused() -> None:
    before = ident()
    reborn = ident(ImageFile(64769, 1201, 1_700_000_999_000_000_000))
    why = replacement(before, reborn, CHAIN, CHAIN)
    assert why is not None and "new file" in why
    assert replacement(before, ident(ImageFile(64769, 1202, None)), CHAIN, CHAIN) is not None


def test_without_files_to_look_at_path_uuid_and_chain_decide() -> None:
    remote = ident(image=None)
    moved = replacement(remote, ident(image=None, source="/srv/vm/other.qcow2"), CHAIN, CHAIN)
    assert moved is not None and "/srv/vm/other.qcow2" in moved
    redefined = replacement(remote, ident(image=None, uuid="9f00-new"), CHAIN, CHAIN)
    assert redefined is not None and "UUID" in redefined
    rebased = replacement(remote, ident(image=None), CHAIN, ("/srv/other/base.qcow2",))
    assert rebased is not None and "chain" in rebased
    assert replacement(remote, ident(image=None), CHAIN, CHAIN[1:]) is None


@pytest.mark.parametrize(
    ("before", "now", "chain_now"),
    [
        (None, ident(), CHAIN),  # a plan from before identities were recorded
        (ident(), None, None),  # the disk cannot be read now
        (ident(), ident(image=None), None),  # the file is out of sight now, the chain hidden
    ],
)
def test_nothing_is_concluded_from_missing_facts(
    before: DiskIdentity | None, now: DiskIdentity | None, chain_now: tuple[str, ...] | None
) -> None:
    assert replacement(before, now, CHAIN, chain_now) is None


def test_identity_survives_its_json_form() -> None:
    for identity in (ident(), ident(image=ImageFile(1, 2)), ident(image=None, uuid=None)):
        assert DiskIdentity.from_json(identity.as_json()) == identity
    assert DiskIdentity.from_json("garbage") is None


def test_a_recreated_local_file_reads_as_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "top.qcow2"
    path.write_bytes(b"old")
    first = image_file(str(path))
    path.write_bytes(b"written later")  # the same file, changed
    assert image_file(str(path)) == first
    os.remove(path)
    path.write_bytes(b"new")
    second = image_file(str(path))
    assert first is not None and second is not None
    if first.born_ns is None and first.inode == second.inode:
        pytest.skip("this filesystem keeps no birth time and reused the inode number")
    assert replacement(ident(first), ident(second), CHAIN, CHAIN) is not None
    assert image_file(str(tmp_path / "missing.qcow2")) is None
