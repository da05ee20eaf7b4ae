"""The alerts only the core can judge (issue #15, part 5), as ``RaiseAlert`` effects.

- stake at risk: at ``stake:N`` (``workAt - stake_alert_lead``), each planted farmer without
  confirmed work whose best share is below ``Block(N).min_zeros`` (the previous block's on-chain
  minimum; 0 while Block(N) was not read yet, so only "no share at all" counts then) raises
  :class:`~pooler.core.alerts.StakeAtRisk`, saying whether the local fallback search took over;
- worker silent: on every ``summary`` tick, a worker that sent shares and has sent none for
  ``worker_silent_after`` seconds (connected or not: a dead rig often just drops its socket)
  raises :class:`~pooler.core.alerts.WorkerSilent` once; its next share raises ``Resolved``.
  Silence is measured from the tick that last saw its counts move, so it is at most one summary
  interval late; the share path itself is untouched.
The failures of a block's work and harvest are raised where they become final
(:mod:`pooler.core.work`, :mod:`pooler.core.harvest`).
"""

from __future__ import annotations

from pooler.core.alerts import Resolved, StakeAtRisk, WorkerSilent
from pooler.core.block import BlockState
from pooler.core.effects import Effect, RaiseAlert, SetTimer
from pooler.core.miners import Session
from pooler.core.state import RoundState


class _Heard:
    """What the silence check last saw of one worker (miner id, worker name)."""

    __slots__ = ("at", "count", "raised", "session")

    def __init__(self, session: Session, count: int, at: float) -> None:
        self.session = session  # the session the counts are of (a reconnect starts a new one)
        self.count = count  # its accepted + rejected when last seen moving
        self.at = at  # when its counts last moved (unix seconds)
        self.raised: WorkerSilent | None = None  # the alert raised for this silence, until it sends


class Watch:
    """Stake-at-risk and worker-silent checks (see the module docstring)."""

    def __init__(self, state: RoundState) -> None:
        self._st = state
        # (miner id, worker) -> what was last heard of it: only workers that sent something
        self._heard: dict[tuple[str, str], _Heard] = {}

    def arm(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """The block's stake check timer, when the alert is on: ``stake_alert_lead`` before
        workAt, but never before halfway from the block's opening (``now``) to workAt, so a lead
        longer than a short block (the devnet's) cannot judge farmers before they could mine."""
        lead = self._st.config.stake_alert_lead
        if lead > 0:
            at = max(blk.work_at - lead, now + (blk.work_at - now) / 2)
            effects.append(SetTimer(f"stake:{blk.index}", at))

    def stakes(self, blk: BlockState, effects: list[Effect], now: float) -> None:
        """``stake:N``: every planted farmer that may earn nothing as things stand."""
        min_zeros = blk.chain.min_zeros if blk.chain is not None else 0
        before = max(blk.work_at - now, 0.0)
        for fid in blk.planted():
            fr = blk.rounds[fid]
            if fr.worked >= 0:
                continue
            best = blk.bests.get(fid)
            if best is not None and best.zeros >= max(min_zeros, 1):
                continue
            fallback = fr.searching or (best is not None and best.worker == "local-search")
            alert = StakeAtRisk(
                fid, blk.index, None if best is None else best.zeros, min_zeros, before, fallback
            )
            effects.append(RaiseAlert(alert))

    def silence(self, effects: list[Effect], now: float) -> None:
        """The ``summary`` tick: who went silent, who is back."""
        after = self._st.config.worker_silent_after
        if after <= 0:
            return
        st = self._st
        for sess in st.all_sessions():
            key = (sess.miner.miner_id, sess.name)
            count = sess.accepted + sess.rejected
            heard = self._heard.get(key)
            if heard is None:
                if count:
                    self._heard[key] = _Heard(sess, count, now)
                continue
            if heard.session is not sess:
                if not count:
                    continue  # reconnected, nothing sent yet: still silent
                heard.session, heard.count = sess, -1
            if count != heard.count:
                heard.count, heard.at = count, now
                if heard.raised is not None:
                    effects.append(RaiseAlert(Resolved(heard.raised, now, "it sends shares again")))
                    heard.raised = None
        for key, heard in list(self._heard.items()):
            if key[0] not in st.miners:
                del self._heard[key]  # the miner left: nothing to wait for
            elif heard.raised is None and now - heard.at >= after:
                heard.raised = WorkerSilent(key[0], key[1], heard.at, after / 60)
                effects.append(RaiseAlert(heard.raised))
