# Package scriptlets: found in headers, judged (Lua, triggers, provable no-ops), and run
# only inside the node's admin sandbox through the `redwrap --admin` launcher.
"""Scriptlets never run on the host.

librpm's own scriptlet execution is always disabled (RPMTRANS_FLAG_NOSCRIPTS and
NOTRIGGERS): it would run them as root in the calling process's world. Instead, each
scriptlet runs through `redwrap --admin --redpath NODE -- INTERPRETER ...` at the point of
the transaction where rpm would run it. When no launcher is available, packages that
carry scriptlets are refused before anything is written, except scriptlets that are
provably no-ops (an empty body, or only `:`, `true`, `exit 0` and comments). Lua
scriptlets run inside librpm itself, on the host: always refused, as are triggers, which
fire on other packages' changes and cannot be contained the same way.

librpm calls back from inside its chroot into the node for some events (removals), where
the host's launcher is out of reach and a file of the node with the same path must never
run. So a transaction's scriptlets go through a Runner: a helper process started before
librpm runs, which starts the launcher on request, always in the host's root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from redpak.errors import PackageError

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


@dataclass(frozen=True)
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
                              timeout=TIMEOUT, check=False, close_fds=True)
    except subprocess.TimeoutExpired as err:
        raise PackageError(f"{name}: still running after {TIMEOUT:g} s in node {node}: "
                           "killed") from err
    except OSError as err:
        raise PackageError(f"cannot start the launcher {launcher} for {name}: "
                           f"{err.strerror}") from err
    return proc.returncode


class Runner:
    """A helper process, started outside any chroot, that runs scriptlets through the
    launcher on request (run() may be called while librpm is chrooted into the node)."""

    def __init__(self, launcher: str):
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "redpak.pkg.scriptlets", str(req_r), str(rep_w),
                 launcher], pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL)
        except OSError as err:
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            raise PackageError(f"cannot start the scriptlet runner: {err.strerror}") from err
        os.close(req_r)
        os.close(rep_w)
        self._req = os.fdopen(req_w, "w", encoding="utf-8", errors="surrogateescape")
        self._rep = os.fdopen(rep_r, "r", encoding="utf-8")

    def run(self, node: str, prog: tuple[str, ...], script: str, args: list[str],
            name: str) -> int:
        """run_in_node() in the helper; raises PackageError if it fails to run."""
        self._req.write(json.dumps({"node": node, "prog": list(prog), "script": script,
                                    "args": args, "name": name}) + "\n")
        self._req.flush()
        line = self._rep.readline()
        if not line:
            raise PackageError(f"{name}: the scriptlet runner stopped")
        reply = json.loads(line)
        if "error" in reply:
            raise PackageError(reply["error"])
        return int(reply["status"])

    def close(self) -> None:
        """Stop the helper."""
        self._req.close()
        self.proc.wait()
        self._rep.close()


def _serve(req_fd: int, rep_fd: int, launcher: str) -> None:
    with os.fdopen(req_fd, "r", encoding="utf-8") as req, \
            os.fdopen(rep_fd, "w", encoding="utf-8") as rep:
        for line in req:
            r = json.loads(line)
            try:
                reply: dict[str, Any] = {"status": run_in_node(
                    r["node"], tuple(r["prog"]), r["script"], r["args"], launcher, r["name"])}
            except PackageError as err:
                reply = {"error": str(err)}
            rep.write(json.dumps(reply) + "\n")
            rep.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
