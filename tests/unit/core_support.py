"""A rig that drives the pure coordinator with explicit time, and helpers to read its effects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pooler.backend import parse_reply, request_body
from pooler.core.config import CoreConfig
from pooler.core.coordinator import Coordinator
from pooler.core.effects import CallBackend, Effect, LocalSearch, Persist, Publish, Send, SetTimer
from pooler.core.events import (
    BATCH_END,
    BackendResult,
    Event,
    LocalSearchDone,
    MinerJoined,
    NewBlock,
    ShareSubmitted,
    TimerFired,
    WorkerConnected,
)
from pooler.runtime.event_codec import encode_event
from pooler.store.codec import record_data, record_kind
from protocol import strkey
from protocol.messages import Job, ServerMessage, Share
from protocol.work import WorkTemplate, address_bytes, keccak256
from tests.support.config import core

T0 = 1_700_000_000  # first block's timestamp

# short blocks: 20 s, workAt at +15 s, deadline margin 2 s, local search 3 s before workAt
CONFIG = core(
    pooler_id="pool-1",
    max_farmers_capacity=100,
    block_interval=20,
    work_delay=15,
    safety_margin=2,
    late_plant_grace=3,
    late_plant_retry=2,
    backend_retry_delay=1,
    harvest_retry_delay=5,
    harvest_retention_blocks=10,
    local_search_lead=3,
    local_search_max_hashes=50_000,
    share_zeros_initial=1,
    share_zeros_min=1,
    share_zeros_max=8,
    vardiff_target_interval=1.0,
    vardiff_window=8.0,
    vardiff_grace=2.0,
    range_min=1 << 12,
    range_default=1 << 20,
    range_max=1 << 30,
    range_seconds=5,
    summary_interval=5,
    rest_worker_idle=30,
    job_id_prefix="t",
)

M = TypeVar("M", bound=ServerMessage)


def address(i: int) -> str:
    """A valid G... address for test farmer ``i``."""
    return strkey.encode("G", bytes([i + 1]) * 32)


def entropy(index: int) -> bytes:
    return keccak256(b"entropy" + index.to_bytes(4, "big"))


def find_nonce(job: Job, lo: int, hi: int = 64, start: int | None = None) -> tuple[int, bytes, int]:
    """The first nonce of ``job`` (from ``start``) whose hash has between lo and hi zeros."""
    template = WorkTemplate(job.block, job.entropy, address_bytes(job.farmer))
    nonce = job.nonce_start if start is None else start
    while nonce < job.nonce_end:
        digest, zeros = template.verify(nonce)
        if lo <= zeros <= hi:
            return nonce, digest, zeros
        nonce += 1
    raise AssertionError(f"no nonce with {lo}..{hi} zeros in the job's range")


class Rig:
    """A coordinator plus a clock the test moves by hand."""

    def __init__(self, config: CoreConfig = CONFIG, now: float = T0 - 1) -> None:
        self.core = Coordinator(config)
        self.config = config
        self.now = now
        self.jobs: dict[int, Job] = {}  # conn -> last job sent to it
        self.used: dict[str, int] = {}  # job id -> first nonce good_share has not tried yet

    def do(self, event: Event, at: float | None = None) -> list[Effect]:
        if at is not None:
            assert at >= self.now, "time never goes back in these tests"
            self.now = at
        # one event a batch, as the runner ends each batch: with its share counts (BatchEnd)
        effects = self.core.handle(event, self.now) + self.core.handle(BATCH_END, self.now)
        for e in effects:
            if isinstance(e, Send) and isinstance(e.msg, Job):
                self.jobs[e.conn] = e.msg
        return effects

    # ---- common steps

    def join(self, miner_id: str, farmer: int) -> list[Effect]:
        return self.do(MinerJoined(miner_id, f"farmer-{farmer}", address(farmer), name=miner_id))

    def connect(self, conn: int, miner_id: str, worker: str = "default") -> list[Effect]:
        return self.do(WorkerConnected(conn, miner_id, worker, agent="test"))

    def block(self, index: int, ts: float | None = None, at: float | None = None) -> list[Effect]:
        stamp = int(T0 + (index - 1) * self.config.block_interval if ts is None else ts)
        return self.do(
            NewBlock(index, entropy(index), stamp, ledger=index * 4), at=stamp if at is None else at
        )

    def share(
        self, conn: int, job: Job, nonce: int, digest: bytes | None = None, at: float | None = None
    ) -> list[Effect]:
        return self.do(ShareSubmitted(conn, Share(job.job, nonce, digest)), at=at)

    def good_share(self, conn: int, lo: int, hi: int = 64, at: float | None = None) -> list[Effect]:
        """Submit a real share of the conn's last job with lo..hi zeros (never the same nonce twice)."""
        job = self.jobs[conn]
        nonce, digest, _ = find_nonce(job, lo, hi, start=self.used.get(job.job, job.nonce_start))
        self.used[job.job] = nonce + 1
        return self.share(conn, job, nonce, digest, at=at)

    def timer(self, key: str, at: float | None = None) -> list[Effect]:
        return self.do(TimerFired(key), at=at)

    def answer(
        self,
        call: CallBackend,
        ok: bool = True,
        response: Mapping[str, object] | None = None,
        *,
        error: str = "",
        retryable: bool = False,
        at: float | None = None,
    ) -> list[Effect]:
        reply = parse_reply(call.op, response or {}) if ok else None  # as the runtime parses it
        result = BackendResult(call.call_id, call.op, call.block, reply, error, None, retryable)
        return self.do(result, at=at)

    def search_done(self, search: LocalSearch, at: float | None = None) -> list[Effect]:
        job = Job("x", search.block, search.entropy, search.farmer, search.nonce_start,
                  search.nonce_start + search.max_hashes, 0, True, 0, 0)  # fmt: skip
        nonce, digest, zeros = find_nonce(job, 1)
        return self.do(LocalSearchDone(search.block, search.farmer_id, nonce, digest, zeros), at=at)


# ---- reading effects


def sends(effects: Sequence[Effect], kind: type[M], conn: int | None = None) -> list[M]:
    return [
        e.msg for e in effects if isinstance(e, Send) and isinstance(e.msg, kind) and conn in (None, e.conn)
    ]


def send_conns(effects: Sequence[Effect], kind: type[ServerMessage]) -> list[int]:
    return [e.conn for e in effects if isinstance(e, Send) and isinstance(e.msg, kind)]


def calls(effects: Sequence[Effect], op: str | None = None) -> list[CallBackend]:
    return [e for e in effects if isinstance(e, CallBackend) and op in (None, e.op)]


def one_call(effects: Sequence[Effect], op: str) -> CallBackend:
    found = calls(effects, op)
    assert len(found) == 1, f"expected one {op} call, got {found}"
    return found[0]


def publishes(effects: Sequence[Effect], kind: str) -> list[Mapping[str, object]]:
    """The data of each dashboard event of ``kind``, as it goes on the wire (docs/events.md)."""
    wire = [encode_event(e.event) for e in effects if isinstance(e, Publish)]
    return [data for k, data in wire if k == kind]


def persists(effects: Sequence[Effect], kind: str) -> list[Mapping[str, object]]:
    """The records of ``kind`` (as the stores name them), in their JSON form (pooler.store.codec)."""
    return [
        record_data(e.record) for e in effects if isinstance(e, Persist) and record_kind(e.record) == kind
    ]


def body(call: CallBackend) -> dict[str, Any]:
    """The JSON body the runtime sends for ``call``."""
    return request_body(call.request)


def timers(effects: Sequence[Effect]) -> dict[str, float]:
    return {e.key: e.at for e in effects if isinstance(e, SetTimer)}


def searches(effects: Sequence[Effect]) -> list[LocalSearch]:
    return [e for e in effects if isinstance(e, LocalSearch)]
