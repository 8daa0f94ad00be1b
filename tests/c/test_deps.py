"""rp_plan_check_deps() on file dependencies, through tests/c/test_deps.c under ASan/UBSan:
a dependency recorded as absent (dev = ino = size = 0, mtime_ns = -1) must stay absent."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from redpak.plan import ABSENT_MTIME
from redpak.planfile import FileDep, LaunchPlan

HERE = Path(__file__).resolve().parent
CSRC = HERE.parents[1] / "csrc"
CFLAGS = ["-O1", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror",
          "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed for the C tests")
    out = tmp_path_factory.mktemp("cdeps") / "test_deps"
    subprocess.run(["gcc", *CFLAGS, f"-I{CSRC}", "-o", str(out), str(HERE / "test_deps.c"),
                    str(CSRC / "plan.c"), str(CSRC / "error.c")], check=True)
    return out


def absent(path: Path) -> FileDep:
    return FileDep(str(path), 0, 0, 0, ABSENT_MTIME)


def present(path: Path) -> FileDep:
    st = path.stat()
    return FileDep(str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def verdicts(driver: Path, tmp_path: Path, *deps: tuple[FileDep, ...]) -> list[str]:
    files = []
    for i, dep in enumerate(deps):
        plan = LaunchPlan(cacheable=True, caller_uid=os.getuid(), caller_gid=os.getgid(),
                          file_deps=dep)
        f = tmp_path / f"plan{i}"
        f.write_bytes(plan.encode())
        files.append(str(f))
    r = subprocess.run([str(driver), *files], capture_output=True, text=True, check=True,
                       timeout=60)
    return r.stdout.splitlines()


def test_absent_dependency_accepted_while_missing(driver, tmp_path):
    conf = tmp_path / "conf"
    conf.write_text("x")
    got = verdicts(driver, tmp_path,
                   (absent(tmp_path / "none"),),
                   (absent(conf / "below-a-file"),),          # ENOTDIR proves absence too
                   (absent(tmp_path / "dangling"), present(conf)))
    assert got == ["ok", "ok", "ok"]


def test_absent_dependency_that_appears_makes_the_plan_stale(driver, tmp_path):
    (tmp_path / "now-a-file").write_text("")
    (tmp_path / "now-a-dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "now-a-file")
    got = verdicts(driver, tmp_path, (absent(tmp_path / "now-a-file"),),
                   (absent(tmp_path / "now-a-dir"),), (absent(tmp_path / "link"),))
    for line, name in zip(got, ("now-a-file", "now-a-dir", "link")):
        assert line.startswith("stale 0 ") and "appeared" in line, line
        assert line.endswith(f"|{tmp_path / name}"), line


def test_absence_that_cannot_be_proven_is_stale(driver, tmp_path):
    (tmp_path / "loop").symlink_to("loop")  # stat fails with ELOOP, not ENOENT
    got = verdicts(driver, tmp_path, (absent(tmp_path / "loop"),))
    assert got[0].startswith(f"stale {errno.ELOOP} "), got


def test_present_dependency_that_vanishes_is_stale(driver, tmp_path):
    conf = tmp_path / "conf"
    conf.write_text("x")
    dep = present(conf)
    conf.unlink()
    got = verdicts(driver, tmp_path, (dep,))
    assert got[0].startswith("stale 2 "), got  # ENOENT
