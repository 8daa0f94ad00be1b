"""Measuring tools of the suite: timed launches (no hyperfine needed: os.posix_spawn and
waitpid, every command in turn per round), process trees and their PSS, skips."""

from __future__ import annotations

import os
import shutil
import time
from typing import Callable


class Skip(Exception):
    """A measurement that cannot run on this board; the message says why."""


def which(name: str) -> str | None:
    """The absolute path of a program, searched in PATH and the usual sbin directories."""
    path = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which(name, path=path)


def host_program(name: str) -> str:
    """/bin/NAME (what a stock node shows at /bin too), else /usr/bin/NAME, else PATH's."""
    for p in (f"/bin/{name}", f"/usr/bin/{name}"):
        if os.access(p, os.X_OK):
            return p
    found = which(name)
    if not found:
        raise Skip(f"no `{name}` program on this board")
    return found


class Command:
    """Something to time: an argv (spawned, output discarded) or a Python callable.
    `env` is a dict, or a function returning one for each launch (cold launches)."""

    def __init__(self, argv: list[str] | None = None, env=None,
                 call: Callable[[], int] | None = None):
        if argv and os.sep not in argv[0]:      # posix_spawn does not search PATH
            argv = [which(argv[0]) or argv[0], *argv[1:]]
        self.argv, self.env, self.call = argv, env, call

    def once(self, devnull: int) -> tuple[float, int]:
        """(milliseconds, exit status) of one launch."""
        env = self.env() if callable(self.env) else (self.env or os.environ)
        if self.call is not None:
            t0 = time.perf_counter_ns()
            status = self.call()
            return (time.perf_counter_ns() - t0) / 1e6, status
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(self.argv[0], self.argv, env, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        ms = (time.perf_counter_ns() - t0) / 1e6
        return ms, os.waitstatus_to_exitcode(status)

    def check(self) -> None:
        """Run it once, raise Skip with its error output if it fails."""
        if self.call is not None:
            try:
                status = self.call()
            except Exception as err:  # a peer's or the API's own error, said as a skip
                raise Skip(f"{type(err).__name__}: {err}") from None
            if status != 0:
                raise Skip(f"exits with status {status}")
            return
        import subprocess
        env = self.env() if callable(self.env) else (self.env or os.environ)
        try:
            r = subprocess.run(self.argv, env=env, capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise Skip(str(err)) from None
        if r.returncode != 0:
            tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise Skip(f"exits with status {r.returncode}: {tail[0][:200]}")


def time_commands(commands: dict[str, Command], runs: int, warmup: int = 2,
                  budget_s: float | None = None,
                  tick: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Samples (ms) of each command, timed in rounds that launch every command in turn so
    a disturbance of the machine hits them alike. A command stops at `runs` samples, or
    after `budget_s` seconds of its own time once it has 3 samples."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    spent = dict.fromkeys(commands, 0.0)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for _ in range(warmup):
            for cmd in commands.values():
                cmd.once(devnull)
        active = list(commands)
        while active:
            for name in list(active):
                ms, status = commands[name].once(devnull)
                if status != 0:
                    raise Skip(f"{name} failed during the measurement (status {status})")
                samples[name].append(ms)
                spent[name] += ms / 1000
                n = len(samples[name])
                if n >= runs or (budget_s is not None and spent[name] >= budget_s and n >= 3):
                    active.remove(name)
            if tick:
                tick(f"{min(len(s) for s in samples.values())}/{runs}")
    finally:
        os.close(devnull)
    return samples


def children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def pss_kib(pid: int) -> int:
    """Proportional set size of a process (KiB), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def mapped_files(pid: int) -> list[str]:
    """The regular files a process maps (its program, loader and libraries), in order."""
    out = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    path = parts[5].strip()
                    if path not in out and os.path.isfile(path):
                        out.append(path)
    except OSError:
        pass
    return out
