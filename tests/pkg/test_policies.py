"""Pure-Python parts of package management: path policy, scriptlet judgement, journal path
containment, .repo parsing, the family lock, state directories, node states."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from redpak.errors import PackageError
from redpak.pkg import journal
from redpak.pkg.lock import FamilyLock
from redpak.pkg.repos import armored_blocks, check_digest, parse_repo_file
from redpak.pkg.scriptlets import Scriptlet, find_launcher, refusal
from redpak.pkg.session import NodeRef, _inside_family, make_dirs
from redpak.pkg.transaction import _bad_path


@pytest.mark.parametrize("path", ["/usr/../../etc/passwd", "/usr/./bin/x", "usr/bin/x",
                                  "/usr//bin/x", "/usr/bin/..", "/etc/redpak.yaml",
                                  "/.rednode.yaml", "/var/lib/rpm/rpmdb.sqlite",
                                  "/etc/redpack-admin.yaml"])
def test_paths_leaving_the_node_or_over_its_config_are_refused(path: str) -> None:
    assert _bad_path(["/usr/bin/ok", path]) == path


def test_plain_paths_are_accepted() -> None:
    assert _bad_path(["/usr/bin/x", "/etc/yum.repos.d/x.repo", "/var/lib/rpm"]) is None


@pytest.mark.parametrize("prog,body,noop", [
    (("/bin/sh",), "", True),
    (("/bin/sh",), "# comment\n:\ntrue\nexit 0\n", True),
    (("/bin/sh",), "echo hi > /etc/x\n", False),
    (("/sbin/ldconfig",), "", False),
    (("/bin/sh", "-e"), "", False),
    (("<lua>",), "", False),
])
def test_noop_scriptlets(prog: tuple[str, ...], body: str, noop: bool) -> None:
    assert Scriptlet("post", prog, body).noop is noop


class _Header(dict):
    def __getitem__(self, key: int):
        return self.get(key)


def test_refusal_reasons() -> None:
    post = _Header({1024: "echo x", 1086: "/bin/sh"})
    assert "no `redwrap` launcher" in refusal("p-1-1.noarch", post, ("post",), None)
    assert refusal("p-1-1.noarch", post, ("post",), "/usr/bin/redwrap") is None
    assert refusal("p-1-1.noarch", post, ("preun",), None) is None    # kind not concerned
    lua = _Header({1024: "print(1)", 1086: "<lua>"})
    assert "Lua" in refusal("p-1-1.noarch", lua, ("post",), "/usr/bin/redwrap")
    trig = _Header({1065: ["echo"]})
    assert "triggers" in refusal("p-1-1.noarch", trig, ("post",), "/usr/bin/redwrap")


def test_find_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDPAK_REDWRAP", "")
    assert find_launcher() is None
    fake = tmp_path / "redwrap"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("REDPAK_REDWRAP", str(fake))
    assert find_launcher() == str(fake)
    monkeypatch.delenv("REDPAK_REDWRAP")
    monkeypatch.setenv("PATH", str(tmp_path))
    beside = Path(os.path.dirname(os.sys.executable)) / "redwrap"
    assert find_launcher() == (str(beside) if os.access(beside, os.X_OK) else str(fake))


def test_journal_never_touches_paths_outside_the_node(tmp_path: Path) -> None:
    node = tmp_path / "node"
    (node / "usr").mkdir(parents=True)
    (node / ".rednode.yaml").write_text("state: Enable\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("keep me\n")
    os.symlink(outside, node / "usr" / "escape")
    data = {"version": 1, "install": [{"nevra": "x-1-1.noarch",
                                       "paths": ["/usr/escape/victim", "/../outside/victim"]}],
            "replace": []}

    class NoOwners:
        def dbMatch(self, *args):
            return []

    removed, leftovers = journal.recover(str(node), data, NoOwners(), set())
    assert victim.read_text() == "keep me\n"
    assert removed == [] and leftovers == []


def test_journal_write_records_only_new_paths(tmp_path: Path) -> None:
    node = tmp_path / "node"
    (node / "usr/bin").mkdir(parents=True)
    (node / "usr/bin/old").write_text("")
    journal.write(str(node), "install x", [("x-1-1.noarch", ["/usr/bin/old", "/usr/bin/new",
                                                             "/usr/lib/x/y"])], [])
    data = journal.read(str(node))
    assert data["install"][0]["paths"] == ["/usr/bin/new", "/usr/lib/x/y", "/usr/lib/x",
                                           "/usr/lib"]
    journal.clear(str(node))
    assert journal.read(str(node)) is None


def test_cut_short_journal_is_read_as_empty(tmp_path: Path) -> None:
    (tmp_path / journal.JOURNAL).write_text('{"version": 1, "install": [{"nev')
    assert journal.read(str(tmp_path))["install"] == []


def test_repo_file_parsing(tmp_path: Path) -> None:
    node = NodeRef(str(tmp_path), "n")
    path = tmp_path / "x.repo"
    path.write_text("# c\n[a]\nname=A\nbaseurl=file:///srv/a\n  http://mirror/a\n"
                    "gpgcheck=yes\ngpgkey=file:///k1, file:///k2\nenabled=0\n\n"
                    "[b]\nbaseurl=https://h/$basearch/\n")
    a, b = parse_repo_file(str(path), node)
    assert (a.id, a.name, a.baseurls, a.gpgcheck, a.gpgkeys, a.enabled, a.line) == (
        "a", "A", ("file:///srv/a", "http://mirror/a"), True, ("file:///k1", "file:///k2"),
        False, 2)
    assert b.baseurls == (f"https://h/{os.uname().machine}/",) and b.enabled and b.line == 10


@pytest.mark.parametrize("text,words", [
    ("[a]\nname=x\n", ["x.repo:1", "no baseurl"]),
    ("[a]\nmirrorlist=http://m\n", ["mirrorlist", "not supported"]),
    ("[a]\nbaseurl=ftp://x\n", ["ftp://x", "file:///"]),
    ("[a]\nbaseurl=file:///x/$releasever\n", ["$releasever", "unknown variable"]),
    ("[a b]\nbaseurl=file:///x\n", ["not a valid repository id"]),
    ("[a]\nbaseurl=file:///x\ngpgcheck=perhaps\n", ["gpgcheck", "not a boolean"]),
    ("[a]\nbaseurl=file:///x\n[a]\nbaseurl=file:///y\n", ["x.repo:3:", "[a]", "twice"]),
    # Syntax errors: the line number and the line, not configparser's wording.
    ("[a]\nbaseurl=file:///x\nthis is junk\n", ["x.repo:3:", "'this is junk'",
                                                 "not KEY=VALUE"]),
    ("[a\nbaseurl=file:///x\n", ["x.repo:1:", "'[a'", "missing ']'"]),
    ("# c\nbaseurl=file:///x\n[a]\n", ["x.repo:2:", "outside any section"]),
    ("[a]\nbaseurl=file:///x\nname=1\nname=2\n", ["x.repo:4:", "name", "twice"]),
])
def test_repo_file_errors_name_file_and_key(tmp_path: Path, text: str,
                                            words: list[str]) -> None:
    path = tmp_path / "x.repo"
    path.write_text(text)
    with pytest.raises(PackageError) as err:
        parse_repo_file(str(path), NodeRef(str(tmp_path), "n"))
    for word in words:
        assert word in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value) and "[line" not in str(err.value)


def test_digest_check() -> None:
    check_digest(b"abc", "sha256",
                 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "x")
    with pytest.raises(PackageError, match="checksum mismatch"):
        check_digest(b"abd", "sha256",
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "x")
    with pytest.raises(PackageError, match="not supported"):
        check_digest(b"abc", "md5", "900150983cd24fb0d6963f7d28e17f72", "x")


def test_armored_blocks() -> None:
    block = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n-----END PGP PUBLIC KEY BLOCK-----"
    assert armored_blocks(f"junk\n{block}\nmore\n{block}\n") == [block + "\n"] * 2
    assert armored_blocks("no key here") == []


def test_state_dirs_stay_inside_the_family() -> None:
    family = (NodeRef("/n/sys", "sys"), NodeRef("/n/sys/app", "app"))
    assert _inside_family("/var/cache/dnf", family) == "/n/sys/app/var/cache/dnf"
    assert _inside_family("/n/sys/var/cache", family) == "/n/sys/var/cache"
    assert _inside_family("/../../etc", family) == "/n/sys/app/etc"
    assert _inside_family("relative/dir", family) == "/n/sys/app/relative/dir"


def test_make_dirs_refuses_symlinks(tmp_path: Path) -> None:
    os.symlink("/etc", tmp_path / "var")
    with pytest.raises(PackageError, match="not a directory"):
        make_dirs(str(tmp_path / "var/cache/dnf"), str(tmp_path))
    assert make_dirs(str(tmp_path / "a/b"), str(tmp_path)) == str(tmp_path / "a/b")
    assert (tmp_path / "a/b").is_dir()


def test_family_lock_waits_then_times_out(tmp_path: Path) -> None:
    waited = []
    with FamilyLock(str(tmp_path)):
        start = time.monotonic()
        with pytest.raises(PackageError) as err:
            with FamilyLock(str(tmp_path), timeout=0.3, on_wait=waited.append):
                pass
        assert time.monotonic() - start >= 0.3
    assert waited and "waiting for another package transaction" in waited[0]
    assert f"pid {os.getpid()}" in str(err.value) and "--lock-timeout" in str(err.value)
    with FamilyLock(str(tmp_path), timeout=0.3):       # free again
        pass


def test_lock_file_symlink_refused(tmp_path: Path) -> None:
    os.symlink(tmp_path / "target", tmp_path / ".redpak-dnf.lock")
    with pytest.raises(PackageError, match="symlink"):
        with FamilyLock(str(tmp_path)):
            pass
    assert not (tmp_path / "target").exists()


def test_node_not_enable_is_refused_naming_it(family) -> None:
    from redpak.errors import NodeError
    from redpak.pkg.ops import list_packages

    status = family.platform / ".rednode.yaml"
    status.write_text(status.read_text().replace("state: Enable", "state: Disable"))
    with pytest.raises(NodeError) as err:
        list_packages(str(family.app), "installed", [])
    assert "'platform'" in str(err.value) and "Disable" in str(err.value)
