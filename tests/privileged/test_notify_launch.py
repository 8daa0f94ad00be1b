"""systemd readiness through a node: with NOTIFY_SOCKET set (as systemd sets it for a
Type=notify service), the program in the node gets the variable and reaches the socket, and
its READY=1 datagram arrives at the socket the test listens on. Real launches with the
native redwrap and with the Python API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rp_testutil import remove_tree

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the notify tests need root (namespaces, mounts)", allow_module_level=True)

import redpak  # noqa: E402
from redpak.node import create_node  # noqa: E402

SYSTEMD_NOTIFY = "/usr/bin/systemd-notify"


@pytest.fixture
def family():
    top = Path(tempfile.mkdtemp(prefix="rp-notify-"))
    top.chmod(0o755)
    create_node(str(top / "sys"), model="root")
    create_node(str(top / "sys" / "app"))
    cache = top / "cache"
    yield top / "sys" / "app", cache
    remove_tree(top)


@pytest.fixture
def listener():
    """A datagram socket like systemd's notify socket, in a host directory the node does
    not export (/tmp is the node's own tmpfs in the stock family)."""
    d = Path(tempfile.mkdtemp(prefix="rp-sdsock-"))
    path = d / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    path.chmod(0o777)
    sock.settimeout(10)
    yield sock, str(path)
    sock.close()
    remove_tree(d)


def redwrap(node, cache, argv, notify=None, verbose=False):
    env = {"PATH": "/usr/bin:/bin", "REDPAK_CACHE_DIR": str(cache)}
    if notify:
        env["NOTIFY_SOCKET"] = notify
    exe = str(Path(sys.executable).parent / "redwrap")
    return subprocess.run([exe, *(["-v"] if verbose else []), "--redpath", str(node), "--",
                           *argv], env=env, capture_output=True, text=True, timeout=120)


def test_ready_datagram_from_the_node_reaches_the_socket(family, listener):
    if not os.access(SYSTEMD_NOTIFY, os.X_OK):
        pytest.skip(f"{SYSTEMD_NOTIFY} is missing (Debian package systemd)")
    node, cache = family
    sock, path = listener
    r = redwrap(node, cache, ["sh", "-c", 'echo "socket=$NOTIFY_SOCKET"; '
                              'systemd-notify --no-block --ready --status="serving"'], notify=path)
    assert r.returncode == 0, r.stderr
    assert f"socket={path}" in r.stdout
    message = sock.recv(4096).decode()
    assert "READY=1" in message.split("\n")
    assert "STATUS=serving" in message.split("\n")


def test_plan_cached_without_the_socket_is_rebuilt_for_a_service(family, listener):
    node, cache = family
    sock, path = listener
    send = ("python3", "-c", "import os,socket; s=socket.socket(socket.AF_UNIX, "
            "socket.SOCK_DGRAM); s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])")
    first = redwrap(node, cache, ["sh", "-c", 'echo "[$NOTIFY_SOCKET]"'], verbose=True)
    assert first.returncode == 0 and first.stdout == "[]\n", first.stderr
    again = redwrap(node, cache, ["true"], verbose=True)
    assert "using the cached plan" in again.stderr
    served = redwrap(node, cache, list(send), notify=path, verbose=True)
    assert served.returncode == 0, served.stderr
    assert "rebuilding the plan" in served.stderr
    assert sock.recv(4096) == b"READY=1"
    cached = redwrap(node, cache, list(send), notify=path, verbose=True)
    assert "using the cached plan" in cached.stderr
    assert sock.recv(4096) == b"READY=1"
    # and back in a shell: no socket, no variable
    plain = redwrap(node, cache, ["sh", "-c", 'echo "[$NOTIFY_SOCKET]"; ls ' + path],
                    verbose=True)
    assert plain.stdout.startswith("[]\n") and plain.returncode != 0


def test_python_api_passes_the_socket(family, listener, monkeypatch):
    node, _ = family
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = redpak.Node(str(node))
    done = n.run(["python3", "-c", "import os,socket; s=socket.socket(socket.AF_UNIX, "
                  "socket.SOCK_DGRAM); s.sendto(b'READY=1\\nMAINPID=7', "
                  "os.environ['NOTIFY_SOCKET'])"], capture_output=True)
    assert done == 0, done.stderr
    assert sock.recv(4096) == b"READY=1\nMAINPID=7"
