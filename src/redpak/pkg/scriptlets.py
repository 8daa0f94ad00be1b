# Package scriptlets: found in headers, judged (Lua, triggers, provable no-ops), and run
# only inside the node's admin sandbox through the `redwrap --admin` launcher.
"""Scriptlets never run on the host.

librpm's own scriptlet execution is always disabled (RPMTRANS_FLAG_NOSCRIPTS and
NOTRIGGERS): it would run them as root in the calling process's world. Instead, each
scriptlet runs through `redwrap --admin --redpath NODE -- INTERPRETER ...`, in a network
namespace of its own (no network at all), never from a librpm callback: %pretrans, %pre
and %preun before librpm writes the staged copy of the node, %post, %postun and
%posttrans once the node is the new one (transaction.py, stage.py). When no launcher is available, packages that
carry scriptlets are refused before anything is written, except scriptlets that are
provably no-ops (an empty body, or only `:`, `true`, `exit 0` and comments). Lua
scriptlets run inside librpm itself, on the host: always refused, as are triggers, which
fire on other packages' changes and cannot be contained the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys

from redpak.errors import PackageError
from redpak.record import record

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

# (name, body tag, interpreter tag), in rpm's tag numbers (rpmtag.h).
SCRIPT_TAGS = (
    ("pretrans", 1151, 1153),
    ("pre", 1023, 1085),
    ("post", 1024, 1086),
    ("preun", 1025, 1087),
    ("postun", 1026, 1088),
    ("posttrans", 1152, 1154),
)
TRIGGER_TAGS = (1065, 5066, 5076)   # TRIGGERSCRIPTS, FILETRIGGERSCRIPTS, TRANSFILETRIGGER...
INSTALL_KINDS = ("pretrans", "pre", "post", "posttrans")
ERASE_KINDS = ("preun", "postun")
SHELLS = ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/dash",
          "/usr/bin/dash")
TIMEOUT = 300.0
_NOOP_LINES = {":", "true", "exit 0", "/bin/true", "/usr/bin/true"}


@record(frozen=True)
class Scriptlet:
    """One scriptlet of a package: kind (pre, post, ...), interpreter argv and body."""

    kind: str
    prog: tuple[str, ...]
    body: str

    @property
    def lua(self) -> bool:
        return bool(self.prog) and self.prog[0] == "<lua>"

    @property
    def noop(self) -> bool:
        """True when running it provably does nothing (shell with an empty body, or a body
        of only ':', 'true', 'exit 0' and comments)."""
        if self.prog and self.prog[0] not in SHELLS:
            return False
        if len(self.prog) > 1:
            return False
        for line in self.body.splitlines():
            text = line.strip()
            if text and not text.startswith("#") and text.rstrip(";").strip() not in _NOOP_LINES:
                return False
        return True

    def describe(self) -> str:
        return f"%{self.kind}" + (" (Lua)" if self.lua else
                                  f" ({' '.join(self.prog)})" if self.prog else "")


def scriptlets_of(hdr: Any, kinds: tuple[str, ...]) -> list[Scriptlet]:
    """The scriptlets of the given kinds a header carries."""
    out = []
    for kind, body_tag, prog_tag in SCRIPT_TAGS:
        if kind not in kinds:
            continue
        body = hdr[body_tag]
        prog = hdr[prog_tag]
        if body is None and not prog:
            continue
        if isinstance(prog, str):
            prog = [prog]
        out.append(Scriptlet(kind, tuple(prog or ("/bin/sh",)), body or ""))
    return out


def has_triggers(hdr: Any) -> bool:
    """True when the header carries triggers or file triggers."""
    return any(hdr[tag] for tag in TRIGGER_TAGS)


def find_launcher() -> str | None:
    """The redwrap launcher used to run scriptlets inside nodes, or None.

    $REDPAK_REDWRAP names it explicitly (empty: none, so scriptlets are refused);
    otherwise `redwrap` next to the Python interpreter, else on PATH.
    """
    explicit = os.environ.get("REDPAK_REDWRAP")
    if explicit is not None:
        explicit = explicit.strip()
        if not explicit or explicit == "none":
            return None
        return explicit if os.access(explicit, os.X_OK) else None
    beside = os.path.join(os.path.dirname(sys.executable), "redwrap")
    if os.access(beside, os.X_OK):
        return beside
    import shutil
    return shutil.which("redwrap")


def refusal(nevra: str, hdr: Any, kinds: tuple[str, ...], launcher: str | None) -> str | None:
    """Why a package cannot be processed under the scriptlet policy, or None if it can."""
    if has_triggers(hdr):
        return (f"{nevra} carries triggers, which redpak cannot run inside the node "
                "(they fire on other packages' changes): refused")
    for script in scriptlets_of(hdr, kinds):
        if script.lua:
            return (f"{nevra} has a Lua scriptlet ({script.describe()}); Lua runs inside "
                    "librpm itself, on the host, and is never allowed: refused")
        if launcher is None and not script.noop:
            return (f"{nevra} has a {script.describe()} scriptlet; scriptlets run only "
                    "inside the node's admin sandbox and no `redwrap` launcher was found "
                    "(install redpak's redwrap, on PATH or next to the Python "
                    "interpreter): refused")
    return None


_CLONE_NEWNET = 0x40000000


def _no_network() -> None:
    """In the launcher's process, before exec: a new network namespace holding only a
    loopback interface that is down, so a scriptlet reaches no network, not even the
    host's 127.0.0.1. A failure aborts the start (subprocess reports it)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot give the scriptlet its own network namespace: "
                      f"{os.strerror(err)}")


def run_in_node(node: str, prog: tuple[str, ...], script: str, args: list[str],
                launcher: str, name: str = "scriptlet") -> int:
    """Run a scriptlet in the node's admin sandbox and return its exit status.

    Shell scriptlets run as `SHELL -c BODY NAME ARGS...`; other interpreters read the body
    from their standard input (`PROG /dev/stdin ARGS...`). Raises PackageError when the
    launcher cannot be started or the scriptlet outlives TIMEOUT seconds.
    """
    if prog and prog[0] in SHELLS and len(prog) == 1:
        argv = [prog[0], "-c", script, name, *args]
        stdin: Any = subprocess.DEVNULL
        data = None
    elif script:
        argv = [*prog, "/dev/stdin", *args]
        stdin, data = subprocess.PIPE, script.encode("utf-8", "surrogateescape")
    else:
        argv = [*prog, *args]
        stdin, data = subprocess.DEVNULL, None
    cmd = [launcher, "--admin", "--redpath", node, "--", *argv]
    try:
        proc = subprocess.run(cmd, input=data, stdin=None if data is not None else stdin,
                              timeout=TIMEOUT, check=False, close_fds=True,
                              preexec_fn=_no_network)
    except subprocess.TimeoutExpired as err:
        raise PackageError(f"{name}: still running after {TIMEOUT:g} s in node {node}: "
                           "killed") from err
    except OSError as err:
        raise PackageError(f"cannot start the launcher {launcher} for {name}: "
                           f"{err.strerror}") from err
    return proc.returncode
