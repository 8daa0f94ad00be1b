"""`redconf --help` and `redwrap-dnf --help` start fast: they import argparse and the
command's own module, never what only a command's work needs (typing and dataclasses cost
~15 ms at start; YAML, JSON, rpm, solv and the config pipeline more)."""

import subprocess
import sys

import pytest

NOT_FOR_HELP = ["typing", "dataclasses", "inspect", "yaml", "json", "rpm", "solv",
                "subprocess", "redpak.node", "redpak.config", "redpak.plan", "redpak.family",
                "redpak.pkg.ops", "redpak._core"]


@pytest.mark.parametrize("module", ["redpak.cli.redconf", "redpak.cli.redwrap_dnf"])
def test_help_imports_only_what_it_prints(module):
    code = (f"import sys\nfrom {module} import main\ntry:\n    main(['--help'])\n"
            f"except SystemExit:\n    pass\n"
            f"sys.stderr.write(' '.join(m for m in {NOT_FOR_HELP!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       env={"PYTHONPATH": ":".join(p for p in sys.path if p)}, check=True)
    assert "usage:" in r.stdout
    assert r.stderr.split() == [], f"{module} --help imports {r.stderr}"
