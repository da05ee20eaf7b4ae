"""``slot_init``: the share path's values are built faster and stay the same values."""

from __future__ import annotations

import dataclasses

import pytest

from pooler.core.effects import Persist, Send
from pooler.core.records import ShareCounts
from pooler.core.values import slot_init
from protocol.messages import Accepted


def test_a_value_with_the_cheaper_init_is_still_a_frozen_equal_matchable_dataclass() -> None:
    counts = ShareCounts(block=1, miner_id="m", worker="w", accepted=2, rejected=0)
    assert counts == ShareCounts(1, "m", "w", 2, 0) and hash(counts) == hash(ShareCounts(1, "m", "w", 2, 0))
    assert repr(counts) == "ShareCounts(block=1, miner_id='m', worker='w', accepted=2, rejected=0)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        counts.accepted = 3  # type: ignore[misc]
    match Persist(counts):
        case Persist(ShareCounts(block=1, accepted=accepted)):
            assert accepted == 2
        case _:
            raise AssertionError("no match")
    assert Send(7, Accepted("j", 1, 1, False)).conn == 7
    with pytest.raises(TypeError):
        ShareCounts(1, "m", "w", 2)  # type: ignore[call-arg]


def test_only_plain_frozen_slotted_dataclasses_take_it() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithDefault:
        a: int = 0

    for cls in (Mutable, WithDefault):
        with pytest.raises(TypeError):
            slot_init(cls)
