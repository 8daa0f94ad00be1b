"""`--help` is true: every option a command's help lists is accepted by that command
(with the arguments it needs), so a user copying an option from `redwrap-dnf list -h`
never gets a usage error for it."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from redpak.cli import redconf, redwrap_dnf

VALUES = {"env": "A=1", "lock_timeout": "1", "log_yaml": "1"}


def _commands(module):
    parser = module.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub._choices_actions:
        yield action.dest, sub.choices[action.dest]


def _cases():
    for module in (redconf, redwrap_dnf):
        for name, parser in _commands(module):
            for action in parser._actions:
                if isinstance(action, argparse._HelpAction) or not action.option_strings:
                    continue
                if action.help == argparse.SUPPRESS:
                    continue
                yield pytest.param(module, name, parser, action,
                                   id=f"{module.PROG}-{name}-{action.option_strings[-1]}")


@pytest.mark.parametrize("module,name,parser,action", list(_cases()))
def test_every_listed_option_is_accepted(module, name, parser, action):
    option = action.option_strings[-1]
    argv = [name, option]
    if action.nargs != 0:
        argv.append(VALUES.get(action.dest, "x"))
    positional = [a for a in parser._actions if not a.option_strings and a.nargs != "?"
                  or a.dest == "node_pos"]
    gives_node = action.dest in ("node_opt", "redpath")
    for a in positional:
        if a.dest == "node_pos" and gives_node:
            continue
        argv.append("n")
    if module is redwrap_dnf and not gives_node:
        argv += ["-r", "n"]
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            module.parse_args(argv)
        except SystemExit as exit_:
            pytest.fail(f"{module.PROG} {' '.join(argv)}: exit {exit_.code}: {err.getvalue()}")
