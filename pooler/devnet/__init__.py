"""The local KALE devnet: a farm contract model behind Soroban JSON-RPC and a Phase-1 Backend.

``Devnet`` (an async context manager) starts both on loopback; ``pooler devnet`` runs it from
the command line. See docs/devnet.md.
"""

from pooler.devnet.backend import Backend, BackendFaults
from pooler.devnet.contract import FarmContract
from pooler.devnet.net import Devnet

__all__ = ["Backend", "BackendFaults", "Devnet", "FarmContract"]
