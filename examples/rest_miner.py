"""The CPU miner of ``ws_miner.py`` through the REST fallback, for miners that cannot keep a WebSocket.

    python examples/rest_miner.py --register http://127.0.0.1:3001 --processes 2 --max-blocks 2

``GET /miner/work`` hands out a job (503 while no block is open), the hashing processes mine it, each
share goes to ``POST /miner/submit`` (200 accepted, 4xx rejected: see docs/protocol.md), and when the
range is done the next ``GET /miner/work`` brings a fresh range. REST has no push, so a new block is
noticed when the current one's ``blockEndsAt`` passes (the miner then polls) or when a submit answers
410 stale. The hashing itself is ``ws_miner.CpuEngine``, unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Unpack

if __package__ in (None, ""):  # run as a script (or as a spawned child of one): make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from examples.minerkit import MinerBase, MinerError, MinerOptions, obtain_token, run_with_signals
from examples.ws_miner import CpuEngine
from protocol import Code, ProtocolError
from protocol.codec import client_to_dict, decode_server
from protocol.messages import Accepted, ClientMessage, Job, More, Rejected, Share

__all__ = ["RestMiner", "main"]


class _Fatal(Exception):
    """401: the token is not (or no longer) valid."""


class RestMiner(MinerBase):
    """Polls for work and submits shares over HTTP; one request at a time.

    Theory of operation: the engine's outgoing messages land in a bounded queue; one loop takes them
    in order (``share`` -> ``POST /miner/submit``, ``more`` -> ``GET /miner/work``). When the queue is
    quiet for ``poll`` seconds and no block is being mined (none yet, or its ``blockEndsAt`` passed),
    the loop asks for work again. A 503 means no block is open: wait and ask again. Per-block figures
    and ``max_blocks`` are :class:`MinerBase`'s.
    """

    def __init__(
        self,
        *,
        base_url: str,
        poll: float = 1.0,
        **options: Unpack[MinerOptions],
    ) -> None:
        super().__init__(**options)
        self.base_url = base_url.rstrip("/")
        self.poll = poll
        self._outbox: asyncio.Queue[ClientMessage] = asyncio.Queue(maxsize=4096)  # engine -> HTTP
        self._job: Job | None = None  # the newest job: its block and blockEndsAt
        self._live: set[str] = set()  # job ids of the current block: finds for others are stale, not sent
        # the job whose low-zeros answer made us fetch work once: REST has no `difficulty` push, the
        # next job carries the new shareZeros (shares of that old job still in flight are ignored)
        self._refetched_for: str | None = None

    async def run(self) -> int:
        await self.engine.start()
        self.engine.send = self._enqueuer(self._outbox)
        deadline = None if self.duration is None else time.monotonic() + self.duration
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=15)
        try:
            async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
                await self._fetch_work(http)
                while not self._stop.is_set():
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    try:
                        async with asyncio.timeout(self.poll):  # not wait_for (may swallow a cancel)
                            msg = await self._outbox.get()
                    except TimeoutError:
                        if self._idle():
                            await self._fetch_work(http)
                        continue
                    if isinstance(msg, Share):
                        await self._submit(http, msg)
                    elif isinstance(msg, More):
                        await self._fetch_work(http)
            return 0
        except _Fatal as exc:
            self._out(f"pool refused this miner: {exc}")
            return 2
        finally:
            self.engine.on_disconnect()
            await self._wind_up()

    def _idle(self) -> bool:
        return self._job is None or self._clock() * 1000 >= self._job.block_ends_at

    async def _fetch_work(self, http: aiohttp.ClientSession) -> None:
        url = f"{self.base_url}/miner/work"
        try:
            async with http.get(url, params={"worker": self.worker}) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            delay = self._backoff.next()
            self._out(f"GET /miner/work failed ({exc or type(exc).__name__}); retrying in {delay:.1f} s")
            await self._pause(delay)
            return
        self._backoff.reset()
        if status == 401:
            raise _Fatal(text[:200])
        if status == 503:
            if self.verbose:
                self._out("no block open yet")
            return  # the loop polls again after `poll` seconds of quiet
        if status != 200:
            self._out(f"GET /miner/work answered {status}: {text[:200]}")
            await self._pause(self.poll)
            return
        try:
            obj = json.loads(text)
            if isinstance(obj, dict):
                obj.setdefault("type", "job")
            job = decode_server(json.dumps(obj))
        except (ValueError, ProtocolError) as exc:
            self._out(f"GET /miner/work returned something that is not a job: {exc}")
            await self._pause(self.poll)
            return
        if not isinstance(job, Job):
            self._out(f"GET /miner/work returned a {type(job).__name__}, not a job")
            return
        self._on_job(job)

    def _block_began(self, job: Job) -> None:
        self._live.clear()

    def _job_taken(self, job: Job) -> None:
        self._live.add(job.job)
        self._job = job

    async def _submit(self, http: aiohttp.ClientSession, share: Share) -> None:
        if share.job not in self._live:  # found just before the block went stale: it would be refused
            return
        body = client_to_dict(share)
        del body["type"]
        try:
            async with http.post(f"{self.base_url}/miner/submit", json=body) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._out(f"POST /miner/submit failed: {exc or type(exc).__name__}")
            return
        if status == 401:
            raise _Fatal(text[:200])
        try:
            obj = json.loads(text)
            if isinstance(obj, dict):
                obj.setdefault("type", "accepted" if status == 200 else "rejected")
            result = decode_server(json.dumps(obj))
        except (ValueError, ProtocolError) as exc:
            self._out(f"POST /miner/submit answered {status} with an unexpected body: {exc}")
            return
        if isinstance(result, Accepted):
            self._count(result, self._tally)
        elif isinstance(result, Rejected):
            self._count(result, self._tally)
            if result.code == Code.STALE:  # the block moved on: stop hashing it, ask for the new one
                self.engine.on_disconnect()
                self._job = None
                self._live.clear()
                await self._fetch_work(http)
            elif (
                result.code == Code.LOW_ZEROS and result.job is not None and result.job != self._refetched_for
            ):
                self._refetched_for = result.job  # the pool raised our difficulty: learn it from a job
                await self._fetch_work(http)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CPU miner for the KALE pool through the REST fallback")
    parser.add_argument("--url", default="http://127.0.0.1:3001", help="the pool's HTTP base URL")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--token", help="bearer token of an existing miner")
    who.add_argument("--register", action="store_true", help="register a new miner at --url first")
    parser.add_argument("--name", help="miner name sent when registering (default: the worker name)")
    parser.add_argument("--worker", default="default", help="worker name, up to 64 characters")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, metavar="N")
    parser.add_argument("--poll", type=float, default=1.0, metavar="SECONDS", help="work polling interval")
    parser.add_argument("--max-blocks", type=int, metavar="N", help="stop after N blocks")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    parser.add_argument("--verbose", action="store_true", help="print every rejected share")
    return parser


async def _main(args: argparse.Namespace) -> int:
    try:
        token = await obtain_token(args.token, args.url, args.name or args.worker)
    except (MinerError, aiohttp.ClientError, OSError) as exc:
        print(f"cannot register: {exc}", file=sys.stderr)
        return 1
    miner = RestMiner(
        base_url=args.url,
        token=token,
        worker=args.worker,
        engine=CpuEngine(args.processes),
        max_blocks=args.max_blocks,
        duration=args.duration,
        poll=args.poll,
        verbose=args.verbose,
    )
    return await run_with_signals(miner)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.poll <= 0:
        parser.error("--poll must be positive")
    if args.max_blocks is not None and args.max_blocks < 1:
        parser.error("--max-blocks must be at least 1")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
