"""Standing slots (feature ``block-broadcast``): one nonce range per worker, for every block.

A socket whose ``hello`` asked for the feature gets a ``slot`` frame after ``welcome``: a range
of its farmer's nonce space that it hashes in every later block (job id ``"<slot>.<block>"``),
so that a new block is ONE ``block`` frame for all such sockets
(:class:`pooler.core.effects.Broadcast`, encoded once) instead of a ``job`` each. ``more`` is
answered with a ``job`` as always, and a worker joining mid-block gets a ``job`` for that block.

Why no nonce is handed out twice and no two ranges overlap:

- each farmer's slots are disjoint ranges below its ``top``
  (:class:`pooler.core.nonces.FarmerSlots`), and each block's counter of that farmer opens at
  or above ``top`` (:meth:`pooler.core.jobs.Jobs.farmer_block`), so ``more``, new workers and
  local searches never draw from a slot's range;
- a slot is used only from the next ``block`` frame after its ``slot`` frame: in the block it is
  given in, its worker mines a job from the counter. So a range given up (socket closed, slot
  replaced) may go to a new slot at once: the old holder's job on it is of the current block,
  the new holder's use begins with the next one;
- ``top`` only grows, and at each block the counter's opening (``>= top``) is recorded
  (``NoncesIssued``) before the ``block`` frame goes out: a restart within that block resumes
  above every slot (the restart floor);
- duplicates stay per (block, farmer, nonce): a replayed share is ``duplicate`` whatever job
  id it names.

Single instance only: the coordinator grants the feature only when built with
``block_broadcast`` (the Pooler sets it without a group: a group's nonce space is chunks the
instances draw from Redis, and slots there would need a region shared the same way).
"""

from __future__ import annotations

from pooler.core.effects import Effect, Send
from pooler.core.miners import Session, SlotRecord
from pooler.core.nonces import range_size
from pooler.core.state import RoundState
from protocol.messages import BLOCK_BROADCAST, Slot


class Slots:
    """Grants the feature and hands out, replaces and takes back the workers' slots."""

    def __init__(self, state: RoundState, enabled: bool) -> None:
        self._st = state
        self._config = state.config
        self.enabled = enabled  # the feature may be granted (single instance; see the docstring)

    def grant(self, features: tuple[str, ...]) -> tuple[str, ...]:
        """The features of a ``hello`` this server grants (the ``welcome`` lists them)."""
        return (BLOCK_BROADCAST,) if self.enabled and BLOCK_BROADCAST in features else ()

    def size_for(self, sess: Session, now: float) -> int:
        """Nonces for a whole block at the worker's rate (range_default while unknown)."""
        return range_size(sess.sizing_rate(now), self._config.block_interval, self._config)

    def assign(self, sess: Session, effects: list[Effect], now: float) -> None:
        """A new slot for socket ``sess`` (its old one given back), sent as a ``slot`` frame; none
        when the farmer's space has no room (then it gets a job at each block, as a v1 worker)."""
        conn = sess.conn
        if conn is None:  # a REST worker has no push: never a slot
            return
        self.release(sess)
        farmer = sess.miner.farmer
        got = farmer.slots.take(self.size_for(sess, now))
        if got is None:
            return
        st = self._st
        st.slot_seq += 1
        rec = SlotRecord(f"{self._config.job_id_prefix}s{st.slot_seq:x}", farmer, got[0], got[1])
        sess.slot = rec
        effects.append(
            Send(conn, Slot(rec.id, farmer.address, rec.nonce_start, rec.nonce_end, sess.vd.zeros))
        )

    def release(self, sess: Session) -> None:
        """``sess`` holds no slot any more (it went, or gets another): its range is free again."""
        rec = sess.slot
        if rec is not None:
            sess.slot = None
            rec.farmer.slots.give_back(rec.nonce_start, rec.nonce_end)

    def outgrown(self, sess: Session, now: float) -> bool:
        """The worker hashes so fast that its slot is under half a block of its rate."""
        rec = sess.slot
        return rec is not None and self.size_for(sess, now) >= 2 * (rec.nonce_end - rec.nonce_start)
