"""Networking test fixtures live in net_helpers.py (tests import its helpers by that name)."""

from net_helpers import env, fake_upstream, outside  # noqa: F401  (fixtures, found by pytest here)
