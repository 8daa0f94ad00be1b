# Variable expansion in config values (SPEC §5): $NAME, ${NAME}, \$ and $(command), the
# built-in variables, and family_config(): each node of a family expanded in its own
# context, then merged (expand_family() does the same for a merged FamilyConfig). Records
# what an expansion depended on, for plan caching.
"""Expand variables in config strings.

Syntax: `$NAME` and `${NAME}` (NAME is `[A-Za-z_][A-Za-z0-9_]*`, case-sensitive); `\\$` is a
literal `$` (no other backslash is special); `$(command)` is the stdout of
`/bin/sh -c command` with its final newlines removed, run with stdin from /dev/null, in a
new session, with a timeout (5 s by default); a failure, a signal or a timeout is an
ExpandError naming the key, the command and the first line of its stderr. A `$` not
followed by a name, `{` or `(` stays as it is.

Lookup of NAME, first match wins:
1. the fixed built-ins: NODE_* (the node whose entry is expanded), LEAF_*, REDNODE_*,
   UID, GID, PID, TODAY, UUID — a config cannot shadow these;
2. the family's environ definitions: every standing environ entry of mode Default
   (its value expanded in its own node's context, once, then reused) or Static (verbatim).
   Definitions are order-independent: any entry may refer to any other. An entry that
   refers to itself, directly or through a cycle, is an ExpandError
   ("variable FOO refers to itself (FOO -> BAR -> FOO)"). Execfd, Inherit and Remove
   entries are resolved at launch and are not definitions;
3. the caller's environment (values are used verbatim, never expanded again);
4. defaults: USER/LOGNAME 'Unknown', HOSTNAME 'localhost', NODE_PREFIX '/var/redpak',
   redpak_MAIN 'main', redpak_TMPL the installed templates, REDPESK_VERSION '3',
   CGROUPS_MOUNT_POINT '/sys/fs/cgroup'; anything else is empty.

A $(command) sees the caller's environment plus the built-ins and defaults above.
Dependencies are tracked for launch-plan caching: `used_env` maps every caller-environment
name looked up to its value (None when it was absent) and `volatile` is true once PID,
UUID, TODAY or a command was used (the result cannot be cached).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence

from .errors import ExpandError
from .family import FamilyConfig, Origin, merge_family, standing_environ, yaml_key
from .config import HOST_PATH_MODES, path_problem
from .model import NAMESPACES, EnvEntry, EnvMode, Node, NodeConfig, Share
from .record import field, record

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

DEFAULT_TIMEOUT = 5.0
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIXED = ("NODE_ALIAS", "NODE_NAME", "NODE_PATH", "NODE_INFO", "LEAF_ALIAS", "LEAF_NAME",
          "LEAF_PATH", "LEAF_INFO", "REDNODE_CONF", "REDNODE_ADMIN", "REDNODE_STATUS",
          "REDNODE_VARDIR", "REDNODE_REPODIR", "REDNODE_LOCK", "UID", "GID", "PID", "TODAY",
          "UUID")
_VOLATILE = frozenset({"PID", "TODAY", "UUID"})
_PER_NODE = frozenset(_FIXED) - _VOLATILE - {"UID", "GID"}
_PLAIN_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def default_templates_dir() -> str:
    """The templates directory installed with redpak."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def _defaults(templates_dir: str) -> dict[str, str]:
    return {"USER": "Unknown", "LOGNAME": "Unknown", "HOSTNAME": "localhost",
            "NODE_PREFIX": "/var/redpak", "redpak_MAIN": "main", "redpak_TMPL": templates_dir,
            "REDPESK_VERSION": "3", "CGROUPS_MOUNT_POINT": "/sys/fs/cgroup"}


@record(frozen=True)
class Definition:
    """A family environ entry usable as a variable: Static values are taken verbatim,
    Default values are expanded in `node`'s context."""

    key: str
    value: str
    static: bool
    node: Node
    file: str = ""
    line: int = 0


@record
class _Session:
    """State shared by all contexts of one expansion (one launch / one mergeconfig)."""

    leaf: Node
    environ: Mapping[str, str]
    uid: int
    gid: int
    pid: int
    timeout: float
    templates_dir: str
    definitions: dict[str, Definition]
    used_env: dict[str, str | None] = field(default_factory=dict)
    volatile: bool = False
    memo: dict[str, str] = field(default_factory=dict)
    resolving: list[str] = field(default_factory=list)
    uuid: str = ""
    today: str = ""
    run_commands: bool = True   # False for dry runs (--dump-only): $(cmd) stays as written


class ExpansionContext:
    """Expands strings as seen from one node of a family; contexts made by with_node()
    share the same UUID, definitions and dependency record."""

    def __init__(self, node: Node, leaf: Node | None, environ: Mapping[str, str], uid: int,
                 gid: int, pid: int, command_timeout: float = DEFAULT_TIMEOUT, *,
                 templates_dir: str | None = None, definitions: Iterable[Definition] = (),
                 run_commands: bool = True):
        self.node = node
        self._names: dict[str, str | None] = {}   # NODE_*, LEAF_*, REDNODE_* of this node
        self._s = _Session(leaf if leaf is not None else node, environ, uid, gid, pid,
                           command_timeout, templates_dir or default_templates_dir(),
                           {d.key: d for d in definitions}, run_commands=run_commands)

    def with_node(self, node: Node) -> ExpansionContext:
        """A context for another node of the same family, sharing this one's session."""
        other = object.__new__(ExpansionContext)
        other.node, other._s, other._names = node, self._s, {}
        return other

    def set_identity(self, uid: int, gid: int) -> None:
        """Switch $UID/$GID once the launch identity is resolved (set-user is expanded with
        the caller's). Definitions expanded so far are forgotten if the identity changed."""
        s = self._s
        if (uid, gid) != (s.uid, s.gid):
            s.uid, s.gid = uid, gid
            s.memo.clear()

    @property
    def used_env(self) -> dict[str, str | None]:
        """Caller-environment names looked up, with their values (None: absent)."""
        return dict(self._s.used_env)

    @property
    def volatile(self) -> bool:
        """True once PID, UUID, TODAY or a $(command) was used."""
        return self._s.volatile

    def expand(self, text: str, key: str, file: str | None = None, line: int = 0) -> str:
        """Expand `text`, the value of `key` in `file` (default: the node's config).
        Raises ExpandError naming file, line and key."""
        return self._expand(text, key, file if file is not None else self.node.config.file,
                            line)

    def resolve(self, name: str, key: str = "", file: str | None = None, line: int = 0) -> str:
        """The value of variable `name` in this context. Raises ExpandError."""
        return self._lookup(name, (key or name, file or self.node.config.file, line))

    def definition_value(self, key: str) -> str:
        """The value of the family environ definition `key` (expanded once, in its own
        node's context). Raises KeyError if there is none, ExpandError if it cannot expand."""
        d = self._s.definitions[key]
        return self._definition(d, (f"environ {key}", d.file, d.line))

    # -- internals -------------------------------------------------------------------

    def _fixed(self, name: str) -> str | None:
        s, node = self._s, self.node
        if name in _VOLATILE:
            s.volatile = True
            if name == "PID":
                return str(s.pid)
            if name == "UUID":
                if not s.uuid:
                    import uuid  # rarely used

                    s.uuid = str(uuid.uuid4())
                return s.uuid
            if not s.today:
                import datetime

                s.today = datetime.date.today().isoformat()
            return s.today
        if name == "UID":
            return str(s.uid)
        if name == "GID":
            return str(s.gid)
        who, _, what = name.partition("_")
        if who in ("NODE", "LEAF") and what in ("ALIAS", "NAME", "PATH", "INFO"):
            return (node if who == "NODE" else s.leaf).builtin(what)
        base = node.path.rstrip("/")
        return {"REDNODE_CONF": f"{base}/etc/redpak.yaml",
                "REDNODE_ADMIN": f"{base}/etc/redpak-admin.yaml",
                "REDNODE_STATUS": f"{base}/.rednode.yaml",
                "REDNODE_VARDIR": f"{base}/var/lib/rpm",
                "REDNODE_REPODIR": f"{base}/etc/yum.repos.d",
                "REDNODE_LOCK": f"{base}/.rpm.lock"}.get(name)

    def _lookup(self, name: str, where: tuple[str, str, int]) -> str:
        if name in _FIXED:
            if name in _PER_NODE:
                value = self._names.get(name)
                if value is None:
                    value = self._names[name] = self._fixed(name)
            else:
                value = self._fixed(name)
            if value is not None:
                return value
        s = self._s
        if name in s.definitions:
            return self._definition(s.definitions[name], where)
        return self._outer(name)

    def _outer(self, name: str) -> str:
        """The value of NAME outside the family's definitions: the caller's environment,
        else redpak's default, else empty."""
        s = self._s
        if name in s.environ:
            s.used_env[name] = s.environ[name]
            return s.environ[name]
        s.used_env.setdefault(name, None)
        return _defaults(s.templates_dir).get(name, "")

    def _definition(self, d: Definition, where: tuple[str, str, int]) -> str:
        s = self._s
        if d.static:
            return d.value
        if d.key in s.memo:
            return s.memo[d.key]
        if s.resolving and s.resolving[-1] == d.key:
            # A value using its own name means the enclosing scope's value, as in a shell
            # (PATH: $PATH:/x, NODE_PREFIX: ($NODE_PREFIX)).
            return self._outer(d.key)
        if d.key in s.resolving:
            chain = " -> ".join(s.resolving[s.resolving.index(d.key):] + [d.key])
            raise ExpandError(f"{_where(d.file, d.line)}: environ {d.key}: variable {d.key} "
                              f"refers to itself ({chain}) (break the cycle: a value may use "
                              f"its own name for the enclosing value, not go round through "
                              f"other definitions)")
        s.resolving.append(d.key)
        try:
            value = self.with_node(d.node)._expand(d.value, f"environ {d.key}", d.file, d.line)
        finally:
            s.resolving.pop()
        s.memo[d.key] = value
        return value

    def _expand(self, text: str, key: str, file: str, line: int) -> str:
        where = (key, file, line)
        if "\\" not in text and "$(" not in text and "${" not in text:
            # the common case, plain $NAME references: one regex pass
            return _PLAIN_VAR.sub(lambda m: self._lookup(m.group(1), where), text)
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            j = _next_special(text, i)
            out.append(text[i:j])
            i = j
            if i >= n:
                break
            if text[i] == "\\":  # only "\$" reaches here
                out.append("$")
                i += 2
                continue
            nxt = text[i + 1] if i + 1 < n else ""
            if nxt == "{":
                close = text.find("}", i + 2)
                if close < 0:
                    raise ExpandError(f"{_where(file, line)}: {key}: unterminated ${{ in "
                                      f"{text!r} (close it with }}, or write \\$ for a $)")
                name = text[i + 2:close]
                if not _NAME.fullmatch(name):
                    raise ExpandError(f"{_where(file, line)}: {key}: '${{{name}}}' is not a "
                                      "variable name (letters, digits and _ only)")
                out.append(self._lookup(name, where))
                i = close + 1
            elif nxt == "(":
                close = _matching_paren(text, i + 1)
                if close < 0:
                    raise ExpandError(f"{_where(file, line)}: {key}: unterminated $( in "
                                      f"{text!r} (close it with ), or write \\$ for a $)")
                out.append(self._run(text[i + 2:close], where))
                i = close + 1
            else:
                m = _NAME.match(text, i + 1)
                if m:
                    out.append(self._lookup(m.group(), where))
                    i = m.end()
                else:
                    out.append("$")
                    i += 1
        return "".join(out)

    def _command_env(self) -> dict[str, str]:
        s = self._s
        env = dict(_defaults(s.templates_dir))
        env.update(s.environ)
        for name in _FIXED:
            if name not in _VOLATILE:
                env[name] = self._fixed(name) or ""
        env["PID"] = str(s.pid)
        return env

    def _run(self, command: str, where: tuple[str, str, int]) -> str:
        import subprocess  # only configs with $(command) pay for it

        key, file, line = where
        s = self._s
        s.volatile = True
        if not s.run_commands:
            return f"$({command})"
        prefix = f"{_where(file, line)}: {key}: command `{command}`"
        # Never more privileged than whoever can change the config (the node's owner):
        # root runs it as that owner; another user's command is refused.
        ids: dict[str, Any] = {}
        owner = self.node.owner
        if owner not in (None, 0, os.geteuid()):
            if os.geteuid() != 0:
                raise ExpandError(f"{prefix}: refused, the node '{self.node.alias}' belongs "
                                  f"to uid {owner}, who could make you run anything (launch "
                                  "it as its owner, or have root own the node)")
            ids = {"user": owner, "group": self.node.group, "extra_groups": []}
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=self._command_env(), start_new_session=True,
                                    close_fds=True, **ids)
        except OSError as err:
            raise ExpandError(f"{prefix} could not start: {err.strerror}") from err
        try:
            out, err = proc.communicate(timeout=s.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ExpandError(f"{prefix} timed out after {s.timeout:g} s (make it finish "
                              "sooner, or compute the value another way)") from None
        if proc.returncode != 0:
            first = err.decode("utf-8", "replace").strip().splitlines()
            how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
                   else f"failed with status {proc.returncode}")
            raise ExpandError(f"{prefix} {how}" + (f": {first[0]}" if first else ""))
        return out.decode("utf-8", "surrogateescape").rstrip("\n")


def _kill_group(proc: Any) -> None:
    """Kill the command (a subprocess.Popen) and everything it started in its session
    (its process group), before reaping it so its pid cannot be reused meanwhile."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _where(file: str, line: int) -> str:
    return f"{file}:{line}" if line else file


def _next_special(text: str, i: int) -> int:
    """Index of the next '$' or '\\$' at or after i (len(text) if none)."""
    j = text.find("$", i)
    if j < 0:
        return len(text)
    return j - 1 if j > i and text[j - 1] == "\\" else j


def _matching_paren(text: str, open_at: int) -> int:
    """Index of the ')' closing the '(' at open_at, skipping quoted text; -1 if none."""
    depth, i, quote = 0, open_at, ""
    while i < len(text):
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
        elif c == "\\":
            i += 1
        elif quote == '"':
            if c == '"':
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


# ---------------------------------------------------------------------------------------


_STRING_SETTINGS = ("hostname", "chdir", "rpmdir", "persistdir", "cachedir", "cgrouproot",
                    "smack", "set_user", "set_group")
_PATH_SETTINGS = frozenset({"chdir", "rpmdir", "persistdir", "cachedir", "cgrouproot"})
IDENTITY_SETTINGS = ("set_user", "set_group")
"""Expanded with the caller's identity, before the launch identity ($UID) is known."""

_SHARE_FIELDS = ("share_all",) + tuple(f"share_{ns}" for ns in NAMESPACES)


def _with(obj: Any, **changes: Any) -> Any:
    """A shallow copy of a frozen record with some fields changed: what record.replace
    does, without re-running __init__ (a hot path of every launch)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__, **changes)
    return new


def definitions_of(standing: Mapping[str, tuple[EnvEntry, Origin]],
                   nodes: Iterable[Node]) -> list[Definition]:
    """Variable definitions from the family's standing environ entries (Default: expanded
    in their node's context; Static: verbatim)."""
    by_path = {n.path: n for n in nodes}
    return [Definition(env.key, env.value or "", env.mode is EnvMode.STATIC,
                       by_path[origin.path], origin.file, origin.line)
            for env, origin in standing.values()
            if env.mode in (EnvMode.DEFAULT, EnvMode.STATIC)]


def expand_config(ctx: ExpansionContext, cfg: NodeConfig,
                  standing: Mapping[str, tuple[EnvEntry, Origin]],
                  preset: Mapping[tuple[str, str], str] | None = None,
                  only: tuple[str, ...] | None = None) -> NodeConfig:
    """One config file of ctx's node with every expandable string expanded in that node's
    context. preset holds values already expanded ((file, field) -> value); with `only`,
    just those settings are expanded. Raises ExpandError naming file, line and key."""
    file = cfg.file
    st = cfg.settings
    lines = st.lines
    names, lookup, nowhere = ctx._names, ctx._lookup, ("", file, 0)

    def var(m: re.Match[str]) -> str:
        value = names.get(m.group(1))     # this node's built-ins, once looked up
        return value if value is not None else lookup(m.group(1), nowhere)

    def expand(text: str, key: str, line: int) -> str:
        if "\\" in text or "$(" in text or "${" in text:
            return ctx._expand(text, key, file, line)
        return _PLAIN_VAR.sub(var, text)  # only plain $NAME: no error is possible

    def ex(text: str, key: str, line: int) -> str:
        return expand(text, key, line) if "$" in text else text

    def ex_path(text: str, key: str, line: int) -> str:
        if "$" not in text:
            return text             # checked at load
        value = expand(text, key, line)
        if value.isascii() and value.isprintable() and "proc" not in value \
                and "dev" not in value:
            return value
        problem = path_problem(value)
        if problem is not None:
            raise ExpandError(f"{_where(file, line)}: {key}: '{text}' expands to a value "
                              f"that is no path key's: {problem}")
        return value

    changes: dict[str, Any] = {}
    for name in only or _STRING_SETTINGS:
        value = getattr(st, name)
        if value is None:
            continue
        if preset is not None and (file, name) in preset:
            changes[name] = preset[(file, name)]
        else:
            how = ex_path if name in _PATH_SETTINGS else ex
            changes[name] = how(value, yaml_key(name), lines.get(name, 0))
    if only is not None:
        return _with(cfg, settings=_with(st, **changes))
    for name in ("path", "ldpath"):
        value = getattr(st, name)
        if value:
            changes[name] = tuple(ex_path(p, f"{name} entry '{p}'", lines.get(name, 0))
                                  for p in value)
    for name in _SHARE_FIELDS:
        sv = getattr(st, name)
        if sv is not None and sv.state is Share.JOIN:
            changes[name] = _with(
                sv, path=ex(sv.path, name, sv.line or lines.get(name, 0)))
    exports = []
    for i, e in enumerate(cfg.exports):
        if "$" not in e.mount and (e.path is None or "$" not in e.path):
            exports.append(e)
            continue
        path = e.path
        if path is not None:
            how = ex_path if e.mode in HOST_PATH_MODES else ex
            path = how(path, f"exports[{i}].path", e.line)
        exports.append(_with(e, mount=ex_path(e.mount, f"exports[{i}].mount", e.line),
                             path=path))
    environ = []
    for env in cfg.environ:
        mine = standing.get(env.key)
        if mine is not None and mine[1].file == file and mine[0] is env:
            if env.mode is EnvMode.DEFAULT:
                env = _with(env, value=ctx.definition_value(env.key))
            elif env.mode is EnvMode.STATIC and env.value is None:
                env = _with(env, value="")
        environ.append(env)
    return _with(cfg, settings=_with(st, **changes), exports=tuple(exports),
                 environ=tuple(environ))


def expand_node(ctx: ExpansionContext, node: Node, admin: bool,
                standing: Mapping[str, tuple[EnvEntry, Origin]],
                preset: Mapping[tuple[str, str], str] | None = None) -> Node:
    """NODE with its config (and admin config in admin mode) expanded in its own context:
    $NODE_* is NODE, $LEAF_* the leaf of ctx. Raises ExpandError."""
    here = ctx.with_node(node)
    config = expand_config(here, node.config, standing, preset)
    extra = node.admin
    if admin and node.admin is not None:
        extra = expand_config(here, node.admin, standing, preset)
    return _with(node, config=config, admin=extra)


@record(frozen=True)
class ExpandedFamily:
    """A FamilyConfig merged from expanded nodes (family.expanded is True), and what the
    expansion depended on."""

    family: FamilyConfig
    used_env: Mapping[str, str | None] = field(default_factory=dict, hash=False)
    volatile: bool = False

    def to_dict(self, origins: bool = True) -> dict[str, Any]:
        """Plain dict for `redconf mergeconfig --expand`."""
        return self.family.to_dict(origins)


def expansion_context(nodes: Sequence[Node], admin: bool, environ: Mapping[str, str],
                      uid: int, gid: int, pid: int, templates_dir: str | None,
                      command_timeout: float, run_commands: bool
                      ) -> tuple[ExpansionContext, dict]:
    """The leaf's expansion context and the family's standing environment."""
    standing = standing_environ(nodes, admin)
    leaf = nodes[-1]
    ctx = ExpansionContext(leaf, leaf, environ, uid, gid, pid, command_timeout,
                           templates_dir=templates_dir,
                           definitions=definitions_of(standing, nodes),
                           run_commands=run_commands)
    return ctx, standing


def expand_merge(nodes: Sequence[Node], admin: bool, ctx: ExpansionContext,
                 standing: dict, preset: Mapping[tuple[str, str], str] | None
                 ) -> ExpandedFamily:
    """Each node expanded in its own context, then merged on the expanded values."""
    expanded = [expand_node(ctx, node, admin, standing, preset) for node in nodes]
    fam = merge_family(expanded, admin=admin, expanded=True)
    return ExpandedFamily(fam, ctx.used_env, ctx.volatile)


def family_config(nodes: Sequence[Node], admin: bool, environ: Mapping[str, str], uid: int,
                  gid: int, pid: int, *, templates_dir: str | None = None,
                  command_timeout: float = DEFAULT_TIMEOUT, run_commands: bool = True
                  ) -> ExpandedFamily:
    """Expand every node of a loaded family in its own context ($UID/$GID: uid/gid), then
    merge: the family's FamilyConfig (the expand and merge steps of build.py's pipeline).
    Raises NodeError, ExpandError, MergeError."""
    nodes = tuple(nodes)
    if not nodes:
        return ExpandedFamily(merge_family(nodes, admin))   # raises NodeError
    ctx, standing = expansion_context(nodes, admin, environ, uid, gid, pid, templates_dir,
                                      command_timeout, run_commands)
    return expand_merge(nodes, admin, ctx, standing, None)


def expand_family(family: FamilyConfig, environ: Mapping[str, str], uid: int, gid: int,
                  pid: int, *, templates_dir: str | None = None,
                  command_timeout: float = DEFAULT_TIMEOUT,
                  run_commands: bool = True) -> ExpandedFamily:
    """The family of an (unexpanded) FamilyConfig expanded node by node and merged again
    (family_config), for callers holding a merged family. Raises ExpandError,
    MergeError."""
    return family_config(family.nodes, family.admin, environ, uid, gid, pid,
                         templates_dir=templates_dir, command_timeout=command_timeout,
                         run_commands=run_commands)


__all__ = ["DEFAULT_TIMEOUT", "Definition", "ExpandedFamily", "ExpansionContext",
           "default_templates_dir", "definitions_of", "expand_config", "expand_family",
           "expand_merge", "expand_node", "expansion_context", "family_config"]
