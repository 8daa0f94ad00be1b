# redwrap / redpak-run, Python side: the cold path. The native `redwrap` executable runs a
# cached plan without Python; when the plan is missing or stale (or an option needs
# policy), it executes this module with the same arguments, which compiles, caches, runs.
"""redwrap --redpath NODE [options] [--] PROGRAM [ARGS...]: run a program in a node."""

from __future__ import annotations

import os
import sys

from ..errors import RedpakError

PROG = "redwrap"
EXIT_REDPAK = 125
EXIT_NOEXEC = 126
EXIT_NOTFOUND = 127

USAGE = """\
usage: redwrap --redpath NODE [options] [--] PROGRAM [ARGS...]

Run PROGRAM inside the node NODE, with the merged configuration of its family.

options:
  -r, --redpath NODE    the node to run in (required); also --rpath, --rp (redpak 2.x)
  -a, --admin           admin mode: layer each node's admin config (package management)
  -s, --strict          a missing export source is an error instead of a warning
  -f, --force           rebuild the launch plan even if the cached one is valid
  -U, --user USER       run as USER (name or number, resolved on the host); also --uid
  -G, --group GROUP     run as GROUP (name or number, resolved on the host); also --gid
  -S, --smack LABEL     SMACK label of the program (overrides the config)
  -v, --verbose[=N]     say more on stderr (N: level, default 1)
  -d, --dump            print the launch plan, then run
  -D, --dump-only       print the launch plan; run nothing, change nothing
  -h, --help            show this help and exit
      --version         print redpak's version and exit

redpak 2.x options, accepted with a notice on stderr that they have no effect:
      --unsafe          (this redpak has no unsafe mode)
      --bwrap PATH      (this redpak launches nodes itself, without bwrap)

Single-letter options may be bundled as with getopt: `-av` is `-a -v`, and a letter
taking a value ends the bundle (`-aU bob`, `-aUbob`). The first argument that is not an
option, or everything after '--', is the program and its arguments, passed verbatim
(`redwrap --redpath NODE ls -l` runs `ls -l`). Exit status: the program's; 128+N if it
died of signal N; 125 if redpak failed before the program started (a usage error too);
126 if the program is not executable; 127 if it is not found in the node.
"""


class UsageError(Exception):
    pass


class Args:
    """Parsed command line (see USAGE); parsing stops at the program."""

    def __init__(self) -> None:
        self.redpath: str | None = None
        self.admin = self.strict = self.force = self.dump = self.dump_only = False
        self.user: str | None = None
        self.group: str | None = None
        self.smack: str | None = None
        self.verbose = 0
        self.unsafe = False             # redpak 2.x options without effect
        self.bwrap: str | None = None
        self.program: list[str] = []


# csrc/main/args.c has the same table.
_FLAGS = {"-a": "admin", "--admin": "admin", "-s": "strict", "--strict": "strict",
          "-f": "force", "--force": "force", "-d": "dump", "--dump": "dump",
          "-D": "dump_only", "--dump-only": "dump_only", "--unsafe": "unsafe"}
_VALUES = {"-r": "redpath", "--redpath": "redpath", "--rpath": "redpath", "--rp": "redpath",
           "-U": "user", "--user": "user", "--uid": "user",
           "-G": "group", "--group": "group", "--gid": "group",
           "-S": "smack", "--smack": "smack", "--bwrap": "bwrap"}


_SEE_HELP = "redwrap --help lists them; put the program after '--' if it starts with '-'"


def _parse_bundle(argv: list[str], i: int, args: Args) -> int:
    """One argument of single-letter options, bundled as getopt does (`-av`, `-vvU bob`,
    `-aUbob`): flags one after the other; a letter taking a value takes the rest of the
    argument, or the next one. Returns the index of the last argument used."""
    arg = argv[i]
    for k in range(1, len(arg)):
        letter = "-" + arg[k]
        if letter == "-h":
            raise SystemExit(_help())
        if letter == "-v":
            args.verbose += 1
        elif letter in _FLAGS:
            setattr(args, _FLAGS[letter], True)
        elif letter in _VALUES:
            if k + 1 < len(arg):
                setattr(args, _VALUES[letter], arg[k + 1:])
                return i
            if i + 1 >= len(argv):
                raise UsageError(f"{letter} needs a value")
            setattr(args, _VALUES[letter], argv[i + 1])
            return i + 1
        elif len(arg) == 2:
            raise UsageError(f"unknown option '{arg}' ({_SEE_HELP})")
        elif arg[k] == "=" and k > 1:
            raise UsageError(f"{arg[:k]} takes no value (in '{arg}'; a verbosity level is "
                             "written --verbose=N)")
        else:
            raise UsageError(f"unknown option letter '{arg[k]}' in '{arg}' ({_SEE_HELP})")
    return i


def no_effect_notice(args: Args) -> str | None:
    """The one-line notice for the redpak 2.x options that change nothing here (the native
    redwrap prints the same when it launches from the cache)."""
    given = [name for name, on in (("--unsafe", args.unsafe),
                                   ("--bwrap", args.bwrap is not None)) if on]
    if not given:
        return None
    return (f"{PROG}: {' and '.join(given)} {'has' if len(given) == 1 else 'have'} no effect "
            "(accepted for redpak 2.x command lines)")


def parse_args(argv: list[str]) -> Args:
    """Parse redwrap's options; raises UsageError. Never looks past the program name."""
    args = Args()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            args.program = argv[i + 1:]
            break
        if not arg.startswith("-") or arg == "-":
            args.program = argv[i:]
            break
        name, eq, inline = arg.partition("=")
        if not arg.startswith("--"):
            i = _parse_bundle(argv, i, args)
        elif arg == "--help":
            raise SystemExit(_help())
        elif arg == "--version":
            from .. import __version__
            sys.stdout.write(f"{PROG} {__version__}\n")
            raise SystemExit(0)
        elif name == "--verbose":
            number = inline.isascii() and inline.isdigit()
            args.verbose = int(inline) if eq and number else args.verbose + 1
            if eq and not number:
                raise UsageError(f"--verbose: '{inline}' is not a number")
        elif name in _FLAGS and not eq:
            setattr(args, _FLAGS[name], True)
        elif name in _VALUES:
            if eq:
                value = inline
            else:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{arg} needs a value")
                value = argv[i]
            setattr(args, _VALUES[name], value)
        else:
            raise UsageError(f"unknown option '{arg}' ({_SEE_HELP})")
        i += 1
    if not args.redpath:
        raise UsageError("--redpath NODE is required")
    if not args.program and not args.dump_only:
        raise UsageError("no program given (redwrap --redpath NODE -- PROGRAM [ARGS])")
    if args.program and not args.program[0]:
        raise UsageError("the program name is empty (redwrap --redpath NODE -- PROGRAM "
                         "[ARGS])")
    return args


def _help() -> int:
    sys.stdout.write(USAGE)
    return 0


def cache_dir(uid: int, environ: dict | None = None) -> str | None:
    """The caller's plan cache: REDPAK_CACHE_DIR, else /var/cache/redpak for root, else
    $XDG_CACHE_HOME/redpak or ~/.cache/redpak. Never inside a node: an admin sandbox may
    write there, and a plan planted in a node would be run by the next launch."""
    env = os.environ if environ is None else environ
    if env.get("REDPAK_CACHE_DIR"):
        return env["REDPAK_CACHE_DIR"]
    if uid == 0:
        return "/var/cache/redpak"
    xdg, home = env.get("XDG_CACHE_HOME", ""), env.get("HOME", "")
    if xdg.startswith("/"):
        return os.path.join(xdg, "redpak")
    return os.path.join(home, ".cache", "redpak") if home.startswith("/") else None


def cache_path(node_path: str, admin: bool, uid: int, environ: dict | None = None
               ) -> str | None:
    """Where the plan of NODE for this caller is cached (csrc/main/redwrap.c agrees):
    one file per node path (FNV-1a 64 of it), mode and uid."""
    directory = cache_dir(uid, environ)
    if directory is None:
        return None
    from ..planfile import fnv1a64
    key = fnv1a64(node_path.encode("utf-8", "surrogateescape"))
    return os.path.join(directory,
                        f"plan-{key:016x}-{'admin' if admin else 'normal'}-{uid}.bin")


def write_cache(path: str, data: bytes, strict: bool = False) -> None:
    """Atomically store a plan in the caller's cache; where it cannot be written there
    is simply no cache (strict: raise the OSError instead, for `redconf compile`)."""
    from ..fileio import write_atomic
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_atomic(path, data)  # a failed write leaves no temporary file (issue 9)
    except OSError:
        if strict:
            raise


def run(argv: list[str]) -> int:
    """The whole command: returns redwrap's exit status."""
    try:
        args = parse_args(argv)
    except UsageError as err:
        sys.stderr.write(f"{PROG}: {err}\n")
        return EXIT_REDPAK
    for option, value in (("-U/--user", args.user), ("-G/--group", args.group)):
        if value == "":         # an unset variable in a script: not "no option"
            sys.stderr.write(f"{PROG}: {option}: the value is empty (give a name or a "
                             f"number)\n")
            return EXIT_REDPAK
    notice = no_effect_notice(args)
    if notice:
        sys.stderr.write(notice + "\n")
    try:
        return _launch(args)
    except RedpakError as err:
        sys.stderr.write(f"{PROG}: {err}\n")
        return EXIT_REDPAK
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # the CLI boundary: never a traceback for the user
        sys.stderr.write(f"{PROG}: internal error: {err.__class__.__name__}: {err}\n")
        if args.verbose:
            import traceback
            traceback.print_exc()
        return EXIT_REDPAK


def _launch(args: Args) -> int:
    from ..node import normalize_path
    from ..plan import LaunchOptions, build_plan

    options = LaunchOptions(admin=args.admin, strict=args.strict, user=args.user,
                            group=args.group, smack=args.smack)
    compiled = build_plan(args.redpath, options, dry_run=args.dump_only)
    for warning in compiled.warnings:
        sys.stderr.write(f"{PROG}: warning: {warning}\n")
    plan = compiled.plan
    if args.dump or args.dump_only:
        sys.stdout.write(plan.dump())
        sys.stdout.flush()
        if args.dump_only:
            return 0
    from ..pkg.journal import pending, pending_message
    if (busy := pending(args.redpath)) is not None:     # between old and new: never run
        from ..errors import PackageError
        raise PackageError(pending_message(busy))
    data = plan.encode()
    overrides = args.user or args.group or args.smack or args.strict
    path = cache_path(normalize_path(args.redpath), args.admin, os.getuid())
    if plan.cacheable and not overrides and path is not None:
        try:
            write_cache(path, data, strict=True)
        except OSError as err:     # no cache: every launch starts Python; -v says why
            if args.verbose:
                where = err.filename or os.path.dirname(path)
                sys.stderr.write(f"{PROG}: cannot cache the plan: {where}: "
                                 f"{err.strerror or err} (each launch compiles it again)\n")
    from ..launch import run_plan
    return run_plan(data, args.program, verbose=args.verbose)


def restore_exec_environ(path: str = "/proc/self/environ") -> None:
    """Make os.environ the environment this process was executed with, in its order.

    The interpreter changes its own environment before any Python code runs: under a C or
    POSIX locale, its locale coercion (PEP 538) sets LC_CTYPE=C.UTF-8 (replacing an
    LC_CTYPE=C). The cold path must give the program (with inherit-env) and the plan's
    environment dependencies the caller's environment, as the native redwrap does. The
    kernel keeps the environment given to execve() in /proc/self/environ, untouched by
    setenv(). As for os.environ, an entry without '=' is left out and the first of two
    entries of one name wins."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return                  # no procfs: keep what the interpreter made of it
    original: dict[bytes, bytes] = {}
    for entry in data.split(b"\0"):
        name, eq, value = entry.partition(b"=")
        if eq and name and name not in original:
            original[name] = value
    if list(os.environb.items()) == list(original.items()):
        return
    os.environb.clear()
    os.environb.update(original)


def main(argv: list[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    restore_exec_environ()      # the cold path: before anything reads the environment
    sys.exit(main())
