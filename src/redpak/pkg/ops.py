# The package commands of redwrap-dnf as functions (the CLI and benchmarks call these):
# changes take the family lock and recover an interrupted transaction before planning;
# queries only read. One command at a time per process (RPM_LOCK, from its first import to
# its end): librpm chroots the whole process while it writes a node.
"""Package operations on one node.

Every function takes the node path (`redpath`) and an Options; changes return an exit
status, queries return plain data (lists of dicts) for the CLI to print. Errors are
PackageError (or the NodeError/ConfigError/MergeError of loading the family).
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Callable

from redpak.errors import PackageError
from redpak.pkg.lock import DEFAULT_TIMEOUT
from redpak.pkg.progress import Progress
from redpak.pkg.rpmdb import serialised
from redpak.record import field, record

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any


def _print(text: str) -> None:
    print(text, flush=True)


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _never(prompt: str) -> bool:
    return False


@record
class Options:
    """How a command talks to its user."""

    assumeyes: bool = False
    lock_timeout: float = DEFAULT_TIMEOUT
    confirm: Callable[[str], bool] = _never     # asked unless assumeyes
    out: Callable[[str], None] = _print
    warn: Callable[[str], None] = _warn
    progress: Progress = field(default_factory=Progress)
    command: str = ""


# --------------------------------------------------------------------------- changes

@serialised
def install(redpath: str, specs: list[str], opts: Options) -> int:
    """Install packages (with their dependencies) into the node."""
    return _change(redpath, "install", specs, opts)


@serialised
def remove(redpath: str, specs: list[str], opts: Options) -> int:
    """Remove packages of the node (and the node's packages that need them)."""
    return _change(redpath, "remove", specs, opts)


@serialised
def upgrade(redpath: str, specs: list[str], opts: Options) -> int:
    """Upgrade the node's packages (all of them without specs)."""
    return _change(redpath, "upgrade", specs, opts)


@serialised
def reinstall(redpath: str, specs: list[str], opts: Options) -> int:
    """Reinstall the node's packages from the repositories."""
    return _change(redpath, "reinstall", specs, opts)


def _change(redpath: str, verb: str, specs: list[str], opts: Options) -> int:
    from redpak.pkg.lock import FamilyLock
    from redpak.pkg.session import descendants, open_session
    from redpak.pkg.stage import deletions_awaited
    from redpak.pkg.transaction import execute, require_root

    require_root()
    session = open_session(redpath)
    with FamilyLock(session.root.path, opts.lock_timeout, on_wait=opts.warn), \
            deletions_awaited():
        recover(session, opts)
        universe = _universe(session, repos=True, local=specs if verb == "install" else [])
        plan = getattr(universe, f"plan_{verb}")(specs)
        if not plan.empty:
            below = descendants(session)
            universe.check_descendants(plan, below)
        for note in plan.notes:
            opts.out(note)
        if plan.empty:
            opts.out("Nothing to do.")
            return 0
        opts.out(summary(universe, plan))
        if not opts.assumeyes and not opts.confirm("Is this ok [y/N]: "):
            raise PackageError("operation aborted, nothing was changed (answer y, or "
                               "use -y/--assumeyes)")
        from redpak.pkg.scriptlets import find_launcher

        outcome = execute(universe, plan, opts.progress, opts.command or verb,
                          find_launcher(), opts.lock_timeout)
    for warning in outcome.warnings:
        opts.warn(warning)
    for line in outcome.done:
        opts.out(line)
    opts.out("Complete!")
    return 0


def _universe(session: Any, repos: bool, local: list[str] = ()) -> Any:
    from redpak.pkg.repos import read_repos
    from redpak.pkg.solver import Universe

    universe = Universe(session)
    universe.add_family()
    if repos:
        universe.add_repos(read_repos(session))
    universe.add_local_rpms(list(local))
    universe.finish()
    return universe


@serialised
def recover_node(redpath: str, opts: Options) -> int:
    """`redwrap-dnf recover`: complete (or clean up after) an interrupted transaction of
    the node, under the family lock."""
    from redpak.pkg.lock import FamilyLock
    from redpak.pkg.session import open_session
    from redpak.pkg.stage import deletions_awaited
    from redpak.pkg.transaction import require_root

    require_root()
    session = open_session(redpath)
    with FamilyLock(session.root.path, opts.lock_timeout, on_wait=opts.warn), \
            deletions_awaited():
        if not recover(session, opts):
            opts.out(f"Nothing to recover in {session.leaf.path}.")
    return 0


def recover(session: Any, opts: Options) -> bool:
    """Finish or clean up after an interrupted transaction of the leaf (caller holds the
    family lock): a committed staged transaction (journal version 2) is rolled forward
    and its remaining scriptlets run; a stage left before the commit is deleted; a journal
    of an in-place transaction (version 1, older redpak) has its unowned files removed and
    interrupted upgrades finished. Returns True when there was something to do."""
    from redpak.pkg import journal
    from redpak.pkg import stage as staging
    from redpak.pkg.rpmdb import real_root
    from redpak.pkg.scriptlets import find_launcher
    from redpak.pkg.transaction import Outcome, finish

    leaf = session.leaf.path
    data = journal.read(leaf)
    did = False
    if data is not None and data.get("version") == 2:
        root = real_root(leaf)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            staging.swap(root, fd, [u for u in data.get("units", []) if isinstance(u, dict)])
        finally:
            os.close(fd)
        post = [p for p in data.get("post", []) if isinstance(p, dict)]
        if post:
            journal.write_post(leaf, str(data.get("command", "?")), post)
        journal.clear(leaf)
        opts.warn(f"an earlier transaction in this node was interrupted "
                  f"({data.get('command', '?')}) after it was committed: completed")
        data, did = None, True
    elif data is not None:
        _recover_v1(session, data, opts)
        did = True
    post = journal.read_post(leaf)
    if post is not None or os.path.lexists(os.path.join(leaf, staging.STAGE)):
        outcome = Outcome()
        finish(leaf, post or [], find_launcher(), outcome, swapped=False)
        if post:
            opts.warn("ran the scriptlets an interrupted transaction left: "
                      + ", ".join(str(p.get("name")) for p in post))
        for warning in outcome.warnings:
            opts.warn(warning)
        did = True
    return did


def _recover_v1(session: Any, data: dict[str, Any], opts: Options) -> None:
    from redpak.pkg import journal
    from redpak.pkg.rpmdb import open_for_write, read_installed

    leaf = session.leaf.path
    ts = open_for_write(leaf)
    installed = read_installed(leaf, len(session.family) - 1)
    try:
        removed, leftovers = journal.recover(leaf, data, ts, {p.nevra for p in installed})
    finally:
        ts.closeDB()
    opts.warn(f"an earlier transaction in this node was interrupted "
              f"({data.get('command', '?')}); cleaned up"
              + (f": removed {len(removed)} unowned file(s)" if removed else ""))
    journal.clear(leaf)
    if leftovers:
        from redpak.pkg.scriptlets import find_launcher
        from redpak.pkg.solver import Change, Plan
        from redpak.pkg.transaction import execute

        by_instance = {p.instance: p for p in installed}
        plan = Plan([Change("erase", None, [by_instance[x.instance]], "")
                     for x in leftovers if x.instance in by_instance])
        opts.warn("finishing interrupted upgrades: removing "
                  + ", ".join(f"{x.nevra} (replaced by {x.replaced_by})" for x in leftovers))
        universe = _universe(session, repos=False)
        execute(universe, plan, Progress(quiet=True), "finish interrupted upgrade",
                find_launcher(), opts.lock_timeout)


def summary(universe: Any, plan: Any) -> str:
    """The transaction summary shown before confirmation."""
    solv = universe.solv
    session = universe.session
    groups = [("install", "", "Installing"), ("install", "dependency", "Installing dependencies"),
              ("upgrade", None, "Upgrading"), ("downgrade", None, "Downgrading"),
              ("replace", None, "Replacing"), ("reinstall", None, "Reinstalling"),
              ("erase", "", "Removing"), ("erase", "dependent", "Removing dependent packages")]
    rows: list[tuple[str, list[list[str]]]] = []
    for kind, reason, title in groups:
        lines = []
        for c in plan.changes:
            if c.kind != kind or (reason is not None and c.reason != reason):
                continue
            if c.new is not None:
                s = c.new
                repo = universe.repo_of(s)
                where = repo.config.id if repo is not None else "@commandline"
                size = s.lookup_num(solv.SOLVABLE_DOWNLOADSIZE)
                line = [s.name, s.arch, s.evr, where, _size(size)]
                if c.old and kind in ("upgrade", "downgrade", "replace"):
                    line[3] += f" (replacing {', '.join(o.nevra for o in c.old)})"
            else:
                old = c.old[0]
                line = [old.name, old.arch, old.evr, f"@{session.leaf.alias}",
                        _size(old.hdr[1009] or 0)]
            lines.append(line)
        if lines:
            rows.append((title, lines))
    table = [["Package", "Arch", "Version", "Repository", "Size"]]
    for _, lines in rows:
        table.extend(lines)
    widths = [max(len(r[i]) for r in table) for i in range(4)]

    def fmt(r: list[str]) -> str:
        return " " + "  ".join(r[i].ljust(widths[i]) for i in range(4)) + f"  {r[4]:>8}"

    chain = " > ".join(n.alias for n in session.family)
    out = [f"Node {session.leaf.describe()}, family: {chain}", fmt(table[0])]
    for title, lines in rows:
        out.append(f"{title}:")
        out.extend(fmt(line) for line in lines)
    counts: dict[str, int] = {}
    for c in plan.changes:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    words = {"install": "Install", "upgrade": "Upgrade", "downgrade": "Downgrade",
             "replace": "Replace", "reinstall": "Reinstall", "erase": "Remove"}
    if any(c.new is not None for c in plan.changes):
        devices = (f"device nodes allowed by {session.devices_from}" if session.devices_from
                   else "packages creating device nodes are refused")
        out.append(f"Setuid/setgid bits and file capabilities are removed from the "
                   f"installed files; {devices}.")
    out.append("Transaction summary: " + ", ".join(
        f"{words[k]} {n} package{'s' if n > 1 else ''}" for k, n in counts.items()))
    return "\n".join(out)


def _size(n: int) -> str:
    value = float(n or 0)
    for unit in ("", " k", " M", " G"):
        if value < 1024 or unit == " G":
            return f"{value:.0f}{unit}" if not unit else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


# --------------------------------------------------------------------------- queries

def _installed_rows(session: Any) -> list[dict[str, Any]]:
    from redpak.pkg.rpmdb import read_installed

    rows = []
    last = len(session.family) - 1
    for index, node in enumerate(session.family):
        for pkg in read_installed(node.path, index):
            if pkg.name == "gpg-pubkey":
                continue
            rows.append(_row_from_header(pkg.hdr) | {
                "node": node.alias, "node_path": node.path,
                "owner": "node" if index == last else "ancestor"})
    return rows


def _row_from_header(hdr: Any) -> dict[str, Any]:
    from redpak.pkg.rpmdb import evr_of

    return {"name": hdr[1000], "epoch": hdr[1003], "version": hdr[1001],
            "release": hdr[1002], "arch": hdr[1022] or "noarch",
            "evr": evr_of(hdr), "summary": hdr[1004] or "", "size": hdr[1009] or 0,
            "license": hdr[1014] or "", "url": hdr[1020] or "",
            "description": hdr[1005] or ""}


def _row_from_solvable(universe: Any, s: Any) -> dict[str, Any]:
    solv = universe.solv
    evr = s.evr
    epoch = None
    if ":" in evr:
        epoch_text, evr_rest = evr.split(":", 1)
        epoch = int(epoch_text) if epoch_text.isdigit() else None
    else:
        evr_rest = evr
    version, _, release = evr_rest.rpartition("-")
    repo = universe.repo_of(s)
    return {"name": s.name, "epoch": epoch, "version": version, "release": release,
            "arch": s.arch, "evr": evr,
            "summary": s.lookup_str(solv.SOLVABLE_SUMMARY) or "",
            "size": s.lookup_num(solv.SOLVABLE_INSTALLSIZE),
            "download_size": s.lookup_num(solv.SOLVABLE_DOWNLOADSIZE),
            "license": s.lookup_str(solv.SOLVABLE_LICENSE) or "",
            "url": s.lookup_str(solv.SOLVABLE_URL) or "",
            "description": s.lookup_str(solv.SOLVABLE_DESCRIPTION) or "",
            "repo": repo.config.id if repo is not None else "@commandline"}


def _matches(row: dict[str, Any], patterns: list[str]) -> bool:
    if not patterns:
        return True
    names = (row["name"], f"{row['name']}.{row['arch']}", f"{row['name']}-{row['version']}",
             f"{row['name']}-{row['evr']}", f"{row['name']}-{row['evr']}.{row['arch']}")
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


@serialised
def list_packages(redpath: str, which: str, patterns: list[str]) -> dict[str, list[dict]]:
    """Installed (with the owning node) and/or available packages matching `patterns`.
    `which` is installed, available or all."""
    from redpak.pkg.session import open_session

    session = open_session(redpath)
    out: dict[str, list[dict]] = {}
    if which in ("installed", "all"):
        out["installed"] = sorted((r for r in _installed_rows(session)
                                   if _matches(r, patterns)),
                                  key=lambda r: (r["name"], r["arch"]))
    if which in ("available", "all"):
        universe = _universe(session, repos=True)
        have = {(s.name, s.evr, s.arch) for s in universe.installed_repo.solvables}
        rows = [_row_from_solvable(universe, s) for s in universe.available()
                if (s.name, s.evr, s.arch) not in have]
        out["available"] = sorted((r for r in rows if _matches(r, patterns)),
                                  key=lambda r: (r["name"], r["arch"], r["evr"]))
    return out


@serialised
def info(redpath: str, which: str, patterns: list[str]) -> list[dict[str, Any]]:
    """Details of the packages `list_packages` would show; raises PackageError if none."""
    data = list_packages(redpath, which, patterns)
    rows = data.get("installed", []) + data.get("available", [])
    if not rows:
        raise PackageError("no package matches "
                           + (" ".join(f"'{p}'" for p in patterns) or "anything"))
    return rows


@serialised
def search(redpath: str, words: list[str]) -> list[dict[str, Any]]:
    """Packages (available or installed in the family) whose name or summary holds
    every word (case-insensitive)."""
    data = list_packages(redpath, "all", [])
    seen, out = set(), []
    lowered = [w.lower() for w in words]
    for row in data.get("installed", []) + data.get("available", []):
        key = (row["name"], row["arch"])
        text = f"{row['name']} {row['summary']}".lower()
        if key not in seen and all(w in text for w in lowered):
            seen.add(key)
            out.append(row)
    return sorted(out, key=lambda r: (r["name"], r["arch"]))


@serialised
def repolist(redpath: str, which: str = "enabled") -> list[dict[str, Any]]:
    """The family's repositories (enabled, disabled or all) and the node defining each."""
    from redpak.pkg.repos import read_repos
    from redpak.pkg.session import open_session

    session = open_session(redpath)
    rows = []
    for repo in read_repos(session):
        if which == "enabled" and not repo.enabled or which == "disabled" and repo.enabled:
            continue
        rows.append({"id": repo.id, "name": repo.name, "enabled": repo.enabled,
                     "baseurl": list(repo.baseurls), "gpgcheck": repo.gpgcheck
                     or session.gpgcheck, "node": repo.node.alias, "file": repo.file,
                     "line": repo.line})
    return rows


@record
class Query:
    """What repoquery selects and prints."""

    patterns: list[str] = field(default_factory=list)
    installed: bool = False
    whatprovides: str | None = None
    whatrequires: str | None = None
    show: str = "nevra"                 # nevra, requires, provides, files


@serialised
def repoquery(redpath: str, query: Query) -> list[dict[str, Any]]:
    """Packages matching a query, with what `query.show` asks for each."""
    from redpak.pkg.session import open_session

    session = open_session(redpath)
    universe = _universe(session, repos=not query.installed)
    solv = universe.solv
    if query.installed:
        pool_set = [s for s in universe.installed_repo.solvables if s.id in universe.by_id]
    else:
        pool_set = universe.available()
    if query.whatprovides:
        wanted = {s.id for s in universe.select(query.whatprovides).solvables()}
        pool_set = [s for s in pool_set if s.id in wanted]
    if query.whatrequires:
        targets = {s.id for s in universe.select(query.whatrequires).solvables()}
        pool_set = [s for s in pool_set if any(
            p.id in targets for dep in s.lookup_deparray(solv.SOLVABLE_REQUIRES)
            for p in universe.pool.whatprovides(dep))]
    rows = []
    for s in pool_set:
        if s.id in universe.by_id:
            # An installed package: its header's details and its node, not a repository.
            node = universe.node_of(s)
            row = _row_from_header(universe.by_id[s.id].hdr) | {
                "node": node.alias if node else "host",
                "node_path": node.path if node else None}
        else:
            row = _row_from_solvable(universe, s)
        if not _matches(row, query.patterns):
            continue
        row["nevra"] = s.str()
        if query.show == "requires":
            row["requires"] = sorted({str(d) for d in
                                      s.lookup_deparray(solv.SOLVABLE_REQUIRES)})
        elif query.show == "provides":
            row["provides"] = sorted({str(d) for d in
                                      s.lookup_deparray(solv.SOLVABLE_PROVIDES)})
        elif query.show == "files":
            row["files"] = _files(universe, s)
        rows.append(row)
    return sorted(rows, key=lambda r: r["nevra"])


def _files(universe: Any, s: Any) -> list[str]:
    from redpak.pkg.rpmdb import header_files

    if s.id in universe.by_id:
        return sorted(header_files(universe.by_id[s.id].hdr))
    solv = universe.solv
    out = []
    flags = solv.Dataiterator.SEARCH_FILES | solv.Dataiterator.SEARCH_COMPLETE_FILELIST
    for d in s.Dataiterator(solv.SOLVABLE_FILELIST, None, flags):
        out.append(d.str)
    return sorted(out)


@serialised
def download(redpath: str, specs: list[str], destdir: str, resolve: bool,
             opts: Options) -> list[str]:
    """Download the newest available version of packages (and with `resolve`, the
    dependencies the node lacks) into `destdir`; returns the files written."""
    from redpak.pkg.repos import fetch_package
    from redpak.pkg.session import open_session

    session = open_session(redpath)
    if not os.path.isdir(destdir):
        raise PackageError(f"{destdir}: no such directory (create it, or choose "
                           "another with --destdir)")
    universe = _universe(session, repos=True)
    chosen: dict[int, Any] = {}
    missing = []
    for spec in specs:
        best: dict[tuple[str, str], Any] = {}
        for s in universe.select(spec).solvables():
            if s.repo == universe.installed_repo:
                continue
            key = (s.name, s.arch)
            if key not in best or s.evrcmp(best[key]) > 0:
                best[key] = s
        if not best:
            missing.append(spec)
        for s in best.values():
            chosen[s.id] = s
    if missing:
        raise PackageError("no package matches " + ", ".join(f"'{m}'" for m in missing)
                           + " in the enabled repositories")
    if resolve:
        plan = universe.plan_install([s.str() for s in chosen.values()])
        for change in plan.changes:
            if change.new is not None:
                chosen[change.new.id] = change.new
    written = []
    items = list(chosen.values())
    for number, s in enumerate(items, 1):
        opts.progress.item("Downloading", s.str(), number, len(items))
        path, data = fetch_package(universe.repo_of(s), s)
        dest = os.path.join(destdir, os.path.basename(path))
        with open(dest, "wb") as f:     # the checked bytes, not the cache file again
            f.write(data)
        written.append(dest)
    opts.progress.finish()
    return written


# --------------------------------------------------------------------------- nodes

@serialised
def manager(redpath: str, alias: str | None, no_system_node: bool, template: str | None,
            template_admin: str | None, update: bool, opts: Options) -> int:
    """Create a node (and a system node in its parent directory unless told not to, or
    unless the family already has a root), or rewrite its configs with `update`."""
    from redpak.errors import NodeError
    from redpak.node import ALIAS_RE, config_file, create_node, normalize_path
    from redpak.pkg.session import make_dirs

    path = normalize_path(redpath)
    existing = config_file(path)
    if existing is not None and not update:     # checked before any node is created
        raise NodeError(f"{existing}: a config already exists (use --update to rewrite it "
                        "from the templates)")
    has_ancestor = _has_ancestor(path)
    if not update and not no_system_node and not has_ancestor:
        parent = os.path.dirname(path)
        if parent == "/":
            raise PackageError(f"{path}: its parent is /, which cannot hold a system node "
                               "(use --no-system-node, or a deeper directory)")
        base = os.path.basename(parent)
        system_alias = base if ALIAS_RE.fullmatch(base) else "system"
        node = create_node(parent, alias=system_alias, model="root")
        make_dirs(os.path.join(node.path, "etc/yum.repos.d"), node.path)
        opts.out(f"created system node '{node.alias}' in {node.path}")
        has_ancestor = True
    elif not update and not no_system_node:
        opts.out("the family already has a root node: no system node created")
    model = "leaf" if has_ancestor else "full"
    node = create_node(path, alias=alias, model=model, config=template,
                       config_admin=template_admin, update=update)
    make_dirs(os.path.join(node.path, "etc/yum.repos.d"), node.path)
    verb = "updated" if update else "created"
    opts.out(f"{verb} node '{node.alias}' ({model if not template else template}) in "
             f"{node.path}")
    return 0


def _has_ancestor(path: str) -> bool:
    from redpak.node import is_node

    current = path
    while True:
        parent = os.path.dirname(current)
        if parent == current or parent == "/":
            return False
        if is_node(parent):
            return True
        current = parent
