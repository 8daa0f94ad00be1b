"""The Python API on par with subprocess, with real launches in a stock family: standard
streams (PIPE, DEVNULL, STDOUT, files, descriptors), environment additions, working
directory, timeouts (the node killed), communicate(), the context manager, and the
asyncio form waiting on the node's pidfd."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the API tests need root (namespaces, mounts)", allow_module_level=True)

import redpak  # noqa: E402
from redpak.api import DEVNULL, PIPE, STDOUT, CalledProcessError, TimeoutExpired  # noqa: E402
from redpak.node import create_node  # noqa: E402


@pytest.fixture(scope="module")
def node():
    """A stock family (root template + leaf template): the host's /bin and /usr/bin."""
    top = Path(tempfile.mkdtemp(prefix="rp-apisp-"))
    create_node(str(top / "sys"), model="root")
    create_node(str(top / "sys" / "app"))
    yield redpak.Node(str(top / "sys" / "app"))
    shutil.rmtree(top, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_run_captures_output_and_feeds_input(node):
    done = node.run(["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"], input=b"hello\n",
                    capture_output=True)
    assert done == 3 and done.returncode == 3  # still the int status of the old API
    assert f"{done}" == str(done) == "3" and done + 1 == 4
    assert done.stdout == b"HELLO\n"
    assert done.stderr == b"oops\n"
    assert done.args == ["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"]
    text = node.run(["cat"], input="été\r\nb\n", stdout=PIPE, text=True)
    assert text.stdout == "été\nb\n" and text.stderr is None
    with node.spawn(["cat"], stdin=PIPE, stdout=PIPE, text=True) as proc:
        proc.stdin.write("first ")  # buffered in the text file: sent before the input
        assert proc.communicate("second", timeout=30) == ("first second", None)


def test_large_input_and_output_do_not_deadlock(node):
    data = os.urandom(1 << 20)
    done = node.run(["cat"], input=data, stdout=PIPE, timeout=60)
    assert done == 0 and done.stdout == data


def test_stderr_to_stdout_devnull_file_and_descriptor(node, tmp_path):
    done = node.run(["sh", "-c", "echo out; echo err >&2"], stdout=PIPE, stderr=STDOUT)
    assert sorted(done.stdout.split()) == [b"err", b"out"]
    assert done.stderr is None
    done = node.run(["sh", "-c", "echo out; echo err >&2"], stdout=DEVNULL, stderr=PIPE)
    assert done.stdout is None and done.stderr == b"err\n"
    # stdin from /dev/null: cat sees end of file at once
    assert node.run(["cat"], stdin=DEVNULL, stdout=PIPE, timeout=30).stdout == b""
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        assert node.run(["sh", "-c", "echo to-file"], stdout=f) == 0
    assert out.read_text() == "to-file\n"
    src = tmp_path / "in.txt"
    src.write_text("from-fd\n")
    fd = os.open(src, os.O_RDONLY)
    try:
        assert node.run(["cat"], stdin=fd, stdout=PIPE).stdout == b"from-fd\n"
    finally:
        os.close(fd)


def test_caller_streams_untouched_and_no_descriptor_leaked(node):
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(3):
        node.run(["sh", "-c", "echo x; echo y >&2"], capture_output=True, input=b"z")
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert os.get_inheritable(0) is not None  # fd 0-2 of the caller still open
    for fd in (0, 1, 2):
        os.fstat(fd)


def test_env_additions_win_and_cwd(node):
    done = node.run(["sh", "-c", 'echo "$EXTRA|$PATH"; pwd'], stdout=PIPE,
                    env={"EXTRA": "a b=c", "PATH": "/usr/bin:/bin"}, cwd="/tmp", text=True)
    first, cwd = done.stdout.splitlines()
    assert first == "a b=c|/usr/bin:/bin"
    assert cwd == "/tmp"
    # relative: entered after the config's chdir (/home/app for the stock family)
    base = node.run(["pwd", "-P"], stdout=PIPE, text=True).stdout.strip()
    assert base not in ("", "/")
    up = node.run(["pwd", "-P"], stdout=PIPE, cwd="..", text=True).stdout.strip()
    assert up == os.path.dirname(base)
    # the plan kept in memory is not changed by a launch's additions
    done = node.run(["sh", "-c", 'echo "[$EXTRA]"'], stdout=PIPE, text=True)
    assert done.stdout == "[]\n"


def test_bad_arguments_are_clear_errors(node):
    with pytest.raises(ValueError, match="not a variable name"):
        node.run(["true"], env={"A=B": "x"})
    with pytest.raises(ValueError, match="only for stderr"):
        node.run(["true"], stdout=STDOUT)
    with pytest.raises(TypeError, match="stdout"):
        node.run(["true"], stdout="out.txt")
    with pytest.raises(redpak.api.LaunchError) as exc:
        node.run(["true"], cwd="/no/such/dir")
    assert exc.value.step == "chdir" and "/no/such/dir" in str(exc.value)
    bad = os.open(os.devnull, os.O_RDONLY)
    os.close(bad)
    with pytest.raises(redpak.api.LaunchError, match=f"descriptor {bad}"):
        node.run(["true"], stdin=bad)


def test_run_timeout_kills_the_node(node, tmp_path):
    started = time.monotonic()
    with pytest.raises(TimeoutExpired) as exc:
        node.run(["sh", "-c", "echo started; echo $$ > /dev/null; exec sleep 60"],
                 stdout=PIPE, timeout=1)
    assert time.monotonic() - started < 30
    assert exc.value.output == b"started\n"
    assert exc.value.timeout == 1
    assert isinstance(exc.value, __import__("subprocess").TimeoutExpired)


def test_wait_and_communicate_timeouts_leave_the_program_running(node):
    proc = node.spawn(["sh", "-c", "echo early; sleep 60"], stdout=PIPE)
    with pytest.raises(TimeoutExpired):
        proc.wait(timeout=0.2)
    with pytest.raises(TimeoutExpired) as exc:
        proc.communicate(timeout=0.5)
    assert exc.value.output == b"early\n"
    assert alive(proc.pid) and proc.returncode is None
    proc.kill()
    out, err = proc.communicate(timeout=30)
    assert out == b"early\n" and err is None
    assert proc.returncode == 137 and not alive(proc.pid)


def test_check_raises_called_process_error(node):
    with pytest.raises(CalledProcessError) as exc:
        node.run(["sh", "-c", "echo bad >&2; exit 4"], stderr=PIPE, check=True)
    assert exc.value.returncode == 4 and exc.value.stderr == b"bad\n"
    assert node.run(["true"], check=True) == 0
    assert node.run(["no-such-program"]) == 127  # launch failures keep their statuses
    missing = node.run(["no-such-program"], capture_output=True, text=True)
    assert missing == 127 and (missing.stdout, missing.stderr) == ("", "")


def test_context_manager_closes_pipes_and_waits(node):
    with node.spawn(["sh", "-c", "cat; exit 5"], stdin=PIPE, stdout=PIPE) as proc:
        proc.stdin.write(b"line\n")
        proc.stdin.close()
        assert proc.stdout.read() == b"line\n"
    assert proc.returncode == 5
    assert proc.stdout.closed
    with pytest.raises(KeyboardInterrupt):
        with node.spawn(["sleep", "60"]) as proc:
            raise KeyboardInterrupt
    assert proc.returncode == 137  # killed on the way out, and reaped


def test_spawn_async_waits_on_the_pidfd(node):
    async def main():
        procs = [await node.spawn_async(["sh", "-c", f"sleep 0.{k}; exit {k}"])
                 for k in range(1, 5)]
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        t = asyncio.create_task(ticker())
        statuses = await asyncio.gather(*(p.wait() for p in procs))
        t.cancel()
        return statuses, ticks, procs

    statuses, ticks, procs = asyncio.run(main())
    assert statuses == [1, 2, 3, 4]
    assert ticks >= 10  # the loop kept running while the nodes ran
    assert all(p.returncode == s for p, s in zip(procs, statuses))


def test_spawn_async_pipes_and_communicate(node):
    async def main():
        proc = await node.spawn_async(["sh", "-c", "tr a-z A-Z; echo e >&2"],
                                      stdin=PIPE, stdout=PIPE, stderr=PIPE,
                                      env={"X": "1"})
        out, err = await proc.communicate(b"abc\n", timeout=30)
        slow = await node.spawn_async(["sleep", "60"])
        with pytest.raises(TimeoutExpired):
            await slow.communicate(timeout=0.3)
        slow.kill()
        return out, err, proc.returncode, await slow.wait()

    out, err, status, killed = asyncio.run(main())
    assert (out, err, status) == (b"ABC\n", b"e\n", 0)
    assert killed == 137


def test_api_forms_work_with_the_pidfd_of_many_nodes_at_once(node):
    async def main():
        procs = [await node.spawn_async(["cat"], stdin=PIPE, stdout=PIPE) for _ in range(8)]
        results = await asyncio.gather(*(p.communicate(f"n{i}".encode(), timeout=60)
                                         for i, p in enumerate(procs)))
        return [r[0] for r in results], [p.returncode for p in procs]

    outs, statuses = asyncio.run(main())
    assert outs == [f"n{i}".encode() for i in range(8)]
    assert statuses == [0] * 8
