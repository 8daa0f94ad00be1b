"""The launch path must not import what it does not need (issue: lean CLI path)."""

import subprocess
import sys

import pytest

LAUNCH_PATH = ["redpak.node", "redpak.config", "redpak.family", "redpak.expand"]
HEAVY = ["rpm", "solv", "json", "subprocess", "difflib", "uuid", "pathlib", "argparse",
         "urllib", "email", "asyncio", "threading", "yaml", "tempfile", "shutil"]


@pytest.mark.parametrize("module", LAUNCH_PATH)
def test_launch_path_module_does_not_import_heavy_modules(module):
    code = (f"import sys; import {module}; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": ":".join(sys.path)}, check=True).stdout.split()
    assert out == [], f"{module} imports {out} at import time"
