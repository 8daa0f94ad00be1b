"""Helpers shared by redpak's command lines: error and warning printing, the top-level
guard that turns every failure into one message and an exit status, and output formats
(YAML, JSON, and human YAML annotated with comments). yaml/json load only when printing."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and dataclasses cost ~15 ms at start: not for `--help`
    from typing import Any

from redpak.errors import RedpakError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2          # argparse's own status for usage errors
EXIT_INTERRUPTED = 130


_UNSAFE = None


def escape_text(text: str, keep: str = "\n") -> str:
    """text with every control character (C0 but `keep`, DEL, C1) and bidi control escaped
    as \\xNN or \\uNNNN: config text printed on a terminal can neither move the cursor,
    change colours nor reorder what the reader sees."""
    global _UNSAFE
    if _UNSAFE is None:
        import re
        _UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e"
                             "\u2066-\u2069]")
    if _UNSAFE.search(text) is None:
        return text

    def esc(m: Any) -> str:
        c = m.group()
        if c in keep:
            return c
        return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"

    return _UNSAFE.sub(esc, text)


def escape_data(data: Any) -> Any:
    """data (from to_dict()) with every string escaped by escape_text (newlines too)."""
    if isinstance(data, str):
        return escape_text(data, keep="")
    if isinstance(data, dict):
        return {escape_data(k): escape_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [escape_data(v) for v in data]
    if isinstance(data, Annotated):
        return Annotated(escape_data(data.value), escape_text(data.comment, keep=""))
    return data


def print_error(prog: str, message: str) -> None:
    """Print `prog: message` on stderr (control and bidi characters escaped)."""
    print(f"{prog}: {escape_text(message)}", file=sys.stderr, flush=True)


def print_warning(message: str, level: str = "warning") -> None:
    """Print `warning: message` (or `LEVEL: message`) on stderr (control and bidi
    characters escaped)."""
    print(f"{level}: {escape_text(message)}", file=sys.stderr, flush=True)


def run_guarded(prog: str, func: Callable[[], int], verbose: bool = False) -> int:
    """Run a command body and return its exit status; never lets a traceback out.

    RedpakError and OSError (user errors: a bad config, a missing node, a permission) print
    their message and give 1, never a traceback, even with -v; any other exception is an
    internal error (1, traceback only when `verbose`); Ctrl-C gives 130.
    """
    try:
        status = func()
        sys.stdout.flush()
        return EXIT_OK if status is None else int(status)
    except SystemExit:
        raise
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): nothing to report, and stdout must not be
        # flushed again at exit or Python prints its own complaint.
        _silence_stdout()
        return EXIT_ERROR
    except KeyboardInterrupt:
        print_error(prog, "interrupted")
        return EXIT_INTERRUPTED
    except RedpakError as err:
        print_error(prog, str(err))
        return EXIT_ERROR
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print_error(prog, f"{where}{err.strerror or err}")
        return EXIT_ERROR
    except Exception as err:  # the CLI entry point is the one place allowed to catch all
        print_error(prog, f"internal error: {type(err).__name__}: {err}"
                    + ("" if verbose else " (run with -v for details)"))
        if verbose:
            import traceback
            traceback.print_exc(file=sys.stderr)
        return EXIT_ERROR


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------- formats

_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def to_json(data: Any) -> str:
    """Serialise plain data as indented JSON (with a final newline)."""
    import json
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_yaml(data: Any) -> str:
    """Serialise plain data as block-style YAML, keys in insertion order."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, default_flow_style=False, sort_keys=False,
                     allow_unicode=True, width=1 << 30)


def emit(data: Any, fmt: str, human: Callable[[Any], str] | None = None) -> None:
    """Print `data` as 'json', 'yaml', or 'human' (`human(data)`, else annotated YAML)."""
    if fmt == "json":
        text = to_json(strip_annotations(data))
        for c in _BIDI:         # JSON escapes control characters; bidi ones as well
            text = text.replace(c, f"\\u{ord(c):04x}")
    elif fmt == "yaml":
        text = to_yaml(escape_data(strip_annotations(data)))
    elif human is not None:
        text = escape_text(human(data))
    else:
        text = annotated_yaml(escape_data(data))
    sys.stdout.write(text)


class Annotated:
    """A value printed with a trailing `# comment` in human YAML output (immutable)."""

    __slots__ = ("value", "comment")

    def __init__(self, value: Any, comment: str) -> None:
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "comment", comment)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Annotated is immutable (cannot set {name})")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Annotated) and
                (self.value, self.comment) == (other.value, other.comment))

    def __hash__(self) -> int:
        return hash((self.value, self.comment))

    def __repr__(self) -> str:
        return f"Annotated(value={self.value!r}, comment={self.comment!r})"


def strip_annotations(data: Any) -> Any:
    """Return `data` with every Annotated replaced by its value."""
    if isinstance(data, Annotated):
        return strip_annotations(data.value)
    if isinstance(data, dict):
        return {k: strip_annotations(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strip_annotations(v) for v in data]
    return data


def annotated_yaml(data: Any) -> str:
    """Render plain data holding Annotated values as block YAML with trailing comments.

    The result parses back (comments aside) to strip_annotations(data).
    """
    lines: list[str] = []
    comment, data = _unwrap(data)
    if comment:
        lines.append(f"#{comment[3:]}")
    if isinstance(data, dict) and data:
        _emit_mapping(data, 0, lines, None)
    elif isinstance(data, (list, tuple)) and data:
        _emit_sequence(data, 0, lines)
    else:
        lines.append(_inline(data))
    return "\n".join(lines) + "\n"


def _unwrap(value: Any) -> tuple[str, Any]:
    comments = []
    while isinstance(value, Annotated):
        if value.comment:
            comments.append(value.comment.replace("\n", " "))
        value = value.value
    return ("  # " + "; ".join(comments) if comments else ""), value


def _is_leaf(value: Any) -> bool:
    return not isinstance(value, (dict, list, tuple)) or not value


def _emit_mapping(data: dict, indent: int, lines: list[str], first: str | None) -> None:
    pad = " " * indent
    for i, (key, raw) in enumerate(data.items()):
        lead = first if (i == 0 and first is not None) else pad
        comment, value = _unwrap(raw)
        head = f"{lead}{_scalar(key)}:"
        if _is_leaf(value):
            lines.append(f"{head} {_inline(value)}{comment}")
        elif isinstance(value, dict):
            lines.append(head + comment)
            _emit_mapping(value, indent + 2, lines, None)
        else:
            lines.append(head + comment)
            _emit_sequence(value, indent + 2, lines)


def _emit_sequence(data: list | tuple, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for raw in data:
        comment, value = _unwrap(raw)
        if _is_leaf(value):
            lines.append(f"{pad}- {_inline(value)}{comment}")
        elif isinstance(value, dict):
            start = len(lines)
            _emit_mapping(value, indent + 2, lines, pad + "- ")
            lines[start] += comment
        else:
            lines.append(f"{pad}-{comment}")
            _emit_sequence(value, indent + 2, lines)


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    """One YAML scalar on one line: plain when YAML reads it back unchanged, else quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if "\n" in text or "\r" in text:
        import json
        return json.dumps(text, ensure_ascii=False)
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    out = yaml.dump(text, Dumper=dumper, allow_unicode=True, width=1 << 30)
    if out.endswith("\n...\n"):
        out = out[:-5]
    return out.rstrip("\n")


def describe_origin(origin: Any) -> str:
    """Human text for an origin as found in FamilyConfig.to_dict(): 'from ALIAS (FILE:LINE)'."""
    if origin is None or origin == "default":
        return "default"
    items = origin if isinstance(origin, list) else [origin]
    parts = []
    for o in items:
        if not isinstance(o, dict):
            parts.append(str(o))
            continue
        file, path = str(o.get("file", "")), str(o.get("path", ""))
        if path and file.startswith(path.rstrip("/") + "/"):
            file = file[len(path.rstrip("/")) + 1:]
        line = o.get("line")
        parts.append(f"{o.get('node', '?')} ({file}:{line})" if line else
                     f"{o.get('node', '?')} ({file})")
    return "from " + ", ".join(parts)


def annotate_origins(data: Any) -> Any:
    """Turn FamilyConfig.to_dict(origins=True) data into Annotated values: each
    {'value', 'origin'} pair and each entry's 'origin' key become a trailing comment."""
    if isinstance(data, dict):
        if set(data) == {"value", "origin"}:
            return Annotated(annotate_origins(data["value"]), describe_origin(data["origin"]))
        if "origin" in data:
            rest = {k: annotate_origins(v) for k, v in data.items() if k != "origin"}
            return Annotated(rest, describe_origin(data["origin"]))
        return {k: annotate_origins(v) for k, v in data.items()}
    if isinstance(data, list):
        return [annotate_origins(v) for v in data]
    return data
