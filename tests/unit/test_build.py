# Unit tests of build.py, the configuration pipeline: each node expanded in its own context
# then merged (Russian-doll rules on expanded values), a family expanded once per launch,
# and `redconf mergeconfig --expand` equal to the FamilyConfig the launch compiles.

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from redpak.build import build_plan, family_config, launch_family
from redpak.errors import RedpakError
from redpak.node import create_node, find_tree, load_family
from redpak.plan import LaunchOptions

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "trees"


def stock_family(top: Path, aliases: list[str]) -> list[Path]:
    nodes = [top / "sys"]
    create_node(str(nodes[0]), model="root")
    for alias in aliases:
        nodes.append(nodes[-1] / alias)
        create_node(str(nodes[-1]), alias=alias)
    return nodes


def _trees(tmp_path: Path) -> list[Path]:
    """Copies of every fixture tree, plus stock families of 3 and 5 levels."""
    out = []
    for tree in sorted(FIXTURES.iterdir()):
        shutil.copytree(tree, tmp_path / tree.name)
        out.append(tmp_path / tree.name)
    stock_family(tmp_path / "stock3", ["plat", "app"])
    stock_family(tmp_path / "stock5", ["l1", "l2", "l3", "app"])
    return out + [tmp_path / "stock3", tmp_path / "stock5"]


def _mergeconfig(node: str, admin: bool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redpak.cli.redconf", "mergeconfig",
                           "--expand", "--json", *(["--admin"] if admin else []), node],
                          capture_output=True, text=True, timeout=60, cwd="/",
                          env={**os.environ, "REDPAK_TEST_VAR": "from-env"})


@pytest.mark.parametrize("admin", [False, True])
def test_mergeconfig_expand_equals_what_the_launch_compiles(tmp_path, monkeypatch, admin):
    """For every node of every fixture tree, `redconf mergeconfig --expand` prints exactly
    the FamilyConfig build_plan compiles (or both fail with the same message)."""
    monkeypatch.setenv("REDPAK_TEST_VAR", "from-env")
    monkeypatch.setenv("REDPAK_CACHE_DIR", str(tmp_path / "cache"))
    compared = 0
    for tree in _trees(tmp_path):
        for node in find_tree(str(tree)):
            shown = _mergeconfig(node, admin)
            assert "Traceback" not in shown.stderr, shown.stderr
            try:
                family = build_plan(node, LaunchOptions(admin=admin)).family
            except RedpakError as err:
                if "cannot be launched: its chdir" in str(err):
                    # A stock system node by itself (plan.check_home): its family expands,
                    # only the plan is refused; mergeconfig still shows that family.
                    family = launch_family(node, LaunchOptions(admin=admin)).expanded
                else:
                    assert shown.returncode != 0, f"{node}: launch fails, mergeconfig does not"
                    assert str(err).splitlines()[0] in shown.stderr, (node, shown.stderr)
                    continue
            assert shown.returncode == 0, (node, shown.stderr)
            launched = json.loads(json.dumps(family.to_dict(origins=True)))
            assert json.loads(shown.stdout) == launched, node
            compared += 1
    assert compared >= 10


def test_each_node_expanded_in_its_own_context_then_merged(tmp_path):
    """The issue's case: the leaf's /nodes/$NODE_ALIAS/usr is its own mount point, not a
    redefinition of its parent's (the merge compares expanded values)."""
    nodes = stock_family(tmp_path, ["plat", "app"])
    fam = family_config(load_family(str(nodes[-1])), False, {}, 0, 0, 1).family
    mounts = {s.value.mount: (s.origin.alias, s.value.path) for s in fam.exports}
    assert mounts["/nodes/plat/usr"] == ("plat", str(nodes[1] / "usr"))
    assert mounts["/nodes/app/usr"] == ("app", str(nodes[2] / "usr"))
    assert mounts["/nodes/app/var"] == ("app", str(nodes[2] / "var"))
    assert mounts["/var/lib/rpm"] == ("app", str(nodes[2] / "var/lib/rpm"))
    assert mounts["/nodes/_private"] == ("app", str(nodes[2] / "private"))
    assert not [w for w in fam.warnings if w.level == "warning"], fam.warnings
    assert fam.expanded


def test_expanded_redefinition_of_an_ancestor_mount_is_refused(tmp_path):
    """Two nodes that write different text for the same expanded mount point: the
    ancestor's stands (a rule compared on expanded values)."""
    nodes = stock_family(tmp_path, ["app"])
    conf = nodes[1] / "etc/redpak.yaml"
    conf.write_text(conf.read_text() + "  - mode: Public\n    mount: /home/app\n"
                    "    path: $NODE_PATH/var\n")
    fam = family_config(load_family(str(nodes[1])), False, {}, 0, 0, 1).family
    home = [s for s in fam.exports if s.value.mount == "/home/app"]
    assert [s.origin.alias for s in home] == [os.path.basename(nodes[0])]
    assert any("/home/app" in w.text and "cannot redefine" in w.text for w in fam.warnings)


def test_a_family_is_expanded_once_per_launch(tmp_path, monkeypatch):
    """Every $(command) runs once per launch, set-user included (it used to run twice)."""
    nodes = stock_family(tmp_path, ["app"])
    count = tmp_path / "count"
    conf = nodes[1] / "etc/redpak.yaml"
    text = conf.read_text().replace(
        "config:\n", f"config:\n  set-user: $(echo x >> {count}; echo 0)\n"
                     f"  hostname: h$(echo y >> {count})\n", 1)
    conf.write_text(text)
    monkeypatch.setenv("REDPAK_CACHE_DIR", str(tmp_path / "cache"))
    compiled = build_plan(str(nodes[1]), LaunchOptions(), environ={})
    assert count.read_text() == "x\ny\n"
    assert compiled.plan.hostname == "h"
    assert not compiled.plan.cacheable


def test_set_user_is_expanded_with_the_callers_identity(tmp_path, monkeypatch):
    import redpak.build as build_mod

    nodes = stock_family(tmp_path, ["app"])
    conf = nodes[1] / "etc/redpak.yaml"
    conf.write_text(conf.read_text().replace(
        "config:\n", "config:\n  set-user: '4$UID'\n  hostname: u$UID\n", 1))
    monkeypatch.setattr(build_mod, "caller_identity", lambda: (0, 0, True))
    lf = launch_family(str(nodes[1]), LaunchOptions(), environ={})
    assert lf.ident.host_uid == 40                  # set-user: '4' + the caller's $UID 0
    assert lf.expanded.family.hostname.value == "u40"   # the rest sees the launch's $UID


def test_admin_private_entry_leaves_descendants_the_normal_one(tmp_path):
    """In app's admin sandbox, plat's package files are read-only (plat's admin entry is
    Private to plat) and /var/lib/rpm is app's database."""
    from redpak.model import ExportMode

    nodes = stock_family(tmp_path, ["plat", "app"])
    fam = family_config(load_family(str(nodes[-1])), True, {}, 0, 0, 1).family
    mounts = {s.value.mount: (s.origin.alias, s.value.mode) for s in fam.exports}
    assert mounts["/nodes/plat/usr"] == ("plat", ExportMode.RESTRICTED)
    assert mounts["/nodes/app/usr"] == ("app", ExportMode.PRIVATE)
    assert mounts["/var/lib/rpm"] == ("app", ExportMode.PRIVATE)
