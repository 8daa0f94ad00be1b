# Unit tests of expand.py (SPEC §5): syntax, every built-in variable, $(command) with its
# failure modes, self-reference, and per-node contexts through expand_family.

from __future__ import annotations

import datetime
import json
import os
import re
import time
import uuid

import pytest

from redpak.errors import ExpandError
from redpak.expand import ExpansionContext, default_templates_dir, expand_family
from redpak.family import merge_family
from redpak.model import (
    EnvEntry,
    EnvMode,
    Export,
    ExportMode,
    Node,
    NodeConfig,
    NodeState,
    NodeStatus,
    Settings,
    Share,
    ShareValue,
)


def make_node(base: str, alias: str, *, exports=(), environ=(), lines=None, **settings) -> Node:
    cfg = NodeConfig(file=f"{base}/etc/redpak.yaml", alias=alias, name=f"name-{alias}",
                     info=f"info {alias}", settings=Settings(**settings, lines=dict(lines or {})),
                     exports=tuple(exports), environ=tuple(environ))
    return Node(base, NodeStatus(base, NodeState.ENABLE), cfg)


SYS = make_node("/v/sys", "sys")
APP = make_node("/v/sys/app", "app")


def ctx(environ=None, node=SYS, leaf=APP, **kw) -> ExpansionContext:
    return ExpansionContext(node, leaf, environ or {}, 1001, 1002, 4242, **kw)


def x(text, environ=None, **kw) -> str:
    return ctx(environ, **kw).expand(text, "test.key")


# --- built-in variables -----------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("NODE_ALIAS", "sys"), ("NODE_NAME", "name-sys"), ("NODE_PATH", "/v/sys"),
    ("NODE_INFO", "info sys"),
    ("LEAF_ALIAS", "app"), ("LEAF_NAME", "name-app"), ("LEAF_PATH", "/v/sys/app"),
    ("LEAF_INFO", "info app"),
    ("REDNODE_CONF", "/v/sys/etc/redpak.yaml"), ("REDNODE_ADMIN", "/v/sys/etc/redpak-admin.yaml"),
    ("REDNODE_STATUS", "/v/sys/.rednode.yaml"), ("REDNODE_VARDIR", "/v/sys/var/lib/rpm"),
    ("REDNODE_REPODIR", "/v/sys/etc/yum.repos.d"), ("REDNODE_LOCK", "/v/sys/.rpm.lock"),
    ("UID", "1001"), ("GID", "1002"), ("PID", "4242"),
])
def test_fixed_builtins(name, expected):
    assert x(f"${name}") == expected
    assert x(f"<${{{name}}}>") == f"<{expected}>"


@pytest.mark.parametrize("name", ["NODE_ALIAS", "NODE_PATH", "LEAF_ALIAS", "UID", "PID",
                                  "REDNODE_CONF"])
def test_fixed_builtins_not_shadowed_by_caller_env(name):
    assert x(f"${name}", {name: "evil"}) != "evil"


@pytest.mark.parametrize("name,default", [
    ("USER", "Unknown"), ("LOGNAME", "Unknown"), ("HOSTNAME", "localhost"),
    ("NODE_PREFIX", "/var/redpak"), ("redpak_MAIN", "main"), ("REDPESK_VERSION", "3"),
    ("CGROUPS_MOUNT_POINT", "/sys/fs/cgroup"),
])
def test_env_builtins_default_and_override(name, default):
    assert x(f"${name}") == default
    assert x(f"${name}", {name: "from-env"}) == "from-env"


def test_redpak_tmpl_default_and_parameter():
    assert x("$redpak_TMPL") == default_templates_dir()
    assert default_templates_dir().endswith(os.path.join("redpak", "templates"))
    assert x("$redpak_TMPL", templates_dir="/opt/tmpl") == "/opt/tmpl"
    assert x("$redpak_TMPL", {"redpak_TMPL": "/env/tmpl"}, templates_dir="/opt/t") == "/env/tmpl"


def test_today():
    before = datetime.date.today().isoformat()
    got = x("$TODAY")
    after = datetime.date.today().isoformat()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", got) and got in (before, after)


def test_uuid_fresh_per_context_stable_within():
    c = ctx()
    first = c.expand("$UUID", "k")
    assert uuid.UUID(first).version == 4
    assert c.expand("${UUID}", "k") == first
    assert c.with_node(APP).expand("$UUID", "k") == first
    assert ctx().expand("$UUID", "k") != first


# --- syntax -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("$FOO/x", "foo/x"),
    ("${FOO}bar", "foobar"),
    ("$FOObar", ""),                # the name is FOObar
    ("a\\$FOO", "a$FOO"),
    ("\\${FOO}", "${FOO}"),
    ("cost: 5$", "cost: 5$"),
    ("$1 $ $-", "$1 $ $-"),
    ("a\\b\\n", "a\\b\\n"),         # only \$ is an escape
    ("$FOO$FOO", "foofoo"),
    ("no vars", "no vars"),
    ("", ""),
])
def test_syntax(text, expected):
    assert x(text, {"FOO": "foo"}) == expected


def test_names_are_case_sensitive():
    env = {"foo": "lower", "Foo": "mixed"}
    assert x("$foo|$Foo|$FOO", env) == "lower|mixed|"
    assert x("$node_alias") == ""


def test_unknown_name_from_caller_env_else_empty():
    assert x("[$MY_VAR]", {"MY_VAR": "v"}) == "[v]"
    assert x("[$MY_VAR]", {}) == "[]"


def test_caller_env_values_not_expanded_again():
    assert x("$A", {"A": "$B", "B": "b"}) == "$B"


@pytest.mark.parametrize("text", ["${FOO", "${A-B}", "${}", "$(echo hi"])
def test_malformed_references_are_errors(text):
    with pytest.raises(ExpandError) as err:
        ctx().expand(text, "exports[3].mount", line=9)
    assert "exports[3].mount" in str(err.value)
    assert "/v/sys/etc/redpak.yaml:9" in str(err.value)


# --- $(command) -------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("$(echo hi)", "hi"),
    ("<$(printf 'a\\n\\n\\n')>", "<a>"),
    ("$(printf 'a\\nb\\n')", "a\nb"),
    ("$(printf 'x  ')", "x  "),
    ("$(echo \"(a)\")", "(a)"),
    ("$(echo $((1+2)))", "3"),
    ("$(printf %s \"$NODE_ALIAS/$LEAF_ALIAS/$FOO\")", "sys/app/foo"),
    ("$(cat)", ""),                 # stdin is /dev/null: no hang
    ("$()", ""),
])
def test_command_substitution(text, expected):
    assert x(text, {"FOO": "foo"}) == expected


def test_failing_command_names_key_command_and_stderr():
    with pytest.raises(ExpandError) as err:
        ctx().expand("$(echo boom >&2; echo $((40+2)) >&2; exit 3)", "environ[2]", line=4)
    text = str(err.value)
    assert "environ[2]" in text and "echo boom" in text and text.endswith(": boom")
    assert "status 3" in text and "42" not in text  # first stderr line only
    assert "/v/sys/etc/redpak.yaml:4" in text


def test_hanging_command_times_out(tmp_path):
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(ExpandError) as err:
        ctx(command_timeout=0.3).expand(f"$(sh -c 'echo $$ > {pidfile}; exec sleep 30' & "
                                        "sleep 30)", "chdir")
    assert time.monotonic() - start < 2
    assert "timed out" in str(err.value) and "chdir" in str(err.value)
    # the grandchild (in the command's process group) was killed too
    pid = int(pidfile.read_text())
    for _ in range(50):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"sleep {pid} survived the timeout")


def test_command_holding_pipe_open_times_out_quickly():
    start = time.monotonic()
    with pytest.raises(ExpandError):
        ctx(command_timeout=0.3).expand("$(sleep 30 & echo early)", "k")
    assert time.monotonic() - start < 2


# --- dependencies for caching -----------------------------------------------------------

@pytest.mark.parametrize("text,volatile", [
    ("$NODE_PATH/$UID", False), ("$PID", True), ("$UUID", True), ("$TODAY", True),
    ("$(true)", True), ("\\$PID", False)])
def test_volatile(text, volatile):
    c = ctx()
    c.expand(text, "k")
    assert c.volatile is volatile


def test_used_env_records_reads_and_absences():
    c = ctx({"HOME": "/home/u", "USER": "u", "OTHER": "o"})
    c.expand("$HOME $USER $MISSING $HOSTNAME $NODE_ALIAS", "k")
    assert c.used_env == {"HOME": "/home/u", "USER": "u", "MISSING": None, "HOSTNAME": None}


# --- environ definitions, self-reference ------------------------------------------------

def fam_with_environ(sys_env=(), app_env=(), **app_settings):
    return merge_family([make_node("/v/sys", "sys", environ=sys_env),
                         make_node("/v/sys/app", "app", environ=app_env, **app_settings)])


def run(fam, environ=None, **kw):
    return expand_family(fam, environ or {}, 1001, 1002, 4242, **kw)


@pytest.mark.parametrize("entries,environ,expected", [
    ([EnvEntry("PATH", "$PATH:/x", line=3)], {"PATH": "/usr/bin"}, "/usr/bin:/x"),
    ([EnvEntry("FOO", "x${FOO}y", line=3)], {"FOO": "-"}, "x-y"),
    ([EnvEntry("FOO", "[$FOO]", line=3)], {}, "[]"),
    # a built-in default is the enclosing scope too
    ([EnvEntry("NODE_PREFIX", "($NODE_PREFIX)", line=3)], {}, "(/var/redpak)"),
    ([EnvEntry("NODE_PREFIX", "($NODE_PREFIX)", line=3)], {"NODE_PREFIX": "/p"}, "(/p)"),
])
def test_self_reference_takes_the_enclosing_value(entries, environ, expected):
    """`PATH: $PATH:/x` means the caller's PATH (else the default, else empty), as in a
    shell: not a cycle."""
    out = run(fam_with_environ(app_env=entries), environ).family
    assert {e.value.key: e.value.value for e in out.environ}[entries[0].key] == expected


def test_self_reference_through_another_definition():
    """FOO: $BAR, BAR: $BAR:x — BAR refers to itself (enclosing value), FOO to BAR."""
    out = run(fam_with_environ(app_env=[EnvEntry("FOO", "$BAR"), EnvEntry("BAR", "$BAR:x")]),
              {"BAR": "b"}).family
    assert {e.value.key: e.value.value for e in out.environ} == {"FOO": "b:x", "BAR": "b:x"}


@pytest.mark.parametrize("entries,name", [
    ([EnvEntry("FOO", "$BAR", line=3), EnvEntry("BAR", "$FOO", line=4)], "FOO"),
    ([EnvEntry("A", "$B"), EnvEntry("B", "$C"), EnvEntry("C", "-$A-")], "A"),
    ([EnvEntry("A", "$B"), EnvEntry("B", "$B$A")], "A"),
])
def test_true_cycle_is_an_error(entries, name):
    fam = fam_with_environ(app_env=entries)
    with pytest.raises(ExpandError) as err:
        run(fam, {name: "from-caller"})
    text = str(err.value)
    assert f"variable {name} refers to itself" in text
    assert "/v/sys/app/etc/redpak.yaml" in text
    assert re.search(r"environ (FOO|BAR|A|B|C)", text)


def test_cycle_through_other_nodes_names_both_keys():
    fam = fam_with_environ([EnvEntry("FOO", "$BAR")], [EnvEntry("BAR", "$FOO")])
    with pytest.raises(ExpandError) as err:
        run(fam)
    assert "FOO" in str(err.value) and "BAR" in str(err.value)


def test_static_value_is_not_a_self_reference():
    fam = fam_with_environ(app_env=[EnvEntry("FOO", "$FOO", EnvMode.STATIC)])
    assert run(fam).family.environ[0].value.value == "$FOO"


def test_definitions_order_independent_and_in_own_node_context():
    fam = fam_with_environ([EnvEntry("ROOTVAR", "$NODE_ALIAS:$LATER")],
                           [EnvEntry("LATER", "$NODE_ALIAS-$LEAF_ALIAS"),
                            EnvEntry("STAT", "$NODE_ALIAS", EnvMode.STATIC)],
                           hostname="$ROOTVAR/$STAT")
    out = run(fam).family
    env = {e.value.key: e.value.value for e in out.environ}
    assert env["ROOTVAR"] == "sys:app-app"
    assert env["LATER"] == "app-app"
    assert out.hostname.value == "sys:app-app/$NODE_ALIAS"


def test_environ_modes_resolved_at_launch_are_untouched():
    fam = fam_with_environ(app_env=[
        EnvEntry("E", "echo $HOME", EnvMode.EXECFD), EnvEntry("I", None, EnvMode.INHERIT),
        EnvEntry("R", None, EnvMode.REMOVE), EnvEntry("N", None), EnvEntry("S", "$X\\$",
                                                                            EnvMode.STATIC)])
    out = {e.value.key: e.value.value for e in run(fam, {"X": "x"}).family.environ}
    assert out == {"E": "echo $HOME", "I": None, "R": None, "N": "", "S": "$X\\$"}


# --- expand_family: per-node contexts ---------------------------------------------------

def test_expand_family_per_node_context():
    sys_node = make_node(
        "/v/sys", "sys", hostname="$LEAF_ALIAS", chdir="/home/$LEAF_ALIAS",
        rpmdir="$NODE_PATH/var/lib/rpm", path=("/nodes/$NODE_ALIAS/bin", "/shared"),
        share_net=ShareValue(Share.JOIN, "/proc/$PID/ns/net"), smack="lbl-$NODE_ALIAS",
        exports=[Export(ExportMode.RESTRICTED, "/nodes/$NODE_ALIAS/usr", "$NODE_PATH/usr"),
                 Export(ExportMode.SYMLINK, "/home/$LEAF_ALIAS", "/nodes/$LEAF_ALIAS/home")])
    app_node = make_node(
        "/v/sys/app", "app", persistdir="$NODE_PATH/dnf", cachedir="$REDNODE_VARDIR",
        cgrouproot="$CGROUPS_MOUNT_POINT/$NODE_ALIAS", set_user="$UID", set_group="$GID",
        path=("/nodes/$NODE_ALIAS/bin", "$EXTRA", "/shared", ""),
        ldpath=("/nodes/$NODE_ALIAS/lib",),
        exports=[Export(ExportMode.PUBLIC, "/nodes/$NODE_ALIAS/var", "$NODE_PATH/var"),
                 Export(ExportMode.PUBLIC, "/nodes/$LEAF_ALIAS/usr/", "/elsewhere")],
        environ=[EnvEntry("WHERE", "$NODE_PATH|$LEAF_PATH")])
    fam = merge_family([sys_node, app_node])
    out = run(fam, {"EXTRA": "/e1:/e2"})
    f = out.family
    assert f.expanded and not fam.expanded
    assert f.hostname.value == "app" and f.chdir.value == "/home/app"
    assert f.rpmdir.value == "/v/sys/var/lib/rpm"
    assert f.persistdir.value == "/v/sys/app/dnf"
    assert f.cachedir.value == "/v/sys/app/var/lib/rpm"
    assert f.cgrouproot.value == "/sys/fs/cgroup/app"
    assert f.smack.value == "lbl-sys"
    assert (f.set_user.value, f.set_group.value) == ("1001", "1002")
    assert f.share("net").path == "/proc/4242/ns/net"
    assert [p.value for p in f.path] == ["/nodes/app/bin", "/e1", "/e2", "/shared",
                                         "/nodes/sys/bin"]
    assert [p.origin.alias for p in f.path] == ["app", "app", "app", "app", "sys"]
    assert [p.value for p in f.ldpath] == ["/nodes/app/lib"]
    exports = [(e.value.mount, e.value.path, e.origin.alias) for e in f.exports]
    # the same text in two nodes ($NODE_ALIAS/usr vs $LEAF_ALIAS/usr) gives two mounts
    assert exports == [("/nodes/sys/usr", "/v/sys/usr", "sys"),
                       ("/home/app", "/nodes/app/home", "sys"),
                       ("/nodes/app/var", "/v/sys/app/var", "app"),
                       ("/nodes/app/usr/", "/elsewhere", "app")]
    env = {e.value.key: e.value.value for e in f.environ}
    assert env["WHERE"] == "/v/sys/app|/v/sys/app"
    assert out.volatile  # $PID
    assert out.used_env["EXTRA"] == "/e1:/e2"
    d = out.to_dict()
    assert json.loads(json.dumps(d)) == d and d["headers"]["expanded"] is True


def test_expand_family_mount_collision_after_expansion():
    fam = merge_family([
        make_node("/v/sys", "sys", exports=[Export(ExportMode.RESTRICTED, "/home/$LEAF_ALIAS")]),
        make_node("/v/sys/app", "app", exports=[Export(ExportMode.PUBLIC, "/home/app/")])])
    assert len(fam.exports) == 2  # different as written
    out = run(fam).family
    assert [(e.value.mount, e.origin.alias) for e in out.exports] == [("/home/app", "sys")]
    assert any("'sys'" in w.text and "'app'" in w.text and "/home/app" in w.text
               for w in out.warnings)


def test_expand_family_error_names_file_line_and_key():
    fam = merge_family([make_node("/v/sys", "sys"),
                        make_node("/v/sys/app", "app", chdir="$(exit 7)", lines={"chdir": 5})])
    with pytest.raises(ExpandError) as err:
        run(fam)
    assert "/v/sys/app/etc/redpak.yaml:5" in str(err.value)
    assert "chdir" in str(err.value) and "status 7" in str(err.value)


def test_expand_family_not_volatile_without_volatile_variables():
    fam = merge_family([make_node("/v/sys", "sys", hostname="$NODE_ALIAS")])
    out = run(fam, {"UNUSED": "1"})
    assert not out.volatile and out.used_env == {}
