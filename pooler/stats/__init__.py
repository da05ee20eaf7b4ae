"""Durable share and block history, and the in-memory aggregates the stats API answers from.

:class:`~pooler.stats.history.History` is fed by the runner with each batch's effects (the
share answers and the core's typed records), keeps 1-minute buckets for 24 h and 1-hour buckets
for 30 days per worker, per miner and for the pool, and one summary per block; it returns the
buckets and block summaries the batch changed as ``Persist`` records, which the runner commits
in the same transaction as the batch's own records (before the acks go out). Stores make them
rows (SQLite) or hashes (Redis) and load them back at start (:meth:`History.load`).
"""
