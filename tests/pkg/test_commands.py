"""redwrap-dnf commands (SPEC §7, §8): each command on a real three-level family, real
rpm databases, real repositories; plus the command-line contract."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
from pkghelp import add_repo, dnf, run

from redpak.cli import redwrap_dnf
from redpak.pkg.progress import Progress

root_only = pytest.mark.privileged     # librpm chroots into the node to write it


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run redwrap-dnf in-process: returns (status, stdout, stderr)."""
    def call(*args: str) -> tuple[int, str, str]:
        try:
            status = redwrap_dnf.main(list(args))
        except SystemExit as exc:
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err
    return call


# --------------------------------------------------------------------------- contract

def test_help_exits_0() -> None:
    proc = dnf("--help")
    assert proc.returncode == 0
    for command in ("manager", "install", "remove", "upgrade", "reinstall", "list", "info",
                    "search", "repolist", "repoquery", "download"):
        assert command in proc.stdout


def test_usage_errors_exit_2(family) -> None:
    assert dnf("install", "foo").returncode == 2                 # no --redpath
    assert dnf("--redpath", str(family.app), "frobnicate").returncode == 2
    proc = dnf("--redpath", str(family.app), "install")           # no package
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_errors_exit_1_with_one_message(tmp_path: Path) -> None:
    proc = dnf("--redpath", str(tmp_path / "nowhere"), "list")
    assert proc.returncode == 1
    assert proc.stderr.startswith("redwrap-dnf: ")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- manager

def test_manager_creates_node_and_system_node(tmp_path: Path, cli) -> None:
    leaf = tmp_path / "sys" / "app"
    status, out, _ = cli("--redpath", str(leaf), "manager", "--alias", "myapp")
    assert status == 0
    assert (tmp_path / "sys/.rednode.yaml").is_file()
    assert (leaf / ".rednode.yaml").is_file()
    assert "alias: \"myapp\"" in (leaf / "etc/redpak.yaml").read_text()
    assert "alias: \"sys\"" in (tmp_path / "sys/etc/redpak.yaml").read_text()
    for node in (tmp_path / "sys", leaf):
        assert (node / "var/lib/rpm/rpmdb.sqlite").is_file()
        assert (node / "etc/yum.repos.d").is_dir()
    assert "system node" in out


def test_manager_no_system_node_and_update(tmp_path: Path, cli) -> None:
    leaf = tmp_path / "solo"
    assert cli("--redpath", str(leaf), "manager", "--no-system-node")[0] == 0
    assert not (tmp_path / ".rednode.yaml").exists()
    # alone in its family, the node gets the full template (it holds the host views)
    assert "full model" in (leaf / "etc/redpak.yaml").read_text()
    status, _, err = cli("--redpath", str(leaf), "manager", "--no-system-node")
    assert status == 1 and "already exists" in err
    conf = leaf / "etc/redpak.yaml"
    conf.write_text(conf.read_text() + "\n# local edit\n")
    assert cli("--redpath", str(leaf), "manager", "--update", "--no-system-node")[0] == 0
    assert "# local edit" not in conf.read_text()


def test_manager_templates(tmp_path: Path, cli) -> None:
    leaf = tmp_path / "sys" / "app"
    status, _, _ = cli("--redpath", str(leaf), "manager", "--template", "root",
                       "--template-admin", "root")
    assert status == 0
    assert "share_all: disabled" in (leaf / "etc/redpak.yaml").read_text()
    status, _, err = cli("--redpath", str(tmp_path / "x" / "y"), "manager", "--template",
                         "no-such-template")
    assert status == 1 and "no-such-template" in err


# --------------------------------------------------------------------------- changes

@root_only
def test_install_lays_files_under_node_and_records_them(family, cli) -> None:
    status, out, err = cli("--redpath", str(family.app), "install", "-y", "libfoo-1.0")
    assert status == 0, err
    assert (family.app / "usr/bin/foo-tool").is_file()
    assert (family.app / "usr/lib/libfoo/libfoo.so.txt").read_text() == "libfoo 1\n"
    assert not Path("/usr/lib/libfoo/libfoo.so.txt").exists()
    assert family.rpm_qa(family.app) == ["libfoo-1.0"]
    assert family.rpm_qa(family.system) == []
    assert "Installed libfoo-1.0-1.noarch" in out
    run(["rpm", "--dbpath", family.db(family.app), "--verifydb"])
    # the database keeps the usual paths (no relocation)
    owned = run(["rpm", "--dbpath", family.db(family.app), "-ql", "libfoo"]).stdout
    assert "/usr/bin/foo-tool" in owned.splitlines()


# What only other commands need (the launch plan and its compiler), and what costs start-up
# time without being needed (dataclasses and typing ~15 ms, tempfile, urllib).
NOT_FOR_INSTALL = ["dataclasses", "typing", "inspect", "tempfile", "urllib.parse",
                   "redpak.plan", "redpak.planfile", "redpak.build", "redpak.controls",
                   "redpak.security"]


@root_only
def test_install_imports_only_what_it_uses(family) -> None:
    code = ("import sys\nfrom redpak.cli.redwrap_dnf import main\n"
            f"status = main(['-y', '-q', '--redpath', {str(family.app)!r}, 'install', "
            "'libfoo-1.0'])\n"
            f"print(' '.join(m for m in {NOT_FOR_INSTALL!r} if m in sys.modules))\n"
            "sys.exit(status)")
    proc = run([sys.executable, "-c", code], env=dict(os.environ, REDPAK_REDWRAP=""))
    assert family.rpm_qa(family.app) == ["libfoo-1.0"]
    assert proc.stdout.split() == [], f"redwrap-dnf install imports {proc.stdout}"


@root_only
def test_install_resolves_dependencies(family, cli) -> None:
    status, out, err = cli("--redpath", str(family.app), "install", "-y", "foo-1.0")
    assert status == 0, err
    assert "Installing dependencies:" in out
    assert family.rpm_qa(family.app) == ["foo-1.0", "libfoo-2.0"]     # the best libfoo


@root_only
def test_install_local_rpm_file(family, built, cli) -> None:
    rpm = built.rpms / "conflictb-1.0-1.noarch.rpm"
    status, _, err = cli("--redpath", str(family.app), "install", "-y", str(rpm))
    assert status == 0, err
    assert family.rpm_qa(family.app) == ["conflictb-1.0"]


@root_only
def test_install_local_rpm_by_relative_path(family, built, cli, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(built.rpms)
    status, _, err = cli("--redpath", str(family.app), "install", "-y",
                         "./conflictb-1.0-1.noarch.rpm")
    assert status == 0, err
    assert family.rpm_qa(family.app) == ["conflictb-1.0"]
    # A path that is no package file is an error about that file, not "no package matches
    # './x.rpm' in the enabled repositories".
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "dir.rpm").mkdir()
    monkeypatch.chdir(tmp_path)
    for spec, words in (("./missing-1.0-1.noarch.rpm", "no such file"),
                        ("sub/missing.rpm", "no such file"),
                        ("./notes.txt", "not a package file"),
                        ("./dir.rpm", "not a package file")):
        status, _, err = cli("--redpath", str(family.app), "install", "-y", spec)
        assert status == 1
        assert f"{spec}: {words}" in err and "no package matches" not in err
    assert family.rpm_qa(family.app) == ["conflictb-1.0"]


@root_only
def test_install_already_installed_is_nothing_to_do(family, cli) -> None:
    assert cli("--redpath", str(family.app), "install", "-y", "conflictb")[0] == 0
    status, out, _ = cli("--redpath", str(family.app), "install", "-y", "conflictb")
    assert status == 0
    assert "already installed" in out and "Nothing to do." in out


@root_only
def test_remove(family, cli) -> None:
    assert cli("--redpath", str(family.app), "install", "-y", "foo-1.0")[0] == 0
    status, out, err = cli("--redpath", str(family.app), "remove", "-y", "libfoo")
    assert status == 0, err
    # like dnf: packages of the node that need what goes, go too
    assert "Removing dependent packages:" in out
    assert family.rpm_qa(family.app) == []
    assert not (family.app / "usr/bin/foo").exists()
    status, _, err = cli("--redpath", str(family.app), "remove", "-y", "libfoo")
    assert status == 1 and "no package matches 'libfoo'" in err


@root_only
def test_upgrade_and_reinstall(family, cli) -> None:
    assert cli("--redpath", str(family.app), "install", "-y", "libfoo-1.0")[0] == 0
    status, out, err = cli("--redpath", str(family.app), "upgrade", "-y")
    assert status == 0, err
    assert "Upgrading:" in out
    assert family.rpm_qa(family.app) == ["libfoo-2.0"]
    assert (family.app / "usr/lib/libfoo/libfoo.so.txt").read_text() == "libfoo 2\n"
    (family.app / "usr/lib/libfoo/libfoo.so.txt").write_text("damaged\n")
    status, out, err = cli("--redpath", str(family.app), "reinstall", "-y", "libfoo")
    assert status == 0, err
    assert "Reinstalling:" in out
    assert (family.app / "usr/lib/libfoo/libfoo.so.txt").read_text() == "libfoo 2\n"
    run(["rpm", "--dbpath", family.db(family.app), "--verifydb"])
    status, out, _ = cli("--redpath", str(family.app), "upgrade", "-y")
    assert status == 0 and "Nothing to do." in out


@root_only
def test_confirmation_prompt(family) -> None:
    app = str(family.app)
    proc = dnf("--redpath", app, "install", "conflictb")          # stdin: EOF
    assert proc.returncode == 1
    assert "Is this ok [y/N]" in proc.stdout
    assert "aborted" in proc.stderr
    assert family.rpm_qa(family.app) == []
    proc = dnf("--redpath", app, "install", "conflictb", input="n\n")
    assert proc.returncode == 1 and family.rpm_qa(family.app) == []
    proc = dnf("--redpath", app, "install", "conflictb", input="y\n")
    assert proc.returncode == 0, proc.stderr
    assert "Transaction summary: Install 1 package" in proc.stdout
    assert family.rpm_qa(family.app) == ["conflictb-1.0"]


@root_only
def test_progress_is_plain_lines_without_terminal(family) -> None:
    proc = dnf("--redpath", str(family.app), "install", "-y", "conflictb")
    assert proc.returncode == 0
    assert "\r" not in proc.stdout
    assert "Installing conflictb-1.0-1.noarch (1/1)" in proc.stdout


def test_progress_draws_a_bar_on_a_terminal() -> None:
    stream = io.StringIO()
    p = Progress(stream, tty=True)
    p.item("Installing", "foo-1.0-1.noarch", 1, 2)
    p.update("Installing", "foo-1.0-1.noarch", 1, 2, 0.5)
    p.done("Installing", "foo-1.0-1.noarch", 2, 2)
    text = stream.getvalue()
    assert "\r" in text and "[" in text and "#" in text and text.endswith("\n")
    plain = io.StringIO()
    Progress(plain, tty=False).item("Installing", "foo", 1, 2)
    assert plain.getvalue() == "  Installing foo (1/2)\n"


# --------------------------------------------------------------------------- queries

@root_only
def test_list_shows_owner_of_each_package(family, cli) -> None:
    assert cli("--redpath", str(family.system), "install", "-y", "libfoo-1.0")[0] == 0
    assert cli("--redpath", str(family.app), "install", "-y", "bar")[0] == 0
    status, out, _ = cli("--redpath", str(family.app), "list", "--installed")
    assert status == 0
    lines = out.splitlines()
    assert any(line.startswith("libfoo.noarch") and "@system (ancestor)" in line
               for line in lines)
    assert any(line.startswith("bar.noarch") and line.endswith("@app") for line in lines)
    status, out, _ = cli("--redpath", str(family.app), "list", "--json")
    data = json.loads(out)
    owners = {r["name"]: (r["node"], r["owner"]) for r in data["installed"]}
    assert owners == {"libfoo": ("system", "ancestor"), "bar": ("app", "node")}
    available = {(r["name"], r["version"]) for r in data["available"]}
    assert ("libfoo", "2.0") in available and ("libfoo", "1.0") not in available
    status, out, _ = cli("--redpath", str(family.app), "list", "available", "foo")
    assert status == 0 and "foo.noarch" in out and "Installed" not in out


def test_list_available_info_search(family, cli) -> None:
    status, out, _ = cli("--redpath", str(family.app), "list", "--available", "lib*")
    assert status == 0
    assert "libfoo.noarch" in out and "1.0-1" in out and "2.0-1" in out
    assert "bar.noarch" not in out
    status, out, _ = cli("--redpath", str(family.app), "info", "foo-2.0")
    assert status == 0
    assert "Name         : foo" in out and "Version      : 2.0" in out
    assert "Repository   : main" in out and "the foo program" in out
    status, out, _ = cli("--redpath", str(family.app), "search", "program")
    assert status == 0 and out.strip() == "foo.noarch : the foo program"
    status, _, err = cli("--redpath", str(family.app), "search", "zzzz-none")
    assert status == 1 and "zzzz-none" in err
    # Quoted like every other "no package matches" message (a name with spaces is readable).
    status, _, err = cli("--redpath", str(family.app), "info", "zzzz-none", "yyy")
    assert status == 1 and "no package matches 'zzzz-none' 'yyy'" in err


def test_repolist_leaf_wins_over_ancestor(family, built, cli) -> None:
    add_repo(family.platform, "extra", built.bulk)
    add_repo(family.app, "main", built.sigrepo)        # same id as the system's
    status, out, _ = cli("--redpath", str(family.app), "repolist", "--json")
    assert status == 0
    rows = {r["id"]: r for r in json.loads(out)}
    assert set(rows) == {"main", "extra"}
    assert rows["main"]["node"] == "app"
    assert rows["main"]["baseurl"] == [f"file://{built.sigrepo}"]
    assert rows["extra"]["node"] == "platform"
    status, out, _ = cli("--redpath", str(family.system), "repolist")
    assert status == 0 and "main" in out and "extra" not in out


def test_repolist_disabled_and_bad_repo_file(family, built, cli) -> None:
    add_repo(family.app, "off", built.bulk, "enabled=0\n")
    status, out, _ = cli("--redpath", str(family.app), "repolist", "--all")
    assert "off" in out and "disabled" in out
    status, out, _ = cli("--redpath", str(family.app), "repolist")
    assert "off" not in out
    (family.app / "etc/yum.repos.d/bad.repo").write_text("[bad]\nname=x\nenabled=maybe\n"
                                                         "baseurl=file:///x\n")
    status, _, err = cli("--redpath", str(family.app), "repolist")
    assert status == 1
    assert "bad.repo:1" in err and "enabled" in err


def test_repoquery(family, cli) -> None:
    def query(*args: str) -> list[str]:
        status, out, err = cli("--redpath", str(family.app), "repoquery", *args)
        assert status == 0, err
        return out.splitlines()

    assert query("libfoo") == ["libfoo-1.0-1.noarch", "libfoo-2.0-1.noarch"]
    assert "libfoo >= 2.0" in query("--requires", "foo-2.0")
    # bar requires /usr/bin/foo-tool, a file of libfoo
    assert query("--whatrequires", "libfoo") == ["bar-1.0-1.noarch", "foo-1.0-1.noarch",
                                                 "foo-2.0-1.noarch"]
    assert query("--whatprovides", "/usr/bin/foo-tool") == ["libfoo-1.0-1.noarch",
                                                            "libfoo-2.0-1.noarch"]
    assert "/usr/bin/foo-tool" in query("-l", "libfoo-2.0")
    assert "conflictb = 1.0-1" in query("--provides", "conflictb")


@root_only
def test_repoquery_installed(family, cli) -> None:
    assert cli("--redpath", str(family.system), "install", "-y", "libfoo-1.0")[0] == 0
    status, out, err = cli("--redpath", str(family.app), "repoquery", "--installed", "--json")
    assert status == 0, err
    rows = json.loads(out)
    assert [(r["nevra"], r["node"]) for r in rows] == [("libfoo-1.0-1.noarch", "system")]
    # An installed package's details come from its header, and it has a node, no repository
    # (it was shown as "@commandline", with an empty summary and size 0).
    assert rows[0]["summary"] == "redpak test package libfoo" and rows[0]["size"] > 0
    assert rows[0]["node_path"] == str(family.system) and "repo" not in rows[0]


@root_only
def test_download(family, tmp_path: Path, cli, built) -> None:
    dest = tmp_path / "dl"
    dest.mkdir()
    status, _, err = cli("--redpath", str(family.app), "download", "--destdir", str(dest),
                         "libfoo")
    assert status == 0, err
    assert sorted(os.listdir(dest)) == ["libfoo-2.0-1.noarch.rpm"]
    assert (dest / "libfoo-2.0-1.noarch.rpm").read_bytes() == \
        (built.repo / "libfoo-2.0-1.noarch.rpm").read_bytes()
    # --resolve adds what the node lacks, not what an ancestor already has
    assert cli("--redpath", str(family.system), "install", "-y", "libfoo-1.0")[0] == 0
    other = tmp_path / "dl2"
    other.mkdir()
    status, _, err = cli("--redpath", str(family.app), "download", "--resolve",
                         "--destdir", str(other), "bar")
    assert status == 0, err
    assert sorted(os.listdir(other)) == ["bar-1.0-1.noarch.rpm"]
    status, _, err = cli("--redpath", str(family.app), "download", "--destdir", str(dest),
                         "nosuchpkg")
    assert status == 1 and "nosuchpkg" in err
