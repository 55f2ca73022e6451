"""The Textual dashboard: ``run_dashboard(engine)`` shows every block job and plan live."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from blocktui.core.config import Config
from blocktui.core.errors import ENDING_SIGNALS
from blocktui.engine import Engine

#: How long quitting waits for hosts to close before leaving them behind.
CLOSE_TIMEOUT = 5.0


class _DaemonExecutor(ThreadPoolExecutor):
    """Runs each worker call in its own daemon thread.

    Textual runs thread workers on the event loop's default executor, whose threads are joined
    when the loop and the interpreter shut down: one host call that never returns would make
    quitting hang. Daemon threads are left behind instead (the host keeps its jobs either way).
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the awaiting worker, which reports it
                future.set_exception(exc)

        threading.Thread(target=run, name="blocktui-worker", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        # Nothing to join: the threads are daemons and may be stuck in a host call.
        return None


def run_dashboard(engine: Engine, settings: Config | None = None) -> int:
    """Run the dashboard on an engine whose hosts are not yet open; return the exit code.

    The hosts start connecting at once, on their workers, while Textual loads (about half a
    second); the app waits for them in a worker (so the screen shows at once). Afterwards this function
    closes the engine (its open plans are left to the next blocktui, guard holds are lifted, the
    journal and the hosts are closed), in a thread it waits for at most ``CLOSE_TIMEOUT``; jobs
    keep running on their hosts.
    """
    engine.open(timeout=0)
    from blocktui.ui.app import BlocktuiApp  # noqa: PLC0415 - keep `import blocktui.ui` light

    app = BlocktuiApp(engine, settings=settings)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(_DaemonExecutor())
    # SIGTERM and SIGHUP quit as `q` does: the terminal is restored and the plans are handed back.
    for signum in ENDING_SIGNALS:
        loop.add_signal_handler(signum, app.action_quit)
    try:
        app.run(loop=loop)
    finally:
        loop.close()
        # Bounded: one host that does not answer must not keep the others from being closed.
        close = partial(engine.close, timeout=CLOSE_TIMEOUT / 2)
        closer = threading.Thread(target=close, name="blocktui-close", daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT)
    return app.return_code or 0


__all__ = ["run_dashboard"]
