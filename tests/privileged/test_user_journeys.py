"""User journeys found broken by QA, through the real commands on a family made from the
stock templates: an integrator whose plan cache cannot be written (a service user without a
home, a read-only image) is told why with -v, since every launch then starts Python."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rp_testutil import remove_tree

pytestmark = pytest.mark.privileged
BIN = Path(sys.executable).parent


@pytest.fixture
def family():
    top = Path(tempfile.mkdtemp(prefix="rp-journey-"))
    try:
        for args in (["--root", top / "sys"], ["-l", "-a", "app", top / "sys/app"]):
            subprocess.run([BIN / "redconf", "create", *args], check=True,
                           capture_output=True, timeout=60)
        yield top
    finally:
        remove_tree(top)


def test_verbose_cold_launch_says_why_the_plan_is_not_cached(family):
    blocker = family / "not-a-dir"          # the cache "directory" is a file
    blocker.write_text("")
    env = dict(os.environ, REDPAK_CACHE_DIR=str(blocker))
    for _ in range(2):                      # never cached: both launches are cold
        r = subprocess.run([BIN / "redwrap", "-v", "--redpath", family / "sys/app", "--",
                            "echo", "ran"], capture_output=True, text=True, timeout=120,
                           env=env)
        assert r.returncode == 0 and r.stdout == "ran\n", r.stderr
        assert "rebuilding the plan" in r.stderr
        assert (f"redwrap: cannot cache the plan: {blocker}: " in r.stderr
                and "(each launch compiles it again)" in r.stderr), r.stderr
    # Without -v the launch stays silent (a service's log is not flooded).
    r = subprocess.run([BIN / "redwrap", "--redpath", family / "sys/app", "--", "true"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
