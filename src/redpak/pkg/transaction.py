# Running a plan in a node: packages fetched and verified (checksums, signatures), every
# policy check passed before anything is written, the journal written, librpm run rooted
# at the node with its scriptlets disabled, scriptlets run through the node's sandbox.
"""Execute a solver Plan in the administered node.

Order, and why:
1. fetch every new package and check it against its repository checksum;
2. read each header, verifying its signature when gpgcheck is on (unsigned, unknown key
   and bad signature are all refused);
3. apply the policies that need headers: file paths inside the node and not over the
   node's own configs, the scriptlet policy (scriptlets.py);
   up to here nothing in the node has changed, and any refusal names every offender;
4. write the journal (journal.py), then run one librpm transaction rooted at the node,
   flags NOSCRIPTS | NOTRIGGERS | NOPLUGINS, verification level `signature` when gpgcheck
   is on (librpm checks again, payload included), scriptlets run from the callbacks
   through the launcher at the points where rpm would run them;
5. clear the journal, drop the downloaded packages.
librpm chroots into the node while it writes, which needs root; before that the name
service modules are loaded, so that user and group lookups inside the chroot never load
code from the node (a package could ship its own libnss_*.so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from redpak.errors import PackageError
from redpak.pkg import journal
from redpak.pkg.progress import Progress
from redpak.pkg.rpmdb import (
    armored_keys,
    header_files,
    nevra_of,
    open_for_write,
    rpm_module,
    take_log,
)
from redpak.pkg.scriptlets import ERASE_KINDS, INSTALL_KINDS, Runner, refusal, scriptlets_of
from redpak.pkg.solver import Change, Plan, Universe

# Files a package may never write: the node's own configs, status, lock and journal, and
# the rpm database itself. A package could otherwise loosen its node's policy.
PROTECTED_FILES = ("/.rednode.yaml", "/etc/redpak.yaml", "/etc/redpak-admin.yaml",
                   "/etc/redpack.yaml", "/etc/redpack-admin.yaml", "/.redpak-dnf.lock",
                   "/.redpak-dnf.journal")
PROTECTED_DIRS = ("/var/lib/rpm/",)


@dataclass
class Item:
    """A package to install: its change, file and (once read) header."""

    change: Change
    path: str
    repo: Any = None                # repos.LoadedRepo, None for a local file
    hdr: Any = None
    fd: int = -1
    downloaded: bool = False


@dataclass
class Outcome:
    """What a transaction did: done lines, warnings."""

    done: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def require_root() -> None:
    """Raise PackageError unless running as root (librpm chroots into the node)."""
    if os.geteuid() != 0:
        raise PackageError("changing packages needs root: librpm writes the node's files "
                           "through chroot(2) into the node (run redwrap-dnf as root)")


def execute(universe: Universe, plan: Plan, progress: Progress, command: str,
            launcher: str | None) -> Outcome:
    """Run `plan` in the universe's leaf node. Raises PackageError before anything is
    written when a package is refused, and after librpm ran when an element failed."""
    require_root()
    session = universe.session
    items = _fetch(universe, plan, progress)
    family_keys = [k for pkgs in universe.installed for k in armored_keys(pkgs)]
    _read_headers(universe, items, family_keys)
    _check_policies(universe, plan, items, launcher)
    leaf = session.leaf.path
    replaces = [(old.nevra, old.instance, it.change.new.str())
                for it in items for old in it.change.old]
    journal.write(leaf, command, [(it.change.new.str(), header_files(it.hdr)) for it in items],
                  replaces)
    outcome = _run(universe, plan, items, family_keys, progress, launcher)
    journal.clear(leaf)
    for it in items:
        if it.downloaded:
            try:
                os.unlink(it.path)
            except OSError:
                pass
    return outcome


# --------------------------------------------------------------------------- preparation

def _fetch(universe: Universe, plan: Plan, progress: Progress) -> list[Item]:
    from redpak.pkg.repos import fetch_package

    items = []
    new = [c for c in plan.changes if c.new is not None]
    for number, change in enumerate(new, 1):
        s = change.new
        if s.id in universe.local:
            items.append(Item(change, universe.local[s.id]))
            continue
        repo = universe.repo_of(s)
        progress.item("Downloading", s.str(), number, len(new))
        items.append(Item(change, fetch_package(repo, s), repo, downloaded=True))
    return items


def gpgcheck_for(universe: Universe, item: Item) -> bool:
    """Signature checking applies when the family turns it on, or the package's repo."""
    return universe.session.gpgcheck or bool(item.repo and item.repo.config.gpgcheck)


def keyring(armored: list[str]) -> Any:
    """A librpm keyring holding the given ASCII-armoured keys; raises PackageError."""
    rpm = rpm_module()
    ring = rpm.keyring()
    for text in armored:
        try:
            ring.addKey(rpm.pubkey(text.encode() if isinstance(text, str) else text))
        except (rpm.error, ValueError, TypeError) as err:
            raise PackageError(f"a public key cannot be used ({err}): check the keys "
                               "imported into the family's rpm databases and the "
                               "repositories' gpgkey= files") from err
    return ring


def _read_headers(universe: Universe, items: list[Item], family_keys: list[str]) -> None:
    from redpak.pkg.repos import repo_keys

    rpm = rpm_module()
    rings: dict[str, Any] = {}
    problems = []
    for it in items:
        name = it.change.new.str()
        # Root "/" is never opened: the keyring is always given, so librpm does not
        # look for keys in a database.
        ts = rpm.TransactionSet("/")
        check = gpgcheck_for(universe, it)
        if check:
            rid = it.repo.config.id if it.repo else ""
            if rid not in rings:
                extra = repo_keys(it.repo.config) if it.repo else []
                rings[rid] = keyring(family_keys + extra)
            ts.setKeyring(rings[rid])
            ts.setVSFlags(0)
        else:
            ts.setKeyring(rpm.keyring())
            ts.setVSFlags(rpm.RPMVSF_MASK_NOSIGNATURES)
        take_log()
        try:
            it.hdr = _header(it.path, ts)
        except rpm.error as err:
            problems.append(_signature_problem(universe, it, name, str(err)))
            continue
        finally:
            take_log()
        if check and not any(it.hdr[tag] for tag in (rpm.RPMTAG_RSAHEADER,
                                                      rpm.RPMTAG_DSAHEADER,
                                                      rpm.RPMTAG_SIGPGP, rpm.RPMTAG_SIGGPG)):
            problems.append(f"{name} is not signed, and signatures are required "
                            f"({_why_gpg(universe, it)})")
            continue
        if nevra_of(it.hdr) != name:
            problems.append(f"{os.path.basename(it.path)} holds {nevra_of(it.hdr)}, "
                            f"not {name} as its repository says")
    if problems:
        raise PackageError("refused, nothing was changed:\n  " + "\n  ".join(problems))


def _header(path: str, ts: Any) -> Any:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return ts.hdrFromFdno(fd)
    finally:
        os.close(fd)


def _why_gpg(universe: Universe, it: Item) -> str:
    session = universe.session
    if session.gpgcheck:
        return f"gpgcheck is on, set by {session.gpgcheck_from}" if session.gpgcheck_from \
            else "gpgcheck is on"
    return f"gpgcheck=1 in {it.repo.config.where()}" if it.repo else "gpgcheck is on"


def _signature_problem(universe: Universe, it: Item, name: str, error: str) -> str:
    rpm = rpm_module()
    ts = rpm.TransactionSet("/")
    ts.setKeyring(rpm.keyring())
    ts.setVSFlags(rpm.RPMVSF_MASK_NOSIGNATURES)
    signer = ""
    try:
        hdr = _header(it.path, ts)
        sig = hdr.sprintf("%{RSAHEADER:pgpsig}%{DSAHEADER:pgpsig}").replace("(none)", "")
        if "Key ID" in sig:
            signer = sig[sig.index("Key ID") + 7:].split()[0].strip(",")
    except rpm.error:
        return f"{name}: {os.path.basename(it.path)} is not a valid rpm package ({error})"
    finally:
        take_log()
    leaf_db = os.path.join(universe.session.leaf.path, "var/lib/rpm")
    if "public key not available" in error or "not trusted" in error:
        return (f"{name} is signed with key {signer or '?'}, which this family does not "
                f"trust ({_why_gpg(universe, it)}; import the key with `rpm --dbpath "
                f"{leaf_db} --import KEYFILE`, or name it with gpgkey= in the repository)")
    return (f"{name}: its signature or digest does not verify: the package is corrupt or "
            f"was tampered with ({error})")


def _check_policies(universe: Universe, plan: Plan, items: list[Item],
                    launcher: str | None) -> None:
    problems = []
    for it in items:
        name = it.change.new.str()
        bad = _bad_path(header_files(it.hdr))
        if bad:
            problems.append(f"{name} would write {bad}: {_path_reason(bad)}")
        why = refusal(name, it.hdr, INSTALL_KINDS, launcher)
        if why:
            problems.append(why)
    for change in plan.changes:
        for old in change.old:
            why = refusal(old.nevra, old.hdr, ERASE_KINDS, launcher)
            if why:
                problems.append(why.replace("refused", f"cannot remove it ({change.kind} "
                                                       f"of {change.nevra}): refused"))
    if problems:
        raise PackageError("refused, nothing was changed:\n  "
                           + "\n  ".join(dict.fromkeys(problems)))


def _bad_path(paths: list[str]) -> str | None:
    for path in paths:
        parts = path.split("/")
        if not path.startswith("/") or any(p in ("", ".", "..") for p in parts[1:]):
            return path
        if path in PROTECTED_FILES or path.startswith(PROTECTED_DIRS):
            return path
    return None


def _path_reason(path: str) -> str:
    if path in PROTECTED_FILES or path.startswith(PROTECTED_DIRS):
        return "a package may not replace the node's own configuration or rpm database"
    return "the path is not a plain absolute path and could leave the node"


# --------------------------------------------------------------------------- running

def _preload_nss() -> None:
    """Load the passwd/group name-service modules now: librpm looks users and groups up
    while chrooted into the node, and glibc would load missing modules from there."""
    import grp
    import pwd

    for lookup in (pwd.getpwnam, grp.getgrnam):
        try:
            lookup("redpak-nss-preload")
        except KeyError:
            pass


class _Callback:
    """librpm's transaction callback: opens package files, reports progress, and runs
    scriptlets through the launcher where rpm would run them."""

    def __init__(self, rpm: Any, ts: Any, node: str, items: list[Item], progress: Progress,
                 runner: Runner | None, outcome: Outcome):
        self.rpm, self.node, self.items = rpm, node, items
        self.progress, self.runner, self.outcome = progress, runner, outcome
        self.elements = list(ts)                 # in the order librpm runs them
        self.total = len(self.elements)
        self.index = 0
        self.installing = False
        self.started: set[int] = set()
        self.upgraded = {old.name for it in items for old in it.change.old}
        self.old_headers: dict[int, Any] = {}   # database instance -> header
        self.errors: list[Exception] = []
        self.failed_pre: set[int] = set()
        self.devnull = -1

    def __call__(self, what: int, amount: int, total: int, key: Any, data: Any) -> Any:
        # An exception escaping a callback makes python-rpm abort() the process in the
        # middle of the transaction: keep it, fail this element, report it afterwards.
        try:
            return self._event(what, amount, total, key)
        except Exception as err:
            self.errors.append(err)
            if what == self.rpm.RPMCALLBACK_INST_OPEN_FILE:
                return self._refuse(key)
            return None

    def _refuse(self, key: int) -> int:
        """A descriptor that makes librpm fail this element: python-rpm aborts the process
        when OPEN_FILE returns anything but a descriptor, so give it an empty file."""
        return self.devnull

    def _event(self, what: int, amount: int, total: int, key: Any) -> Any:
        rpm = self.rpm
        if what == rpm.RPMCALLBACK_TRANS_START:
            self.installing = True
        elif what == rpm.RPMCALLBACK_ELEM_PROGRESS:
            self.index = amount
        elif what == rpm.RPMCALLBACK_INST_OPEN_FILE:
            return self._open(key)
        elif what == rpm.RPMCALLBACK_INST_CLOSE_FILE:
            self._close(key)
        elif what == rpm.RPMCALLBACK_INST_START:
            it = self.items[key]
            self.progress.item("Installing", it.change.new.str(), self.index + 1, self.total)
        elif what == rpm.RPMCALLBACK_INST_PROGRESS and total:
            it = self.items[key]
            self.progress.update("Installing", it.change.new.str(), self.index + 1,
                                 self.total, amount / total)
        elif what == rpm.RPMCALLBACK_UNINST_START:
            te = self.elements[self.index] if self.index < self.total else None
            name = te.NEVRA() if te is not None else str(key)
            self.progress.item("Removing", name, self.index + 1, self.total)
            self._erase_script(te, "preun")
        elif what == rpm.RPMCALLBACK_UNINST_STOP:
            te = self.elements[self.index] if self.index < self.total else None
            self._erase_script(te, "postun")
        return None

    def _open(self, key: int) -> int:
        # Descriptors are opened before librpm runs (no path is opened from a callback,
        # librpm may be chrooted); librpm reads a duplicate, so rewind the shared offset.
        it = self.items[key]
        if self.installing and key not in self.started:
            self.started.add(key)
            if not self._script(it.hdr, "pre", [self._count(it)], it.change.new.str()):
                self.failed_pre.add(key)
                return self._refuse(key)     # librpm then fails this element, as rpm does
        os.lseek(it.fd, 0, os.SEEK_SET)
        return it.fd

    def _close(self, key: int) -> None:
        it = self.items[key]
        if self.installing and key in self.started and key not in self.failed_pre:
            self._script(it.hdr, "post", [self._count(it)], it.change.new.str())

    def _count(self, it: Item) -> str:
        """$1 of an install scriptlet: instances of the package after this one."""
        return "2" if any(o.name == it.change.new.name for o in it.change.old) else "1"

    def _erase_script(self, te: Any, kind: str) -> None:
        if te is None or self.runner is None:
            return
        hdr = self.old_headers.get(te.DBOffset())
        if hdr is None:
            return
        args = ["1" if te.N() in self.upgraded else "0"]
        self._script(hdr, kind, args, te.NEVRA())

    def _script(self, hdr: Any, kind: str, args: list[str], name: str) -> bool:
        scripts = [s for s in scriptlets_of(hdr, (kind,)) if not s.noop]
        if not scripts or self.runner is None:
            return True
        script = scripts[0]
        # Never started from here: this may run while librpm is chrooted into the node.
        status = self.runner.run(self.node, script.prog, script.body, args,
                                 f"%{kind} of {name}")
        if status != 0:
            self.outcome.warnings.append(f"scriptlet %{kind} of {name} failed in the node "
                                         f"(exit status {status})")
            return kind not in ("pre", "pretrans")
        return True


def _run(universe: Universe, plan: Plan, items: list[Item], family_keys: list[str],
         progress: Progress, launcher: str | None) -> Outcome:
    from redpak.pkg.repos import repo_keys

    rpm = rpm_module()
    session = universe.session
    leaf = session.leaf.path
    ts = open_for_write(leaf)
    flags = rpm.RPMTRANS_FLAG_NOSCRIPTS | rpm.RPMTRANS_FLAG_NOTRIGGERS
    flags |= getattr(rpm, "RPMTRANS_FLAG_NOPLUGINS", 0)
    ts.setFlags(flags)
    keys = list(family_keys)
    for repo in {id(it.repo): it.repo for it in items if it.repo is not None}.values():
        if repo.config.gpgcheck or session.gpgcheck:
            keys.extend(repo_keys(repo.config))
    ts.setKeyring(keyring(keys))
    ts.setVSFlags(0)
    filters = 0
    for index, it in enumerate(items):
        kind = it.change.kind
        if kind == "reinstall":
            ts.addReinstall(it.hdr, index)
            filters |= rpm.RPMPROB_FILTER_REPLACEPKG
        else:
            ts.addInstall(it.hdr, index, "i" if kind == "install" else "u")
            if kind == "downgrade":
                filters |= rpm.RPMPROB_FILTER_OLDPACKAGE
    for change in plan.changes:
        if change.kind == "erase":
            for old in change.old:
                ts.addErase(old.instance)
    ts.setProbFilter(filters)
    ts.order()
    outcome = Outcome()
    old_headers = {old.instance: old.hdr for c in plan.changes for old in c.old}
    runner = Runner(launcher) if launcher is not None and _has_scripts(items, old_headers) \
        else None
    callback = _Callback(rpm, ts, leaf, items, progress, runner, outcome)
    callback.old_headers = old_headers
    strict = any(gpgcheck_for(universe, it) for it in items)
    try:
        callback.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        for it in items:
            it.fd = os.open(it.path, os.O_RDONLY | os.O_CLOEXEC)
        for it in items:
            callback._script(it.hdr, "pretrans", [], it.change.new.str())
        _preload_nss()
        take_log()
        rpm.addMacro("_pkgverify_level", "signature" if strict else "digest")
        try:
            result = ts.run(callback, None)
        finally:
            rpm.delMacro("_pkgverify_level")
            progress.finish()
        messages = take_log()
        if not result and not [te for te in ts if te.Failed()]:
            for it in items:
                callback._script(it.hdr, "posttrans", [], it.change.new.str())
    finally:
        ts.closeDB()
        if runner is not None:
            runner.close()
        for fd in [it.fd for it in items] + [callback.devnull]:
            if fd >= 0:
                os.close(fd)
        for it in items:
            it.fd = -1
    for err in callback.errors:
        outcome.warnings.append(f"during the transaction: {err}")
    if result:                          # problems found: librpm did nothing
        raise PackageError("librpm refused the transaction, nothing was changed:\n  "
                           + "\n  ".join(text for text, _ in result))
    failed = [te.NEVRA() for te in ts if te.Failed()]
    if result is not None or failed:
        _recover_now(leaf)
        errors = outcome.warnings + [m for m in messages if m.startswith("error:")]
        raise PackageError("the transaction failed for " + (", ".join(failed) or "some "
                           "packages") + (":\n  " + "\n  ".join(errors) if errors else "")
                           + "\n(the other packages were processed; run the command "
                           "again after fixing the cause)")
    outcome.warnings.extend(m.removeprefix("warning: ") for m in messages
                            if m.startswith("warning:"))
    for change in plan.changes:
        outcome.done.append(f"{_past[change.kind]} {change.nevra}")
    return outcome


def _has_scripts(items: list[Item], old_headers: dict[int, Any]) -> bool:
    return any(not s.noop for it in items for s in scriptlets_of(it.hdr, INSTALL_KINDS)) or \
        any(not s.noop for h in old_headers.values() for s in scriptlets_of(h, ERASE_KINDS))


_past = {"install": "Installed", "upgrade": "Upgraded", "downgrade": "Downgraded",
         "reinstall": "Reinstalled", "replace": "Installed", "erase": "Removed"}


def _recover_now(leaf: str) -> None:
    """After a failed element: remove what it left, as after a crash."""
    from redpak.pkg.rpmdb import read_installed

    data = journal.read(leaf)
    if data is None:
        return
    ts = open_for_write(leaf)
    installed = {p.nevra for p in read_installed(leaf)}
    journal.recover(leaf, data, ts, installed)
    journal.clear(leaf)
