"""Print the Pooler's dashboard event stream, one line per event.

    python examples/dashboard_tail.py                                   # WebSocket /ws/events
    python examples/dashboard_tail.py --url http://127.0.0.1:3001/events --count 20   # Server-Sent Events
    python examples/dashboard_tail.py --json --duration 60             # raw JSON lines

Every frame (or SSE ``data:``) is one JSON object ``{"type": "event", "kind", "at", "data"}``; the
first is a ``snapshot``. The schema is in docs/events.md. ``ws://`` URLs use the ``websockets`` client,
``http://`` URLs are read as Server-Sent Events with aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from typing import Any

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

__all__ = ["SseParser", "format_event", "format_kale", "main"]


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


async def ws_frames(url: str) -> AsyncGenerator[str, None]:
    async with connect(url, proxy=None, open_timeout=10) as ws:
        async for frame in ws:
            yield frame if isinstance(frame, str) else frame.decode("utf-8", "replace")


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
) -> int:
    """Print events until ``count`` were printed or ``duration`` passed; the number printed."""
    frames = sse_frames(url) if url.startswith(("http://", "https://")) else ws_frames(url)
    printed = 0

    async def consume() -> None:
        nonlocal printed
        async for frame in frames:
            try:
                event = json.loads(frame)
            except ValueError:
                out(f"??? not JSON: {frame[:200]}")
                continue
            out(json.dumps(event, separators=(",", ":")) if raw else format_event(event))
            printed += 1
            if count is not None and printed >= count:
                return

    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consume(), duration)
    finally:
        await frames.aclose()
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
    except (OSError, aiohttp.ClientError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
        print(f"event stream {args.url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
