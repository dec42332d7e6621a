"""A named asyncio task that a server job runs in the background, for as long as the job is started."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine


class BackgroundTask:
    """`start(run)` creates the task `run()` on the running loop (once: while one runs, start does nothing);
    `stop()` cancels it and waits until it has ended. Idempotent; the task may be started again after."""

    __slots__ = ("name", "_task")

    def __init__(self, name: str):
        self.name = name
        self._task: asyncio.Task | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self, run: Callable[[], Coroutine]) -> bool:
        """Start `run()` unless a task is started already; whether this call started it."""
        if self._task is not None:
            return False
        self._task = asyncio.get_running_loop().create_task(run(), name=self.name)
        return True

    async def stop(self) -> None:
        """Cancel the task and wait for it to end: its cancellation is swallowed, anything else it raises is not."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
