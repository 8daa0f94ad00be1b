# The package half of the offline proof of a node tree (`redconf check --packages ROOT`)
# and the dry run of one transaction (`redwrap-dnf --proof`): findings, their text, JSON
# and JUnit forms. Reads only: no launch, no lock, nothing written in the tree.
"""Prove a tree of nodes coherent before it ships, without running anything.

`prove_tree(paths)` checks, for every node found under ROOT (its ancestors above ROOT are
read as well, as the running system would see them):

- rpmdb:     the node's rpm database opens, passes librpm's verification and every
             header's digest checks;
- requires:  every requirement of the node's packages is provided by the node itself,
             its ancestors or the host's shells (libsolv, the family as installed set);
- conflicts: no package of the node conflicts with one of the node or its ancestors;
- duplicate: no package name is installed twice on one family line;
- overlap:   no two nodes of a family line expose a file at the same sandbox path (each
             node's normal-mode merged exports, expanded, map node files to sandbox
             paths: two nodes whose exports overlap must not install the same path);
- files:     every file a database lists is present in its node (with verify: type,
             size, digest and symlink target);
- export-source: every bind export whose source lies inside a node exists.

The config half (`config`: parse, merge in both modes — no constraint loosened — and
expand) is `redconf check` itself; its problems are passed in and reported with these.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys

from redpak.errors import PackageError, RedpakError
from redpak.pkg.rpmdb import serialised
from redpak.record import asdict, record

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

RULES = ("config", "export-source", "rpmdb", "requires", "conflicts", "duplicate",
         "overlap", "files")

_DIGESTS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
_TAG_FILEDIGESTALGO = 5011
_MAX_HOPS = 40


@record(frozen=True)
class Finding:
    """One violated rule: where (node), which rule, the package and file concerned."""

    node: str
    rule: str
    message: str
    package: str = ""
    file: str = ""

    def to_dict(self) -> dict[str, str]:
        data = asdict(self)
        return {k: data[k] for k in ("node", "rule", "package", "file", "message")}


@record
class Report:
    """The outcome of a proof: the nodes looked at and every finding."""

    nodes: list[str]
    findings: list[Finding]
    packages: int = 0
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


# --------------------------------------------------------------------------- databases

class _Db:
    """What the proof read of one node's database (None packages: it could not be read)."""

    def __init__(self, node: str, packages: list[Any] | None, error: str = ""):
        self.node, self.packages, self.error = node, packages, error


def read_verified(node: str) -> _Db:
    """Open a node's database read-only, run librpm's verification and read every header
    with its digests checked. Never raises for a bad database: the error is recorded."""
    from redpak.pkg import rpmdb

    if not rpmdb.has_db(node):
        return _Db(node, None, f"{rpmdb.db_path(node)}: no rpm database (a node's database "
                               f"is created with the node: `rpm --dbpath "
                               f"{rpmdb.db_path(node)} --initdb`)")
    try:
        rpm = rpmdb.rpm_module()
        with rpmdb.RPM_LOCK:
            ts = rpmdb.transaction_set(node)
            ts.setVSFlags(rpm.RPMVSF_MASK_NOSIGNATURES)      # header digests on
            rpmdb.take_log()
            try:
                _integrity(node)
                if ts.openDB() != 0:
                    raise rpmdb.corrupt_db(node, "librpm cannot open it")
                mi = ts.dbMatch()
                packages = [rpmdb.Installed(0, mi.instance(), hdr) for hdr in mi]
            except rpm.error as err:
                raise rpmdb.corrupt_db(node, (_errors(rpmdb.take_log()) or [str(err)])[0]) \
                    from err
            finally:
                ts.closeDB()
            messages = rpmdb.take_log()
            if _errors(messages):
                raise rpmdb.corrupt_db(node, _errors(messages)[0])
    except PackageError as err:
        return _Db(node, None, str(err))
    return _Db(node, [p for p in packages if p.name != "gpg-pubkey"])


def _integrity(node: str) -> None:
    """sqlite's integrity check of the database, what `rpm --verifydb` runs, but opened
    read-only (librpm's verification takes its write lock, which a reader of an image
    may not be allowed to). Raises PackageError."""
    import sqlite3

    from redpak.pkg import rpmdb

    path = os.path.join(rpmdb.db_path(node), rpmdb.DB_FILE)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()
    except sqlite3.Error as err:
        raise rpmdb.corrupt_db(node, f"sqlite: {err}") from err
    problems = [r[0] for r in rows if r and r[0] != "ok"]
    if problems:
        raise rpmdb.corrupt_db(node, f"sqlite integrity check: {problems[0]}")


def _errors(messages: list[str]) -> list[str]:
    """librpm's error lines, each with the detail line it logs after it (a header digest
    that does not match, for instance)."""
    out = []
    for i, line in enumerate(messages):
        if line.startswith("error:"):
            text = line.removeprefix("error:").strip()
            if i + 1 < len(messages) and not messages[i + 1].startswith(("error:",
                                                                          "warning:")):
                text += ": " + messages[i + 1].strip()
            out.append(text)
    return out


# --------------------------------------------------------------------------- the proof

class _Prover:
    def __init__(self, paths: list[str], verify: bool):
        self.paths = paths
        self.verify = verify
        self.findings: list[Finding] = []
        self.seen: set[tuple[str, ...]] = set()
        self.dbs: dict[str, _Db] = {}
        self.aliases: dict[str, str] = {}
        self.nfiles = 0

    def add(self, node: str, rule: str, message: str, package: str = "", file: str = "",
            key: tuple[str, ...] | None = None) -> None:
        key = key or (node, rule, package, file, message)
        if key not in self.seen:
            self.seen.add(key)
            self.findings.append(Finding(node, rule, message, package, file))

    def db(self, node: str) -> _Db:
        if node not in self.dbs:
            self.dbs[node] = read_verified(node)
        return self.dbs[node]

    def alias(self, node: str) -> str:
        if node not in self.aliases:
            from redpak.node import load_node

            try:
                self.aliases[node] = load_node(node).alias
            except RedpakError:
                self.aliases[node] = os.path.basename(node)
        return self.aliases[node]

    def name(self, node: str) -> str:
        return f"'{self.alias(node)}' ({node})"

    def run(self) -> Report:
        from redpak.node import find_family

        chains: dict[str, list[str]] = {}
        for node in self.paths:
            try:
                chains[node] = find_family(node)
            except RedpakError as err:
                self.add(node, "config", str(err))
                continue
            for member in chains[node]:         # ancestors above ROOT too
                db = self.db(member)
                if db.packages is None:
                    self.add(member, "rpmdb", db.error, key=("rpmdb", member))
        total = 0
        for node, chain in chains.items():
            db = self.db(node)
            if db.packages is None:
                continue
            total += len(db.packages)
            self.duplicates(node, chain)
            self.files(node, db.packages)
            self.exports(node, chain)
        self.requirements(chains)
        return Report(list(self.paths), self.findings, total, self.nfiles)

    # ------------------------------------------------------------------ duplicates

    def duplicates(self, node: str, chain: list[str]) -> None:
        own: dict[str, list[str]] = {}
        for pkg in self.db(node).packages or ():
            own.setdefault(pkg.name, []).append(pkg.nevra)
        for name, nevras in own.items():
            if len(nevras) > 1:
                self.add(node, "duplicate", f"{name} is installed {len(nevras)} times in "
                         f"node {self.name(node)}: {', '.join(nevras)}", nevras[0])
        for ancestor in chain[:-1]:
            for pkg in self.db(ancestor).packages or ():
                if pkg.name in own:
                    self.add(node, "duplicate", f"{own[pkg.name][0]} in node "
                             f"{self.name(node)} is also installed in its ancestor "
                             f"{self.name(ancestor)} ({pkg.nevra}): a family line installs "
                             "a package once (remove it from the lower node)",
                             own[pkg.name][0])

    # ------------------------------------------------------------------ libsolv

    def requirements(self, chains: dict[str, list[str]]) -> None:
        """One libsolv pool holds every node's packages, each tagged with its node; a node
        counts only the providers of its own family line (and the host)."""
        from redpak.pkg.solver import HOST

        # a family line with an unreadable database is reported, not resolved
        chains = {n: c for n, c in chains.items()
                  if all(self.db(p).packages is not None for p in c)}
        members = list(dict.fromkeys(p for c in chains.values() for p in c))
        if not members:
            return
        universe = self._universe(members)
        if universe is None:
            return
        solv, pool = universe.solv, universe.pool
        index = {p: i for i, p in enumerate(members)}
        owned: dict[int, list[Any]] = {}
        for sid, i in universe.owner.items():
            owned.setdefault(i, []).append(pool.solvables[sid])
        conflicts = {s.id: list(s.lookup_deparray(solv.SOLVABLE_CONFLICTS))
                     for sol in owned.values() for s in sol}
        for node, chain in chains.items():
            leaf = index[node]
            line = {index[p] for p in chain} | {HOST}
            rich = []
            for s in owned.get(leaf, ()):
                for dep in s.lookup_deparray(solv.SOLVABLE_REQUIRES):
                    text = str(dep)
                    if text.startswith("solvable:"):
                        continue
                    if text.startswith("("):
                        rich.append(s)
                    elif not any(universe.owner.get(p.id) in line
                                 for p in pool.whatprovides(dep)):
                        self.add(node, "requires", f"{s.str()} in node {self.name(node)} "
                                 f"requires {text}, which nothing in the node, its ancestors "
                                 "or the host provides", s.str())
            if rich:
                self._verify_rich(node, chain, list(dict.fromkeys(s.str() for s in rich)))
            for i in line - {HOST}:
                for s in owned.get(i, ()):
                    for dep in conflicts[s.id]:
                        for other in pool.whatprovides(dep):
                            where = universe.owner.get(other.id, HOST)
                            if other.id == s.id or where not in line or where == HOST \
                                    or leaf not in (i, where):
                                continue
                            mine, theirs = (s, other) if i == leaf else (other, s)
                            holder = members[where if i == leaf else i]
                            self.add(node, "conflicts", f"{mine.str()} in node "
                                     f"{self.name(node)} conflicts with {theirs.str()} in "
                                     f"node {self.name(holder)} ({s.str()} conflicts with "
                                     f"{dep})", mine.str(),
                                     key=("conflicts", node,
                                          *sorted((mine.str(), theirs.str()))))

    def _universe(self, members: list[str]) -> Any:
        """redwrap-dnf's libsolv view (solver.Universe) of the given nodes' packages, or
        None when a database cannot be read after all (reported)."""
        from redpak.pkg.session import NodeRef, Session
        from redpak.pkg.solver import Universe

        session = Session(tuple(NodeRef(p, self.alias(p)) for p in members), False, "",
                          "", "")
        universe = Universe(session)
        try:
            universe.add_family()
        except PackageError as err:
            self.add(members[-1], "rpmdb", str(err))
            return None
        universe.finish()
        return universe

    def _verify_rich(self, node: str, chain: list[str], nevras: list[str]) -> None:
        """Rich dependencies ('(a and b)') are judged by libsolv's solver, in a pool of the
        node's family line only."""
        universe = self._universe(chain)
        if universe is None:
            return
        Job, pool = universe.solv.Job, universe.pool
        leaf = len(chain) - 1
        for sid, i in universe.owner.items():
            s = pool.solvables[sid]
            if i != leaf or s.str() not in nevras:
                continue
            solver = pool.Solver()          # kept alive: problems point into it
            for problem in solver.solve([pool.Job(Job.SOLVER_VERIFY | Job.SOLVER_SOLVABLE,
                                                  sid)]):
                self.add(node, "requires", f"{problem} (in node {self.name(node)}; nothing "
                         "in the node, its ancestors or the host satisfies it)", s.str())

    # ------------------------------------------------------------------ files

    def files(self, node: str, packages: list[Any]) -> None:
        from redpak.pkg.rpmdb import rpm_module

        rpm = rpm_module()
        resolver = _NodePaths(node)
        for pkg in packages:
            algo = _DIGESTS.get(pkg.hdr[_TAG_FILEDIGESTALGO] or 1)
            for f in rpm.files(pkg.hdr):
                if f.fflags & rpm.RPMFILE_GHOST or f.state not in (
                        rpm.RPMFILE_STATE_NORMAL, rpm.RPMFILE_STATE_REPLACED):
                    continue
                self.nfiles += 1
                problem = self._check_file(resolver, f, algo, rpm)
                if problem and not (problem == "is missing"
                                    and f.fflags & rpm.RPMFILE_MISSINGOK):
                    self.add(node, "files", f"{node}{f.name}: {problem} (listed by "
                             f"{pkg.nevra} in the rpm database of node {self.name(node)}; "
                             "reinstall the package)", pkg.nevra, f.name)

    def _check_file(self, resolver: _NodePaths, f: Any, algo: str | None, rpm: Any
                    ) -> str:
        host = resolver.locate(f.name)
        if host is None:
            return "is missing (a directory on its path is missing or leaves the node)"
        try:
            st = os.lstat(host)
        except OSError:
            return "is missing"
        want = stat.S_IFMT(f.mode)
        if want and stat.S_IFMT(st.st_mode) != want:
            return (f"is a {_kind(st.st_mode)}, the database lists a {_kind(f.mode)}")
        if not self.verify:
            return ""
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(host)
            return "" if target == f.linkto else \
                f"is a symlink to {target}, the database says {f.linkto}"
        if not stat.S_ISREG(st.st_mode) or f.fflags & rpm.RPMFILE_CONFIG:
            return ""           # configuration files may be edited by the integrator
        if st.st_size != f.size:
            return f"has size {st.st_size}, the database says {f.size}"
        if algo and f.digest:
            got = _digest(host, algo)
            if got is None:
                return "cannot be read"
            if got != f.digest:
                return f"has {algo} digest {got}, the database says {f.digest}"
        return ""

    # ------------------------------------------------------------------ exports

    def exports(self, node: str, chain: list[str]) -> None:
        merged = {admin: _merged_exports(chain, admin) for admin in (False, True)}
        nodes = set(self.paths) | set(chain)
        for exps in merged.values():
            for mount, source, origin in exps or ():
                if _inside_any(source, nodes) and not os.path.lexists(source):
                    self.add(origin, "export-source", f"{origin}: export of {mount} from "
                             f"{source}: the source does not exist in the node (create it, "
                             "or fix the export)", file=source,
                             key=("export-source", source))
        exps = merged[False]
        if not exps or len(chain) < 2:
            return
        seen: dict[str, tuple[str, str, str]] = {}
        for member in chain:
            for mount, source, _ in exps:
                inside = source == member or source.startswith(member.rstrip("/") + "/") \
                    or member.startswith(source.rstrip("/") + "/")
                if not inside:
                    continue
                for pkg in self.db(member).packages or ():
                    for path, mode in _header_files(pkg.hdr):
                        if stat.S_ISDIR(mode):
                            continue
                        full = member.rstrip("/") + path
                        if full != source and not full.startswith(source.rstrip("/") + "/"):
                            continue
                        shown = os.path.normpath(mount + full[len(source.rstrip("/")):])
                        first = seen.setdefault(shown, (member, pkg.nevra, path))
                        if first[0] == member:
                            continue
                        self.add(member, "overlap", f"{shown} in the sandbox of node "
                                 f"{self.name(node)} is both {first[0]}{first[2]} "
                                 f"({first[1]}, node {self.name(first[0])}) and "
                                 f"{member}{path} ({pkg.nevra}, node {self.name(member)}): "
                                 "their exports overlap; install the file in one node only",
                                 pkg.nevra, path,
                                 key=("overlap", shown, first[0], member))


def _merged_exports(chain: list[str], admin: bool) -> list[tuple[str, str, str]] | None:
    """(mount, source, defining node) of the bind exports of the family in one mode,
    expanded; None when the config does not merge (the config half reports why)."""
    from redpak.expand import expand_family
    from redpak.family import merge_family
    from redpak.node import load_node

    try:
        nodes = [load_node(p) for p in chain]
        fam = merge_family(nodes, admin=admin)
        fam = expand_family(fam, os.environ, os.getuid(), os.getgid(), os.getpid()).family
    except RedpakError:
        return None
    out = []
    for entry in fam.exports:
        exp = entry.value
        if not exp.mode.is_bind:
            continue
        origin = entry.origins[0].path if entry.origins else chain[-1]
        out.append((os.path.normpath(exp.mount),
                    os.path.normpath(exp.path or exp.mount), origin))
    return out


def _inside_any(path: str, nodes: set[str]) -> bool:
    return any(path == n or path.startswith(n.rstrip("/") + "/") for n in nodes)


def _header_files(hdr: Any) -> list[tuple[str, int]]:
    dirs, bases, index = hdr[1118] or [], hdr[1117] or [], hdr[1116] or []
    modes = hdr[1030] or [0] * len(bases)        # RPMTAG_FILEMODES
    return [(dirs[i] + b, m & 0xFFFF) for i, b, m in zip(index, bases, modes)]


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISREG, "regular file")):
        if test(mode):
            return word
    return "special file"


def _digest(path: str, algo: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    h = hashlib.new(algo)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _NodePaths:
    """Where a path of a node's rpm database is on this machine: symlinks on the way are
    followed as inside the node (an absolute link is taken from the node's top, as librpm
    sees it chrooted, and `..` stops at the top), never out of it."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.dirs: dict[str, str | None] = {"/": "/"}     # in-node path -> resolved one

    def locate(self, path: str) -> str | None:
        """The host path of `path` (its last component not followed), None when a
        directory on its way is missing, not a directory, or loops."""
        parent, base = os.path.split(os.path.normpath("/" + path.lstrip("/")))
        real = self._dir(parent, 0)
        return None if real is None else self.root + os.path.join(real, base)

    def _dir(self, path: str, hops: int) -> str | None:
        if path in self.dirs:
            return self.dirs[path]
        if hops > _MAX_HOPS:
            return None
        parent, base = os.path.split(path)
        real = self._dir(parent, hops)
        if real is not None:
            candidate = os.path.join(real, base)
            try:
                st = os.lstat(self.root + candidate)
            except OSError:
                real = None
            else:
                if stat.S_ISDIR(st.st_mode):
                    real = candidate
                elif stat.S_ISLNK(st.st_mode):
                    target = os.readlink(self.root + candidate)
                    inside = os.path.normpath(target if target.startswith("/")
                                              else os.path.join(real, target))
                    while inside.startswith("/.."):
                        inside = inside[3:] or "/"
                    real = self._dir(inside, hops + 1)
                else:
                    real = None
        self.dirs[path] = real
        return real


def prove_tree(paths: list[str], verify: bool = False) -> Report:
    """Prove the package half for the nodes `paths` (parents before children)."""
    return _Prover(paths, verify).run()


# --------------------------------------------------------------------------- output

def to_junit(report: Report, path: str) -> None:
    """Write a JUnit XML report: one test case per node and rule, failures carrying each
    finding (CI systems show them per node)."""
    import xml.etree.ElementTree as ET

    by_case: dict[tuple[str, str], list[Finding]] = {}
    for f in report.findings:
        by_case.setdefault((f.node, f.rule), []).append(f)
    nodes = list(dict.fromkeys([*report.nodes, *(f.node for f in report.findings)]))
    suites = ET.Element("testsuites", name="redpak proof")
    suite = ET.SubElement(suites, "testsuite", name="redpak proof",
                          tests=str(len(nodes) * len(RULES)),
                          failures=str(len(by_case)), errors="0")
    for node in nodes:
        for rule in RULES:
            case = ET.SubElement(suite, "testcase", classname=node, name=rule)
            found = by_case.get((node, rule))
            if found:
                failure = ET.SubElement(case, "failure", message=found[0].message,
                                        type=rule)
                failure.text = "\n".join(f.message for f in found)
    data = ET.tostring(suites, encoding="unicode")
    from .fileio import write_atomic
    try:
        write_atomic(path, ('<?xml version="1.0" encoding="UTF-8"?>\n' + data + "\n")
                     .encode("utf-8"))
    except OSError as err:
        raise PackageError(f"{path}: cannot write the JUnit report: "
                           f"{err.strerror or err}") from err


def finish_check(args: Any, paths: list[str], problems: list[dict[str, str]],
                 warnings: list[str]) -> int:
    """`redconf check --packages`: add the package half to the config problems already
    found, print everything (text, --json records, --junit FILE); 0 only when all holds."""
    import time

    start = time.monotonic()
    report = prove_tree(paths, verify=bool(getattr(args, "verify", False)))
    config = [Finding(p.get("node", ""), "config", p["message"]) for p in problems]
    report.findings[:0] = config
    elapsed = time.monotonic() - start
    junit = getattr(args, "junit", None)
    if junit:
        to_junit(report, junit)
    if args.fmt == "json":
        print(json.dumps([f.to_dict() for f in report.findings], indent=2))
    elif args.fmt == "yaml":
        from redpak.cli.common import emit

        emit([f.to_dict() for f in report.findings], "yaml")
    else:
        for f in report.findings:           # every message names its node
            print(f"[{f.rule}] {f.message}")
        if args.verbose:
            for text in warnings:
                print(f"warning: {text}", file=sys.stderr)
    sys.stdout.flush()
    what = (f"{len(paths)} node{'s' if len(paths) != 1 else ''}, {report.packages} "
            f"package{'s' if report.packages != 1 else ''}, {report.files} file"
            f"{'s' if report.files != 1 else ''}"
            + (" verified" if getattr(args, "verify", False) else ""))
    if report.findings:
        print(f"redconf: proof failed: {len(report.findings)} finding"
              f"{'s' if len(report.findings) > 1 else ''} ({what})", file=sys.stderr)
        return 1
    if args.fmt == "human":
        print(f"proof holds: {what}, in {elapsed:.2f} s")
    return 0


# --------------------------------------------------------------------------- one transaction

@serialised
def prove_transaction(redpath: str, verb: str, specs: list[str],
                      out: Any = print) -> int:
    """`redwrap-dnf --proof VERB PKG...`: resolve the request against the node's repos
    and family as the real command would (ancestors never touched, descendants never
    broken) and say whether it is possible; writes nothing in any node's packages or
    database. Returns 0 when possible; raises PackageError saying why when not."""
    from redpak.pkg.ops import summary
    from redpak.pkg.repos import read_repos
    from redpak.pkg.session import descendants, open_session
    from redpak.pkg.solver import Universe

    if verb not in ("install", "remove", "upgrade"):
        raise PackageError(f"--proof works with install, remove and upgrade, not {verb}")
    from redpak.pkg import journal

    session = open_session(redpath)
    request = " ".join([verb, *specs])
    if journal.read(session.leaf.path) is not None:
        out(f"note: an earlier transaction in node {session.leaf.describe()} was "
            "interrupted; the real command cleans it up first (this proof does not)")
    universe = Universe(session)
    universe.add_family()
    if verb != "remove":
        universe.add_repos(read_repos(session))
    universe.add_local_rpms(specs if verb == "install" else [])
    universe.finish()
    try:
        plan = getattr(universe, f"plan_{verb}")(specs)
        if not plan.empty:
            universe.check_descendants(plan, descendants(session))
    except PackageError as err:
        raise PackageError(f"proof: {request} in node {session.leaf.describe()} is "
                           f"NOT possible:\n{err}") from err
    for note in plan.notes:
        out(note)
    if plan.empty:
        out(f"proof: {request} in node {session.leaf.describe()} is possible and changes "
            "nothing "
            "(nothing to do)")
        return 0
    out(summary(universe, plan))
    out(f"proof: {request} in node {session.leaf.describe()} is possible "
        "without touching any ancestor or breaking any descendant (nothing was changed)")
    return 0
