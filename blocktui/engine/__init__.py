"""The engine: hosts opened, polled and steered; plans run; every ending journalled.

Both front ends (the dashboard and the CLI) go through ``blocktui.engine.Engine`` and never
through a backend. Parts: ``hosts`` builds the backends, ``session`` polls them (one worker
thread per host, ``hostwork``), ``planner`` runs plans over the session (``plans``,
``plan_book``, ``plan_runs``, ``guarding``, ``recovery``), ``journal`` keeps how jobs ended.
"""
