"""Families of 2, 3 and 5 levels made with the stock templates, end to end through the real
command lines (redconf create, redwrap-dnf install, redwrap): every member's /nodes/<alias>/usr
is visible in a leaf, a parent never sees its children, rpm inside a leaf reads that leaf's
own database, /nodes/<leaf>/var is writable and lands in the leaf's var/, /home/<leaf> is the
leaf's private directory, and `redconf mergeconfig --expand` shows what the launch uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rp_testutil import remove_tree

pytestmark = pytest.mark.privileged
BIN = Path(sys.executable).parent
for tool in ("rpmbuild", "createrepo_c", "rpm"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (run tools/setup.sh)", allow_module_level=True)

SPEC = """Name: famtool
Version: 2.1
Release: 1
Summary: redpak family test package
License: MIT
BuildArch: noarch
%description
A file installed into one node of a family.
%install
mkdir -p %{buildroot}/usr/share/famtool
printf 'famtool\\n' > %{buildroot}/usr/share/famtool/famtool.txt
%files
/usr/share/famtool/famtool.txt
"""


def run(*cmd, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=180, check=False, cwd="/", **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def redwrap(node: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    # --no-cache-ish: every test family is new, so the first launch is the cold path.
    return run(BIN / "redwrap", "--redpath", node, "--", *argv, check=check)


@pytest.fixture(scope="module")
def repo():
    """famtool-2.1 built with rpmbuild and published with createrepo_c."""
    top = Path(tempfile.mkdtemp(prefix="rp-famrepo-"))
    try:
        (top / "famtool.spec").write_text(SPEC)
        run("rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top / 'build'}",
            "--define", "_build_id_links none", top / "famtool.spec")
        (top / "repo").mkdir()
        for rpm in (top / "build/RPMS/noarch").iterdir():
            shutil.copy2(rpm, top / "repo" / rpm.name)
        run("createrepo_c", "--quiet", top / "repo")
        yield top / "repo"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def make_family(top: Path, aliases: list[str], repo: Path) -> list[Path]:
    """A root node 'sys' and one leaf per alias, each inside the previous one."""
    nodes = [top / "sys"]
    run(BIN / "redconf", "create", "--root", nodes[0])
    for alias in aliases:
        nodes.append(nodes[-1] / alias)
        run(BIN / "redconf", "create", "--leaf", "--alias", alias, nodes[-1])
    (nodes[0] / "etc/yum.repos.d").mkdir(parents=True, exist_ok=True)
    (nodes[0] / "etc/yum.repos.d/fam.repo").write_text(
        f"[fam]\nname=family test\nbaseurl=file://{repo}\nenabled=1\ngpgcheck=0\n")
    for node, alias in zip(nodes[1:], aliases):
        marker = node / "usr/share/marker"
        marker.mkdir(parents=True, exist_ok=True)
        (marker / f"{alias}.txt").write_text(f"file of {alias}\n")
    return nodes


@pytest.fixture
def top():
    d = Path(tempfile.mkdtemp(prefix="rp-fam-"))
    d.chmod(0o755)
    cache = Path(tempfile.mkdtemp(prefix="rp-fam-cache-"))
    old = os.environ.get("REDPAK_CACHE_DIR")
    os.environ["REDPAK_CACHE_DIR"] = str(cache)
    try:
        yield d
    finally:
        if old is None:
            os.environ.pop("REDPAK_CACHE_DIR", None)
        else:
            os.environ["REDPAK_CACHE_DIR"] = old
        remove_tree(d)
        shutil.rmtree(cache, ignore_errors=True)


def mergeconfig_mounts(node: Path) -> set[str]:
    out = run(BIN / "redconf", "mergeconfig", "--expand", "--json", node).stdout
    return {e["mount"] for e in json.loads(out)["exports"]}


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_family_of_stock_templates_end_to_end(top, repo, depth):
    aliases = ["plat", "app"] if depth == 3 else ["app"] if depth == 2 else \
        ["l1", "l2", "l3", "app"]
    nodes = make_family(top, aliases, repo)
    leaf, parent = nodes[-1], nodes[-2]

    # A family made from the stock templates launches silently on a stock host (root has
    # no /run/user/0: that export is optional), on the cold path and the cached one.
    for _ in range(2):
        quiet = redwrap(leaf, "true")
        assert quiet.stderr == "" and quiet.stdout == ""

    # A package installed into the leaf with redwrap-dnf lands in the leaf only.
    r = run(BIN / "redwrap-dnf", "--redpath", leaf, "-y", "install", "famtool",
            env={**os.environ, "REDPAK_REDWRAP": ""})
    assert (leaf / "usr/share/famtool/famtool.txt").is_file(), r.stdout + r.stderr
    assert redwrap(leaf, "rpm", "-q", "famtool").stdout.strip() == "famtool-2.1-1.noarch"
    assert "famtool" in redwrap(leaf, "rpm", "-qa").stdout
    # (the root node is no place to run programs: its template leaves /home to leaves)
    launch_parent = depth > 2
    if launch_parent:
        inside_parent = redwrap(parent, "rpm", "-q", "famtool", check=False)
        assert inside_parent.returncode != 0, inside_parent.stdout
        assert "not installed" in inside_parent.stdout + inside_parent.stderr

    # Every family member's usr/ is visible in the leaf, at /nodes/<alias>/usr.
    for node, alias in zip(nodes[1:], aliases):
        out = redwrap(leaf, "cat", f"/nodes/{alias}/usr/share/marker/{alias}.txt").stdout
        assert out == f"file of {alias}\n"
    assert redwrap(leaf, "cat", f"/nodes/{aliases[-1]}/usr/share/famtool/famtool.txt"
                   ).stdout == "famtool\n"
    # ... and a parent never sees its children.
    if launch_parent:
        seen = redwrap(parent, "ls", "/nodes").stdout.split()
        assert aliases[-1] not in seen and aliases[-2] in seen

    # /nodes/<leaf>/var is writable and lands in the leaf's var/.
    redwrap(leaf, "sh", "-c", f"echo written > /nodes/{aliases[-1]}/var/probe.txt")
    assert (leaf / "var/probe.txt").read_text() == "written\n"
    assert not (parent / "var/probe.txt").exists()

    # /home/<leaf> is the leaf's private directory.
    redwrap(leaf, "sh", "-c", f"echo mine > /home/{aliases[-1]}/note.txt")
    assert (leaf / "private/note.txt").read_text() == "mine\n"
    assert not (parent / "private/note.txt").exists()
    assert redwrap(leaf, "readlink", f"/home/{aliases[-1]}").stdout == "/nodes/_private\n"
    assert redwrap(leaf, "pwd").stdout == "/nodes/_private\n"   # chdir: /home/$LEAF_ALIAS

    # mergeconfig --expand lists the mounts the launch makes.
    mounts = mergeconfig_mounts(leaf)
    for alias in aliases:
        assert f"/nodes/{alias}/usr" in mounts
        assert f"/nodes/{alias}/var" in mounts
    assert f"/nodes/{aliases[-1]}/usr" not in mergeconfig_mounts(parent)


def test_descendant_admin_sandbox_cannot_write_ancestor_packages(top, repo):
    """In the admin sandbox of app (redwrap --admin), plat's package files stay read-only
    and /var/lib/rpm is app's own database."""
    nodes = make_family(top, ["plat", "app"], repo)
    app = nodes[-1]
    r = redwrap(app, "sh", "-c", "echo x > /nodes/plat/usr/share/marker/evil", check=False)
    assert r.returncode != 0
    r = run(BIN / "redwrap", "--admin", "--redpath", app, "--", "sh", "-c",
            "echo x > /nodes/plat/usr/share/marker/evil", check=False)
    assert r.returncode != 0
    assert not (nodes[1] / "usr/share/marker/evil").exists()
    run(BIN / "redwrap", "--admin", "--redpath", app, "--", "sh", "-c",
        "echo x > /nodes/app/usr/share/marker/own && echo y > /var/lib/rpm/probe")
    assert (app / "usr/share/marker/own").exists()
    assert (app / "var/lib/rpm/probe").exists()
    assert not (nodes[1] / "var/lib/rpm/probe").exists()
