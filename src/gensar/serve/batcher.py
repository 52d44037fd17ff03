"""Micro-batching: requests that arrive together are answered by one engine call.

Each ``submit`` puts a request on an asyncio queue and awaits its answer. One collector task per
batcher takes the first waiting request, then keeps taking until it holds ``max_batch`` requests
or ``max_wait_ms`` have passed, and runs ``fn(batch)`` in the engine's worker thread. While that
call runs, new requests queue up and form the next batch, so under load batches fill by
themselves and throughput grows with concurrency; an idle server adds at most ``max_wait_ms`` of
latency to a lone request.

All batchers of a server share one ``EngineThread``: the engine is never called from two threads
at once (torch already spreads one call over the configured threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class EngineThread:
    """The one worker thread that runs engine calls; (re)started on demand, so an app whose
    lifespan ends and starts again (test clients) keeps working."""

    def __init__(self, name: str = "gensar-engine") -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
            return self._executor

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0

    def record(self, size: int) -> None:
        self.batches += 1
        self.requests += size
        self.largest = max(self.largest, size)


class MicroBatcher(Generic[Req, Resp]):
    def __init__(self, fn: Callable[[Sequence[Req]], Sequence[Resp]], worker: EngineThread,
                 max_batch: int = 32, max_wait_ms: float = 2.0) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        self.fn = fn
        self.worker = worker
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Req, asyncio.Future[Resp]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, request: Req) -> Resp:
        """The answer to ``request``; raises what ``fn`` raised for its batch."""
        queue = self._ensure_running()
        future: asyncio.Future[Resp] = asyncio.get_running_loop().create_future()
        await queue.put((request, future))
        return await future

    def _ensure_running(self) -> asyncio.Queue[tuple[Req, asyncio.Future[Resp]]]:
        # Started lazily in the running loop (test clients may run each request in a fresh loop).
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._collect(self._queue))
        assert self._queue is not None
        return self._queue

    async def _collect(self, queue: asyncio.Queue[tuple[Req, asyncio.Future[Resp]]]) -> None:
        loop = asyncio.get_running_loop()
        # A pending ``queue.get()`` is carried over rather than cancelled on timeout: cancelling
        # it could drop a request it had already taken.
        getter: asyncio.Future | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                batch = [await getter]
                getter = None
                deadline = loop.time() + self.max_wait_s
                while len(batch) < self.max_batch:
                    if not queue.empty():
                        batch.append(queue.get_nowait())
                        continue
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait({getter}, timeout=remaining)
                    if not done:
                        break
                    batch.append(getter.result())
                    getter = None
                await self._run(loop, batch)
        finally:
            if getter is not None:
                getter.cancel()

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Req, asyncio.Future[Resp]]]) -> None:
        live = [(r, f) for r, f in batch if not f.cancelled()]  # clients that went away
        if not live:
            return
        self.stats.record(len(live))
        try:
            answers = await loop.run_in_executor(self.worker.executor(), self.fn, [r for r, _ in live])
            if len(answers) != len(live):
                raise RuntimeError(f"engine returned {len(answers)} answers for {len(live)} requests")
        except Exception as err:  # noqa: BLE001 - handed to every waiting request
            for _, f in live:
                if not f.done():
                    f.set_exception(err)
            return
        for (_, f), answer in zip(live, answers, strict=True):
            if not f.done():
                f.set_result(answer)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
