"""Shared pieces of the operations and reliability tests: a miner client and its shares.

Their Pooler is :func:`tests.support.system.running_system` with the operations profile
(``profile=ops_options``: short block timings, fast metrics and health polls). Everything runs
on loopback: the devnet's block 1 is open from the start (jobs flow at once), the Pooler's own
late plant opens block 2, the first block its miners are planted in.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, TypeVar

import orjson
from websockets.asyncio.client import ClientConnection, connect

from pooler.app.service import Pooler
from protocol.codec import decode_server
from protocol.messages import Difficulty, Job, ServerMessage, Welcome
from protocol.work import WorkTemplate, address_bytes

M = TypeVar("M")
SECRET_SEED = re.compile(r"(?<![A-Za-z0-9])S[A-Z2-7]{55}(?![A-Za-z0-9])")


def ws_url(pooler: Pooler) -> str:
    return f"ws://127.0.0.1:{pooler.port}/ws/miner"


def find_shares(job: Job, zeros: int, count: int, start: int | None = None) -> list[tuple[int, bytes]]:
    """``count`` nonces of ``job``'s range whose hash has at least ``zeros`` zeros."""
    template = WorkTemplate(job.block, job.entropy, address_bytes(job.farmer))
    found: list[tuple[int, bytes]] = []
    nonce = job.nonce_start if start is None else start
    while len(found) < count and nonce < job.nonce_end:
        digest, got = template.verify(nonce)
        if got >= zeros:
            found.append((nonce, digest))
        nonce += 1
    return found


def find_low(job: Job, below: int) -> int:
    """A nonce of ``job`` whose hash has fewer than ``below`` zeros (an invalid share)."""
    template = WorkTemplate(job.block, job.entropy, address_bytes(job.farmer))
    nonce = job.nonce_start
    while template.verify(nonce)[1] >= below:
        nonce += 1
    return nonce


class Miner:
    """A protocol v1 WebSocket client for tests: frames are decoded and kept in arrival order."""

    def __init__(self, url: str, token: str, worker: str = "w1") -> None:
        self.url = url
        self.token = token
        self.worker = worker
        self.ws: ClientConnection | None = None
        self.inbox: list[ServerMessage] = []  # decoded frames not taken yet
        self.welcome: Welcome | None = None

    async def __aenter__(self) -> Miner:
        self.ws = await connect(self.url, max_size=None, open_timeout=5)
        await self.send({"type": "hello", "token": self.token, "worker": self.worker, "protocol": 1})
        self.welcome = await self.next(Welcome)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(orjson.dumps(frame).decode() if isinstance(frame, dict) else frame)

    async def recv(self, within: float = 10.0) -> ServerMessage:
        if self.inbox:
            return self.inbox.pop(0)
        assert self.ws is not None
        raw = await asyncio.wait_for(self.ws.recv(), within)
        return decode_server(raw)

    async def next(self, kind: type[M], within: float = 10.0) -> M:
        """The next frame of type ``kind``; frames of other types before it stay in the inbox."""
        for i, msg in enumerate(self.inbox):
            if isinstance(msg, kind):
                del self.inbox[i]
                return msg
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), max(0.01, end - loop.time()))
            msg = decode_server(raw)
            if isinstance(msg, kind):
                return msg
            self.inbox.append(msg)


async def mine(miner: Miner, stop: asyncio.Event, per_job: int = 3) -> None:
    """Answer every job with a few shares at the current difficulty (each block needs a best)."""
    zeros = 1
    while not stop.is_set():
        try:
            msg = await miner.recv(within=0.2)
        except TimeoutError:
            continue
        if isinstance(msg, Difficulty):
            zeros = msg.share_zeros
        elif isinstance(msg, Job):
            for nonce, _ in find_shares(msg, max(zeros, msg.share_zeros), per_job):
                await miner.send({"type": "share", "job": msg.job, "nonce": str(nonce)})
