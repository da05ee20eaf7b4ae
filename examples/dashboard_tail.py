"""Print the Pooler's dashboard event stream, one line per event.

    python examples/dashboard_tail.py                                   # WebSocket /ws/events
    python examples/dashboard_tail.py --url http://127.0.0.1:3001/events --count 20   # Server-Sent Events
    python examples/dashboard_tail.py --json --duration 60             # raw JSON lines

Every frame (or SSE ``data:``) is one JSON object ``{"type": "event", "kind", "at", "data"}``; the
first is a ``snapshot``. The schema is in docs/events.md. ``ws://`` URLs use the ``websockets`` client,
``http://`` URLs are read as Server-Sent Events with aiohttp.

Once the stream has delivered an event, losing it is not the end: a close with a code that means
"come back later" (1012 service restart, as a Pooler restart sends; 1001 going away, 1011, 1013,
1014), a connection dropped without a close frame (1006), a Server-Sent Events stream that ends, or
a failed reconnect attempt (the Pooler still down) are retried with exponential backoff and jitter
(``minerkit.Backoff``, 0.5 s doubling to 15 s), each reconnect printing one line on stderr and
starting again with a ``snapshot``. A first connection that fails, or a close with any other code
(1008 policy, 1003 ...), ends the tail with exit status 1; a normal close (1000), with 0.
``--count`` and ``--duration`` count across reconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from examples.minerkit import Backoff

__all__ = ["RECONNECT_CODES", "SseParser", "StreamClosed", "format_event", "format_kale", "main", "tail"]

# WebSocket close codes after which the stream is worth reconnecting to: going away (1001), no close
# frame (1006), server error (1011), service restart (1012: what a Pooler restart sends), try again
# later (1013), bad gateway (1014)
RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


# ---------------------------------------------------------------- pure parts


class SseParser:
    """Incremental Server-Sent Events parser: feed text, get each event's ``data`` (lines joined by \\n).

    Only ``data`` matters for this stream; ``event``, ``id``, ``retry`` and comments are skipped.
    """

    def __init__(self) -> None:
        self._buffer = ""  # text after the last complete line
        self._data: list[str] = []  # data lines of the event being read

    def feed(self, text: str) -> Iterator[str]:
        self._buffer += text
        *lines, self._buffer = self._buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for line in lines:
            if not line:
                if self._data:
                    yield "\n".join(self._data)
                    self._data = []
            elif line.startswith("data"):
                name, _, value = line.partition(":")
                if name == "data":
                    self._data.append(value[1:] if value.startswith(" ") else value)


def format_kale(stroops: object) -> str:
    """A stroop amount (7 decimals, as a decimal string) as KALE: ``"25050000000"`` -> ``2505.0000000``."""
    text = str(stroops)
    if not text.isdigit():
        return text
    text = text.rjust(8, "0")
    return f"{int(text[:-7])}.{text[-7:]}"


def _clock(ms: object) -> str:
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))


def _rate(value: object) -> str:
    rate = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
    for unit in ("H/s", "kH/s", "MH/s"):
        if rate < 1000:
            return f"{rate:.1f} {unit}"
        rate /= 1000
    return f"{rate:.1f} GH/s"


def _ok(d: dict[str, Any]) -> str:
    return "ok" if d.get("ok") else f"FAILED ({d.get('error', 'no detail')})"


def _summary(d: dict[str, Any]) -> str:
    best = d.get("bestZeros")
    best_text = ", ".join(f"{k}={v}" for k, v in best.items()) if isinstance(best, dict) and best else "-"
    return (
        f"block {d.get('block')} {d.get('phase')}: {d.get('miners', 0)} miners,"
        f" {d.get('workers', 0)} workers,"
        f" {_rate(d.get('hashrate'))}, accepted {d.get('accepted', 0)}, rejected {d.get('rejected', 0)},"
        f" best zeros {best_text}"
    )


def _describe(kind: str, d: dict[str, Any]) -> str:
    times = f"work at {_clock(d.get('workAt'))}, ends {_clock(d.get('blockEndsAt'))}"
    match kind:
        case "snapshot":
            summary = d.get("summary")
            head = _summary(summary if isinstance(summary, dict) else {})
            return (
                f"{head}; {len(d.get('recent') or [])} recent events,"
                f" {len(d.get('blocks') or [])} blocks of history"
            )
        case "block":
            entropy = str(d.get("entropy", ""))
            return f"block {d.get('block')} opened, entropy {entropy[:12]}..., {times}"
        case "phase":
            return f"block {d.get('block')} -> {d.get('phase')} ({times})"
        case "plant":
            return (
                f"block {d.get('block')} plant {_ok(d)}: {d.get('successfulPlants', 0)} planted,"
                f" {d.get('failedPlants', 0)} failed, staked {format_kale(d.get('totalStaked', '0'))} KALE"
            )
        case "work":
            subs = d.get("submissions") or []
            zeros = ", ".join(str(s.get("zeros")) for s in subs if isinstance(s, dict))
            return (
                f"block {d.get('block')} work {_ok(d)}: {len(subs)} submitted (zeros {zeros or '-'}),"
                f" valid {d.get('validNonces', 0)}, invalid {d.get('invalidNonces', 0)}"
            )
        case "harvest":
            return (
                f"block {d.get('block')} harvest {_ok(d)}: {d.get('successfulHarvests', 0)} harvested,"
                f" {d.get('failedHarvests', 0)} failed,"
                f" rewards {format_kale(d.get('totalRewards', '0'))} KALE"
            )
        case "miner":
            worker = f" worker {d['worker']}" if d.get("worker") else ""
            return f"miner {d.get('minerId')} (farmer {d.get('farmerId')}) {d.get('event')}{worker}"
        case "summary":
            return _summary(d)
        case "chain":
            return f"chain {'ok' if d.get('ok') else 'DOWN'}: {d.get('detail', '')}"
        case "alert":
            level = "resolved" if d.get("status") == "resolved" else str(d.get("severity", "alert")).upper()
            return f"{level}: {d.get('summary', d.get('kind'))}"
    return json.dumps(d, separators=(",", ":"))[:300]


def format_event(event: object) -> str:
    """One line for one stream object: ``HH:MM:SS.mmm kind  description`` (UTC)."""
    if not isinstance(event, dict):
        return f"??? not an event object: {json.dumps(event)[:200]}"
    kind = str(event.get("kind", "?"))
    at = event.get("at")
    stamp = (
        f"{_clock(at)}.{int(at) % 1000:03d}"
        if isinstance(at, int) and not isinstance(at, bool)
        else "--:--:--.---"
    )
    data = event.get("data")
    return _printable(f"{stamp} {kind:<8} {_describe(kind, data if isinstance(data, dict) else {})}")


def _printable(text: str) -> str:
    """Control characters from the stream are shown escaped, never sent to the terminal raw."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# ---------------------------------------------------------------- stream readers


class StreamClosed(Exception):
    """The server closed the WebSocket stream with ``code`` (1006: no close frame came)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed with code {code}{f' ({reason})' if reason else ''}")
        self.code = code
        self.reason = reason

    @property
    def retry(self) -> bool:
        return self.code in RECONNECT_CODES


async def ws_frames(url: str) -> AsyncGenerator[str, None]:
    """The frames of one WebSocket connection; its end raises :class:`StreamClosed`."""
    async with connect(url, proxy=None, open_timeout=10, close_timeout=2) as ws:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                yield frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        code = ws.close_code if ws.close_code is not None else 1006
        raise StreamClosed(code, ws.close_reason or "")


async def sse_frames(url: str) -> AsyncGenerator[str, None]:
    parser = SseParser()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url, headers={"Accept": "text/event-stream"}) as resp,
    ):
        if resp.status != 200:
            raise aiohttp.ClientResponseError(
                resp.request_info, (), status=resp.status, message=resp.reason or ""
            )
        async for chunk in resp.content.iter_any():
            for data in parser.feed(chunk.decode("utf-8", "replace")):
                yield data


async def tail(
    url: str,
    count: int | None,
    duration: float | None,
    raw: bool,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    backoff: Backoff | None = None,
) -> int:
    """Print events until ``count`` were printed or ``duration`` passed, reconnecting as the
    module docstring says; the number printed. Raises what ended the stream for good."""
    sse = url.startswith(("http://", "https://"))
    backoff = backoff or Backoff(base=0.5, cap=15.0)
    printed = 0
    delivered = False  # some connection delivered an event: from now on, losing it is retried

    async def consume() -> None:
        nonlocal printed, delivered
        while True:
            frames = sse_frames(url) if sse else ws_frames(url)
            fresh = True
            try:
                async for frame in frames:
                    if fresh:
                        fresh, delivered = False, True
                        backoff.reset()
                    try:
                        event = json.loads(frame)
                    except ValueError:
                        out(f"??? not JSON: {frame[:200]}")
                        continue
                    out(json.dumps(event, separators=(",", ":")) if raw else format_event(event))
                    printed += 1
                    if count is not None and printed >= count:
                        return
                if not delivered:
                    raise ConnectionError("the stream ended before its first event")
                why = "ended"  # an SSE response that ends: the server went
            except StreamClosed as exc:
                if exc.code == 1000:
                    err(f"event stream {url}: {exc}")
                    return
                if not (delivered and exc.retry):
                    raise
                why = str(exc)
            except (OSError, TimeoutError, aiohttp.ClientError, InvalidHandshake) as exc:
                if not delivered:
                    raise
                why = f"lost ({exc or type(exc).__name__})"
            finally:
                await frames.aclose()
            delay = backoff.next()
            err(f"event stream {why}; reconnecting in {delay:.1f} s")
            await asyncio.sleep(delay)

    limit = asyncio.timeout(duration)
    try:
        async with limit:
            await consume()
    except TimeoutError:
        if not limit.expired():
            raise  # a first connection that timed out, not --duration
    return printed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Print the KALE Pooler's dashboard event stream")
    parser.add_argument(
        "--url",
        default="ws://127.0.0.1:3001/ws/events",
        help="ws://HOST/ws/events (WebSocket) or http://HOST/events (Server-Sent Events)",
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N events")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    parser.add_argument("--json", action="store_true", help="print each event as raw JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count is not None and args.count < 1:
        parser.error("--count must be at least 1")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    try:
        asyncio.run(tail(args.url, args.count, args.duration, args.json))
    except KeyboardInterrupt:
        return 130
    except (
        OSError,
        TimeoutError,
        aiohttp.ClientError,
        ConnectionClosed,
        InvalidHandshake,
        InvalidURI,
        StreamClosed,
    ) as exc:
        print(f"event stream {args.url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
