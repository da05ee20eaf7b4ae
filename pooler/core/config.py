"""The coordinator's knobs, as one frozen value derived from the settings.

Every duration is in seconds (floats; the core never reads a clock). There are no defaults
here: :func:`pooler.app.options.core_config` fills every field from
:class:`pooler.config.Settings` (the one table) and :data:`pooler.app.options.TUNING` (the
fixed values that are not settings); tests derive one the same way, with short timings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pooler.errors import ConfigError
from protocol.work import MAX_NONCE


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Settings of :class:`pooler.core.coordinator.Coordinator`.

    Block cycle:
        pooler_id: sent as ``poolerId`` in every Backend call.
        block_interval: the contract's BLOCK_INTERVAL; a block's work deadline is
            ``timestamp + block_interval``.
        work_delay: workAt = ``min(timestamp + work_delay, timestamp + block_interval - safety_margin)``.
        safety_margin: seconds kept free before the deadline (no resubmission after ``deadline - margin``).
        late_plant_grace: plant block N+1 ourselves when block N is this much past its end and nobody did.
        late_plant_retry: delay before trying a failed late plant again.
        max_farmers_capacity: ``maxFarmersCapacity`` of ``/plant``.
        backend_retry_delay: delay before re-sending a failed ``/work`` while the deadline allows.
        harvest_retention_blocks: how many block intervals a worked block stays harvestable
            (its TEMPORARY entries live ~24 h: 288 blocks of 300 s).
        harvest_retry_delay: first delay before re-trying a failed ``/harvest`` (doubles, capped).
        local_search_lead: seconds before workAt at which planted farmers without any share
            get a ``LocalSearch``.
        local_search_max_hashes: bound of one local search.

    Shares and vardiff:
        share_zeros_initial / share_zeros_min / share_zeros_max: a new worker's difficulty,
            the floor and the ceiling (leading zero nibbles).
        vardiff_target_interval: wanted seconds between a worker's shares (10 s = 6 a minute).
        vardiff_window: seconds of shares a retarget looks at.
        vardiff_factor: retarget only when the observed rate is off by more than this factor
            (one nibble is 16x, so anything below 4 would oscillate).
        vardiff_grace: after a change, shares meeting the previous difficulty still count this long.

    Nonce ranges:
        range_min / range_max / range_default: bounds of one job's range, and its size while
            the worker's hashrate is unknown.
        range_seconds: a range lasts at least this many seconds of hashing, even near the end
            of a block (so a fast worker does not spam ``more``).
        max_jobs_per_worker: jobs kept valid per worker within a block; older ones become stale.

    Housekeeping:
        rest_worker_idle: a REST worker not heard from for this long is forgotten, with its jobs
            (``WORK_TIMEOUT_MINUTES``).
        farmer_idle: a farmer is planted only while one of its miners is connected or was
            active (joined, connected, a share accepted) this recently (``FARMER_IDLE_MINUTES``).
        summary_interval: period of the dashboard ``summary`` event.
        history_blocks: blocks kept for the view (statuses, rewards).
        job_id_prefix: prepended to job ids; the runtime sets it per process start so a job id
            of a previous run can never name a job of this one.
        share_rest_jobs: record every REST job (``RestJobIssued``) before it is sent, so that
            another instance of a group can take a share on it (scale-out without sticky routing).

    Share quality (pooler.core.guard):
        invalid_share_window: shares per window a miner is judged by.
        invalid_share_ratio: a window with more invalid shares than this fraction is a strike.
        invalid_share_cooldown: seconds a miner is refused after its third strike.
    """

    pooler_id: str
    block_interval: float
    work_delay: float
    safety_margin: float
    late_plant_grace: float
    late_plant_retry: float
    max_farmers_capacity: int
    backend_retry_delay: float
    harvest_retention_blocks: int
    harvest_retry_delay: float
    local_search_lead: float
    local_search_max_hashes: int

    share_zeros_initial: int
    share_zeros_min: int
    share_zeros_max: int
    vardiff_target_interval: float
    vardiff_window: float
    vardiff_factor: float
    vardiff_grace: float

    range_min: int
    range_max: int
    range_default: int
    range_seconds: float
    max_jobs_per_worker: int

    rest_worker_idle: float
    summary_interval: float
    history_blocks: int
    job_id_prefix: str
    share_rest_jobs: bool

    invalid_share_window: int
    invalid_share_ratio: float
    invalid_share_cooldown: float

    # Core-side alerts (pooler/core/watch.py): seconds before workAt the stake check runs (0 =
    # off) and seconds of silence of an active worker before worker-silent (0 = off).
    stake_alert_lead: float = 0.0
    worker_silent_after: float = 0.0
    # Planted farmers (pooler/core/plant.py): a farmer without a connected miner and without
    # activity for this long is left out of /plant's farmerIds (inf: every joined miner's farmer)
    farmer_idle: float = float("inf")

    def __post_init__(self) -> None:
        problems: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                problems.append(f"{f.name} is {value}; expected a value >= 0")
        if not self.pooler_id:
            problems.append("pooler_id is empty; expected the pooler's id at the Backend")
        if self.block_interval <= 0:
            problems.append(f"block_interval is {self.block_interval}; expected > 0 seconds")
        if self.safety_margin >= self.block_interval:
            problems.append(
                f"safety_margin {self.safety_margin} must be smaller than"
                f" block_interval {self.block_interval}"
            )
        if not 0 <= self.share_zeros_min <= self.share_zeros_initial <= self.share_zeros_max <= 64:
            problems.append(
                "share zeros must satisfy 0 <= min <= initial <= max <= 64; got"
                f" min={self.share_zeros_min} initial={self.share_zeros_initial} max={self.share_zeros_max}"
            )
        if self.vardiff_target_interval <= 0 or self.vardiff_window <= 0:
            problems.append("vardiff_target_interval and vardiff_window must be > 0 seconds")
        if self.vardiff_factor <= 1:
            problems.append(f"vardiff_factor is {self.vardiff_factor}; expected > 1")
        if not 1 <= self.range_min <= self.range_default <= self.range_max <= MAX_NONCE:
            problems.append(
                "nonce ranges must satisfy 1 <= range_min <= range_default <= range_max <= 2**64-1; got"
                f" min={self.range_min} default={self.range_default} max={self.range_max}"
            )
        if self.max_jobs_per_worker < 1:
            problems.append("max_jobs_per_worker must be >= 1")
        if self.summary_interval <= 0:
            problems.append("summary_interval must be > 0 seconds")
        if self.local_search_max_hashes < 1:
            problems.append("local_search_max_hashes must be >= 1")
        if self.invalid_share_window < 1:
            problems.append(f"invalid_share_window is {self.invalid_share_window}; expected >= 1 share")
        if not 0.0 <= self.invalid_share_ratio < 1.0:
            problems.append(
                f"invalid_share_ratio is {self.invalid_share_ratio}; expected a fraction in [0, 1)"
            )
        if problems:
            raise ConfigError("invalid coordinator settings: " + "; ".join(problems))

    @property
    def vardiff_fast_shares(self) -> int:
        """Shares within one window that prove the rate is more than ``vardiff_factor`` too high."""
        return max(4, int(self.vardiff_factor * self.vardiff_window / self.vardiff_target_interval) + 1)

    @property
    def harvest_retention(self) -> float:
        """Seconds after a block's timestamp during which it can still be harvested."""
        return self.harvest_retention_blocks * self.block_interval
