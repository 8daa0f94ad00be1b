"""Node families for the suite, made with the public commands (`redconf create`), and the
peers' equivalents of a launch plan (bwrap options, a crun bundle) read from `redwrap -D`."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile

from .harness import Skip, which

TOKEN = re.compile(r"""b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*"|\S+""")


def tool(name: str) -> str | None:
    """A redpak command: the one installed beside this interpreter first (a venv), else
    the one in PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else which(name)


def redconf_create(nodes: list[tuple[str, str]]) -> None:
    """Create nodes [(path, "root"|"leaf")], parents first, with `redconf create`: its entry
    point called in this process (the command a user types, without a Python start-up per
    node: the suite makes about forty nodes)."""
    import contextlib
    import io

    from ..cli import redconf
    for path, model in sorted(nodes, key=lambda n: n[0].count(os.sep)):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            status = redconf.main(["create", f"--{model}", path])
        if status != 0:
            raise Skip(f"redconf create {path} failed: {err.getvalue().strip()[-300:]}")


def edit_config(node: str, section: str, text: str) -> None:
    """Insert YAML lines at the top of a section ("config:", "exports:") of a node's
    etc/redpak.yaml, as an integrator would edit it."""
    conf = os.path.join(node, "etc", "redpak.yaml")
    with open(conf, encoding="utf-8") as f:
        body = f.read()
    if f"\n{section}\n" not in body:
        raise Skip(f"{conf}: no '{section}' section to extend")
    with open(conf, "w", encoding="utf-8") as f:
        f.write(body.replace(f"\n{section}\n", f"\n{section}\n{text}", 1))


def export_lines(count: int, source: str) -> str:
    return "".join(f"  - mode: Restricted\n    mount: /extra/e{i:04d}\n    path: {source}\n"
                   for i in range(count))


def parse_dump(text: str) -> dict:
    """The parts of `redwrap -D` output a peer needs: namespaces, identity, hostname,
    chdir, flags, mounts and environment. Raises Skip if the output is not a plan dump."""
    plan = {"namespaces": set(), "mounts": [], "env": [], "uid": None, "gid": None,
            "hostname": None, "chdir": None, "die_with_parent": False, "new_session": False}
    seen = False
    for line in text.splitlines():
        toks = TOKEN.findall(line)
        if not toks:
            continue
        val = (lambda t: ast.literal_eval(t) if t[:1] in "'\"" or t[:2] in ("b'", 'b"') else t)
        head = toks[0]
        if head == "redpak" and "plan" in toks:
            seen = True
        elif head == "namespaces:":
            plan["namespaces"] = set(toks[1:])
        elif head == "identity:":
            for key in ("uid", "gid"):
                if key in toks:
                    plan[key] = int(toks[toks.index(key) + 1])
        elif head == "process:":
            for key in ("hostname", "chdir"):
                if key in toks:
                    plan[key] = val(toks[toks.index(key) + 1])
            plan["die_with_parent"] = "die-with-parent" in toks
            plan["new_session"] = "new-session" in toks
        elif head.startswith("mount["):
            m = {"kind": toks[1], "target": val(toks[2]), "source": None, "flags": set(),
                 "data": None}
            rest = toks[3:]                     # after "mount[i] KIND TARGET"
            for key in ("source", "data"):
                if key in rest:
                    m[key] = val(rest[rest.index(key) + 1])
            if "flags" in rest:
                m["flags"] = set(rest[rest.index("flags") + 1].split(","))
            plan["mounts"].append(m)
        elif head.startswith("env[") and len(toks) >= 3:
            plan["env"].append((toks[1], toks[2], val(toks[3]) if len(toks) > 3 else None))
    if not seen:
        raise Skip("`redwrap -D` printed no launch plan")
    return plan


def dump_plan(redwrap: str, node: str, env: dict, program: str) -> dict:
    r = subprocess.run([redwrap, "--redpath", node, "-D", "--", program], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip(f"redwrap -D failed: {r.stderr.strip()[-300:]}")
    return parse_dump(r.stdout)


def bwrap_argv(bwrap: str, plan: dict, tmp: str) -> list[str]:
    """bwrap options doing what the plan does (same namespaces, mounts and environment).
    The contents of generated files (/etc/passwd...) go to a new directory under `tmp`."""
    files = tempfile.mkdtemp(dir=tmp, prefix="bwrap-")
    argv = [bwrap]
    for ns, opt in (("user", "--unshare-user"), ("pid", "--unshare-pid"),
                    ("net", "--unshare-net"), ("ipc", "--unshare-ipc"),
                    ("uts", "--unshare-uts"), ("cgroup", "--unshare-cgroup")):
        if ns in plan["namespaces"]:
            argv.append(opt)
    if "user" in plan["namespaces"] and plan["uid"] is not None:
        argv += ["--uid", str(plan["uid"]), "--gid", str(plan["gid"])]
    for i, m in enumerate(plan["mounts"]):
        kind, target, optional = m["kind"], m["target"], "optional" in m["flags"]
        if kind in ("bind", "bind_file"):
            if optional and not os.path.exists(m["source"]):
                continue
            argv += [("--ro-bind" if "rdonly" in m["flags"] else "--bind")
                     + ("-try" if optional else ""), m["source"], target]
        elif kind == "dir":
            argv += ["--dir", target]
        elif kind == "symlink":
            argv += ["--symlink", m["source"], target]
        elif kind in ("tmpfs", "proc", "dev", "mqueue"):
            argv += [f"--{kind}", target]
        elif kind == "data":
            path = os.path.join(files, f"data{i}")
            with open(path, "wb") as f:
                f.write(m["data"] or b"")
            argv += ["--ro-bind", path, target]
    if plan["hostname"]:
        argv += ["--hostname", plan["hostname"]]
    argv.append("--clearenv")
    for action, name, value in plan["env"]:
        if action == "set":
            argv += ["--setenv", name, value]
    if plan["chdir"]:
        argv += ["--chdir", plan["chdir"]]
    if plan["die_with_parent"]:
        argv.append("--die-with-parent")
    if plan["new_session"]:
        argv.append("--new-session")
    return argv


def crun_bundle(tmp: str, name: str, program: str, exports: int, source: str) -> str:
    """An OCI bundle showing the host's /usr read-only (like the stock family) plus
    `exports` read-only binds of `source`; returns its directory."""
    bundle = os.path.join(tmp, f"crun-{name}")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs)
    mounts = [{"destination": "/proc", "type": "proc", "source": "proc"},
              {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}]
    for dest, src in (("/usr", "/usr"), ("/bin", "/usr/bin"), ("/lib", "/usr/lib"),
                      ("/lib64", "/usr/lib64")):
        if os.path.isdir(src):
            os.makedirs(rootfs + dest, exist_ok=True)
            mounts.append({"destination": dest, "type": "bind", "source": src,
                           "options": ["rbind", "ro"]})
    mounts += [{"destination": f"/extra/e{i:04d}", "type": "bind", "source": source,
                "options": ["rbind", "ro"]} for i in range(exports)]
    config = {"ociVersion": "1.0.2",
              "process": {"args": [program], "cwd": "/", "user": {"uid": 0, "gid": 0},
                          "env": ["PATH=/bin"]},
              "root": {"path": "rootfs"}, "mounts": mounts,
              "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts")]}}
    with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    return bundle
