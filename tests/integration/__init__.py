"""Tests against real QEMU through the labs."""
