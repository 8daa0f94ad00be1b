"""`redwrap-dnf`: package management in a node (SPEC §7, §8): manager, install, remove,
upgrade, reinstall, list, info, search, repolist, repoquery, download.
Exit status: 0 ok, 1 error (one message, never a traceback), 2 usage error."""

from __future__ import annotations

import argparse
import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported at run time: `--help` starts faster
    from typing import Any

from redpak import __version__
from redpak.cli.argparser import ArgumentParser, command_parser
from redpak.cli.common import emit, run_guarded

PROG = "redwrap-dnf"
LOCK_TIMEOUT_ENV = "REDPAK_DNF_LOCK_TIMEOUT"


# --------------------------------------------------------------------------- helpers

def _options(args: argparse.Namespace) -> Any:
    from redpak.pkg.ops import Options
    from redpak.pkg.progress import Progress

    return Options(assumeyes=args.assumeyes, lock_timeout=args.lock_timeout,
                   confirm=_confirm, progress=Progress(quiet=args.quiet),
                   out=(lambda text: None) if args.quiet else _out,
                   command=" ".join([args.op, *getattr(args, "specs", [])]))


def _out(text: str) -> None:
    print(text, flush=True)


def _confirm(prompt: str) -> bool:
    """Ask on the terminal; no answer, EOF or anything but y/yes means no."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):
        sys.stdout.write("\n")
    return answer.strip().lower() in ("y", "yes")


def _table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(len(widths))) + "  "
                     + r[-1] for r in rows) + "\n"


# --------------------------------------------------------------------------- commands

def cmd_manager(args: argparse.Namespace) -> int:
    from redpak.pkg.ops import manager

    return manager(args.redpath, args.alias, args.no_system_node, args.template,
                   args.template_admin, args.update, _options(args))


def cmd_change(args: argparse.Namespace) -> int:
    from redpak.pkg import ops

    if args.proof:      # issue 14: say whether the transaction is possible, change nothing
        from redpak.proof import prove_transaction

        return prove_transaction(args.redpath, args.op, args.specs,
                                 (lambda text: None) if args.quiet else _out)
    return getattr(ops, args.op)(args.redpath, args.specs, _options(args))


def cmd_recover(args: argparse.Namespace) -> int:
    from redpak.pkg.ops import recover_node

    return recover_node(args.redpath, _options(args))


def cmd_list(args: argparse.Namespace) -> int:
    from redpak.pkg.ops import list_packages

    which = args.which
    patterns = list(args.patterns)
    if patterns and patterns[0] in ("installed", "available", "all") and which == "all":
        which = patterns.pop(0)
    data = list_packages(args.redpath, which, patterns)
    if args.fmt != "human":
        emit(data, args.fmt)
        return 0
    out = []
    if "installed" in data:
        out.append("Installed packages:\n")
        rows = [[f"{r['name']}.{r['arch']}", r["evr"],
                 f"@{r['node']}" + (" (ancestor)" if r["owner"] == "ancestor" else "")]
                for r in data["installed"]]
        out.append(_table(rows))
    if "available" in data:
        out.append("Available packages:\n")
        rows = [[f"{r['name']}.{r['arch']}", r["evr"], r["repo"]] for r in data["available"]]
        out.append(_table(rows))
    sys.stdout.write("".join(out))
    if patterns and not any(data.values()):
        from redpak.errors import PackageError

        raise PackageError("no package matches " + " ".join(f"'{p}'" for p in patterns))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from redpak.pkg.ops import info

    rows = info(args.redpath, args.which, args.patterns)
    if args.fmt != "human":
        emit(rows, args.fmt)
        return 0
    blocks = []
    for r in rows:
        where = (f"Installed in : node '{r['node']}' ({r['node_path']})"
                 + (" - an ancestor" if r.get("owner") == "ancestor" else "")
                 if "node" in r else f"Repository   : {r['repo']}")
        desc = (r["description"] or "").strip().replace("\n", "\n             : ")
        blocks.append("\n".join([
            f"Name         : {r['name']}",
            *([f"Epoch        : {r['epoch']}"] if r["epoch"] is not None else []),
            f"Version      : {r['version']}", f"Release      : {r['release']}",
            f"Architecture : {r['arch']}", f"Size         : {r['size']}", where,
            f"Summary      : {r['summary']}", f"URL          : {r['url']}",
            f"License      : {r['license']}", f"Description  : {desc}"]))
    sys.stdout.write("\n\n".join(blocks) + "\n")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from redpak.errors import PackageError
    from redpak.pkg.ops import search

    rows = search(args.redpath, args.words)
    if args.fmt != "human":
        emit(rows, args.fmt)
        return 0
    if not rows:
        raise PackageError("no package matches " + " ".join(f"'{w}'" for w in args.words))
    for r in rows:
        print(f"{r['name']}.{r['arch']} : {r['summary']}")
    return 0


def cmd_repolist(args: argparse.Namespace) -> int:
    from redpak.pkg.ops import repolist

    rows = repolist(args.redpath, args.which)
    if args.fmt != "human":
        emit(rows, args.fmt)
        return 0
    table = [["repo id", "repo name", "status", "defined in"]]
    for r in rows:
        table.append([r["id"], r["name"], "enabled" if r["enabled"] else "disabled",
                      f"node '{r['node']}' ({r['file']}:{r['line']})"])
    sys.stdout.write(_table(table) if rows else "no repositories in this family (add "
                     "NODE/etc/yum.repos.d/*.repo files)\n")
    return 0


def cmd_repoquery(args: argparse.Namespace) -> int:
    from redpak.pkg.ops import Query, repoquery

    query = Query(patterns=args.patterns, installed=args.installed,
                  whatprovides=args.whatprovides, whatrequires=args.whatrequires,
                  show=args.show)
    rows = repoquery(args.redpath, query)
    if args.fmt != "human":
        emit(rows, args.fmt)
        return 0
    if args.show == "nevra":
        lines = [r["nevra"] for r in rows]
    else:
        key = {"requires": "requires", "provides": "provides", "files": "files"}[args.show]
        lines = sorted({x for r in rows for x in r[key]})
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from redpak.pkg.ops import download

    written = download(args.redpath, args.specs, args.destdir, args.resolve, _options(args))
    if args.fmt != "human":
        emit(written, args.fmt)
    elif not args.quiet:
        for path in written:
            print(path)
    return 0


# --------------------------------------------------------------------------- arguments

def _lock_timeout_default() -> float:
    """$REDPAK_DNF_LOCK_TIMEOUT, else the default; raises ArgumentTypeError for a value
    that is not a number of seconds (a `5m` must not silently become 300)."""
    from redpak.pkg.lock import DEFAULT_TIMEOUT

    text = os.environ.get(LOCK_TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        return _seconds(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"${LOCK_TIMEOUT_ENV}: {err} (give seconds, "
                                         f"e.g. 300, or unset it)") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
        if value != value:              # nan
            raise ValueError(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _add_common(parser: argparse.ArgumentParser, top: bool, proof: bool = True) -> None:
    # Repeated on each sub-command with SUPPRESS defaults so options work before and
    # after the command name without the sub-parser resetting them.
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument("-r", "--redpath", metavar="NODE", default=default(None),
                        help="the node to work on (a node directory)")
    parser.add_argument("-y", "--assumeyes", action="store_true", default=default(False),
                        help="answer yes to the confirmation")
    parser.add_argument("-q", "--quiet", action="store_true", default=default(False),
                        help="no progress and no informational lines")
    parser.add_argument("-v", "--verbose", action="count", default=default(0),
                        help="tracebacks of internal errors")
    parser.add_argument("--json", dest="fmt", action="store_const", const="json",
                        default=default("human"), help="JSON output (queries)")
    parser.add_argument("--yaml", dest="fmt", action="store_const", const="yaml",
                        default=default("human"), help="YAML output (queries)")
    if proof:
        parser.add_argument("--proof", action="store_true", default=default(False),
                            help="install, remove, upgrade: only say whether the "
                                 "transaction is possible (ancestors untouched, descendants "
                                 "unbroken); nothing is changed, exit 1 when it is not")
    parser.add_argument("--lock-timeout", type=_seconds, metavar="SECONDS",
                        default=default(None),
                        help="how long to wait for another transaction of the family "
                             f"(default ${LOCK_TIMEOUT_ENV}, else 300)")


def _which(parser: argparse.ArgumentParser, default: str, **choices: str) -> None:
    """Mutually exclusive --CHOICE options (with their help) setting `which`."""
    group = parser.add_mutually_exclusive_group()
    for value, text in choices.items():
        group.add_argument(f"--{value}", dest="which", action="store_const", const=value,
                           help=text)
    parser.set_defaults(which=default)


def _opts_manager(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--alias", help="alias of the node (default: the directory name)")
    p.add_argument("--no-system-node", action="store_true",
                   help="do not create a system node in the parent directory")
    p.add_argument("--template", metavar="T", help="normal config template (name or file)")
    p.add_argument("--template-admin", metavar="T",
                   help="admin config template (name or file)")
    p.add_argument("-u", "--update", action="store_true",
                   help="rewrite the configs of an existing node")


def _opts_specs(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="PACKAGE")


def _opts_upgrade(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="*", metavar="PACKAGE")


def _opts_list(p: argparse.ArgumentParser) -> None:
    _which(p, "all", installed="only the packages installed in the node and its ancestors",
           available="only the packages of the family's repositories",
           all="both (the default)")
    p.add_argument("patterns", nargs="*", metavar="PATTERN",
                   help="globs on name, name.arch, name-version...; a first word "
                        "installed/available/all selects like the options")


def _opts_info(p: argparse.ArgumentParser) -> None:
    _which(p, "all", installed="only installed packages (default: installed, then available)",
           available="only packages of the family's repositories")
    p.add_argument("patterns", nargs="+", metavar="PATTERN")


def _opts_search(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs="+", metavar="WORD")


def _opts_repolist(p: argparse.ArgumentParser) -> None:
    _which(p, "enabled", all="enabled and disabled repositories",
           enabled="enabled repositories only (the default)",
           disabled="disabled repositories only")


def _opts_repoquery(p: argparse.ArgumentParser) -> None:
    p.add_argument("--installed", action="store_true",
                   help="query the family's installed packages instead")
    p.add_argument("--whatprovides", metavar="CAPABILITY",
                   help="packages providing CAPABILITY (a name, a provide or a file path)")
    p.add_argument("--whatrequires", metavar="CAPABILITY",
                   help="packages requiring CAPABILITY")
    show = p.add_mutually_exclusive_group()
    show.add_argument("--requires", dest="show", action="store_const", const="requires",
                      help="print what the packages require (default: their NEVRA)")
    show.add_argument("--provides", dest="show", action="store_const", const="provides",
                      help="print what the packages provide")
    show.add_argument("-l", "--list", dest="show", action="store_const", const="files",
                      help="print the files of the packages")
    p.set_defaults(show="nevra")
    p.add_argument("patterns", nargs="*", metavar="PATTERN")


def _opts_download(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="PACKAGE")
    p.add_argument("--destdir", default=".", metavar="DIR",
                   help="where to put them (default: the current directory)")
    p.add_argument("--resolve", action="store_true",
                   help="also the dependencies the node does not have yet")


def _opts_none(p: argparse.ArgumentParser) -> None:
    pass


# name, help, function, aliases, options
COMMANDS: tuple[tuple[str, str, Any, tuple[str, ...], Any], ...] = (
    ("manager", "create a node (and a system node in its parent directory)", cmd_manager,
     (), _opts_manager),
    ("install", "install packages (names, provides, file paths or .rpm files) and their "
     "dependencies", cmd_change, (), _opts_specs),
    ("remove", "remove packages of the node", cmd_change, ("erase",), _opts_specs),
    ("reinstall", "reinstall packages of the node", cmd_change, (), _opts_specs),
    ("upgrade", "upgrade packages of the node (all without arguments)", cmd_change,
     ("update",), _opts_upgrade),
    ("list", "list installed (with the node owning each) and available packages", cmd_list,
     (), _opts_list),
    ("info", "show details of packages", cmd_info, (), _opts_info),
    ("search", "search package names and summaries", cmd_search, (), _opts_search),
    ("repolist", "list the family's repositories", cmd_repolist, (), _opts_repolist),
    ("repoquery", "query packages of the repositories (or installed ones)", cmd_repoquery,
     (), _opts_repoquery),
    ("download", "download packages into a directory", cmd_download, (), _opts_download),
    ("recover", "complete an interrupted package transaction of the node (redwrap "
     "refuses to launch a node until then); any changing command also does it first",
     cmd_recover, (), _opts_none),
)


class _Retry(Exception):
    """A usage error of a parser built for one command only: parse with the whole one."""


class _OneCommandParser(ArgumentParser):
    def error(self, message: str) -> Any:
        raise _Retry(message)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The redwrap-dnf argument parser. With `only` (a command name), the other commands
    get no options: building every command's options is a quarter of the start-up."""
    cls = ArgumentParser if only is None else _OneCommandParser
    parser = cls(
        prog=PROG, description="Manage the RPM packages of a redpak node (SPEC §8): "
        "packages are installed under the node, ancestors' packages count as installed "
        "and are never changed.",
        epilog="Run `redwrap-dnf COMMAND -h` for the options of a command.")
    _add_common(parser, top=True)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print redpak's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=cls)
    for name, help_text, func, aliases, options in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text, aliases=aliases)
        p.set_defaults(func=func, op=name)
        if only is None or only == name:
            # --proof only where it works (a sub-command's -h lists what it accepts)
            _add_common(p, top=False, proof=name in ("install", "remove", "upgrade"))
            options(p)
    return parser


_VALUE_OPTIONS = ("--redpath", "--lock-timeout")   # the global options taking a value


def _command_word(argv: list[str]) -> str | None:
    """The command that ARGV names, read as argparse would (unique prefixes of long
    options, -r bundled with flags), or None (no command, --help, anything unusual)."""
    names = {alias: name for name, _h, _f, aliases, _o in COMMANDS
             for alias in (name, *aliases)}
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("--"):
            if arg == "--" or arg in ("--help", "--h", "--he", "--hel"):
                return None
            skip = "=" not in arg and any(o.startswith(arg) for o in _VALUE_OPTIONS)
        elif arg.startswith("-") and len(arg) > 1:
            if "h" in arg:
                return None
            skip = arg.endswith("r")         # -r NODE, -yr NODE; -rNODE holds its value
        else:
            return names.get(arg)
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse redwrap-dnf's command line; exits 2 on a usage error, 0 after --help."""
    argv = sys.argv[1:] if argv is None else list(argv)
    word = _command_word(argv)
    args = None
    if word is not None:
        try:
            args = build_parser(only=word).parse_args(argv)
        except _Retry:
            args = None                      # the whole parser says what is wrong
        if args is not None and args.op != word:
            args = None
    parser = None           # the whole parser, built only when needed
    if args is None:
        parser = build_parser()
        args = parser.parse_args(argv)

    def error(message: str) -> None:     # with the usage line of the command
        command_parser(parser or build_parser(), args.command).error(message)

    if not args.redpath:
        error("missing --redpath NODE (the node to work on)")
    if args.proof and args.op not in ("install", "remove", "upgrade"):
        error("--proof works with install, remove and upgrade only")
    if args.lock_timeout is None:
        try:
            args.lock_timeout = _lock_timeout_default()
        except argparse.ArgumentTypeError as err:
            error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of `redwrap-dnf`; returns the exit status."""
    args = parse_args(argv)
    return run_guarded(PROG, lambda: args.func(args), verbose=bool(args.verbose))


if __name__ == "__main__":
    sys.exit(main())
