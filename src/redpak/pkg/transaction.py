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
import re
import stat

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
from redpak.pkg.scriptlets import ERASE_KINDS, INSTALL_KINDS, refusal, scriptlets_of
from redpak.pkg.solver import Change, Plan, Universe
from redpak.record import field, record

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

# Files a package may never write: the node's own configs, status, lock and journal, and
# the rpm database itself. A package could otherwise loosen its node's policy.
PROTECTED_FILES = ("/.rednode.yaml", "/etc/redpak.yaml", "/etc/redpak-admin.yaml",
                   "/etc/redpack.yaml", "/etc/redpack-admin.yaml", "/.redpak-dnf.lock",
                   "/.redpak-dnf.journal")
PROTECTED_DIRS = ("/var/lib/rpm/",)


@record
class Item:
    """A package to install: its change, file and (once read) header."""

    change: Change
    path: str                       # what librpm reads: the file, or /proc/self/fd/N
    repo: Any = None                # repos.LoadedRepo, None for a local file
    hdr: Any = None
    fd: int = -1
    cache_path: str = ""            # a downloaded package's file in the cache ("": local)
    private_fd: int = -1            # the memory file holding its checked bytes

    @property
    def name(self) -> str:
        """The package file's name, for messages."""
        return os.path.basename(self.cache_path or self.path)


@record
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
            launcher: str | None, lock_timeout: float = 300.0) -> Outcome:
    """Run `plan` in the universe's leaf node, atomically (stage.py): the node is either
    entirely old or entirely new. Raises PackageError, before anything is changed when a
    package is refused or an element fails. The packages it downloaded are removed,
    whatever happens."""
    require_root()
    items: list[Item] = []
    try:
        _fetch(universe, plan, progress, items)
        family_keys = [k for pkgs in universe.installed for k in armored_keys(pkgs)]
        _read_headers(universe, items, family_keys)
        _check_policies(universe, plan, items, launcher)
        return _run(universe, plan, items, family_keys, progress, launcher, command,
                    lock_timeout)
    finally:
        for it in items:
            if it.private_fd >= 0:
                os.close(it.private_fd)
            if it.cache_path:
                try:
                    os.unlink(it.cache_path)
                except OSError:
                    pass


# --------------------------------------------------------------------------- preparation

def _fetch(universe: Universe, plan: Plan, progress: Progress, items: list[Item]) -> None:
    from redpak.pkg.repos import fetch_package, private_file

    new = [c for c in plan.changes if c.new is not None]
    for number, change in enumerate(new, 1):
        s = change.new
        if s.id in universe.local:
            items.append(Item(change, universe.local[s.id]))
            continue
        repo = universe.repo_of(s)
        progress.item("Downloading", s.str(), number, len(new))
        path, data = fetch_package(repo, s)
        item = Item(change, path, repo, cache_path=path)
        items.append(item)
        # librpm reads the checked bytes, never the cache file again (a running node may
        # write the cache: it could swap the file between the check and the install)
        item.private_fd = private_file(data, item.name)
        item.path = f"/proc/self/fd/{item.private_fd}"


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
            problems.append(f"{it.name} holds {nevra_of(it.hdr)}, "
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
        return f"{name}: {it.name} is not a valid rpm package ({error})"
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
        devices = [p for p, m in zip(header_files(it.hdr), it.hdr[1030] or [])
                   if stat.S_ISCHR(m & 0o177777) or stat.S_ISBLK(m & 0o177777)]
        if devices and not universe.session.devices_from:
            problems.append(f"{name} creates device node(s) {', '.join(devices)}: a device "
                            "node in a node gives direct access to host hardware; refused "
                            "(set `pkg-devices: true` in the config section of the node's "
                            "admin config to allow them in this node)")
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
    """librpm's transaction callback: hands it the package files (opened before it runs)
    and reports progress. Scriptlets never run from here (see _run)."""

    def __init__(self, rpm: Any, ts: Any, items: list[Item], progress: Progress):
        self.rpm, self.items, self.progress = rpm, items, progress
        self.elements = list(ts)                 # in the order librpm runs them
        self.total = len(self.elements)
        self.index = 0
        self.errors: list[Exception] = []
        self.devnull = -1

    def __call__(self, what: int, amount: int, total: int, key: Any, data: Any) -> Any:
        # An exception escaping a callback makes python-rpm abort() the process in the
        # middle of the transaction: keep it, fail this element, report it afterwards.
        try:
            return self._event(what, amount, total, key)
        except Exception as err:
            self.errors.append(err)
            if what == self.rpm.RPMCALLBACK_INST_OPEN_FILE:
                return self.devnull      # python-rpm aborts on anything but a descriptor
            return None

    def _event(self, what: int, amount: int, total: int, key: Any) -> Any:
        rpm = self.rpm
        if what == rpm.RPMCALLBACK_ELEM_PROGRESS:
            self.index = amount
        elif what == rpm.RPMCALLBACK_INST_OPEN_FILE:
            it = self.items[key]
            os.lseek(it.fd, 0, os.SEEK_SET)      # librpm reads a duplicate: rewind
            return it.fd
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
        return None


def _scripts_for(rpm: Any, elements: list[Any], items: list[Item],
                 old_headers: dict[int, Any], node: str) -> tuple[list[dict], list[dict],
                                                                   list[dict]]:
    """The scriptlets of a transaction in rpm's order, as (pretrans, pre, post) lists of
    {node, prog, body, args, name, kind}: %pretrans, then per element %pre (installs) or
    %preun (removals) before librpm runs; per element %post or %postun, then %posttrans,
    once the node is the new one."""
    upgraded = {old.name for it in items for old in it.change.old}

    def entries(hdr: Any, kind: str, args: list[str], name: str) -> list[dict]:
        return [{"node": node, "prog": list(s.prog), "body": s.body, "args": args,
                 "name": f"%{kind} of {name}", "kind": kind}
                for s in scriptlets_of(hdr, (kind,)) if not s.noop][:1]

    pretrans = [e for it in items for e in entries(it.hdr, "pretrans", [],
                                                    it.change.new.str())]
    pre: list[dict] = []
    post: list[dict] = []
    for te in elements:
        if te.Type() == rpm.TR_ADDED:
            it = items[te.Key()]
            count = "2" if any(o.name == it.change.new.name for o in it.change.old) else "1"
            pre += entries(it.hdr, "pre", [count], it.change.new.str())
            post += entries(it.hdr, "post", [count], it.change.new.str())
        else:
            hdr = old_headers.get(te.DBOffset())
            if hdr is not None:
                args = ["1" if te.N() in upgraded else "0"]
                pre += entries(hdr, "preun", args, te.NEVRA())
                post += entries(hdr, "postun", args, te.NEVRA())
    post += [e for it in items for e in entries(it.hdr, "posttrans", [],
                                                 it.change.new.str())]
    return pretrans, pre, post


def run_scripts(scripts: list[dict], launcher: str | None, outcome: Outcome,
                stop_on_pre: bool = False) -> None:
    """Run scriptlets through the launcher (each in its own network namespace); a failing
    %pre refuses the transaction when `stop_on_pre`, any other failure is a warning."""
    from redpak.pkg.scriptlets import run_in_node

    for s in scripts:
        if launcher is None:
            outcome.warnings.append(f"scriptlet {s['name']} not run: no launcher")
            continue
        status = run_in_node(s["node"], tuple(s["prog"]), s["body"], s["args"], launcher,
                             s["name"])
        if status == 0:
            continue
        if stop_on_pre and s["kind"] == "pre":
            raise PackageError(f"refused, nothing was changed: scriptlet {s['name']} failed "
                               f"in the node (exit status {status})")
        outcome.warnings.append(f"scriptlet {s['name']} failed in the node "
                                f"(exit status {status})")


def _run(universe: Universe, plan: Plan, items: list[Item], family_keys: list[str],
         progress: Progress, launcher: str | None, command: str,
         lock_timeout: float) -> Outcome:
    from redpak.pkg import stage as staging
    from redpak.pkg.rpmdb import checked_db_path, real_root, rpm_lock

    rpm = rpm_module()
    session = universe.session
    leaf = session.leaf.path
    root = real_root(leaf)
    db = checked_db_path(leaf)
    os.makedirs(db, exist_ok=True)
    outcome = Outcome()
    node_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    lock_fd = -1
    ts = None
    stage = staging.Stage(root, node_fd)
    try:
        lock_fd = rpm_lock(db, lock_timeout)
        old_headers = {old.instance: old.hdr for c in plan.changes for old in c.old}
        paths = [p for it in items for p in header_files(it.hdr)]
        paths += [p for h in old_headers.values() for p in header_files(h)]
        stage.create(staging.units_for(node_fd, paths), _privileged_paths(items))
        ts = open_for_write(stage.path, staged=True)
        _add_elements(rpm, ts, universe, plan, items, family_keys)
        callback = _Callback(rpm, ts, items, progress)
        pretrans, pre, post = _scripts_for(rpm, callback.elements, items, old_headers, leaf)
        # The live node is untouched until the swap: %pretrans, %pre and %preun see it
        # as it is, and a failing %pre refuses everything.
        run_scripts(pretrans, launcher, outcome)
        run_scripts(pre, launcher, outcome, stop_on_pre=True)
        result, messages = _run_librpm(rpm, ts, universe, items, callback, progress)
        ts.closeDB()
        ts = None
        for err in callback.errors:
            outcome.warnings.append(f"during the transaction: {err}")
        if result:                          # problems found: librpm did nothing
            # librpm names filesystems as seen from its root (the stage, in the node).
            raise PackageError("librpm refused the transaction, nothing was changed:\n  "
                               + "\n  ".join(re.sub(r" on the (/\S*) filesystem",
                                                     lambda m: " on the filesystem of "
                                                     + os.path.normpath(root + m[1]),
                                                     text) for text, _ in result))
        failed = [te.NEVRA() for te in callback.elements if te.Failed()]
        if result is not None or failed:
            errors = outcome.warnings + [m for m in messages if m.startswith("error:")]
            raise PackageError("the transaction failed for " + (", ".join(failed) or "some "
                               "packages") + (":\n  " + "\n  ".join(errors) if errors else "")
                               + "\nnothing was changed: run the command again after "
                               "fixing the cause")
        outcome.done.extend(_strip_privileges(stage.path, items))
        outcome.warnings.extend(m.removeprefix("warning: ") for m in messages
                                if m.startswith("warning:"))
        # Commit: from the journal on, the transaction is rolled forward, never back.
        units = stage.staged_ids()
        journal.write_commit(leaf, command, units, post)
        staging.swap(root, node_fd, units)
        if post:
            journal.write_post(leaf, command, post)
        journal.clear(leaf)
    except BaseException:
        if not os.path.lexists(journal.journal_path(leaf)):
            try:
                stage.discard()
            except PackageError:
                pass
        raise
    finally:
        if ts is not None:
            ts.closeDB()
        if lock_fd >= 0:
            os.close(lock_fd)
        os.close(node_fd)
    for change in plan.changes:
        outcome.done.append(f"{_past[change.kind]} {change.nevra}")
    finish(leaf, post, launcher, outcome)
    return outcome


def finish(leaf: str, post: list[dict], launcher: str | None, outcome: Outcome,
           swapped: bool = True) -> None:
    """After the swap (`swapped`): delete the old units (in the background, while the
    remaining scriptlets run in the new node), run those scriptlets. Otherwise (recovery):
    delete a stale stage."""
    from redpak.pkg import stage as staging

    try:
        fd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if swapped:
                staging.discard_old(leaf, fd)
            else:
                staging.remove_stale(leaf, fd)
        finally:
            os.close(fd)
    except (OSError, PackageError) as err:
        outcome.warnings.append(f"the old files were not all removed: {err}")
    if post:
        run_scripts(post, launcher, outcome)
        journal.clear_post(leaf)


def _add_elements(rpm: Any, ts: Any, universe: Universe, plan: Plan, items: list[Item],
                  family_keys: list[str]) -> None:
    from redpak.pkg.repos import repo_keys

    session = universe.session
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


def _run_librpm(rpm: Any, ts: Any, universe: Universe, items: list[Item],
                callback: _Callback, progress: Progress) -> tuple[Any, list[str]]:
    strict = any(gpgcheck_for(universe, it) for it in items)
    try:
        callback.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        for it in items:
            it.fd = os.open(it.path, os.O_RDONLY | os.O_CLOEXEC)
        _preload_nss()
        take_log()
        rpm.addMacro("_pkgverify_level", "signature" if strict else "digest")
        try:
            result = ts.run(callback, None)
        finally:
            rpm.delMacro("_pkgverify_level")
            progress.finish()
        return result, take_log()
    finally:
        for fd in [it.fd for it in items] + [callback.devnull]:
            if fd >= 0:
                os.close(fd)
        for it in items:
            it.fd = -1


_SETID = 0o6000
_CAPS_XATTR = "security.capability"


def _privileged_paths(items: list[Item]) -> set[str]:
    """Paths whose staged copy must not share its inode with the live node: librpm may
    set their metadata in place (an unchanged file), and their bits are then stripped."""
    out = set()
    for it in items:
        modes = it.hdr[1030] or []                    # RPMTAG_FILEMODES
        caps = it.hdr[5010] or []                     # RPMTAG_FILECAPS
        for i, path in enumerate(header_files(it.hdr)):
            if (i < len(modes) and modes[i] & _SETID) or (i < len(caps) and caps[i]):
                out.add(path)
    return out


def _strip_privileges(stage_root: str, items: list[Item]) -> list[str]:
    """Remove setuid/setgid bits and file capabilities from what librpm wrote in the
    stage: a node's files are on the host, where any user could run them. Returns the
    lines saying what was removed."""
    from redpak.pkg.stage import break_link

    done = []
    for it in items:
        modes = it.hdr[1030] or []
        caps = it.hdr[5010] or []
        for i, path in enumerate(header_files(it.hdr)):
            setid = i < len(modes) and stat.S_ISREG(modes[i] & 0o177777) and modes[i] & _SETID
            cap = i < len(caps) and bool(caps[i])
            if not setid and not cap:
                continue
            host = break_link(stage_root, path)
            if host is None:
                continue
            what = []
            if setid:
                mode = os.lstat(host).st_mode
                os.chmod(host, stat.S_IMODE(mode) & ~_SETID)
                what.append("setuid/setgid bits")
            if cap:
                try:
                    os.removexattr(host, _CAPS_XATTR, follow_symlinks=False)
                except OSError:
                    pass
                what.append("file capabilities")
            done.append(f"Removed the {' and '.join(what)} of {path} "
                        f"({it.change.new.str()})")
    return done


_past = {"install": "Installed", "upgrade": "Upgraded", "downgrade": "Downgraded",
         "reinstall": "Reinstalled", "replace": "Installed", "erase": "Removed"}
