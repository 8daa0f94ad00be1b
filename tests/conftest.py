"""Suite-wide test policy: privileged tests need root; without it they skip, saying why."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates real namespaces, mounts and cgroups")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)
