"""The share-quality guard inside the core: warn, close, refuse a miner whose shares are mostly invalid."""

from __future__ import annotations

import dataclasses

from pooler.core.effects import Close, Effect, LimitHit, Send
from pooler.core.events import RestShareSubmitted, RestWorkRequested, StatsRequested, WorkerConnected
from protocol.errors import Code
from protocol.messages import Error, Job, Rejected, Share, Stats, Welcome
from tests.unit.core_support import CONFIG, T0, Rig, sends

GUARDED = dataclasses.replace(
    CONFIG, invalid_share_window=4, invalid_share_ratio=0.5, invalid_share_cooldown=60.0
)


def _rig() -> Rig:
    """Miner a with two sockets (1, 2), miner b with one (3), block 1 open."""
    rig = Rig(GUARDED)
    rig.join("a", 0)
    rig.join("b", 1)
    rig.connect(1, "a", "w1")
    rig.connect(2, "a", "w2")
    rig.connect(3, "b")
    rig.block(1)
    return rig


def _window(rig: Rig, invalid: int, at: float) -> list[Effect]:
    """One window of miner a's shares on socket 1: ``invalid`` out of range, the rest good."""
    job = rig.jobs[1]
    effects: list[Effect] = []
    for i in range(GUARDED.invalid_share_window):
        if i < invalid:
            effects += rig.share(1, job, job.nonce_end + i, at=at)
        else:
            effects += rig.good_share(1, 1, at=at)
    return effects


def _guard_errors(effects: list[Effect]) -> dict[int, str]:
    return {conn: e.message for conn in (1, 2, 3) for e in sends(effects, Error, conn=conn)}


def test_mostly_invalid_windows_warn_then_close_then_refuse_every_socket_of_the_miner() -> None:
    rig = _rig()
    effects = _window(rig, 3, T0 + 1)
    errors = _guard_errors(effects)
    assert set(errors) == {1, 2} and errors[1].startswith("warning: more than 50% of its last 4 shares")
    assert not [e for e in effects if isinstance(e, Close | LimitHit)]
    # the warning follows the answer to the share that filled the window
    last = [i for i, e in enumerate(effects) if isinstance(e, Send) and isinstance(e.msg, Rejected)][-1]
    assert all(i > last for i, e in enumerate(effects) if isinstance(e, Send) and isinstance(e.msg, Error))

    effects = _window(rig, 4, T0 + 2)
    assert _guard_errors(effects)[2].startswith("closing:")
    assert [e for e in effects if isinstance(e, Close)] == [
        Close(1, 1008, "too many invalid shares"),
        Close(2, 1008, "too many invalid shares"),
    ]
    assert [e for e in effects if isinstance(e, LimitHit)] == [LimitHit("invalid-shares", "a")]

    effects = _window(rig, 4, T0 + 3)  # its sockets are still known here: they close after this
    assert _guard_errors(effects)[1].startswith("refused for 60 s:")
    assert len([e for e in effects if isinstance(e, Close)]) == 2

    # refused for the cool-down: at hello, and for REST work and submits; its stats stay readable
    refused = rig.do(WorkerConnected(9, "a", "w3"), at=T0 + 4)
    [err] = sends(refused, Error, conn=9)
    assert err.code is Code.RATE_LIMITED and err.message.startswith("refused for 59 more s")
    assert Close(9, 1008, "rate-limited") in refused and LimitHit("invalid-shares", "a") in refused
    assert not sends(refused, Welcome) and not sends(refused, Job)
    assert sends(rig.do(RestWorkRequested(10, "a", "rest"), at=T0 + 4), Error)[0].code is Code.RATE_LIMITED
    job = rig.jobs[1]
    [rej] = sends(rig.do(RestShareSubmitted(11, "a", Share(job.job, job.nonce_start)), at=T0 + 4), Rejected)
    assert rej.code is Code.RATE_LIMITED and "refused for" in rej.message
    assert sends(rig.do(StatsRequested(12, "a"), at=T0 + 4), Stats)
    # the other miner noticed nothing
    assert 3 not in _guard_errors(effects) and sends(rig.good_share(3, 1, at=T0 + 4), Rejected) == []
    # after the cool-down it may come back
    back = rig.do(WorkerConnected(13, "a", "w3"), at=T0 + 3 + 60)
    assert sends(back, Welcome) and not sends(back, Error)


def test_a_clean_window_clears_the_strikes_and_stale_shares_do_not_count() -> None:
    rig = _rig()
    assert _guard_errors(_window(rig, 3, T0 + 1))  # strike 1
    assert not _guard_errors(_window(rig, 1, T0 + 2))  # clean: strikes back to 0
    assert _guard_errors(_window(rig, 3, T0 + 3))[1].startswith("warning:")  # strike 1 again, no close
    old = dataclasses.replace(rig.jobs[1], job="not-a-job-of-this-block")
    stale = [rig.share(1, old, old.nonce_start + i, at=T0 + 4) for i in range(4)]
    assert all(sends(e, Rejected)[0].code is Code.STALE for e in stale)
    assert not any(_guard_errors(e) for e in stale)  # a window of stale shares is clean
