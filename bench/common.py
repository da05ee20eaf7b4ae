"""What every benchmark shares: the machine record, percentiles, the open-file limit, child processes.

Child processes speak JSON lines: the parent writes one command object per line on the child's
stdin, the child answers with one object per line on stdout (stderr is left for diagnostics).
Every wait on a child is bounded; a child that does not answer in time is killed by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import math
import os
import platform
import resource
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("uvicorn", "uvloop", "websockets", "starlette", "orjson", "httptools", "aiohttp", "safe-pysha3")


def machine() -> dict[str, Any]:
    """The machine a result was measured on: enough to tell two runs' setups apart."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": versions,
        "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "loadavg_at_start": os.getloadavg()[0],
    }


def raise_nofile(want: int) -> int:
    """Raise this process's open-file soft limit towards ``want`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def placement() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load-generator CPUs): the server alone on CPU 0, everything else on the rest.

    Pinning keeps the load generators from taking the server's core, so a figure is the server's
    and not the scheduler's; on one CPU nothing is pinned. ``BENCH_NO_PIN=1`` turns it off.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or os.environ.get("BENCH_NO_PIN"):
        return None, None
    return {cpus[0]}, set(cpus[1:])


def pin_from_env() -> None:
    """In a child: apply the CPU set the parent chose (threads started later inherit it)."""
    spec = os.environ.get("BENCH_CPUS")
    if spec:
        os.sched_setaffinity(0, {int(c) for c in spec.split(",")})


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted sequence; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p99/max (and count) of latencies given in seconds, reported in milliseconds."""
    s = sorted(values)
    return {
        "n": len(s),
        "p50_ms": round(percentile(s, 50) * 1000, 3),
        "p99_ms": round(percentile(s, 99) * 1000, 3),
        "max_ms": round((s[-1] if s else math.nan) * 1000, 3),
    }


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def child_env() -> dict[str, str]:
    """Children import ``bench`` and ``pooler`` from this checkout whatever the caller's cwd."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """A benchmark child process (``python -m bench.<module> ...``) driven over JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc  # owned: stopped by close()
        self.name = name  # for error messages

    @classmethod
    async def start(
        cls, module: str, *args: str, name: str | None = None, cpus: set[int] | None = None
    ) -> Child:
        env = child_env()
        if cpus:
            env["BENCH_CPUS"] = ",".join(map(str, sorted(cpus)))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
            limit=64 * 1024 * 1024,  # reports carry up to a few hundred thousand latencies
        )
        return cls(proc, name or module)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(command) + b"\n")

    async def read(self, within: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        except TimeoutError:
            raise RuntimeError(f"{self.name} (pid {self.pid}) did not answer within {within:g} s") from None
        if not line:
            code = await asyncio.wait_for(self.proc.wait(), 5)
            raise RuntimeError(f"{self.name} (pid {self.pid}) exited with code {code}")
        reply: dict[str, Any] = orjson.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {reply['error']}")
        return reply

    async def ask(self, command: dict[str, Any], within: float) -> dict[str, Any]:
        self.send(command)
        return await self.read(within)

    async def close(self, within: float = 20.0) -> None:
        """Ask the child to quit (stdin closed), then terminate and kill it if it lingers."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


async def close_all(children: Sequence[Child]) -> None:
    await asyncio.gather(*(c.close() for c in children), return_exceptions=True)


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible (no zero parts unless total < parts)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts) if base + (1 if i < extra else 0) > 0]


class Stdin:
    """Line reader of a child's stdin on the running loop (the command channel)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    @classmethod
    async def open(cls) -> Stdin:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return cls(reader)

    async def command(self) -> dict[str, Any]:
        """The next command; ``{"cmd": "quit"}`` at end of input (the parent went away)."""
        line = await self._reader.readline()
        if not line:
            return {"cmd": "quit"}
        command: dict[str, Any] = orjson.loads(line)
        return command


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.buffer.flush()


def now() -> float:
    """The one clock shared by all processes of a run (same host): unix seconds."""
    return time.time()


def run_on_uvloop(main: Any) -> Any:
    """Run a coroutine on uvloop (what ``pooler serve`` uses); asyncio's loop where it is missing."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run_child(main: Any) -> int:
    """A benchmark child's body on uvloop; a failure is also told to the parent (one ``error``
    line on stdout) before it propagates, so the parent reports why instead of a dead pipe."""
    try:
        run_on_uvloop(main)
    except Exception as exc:
        with contextlib.suppress(Exception):
            reply({"error": f"{type(exc).__name__}: {exc}"})
        raise
    return 0


class Profiler:
    """``py-spy record`` attached to a child for a while (``--profile``); collapsed stacks to a file."""

    def __init__(self, proc: asyncio.subprocess.Process | None, out: Path) -> None:
        self.proc = proc  # owned: stopped by stop(); None when py-spy is not installed
        self.out = out

    @classmethod
    async def attach(cls, pid: int, out: Path) -> Profiler:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not os.path.exists(spy):  # noqa: ASYNC240 (one stat before a profile starts)
            print("  (py-spy not installed: pip install py-spy; profiling skipped)", flush=True)
            return cls(None, out)
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)  # attached before the load starts
        return cls(proc, out)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        print(f"  profile: {self.out}", flush=True)
