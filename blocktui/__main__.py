"""Entry point: ``python -m blocktui`` and the ``blocktui`` console script."""

from __future__ import annotations

import sys

from blocktui.cli import main as _main


def main() -> None:
    """Run the command line and exit with its code."""
    sys.exit(_main())


if __name__ == "__main__":
    main()
