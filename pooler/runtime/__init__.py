"""The I/O side of the coordinator: one runner, per-connection outboxes, the event hub.

Only :class:`pooler.runtime.runner.Runner` calls ``Coordinator.handle``; every other task
talks to it through the runner's inbox. Nothing here awaits a socket on the runner's path.
"""
