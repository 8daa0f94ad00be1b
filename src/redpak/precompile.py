# Plans compiled ahead of time (`redconf compile ROOT`): for a device's first boot or an
# image build step, every leaf of a tree gets its cached plan now, so that `redwrap` runs
# those nodes natively and never starts Python.
"""compile_tree(root): compile and cache the launch plan of every leaf below ROOT."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import RedpakError
from .record import field, record


@record
class Compiled:
    """What became of one leaf in one mode."""

    path: str
    mode: str                   # "normal" or "admin"
    cache: str | None = None    # the cached plan, when written
    error: str | None = None    # why there is no plan
    skipped: str | None = None  # why it was not compiled (a disabled node)
    warnings: list[str] = field(default_factory=list)


def leaves(paths: list[str]) -> list[str]:
    """The nodes of find_tree()'s list (parents before children) without a child node."""
    return [p for i, p in enumerate(paths)
            if not (i + 1 < len(paths) and paths[i + 1].startswith(p.rstrip("/") + "/"))]


def compile_tree(root: str, admin: bool = False, environ: Mapping[str, str] | None = None
                 ) -> list[Compiled]:
    """Compile every leaf below ROOT (in normal mode, and in admin mode too with ADMIN) for
    this caller and ENVIRON (default: this process's; it must be the environment the
    launches will have, as it is a cache dependency) and store each plan where the native
    redwrap looks for it. Never raises for one node: each result says what happened.
    Raises NodeError when ROOT holds no node."""
    from .cli.redwrap import cache_path, write_cache
    from .errors import NodeError
    from .model import NodeState
    from .node import find_tree, normalize_path, read_status
    from .plan import LaunchOptions, build_plan

    env = dict(os.environ if environ is None else environ)
    paths = find_tree(root)
    if not paths:
        raise NodeError(f"no node at or below {normalize_path(root)} "
                        f"(create one with `redconf create`)")
    results = []
    for path in leaves(paths):
        for mode in ("normal", "admin") if admin else ("normal",):
            result = Compiled(path, mode)
            results.append(result)
            try:
                if read_status(path).state is NodeState.DISABLE:
                    result.skipped = "the node is disabled"
                    continue
                compiled = build_plan(path, LaunchOptions(admin=mode == "admin"), environ=env)
                result.warnings = list(compiled.warnings)
                target = cache_path(normalize_path(path), mode == "admin", os.getuid(), env)
                if not compiled.plan.cacheable:
                    result.error = ("its plan cannot be cached (the family uses $(command), "
                                    "$PID, $TODAY or $UUID): each launch compiles it")
                elif target is None:
                    result.error = "this caller has no plan cache (set REDPAK_CACHE_DIR)"
                else:
                    write_cache(target, compiled.plan.encode(), strict=True)
                    result.cache = target
            except RedpakError as err:
                result.error = str(err)
            except OSError as err:
                result.error = (f"cannot write the plan: {err.filename or ''}: "
                                f"{err.strerror} (redwrap reads plans from the same "
                                f"place: set REDPAK_CACHE_DIR to a directory this user "
                                f"may write, for both)")
    return results
