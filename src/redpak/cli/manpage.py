# Man pages and shell completion generated from the same source as --help: the argparse
# parsers of redconf and redwrap-dnf, and USAGE of redwrap (which the native executable
# prints too). data/man/ and data/completion/ hold the output; tests check they are current.
"""python -m redpak.cli.manpage [--check] [--man-dir DIR] [--completion-dir DIR]

Writes (or with --check, compares) the man pages (PROG.1) and bash completion scripts of
redwrap, redconf and redwrap-dnf. Defaults: data/man and data/completion of the checkout."""

from __future__ import annotations

import argparse
import os
import re
import sys

from redpak.record import field, record

PROGS = ("redwrap", "redconf", "redwrap-dnf")


@record
class Option:
    flags: list[str]
    metavar: str | None = None     # None: a flag without a value
    help: str = ""
    optional_value: bool = False   # --verbose[=N]


@record
class Command:
    name: str
    aliases: list[str] = field(default_factory=list)
    help: str = ""
    description: str = ""
    options: list[Option] = field(default_factory=list)
    positionals: list[tuple[str, str]] = field(default_factory=list)


@record
class Page:
    """What a command line offers: its options, and its sub-commands if any."""

    prog: str
    summary: str
    synopsis: list[str]
    description: str
    options: list[Option]
    commands: list[Command] = field(default_factory=list)
    positionals: list[tuple[str, str]] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)


# ---- reading the parsers -----------------------------------------------------------------

def _argparse_options(parser: argparse.ArgumentParser) -> tuple[list[Option],
                                                                list[tuple[str, str]]]:
    options, positionals = [], []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction) or a.help == argparse.SUPPRESS:
            continue
        if a.option_strings:
            takes = a.nargs != 0
            metavar = (a.metavar or a.dest.upper()) if takes else None
            options.append(Option(list(a.option_strings), metavar, a.help or ""))
        else:
            positionals.append((a.metavar or a.dest, a.help or ""))
    return options, positionals


def _subcommands(parser: argparse.ArgumentParser) -> list[Command]:
    commands = []
    for a in parser._actions:
        if not isinstance(a, argparse._SubParsersAction):
            continue
        for pseudo in a._choices_actions:
            sub = a.choices[pseudo.dest]
            aliases = [n for n, p in a.choices.items() if p is sub and n != pseudo.dest]
            options, positionals = _argparse_options(sub)
            commands.append(Command(pseudo.dest, aliases, pseudo.help or "",
                                    sub.description or "", options, positionals))
    return commands


def _from_argparse(parser: argparse.ArgumentParser, summary: str, synopsis: list[str],
                   sections: list[tuple[str, str]]) -> Page:
    options, positionals = _argparse_options(parser)
    text = parser.description or ""
    if parser.epilog:
        text += "\n\n" + parser.epilog
    return Page(parser.prog, summary, synopsis, text, options, _subcommands(parser),
                positionals, sections)


_USAGE_OPTION = re.compile(r"^  (?:(-\w), |    )(--[\w-]+)(\[=(\w+)\]| (\w+))?\s{2,}(.*)$")


def _redwrap_page() -> Page:
    """redwrap's options as its --help prints them (USAGE, shared with the native one)."""
    from redpak.cli.redwrap import USAGE
    lines = USAGE.splitlines()
    synopsis = [lines[0].removeprefix("usage: ")]
    start, end = lines.index("options:"), None
    description = "\n".join(lines[1:start]).strip()
    options = []
    # option blocks: "options:" then more blocks whose heading ends with ':' (e.g. the
    # redpak 2.x options); the first other paragraph starts the trailing text
    i = start + 1
    while i < len(lines):
        m = _USAGE_OPTION.match(lines[i])
        if m:
            names = [m[1], m[2]] if m[1] else [m[2]]
            options.append(Option(names, m[4] or m[5], m[6], optional_value=bool(m[4])))
        elif not lines[i].strip() and i + 2 < len(lines) and lines[i + 1].endswith(":") \
                and _USAGE_OPTION.match(lines[i + 2]):
            i += 1
        elif not lines[i].strip():
            end = i
            break
        i += 1
    after = "\n".join(lines[end:]).strip() if end else ""
    sections = [("ARGUMENTS AND EXIT STATUS", after)] + _EXTRA["redwrap"]
    return Page("redwrap", "run a program in a redpak node", synopsis, description,
                options, sections=sections)


_EXTRA: dict[str, list[tuple[str, str]]] = {
    "redwrap": [
        ("ENVIRONMENT",
         "REDPAK_CACHE_DIR: where launch plans are cached (default /var/cache/redpak for "
         "root, else $XDG_CACHE_HOME/redpak or ~/.cache/redpak).\n\n"
         "REDPAK_PYTHON: the interpreter of the cold path, which compiles a plan when no "
         "valid cached one exists.\n\n"
         "NOTIFY_SOCKET: set by systemd for a Type=notify service; passed into the node "
         "with its socket, so the program can report its readiness."),
        ("FILES",
         "NODE/etc/redpak.yaml, NODE/etc/redpak-admin.yaml, NODE/.rednode.yaml: the "
         "configuration and status of each node of the family.\n\n"
         "redpak@.service, redpak-notify@.service: systemd template units running a "
         "program in the node named by the instance."),
        ("SEE ALSO", "redconf(1), redwrap-dnf(1), systemd.unit(5)"),
    ],
    "redconf": [
        ("EXIT STATUS", "0 on success; 1 on an error (one message on stderr, never a "
                        "traceback), and when check finds a problem, tree an invalid node or "
                        "compile a plan it could not cache; 2 on a usage error (the "
                        "command's usage line first); 130 when interrupted (Ctrl-C)."),
        ("ENVIRONMENT", "REDNODE_TEMPLATE_DIR: the templates directory of create."),
        ("SEE ALSO", "redwrap(1), redwrap-dnf(1)"),
    ],
    "redwrap-dnf": [
        ("EXIT STATUS", "0 on success; 1 on an error (one message on stderr, never a "
                        "traceback), a transaction not confirmed, a query matching nothing, "
                        "or --proof finding the transaction impossible; 2 on a usage error "
                        "(the command's usage line first); 130 when interrupted (Ctrl-C)."),
        ("ENVIRONMENT", "REDPAK_DNF_LOCK_TIMEOUT: default of --lock-timeout, in seconds."),
        ("SEE ALSO", "redwrap(1), redconf(1), rpm(8), dnf(8)"),
    ],
}


def page(prog: str) -> Page:
    """The description of PROG's command line, read from its parser."""
    if prog == "redwrap":
        return _redwrap_page()
    if prog == "redconf":
        from redpak.cli.redconf import build_parser
        return _from_argparse(build_parser(), "create redpak nodes and inspect their "
                              "configurations", ["redconf [options] COMMAND [options] NODE"],
                              _EXTRA[prog])
    if prog == "redwrap-dnf":
        from redpak.cli.redwrap_dnf import build_parser
        return _from_argparse(build_parser(), "manage the RPM packages of a redpak node",
                              ["redwrap-dnf --redpath NODE [options] COMMAND [ARGS...]"],
                              _EXTRA[prog])
    raise ValueError(f"no man page for {prog!r} (one of {', '.join(PROGS)})")


# ---- roff --------------------------------------------------------------------------------

def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in text.splitlines())


def _paragraphs(text: str) -> list[str]:
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        if block.strip():
            out.append(_roff(" ".join(block.split())))
    return out


def _option_roff(opt: Option) -> list[str]:
    flags = ", ".join(f"\\fB{_roff(f)}\\fR" for f in opt.flags)
    if opt.metavar and opt.optional_value:
        flags += f"[=\\fI{_roff(opt.metavar)}\\fR]"
    elif opt.metavar:
        flags += f" \\fI{_roff(opt.metavar)}\\fR"
    return [".TP", flags, _roff(opt.help) if opt.help else "\\&"]


def render_man(p: Page) -> str:
    """The man page of P, in roff (man(7) macros)."""
    from redpak import __version__
    out = [f'.TH {p.prog.upper()} 1 "" "redpak {__version__}" "User Commands"',
           ".\\\" Generated by python -m redpak.cli.manpage from the command's parser.",
           ".SH NAME", f"{_roff(p.prog)} \\- {_roff(p.summary)}", ".SH SYNOPSIS"]
    for line in p.synopsis:
        out += [".B " + _roff(line.split(" ", 1)[0]), _roff(line.split(" ", 1)[1]), ".br"]
    out.append(".SH DESCRIPTION")
    for i, para in enumerate(_paragraphs(p.description)):
        out += ([".PP"] if i else []) + [para]
    if p.positionals:
        out.append(".SH ARGUMENTS")
        for name, text in p.positionals:
            out += [".TP", f"\\fI{_roff(name)}\\fR", _roff(text) or "\\&"]
    out.append(".SH OPTIONS")
    for opt in p.options:
        out += _option_roff(opt)
    if p.commands:
        shared = {tuple(o.flags) for o in p.options}
        out += [".SH COMMANDS", "The options above are also accepted after COMMAND."]
        for c in p.commands:
            names = " | ".join([c.name, *c.aliases])
            args = " ".join(f"[{m}]" for m, _ in c.positionals)
            out += [".SS " + _roff(f"{names} {args}".strip()),
                    _roff(c.description or c.help)]
            for name, text in c.positionals:
                if text:
                    out += [".TP", f"\\fI{_roff(name)}\\fR", _roff(text)]
            for opt in c.options:
                if tuple(opt.flags) not in shared:
                    out += _option_roff(opt)
    for title, text in p.sections:
        out.append(f".SH {title}")
        for i, para in enumerate(_paragraphs(text)):
            out += ([".PP"] if i else []) + [para]
    return "\n".join(out) + "\n"


# ---- bash completion ---------------------------------------------------------------------

_DIR_VALUES = {"NODE", "REDPATH", "ROOT", "DIR"}
_FILE_VALUES = {"T"}


def _value_kinds(options: list[Option]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {"dir": [], "file": [], "user": [], "group": [],
                                   "other": []}
    for o in options:
        if not o.metavar or o.optional_value:
            continue
        kind = ("dir" if o.metavar in _DIR_VALUES else "file" if o.metavar in _FILE_VALUES
                else "user" if o.metavar == "USER" else "group" if o.metavar == "GROUP"
                else "other")
        for f in o.flags:
            if f not in kinds[kind]:
                kinds[kind].append(f)
    return kinds


def _words(options: list[Option]) -> str:
    return " ".join(w for o in options for f in o.flags
                    for w in ([f, f + "="] if o.optional_value and f.startswith("--") else [f]))


def render_completion(p: Page) -> str:
    """A bash completion script for P (only bash builtins: works without the
    bash-completion package, which loads it from its completions directory)."""
    fn = "_" + p.prog.replace("-", "_")
    every = list(p.options) + [o for c in p.commands for o in c.options]
    kinds = _value_kinds(every)
    lines = [f"# bash completion for {p.prog}: generated by python -m redpak.cli.manpage",
             f"# from the same parser as `{p.prog} --help`.",
             f"{fn}()", "{",
             '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" i w',
             '    [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"',
             "    COMPREPLY=()"]
    takes = " ".join(f for fl in kinds.values() for f in fl)
    prev_case = ['    case "$prev" in']
    for kind, action in (("dir", "compgen -d -- \"$cur\""), ("file", "compgen -f -- \"$cur\""),
                         ("user", "compgen -u -- \"$cur\""),
                         ("group", "compgen -g -- \"$cur\""), ("other", "")):
        if kinds[kind]:
            body = f"COMPREPLY=( $({action}) ); " if action else ""
            prev_case.append(f"        {'|'.join(kinds[kind])}) {body}return 0 ;;")
    prev_case.append("    esac")
    # walk the words before the cursor: values of options, then the command (or program)
    lines += ["    for ((i = 1; i < COMP_CWORD; i++)); do",
              '        w="${COMP_WORDS[i]}"',
              '        case "$w" in']
    if takes:
        lines.append(f"            {'|'.join(takes.split())}) ((i++)) ;;")
    if not p.commands:
        lines.append('            --) cmd="--"; break ;;')
    lines += ["            -*) ;;",
              '            *) cmd="$w"; break ;;',
              "        esac", "    done"]
    if p.commands:
        names = " ".join(n for c in p.commands for n in [c.name, *c.aliases])
        lines += prev_case
        lines += ['    if [ -z "$cmd" ]; then',
                  '        if [[ "$cur" == -* ]]; then',
                  f'            COMPREPLY=( $(compgen -W "{_words(p.options)}" -- "$cur") )',
                  "        else",
                  f'            COMPREPLY=( $(compgen -W "{names}" -- "$cur") )',
                  "        fi", "        return 0", "    fi",
                  '    local opts="" args=""', '    case "$cmd" in']
        for c in p.commands:
            args = "dirs" if any(m in _DIR_VALUES for m, _ in c.positionals) else ""
            lines.append(f"        {'|'.join([c.name, *c.aliases])}) "
                         f'opts="{_words(c.options)}"; args="{args}" ;;')
        lines += ["    esac",
                  '    if [[ "$cur" == -* ]]; then',
                  '        COMPREPLY=( $(compgen -W "$opts" -- "$cur") )',
                  '    elif [ "$args" = dirs ]; then',
                  '        COMPREPLY=( $(compgen -d -- "$cur") )',
                  "    else",
                  '        COMPREPLY=( $(compgen -f -- "$cur") )',
                  "    fi"]
    else:  # redwrap: options, then the program (a command name) and its arguments
        lines += ['    if [ "$cmd" = "--" ] && [ "$i" -eq $((COMP_CWORD - 1)) ]; then',
                  '        COMPREPLY=( $(compgen -c -- "$cur") )',
                  "        return 0",
                  '    elif [ -n "$cmd" ]; then',
                  '        COMPREPLY=( $(compgen -f -- "$cur") )',
                  "        return 0",
                  "    fi"]
        lines += prev_case
        lines += ['    if [[ "$cur" == -* ]]; then',
                  f'        COMPREPLY=( $(compgen -W "{_words(p.options)} --" -- "$cur") )',
                  "    else",
                  '        COMPREPLY=( $(compgen -c -- "$cur") )',
                  "    fi"]
    names = [p.prog] + (["redpak-run"] if p.prog == "redwrap" else [])
    lines += ["    return 0", "}", f"complete -F {fn} {' '.join(names)}"]
    return "\n".join(lines) + "\n"


# ---- command line ------------------------------------------------------------------------

def outputs(man_dir: str, completion_dir: str) -> dict[str, str]:
    """Every generated file: path -> content."""
    files = {}
    for prog in PROGS:
        p = page(prog)
        files[os.path.join(man_dir, f"{prog}.1")] = render_man(p)
        files[os.path.join(completion_dir, prog)] = render_completion(p)
    # redpak-run is redwrap under another name: bash-completion looks the script up by
    # the command's name, man by the page's
    files[os.path.join(completion_dir, "redpak-run")] = files[os.path.join(completion_dir,
                                                                           "redwrap")]
    files[os.path.join(man_dir, "redpak-run.1")] = ".so man1/redwrap.1\n"
    return files


def main(argv: list[str] | None = None) -> int:
    top = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    parser = argparse.ArgumentParser(prog="python -m redpak.cli.manpage",
                                     description="Generate the man pages and bash "
                                     "completion of redwrap, redconf and redwrap-dnf.")
    parser.add_argument("--man-dir", default=os.path.join(top, "data", "man"))
    parser.add_argument("--completion-dir", default=os.path.join(top, "data", "completion"))
    parser.add_argument("--check", action="store_true",
                        help="compare with the files instead of writing them (exit 1 if any "
                             "differs)")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(args.man_dir, args.completion_dir).items():
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current == text:
            continue
        if args.check:
            stale.append(path)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}")
    for path in stale:
        print(f"{path} is out of date: run python -m redpak.cli.manpage", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
