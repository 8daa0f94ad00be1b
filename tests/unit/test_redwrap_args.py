# Unit tests of redwrap's command line (cli/redwrap.py): parse_args for every option form,
# where parsing stops, usage errors; run() exit statuses, --help, and -D on a tmp family.

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from redpak.cli.redwrap import USAGE, UsageError, parse_args, run
from redpak.node import create_node


def parsed(*argv: str) -> dict:
    args = parse_args(list(argv))
    return vars(args)


DEFAULTS = {"redpath": "/n", "admin": False, "strict": False, "force": False, "dump": False,
            "dump_only": False, "user": None, "group": None, "smack": None, "verbose": 0,
            "unsafe": False, "bwrap": None, "program": ["prog"]}


# --- options ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv,changed", [
    (["-r", "/n"], {}),
    (["--redpath", "/n"], {}),
    (["--redpath=/n"], {}),
    (["-r/n"], {}),
    (["-r", "/n", "-a"], {"admin": True}),
    (["-r", "/n", "--admin"], {"admin": True}),
    (["-r", "/n", "-s"], {"strict": True}),
    (["-r", "/n", "--strict"], {"strict": True}),
    (["-r", "/n", "-f"], {"force": True}),
    (["-r", "/n", "--force"], {"force": True}),
    (["-r", "/n", "-d"], {"dump": True}),
    (["-r", "/n", "--dump"], {"dump": True}),
    (["-r", "/n", "-D"], {"dump_only": True}),
    (["-r", "/n", "--dump-only"], {"dump_only": True}),
    (["-r", "/n", "-U", "bob"], {"user": "bob"}),
    (["-r", "/n", "--user", "bob"], {"user": "bob"}),
    (["-r", "/n", "--user=bob"], {"user": "bob"}),
    (["-r", "/n", "-Ubob"], {"user": "bob"}),
    (["-r", "/n", "-U", "1001"], {"user": "1001"}),
    (["-r", "/n", "-G", "staff"], {"group": "staff"}),
    (["-r", "/n", "--group", "staff"], {"group": "staff"}),
    (["-r", "/n", "--group=staff"], {"group": "staff"}),
    (["-r", "/n", "-Gstaff"], {"group": "staff"}),
    (["-r", "/n", "-S", "App"], {"smack": "App"}),
    (["-r", "/n", "--smack", "App"], {"smack": "App"}),
    (["-r", "/n", "--smack=App"], {"smack": "App"}),
    (["-r", "/n", "-SApp"], {"smack": "App"}),
    (["-r", "/n", "-v"], {"verbose": 1}),
    (["-r", "/n", "--verbose"], {"verbose": 1}),
    (["-r", "/n", "-v", "-v", "--verbose"], {"verbose": 3}),
    (["-r", "/n", "--verbose=2"], {"verbose": 2}),
    (["-r", "/n", "--verbose=0"], {"verbose": 0}),
    (["-r", "/n", "-v", "--verbose=5"], {"verbose": 5}),
    (["-r", "/n", "-U", "a", "-U", "b"], {"user": "b"}),        # the last one wins
    (["-a", "-s", "-f", "-d", "--redpath", "/n", "-U", "u", "-G", "g", "-S", "l", "-v"],
     {"admin": True, "strict": True, "force": True, "dump": True, "user": "u", "group": "g",
      "smack": "l", "verbose": 1}),
])
def test_every_option_form(argv, changed):
    assert parsed(*argv, "prog") == DEFAULTS | changed


def test_option_value_may_start_with_a_dash():
    assert parsed("-r", "-n", "prog")["redpath"] == "-n"
    assert parsed("-r", "/n", "--user", "-x", "prog")["user"] == "-x"


# --- where option parsing stops ---------------------------------------------------------

@pytest.mark.parametrize("argv,program", [
    (["-r", "/n", "--", "prog", "a"], ["prog", "a"]),
    (["-r", "/n", "--", "-weird", "-a"], ["-weird", "-a"]),
    (["-r", "/n", "--", "prog", "--", "x"], ["prog", "--", "x"]),
    (["-r", "/n", "prog", "-a", "--admin"], ["prog", "-a", "--admin"]),
    (["-r", "/n", "/bin/sh", "-c", "exit 3"], ["/bin/sh", "-c", "exit 3"]),
    (["-r", "/n", "prog", "--bind", "/", "/"], ["prog", "--bind", "/", "/"]),
    (["-r", "/n", "prog", "--help"], ["prog", "--help"]),
    (["-r", "/n", "prog", "-r", "/other"], ["prog", "-r", "/other"]),
    (["-r", "/n", "-", "x"], ["-", "x"]),
    (["-r", "/n", "--", "prog", ""], ["prog", ""]),
])
def test_program_and_its_arguments_are_verbatim(argv, program):
    args = parse_args(argv)
    assert args.program == program
    assert args.redpath == "/n"
    assert not args.admin  # options after the program belong to the program


# --- usage errors -----------------------------------------------------------------------

@pytest.mark.parametrize("argv,words", [
    (["-r", "/n", "-x", "prog"], ["unknown option '-x'", "--help", "'--'"]),
    (["-r", "/n", "--bind", "/", "/", "prog"], ["unknown option '--bind'"]),
    (["-r", "/n", "--admin=1", "prog"], ["unknown option '--admin=1'"]),
    (["-r", "/n", "-ax", "prog"], ["unknown option letter 'x' in '-ax'", "--help"]),
    (["-r", "/n", "-v=2", "prog"], ["-v takes no value (in '-v=2'", "--verbose=N"]),
    (["-r", "/n", "-av=2", "prog"], ["-av takes no value (in '-av=2'"]),
    (["-r", "/n", "--", "", "arg"], ["the program name is empty"]),
    (["-r", "/n", ""], ["the program name is empty"]),
    (["-r", "/n", "-aé", "prog"], ["unknown option letter 'é' in '-aé'"]),
    (["-r", "/n", "-aU"], ["-U needs a value"]),
    (["-r", "/n", "--dump-only=yes"], ["unknown option"]),
    (["-r", "/n", "--verbose=x", "prog"], ["--verbose", "'x'", "not a number"]),
    (["-r", "/n", "--verbose=-1", "prog"], ["--verbose", "not a number"]),
    (["-r"], ["-r needs a value"]),
    (["-r", "/n", "-U"], ["-U needs a value"]),
    (["-r", "/n", "--user"], ["--user needs a value"]),
    (["prog"], ["--redpath NODE is required"]),
    (["--redpath=", "prog"], ["--redpath NODE is required"]),
    (["-a", "--", "prog"], ["--redpath NODE is required"]),
    (["-r", "/n"], ["no program given"]),
    (["-r", "/n", "--"], ["no program given"]),
    (["-r", "/n", "-d"], ["no program given"]),
])
def test_usage_errors(argv, words):
    with pytest.raises(UsageError) as err:
        parse_args(argv)
    assert all(w in str(err.value) for w in words), str(err.value)


# Single-letter options bundle as with getopt: flags in a row, and a letter taking a value
# takes the rest of the argument or the next one.
@pytest.mark.parametrize("argv,expected", [
    (["-as", "-r", "/n", "p"], {"admin": True, "strict": True}),
    (["-avv", "-r/n", "p"], {"admin": True, "verbose": 2}),
    (["-fdD", "-r", "/n"], {"force": True, "dump": True, "dump_only": True}),
    (["-ar", "/n", "p"], {"admin": True, "redpath": "/n"}),
    (["-ar/n", "p"], {"admin": True, "redpath": "/n"}),
    (["-r", "/n", "-vaUbob", "p"], {"admin": True, "verbose": 1, "user": "bob"}),
    (["-r", "/n", "-aU", "-bob", "p"], {"admin": True, "user": "-bob"}),
    (["-r", "/n", "-sGstaff", "-SL", "p"], {"strict": True, "group": "staff", "smack": "L"}),
    (["-r", "/n", "-aUv", "p"], {"admin": True, "user": "v"}),
])
def test_short_options_bundle(argv, expected):
    args = parse_args(argv)
    for name, value in expected.items():
        assert getattr(args, name) == value, name
    assert args.program == ([] if argv[-1] != "p" else ["p"])


@pytest.mark.parametrize("argv", [["-r", "/n", "-D"], ["-D", "--redpath", "/n", "--"]])
def test_dump_only_needs_no_program(argv):
    args = parse_args(argv)
    assert args.dump_only and args.program == []


def test_non_ascii_verbose_level_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_args(["-r", "/n", "--verbose=²", "prog"])


# --- help -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["-r", "/n", "--help", "prog"],
                                  ["-a", "-h"], ["-ah"], ["-vh", "-r", "/n"]])
def test_help_exits_0_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run(argv)
    assert exc.value.code == 0
    out = capsys.readouterr()
    assert out.out == USAGE and out.err == ""


def test_usage_lists_every_option():
    for option in ("-r, --redpath", "-a, --admin", "-s, --strict", "-f, --force",
                   "-U, --user", "-G, --group", "-S, --smack", "-v, --verbose[=N]",
                   "-d, --dump", "-D, --dump-only", "-h, --help", "125", "126", "127"):
        assert option in USAGE, option


def test_help_as_a_command_exits_0(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "redpak.cli.redwrap", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == USAGE and proc.stderr == ""


# --- run(): exit statuses ---------------------------------------------------------------

@pytest.mark.parametrize("argv,words", [
    (["prog"], ["--redpath"]),
    (["-r", "/n", "--nope", "prog"], ["unknown option '--nope'"]),
    (["-r", "/n"], ["no program"]),
])
def test_usage_error_exits_125(argv, words, capsys):
    assert run(argv) == 125
    err = capsys.readouterr().err
    assert err.startswith("redwrap: ") and all(w in err for w in words)
    assert "Traceback" not in err


def test_missing_node_exits_125_with_a_message(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "node"
    assert run(["-r", str(missing), "--", "/bin/true"]) == 125
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("redwrap: ") and str(missing) in out.err
    assert "Traceback" not in out.err and out.err.count("\n") == 1


def test_directory_that_is_not_a_node_exits_125(tmp_path, capsys):
    assert run(["-r", str(tmp_path), "-D"]) == 125
    err = capsys.readouterr().err
    assert "not a node" in err and "redconf create" in err


def test_invalid_config_exits_125_naming_file_and_key(tmp_path, capsys):
    node = tmp_path / "app"
    create_node(str(node))
    conf = node / "etc" / "redpak.yaml"
    conf.write_text(conf.read_text().replace("config:\n", "config:\n  share_nett: enabled\n"))
    assert run(["-r", str(node), "-D"]) == 125
    err = capsys.readouterr().err
    assert str(conf) in err and "share_nett" in err and "did you mean share_net" in err
    assert "Traceback" not in err


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_mtime_ns) for p in root.rglob("*"))


def test_dump_only_prints_the_plan_and_changes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REDPAK_CACHE_DIR", str(tmp_path / "cache"))
    sys_node, app = tmp_path / "sys", tmp_path / "sys" / "app"
    create_node(str(sys_node), model="root")
    create_node(str(app))
    mark = tmp_path / "MARK"
    with open(app / "etc" / "redpak.yaml", "a") as f:  # exports is the last section
        f.write(f"  - mode: Public\n    mount: /data\n    path: $NODE_PATH/data\n"
                f"  - mode: Execfd\n    mount: /etc/motd\n    path: touch {mark}\n")
        f.write(f"environ:\n  - key: X\n    value: $(touch {mark})\n")
    before = _tree(tmp_path)
    assert run(["--redpath", str(app), "-D"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("redpak launch plan v1\n")
    assert f"source '{app}/data'" in out and "hostname 'app'" in out
    assert f" set X '$(touch {mark})'\n" in out
    assert "cache: not cacheable" in out
    assert _tree(tmp_path) == before  # no source created, no command run, no cache written
    assert not mark.exists() and not (tmp_path / "cache").exists()


def test_dump_only_ignores_the_program(tmp_path, capsys):
    create_node(str(tmp_path / "app"), model="full")
    assert run(["-r", str(tmp_path / "app"), "-D", "--", "/no/such/program"]) == 0
    assert "redpak launch plan v1" in capsys.readouterr().out



@pytest.mark.parametrize("option,name", [("-U", "-U/--user"), ("--gid", "-G/--group")])
def test_empty_user_or_group_is_refused_by_name(option, name, capsys):
    """`redwrap -U "$SVC_USER"` with the variable unset: not silently the config's (or the
    caller's) identity, and not a message about the config key set-user."""
    assert run(["-r", "/n", option, "", "--", "id"]) == 125
    assert capsys.readouterr().err == (f"redwrap: {name}: the value is empty (give a name or "
                                       f"a number)\n")
