"""The argument parser of redconf and redwrap-dnf: argparse's, with clear usage errors
where argparse's own are obscure. Single-letter options bundle as with getopt (`-vv`,
`-yq`, `-vr NODE`); a bad bundle names the letter that is not an option."""

from __future__ import annotations

import argparse
import re

_IGNORED = re.compile(r"argument (\S+): ignored explicit argument '(.*)'\Z", re.S)


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose error for an option given a value it does not take
    (`-vx`, `-v=2`, `--json=1`) names the argument and the letter or option at fault,
    instead of "argument -v/--verbose: ignored explicit argument 'x'". Exits 2."""

    _argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        import sys
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        m = _IGNORED.match(message)
        if m:
            message = _explain(m.group(1).split("/"), m.group(2), self._argv, self.prog)
        super().error(message)


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The sub-parser of COMMAND (its usage line goes with an error about the command's
    own arguments), else the parser itself."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def _explain(names: list[str], rest: str, argv: list[str], prog: str) -> str:
    see = f"see `{prog} -h`"
    for arg in argv:
        if arg == "--":
            break
        name, eq, _ = arg.partition("=")
        if eq and name in names:            # --json=1, -v=2
            return f"{name} takes no value (in '{arg}'; {see})"
    short = [n[1] for n in names if len(n) == 2 and n[0] == "-"]
    for arg in argv:
        if arg == "--":
            break
        if (len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and arg.endswith(rest)
                and arg[-len(rest) - 1:-len(rest)] in short):
            return f"unknown option letter '{rest[0]}' in '{arg}' ({see})"
    return f"unknown option letter '{rest[0]}' after {names[0]} ({see})"
