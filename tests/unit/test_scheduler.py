"""Budget division (water-filling) and the per-host queue."""

from __future__ import annotations

import pytest

from blocktui.core.errors import InvalidInput
from blocktui.core.scheduler import HostPolicy, admit, divide_budget

MIB = 1024**2


def test_no_budget_keeps_own_limits() -> None:
    assert divide_budget({"a": 5, "b": 0}, 0) == {"a": 5, "b": 0}


def test_equal_shares_when_nobody_is_capped() -> None:
    shares = divide_budget({"a": 0, "b": 0, "c": 0, "d": 0}, 40 * MIB)
    assert shares == dict.fromkeys("abcd", 10 * MIB)


def test_capped_stream_leaves_its_surplus_to_others() -> None:
    shares = divide_budget({"slow": 2 * MIB, "b": 0, "c": 0}, 30 * MIB)
    assert shares["slow"] == 2 * MIB
    assert shares["b"] == shares["c"] == 14 * MIB


def test_budget_above_every_limit_gives_each_its_limit() -> None:
    shares = divide_budget({"a": MIB, "b": 2 * MIB}, 100 * MIB)
    assert shares == {"a": MIB, "b": 2 * MIB}


@pytest.mark.parametrize("budget", [1, 7, 40 * MIB + 3, 10**12])
def test_sum_never_exceeds_budget_and_no_share_is_unlimited(budget: int) -> None:
    limits = {"a": 0, "b": 3 * MIB, "c": 0, "d": 17}
    shares = divide_budget(limits, budget)
    assert all(share > 0 for share in shares.values())
    assert all(limits[k] == 0 or shares[k] <= limits[k] for k in limits)
    if budget >= len(limits):
        assert sum(shares.values()) <= budget


def test_order_of_result_follows_input() -> None:
    assert list(divide_budget({"z": 0, "a": 1}, 10)) == ["z", "a"]


def test_admit_respects_max_active_in_queue_order() -> None:
    assert admit(["a", "b", "c"], active=1, max_active=2) == ["a"]
    assert admit(["a", "b"], active=2, max_active=2) == []
    assert admit(["a", "b"], active=5, max_active=None) == ["a", "b"]


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(InvalidInput):
        HostPolicy(max_active=0)
    with pytest.raises(InvalidInput):
        HostPolicy(budget=-1)
