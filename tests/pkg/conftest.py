"""Fixtures for package-management tests: small noarch RPMs built once per session with
rpmbuild, local repositories made with createrepo_c, signing keys made with gpg, and a
fresh three-level node family (system -> platform -> app) per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from pkghelp import Family, add_repo, run, spec

for tool in ("rpmbuild", "createrepo_c", "rpm", "gpg", "rpmsign"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (run tools/setup.sh)", allow_module_level=True)


@dataclass(frozen=True)
class Built:
    """Everything the session built."""

    root: Path
    repo: Path               # main repository
    sigrepo: Path            # signed, unsigned and wrongly signed packages (gpgcheck=1)
    bulk: Path               # several packages with many files
    many: Path               # many1..many21: 21 packages of 40 files each
    key: Path                # trusted public key (ASCII armour)
    other_key: Path          # key of the wrong signer
    marker: Path             # host path the %post of `hostpost` tries to create
    rpms: Path               # all built packages


def _specs(marker: Path) -> dict[str, str]:
    tool = "/usr/bin/foo-tool"
    specs = {
        "libfoo-1": spec("libfoo", files={"/usr/lib/libfoo/libfoo.so.txt": "libfoo 1",
                                          tool: "#!/bin/sh\necho foo-tool 1"},
                         install=f"chmod 755 %{{buildroot}}{tool}"),
        "libfoo-2": spec("libfoo", "2.0", files={"/usr/lib/libfoo/libfoo.so.txt": "libfoo 2",
                                                 tool: "#!/bin/sh\necho foo-tool 2"},
                         install=f"chmod 755 %{{buildroot}}{tool}"),
        "foo-1": spec("foo", requires=("libfoo",),
                      files={"/usr/bin/foo": "foo 1"}, summary="the foo program"),
        "foo-2": spec("foo", "2.0", requires=("libfoo >= 2.0",),
                      files={"/usr/bin/foo": "foo 2"}, summary="the foo program"),
        "bar": spec("bar", requires=(tool,)),
        "needsmissing": spec("needsmissing", requires=("libmissing",)),
        "conflicta": spec("conflicta", conflicts=("conflictb",)),
        "conflictb": spec("conflictb"),
        "hostpost": spec("hostpost", scripts=f"%post\necho escaped > {marker}\n"),
        "allscripts": spec("allscripts", scripts="".join(
            f"%{kind}\necho {kind}-ran\n" for kind in ("pretrans", "pre", "post", "preun",
                                                       "postun", "posttrans"))),
        "noopscript": spec("noopscript", scripts="%post\n# nothing to do\n:\nexit 0\n"),
        "luapkg": spec("luapkg", scripts='%post -p <lua>\nprint("lua")\n'),
        "trigpkg": spec("trigpkg", scripts="%triggerin -- libfoo\necho triggered\n"),
        "evilconf": spec("evilconf", files={"/etc/redpak.yaml": "headers: {alias: pwned}"}),
        "linkpkg": spec("linkpkg", install="mkdir -p %{buildroot}/usr/lib\n"
                        "ln -s /etc %{buildroot}/usr/lib/hostetc",
                        files={"/usr/share/linkpkg/x": "x"}, file_list="/usr/lib/hostetc"),
    }
    for i in range(1, 5):
        specs[f"bulk{i}"] = spec(
            f"bulk{i}", files={}, file_list=f"/usr/share/bulk{i}",
            install=f"mkdir -p %{{buildroot}}/usr/share/bulk{i}\n"
                    f"for n in $(seq 1 400); do head -c 2048 /dev/urandom "
                    f"> %{{buildroot}}/usr/share/bulk{i}/f$n; done")
    # A copy of the host's id(1) setuid root, setgid root and with a file capability,
    # and a device node.
    specs["suidpkg"] = spec(
        "suidpkg", files={}, extra="AutoReqProv: no\n"
        "%define _binaries_in_noarch_packages_terminate_build 0",
        install="mkdir -p %{buildroot}/usr/bin\nfor f in suidid sgidid capid; do "
                "cp /usr/bin/id %{buildroot}/usr/bin/$f; done",
        file_list="%attr(4755,root,root) /usr/bin/suidid\n"
                  "%attr(2755,root,root) /usr/bin/sgidid\n"
                  "%caps(cap_net_raw=ep) /usr/bin/capid")
    specs["clashpkg"] = spec("clashpkg", files={"/usr/bin/foo": "not foo"})   # many repo
    specs["devpkg"] = spec("devpkg", file_list="%attr(0666,root,root) %dev(c,1,3) /dev/rpnull")
    for i in range(1, MANY + 1):
        specs[f"many{i}"] = spec(
            f"many{i}", files={}, file_list=f"/usr/share/many{i}\n/usr/bin/many{i}",
            install=f"mkdir -p %{{buildroot}}/usr/share/many{i} %{{buildroot}}/usr/bin\n"
                    f"echo many{i} > %{{buildroot}}/usr/bin/many{i}\n"
                    f"for n in $(seq 1 40); do head -c 4096 /dev/urandom "
                    f"> %{{buildroot}}/usr/share/many{i}/f$n; done")
    for name in ("signedpkg", "unsignedpkg", "wrongsig"):
        specs[name] = spec(name)
    return specs


MANY = 21


def _gpg_key(home: Path, uid: str) -> Path:
    home.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "rsa2048", "default",
          "never"], env=env)
    out = run(["gpg", "--armor", "--export", uid], env=env).stdout
    key = home.parent / f"{home.name}.asc"
    key.write_text(out)
    return key


def _sign(rpm: Path, home: Path, uid: str) -> None:
    env = dict(os.environ, GNUPGHOME=str(home))
    run(["rpmsign", "--addsign", "--define", f"_gpg_name {uid}", "--define",
          f"__gpg {shutil.which('gpg')}", str(rpm)], env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("rpms")
    marker = Path("/tmp") / f"redpak-test-escape-{uuid.uuid4().hex}"
    specdir = root / "specs"
    specdir.mkdir()
    paths = []
    for key, text in _specs(marker).items():
        path = specdir / f"{key}.spec"
        path.write_text(text)
        paths.append(str(path))
    top = root / "build"
    run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
          "--define", "_build_id_links none", *paths])
    rpms = top / "RPMS" / "noarch"

    good_uid, bad_uid = "Redpak Test <test@redpak.invalid>", "Intruder <bad@redpak.invalid>"
    key = _gpg_key(root / "gpg-good", good_uid)
    other = _gpg_key(root / "gpg-bad", bad_uid)
    _sign(rpms / "signedpkg-1.0-1.noarch.rpm", root / "gpg-good", good_uid)
    _sign(rpms / "wrongsig-1.0-1.noarch.rpm", root / "gpg-bad", bad_uid)

    repo, sigrepo, bulk, many = root / "repo", root / "sigrepo", root / "bulk", root / "many"
    for d in (repo, sigrepo, bulk, many):
        d.mkdir()
    for rpm in rpms.iterdir():
        name = rpm.name
        target = (sigrepo if name.startswith(("signedpkg", "unsignedpkg", "wrongsig"))
                  else bulk if name.startswith("bulk")
                  else many if name.startswith(("many", "clashpkg")) else repo)
        shutil.copy2(rpm, target / name)
    for d in (repo, sigrepo, bulk, many):
        run(["createrepo_c", "--quiet", str(d)])
    try:
        yield Built(root, repo, sigrepo, bulk, many, key, other, marker, rpms)
    finally:
        if marker.exists():
            marker.unlink()
        # gpg started an agent per key home: stop the ones this session started.
        for home in (root / "gpg-good", root / "gpg-bad"):
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                           capture_output=True, check=False)


@pytest.fixture
def family(tmp_path: Path, built: Built, monkeypatch: pytest.MonkeyPatch) -> Family:
    from redpak.pkg import ops

    # Scriptlets must meet the "no launcher" policy unless a test provides one.
    monkeypatch.setenv("REDPAK_REDWRAP", "")
    top = tmp_path / "nodes"
    system, platform, app = top / "system", top / "system/platform", top / "system/platform/app"
    quiet = ops.Options(out=lambda text: None)
    ops.manager(str(platform), None, False, None, None, False, quiet)
    ops.manager(str(app), None, False, None, None, False, quiet)
    add_repo(system, "main", built.repo)
    return Family(top, system, platform, app)


