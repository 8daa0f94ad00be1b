# Tests for the redconf command line, run as a subprocess: every command and option, exit
# statuses (0 ok, 1 error, 2 usage), output formats, and no traceback in any error case.

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "trees"


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    e = dict(os.environ, HOME=str(home), USER="tester")
    e.pop("REDNODE_TEMPLATE_DIR", None)
    return e


@pytest.fixture
def redconf(tmp_path, env):
    def run(*args, cwd=None, extra_env=None, code=None):
        proc = subprocess.run([sys.executable, "-m", "redpak.cli.redconf", *map(str, args)],
                              capture_output=True, text=True, timeout=60,
                              cwd=cwd or tmp_path, env={**env, **(extra_env or {})})
        assert "Traceback" not in proc.stderr, proc.stderr
        if code is not None:
            assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
        return proc
    return run


@pytest.fixture
def family(tmp_path):
    shutil.copytree(FIXTURES / "family", tmp_path / "family")
    return tmp_path / "family"


@pytest.fixture
def broken(tmp_path):
    shutil.copytree(FIXTURES / "broken", tmp_path / "broken")
    return tmp_path / "broken"


def line_of(path: Path, text: str) -> int:
    return path.read_text().splitlines().index(text) + 1


def strip_origins(data):
    if isinstance(data, dict):
        if set(data) == {"value", "origin"}:
            return strip_origins(data["value"])
        return {k: strip_origins(v) for k, v in data.items() if k != "origin"}
    if isinstance(data, list):
        return [strip_origins(v) for v in data]
    return data


# --------------------------------------------------------------------------- usage

@pytest.mark.parametrize("args", [["-h"], ["--help"], ["create", "-h"], ["config", "--help"],
                                  ["mergeconfig", "-h"], ["tree", "-h"], ["check", "-h"]])
def test_help_exits_zero(redconf, args):
    proc = redconf(*args, code=0)
    assert "usage: redconf" in proc.stdout


@pytest.mark.parametrize("args", [
    [],                                     # no command
    ["bogus"],                              # unknown command
    ["tree"],                               # missing node
    ["tree", "--frobnicate", "x"],          # unknown option
    ["tree", "a", "-r", "b"],               # node given twice
    ["create", "--root", "--full", "x"],    # conflicting models
])
def test_usage_errors_exit_two(redconf, args):
    proc = redconf(*args, code=2)
    assert "usage:" in proc.stderr


# --------------------------------------------------------------------------- create

def test_create_leaf_relative_path(redconf, tmp_path):
    proc = redconf("create", "sub/app", code=0)
    assert proc.stdout == f"created node 'app' (leaf) in {tmp_path}/sub/app\n"
    node = tmp_path / "sub" / "app"
    assert (node / ".rednode.yaml").is_file()
    assert (node / "var" / "lib" / "rpm" / "rpmdb.sqlite").is_file()
    assert "leaf model" in (node / "etc" / "redpak.yaml").read_text()


@pytest.mark.parametrize("opts,marker", [(["--root"], "root model"), (["--full"], "full model"),
                                         (["--leaf"], "leaf model"),
                                         (["-m", "root"], "root model"),
                                         (["--model", "full"], "full model")])
def test_create_models(redconf, tmp_path, opts, marker):
    redconf("create", *opts, "n", code=0)
    assert marker in (tmp_path / "n" / "etc" / "redpak.yaml").read_text()
    assert marker in (tmp_path / "n" / "etc" / "redpak-admin.yaml").read_text()


def test_create_alias_templates_and_update(redconf, tmp_path):
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "t-normal.yaml").write_text("headers:\n  alias: x\nconfig:\n  verbose: 2\n")
    (tdir / "adm.yaml").write_text("headers:\n  alias: y\nconfig:\n  verbose: 5\n")
    redconf("create", "-a", "first", "-m", "t", "-C", "adm", "-t", tdir, "-n", "n", code=0)
    data = json.loads(redconf("config", "--json", "n", code=0).stdout)
    assert data["normal"]["headers"]["alias"] == "first"
    assert data["normal"]["config"]["verbose"] == 2
    assert data["admin"]["headers"]["alias"] == "admin-of-first"
    assert data["admin"]["config"]["verbose"] == 5
    name = data["normal"]["headers"]["name"]

    proc = redconf("create", "n", code=1)
    assert "already exists" in proc.stderr and "--update" in proc.stderr

    proc = redconf("create", "--update", "--root", "n", code=0)
    assert proc.stdout.startswith("updated node 'first'")
    data = json.loads(redconf("config", "n", "--json", code=0).stdout)
    assert data["normal"]["headers"] == {"alias": "first", "name": name,
                                         "info": data["normal"]["headers"]["info"]}
    assert data["normal"]["config"]["rpmdir"] == "/var/lib/rpm"


def test_create_template_file_and_environment_dir(redconf, tmp_path):
    (tmp_path / "my.yaml").write_text("headers:\n  alias: z\nconfig:\n  hostname: h\n")
    redconf("create", "-c", "./my.yaml", "a", code=0)
    assert "hostname: h" in (tmp_path / "a" / "etc" / "redpak.yaml").read_text()
    tdir = tmp_path / "envtpl"
    tdir.mkdir()
    (tdir / "leaf-normal.yaml").write_text("headers:\n  alias: z\nconfig:\n  verbose: 7\n")
    redconf("create", "b", extra_env={"REDNODE_TEMPLATE_DIR": str(tdir)}, code=0)
    assert "verbose: 7" in (tmp_path / "b" / "etc" / "redpak.yaml").read_text()
    assert not (tmp_path / "b" / "etc" / "redpak-admin.yaml").exists()


@pytest.mark.parametrize("args,message", [
    (["create", "-a", "bad alias", "x"], "not a valid node alias"),
    (["create", "-c", "nosuch", "x"], "no template 'nosuch'"),
    (["create", "-u", "x"], "nothing to update"),
    (["create", "-t", "/nonexistent-dir", "x"], "no such templates directory"),
    # A careless integrator's template paths: a file given for the templates directory, a
    # directory given for a template, a file in the current directory given by its name.
    (["create", "-t", "own.yaml", "x"],
     "own.yaml: not a directory (give the templates directory, not a file in it)"),
    (["create", "-c", "tpl/", "x"], "tpl/: a directory, not a template file"),
    (["create", "-c", "own.conf", "x"], "write ./own.conf)"),
])
def test_create_errors_exit_one(redconf, tmp_path, args, message):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "own.yaml").write_text("headers:\n  alias: own\n")
    (tmp_path / "own.conf").write_text("headers:\n  alias: own\n")
    proc = redconf(*args, code=1)
    assert proc.stderr.startswith("redconf: ") and message in proc.stderr
    assert not (tmp_path / "x" / ".rednode.yaml").exists()


def test_create_json_output(redconf, tmp_path):
    data = json.loads(redconf("--json", "create", "j", code=0).stdout)
    assert data["alias"] == "j" and data["path"] == str(tmp_path / "j")
    assert data["state"] == "Enable" and data["model"] == "leaf"


# --------------------------------------------------------------------------- config

def test_config_formats_agree(redconf, family):
    app = family / "system" / "plain" / "app"
    human = redconf("config", app, code=0).stdout
    plain = yaml.safe_load(redconf("config", "--yaml", app, code=0).stdout)
    data = json.loads(redconf("config", "-r", app, "--json", code=0).stdout)
    assert yaml.safe_load(human) == plain == data
    assert data["normal"]["file"].endswith("etc/redpack.yaml")        # legacy names
    assert data["admin"]["headers"]["alias"] == "admin-of-app"
    assert data["normal"]["config"]["path"] == "/nodes/$NODE_ALIAS/usr/bin"
    line = line_of(app / "etc" / "redpack.yaml", "  path: /nodes/$NODE_ALIAS/usr/bin")
    assert f"path: /nodes/$NODE_ALIAS/usr/bin  # line {line}" in human


def test_config_warns_about_obsolete_keys(redconf, family):
    conf = family / "system" / "etc" / "redpak.yaml"
    conf.write_text(conf.read_text().replace("config:\n", "config:\n  maxage: 3\n", 1))
    proc = redconf("config", family / "system", code=0)
    assert any(line.startswith("warning: ") and "maxage" in line
               for line in proc.stderr.splitlines())


def test_config_of_a_non_node(redconf, tmp_path):
    proc = redconf("config", tmp_path, code=1)
    assert f"redconf: {tmp_path}: not a node" in proc.stderr


def test_config_of_an_invalid_node_names_file_and_key(redconf, broken):
    proc = redconf("config", broken / "sys" / "badkey", code=1)
    assert "badkey/etc/redpak.yaml:4: config.share_nett" in proc.stderr
    assert "did you mean share_net?" in proc.stderr


# --------------------------------------------------------------------------- mergeconfig

def test_mergeconfig_annotates_origins_and_warns(redconf, family):
    leaf = family / "system" / "plain" / "app" / "tool"
    proc = redconf("mergeconfig", leaf, code=0)
    sysconf = family / "system" / "etc" / "redpak.yaml"
    hostline = line_of(sysconf, "  hostname: $LEAF_ALIAS")
    assert f"hostname: $LEAF_ALIAS  # from system (etc/redpak.yaml:{hostline})" in proc.stdout
    netline = line_of(leaf / "etc" / "redpak.yaml", "  share_net: disabled")
    assert f"share_net: disabled  # from tool (etc/redpak.yaml:{netline})" in proc.stdout
    warnings = [w for w in proc.stderr.splitlines() if w.startswith("warning: ")]
    assert any("exports /tmp" in w and "'app'" in w and "'system'" in w for w in warnings)
    # the human output is YAML meaning the same as --yaml, origins aside
    plain = yaml.safe_load(redconf("mergeconfig", leaf, "--yaml", code=0).stdout)
    expected = {k: v for k, v in strip_origins(plain).items()
                if k not in ("warnings", "overrides")}
    assert yaml.safe_load(proc.stdout) == expected


def test_mergeconfig_machine_formats_keep_origins(redconf, family):
    leaf = family / "system" / "plain" / "app"
    data = yaml.safe_load(redconf("-y", "mergeconfig", leaf, code=0).stdout)
    assert json.loads(redconf("mergeconfig", "--json", "-r", leaf, code=0).stdout) == data
    host = data["config"]["hostname"]
    assert host["value"] == "$LEAF_ALIAS" and host["origin"]["node"] == "system"
    tmp = [e for e in data["exports"] if e["mount"] == "/tmp"]
    assert len(tmp) == 1 and tmp[0]["mode"] == "Tmpfs" and tmp[0]["origin"]["node"] == "system"
    assert any("exports /tmp" in w for w in data["warnings"])


def test_mergeconfig_expand_and_admin(redconf, family):
    leaf = family / "system" / "plain" / "app"
    normal = json.loads(redconf("mergeconfig", "--json", leaf, code=0).stdout)
    assert all(e["mount"] != "$LEAF_PATH" for e in normal["exports"])
    data = json.loads(redconf("mergeconfig", "-e", "-a", "--json", leaf, code=0).stdout)
    assert data["headers"]["mode"] == "admin" and data["headers"]["expanded"] is True
    mounts = {e["mount"]: e["mode"] for e in data["exports"]}
    assert mounts[str(leaf)] == "Public"                    # system's admin config, expanded
    assert mounts["/nodes/app/usr"] == "Public"             # app's admin wins inside app
    assert data["config"]["hostname"]["value"] == "app"
    greeting = [e for e in data["environ"] if e["key"] == "GREETING"][0]
    assert greeting["value"] == "hello from system"         # expanded in its own node


def test_mergeconfig_errors(redconf, broken, tmp_path):
    proc = redconf("mergeconfig", broken / "sys" / "loosen", code=1)
    assert "share_pid" in proc.stderr and "'sys'" in proc.stderr
    proc = redconf("mergeconfig", "-e", broken / "sys" / "selfref", code=1)
    assert "refers to itself" in proc.stderr
    proc = redconf("mergeconfig", tmp_path / "missing", code=1)
    assert "no such node directory" in proc.stderr


# --------------------------------------------------------------------------- tree

def test_tree_human_and_json(redconf, family):
    proc = redconf("tree", family, code=0)
    assert proc.stdout.splitlines() == [
        f"system  [Enable]  {family}/system",
        f"  app  [Enable]  {family}/system/plain/app",
        f"    tool  [Enable]  {family}/system/plain/app/tool",
    ]
    data = json.loads(redconf("tree", "--json", "-r", family, code=0).stdout)
    assert [n["alias"] for n in data] == ["system"]
    assert data[0]["children"][0]["alias"] == "app"
    assert data[0]["children"][0]["children"][0]["alias"] == "tool"


def test_tree_shows_invalid_nodes_and_fails(redconf, broken):
    proc = redconf("tree", broken, code=1)
    assert f"?  [Enable]  {broken}/sys/badkey" in proc.stdout
    assert f"  loosen  [Enable]  {broken}/sys/loosen" in proc.stdout
    assert "share_nett" in proc.stderr


def test_tree_without_nodes(redconf, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = redconf("tree", tmp_path / "empty", code=1)
    assert "no node at or below" in proc.stderr


# --------------------------------------------------------------------------- check

def test_check_valid_tree(redconf, family):
    proc = redconf("check", family, code=0)
    assert proc.stdout == "3 nodes checked, no problem, 1 warning (-v to show)\n"
    proc = redconf("check", "-v", family, code=0)
    assert "warning: " in proc.stderr and "exports /tmp" in proc.stderr


def test_check_lists_every_problem(redconf, broken):
    proc = redconf("check", broken, code=1)
    lines = proc.stdout.splitlines()
    sys_ = f"{broken}/sys"
    expected = {
        "badkey": "config.share_nett: unknown key",
        "badstate": "'Bogus' is not a node state",
        "noconfig": "etc/redpak.yaml is missing",
        "loosen": "share_pid",
        "selfref": "refers to itself",
    }
    assert len(lines) == len(expected), lines
    for name, text in expected.items():
        assert any(line.startswith(f"{sys_}/{name}") and text in line for line in lines), name
    assert not any("/good" in line or "/child" in line for line in lines)
    assert "redconf: 5 problems found in 8 nodes" in proc.stderr


def test_check_json(redconf, broken):
    proc = redconf("check", "--json", broken, code=1)
    data = json.loads(proc.stdout)
    assert data["nodes"] == 8 and len(data["problems"]) == 5
    assert {p["node"].rsplit("/", 1)[1] for p in data["problems"]} == {
        "badkey", "badstate", "noconfig", "loosen", "selfref"}


def test_check_reports_error_state(redconf, family):
    status = family / "system" / "plain" / "app" / ".rednode.yaml"
    status.write_text(status.read_text().replace("state: Enable", "state: Error"))
    proc = redconf("check", family, code=1)
    assert "node 'app' is in state Error" in proc.stdout


# --------------------------------------------------------------------------- robustness

def _run_patched(env, tmp_path, *args):
    code = ("import sys, redpak.node as n\n"
            "def boom(*a, **k):\n    raise RuntimeError('boom')\n"
            "n.find_tree = boom\n"
            "from redpak.cli import redconf\n"
            f"sys.exit(redconf.main({list(args)!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)


def test_internal_error_is_one_line_without_traceback(env, tmp_path):
    proc = _run_patched(env, tmp_path, "tree", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr == ("redconf: internal error: RuntimeError: boom "
                           "(run with -v for details)\n")
    proc = _run_patched(env, tmp_path, "-v", "tree", str(tmp_path))
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_unreadable_config_is_an_error_not_a_crash(redconf, family):
    conf = family / "system" / "etc" / "redpak.yaml"
    conf.unlink()
    conf.mkdir()                                   # a directory where a file should be
    proc = redconf("mergeconfig", family / "system", code=1)
    assert "redpak.yaml" in proc.stderr


@pytest.mark.parametrize("argv", [["-vv", "tree"], ["check", "-v"], ["config", "-v", "-r"]])
def test_user_error_has_no_traceback_even_verbose(env, tmp_path, argv):
    """-v shows tracebacks of internal errors only: a missing node is the user's error."""
    missing = str(tmp_path / "none")
    proc = subprocess.run([sys.executable, "-m", "redpak.cli.redconf", *argv, missing],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"redconf: {missing}: "), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_interrupt_exits_130_as_the_man_page_says(env, tmp_path):
    """man redconf: 130 when interrupted; one line, no traceback."""
    code = ("import sys, redpak.node as n\n"
            "def stop(*a, **k):\n    raise KeyboardInterrupt\n"
            "n.find_tree = stop\n"
            "from redpak.cli import redconf\n"
            f"sys.exit(redconf.main(['-v', 'tree', {str(tmp_path)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert (proc.returncode, proc.stderr) == (130, "redconf: interrupted\n")
    from redpak.cli.manpage import page, render_man
    assert "130 when interrupted" in render_man(page("redconf"))


def test_compile_to_an_unwritable_cache_says_how_to_fix_it(redconf, tmp_path):
    """A service user whose cache cannot be written: the error names the path and the one
    setting that redconf compile and redwrap both read (REDPAK_CACHE_DIR)."""
    redconf("create", "--root", "sys", code=0)
    redconf("create", "--leaf", "sys/app", code=0)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    proc = redconf("compile", "sys", extra_env={"REDPAK_CACHE_DIR": str(blocker / "c")},
                   code=1)
    assert f"sys/app (normal): cannot write the plan: {blocker}/c: " in proc.stderr
    assert "set REDPAK_CACHE_DIR to a directory this user may write" in proc.stderr
