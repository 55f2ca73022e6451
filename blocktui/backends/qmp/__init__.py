"""QEMU without libvirt: the QMP backend (``QmpBackend``) and the pieces it is built from."""

from blocktui.backends.qmp.backend import QmpBackend
from blocktui.backends.qmp.state import JOB_PREFIX, LOST_NOTE, job_id_for

__all__ = ["JOB_PREFIX", "LOST_NOTE", "QmpBackend", "job_id_for"]
