"""Runnable example clients of the Pooler: CPU miners (WebSocket, REST), kale-miner bridge, dashboard tail.

Run them from the repository root, e.g. ``.venv/bin/python examples/ws_miner.py --help``.
"""
