"""The Phase-1 Backend as the core sees it: typed requests out, typed replies back.

The core builds a request for each ``CallBackend`` and interprets the reply the runtime posts
back in a ``BackendResult``; the JSON of both is made and read at the edge
(:mod:`pooler.backend`: ``request_body`` and ``parse_reply``), which also decides the lenient
readings the core relies on (a count the Backend left out is 0, a per-farmer "planted
already" refusal is a success, an item's error text is its ``error``/``message``/``reason``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

BackendOp = Literal["plant", "work", "harvest"]


@dataclass(frozen=True, slots=True)
class PlantRequest:
    """``POST /plant``: plant every active farmer of the pooler into ``block``."""

    op: ClassVar[BackendOp] = "plant"
    block: int
    pooler_id: str
    max_farmers_capacity: int
    # the farmers to plant (``farmerIds``, an extra field the reference Backend honours): those
    # with an active miner. None: not said (a restore, before the miners are loaded): every
    # active farmer of the pooler, the Phase-1 behaviour
    farmer_ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """One farmer's nonce in a ``/work`` call (what the contract checks, plus hash and zeros)."""

    farmer_id: str
    nonce: int
    timestamp: int  # unix ms: when the share was found
    hash: bytes
    zeros: int


@dataclass(frozen=True, slots=True)
class WorkRequest:
    """``POST /work``: one submission per farmer, the best each has."""

    op: ClassVar[BackendOp] = "work"
    block: int
    pooler_id: str
    submissions: tuple[Submission, ...]


@dataclass(frozen=True, slots=True)
class HarvestRequest:
    """``POST /harvest``: claim ``block``'s rewards for every farmer that worked it."""

    op: ClassVar[BackendOp] = "harvest"
    block: int
    pooler_id: str


BackendRequest = PlantRequest | WorkRequest | HarvestRequest


@dataclass(frozen=True, slots=True)
class FarmerOutcome:
    """One item of a reply's ``results``: what happened to one farmer."""

    farmer_id: str
    ok: bool
    error: str = ""  # the Backend's words when not ok ("refused by the Backend" if it gave none)
    already_planted: bool = False  # a plant refusal meaning the farmer is planted already (#8)
    already_worked: bool = False  # a work refusal #7 (ZeroCountTooLow): the pail has this work or better
    reward: int | None = None  # harvest: stroops


@dataclass(frozen=True, slots=True)
class PlantReply:
    successful: int = 0  # successfulPlants
    failed: int = 0  # failedPlants
    total_staked: int = 0  # stroops
    results: tuple[FarmerOutcome, ...] | None = None  # None: the Backend listed no farmers
    body: Mapping[str, object] = field(default_factory=dict)  # as received: for the record only


@dataclass(frozen=True, slots=True)
class WorkReply:
    valid: int | None = None  # validNonces, None when the Backend did not say
    invalid: int = 0  # invalidNonces
    results: tuple[FarmerOutcome, ...] | None = None
    body: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HarvestReply:
    successful: int = 0  # successfulHarvests
    failed: int = 0  # failedHarvests
    total_rewards: int | None = None  # stroops, None when the Backend did not say
    results: tuple[FarmerOutcome, ...] | None = None
    body: Mapping[str, object] = field(default_factory=dict)


BackendReply = PlantReply | WorkReply | HarvestReply


def outcomes(reply: BackendReply) -> dict[str, FarmerOutcome] | None:
    """The reply's ``results`` by farmer id (None when it listed none)."""
    if reply.results is None:
        return None
    return {o.farmer_id: o for o in reply.results}
