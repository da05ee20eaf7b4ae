"""Alerts: what an operator is told about at once, as immutable values (issue #15, part 5).

One frozen value per kind of alert. The coordinator will emit the ones only it can judge (a
planted farmer's stake at risk, a silent worker, a block whose work or harvest failed); the
observer in ``pooler/app`` raises the ones it already knows about (the Backend or the chain
RPC down, and back up). Both only build values; what happens to an alert (the dashboard
stream, ``pooler_alerts_total``, the webhook) is decided in ``pooler/app/alerts.py``.

:func:`alert_record` is the one JSON shape of an alert, shared by the dashboard's ``alert``
event (docs/events.md) and the webhook's body (docs/operations.md, "Alerts")::

    {"kind": "backend-down", "status": "firing", "severity": "critical",
     "key": "backend-down", "summary": "Backend down since 12:00:00 UTC: ...",
     "data": {"since": 1760000000000, "detail": "..."}}

- ``kind`` is :data:`ALERT_KINDS`; a :class:`Resolved` has kind ``resolved``, ``status``
  ``resolved`` and names what it ends in ``data.resolves``;
- ``key`` is the same for an alert and the ``resolved`` that ends it (a receiver can pair
  them, or deduplicate repeats);
- ``data`` is camelCase; times are unix milliseconds, durations seconds.

Pure: no clock is read here (times are given), nothing is imported from above the core, and
no value carries a token (farmer and miner ids are public, as a pool's addresses are).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Literal

AlertKind = Literal[
    "stake-at-risk",
    "worker-silent",
    "backend-down",
    "chain-rpc-down",
    "work-failed",
    "harvest-failed",
    "reward-unknown",
    "resolved",
]
ALERT_KINDS: Final[tuple[AlertKind, ...]] = (
    "stake-at-risk",
    "worker-silent",
    "backend-down",
    "chain-rpc-down",
    "work-failed",
    "harvest-failed",
    "reward-unknown",
    "resolved",
)
"""Every ``kind`` (the ``kind`` label of ``pooler_alerts_total``)."""

Severity = Literal["critical", "warning", "info"]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _clock(seconds: float) -> str:
    """``HH:MM:SS UTC`` of a unix time, for summaries (pure arithmetic: no datetime in the core)."""
    of_day = int(seconds) % 86_400
    return f"{of_day // 3600:02d}:{of_day % 3600 // 60:02d}:{of_day % 60:02d} UTC"


def _farmers(farmers: tuple[str, ...]) -> str:
    shown = ", ".join(farmers[:5])
    return shown + (f" and {len(farmers) - 5} more" if len(farmers) > 5 else "")


@dataclass(frozen=True, slots=True)
class StakeAtRisk:
    """A planted farmer has no share at or above the previous block's on-chain min zeros
    ``seconds_before_work`` seconds before workAt: its stake may earn nothing this block."""

    kind: ClassVar[Literal["stake-at-risk"]] = "stake-at-risk"
    severity: ClassVar[Severity] = "critical"

    farmer_id: str
    block: int
    best_zeros: int | None  # the farmer's best share of this block; None: no share at all
    min_zeros: int  # the previous block's min zeros on chain (FarmBlock.min_zeros)
    seconds_before_work: float  # how long before workAt this was judged
    fallback_search: bool  # the Pooler's local fallback search took over for the farmer

    @property
    def key(self) -> str:
        return f"stake-at-risk:{self.block}:{self.farmer_id}"

    def summary(self) -> str:
        best = "no share" if self.best_zeros is None else f"best share {self.best_zeros} zeros"
        search = "the local search took over" if self.fallback_search else "no local search"
        return (
            f"farmer {self.farmer_id}, block {self.block}: {best} {self.seconds_before_work:g} s before "
            f"workAt, the previous block's min is {self.min_zeros} zeros ({search})"
        )

    def data(self) -> dict[str, object]:
        return {
            "farmerId": self.farmer_id,
            "block": self.block,
            "bestZeros": self.best_zeros,
            "minZeros": self.min_zeros,
            "secondsBeforeWorkAt": self.seconds_before_work,
            "fallbackSearch": self.fallback_search,
        }


@dataclass(frozen=True, slots=True)
class WorkerSilent:
    """A worker that was active sent nothing for ``minutes`` (the dead-rig alert)."""

    kind: ClassVar[Literal["worker-silent"]] = "worker-silent"
    severity: ClassVar[Severity] = "warning"

    miner_id: str
    worker: str
    silent_since: float  # unix seconds of the last thing heard from it
    minutes: float  # the threshold that was passed

    @property
    def key(self) -> str:
        return f"worker-silent:{self.miner_id}:{self.worker}"

    def summary(self) -> str:
        return (
            f"worker {self.worker!r} of miner {self.miner_id} silent for {self.minutes:g} min "
            f"(since {_clock(self.silent_since)})"
        )

    def data(self) -> dict[str, object]:
        return {
            "minerId": self.miner_id,
            "worker": self.worker,
            "silentSince": _ms(self.silent_since),
            "minutes": self.minutes,
        }


@dataclass(frozen=True, slots=True)
class _DependencyDown:
    """A dependency has not answered since ``since`` (one alert per outage: the key is the kind)."""

    kind: ClassVar[str]
    severity: ClassVar[Severity] = "critical"
    what: ClassVar[str]  # the dependency, as the summary names it

    since: float  # unix seconds of the first failure of this outage
    detail: str  # what failed first, for people

    @property
    def key(self) -> str:
        return self.kind

    def summary(self) -> str:
        return f"{self.what} down since {_clock(self.since)}: {self.detail}"

    def data(self) -> dict[str, object]:
        return {"since": _ms(self.since), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class BackendDown(_DependencyDown):
    """The Phase-1 Backend has not answered since ``since``."""

    kind: ClassVar[Literal["backend-down"]] = "backend-down"
    what: ClassVar[str] = "Backend"


@dataclass(frozen=True, slots=True)
class ChainRpcDown(_DependencyDown):
    """The chain's Soroban RPC has not answered a poll since ``since``."""

    kind: ClassVar[Literal["chain-rpc-down"]] = "chain-rpc-down"
    what: ClassVar[str] = "chain RPC"


@dataclass(frozen=True, slots=True)
class WorkFailed:
    """Block ``block``'s work was not recorded for ``farmers`` (refused, or the deadline passed)."""

    kind: ClassVar[Literal["work-failed"]] = "work-failed"
    severity: ClassVar[Severity] = "critical"

    block: int
    farmers: tuple[str, ...]  # farmer ids
    reason: str

    @property
    def key(self) -> str:
        return f"work-failed:{self.block}"

    def summary(self) -> str:
        return f"block {self.block}: work failed for {_farmers(self.farmers)}: {self.reason}"

    def data(self) -> dict[str, object]:
        return {"block": self.block, "farmers": list(self.farmers), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class HarvestFailed:
    """Block ``block`` could not be harvested for ``farmers`` (their rewards are lost)."""

    kind: ClassVar[Literal["harvest-failed"]] = "harvest-failed"
    severity: ClassVar[Severity] = "critical"

    block: int
    farmers: tuple[str, ...]
    reason: str

    @property
    def key(self) -> str:
        return f"harvest-failed:{self.block}"

    def summary(self) -> str:
        return f"block {self.block}: harvest failed for {_farmers(self.farmers)}: {self.reason}"

    def data(self) -> dict[str, object]:
        return {"block": self.block, "farmers": list(self.farmers), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RewardUnknown:
    """Block ``block`` was harvested for ``farmers`` (the chain shows their pails gone) but the
    answer that would say their rewards was lost, and no final projection tells them: their
    rewards and the block's total are recorded as unknown, not as 0."""

    kind: ClassVar[Literal["reward-unknown"]] = "reward-unknown"
    severity: ClassVar[Severity] = "warning"

    block: int
    farmers: tuple[str, ...]
    reason: str

    @property
    def key(self) -> str:
        return f"reward-unknown:{self.block}"

    def summary(self) -> str:
        return f"block {self.block}: harvested for {_farmers(self.farmers)}, reward unknown: {self.reason}"

    def data(self) -> dict[str, object]:
        return {"block": self.block, "farmers": list(self.farmers), "reason": self.reason}


Ongoing = BackendDown | ChainRpcDown | WorkerSilent
"""Alerts about a state that can end, so a :class:`Resolved` follows them."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """``alert``'s condition is over (the Backend or RPC answers again, the worker is back)."""

    kind: ClassVar[Literal["resolved"]] = "resolved"
    severity: ClassVar[Severity] = "info"

    alert: Ongoing
    at: float  # unix seconds it was seen to be over
    detail: str = ""

    @property
    def key(self) -> str:
        return self.alert.key  # pairs with the alert it resolves

    @property
    def since(self) -> float:
        """When the condition began."""
        return self.alert.silent_since if isinstance(self.alert, WorkerSilent) else self.alert.since

    def summary(self) -> str:
        lasted = f"{self.at - self.since:.0f} s"
        match self.alert:
            case BackendDown():
                what = f"Backend answers again after {lasted} down"
            case ChainRpcDown():
                what = f"chain RPC answers again after {lasted} down"
            case WorkerSilent(miner_id=miner, worker=worker):
                what = f"worker {worker!r} of miner {miner} is back after {lasted} silent"
        return what + (f": {self.detail}" if self.detail else "")

    def data(self) -> dict[str, object]:
        return {
            "resolves": self.alert.kind,
            **self.alert.data(),
            "resolvedAt": _ms(self.at),
            "lastedSeconds": round(self.at - self.since, 3),
            "resolution": self.detail,
        }


Alert = (
    StakeAtRisk
    | WorkerSilent
    | BackendDown
    | ChainRpcDown
    | WorkFailed
    | HarvestFailed
    | RewardUnknown
    | Resolved
)
"""Every alert value."""


def alert_record(alert: Alert) -> dict[str, object]:
    """The JSON object of ``alert`` (the module docstring): the dashboard event's data, and the
    webhook body without its envelope (``id``, ``at``, ``pooler``)."""
    return {
        "kind": alert.kind,
        "status": "resolved" if isinstance(alert, Resolved) else "firing",
        "severity": alert.severity,
        "key": alert.key,
        "summary": alert.summary(),
        "data": alert.data(),
    }


__all__ = [
    "ALERT_KINDS",
    "Alert",
    "AlertKind",
    "BackendDown",
    "ChainRpcDown",
    "HarvestFailed",
    "Ongoing",
    "Resolved",
    "StakeAtRisk",
    "WorkFailed",
    "WorkerSilent",
    "alert_record",
]
