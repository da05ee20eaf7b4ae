"""The Starlette app: miner WebSocket, REST fallback, dashboard stream and page, health."""
