"""Background training worker: webhooks return at once, retrains run here one at a time.

Requests for a project that is already waiting are merged, and a request that arrives while that
project trains queues one more run, so the newest annotation is always included without retraining
once per click. The queue holds at most ``max_pending`` projects, so no flood of requests can
grow it. A failed retrain is retried with exponential backoff; its error stays visible in
``failures()`` until a retrain of that project succeeds. With ``pause``, a project's next run
starts no sooner than ``pause`` times the duration of its last one after it ended (for work that
loads another server: the requests meanwhile merge into one run).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Seconds before the first retry of a failed retrain; doubled per failure up to ``MAX_BACKOFF``.
FIRST_BACKOFF = 2.0
MAX_BACKOFF = 300.0


@dataclass
class Failure:
    error: str
    since: float  # when the first of these consecutive failures happened (unix time)
    attempts: int
    retry_at: float  # monotonic time of the next try


class TrainingQueue:
    """``train(project_id, force)`` runs in one thread; ``force=False`` is a catch-up that may
    find nothing new."""

    def __init__(self, train: Callable[[int, bool], object], max_pending: int = 256,
                 name: str = "mos-trainer", pause: float = 0.0) -> None:
        self._train = train
        self._name = name
        self.max_pending = max_pending
        self.pause = pause
        self._pending: dict[int, tuple[bool, float]] = {}  # project -> (force, not before: monotonic)
        self._rest_until: dict[int, float] = {}  # project -> monotonic time its pause ends
        self._retrying: set[int] = set()  # pending only as a retry
        self._failures: dict[int, Failure] = {}
        self._cond = threading.Condition()
        self._busy = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def request(self, project_id: int, force: bool = True) -> bool:
        """Queue a retrain (now, even if a retry was scheduled later; after the project's pause);
        False when one for this project is already waiting or the queue is full."""
        with self._cond:
            start = max(time.monotonic(), self._rest_until.get(project_id, 0.0))
            self._retrying.discard(project_id)
            if project_id in self._pending:
                waiting_force, _ = self._pending[project_id]
                self._pending[project_id] = (waiting_force or force, start)
                self._cond.notify_all()
                return False
            if len(self._pending) >= self.max_pending:
                log.warning("training queue full (%d projects): retrain of project %s dropped",
                            self.max_pending, project_id)
                return False
            self._pending[project_id] = (force, start)
            self._cond.notify_all()
            return True

    def failures(self) -> dict[int, Failure]:
        with self._cond:
            return dict(self._failures)

    def wait_idle(self, timeout: float | None = None, due_only: bool = False) -> bool:
        """Block until nothing is waiting or running. Scheduled retries do not count; runs held
        back by the pause do, unless ``due_only``."""
        with self._cond:
            if due_only:
                return self._cond.wait_for(lambda: not self._due() and not self._busy, timeout)
            return self._cond.wait_for(lambda: self._pending.keys() <= self._retrying and not self._busy, timeout)

    def waiting(self, project_id: int) -> bool:
        """A run of this project is queued and has not started (held by its pause, or behind
        the run in progress)."""
        with self._cond:
            return project_id in self._pending

    def _due(self) -> list[int]:
        now = time.monotonic()
        return [pid for pid, (_, not_before) in self._pending.items() if not_before <= now]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._due():
                    waits = [not_before - time.monotonic() for _, not_before in self._pending.values()]
                    self._cond.wait(timeout=max(0.05, min(waits)) if waits else None)
                if self._stopped:
                    return
                project_id = min(self._due(), key=lambda pid: self._pending[pid][1])
                force, _ = self._pending.pop(project_id)
                self._retrying.discard(project_id)
                self._busy = True
            started = time.monotonic()
            try:
                self._train(project_id, force)
            except Exception as exc:  # keep serving: a failed retrain leaves the old model in place
                self._failed(project_id, force, exc)
            else:
                with self._cond:
                    self._failures.pop(project_id, None)
                    ended = time.monotonic()
                    self._rest_until[project_id] = ended + self.pause * (ended - started)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _failed(self, project_id: int, force: bool, exc: Exception) -> None:
        message = " ".join(str(exc).split()) or type(exc).__name__
        with self._cond:
            previous = self._failures.get(project_id)
            attempts = previous.attempts + 1 if previous else 1
            delay = min(FIRST_BACKOFF * 2 ** (attempts - 1), MAX_BACKOFF)
            retry_at = time.monotonic() + delay
            self._failures[project_id] = Failure(message, previous.since if previous else time.time(),
                                                 attempts, retry_at)
            if project_id not in self._pending:  # a newer request keeps its own, earlier time
                self._pending[project_id] = (force, retry_at)
                self._retrying.add(project_id)
        log.error("retrain of project %s failed (attempt %d, next in %.0f s): %s",
                  project_id, attempts, delay, message)
        log.debug("retrain failure details", exc_info=True)
