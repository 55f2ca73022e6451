"""blocktui: a terminal dashboard for live disk streaming on libvirt and QEMU hosts."""

__version__ = "0.1.0"
