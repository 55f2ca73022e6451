"""The command line: ``blocktui [hosts] COMMAND``; without a command, the dashboard.

Parts: ``commands`` parses the arguments and runs each command through the engine; ``plans``
holds the commands a plan drives (``stream --wait``, ``abort``, ``pause``/``resume``,
``history``); ``hosts`` turns the host options into an engine; ``args`` and ``output`` are the
argument types and what is printed.
"""

from blocktui.cli.commands import main

__all__ = ["main"]
