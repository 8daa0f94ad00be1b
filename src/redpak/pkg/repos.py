# Repositories of a node family: .repo files (INI) read from every node, metadata fetched
# (file:// or http(s)://), verified against repomd checksums, cached, loaded into libsolv.
"""Repositories.

A node sees the repositories defined in NODE/etc/yum.repos.d/*.repo of every node of its
family: an ancestor's repositories serve its descendants (a system node can name the
distribution once). On the same repository id the definition closest to the leaf wins.

Metadata (repomd.xml, primary, filelists) is cached under the merged `cachedir`, in one
directory per repository and base URL, together with libsolv's own .solv file; while the
repository's repomd.xml is byte-for-byte unchanged, the cached .solv file is loaded and
nothing else is fetched. Every metadata file and every package is checked against the
checksum its index gives before it is used: a repository with a bad checksum is refused.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re

from redpak.errors import PackageError
from redpak.pkg.session import NodeRef, Session, open_dirs, owning_node
from redpak.record import record

TYPE_CHECKING = False  # typing costs ~2 ms at start: for annotations only
if TYPE_CHECKING:
    from typing import Any

REPO_DIR = "etc/yum.repos.d"
_ID_RE = re.compile(r"[A-Za-z0-9_.:+-]+")
_REPOMD_MAX = 4 << 20
_METADATA_MAX = 1 << 30
_KEY_MAX = 1 << 20
_HTTP_TIMEOUT = 30.0
_TRUE = {"1", "yes", "true", "on", "enabled"}
_FALSE = {"0", "no", "false", "off", "disabled"}
_HASHES = {"sha": "sha1", "sha1": "sha1", "sha224": "sha224", "sha256": "sha256",
           "sha384": "sha384", "sha512": "sha512"}


@record(frozen=True)
class RepoConfig:
    """One repository definition ([id] section of a .repo file)."""

    id: str
    name: str
    baseurls: tuple[str, ...]
    enabled: bool
    gpgcheck: bool                 # as the .repo says; the family's gpgcheck can only add
    gpgkeys: tuple[str, ...]
    file: str
    line: int
    node: NodeRef
    priority: int = 99

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


# --------------------------------------------------------------------------- .repo files

def read_repos(session: Session) -> list[RepoConfig]:
    """Every repository defined in the family (enabled or not), the leaf's definition
    winning on the same id, sorted by id. Raises PackageError naming file and line."""
    by_id: dict[str, RepoConfig] = {}
    for node in session.family:
        directory = os.path.join(node.path, REPO_DIR)
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".repo"))
        except FileNotFoundError:
            continue
        except OSError as err:
            raise PackageError(f"{directory}: cannot list repositories: "
                               f"{err.strerror}") from err
        for name in names:
            for repo in parse_repo_file(os.path.join(directory, name), node):
                by_id[repo.id] = repo
    return [by_id[k] for k in sorted(by_id)]


def parse_repo_file(path: str, node: NodeRef) -> list[RepoConfig]:
    """Parse one .repo file; raises PackageError naming the file, line and key."""
    import configparser

    try:
        with open(path, "rb") as f:
            raw = f.read(_KEY_MAX + 1)
    except OSError as err:
        raise PackageError(f"{path}: cannot read: {err.strerror}") from err
    if len(raw) > _KEY_MAX:
        raise PackageError(f"{path}: larger than 1 MiB: not a repository file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PackageError(f"{path}: not valid UTF-8 (byte {err.start})") from err
    parser = configparser.RawConfigParser(strict=True, interpolation=None,
                                          default_section="\0none")
    parser.optionxform = str.lower       # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=path)
    except configparser.Error as err:
        raise PackageError(_syntax_error(path, text, err)) from err
    lines = _section_lines(text)
    out = []
    for section in parser.sections():
        line = lines.get(section, 0)
        where = f"{path}:{line}" if line else path
        if not _ID_RE.fullmatch(section):
            raise PackageError(f"{where}: [{section}]: not a valid repository id "
                               "(letters, digits and _ . : + - only)")
        opts = parser[section]
        urls = tuple(_expand(u, where, section, "baseurl")
                     for u in _split_list(opts.get("baseurl", "")))
        if not urls:
            other = [k for k in ("mirrorlist", "metalink") if k in opts]
            hint = (f" ({' and '.join(other)} not supported: give a baseurl)" if other
                    else " (add baseurl=file:///path/to/repo or an http(s) URL)")
            raise PackageError(f"{where}: [{section}]: no baseurl{hint}")
        for url in urls:
            _check_url(url, f"{where}: [{section}] baseurl")
        keys = tuple(_expand(k, where, section, "gpgkey")
                     for k in _split_list(opts.get("gpgkey", "")))
        for key in keys:
            _check_url(key, f"{where}: [{section}] gpgkey")
        try:
            priority = int(opts.get("priority", "99").strip() or "99")
        except ValueError:
            raise PackageError(f"{where}: [{section}] priority: "
                               f"{opts.get('priority')!r} is not a number") from None
        out.append(RepoConfig(
            id=section, name=(opts.get("name") or section).strip(), baseurls=urls,
            enabled=_flag(opts, "enabled", True, where, section),
            gpgcheck=_flag(opts, "gpgcheck", False, where, section), gpgkeys=keys,
            file=path, line=line, node=node, priority=priority))
    return out


def _syntax_error(path: str, text: str, err: Exception) -> str:
    """One message naming the file, the line and what to write instead."""
    import configparser

    lines = text.splitlines()

    def bad(lineno: int) -> str:
        line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        if line.startswith("["):
            return f"{path}:{lineno}: {line!r} is not a [repository-id] line (missing ']'?)"
        return (f"{path}:{lineno}: {line!r} is not KEY=VALUE (nor a [repository-id] line, "
                "a comment or an indented continuation)")

    if isinstance(err, configparser.MissingSectionHeaderError):
        if err.line.lstrip().startswith("["):
            return bad(err.lineno)
        return (f"{path}:{err.lineno}: {err.line.strip()!r} is outside any section "
                "(start the file with a [repository-id] line)")
    if isinstance(err, configparser.DuplicateSectionError):
        return (f"{path}:{err.lineno}: [{err.section}] is defined twice in this file "
                "(keep one)")
    if isinstance(err, configparser.DuplicateOptionError):
        return (f"{path}:{err.lineno}: [{err.section}] {err.option}: given twice "
                "(keep one)")
    if isinstance(err, configparser.ParsingError) and err.errors:
        return bad(err.errors[0][0])
    return f"{path}: not a valid repository file: {str(err).replace(chr(10), ' ')}"


def _flag(opts: Any, key: str, default: bool, where: str, section: str) -> bool:
    value = opts.get(key)
    if value is None or not value.strip():
        return default
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise PackageError(f"{where}: [{section}] {key}: {value!r} is not a boolean (use 1 or 0)")


def _section_lines(text: str) -> dict[str, int]:
    lines = {}
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*\[([^\]]*)\]", line)
        if m and m.group(1).strip() not in lines:
            lines[m.group(1).strip()] = number
    return lines


def _split_list(value: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", value) if part]


def _expand(value: str, where: str, section: str, key: str) -> str:
    arch = os.uname().machine
    for name in ("basearch", "arch"):
        value = value.replace(f"${{{name}}}", arch).replace(f"${name}", arch)
    m = re.search(r"\$\{?[A-Za-z_]+", value)
    if m:
        raise PackageError(f"{where}: [{section}] {key}: unknown variable {m.group()} in "
                           f"{value!r} (only $basearch and $arch are known)")
    return value


def _check_url(url: str, what: str) -> None:
    if not url.startswith(("file:///", "http://", "https://", "/")):
        raise PackageError(f"{what}: {url!r}: use file:///absolute/path, http:// or "
                           "https://")


# --------------------------------------------------------------------------- fetching

def _file_path(url: str) -> str | None:
    if url.startswith("file://"):
        path = url[len("file://"):]
        if "%" not in path:
            return path     # urllib.parse costs ~1.5 ms of every command
        from urllib.parse import unquote
        return unquote(path)
    if url.startswith("/"):
        return url
    return None


def fetch(url: str, limit: int, what: str) -> bytes:
    """Return the content of a file:// or http(s):// URL (at most `limit` bytes).
    Raises PackageError saying what could not be fetched and why."""
    path = _file_path(url)
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as err:
            raise PackageError(f"{what}: cannot read {path}: {err.strerror}") from err
    else:
        data = _http_get(url, limit, what)
    if len(data) > limit:
        raise PackageError(f"{what}: {url} is larger than {limit} bytes")
    return data


def _http_get(url: str, limit: int, what: str) -> bytes:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "redwrap-dnf"})
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
            return response.read(limit + 1)
    except urllib.error.HTTPError as err:
        raise PackageError(f"{what}: cannot fetch {url}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise PackageError(f"{what}: cannot fetch {url}: {err.reason}") from err
    except (OSError, ValueError) as err:
        raise PackageError(f"{what}: cannot fetch {url}: {err}") from err


def check_digest(data: bytes, kind: str, expected: str, what: str) -> None:
    """Raise PackageError unless `data` has checksum `expected` of type `kind`."""
    algo = _HASHES.get(kind.lower())
    if algo is None:
        raise PackageError(f"{what}: checksum type {kind!r} is not supported "
                           "(the repository must use sha1 or sha2 checksums)")
    got = hashlib.new(algo, data).hexdigest()
    if got != expected.lower():
        raise PackageError(f"{what}: checksum mismatch ({kind} {got}, expected {expected}): "
                           "the repository is corrupt or was tampered with; refused")


def _write_file(name: str, data: bytes, dir_fd: int) -> None:
    from ..fileio import write_atomic  # NAME.PID.tmp, renamed; removed if the write fails
    write_atomic(name, data, dir_fd=dir_fd)


def _stale_tmp(name: str) -> bool:
    """True for a NAME.PID.tmp file whose writer is gone (killed while writing)."""
    pid = name[:-len(".tmp")].rpartition(".")[2]
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _read_file(name: str, limit: int, dir_fd: int) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(limit + 1)


def _safe_href(href: str, what: str) -> str:
    parts = href.split("/")
    if (not href or href.startswith("/") or "://" in href or ".." in parts
            or any(p in ("", ".") for p in parts)):
        raise PackageError(f"{what}: location {href!r} is not a plain relative path: "
                           "refused")
    return href


# --------------------------------------------------------------------------- metadata

@record(frozen=True)
class _MdFile:
    kind: str
    href: str
    checksum_type: str
    checksum: str


def _parse_repomd(data: bytes, what: str) -> dict[str, _MdFile]:
    import xml.etree.ElementTree as ET

    ns = "{http://linux.duke.edu/metadata/repo}"
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise PackageError(f"{what}: repomd.xml is not valid XML ({err})") from err
    out = {}
    for item in root.findall(f"{ns}data"):
        kind = item.get("type", "")
        loc = item.find(f"{ns}location")
        chk = item.find(f"{ns}checksum")
        if loc is None or chk is None or not loc.get("href") or not (chk.text or "").strip():
            continue
        out[kind] = _MdFile(kind, _safe_href(loc.get("href", ""), what),
                            chk.get("type", "sha256"), (chk.text or "").strip())
    if "primary" not in out:
        raise PackageError(f"{what}: repomd.xml lists no primary metadata (run "
                           "createrepo_c on the repository)")
    return out


class LoadedRepo:
    """A repository loaded into a libsolv pool: its config, base URL and cache directory
    (and the node directory holding it, where opening it starts: see open_cache)."""

    def __init__(self, config: RepoConfig, base: str, cache: str, solv_repo: Any,
                 cache_top: str = "/"):
        self.config, self.base, self.cache, self.solv_repo = config, base, cache, solv_repo
        self.cache_top = cache_top

    def open_cache(self, sub: str = "") -> int:
        """A descriptor on the cache directory (or its subdirectory sub), created when
        missing and reached without following symlinks: the cache lies in a node's var,
        which nodes write while redwrap-dnf runs. The caller closes it."""
        return open_dirs(os.path.join(self.cache, sub) if sub else self.cache, self.cache_top)

    def url(self, href: str) -> str:
        return self.base.rstrip("/") + "/" + href


def cache_dir(session: Session, repo: RepoConfig, base: str) -> tuple[str, str]:
    """The cache directory of one repository (id and base URL), inside a node, and the
    directory of that node."""
    digest = hashlib.sha256(base.encode()).hexdigest()[:16]
    path = os.path.join(session.cachedir, f"{repo.id}-{digest}")
    return path, owning_node(path, session.family).path


def load_repo(pool: Any, session: Session, repo: RepoConfig) -> LoadedRepo:
    """Load a repository's metadata into `pool` (from the cache while repomd.xml is
    unchanged). Raises PackageError for an unreachable or corrupt repository."""
    import solv

    what = f"repository '{repo.id}' ({repo.where()})"
    errors = []
    for base in repo.baseurls:
        try:
            repomd = fetch(base.rstrip("/") + "/repodata/repomd.xml", _REPOMD_MAX, what)
        except PackageError as err:
            errors.append(str(err))
            continue
        cache, top = cache_dir(session, repo, base)
        solv_repo = pool.add_repo(repo.id)
        solv_repo.priority = -repo.priority        # libsolv: higher wins; dnf: lower wins
        loaded = LoadedRepo(repo, base, cache, solv_repo, top)
        solv_repo.appdata = loaded
        cache_fd = loaded.open_cache()
        try:
            if _read_file("repomd.xml", _REPOMD_MAX, cache_fd) == repomd:
                if _add_solv(solv, solv_repo, "repo.solv", cache_fd):
                    return loaded
                solv_repo.empty()
            _load_metadata(solv, solv_repo, loaded, repomd, what, cache_fd)
        finally:
            os.close(cache_fd)
        return loaded
    raise PackageError("; ".join(errors) if errors else f"{what}: no base URL")


def _add_solv(solv: Any, solv_repo: Any, name: str, dir_fd: int) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        f = solv.xfopen_fd("", fd)      # the binding duplicates fd
    finally:
        os.close(fd)
    if f is None:                       # libsolv crashes on None: never pass it on
        return False
    try:
        return bool(solv_repo.add_solv(f))
    finally:
        f.close()


def _load_metadata(solv: Any, solv_repo: Any, loaded: LoadedRepo, repomd: bytes,
                   what: str, cache: int) -> None:
    """Fetch the metadata into the cache directory open at descriptor `cache`."""
    files = _parse_repomd(repomd, what)
    for old in os.listdir(cache):       # a changed repository: start the cache afresh
        if old != "packages" and (not old.endswith(".tmp") or _stale_tmp(old)):
            try:
                os.unlink(old, dir_fd=cache)
            except OSError:
                pass
    for kind in ("primary", "filelists"):
        md = files.get(kind)
        if md is None:
            continue                    # no filelists: file requirements match less
        data = fetch(loaded.url(md.href), _METADATA_MAX, what)
        check_digest(data, md.checksum_type, md.checksum, f"{what}: {md.href}")
        local = os.path.basename(md.href)
        _write_file(local, data, cache)
        fd = os.open(local, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=cache)
        try:
            # libsolv picks the decompressor from the name given here; it dups fd.
            f = solv.xfopen_fd(os.path.basename(md.href), fd)
        finally:
            os.close(fd)
        if f is None:
            raise PackageError(f"{what}: {md.href}: compression not supported by libsolv")
        try:
            flags = 0 if kind == "primary" else solv.Repo.REPO_EXTEND_SOLVABLES
            if not solv_repo.add_rpmmd(f, None, flags):
                raise PackageError(f"{what}: {md.href}: unreadable metadata "
                                   f"({solv_repo.pool.errstr})")
        finally:
            f.close()
    solv_repo.internalize()
    tmp = f"repo.solv.{os.getpid()}.tmp"
    from ..fileio import create_fresh  # never through a link a node planted at tmp
    fd = create_fresh(tmp, dir_fd=cache)
    try:
        f = solv.xfopen_fd("", fd, "w")  # the binding duplicates fd
    finally:
        os.close(fd)
    if f is not None:
        ok = solv_repo.write(f)
        f.close()
        if ok:
            os.replace(tmp, "repo.solv", src_dir_fd=cache, dst_dir_fd=cache)
        else:
            os.unlink(tmp, dir_fd=cache)
    # Written last: it marks the cache valid for this exact repomd.xml.
    _write_file("repomd.xml", repomd, cache)


# --------------------------------------------------------------------------- packages

def fetch_package(loaded: LoadedRepo, solvable: Any) -> tuple[str, bytes]:
    """Download (or copy) a package of a loaded repository into its cache directory,
    check it against the repository's checksum, and return its path and the checked
    bytes. Use the bytes (private_file()): the cache lies in a node that descendants may
    write, so the file at the path may have changed since. Raises PackageError for a
    missing or corrupt package."""
    import solv

    what = f"repository '{loaded.config.id}'"
    href = _safe_href(solvable.lookup_location()[0] or "", f"{what}: {solvable.str()}")
    chk = solvable.lookup_checksum(solv.SOLVABLE_CHECKSUM)
    if chk is None:
        raise PackageError(f"{what}: {solvable.str()} has no checksum in the repository "
                           "metadata: refused")
    pkgdir = loaded.open_cache("packages")
    try:
        return _fetch_into(loaded, href, chk, pkgdir, what, solvable)
    finally:
        os.close(pkgdir)


def _fetch_into(loaded: LoadedRepo, href: str, chk: Any, pkgdir: int, what: str,
                solvable: Any) -> tuple[str, bytes]:
    for name in os.listdir(pkgdir):
        if name.endswith(".tmp") and _stale_tmp(name):
            try:
                os.unlink(name, dir_fd=pkgdir)
            except OSError:
                pass
    name = os.path.basename(href)
    dest = os.path.join(loaded.cache, "packages", name)
    cached = _read_file(name, _METADATA_MAX, pkgdir)
    if cached is not None:
        try:
            check_digest(cached, chk.typestr(), chk.hex(), "")
            return dest, cached
        except PackageError:
            pass
    data = fetch(loaded.url(href), _METADATA_MAX, f"{what}: {solvable.str()}")
    check_digest(data, chk.typestr(), chk.hex(), f"{what}: package {name}")
    try:
        _write_file(name, data, pkgdir)
    except OSError as err:
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        raise PackageError(f"{dest}: cannot store the downloaded package: {err.strerror}"
                           + (" (the filesystem of the cache directory is full: free space "
                              "or point cachedir elsewhere; nothing was changed)" if full
                              else "")) from err
    return dest, data


def private_file(data: bytes, name: str) -> int:
    """A sealed memory file holding DATA (a package checked against its repository's
    checksum), for librpm to read through /proc/self/fd/FD: what is installed is what was
    checked, whatever happens to the cache file. Returns the fd (close-on-exec)."""
    import fcntl

    fd = os.memfd_create(name[:200], os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def repo_keys(repo: RepoConfig) -> list[str]:
    """The public keys (ASCII armour blocks) the repository's gpgkey= URLs name.
    Raises PackageError when a key cannot be fetched or holds no key."""
    out = []
    for url in repo.gpgkeys:
        what = f"repository '{repo.id}' ({repo.where()}) gpgkey"
        text = fetch(url, _KEY_MAX, what).decode("ascii", "replace")
        blocks = armored_blocks(text)
        if not blocks:
            raise PackageError(f"{what}: {url} holds no ASCII-armoured public key")
        out.extend(blocks)
    return out


def armored_blocks(text: str) -> list[str]:
    """Split text into its ASCII-armoured public key blocks."""
    begin, end = "-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----END PGP PUBLIC KEY BLOCK-----"
    out = []
    start = text.find(begin)
    while start >= 0:
        stop = text.find(end, start)
        if stop < 0:
            break
        out.append(text[start:stop + len(end)] + "\n")
        start = text.find(begin, stop)
    return out
