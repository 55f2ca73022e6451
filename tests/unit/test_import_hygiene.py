"""The core stays pure: importing it loads no UI toolkit and no hypervisor library."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE_MODULES = [
    "blocktui.core.model",
    "blocktui.core.units",
    "blocktui.core.errors",
    "blocktui.core.text",
    "blocktui.core.rate",
    "blocktui.core.tracker",
    "blocktui.core.views",
]
FORBIDDEN = ("textual", "rich", "libvirt", "qemu")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_nothing_forbidden(module: str) -> None:
    probe = (
        f"import sys, {module}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
