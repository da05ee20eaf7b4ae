"""The open block's reward projection: what each planted farmer would harvest if it closed now.

The arithmetic is :mod:`pooler.core.rewards` (exactly the contract's, to the stroop); this part
keeps its inputs and says when to recompute:

- once ``/plant`` N answered, ``WatchPails(N, planted farmers)`` asks the block monitor to read
  ``Block(N)`` and their ``Pail(farmer, N)`` with every poll; it posts ``BlockUpdated`` when
  they change, and the projection is made again from the read (:meth:`Forecast.on_block_updated`);
- when the Backend confirms our own ``/work`` for a farmer, the cached Block(N) and pail are
  moved as the contract moves them (:func:`~pooler.core.rewards.apply_work`, with the gap the
  work would have if it landed in the ledger after the last read) and the projection made
  again, until the next read shows the real figure;
- the poll that sees N+1 also reads N's last state (its ``BlockUpdated`` comes before
  ``NewBlock``): at ``NewBlock`` the projection of N is frozen (``final``), the figure harvest
  should pay.

Never per share: a projection costs a few microseconds per farmer, made only on these events.
"""

from __future__ import annotations

from pooler.core import rewards
from pooler.core.block import BlockState
from pooler.core.effects import Effect, Persist, WatchPails
from pooler.core.events import BlockUpdated
from pooler.core.records import BlockOnChain
from pooler.core.state import RoundState
from pooler.core.views import ProjectionView
from pooler.errors import PoolerError


class Forecast:
    """Keeps each block's projection inputs and its projection (see the module docstring)."""

    def __init__(self, state: RoundState) -> None:
        self._st = state

    def watch(self, blk: BlockState, effects: list[Effect]) -> None:
        """Ask the monitor for the pails of ``blk``'s planted farmers (after the plant answered)."""
        pairs = tuple(
            (fid, farmer.address)
            for fid in blk.planted()
            if (farmer := self._st.farmers.get(fid)) is not None
        )
        if pairs:
            blk.watching = True
            effects.append(WatchPails(blk.index, pairs))

    def on_block_updated(self, ev: BlockUpdated, now: float) -> list[Effect]:
        self._st.ledger = max(self._st.ledger, ev.ledger)
        blk = self._st.blocks.get(ev.index)
        if blk is None or blk.projection_final:
            return []
        blk.chain = ev.block
        blk.pails = dict(ev.pails)
        blk.chain_ledger = ev.ledger
        self.project(blk)
        # for the block's history (the monitor posts only changes: a few per block and farmer)
        return [Persist(BlockOnChain(ev.index, ev.block))]

    def work_landed(self, blk: BlockState, fid: str, zeros: int) -> None:
        """Our /work for ``fid`` at ``zeros`` was confirmed: move the cached state as the contract did."""
        chain, pail = blk.chain, blk.pails.get(fid)
        if chain is None or pail is None or blk.projection_final:
            return
        gap = max(blk.chain_ledger + 1 - pail.sequence, 1)
        try:
            blk.chain, blk.pails[fid] = rewards.apply_work(chain, pail, gap, zeros)
        except PoolerError:
            return  # the chain already has this work (or better): the next read says so
        self.project(blk)

    def close(self, blk: BlockState) -> None:
        """NewBlock(N+1): N's projection, made from its last read, is its final figure."""
        if blk.chain is not None:
            blk.projection_final = True

    @staticmethod
    def project(blk: BlockState) -> None:
        chain = blk.chain
        if chain is None:
            blk.projection = None
            return
        pails = [(fid, blk.pails[fid]) for fid in blk.rounds if fid in blk.pails]
        try:
            blk.projection = rewards.project_pool(chain, pails)
        except PoolerError:  # a Block the contract itself refuses (#12): nothing to project
            blk.projection = None


def projection_view(blk: BlockState) -> ProjectionView | None:
    p = blk.projection
    if p is None:
        return None
    return ProjectionView(
        block=p.index,
        ledger=blk.chain_ledger,
        pot=p.pot,
        normalized_total=p.normalized_total,
        reward=p.reward,
        payout=p.payout,
        forfeited=p.forfeited,
        rewards={f.farmer: f.reward for f in p.farmers},
        final=blk.projection_final,
    )
