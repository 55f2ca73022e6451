"""Fixtures for dashboard tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_support import Scenario, close_scenario, make_scenario

#: Seconds a dashboard test may take before it fails with every thread's stack (pyproject sets
#: 180 s for the rest); generous, so a loaded machine does not trip it, and far below a hang.
UI_TEST_LIMIT = 60

# History shows local times: pin the zone so snapshots match on every machine.
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    scenario = make_scenario(journal_dir=tmp_path)
    yield scenario
    close_scenario(scenario)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(item.path).is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UI_TEST_LIMIT))
