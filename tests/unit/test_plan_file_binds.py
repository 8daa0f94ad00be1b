# Unit tests of the bind-source rule of plan.py (issue 11, redpak 2.x behaviour): the plain
# export modes bind whatever exists, a file included; the *File modes need a file; a missing
# source inside a node is created as a directory for the plain modes.

from __future__ import annotations

import pytest
from test_plan import APP, SYS, Recorder, compile_nodes, exp, kinds, mknode

from redpak.errors import PlanError
from redpak.planfile import MountFlag, MountKind

PLAIN = {"Public": MountFlag(0), "Private": MountFlag(0), "Restricted": MountFlag.RDONLY,
         "PrivateRestricted": MountFlag.RDONLY}


@pytest.mark.parametrize("mode,flags", PLAIN.items())
@pytest.mark.parametrize("found", ["file", "other"])
def test_plain_modes_bind_an_existing_file(mode, flags, found):
    rec = Recorder()
    compiled = compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
        exp(mode, "/usr/sbin/busybox", "/usr/bin/busybox")])],
        source_kind=kinds(default=found), create_source=rec)
    [m] = compiled.plan.mounts
    assert (m.kind, m.target, m.source) == (MountKind.BIND, "/usr/sbin/busybox",
                                            "/usr/bin/busybox")
    assert m.flags == flags | MountFlag.OPTIONAL  # a host path: skipped if it vanishes
    assert rec.calls == [] and compiled.warnings == ()


@pytest.mark.parametrize("mode", PLAIN)
def test_plain_mode_on_a_file_inside_the_node_is_not_optional(mode):
    compiled = compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
        exp(mode, "/etc/motd", f"{APP}/etc/motd")])], source_kind=kinds(default="file"))
    [m] = compiled.plan.mounts
    assert m.kind is MountKind.BIND and not m.flags & MountFlag.OPTIONAL


@pytest.mark.parametrize("mode", PLAIN)
def test_plain_mode_creates_a_missing_node_source_as_a_directory(mode):
    rec = Recorder()
    compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
        exp(mode, "/data", f"{APP}/data")])], source_kind=kinds(default="missing"),
        create_source=rec)
    assert [c[:2] for c in rec.calls] == [(f"{APP}/data", "dir")]


@pytest.mark.parametrize("mode", ["PublicFile", "PrivateFile", "RestrictedFile"])
def test_file_modes_still_need_a_file(mode):
    with pytest.raises(PlanError) as err:
        compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
            exp(mode, "/x", "/host/x")])], source_kind=kinds(default="dir"))
    assert f"{mode} needs a file, but '/host/x' is a dir" in str(err.value)
    compiled = compile_nodes([mknode(SYS, "sys"), mknode(APP, "app", exports=[
        exp(mode, "/x", "/host/x")])], source_kind=kinds(default="other"))
    assert [m.kind for m in compiled.plan.mounts] == [MountKind.BIND_FILE]
