"""The README's first command: ./tools/demo.sh builds, shows and runs the demo family,
including a package installed with redwrap-dnf and run inside the node."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged
TOP = Path(__file__).resolve().parents[2]


def test_demo_script_runs_end_to_end():
    demo = tempfile.mkdtemp(prefix="rp-demo-")
    cache = tempfile.mkdtemp(prefix="rp-demo-cache-")
    try:
        os.rmdir(demo)  # the script makes (and marks) its own directory
        env = {**os.environ, "REDPAK_DEMO_DIR": demo, "REDPAK_CACHE_DIR": cache}
        r = subprocess.run(["bash", str(TOP / "tools" / "demo.sh")], env=env, cwd="/",
                           capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out = r.stdout
        assert "2 nodes checked, no problem" in out
        assert "\napp\n" in out                           # hostname inside the node
        assert "using the cached plan" in r.stdout + r.stderr
        assert "exit status: 7" in out
        assert "Installed hello-redpak-1.0-1.noarch" in out
        assert "hello from app: uid 0, running /nodes/app/usr/bin/hello-redpak" in out
        assert "my node's packages: hello-redpak-1.0-1.noarch" in out
        assert (Path(demo) / "system/app/usr/bin/hello-redpak").is_file()
        assert not Path("/usr/bin/hello-redpak").exists()  # nothing landed on the host
    finally:
        subprocess.run(["umount", "-R", "-l", demo], stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(demo, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
