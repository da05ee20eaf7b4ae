"""Running an aiohttp.web application on a loopback port, with a clean stop.

Both devnet servers (Soroban RPC, Backend) start and stop through :class:`LoopbackServer`,
which owns the aiohttp runner: ``stop()`` closes the listening socket and every connection.
"""

from __future__ import annotations

from aiohttp import web

from pooler.errors import DevnetError


class LoopbackServer:
    """One ``web.Application`` served on ``host:port`` (port 0 = any free port)."""

    def __init__(self, app: web.Application, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None  # set while serving; None before start / after stop
        self.port = 0  # the bound port, known once started

    @property
    def url(self) -> str:
        if self._runner is None:
            raise DevnetError("the server is not running")
        return f"http://{self._host}:{self.port}"

    async def start(self) -> str:
        """Bind and serve; returns the base URL."""
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise DevnetError(f"cannot listen on {self._host}:{self._port}: {e}") from e
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
