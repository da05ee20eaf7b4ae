"""``Devnet``: the farm contract model, its Soroban RPC server and the Backend, started together.

    async with Devnet(block_interval=20, ledger_seconds=1) as net:
        ...  # net.rpc_url, net.backend_url, net.contract_id, net.contract, net.backend_faults

Both servers listen on loopback; port 0 picks free ports. The model is shared, so a plant
through the Backend is visible at once through the RPC (as after one ledger on mainnet).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from pooler.devnet.backend import Backend, BackendFaults
from pooler.devnet.contract import BLOCK_INTERVAL, FarmContract
from pooler.devnet.ledger import ASSET_ID, CONTRACT_ID, HOMESTEADER, NETWORK_PASSPHRASE
from pooler.devnet.rpc import SorobanRpc
from pooler.devnet.serve import LoopbackServer
from pooler.errors import DevnetError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Devnet:
    """A local KALE chain (Soroban RPC) and Phase-1 Backend; use as an async context manager."""

    def __init__(
        self,
        *,
        block_interval: int = BLOCK_INTERVAL,
        ledger_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        start_index: int = 1,
        host: str = "127.0.0.1",
        rpc_port: int = 0,
        backend_port: int = 0,
        faucet: int = 1000_0000000,
        faults: BackendFaults | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if host not in LOOPBACK:
            raise DevnetError(f"the devnet listens on loopback only, not {host!r}")
        self.contract = FarmContract(
            clock=clock,
            block_interval=block_interval,
            ledger_seconds=ledger_seconds,
            start_index=start_index,
            faucet=faucet,
            homesteader=HOMESTEADER,
            asset=ASSET_ID,
        )
        self.contract_id = CONTRACT_ID
        self.network_passphrase = NETWORK_PASSPHRASE
        self.rpc = SorobanRpc(self.contract, contract_id=self.contract_id, passphrase=self.network_passphrase)
        self.backend = Backend(self.contract, faults=faults, sleep=sleep)
        self.backend_faults = self.backend.faults
        self._rpc_server = self.rpc.server(host=host, port=rpc_port)  # owned: stopped in stop()
        self._backend_server: LoopbackServer = self.backend.server(host=host, port=backend_port)

    @property
    def rpc_url(self) -> str:
        return self._rpc_server.url

    @property
    def backend_url(self) -> str:
        return self._backend_server.url

    async def start(self) -> None:
        await self._rpc_server.start()
        try:
            await self._backend_server.start()
        except BaseException:
            await self._rpc_server.stop()
            raise

    async def stop(self) -> None:
        try:
            await self._backend_server.stop()
        finally:
            await self._rpc_server.stop()

    async def __aenter__(self) -> Devnet:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
