"""Helpers shared by the component and end-to-end tests: a running devnet + Pooler, clients, mining."""
