"""Background training worker: webhooks return at once, retrains run here one at a time.

Requests for a project that is already waiting are merged, and a request that arrives while that
project trains queues one more run, so the newest annotation is always included without retraining
once per click.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class TrainingQueue:
    def __init__(self, train: Callable[[int], object]) -> None:
        self._train = train
        self._pending: deque[int] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mos-trainer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def request(self, project_id: int) -> bool:
        """Queue a retrain; False when one for this project is already waiting."""
        with self._cond:
            if project_id in self._pending:
                return False
            self._pending.append(project_id)
            self._cond.notify_all()
            return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running (used by tests and the CLI)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopped)
                if self._stopped:
                    return
                project_id = self._pending.popleft()
                self._busy = True
            try:
                self._train(project_id)
            except Exception as exc:  # keep serving: a failed retrain leaves the old model in place
                log.error("retrain of project %s failed: %s", project_id, exc)
                log.debug("retrain failure details", exc_info=True)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
