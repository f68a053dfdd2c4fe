"""Shared test configuration.

Tests that need root, namespaces, overlayfs, cgroups or veth carry `@pytest.mark.privileged`.
They are skipped only when the machine lacks what they need, and the skip says which; CI runs
as root, so CI runs them all.
"""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (namespaces, mounts, cgroups); run as root, as CI does")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)
