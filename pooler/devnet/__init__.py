"""The local KALE devnet: a farm contract model behind Soroban JSON-RPC and a Phase-1 Backend."""
