"""Fixtures for dashboard tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ui_support import Scenario, make_scenario


@pytest.fixture
def scenario() -> Iterator[Scenario]:
    scenario = make_scenario()
    yield scenario
    for backend in scenario.backends:
        backend.unhang()
    scenario.session.close()
