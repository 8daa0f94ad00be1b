"""The Russian doll attacked from a descendant's config (issue p15d QA): a child of a
three-level family tries to loosen what an ancestor constrains, through the routes the
merge does not see by name. Each launch is real (native redwrap, cached plan and cold
path), by root and by an unprivileged caller, and checked from inside the node and on the
host."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from rp_testutil import value

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the doll attacks need root (namespaces, mounts, a test user)",
                allow_module_level=True)

from test_redwrap import (  # noqa: E402,F401
    caller, env_of, export, family, ok, root_caller, root_family, user_caller)


@pytest.mark.parametrize("route", ["exact", "parent"])
def test_a_link_never_lets_a_descendant_cover_an_ancestors_readonly_export(family, route):
    """sys exports /bin (the host's /usr/bin) read-only. A descendant cannot redefine /bin
    (the merge ignores it), so it plants a Symlink export /zz -> / and binds a writable
    host directory at /zz/bin (the same mount point, reached through the link) or at
    /zz/usr (a parent, hiding sys's /usr/bin). The launch must refuse before the program
    runs, naming the link, cached and cold alike; the decoy is never written."""
    decoy = family.hostdir("decoy")
    unique = f"rp-doll-{uuid.uuid4().hex[:8]}"
    target = "/zz/bin" if route == "exact" else "/zz/usr"
    covered = "/bin" if route == "exact" else "/usr/bin"

    def change(d):
        export(d, "Symlink", "/zz", "/")
        export(d, "Public", target, str(decoy))
    leaf = family.child("leaf")  # sys -> app -> leaf: the grandchild attacks
    family.edit(leaf, change)
    for opts in ((), ("-f",), ()):
        r, lines = family.probe("write", f"{covered}/{unique}", "mounts", node=leaf, opts=opts)
        ok(r, 125)
        last = r.stderr.splitlines()[-1]
        assert last.startswith("redwrap: mount: "), r.stderr
        assert f"mount point {target} goes through a symbolic link" in last, r.stderr
        assert f"over the mount point {covered} " in last, r.stderr
        assert not lines, r.stdout
        assert list(decoy.iterdir()) == []


def test_a_link_never_covers_where_another_link_moved_an_ancestors_export(family):
    """The grandchild moves sys's read-only /usr/bin with a link (/usr -> /0/zz, inside a
    writable bind of its own), then covers where it landed through a second link
    (/zz2 -> /0/zz, a bind at /zz2/bin). Refused, naming both mount points."""
    mine, decoy = family.hostdir("mine"), family.hostdir("decoy")
    (mine / "zz").mkdir()
    family.own()
    leaf = family.child("leaf")

    def change(d):
        export(d, "Public", "/0", str(mine))
        export(d, "Symlink", "/usr", "/0/zz")
        export(d, "Symlink", "/zz2", "/0/zz")
        export(d, "Public", "/zz2/bin", str(decoy))
    family.edit(leaf, change)
    for opts in ((), ("-f",)):
        r, lines = family.probe("mounts", node=leaf, opts=opts)
        ok(r, 125)
        last = r.stderr.splitlines()[-1]
        assert ("mount point /zz2/bin goes through a symbolic link to /0/zz/bin, over the mount "
                "point /0/zz/bin of an earlier export (/usr/bin)") in last, r.stderr
        assert not lines
    assert list(decoy.iterdir()) == []


def test_a_link_to_a_fresh_place_still_mounts(family):
    """The check refuses covering only: a mount reached through a link at a place no
    earlier export uses is made where the link leads, as before."""
    def change(d):
        export(d, "Symlink", "/zz", "/")
        export(d, "Tmpfs", "/zz/fresh")
    family.edit(family.app, change)
    r, lines = family.probe("write", "/fresh/x", "mounts")
    ok(r)
    assert value(lines, "write /fresh/x") == "ok"


def _mergeconfig(family, node, *opts: str):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "redpak.cli.redconf", "mergeconfig", "-e",
                           *opts, str(node)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("admin", [False, True], ids=["normal", "admin"])
def test_a_descendants_allow_never_lifts_an_ancestors_default_profile(family, helper_bin,
                                                                      admin):
    """sys says profile: default; the grandchild says profile: none and allows keyctl (from
    its normal or its admin config). keyctl stays refused at launch (cached and cold), and
    mergeconfig, the white box, neither lists the allow nor stays silent about it."""
    fam = family
    fam.install(helper_bin / "attack")
    leaf = fam.child("leaf")
    fam.edit(fam.sys, lambda d: d["config"].update({"seccomp": {"profile": "default"}}))
    loosen = {"seccomp": {"profile": "none", "allow": ["keyctl"]}}
    if admin:
        (leaf / "etc" / "redpak-admin.yaml").write_text(
            "headers:\n  alias: admin-of-leaf\nconfig:\n  seccomp:\n    profile: none\n"
            "    allow: [keyctl]\n")
    else:
        fam.edit(leaf, lambda d: d["config"].update(loosen))
    opts = ("-a",) if admin else ()
    for extra in ((), ("-f",), ()):
        r = fam.run("attack", "keyctl", node=leaf, opts=opts + extra)
        ok(r)
        assert value(r.stdout.splitlines(), "keyctl") == "EPERM", r.stdout
    m = _mergeconfig(fam, leaf, *opts)
    assert m.returncode == 0, m.stderr
    assert "keyctl" not in m.stdout, m.stdout
    assert ("allows keyctl, which its ancestor's default profile denies: ignored"
            in m.stderr), m.stderr


def test_a_descendant_never_binds_writable_what_an_ancestor_exports_read_only(family):
    """sys exports the host's /usr/bin and /usr/lib read-only, app its packages (app/usr)
    read-only. The grandchild binds the same files writable at mount points of its own:
    /usr/bin as written, /usr/lib through the host's /lib link (where /lib leads to
    usr/lib), and its parent's packages. Each bind is made read-only, with a warning in
    mergeconfig -e; the grandchild's own directory stays writable. Cached and cold."""
    leaf = family.child("leaf")
    lib_link = os.path.islink("/lib") and os.path.realpath("/lib") == "/usr/lib"
    unique = f"rp-doll-{uuid.uuid4().hex[:8]}"
    binds = {"/w/usrbin": "/usr/bin", "/w/appusr": str(family.app / "usr"),
             "/w/own": str(leaf / "var")}
    if lib_link:
        binds["/w/lib"] = "/lib"

    def change(d):
        for mount, path in binds.items():
            export(d, "Public", mount, path)
    family.edit(leaf, change)
    m = _mergeconfig(family, leaf)
    assert m.returncode == 0, m.stderr
    for mount in binds:
        said = f"exports {mount}: node 'leaf'" in m.stderr
        assert said == (mount != "/w/own"), m.stderr
    assert "exports /usr/bin Public (writable), but its ancestor exports /usr/bin read-only: " \
           "made Restricted" in m.stderr
    for opts in ((), ("-f",)):
        r, lines = family.probe("mounts", "write", f"/w/appusr/{unique}", "write",
                                f"/w/own/{unique}", node=leaf, opts=opts)
        ok(r)
        flags = {ln.split()[5]: ln.split()[6] for ln in lines if ln.startswith("mount ")}
        for mount in binds:
            assert flags[mount].startswith("rw" if mount == "/w/own" else "ro"), lines
        assert value(lines, f"write /w/appusr/{unique}") == "EROFS"
        assert value(lines, f"write /w/own/{unique}") == "ok"
        assert not (family.app / "usr" / unique).exists()
        (leaf / "var" / unique).unlink()


def test_a_descendants_path_never_undoes_an_ancestors_pinned_environ(family):
    """sys removes LD_LIBRARY_PATH and pins PATH (Static). The grandchild's `ldpath` and
    `path` are set after the environ entries, so they would bring back what sys removed:
    they are dropped with a warning, cached and cold."""
    leaf = family.child("leaf")
    family.edit(family.sys, lambda d: d["environ"].extend([
        {"key": "LD_LIBRARY_PATH", "mode": "Remove"},
        {"key": "PATH", "mode": "Static", "value": "/nodes/app/usr/bin:/bin"}]))
    family.edit(leaf, lambda d: d["config"].update({"ldpath": "/evil", "path": "/evilbin"}))
    m = _mergeconfig(family, leaf)
    assert m.returncode == 0, m.stderr
    assert ("adds /evil to LD_LIBRARY_PATH: ignored, environ LD_LIBRARY_PATH removes it"
            in m.stderr), m.stderr
    assert "adds /evilbin to PATH: ignored, environ PATH sets it verbatim" in m.stderr
    for opts in ((), ("-f",)):
        r, lines = family.probe("env", node=leaf, opts=opts)
        ok(r)
        env = env_of(lines)
        assert "LD_LIBRARY_PATH" not in env, env
        assert env["PATH"] == "/nodes/app/usr/bin:/bin"


def test_a_leafs_admin_config_never_makes_its_own_protected_configs_writable(family):
    """The root admin template exports the administered node's etc read-only inside its
    writable node directory (a package must not loosen its node's policy). The leaf's own
    admin config binds that etc writable elsewhere: it is made read-only, its var stays
    writable (the nested node directories of a family are no excuse here)."""
    leaf = family.child("leaf")
    (leaf / "etc" / "redpak-admin.yaml").write_text(
        "headers:\n  alias: admin-of-leaf\nexports:\n"
        "  - {mode: Private, mount: /x/etc, path: $NODE_PATH/etc}\n"
        "  - {mode: Private, mount: /x/var, path: $NODE_PATH/var}\n")
    family.own()
    m = _mergeconfig(family, leaf, "-a")
    assert m.returncode == 0, m.stderr
    assert f"exports {leaf}/etc Private (writable), but its ancestor exports {leaf}/etc " \
           "read-only: made PrivateRestricted" in m.stderr, m.stderr
    for opts in (("-a",), ("-a", "-f")):
        r, lines = family.probe("write", "/x/etc/redpak.yaml", "write", "/x/var/ok",
                                node=leaf, opts=opts)
        ok(r)
        assert value(lines, "write /x/etc/redpak.yaml") == "EROFS"
        assert value(lines, "write /x/var/ok") == "ok"
        (leaf / "var" / "ok").unlink()


@pytest.fixture
def limited_cgroup():
    """A cgroup below the caller's own in the pids hierarchy, limited to 6 tasks (as an
    integrator would give a family a slice); removed after the test."""
    from redpak.controls import probe_host
    h = probe_host().hierarchy_for("pids")
    if h is None or (h.version == 2 and "pids" not in h.controllers):
        pytest.skip("this host offers no pids controller to the caller's cgroup")
    own = h.dir_of(h.caller)
    if own is None:
        pytest.skip("the caller's pids cgroup is not visible here")
    path = Path(own) / f"rp-doll-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        (path / "pids.max").write_text("6\n")
        yield own, path
    finally:
        for d in sorted(path.rglob("*"), reverse=True):
            if d.is_dir():
                d.rmdir()
        path.rmdir()


def test_a_descendants_cgrouproot_never_leaves_its_ancestors(root_family, limited_cgroup):
    """sys puts the family under a cgroup the integrator limits to 6 tasks; the grandchild
    names the caller's own cgroup, outside it, as its cgrouproot. Its root is ignored with
    a warning, and the program still cannot start 20 processes."""
    fam = root_family
    own, limited = limited_cgroup
    leaf = fam.child("leaf")
    fam.edit(fam.sys, lambda d: d["config"].update(
        {"cgrouproot": str(limited), "cgroups": {"pids": {"max": 1000}}}))
    fam.edit(leaf, lambda d: d["config"].update({"cgrouproot": own}))
    m = _mergeconfig(fam, leaf)
    assert m.returncode == 0, m.stderr
    assert f"sets {own}, outside its ancestor's {limited}: ignored" in m.stderr, m.stderr
    for opts in ((), ("-f",)):
        r = fam.run("/bin/sh", "-c", "i=0; while [ $i -lt 20 ]; do sleep 1 & "
                    "i=$((i+1)); done; wait", node=leaf, opts=opts)
        assert "Cannot fork" in r.stderr, (r.returncode, r.stderr)


def test_a_descendant_never_picks_the_group_of_an_ancestors_user(root_family):
    """sys runs the family as nobody (and so as nobody's primary group); the grandchild
    keeps the user but sets set-group: root. Its group is ignored with a warning: the
    program runs as nobody:nogroup, cached and cold. The caller's own -G still applies."""
    import pwd
    nobody = pwd.getpwnam("nobody")
    fam = root_family
    leaf = fam.child("leaf")
    fam.edit(fam.sys, lambda d: d["config"].update({"set-user": "nobody"}))
    fam.edit(leaf, lambda d: d["config"].update({"set-group": "root"}))
    m = _mergeconfig(fam, leaf)
    assert m.returncode == 0, m.stderr
    assert "sets root: ignored, an ancestor's set-user nobody stands with its own group" \
        in m.stderr, m.stderr
    want = f"{nobody.pw_gid} {nobody.pw_gid} {nobody.pw_gid}"
    for opts in ((), ("-f",), ()):
        r, lines = fam.probe("info", node=leaf, opts=opts)
        ok(r)
        assert value(lines, "uid") == f"{nobody.pw_uid} {nobody.pw_uid} {nobody.pw_uid}"
        assert value(lines, "gid") == want, lines
    r, lines = fam.probe("info", node=leaf, opts=("-G", "0"))
    ok(r)
    assert value(lines, "gid") == "0 0 0"
