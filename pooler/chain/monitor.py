"""The block monitor: polls the farm contract and tells the coordinator what changed.

Theory of operation
-------------------
Soroban RPC has no push, so the monitor polls ``getLedgerEntries`` (see ``reader``) on a fixed
grid: polls are due at ``t0 + k * poll_interval`` whatever each call took, so a new FarmIndex
is seen at most one interval (plus one round trip) after the ledger that set it. A slow call
skips the grid slots it overran instead of bunching polls up.

Each poll either succeeds or fails; there is no third outcome and nothing escapes it but
cancellation.
- success: ``last_state`` is replaced; if the RPC was down a ``ChainHealth(ok=True)`` is emitted
  and the recovery logged; then ``FarmPaused`` if the paused flag differs from the last one
  announced (the baseline is "not paused"), then ``NewBlock`` if FarmIndex differs from the
  last one announced (so the first successful read announces the current block).
  ``NewBlock`` needs ``Block(index)``; while that entry is missing (genesis, eviction) the
  index is not announced and the next poll tries again.
- failure (``RpcUnavailable``/``ChainDataError``, or any bug, logged with its traceback):
  ``last_state`` is kept, ``consecutive_failures`` grows, the first failure of an outage emits
  ``ChainHealth(ok=False)``, and the next poll waits an exponential backoff with jitter
  (base = the poll interval, capped) instead of the grid.
- pails: after :meth:`BlockMonitor.watch` (the core's ``WatchPails``: the block it planted and
  its farmers), each poll also reads that ``Block(index)`` and the farmers' pails, and
  ``BlockUpdated`` is emitted whenever they differ from the last one announced (before
  ``NewBlock``, so a block's final state, read in the ledger that shows the next block, comes
  first).
What was announced is advanced only after ``emit`` returned, so an event the consumer failed to
take is offered again by the next poll instead of being lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.soroban_server_async import SorobanServerAsync

from pooler.chain.backoff import Backoff
from pooler.chain.reader import ChainSnapshot, FarmReader, WatchedBlock, instance_key
from pooler.core import rewards
from pooler.core.events import BlockUpdated, ChainHealth, Event, FarmPaused, NewBlock
from pooler.errors import ChainError

log = logging.getLogger("pooler.chain")


class BlockMonitor:
    """Watches one farm contract through one Soroban RPC endpoint.

    ``clock`` is monotonic seconds (scheduling and ``last_ok_at``); ``sleep`` and ``rng``
    (uniform in [0, 1), for backoff jitter) are injectable for tests.
    """

    def __init__(
        self,
        rpc_url: str,
        contract_id: str,
        emit: Callable[[Event], None],
        poll_interval: float = 1.0,
        *,
        request_timeout: float = 5.0,
        backoff_cap: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0 seconds, got {request_timeout}")
        instance_key(contract_id)  # a bad contract id fails here, not once per poll
        self.rpc_url = rpc_url
        self.contract_id = contract_id
        self.poll_interval = poll_interval
        self._emit = emit
        self._request_timeout = request_timeout
        self._backoff = Backoff(base=poll_interval, cap=max(backoff_cap, poll_interval))
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        # Created on first use and closed by run()'s exit or aclose(): one HTTP session per monitor.
        self._server: SorobanServerAsync | None = None
        # Holds the last FarmIndex so the next call can fetch Block(index) in the same round trip.
        self._reader: FarmReader | None = None
        # The last successful read; kept through outages so /health and late readers see it.
        self.last_state: ChainSnapshot | None = None
        # Clock time of the last successful poll (None before the first).
        self.last_ok_at: float | None = None
        # Failed polls since the last success; drives the backoff and /health.
        self.consecutive_failures = 0
        # Why the last poll failed ("" after a success), and the error itself (None after a
        # success): its type is the failure's kind (metrics), the text is for people.
        self.last_error = ""
        self.last_failure: Exception | None = None
        # What the consumer has been told, advanced only after emit() returned.
        self._announced_index: int | None = None
        self._announced_paused = False
        # None before the first poll; False while an outage has been announced.
        self._chain_ok: bool | None = None
        # Clock time the current outage began, for the recovery log line.
        self._down_since: float | None = None
        # The index whose missing Block(index) was already warned about (warn once, not per poll).
        self._warned_missing_block: int | None = None
        # What watch() asked for (block, (farmer id, address) pairs): handed to each new reader.
        self._watch: tuple[int, tuple[tuple[str, str], ...]] | None = None
        # The last BlockUpdated emitted (compared to say whether the next read changed anything).
        self._announced_update: BlockUpdated | None = None

    def watch(self, index: int, farmers: tuple[tuple[str, str], ...]) -> None:
        """Read ``Block(index)`` and these farmers' pails with every poll (``WatchPails``)."""
        self._watch = (index, farmers)
        if self._reader is not None:
            self._reader.watch(index, farmers)

    async def read_pails(
        self, index: int, farmers: tuple[tuple[str, str], ...]
    ) -> tuple[dict[str, rewards.Pail], int]:
        """These farmers' ``Pail(address, index)`` now, by farmer id, and the ledger the read
        reflects (the core's ``ReadPails``); raises ``ChainError`` when the RPC cannot tell."""
        found, ledger = await self._ensure_reader().read_pails(index, farmers)
        return {fid: rewards.Pail.of(p) for fid, p in found.items()}, ledger

    # ------------------------------------------------------------ lifecycle

    def _ensure_reader(self) -> FarmReader:
        if self._reader is None or self._server is None:
            client = AiohttpClient(request_timeout=self._request_timeout, post_timeout=self._request_timeout)
            server = SorobanServerAsync(self.rpc_url, client=client)
            self._reader = FarmReader(server, self.contract_id)
            self._server = server
            if self._watch is not None:
                self._reader.watch(*self._watch)
        return self._reader

    async def aclose(self) -> None:
        """Close the RPC session (``run`` does this itself when it ends)."""
        server, self._server, self._reader = self._server, None, None
        if server is not None:
            await server.close()

    async def __aenter__(self) -> BlockMonitor:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def healthy(self) -> bool:
        """True when the last poll succeeded."""
        return self._chain_ok is True

    # ------------------------------------------------------------ polling

    async def run(self) -> None:
        """Poll until cancelled. Never returns otherwise; every poll's failure is contained."""
        try:
            next_at = self._clock()
            while True:
                ok = await self.poll_once()
                now = self._clock()
                if ok:
                    next_at += self.poll_interval
                    if next_at <= now:
                        # Overran (slow call, or first poll after a backoff): rejoin the grid.
                        next_at += (math.floor((now - next_at) / self.poll_interval) + 1) * self.poll_interval
                else:
                    next_at = now + self._backoff.delay(self.consecutive_failures, self._rng)
                await self._sleep(max(0.0, next_at - now))
        finally:
            await self.aclose()

    async def poll_once(self) -> bool:
        """One read and the events it implies. Returns whether the read succeeded."""
        try:
            snap = await self._ensure_reader().read()
        except ChainError as exc:
            self._failed(str(exc), exc)
            return False
        except Exception as exc:  # a bug or an SDK surprise: never kill the monitor for it
            log.exception("block monitor: unexpected error reading %s", self.rpc_url)
            self._failed(f"unexpected {type(exc).__name__}: {exc}", exc)
            return False
        self._succeeded(snap)
        return True

    def _offer(self, event: Event) -> bool:
        try:
            self._emit(event)
        except Exception:
            log.exception("block monitor: emit(%r) failed; will offer it again", event)
            return False
        return True

    def _failed(self, detail: str, failure: Exception) -> None:
        self.consecutive_failures += 1
        self.last_error = detail
        self.last_failure = failure
        if self._chain_ok is not False:
            self._down_since = self._clock()
            log.warning("chain RPC %s unavailable: %s", self.rpc_url, detail)
            if self._offer(ChainHealth(ok=False, detail=detail)):
                self._chain_ok = False
        else:
            log.debug("chain RPC still unavailable (%d failed polls): %s", self.consecutive_failures, detail)

    def _succeeded(self, snap: ChainSnapshot) -> None:
        now = self._clock()
        if self._chain_ok is False:
            failures = self.consecutive_failures
            down_for = now - self._down_since if self._down_since is not None else 0.0
            log.info(
                "chain RPC %s recovered after %d failed polls (%.1f s)", self.rpc_url, failures, down_for
            )
            if self._offer(ChainHealth(ok=True, detail=f"recovered after {failures} failed polls")):
                self._chain_ok = True
        else:
            self._chain_ok = True
        self.last_state = snap
        self.last_ok_at = now
        self.consecutive_failures = 0
        self.last_error = ""
        self.last_failure = None
        state = snap.state
        if state.paused != self._announced_paused:
            log.warning("farm %s", "paused" if state.paused else "unpaused")
            if self._offer(FarmPaused(paused=state.paused)):
                self._announced_paused = state.paused
        if snap.watched is not None:
            self._update(snap.watched, snap.ledger)
        if state.index == self._announced_index:
            return
        if snap.block is None:
            if self._warned_missing_block != state.index:
                self._warned_missing_block = state.index
                log.warning(
                    "FarmIndex is %d but Block(%d) is missing; waiting for it", state.index, state.index
                )
            return
        event = NewBlock(
            index=state.index, entropy=snap.block.entropy, timestamp=snap.block.timestamp, ledger=snap.ledger
        )
        if self._offer(event):
            log.info(
                "new block %d (ledger %d, block time %d)", state.index, snap.ledger, snap.block.timestamp
            )
            self._announced_index = state.index

    def _update(self, watched: WatchedBlock, ledger: int) -> None:
        """``BlockUpdated`` when the watched block or its pails changed since the last one."""
        if watched.block is None:
            return
        event = BlockUpdated(
            index=watched.index,
            block=rewards.BlockState.of(watched.index, watched.block),
            pails={fid: rewards.Pail.of(p) for fid, p in watched.pails.items()},
            ledger=ledger,
        )
        last = self._announced_update
        if last is not None and (last.index, last.block, last.pails) == (
            event.index,
            event.block,
            event.pails,
        ):
            return
        if self._offer(event):
            self._announced_update = event
