"""Helpers shared by the package-management tests (imported by conftest.py and tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

DNF = [sys.executable, "-m", "redpak.cli.redwrap_dnf"]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command, raising with its stderr when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@dataclass(frozen=True)
class Family:
    """A three-level family: system (root model) -> platform -> app (leaf model)."""

    top: Path
    system: Path
    platform: Path
    app: Path

    def db(self, node: Path) -> str:
        return str(node / "var/lib/rpm")

    def rpm_qa(self, node: Path) -> list[str]:
        out = run(["rpm", "--dbpath", self.db(node), "-qa",
                    "--qf", "%{NAME}-%{VERSION}\\n"]).stdout
        return sorted(line for line in out.splitlines() if not line.startswith("gpg-pubkey"))


def add_repo(node: Path, repo_id: str, path: Path, extra: str = "") -> None:
    """Write NODE/etc/yum.repos.d/ID.repo pointing at a local repository."""
    d = node / "etc/yum.repos.d"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{repo_id}.repo").write_text(textwrap.dedent(f"""\
        [{repo_id}]
        name=Test repository {repo_id}
        baseurl=file://{path}
        """) + extra)


def set_gpgcheck(node: Path) -> None:
    """Turn gpgcheck on in a node's normal config."""
    conf = node / "etc/redpak.yaml"
    text = conf.read_text()
    assert "\nconfig:\n" in text
    conf.write_text(text.replace("\nconfig:\n", "\nconfig:\n  gpgcheck: true\n", 1))


def dnf(*args: str, input: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real redwrap-dnf command line."""
    run_env = dict(os.environ)
    run_env.setdefault("REDPAK_REDWRAP", "")
    run_env.update(env or {})
    return subprocess.run([*DNF, *args], capture_output=True, text=True, input=input,
                          check=False, env=run_env, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)


def spec(name: str, version: str = "1.0", *, requires: tuple[str, ...] = (),
         conflicts: tuple[str, ...] = (), provides: tuple[str, ...] = (),
         files: dict[str, str] | None = None, install: str = "", file_list: str = "",
         scripts: str = "", summary: str = "", extra: str = "") -> str:
    """A spec for a small noarch package writing `files` ({path: content})."""
    files = files if files is not None else {f"/usr/share/{name}/{name}.txt": name}
    lines = [f"Name: {name}", f"Version: {version}", "Release: 1",
             f"Summary: {summary or 'redpak test package ' + name}", "License: MIT",
             "BuildArch: noarch"]
    lines += [f"Requires: {r}" for r in requires]
    lines += [f"Conflicts: {c}" for c in conflicts]
    lines += [f"Provides: {p}" for p in provides]
    lines += [extra] if extra else []
    body = ["%description", f"{name} for redpak tests", "%install"]
    for path, content in files.items():
        body.append(f"mkdir -p %{{buildroot}}{os.path.dirname(path)}")
        body.append(f"printf '%s\\n' '{content}' > %{{buildroot}}{path}")
    body.append(install)
    body.append(scripts)
    body.append("%files")
    body.extend(files)
    body.append(file_list)
    return "\n".join(lines + body) + "\n"
