# Cython glue between redpak's Python layers and the C core in csrc/: spawn a
# node from an encoded LaunchPlan, wait for it, validate plans and their deps.
# cython: language_level=3
import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EINTR
from libc.stdint cimport uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

cdef extern from "<string.h>":
    size_t strnlen(const char *s, size_t maxlen)
from posix.unistd cimport close
from posix.wait cimport waitpid, WIFEXITED, WEXITSTATUS, WTERMSIG

from redpak._core cimport *

# pid -> (pidfd, held lock fds, plan, (cgroup owner, id)) of nodes spawned here, until finish()
_children = {}

FEAT_OPENAT2 = RP_FEAT_OPENAT2
FEAT_MOUNT_SETATTR = RP_FEAT_MOUNT_SETATTR
FEAT_CLOSE_RANGE = RP_FEAT_CLOSE_RANGE
FEAT_PIDFD = RP_FEAT_PIDFD
FEAT_MOUNT_API = RP_FEAT_MOUNT_API
FEAT_CLONE3 = RP_FEAT_CLONE3
FEAT_INTO_CGROUP = RP_FEAT_INTO_CGROUP
FEAT_OPEN_TREE_ATTR = RP_FEAT_OPEN_TREE_ATTR


def version():
    """Version string of the C core."""
    return rp_version().decode()


def features():
    """Kernel features the C core found (FEAT_* bits)."""
    return rp_features()


def checksum(data):
    """FNV-1a 64 of bytes, as used for the plan checksum."""
    cdef const unsigned char[:] view = data
    if view.shape[0] == 0:
        return rp_plan_checksum(b"", 0)
    return rp_plan_checksum(&view[0], view.shape[0])


cdef str _text(const char *s):
    return s.decode("utf-8", "surrogateescape")


cdef _raise(rp_error *err):
    from redpak.errors import LaunchError, PlanError
    err.msg[sizeof(err.msg) - 1] = 0
    msg = err.msg[:strnlen(err.msg, sizeof(err.msg))].decode("utf-8", "surrogateescape")
    if err.step == RP_STEP_PLAN:
        raise PlanError(msg)
    exc = LaunchError(_text(rp_step_name(err.step)), msg, err.errnum, _text(rp_error_path(err)))
    if err.errnum:
        raise exc from OSError(err.errnum, os.strerror(err.errnum))
    raise exc


cdef class _Buffer:
    """An 8-byte aligned view of a plan (a copy only when bytes are misaligned)."""
    cdef bytes keep
    cdef char *copy
    cdef const char *data
    cdef size_t size

    def __cinit__(self, plan):
        if not isinstance(plan, bytes):
            plan = bytes(plan)
        self.keep = plan
        self.size = PyBytes_GET_SIZE(plan)
        self.data = PyBytes_AS_STRING(plan)
        self.copy = NULL
        if (<uintptr_t>self.data) % 8:
            self.copy = <char *>malloc(self.size + 8)
            if self.copy == NULL:
                raise MemoryError()
            memcpy(self.copy, self.data, self.size)
            self.data = self.copy

    def __dealloc__(self):
        free(self.copy)


cdef class _CStrings:
    """A NULL-terminated char*[] over a list of bytes (kept alive here)."""
    cdef list keep
    cdef char **array

    def __cinit__(self, items):
        self.keep = [os.fsencode(x) for x in items]
        for b in self.keep:
            if b"\0" in b:
                raise ValueError(f"embedded NUL byte in {b!r}")
        self.array = <char **>malloc((len(self.keep) + 1) * sizeof(char *))
        if self.array == NULL:
            raise MemoryError()
        for i, b in enumerate(self.keep):
            self.array[i] = PyBytes_AS_STRING(b)
        self.array[len(self.keep)] = NULL

    def __dealloc__(self):
        free(self.array)


def _environ():
    return [k + b"=" + v for k, v in os.environb.items()]


def validate(plan):
    """Checks a binary plan as the C core does; raises PlanError if it is corrupt."""
    cdef _Buffer buf = _Buffer(plan)
    cdef rp_plan p
    cdef rp_error err
    if rp_plan_open(&p, buf.data, buf.size, &err) < 0:
        _raise(&err)


def check_deps(plan):
    """True if a cached plan is still valid for this caller; raises PlanError if corrupt."""
    cdef _Buffer buf = _Buffer(plan)
    cdef _CStrings env = _CStrings(_environ())
    cdef rp_plan p
    cdef rp_error err
    cdef int r
    if rp_plan_open(&p, buf.data, buf.size, &err) < 0:
        _raise(&err)
    with nogil:
        r = rp_plan_check_deps(&p, env.array, &err)
    return r == 0


def spawn(plan, argv, pass_fds=(), disable=0, stdio=None, env_add=None, cwd=None,
          die_with_caller=False):
    """Starts argv in a node as the plan says and returns its pid once the program runs.

    Raises LaunchError (its __cause__ an OSError) if a step failed: then nothing ran.
    `disable` forces kernel features off (FEAT_* bits) to exercise fallbacks in tests.
    `stdio`: 3 descriptors that become the program's 0, 1, 2 (-1 keeps the caller's);
    `env_add`: b"NAME=value" entries set after the plan's environment; `cwd`: a
    directory in the node, entered after the plan's chdir (relative to it).
    `die_with_caller` (redwrap's cold path): with die-with-parent in the plan, this
    process is killed when its parent dies, and the node with it; otherwise (the API)
    only the node is tied to this process.
    """
    cdef _Buffer buf = _Buffer(plan)
    cdef _CStrings args = _CStrings(argv)
    cdef _CStrings env = _CStrings(_environ())
    cdef _CStrings extra = _CStrings(env_add or ())
    cdef int std[3]
    cdef bytes cwd_b = os.fsencode(cwd) if cwd is not None else None
    cdef rp_launch_opts opts
    cdef rp_child child
    cdef rp_error err
    cdef int r
    cdef int *fds = NULL
    fd_list = [int(fd) for fd in pass_fds]
    if fd_list:
        fds = <int *>malloc(len(fd_list) * sizeof(int))
        if fds == NULL:
            raise MemoryError()
        for i, fd in enumerate(fd_list):
            fds[i] = fd
    opts.envp = env.array
    opts.pass_fds = fds
    opts.npass_fds = len(fd_list)
    opts.disable = disable
    opts.stdio = NULL
    if stdio is not None:
        for i in range(3):
            std[i] = int(stdio[i])
        opts.stdio = std
    opts.env_add = extra.array if env_add else NULL
    if cwd_b is not None and b"\0" in cwd_b:
        raise ValueError(f"embedded NUL byte in {cwd_b!r}")
    opts.chdir = PyBytes_AS_STRING(cwd_b) if cwd_b is not None else NULL
    opts.flags = 0 if die_with_caller else RP_LAUNCH_OWN_LIFE
    try:
        with nogil:
            r = rp_launch(buf.data, buf.size, args.array, &opts, &child, &err)
    finally:
        free(fds)
    if r < 0:
        _raise(&err)
    _children[child.pid] = (child.pidfd, [child.held_fds[i] for i in range(child.nheld)],
                            buf.keep, (child.cgroup_owner, child.cgroup_id))
    return child.pid


def finish(pid):
    """After a spawned node was reaped: closes what the launcher held for it, tells
    whether the OOM killer killed one of its processes and removes its cgroups.

    Returns (oom, problem): oom describes the memory limit that applied ("mem.max 64M
    of node 'app'") or is ""; problem is a cgroup removal failure or "". Never raises
    for a pid it does not know (nothing to release)."""
    cdef _Buffer buf
    cdef rp_plan p
    cdef rp_child child
    cdef rp_error err
    cdef char what[256]
    cdef int killed = 0
    cdef int r = 0
    entry = _children.pop(pid, None)
    if entry is None:
        return "", ""
    pidfd, held, plan, (owner, cgroup_id) = entry
    for fd in held:
        close(fd)
    if pidfd >= 0:
        close(pidfd)
    if not owner:
        return "", ""
    buf = _Buffer(plan)
    if rp_plan_open(&p, buf.data, buf.size, &err) < 0:
        return "", ""
    child.cgroup_owner = owner
    child.cgroup_id = cgroup_id
    what[0] = 0
    with nogil:
        killed = rp_cgroup_oom_killed(&p, &child, what, sizeof(what))
        r = rp_cgroup_cleanup(&p, &child, &err)
    oom = what.decode("utf-8", "surrogateescape") if killed else ""
    problem = ""
    if r < 0:
        err.msg[sizeof(err.msg) - 1] = 0
        problem = err.msg[:strnlen(err.msg, sizeof(err.msg))].decode("utf-8", "surrogateescape")
    return oom, problem


def wait(pid):
    """Waits for a node, then finish()es it; returns its status: exit code, or 128+N if
    killed by signal N."""
    cdef int status = 0
    cdef int r
    cdef pid_t cpid = pid
    while True:
        with nogil:
            r = waitpid(cpid, &status, 0)
        if r >= 0:
            break
        if errno != EINTR:
            raise OSError(errno, os.strerror(errno))
        PyErr_CheckSignals()
    finish(pid)
    if WIFEXITED(status):
        return WEXITSTATUS(status)
    return 128 + WTERMSIG(status)


def pidfd(pid):
    """The pidfd of a spawned node (-1 if none); owned by this module until wait()."""
    return _children.get(pid, (-1,))[0]


def run(plan, argv, pass_fds=()):
    """spawn() then wait(): the program's status in redwrap convention."""
    return wait(spawn(plan, argv, pass_fds))
