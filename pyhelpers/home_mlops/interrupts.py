"""SIGTERM / SIGINT (a Jenkins abort, a Ctrl-C) during a deploy, for both targets.

While the guard is armed a signal raises the target's interruption error in the main thread,
so the deploy's failure path (remove the new containers / roll the cluster back) runs. Once
that path starts (or the switch is done) the guard is disarmed: later signals are only noted,
so the cleanup is never cut short and nothing is left half switched.

A signal can land inside a best-effort call whose failure is tolerated (a container state
probe's ``except Exception``) and be swallowed there; ``check()`` raises it again and
``interrupted_by`` lets the failure path report the interruption rather than whatever the
swallowed signal looked like ("container gone").
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Guard:
    def __init__(self, error: Callable[[str], Exception]) -> None:
        self._error = error
        self.armed = True
        self.noted: list[str] = []
        self.interrupted_by: str | None = None

    def error(self) -> Exception:
        return self._error(self.interrupted_by or "a signal")

    def handle(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if not self.armed:
            self.noted.append(name)
            return
        self.armed = False
        self.interrupted_by = name
        raise self.error()

    def check(self) -> None:
        """Raise again an interruption that a best-effort ``except Exception`` swallowed."""
        if self.interrupted_by:
            raise self.error()


@contextmanager
def interruptible(error: Callable[[str], Exception]) -> Iterator[Guard]:
    """A guard whose signals raise ``error(signal name)``; the previous handlers come back after."""
    guard = Guard(error)
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield guard
        return
    previous = {sig: signal.signal(sig, guard.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield guard
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
