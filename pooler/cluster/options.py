"""Settings of one instance of a Pooler group sharing state through Redis (``STORE=redis``).

No defaults here: :func:`pooler.app.options.cluster_options` derives them from
:class:`pooler.config.Settings` (``REDIS_URL``; ``POOLER_INSTANCE_ID``, this instance's name in
the group, unset: :func:`default_instance_id`; ``LEADER_LEASE_MS``, how long the lease lasts
without renewal) and from :data:`pooler.app.options.TUNING` (drift, key prefix, chunk size,
Redis timeout: fixed values that are not settings).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from pooler.errors import ConfigError

_INSTANCE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """What :class:`pooler.cluster.node.ClusterNode` needs besides the Pooler's own options.

    ``lease_ttl`` seconds: the lease's expiry in Redis. The holder renews it every
    ``lease_ttl / 3`` and believes itself leader only until ``lease_ttl * (1 - drift)``
    after the start of its last successful renewal (measured on its monotonic clock,
    before the command was sent, so Redis always expires the key later than we stop).
    ``key_prefix`` separates several pools on one Redis.
    """

    redis_url: str
    instance_id: str
    lease_ttl: float
    drift: float
    key_prefix: str
    chunk_bits: int  # nonces per INCRBY'd chunk (log2)
    redis_timeout: float  # socket timeout of every Redis command: a hung Redis is a down Redis

    def __post_init__(self) -> None:
        if not _INSTANCE.fullmatch(self.instance_id):
            raise ConfigError(
                f"POOLER_INSTANCE_ID={self.instance_id!r} is not valid: expected 1-64 of A-Z a-z 0-9 _ . -"
            )
        if not 0.2 <= self.lease_ttl <= 600:
            raise ConfigError(
                f"LEADER_LEASE_MS={round(self.lease_ttl * 1000)} is not valid: expected 200..600000 ms"
            )
        if not 0 <= self.drift < 0.5:
            raise ConfigError(f"lease drift {self.drift} is not valid: expected 0 <= drift < 0.5")
        if not 20 <= self.chunk_bits <= 56:
            raise ConfigError(f"chunk_bits {self.chunk_bits} is not valid: expected 20..56")
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,32}", self.key_prefix):
            raise ConfigError(
                f"key prefix {self.key_prefix!r} is not valid: expected 1-32 of A-Z a-z 0-9 _ . : -"
            )

    @property
    def renew_interval(self) -> float:
        return self.lease_ttl / 3


def default_instance_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"
