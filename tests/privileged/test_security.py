"""Attacks from inside a node, run through the native `redwrap` by root and by an
unprivileged user (issue 9). Each test performs the escape for real with the static
tests/privileged/helpers/attack.c and asserts that it fails; none changes a host value
if it succeeded (writes put back the value already there).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rp_testutil import value

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:
    pytest.skip("the security tests need root (namespaces, mounts, a test user)",
                allow_module_level=True)

# The stock two-level family and its callers, shared with test_redwrap.py.
from test_redwrap import (  # noqa: E402,F401
    caller, export, family, ok, root_caller, root_family, user_caller, user_family)


@pytest.fixture
def attacker(family, helper_bin):
    """The stock family with the attack helper installed in its leaf."""
    family.install(helper_bin / "attack")
    return family


def attack(fam, *args: str, opts: tuple[str, ...] = (), **kw):
    r = fam.run("attack", *args, opts=opts, **kw)
    return r, r.stdout.splitlines()


# ---- item 8: io_uring -------------------------------------------------------------------

def test_default_seccomp_profile_denies_io_uring(attacker):
    r, lines = attack(attacker, "io_uring")  # the harness: io_uring works without the profile
    ok(r)
    assert value(lines, "io_uring") == "ok", "io_uring is not usable on this host"
    attacker.edit(attacker.sys, lambda d: d["config"].update({"seccomp": {"profile": "default"}}))
    r, lines = attack(attacker, "io_uring")
    ok(r)
    assert value(lines, "io_uring") == "EPERM"
