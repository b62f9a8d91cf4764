"""The thread governor gives torch the cores other processes leave free."""
from __future__ import annotations

import pytest
import torch

from ml_backend.features import threads


@pytest.fixture()
def machine(monkeypatch: pytest.MonkeyPatch):
    """A fake clock and CPU counters: ``state`` advances them."""
    state = {"now": 100.0, "busy": 1000.0, "own": 10.0}
    monkeypatch.setattr(threads.time, "monotonic", lambda: state["now"])
    monkeypatch.setattr(threads, "_machine_busy_seconds", lambda: state["busy"])
    monkeypatch.setattr(threads, "_own_seconds", lambda: state["own"])
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    before = torch.get_num_threads()
    yield state
    torch.set_num_threads(before)


def advance(state: dict, seconds: float, others: float, own: float) -> None:
    """``seconds`` pass; other processes use ``others`` cores, this one ``own``."""
    state["now"] += seconds
    state["busy"] += (others + own) * seconds
    state["own"] += own * seconds


def test_threads_follow_the_cores_other_processes_leave(machine) -> None:
    governor = threads.ThreadGovernor()
    governor.adjust()  # first look: a mark, nothing to compare yet
    advance(machine, 1.0, others=1.0, own=3.0)
    assert governor.adjust() == 3 == torch.get_num_threads()
    advance(machine, 1.0, others=3.6, own=0.4)
    assert governor.adjust() == 1  # never fewer than one
    advance(machine, 0.2, others=0.0, own=4.0)
    assert governor.adjust() == 1  # too soon to re-measure
    advance(machine, 1.0, others=0.1, own=3.9)
    assert governor.adjust() == 4 == torch.get_num_threads()


def test_a_fixed_thread_count_is_kept(machine) -> None:
    governor = threads.ThreadGovernor(fixed=2)
    advance(machine, 1.0, others=3.0, own=1.0)
    assert governor.adjust() == 2 == torch.get_num_threads()
