"""Shares per second through ``Coordinator.handle`` (the coordinator's hot path, no I/O).

python -m bench.core_shares [--n 200000] [--workers 64] [--json]

Every share is real (hash recomputed by the coordinator, Persist + Send effects built);
share difficulty 0 so each one is accepted, and vardiff is kept still so the figure is
the steady state. Also measured: shares sent with the client hash, and duplicates (the
cheapest rejection, what a replaying client costs).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import orjson

from bench.common import pin_from_env
from pooler.app.options import TUNING, core_config
from pooler.config import Settings
from pooler.core.coordinator import Coordinator
from pooler.core.effects import Send
from pooler.core.events import BATCH_END, MinerJoined, NewBlock, ShareSubmitted, WorkerConnected
from protocol import strkey
from protocol.messages import Job, Share
from protocol.work import KECCAK_BACKEND, WorkTemplate, address_bytes

T0 = 1_700_000_000
BATCH = 256  # shares a runner batch (a busy socket set gives batches of hundreds)


def _setup(workers: int) -> tuple[Coordinator, list[Job]]:
    config = core_config(
        Settings(share_zeros_initial=0, share_zeros_min=0),
        # no retarget during the run: measure the steady state
        dataclasses.replace(TUNING, vardiff_window=1e9, range_default=1 << 40),
    )
    core = Coordinator(config)
    jobs: list[Job] = []
    for m in range(4):  # 4 farmers
        core.handle(MinerJoined(f"m{m}", f"f{m}", strkey.encode("G", bytes([m + 1]) * 32)), T0)
    for conn in range(workers):
        core.handle(WorkerConnected(conn, f"m{conn % 4}", f"w{conn}"), T0)
    for effect in core.handle(NewBlock(1, bytes(range(32)), T0, 4), T0):
        if isinstance(effect, Send) and isinstance(effect.msg, Job):
            jobs.append(effect.msg)
    return core, jobs


def _run(core: Coordinator, events: list[ShareSubmitted]) -> float:
    handle = core.handle
    now = T0 + 1.0
    t0 = time.perf_counter()
    for i, ev in enumerate(events, 1):
        handle(ev, now)
        now += 1e-6
        if i % BATCH == 0:  # the runner ends each batch so: the batch's share counts, once each
            handle(BATCH_END, now)
    return len(events) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout (for python -m bench)")
    args = parser.parse_args()
    pin_from_env()
    core, jobs = _setup(args.workers)
    per = args.n // len(jobs)
    plain = [
        ShareSubmitted(conn, Share(job.job, job.nonce_start + i))
        for i in range(per)
        for conn, job in enumerate(jobs)
    ]
    accepted = _run(core, plain)
    duplicates = _run(core, plain)

    core, jobs = _setup(args.workers)
    templates = {job.farmer: WorkTemplate(1, job.entropy, address_bytes(job.farmer)) for job in jobs}
    hashed = [
        ShareSubmitted(
            conn, Share(job.job, job.nonce_start + i, templates[job.farmer].hash(job.nonce_start + i))
        )
        for i in range(per)
        for conn, job in enumerate(jobs)
    ]
    with_hash = _run(core, hashed)
    if args.json:
        print(
            orjson.dumps(
                {
                    "keccak_backend": KECCAK_BACKEND,
                    "accepted_per_s": round(accepted),
                    "duplicates_per_s": round(duplicates),
                    "accepted_with_hash_per_s": round(with_hash),
                }
            ).decode()
        )
        return
    print(f"keccak backend: {KECCAK_BACKEND}; {len(jobs)} workers, {len(plain)} shares per run")
    print(f"accepted shares (no client hash): {accepted:,.0f} shares/s")
    print(f"duplicates (rejected):            {duplicates:,.0f} shares/s")
    print(f"accepted shares (client hash):    {with_hash:,.0f} shares/s")


if __name__ == "__main__":
    main()
