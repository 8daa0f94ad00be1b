"""The offline proof of a node tree (issue 14): `redconf check --packages ROOT` on real
three-level families whose packages were installed by redwrap-dnf (real RPMs, librpm,
libsolv), then broken one rule at a time — with rpm itself writing a node's database, or
by tampering with files after a clean install — and `redwrap-dnf --proof`, which must
answer without changing anything."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pkghelp import add_repo, dnf, run

pytestmark = pytest.mark.privileged     # installs: librpm chroots into the node

REDCONF = [sys.executable, "-m", "redpak.cli.redconf"]
SRC = Path(__file__).resolve().parents[2] / "src"


def _spec(name: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> str:
    head = [f"Name: {name}", "Version: 1.0", "Release: 1", f"Summary: proof test {name}",
            "License: MIT", "BuildArch: noarch", *(f"Requires: {r}" for r in requires),
            "%description", f"{name} for the proof tests", "%install"]
    for path, content in files.items():
        head += [f"mkdir -p %{{buildroot}}{os.path.dirname(path)}",
                 f"printf '%s\\n' '{content}' > %{{buildroot}}{path}"]
    return "\n".join([*head, "%files", *files]) + "\n"


@pytest.fixture(scope="module")
def proofrepo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Packages only these tests need: two different packages shipping the same path,
    and one with a rich dependency."""
    root = tmp_path_factory.mktemp("proofrpms")
    specs = {"ovla": _spec("ovla", {"/usr/share/common/data.txt": "a"}),
             "ovlb": _spec("ovlb", {"/usr/share/common/data.txt": "b"}),
             "richdep": _spec("richdep", {"/usr/share/richdep/x": "x"},
                              ("(libfoo and libmissing)",))}
    paths = []
    for name, text in specs.items():
        (root / f"{name}.spec").write_text(text)
        paths.append(str(root / f"{name}.spec"))
    run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {root / 'build'}",
         "--define", "_build_id_links none", *paths])
    repo = root / "repo"
    shutil.copytree(root / "build/RPMS/noarch", repo)
    run(["createrepo_c", "--quiet", str(repo)])
    return repo


def redconf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*REDCONF, *args], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=120)


def install(node: Path, *specs: str) -> None:
    proc = dnf("--redpath", str(node), "install", "-y", *specs)
    assert proc.returncode == 0, proc.stderr


def rpm_direct(node: Path, rpm_file: Path, *extra: str) -> None:
    """Install a package with rpm itself into the node (no family rules, no checks)."""
    run(["rpm", "--root", str(node), "--dbpath", "/var/lib/rpm", "-i", "--nodeps",
         "--noscripts", "--nosignature", *extra, str(rpm_file)])


def records(proc: subprocess.CompletedProcess) -> list[dict[str, str]]:
    assert proc.stdout.strip(), proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data, list)
    for rec in data:
        assert set(rec) == {"node", "rule", "package", "file", "message"}
    return data


def findings(top: Path, rule: str, *options: str) -> list[dict[str, str]]:
    """The records of one rule from `redconf check --packages --json`; the exit status
    must say whether there was any finding at all."""
    proc = redconf("check", "--packages", "--json", *options, str(top))
    found = records(proc)
    assert proc.returncode == (1 if found else 0), proc.stderr
    return [r for r in found if r["rule"] == rule]


@pytest.fixture
def clean(family):
    """system: libfoo 1.0; platform: bar (needs the system's /usr/bin/foo-tool);
    app: foo 1.0 (needs libfoo, from its grand-parent)."""
    install(family.system, "libfoo-1.0")
    install(family.platform, "bar")
    install(family.app, "foo-1.0")
    return family


def test_clean_tree_passes(clean) -> None:
    proc = redconf("check", "--packages", "--verify", str(clean.top))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "proof holds: 3 nodes, 3 packages" in proc.stdout
    assert records(redconf("check", "--packages", "--json", str(clean.top))) == []


def test_requirement_met_above_root_counts(clean) -> None:
    # ROOT is the platform: the system node above it still provides libfoo and foo-tool
    proc = redconf("check", "--packages", str(clean.platform))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 nodes" in proc.stdout


def test_unmet_requirement_is_named(clean, built) -> None:
    rpm_direct(clean.app, built.rpms / "needsmissing-1.0-1.noarch.rpm")
    found = findings(clean.top, "requires")
    assert len(found) == 1
    assert found[0]["node"] == str(clean.app)
    assert found[0]["package"] == "needsmissing-1.0-1.noarch"
    assert "libmissing" in found[0]["message"]


def test_requirement_met_only_by_a_sibling_or_a_child_is_unmet(clean, built) -> None:
    # the system loses libfoo (and /usr/bin/foo-tool); a sibling of app and app itself
    # get libfoo 2 (with its own foo-tool)
    sibling = clean.platform / "other"
    assert dnf("--redpath", str(sibling), "manager").returncode == 0
    run(["rpm", "--root", str(clean.system), "--dbpath", "/var/lib/rpm", "-e", "--nodeps",
         "--noscripts", "libfoo"])
    rpm_direct(sibling, built.rpms / "libfoo-2.0-1.noarch.rpm")
    rpm_direct(clean.app, built.rpms / "libfoo-2.0-1.noarch.rpm")
    rpm_direct(sibling, built.rpms / "foo-1.0-1.noarch.rpm")
    found = {(r["node"], r["package"]) for r in findings(clean.top, "requires")}
    # platform's bar needs /usr/bin/foo-tool: its children have one, which does not
    # count; app's and the sibling's foo are met by their own libfoo
    assert found == {(str(clean.platform), "bar-1.0-1.noarch")}
    # the sibling without its own libfoo: app's does not count either
    run(["rpm", "--root", str(sibling), "--dbpath", "/var/lib/rpm", "-e", "--nodeps",
         "--noscripts", "libfoo"])
    found = {(r["node"], r["package"]) for r in findings(clean.top, "requires")}
    assert found == {(str(clean.platform), "bar-1.0-1.noarch"),
                     (str(sibling), "foo-1.0-1.noarch")}


def test_rich_dependency_is_judged_by_libsolv(clean, proofrepo) -> None:
    rpm_direct(clean.app, proofrepo / "richdep-1.0-1.noarch.rpm")
    found = findings(clean.top, "requires")
    assert [r["package"] for r in found] == ["richdep-1.0-1.noarch"]
    assert "libmissing" in found[0]["message"]


def test_conflict_with_an_ancestor_is_named(clean, built) -> None:
    install(clean.system, "conflictb")
    rpm_direct(clean.app, built.rpms / "conflicta-1.0-1.noarch.rpm")
    found = findings(clean.top, "conflicts")
    assert len(found) == 1 and found[0]["node"] == str(clean.app)
    assert "conflictb-1.0-1.noarch" in found[0]["message"] and "'system'" in found[0]["message"]


def test_package_twice_on_a_family_line_is_named(clean, built) -> None:
    rpm_direct(clean.app, built.rpms / "libfoo-2.0-1.noarch.rpm")
    proc = redconf("check", "--packages", str(clean.top))
    assert proc.returncode == 1
    assert "[duplicate]" in proc.stdout
    line = next(x for x in proc.stdout.splitlines() if "[duplicate]" in x)
    assert "libfoo-2.0-1.noarch" in line and "libfoo-1.0-1.noarch" in line
    assert "'app'" in line and "'system'" in line


def test_same_package_twice_in_one_node_is_named(clean, built) -> None:
    # two instances side by side (as rpm -i allows for kernels)
    rpm_direct(clean.app, built.rpms / "foo-2.0-1.noarch.rpm", "--replacefiles")
    found = findings(clean.top, "duplicate")
    assert [(r["node"], r["package"]) for r in found] == [(str(clean.app),
                                                          "foo-1.0-1.noarch")]
    assert "installed 2 times" in found[0]["message"]
    assert "foo-2.0-1.noarch" in found[0]["message"]


def _export(node: Path, mount: str, path: str) -> None:
    conf = node / "etc/redpak.yaml"
    text = conf.read_text()
    assert "\nexports:\n" in text
    conf.write_text(text.replace("\nexports:\n", f"\nexports:\n  - mode: Restricted\n"
                                 f"    mount: {mount}\n    path: {path}\n", 1))


def test_same_file_in_two_nodes_with_overlapping_exports_is_named(family, proofrepo) -> None:
    add_repo(family.system, "proof", proofrepo)
    install(family.platform, "ovla")
    install(family.app, "ovlb")
    # different packages, same path, each node's own export: no overlap, no finding
    assert redconf("check", "--packages", str(family.top)).returncode == 0
    # app now also shows its /usr/share at the place platform's /usr/share is shown
    _export(family.app, "/nodes/platform/usr/share/common", "$NODE_PATH/usr/share/common")
    found = findings(family.top, "overlap")
    assert len(found) == 1
    assert found[0]["node"] == str(family.app)
    assert found[0]["file"] == "/usr/share/common/data.txt"
    assert found[0]["package"] == "ovlb-1.0-1.noarch"
    assert "ovla-1.0-1.noarch" in found[0]["message"]
    assert "/nodes/platform/usr/share/common/data.txt" in found[0]["message"]


def test_missing_and_tampered_files_are_named(clean) -> None:
    (clean.app / "usr/bin/foo").unlink()
    tool = clean.system / "usr/bin/foo-tool"
    data = tool.read_bytes()
    tool.write_bytes(data.replace(b"1", b"9"))     # same size, other digest
    (clean.system / "usr/lib/libfoo/libfoo.so.txt").write_text("bigger than before\n")
    plain = records(redconf("check", "--packages", "--json", str(clean.top)))
    assert [(r["node"], r["file"]) for r in plain if r["rule"] == "files"] == [
        (str(clean.app), "/usr/bin/foo")]
    assert "is missing" in plain[0]["message"] and "foo-1.0-1.noarch" in plain[0]["message"]
    proc = redconf("check", "--packages", "--verify", "--json", str(clean.top))
    assert proc.returncode == 1
    found = {r["file"]: r["message"] for r in records(proc) if r["rule"] == "files"}
    assert set(found) == {"/usr/bin/foo", "/usr/bin/foo-tool", "/usr/lib/libfoo/libfoo.so.txt"}
    assert "digest" in found["/usr/bin/foo-tool"]
    assert "size" in found["/usr/lib/libfoo/libfoo.so.txt"]


def test_file_replaced_by_a_symlink_out_of_the_node_is_named(clean) -> None:
    target = clean.app / "usr/bin/foo"
    target.unlink()
    target.symlink_to("/etc/passwd")
    found = findings(clean.top, "files")
    assert len(found) == 1 and "symlink" in found[0]["message"]


def test_corrupt_database_is_named_and_the_rest_still_checked(clean) -> None:
    db = clean.platform / "var/lib/rpm/rpmdb.sqlite"
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    db.write_bytes(bytes(data))
    (clean.app / "usr/bin/foo").unlink()
    proc = redconf("check", "--packages", "--json", str(clean.top))
    assert proc.returncode == 1
    rules = {(r["node"], r["rule"]) for r in records(proc)}
    assert (str(clean.platform), "rpmdb") in rules
    assert (str(clean.app), "files") in rules
    assert "Traceback" not in proc.stderr


def test_config_half_loosened_constraint_and_missing_export_source(clean) -> None:
    conf = clean.app / "etc/redpak.yaml"
    conf.write_text(conf.read_text().replace("\nconfig:\n", "\nconfig:\n  share_ipc: enabled\n",
                                             1))
    _export(clean.platform, "/srv/data", "$NODE_PATH/srv/data")
    proc = redconf("check", "--packages", "--json", str(clean.top))
    assert proc.returncode == 1
    found = records(proc)
    config = [r for r in found if r["rule"] == "config"]
    assert any("share_ipc" in r["message"] and r["node"] == str(clean.app) for r in config)
    sources = [r for r in found if r["rule"] == "export-source"]
    assert [(r["node"], r["file"]) for r in sources] == [
        (str(clean.platform), f"{clean.platform}/srv/data")]


def test_junit_report_lists_each_node_and_rule(clean, tmp_path) -> None:
    (clean.app / "usr/bin/foo").unlink()
    report = tmp_path / "proof.xml"
    proc = redconf("check", "--junit", str(report), str(clean.top))
    assert proc.returncode == 1
    suite = ET.parse(report).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 3 * 8 and suite.get("failures") == "1"
    failed = [c for c in cases if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [(str(clean.app), "files")]
    assert "/usr/bin/foo" in failed[0].find("failure").text


def test_missing_root_and_usage_errors(tmp_path) -> None:
    proc = redconf("check", "--packages", str(tmp_path / "nowhere"))
    assert proc.returncode == 1
    assert "nowhere: no such directory" in proc.stderr and "Traceback" not in proc.stderr
    proc = redconf("check", "--packages", str(tmp_path))
    assert proc.returncode == 1 and "no node at or below" in proc.stderr
    assert redconf("check", "--packages", "--junit").returncode == 2
    proc = redconf("check", "--junit", str(tmp_path / "no/dir/x.xml"), str(tmp_path))
    assert proc.returncode == 1


# --------------------------------------------------------------------------- --proof

def _snapshot(fam) -> dict[str, tuple[int, str]]:
    """mtime and digest of every file under each node's usr/ and rpm database (but the
    mtime of sqlite's shared-memory index, which every reader touches, `rpm -q` too)."""
    out = {}
    for node in (fam.system, fam.platform, fam.app):
        for sub in ("usr", "var/lib/rpm"):
            for dirpath, dirnames, files in os.walk(node / sub):
                for name in files + dirnames:
                    p = os.path.join(dirpath, name)
                    st = os.lstat(p)
                    digest = ""
                    if os.path.isfile(p) and not os.path.islink(p):
                        digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                    if not p.endswith("-shm"):
                        out[p] = (st.st_mtime_ns, digest)
    return out


def test_proof_of_transactions_changes_nothing(clean) -> None:
    before = _snapshot(clean)
    cases = [
        # (node, command, expected status, words in the output)
        (clean.app, ["install", "conflictb"], 0, "is possible"),
        (clean.app, ["install", "foo-2.0"], 1, "ancestor node 'system'"),
        (clean.system, ["remove", "libfoo"], 1, "descendant node 'app'"),
        (clean.system, ["upgrade", "libfoo"], 0, "Upgrading"),
        (clean.app, ["remove", "foo"], 0, "is possible"),
        (clean.app, ["upgrade", "libfoo"], 1, "ancestor node 'system'"),
    ]
    for node, command, status, words in cases:
        proc = dnf("--redpath", str(node), "--proof", *command)
        assert proc.returncode == status, (command, proc.stdout, proc.stderr)
        assert words in proc.stdout + proc.stderr, (command, proc.stdout, proc.stderr)
    assert _snapshot(clean) == before
    assert clean.rpm_qa(clean.app) == ["foo-1.0"]
    assert clean.rpm_qa(clean.system) == ["libfoo-1.0"]


def test_proof_option_with_other_commands_is_a_usage_error(clean) -> None:
    proc = dnf("--redpath", str(clean.app), "--proof", "list")
    assert proc.returncode == 2 and "--proof works with install, remove and upgrade" in \
        proc.stderr


def test_tampered_header_in_a_database_is_named(clean) -> None:
    import sqlite3

    db = sqlite3.connect(clean.app / "var/lib/rpm/rpmdb.sqlite")
    try:
        hnum, blob = db.execute("SELECT hnum, blob FROM Packages").fetchone()
        at = blob.index(b"the foo program")
        blob = blob[:at] + b"THE" + blob[at + 3:]       # same size, header digest broken
        db.execute("UPDATE Packages SET blob = ? WHERE hnum = ?", (blob, hnum))
        db.commit()
    finally:
        db.close()
    found = findings(clean.top, "rpmdb")
    assert [r["node"] for r in found] == [str(clean.app)]
    assert "digest: BAD" in found[0]["message"]


def test_node_without_database_is_named(clean) -> None:
    shutil.rmtree(clean.platform / "var/lib/rpm")
    found = findings(clean.top, "rpmdb")
    assert [r["node"] for r in found] == [str(clean.platform)]
    assert "no rpm database" in found[0]["message"] and "--initdb" in found[0]["message"]


def test_database_redirected_out_of_its_node_is_named(clean) -> None:
    db = clean.app / "var/lib/rpm"
    shutil.rmtree(db)
    db.symlink_to(clean.platform / "var/lib/rpm")
    proc = redconf("check", "--packages", str(clean.top))
    assert proc.returncode == 1
    line = next(x for x in proc.stdout.splitlines() if x.startswith("[rpmdb]"))
    assert str(db) in line and "symlink" in line


def test_copied_image_is_proven_by_an_unprivileged_user_without_writing(clean) -> None:
    # an image directory as CI has it: a copy, readable by all, proven by another user
    image = Path(tempfile.mkdtemp(prefix="redpak-proof-image-"))
    try:
        os.chmod(image, 0o755)
        shutil.copytree(clean.top, image / "nodes", symlinks=True)
        before = {p: p.stat().st_mtime_ns for p in (image / "nodes").rglob("*")
                  if not p.name.endswith("-shm")}
        proc = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534",
                               "--clear-groups", *REDCONF, "check", "--packages", "--verify",
                               str(image / "nodes")], capture_output=True, text=True,
                              check=False, timeout=120, cwd="/",
                              env=dict(os.environ, PYTHONPATH=str(SRC)))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "proof holds: 3 nodes, 3 packages" in proc.stdout
        after = {p: p.stat().st_mtime_ns for p in (image / "nodes").rglob("*")
                 if not p.name.endswith("-shm")}
        assert after == before
    finally:
        shutil.rmtree(image)


def test_file_reached_only_through_a_symlink_out_of_the_node_is_missing(clean,
                                                                          tmp_path) -> None:
    # app's usr/bin now points at a host directory holding a `foo`: librpm (chrooted in
    # the node) would not see it, and neither does the proof
    outside = tmp_path / "outside-bin"
    outside.mkdir()
    (outside / "foo").write_text("foo 1\n")
    shutil.rmtree(clean.app / "usr/bin")
    (clean.app / "usr/bin").symlink_to(outside)
    found = findings(clean.top, "files")
    assert [(r["node"], r["file"]) for r in found] == [(str(clean.app), "/usr/bin/foo")]
    # a symlink loop on the way is a finding too, never a hang or a crash
    (clean.app / "usr/bin").unlink()
    (clean.app / "usr/bin").symlink_to("bin")
    found = findings(clean.top, "files")
    assert [(r["node"], r["file"]) for r in found] == [(str(clean.app), "/usr/bin/foo")]
    # a link inside the node, absolute as the package world sees it, is followed
    (clean.app / "usr/bin").unlink()
    (clean.app / "usr/real-bin").mkdir()
    (clean.app / "usr/real-bin/foo").write_text("foo 1\n")
    (clean.app / "usr/bin").symlink_to("/usr/real-bin")
    assert findings(clean.top, "files", "--verify") == []
