"""Hostile packages and repositories: scriptlets never run on the host, Lua and triggers
refused, node configs protected, signatures and checksums enforced."""

from __future__ import annotations

import http.server
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from pkghelp import add_repo, run, set_gpgcheck

from redpak.cli import redwrap_dnf

pytestmark = pytest.mark.privileged     # installs: librpm chroots into the node


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    def call(*args: str) -> tuple[int, str, str]:
        status = redwrap_dnf.main(list(args))
        out, err = capsys.readouterr()
        return status, out, err
    return call


# --------------------------------------------------------------------------- scriptlets

def test_scriptlet_refused_without_launcher_and_host_untouched(family, built, cli) -> None:
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "hostpost")
    assert status == 1
    assert "hostpost-1.0-1.noarch has a %post" in err and "redwrap" in err
    assert not built.marker.exists()
    assert family.rpm_qa(family.app) == []
    assert not (family.app / "usr/share/hostpost").exists()      # nothing written


def test_scriptlet_runs_through_the_launcher(family, built, cli, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "launcher.log"
    fake = tmp_path / "redwrap"
    # Records its arguments (NUL-separated, one call per line) and runs nothing.
    fake.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" >> {log}\necho >> {log}\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("REDPAK_REDWRAP", str(fake))
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "hostpost")
    assert status == 0, err
    assert family.rpm_qa(family.app) == ["hostpost-1.0"]
    assert not built.marker.exists()             # librpm itself never ran it
    calls = [line.split("\0")[:-1] for line in log.read_text().splitlines() if line]
    assert len(calls) == 1
    argv = calls[0]
    assert argv[:5] == ["--admin", "--redpath", str(family.app), "--", "/bin/sh"]
    assert argv[5] == "-c" and str(built.marker) in argv[6]
    assert argv[-1] == "1"                       # $1: instances after install


def test_noop_scriptlet_is_accepted_without_launcher(family, cli) -> None:
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "noopscript")
    assert status == 0, err
    assert family.rpm_qa(family.app) == ["noopscript-1.0"]


@pytest.mark.parametrize("launcher", [False, True])
def test_lua_and_triggers_always_refused(family, cli, tmp_path: Path, launcher: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if launcher:
        fake = tmp_path / "redwrap"
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
        monkeypatch.setenv("REDPAK_REDWRAP", str(fake))
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "luapkg", "trigpkg")
    assert status == 1
    assert "luapkg-1.0-1.noarch has a Lua scriptlet" in err
    assert "trigpkg-1.0-1.noarch carries triggers" in err
    assert family.rpm_qa(family.app) == []


def test_package_may_not_overwrite_node_config(family, cli) -> None:
    before = (family.app / "etc/redpak.yaml").read_bytes()
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "evilconf")
    assert status == 1
    assert "/etc/redpak.yaml" in err
    assert (family.app / "etc/redpak.yaml").read_bytes() == before


def test_absolute_symlinks_resolve_inside_the_node(family, cli) -> None:
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "linkpkg")
    assert status == 0, err
    link = family.app / "usr/lib/hostetc"
    assert os.readlink(link) == "/etc"           # as packaged, seen from inside the node
    run(["rpm", "--dbpath", family.db(family.app), "--verifydb"])


def test_node_replaced_by_a_symlink_to_root_is_refused(family, tmp_path: Path, cli) -> None:
    real = family.app
    moved = tmp_path / "moved-app"
    shutil.move(str(real), str(moved))
    os.symlink("/", real)
    try:
        status, _, err = cli("--redpath", str(real), "install", "-y", "conflictb")
        assert status == 1
        assert "not a node" in err
        assert not Path("/usr/share/conflictb").exists()
    finally:
        os.unlink(real)
        shutil.move(str(moved), str(real))


@pytest.mark.parametrize("planted", ["repo.solv", "repomd.xml"])
def test_links_planted_in_the_cache_never_lead_a_write_to_the_host(family, tmp_path: Path,
                                                                 cli, planted) -> None:
    """The download cache lies in the node's var (`$NODE_PATH/var/cache/dnf`), which the
    node and its descendants write through the stock Public export, and the temporary
    names are predictable (NAME.PID.tmp). A node plants a link at the name this command
    will use, pointing at a host file: refreshing the metadata (as root) must replace the
    link, never write the host file."""
    status, _, err = cli("--redpath", str(family.app), "list")
    assert status == 0, err
    cache = next((family.app / "var/cache/dnf").glob("main-*"))
    victim = tmp_path / "host-file"
    victim.write_text("precious host data\n")
    (cache / "repomd.xml").unlink()              # a changed repository: refreshed below
    os.symlink(victim, cache / f"{planted}.{os.getpid()}.tmp")
    status, out, err = cli("--redpath", str(family.app), "list")
    assert status == 0, err
    assert "conflictb" in out
    assert victim.read_text() == "precious host data\n"
    assert not (cache / f"{planted}.{os.getpid()}.tmp").exists()
    assert (cache / "repomd.xml").is_file() and not (cache / "repomd.xml").is_symlink()


def test_a_cache_directory_swapped_for_a_link_mid_command_leads_nowhere(
        family, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that runs while root refreshes the metadata (a service of the family writes
    its var) swaps the repository's cache directory for a link to a host directory while
    the primary metadata downloads. Nothing may then be written into, or deleted from, the
    host directory: the cache is used through the descriptor opened before."""
    from redpak.pkg import repos

    status, _, err = cli("--redpath", str(family.app), "list")
    assert status == 0, err
    cache = next((family.app / "var/cache/dnf").glob("main-*"))
    (cache / "repomd.xml").unlink()              # a changed repository: refreshed below
    victim = tmp_path / "host-dir"
    victim.mkdir()
    (victim / "keep").write_text("precious\n")
    real_fetch = repos.fetch

    def fetch_while_the_node_swaps(url: str, *args, **kw):
        if "primary" in url and not cache.is_symlink():
            cache.rename(cache.with_name(cache.name + ".moved"))
            cache.symlink_to(victim)
        return real_fetch(url, *args, **kw)
    monkeypatch.setattr(repos, "fetch", fetch_while_the_node_swaps)
    status, out, err = cli("--redpath", str(family.app), "list")
    assert cache.is_symlink(), "the swap did not happen"
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]
    assert (victim / "keep").read_text() == "precious\n"
    assert status == 0, err
    assert "conflictb" in out


def test_a_package_swapped_in_the_cache_after_its_check_is_never_installed(
        family, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The download cache lies in the family's var, which running descendants may write.
    A node swaps the downloaded package, once checked against the repository's checksum,
    for its own build of the same name, version and release (self-consistent digests;
    gpgcheck is off): what is installed is still the package that was checked."""
    from pkghelp import spec
    from redpak.pkg import repos

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "evil.spec").write_text(spec("libfoo", files={
        "/usr/lib/libfoo/libfoo.so.txt": "planted", "/usr/bin/foo-tool": "planted"}))
    run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {tmp_path / 'build'}",
         str(specs / "evil.spec")])
    evil = (tmp_path / "build/RPMS/noarch/libfoo-1.0-1.noarch.rpm").read_bytes()
    real_fetch_package = repos.fetch_package
    swapped = []

    def fetch_then_the_node_swaps(*args, **kw):
        result = real_fetch_package(*args, **kw)
        path = result[0]
        os.unlink(path)
        Path(path).write_bytes(evil)
        swapped.append(path)
        return result
    monkeypatch.setattr(repos, "fetch_package", fetch_then_the_node_swaps)
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "libfoo-1.0")
    assert swapped, "the swap did not happen"
    assert status == 0, err
    assert (family.app / "usr/lib/libfoo/libfoo.so.txt").read_text() == "libfoo 1\n"
    assert (family.app / "usr/bin/foo-tool").read_text() != "planted\n"


# --------------------------------------------------------------------------- signatures

@pytest.fixture
def signed_family(family, built):
    add_repo(family.system, "signed", built.sigrepo)
    set_gpgcheck(family.system)
    run(["rpm", "--dbpath", family.db(family.system), "--import", str(built.key)])
    return family


def test_signed_package_installs(signed_family, cli) -> None:
    status, _, err = cli("--redpath", str(signed_family.app), "install", "-y", "signedpkg")
    assert status == 0, err
    assert signed_family.rpm_qa(signed_family.app) == ["signedpkg-1.0"]


def test_unsigned_package_refused(signed_family, cli) -> None:
    status, _, err = cli("--redpath", str(signed_family.app), "install", "-y", "unsignedpkg")
    assert status == 1
    assert "unsignedpkg-1.0-1.noarch is not signed" in err
    assert "gpgcheck is on, set by node 'system'" in err
    assert signed_family.rpm_qa(signed_family.app) == []


def test_wrongly_signed_package_refused(signed_family, cli) -> None:
    status, _, err = cli("--redpath", str(signed_family.app), "install", "-y", "wrongsig")
    assert status == 1
    assert "wrongsig-1.0-1.noarch is signed with key" in err and "does not trust" in err
    assert signed_family.rpm_qa(signed_family.app) == []


def test_gpgcheck_applies_to_every_repository(signed_family, cli) -> None:
    # the main repository's packages are unsigned: refused once the family says gpgcheck
    status, _, err = cli("--redpath", str(signed_family.app), "install", "-y", "conflictb")
    assert status == 1 and "is not signed" in err


def test_tampered_signed_package_refused(family, built, tmp_path: Path, cli) -> None:
    repo = tmp_path / "tampered"
    shutil.copytree(built.sigrepo, repo)
    rpm = repo / "signedpkg-1.0-1.noarch.rpm"
    data = bytearray(rpm.read_bytes())
    data[-100] ^= 0xFF                           # payload changed, signature kept
    rpm.write_bytes(bytes(data))
    shutil.rmtree(repo / "repodata")
    run(["createrepo_c", "--quiet", str(repo)])  # the repository vouches for the change
    add_repo(family.app, "tampered", repo, f"gpgcheck=1\ngpgkey=file://{built.key}\n")
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "signedpkg")
    assert status == 1
    assert "signedpkg-1.0-1.noarch does not verify" in err and "BAD" in err
    assert family.rpm_qa(family.app) == []


def test_repository_gpgkey_trusts_its_packages(family, built, cli) -> None:
    add_repo(family.app, "signed", built.sigrepo, f"gpgcheck=1\ngpgkey=file://{built.key}\n")
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "signedpkg")
    assert status == 0, err
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "wrongsig")
    assert status == 1 and "does not trust" in err
    # the repository's own gpgcheck=1 also covers unsigned packages
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "unsignedpkg")
    assert status == 1 and "gpgcheck=1 in" in err


# --------------------------------------------------------------------------- checksums

def test_repository_with_bad_metadata_checksum_refused(family, built, tmp_path: Path,
                                                       cli) -> None:
    repo = tmp_path / "badmeta"
    shutil.copytree(built.repo, repo)
    primary = next((repo / "repodata").glob("*-primary.xml.gz"))
    primary.write_bytes(primary.read_bytes() + b"\0")
    add_repo(family.app, "main", repo)           # shadows the system's main
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "conflictb")
    assert status == 1
    assert "checksum mismatch" in err and "main" in err
    assert family.rpm_qa(family.app) == []


def test_package_with_bad_checksum_refused(family, built, tmp_path: Path, cli) -> None:
    repo = tmp_path / "badpkg"
    shutil.copytree(built.repo, repo)
    shutil.copyfile(built.repo / "conflicta-1.0-1.noarch.rpm",
                    repo / "conflictb-1.0-1.noarch.rpm")
    add_repo(family.app, "main", repo)
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "conflictb")
    assert status == 1
    assert "checksum mismatch" in err and "conflictb" in err
    assert family.rpm_qa(family.app) == []


# --------------------------------------------------------------------------- http and cache

class _Handler(http.server.SimpleHTTPRequestHandler):
    requested: ClassVar[list[str]] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        type(self).requested.append(self.path)
        super().do_GET()


@pytest.fixture
def http_repo(built):
    _Handler.requested = []

    def handler(*args, **kw):
        return _Handler(*args, directory=str(built.repo), **kw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_repository_and_metadata_cache(family, http_repo, cli) -> None:
    repo_file = family.system / "etc/yum.repos.d/main.repo"
    repo_file.write_text(f"[main]\nname=main over http\nbaseurl={http_repo}/\n")
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "conflictb")
    assert status == 0, err
    assert family.rpm_qa(family.app) == ["conflictb-1.0"]
    first = list(_Handler.requested)
    assert any(p.endswith("primary.xml.gz") for p in first)
    assert "/conflictb-1.0-1.noarch.rpm" in first
    cache = family.app / "var/cache/dnf"
    assert any(cache.iterdir())                  # the leaf's cachedir, inside the node
    _Handler.requested.clear()
    status, _, err = cli("--redpath", str(family.app), "list", "--available")
    assert status == 0, err
    assert _Handler.requested == ["/repodata/repomd.xml"]     # unchanged: cache reused


def test_unreachable_repository_is_an_error(family, cli) -> None:
    repo_file = family.system / "etc/yum.repos.d/main.repo"
    repo_file.write_text("[main]\nname=gone\nbaseurl=file:///nonexistent/redpak/repo\n")
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "conflictb")
    assert status == 1
    assert "repository 'main'" in err and "/nonexistent/redpak/repo" in err


def _fake_launcher(tmp_path: Path, fail_on: str = "") -> tuple[Path, Path]:
    """A stand-in for `redwrap` that logs each call (NUL-separated argv, one per line) and
    fails when the scriptlet body holds `fail_on`."""
    log = tmp_path / "launcher.log"
    fake = tmp_path / "redwrap"
    fail = (f'case "$*" in *"{fail_on}"*) exit 1;; esac\n') if fail_on else ""
    fake.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" >> {log}\necho >> {log}\n{fail}"
                    "exit 0\n")
    fake.chmod(0o755)
    return fake, log


def _scriptlets_run(log: Path) -> list[tuple[str, str]]:
    calls = [line.split("\0")[:-1] for line in log.read_text().splitlines() if line]
    return [(argv[6].split()[1], argv[-1] if len(argv) > 8 else "") for argv in calls]


def test_scriptlets_run_in_rpm_order(family, cli, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake, log = _fake_launcher(tmp_path)
    monkeypatch.setenv("REDPAK_REDWRAP", str(fake))
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "allscripts")
    assert status == 0, err
    assert _scriptlets_run(log) == [("pretrans-ran", ""), ("pre-ran", "1"),
                                    ("post-ran", "1"), ("posttrans-ran", "")]
    log.unlink()
    status, _, err = cli("--redpath", str(family.app), "remove", "-y", "allscripts")
    assert status == 0, err
    assert _scriptlets_run(log) == [("preun-ran", "0"), ("postun-ran", "0")]


def test_failing_pre_scriptlet_skips_the_package(family, cli, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake, _ = _fake_launcher(tmp_path, fail_on="pre-ran")
    monkeypatch.setenv("REDPAK_REDWRAP", str(fake))
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "allscripts")
    assert status == 1
    assert "allscripts" in err and "%pre of allscripts" in err
    assert family.rpm_qa(family.app) == []
    assert not (family.app / "usr/share/allscripts").exists()
    assert not (family.app / ".redpak-dnf.journal").exists()


def test_scriptlets_in_the_real_admin_sandbox(family, built, tmp_path: Path) -> None:
    pytest.importorskip("redpak.cli.redwrap", reason="the redwrap launcher is not there yet")
    from pkghelp import dnf

    launcher = tmp_path / "redwrap"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m redpak.cli.redwrap \"$@\"\n")
    launcher.chmod(0o755)
    proc = dnf("--redpath", str(family.app), "install", "-y", "hostpost", "allscripts",
               env={"REDPAK_REDWRAP": str(launcher)})
    assert proc.returncode == 0, proc.stderr
    assert "pre-ran" in proc.stdout and "post-ran" in proc.stdout
    assert not built.marker.exists()             # the %post wrote inside the sandbox only
    assert family.rpm_qa(family.app) == ["allscripts-1.0", "hostpost-1.0"]


def test_scriptlets_have_no_network(family, tmp_path: Path) -> None:
    """A %pre scriptlet connecting to a listener on the host's 127.0.0.1 fails: scriptlets
    run in a network namespace of their own."""
    import socket

    from pkghelp import dnf

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    spec = tmp_path / "netpre.spec"
    spec.write_text(
        "Name: netpre\nVersion: 1.0\nRelease: 1\nSummary: connects out\nLicense: MIT\n"
        "BuildArch: noarch\n%description\nnetpre\n%pre\n"
        f"if bash -c 'echo hello > /dev/tcp/127.0.0.1/{port}' 2>/dev/null; "
        "then echo net-reached; else echo net-blocked; fi\n%files\n")
    run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {tmp_path / 'top'}", str(spec)])
    rpm_file = next((tmp_path / "top/RPMS/noarch").glob("netpre-*.rpm"))
    launcher = tmp_path / "redwrap"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} -m redpak.cli.redwrap \"$@\"\n")
    launcher.chmod(0o755)
    try:
        proc = dnf("--redpath", str(family.app), "install", "-y", str(rpm_file),
                   env={"REDPAK_REDWRAP": str(launcher)})
        assert proc.returncode == 0, proc.stderr
        assert "net-blocked" in proc.stdout and "net-reached" not in proc.stdout
        with pytest.raises(socket.timeout):
            listener.accept()[0].close()
    finally:
        listener.close()
    assert family.rpm_qa(family.app) == ["netpre-1.0"]
