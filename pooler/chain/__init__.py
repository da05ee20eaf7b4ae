"""Reading the KALE farm contract's state from Soroban RPC, and watching it for new blocks.

``reader`` builds the ledger keys and decodes the contract's storage into typed records;
``monitor`` polls it and turns changes into coordinator events; ``backoff`` holds the retry
schedule shared with the Backend client.
"""

from __future__ import annotations

from pooler.chain.monitor import BlockMonitor
from pooler.chain.reader import BlockRecord, ChainSnapshot, FarmReader, FarmState, PailRecord

__all__ = ["BlockMonitor", "BlockRecord", "ChainSnapshot", "FarmReader", "FarmState", "PailRecord"]
