"""A guest that writes to its disk without end: a 512-byte boot sector for libvirt lab domains.

Lab domains have no operating system. Booted from this sector (``DiskSpec.boot_code``), the
firmware runs a loop of BIOS extended writes (int 13h, AH=43h): 32 KiB at a time from memory at
0000:8000 to the boot disk, starting at 1 MiB and moving on forever. Through virtio-blk these are
guest writes, so when the overlay's filesystem is full QEMU applies the disk's write error policy
(its default, ``enospc``, pauses the domain), as it would for a real guest.
"""

from __future__ import annotations

# Real-mode code, assembled by hand (offsets from 7C00h, where the firmware loads the sector).
_CODE = bytes.fromhex(
    "fa"  # 00 cli
    "31c0"  # 01 xor ax, ax
    "8ed8"  # 03 mov ds, ax
    "8ec0"  # 05 mov es, ax
    "8ed0"  # 07 mov ss, ax
    "bc007c"  # 09 mov sp, 7C00h
    "fb"  # 0C sti
    "8816367c"  # 0D mov [drive], dl          ; the boot drive the firmware passed
    "be267c"  # 11 again: mov si, packet
    "b443"  # 14 mov ah, 43h                 ; extended write
    "30c0"  # 16 xor al, al                  ; no verify
    "8a16367c"  # 18 mov dl, [drive]
    "cd13"  # 1C int 13h                     ; returns once QEMU completes (or fails) it
    "6683062e7c40"  # 1E add dword [lba], 64  ; the next 32 KiB
    "ebeb"  # 24 jmp again
    "1000"  # 26 packet: size 16, reserved
    "4000"  # 28 64 sectors (32 KiB)
    "00800000"  # 2A buffer 0000:8000
    "0008000000000000"  # 2E LBA (qword), from 2048 (1 MiB)
    "80"  # 36 drive
)

BOOT_SECTOR = _CODE + bytes(510 - len(_CODE)) + b"\x55\xaa"
assert len(BOOT_SECTOR) == 512
