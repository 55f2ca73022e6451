"""Entry point: ``python -m blocktui`` and the ``blocktui`` console script."""

from __future__ import annotations

import os
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
    try:
        code = _main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``blocktui ls --json | head``): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # what a shell reports for a command killed by SIGPIPE
    sys.exit(code)


if __name__ == "__main__":
    main()
