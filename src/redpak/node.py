"""Nodes on disk (SPEC §1): the status file, family discovery, loading a node's configs,
walking a node tree, and creating nodes from templates (§1.1)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from redpak.errors import ConfigError, NodeError
from redpak.fileio import fsync_dir
from redpak.model import Node, NodeState, NodeStatus
from redpak.record import record

STATUS_FILE = ".rednode.yaml"
CONFIG_FILES = ("etc/redpak.yaml", "etc/redpack.yaml")          # new name first, then legacy
ADMIN_FILES = ("etc/redpak-admin.yaml", "etc/redpack-admin.yaml")
RPMDB_DIR = "var/lib/rpm"
MODELS = ("root", "leaf", "full")
ALIAS_RE = re.compile(r"[A-Za-z0-9+\-_@:]+")

_STATUS_MAX_BYTES = 64 * 1024   # a status file is four short lines
_TEMPLATE_MAX_BYTES = 1024 * 1024


# --------------------------------------------------------------------------- paths

def normalize_path(path: str) -> str:
    """Return `path` made absolute (relative to the cwd) and normalised lexically."""
    if not path:
        raise NodeError("empty node path (give a directory, e.g. `.`)")
    try:
        norm = os.path.normpath(os.path.abspath(path))
    except OSError as err:      # getcwd(): the current directory was removed, or hidden
        raise NodeError(f"{path}: a relative path is taken from the current directory, "
                        f"which cannot be found ({err.strerror}): give an absolute "
                        f"path") from None
    # POSIX lets normpath keep a leading "//"; a node path has exactly one.
    return "/" + norm.lstrip("/")


def is_node(path: str) -> bool:
    """Tell whether directory `path` holds a node status file."""
    return os.path.isfile(os.path.join(path, STATUS_FILE))


def need_directory(path: str, kind: str = "node directory") -> None:
    """Raise NodeError unless `path` is a directory, saying what it is instead: missing,
    a file, or not reachable (a parent without search permission for this user)."""
    import stat
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NodeError(f"{path}: no such {kind}") from None
    except NotADirectoryError:
        raise NodeError(f"{path}: no such {kind} (a parent is not a directory)") from None
    except OSError as err:
        raise NodeError(f"{path}: cannot reach the {kind}: {err.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NodeError(f"{path}: not a directory (give the {kind}, not a file in it)")


def _need_status_access(node_path: str) -> None:
    """Raise NodeError when the status file cannot even be looked for (a directory this
    user may not search): "not a node" would send the user to create one."""
    try:
        os.lstat(os.path.join(node_path, STATUS_FILE))
    except FileNotFoundError:
        return
    except OSError as err:
        raise NodeError(f"{node_path}: cannot read the node directory: {err.strerror} "
                        f"(it may belong to another user; check its permissions)") from None


def find_family(redpath: str) -> list[str]:
    """Return the paths of the leaf's family, root-most first; raises NodeError."""
    leaf = normalize_path(redpath)
    need_directory(leaf)
    if not is_node(leaf):
        _need_status_access(leaf)
        raise NodeError(f"{leaf}: not a node (no {STATUS_FILE}; "
                        f"create one with `redconf create {leaf}`)")
    family = _ancestors(leaf)
    real = os.path.realpath(leaf)
    if real != leaf:
        # Through a symlink (/srv/app -> /var/redpak/sys/app) the directories above are not
        # the node's own: the family found would lack its system node, and the launch would
        # fail far from the cause (program not found). Refuse when it differs.
        there = _ancestors(real)
        if [os.path.realpath(p) for p in family] != there:
            raise NodeError(
                f"{leaf}: this path reaches the node through a symbolic link, to {real}, "
                f"whose family is {' > '.join(there)}; by this path it would be "
                f"{' > '.join(family)} (a node's family is the nodes above its real "
                f"directory): give the node's real path, {real}")
    return family


def _ancestors(leaf: str) -> list[str]:
    """The node `leaf` and the nodes in the directories above it, root-most first."""
    family = [leaf]
    current = leaf
    while True:
        parent = os.path.dirname(current)
        if parent == current or parent == "/":
            break                       # the walk stops before "/": it is never a node
        if is_node(parent):
            family.append(parent)
        current = parent
    family.reverse()
    return family


def find_tree(root: str, onerror: Callable[[str, OSError], None] | None = None) -> list[str]:
    """Return every node at or below `root`, parents before children; raises NodeError.

    Symlinks are never followed; a directory reached twice (bind mounts) is walked once.
    Unreadable subdirectories are passed to `onerror(path, err)` if given, else skipped.
    """
    top = normalize_path(root)
    need_directory(top, "directory")
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        current = stack.pop()
        try:
            st = os.stat(current, follow_symlinks=False)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            if current == top:
                raise NodeError(f"{top}: cannot read directory: {err.strerror}") from err
            if onerror is not None:
                onerror(current, err)
            continue
        subdirs = []
        for entry in entries:
            if entry.name == STATUS_FILE:
                if _entry_is_file(entry):
                    found.append(current)
            elif _entry_is_dir(entry):
                subdirs.append(entry.path)
        stack.extend(reversed(subdirs))     # pre-order, sorted by name
    return found


def _entry_is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _entry_is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


# --------------------------------------------------------------------------- status file

_STATUS_HINT = "a node status file needs at least `state: Enable` (or Disable, Unknown, Error)"


def read_status(node_path: str) -> NodeStatus:
    """Read NODE/.rednode.yaml; raises NodeError if absent, ConfigError if invalid."""
    from redpak.config import load_yaml_mapping

    path = os.path.join(node_path, STATUS_FILE)
    if not os.path.lexists(path):
        _need_status_access(node_path)
        raise NodeError(f"{node_path}: not a node (no {STATUS_FILE}; "
                        f"create one with `redconf create {node_path}`)")
    try:
        data, lines = load_yaml_mapping(path, _STATUS_MAX_BYTES)
    except ConfigError as err:
        if err.problem != "file is empty":
            raise
        raise ConfigError(path, "", "file is empty", _STATUS_HINT) from None

    def text(key: str) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(path, key, "must be a single value", line=lines.get(key))
        return value

    if "state" not in data:
        raise ConfigError(path, "state", "missing", _STATUS_HINT)
    state = _parse_state(data["state"])
    if state is None:
        raise ConfigError(path, "state", f"{data['state']!r} is not a node state",
                          "use Enable, Disable, Unknown or Error", line=lines.get("state"))
    timestamp = 0
    value = data.get("timestamp")
    if value is not None:
        if not isinstance(value, str) or not value.isascii() or not value.isdigit():
            raise ConfigError(path, "timestamp", f"{value!r} is not a number",
                              "milliseconds since the epoch", line=lines.get("timestamp"))
        timestamp = int(value)
    return NodeStatus(realpath=text("realpath"), state=state, info=text("info"),
                      timestamp=timestamp)


def _parse_state(value: object) -> NodeState | None:
    if not isinstance(value, str):
        return None
    for state in NodeState:
        if state.value.lower() == value.strip().lower():
            return state
    return None


def write_status(node_path: str, status: NodeStatus) -> None:
    """Write NODE/.rednode.yaml atomically; raises NodeError."""
    text = (f"realpath: {_yaml_quote(status.realpath)}\n"
            f"info: {_yaml_quote(status.info)}\n"
            f"timestamp: {int(status.timestamp)}\n"
            f"state: {status.state.value}\n")
    _write_atomic(os.path.join(node_path, STATUS_FILE), text)


def set_state(node_path: str, state: NodeState, info: str | None = None) -> NodeStatus:
    """Change a node's state (and info), refreshing its realpath and timestamp."""
    old = read_status(node_path)
    new = NodeStatus(realpath=os.path.realpath(node_path), state=state,
                     info=old.info if info is None else info, timestamp=_now_ms())
    write_status(node_path, new)
    return new


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- loading

def config_file(node_path: str, admin: bool = False) -> str | None:
    """Return the node's normal (or admin) config file, legacy name included, or None."""
    for name in ADMIN_FILES if admin else CONFIG_FILES:
        candidate = os.path.join(node_path, name)
        if os.path.lexists(candidate):
            return candidate
    return None


def load_node(path: str) -> Node:
    """Load one node: status, normal config, admin config; raises NodeError, ConfigError."""
    from redpak.config import load_config

    node_path = normalize_path(path)
    need_directory(node_path)
    status = read_status(node_path)
    normal = config_file(node_path)
    if normal is None:
        raise NodeError(f"{node_path}: node has no config: "
                        f"{os.path.join(node_path, CONFIG_FILES[0])} is missing "
                        f"(write one with `redconf create --update {node_path}`)")
    st = os.stat(node_path)
    owners = (0, st.st_uid)
    etc = os.path.dirname(normal)
    if os.path.islink(etc):
        raise NodeError(f"{etc}: is a symbolic link: refused (a node's configs live in the "
                        "node itself; replace the link with the directory)")
    config = load_config(normal, owners)
    admin_file = config_file(node_path, admin=True)
    admin = load_config(admin_file, owners) if admin_file is not None else None
    return Node(path=node_path, status=status, config=config, admin=admin,
                owner=st.st_uid, group=st.st_gid)


def load_family(redpath: str) -> list[Node]:
    """Load the family of `redpath`, root-most first; raises NodeError, ConfigError."""
    return [load_node(path) for path in find_family(redpath)]


# --------------------------------------------------------------------------- creation

@record(frozen=True)
class _Headers:
    alias: str
    name: str
    info: str


def default_templates_dir() -> str:
    """Return the templates directory: $REDNODE_TEMPLATE_DIR, else the installed one."""
    env = os.environ.get("REDNODE_TEMPLATE_DIR")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def resolve_template(spec: str, kind: str, templates_dir: str) -> str:
    """Return the file of template `spec` (a name, or a path if it has '/' or ends in
    .yaml/.yml) for `kind` 'normal' or 'admin'; raises NodeError if there is none."""
    if "/" in spec or spec.endswith((".yaml", ".yml")):
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            what = "a directory, not a template file" if os.path.isdir(path) else \
                "no such template file"
            raise NodeError(f"{spec}: {what}")
        return path
    if not spec or not re.fullmatch(r"[A-Za-z0-9_.+@:-]+", spec) or spec.startswith("."):
        raise NodeError(f"{spec!r}: not a valid template name (a file name without "
                        f"'.yaml', or a path to a file)")
    for name in (f"{spec}.yaml", f"{spec}-{kind}.yaml"):
        candidate = os.path.join(templates_dir, name)
        if os.path.isfile(candidate):
            return candidate
    # `-c my.conf` where the user meant the file in the current directory: say how.
    local = (f"; for the file {os.path.abspath(spec)}, write ./{spec}"
             if os.path.isfile(spec) else "")
    raise NodeError(f"no template {spec!r} in {templates_dir} "
                    f"(available: {', '.join(list_templates(templates_dir)) or 'none'}"
                    f"{local})")


def list_templates(templates_dir: str) -> list[str]:
    """Return the template names found in `templates_dir` (file names without .yaml)."""
    try:
        names = os.listdir(templates_dir)
    except OSError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".yaml") and not n.startswith("."))


def create_node(redpath: str, alias: str | None = None, model: str = "leaf",
                config: str | None = None, config_admin: str | None = None,
                templates: str | None = None, update: bool = False) -> Node:
    """Create (or with `update`, rewrite the configs of) a node from templates (SPEC §1.1).

    Raises NodeError for a bad alias, a missing template, an existing config without
    `update`, or a failed rpm database initialisation; ConfigError for an invalid template.
    """
    node_path = normalize_path(redpath)
    if node_path == "/":
        raise NodeError("/: the root directory cannot be a node")
    if "%" in node_path:
        # rpm expands %-macros in its database path, more than once: no quoting makes it
        # safe, and a wrong expansion would put the database outside the node.
        raise NodeError(f"{node_path}: a node path cannot contain '%' "
                        f"(rpm would read it as a macro); choose another directory")
    templates_dir = templates or default_templates_dir()
    if config is None and config_admin is None:
        need_directory(templates_dir, "templates directory")
    normal_tpl = resolve_template(config or model, "normal", templates_dir)
    if config_admin is not None:
        admin_tpl: str | None = resolve_template(config_admin, "admin", templates_dir)
    else:
        try:
            admin_tpl = resolve_template(model, "admin", templates_dir)
        except NodeError:
            admin_tpl = None        # an admin config is optional (SPEC §1)

    existing_normal = config_file(node_path)
    existing_admin = config_file(node_path, admin=True)
    if update:
        if existing_normal is None and not is_node(node_path):
            raise NodeError(f"{node_path}: not a node, nothing to update "
                            f"(create it without --update)")
    else:
        for existing in (existing_normal, existing_admin):
            if existing is not None:
                raise NodeError(f"{existing}: a config already exists "
                                f"(use --update to rewrite it from the templates)")

    if alias is not None:
        check_alias(alias, "--alias")
    if update and existing_normal is not None:
        headers = _keep_headers(existing_normal, alias, lambda: _new_headers(node_path, alias))
    else:
        headers = _new_headers(node_path, alias)
    admin_headers = _Headers(f"admin-of-{headers.alias}", headers.name, headers.info)
    if update and existing_admin is not None:
        admin_headers = _keep_headers(existing_admin,
                                      None if alias is None else admin_headers.alias,
                                      lambda: admin_headers)

    normal_text, normal_lines = _render(normal_tpl, headers)
    admin_text, admin_lines = _render(admin_tpl, admin_headers) if admin_tpl else (None, None)

    created: list[str] = []     # undone if a later step fails: no half-made node
    try:
        _makedirs(node_path, created)
        for sub in ("etc", "usr", "private", RPMDB_DIR):
            _makedirs(os.path.join(node_path, sub), created)
        # Writing the new name retires a legacy-named file: one config per node.
        normal_dst = os.path.join(node_path, CONFIG_FILES[0])
        _write_config(normal_dst, normal_text, normal_tpl, normal_lines, created)
        if existing_normal is not None and existing_normal != normal_dst:
            os.unlink(existing_normal)
        if admin_text is not None:
            admin_dst = os.path.join(node_path, ADMIN_FILES[0])
            _write_config(admin_dst, admin_text, admin_tpl or "", admin_lines, created)
            if existing_admin is not None and existing_admin != admin_dst:
                os.unlink(existing_admin)
        init_rpmdb(os.path.join(node_path, RPMDB_DIR))
        _write_rpm_macros(node_path, created)
        old = _try_read_status(node_path) if update else None
        status = NodeStatus(
            realpath=os.path.realpath(node_path),
            state=old.state if old else NodeState.ENABLE,
            info=old.info if old else f"created by redconf from template {model!r}",
            timestamp=_now_ms())
        write_status(node_path, status)   # last: the directory is a node only when complete
    except BaseException:
        dbdir = os.path.join(node_path, RPMDB_DIR)
        if dbdir in created:        # fresh, ours alone: whatever rpm left there goes too
            import shutil
            shutil.rmtree(dbdir, ignore_errors=True)
        _undo(created)
        raise
    return load_node(node_path)


def check_alias(alias: str, what: str = "alias") -> str:
    """Return `alias` if it is a valid node alias; raises NodeError otherwise."""
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
        raise NodeError(f"{what}: {alias!r} is not a valid node alias "
                        f"(use letters, digits and + - _ @ : only)")
    return alias


def _new_headers(node_path: str, alias: str | None) -> _Headers:
    import uuid

    if alias is None:
        base = os.path.basename(node_path)
        if not ALIAS_RE.fullmatch(base):
            raise NodeError(f"{node_path}: the directory name {base!r} is not a valid alias "
                            f"(give one with --alias: letters, digits and + - _ @ : only)")
        alias = base
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    return _Headers(alias=alias, name=str(uuid.uuid4()),
                    info=f"Node created by {_user_name()} on {when}")


def _user_name() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return os.environ.get("USER") or f"uid {os.getuid()}"


def _keep_headers(config_path: str, alias: str | None,
                  fresh: Callable[[], _Headers]) -> _Headers:
    """Headers of an existing config; an explicit alias still wins, `fresh()` fills gaps."""
    from redpak.config import load_yaml_mapping

    try:
        data, _lines = load_yaml_mapping(config_path, _TEMPLATE_MAX_BYTES)
    except ConfigError as err:
        raise NodeError(f"cannot keep the headers of the existing config: {err} "
                        f"(fix or remove the file, then re-run)") from err
    headers = data.get("headers")
    if not isinstance(headers, dict):
        headers = {}
    old_alias, name, info = (headers.get(k) for k in ("alias", "name", "info"))
    if alias is None and isinstance(old_alias, str):
        alias = check_alias(old_alias, f"{config_path}: headers.alias")
    if alias is None or not (isinstance(name, str) and name) or not isinstance(info, str):
        new = fresh()
        alias = alias or new.alias
        name = name if isinstance(name, str) and name else new.name
        info = info if isinstance(info, str) else new.info
    return _Headers(alias=alias, name=name, info=info)


_HEADERS_LINE = re.compile(r"^headers[ \t]*:[ \t]*(#.*)?$", re.IGNORECASE)


def render_template(template: str, headers: _Headers) -> str:
    """Return the template's text with its `headers:` block replaced; raises NodeError.

    Only the headers block is rewritten so the template's comments and layout survive.
    """
    return _render(template, headers)[0]


def _render(template: str, headers: _Headers) -> tuple[str, Callable[[int], int]]:
    """render_template(), plus a map from a line of the result to the template's line."""
    try:
        with open(template, "rb") as f:
            raw = f.read(_TEMPLATE_MAX_BYTES + 1)
    except OSError as err:
        raise NodeError(f"{template}: cannot read template: {err.strerror}") from err
    if len(raw) > _TEMPLATE_MAX_BYTES:
        raise NodeError(f"{template}: template larger than 1 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NodeError(f"{template}: template is not valid UTF-8 "
                        f"(byte {err.start})") from err
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _HEADERS_LINE.match(line.rstrip("\r\n"))]
    if len(starts) != 1:
        raise NodeError(f"{template}: a template needs exactly one block-style `headers:` "
                        f"line at column 0 (found {len(starts)})")
    start = starts[0]
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
        end += 1
    # Blank lines ending the block belong to the layout, not to the headers.
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    block = ("headers:\n"
             f"  alias: {_yaml_quote(headers.alias)}\n"
             f"  name: {_yaml_quote(headers.name)}\n"
             f"  info: {_yaml_quote(headers.info)}\n")
    new_end = start + block.count("\n")      # 0-based, first line after the new block

    def template_line(line: int) -> int:
        if line <= start:
            return line
        if line <= new_end:
            return start + 1                    # inside the headers: the `headers:` line
        return line - new_end + end

    return "".join(lines[:start]) + block + "".join(lines[end:]), template_line


def _write_config(dst: str, text: str, template: str, template_line: Callable[[int], int],
                  created: list[str]) -> None:
    """Validate the rendered config, then write it atomically over `dst`."""
    from redpak.config import load_config

    existed = os.path.lexists(dst)
    tmp = _write_tmp(dst, text)
    try:
        try:
            load_config(tmp)
        except ConfigError as err:
            where = f"{template}:{template_line(err.line)}" if err.line else template
            raise NodeError(f"{where}: invalid template: "
                            + (f"{err.key}: " if err.key else "") + err.problem
                            + (f" ({err.hint})" if err.hint else "")) from err
        os.replace(tmp, dst)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    if not existed:
        created.append(dst)
    fsync_dir(os.path.dirname(dst))


RPM_MACROS = "etc/rpm/macros.redpak"
"""rpm's settings as seen inside the node (exported at /etc/rpm by the root templates)."""


def _write_rpm_macros(node_path: str, created: list[str]) -> None:
    """Tell rpm run inside the node where the node's database is: Debian's rpm defaults
    to ~/.rpmdb, which would show no package."""
    path = os.path.join(node_path, RPM_MACROS)
    _makedirs(os.path.dirname(path), created)
    if not os.path.exists(path):
        _write_atomic(path, "# written by redconf create: rpm inside this node\n"
                            "%_dbpath /var/lib/rpm\n")
        created.append(path)


def init_rpmdb(dbpath: str) -> None:
    """Create an empty rpm database in `dbpath` unless one is there; raises NodeError.

    The path is always given explicitly: Debian's default %_dbpath is ~/.rpmdb, which
    would put the database outside the node.
    """
    import subprocess

    if "%" in dbpath:
        raise NodeError(f"{dbpath}: an rpm database path cannot contain '%' "
                        f"(rpm expands it as a macro)")
    if not os.path.isabs(dbpath):
        raise NodeError(f"{dbpath}: the rpm database path must be absolute")
    os.makedirs(dbpath, exist_ok=True)
    if any(name != ".rpm.lock" for name in os.listdir(dbpath)):
        return
    cmd = ["rpm", "--noplugins", "--dbpath", dbpath, "--initdb"]
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", env=env, timeout=60, check=False)
    except FileNotFoundError as err:
        raise NodeError(f"cannot initialise the rpm database in {dbpath}: the `rpm` "
                        f"program is not installed (run tools/setup.sh, or "
                        f"`apt-get install rpm`)") from err
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NodeError(f"cannot initialise the rpm database in {dbpath}: {err}") from err
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise NodeError(f"cannot initialise the rpm database in {dbpath}: rpm exited "
                        f"{proc.returncode}" + (f": {detail[-1]}" if detail else ""))


def _try_read_status(node_path: str) -> NodeStatus | None:
    try:
        return read_status(node_path)
    except (NodeError, ConfigError):
        return None


def _makedirs(path: str, created: list[str]) -> None:
    missing = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            continue
        except OSError as err:
            raise NodeError(f"{directory}: cannot create directory: {err.strerror}") from err
        created.append(directory)
    if not os.path.isdir(path):
        raise NodeError(f"{path}: exists and is not a directory")


def _undo(created: list[str]) -> None:
    for path in reversed(created):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)          # only if still empty: never removes user data
            else:
                os.unlink(path)
        except OSError:
            pass


# --------------------------------------------------------------------------- file helpers

def _yaml_quote(value: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    import json
    return json.dumps(value, ensure_ascii=True)


def _write_tmp(dst: str, text: str) -> str:
    import tempfile

    directory, base = os.path.split(dst)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise NodeError(f"{dst}: cannot write: {err.strerror}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
    except OSError as err:
        _unlink_quiet(tmp)
        raise NodeError(f"{dst}: cannot write: {err.strerror}") from err
    return tmp


def _write_atomic(dst: str, text: str) -> None:
    """Replace `dst` with `text` so readers see the old or the new file, never a mix."""
    tmp = _write_tmp(dst, text)
    try:
        os.replace(tmp, dst)
    except OSError as err:
        _unlink_quiet(tmp)
        raise NodeError(f"{dst}: cannot write: {err.strerror}") from err
    fsync_dir(os.path.dirname(dst))


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
