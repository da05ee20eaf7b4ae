"""Helpers that drive a real headless Chromium (Debian's package) for the dashboard tests."""
