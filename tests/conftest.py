"""Shared test configuration.

Tests that need root, namespaces, overlayfs, cgroups or veth carry `@pytest.mark.privileged`.
They are skipped only when the machine lacks what they need, and the skip says which; CI runs
as root, so CI runs them all.
"""

import os
import shutil

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "tools(*names, package): programs the test runs (names on PATH or absolute paths); a missing "
        "one FAILS the test with the Debian package to install, it never skips: scripts/setup installs them",
    )


def pytest_runtest_setup(item):
    for mark in item.iter_markers("tools"):
        missing = [t for t in mark.args if not (os.path.exists(t) if t.startswith("/") else shutil.which(t))]
        if missing:
            pytest.fail(f"missing {', '.join(missing)}: run scripts/setup (apt-get install {mark.kwargs['package']})", pytrace=False)


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (namespaces, mounts, cgroups); run as root, as CI does")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)
