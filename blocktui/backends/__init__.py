"""Backends: one interface, implemented over libvirt-python and over QMP."""
