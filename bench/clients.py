"""Load generator, as a child process: many WebSocket miners (the ``websockets`` client, Sans-I/O).

    python -m bench.clients --url ws://127.0.0.1:PORT/ws/miner --tokens T1,T2 --ip 127.0.0.2

Runs on uvloop and answers JSON-line commands on stdin (see :mod:`bench.common`):

- ``{"cmd": "connect", "n": N}``: open N more sockets (hello, then wait for welcome and a job),
  a bounded number of handshakes at a time. Answers ``{"open": total}``.
- ``{"cmd": "report", "block": B, "timeout": S}``: wait until every socket holds a job of block
  ``B``; answers the receipt times (``time.time()``, taken as the frame is handed over by the
  library, before it is parsed) and how many sockets are still missing it after S seconds.
- ``{"cmd": "shares", "rate": R, "window": W, "seconds": S}``: each socket keeps sending shares
  (distinct nonces from its job's range) for S seconds: at most W unanswered at a time when
  ``rate`` is 0 (as fast as the server answers), else R shares/s for the whole process, spread
  evenly over its sockets. Answers counts and the ack latencies (send -> ``accepted``) in seconds.
- ``{"cmd": "quit"}`` or end of input: close the sockets and exit.

With ``--broadcast`` every ``hello`` asks for the ``block-broadcast`` feature: a new block then
arrives as the one ``block`` frame the server encodes once for all sockets, and means the job
``"<slot>.<block>"`` of the socket's last ``slot`` (its receipt time is the block's, as a ``job``'s is).

Each process binds its own loopback source address (``--ip``), so ten thousand sockets a run
never run out of ephemeral ports, and its sockets use tokens round-robin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import random
import sys
import time
from typing import Any

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

from bench.common import Stdin, pin_from_env, raise_nofile, reply, run_child

_HANDSHAKES = 64  # handshakes in flight per process: stays well under the server's accept backlog
_LATENCY_SAMPLE = 200_000  # latencies kept per process per run (uniform by position, not by value)


class Miner(asyncio.Protocol):
    """One socket, driven by the library's Sans-I/O client protocol: frames are handled as they are
    parsed, with no task per socket or per message, so the generator stays cheap next to the server.
    """

    def __init__(self, load: Load, uri: WebSocketURI) -> None:
        self.load = load
        self.ws = ClientProtocol(uri, max_size=1 << 20)  # the websockets library's client state machine
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # handshake done
        self.blocks: dict[int, float] = {}  # block -> receipt time of its first job
        self.job = ""  # id of the newest job: shares go to it
        self.next_nonce = 0  # next nonce to send: each share is a distinct nonce of the job's range
        self.nonce_end = 0
        self.slot: tuple[str, int, int] | None = None  # (id, start, end) of the last slot (--broadcast)
        self.inflight: dict[int, float] = {}  # nonce -> perf_counter at send, until its answer
        self.waker: asyncio.Event | None = None  # set by answers during a window-bounded run
        self.done = False  # the socket closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass
        self.ws.send_request(self.ws.connect())
        self._flush()

    def _flush(self) -> None:
        assert self.transport is not None
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        at = time.time()  # receipt: before the frame is even parsed
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self.load.on_frame(self, event.data, at)
            elif isinstance(event, Response) and not self.opened.done():
                if self.ws.state is State.OPEN:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(RuntimeError(f"handshake refused: HTTP {event.status_code}"))
        self._flush()  # pongs and close replies

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self.load.closed += 1
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))
        if self.waker is not None:
            self.waker.set()

    def send(self, text: str) -> None:
        if self.done:
            return
        self.ws.send_text(text.encode())
        self._flush()

    def close(self) -> None:
        if self.transport is not None and not self.done:
            if self.ws.state is State.OPEN:
                self.ws.send_close(1000)
                self._flush()
            self.transport.close()


class Load:
    def __init__(
        self, url: str, tokens: list[str], ip: str, worker_prefix: str, broadcast: bool = False
    ) -> None:
        self.uri = parse_uri(url)
        self.broadcast = broadcast  # hellos ask for block-broadcast
        self.tokens = tokens
        self.ip = ip
        self.prefix = worker_prefix  # worker names unique across processes
        self.miners: list[Miner] = []
        self._seq = itertools.count()
        self._got_block = asyncio.Event()  # pulsed whenever a socket records a new block
        self._first_job: dict[Miner, asyncio.Future[None]] = {}  # sockets still waiting for a job
        self.latencies: list[float] = []  # ack latencies of the current share run
        self.acked = 0
        self.rejected = 0
        self.errors = 0
        self.closed = 0

    # ------------------------------------------------------------ sockets

    async def _open_one(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            i = next(self._seq)
            loop = asyncio.get_running_loop()
            _, miner = await loop.create_connection(
                lambda: Miner(self, self.uri), self.uri.host, self.uri.port, local_addr=(self.ip, 0)
            )
            await asyncio.wait_for(miner.opened, 60)
            got_job = self._first_job[miner] = loop.create_future()
            token = self.tokens[i % len(self.tokens)]
            hello: dict[str, Any] = {
                "type": "hello",
                "token": token,
                "worker": f"{self.prefix}{i}",
                "protocol": 1,
            }
            if self.broadcast:
                hello["features"] = ["block-broadcast"]
            miner.send(orjson.dumps(hello).decode())
            await asyncio.wait_for(got_job, 60)  # welcome, then a job once a block is open
            self.miners.append(miner)

    async def connect(self, n: int) -> None:
        gate = asyncio.Semaphore(_HANDSHAKES)
        await asyncio.gather(*(self._open_one(gate) for _ in range(n)))

    def on_frame(self, miner: Miner, frame: bytes | bytearray | memoryview, at: float) -> None:
        msg = orjson.loads(frame)
        kind = msg.get("type")
        if kind == "accepted" or kind == "rejected":
            nonce = int(msg["nonce"]) if msg.get("nonce") is not None else -1
            sent = miner.inflight.pop(nonce, None)
            if sent is not None:
                self.latencies.append(time.perf_counter() - sent)
            if kind == "accepted":
                self.acked += 1
            else:
                self.rejected += 1
            if miner.waker is not None:
                miner.waker.set()
        elif kind == "job":
            block = msg["block"]
            if block not in miner.blocks:
                miner.blocks[block] = at
                self._got_block.set()
            miner.job = msg["job"]
            miner.next_nonce = int(msg["nonceStart"])
            miner.nonce_end = int(msg["nonceEnd"])
            first = self._first_job.pop(miner, None)
            if first is not None and not first.done():
                first.set_result(None)
        elif kind == "block":
            block = msg["block"]
            if block not in miner.blocks:
                miner.blocks[block] = at
                self._got_block.set()
            if miner.slot is not None:
                slot, miner.next_nonce, miner.nonce_end = miner.slot
                miner.job = f"{slot}.{block}"
        elif kind == "slot":
            miner.slot = (msg["slot"], int(msg["nonceStart"]), int(msg["nonceEnd"]))
        elif kind == "error":
            self.errors += 1
            first = self._first_job.pop(miner, None)
            if first is not None and not first.done():
                first.set_exception(RuntimeError(f"server error: {msg.get('message')}"))

    async def close(self) -> None:
        for miner in self.miners:
            miner.close()
        await asyncio.sleep(0.2)  # let the close frames go out

    # ------------------------------------------------------------ push

    async def report(self, block: int, within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            missing = sum(1 for m in self.miners if block not in m.blocks)
            if not missing or time.monotonic() >= deadline:
                break
            self._got_block.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._got_block.wait(), max(0.0, deadline - time.monotonic()))
        times = [m.blocks[block] for m in self.miners if block in m.blocks]
        return {"times": times, "missing": missing, "closed": self.closed}

    # ------------------------------------------------------------ shares

    def _send_share(self, miner: Miner) -> bool:
        if miner.done or miner.next_nonce >= miner.nonce_end:
            return False
        nonce = miner.next_nonce
        miner.next_nonce = nonce + 1
        miner.inflight[nonce] = time.perf_counter()
        miner.send(f'{{"type":"share","job":"{miner.job}","nonce":"{nonce}"}}')
        return True

    async def _window(self, miner: Miner, window: int, until: float) -> int:
        sent = 0
        miner.waker = waker = asyncio.Event()
        while time.monotonic() < until and not miner.done:
            while len(miner.inflight) < window and self._send_share(miner):
                sent += 1
            waker.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), max(0.001, until - time.monotonic()))
        return sent

    async def _paced(self, rate: float, until: float) -> int:
        """Open loop: R shares/s over the sockets in turn, whatever the answers do.

        (So a slow answer delays no later share: no coordinated omission in the latencies.)
        """
        sent = 0
        start = time.monotonic()
        live = [m for m in self.miners if not m.done]
        turn = itertools.cycle(live)
        while True:
            now = time.monotonic()
            if now >= until:
                return sent
            due = int((now - start) * rate) - sent
            for _ in range(due):
                if self._send_share(next(turn)):
                    sent += 1
            await asyncio.sleep(0.001)

    async def shares(self, rate: float, window: int, seconds: float) -> dict[str, Any]:
        self.latencies = []
        self.acked = self.rejected = self.errors = 0
        for m in self.miners:
            m.inflight.clear()
        until = time.monotonic() + seconds
        t0 = time.perf_counter()
        if rate > 0:
            sent = await self._paced(rate, until)
        else:
            sent = sum(await asyncio.gather(*(self._window(m, window, until) for m in self.miners)))
        elapsed = time.perf_counter() - t0
        acked_in_time = self.acked + self.rejected
        # let answers to the last shares arrive, so they are not counted as lost
        settle = time.monotonic() + 5
        while any(m.inflight for m in self.miners) and time.monotonic() < settle:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polled: answers arrive in protocol callbacks, not on an Event
        for m in self.miners:
            m.waker = None
        lat = self.latencies
        if len(lat) > _LATENCY_SAMPLE:
            lat = random.Random(1).sample(lat, _LATENCY_SAMPLE)
        return {
            "sent": sent,
            "answered_in_window": acked_in_time,
            "accepted": self.acked,
            "rejected": self.rejected,
            "errors": self.errors,
            "unanswered": sum(len(m.inflight) for m in self.miners),
            "elapsed": elapsed,
            "latencies": lat,
            "latency_count": len(self.latencies),
        }


async def _main(args: argparse.Namespace) -> None:
    stdin = await Stdin.open()
    load = Load(args.url, args.tokens.split(","), args.ip, args.prefix, args.broadcast)
    try:
        while True:
            cmd = await stdin.command()
            match cmd.get("cmd"):
                case "connect":
                    await load.connect(int(cmd["n"]))
                    reply({"open": len(load.miners)})
                case "report":
                    reply(await load.report(int(cmd["block"]), float(cmd.get("timeout", 30))))
                case "shares":
                    reply(
                        await load.shares(
                            float(cmd.get("rate", 0)), int(cmd.get("window", 8)), float(cmd["seconds"])
                        )
                    )
                case "quit":
                    return
                case other:
                    reply({"error": f"unknown command {other!r}"})
    finally:
        await load.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", required=True, help="comma-separated miner tokens")
    parser.add_argument("--ip", default="127.0.0.1", help="loopback source address to bind")
    parser.add_argument("--prefix", default="w", help="worker name prefix")
    parser.add_argument("--broadcast", action="store_true", help="ask for block-broadcast in every hello")
    args = parser.parse_args(argv)
    if not args.ip.startswith("127."):
        parser.error("load generators bind loopback addresses only")
    raise_nofile(1 << 20)
    pin_from_env()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    return run_child(_main(args))


if __name__ == "__main__":
    sys.exit(main())
