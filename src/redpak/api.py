# The Python API for supervisors that launch many nodes: compile once, launch in-process
# through the C core (no extra executable), recompile only when the family changed.
"""redpak.Node(path).run(argv) / .spawn(argv) -> Process(pid, wait(), returncode)."""

from __future__ import annotations

import os
import threading

from .errors import LaunchError
from .launch import exec_failure_status, exit_status, finish_pid, spawn_plan
from .plan import LaunchOptions, build_plan


class Process:
    """A program running in a node (like subprocess.Popen, for a launched node)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self.oom: str | None = None            # the limit, if the OOM killer struck the node
        self.cleanup_error: str | None = None  # its cgroups could not all be removed
        self._lock = threading.Lock()

    def _reaped(self, status: int) -> None:
        self.returncode = exit_status(status)
        oom, problem = finish_pid(self.pid)
        self.oom, self.cleanup_error = oom or None, problem or None

    def poll(self) -> int | None:
        """The status if the program ended (redwrap convention), else None."""
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self._reaped(status)
            return self.returncode

    def wait(self) -> int:
        """Wait for the program; returns its status (128+N if it died of signal N). Then
        the node's cgroups are removed; `oom` tells if the OOM killer struck it."""
        with self._lock:
            if self.returncode is None:
                _, status = os.waitpid(self.pid, 0)
                self._reaped(status)
            return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send a signal to the node's first process (its pid 1 forwards it)."""
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        import signal
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"Process(pid={self.pid}, returncode={self.returncode})"


class Node:
    """A node to launch programs in. The plan is compiled on first use and kept in
    memory; before each launch its dependencies (config files, environment) are checked
    by the C core and the plan is rebuilt if anything changed. Thread-safe."""

    def __init__(self, path: str, *, admin: bool = False, strict: bool = False,
                 user: str | None = None, group: str | None = None):
        self.path = path
        self.options = LaunchOptions(admin=admin, strict=strict, user=user, group=group)
        self._plan: bytes | None = None
        self._volatile = False
        self._lock = threading.Lock()
        self.warnings: tuple[str, ...] = ()

    def plan(self) -> bytes:
        """The current binary launch plan (rebuilt if stale); raises RedpakError."""
        from . import _core
        with self._lock:
            plan = self._plan
            if plan is None or self._volatile or not _core.check_deps(plan):
                compiled = build_plan(self.path, self.options)
                plan = compiled.plan.encode()
                self.warnings = compiled.warnings
                self._volatile = not compiled.plan.cacheable
                self._plan = plan
            return plan

    def spawn(self, argv: list[str], pass_fds: tuple[int, ...] = ()) -> Process:
        """Start ARGV in the node; returns a Process. Raises RedpakError (LaunchError:
        the program never ran)."""
        try:
            return Process(spawn_plan(self.plan(), list(argv), tuple(pass_fds)))
        except LaunchError as err:
            if err.step != "deps":
                raise
            with self._lock:  # the caller changed cgroups since compiling: recompile once
                self._plan = None
            return Process(spawn_plan(self.plan(), list(argv), tuple(pass_fds)))

    def run(self, argv: list[str]) -> int:
        """Run ARGV in the node and wait; returns the status in redwrap's convention
        (126/127 when the program cannot be executed / is not found)."""
        try:
            proc = self.spawn(argv)
        except LaunchError as err:
            status = exec_failure_status(err)
            if status == 125:
                raise
            return status
        return proc.wait()
