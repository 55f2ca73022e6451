"""Entry point: ``python -m blocktui`` and the ``blocktui`` console script."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from blocktui.cli import main as _main
from blocktui.core.errors import ENDING_SIGNALS


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    """Run the command line and exit with its code."""
    for signum in ENDING_SIGNALS:
        signal.signal(signum, _interrupt)
    sys.exit(_main())


if __name__ == "__main__":
    main()
