"""Fixtures for dashboard tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_support import Scenario, close_scenario, make_scenario

# History shows local times: pin the zone so snapshots match on every machine.
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    scenario = make_scenario(journal_dir=tmp_path)
    yield scenario
    close_scenario(scenario)
