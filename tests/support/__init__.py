"""Helpers shared by the component and end-to-end tests, one way each to do a thing:

- start a Pooler on the devnet: in this process, :func:`tests.support.system.running_system`; as a
  ``pooler serve`` child process, :func:`tests.support.processes.start_pooler`;
- register a miner at a Pooler: :func:`tests.support.system.register_miner`;
- wait for a condition, with a bound: :func:`tests.support.wait.wait_until` (no test sleeps and
  then asserts);
- clients and mining: :mod:`tests.support.system` (raw-frame sockets, the event tap),
  :mod:`tests.support.miners` (the example miners' stand-ins).
"""
