# The schema is the one place that spells cgroup file names (issue 8): a scan of the
# package's source for every file name the schema declares, outside schema.py.

from __future__ import annotations

import ast
import pathlib
import re

import pytest

import redpak
from redpak.schema import CGROUP_FILES, CGROUP_KEYS, CGROUPS

SRC = pathlib.Path(redpak.__file__).parent


def _file_names() -> set[str]:
    names = {name for _, key in CGROUP_KEYS.values() for name in (key.v2, *key.v1.split())}
    return (names | set(CGROUP_FILES.values())) - {""}


def _code_strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants of a module but its documentation (docstrings, and the bare
    string statements that document a module-level name)."""
    docs = {id(n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Constant)
             and isinstance(n.value, str) and id(n) not in docs]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def spelled_outside_schema(root: pathlib.Path) -> list[str]:
    """'file:line: text' of every code string naming a schema cgroup file, outside
    schema.py. A dotted name counts inside any text (messages included); the bare
    v1 `tasks` only as a whole string."""
    dotted = sorted((n for n in _file_names() if "." in n), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, dotted)) + r")(?!\w)")
    bare = {n for n in _file_names() if "." not in n}
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "schema.py" and path.parent == root:
            continue
        for const in _code_strings(ast.parse(path.read_text(encoding="utf-8"))):
            if pattern.search(const.value) or const.value in bare:
                found.append(f"{path.relative_to(root)}:{const.lineno}: {const.value!r}")
    return found


def test_no_module_but_the_schema_spells_a_cgroup_file_name():
    assert spelled_outside_schema(SRC) == []


def test_the_scan_finds_a_spelled_file_name(tmp_path):
    # the scan above cannot pass by seeing nothing: the old hard-coded v1 writes are found
    (tmp_path / "schema.py").write_text('X = "memory.limit_in_bytes"\n')
    (tmp_path / "ctl.py").write_text(
        '"""Writes memory.limit_in_bytes (documentation: allowed)."""\n'
        'out = [("memory.limit_in_bytes", 1), ("tasks", 0)]\n'
        'msg = f"no {x} in cpu.cfs_quota_us"\n')
    assert spelled_outside_schema(tmp_path) == [
        "ctl.py:2: 'memory.limit_in_bytes'", "ctl.py:2: 'tasks'",
        "ctl.py:3: ' in cpu.cfs_quota_us'"]


@pytest.mark.parametrize("section, key", [(s, k) for s, t in CGROUPS.items() for k in t])
def test_every_cgroup_key_declares_its_files(section, key):
    spec = CGROUPS[section][key]
    assert spec.v2.startswith(spec.controller + ".")
    v1 = spec.v1.split()
    if spec.kind == "cpu_max":      # quota then period, in this order (controls.py)
        assert [f.rsplit("_", 2)[-2] for f in v1] == ["quota", "period"]
    if spec.kind == "io_max":       # one file per limit, rbps wbps riops wiops
        assert [f.split(".")[2].split("_")[:2] for f in v1] == [
            ["read", "bps"], ["write", "bps"], ["read", "iops"], ["write", "iops"]]
