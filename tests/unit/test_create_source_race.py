"""Missing export sources are created inside nodes only, even when a running node swaps a
directory on the way for a symlink between redpak's check and its mkdir (a node writes its
own var while another launch of the family compiles its plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from redpak import build
from redpak.errors import PlanError


@pytest.fixture
def node(tmp_path: Path) -> Path:
    node = tmp_path / "node"
    (node / "var" / "a").mkdir(parents=True)
    (node / ".rednode.yaml").write_text("state: Enable\n")
    return node


def test_a_directory_swapped_after_the_check_leads_nowhere(node, tmp_path, monkeypatch):
    victim = tmp_path / "host"
    victim.mkdir()
    real_check = build._inside_node

    def check_then_swap(path: str) -> bool:
        ok = real_check(path)
        a = node / "var" / "a"
        if not a.is_symlink():              # the node acts right after the check
            a.rename(node / "var" / "a.moved")
            a.symlink_to(victim)
        return ok
    monkeypatch.setattr(build, "_inside_node", check_then_swap)
    build._create_source(str(node / "var" / "a" / "b" / "c"), "dir", "exports[0]")
    assert list(victim.iterdir()) == []
    assert (node / "var" / "a.moved" / "b" / "c").is_dir()


def test_a_link_on_the_way_is_refused(node, tmp_path):
    victim = tmp_path / "host"
    victim.mkdir()
    (node / "var" / "link").symlink_to(victim)
    with pytest.raises(PlanError, match="leads outside the node through a symbolic link"):
        build._create_source(str(node / "var" / "link" / "x"), "file", "exports[0]")
    assert list(victim.iterdir()) == []


def test_a_file_source_is_created_with_its_directories(node):
    build._create_source(str(node / "var" / "new" / "f"), "file", "exports[0]")
    assert (node / "var" / "new" / "f").is_file()
    build._create_source(str(node / "var" / "new" / "f"), "file", "exports[0]")  # exists: fine
