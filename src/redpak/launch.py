# Launching a compiled plan through the C core, in this process: the Python API and the
# cold path of redwrap. Maps C-core failures to redwrap's exit statuses.
"""Run or spawn a program from a binary launch plan (see planfile.py), in-process."""

from __future__ import annotations

import errno as _errno
import os
import signal
import threading

from .errors import LaunchError

EXIT_REDPAK = 125
EXIT_NOEXEC = 126
EXIT_NOTFOUND = 127

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)


def exit_status(status: int) -> int:
    """A waitpid() status in redwrap's convention: the exit code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def exec_failure_status(err: LaunchError) -> int:
    """126 when the program exists but cannot be executed, 127 when it is not found."""
    if err.step != "exec":
        return EXIT_REDPAK
    if err.errnum in (_errno.ENOENT, _errno.ENOTDIR):
        return EXIT_NOTFOUND
    if err.errnum in (_errno.EACCES, _errno.ENOEXEC, _errno.EISDIR, _errno.EPERM,
                      _errno.ELIBBAD, _errno.ETXTBSY):
        return EXIT_NOEXEC
    return EXIT_REDPAK


def spawn_plan(plan: bytes, argv: list[str], pass_fds: tuple[int, ...] = (),
               stdio: tuple[int, int, int] | None = None, env_add: list[bytes] | None = None,
               cwd: str | None = None, die_with_caller: bool = False) -> int:
    """Start ARGV in the node described by PLAN; returns the pid to wait for.
    Raises LaunchError (nothing ran) naming the failed step and path. stdio: the
    descriptors for the program's 0, 1, 2 (-1 keeps the caller's); env_add: b"NAME=value"
    set after the plan's environment; cwd: entered after the plan's chdir.
    die_with_caller: redwrap's cold path, a launcher that must die with its parent when
    the plan says die-with-parent (the API only ties the node to this process)."""
    from . import _core
    return _core.spawn(plan, [os.fsencode(a) for a in argv], tuple(pass_fds), stdio=stdio,
                       env_add=env_add, cwd=cwd, die_with_caller=die_with_caller)


def wait_pid(pid: int) -> int:
    """Wait for a launched node; returns its status in redwrap's convention. Call
    finish_pid() afterwards."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return exit_status(status)
        except InterruptedError:  # pragma: no cover - PEP 475 retries already
            continue


def finish_pid(pid: int) -> tuple[str, str]:
    """After a node was reaped: release what the launcher held and remove its cgroups.
    Returns (oom, problem): the memory limit the OOM killer enforced on the node (e.g.
    "mem.max 64M of node 'app'") or "", and a cgroup removal failure or ""."""
    from . import _core
    return _core.finish(pid)


def oom_message(oom: str, status: int) -> str:
    """redwrap's report of an OOM kill in the node."""
    who = "the program was" if status == 128 + signal.SIGKILL else "a process of the node was"
    return f"{who} killed by the OOM killer ({oom})"


def run_plan(plan: bytes, argv: list[str], verbose: int = 0) -> int:
    """Run ARGV in the node and wait, forwarding TERM/INT/HUP/QUIT/USR1/USR2 to it.
    Returns the program's status (128+N for signal N; 125/126/127 for launch failures,
    with the message on stderr); an OOM kill in the node is reported on stderr."""
    import sys
    try:
        pid = spawn_plan(plan, argv, die_with_caller=True)
    except LaunchError as err:
        status = exec_failure_status(err)
        sys.stderr.write(f"redwrap: {err}\n")
        return status
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def forward(signum, _frame):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        for sig in FORWARDED:
            previous[sig] = signal.signal(sig, forward)
    try:
        status = wait_pid(pid)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    oom, problem = finish_pid(pid)
    if oom:
        sys.stderr.write(f"redwrap: {oom_message(oom, status)}\n")
    if problem:
        sys.stderr.write(f"redwrap: warning: {problem}\n")
    return status
