"""The engine: hosts opened, polled and steered; plans run; every ending journalled.

Front ends import only what this package exports (import-linter checks it): ``Engine``, the
one door for reading and for every change, and ``open_engine`` to build it from host names.

Parts: ``hosts`` builds the backends; ``session`` polls them, one worker thread per host
(``hostwork``, ``session_polling``, ``session_actions``); ``planner`` runs plans over the
session (``plans`` a plan, ``plan_book`` the table and its journal rows, ``plan_runs`` one
host's step, ``guarding`` the guard's reads, ``recovery`` taking plans over after a restart);
``journal`` keeps how jobs ended; ``facade`` and ``engine_actions`` are the ``Engine``.
"""

from blocktui.engine.facade import Engine
from blocktui.engine.hosts import HostSpec, open_engine
from blocktui.engine.journal import Entry, Journal
from blocktui.engine.planner import GUARD_ENV
from blocktui.engine.plans import Plan, PlanStatus

__all__ = [
    "GUARD_ENV",
    "Engine",
    "Entry",
    "HostSpec",
    "Journal",
    "Plan",
    "PlanStatus",
    "Preflight",
    "open_engine",
]
