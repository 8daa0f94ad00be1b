"""Family rules of SPEC §8 on a three-level family (system -> platform -> app): ancestors'
packages count as installed and are never changed from below; a parent never breaks its
descendants; solver problems are reported in plain words."""

from __future__ import annotations

import pytest
from pkghelp import run

from redpak.cli import redwrap_dnf

pytestmark = pytest.mark.privileged     # installs: librpm chroots into the node


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    def call(*args: str) -> tuple[int, str, str]:
        status = redwrap_dnf.main(list(args))
        out, err = capsys.readouterr()
        return status, out, err
    return call


@pytest.fixture
def with_libfoo(family, cli):
    """The system node holds libfoo 1.0."""
    status, _, err = cli("--redpath", str(family.system), "install", "-y", "libfoo-1.0")
    assert status == 0, err
    return family


def test_ancestor_package_is_not_installed_again(with_libfoo, cli) -> None:
    fam = with_libfoo
    status, out, err = cli("--redpath", str(fam.app), "install", "-y", "foo-1.0")
    assert status == 0, err
    assert fam.rpm_qa(fam.app) == ["foo-1.0"]
    assert fam.rpm_qa(fam.platform) == []
    assert fam.rpm_qa(fam.system) == ["libfoo-1.0"]
    assert not (fam.app / "usr/lib/libfoo").exists()
    assert "Installing dependencies" not in out


def test_file_requirement_met_by_ancestor_file(with_libfoo, cli) -> None:
    fam = with_libfoo
    status, _, err = cli("--redpath", str(fam.app), "install", "-y", "bar")
    assert status == 0, err
    assert fam.rpm_qa(fam.app) == ["bar-1.0"]


def test_asking_for_an_ancestors_package_is_nothing_to_do(with_libfoo, cli) -> None:
    status, out, _ = cli("--redpath", str(with_libfoo.app), "install", "-y", "libfoo")
    assert status == 0
    assert "already installed in ancestor node 'system'" in out
    assert with_libfoo.rpm_qa(with_libfoo.app) == []


@pytest.mark.parametrize("command", ["remove", "upgrade", "reinstall"])
def test_touching_an_ancestors_package_is_refused_naming_it(with_libfoo, cli,
                                                            command) -> None:
    fam = with_libfoo
    status, _, err = cli("--redpath", str(fam.app), command, "-y", "libfoo")
    assert status == 1
    assert "ancestor node 'system'" in err and str(fam.system) in err
    assert fam.rpm_qa(fam.system) == ["libfoo-1.0"]


def test_dependency_needing_an_ancestor_upgrade_is_refused_naming_it(with_libfoo,
                                                                     cli) -> None:
    fam = with_libfoo
    # foo 2.0 needs libfoo >= 2.0: only an upgrade of the system's libfoo would do
    status, _, err = cli("--redpath", str(fam.app), "install", "-y", "foo-2.0")
    assert status == 1
    assert "upgrade libfoo-1.0-1.noarch" in err
    assert "ancestor node 'system'" in err
    assert fam.rpm_qa(fam.app) == [] and fam.rpm_qa(fam.system) == ["libfoo-1.0"]


def test_removing_what_a_descendant_needs_is_refused_naming_it(with_libfoo, cli) -> None:
    fam = with_libfoo
    assert cli("--redpath", str(fam.app), "install", "-y", "foo-1.0")[0] == 0
    status, _, err = cli("--redpath", str(fam.system), "remove", "-y", "libfoo")
    assert status == 1
    assert "descendant node 'app'" in err and str(fam.app) in err
    assert "foo-1.0-1.noarch" in err
    assert fam.rpm_qa(fam.system) == ["libfoo-1.0"]
    assert (fam.system / "usr/bin/foo-tool").exists()


def test_upgrading_what_a_descendant_pins_is_refused(with_libfoo, cli, built) -> None:
    fam = with_libfoo
    # bar needs /usr/bin/foo-tool, which libfoo 2.0 still has: upgrade allowed
    assert cli("--redpath", str(fam.app), "install", "-y", "bar")[0] == 0
    status, _, err = cli("--redpath", str(fam.system), "upgrade", "-y", "libfoo")
    assert status == 0, err
    assert fam.rpm_qa(fam.system) == ["libfoo-2.0"]
    # a descendant that needs exactly libfoo = 2.0 blocks a downgrade/removal
    status, _, err = cli("--redpath", str(fam.platform), "install", "-y", "foo-2.0")
    assert status == 0, err
    status, _, err = cli("--redpath", str(fam.system), "remove", "-y", "libfoo")
    assert status == 1
    assert "descendant node 'platform'" in err and "descendant node 'app'" in err


def test_dependency_missing_names_it(family, cli) -> None:
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "needsmissing")
    assert status == 1
    assert "nothing provides libmissing needed by needsmissing-1.0-1.noarch" in err
    assert family.rpm_qa(family.app) == []


def test_conflict_is_reported_with_solutions(family, cli) -> None:
    assert cli("--redpath", str(family.app), "install", "-y", "conflictb")[0] == 0
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "conflicta")
    assert status == 1
    assert "conflicts with conflictb" in err
    assert "possible solution" in err
    assert family.rpm_qa(family.app) == ["conflictb-1.0"]


def test_conflict_with_an_ancestors_package_names_it(family, cli) -> None:
    assert cli("--redpath", str(family.system), "install", "-y", "conflictb")[0] == 0
    status, _, err = cli("--redpath", str(family.app), "install", "-y", "conflicta")
    assert status == 1
    assert "conflictb-1.0-1.noarch" in err and "ancestor node 'system'" in err


def test_new_package_conflicting_with_a_descendant_is_refused(family, cli) -> None:
    assert cli("--redpath", str(family.app), "install", "-y", "conflictb")[0] == 0
    status, _, err = cli("--redpath", str(family.system), "install", "-y", "conflicta")
    assert status == 1
    assert "descendant node 'app'" in err and "conflict" in err
    assert family.rpm_qa(family.system) == []


def test_databases_stay_consistent(with_libfoo, cli) -> None:
    fam = with_libfoo
    assert cli("--redpath", str(fam.app), "install", "-y", "foo-1.0")[0] == 0
    for node in (fam.system, fam.platform, fam.app):
        run(["rpm", "--dbpath", fam.db(node), "--verifydb"])


@pytest.mark.parametrize("request_", [["conflictb"], ["bar"]])
def test_package_of_a_descendant_is_not_installed_in_an_ancestor(family, request_) -> None:
    """`install p` in the child, then in the root (directly, or pulled in as a
    dependency: bar needs libfoo's /usr/bin/foo-tool): refused, naming the descendant."""
    from pkghelp import dnf

    child = ["conflictb"] if request_ == ["conflictb"] else ["libfoo"]
    assert dnf("--redpath", str(family.app), "install", "-y", *child).returncode == 0
    proc = dnf("--redpath", str(family.system), "install", "-y", *request_)
    assert proc.returncode == 1
    assert f"descendant node 'app' ({family.app})" in proc.stderr
    assert f"redwrap-dnf --redpath {family.app} remove {child[0]}" in proc.stderr
    assert family.rpm_qa(family.system) == []
    assert family.rpm_qa(family.app) == [f"{child[0]}-{'1.0' if child == ['conflictb'] else '2.0'}"]
