"""The example CI script of docs/proof.md, run as written: it builds a three-level tree in
an image directory, installs real packages (each transaction proven first) and proves the
image; then a tampered image fails its last step."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged     # installs: librpm chroots into the node

DOC = Path(__file__).resolve().parents[2] / "docs" / "proof.md"


def ci_script() -> str:
    text = DOC.read_text()
    block = text.split("<!-- ci-script -->", 1)[1].split("<!-- /ci-script -->", 1)[0]
    body = block.strip()
    assert body.startswith("```sh\n") and body.endswith("```")
    return body[len("```sh\n"):-3]


def run_sh(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, check=False, timeout=300)


def ci_env(image: Path, repo: Path, system: str, platform: str, app: str
           ) -> dict[str, str]:
    """The script's environment; the commands are the ones installed next to Python."""
    return dict(os.environ, IMAGE=str(image), REPO=f"file://{repo}", SYSTEM_PKGS=system,
                PLATFORM_PKGS=platform, APP_PKGS=app, REDPAK_REDWRAP="",
                PATH=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")


def test_ci_script_of_the_docs_builds_and_proves_an_image(tmp_path, built) -> None:
    image = tmp_path / "image"
    env = ci_env(image, built.repo, "libfoo-1.0", "bar", "foo-1.0")
    script = ci_script()
    proc = run_sh(script, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "proof: install libfoo-1.0 in node 'system'" in proc.stdout
    assert "proof holds: 3 nodes, 3 packages" in proc.stdout
    nodes = image / "var/redpak/nodes/system"
    for node, name in ((nodes, "libfoo"), (nodes / "platform", "bar"),
                       (nodes / "platform/app", "foo")):
        out = subprocess.run(["rpm", "--dbpath", f"{node}/var/lib/rpm", "-q", name],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
    report = Path(f"{image}.proof.xml")
    assert ET.parse(report).getroot().find("testsuite").get("failures") == "0"

    # a tampered image: its proof (the script's last step) fails and the report says why
    tool = nodes / "usr/bin/foo-tool"
    tool.write_bytes(tool.read_bytes().replace(b"1", b"2"))
    last = [line for line in script.splitlines() if line.strip()][-1]
    proc = run_sh(f'NODES="$IMAGE/var/redpak/nodes"\n{last}', env)
    assert proc.returncode == 1
    assert f"{nodes}/usr/bin/foo-tool: has sha256 digest" in proc.stdout
    failed = [c for c in ET.parse(report).getroot().iter("testcase")
              if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [(str(nodes), "files")]


def test_ci_script_stops_at_an_impossible_transaction(tmp_path, built) -> None:
    image = tmp_path / "image"
    proc = run_sh(ci_script(), ci_env(image, built.repo, "libfoo-1.0", "", "foo-2.0"))
    assert proc.returncode == 1
    assert "redwrap-dnf: proof: install foo-2.0" in proc.stderr
    assert "is NOT possible" in proc.stderr and "ancestor node 'system'" in proc.stderr
    app = image / "var/redpak/nodes/system/platform/app"
    out = subprocess.run(["rpm", "--dbpath", f"{app}/var/lib/rpm", "-qa"],
                         capture_output=True, text=True, check=True).stdout
    assert "foo" not in out
    assert not Path(f"{image}.proof.xml").exists()
