"""The coordinator's group ports: credited nonces leave as records, the group's bests come in as events."""

from __future__ import annotations

from pooler.core.coordinator import Coordinator
from pooler.core.effects import Persist, Send
from pooler.core.events import GroupBest
from pooler.core.records import NonceCredited
from protocol.messages import Accepted, Job
from tests.unit.core_support import CONFIG, T0, Rig, address, body, entropy, find_nonce, one_call, persists


def _group_rig() -> Rig:
    rig = Rig()
    rig.core = Coordinator(CONFIG, report_credits=True)
    rig.join("a", 0)
    rig.connect(1, "a")
    rig.answer(one_call(rig.block(1), "plant"), response={"successfulPlants": 1})
    return rig


def test_every_credited_nonce_leaves_as_a_record_before_its_accepted() -> None:
    rig = _group_rig()
    for _ in range(3):  # the first is the farmer's best, the others ordinary shares or bests
        effects = rig.good_share(1, 1, at=T0 + 1)
        [at] = [i for i, e in enumerate(effects) if isinstance(e, Send) and isinstance(e.msg, Accepted)]
        ack = effects[at]
        assert isinstance(ack, Send) and isinstance(ack.msg, Accepted)
        records = [e.record for e in effects if isinstance(e, Persist)]
        assert [r for r in records if isinstance(r, NonceCredited)] == [
            NonceCredited(1, "farmer-0", ack.msg.nonce, ack.msg.job)
        ]
        # the share's own records come before its ack (its counts at the batch's end, which the
        # runner commits before any accepted goes out)
        own = [
            i for i, e in enumerate(effects) if isinstance(e, Persist) and isinstance(e.record, NonceCredited)
        ]
        assert at > max(own)


def test_a_single_instance_reports_no_credits() -> None:
    rig = Rig()
    rig.join("a", 0)
    rig.connect(1, "a")
    rig.block(1)
    assert persists(rig.good_share(1, 1, at=T0 + 1), "credit") == []


def test_a_best_of_the_group_is_checked_and_kept_when_better() -> None:
    """The leader's core: the bests other instances accepted reach it as ``GroupBest`` events."""
    rig = Rig()
    rig.join("a", 0)
    rig.answer(one_call(rig.block(1), "plant"), response={"successfulPlants": 1})
    range_ = Job("x", 1, entropy(1), address(0), 0, 1 << 20, 0, True, 0, 0)
    nonce, digest, zeros = find_nonce(range_, 2)
    wrong = rig.do(GroupBest(1, "farmer-0", nonce, bytes(32), zeros, "m9", "rig"), at=T0 + 2)
    assert persists(wrong, "best") == []  # a hash that does not check out is not taken
    effects = rig.do(GroupBest(1, "farmer-0", nonce, digest, zeros, "m9", "rig"), at=T0 + 2)
    [best] = persists(effects, "best")
    assert (best["nonce"], best["zeros"], best["minerId"], best["worker"]) == (str(nonce), zeros, "m9", "rig")
    assert rig.core.view(rig.now).best_zeros == {"farmer-0": zeros}
    low, low_digest, low_zeros = find_nonce(range_, 0, zeros - 1)
    assert persists(rig.do(GroupBest(1, "farmer-0", low, low_digest, low_zeros), at=T0 + 3), "best") == []
    work = one_call(rig.timer("work:1", at=T0 + CONFIG.work_delay), "work")
    assert [s["nonce"] for s in body(work)["submissions"]] == [str(nonce)]
