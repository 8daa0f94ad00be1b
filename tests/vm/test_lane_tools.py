"""The lane runner's own behaviour, on the host and without booting a guest: a lane that
cannot start is reported NOT RUN (never passed), and inside a lane a skipped test fails
the run. (Booting the guests is `tools/vm/lane NAME`; `tools/vm/lane selftest` shows that
each lane fails with its feature off.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LANE = REPO / "tools" / "vm" / "lane"


def lane(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LANE), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, check=False)


def test_smack_lane_without_its_kernel_is_not_run_and_says_how_to_build_it(tmp_path):
    r = lane("smack", REDPAK_VM_CACHE=str(tmp_path))
    assert r.returncode == 3, r.stdout + r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("lane smack: NOT RUN: the SMACK kernel is not cached"), last
    assert "tools/vm/build-smack-kernel" in last
    assert "PASSED" not in r.stdout


def test_unknown_lane_is_a_usage_error():
    r = lane("v3")
    assert r.returncode == 2 and "unknown lane 'v3'" in r.stderr, r.stderr


def test_guest_runner_without_a_command_is_a_usage_error():
    r = subprocess.run([str(REPO / "tools/vm/run"), "--arch", "x86_64"], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 2 and "no command given" in r.stderr, r.stderr


def test_a_skipped_test_fails_a_lane_run(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\ndef test_runs():\n    pass\n\n"
        "def test_skips():\n    pytest.skip('the host lacks it')\n")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests" / "vm")}
    plain = subprocess.run(base, capture_output=True, text=True, cwd=tmp_path, env=env,
                           timeout=120, check=False)
    assert plain.returncode == 0, plain.stdout          # a skip passes a normal run ...
    laned = subprocess.run(base + ["-p", "lane_plugin"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=120, check=False)
    assert laned.returncode == 1, laned.stdout          # ... and fails a lane
    assert "1 test(s) skipped, which fails the lane" in laned.stdout
