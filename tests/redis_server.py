"""A real ``redis-server`` for tests: its own loopback port and temp dir, AOF on, stopped at the end.

``./dev.sh test`` installs Debian's ``redis-server`` when it is missing. The server is configured as
docs/scale-out.md recommends (appendonly with fsync always, noeviction), so a restart in a test
shows what a production restart would keep.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# pids of the live servers: each is owned by its RedisServer (often a module fixture), whichever
# test (re)started it, so the per-test process check of tests/conftest.py leaves them alone
OWNED_PIDS: set[int] = set()


class RedisServer:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError(
                "redis-server is not installed: apt-get install -y redis-server (./dev.sh test does)"
            )
        self.exe = exe
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="kp-redis-")
        self.dir = Path(self._dir.name)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        OWNED_PIDS.add(self.proc.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)  # a bounded poll in sync code (fixtures, threads): wait_until is async
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self, *, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        OWNED_PIDS.discard(proc.pid)
        if kill:
            proc.kill()
        else:
            proc.terminate()  # SIGTERM: redis flushes the AOF and exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._dir.cleanup()
