"""Test helpers: a running app and a scriptable webhook receiver."""
