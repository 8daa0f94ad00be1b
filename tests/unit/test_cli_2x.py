# redpak 2.x command lines (issue 11 item 5, docs/compat-2x.md): redconf's and redwrap's
# 2.x options are accepted with the same meaning; redwrap's two parsers (csrc/main/args.c
# and redpak.cli.redwrap) agree on them; every --help lists them.

from __future__ import annotations

import json
import os
import subprocess

import pytest
from test_redconf_cli import env, redconf  # noqa: F401 - fixtures: redconf as a subprocess
from test_redwrap_native_usage import native_parse, native_redwrap, parser, python_parse  # noqa: F401

from redpak.cli.redwrap import USAGE, Args, no_effect_notice, parse_args

# ---- redwrap ---------------------------------------------------------------------------

REDWRAP_2X = [
    (["--rpath", "/n", "--", "prog"], {"redpath": "/n"}),
    (["--rpath=/n", "prog"], {"redpath": "/n"}),
    (["--rp", "/n", "prog"], {"redpath": "/n"}),
    (["--rp=/n", "prog"], {"redpath": "/n"}),
    (["-r", "/n", "--uid", "1001", "prog"], {"user": "1001"}),
    (["-r", "/n", "--uid=bob", "prog"], {"user": "bob"}),
    (["-r", "/n", "--gid", "100", "prog"], {"group": "100"}),
    (["-r", "/n", "--gid=staff", "prog"], {"group": "staff"}),
    (["-r", "/n", "--verbose=3", "prog"], {"verbose": 3}),
    (["-r", "/n", "--verbose", "prog"], {"verbose": 1}),
    (["-r", "/n", "--unsafe", "prog"], {"unsafe": True}),
    (["-r", "/n", "--bwrap", "/usr/bin/bwrap", "prog"], {"bwrap": "/usr/bin/bwrap"}),
    (["-r", "/n", "--bwrap=/opt/bwrap", "prog"], {"bwrap": "/opt/bwrap"}),
    (["--redpath", "/n", "ls", "-l"], {"program": ["ls", "-l"]}),
    (["--rp", "/n", "--uid", "0", "ls", "-l", "--uid", "5", "--", "x"],
     {"user": "0", "program": ["ls", "-l", "--uid", "5", "--", "x"]}),
]


@pytest.mark.parametrize("argv,changed", REDWRAP_2X)
def test_redwrap_2x_options_mean_what_they_meant(argv, changed):
    expected = {**vars(Args()), "redpath": "/n", "program": ["prog"], **changed}
    assert vars(parse_args(argv)) == expected


@pytest.mark.parametrize("argv", [a for a, _ in REDWRAP_2X] + [
    ["--rp"], ["--uid"], ["-r", "/n", "--bwrap"], ["-r", "/n", "--unsafe=yes", "p"],
    ["-r", "/n", "--rpat", "/x", "p"], ["--redpath", "/n", "ls", "--bwrap", "x"],
    ["--unsafe", "--bwrap", "b", "-D", "--rp", "/n"],
])
def test_native_parser_agrees_on_2x_command_lines(parser, argv):  # noqa: F811
    assert native_parse(parser, argv) == python_parse(argv)


def test_options_after_the_program_belong_to_the_program():
    args = parse_args(["--redpath", "/n", "ls", "-l", "--unsafe", "--rp", "/x"])
    assert args.program == ["ls", "-l", "--unsafe", "--rp", "/x"]
    assert args.redpath == "/n" and not args.unsafe


@pytest.mark.parametrize("argv,notice", [
    (["-r", "/n", "p"], None),
    (["-r", "/n", "--unsafe", "p"],
     "redwrap: --unsafe has no effect (accepted for redpak 2.x command lines)"),
    (["-r", "/n", "--bwrap", "/b", "p"],
     "redwrap: --bwrap has no effect (accepted for redpak 2.x command lines)"),
    (["-r", "/n", "--bwrap", "/b", "--unsafe", "--unsafe", "p"],
     "redwrap: --unsafe and --bwrap have no effect (accepted for redpak 2.x command lines)"),
])
def test_no_effect_notice_is_one_line(argv, notice):
    assert no_effect_notice(parse_args(argv)) == notice


def test_redwrap_help_lists_the_2x_options():
    for words in ("--rpath, --rp", "also --uid", "also --gid", "--verbose[=N]", "--unsafe",
                  "--bwrap PATH", "redwrap --redpath NODE ls -l"):
        assert words in USAGE, words
    r = subprocess.run([str(native_redwrap()), "--help"], capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode == 0 and r.stdout == USAGE


# ---- redconf ---------------------------------------------------------------------------

def model_of(node) -> str:
    return (node / "etc" / "redpak.yaml").read_text().splitlines()[0]


@pytest.mark.parametrize("opts,model", [(["-r"], "root"), (["--root"], "root"),
                                        (["-l"], "leaf"), (["--leaf"], "leaf"),
                                        (["-f"], "full"), (["--full"], "full"),
                                        (["-m", "full"], "full"), (["--model=root"], "root")])
def test_create_model_options(redconf, tmp_path, opts, model):  # noqa: F811
    redconf("create", *opts, "-n", "n", code=0)
    assert f"{model} model" in model_of(tmp_path / "n")


def test_create_with_every_2x_option(redconf, tmp_path):  # noqa: F811
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "mine-normal.yaml").write_text("headers:\n  alias: x\nconfig:\n  verbose: 3\n")
    (tdir / "adm.yaml").write_text("headers:\n  alias: y\nconfig:\n  verbose: 4\n")
    (tmp_path / "redroot").mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = redconf("create", "-a", "app2x", "-m", "mine", "-C", "adm", "-t", tdir,
                   "-R", tmp_path / "redroot", "-n", "sys/app", cwd=elsewhere, code=0)
    node = tmp_path / "redroot" / "sys" / "app"
    assert proc.stdout == f"created node 'app2x' (mine) in {node}\n"
    data = json.loads(redconf("config", "--json", "-r", node, code=0).stdout)
    assert data["normal"]["headers"]["alias"] == "app2x"
    assert data["normal"]["config"]["verbose"] == 3
    assert data["admin"]["config"]["verbose"] == 4
    # -c FILE and -u: rewrite the configs of the existing node, headers kept
    conf = tmp_path / "conf.yaml"
    conf.write_text("headers:\n  alias: z\nconfig:\n  verbose: 7\n")
    proc = redconf("create", "-u", "-c", conf, "--redroot", tmp_path / "redroot",
                   "--node", "sys/app", code=0)
    assert proc.stdout.startswith("updated node 'app2x'")
    data = json.loads(redconf("config", "--json", "--redpath", node, code=0).stdout)
    assert data["normal"]["config"]["verbose"] == 7
    assert data["normal"]["headers"]["alias"] == "app2x"


def test_create_redroot_with_an_absolute_node_path(redconf, tmp_path):  # noqa: F811
    redconf("create", "-R", "/nonexistent", str(tmp_path / "abs"), code=0)
    assert (tmp_path / "abs" / ".rednode.yaml").is_file()


@pytest.mark.parametrize("args,words", [
    (["create", "-n", "a", "b"], "redconf create: error: give the node either as an "
                                 "argument or with -n/--node, not both"),
    (["create", "-R", "/tmp"], "redconf create: error: missing node directory"),
    (["tree", "-r", "a", "b"], "-r/--redroot"),
    (["-l", "x", "tree", "a"], "'x' is not a level"),
    (["-l", "-1", "tree", "a"], "is not a level"),
    (["create", "-n"], "expected one argument"),
])
def test_2x_usage_errors_exit_two(redconf, args, words):  # noqa: F811
    proc = redconf(*args, code=2)
    assert words in proc.stderr
    if args[0] == "create":     # the usage shown is the command's, not redconf's
        assert proc.stderr.startswith("usage: redconf create "), proc.stderr


def test_tree_redroot_and_mergeconfig_redpath_expand(redconf, tmp_path):  # noqa: F811
    redconf("create", "-r", "-n", "sys", code=0)
    redconf("create", "-n", "sys/app", code=0)
    for opt in ("-r", "--redroot", "--redpath"):
        data = json.loads(redconf("tree", "--json", opt, tmp_path / "sys", code=0).stdout)
        assert [n["alias"] for n in data] == ["sys"]
        assert data[0]["children"][0]["alias"] == "app"
    data = json.loads(redconf("mergeconfig", "--json", "-r", tmp_path / "sys" / "app", "-e",
                              code=0).stdout)
    exports = json.dumps(data)
    assert f"{tmp_path}/sys/app/usr" in exports  # $NODE_PATH expanded
    data = json.loads(redconf("mergeconfig", "--json", "--redpath", tmp_path / "sys" / "app",
                              code=0).stdout)
    assert "$NODE_PATH/usr" in json.dumps(data)  # not expanded without -e


@pytest.mark.parametrize("opts", [["-l", "1"], ["--log-yaml", "2"], ["--log-yaml=1"], ["-v"]])
def test_log_yaml_raises_the_detail_level(redconf, tmp_path, opts):  # noqa: F811
    proc = redconf(*opts, "create", "n", code=0)
    assert f"  config: {tmp_path}/n/etc/redpak.yaml" in proc.stdout


def test_log_yaml_zero_is_quiet(redconf, tmp_path):  # noqa: F811
    proc = redconf("-l", "0", "create", "n", code=0)
    assert proc.stdout == f"created node 'n' (leaf) in {tmp_path}/n\n"


@pytest.mark.parametrize("command,words", [
    ([], ["-l N, --log-yaml N"]),
    (["create"], ["-n REDPATH, --node REDPATH", "-R DIR, --redroot DIR", "-a ALIAS, --alias",
                  "-c T, --config T", "-C T, --config-adm T", "-m M, --model M", "-r, --root",
                  "-l, --leaf", "-f, --full", "-t DIR, --templates DIR", "-u, --update"]),
    (["tree"], ["-r ROOT, --redroot ROOT"]),
    (["config"], ["-r NODE, --redpath NODE"]),
    (["mergeconfig"], ["-r NODE, --redpath NODE", "-e, --expand"]),
])
def test_redconf_help_lists_the_2x_options(redconf, command, words):  # noqa: F811
    out = redconf(*command, "--help", code=0).stdout
    flat = " ".join(out.split())
    for w in words:
        assert w in flat, (w, out)


def test_no_traceback_with_a_relative_redroot(redconf, tmp_path):  # noqa: F811
    os.makedirs(tmp_path / "top")
    redconf("create", "-R", "top", "x", code=0)
    assert (tmp_path / "top" / "x" / ".rednode.yaml").is_file()
