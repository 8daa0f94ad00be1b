"""Reading node YAML files: the only code that parses YAML or knows the config schema (SPEC §2).

YAML is streamed as libyaml events, never composed or typed by PyYAML: each value keeps its
raw text and line, is typed by the schema tables below, and bombs are refused while streaming.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from .errors import ConfigError
from .model import (
    Capability,
    IO_LIMITS,
    CgroupSettings,
    CpuMax,
    CpuSet,
    EnvEntry,
    EnvMode,
    Export,
    ExportMode,
    IoMax,
    IoWeight,
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

from .schema import (  # noqa: E402  (the schema: keys, kinds, merge rules)
    CAPABILITY,
    CAPABILITY_NAMES,
    CGROUP_KEYS,
    CGROUPS,
    CONFIG,
    ENVIRON,
    EXPORT,
    HEADERS,
    KINDS,
    LANDLOCK,
    SECCOMP,
    TOP,
    Key,
)

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

_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Control characters (C0, DEL, C1) and bidi controls: refused in paths and keys."""

_MAGIC_RE = re.compile(r"/(?:proc/(?:self|thread-self|[0-9]+)(?:/task/[0-9]+)?/"
                       r"(?:fd|fdinfo|cwd|root|exe|map_files)|dev/fd|dev/std(?:in|out|err))"
                       r"(?:/|$)")
"""Paths through /proc magic links (a descriptor, cwd or root of some process): they can
lead outside the node (e.g. chdir: /proc/self/fd/9 with the caller holding fd 9 on /)."""


def unsafe_char(text: str) -> str | None:
    """The first control or bidi character of text, escaped for a message (else None)."""
    m = _UNSAFE_RE.search(text)
    return None if m is None else f"U+{ord(m.group()):04X}"


_PLAIN_BYTES = bytes(b for b in range(0x20, 0x7f) if b != ord("\\")) + b"\n\r"
"""Bytes through which no decoded value can hold a control or bidi character (printable
ASCII but the backslash of double-quoted escapes, and line ends): a file made of these
only needs no check per value (bytes.translate tells in one C pass)."""


def path_problem(text: str, chars: bool = True) -> str | None:
    """Why text cannot be a path key's value (control/bidi character unless chars is
    False, /proc magic link), else None. Also used on expanded values."""
    if chars:
        bad = unsafe_char(text)
        if bad is not None:
            return f"contains the control or bidi character {bad}"
    if ("proc" in text or "dev" in text) and \
            _MAGIC_RE.match("/" + os.path.normpath(text).lstrip("/")):
        return (f"'{text}' goes through a /proc (or /dev/fd) link to a process's "
                "descriptors, working directory or root, which can lead outside the node")
    return None


HOST_PATH_MODES = tuple(m for m in ExportMode if m.is_bind or m is ExportMode.LOCK)
"""Export modes whose `path` is a host path (checked like a path key). A tuple: `in`
matches members by identity in C, where a frozenset would call Enum.__hash__."""

_SCALAR, _SEQ, _MAP = 0, 1, 2
_KIND_NAMES = ("a scalar", "a list", "a mapping")


# --------------------------------------------------------------------------- reading files

def _read_limited(path: str, max_bytes: int, owners: tuple[int, ...] | None = None) -> bytes:
    """Read a regular file of at most max_bytes, once, from one O_NOFOLLOW descriptor.
    With owners, the file must belong to one of them and be writable by its owner only.
    Raises ConfigError."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if owners is not None:
        flags |= os.O_NOFOLLOW
    try:
        # O_NONBLOCK: opening a FIFO planted as a config must not hang the launcher.
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP and owners is not None:
            raise ConfigError(path, "", "is a symbolic link: refused (whoever controls "
                              "where it leads would choose the node's config)",
                              "replace the link with the file itself") from err
        raise ConfigError(path, "", f"cannot open: {err.strerror}",
                          "check that the file exists and is readable") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(path, "", "not a regular file", "a config must be a plain file")
        if owners is not None:
            _check_owner(path, st, owners)
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


def _check_owner(path: str, st: os.stat_result, owners: tuple[int, ...]) -> None:
    if st.st_mode & 0o022:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else \
            "its group" if st.st_mode & 0o020 else "everyone"
        raise ConfigError(path, "", f"is writable by {who} (mode {st.st_mode & 0o7777:04o}): "
                          "refused, anyone who can write it controls the node",
                          f"chmod go-w {path}")
    if st.st_uid not in owners:
        import pwd
        try:
            name = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            name = str(st.st_uid)
        allowed = " or ".join(sorted({"root" if u == 0 else str(u) for u in owners}))
        raise ConfigError(path, "", f"is owned by {name} (uid {st.st_uid}), neither root nor "
                          f"the node's owner: refused", f"chown it to {allowed}")


def load_config(path: str | os.PathLike[str], owners: tuple[int, ...] | None = None
                ) -> NodeConfig:
    """Read and validate one node config file (normal or admin); raises ConfigError.
    With owners (root and the node directory's owner), a symbolic link, a file writable
    by group or others, or one owned by anybody else is refused."""
    file = os.fspath(path)
    return parse_config(_read_limited(file, MAX_BYTES, owners), file)


def parse_config(text: bytes, path: str) -> NodeConfig:
    """Validate one node config given as bytes; path only names it in messages.

    Raises ConfigError.
    """
    if len(text) > MAX_BYTES:
        raise ConfigError(path, "", f"file is {len(text)} bytes, over the {MAX_BYTES}-byte "
                          "limit", "configs are small: check the file")
    check = bool(text.translate(None, _PLAIN_BYTES))
    root = _compose(text, path, check)
    return _Validator(path, check).node_config(root)


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
            # typed cgroup values are str subclasses: safe dumpers print them as their text
            # (redconf config --format yaml): the emitter takes exact strs only
            for dumper in {yaml.representer.SafeRepresenter, yaml.SafeDumper,
                           getattr(yaml, "CSafeDumper", yaml.SafeDumper)}:
                for typed in (CpuSet, CpuMax, IoWeight, IoMax):
                    dumper.add_representer(typed, _represent_text)
            cls.loaded = True
        return cls


def _represent_text(dumper: Any, value: str) -> Any:
    return dumper.represent_str(str(value))


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


def _compose(data: bytes, file: str, check: bool = True) -> _Node:
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
        return _compose_events(parser, y, file, stack, check)
    except y.YAMLError as err:
        raise (_tab_error(err, y, source, file, stack)
               or _yaml_error(err, y, data, source, file, _stack_path(stack))) from None
    finally:
        if parser is not None:
            parser.dispose()


def _tab_error(err: Exception, y: type[_Yaml], source: bytes | str, file: str,
               stack: list[list[Any]]) -> ConfigError | None:
    """The error for a line indented with a tab, naming that line and its key. PyYAML
    reports it while still composing the entry before it (the key path at hand is the
    previous key's), so the key is read from the line itself: a sibling of the pending
    key when that key has its value on the same line (`hostname: x`), else its child."""
    mark = getattr(err, "problem_mark", None) if isinstance(err, y.MarkedYAMLError) else None
    if mark is None:
        return None
    text = source.decode("utf-8") if isinstance(source, bytes) else source
    lines = text.split("\n")
    if mark.line >= len(lines):
        return None
    line = lines[mark.line]
    body = line.lstrip(" \t")
    rest = body[1:] if body[:1] == "-" else ""
    after_dash = rest[:len(rest) - len(rest.lstrip(" \t"))]     # `-<TAB>mode:` indents too
    if "\t" not in line[:len(line) - len(body)] and "\t" not in after_dash:
        return None
    item = body[:1] == "-" and (len(body) == 1 or body[1] in " \t")
    body = body[1:].lstrip(" \t") if item else body
    name = body.partition(":")[0].strip() if ":" in body else ""
    key = _stack_path(stack)
    if stack and stack[-1][1] is not None:       # a key waits for its value
        raw, _lower, key_line = stack[-1][1]
        after = lines[key_line - 1].partition(":")[2] if key_line <= len(lines) else ""
        after = after.split("#", 1)[0].strip()
        if after[:1] in ("|", ">"):              # a block scalar: the line is its text
            name = ""
        elif after:                              # `key: value`: the tab line is a sibling
            key = key[:len(key) - len(str(raw))].rstrip(".")
        elif item:                               # `key:` then a tab-indented `- item`
            key += "[0]"
    if name and name.isprintable() and " " not in name:
        key = f"{key}.{name}" if key else name
    return ConfigError(file, key, "tabs are not allowed for indentation, use spaces",
                       line=mark.line + 1)


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


def _compose_events(parser: Any, y: type[_Yaml], file: str, stack: list[list[Any]],
                    check: bool = True) -> _Node:
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
                _add_key(frame, event, file, stack, check)
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


def _add_key(frame: list[Any], event: Any, file: str, stack: list[list[Any]],
             check: bool = True) -> None:
    raw = event.value
    line = event.start_mark.line + 1
    if raw == "<<" and not event.style:
        raise ConfigError(file, _stack_path(stack), "YAML merge keys (<<) are not allowed",
                          "write the keys out in full", line)
    bad = unsafe_char(raw) if check else None
    if bad is not None:
        raise ConfigError(file, _stack_path(stack), f"a key contains the control or bidi "
                          f"character {bad}", "write keys in plain characters", line)
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

    def __init__(self, file: str, check: bool = True):
        self.file = file
        self.check = check        # the file may hold control or bidi characters
        self.warnings: list[str] = []

    def fail(self, key: str, line: int, problem: str, hint: str = "") -> ConfigError:
        return ConfigError(self.file, key, problem, hint, line)

    def check_path(self, value: str, key: str, line: int) -> None:
        if not self.check and "proc" not in value and "dev" not in value:
            return                  # the common case, decided without a call
        problem = path_problem(value, self.check)
        if problem is not None:
            raise self.fail(key, line, problem, "write a plain path inside the node")

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
            fields, lines = self.mapping(item, ipath, item.line, table)
            if cls is Export and fields["mode"] in HOST_PATH_MODES:
                source = fields.get("path")
                if source is not None and (self.check or "proc" in source or "dev" in source):
                    self.check_path(source, f"{ipath}.path", lines["path"])
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


def _p_path(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    if node.kind == _SCALAR and (node.value or not node.plain):
        value = node.value              # v.text()'s common case, inlined: a hot path
    else:
        value = v.text(node, path, "path")
        if value is None:
            return None
    if v.check or "proc" in value or "dev" in value:
        v.check_path(value, path, node.line)
    return value


def _p_export_path(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    value = v.text(node, path, "export_path")
    bad = None if value is None or not v.check else unsafe_char(value)
    if bad is not None:
        raise v.fail(path, node.line, f"contains the control or bidi character {bad}",
                     "remove it (write the path in plain characters)")
    return value


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
            v.check_path(text, f"{path}[{i}]", item.line)
            out.append(text)
        return tuple(out)
    value = v.text(node, path, "pathlist")
    if value is None:
        return None
    v.check_path(value, path, node.line)
    return tuple(p for p in value.split(":") if p)


def _share(v: _Validator, node: _Node, path: str, line: int, kind: str) -> ShareValue | None:
    value = v.text(node, path, kind)
    if value is None:
        return None
    state = _SHARES.get(value.lower())
    if state is not None:
        return ShareValue(state, line=line)
    if kind == "share" and value[:1] in ("/", "$"):
        bad = unsafe_char(value)
        if bad is not None:
            raise v.fail(path, node.line, f"contains the control or bidi character {bad}",
                         "write the namespace path in plain characters")
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


def parse_cpuset(text: str) -> CpuSet:
    """A cpuset list ('0-3, 5') typed: raises ValueError naming what is wrong."""
    compact = "".join(text.split())
    if not _CPULIST_RE.fullmatch(compact):
        raise ValueError(f"expected {KINDS['cpulist']}, got '{text}'")
    ids: set[int] = set()
    for part in compact.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise ValueError(f"range '{part}' is reversed (write {hi}-{lo})")
        ids.update(range(int(lo), int(hi or lo) + 1))
    return CpuSet.of(ids)


def _p_partition(v: _Validator, node: _Node, path: str, line: int) -> str | None:
    return v.enum(node, path, "partition", {p: p for p in _PARTITIONS}, _PARTITIONS)


def parse_size(text: str) -> int | str:
    """A size typed: bytes (binary units: 1K = 1024), or 'max'; raises ValueError."""
    if text.lower() == "max":
        return "max"
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"expected {KINDS['size']}, got '{text}' (for example 64M or max)")
    return int(m[1]) << (10 * " KMGT".index(m[2].upper() or " "))


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


def parse_cpu_max(text: str) -> CpuMax:
    """A cpu.max value ('50000 100000', '25000', 'max') typed, the period made explicit
    (the kernel's default, 100000); raises ValueError naming what is wrong."""
    parts = text.lower().split()
    ok = 1 <= len(parts) <= 2 and (parts[0] == "max" or _digits(parts[0])) \
        and all(_digits(p) for p in parts[1:])
    if not ok:
        raise ValueError(f"expected {KINDS['cpu_max']}, got '{text}' (for example "
                         "'50000 100000' or max)")
    # Kernel bounds (sched/core.c): quota >= 1 ms, 1 ms <= period <= 1 s.
    if parts[0] != "max" and int(parts[0]) < 1000:
        raise ValueError(f"quota {parts[0]} is below 1000 microseconds")
    if len(parts) == 2 and not 1000 <= int(parts[1]) <= 1000000:
        raise ValueError(f"period {parts[1]} is outside 1000..1000000 microseconds")
    return CpuMax.of(None if parts[0] == "max" else int(parts[0]),
                     int(parts[1]) if len(parts) == 2 else 100000)


def parse_count(text: str) -> int | str:
    """pids.max typed: an int or 'max'; raises ValueError."""
    if text.lower() == "max":
        return "max"
    if not _digits(text):
        raise ValueError(f"expected {KINDS['pids_max']}, got '{text}'")
    return int(text)


def _entries(text: str) -> list[str]:
    lines = [" ".join(ln.split()) for ln in text.splitlines()]
    return [ln for ln in lines if ln]


def parse_io_weight(text: str) -> IoWeight:
    """An io.weight value ('N', 'default N', 'MAJ:MIN N', one per line) typed as
    (device or 'default', weight) entries; raises ValueError naming the bad entry."""
    entries = _entries(text)
    out = []
    for entry in entries:
        if _digits(entry) and len(entries) == 1:
            dev, weight = "default", entry
        else:
            m = _IO_WEIGHT_RE.fullmatch(entry)
            if m is None:
                raise ValueError(f"expected {KINDS['io_weight']}, got '{entry}'")
            dev, weight = m[1].lower(), m[2]
        if not 1 <= int(weight) <= 10000:
            raise ValueError(f"expected {KINDS['io_weight']}, got '{entry}'")
        out.append((dev, int(weight)))
    if not out:
        raise ValueError(f"expected {KINDS['io_weight']}, got ''")
    return IoWeight.of(tuple(out))


def parse_io_max(text: str) -> IoMax:
    """An io.max value ('MAJ:MIN rbps=N wiops=max', one device per line) typed per device:
    limits are ints or 'max' (a device named twice: its limits combine, the later wins).
    Raises ValueError naming the bad entry."""
    entries = _entries(text)
    if not entries:
        raise ValueError(f"expected {KINDS['io_max']}, got ''")
    devices: dict[str, dict[str, int | str]] = {}
    for entry in entries:
        if not _IO_MAX_RE.fullmatch(entry):
            raise ValueError(f"expected {KINDS['io_max']}, got '{entry}' (for example "
                             "'8:0 rbps=1048576 wiops=120')")
        dev, *limits = entry.lower().split()
        mine = devices.setdefault(dev, {})
        for item in limits:
            key, _, value = item.partition("=")
            mine[key] = "max" if value == "max" else int(value)
    assert all(k in IO_LIMITS for d in devices.values() for k in d)
    return IoMax.of(devices)


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


_CG_TEXT: dict[str, Callable[[str], Any]] = {
    "cpulist": parse_cpuset, "size": parse_size, "cpu_max": parse_cpu_max,
    "pids_max": parse_count, "io_weight": parse_io_weight, "io_max": parse_io_max,
}
"""Kinds of cgroup values whose text is typed by a parse_* function (raising ValueError);
the other cgroup kinds are ints, bools or words."""


def _from_text(kind: str, parse: Callable[[str], Any]
               ) -> Callable[[_Validator, _Node, str, int], Any]:
    """The validator of a kind typed by parse: its ValueError becomes a ConfigError naming
    the file, key and line."""
    def parser(v: _Validator, node: _Node, path: str, line: int) -> Any:
        value = v.text(node, path, kind)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as err:
            raise v.fail(path, node.line, str(err)) from None
    return parser


_PARSERS: dict[str, Callable[[_Validator, _Node, str, int], Any]] = {
    "string": _p_string, "path": _p_path, "export_path": _p_export_path, "alias": _p_alias, "bool": _p_bool, "int": _p_int,
    "octal": _p_octal, "pathlist": _p_pathlist, "share": _p_share,
    "share_all": _p_share_all, "tristate": _p_tristate, "capabilities": _p_capabilities,
    "cap": _p_cap, "cgroups": _p_cgroups, "seccomp": _p_seccomp, "landlock": _p_landlock,
    "obsolete": _p_obsolete, "export_mode": _p_export_mode, "env_mode": _p_env_mode,
    "env_key": _p_env_key, "partition": _p_partition,
    "cpu_weight": _p_cpu_weight, "weight_nice": _p_weight_nice,
    "profile": _p_profile, "syscalls": _p_syscalls, "errno": _p_errno,
    **{kind: _from_text(kind, parse) for kind, parse in _CG_TEXT.items()},
}
assert set(_PARSERS) == set(KINDS)


def cgroup_settings(line: int = 0, **values: Any) -> CgroupSettings:
    """CgroupSettings built in code (API users, tests) from values written as in a config
    file, by field (cpuset_cpus='0-3', mem_max='64M', io_max='8:0 rbps=1024'), typed as
    load_config types them. Raises ValueError naming the field on a bad value."""
    typed: dict[str, Any] = {}
    for name, value in values.items():
        if name not in CGROUP_KEYS:
            raise ValueError(f"'{name}' is no cgroup setting")
        parse = _CG_TEXT.get(CGROUP_KEYS[name][1].kind)
        try:
            typed[name] = parse(value) if parse is not None and isinstance(value, str) \
                else value
        except ValueError as err:
            raise ValueError(f"cgroups.{CGROUP_KEYS[name][0]}: {err}") from None
    return CgroupSettings(**typed, line=line)
