"""redwrap-dnf builds the options of the command it runs only (a quarter of its start-up):
every command line must parse exactly as with the whole parser, errors included."""

from __future__ import annotations

import pytest

from redpak.cli import redwrap_dnf
from redpak.cli.redwrap_dnf import COMMANDS, _command_word, build_parser, parse_args

GOOD = [
    ["-r", "/n", "install", "a", "b"],
    ["--redpath", "/n", "-y", "-q", "install", "a"],
    ["--redpath=/n", "erase", "a"],
    ["-yqr", "/n", "remove", "a"],
    ["-r/n", "update"],
    ["--red", "/n", "upgrade", "x"],                 # a unique prefix of --redpath
    ["--lock", "5", "-r", "/n", "reinstall", "a"],
    ["--lock-timeout=2", "-r", "/n", "list", "--installed", "foo*"],
    ["-r", "list", "install", "pkg"],                 # a node named like a command
    ["--red", "list", "install", "pkg"],
    ["-r", "/n", "info", "--available", "x"],
    ["-r", "/n", "repoquery", "-l", "--whatprovides", "cap", "p"],
    ["-r", "/n", "download", "--destdir", "/tmp", "--resolve", "a"],
    ["-r", "/n", "repolist", "--disabled"],
    ["-r", "/n", "search", "w1", "w2"],
    ["-r", "/n", "recover"],
    ["install", "-r", "/n", "--json", "a"],           # global options after the command
    ["-r", "/n", "--proof", "install", "a"],
    ["manager", "-a", "x", "--no-system-node", "-r", "/n"],
    ["-vv", "-r", "/n", "list"],
]

BAD = [
    ["-r", "/n", "install"],                          # no package
    ["-r", "/n", "install", "--bogus", "a"],
    ["-r", "/n", "nosuch"],
    ["install", "a"],                                 # no --redpath
    ["-r", "/n", "--proof", "list"],
    ["-r", "/n", "list", "--installed", "--available"],
    ["--lock-timeout", "-1", "-r", "/n", "list"],
    ["-r", "/n", "repoquery", "--requires", "--provides"],
    [],
]


def _whole(argv: list[str]):
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("argv", GOOD, ids=" ".join)
def test_same_namespace_as_the_whole_parser(argv: list[str]) -> None:
    mine, whole = vars(parse_args(argv)), vars(_whole(argv))
    whole.setdefault("lock_timeout", None)
    if whole["lock_timeout"] is None:
        whole["lock_timeout"] = mine["lock_timeout"]
    assert mine == whole


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a) or "nothing")
def test_same_usage_error_as_the_whole_parser(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as mine:
        parse_args(argv)
    err = capsys.readouterr().err
    assert mine.value.code == 2 and "usage: redwrap-dnf" in err
    try:
        whole = _whole(argv)
    except SystemExit as exc:
        assert exc.code == 2
        assert capsys.readouterr().err == err
    else:                       # the checks parse_args adds after argparse
        assert not whole.redpath or whole.proof


def test_the_command_word_is_found_as_argparse_reads_the_line() -> None:
    assert _command_word(["-r", "/n", "install", "a"]) == "install"
    assert _command_word(["--redp", "install", "list"]) == "list"
    assert _command_word(["-yr", "install", "list"]) == "list"
    assert _command_word(["-rinstall", "list"]) == "list"
    assert _command_word(["--redpath=install", "erase", "x"]) == "remove"
    assert _command_word(["--help"]) is None and _command_word(["-yh"]) is None
    assert _command_word(["-r", "/n", "--", "install"]) is None
    assert _command_word(["-r", "/n", "frobnicate"]) is None


def test_only_the_command_run_gets_its_options() -> None:
    parser = build_parser(only="install")
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {a.dest for a in sub.choices["install"]._actions} >= {"specs", "redpath"}
    assert {a.dest for a in sub.choices["download"]._actions} == {"help"}
    assert set(sub.choices) == {alias for name, _h, _f, aliases, _o in COMMANDS
                                for alias in (name, *aliases)}


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        redwrap_dnf.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name, *_ in COMMANDS:
        assert name in out
