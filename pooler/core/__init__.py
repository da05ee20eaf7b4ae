"""The coordinator core: a pure state machine, ``Coordinator.handle(event, now) -> effects``.

No I/O, no asyncio, no clocks: ``now`` is passed in (unix seconds, float). The runner in
``pooler.runtime`` feeds it events from one inbox and performs the effects it returns.
"""
