"""Small in-process miners (WebSocket and REST) for end-to-end tests, and the example miners as processes.

The in-process miners hash on the test's event loop in small batches (a few hundred nonces, then
a pause), so they never hold the loop the Pooler also runs on for more than a millisecond or so.
They stop submitting a little before each block's ``workAt``: everything they found then reached
the Pooler before it chose each farmer's best, so a test can compare the submitted work with
exactly what these miners were credited for. Everything they see is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.system import bearer, template
from tests.support.wait import FAILSAFE

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"
BATCH = 128  # nonces hashed between two yields to the loop
PAUSE = 0.01  # seconds between batches: ~10k H/s per miner, a small share of one core
STOP_BEFORE_WORK = 0.4  # seconds before workAt after which nothing more is submitted


@dataclass
class Credit:
    """One accepted share: which block, nonce and zeros (as the Pooler answered)."""

    block: int
    job: str
    nonce: int
    zeros: int
    best: bool


@dataclass
class MinerLog:
    """What an in-process miner saw."""

    name: str
    jobs: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[Credit] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    difficulties: list[int] = field(default_factory=list)

    def blocks(self) -> list[int]:
        return sorted({j["block"] for j in self.jobs})

    def best(self, block: int) -> int:
        return max((c.zeros for c in self.accepted if c.block == block), default=-1)


class _Cursor:
    """The job being hashed and the next nonce in it."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.next = int(job["nonceStart"])
        self.end = int(job["nonceEnd"])
        self.tpl = template(job)

    def submitting(self) -> bool:
        return bool(time.time() * 1000 < self.job["workAt"] - STOP_BEFORE_WORK * 1000)

    def batch(self, zeros: int) -> list[tuple[int, int]]:
        """Hash up to BATCH nonces; the (nonce, zeros) of those with at least ``zeros``."""
        found = []
        stop = min(self.next + BATCH, self.end)
        verify = self.tpl.verify
        for nonce in range(self.next, stop):
            z = verify(nonce)[1]
            if z >= zeros:
                found.append((nonce, z))
        self.next = stop
        return found


async def ws_miner(url: str, token: str, log: MinerLog, stop: asyncio.Event) -> None:
    """A protocol v1 miner over one WebSocket, until ``stop`` is set."""
    async with connect(url, open_timeout=FAILSAFE, close_timeout=2) as conn:
        await conn.send(
            orjson.dumps({"type": "hello", "token": token, "worker": log.name, "protocol": 1}).decode()
        )
        state: dict[str, Any] = {"cursor": None, "zeros": 1, "asked": False}
        job_block: dict[str, int] = {}

        async def read() -> None:
            async for raw in conn:
                msg = orjson.loads(raw)
                kind = msg["type"]
                if kind == "job":
                    log.jobs.append(msg)
                    job_block[msg["job"]] = msg["block"]
                    state["zeros"] = msg["shareZeros"]
                    cur = state["cursor"]
                    if msg["clean"] or cur is None or cur.next >= cur.end:
                        state["cursor"] = _Cursor(msg)
                    state["asked"] = False
                elif kind == "difficulty":
                    log.difficulties.append(msg["shareZeros"])
                    state["zeros"] = msg["shareZeros"]
                elif kind == "accepted":
                    log.accepted.append(
                        Credit(
                            job_block[msg["job"]], msg["job"], int(msg["nonce"]), msg["zeros"], msg["best"]
                        )
                    )
                elif kind in ("rejected", "error"):
                    log.rejected.append(msg)

        reader = asyncio.create_task(read())
        try:
            while not stop.is_set() and not reader.done():
                cur: _Cursor | None = state["cursor"]
                if cur is None or not cur.submitting():
                    await asyncio.sleep(0.05)  # idle: no job, or too close to workAt to submit
                    continue
                if cur.next >= cur.end:
                    if not state["asked"]:
                        state["asked"] = True
                        await conn.send(orjson.dumps({"type": "more", "job": cur.job["job"]}).decode())
                    await asyncio.sleep(0.05)  # the range is done: idle until the next job comes
                    continue
                for nonce, _ in cur.batch(state["zeros"]):
                    await conn.send(
                        orjson.dumps({"type": "share", "job": cur.job["job"], "nonce": str(nonce)}).decode()
                    )
                await asyncio.sleep(PAUSE)  # paces the hashing (module docstring: a small share of a core)
            if not reader.done():
                await conn.send('{"type": "bye"}')
                # the Pooler answers bye by closing: the connection must end (failsafe: a hang fails)
                await asyncio.wait_for(asyncio.shield(reader), FAILSAFE)
            assert conn.close_code in (1000, None), f"{log.name}: closed with {conn.close_code}"
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await reader


async def rest_miner(base: str, token: str, log: MinerLog, stop: asyncio.Event) -> None:
    """The same miner over the REST fallback: polls /miner/work, posts /miner/submit."""
    async with aiohttp.ClientSession(headers=bearer(token)) as http:
        cur: _Cursor | None = None
        refresh = True
        while not stop.is_set():
            now_ms = time.time() * 1000
            if cur is not None and (now_ms >= cur.job["blockEndsAt"] or cur.next >= cur.end):
                refresh = True
            if refresh:
                async with http.get(f"{base}/miner/work", params={"worker": log.name}) as resp:
                    job = await resp.json()
                    if resp.status == 503:  # no block open
                        await asyncio.sleep(0.2)  # polls again, as a REST miner does
                        continue
                    assert resp.status == 200, job
                if cur is not None and job["block"] == cur.job["block"] and now_ms >= cur.job["blockEndsAt"]:
                    await asyncio.sleep(0.2)  # the block is over and the next one is not open yet
                    continue
                log.jobs.append(job)
                cur, refresh = _Cursor(job), False
            assert cur is not None
            if not cur.submitting():
                await asyncio.sleep(0.05)  # too close to workAt to submit: idle (paces the loop)
                continue
            for nonce, _ in cur.batch(cur.job["shareZeros"]):
                body = {"job": cur.job["job"], "nonce": str(nonce)}
                async with http.post(f"{base}/miner/submit", json=body) as resp:
                    answer = await resp.json()
                if resp.status == 200:
                    log.accepted.append(
                        Credit(
                            cur.job["block"],
                            answer["job"],
                            int(answer["nonce"]),
                            answer["zeros"],
                            answer["best"],
                        )
                    )
                else:
                    log.rejected.append(answer)
                    if answer.get("code") in (21, 23):  # stale, or the difficulty changed: fetch work again
                        refresh = True
            await asyncio.sleep(PAUSE)  # paces the hashing


@asynccontextmanager
async def example_process(
    script: str, *args: str, nice: int = 10
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python examples/<script> args...`` as a child process (lower CPU priority), stopped on exit.

    Its stdout and stderr are collected; read them from ``proc.output`` after the block, or with
    :func:`output_so_far` while it runs.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,  # lower priority for the hashing children
    )
    chunks: list[bytes] = []
    proc.chunks = chunks  # type: ignore[attr-defined]

    async def collect() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            chunks.append(chunk)

    reader = asyncio.create_task(collect())
    try:
        yield proc
    finally:
        await stop_process(proc)
        await asyncio.wait_for(reader, FAILSAFE)
        proc.output = b"".join(chunks).decode(errors="replace")  # type: ignore[attr-defined]


def output_so_far(proc: asyncio.subprocess.Process) -> str:
    """What an :func:`example_process` has printed until now (stdout and stderr)."""
    return b"".join(proc.chunks).decode(errors="replace")  # type: ignore[attr-defined]


def summary_of(output: str) -> dict[str, Any]:
    """The last ``summary {...}`` line an example miner printed at its end, decoded."""
    lines = [line for line in output.splitlines() if line.startswith("summary {")]
    assert lines, f"no summary line in the miner's output:\n{output[-3000:]}"
    value = orjson.loads(lines[-1].removeprefix("summary "))
    assert isinstance(value, dict)
    return value


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def python_command(script: str, *args: str) -> Sequence[str]:
    return [sys.executable, str(EXAMPLES / script), *args]
