"""Admission: a bounded number of predictions in flight, a bounded queue, a bounded wait.

Past ``max_in_flight`` a request waits its turn (first come, first served); when
``max_queue`` already wait, or its wait would pass ``queue_timeout``, it gets a quick
503 with ``Retry-After`` instead of piling onto a model server that is already busy
(where every request would get slower until clients time out). The wait is the
``queue`` stage of Server-Timing. One event loop per worker process, no threads:
no lock needed.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator

from .backend import BackendError, Timing


class Admission:
    def __init__(self, max_in_flight: int, max_queue: int, queue_timeout: float):
        self.max_in_flight, self.max_queue, self.queue_timeout = max_in_flight, max_queue, queue_timeout
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.refused = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _overloaded(self, why: str) -> BackendError:
        self.refused += 1
        return BackendError(503, f"overloaded: {why}; retry shortly", kind="overload",
                            retry_after=max(1, math.ceil(self.queue_timeout)))

    async def _acquire(self) -> None:
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise self._overloaded(f"{self.in_flight} requests in flight and {len(self._waiters)} waiting")
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiters.append(turn)
        timer = loop.call_later(self.queue_timeout, _expire, turn)
        try:
            await turn
        except TimeoutError:
            self._forget(turn)
            raise self._overloaded(f"no prediction slot freed within {self.queue_timeout:g} s") from None
        except asyncio.CancelledError:  # the client went away while waiting
            self._forget(turn)
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._release()  # the slot was handed over just before: pass it on
            raise
        finally:
            timer.cancel()
        # the slot was handed over by _release (in_flight already counts it)

    def _forget(self, turn: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(turn)
        except ValueError:
            pass

    def _release(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # hand the slot straight to the next in line
                return
        self.in_flight -= 1

    @asynccontextmanager
    async def slot(self, timing: Timing) -> AsyncIterator[None]:
        start = time.perf_counter()
        await self._acquire()
        timing.add("queue", time.perf_counter() - start)
        try:
            yield
        finally:
            self._release()


def _expire(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_exception(TimeoutError())
