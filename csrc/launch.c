/* The fast path, top to bottom: rp_launch() validates the plan, prepares the
 * environment, clones the child and serves it (user namespace maps, cgroups)
 * until the program is exec'd or a step fails; run_child() is the child's
 * side, in the order that makes the security argument.
 *
 * Processes: the launcher clones C0 with the new namespaces (one clone3, no
 * unshare; the launcher writes the user namespace maps as soon as it
 * returns). With a v2 cgroup, clone3 starts C0 in it (CLONE_INTO_CGROUP)
 * where the kernel takes it; else the launcher writes C0's pid to cgroup.procs
 * before GO (v1: C0 joins by itself, first thing). When namespaces must be
 * joined first (or a time namespace is asked for and only the legacy clone
 * exists), C0 joins, unshares, and forks C1 with CLONE_PARENT, so C1 is
 * still the launcher's child. With a new pid namespace, C1 (C0 on the fast
 * path) is pid 1: it forks the program with CLONE_VM|CLONE_VFORK and then
 * stays as the node's init.
 * Child and launcher talk over a SOCK_SEQPACKET pair (struct rp_msg); the
 * child's end is close-on-exec, so EOF after RP_MSG_EXEC means exec'd.
 * rp_launch_early() adds a pipe on which pid 1 sends the program's status
 * before it exits (init.c), so the caller need not wait for the teardown. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch.h"
#include "internal.h"

extern char **environ;

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

unsigned rp_features(void)
{
    static unsigned features;
    static int probed;
    unsigned f = 0;
    struct rp_open_how how = {.flags = O_PATH | O_CLOEXEC};
    long fd;

    if (__atomic_load_n(&probed, __ATOMIC_ACQUIRE))
        return features;
    fd = syscall(RP_NR_openat2, AT_FDCWD, "/", &how, sizeof(how));
    if (fd >= 0) {
        f |= RP_FEAT_OPENAT2;
        close((int)fd);
    }
    if (syscall(RP_NR_mount_setattr, -1, "", AT_EMPTY_PATH, NULL, 0) < 0 && errno != ENOSYS)
        f |= RP_FEAT_MOUNT_SETATTR;
    /* an empty range: 0 where CLOSE_RANGE_CLOEXEC is known (5.11) */
    if (syscall(RP_NR_close_range, ~0U, ~0U, RP_CLOSE_RANGE_CLOEXEC) == 0)
        f |= RP_FEAT_CLOSE_RANGE;
    if (syscall(RP_NR_fsopen, NULL, 0) < 0 && errno != ENOSYS)
        f |= RP_FEAT_MOUNT_API;
    if (syscall(RP_NR_open_tree_attr, -1, "", 0, NULL, 0) < 0 && errno != ENOSYS)
        f |= RP_FEAT_OPEN_TREE_ATTR;
    fd = syscall(RP_NR_pidfd_open, getpid(), 0);
    if (fd >= 0) {
        f |= RP_FEAT_PIDFD;
        close((int)fd);
    }
    /* a size below the first version: EINVAL where clone3 exists (5.3) */
    if (syscall(RP_NR_clone3, NULL, 0) < 0 && errno == EINVAL) {
        /* the cgroup field set: E2BIG where the kernel's clone_args end before
         * it (no CLONE_INTO_CGROUP), else EINVAL for the bad exit signal,
         * checked once the struct is copied (5.7); no process is made */
        struct rp_clone_args ca = {.exit_signal = ~0ULL, .cgroup = 1};

        f |= RP_FEAT_CLONE3;
        if (syscall(RP_NR_clone3, &ca, RP_CLONE_ARGS_SIZE_VER2) < 0 && errno == EINVAL)
            f |= RP_FEAT_INTO_CGROUP;
    }
    features = f;
    __atomic_store_n(&probed, 1, __ATOMIC_RELEASE);
    return f;
}

/* ---- child side ---------------------------------------------------------- */

static void send_msg(int fd, int type, int pid, const struct rp_error *err)
{
    struct rp_msg msg = {.type = type, .pid = pid};

    if (err)
        msg.err = *err;
    while (send(fd, &msg, sizeof(msg), MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static void __attribute__((noreturn)) child_fail(struct rp_ctx *ctx, struct rp_error *err)
{
    send_msg(ctx->sock_fd, RP_MSG_ERROR, 0, err);
    _exit(RP_EXIT_SETUP);
}

/* PR_SET_PDEATHSIG fires only for deaths after it is set, so check that the
 * launcher is still there afterwards: its end of the socket is open. Not
 * getppid(): it reads 0 across a pid namespace. */
static int guard_parent(struct rp_ctx *ctx, struct rp_error *err)
{
    struct pollfd p = {.fd = ctx->sock_fd, .events = POLLIN};

    if (!(ctx->plan->proc->flags & RP_PROC_DIE_WITH_PARENT))
        return 0;
    err->step = RP_STEP_PARENT;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        return rp_fail(err, errno, "set the parent-death signal");
    if (poll(&p, 1, 0) < 0)
        return rp_fail(err, errno, "check the launcher");
    if (p.revents & (POLLHUP | POLLERR))
        return rp_fail(err, ESRCH, "the launcher exited during setup");
    return 0;
}

static int wait_parent(struct rp_ctx *ctx, struct rp_error *err)
{
    struct rp_msg msg;
    ssize_t n;

    err->step = RP_STEP_SYNC;
    if (ctx->slow_path) /* else clone made our namespaces: the launcher did not wait */
        send_msg(ctx->sock_fd, RP_MSG_READY, 0, NULL);
    while ((n = recv(ctx->sock_fd, &msg, sizeof(msg), 0)) < 0 && errno == EINTR)
        ;
    if (n != sizeof(msg) || msg.type != RP_MSG_GO)
        return rp_fail(err, n < 0 ? errno : EPIPE, "wait for the launcher");
    return 0;
}

/* Right after the maps are written, our ids are the caller's, which the new
 * user namespace may not map (root mapping "0 1000 1"): files we create would
 * then fail with EOVERFLOW. The setup stages become the namespace's root when
 * the map has one; otherwise (a map of the caller onto itself) they stay. */
static int become_ns_root(struct rp_error *err)
{
    err->step = RP_STEP_USERNS;
    if (syscall(SYS_setresgid, 0, 0, 0) < 0 && errno != EINVAL)
        return rp_fail(err, errno, "become gid 0 of the new user namespace");
    if (syscall(SYS_setresuid, 0, 0, 0) < 0 && errno != EINVAL)
        return rp_fail(err, errno, "become uid 0 of the new user namespace");
    return 0;
}

/* Slow path, in C0: setns first (needs our privileges in the joined
 * namespaces' owners), then one unshare for the new ones. */
static int enter_namespaces(struct rp_ctx *ctx, struct rp_error *err)
{
    if (rp_ns_join(ctx->plan, err) < 0)
        return -1;
    return rp_ns_unshare(ctx->plan, err);
}

static int joins_pid(const struct rp_plan *plan)
{
    for (uint32_t i = 0; i < plan->njoins; i++)
        if (plan->joins[i].nstype == RP_NS_PID)
            return 1;
    return 0;
}

/* Slow path: pid and time namespaces apply to children only. C1 is created
 * with CLONE_PARENT (the launcher's child, so it can be waited for); C0
 * reports its pid and exits. Returns 0 in C1. */
static int fork_node(struct rp_ctx *ctx, struct rp_error *err)
{
    pid_t pid;

    if (!(ctx->plan->proc->new_ns & (RP_NS_PID | RP_NS_TIME)) && !joins_pid(ctx->plan))
        return 0;
    err->step = RP_STEP_NS_NEW;
    pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
    if (pid < 0)
        return rp_fail(err, errno, "fork into the new pid namespace");
    if (pid == 0)
        return guard_parent(ctx, err); /* not inherited across fork */
    send_msg(ctx->sock_fd, RP_MSG_PID, pid, NULL);
    _exit(0);
}

/* The caller's stdin/stdout/stderr for the program (opts->stdio): every
 * source is copied above 2 first, so sources among 0-2 (stderr on stdout)
 * are not overwritten before they are used. The copies close at exec. */
static int redirect_stdio(const struct rp_ctx *ctx, struct rp_error *err)
{
    int copy[3] = {-1, -1, -1};

    if (!ctx->stdio)
        return 0;
    for (int i = 0; i < 3; i++)
        if (ctx->stdio[i] >= 0 && (copy[i] = fcntl(ctx->stdio[i], F_DUPFD_CLOEXEC, 3)) < 0)
            return rp_fail(err, errno, "descriptor %d for the program's descriptor %d", ctx->stdio[i], i);
    for (int i = 0; i < 3; i++)
        if (copy[i] >= 0 && dup2(copy[i], i) < 0)
            return rp_fail(err, errno, "descriptor %d on the program's descriptor %d", ctx->stdio[i], i);
    return 0;
}

/* Everything but 0-2 becomes close-on-exec (so the status socket works until
 * exec), then the listed descriptors are made inheritable. Runs before the
 * pivot: the fallback lists the host's /proc/self/fd. */
int rp_fds_prepare(const struct rp_ctx *ctx, struct rp_error *err)
{
    err->step = RP_STEP_FDS;
    if (!(ctx->features & RP_FEAT_CLOSE_RANGE) ||
        syscall(RP_NR_close_range, 3, ~0U, RP_CLOSE_RANGE_CLOEXEC) < 0) {
        char buf[4096];
        int dfd = open(ctx->proc_fds, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        long n;

        if (dfd < 0)
            return rp_fail(err, errno, "list open descriptors");
        while ((n = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0)
            for (long off = 0; off < n;) {
                struct dirent64 *d = (struct dirent64 *)(buf + off);
                int fd = atoi(d->d_name);
                off += d->d_reclen;
                if (fd > 2 && fd != dfd)
                    fcntl(fd, F_SETFD, FD_CLOEXEC);
            }
        close(dfd);
        if (n < 0)
            return rp_fail(err, errno, "list open descriptors");
    }
    for (uint32_t i = 0; i < ctx->plan->nkeep_fds; i++)
        if (fcntl(ctx->plan->keep_fds[i].fd, F_SETFD, 0) < 0)
            return rp_fail(err, errno, "keep descriptor %d", ctx->plan->keep_fds[i].fd);
    for (int i = 0; i < ctx->npass_fds; i++)
        if (fcntl(ctx->pass_fds[i], F_SETFD, 0) < 0)
            return rp_fail(err, errno, "pass descriptor %d", ctx->pass_fds[i]);
    return redirect_stdio(ctx, err);
}

/* No pid 1 to hold the locks: hand them to the launcher, which keeps them
 * until the program ends (rp_wait). */
static int hand_locks(struct rp_ctx *ctx, struct rp_error *err)
{
    struct rp_msg msg = {.type = RP_MSG_FDS};
    union {
        char buf[CMSG_SPACE(sizeof(int) * RP_MAX_LOCKS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = &msg, .iov_len = sizeof(msg)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)ctx->nlocks)};
    struct cmsghdr *c;

    if (!ctx->nlocks)
        return 0;
    memset(&u, 0, sizeof(u));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)ctx->nlocks);
    memcpy(CMSG_DATA(c), ctx->lock_fds, sizeof(int) * (size_t)ctx->nlocks);
    msg.pid = ctx->nlocks;
    if (sendmsg(ctx->sock_fd, &mh, MSG_NOSIGNAL) < 0) {
        err->step = RP_STEP_LOCK;
        return rp_fail(err, errno, "hand the locks to the launcher");
    }
    for (int i = 0; i < ctx->nlocks; i++)
        close(ctx->lock_fds[i]);
    ctx->nlocks = 0;
    return 0;
}

/* The program inherits no handler, ignored signal or blocked mask from the
 * launcher (Python ignores SIGPIPE, for one). */
static void reset_signals(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigset_t none;

    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* The working directory, resolved inside the new root: a path through a
 * descriptor the caller left open (/proc/self/fd/N, runc CVE-2024-21626)
 * or any other magic link is refused, never followed to the host. */
static int enter_dir(const struct rp_ctx *ctx, const char *dir, struct rp_error *err)
{
    struct stat st;
    int fd = rp_open_in_root(ctx, dir);

    if (fd < 0)
        return rp_fail_path(err, -fd, dir, "chdir %s%s", dir,
                            fd == -ELOOP || fd == -EXDEV ? " (leads through a magic link or out of the node)" : "");
    if (fstat(fd, &st) < 0 || (!S_ISDIR(st.st_mode) && (errno = ENOTDIR)) || fchdir(fd) < 0) {
        int e = errno;
        close(fd);
        return rp_fail_path(err, e, dir, "chdir %s", dir);
    }
    close(fd);
    return 0;
}

/* In the program's own process, after pivot. */
static int run_program(struct rp_ctx *ctx, struct rp_error *err)
{
    const struct rp_process *pr = ctx->plan->proc;
    const char *dir = rp_plan_str(ctx->plan, pr->chdir);

    reset_signals();
    err->step = RP_STEP_SESSION;
    if ((pr->flags & RP_PROC_NEW_SESSION) && setsid() < 0)
        return rp_fail(err, errno, "start a new session");
    umask(pr->flags & RP_PROC_SET_UMASK ? pr->umask : ctx->caller_umask);
    err->step = RP_STEP_CHDIR;
    if (*dir && enter_dir(ctx, dir, err) < 0)
        return -1;
    if (ctx->chdir && *ctx->chdir) { /* the launch's own (Python API cwd): relative to the plan's */
        char path[PATH_MAX];
        int n = ctx->chdir[0] == '/' ? snprintf(path, sizeof(path), "%s", ctx->chdir)
                                     : snprintf(path, sizeof(path), "%s/%s", *dir ? dir : "", ctx->chdir);

        if (n < 0 || (size_t)n >= sizeof(path))
            return rp_fail_path(err, ENAMETOOLONG, ctx->chdir, "chdir %s", ctx->chdir);
        if (enter_dir(ctx, path, err) < 0)
            return -1;
    }
    if (rp_smack_apply(ctx, err) < 0)         /* needs CAP_MAC_ADMIN: before the drop */
        return -1;
    if (rp_caps_drop(ctx, err) < 0)           /* identity, exact sets, no_new_privs */
        return -1;
    if (!(pr->new_ns & RP_NS_PID) && guard_parent(ctx, err) < 0)
        return -1;                            /* setresuid cleared the parent-death signal */
    send_msg(ctx->sock_fd, RP_MSG_EXEC, 0, NULL);
    if (rp_landlock_apply(ctx->plan, err) < 0)
        return -1;
    if (rp_seccomp_apply(ctx->plan, err) < 0) /* last: the filter need not allow setup */
        return -1;
    return rp_exec(ctx, err);                 /* returns only on failure */
}

struct program_arg {
    struct rp_ctx *ctx;
    volatile int failed;
};

static int program_entry(void *arg)
{
    struct program_arg *a = arg;
    struct rp_error err = {0};

    run_program(a->ctx, &err);
    a->failed = 1; /* CLONE_VM: pid 1 reads it once we are gone */
    child_fail(a->ctx, &err);
}

/* pid 1: fork the program (it shares our memory until it execs, so no
 * copy, and runs on a stack carved from ours while we wait), then become
 * its init. */
static int run_init(struct rp_ctx *ctx, struct rp_error *err)
{
    struct program_arg a = {.ctx = ctx};
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    char stack[64 << 10] __attribute__((aligned(16)));
    sigset_t set;
    pid_t pid;

    err->step = RP_STEP_INIT;
    rp_init_forwarded(&set);
    sigprocmask(SIG_BLOCK, &set, NULL); /* queued for init's signalfd */
    /* an ignored SIGCHLD (inherited from the caller) would be discarded and
     * its children auto-reaped: init would never see the program exit */
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&set, sig) == 1 && sigaction(sig, &dfl, NULL) < 0)
            return rp_fail(err, errno, "reset signal %d in pid 1", sig);
    pid = clone(program_entry, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    if (pid < 0)
        return rp_fail(err, errno, "fork the program");
    if (a.failed) {
        waitpid(pid, NULL, 0);
        _exit(RP_EXIT_SETUP); /* the program reported its error */
    }
    rp_init_run(ctx, pid);
}

static int run_child(struct rp_ctx *ctx, struct rp_error *err)
{
    const struct rp_process *pr = ctx->plan->proc;

    if (rp_cgroup_join(ctx, err) < 0)        /* first: nothing runs outside the node's cgroup */
        return -1;
    if (guard_parent(ctx, err) < 0)          /* die-with-parent armed, launcher still there */
        return -1;
    if (ctx->slow_path && enter_namespaces(ctx, err) < 0)
        return -1;
    if (ctx->need_parent && wait_parent(ctx, err) < 0)
        return -1;                           /* maps and cgroups are written */
    if (rp_cgroup_enter_ns(ctx->plan, err) < 0)
        return -1;                           /* cgroup ns rooted at the node's own cgroup */
    if ((pr->new_ns & RP_NS_USER) && become_ns_root(err) < 0)
        return -1;
    err->step = RP_STEP_SPAWN;               /* after the maps: /proc/PID is the caller's until then */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return rp_fail(err, errno, "make the launcher stage not dumpable");
    if (ctx->slow_path && fork_node(ctx, err) < 0)
        return -1;
    if (rp_mount_apply(ctx, err) < 0)        /* stage, binds, tmpfs, /proc, /dev, locks */
        return -1;
    if (rp_fds_prepare(ctx, err) < 0)        /* only 0-2 and kept fds survive exec */
        return -1;
    if (rp_ns_hostname(ctx->plan, err) < 0)
        return -1;
    if (rp_ns_loopback(ctx->plan, err) < 0)  /* a new network namespace gets lo up */
        return -1;
    if (rp_smack_prepare(ctx, err) < 0)      /* the host's procfs, while reachable */
        return -1;
    if (rp_pivot(ctx, err) < 0)              /* old root detached */
        return -1;
    if (pr->new_ns & RP_NS_PID)
        return run_init(ctx, err);           /* returns only on failure */
    if (hand_locks(ctx, err) < 0)
        return -1;
    return run_program(ctx, err);            /* returns only on failure */
}

static int child_entry(void *arg)
{
    struct rp_ctx *ctx = arg;
    struct rp_error err = {0};

    close(ctx->parent_sock_fd);
    if (ctx->parent_status_fd >= 0)
        close(ctx->parent_status_fd);
    if (ctx->smack_fd >= 0)
        close(ctx->smack_fd); /* the launcher thread's attr file, for it to restore */
    run_child(ctx, &err);
    child_fail(ctx, &err);
}

/* ---- parent side --------------------------------------------------------- */

/* Clones the node's first process with the namespaces in flags (none on the
 * slow path: it unshares them itself), straight into its v2 cgroup when
 * ctx->cg.into_fd is open. clone3 needs no stack: the child runs on a copy
 * of ours, like after fork. Returns its pid, or -1 with errno. */
static pid_t clone_node(struct rp_ctx *ctx, unsigned long flags, int *pidfd)
{
    char *stack;
    pid_t pid;
    int e;

    if (ctx->features & RP_FEAT_CLONE3) {
        struct rp_clone_args ca = {.flags = flags, .pidfd = (uint64_t)(uintptr_t)pidfd, .exit_signal = SIGCHLD};
        size_t size = RP_CLONE_ARGS_SIZE_VER0;

        if (ctx->cg.into_fd >= 0) {
            ca.flags |= RP_CLONE_INTO_CGROUP;
            ca.cgroup = (uint64_t)ctx->cg.into_fd;
            size = RP_CLONE_ARGS_SIZE_VER2;
        }
        pid = (pid_t)syscall(RP_NR_clone3, &ca, size);
        if (pid == 0) {
            child_entry(ctx);
            _exit(RP_EXIT_SETUP); /* not reached */
        }
        return pid;
    }
    stack = mmap(NULL, RP_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return -1;
    pid = clone(child_entry, stack + RP_STACK_SIZE, (int)(flags | SIGCHLD), ctx, pidfd);
    e = errno;
    munmap(stack, RP_STACK_SIZE);
    errno = e;
    return pid;
}

static int prepare_execfd(struct rp_ctx *ctx, struct rp_error *err)
{
    const struct rp_plan *plan = ctx->plan;

    for (uint32_t i = 0; i < plan->nmounts; i++) {
        const struct rp_mount *m = &plan->mounts[i];
        if (m->kind != RP_MOUNT_EXECFD)
            continue;
        if (!ctx->execfd_out) {
            ctx->execfd_out = calloc(plan->nmounts, sizeof(char *));
            ctx->execfd_len = calloc(plan->nmounts, sizeof(size_t));
            if (!ctx->execfd_out || !ctx->execfd_len)
                return rp_fail(err, ENOMEM, "execfd outputs");
        }
        if (rp_execfd_run(rp_plan_str(plan, m->source), ctx->caller_env, plan->proc->execfd_timeout_ms,
                          &ctx->execfd_out[i], &ctx->execfd_len[i], err) < 0)
            return -1;
    }
    return 0;
}

static void free_ctx(struct rp_ctx *ctx)
{
    if (ctx->execfd_out)
        for (uint32_t i = 0; i < ctx->plan->nmounts; i++)
            free(ctx->execfd_out[i]);
    free(ctx->execfd_out);
    free(ctx->execfd_len);
    rp_env_free(ctx);
}

static void reap(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int serve_ready(const struct rp_ctx *ctx, pid_t c0, int sock, struct rp_error *err)
{
    const struct rp_process *pr = ctx->plan->proc;

    if (pr->new_ns & RP_NS_USER && rp_ns_write_maps(ctx->plan, c0, err) < 0)
        return -1;
    if (rp_cgroup_attach(ctx->plan, &ctx->cg, c0, err) < 0)
        return -1;
    send_msg(sock, RP_MSG_GO, 0, NULL);
    return 0;
}

static void take_fds(struct msghdr *mh, struct rp_child *child)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (child->nheld < RP_MAX_LOCKS)
                child->held_fds[child->nheld++] = fd;
            else
                close(fd);
        }
    }
}

/* After a failure: a node forked by C0 may still report its pid (it raced
 * C0's own report); read until EOF so it is killed and reaped too. */
static void drain(int sock)
{
    for (;;) {
        struct rp_msg msg;
        union {
            char buf[CMSG_SPACE(sizeof(int) * RP_MAX_LOCKS)];
            struct cmsghdr align;
        } u;
        struct iovec iov = {.iov_base = &msg, .iov_len = sizeof(msg)};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        struct rp_child spare = {.nheld = 0};

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        take_fds(&mh, &spare);
        for (int i = 0; i < spare.nheld; i++)
            close(spare.held_fds[i]);
        if (n == sizeof(msg) && msg.type == RP_MSG_PID)
            reap(msg.pid);
    }
}

/* The child may have failed before we could serve it: its own report, when
 * already there, says more than ours. */
static void child_error(int sock, struct rp_error *err)
{
    struct rp_msg msg;

    if (recv(sock, &msg, sizeof(msg), MSG_DONTWAIT | MSG_PEEK) == sizeof(msg) && msg.type == RP_MSG_ERROR) {
        *err = msg.err;
        err->msg[sizeof(err->msg) - 1] = '\0';
    }
}

/* Serves the child until EOF (exec'd) or an error. On error nothing of the
 * node is left: its processes are killed and reaped. */
static int serve(const struct rp_ctx *ctx, pid_t c0, int sock, struct rp_child *child, struct rp_error *err)
{
    pid_t node = c0;
    int exec_seen = 0, status;

    /* clone made the namespaces: no READY to wait for */
    if (!ctx->slow_path && ctx->need_parent && serve_ready(ctx, c0, sock, err) < 0) {
        child_error(sock, err);
        goto fail;
    }
    for (;;) {
        struct rp_msg msg;
        union {
            char buf[CMSG_SPACE(sizeof(int) * RP_MAX_LOCKS)];
            struct cmsghdr align;
        } u;
        struct iovec iov = {.iov_base = &msg, .iov_len = sizeof(msg)};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            break;
        take_fds(&mh, child);
        if (n != sizeof(msg)) {
            err->step = RP_STEP_SYNC;
            rp_fail(err, n < 0 ? errno : EPROTO, "read the node's status");
            goto fail;
        }
        switch (msg.type) {
        case RP_MSG_READY:
            if (serve_ready(ctx, c0, sock, err) < 0)
                goto fail;
            break;
        case RP_MSG_PID:
            while (waitpid(c0, NULL, 0) < 0 && errno == EINTR)
                ;
            c0 = -1;
            node = msg.pid;
            break;
        case RP_MSG_EXEC:
            exec_seen = 1;
            break;
        case RP_MSG_ERROR:
            *err = msg.err;
            err->msg[sizeof(err->msg) - 1] = '\0';
            goto fail;
        default:
            break;
        }
    }
    if (!exec_seen) {
        err->step = RP_STEP_SPAWN;
        while (waitpid(node, &status, 0) < 0 && errno == EINTR)
            ;
        node = -1;
        rp_fail(err, ECHILD, "the node died during setup (%s %d)", WIFSIGNALED(status) ? "signal" : "status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        goto fail;
    }
    child->pid = node;
    return 0;
fail:
    reap(node);
    if (c0 != node)
        reap(c0);
    drain(sock);
    for (int i = 0; i < child->nheld; i++)
        close(child->held_fds[i]);
    child->nheld = 0;
    return -1;
}

int rp_check_descriptors(struct rp_error *err)
{
    struct rlimit nofile;

    err->step = RP_STEP_SPAWN;
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0)
            return rp_fail(err, EBADF, "descriptor %d is closed (open /dev/null on it before launching)", fd);
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < RP_MIN_FDS)
        return rp_fail(err, EMFILE, "the open-file limit is %llu (ulimit -n): a launch needs at least %d descriptors",
                       (unsigned long long)nofile.rlim_cur, RP_MIN_FDS);
    return 0;
}

/* Before the launcher opens anything: a closed fd 0-2, or a kept descriptor
 * that is not open, would otherwise be taken by our own status socket. */
static int check_fds(const struct rp_plan *plan, const struct rp_launch_opts *opts, struct rp_error *err)
{
    if (rp_check_descriptors(err) < 0)
        return -1;
    for (uint32_t i = 0; i < plan->nkeep_fds; i++)
        if (fcntl(plan->keep_fds[i].fd, F_GETFD) < 0)
            return rp_fail(err, EBADF, "descriptor %d to keep is not open", plan->keep_fds[i].fd);
    for (int i = 0; i < opts->npass_fds; i++)
        if (opts->pass_fds[i] < 3 || fcntl(opts->pass_fds[i], F_GETFD) < 0)
            return rp_fail(err, EBADF, "descriptor %d to pass is not open (or below 3)", opts->pass_fds[i]);
    for (int i = 0; opts->stdio && i < 3; i++)
        if (opts->stdio[i] >= 0 && fcntl(opts->stdio[i], F_GETFD) < 0)
            return rp_fail(err, EBADF, "descriptor %d for the program's descriptor %d is not open",
                           opts->stdio[i], i);
    for (uint32_t i = 0; i < plan->nmounts; i++)
        if (plan->mounts[i].kind == RP_MOUNT_FD && fcntl(plan->mounts[i].fd, F_GETFD) < 0)
            return rp_fail(err, EBADF, "descriptor %d for %s is not open", plan->mounts[i].fd,
                           rp_plan_str(plan, plan->mounts[i].target));
    return 0;
}

/* die-with-parent, the launcher's side: when our parent dies, we are killed,
 * and the node's first process (whose parent-death signal is armed for us)
 * with us; with a pid namespace that takes every process of the node, setsid
 * daemons included. A parent that died before the signal was armed was
 * replaced by a reaper: ESRCH, nothing is started. */
static int tie_to_parent(const struct rp_plan *plan, const struct rp_launch_opts *opts, struct rp_error *err)
{
    pid_t parent = getppid();

    if (!(plan->proc->flags & RP_PROC_DIE_WITH_PARENT) || (opts->flags & RP_LAUNCH_OWN_LIFE))
        return 0;
    err->step = RP_STEP_PARENT;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        return rp_fail(err, errno, "set the launcher's parent-death signal");
    if (getppid() != parent)
        return rp_fail(err, ESRCH, "the launcher's parent exited");
    return 0;
}

/* The early-status pipe, only where pid 1 exists and nothing waits on the
 * node's processes being gone. pid 1 keeps the write end (close-on-exec, so
 * the program never has it); the launcher keeps the read end. */
static int open_status_pipe(struct rp_ctx *ctx, struct rp_error *err)
{
    int p[2];

    if (!(ctx->plan->proc->new_ns & RP_NS_PID) || ctx->plan->ncgroup)
        return 0;
    if (pipe2(p, O_CLOEXEC) < 0)
        return rp_fail(err, errno, "create the early-status pipe");
    ctx->parent_status_fd = p[0];
    ctx->status_fd = p[1];
    return 0;
}

static int launch(const void *buf, size_t len, char *const argv[], const struct rp_launch_opts *opts, int early,
                  struct rp_child *child, struct rp_error *err)
{
    static const struct rp_launch_opts no_opts;
    struct rp_plan plan;
    struct rp_ctx ctx;
    int sv[2] = {-1, -1}, pidfd = -1, r = -1, e;
    unsigned long flags;
    pid_t c0;

    memset(err, 0, sizeof(*err));
    memset(child, 0, sizeof(*child));
    child->pid = -1;
    child->pidfd = -1;
    child->status_fd = -1;
    opts = opts ? opts : &no_opts;
    if (rp_plan_open(&plan, buf, len, err) < 0)
        return -1;
    err->step = RP_STEP_SPAWN;
    if (!argv || !argv[0] || !argv[0][0])
        return rp_fail(err, EINVAL, "no program to run (empty argv)");
    if (check_fds(&plan, opts, err) < 0)
        return -1;
    if (tie_to_parent(&plan, opts, err) < 0)
        return -1;
    if (rp_cgroup_check(&plan, err) < 0)   /* a stale plan: step DEPS */
        return -1;

    memset(&ctx, 0, sizeof(ctx));
    ctx.plan = &plan;
    ctx.argv = argv;
    ctx.caller_env = opts->envp ? opts->envp : environ;
    ctx.pass_fds = opts->pass_fds;
    ctx.npass_fds = opts->npass_fds;
    ctx.stdio = opts->stdio;
    ctx.env_add = opts->env_add;
    ctx.chdir = opts->chdir;
    ctx.features = rp_features() & ~opts->disable;
    ctx.cap_last = rp_cap_last();
    ctx.host_fd = ctx.root_fd = ctx.parent_fd = ctx.stage_fd = ctx.proc_fd = -1;
    ctx.status_fd = ctx.parent_status_fd = ctx.smack_fd = ctx.cg.into_fd = -1;
    /* the legacy clone cannot make a time namespace (its flag is in CSIGNAL) */
    ctx.slow_path = plan.njoins > 0 || ((plan.proc->new_ns & RP_NS_TIME) && !(ctx.features & RP_FEAT_CLONE3));
    ctx.need_parent = (plan.proc->new_ns & RP_NS_USER) || rp_cgroup_by_launcher(&plan);
    if (prepare_execfd(&ctx, err) < 0 || rp_env_build(&ctx, err) < 0)
        goto out;
    if (rp_cgroup_prepare(&plan, &ctx.cg, err) < 0) /* dirs, limits, the node's own cgroup */
        goto out;
    if ((ctx.features & RP_FEAT_CLONE3) && (ctx.features & RP_FEAT_INTO_CGROUP) &&
        rp_cgroup_open_into(&plan, &ctx.cg))
        ctx.need_parent = (plan.proc->new_ns & RP_NS_USER) != 0; /* clone places the node */
    child->cgroup_owner = ctx.cg.owner;
    child->cgroup_id = ctx.cg.id;

    err->step = RP_STEP_SPAWN;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        rp_fail(err, errno, "create the status socket");
        goto out;
    }
    ctx.parent_sock_fd = sv[0];
    ctx.sock_fd = sv[1];
    if (early && open_status_pipe(&ctx, err) < 0)
        goto out;
    flags = ctx.slow_path ? 0 : rp_ns_clone_flags(plan.proc->new_ns);
    if (ctx.features & RP_FEAT_PIDFD)
        flags |= CLONE_PIDFD;
    /* a node outside the initial user namespace cannot label itself: this
     * thread carries its label across clone, for no longer */
    if (rp_smack_launcher_set(&ctx, err) < 0)
        goto out;
    err->step = RP_STEP_SPAWN;
    c0 = clone_node(&ctx, flags, &pidfd);
    if (c0 < 0 && ctx.cg.into_fd >= 0) { /* refused (no permission there, a filter): attach as before */
        rp_cgroup_close_into(&ctx.cg);
        ctx.need_parent = 1;
        c0 = clone_node(&ctx, flags, &pidfd);
    }
    ctx.cg.placed = c0 > 0 && ctx.cg.into_fd >= 0;
    e = errno;
    if (rp_smack_launcher_restore(&ctx, err) < 0) {
        reap(c0);
        goto out;
    }
    errno = e;
    rp_cgroup_close(&ctx.cg); /* the child joins through its own copies */
    close(sv[1]);
    sv[1] = -1;
    if (ctx.status_fd >= 0)
        close(ctx.status_fd);
    ctx.status_fd = -1;
    if (c0 < 0) {
        rp_fail(err, errno, "clone the node (namespaces %#lx)%s", flags & ~(unsigned long)CLONE_PIDFD,
                errno == EINVAL || errno == EPERM ? " (user namespaces disabled, or not allowed here?)" : "");
        goto out;
    }
    r = serve(&ctx, c0, sv[0], child, err);
    if (r == 0 && child->pid != c0) {
        close(pidfd);
        pidfd = (ctx.features & RP_FEAT_PIDFD) ? (int)syscall(RP_NR_pidfd_open, child->pid, 0) : -1;
    }
    if (r == 0) {
        child->pidfd = pidfd;
        pidfd = -1;
        child->status_fd = ctx.parent_status_fd;
        ctx.parent_status_fd = -1;
    }
out:
    rp_cgroup_close(&ctx.cg);
    if (r < 0 && child->cgroup_owner) { /* nothing of the node runs: its cgroups go too */
        struct rp_error ignored;
        rp_cgroup_cleanup(&plan, child, &ignored);
        child->cgroup_owner = 0;
    }
    if (pidfd >= 0)
        close(pidfd);
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (ctx.status_fd >= 0)
        close(ctx.status_fd);
    if (ctx.parent_status_fd >= 0)
        close(ctx.parent_status_fd);
    free_ctx(&ctx);
    return r;
}

int rp_launch(const void *buf, size_t len, char *const argv[], const struct rp_launch_opts *opts,
              struct rp_child *child, struct rp_error *err)
{
    return launch(buf, len, argv, opts, 0, child, err);
}

int rp_launch_early(const void *buf, size_t len, char *const argv[], const struct rp_launch_opts *opts,
                    struct rp_child *child, struct rp_error *err)
{
    return launch(buf, len, argv, opts, 1, child, err);
}

static void close_child_fds(struct rp_child *child)
{
    for (int i = 0; i < child->nheld; i++)
        close(child->held_fds[i]);
    child->nheld = 0;
    if (child->pidfd >= 0)
        close(child->pidfd);
    child->pidfd = -1;
    if (child->status_fd >= 0)
        close(child->status_fd);
    child->status_fd = -1;
}

int rp_wait(struct rp_child *child, struct rp_error *err)
{
    int status;

    while (waitpid(child->pid, &status, 0) < 0) {
        if (errno != EINTR) {
            err->step = RP_STEP_WAIT;
            return rp_fail(err, errno, "wait for the node (pid %d)", (int)child->pid);
        }
    }
    close_child_fds(child);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Blocks in read(): the caller's signal handlers run meanwhile (with
 * SA_RESTART the read goes on), so it can forward signals to pid 1. */
int rp_wait_early(struct rp_child *child)
{
    int status;
    ssize_t n;

    if (child->status_fd < 0)
        return -1;
    while ((n = read(child->status_fd, &status, sizeof(status))) < 0 && errno == EINTR)
        ;
    close(child->status_fd);
    child->status_fd = -1;
    if (n != sizeof(status))
        return -1; /* EOF: pid 1 died without a status */
    close_child_fds(child);
    return status;
}
