# The cold path's environment (issue 11 item 3): redpak.cli.redwrap.restore_exec_environ()
# gives os.environ back the environment the interpreter was executed with, undoing what the
# interpreter changed at startup (PEP 538 locale coercion). Run in fresh interpreters.

from __future__ import annotations

import subprocess
import sys

import pytest

SHOW = """
import os, sys
from redpak.cli.redwrap import restore_exec_environ
before = dict(os.environb)
restore_exec_environ(*sys.argv[1:])
after = list(os.environb.items())
print(repr((before, after)))
"""


def run_python(env: dict[bytes, bytes], *args: str) -> tuple[dict, list]:
    r = subprocess.run([sys.executable, "-c", SHOW, *args], env=env, capture_output=True,
                       timeout=60, check=True)
    return eval(r.stdout)  # noqa: S307 - our own repr of bytes


@pytest.mark.parametrize("locale", [{}, {b"LC_CTYPE": b"C"}, {b"LANG": b"POSIX"}])
def test_locale_coercion_is_undone(locale):
    env = {b"PYTHONPATH": ":".join(sys.path).encode(), **locale, b"ODD": b"\xff=x"}
    before, after = run_python(env)
    assert before[b"LC_CTYPE"] == b"C.UTF-8"  # what the interpreter did to its environment
    assert after == list(env.items())


def test_environment_kept_when_nothing_changed():
    env = {b"PYTHONPATH": ":".join(sys.path).encode(), b"LANG": b"C.UTF-8", b"A": b"1"}
    before, after = run_python(env)
    assert list(before.items()) == after == list(env.items())


def test_first_entry_wins_and_entries_without_a_value_are_left_out(tmp_path):
    fake = tmp_path / "environ"
    fake.write_bytes(b"B=2\0A=1\0B=3\0NOEQUALS\0=x\0EMPTY=\0")
    env = {b"PYTHONPATH": ":".join(sys.path).encode(), b"LANG": b"C.UTF-8"}
    _, after = run_python(env, str(fake))
    assert after == [(b"B", b"2"), (b"A", b"1"), (b"EMPTY", b"")]


def test_without_procfs_the_environment_is_left_alone(tmp_path):
    env = {b"PYTHONPATH": ":".join(sys.path).encode(), b"LANG": b"C.UTF-8", b"A": b"1"}
    before, after = run_python(env, str(tmp_path / "missing"))
    assert list(before.items()) == after
