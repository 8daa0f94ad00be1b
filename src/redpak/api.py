# The Python API for supervisors that launch many nodes: compile once, launch in-process
# through the C core (no extra executable), recompile only when the family changed.
# On par with subprocess: stdin/stdout/stderr, environment additions, working directory,
# timeouts, communicate(), context manager, and an asyncio form waiting on a pidfd.
"""redpak.Node(path).run(argv) / .spawn(argv) -> Process; await .spawn_async(argv)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

from .errors import LaunchError
from .launch import exec_failure_status, exit_status, finish_pid, spawn_plan
from .plan import LaunchOptions, build_plan

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL

_CHUNK = 1 << 16


class TimeoutExpired(subprocess.TimeoutExpired):
    """The program did not end in time. From run(), the node was killed first; from
    wait() and communicate(), it still runs (call kill(), then communicate() again)."""


class CalledProcessError(subprocess.CalledProcessError):
    """run(check=True): the program ended with a non-zero status."""


class CompletedRun(int):
    """What run() returns: the status as an int (redwrap's convention, so existing
    callers comparing it with 0 keep working), with subprocess.CompletedProcess's
    attributes: args, returncode, stdout, stderr."""

    args: list[str]
    stdout: Any
    stderr: Any

    def __new__(cls, args: list[str], returncode: int, stdout: Any = None, stderr: Any = None):
        self = super().__new__(cls, returncode)
        self.args, self.stdout, self.stderr = args, stdout, stderr
        return self

    @property
    def returncode(self) -> int:
        return int(self)

    def check_returncode(self) -> None:
        """Raise CalledProcessError if the status is not 0."""
        if self:
            raise CalledProcessError(int(self), self.args, self.stdout, self.stderr)

    def __str__(self) -> str:  # prints as the status, like before
        return int.__repr__(self)

    def __repr__(self) -> str:
        return (f"CompletedRun(args={self.args!r}, returncode={int(self)}, "
                f"stdout={self.stdout!r}, stderr={self.stderr!r})")


class _Stdio:
    """The three descriptors a launch gives the program, and the parent's pipe ends."""

    def __init__(self, stdin: Any, stdout: Any, stderr: Any) -> None:
        self.child = [-1, -1, -1]      # -1: the caller's own descriptor
        self.parent: list[int | None] = [None, None, None]
        self._close: list[int] = []    # opened here for the child: closed after the launch
        try:
            for i, spec in enumerate((stdin, stdout, stderr)):
                self._resolve(i, spec)
        except BaseException:
            self.close_child()
            for fd in self.parent:
                if fd is not None:
                    os.close(fd)
            raise

    def _resolve(self, i: int, spec: Any) -> None:
        name = ("stdin", "stdout", "stderr")[i]
        if spec is None:
            return
        if spec == PIPE:
            r, w = os.pipe()
            self.child[i], self.parent[i] = (r, w) if i == 0 else (w, r)
            self._close.append(self.child[i])
        elif spec == DEVNULL:
            self.child[i] = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            self._close.append(self.child[i])
        elif spec == STDOUT:
            if i != 2:
                raise ValueError(f"{name}: STDOUT is only for stderr")
            self.child[2] = self.child[1] if self.child[1] >= 0 else 1
        elif isinstance(spec, int) and not isinstance(spec, bool):
            if spec < 0:
                raise ValueError(f"{name}: {spec} is not a descriptor (PIPE, DEVNULL, "
                                 "STDOUT, a file object or a descriptor >= 0)")
            self.child[i] = spec
        elif hasattr(spec, "fileno"):
            self.child[i] = spec.fileno()
        else:
            raise TypeError(f"{name}: expected PIPE, DEVNULL, STDOUT, a file object or a "
                            f"descriptor, not {type(spec).__name__}")

    def fds(self) -> tuple[int, int, int] | None:
        return None if self.child == [-1, -1, -1] else tuple(self.child)

    def close_child(self) -> None:
        for fd in self._close:
            os.close(fd)
        self._close = []


def _env_add(env: Mapping[str, str] | None) -> list[bytes]:
    out = []
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"env: {key!r} is not a variable name (non-empty, no '=')")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"env: the value of {key} must be a string without NUL")
        out.append(os.fsencode(f"{key}={value}"))
    return out


class Process:
    """A program running in a node (like subprocess.Popen, for a launched node).

    `stdin`, `stdout`, `stderr` are the parent's ends of the pipes asked with PIPE (binary
    files, or text files when spawned with text=True), else None."""

    def __init__(self, pid: int, args: Sequence[str] | None = None,
                 pipes: Sequence[int | None] = (None, None, None), text: bool = False):
        self.pid = pid
        self.args = list(args or ())
        self.returncode: int | None = None
        self.oom: str | None = None            # the limit, if the OOM killer struck the node
        self.cleanup_error: str | None = None  # its cgroups could not all be removed
        self.text = text
        self._lock = threading.Lock()
        self._output: dict[str, list[bytes]] = {}
        self._input: memoryview | None = None

        def wrap(fd: int | None, mode: str) -> Any:
            if fd is None:
                return None
            if text:
                return open(fd, mode, encoding="utf-8", newline=None if mode == "r" else "")
            return open(fd, mode + "b", buffering=0 if mode == "w" else -1)
        self.stdin = wrap(pipes[0], "w")
        self.stdout = wrap(pipes[1], "r")
        self.stderr = wrap(pipes[2], "r")

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

    def _pidfd(self) -> tuple[int, bool]:
        """A descriptor readable once the node's first process ended, and whether it is
        ours to close (the C core owns the one it returned with the launch)."""
        from . import _core
        fd = _core.pidfd(self.pid)
        if fd >= 0:
            return fd, False
        return os.pidfd_open(self.pid), True

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the program; returns its status (128+N if it died of signal N). Then
        the node's cgroups are removed; `oom` tells if the OOM killer struck it. With a
        timeout (seconds), raises TimeoutExpired if it still runs then."""
        if timeout is not None and self.returncode is None:
            import select
            try:
                fd, own = self._pidfd()
            except OSError:  # no pidfd (kernel before 5.3): poll the status instead
                deadline = time.monotonic() + timeout
                while self.poll() is None:
                    if time.monotonic() >= deadline:
                        raise TimeoutExpired(self.args, timeout) from None
                    time.sleep(0.005)
                return self.returncode
            try:
                poller = select.poll()  # any descriptor number, unlike select()
                poller.register(fd, select.POLLIN)
                ready = poller.poll(max(timeout, 0) * 1000)
            finally:
                if own:
                    os.close(fd)
            if not ready and self.poll() is None:
                raise TimeoutExpired(self.args, timeout)
        with self._lock:
            if self.returncode is None:
                _, status = os.waitpid(self.pid, 0)
                self._reaped(status)
            return self.returncode

    def communicate(self, input: bytes | str | None = None,
                    timeout: float | None = None) -> tuple[Any, Any]:
        """Send INPUT to stdin (then close it), read stdout and stderr to their end, wait
        for the program; returns (stdout, stderr), None for a stream that is no pipe.
        On timeout raises TimeoutExpired; the program still runs, and a later call goes
        on where this one stopped (kill() it then call communicate() to collect)."""
        import selectors
        deadline = None if timeout is None else time.monotonic() + timeout
        if input is not None and self._input is None and self.stdin is not None:
            data = input.encode("utf-8") if isinstance(input, str) else bytes(input)
            self._input = memoryview(data)
        elif input is not None and self.stdin is None:
            raise ValueError("communicate(input=...) needs stdin=PIPE")
        with selectors.DefaultSelector() as sel:
            if self.stdin is not None and not self.stdin.closed:
                try:
                    self.stdin.flush()  # what the caller wrote already goes first
                except BrokenPipeError:
                    pass
                if self._input is not None and len(self._input):
                    os.set_blocking(self.stdin.fileno(), False)
                    sel.register(self.stdin.fileno(), selectors.EVENT_WRITE)
                else:
                    self._close_stdin()
            for name in ("stdout", "stderr"):
                f = getattr(self, name)
                if f is not None and not f.closed:
                    self._output.setdefault(name, [])
                    sel.register(f.fileno(), selectors.EVENT_READ, name)
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutExpired(self.args, timeout, *self._partial())
                for key, _ in sel.select(left):
                    if key.events & selectors.EVENT_WRITE:
                        try:
                            n = os.write(key.fd, self._input[:_CHUNK])
                        except BrokenPipeError:
                            n = len(self._input)
                        self._input = self._input[n:]
                        if not len(self._input):
                            sel.unregister(key.fd)
                            self._close_stdin()
                    else:
                        chunk = os.read(key.fd, _CHUNK)
                        if chunk:
                            self._output[key.data].append(chunk)
                        else:
                            sel.unregister(key.fd)
                            getattr(self, key.data).close()
        out, err = self._partial()
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        self.wait(left)
        return out, err

    def _close_stdin(self) -> None:
        try:
            self.stdin.close()
        except BrokenPipeError:
            pass

    def _partial(self) -> tuple[Any, Any]:
        def collected(name: str) -> Any:
            if getattr(self, name) is None:
                return None
            data = b"".join(self._output.get(name, ()))
            if not self.text:
                return data
            # universal newlines, as subprocess's text mode
            return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        return collected("stdout"), collected("stderr")

    def send_signal(self, sig: int) -> None:
        """Send a signal to the node's first process (its pid 1 forwards it)."""
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the node's first process: with a pid namespace (the default), the
        kernel then kills every process of the node."""
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: Any) -> None:
        """Like Popen: close the pipes, then wait for the program (kill it first if the
        block is left by an exception other than a normal exit)."""
        for f in (self.stdout, self.stderr, self.stdin):
            if f is not None and not f.closed:
                try:
                    f.close()
                except BrokenPipeError:
                    pass
        if exc[0] is not None and not issubclass(exc[0], Exception):  # Ctrl-C, SystemExit
            self.kill()
        self.wait()

    def __repr__(self) -> str:
        return f"Process(pid={self.pid}, returncode={self.returncode})"


class AsyncProcess:
    """A program running in a node, for asyncio: wait() awaits the node's pidfd on the
    event loop (no thread per node). stdin is an asyncio.StreamWriter, stdout and stderr
    asyncio.StreamReaders, when asked with PIPE."""

    def __init__(self, proc: Process) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.stdin: Any = None
        self.stdout: Any = None
        self.stderr: Any = None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def oom(self) -> str | None:
        return self._proc.oom

    async def _connect(self, loop: Any) -> None:
        import asyncio
        p = self._proc
        for name in ("stdout", "stderr"):
            f = getattr(p, name)
            if f is not None:
                reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
                await loop.connect_read_pipe(
                    lambda r=reader: asyncio.StreamReaderProtocol(r, loop=loop), f)
                setattr(self, name, reader)
        if p.stdin is not None:
            transport, protocol = await loop.connect_write_pipe(
                lambda: asyncio.streams.FlowControlMixin(loop=loop), p.stdin)
            self.stdin = asyncio.StreamWriter(transport, protocol, None, loop)

    async def wait(self) -> int:
        """Await the end of the program; returns its status (redwrap convention)."""
        import asyncio
        p = self._proc
        if p.returncode is not None:
            return p.returncode
        loop = asyncio.get_running_loop()
        try:
            fd, own = p._pidfd()
        except OSError:          # no pidfd on this kernel: a thread waits instead
            return await loop.run_in_executor(None, p.wait)
        done = loop.create_future()
        loop.add_reader(fd, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            loop.remove_reader(fd)
            if own:
                os.close(fd)
        return p.wait()  # it ended: waitpid() returns at once

    async def communicate(self, input: bytes | None = None,
                          timeout: float | None = None) -> tuple[Any, Any]:
        """Write INPUT to stdin and close it, read stdout and stderr to their end, await
        the program; returns (stdout, stderr). TimeoutExpired if it takes longer than
        TIMEOUT seconds (the program still runs)."""
        import asyncio

        async def feed() -> None:
            if self.stdin is None:
                if input is not None:
                    raise ValueError("communicate(input=...) needs stdin=PIPE")
                return
            if input:
                self.stdin.write(input)
                try:
                    await self.stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    pass
            self.stdin.close()

        async def read(stream: Any) -> bytes | None:
            return None if stream is None else await stream.read()

        async def whole() -> tuple[Any, Any]:
            _, out, err = await asyncio.gather(feed(), read(self.stdout), read(self.stderr))
            await self.wait()
            return out, err
        try:
            return await asyncio.wait_for(whole(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutExpired(self._proc.args, timeout) from None

    def send_signal(self, sig: int) -> None:
        self._proc.send_signal(sig)

    def terminate(self) -> None:
        self._proc.terminate()

    def kill(self) -> None:
        self._proc.kill()

    def __repr__(self) -> str:
        return f"AsyncProcess(pid={self.pid}, returncode={self.returncode})"


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

    def _launch(self, argv: list[str], pass_fds: tuple[int, ...], stdio: Any,
                env_add: list[bytes], cwd: str | None) -> int:
        def once() -> int:
            return spawn_plan(self.plan(), argv, pass_fds, stdio=stdio, env_add=env_add,
                              cwd=cwd)
        try:
            return once()
        except LaunchError as err:
            if err.step != "deps":
                raise
            with self._lock:  # the caller changed cgroups since compiling: recompile once
                self._plan = None
            return once()

    def spawn(self, argv: Sequence[str], pass_fds: tuple[int, ...] = (), *,
              stdin: Any = None, stdout: Any = None, stderr: Any = None,
              env: Mapping[str, str] | None = None, cwd: str | None = None,
              text: bool = False) -> Process:
        """Start ARGV in the node; returns a Process. Raises RedpakError (LaunchError:
        the program never ran).

        stdin/stdout/stderr: None (the caller's), PIPE, DEVNULL, STDOUT (stderr only), a
        file object or a descriptor. env: variables set after the node's environment
        (they win over it). cwd: the working directory inside the node, entered after
        the config's chdir (a relative path is relative to it). text: the pipes are
        UTF-8 text files, communicate() takes and returns str."""
        argv = list(argv)
        env_add = _env_add(env)
        if cwd is not None and not isinstance(cwd, (str, bytes, os.PathLike)):
            raise TypeError(f"cwd: expected a path, not {type(cwd).__name__}")
        io = _Stdio(stdin, stdout, stderr)
        try:
            pid = self._launch(argv, tuple(pass_fds), io.fds(), env_add,
                               None if cwd is None else os.fsdecode(cwd))
        except BaseException:
            for fd in io.parent:
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            io.close_child()
        return Process(pid, argv, io.parent, text=text)

    def run(self, argv: Sequence[str], pass_fds: tuple[int, ...] = (), *,
            stdin: Any = None, input: bytes | str | None = None, stdout: Any = None,
            stderr: Any = None, capture_output: bool = False,
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            timeout: float | None = None, check: bool = False,
            text: bool = False) -> CompletedRun:
        """Run ARGV in the node and wait; returns the status in redwrap's convention
        (126/127 when the program cannot be executed / is not found) as a CompletedRun:
        an int carrying args, returncode, stdout and stderr.

        input: sent on stdin (a pipe). capture_output: stdout and stderr are pipes.
        timeout: seconds; then the node is killed and TimeoutExpired raised, with what
        was read so far. check: CalledProcessError for a non-zero status."""
        if input is not None:
            if stdin is not None:
                raise ValueError("run(): give stdin or input, not both")
            stdin = PIPE
        if capture_output:
            if stdout is not None or stderr is not None:
                raise ValueError("run(): capture_output with stdout or stderr")
            stdout = stderr = PIPE
        try:
            proc = self.spawn(argv, pass_fds, stdin=stdin, stdout=stdout, stderr=stderr,
                              env=env, cwd=cwd, text=text)
        except LaunchError as err:
            status = exec_failure_status(err)
            if status == 125:
                raise
            empty = "" if text else b""  # the program never ran: nothing was written
            done = CompletedRun(list(argv), status, empty if stdout == PIPE else None,
                                empty if stderr == PIPE else None)
        else:
            with proc:
                try:
                    out, errs = proc.communicate(input, timeout)
                except TimeoutExpired as exc:
                    proc.kill()
                    out, errs = proc.communicate()
                    raise TimeoutExpired(proc.args, timeout, out, errs) from exc
                except BaseException:
                    proc.kill()
                    raise
            done = CompletedRun(list(argv), proc.returncode, out, errs)
        if check:
            done.check_returncode()
        return done

    async def spawn_async(self, argv: Sequence[str], pass_fds: tuple[int, ...] = (), *,
                          stdin: Any = None, stdout: Any = None, stderr: Any = None,
                          env: Mapping[str, str] | None = None,
                          cwd: str | None = None) -> AsyncProcess:
        """spawn() for asyncio: the node is set up in a worker thread (the loop keeps
        running), and the AsyncProcess's wait() awaits its pidfd on the loop."""
        import asyncio
        import functools
        loop = asyncio.get_running_loop()
        proc = await loop.run_in_executor(None, functools.partial(
            self.spawn, argv, pass_fds, stdin=stdin, stdout=stdout, stderr=stderr,
            env=env, cwd=cwd))
        aproc = AsyncProcess(proc)
        try:
            await aproc._connect(loop)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return aproc
