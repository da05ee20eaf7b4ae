"""Scale-out: several Pooler instances sharing state through Redis (``STORE=redis``).

Every instance serves miners and dashboards; one at a time, the holder of a fenced leader
lease, runs the block cycle. docs/scale-out.md describes the deployment; the theory of
operation is in :mod:`pooler.cluster.node` (roles), :mod:`pooler.cluster.lease` (lease and
fencing) and :mod:`pooler.store.redis` (what is shared, and how a batch becomes durable).
"""

from pooler.cluster.options import ClusterOptions

__all__ = ["ClusterOptions"]
