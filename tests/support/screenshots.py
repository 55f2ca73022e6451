"""Write SVG screenshots of the real dashboard on the demo lab: ``python tests/support/screenshots.py DIR``.

It creates two domains of its own in the lab, streams their disks (some throttled so they are
still running, one to completion, one aborted), captures the main screen (with the selected
disk's allocation strip), the stream dialog and the help screen at 120x40, then removes its
domains. Nothing else in the lab is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from blocktui.core.model import JobKey, JobState
from blocktui.engine.facade import Engine
from blocktui.engine.journal import Journal
from blocktui.engine.session import Session
from blocktui.lab import MIB, DiskSpec, open_lab
from blocktui.ui.app import BlocktuiApp

SIZE = (120, 40)
DOMAINS = {
    "web-1": [DiskSpec("vda", 512 * MIB, 3), DiskSpec("vdb", 384 * MIB, 2), DiskSpec("vdc", 64 * MIB, 1)],
    "db-1": [DiskSpec("vda", 48 * MIB, 2), DiskSpec("vdb", 320 * MIB, 2)],
}


def _wait(check: Callable[[], bool], session: Session, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the lab did not reach the state the screenshots need")
        session.step()
        session.wait(0.2)


def _state(session: Session, key: JobKey) -> JobState | None:
    view = session.job(key)
    return None if view is None else view.state


def stage(session: Session, host: str) -> None:
    """Start the streams the screenshots show and wait until each is in its state."""
    finished = JobKey(host, "db-1", "vda")
    cancelled = JobKey(host, "db-1", "vdb")
    session.start_stream(host, "db-1", "vda", bandwidth=0)
    session.start_stream(host, "db-1", "vdb", bandwidth=4 * MIB)
    session.start_stream(host, "web-1", "vda", bandwidth=12 * MIB)
    session.start_stream(host, "web-1", "vdb", bandwidth=6 * MIB)
    _wait(lambda: _state(session, finished) is JobState.COMPLETED, session)
    _wait(lambda: (session.job(cancelled) or session.job(finished)).cur > 8 * MIB, session)  # type: ignore[union-attr]
    session.abort(cancelled)
    _wait(lambda: _state(session, cancelled) is JobState.CANCELLED, session)
    for _ in range(12):  # a few seconds of samples, so rates and sparklines have something to show
        session.step()
        session.wait(0.25)


async def capture(engine: Engine, directory: Path) -> list[Path]:
    """Run the app headless and save the screens."""
    app = BlocktuiApp(engine)
    written: list[Path] = []

    async with app.run_test(size=SIZE) as pilot:

        def save(name: str) -> None:
            path = directory / f"{name}.svg"
            app.save_screenshot(filename=path.name, path=str(directory))
            written.append(path)

        await asyncio.sleep(2.0)
        for _ in range(100):  # the selected disk's allocation strip (read in a thread)
            if app.main.allocation.reading is None:
                break
            await pilot.pause(0.05)
        await pilot.pause()
        save("dashboard")
        await pilot.press("s")
        await pilot.pause()
        await pilot.press(*"20M")
        for _ in range(100):  # the pre-flight line (read in a worker) says what it copies
            await pilot.pause(0.05)
            if "copies" in str(app.screen.query_one("#estimate").render()):
                break
        save("stream-dialog")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        save("help")
        await pilot.press("escape")
        app.main.stop_polling()
    return written


def main(argv: list[str] | None = None) -> int:
    """Create the lab domains, capture, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="screenshots", help="where the SVGs go")
    directory = Path(parser.parse_args(argv).directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open_lab("libvirt") as lab:
        for name in DOMAINS:
            if any(d.domain == name for d in lab.status()):
                lab.destroy_domain(name)
        try:
            for name, disks in DOMAINS.items():
                lab.create_domain(name, disks)
            backend = lab.backend()
            session = Session([backend])
            session.open()
            # A journal of its own: the screenshots' streams stay out of the user's history.
            journal = Journal(Path(tempfile.mkdtemp(prefix="blocktui-shots-")) / "journal.sqlite3")
            engine = Engine(session, journal)
            try:
                stage(session, backend.uri)
                # QEMU writes its cached qcow2 tables out, so the strip (read from the files)
                # shows what the running stream has pulled so far.
                for name in DOMAINS:
                    lab.flush(name)
                written = asyncio.run(capture(engine, directory))
            finally:
                for view in session.snapshot().jobs:
                    if not view.state.is_final:
                        session.abort(view.key)
                engine.close()
                journal.close()
        finally:
            for name in DOMAINS:
                lab.destroy_domain(name)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
