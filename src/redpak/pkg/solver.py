# libsolv for a node family: the family's installed packages (all but the leaf's locked),
# the repositories, requests turned into jobs, the family rules of SPEC §8, and solver
# problems in plain words.
"""Dependency resolution for one node of a family.

libsolv has a single "installed" repository. It holds every package of the node's
ancestors and of the node itself, plus a pseudo-package for what the host provides to
scriptlets (/bin/sh: scriptlets run in the admin sandbox, where the host's shell is
visible). Each package that is not the node's own is locked, so what an ancestor provides
is never installed again and any solution that would change it is not a solution. When a
request has no solution, it is solved again without the locks: if that works only by
changing an ancestor's package, the refusal names that ancestor.

Descendants are checked after solving, each against its own chain of ancestors: removing
or upgrading a package a descendant needs (or adding one it conflicts with) is refused,
naming the descendant.

Installed packages are built into libsolv from the headers librpm reads, file lists
included, so file requirements met by an ancestor's files resolve.
"""

from __future__ import annotations

import os

from redpak.errors import PackageError
from redpak.pkg.rpmdb import (
    RPMSENSE_EQUAL,
    RPMSENSE_GREATER,
    RPMSENSE_LESS,
    RPMSENSE_RPMLIB,
    Installed,
    evr_of,
    read_installed,
)
from redpak.pkg.session import NodeRef, Session
from redpak.record import field, record

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

HOST = -1
"""Owner index of the host pseudo-package."""

HOST_NAME = "host-system"
HOST_PROVIDES = ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash")

# (libsolv key attribute, rpm name tag, flags tag, version tag)
_DEP_TAGS = (
    ("SOLVABLE_PROVIDES", 1047, 1112, 1113),
    ("SOLVABLE_REQUIRES", 1049, 1048, 1050),
    ("SOLVABLE_CONFLICTS", 1054, 1053, 1055),
    ("SOLVABLE_OBSOLETES", 1090, 1114, 1115),
)


@record
class Change:
    """One package change: kind is install, upgrade, downgrade, reinstall, replace (by
    obsoletes) or erase; `new` is the libsolv solvable installed, `old` what goes."""

    kind: str
    new: Any = None
    old: list[Installed] = field(default_factory=list)
    reason: str = ""            # "" asked for, "dependency", "dependent"

    @property
    def nevra(self) -> str:
        return self.new.str() if self.new is not None else self.old[0].nevra


@record
class Plan:
    """What a request does to the node, and notes for the user (already installed ...)."""

    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes


class Universe:
    """A libsolv pool holding what a node sees: installed packages of its family (with
    their owner), the host pseudo-package, and the enabled repositories."""

    def __init__(self, session: Session):
        import solv

        self.solv = solv
        self.session = session
        self.nodes: list[NodeRef] = list(session.family)
        self.leaf_index = len(session.family) - 1
        pool = solv.Pool()
        pool.setdisttype(solv.Pool.DISTTYPE_RPM)
        pool.setarch()
        self.pool = pool
        self.installed_repo = pool.add_repo("@System")
        self._installed_data = self.installed_repo.add_repodata(0)
        self.owner: dict[int, int] = {}         # solvable id -> node index (HOST: host)
        self.by_id: dict[int, Installed] = {}
        self.installed: list[list[Installed]] = []   # per family node
        self.repos: list[Any] = []              # repos.LoadedRepo
        self.local: dict[int, str] = {}         # solvable id -> local .rpm file
        self._cmdline: Any = None
        self._local_specs: dict[str, int] = {}

    # ------------------------------------------------------------------ building

    def add_family(self) -> None:
        """Read every family node's database into the installed repository."""
        for index, node in enumerate(self.session.family):
            pkgs = read_installed(node.path, index)
            self.installed.append(pkgs)
            for pkg in pkgs:
                if pkg.name == "gpg-pubkey":
                    continue
                s = self._add_header(self.installed_repo, self._installed_data, pkg.hdr)
                self.owner[s.id] = index
                self.by_id[s.id] = pkg
        self._add_host()

    def _add_host(self) -> None:
        solv = self.solv
        s = self.installed_repo.add_solvable()
        s.name, s.evr, s.arch = HOST_NAME, "0", "noarch"
        s.add_deparray(solv.SOLVABLE_PROVIDES,
                       self.pool.rel2id(s.nameid, s.evrid, solv.REL_EQ))
        for path in HOST_PROVIDES:
            if os.path.exists(path):
                s.add_deparray(solv.SOLVABLE_PROVIDES, self.pool.str2id(path))
        self.owner[s.id] = HOST

    def _add_header(self, repo: Any, data: Any, hdr: Any) -> Any:
        solv = self.solv
        s = repo.add_solvable()
        s.name = hdr[1000]
        s.evr = evr_of(hdr)
        s.arch = hdr[1022] or "noarch"
        for key, name_tag, flags_tag, version_tag in _DEP_TAGS:
            names = hdr[name_tag]
            if not names:
                continue
            keyname = getattr(solv, key)
            requires = name_tag == 1049
            for name, flags, version in zip(names, hdr[flags_tag], hdr[version_tag]):
                if requires and (flags & RPMSENSE_RPMLIB or name.startswith("rpmlib(")):
                    continue
                s.add_deparray(keyname, self._dep(name, flags, version))
        dirs, bases, index = hdr[1118] or [], hdr[1117] or [], hdr[1116] or []
        dir_ids: dict[int, int] = {}
        for i, base in zip(index, bases):
            dirid = dir_ids.get(i)
            if dirid is None:
                dirid = dir_ids[i] = data.str2dir(dirs[i].rstrip("/") or "/", True)
            data.add_dirstr(s.id, solv.SOLVABLE_FILELIST, dirid, base)
        return s

    def _dep(self, name: str, flags: int, version: str) -> Any:
        solv, pool = self.solv, self.pool
        if name.startswith("("):
            dep = pool.parserpmrichdep(name)
            if dep is not None:
                return dep
        rel = ((solv.REL_LT if flags & RPMSENSE_LESS else 0)
               | (solv.REL_GT if flags & RPMSENSE_GREATER else 0)
               | (solv.REL_EQ if flags & RPMSENSE_EQUAL else 0))
        if not rel or not version:
            return pool.str2id(name)
        return pool.rel2id(pool.str2id(name), pool.str2id(version), rel)

    def add_repos(self, configs: list[Any]) -> None:
        """Load the enabled repositories among `configs` (repos.RepoConfig)."""
        from redpak.pkg.repos import load_repo

        for config in configs:
            if config.enabled:
                self.repos.append(load_repo(self.pool, self.session, config))

    def add_local_rpms(self, specs: list[str]) -> None:
        """Add the package files among `specs` (paths ending in .rpm) before finish()."""
        for spec in specs:
            if not is_local_rpm(spec):
                _check_not_a_path(spec)
                continue
            if self._cmdline is None:
                self._cmdline = self.pool.add_repo("@commandline")
            real = os.path.abspath(spec)
            s = self._cmdline.add_rpm(real, self.solv.Repo.REPO_REUSE_REPODATA
                                      | self.solv.Repo.REPO_NO_INTERNALIZE)
            if not s:
                raise PackageError(f"{spec}: not a readable rpm package")
            self.local[s.id] = real
            self._local_specs[spec] = s.id

    def finish(self) -> None:
        """Make the pool ready for selections and solving."""
        self._installed_data.internalize()
        self.installed_repo.internalize()
        if self._cmdline is not None:
            self._cmdline.internalize()
        self.pool.installed = self.installed_repo
        self.pool.addfileprovides()
        self.pool.createwhatprovides()

    # ------------------------------------------------------------------ questions

    def node_of(self, s: Any) -> NodeRef | None:
        """The node owning an installed solvable (None for the host)."""
        index = self.owner.get(s.id, HOST)
        return None if index == HOST else self.nodes[index]

    def owner_text(self, s: Any) -> str:
        """'ancestor node 'x' (path)' / 'node 'x' (path)' / 'the host' for an installed one."""
        index = self.owner.get(s.id, HOST)
        if index == HOST:
            return "the host (what scriptlets may use)"
        node = self.nodes[index]
        if index < self.leaf_index:
            return f"ancestor node {node.describe()}"
        if index > self.leaf_index:
            return f"descendant node {node.describe()}"
        return f"node {node.describe()}"

    def is_leaf_owned(self, s: Any) -> bool:
        return self.owner.get(s.id) == self.leaf_index

    def repo_of(self, s: Any) -> Any:
        """The LoadedRepo an available solvable comes from (None for local files)."""
        data = getattr(s.repo, "appdata", None)
        return data

    def select(self, spec: str, installed_only: bool = False) -> Any:
        """A libsolv selection for a package spec (name, glob, name-version, provide,
        file path, name.arch)."""
        sel_cls = self.solv.Selection
        flags = (sel_cls.SELECTION_NAME | sel_cls.SELECTION_PROVIDES | sel_cls.SELECTION_GLOB
                 | sel_cls.SELECTION_CANON | sel_cls.SELECTION_DOTARCH | sel_cls.SELECTION_REL)
        if spec.startswith("/"):
            flags |= sel_cls.SELECTION_FILELIST
        if installed_only:
            flags |= sel_cls.SELECTION_INSTALLED_ONLY
        return self.pool.select(spec, flags)

    def available(self) -> list[Any]:
        """Every solvable of the enabled repositories."""
        return [s for r in self.repos for s in r.solv_repo.solvables]

    # ------------------------------------------------------------------ requests

    def plan_install(self, specs: list[str]) -> Plan:
        """Plan installing packages (names, provides, file paths or local .rpm files)."""
        Job = self.solv.Job
        jobs, notes, missing = [], [], []
        for spec in specs:
            if spec in self._local_specs:
                jobs.append(self.pool.Job(Job.SOLVER_INSTALL | Job.SOLVER_SOLVABLE,
                                          self._local_specs[spec]))
                continue
            sel = self.select(spec)
            if sel.isempty():
                missing.append(spec)
                continue
            found = sel.solvables()
            # Installed packages satisfy the request when they carry the name of a package
            # the spec selects (or when nothing available matches it at all).
            names = {s.name for s in found if s.repo != self.installed_repo}
            have = [s for s in found if s.repo == self.installed_repo
                    and (not names or s.name in names)]
            if have:
                for s in have:
                    notes.append(f"{s.str()} is already installed in {self.owner_text(s)}")
                continue
            jobs.extend(sel.jobs(Job.SOLVER_INSTALL))
        if missing:
            raise PackageError(_no_match(missing, "in the enabled repositories"))
        return self._solve(jobs, notes, "install")

    def plan_remove(self, specs: list[str]) -> Plan:
        """Plan removing installed packages of the node (and the node's packages needing
        them); refuses packages of another node, naming it."""
        Job = self.solv.Job
        jobs, missing = [], []
        for spec in specs:
            sel = self.select(spec, installed_only=True)
            found = [s for s in sel.solvables() if s.repo == self.installed_repo]
            if not found:
                missing.append(spec)
                continue
            self._refuse_foreign(found, "remove", spec)
            jobs.extend(self.pool.Job(Job.SOLVER_ERASE | Job.SOLVER_SOLVABLE, s.id)
                        for s in found)
        if missing:
            raise PackageError(_no_match(missing, "among the installed packages",
                                         "list them with `list --installed`"))
        return self._solve(jobs, [], "remove", allow_uninstall=True)

    def plan_upgrade(self, specs: list[str]) -> Plan:
        """Plan upgrading the node's packages (all of them when `specs` is empty)."""
        Job = self.solv.Job
        jobs, notes, missing = [], [], []
        if not specs:
            for s in self.installed_repo.solvables:
                if self.is_leaf_owned(s):
                    jobs.append(self.pool.Job(Job.SOLVER_UPDATE | Job.SOLVER_SOLVABLE, s.id))
            if not jobs:
                return Plan(notes=["no package is installed in this node"])
            return self._solve(jobs, notes, "upgrade")
        for spec in specs:
            sel = self.select(spec, installed_only=True)
            found = [s for s in sel.solvables() if s.repo == self.installed_repo]
            if found:
                self._refuse_foreign(found, "upgrade", spec)
                jobs.extend(self.pool.Job(Job.SOLVER_UPDATE | Job.SOLVER_SOLVABLE
                                          | Job.SOLVER_FORCEBEST, s.id) for s in found)
                continue
            # A versioned spec (foo-2.0) selects the available package, not the installed.
            sel = self.select(spec)
            names = {s.name for s in sel.solvables()}
            inst = [s for s in self.installed_repo.solvables if s.name in names]
            if not inst:
                missing.append(spec)
                continue
            self._refuse_foreign(inst, "upgrade", spec)
            jobs.extend(sel.jobs(Job.SOLVER_INSTALL))
        if missing:
            raise PackageError(_no_match(missing, "among the installed packages",
                                         "install it first"))
        return self._solve(jobs, notes, "upgrade")

    def plan_reinstall(self, specs: list[str]) -> Plan:
        """Plan reinstalling the node's packages from the repositories."""
        Job = self.solv.Job
        jobs, missing = [], []
        for spec in specs:
            sel = self.select(spec, installed_only=True)
            found = [s for s in sel.solvables() if s.repo == self.installed_repo]
            if not found:
                missing.append(spec)
                continue
            self._refuse_foreign(found, "reinstall", spec)
            for s in found:
                same = [a for a in self.pool.whatprovides(self.pool.str2id(s.name))
                        if a.repo != self.installed_repo and a.name == s.name
                        and a.evr == s.evr and a.arch == s.arch]
                if not same:
                    raise PackageError(f"cannot reinstall {s.str()}: that version is not in "
                                       "any enabled repository")
                jobs.append(self.pool.Job(Job.SOLVER_INSTALL | Job.SOLVER_SOLVABLE, same[0].id))
        if missing:
            raise PackageError(_no_match(missing, "among the installed packages"))
        return self._solve(jobs, [], "reinstall")

    def _refuse_foreign(self, found: list[Any], verb: str, spec: str) -> None:
        foreign = [s for s in found if not self.is_leaf_owned(s)]
        if not foreign:
            return
        s = foreign[0]
        node = self.node_of(s)
        where = self.owner_text(s)
        fix = (f" ({verb} it there: redwrap-dnf --redpath {node.path} {verb} {s.name})"
               if node is not None else "")
        raise PackageError(f"cannot {verb} {s.str()} ('{spec}') in node "
                           f"{self.session.leaf.describe()}: it belongs to {where}, and a "
                           f"node never changes packages it does not own{fix}")

    # ------------------------------------------------------------------ solving

    def _locks(self) -> list[Any]:
        Job = self.solv.Job
        return [self.pool.Job(Job.SOLVER_LOCK | Job.SOLVER_SOLVABLE, sid)
                for sid, owner in self.owner.items() if owner != self.leaf_index
                and owner < len(self.session.family)]

    def _solve(self, jobs: list[Any], notes: list[str], verb: str,
               allow_uninstall: bool = False) -> Plan:
        if not jobs:
            return Plan(notes=notes)
        solver = self._solver(allow_uninstall)
        problems = solver.solve(jobs + self._locks())
        if problems:
            raise PackageError(self._explain(jobs, problems, verb, allow_uninstall))
        plan = self._plan(solver.transaction(), jobs)
        plan.notes[:0] = notes
        for change in plan.changes:
            for old in change.old:
                if old.node != self.leaf_index:    # the locks make this unreachable
                    raise PackageError(f"internal error: the solution changes "
                                       f"{old.nevra} of {self.nodes[old.node].describe()}")
        return plan

    def _solver(self, allow_uninstall: bool) -> Any:
        solver = self.pool.Solver()
        if allow_uninstall:
            solver.set_flag(self.solv.Solver.SOLVER_FLAG_ALLOW_UNINSTALL, 1)
        return solver

    def _plan(self, trans: Any, jobs: list[Any]) -> Plan:
        T = self.solv.Transaction
        asked = set()
        for job in jobs:
            asked.update(s.id for s in job.solvables())
        plan = Plan()
        for s in trans.newsolvables():
            others = [o for o in trans.allothersolvables(s) if o.id in self.by_id]
            old = [self.by_id[o.id] for o in others]
            same = [o for o in others if o.name == s.name]
            if not others:
                kind = "install"
            elif same and same[0].evr == s.evr and same[0].arch == s.arch:
                kind = "reinstall"
            elif same:
                kind = "upgrade" if s.evrcmp(same[0]) > 0 else "downgrade"
            else:
                kind = "replace"
            reason = "" if (s.id in asked or any(o.id in asked for o in others)) \
                else "dependency"
            plan.changes.append(Change(kind, s, old, reason))
        for s in trans.steps():
            step = trans.steptype(s, T.SOLVER_TRANSACTION_SHOW_ACTIVE)
            if s.repo == self.installed_repo and step == T.SOLVER_TRANSACTION_ERASE \
                    and s.id in self.by_id:
                plan.changes.append(Change("erase", None, [self.by_id[s.id]],
                                           "" if s.id in asked else "dependent"))
        return plan

    def _explain(self, jobs: list[Any], problems: list[Any], verb: str,
                 allow_uninstall: bool) -> str:
        """Words for a request without a solution, naming any other node it needs."""
        unlocked = self._solver(allow_uninstall)
        if not unlocked.solve(jobs):
            trans = unlocked.transaction()
            touched = []
            for s in trans.steps():
                if s.repo == self.installed_repo and not self.is_leaf_owned(s):
                    what = "remove"
                    for new in trans.newsolvables():
                        if s.id in {o.id for o in trans.allothersolvables(new)}:
                            what = ("upgrade" if new.evrcmp(s) > 0 else "downgrade"
                                    if new.evrcmp(s) < 0 else "reinstall")
                    touched.append(f"{what} {s.str()}, which belongs to {self.owner_text(s)}")
            if touched:
                return (f"cannot {verb} in node {self.session.leaf.describe()}: it would "
                        + "; and ".join(touched) + ", and a node never changes packages it "
                        "does not own (change it in that node first)")
        lines = [f"cannot {verb} in node {self.session.leaf.describe()}: the request has "
                 "no solution"]
        foreign = set()
        for number, problem in enumerate(problems, 1):
            text = str(problem)
            lines.append(f"  problem {number}: {text}")
            for sol in problem.solutions():
                elements = [e.str() for e in sol.elements(True)]
                if any("lock" in e for e in elements):
                    continue            # "do not ask to lock": not a choice a node has
                lines.append("    possible solution: " + "; ".join(elements))
        for sid, index in self.owner.items():
            if index != self.leaf_index:
                s = self.pool.solvables[sid]
                if s.str() in "\n".join(lines):
                    foreign.add(f"  note: {s.str()} belongs to {self.owner_text(s)} and "
                                "cannot be changed from this node")
        return "\n".join(lines + sorted(foreign))

    # ------------------------------------------------------------------ descendants

    def check_descendants(self, plan: Plan, descendants: list[NodeRef]) -> None:
        """Refuse a plan that breaks a package of a node below the leaf (a requirement
        left without a provider, or a new conflict), naming that node."""
        if plan.empty or not descendants:
            return
        solv = self.solv
        desc_repo = self.pool.add_repo("@descendants")
        data = desc_repo.add_repodata(0)
        first = len(self.nodes)
        per_node: list[list[Any]] = []
        for offset, node in enumerate(descendants):
            self.nodes.append(node)
            solvables = []
            for pkg in read_installed(node.path, first + offset):
                if pkg.name == "gpg-pubkey":
                    continue
                s = self._add_header(desc_repo, data, pkg.hdr)
                self.owner[s.id] = first + offset
                solvables.append(s)
            per_node.append(solvables)
        if not any(per_node):
            return
        data.internalize()
        desc_repo.internalize()
        self.pool.addfileprovides()
        self.pool.createwhatprovides()
        before = {sid for sid, owner in self.owner.items() if owner < first}
        removed = {old_sid for c in plan.changes for old_sid in self._ids(c.old)}
        added = {c.new.id for c in plan.changes if c.new is not None}
        after = (before - removed) | added
        problems = []
        for offset, node in enumerate(descendants):
            # One package lives in one node of a family: a descendant's copy would shadow
            # (or be shadowed by) the new one, and the two could diverge.
            have = {s.name: s for s in per_node[offset]}
            for i in sorted(added):
                new = self.pool.solvables[i]
                if new.name in have:
                    problems.append(
                        f"{new.str()} would also be in descendant node {node.describe()}, "
                        f"which has {have[new.name].str()}: a package belongs to one node "
                        f"of a family (remove it there first: `redwrap-dnf --redpath "
                        f"{node.path} remove {new.name}`)")
        for offset, node in enumerate(descendants):
            chain = {s.id for k, other in enumerate(descendants)
                     if node.path == other.path or node.path.startswith(other.path + "/")
                     for s in per_node[k]}
            for s in per_node[offset]:
                for dep in s.lookup_deparray(solv.SOLVABLE_REQUIRES):
                    providers = {p.id for p in self.pool.whatprovides(dep)}
                    if providers & (before | chain) and not providers & (after | chain):
                        lost = ", ".join(sorted(self.pool.solvables[i].str()
                                                for i in providers & removed)) or str(dep)
                        problems.append(f"{s.str()} in descendant node {node.describe()} "
                                        f"requires {dep}, provided by {lost}")
                for dep in s.lookup_deparray(solv.SOLVABLE_CONFLICTS):
                    new = {p.id for p in self.pool.whatprovides(dep)} & added
                    for i in sorted(new):
                        problems.append(f"{s.str()} in descendant node {node.describe()} "
                                        f"conflicts with {self.pool.solvables[i].str()}")
            for i in sorted(added):
                for dep in self.pool.solvables[i].lookup_deparray(solv.SOLVABLE_CONFLICTS):
                    for p in self.pool.whatprovides(dep):
                        if p.id in chain and self.owner.get(p.id) == first + offset:
                            problems.append(f"{self.pool.solvables[i].str()} conflicts with "
                                            f"{p.str()} in descendant node {node.describe()}")
        if problems:
            raise PackageError(
                f"refused: this change to node {self.session.leaf.describe()} would break "
                "its descendants (remove or change their packages first):\n  "
                + "\n  ".join(dict.fromkeys(problems)))

    def _ids(self, pkgs: list[Installed]) -> list[int]:
        wanted = {(p.node, p.instance) for p in pkgs}
        return [sid for sid, p in self.by_id.items() if (p.node, p.instance) in wanted]


def is_local_rpm(spec: str) -> bool:
    """True when a package spec names a package file rather than a package."""
    return spec.endswith(".rpm") and os.path.isfile(spec)


def _check_not_a_path(spec: str) -> None:
    """A spec written as a file path (`./x.rpm`, `dir/x.rpm`, `../x`) that is no package
    file is an error about that file, not a package name no repository matches."""
    if not (spec.startswith(("./", "../")) or (spec.endswith(".rpm") and "/" in spec)):
        return
    if not os.path.lexists(spec):
        raise PackageError(f"{spec}: no such file (give the path of an .rpm package file)")
    if not spec.endswith(".rpm") or not os.path.isfile(spec):
        raise PackageError(f"{spec}: not a package file (give the path of an .rpm file)")


def _no_match(specs: list[str], where: str, hint: str = "") -> str:
    quoted = ", ".join(f"'{s}'" for s in specs)
    return (f"no package matches {quoted} {where}" + (f" ({hint})" if hint else ""))
