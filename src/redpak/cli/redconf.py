"""`redconf`: create nodes and inspect their configs (SPEC §7): create, config, mergeconfig,
tree, check; compile (plans cached ahead of time).
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
from redpak.cli.common import (
    Annotated,
    annotate_origins,
    emit,
    print_warning,
    run_guarded,
)
from redpak.errors import NodeError, RedpakError

PROG = "redconf"


# --------------------------------------------------------------------------- commands

def cmd_create(args: argparse.Namespace) -> int:
    """`redconf create`: make a node from templates; raises RedpakError."""
    from redpak.node import create_node

    node = create_node(args.node, alias=args.alias, model=args.model, config=args.config,
                       config_admin=args.config_adm, templates=args.templates,
                       update=args.update)
    data = {"path": node.path, "alias": node.alias, "name": node.config.name,
            "model": args.model, "config": node.config.file,
            "admin": node.admin.file if node.admin else None,
            "state": node.status.state.value}
    if args.fmt == "human":
        verb = "updated" if args.update else "created"
        print(f"{verb} node '{node.alias}' ({args.model}) in {node.path}")
        if args.verbose:
            print(f"  config: {data['config']}")
            if data["admin"]:
                print(f"  admin:  {data['admin']}")
    else:
        emit(data, args.fmt)
    sys.stdout.flush()
    # Stock templates only: a custom config (-c) may well hold its own system.
    warning = None if args.update or args.config else _family_warning(
        node.path, node.alias, args.model)
    if warning:
        print_warning(warning)
    return 0


def _family_warning(path: str, alias: str, model: str) -> str | None:
    """What a careless `redconf create` built that a launch cannot use as meant: a leaf
    with no node above it (no system), or a root/full node below an existing node
    (its system exports collide with its ancestor's, ignored one by one)."""
    from redpak.node import find_family

    ancestors = find_family(path)[:-1]
    if model == "leaf" and not ancestors:
        return (f"node '{alias}' ({path}) is a leaf with no node above it: it gets no "
                f"system (/bin, /lib, /etc, /proc ...), only what is installed in it; "
                f"create a system node in a parent directory (`redconf create --root "
                f"DIR`) or use --full")
    if model in ("root", "full") and ancestors:
        return (f"node '{alias}' ({path}) is a {model} node inside the family of "
                f"{ancestors[-1]}: its system exports are ignored there, below its "
                f"ancestors' (`redconf check -v` lists them); a node inside a family "
                f"is usually a --leaf")
    return None


def cmd_config(args: argparse.Namespace) -> int:
    """`redconf config`: print a node's own configs as parsed; raises RedpakError."""
    from redpak.node import load_node

    node = load_node(args.node)
    data = {"node": {"path": node.path, "state": node.status.state.value},
            "normal": config_to_dict(node.config),
            "admin": config_to_dict(node.admin) if node.admin else None}
    emit(data, args.fmt)
    sys.stdout.flush()
    for cfg in (node.config, node.admin):
        for text in cfg.warnings if cfg else ():
            print_warning(text)
    return 0


def cmd_mergeconfig(args: argparse.Namespace) -> int:
    """`redconf mergeconfig`: print the merged (and expanded) family config, origins
    annotated, warnings on stderr; raises RedpakError."""
    from redpak.plan import LaunchOptions

    result: Any
    if args.expand:
        # The very FamilyConfig a launch of this leaf compiles (same identity, same order).
        from redpak.build import launch_family

        result = launch_family(args.node, LaunchOptions(admin=args.admin)).expanded
    else:
        from redpak.family import merge_family
        from redpak.node import load_family

        result = merge_family(load_family(args.node), admin=args.admin)
    data = result.to_dict(origins=True)
    if args.fmt == "human":     # warnings go to stderr below, not twice
        shown = {k: v for k, v in data.items() if k not in ("warnings", "overrides")}
        emit(annotate_origins(shown), args.fmt)
    else:
        emit(data, args.fmt)
    sys.stdout.flush()          # warnings last, where a terminal user sees them
    for text in data.get("warnings", ()):
        print_warning(text)
    for text in data.get("overrides", ()):     # a node-local value redefined below: no fault
        print_warning(text, "info")
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    """`redconf tree`: print the nodes below a directory, nested; 1 if any is invalid."""
    from redpak.node import find_tree, load_node, read_status

    errors: list[str] = []
    paths = find_tree(args.node, onerror=lambda p, e: errors.append(
        f"{p}: cannot read directory: {e.strerror}"))
    if not paths:
        raise NodeError(f"no node at or below {os.path.abspath(args.node)} "
                        f"(create one with `redconf create`)")
    roots: list[dict[str, Any]] = []
    stack: list[dict[str, Any]] = []
    for path in paths:
        entry: dict[str, Any] = {"alias": None, "path": path, "state": None}
        try:
            entry["state"] = read_status(path).state.value
            entry["alias"] = load_node(path).alias
        except RedpakError as err:
            entry["error"] = str(err)
            errors.append(str(err))
        entry["children"] = []
        while stack and not path.startswith(stack[-1]["path"].rstrip("/") + "/"):
            stack.pop()
        (stack[-1]["children"] if stack else roots).append(entry)
        stack.append(entry)
    if args.fmt == "human":
        lines: list[str] = []
        _tree_lines(roots, 0, lines)
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        emit(roots, args.fmt)
    sys.stdout.flush()
    for text in errors:
        print(f"{PROG}: {text}", file=sys.stderr)
    return 1 if errors else 0


def _tree_lines(entries: list[dict[str, Any]], depth: int, lines: list[str]) -> None:
    for e in entries:
        alias = e["alias"] or "?"
        state = e["state"] or "?"
        flag = "  (invalid, see below)" if "error" in e else ""
        lines.append(f"{'  ' * depth}{alias}  [{state}]  {e['path']}{flag}")
        _tree_lines(e["children"], depth + 1, lines)


def cmd_check(args: argparse.Namespace) -> int:
    """`redconf check`: load, merge and expand every node of a tree in both modes and
    list every problem; 1 if there is any."""
    from redpak import record

    from redpak.build import family_config
    from redpak.model import NodeState
    from redpak.node import find_family, find_tree, load_node
    from redpak.plan import check_home, check_paths

    problems: list[dict[str, str]] = []
    warnings: list[str] = []
    reported: set[str] = set()

    def problem(path: str, text: str, key: str | None = None) -> None:
        # One error seen from several places (normal and admin mode, every descendant of
        # a broken node) is reported once, where it is first met.
        key = text if key is None else key
        if key in reported:
            return
        reported.add(key)
        problems.append({"node": path, "message": text})

    def warning(text: str, key: str) -> None:
        if key not in reported:
            reported.add(key)
            warnings.append(text)

    paths = find_tree(args.node, onerror=lambda p, e: problem(
        p, f"{p}: cannot read directory: {e.strerror}"))
    if not paths:
        raise NodeError(f"no node at or below {os.path.abspath(args.node)} "
                        f"(create one with `redconf create`)")
    loaded: dict[str, Any] = {}

    def load(path: str) -> Any:
        if path not in loaded:
            try:
                node = load_node(path)
            except RedpakError as err:
                problem(path, _naming(path, "", err))
                node = None
            else:
                state = node.status.state
                if state is NodeState.DISABLE:
                    warnings.append(f"{path}: node '{node.alias}' is disabled")
                elif state is not NodeState.ENABLE:
                    problem(path, f"{path}: node '{node.alias}' is in state {state.value} "
                                  f"(launches in its family are refused)")
                for cfg in (node.config, node.admin):
                    for text in cfg.warnings if cfg else ():
                        warning(text, text)
            loaded[path] = node
        return loaded[path]

    for path in paths:
        load(path)
    uid, gid, pid = os.getuid(), os.getgid(), os.getpid()
    # A node with children (or with a directory below it that could not be read, which may
    # hold them) is launched through its leaves: check_home applies to leaves only.
    below = paths + [p["node"] for p in problems]
    parents = {p for p in paths for q in below if q.startswith(p.rstrip("/") + "/")}
    leaves = set(paths) - parents
    for path in paths:
        if loaded[path] is None:
            continue
        try:
            family = [load(p) for p in find_family(path)]
        except RedpakError as err:
            problem(path, _naming(path, "", err))
            continue
        if any(n is None for n in family):
            continue                # already reported at the broken node
        # States are reported above; merge as if enabled so configs are still checked.
        family = [n if n.status.state is NodeState.ENABLE else record.replace(
            n, status=record.replace(n.status, state=NodeState.ENABLE)) for n in family]
        for admin in (False, True):
            mode = "admin" if admin else "normal"
            try:
                merged = family_config(family, admin, os.environ, uid, gid, pid).family
                check_paths(merged)     # what a launch refuses, check refuses too
                if path in leaves:      # a node with children is launched through them
                    check_home(merged)
                for w in merged.warnings:
                    warning(f"{path}: {mode} mode: {w}", str(w))
            except RedpakError as err:
                problem(path, _naming(path, f"{mode} mode: ", err), str(err))

    if args.packages or args.verify or args.junit:     # issue 14: the package half
        from redpak.proof import finish_check

        return finish_check(args, paths, problems, warnings)
    summary = {"nodes": len(paths), "problems": problems, "warnings": warnings}
    if args.fmt != "human":
        emit(summary, args.fmt)
    else:
        for p in problems:
            print(p["message"])
        if args.verbose:
            for text in warnings:
                print_warning(text)
    sys.stdout.flush()
    if problems:
        print(f"{PROG}: {len(problems)} problem{'s' if len(problems) > 1 else ''} found "
              f"in {len(paths)} node{'s' if len(paths) > 1 else ''}", file=sys.stderr)
        return 1
    if args.fmt == "human":
        more = ""
        if warnings:
            more = f", {len(warnings)} warning{'s' if len(warnings) > 1 else ''}"
            more += "" if args.verbose else " (-v to show)"
        print(f"{len(paths)} node{'s' if len(paths) > 1 else ''} checked, no problem{more}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    """`redconf compile`: compile and cache the plan of every leaf below ROOT, so that
    redwrap launches them without Python; 1 if a leaf is left without a cached plan."""
    from redpak.precompile import compile_tree

    env = dict(os.environ)
    env.update(args.env or ())
    for name in args.unset_env or ():
        env.pop(name, None)
    results = compile_tree(args.node, admin=args.admin, environ=env)
    failed = [r for r in results if r.error]
    if args.fmt != "human":
        emit([{"node": r.path, "mode": r.mode, "cache": r.cache, "error": r.error,
               "skipped": r.skipped, "warnings": r.warnings} for r in results], args.fmt)
    else:
        for r in results:
            if r.cache:
                print(f"{r.path} ({r.mode}): {r.cache}")
            elif r.skipped:
                print(f"{r.path} ({r.mode}): skipped, {r.skipped}")
    sys.stdout.flush()
    for r in results:
        for text in r.warnings if args.verbose else ():
            print_warning(f"{r.path} ({r.mode}): {text}")
        if r.error:
            print(f"{PROG}: {r.path} ({r.mode}): {r.error}", file=sys.stderr)
    if failed:
        print(f"{PROG}: {len(failed)} of {len(results)} plans not cached", file=sys.stderr)
        return 1
    return 0


def _naming(path: str, context: str, err: Exception) -> str:
    """The error text, prefixed with the node path unless it already starts with it."""
    text = str(err)
    if not context and (text.startswith(path.rstrip("/") + "/") or text.startswith(path + ":")):
        return text
    return f"{path}: {context}{text}"


# --------------------------------------------------------------------------- serialising

def config_to_dict(cfg: Any) -> dict[str, Any]:
    """One NodeConfig as plain data in the YAML schema; values carry `line N` annotations."""
    from redpak import record
    import enum

    from redpak.family import yaml_key
    from redpak.model import CgroupSettings, ShareValue

    def at(value: Any, line: int) -> Any:
        return Annotated(value, f"line {line}") if line else value

    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, ShareValue):
            return value.path if value.path else value.state.value
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    s = cfg.settings
    config: dict[str, Any] = {}
    for f in record.fields(s):
        name = f.name
        value = getattr(s, name)
        if name == "lines" or value is None or value == ():
            continue
        key = yaml_key(name)
        line = s.lines.get(name, 0)
        if name in ("path", "ldpath"):
            config[key] = at(":".join(value), line)
        elif name == "umask":
            config[key] = at(f"{value:04o}", line)
        elif name == "capabilities":
            config[key] = [at({"cap": c.cap, "add": 1 if c.add else 0}, c.line)
                           for c in value]
        elif isinstance(value, CgroupSettings):
            tree: dict[str, Any] = {}
            for cf in record.fields(value):
                v = getattr(value, cf.name)
                if cf.name != "line" and v is not None:
                    section, _, sub = cf.name.partition("_")
                    tree.setdefault(section, {})[sub] = v
            config[key] = at(tree, line)
        elif record.is_record(value) and not isinstance(value, ShareValue):
            sub = {k.name: plain(getattr(value, k.name)) for k in record.fields(value)
                   if k.name != "line" and getattr(value, k.name) not in (None, ())}
            config[key] = at(sub, line)
        else:
            config[key] = at(plain(value), line)
    exports = []
    for e in cfg.exports:
        data = {"mode": e.mode.value, "mount": e.mount}
        data.update({k: getattr(e, k) for k in ("path", "info", "warn")
                     if getattr(e, k) is not None})
        exports.append(at(data, e.line))
    environ = []
    for e in cfg.environ:
        data = {"key": e.key, "value": e.value, "mode": e.mode.value}
        data.update({k: getattr(e, k) for k in ("info", "warn") if getattr(e, k) is not None})
        environ.append(at(data, e.line))
    return {"file": cfg.file,
            "headers": {"alias": cfg.alias, "name": cfg.name, "info": cfg.info},
            "config": config, "exports": exports, "environ": environ,
            "warnings": list(cfg.warnings)}




# --------------------------------------------------------------------------- arguments

def _add_output_options(parser: argparse.ArgumentParser, top: bool) -> None:
    # Repeated on every sub-command with SUPPRESS defaults, so `redconf tree -y ROOT`
    # works like `redconf -y tree ROOT` without the sub-parser resetting the value.
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="count", default=default(0),
                        help="more detail; tracebacks of internal errors")
    parser.add_argument("-y", "--yaml", dest="fmt", action="store_const", const="yaml",
                        default=default("human"), help="plain YAML output")
    parser.add_argument("--json", dest="fmt", action="store_const", const="json",
                        default=default("human"), help="JSON output")


def _add_node(parser: argparse.ArgumentParser, name: str, help_text: str,
              *flags: str) -> None:
    parser.add_argument("node_pos", nargs="?", metavar=name, help=help_text)
    parser.add_argument(*(flags or ("-r", "--redpath")), dest="node_opt", metavar=name,
                        help=f"{help_text} (instead of the positional argument)")


def _log_level(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"'{text}' is not a level (0, 1, 2 ...)")
    return int(text)


def _assignment(text: str) -> tuple[str, str]:
    # A malformed -E is a usage error (exit 2, with the usage line), like any bad option.
    name, eq, value = text.partition("=")
    if not eq or not name:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    """The redconf argument parser."""
    parser = ArgumentParser(
        prog=PROG, description="Create redpak nodes and inspect their configurations.",
        epilog="Run `redconf COMMAND -h` for the options of a command.")
    _add_output_options(parser, top=True)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print redpak's version and exit")
    parser.add_argument("-l", "--log-yaml", type=_log_level, metavar="N", default=0,
                        help="redpak 2.x: detail level N about the configs read "
                             "(same as N times -v)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("create", help="create a node from templates (SPEC §1.1)",
                       description="Create a node (or rewrite its configs with --update). "
                                   "The options are those of redpak 2.x.")
    _add_node(p, "REDPATH", "directory of the node (relative to the current directory, "
                            "or to --redroot)", "-n", "--node", "--redpath")
    p.add_argument("-R", "--redroot", metavar="DIR",
                   help="directory a relative REDPATH is taken from, instead of the current "
                        "directory (the top of the node tree, e.g. /var/redpak)")
    p.add_argument("-a", "--alias", help="node alias (default: the directory name)")
    p.add_argument("-c", "--config", metavar="T",
                   help="normal config template: a name in the templates directory or a file")
    p.add_argument("-C", "--config-adm", metavar="T",
                   help="admin config template: a name in the templates directory or a file")
    models = p.add_mutually_exclusive_group()
    models.add_argument("-m", "--model", default="leaf", metavar="M",
                        help="template pair to use: root, leaf (default) or full")
    models.add_argument("-r", "--root", dest="model", action="store_const", const="root",
                        help="same as --model root (the system node of a family)")
    models.add_argument("-l", "--leaf", dest="model", action="store_const", const="leaf",
                        help="same as --model leaf (an application node)")
    models.add_argument("-f", "--full", dest="model", action="store_const", const="full",
                        help="same as --model full (root and leaf in one)")
    p.add_argument("-t", "--templates", metavar="DIR",
                   help="templates directory (default: $REDNODE_TEMPLATE_DIR, "
                        "else the installed templates)")
    p.add_argument("-u", "--update", action="store_true",
                   help="rewrite the configs of an existing node, keeping its headers")
    _add_output_options(p, top=False)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("config", help="print a node's own configs (normal and admin)",
                       description="Print a node's own configs, as parsed.")
    _add_node(p, "NODE", "node directory")
    _add_output_options(p, top=False)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("mergeconfig", help="print the merged config of a node's family",
                       description="Print the effective config of a node: its family merged "
                                   "root first, each entry annotated with its origin.")
    _add_node(p, "NODE", "leaf node directory")
    p.add_argument("-e", "--expand", action="store_true",
                   help="expand variables and $(commands) as at launch")
    p.add_argument("-a", "--admin", action="store_true",
                   help="admin mode: layer each node's admin config over its normal one")
    _add_output_options(p, top=False)
    p.set_defaults(func=cmd_mergeconfig)

    p = sub.add_parser("tree", help="print the node tree below a directory",
                       description="Print every node at or below ROOT with alias and state.")
    _add_node(p, "ROOT", "directory to search", "-r", "--redroot", "--redpath")
    _add_output_options(p, top=False)
    p.set_defaults(func=cmd_tree)

    p = sub.add_parser("check", help="validate every node of a tree",
                       description="Parse every node at or below ROOT and merge and expand "
                                   "its family in normal and admin modes, applying the path "
                                   "rules of a launch (absolute mounts and chdir); list "
                                   "every problem. "
                                   "With --packages, also prove every node's packages "
                                   "(docs/proof.md).")
    _add_node(p, "ROOT", "directory to search")
    p.add_argument("--packages", action="store_true",
                   help="also prove the packages, offline (docs/proof.md): rpm databases "
                        "verify, requirements met by each node and its ancestors, no "
                        "package twice on a family line, no file overlapping between "
                        "nodes' exports, every listed file present; with --json, one "
                        "record per finding")
    p.add_argument("--verify", action="store_true",
                   help="also compare each file's size, digest and symlink target with "
                        "its rpm database (implies --packages)")
    p.add_argument("--junit", metavar="FILE",
                   help="also write a JUnit XML report to FILE (implies --packages)")
    _add_output_options(p, top=False)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("compile", help="compile and cache the plans of every leaf of a tree",
                       description="Compile the launch plan of every leaf node at or below "
                                   "ROOT, for this user, and store it in the plan cache: "
                                   "redwrap then launches these nodes without starting "
                                   "Python (for a first boot or an image build step).")
    _add_node(p, "ROOT", "directory to search")
    p.add_argument("-a", "--admin", action="store_true",
                   help="also compile the admin-mode plans (redwrap -a)")
    p.add_argument("-E", "--env", action="append", metavar="NAME=VALUE", type=_assignment,
                   help="compile for launches with this variable (e.g. NOTIFY_SOCKET="
                        "/run/systemd/notify for redpak-notify@ services); repeatable")
    p.add_argument("--unset-env", action="append", metavar="NAME",
                   help="compile for launches without this variable; repeatable")
    _add_output_options(p, top=False)
    p.set_defaults(func=cmd_compile)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse redconf's command line; exits 2 on a usage error, 0 after --help."""
    parser = build_parser()
    args = parser.parse_args(argv)
    parser = command_parser(parser, args.command)
    option = {"create": "-n/--node", "tree": "-r/--redroot"}.get(args.command, "-r/--redpath")
    if args.node_pos is not None and args.node_opt is not None:
        parser.error(f"give the node either as an argument or with "
                     f"{option}, not both")
    args.node = args.node_opt if args.node_opt is not None else args.node_pos
    if args.node is None:
        parser.error(f"missing node directory (see `redconf {args.command} -h`)")
    if getattr(args, "redroot", None) is not None:
        args.node = os.path.join(args.redroot, args.node)  # an absolute node path wins
    args.verbose = max(args.verbose, args.log_yaml)
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of `redconf`; returns the exit status."""
    args = parse_args(argv)
    return run_guarded(PROG, lambda: args.func(args), verbose=bool(args.verbose))


if __name__ == "__main__":
    sys.exit(main())
