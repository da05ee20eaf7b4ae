"""kale-pooler: the Pooler of the KALE Pool Mining System.

Layout (each folder one concept; see README "Architecture"):
- ``pooler.core``    the coordinator: a pure state machine, ``handle(event, now) -> effects``
- ``pooler.runtime`` the one asyncio runner that feeds the core and performs its effects
- ``pooler.chain``   the block monitor (Soroban RPC through stellar-sdk)
- ``pooler.backend`` the Phase-1 Backend client (aiohttp)
- ``pooler.web``     the Starlette app: miner WebSocket, REST fallback, dashboard
- ``pooler.store``   durable state
- ``pooler.devnet``  a local KALE chain + reference Backend speaking the real wire formats
"""

__version__ = "0.1.0"
