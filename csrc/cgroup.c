/* cgroups of a node: before clone the launcher checks the plan still matches
 * its own cgroup, creates the family's nested cgroups, writes their limits and
 * makes the node's own cgroup below the leaf's; the child joins it first thing
 * (v1), or clone3(CLONE_INTO_CGROUP) starts it there (v2, Linux 5.7), or else
 * the launcher moves it there before releasing it (v2). After the
 * node exits, the launcher removes them.
 * Works the same on cgroup v2 and on v1 hierarchies: the plan (controls.py)
 * names the files; this file only runs the ops. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define RETRY 1            /* a directory vanished: run the ops again   */
#define TAKEN 2            /* the run directory's name is in use        */
#define MAX_ATTEMPTS 16
#define RUN_PREFIX "run-"

static int exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static int join(char *buf, const char *dir, const char *name, struct rp_error *err)
{
    if (rp_format(buf, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX - 1)
        return rp_fail_path(err, ENAMETOOLONG, dir, "cgroup path %s/%s", dir, name);
    return 0;
}

/* <leaf>/run-<launcher pid>.<id>: the launcher's pid lets a later launch tell a
 * directory left by a dead launcher from one still being set up. */
static void run_dir(char *buf, const char *leaf, pid_t owner, uint32_t id)
{
    rp_format(buf, PATH_MAX, "%s/" RUN_PREFIX "%d.%x", leaf, (int)owner, id);
}

/* Why the kernel refused a write, where errno alone misleads. */
static const char *write_hint(int e, const char *file)
{
    if (e == EBUSY && !strcmp(file, "cgroup.subtree_control"))
        return " (cgroup v2: a cgroup holding processes cannot enable controllers for its"
               " children; set cgrouproot to a cgroup without processes)";
    if (e == EINVAL && !strncmp(file, "cpuset.", 7))
        return " (a cpuset must stay within its parent's CPUs and memory nodes)";
    if (e == EINVAL && !strncmp(file, "cpu.cfs_", 8))
        return " (cgroup v1: a quota cannot exceed the parent's)";
    if (e == EINVAL)
        return " (the kernel refused the value)";
    if (e == ENOSPC)
        return " (the cpuset has no CPUs or memory nodes)";
    if (e == EACCES || e == EPERM)
        return " (is this cgroup delegated to the caller?)";
    return "";
}

/* 0, RETRY when the directory itself is gone (removed by a launch of the same
 * family that just ended), -1 on any other failure. */
static int write_file(const char *dir, const char *file, const char *value, struct rp_error *err)
{
    char path[PATH_MAX];
    size_t len = strlen(value);
    ssize_t n;
    int fd, e;

    if (join(path, dir, file, err) < 0)
        return -1;
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        if (e == ENODEV || (e == ENOENT && !exists(dir)))
            return RETRY;
        return rp_fail_path(err, e, path, "open %s%s", path,
                            e == ENOENT ? " (controller not enabled there?)" : write_hint(e, file));
    }
    do
        n = write(fd, value, len);
    while (n < 0 && errno == EINTR);
    e = errno;
    close(fd);
    if (n == (ssize_t)len)
        return 0;
    if (n >= 0)
        e = EIO;
    /* ENODEV: the cgroup was removed while we held its file (by a launch of the same
     * family that ended); a directory of the same name may already be a new one */
    if (e == ENODEV || (e == ENOENT && !exists(dir)))
        return RETRY;
    return rp_fail_path(err, e, path, "write '%s' to %s%s", value, path, write_hint(e, file));
}

/* COPY: the parent's value of file (v1 cpusets start empty, and a task can
 * join a cpuset only once it has CPUs and memory nodes). */
static int copy_file(const char *dir, const char *file, struct rp_error *err)
{
    char path[PATH_MAX], parent[PATH_MAX], value[4096];
    ssize_t n;
    int fd;

    rp_format(parent, sizeof(parent), "%s", dir);
    *strrchr(parent, '/') = '\0';
    if (join(path, parent[0] ? parent : "/", file, err) < 0)
        return -1;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rp_fail_path(err, errno, path, "read %s", path);
    n = read(fd, value, sizeof(value) - 1);
    close(fd);
    if (n < 0)
        return rp_fail_path(err, errno, path, "read %s", path);
    while (n > 0 && value[n - 1] == '\n')
        n--;
    value[n] = '\0';
    if (!n) /* the kernel takes "" as "none": the attach would then fail */
        return rp_fail_path(err, ENOSPC, path, "%s is empty: nothing to copy into %s", path, dir);
    return write_file(dir, file, value, err);
}

static int make_dir(const char *path, struct rp_error *err)
{
    char parent[PATH_MAX];

    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    if (errno == ENOENT) {
        rp_format(parent, sizeof(parent), "%s", path);
        *strrchr(parent, '/') = '\0';
        if (!exists(parent[0] ? parent : "/"))
            return RETRY; /* our parent cgroup was just removed */
    }
    return rp_fail_path(err, errno, path, "create cgroup %s%s", path,
                        errno == ENOENT ? " (cgrouproot does not exist)" : write_hint(errno, ""));
}

/* The launch's own cgroup: a fresh directory (EEXIST: another name). Once it
 * exists no other launch removes it nor, being non-empty, its ancestors. */
static int make_run_dir(const char *leaf, const struct rp_cgroups *cg, struct rp_error *err)
{
    char path[PATH_MAX];

    run_dir(path, leaf, cg->owner, cg->id);
    if (mkdir(path, 0755) == 0)
        return 0;
    if (errno == EEXIST)
        return TAKEN;
    if (errno == ENOENT)
        return RETRY;
    return rp_fail_path(err, errno, path, "create cgroup %s", path);
}

static uint32_t new_id(uint32_t previous)
{
    uint32_t id;

    if (syscall(SYS_getrandom, &id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
        id = previous * 2654435761u + (uint32_t)getpid() + 1;
    return id;
}

void rp_cgroup_close_into(struct rp_cgroups *cg)
{
    if (cg->into_fd >= 0)
        close(cg->into_fd);
    cg->into_fd = -1;
}

void rp_cgroup_close(struct rp_cgroups *cg)
{
    for (int i = 0; i < cg->nfds; i++)
        close(cg->fds[i]);
    cg->nfds = 0;
    rp_cgroup_close_into(cg);
}

/* Undo this pass's run directories (those of ATTACH ops before `end`): empty,
 * and only we know them (a sweep spares a live launcher's). */
static void remove_runs(const struct rp_plan *plan, const struct rp_cgroups *cg, uint32_t end)
{
    char path[PATH_MAX];

    for (uint32_t i = 0; i < end; i++)
        if (plan->cgroup[i].op == RP_CGROUP_ATTACH) {
            run_dir(path, rp_plan_str(plan, plan->cgroup[i].path), cg->owner, cg->id);
            rmdir(path);
        }
}

/* After a failed pass: the family directories it made, deepest first (rmdir
 * spares those another launch uses; it may remove one another launch just
 * made, which that launch retries, as when a launch ends). */
static void remove_family_dirs(const struct rp_plan *plan, uint32_t end)
{
    for (uint32_t i = end; i-- > 0;)
        if (plan->cgroup[i].op == RP_CGROUP_MKDIR)
            rmdir(rp_plan_str(plan, plan->cgroup[i].path));
}

/* One pass over the ops: family directories and their limits, then the run
 * directories, then (v1) the tasks files the child will join through. */
static int run_ops(const struct rp_plan *plan, struct rp_cgroups *cg, struct rp_error *err)
{
    char path[PATH_MAX];
    int r;

    for (uint32_t i = 0; i < plan->ncgroup; i++) {
        const struct rp_cgroup_op *op = &plan->cgroup[i];
        const char *dir = rp_plan_str(plan, op->path);

        switch (op->op) {
        case RP_CGROUP_MKDIR:
            r = make_dir(dir, err);
            break;
        case RP_CGROUP_WRITE:
            r = write_file(dir, rp_plan_str(plan, op->file), rp_plan_str(plan, op->value), err);
            break;
        case RP_CGROUP_COPY:
            r = copy_file(dir, rp_plan_str(plan, op->file), err);
            break;
        default: /* CHECK: before this; ATTACH: below */
            r = 0;
        }
        if (r < 0)
            remove_family_dirs(plan, i + 1);
        if (r)
            return r;
    }
    for (uint32_t i = 0; i < plan->ncgroup; i++) {
        const struct rp_cgroup_op *op = &plan->cgroup[i];
        if (op->op != RP_CGROUP_ATTACH)
            continue;
        r = make_run_dir(rp_plan_str(plan, op->path), cg, err);
        if (r == TAKEN) {
            remove_runs(plan, cg, i);
            cg->id = new_id(cg->id);
            return RETRY;
        }
        if (r) {
            remove_runs(plan, cg, i);
            if (r < 0)
                remove_family_dirs(plan, plan->ncgroup);
            return r;
        }
    }
    for (uint32_t i = 0; i < plan->ncgroup; i++) {
        const struct rp_cgroup_op *op = &plan->cgroup[i];
        if (op->op != RP_CGROUP_ATTACH || strcmp(rp_plan_str(plan, op->file), "tasks"))
            continue;
        run_dir(path, rp_plan_str(plan, op->path), cg->owner, cg->id);
        r = cg->nfds == RP_MAX_JOIN_FDS ? rp_fail(err, E2BIG, "more than %d cgroup hierarchies", RP_MAX_JOIN_FDS)
                                         : join(path, path, "tasks", err);
        if (!r && (cg->fds[cg->nfds] = open(path, O_WRONLY | O_CLOEXEC)) < 0)
            r = rp_fail_path(err, errno, path, "open %s", path);
        if (r) {
            remove_runs(plan, cg, plan->ncgroup);
            remove_family_dirs(plan, plan->ncgroup);
            return -1;
        }
        cg->nfds++;
    }
    return 0;
}

int rp_cgroup_prepare(const struct rp_plan *plan, struct rp_cgroups *cg, struct rp_error *err)
{
    if (!plan->ncgroup)
        return 0;
    err->step = RP_STEP_CGROUP;
    cg->owner = getpid();
    cg->id = new_id(0);
    /* Launches of one family share its directories; one that ends removes
     * those left empty, possibly between our mkdir and our write. Every op
     * is idempotent, so we simply run them again. */
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        int r = run_ops(plan, cg, err);
        if (r <= 0)
            return r;
        rp_cgroup_close(cg);
    }
    return rp_fail(err, EAGAIN, "the family's cgroups kept disappearing during setup");
}

/* 1 if the launcher must move the child (an ATTACH not through tasks). */
int rp_cgroup_by_launcher(const struct rp_plan *plan)
{
    for (uint32_t i = 0; i < plan->ncgroup; i++)
        if (plan->cgroup[i].op == RP_CGROUP_ATTACH && strcmp(rp_plan_str(plan, plan->cgroup[i].file), "tasks"))
            return 1;
    return 0;
}

/* Launcher, before clone, on a kernel with CLONE_INTO_CGROUP: 1 with
 * cg->into_fd open on the run directory of the one v2 ATTACH, for the node to
 * start there (v1 hierarchies, if any, are still joined through tasks);
 * 0 when the plan has none or it cannot be opened (the attach then does). */
int rp_cgroup_open_into(const struct rp_plan *plan, struct rp_cgroups *cg)
{
    char path[PATH_MAX];
    int found = -1;

    for (uint32_t i = 0; i < plan->ncgroup; i++) {
        const struct rp_cgroup_op *op = &plan->cgroup[i];
        if (op->op != RP_CGROUP_ATTACH || !strcmp(rp_plan_str(plan, op->file), "tasks"))
            continue;
        if (found >= 0)
            return 0; /* one v2 hierarchy at most: not a plan of ours */
        found = (int)i;
    }
    if (found < 0)
        return 0;
    run_dir(path, rp_plan_str(plan, plan->cgroup[found].path), cg->owner, cg->id);
    cg->into_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return cg->into_fd >= 0;
}

/* Launcher, before GO: ATTACH ops through cgroup.procs (v2) get the child's
 * pid, unless clone already placed it (CLONE_INTO_CGROUP). */
int rp_cgroup_attach(const struct rp_plan *plan, const struct rp_cgroups *cg, pid_t pid, struct rp_error *err)
{
    char path[PATH_MAX], num[16];

    if (cg->placed)
        return 0;
    rp_format(num, sizeof(num), "%d", (int)pid);
    for (uint32_t i = 0; i < plan->ncgroup; i++) {
        const struct rp_cgroup_op *op = &plan->cgroup[i];
        const char *file = rp_plan_str(plan, op->file);
        if (op->op != RP_CGROUP_ATTACH || !strcmp(file, "tasks"))
            continue;
        err->step = RP_STEP_CGROUP;
        run_dir(path, rp_plan_str(plan, op->path), cg->owner, cg->id);
        if (write_file(path, *file ? file : "cgroup.procs", num, err))
            return err->msg[0] ? -1 : rp_fail_path(err, ENOENT, path, "cgroup %s vanished", path);
    }
    return 0;
}

/* Child, first thing: "0" moves the writer alone, which the kernel does
 * without the global thread-group lock a pid or cgroup.procs takes (an RCU
 * grace period on v1 hierarchies without favordynmods). We are one thread. */
int rp_cgroup_join(struct rp_ctx *ctx, struct rp_error *err)
{
    for (int i = 0; i < ctx->cg.nfds; i++) {
        if (write(ctx->cg.fds[i], "0", 1) != 1) {
            err->step = RP_STEP_CGROUP;
            return rp_fail(err, errno, "join the node's cgroup (hierarchy %d of %d)", i + 1, ctx->cg.nfds);
        }
        close(ctx->cg.fds[i]);
    }
    ctx->cg.nfds = 0;
    rp_cgroup_close_into(&ctx->cg); /* the launcher's, for clone */
    return 0;
}

/* ---- the plan still belongs to this launcher's cgroup -------------------- */

static int read_self_cgroup(char *buf, size_t size, struct rp_error *err)
{
    int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
    size_t len = 0;
    ssize_t n;

    if (fd < 0)
        return rp_fail_path(err, errno, "/proc/self/cgroup", "read /proc/self/cgroup");
    while (len < size - 1 && (n = read(fd, buf + len, size - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return rp_fail_path(err, errno, "/proc/self/cgroup", "read /proc/self/cgroup");
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return 0;
}

/* The path of hierarchy `key` in "N:key:path" lines ("" = the v2 line). */
static const char *line_for(char *text, const char *key, size_t *len)
{
    size_t klen = strlen(key);

    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

        if (c2 && (!end || c2 < end) && (size_t)(c2 - c1 - 1) == klen && !strncmp(c1 + 1, key, klen)) {
            *len = end ? (size_t)(end - c2 - 1) : strlen(c2 + 1);
            return c2 + 1;
        }
        line = end ? end + 1 : NULL;
    }
    return NULL;
}

int rp_cgroup_check(const struct rp_plan *plan, struct rp_error *err)
{
    char text[8192];
    int loaded = 0;

    for (uint32_t i = 0; i < plan->ncgroup; i++) {
        const struct rp_cgroup_op *op = &plan->cgroup[i];
        const char *key = rp_plan_str(plan, op->file), *want = rp_plan_str(plan, op->value);
        const char *got;
        size_t len;

        if (op->op != RP_CGROUP_CHECK)
            continue;
        err->step = RP_STEP_DEPS;
        if (!loaded && read_self_cgroup(text, sizeof(text), err) < 0)
            return -1;
        loaded = 1;
        got = line_for(text, key, &len);
        if (!got || len != strlen(want) || strncmp(got, want, len))
            return rp_fail(err, ESTALE,
                           "the plan places the node below cgroup %s of hierarchy '%s', but the launcher now runs"
                           " in another one: recompile the plan (redwrap --force)",
                           want, *key ? key : "v2");
    }
    return 0;
}

/* Child side, once placed: a new cgroup namespace now is rooted at the
 * node's own cgroup, so the program sees neither its parents nor their
 * limits (a namespace made at clone would be rooted at the launcher's). */
int rp_cgroup_enter_ns(const struct rp_plan *plan, struct rp_error *err)
{
    if (!plan->ncgroup || !(plan->proc->new_ns & RP_NS_CGROUP))
        return 0;
    err->step = RP_STEP_NS_NEW;
    if (unshare(CLONE_NEWCGROUP) < 0)
        return rp_fail(err, errno, "enter a cgroup namespace rooted at the node's cgroup");
    return 0;
}

/* ---- after the node ----------------------------------------------------- */

static int remove_dir(const char *path, struct rp_error *err, int *failed)
{
    /* EBUSY/ENOTEMPTY: another launch of the family (or a process the program
     * left behind without a pid namespace) still uses it */
    if (rmdir(path) == 0 || errno == ENOENT || errno == EBUSY || errno == ENOTEMPTY)
        return 0;
    if (!*failed) {
        err->step = RP_STEP_CGROUP;
        rp_fail_path(err, errno, path, "remove cgroup %s", path);
    }
    *failed = 1;
    return -1;
}

/* Run directories of launchers that died before cleaning up (empty once their
 * node is gone). Those of a live launcher, this one included, are theirs. */
static void sweep(const char *leaf, struct rp_error *err, int *failed)
{
    char path[PATH_MAX];
    DIR *d = opendir(leaf);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        long owner;
        char *end;

        if (strncmp(e->d_name, RUN_PREFIX, strlen(RUN_PREFIX)) || e->d_type != DT_DIR)
            continue;
        owner = strtol(e->d_name + strlen(RUN_PREFIX), &end, 10);
        if (*end != '.' || owner <= 0 || owner == getpid() || kill((pid_t)owner, 0) == 0 || errno != ESRCH)
            continue;
        if (rp_format(path, sizeof(path), "%s/%s", leaf, e->d_name) < sizeof(path) - 1)
            remove_dir(path, err, failed);
    }
    closedir(d);
}

int rp_cgroup_cleanup(const struct rp_plan *plan, const struct rp_child *child, struct rp_error *err)
{
    char path[PATH_MAX];
    int failed = 0;

    if (!plan->ncgroup || !child->cgroup_owner)
        return 0;
    for (uint32_t i = 0; i < plan->ncgroup; i++) {
        const char *leaf = rp_plan_str(plan, plan->cgroup[i].path);
        if (plan->cgroup[i].op != RP_CGROUP_ATTACH)
            continue;
        run_dir(path, leaf, child->cgroup_owner, child->cgroup_id);
        remove_dir(path, err, &failed);
        sweep(leaf, err, &failed);
    }
    for (uint32_t i = plan->ncgroup; i-- > 0;)
        if (plan->cgroup[i].op == RP_CGROUP_MKDIR)
            remove_dir(rp_plan_str(plan, plan->cgroup[i].path), err, &failed);
    return failed ? -1 : 0;
}

/* "oom_kill N" in a memory.events (v2) or memory.oom_control (v1) file. */
static unsigned long oom_kills(const char *dir, const char *file)
{
    char path[PATH_MAX], buf[1024];
    ssize_t n;
    int fd;

    rp_format(path, sizeof(path), "%s/%s", dir, file);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    for (char *p = buf; (p = strstr(p, "oom_kill ")); p++)
        if (p == buf || p[-1] == '\n')
            return strtoul(p + 9, NULL, 10);
    return 0;
}

static void human(char *buf, size_t size, unsigned long long v)
{
    static const char units[] = "KMGT";
    int u = -1;

    while (u < 3 && v && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        rp_format(buf, size, "%llu", v);
    else
        rp_format(buf, size, "%llu%c", v, units[u]);
}

/* Node alias from a directory named redpak-<alias>-<8 hex digits>. */
static void alias_of(char *buf, size_t size, const char *dir)
{
    const char *base = strrchr(dir, '/');
    size_t len;

    base = base ? base + 1 : dir;
    if (!strncmp(base, "redpak-", 7))
        base += 7;
    len = strlen(base);
    if (len > 9 && base[len - 9] == '-')
        len -= 9;
    if (len >= size)
        len = size - 1;
    memcpy(buf, base, len);
    buf[len] = '\0';
}

int rp_cgroup_oom_killed(const struct rp_plan *plan, const struct rp_child *child, char *what, size_t size)
{
    unsigned long long best = ~0ULL;
    const char *where = NULL;
    char path[PATH_MAX], alias[256], amount[32];
    unsigned long kills = 0;

    if (size)
        what[0] = '\0';
    if (!child->cgroup_owner)
        return 0;
    for (uint32_t i = 0; i < plan->ncgroup; i++) {
        if (plan->cgroup[i].op != RP_CGROUP_ATTACH)
            continue;
        run_dir(path, rp_plan_str(plan, plan->cgroup[i].path), child->cgroup_owner, child->cgroup_id);
        kills += oom_kills(path, "memory.events") + oom_kills(path, "memory.oom_control");
    }
    if (!kills)
        return 0;
    /* the tightest memory limit along the family is the one that applied */
    for (uint32_t i = 0; i < plan->ncgroup; i++) {
        const struct rp_cgroup_op *op = &plan->cgroup[i];
        const char *file = rp_plan_str(plan, op->file), *value = rp_plan_str(plan, op->value);
        char *end;
        unsigned long long v;

        if (op->op != RP_CGROUP_WRITE || (strcmp(file, "memory.max") && strcmp(file, "memory.limit_in_bytes")))
            continue;
        v = strtoull(value, &end, 10);
        if (end != value && !*end && v < best) {
            best = v;
            where = rp_plan_str(plan, op->path);
        }
    }
    if (where && size) {
        alias_of(alias, sizeof(alias), where);
        human(amount, sizeof(amount), best);
        rp_format(what, size, "mem.max %s of node '%s'", amount, alias);
    } else if (size) {
        rp_format(what, size, "a memory limit of the node's cgroups");
    }
    return 1;
}
