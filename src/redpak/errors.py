"""redpak's exception hierarchy: every user-facing failure is a RedpakError with a way out."""

from __future__ import annotations


class RedpakError(Exception):
    """Base class: the CLI prints str(err) and exits non-zero, never a traceback."""


class ConfigError(RedpakError):
    """A node's YAML file is unreadable or invalid; names the file, line and key."""

    def __init__(self, path: str, key: str, problem: str, hint: str = "",
                 line: int | None = None):
        self.path, self.key, self.problem, self.hint, self.line = path, key, problem, hint, line
        where = f"{path}:{line}" if line else f"{path}"
        text = f"{where}: {key}: {problem}" if key else f"{where}: {problem}"
        super().__init__(text + (f" ({hint})" if hint else ""))


class NodeError(RedpakError):
    """A node directory is missing, not a node, or not in a usable state."""


class MergeError(RedpakError):
    """Two nodes of a family disagree on a key in a way the Russian-doll rule forbids."""

    def __init__(self, key: str, problem: str, ancestor: str = "", descendant: str = "",
                 hint: str = ""):
        self.key, self.problem, self.ancestor, self.descendant = key, problem, ancestor, descendant
        self.hint = hint
        super().__init__(f"{key}: {problem}" + (f" ({hint})" if hint else ""))


class ExpandError(RedpakError):
    """A variable or $(command) in a config value could not be expanded."""


class PlanError(RedpakError):
    """The merged config cannot be compiled into a launch plan, or a plan file is invalid."""


class PackageError(RedpakError):
    """A package operation failed or was refused."""


class LaunchError(RedpakError):
    """The C core failed at a setup step; the program never ran."""

    def __init__(self, step: str, message: str, errnum: int = 0, path: str = ""):
        self.step, self.errnum, self.path = step, errnum, path
        super().__init__(f"{step}: {message}")
