"""Reading node YAML files: the only code that parses YAML or knows the config schema (SPEC §2).

YAML is streamed as libyaml events, never composed or typed by PyYAML: each value keeps its
raw text and line, is typed by the schema tables below, and bombs are refused while streaming.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from .errors import ConfigError
from .model import (
    NAMESPACES,
    Capability,
    CgroupSettings,
    EnvEntry,
    EnvMode,
    Export,
    ExportMode,
    LandlockSettings,
    NodeConfig,
    SeccompSettings,
    Settings,
    Share,
    ShareValue,
    Tristate,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~2 ms to import and is not needed at run time
    from typing import Any, Callable

MAX_BYTES = 1 << 20
"""Largest YAML file accepted (1 MiB)."""

MAX_DEPTH = 64
"""Deepest nesting of mappings/lists accepted."""

CAPABILITY_NAMES: tuple[str, ...] = (
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
    "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable",
    "cap_net_bind_service", "cap_net_broadcast", "cap_net_admin", "cap_net_raw",
    "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot",
    "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
    "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
    "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override",
    "cap_mac_admin", "cap_syslog", "cap_wake_alarm", "cap_block_suspend", "cap_audit_read",
    "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
)
"""Linux capability names; the index of a name is its capability number."""


# --------------------------------------------------------------------------- schema (data)

@dataclass(frozen=True)
class Key:
    """One YAML key of the schema: canonical spelling, model field it fills, value kind."""

    name: str
    field: str | None       # None: obsolete key, accepted with a warning
    kind: str               # a key of KINDS
    required: bool = False


KINDS: dict[str, str] = {
    # kind -> what a value must look like; used in messages and docs
    "string": "a string",
    "alias": "an alias made of letters, digits and + - _ @ :",
    "bool": "a bool (true/false)",
    "int": "a non-negative integer",
    "octal": "an octal umask such as 027",
    "pathlist": "a colon-separated string or a list of strings",
    "share": "enabled, disabled, unset or an absolute namespace path",
    "share_all": "enabled, disabled or unset",
    "tristate": "enabled, disabled or unset",
    "capabilities": "a list of {cap, add} mappings",
    "cap": "a capability name such as cap_net_admin, or all",
    "cgroups": "a mapping of cgroup controllers (cpuset, mem, cpu, io, pids)",
    "seccomp": "a mapping {profile, deny, allow, errno}",
    "landlock": "a mapping {enabled} or a bool",
    "obsolete": "anything (obsolete, ignored)",
    "export_mode": "an export mode",
    "env_mode": "an environ mode",
    "env_key": "a variable name ([A-Za-z_][A-Za-z0-9_]*)",
    "cpulist": "a CPU/node list such as 0-3,5",
    "partition": "member, root or isolated",
    "size": "max or an integer with an optional K/M/G/T suffix",
    "cpu_weight": "an integer from 1 to 10000",
    "weight_nice": "an integer from -20 to 19",
    "cpu_max": "max or QUOTA [PERIOD] in microseconds",
    "pids_max": "max or an integer",
    "io_weight": "N, 'default N' or 'MAJ:MIN N' (N from 1 to 10000), one per line",
    "io_max": "'MAJ:MIN rbps=N wbps=N riops=N wiops=N' (N an integer or max), one per line",
    "profile": "default or none",
    "syscalls": "a list of syscall names",
    "errno": "an errno name such as EPERM, or a number",
}


def _table(*keys: Key) -> dict[str, Key]:
    return {k.name: k for k in keys}


HEADERS = _table(
    Key("alias", "alias", "alias", required=True),
    Key("name", "name", "string"),
    Key("info", "info", "string"),
)

CONFIG = _table(
    Key("path", "path", "pathlist"),
    Key("ldpath", "ldpath", "pathlist"),
    Key("rpmdir", "rpmdir", "string"),
    Key("persistdir", "persistdir", "string"),
    Key("cachedir", "cachedir", "string"),
    Key("gpgcheck", "gpgcheck", "bool"),
    Key("pkg-devices", "pkg_devices", "bool"),     # redwrap-dnf: device nodes allowed
    Key("verbose", "verbose", "int"),
    Key("umask", "umask", "octal"),
    Key("hostname", "hostname", "string"),
    Key("chdir", "chdir", "string"),
    Key("set-user", "set_user", "string"),
    Key("set-group", "set_group", "string"),
    Key("smack", "smack", "string"),
    Key("smack-optional", "smack_optional", "bool"),
    Key("capabilities", "capabilities", "capabilities"),
    Key("share_all", "share_all", "share_all"),
    *(Key(f"share_{ns}", f"share_{ns}", "share") for ns in NAMESPACES),
    Key("die-with-parent", "die_with_parent", "tristate"),
    Key("new-session", "new_session", "tristate"),
    Key("map-root-user", "map_root_user", "bool"),
    Key("inherit-env", "inherit_env", "bool"),
    Key("cgrouproot", "cgrouproot", "string"),
    Key("cgroups", "cgroups", "cgroups"),
    Key("seccomp", "seccomp", "seccomp"),
    Key("landlock", "landlock", "landlock"),
    Key("unsafe", "unsafe", "bool"),
    Key("maxage", None, "obsolete"),
    Key("inherit", None, "obsolete"),
)

EXPORT = _table(
    Key("mode", "mode", "export_mode", required=True),
    Key("mount", "mount", "string", required=True),
    Key("path", "path", "string"),
    Key("info", "info", "string"),
    Key("warn", "warn", "string"),
)

ENVIRON = _table(
    Key("key", "key", "env_key", required=True),
    Key("value", "value", "string"),
    Key("mode", "mode", "env_mode"),
    Key("info", "info", "string"),
    Key("warn", "warn", "string"),
)

CAPABILITY = _table(
    Key("cap", "cap", "cap", required=True),
    Key("add", "add", "bool", required=True),
)

CGROUPS: dict[str, dict[str, Key]] = {
    "cpuset": _table(
        Key("cpus", "cpuset_cpus", "cpulist"),
        Key("mems", "cpuset_mems", "cpulist"),
        Key("cpus_partition", "cpuset_cpus_partition", "partition"),
    ),
    "mem": _table(
        Key("min", "mem_min", "size"),
        Key("low", "mem_low", "size"),
        Key("high", "mem_high", "size"),
        Key("max", "mem_max", "size"),
        Key("oom_group", "mem_oom_group", "bool"),
        Key("swap_high", "mem_swap_high", "size"),
        Key("swap_max", "mem_swap_max", "size"),
    ),
    "cpu": _table(
        Key("weight", "cpu_weight", "cpu_weight"),
        Key("weight_nice", "cpu_weight_nice", "weight_nice"),
        Key("max", "cpu_max", "cpu_max"),
    ),
    "io": _table(
        Key("weight", "io_weight", "io_weight"),
        Key("max", "io_max", "io_max"),
    ),
    "pids": _table(
        Key("max", "pids_max", "pids_max"),
    ),
}

SECCOMP = _table(
    Key("profile", "profile", "profile"),
    Key("deny", "deny", "syscalls"),
    Key("allow", "allow", "syscalls"),
    Key("errno", "errno", "errno"),
)

LANDLOCK = _table(
    Key("enabled", "enabled", "bool"),
)

TOP = ("headers", "config", "exports", "environ")
"""Top-level sections; only headers is required."""

SCHEMA: dict[str, dict[str, Key]] = {
    "headers": HEADERS,
    "config": CONFIG,
    "exports[]": EXPORT,
    "environ[]": ENVIRON,
    "config.capabilities[]": CAPABILITY,
    **{f"config.cgroups.{name}": table for name, table in CGROUPS.items()},
    "config.seccomp": SECCOMP,
    "config.landlock": LANDLOCK,
}
"""Every mapping of the schema by its key path: the single source for messages and docs."""

_BOOLS = {
    "true": True, "yes": True, "on": True, "1": True, "enabled": True,
    "false": False, "no": False, "off": False, "0": False, "disabled": False,
}
_TRISTATES = {"enabled": Tristate.ENABLED, "disabled": Tristate.DISABLED,
              "unset": Tristate.UNSET}
_SHARES = {"enabled": Share.ENABLED, "disabled": Share.DISABLED, "unset": Share.UNSET}
_EXPORT_MODES = {m.value.lower(): m for m in ExportMode}
_EXPORT_MODE_NAMES = tuple(m.value for m in ExportMode)
_ENV_MODES = {m.value.lower(): m for m in EnvMode}
_ENV_MODE_NAMES = tuple(m.value for m in EnvMode)
_CAPS = frozenset(CAPABILITY_NAMES)
_PARTITIONS = ("member", "root", "isolated")
_PROFILES = ("default", "none")

_ALIAS_RE = re.compile(r"[A-Za-z0-9+\-_@:]+")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_OCTAL_RE = re.compile(r"(?:0o)?([0-7]{1,4})", re.I)
_SIZE_RE = re.compile(r"([0-9]+)([KMGT]?)", re.I)
_CPULIST_RE = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")
_IO_WEIGHT_RE = re.compile(r"(default|[0-9]+:[0-9]+)\s+([0-9]+)", re.I)
_IO_MAX_RE = re.compile(r"[0-9]+:[0-9]+(?:\s+(?:rbps|wbps|riops|wiops)=(?:[0-9]+|max))+", re.I)
_SYSCALL_RE = re.compile(r"[a-z0-9_]+")
_ERRNO_RE = re.compile(r"E[A-Z0-9]+")

_SCALAR, _SEQ, _MAP = 0, 1, 2
_KIND_NAMES = ("a scalar", "a list", "a mapping")


# --------------------------------------------------------------------------- reading files

def _read_limited(path: str, max_bytes: int) -> bytes:
    """Read a regular file of at most max_bytes; raises ConfigError."""
    try:
        # O_NONBLOCK: opening a FIFO planted as a config must not hang the launcher.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        raise ConfigError(path, "", f"cannot open: {err.strerror}",
                          "check that the file exists and is readable") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(path, "", "not a regular file", "a config must be a plain file")
        if st.st_size > max_bytes:
            raise ConfigError(path, "", f"file is {st.st_size} bytes, over the "
                              f"{max_bytes}-byte limit", "configs are small: check the file")
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as err:
        raise ConfigError(path, "", f"cannot read: {err.strerror}") from err
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise ConfigError(path, "", f"file is over the {max_bytes}-byte limit",
                          "configs are small: check the file")
    return data


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    """Read and validate one node config file (normal or admin); raises ConfigError."""
    file = os.fspath(path)
    return parse_config(_read_limited(file, MAX_BYTES), file)


def parse_config(text: bytes, path: str) -> NodeConfig:
    """Validate one node config given as bytes; path only names it in messages.

    Raises ConfigError.
    """
    if len(text) > MAX_BYTES:
        raise ConfigError(path, "", f"file is {len(text)} bytes, over the {MAX_BYTES}-byte "
                          "limit", "configs are small: check the file")
    root = _compose(text, path)
    return _Validator(path).node_config(root)


def load_yaml_mapping(path: str | os.PathLike[str], max_bytes: int = MAX_BYTES
                      ) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a small YAML mapping safely (status files); raises ConfigError.

    Returns (data, lines): keys lower-cased, scalars as raw text (None for an empty
    value), lists and mappings as list/dict, and the line of each top-level key.
    """
    file = os.fspath(path)
    return parse_yaml_mapping(_read_limited(file, max_bytes), file)


def parse_yaml_mapping(text: bytes, path: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Same as load_yaml_mapping, from bytes; raises ConfigError."""
    if len(text) > MAX_BYTES:
        raise ConfigError(path, "", f"file is {len(text)} bytes, over the {MAX_BYTES}-byte "
                          "limit", "check the file")
    root = _compose(text, path)
    if root.kind != _MAP:
        raise ConfigError(path, "", f"expected a mapping, got {_KIND_NAMES[root.kind]}",
                          "write key: value lines", root.line)
    data = {lk: _plain(node) for lk, (_raw, _line, node) in root.value.items()}
    lines = {lk: line for lk, (_raw, line, _node) in root.value.items()}
    return data, lines


def _plain(node: _Node) -> Any:
    if node.kind == _SCALAR:
        return None if node.plain and not node.value else node.value
    if node.kind == _SEQ:
        return [_plain(n) for n in node.value]
    return {lk: _plain(n) for lk, (_raw, _line, n) in node.value.items()}


# --------------------------------------------------------------------------- YAML events

class _Node:
    """A composed YAML node. Mappings hold {lower key: (key as written, key line, node)}."""

    __slots__ = ("kind", "value", "line", "plain")

    def __init__(self, kind: int, value: Any, line: int, plain: bool):
        self.kind, self.value, self.line, self.plain = kind, value, line, plain


class _Yaml:
    """PyYAML's parser and event classes, imported on first use (yaml costs ~15 ms)."""

    loaded = False

    @classmethod
    def load(cls) -> type[_Yaml]:
        if not cls.loaded:
            import yaml
            from yaml import events

            try:
                from yaml._yaml import CParser
                cls.parser, cls.c_parser = CParser, True
            except ImportError:  # no libyaml: the pure-Python parser streams events too
                cls.parser, cls.c_parser = yaml.SafeLoader, False
            cls.YAMLError, cls.MarkedYAMLError = yaml.YAMLError, yaml.MarkedYAMLError
            cls.ReaderError = yaml.reader.ReaderError
            cls.Scalar, cls.Alias = events.ScalarEvent, events.AliasEvent
            cls.MapStart, cls.MapEnd = events.MappingStartEvent, events.MappingEndEvent
            cls.SeqStart, cls.SeqEnd = events.SequenceStartEvent, events.SequenceEndEvent
            cls.DocStart, cls.StreamEnd = events.DocumentStartEvent, events.StreamEndEvent
            cls.loaded = True
        return cls


def _stack_path(stack: list[list[Any]], limit: int = 8) -> str:
    """Key path of the position the composer is at, e.g. exports[2].mode."""
    parts = [frame[2] for frame in stack if frame[2] is not None]
    if stack:
        node, pending = stack[-1][0], stack[-1][1]
        if node.kind == _SEQ:
            parts.append(len(node.value))
        elif pending is not None:
            parts.append(pending[0])
    out = ""
    for part in parts[:limit]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out + ("..." if len(parts) > limit else "")


def _compose(data: bytes, file: str) -> _Node:
    """Check bytes and stream them into a _Node tree; raises ConfigError."""
    if not data.isascii():
        try:
            source: bytes | str = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise ConfigError(file, "", f"invalid UTF-8 at byte offset {err.start} "
                              f"(byte 0x{data[err.start]:02x})", "save the file as UTF-8",
                              line) from None
    else:
        source = data
    y = _Yaml.load()
    stack: list[list[Any]] = []
    parser = None
    try:
        # CParser takes the checked bytes as they are; the Python reader wants text.
        if y.c_parser:
            parser = y.parser(data)
        else:
            parser = y.parser(source if isinstance(source, str) else data.decode("ascii"))
        return _compose_events(parser, y, file, stack)
    except y.YAMLError as err:
        raise _yaml_error(err, y, data, source, file, _stack_path(stack)) from None
    finally:
        if parser is not None:
            parser.dispose()


def _yaml_error(err: Exception, y: type[_Yaml], data: bytes, source: bytes | str,
                file: str, key: str) -> ConfigError:
    if isinstance(err, y.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        where = f" at column {mark.column + 1}" if mark else ""
        hint = (err.context or "").strip() or "check indentation, colons and quoting"
        return ConfigError(file, key, f"invalid YAML{where}: {err.problem}", hint, line)
    if isinstance(err, y.ReaderError):
        # CParser reports byte offsets into `data`, the Python reader offsets into text.
        src = data if y.c_parser else source
        pos = min(err.position, len(src))
        line = src.count(b"\n" if isinstance(src, bytes) else "\n", 0, pos) + 1
        # libyaml decodes ahead of the parser: the current key path would be misleading.
        return ConfigError(file, "", f"invalid character #x{err.character:04x}: "
                           f"{err.reason}", "remove control characters", line)
    return ConfigError(file, key, f"invalid YAML: {err}")


def _compose_events(parser: Any, y: type[_Yaml], file: str, stack: list[list[Any]]) -> _Node:
    # Iterative on purpose: PyYAML's composer recurses (RecursionError on deep input) and
    # expands aliases; here anchors, aliases, tags and depth are refused as they stream by.
    # Frames are [collection node, pending key, label]: a pending key is (as written, lower,
    # line) and the label is the key or index the collection hangs from, for messages.
    get = parser.get_event
    get()                                   # StreamStart
    if type(get()) is y.StreamEnd:          # no document at all, only comments or nothing
        raise ConfigError(file, "", "file is empty", "a config needs at least headers: alias")
    Scalar, MapStart, SeqStart = y.Scalar, y.MapStart, y.SeqStart
    MapEnd, SeqEnd = y.MapEnd, y.SeqEnd
    frame: list[Any] | None = None
    while True:
        event = get()
        t = type(event)
        if t is Scalar:
            if event.anchor is not None or event.tag is not None:
                _refuse(event, file, stack)
            if frame is not None and frame[1] is None and frame[0].kind == _MAP:
                _add_key(frame, event, file, stack)
                continue
            node = _Node(_SCALAR, event.value, event.start_mark.line + 1, not event.style)
        elif t is MapEnd or t is SeqEnd:
            node = stack.pop()[0]
            if not stack:
                break
            frame = stack[-1]
            continue
        elif t is MapStart or t is SeqStart:
            if event.anchor is not None or event.tag is not None:
                _refuse(event, file, stack)
            line = event.start_mark.line + 1
            if frame is not None and frame[1] is None and frame[0].kind == _MAP:
                raise ConfigError(file, _stack_path(stack), "a key must be a plain word, not "
                                  + _KIND_NAMES[_MAP if t is MapStart else _SEQ],
                                  "write key: value", line)
            if len(stack) >= MAX_DEPTH:
                raise ConfigError(file, _stack_path(stack), f"nesting deeper than {MAX_DEPTH} "
                                  "levels", "flatten the document", line)
            node = _Node(_MAP, {}, line, False) if t is MapStart else _Node(_SEQ, [], line, False)
        elif t is y.Alias:
            raise ConfigError(file, _stack_path(stack), f"YAML alias '*{event.anchor}' is not "
                              "allowed", "write the value out in full",
                              event.start_mark.line + 1)
        else:
            raise ConfigError(file, _stack_path(stack), f"unexpected YAML event {t.__name__}",
                              "", event.start_mark.line + 1)
        if frame is None:
            if node.kind == _SCALAR:        # the whole document is one scalar
                break
            label: str | int | None = None
        elif frame[0].kind == _SEQ:
            label = len(frame[0].value)
            frame[0].value.append(node)
        else:
            label, lk, kline = frame[1]
            frame[0].value[lk] = (label, kline, node)
            frame[1] = None
        if node.kind != _SCALAR:
            frame = [node, None, label]
            stack.append(frame)
    get()                                   # DocumentEnd
    event = get()
    if type(event) is y.DocStart:
        raise ConfigError(file, "", "more than one YAML document in the file",
                          "remove the '---' separator and everything after it",
                          event.start_mark.line + 1)
    if node.kind == _SCALAR and node.plain and not node.value:
        raise ConfigError(file, "", "file is empty", "a config needs at least headers: alias")
    return node


def _refuse(event: Any, file: str, stack: list[list[Any]]) -> None:
    line = event.start_mark.line + 1
    if event.anchor is not None:
        raise ConfigError(file, _stack_path(stack), f"YAML anchor '&{event.anchor}' is not "
                          "allowed", "remove the anchor and write values out in full", line)
    raise ConfigError(file, _stack_path(stack), f"YAML tag '{event.tag}' is not allowed",
                      "remove the tag: redpak types values by key", line)


def _add_key(frame: list[Any], event: Any, file: str, stack: list[list[Any]]) -> None:
    raw = event.value
    line = event.start_mark.line + 1
    if raw == "<<" and not event.style:
        raise ConfigError(file, _stack_path(stack), "YAML merge keys (<<) are not allowed",
                          "write the keys out in full", line)
    lk = raw.lower()
    frame[1] = (raw, lk, line)
    first = frame[0].value.get(lk)
    if first is not None:
        raise ConfigError(file, _stack_path(stack), f"duplicate key (first defined as "
                          f"'{first[0]}' at line {first[1]}, again as '{raw}' at line "
                          f"{line})", "keys are case-insensitive: keep only one", line)

# --------------------------------------------------------------------------- validation

def _suggest(word: str, choices: Any) -> str:
    """'did you mean X?' when close, else the list of valid choices."""
    import difflib

    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f"did you mean {by_lower[close[0]]}?"
    return "valid: " + ", ".join(by_lower.values())


class _Validator:
    """Turns a composed tree into a NodeConfig; every failure is a ConfigError."""

    def __init__(self, file: str):
        self.file = file
        self.warnings: list[str] = []

    def fail(self, key: str, line: int, problem: str, hint: str = "") -> ConfigError:
        return ConfigError(self.file, key, problem, hint, line)

    # -- structure

    def node_config(self, root: _Node) -> NodeConfig:
        if root.kind != _MAP:
            raise self.fail("", root.line, "the document must be a mapping, not "
                            + self.describe(root),
                            "start with headers: and config:, exports:, environ:")
        sections: dict[str, tuple[str, int, _Node]] = {}
        for lk, entry in root.value.items():
            if lk not in TOP:
                raise self.fail(entry[0], entry[1], f"unknown section '{entry[0]}'",
                                _suggest(entry[0], TOP))
            sections[lk] = entry
        if "headers" not in sections:
            raise self.fail("headers", root.line, "missing required section 'headers'",
                            "add headers: with an alias")
        _, line, node = sections["headers"]
        headers, _ = self.mapping(node, "headers", line, HEADERS)
        settings = Settings()
        if "config" in sections:
            _, line, node = sections["config"]
            fields, lines = self.mapping(node, "config", line, CONFIG)
            settings = Settings(**fields, lines=lines)
        exports = ()
        if "exports" in sections:
            exports = self.records(sections["exports"], "exports", EXPORT, Export, "export")
        environ = ()
        if "environ" in sections:
            environ = self.records(sections["environ"], "environ", ENVIRON, EnvEntry,
                                   "environ entry")
        return NodeConfig(file=self.file, settings=settings, exports=exports,
                          environ=environ, warnings=tuple(self.warnings), **headers)

    def mapping(self, node: _Node, path: str, line: int, table: dict[str, Key]
                ) -> tuple[dict[str, Any], dict[str, int]]:
        """Fields of one schema mapping and the line of each key set; a null is empty."""
        fields: dict[str, Any] = {}
        lines: dict[str, int] = {}
        if node.kind == _SCALAR and node.plain and not node.value:
            items: Any = ()
        elif node.kind != _MAP:
            raise self.fail(path, node.line, f"expected a mapping, got "
                            f"{self.describe(node)}", "valid keys: " + ", ".join(table))
        else:
            items = node.value.items()
        for lk, (raw, kline, value) in items:
            key = table.get(lk)
            if key is None:
                raise self.fail(f"{path}.{raw}", kline, f"unknown key '{raw}'",
                                _suggest(raw, table))
            kpath = f"{path}.{key.name}"
            result = _PARSERS[key.kind](self, value, kpath, kline)
            if result is None:
                if key.required:
                    raise self.fail(kpath, kline, "a value is required",
                                    f"expected {KINDS[key.kind]}")
                continue
            fields[key.field] = result
            lines[key.field] = kline
        for key in table.values():
            if key.required and key.field not in fields:
                raise self.fail(path, node.line if node.kind == _MAP else line,
                                f"missing required key '{key.name}'",
                                f"add {key.name}: with {KINDS[key.kind]}")
        return fields, lines

    def records(self, entry: tuple[str, int, _Node], name: str, table: dict[str, Key],
                cls: type, what: str) -> tuple[Any, ...]:
        items = self.items(entry[2], name, f"a list of {what} mappings")
        out = []
        for i, item in enumerate(items):
            ipath = f"{name}[{i}]"
            if item.kind != _MAP:
                raise self.fail(ipath, item.line, f"expected an {what} mapping, got "
                                f"{self.describe(item)}", "keys: " + ", ".join(table))
            fields, _ = self.mapping(item, ipath, item.line, table)
            out.append(cls(**fields, line=item.line))
        return tuple(out)

    def items(self, node: _Node, path: str, expected: str) -> list[_Node]:
        if node.kind == _SCALAR and node.plain and not node.value:
            return []
        if node.kind != _SEQ:
            raise self.fail(path, node.line, f"expected {expected}, got {self.describe(node)}",
                            "write one '- ' item per line")
        return node.value

    @staticmethod
    def describe(node: _Node) -> str:
        if node.kind == _SCALAR:
            return "an empty value" if node.plain and not node.value else f"'{node.value}'"
        return _KIND_NAMES[node.kind]

    def text(self, node: _Node, path: str, kind: str) -> str | None:
        """Raw text of a scalar, None for an empty value; any other node is an error."""
        if node.kind != _SCALAR:
            raise self.fail(path, node.line, f"expected {KINDS[kind]}, got "
                            f"{_KIND_NAMES[node.kind]}")
        if node.plain and not node.value:
            return None
        return node.value

    def enum(self, node: _Node, path: str, kind: str, table: dict[str, Any],
             names: Any) -> Any:
        value = self.text(node, path, kind)
        if value is None:
            return None
        found = table.get(value.lower())
        if found is None:
            raise self.fail(path, node.line, f"'{value}' is not {KINDS[kind]}",
                            _suggest(value, names))
        return found

    def bad(self, node: _Node, path: str, kind: str, value: str, hint: str = "") -> ConfigError:
        return self.fail(path, node.line, f"expected {KINDS[kind]}, got '{value}'", hint)


# -- one parser per kind: (validator, value node, key path, key line) -> value or None

def _p_string(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    return v.text(node, path, "string")


def _p_alias(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    value = v.text(node, path, "alias")
    if value is not None and not _ALIAS_RE.fullmatch(value):
        raise v.fail(path, node.line, f"'{value}' is not a valid alias",
                     "use only letters, digits and + - _ @ :")
    return value


def _p_bool(v: _Validator, node: _Node, path: str, line: int) -> bool | None:
    value = v.text(node, path, "bool")
    if value is None:
        return None
    found = _BOOLS.get(value.lower())
    if found is None:
        raise v.bad(node, path, "bool", value, "write true or false")
    return found


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _p_int(v: _Validator, node: _Node, path: str, line: int) -> int | None:
    value = v.text(node, path, "int")
    if value is None:
        return None
    if not _INT_RE.fullmatch(value) or int(value) < 0:
        raise v.bad(node, path, "int", value)
    return int(value)


def _p_octal(v: _Validator, node: _Node, path: str, line: int) -> int | None:
    value = v.text(node, path, "octal")
    if value is None:
        return None
    m = _OCTAL_RE.fullmatch(value)
    if m is None or int(m[1], 8) > 0o777:
        raise v.bad(node, path, "octal", value, "digits 0-7, at most 0777")
    return int(m[1], 8)


def _p_pathlist(v: _Validator, node: _Node, path: str, line: int) -> tuple[str, ...] | None:
    if node.kind == _SEQ:
        out = []
        for i, item in enumerate(node.value):
            text = v.text(item, f"{path}[{i}]", "string")
            if not text:
                raise v.fail(f"{path}[{i}]", item.line, "empty path entry", "remove the entry")
            out.append(text)
        return tuple(out)
    value = v.text(node, path, "pathlist")
    if value is None:
        return None
    return tuple(p for p in value.split(":") if p)


def _share(v: _Validator, node: _Node, path: str, line: int, kind: str) -> ShareValue | None:
    value = v.text(node, path, kind)
    if value is None:
        return None
    state = _SHARES.get(value.lower())
    if state is not None:
        return ShareValue(state, line=line)
    if kind == "share" and value[:1] in ("/", "$"):
        return ShareValue(Share.JOIN, value, line=line)
    raise v.fail(path, node.line, f"'{value}' is not {KINDS[kind]}",
                 _suggest(value, ("enabled", "disabled", "unset")))


def _p_share(v: _Validator, node: _Node, path: str, line: int) -> ShareValue | None:
    return _share(v, node, path, line, "share")


def _p_share_all(v: _Validator, node: _Node, path: str, line: int) -> ShareValue | None:
    return _share(v, node, path, line, "share_all")


def _p_tristate(v: _Validator, node: _Node, path: str, line: int) -> Tristate | None:
    value = v.text(node, path, "tristate")
    if value is None:
        return None
    lower = value.lower()
    found = _TRISTATES.get(lower)
    if found is None:
        as_bool = _BOOLS.get(lower)
        if as_bool is None:
            raise v.fail(path, node.line, f"'{value}' is not {KINDS['tristate']}",
                         _suggest(value, _TRISTATES))
        found = Tristate.ENABLED if as_bool else Tristate.DISABLED
    return found


def _p_obsolete(v: _Validator, node: _Node, path: str, line: int) -> None:
    v.warnings.append(f"{v.file}:{line}: {path}: obsolete key, ignored (remove it)")
    return None


def _p_export_mode(v: _Validator, node: _Node, path: str, line: int) -> ExportMode | None:
    return v.enum(node, path, "export_mode", _EXPORT_MODES, _EXPORT_MODE_NAMES)


def _p_env_mode(v: _Validator, node: _Node, path: str, line: int) -> EnvMode | None:
    return v.enum(node, path, "env_mode", _ENV_MODES, _ENV_MODE_NAMES)


def _p_env_key(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    value = v.text(node, path, "env_key")
    if value is not None and not _ENV_KEY_RE.fullmatch(value):
        raise v.bad(node, path, "env_key", value)
    return value


def _p_cap(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    value = v.text(node, path, "cap")
    if value is None:
        return None
    name = value.lower()
    bare = name[4:] if name.startswith("cap_") else name
    if bare == "all":
        return "all"
    if "cap_" + bare not in _CAPS:
        raise v.fail(path, node.line, f"unknown capability '{value}'",
                     _suggest("cap_" + bare, CAPABILITY_NAMES))
    return "cap_" + bare


def _p_capabilities(v: _Validator, node: _Node, path: str, line: int
                    ) -> tuple[Capability, ...] | None:
    items = v.items(node, path, KINDS["capabilities"])
    seen: dict[str, int] = {}
    out = []
    for i, item in enumerate(items):
        ipath = f"{path}[{i}]"
        if item.kind != _MAP:
            raise v.fail(ipath, item.line, f"expected a {{cap, add}} mapping, got "
                         f"{v.describe(item)}", "write - {cap: cap_net_admin, add: 1}")
        fields, _ = v.mapping(item, ipath, item.line, CAPABILITY)
        cap = fields["cap"]
        if cap in seen:
            raise v.fail(f"{ipath}.cap", item.line, f"{cap} listed twice (first at line "
                         f"{seen[cap]})", "keep one entry per capability")
        seen[cap] = item.line
        out.append(Capability(cap, fields["add"], line=item.line))
    return tuple(out) if out else None


def _p_cgroups(v: _Validator, node: _Node, path: str, line: int) -> CgroupSettings | None:
    if node.kind == _SCALAR and node.plain and not node.value:
        return None
    if node.kind != _MAP:
        raise v.fail(path, node.line, f"expected {KINDS['cgroups']}, got {v.describe(node)}")
    flat: dict[str, Any] = {}
    for lk, (raw, kline, value) in node.value.items():
        table = CGROUPS.get(lk)
        if table is None:
            raise v.fail(f"{path}.{raw}", kline, f"unknown cgroup controller '{raw}'",
                         _suggest(raw, CGROUPS))
        fields, _ = v.mapping(value, f"{path}.{lk}", kline, table)
        flat.update(fields)
    return CgroupSettings(**flat, line=line)


def _p_cpulist(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    value = v.text(node, path, "cpulist")
    if value is None:
        return None
    compact = "".join(value.split())
    if not _CPULIST_RE.fullmatch(compact):
        raise v.bad(node, path, "cpulist", value)
    for part in compact.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise v.fail(path, node.line, f"range '{part}' is reversed", f"write {hi}-{lo}")
    return compact


def _p_partition(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    return v.enum(node, path, "partition", {p: p for p in _PARTITIONS}, _PARTITIONS)


def _p_size(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    value = v.text(node, path, "size")
    if value is None:
        return None
    if value.lower() == "max":
        return "max"
    m = _SIZE_RE.fullmatch(value)
    if m is None:
        raise v.bad(node, path, "size", value, "for example 64M or max")
    return m[1] + m[2].upper()


def _ranged(v: _Validator, node: _Node, path: str, kind: str, lo: int, hi: int) -> int | None:
    value = v.text(node, path, kind)
    if value is None:
        return None
    if not _INT_RE.fullmatch(value) or not lo <= int(value) <= hi:
        raise v.bad(node, path, kind, value)
    return int(value)


def _p_cpu_weight(v: _Validator, node: _Node, path: str, line: int) -> int | None:
    return _ranged(v, node, path, "cpu_weight", 1, 10000)


def _p_weight_nice(v: _Validator, node: _Node, path: str, line: int) -> int | None:
    return _ranged(v, node, path, "weight_nice", -20, 19)


def _p_cpu_max(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    value = v.text(node, path, "cpu_max")
    if value is None:
        return None
    parts = value.lower().split()
    ok = 1 <= len(parts) <= 2 and (parts[0] == "max" or _digits(parts[0])) \
        and all(_digits(p) for p in parts[1:])
    if not ok:
        raise v.bad(node, path, "cpu_max", value, "for example '50000 100000' or max")
    # Kernel bounds (sched/core.c): quota >= 1 ms, 1 ms <= period <= 1 s.
    if parts[0] != "max" and int(parts[0]) < 1000:
        raise v.fail(path, node.line, f"quota {parts[0]} is below 1000 microseconds")
    if len(parts) == 2 and not 1000 <= int(parts[1]) <= 1000000:
        raise v.fail(path, node.line, f"period {parts[1]} is outside 1000..1000000 "
                     "microseconds")
    return " ".join(parts)


def _p_pids_max(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    value = v.text(node, path, "pids_max")
    if value is None:
        return None
    if value.lower() == "max":
        return "max"
    if not _digits(value):
        raise v.bad(node, path, "pids_max", value)
    return str(int(value))


def _lines_of(v: _Validator, node: _Node, path: str, kind: str) -> list[str] | None:
    value = v.text(node, path, kind)
    if value is None:
        return None
    lines = [" ".join(ln.split()) for ln in value.splitlines()]
    return [ln for ln in lines if ln]


def _p_io_weight(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    entries = _lines_of(v, node, path, "io_weight")
    if entries is None:
        return None
    out = []
    for entry in entries:
        if _digits(entry) and len(entries) == 1:
            weight, entry = entry, f"default {entry}"
        else:
            m = _IO_WEIGHT_RE.fullmatch(entry)
            if m is None:
                raise v.bad(node, path, "io_weight", entry)
            weight, entry = m[2], f"{m[1].lower()} {m[2]}"
        if not 1 <= int(weight) <= 10000:
            raise v.bad(node, path, "io_weight", entry)
        out.append(entry)
    if not out:
        raise v.bad(node, path, "io_weight", "")
    return "\n".join(out)


def _p_io_max(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    entries = _lines_of(v, node, path, "io_max")
    if entries is None:
        return None
    for entry in entries:
        if not _IO_MAX_RE.fullmatch(entry):
            raise v.bad(node, path, "io_max", entry, "for example '8:0 rbps=1048576 wiops=120'")
    if not entries:
        raise v.bad(node, path, "io_max", "")
    return "\n".join(e.lower() for e in entries)


def _p_seccomp(v: _Validator, node: _Node, path: str, line: int) -> SeccompSettings | None:
    if node.kind == _SCALAR and node.plain and not node.value:
        return None
    fields, _ = v.mapping(node, path, line, SECCOMP)
    return SeccompSettings(**fields, line=line)


def _p_profile(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    return v.enum(node, path, "profile", {p: p for p in _PROFILES}, _PROFILES)


def _p_syscalls(v: _Validator, node: _Node, path: str, line: int) -> tuple[str, ...] | None:
    out = []
    for i, item in enumerate(v.items(node, path, KINDS["syscalls"])):
        ipath = f"{path}[{i}]"
        name = v.text(item, ipath, "string")
        if name is None or not _SYSCALL_RE.fullmatch(name.lower()):
            raise v.fail(ipath, item.line, f"'{name or ''}' is not a syscall name",
                         "lower-case letters, digits and _, e.g. keyctl")
        out.append(name.lower())
    return tuple(out)


def _p_errno(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    value = v.text(node, path, "errno")
    if value is None:
        return None
    if _digits(value) and 0 < int(value) < 4096:
        return str(int(value))
    if _ERRNO_RE.fullmatch(value.upper()):
        return value.upper()
    raise v.bad(node, path, "errno", value)


def _p_landlock(v: _Validator, node: _Node, path: str, line: int) -> LandlockSettings | None:
    if node.kind == _SCALAR:
        enabled = _p_bool(v, node, path, line)
        return None if enabled is None else LandlockSettings(enabled, line=line)
    fields, _ = v.mapping(node, path, line, LANDLOCK)
    return LandlockSettings(**fields, line=line)


_PARSERS: dict[str, Callable[[_Validator, _Node, str, int], Any]] = {
    "string": _p_string, "alias": _p_alias, "bool": _p_bool, "int": _p_int,
    "octal": _p_octal, "pathlist": _p_pathlist, "share": _p_share,
    "share_all": _p_share_all, "tristate": _p_tristate, "capabilities": _p_capabilities,
    "cap": _p_cap, "cgroups": _p_cgroups, "seccomp": _p_seccomp, "landlock": _p_landlock,
    "obsolete": _p_obsolete, "export_mode": _p_export_mode, "env_mode": _p_env_mode,
    "env_key": _p_env_key, "cpulist": _p_cpulist, "partition": _p_partition,
    "size": _p_size, "cpu_weight": _p_cpu_weight, "weight_nice": _p_weight_nice,
    "cpu_max": _p_cpu_max, "pids_max": _p_pids_max, "io_weight": _p_io_weight,
    "io_max": _p_io_max, "profile": _p_profile, "syscalls": _p_syscalls, "errno": _p_errno,
}
assert set(_PARSERS) == set(KINDS)
