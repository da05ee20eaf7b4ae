"""Benchmarks: scripts that measure and report, never timed assertions (``python -m bench``)."""
