"""The Python API (redpak.Node / redpak.Process) on a real stock family: concurrent launches
from threads, process control, plan rebuilt when the configs change, launch failures."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the API tests need root (namespaces, mounts)", allow_module_level=True)

import redpak  # noqa: E402
from redpak.errors import LaunchError  # noqa: E402
from redpak.node import create_node  # noqa: E402


@pytest.fixture
def app(probe):
    """A stock family (root template + leaf template) with the probe in the leaf."""
    top = Path(tempfile.mkdtemp(prefix="rp-api-"))
    create_node(str(top / "sys"), model="root")
    app = top / "sys" / "app"
    create_node(str(app))
    (app / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(probe, app / "usr" / "bin" / "probe")
    yield app
    shutil.rmtree(top, ignore_errors=True)


def captured(launch):
    """Runs launch() with fd 1 on a temp file (the program inherits it); returns
    (launch's result, the program's output lines once it ended)."""
    out = tempfile.TemporaryFile()
    saved = os.dup(1)
    try:
        os.dup2(out.fileno(), 1)
        result = launch()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    if isinstance(result, redpak.Process):
        result.wait()
    out.seek(0)
    lines = out.read().decode(errors="replace").splitlines()
    out.close()
    return result, lines


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_run_and_spawn_from_eight_threads(app):
    node = redpak.Node(str(app))
    assert node.run(["probe", "exit", "0"]) == 0  # compiled once, up front
    fds = open_fds()
    results, errors = [], []

    def worker(code: int) -> None:
        try:
            for k in range(4):
                if k % 2:
                    results.append((code, node.run(["probe", "exit", str(code)])))
                else:
                    proc = node.spawn(["probe", "exit", str(code)])
                    results.append((code, proc.wait()))
        except Exception as err:  # noqa: BLE001 - collected, asserted below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 32
    assert all(code == status for code, status in results), results
    assert open_fds() == fds  # no pidfd or lock descriptor left behind


def test_process_wait_poll_returncode_and_signals(app):
    node = redpak.Node(str(app))
    proc = node.spawn(["probe", "sleep", "1", "exit", "3"])
    assert proc.poll() is None and proc.returncode is None
    assert proc.wait() == 3
    assert proc.returncode == 3 and proc.poll() == 3 and proc.wait() == 3
    proc = node.spawn(["probe", "sleep", "30"])
    proc.send_signal(signal.SIGTERM)  # to the node's pid 1, which forwards it
    assert proc.wait() == 128 + signal.SIGTERM
    proc = node.spawn(["probe", "sleep", "30"])
    proc.kill()
    assert proc.wait() == 128 + signal.SIGKILL
    proc.send_signal(signal.SIGTERM)  # ended: a no-op, not an error


def test_plan_kept_in_memory_and_rebuilt_after_a_config_edit(app):
    node = redpak.Node(str(app))
    first = node.plan()
    assert node.plan() is first  # dependencies unchanged: no recompilation
    conf = app / "etc" / "redpak.yaml"
    doc = yaml.safe_load(conf.read_text())
    doc["environ"] = (doc.get("environ") or []) + [{"key": "NEW", "value": "$NODE_ALIAS"}]
    conf.write_text(yaml.safe_dump(doc, sort_keys=False))
    status, lines = captured(lambda: node.run(["probe", "env"]))
    assert status == 0
    assert "env NEW=app" in lines
    assert node.plan() is not first


def test_launch_failures(app):
    node = redpak.Node(str(app))
    assert node.run(["probe", "exit", "0"]) == 0
    assert node.run(["no-such-program"]) == 127
    notexec = app / "usr" / "bin" / "notexec"
    notexec.write_text("#!/bin/sh\n")
    notexec.chmod(0o644)
    assert node.run(["notexec"]) == 126
    private = app / "private"
    shutil.rmtree(private)  # a mandatory source, gone after compiling: setup fails
    with pytest.raises(LaunchError) as exc:
        node.run(["probe", "write", "/nodes/app/var/ran"])
    assert exc.value.step == "mount"
    assert str(private) in str(exc.value)
    assert isinstance(exc.value.__cause__, FileNotFoundError)
    assert not (app / "var" / "ran").exists()
    with pytest.raises(LaunchError):
        node.spawn(["probe", "exit", "0"])
