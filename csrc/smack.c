/* SMACK label of the program and of the directories redpak created for the
 * node. The label is written to /proc/thread-self/attr/smack/current through
 * the host's procfs, opened before the pivot and checked to be procfs (a
 * node cannot redirect the write to a file of its own: runc CVE-2019-16884).
 * SMACK wants CAP_MAC_ADMIN of the initial user namespace, so a node outside
 * it gets the label from the launcher: its calling thread takes the label
 * just before clone, the child inherits it, the thread gets its own back
 * right after; the child only checks it. Without SMACK in the kernel the
 * launch fails, unless the plan marks the label optional: a program is never
 * silently run unlabelled. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "internal.h"

#define ATTR "thread-self/attr/smack/current"
#define XATTR "security.SMACK64"
#define MAX_LABEL 255

/* The label file read into back (size > MAX_LABEL), trailing newline/NUL cut;
 * -1 with errno (EXDEV: not a procfs file). */
static ssize_t read_label(int dirfd, char *back, size_t size)
{
    struct statfs sfs;
    ssize_t n;
    int fd, e;

    fd = openat(dirfd, ATTR, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstatfs(fd, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC) {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    n = read(fd, back, size - 1);
    e = errno;
    close(fd);
    errno = e;
    if (n < 0)
        return -1;
    while (n > 0 && (back[n - 1] == '\n' || back[n - 1] == '\0'))
        n--;
    back[n] = '\0';
    return n;
}

/* Outside the initial user namespace (new or joined), SMACK refuses the write. */
static int leaves_initial_userns(const struct rp_plan *plan)
{
    if (plan->proc->new_ns & RP_NS_USER)
        return 1;
    for (uint32_t i = 0; i < plan->njoins; i++)
        if (plan->joins[i].nstype == RP_NS_USER)
            return 1;
    return 0;
}

/* Before the pivot: the host's procfs, wherever the stage left it. */
int rp_smack_prepare(struct rp_ctx *ctx, struct rp_error *err)
{
    char path[PATH_MAX];
    struct statfs sfs;
    size_t len;

    if (!ctx->plan->nsmack || ctx->smack_mode == RP_SMACK_NONE)
        return 0;
    err->step = RP_STEP_SMACK;
    len = strlen(ctx->proc_fds); /* ".../proc/self/fd" */
    if (len < 8 || strcmp(ctx->proc_fds + len - 8, "/self/fd"))
        return rp_fail(err, EINVAL, "no host procfs to write the SMACK label through");
    rp_format(path, sizeof(path), "%s", ctx->proc_fds);
    path[len - 8] = '\0';
    ctx->proc_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ctx->proc_fd < 0)
        return rp_fail_path(err, errno, path, "open the host procfs %s", path);
    if (fstatfs(ctx->proc_fd, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC)
        return rp_fail_path(err, errno ? errno : EXDEV, path, "%s is not a procfs", path);
    return 0;
}

/* check: the label was inherited, and SMACK gave it to what the labelled
 * process created (new inodes, the roots of its mounts): compare, since
 * setting it would need CAP_MAC_ADMIN of the initial user namespace. */
static int label_one(const char *path, const char *label, int check, struct rp_error *err)
{
    char back[MAX_LABEL + 1];
    ssize_t n;

    if (!check) {
        if (lsetxattr(path, XATTR, label, strlen(label), 0) < 0)
            return rp_fail_path(err, errno, path, "set SMACK label '%s' on %s", label, path);
        return 0;
    }
    n = lgetxattr(path, XATTR, back, sizeof(back) - 1);
    if (n < 0)
        return rp_fail_path(err, errno, path, "read the SMACK label of %s", path);
    back[n] = '\0';
    if (strcmp(back, label))
        return rp_fail_path(err, EPERM, path, "%s is labelled '%s', not '%s'", path, back, label);
    return 0;
}

/* Directories on file systems redpak made (the root tmpfs and the tmpfs,
 * mqueue and dev mounts), never a host file behind a bind: every parent of
 * every mount target on the root tmpfs, and the fresh mounts themselves. */
static int label_dirs(const struct rp_plan *plan, const char *label, int check, struct rp_error *err)
{
    struct stat root, st;
    char path[PATH_MAX];

    if (lstat("/", &root) < 0)
        return rp_fail(err, errno, "stat the node's root");
    if (label_one("/", label, check, err) < 0)
        return -1;
    for (uint32_t i = 0; i < plan->nmounts; i++) {
        const struct rp_mount *m = &plan->mounts[i];
        const char *target = rp_plan_str(plan, m->target);
        int fresh = m->kind == RP_MOUNT_DIR || m->kind == RP_MOUNT_TMPFS || m->kind == RP_MOUNT_MQUEUE ||
                    m->kind == RP_MOUNT_DEV;

        rp_format(path, sizeof(path), "%s", target);
        for (char *p = path + 1;; p++) {
            int last = !*p;
            if (*p && *p != '/')
                continue;
            *p = '\0';
            if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
                (st.st_dev == root.st_dev || (last && fresh)) && label_one(path, label, check, err) < 0)
                return -1;
            if (last)
                break;
            *p = '/';
        }
    }
    return 0;
}

static int absent(struct rp_ctx *ctx, const char *label, int optional, int e, struct rp_error *err)
{
    if (ctx->proc_fd >= 0)
        close(ctx->proc_fd);
    ctx->proc_fd = -1;
    if (optional)
        return 0;
    return rp_fail(err, e,
                   "SMACK is not enabled in this kernel: the program would run without its label '%s', so it"
                   " does not run (mark the label optional with smack-optional: true to allow that)",
                   label);
}

/* Needs CAP_MAC_ADMIN (of the initial user namespace): before the caps drop. */
int rp_smack_apply(struct rp_ctx *ctx, struct rp_error *err)
{
    const struct rp_smack *s = ctx->plan->smack;
    const char *label;
    char back[MAX_LABEL + 2];
    struct statfs sfs;
    int optional, fd, rfd;
    ssize_t n;

    if (!ctx->plan->nsmack)
        return 0;
    err->step = RP_STEP_SMACK;
    label = rp_plan_str(ctx->plan, s->label);
    optional = !!(s->flags & RP_SMACK_OPTIONAL);
    if (!*label || strlen(label) > MAX_LABEL)
        return rp_fail(err, EINVAL, "SMACK label '%s' must be 1 to %d characters", label, MAX_LABEL);
    if (ctx->smack_mode == RP_SMACK_NONE)
        return 0; /* the launcher found no SMACK, and the label is optional */
    if (ctx->proc_fd < 0)
        return rp_fail(err, EBADF, "no procfs to write the SMACK label through");
    if (ctx->smack_mode == RP_SMACK_INHERITED) {
        n = read_label(ctx->proc_fd, back, sizeof(back));
        close(ctx->proc_fd);
        ctx->proc_fd = -1;
        if (n < 0)
            return rp_fail_path(err, errno, "/proc/" ATTR, "read the SMACK label inherited from the launcher");
        if (strcmp(back, label))
            return rp_fail(err, EPERM, "SMACK label is '%s', not the '%s' set by the launcher", back, label);
        return label_dirs(ctx->plan, label, 1, err);
    }
    fd = openat(ctx->proc_fd, ATTR, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? absent(ctx, label, optional, ENOTSUP, err)
                               : rp_fail_path(err, errno, "/proc/" ATTR, "open /proc/" ATTR);
    if (fstatfs(fd, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC) {
        close(fd);
        return rp_fail_path(err, EXDEV, "/proc/" ATTR, "/proc/" ATTR " is not a procfs file: label not written");
    }
    n = write(fd, label, strlen(label));
    if (n != (ssize_t)strlen(label)) {
        int e = n < 0 ? errno : EIO;
        close(fd);
        /* built in but not an active LSM: the attr file exists, SMACK does not */
        rfd = openat(ctx->proc_fd, ATTR, O_RDONLY | O_CLOEXEC);
        if (e == EINVAL && (rfd < 0 || read(rfd, back, sizeof(back)) < 0)) {
            if (rfd >= 0)
                close(rfd);
            return absent(ctx, label, optional, ENOTSUP, err);
        }
        if (rfd >= 0)
            close(rfd);
        return rp_fail_path(err, e, "/proc/" ATTR, "write SMACK label '%s'%s", label,
                            e == EPERM ? " (needs CAP_MAC_ADMIN on the host)" : "");
    }
    close(fd);
    /* read back: the kernel may keep the old label without failing the write */
    n = read_label(ctx->proc_fd, back, sizeof(back));
    close(ctx->proc_fd);
    ctx->proc_fd = -1;
    if (n < 0)
        return rp_fail(err, errno, "read back the SMACK label");
    if (strcmp(back, label))
        return rp_fail(err, EPERM, "SMACK label is '%s' after writing '%s'", back, label);
    return label_dirs(ctx->plan, label, 0, err);
}

/* Launcher, just before clone, when the node leaves the initial user
 * namespace: the calling thread (SMACK labels are per thread: the caller's
 * other threads keep theirs) takes the node's label, which the child
 * inherits; rp_smack_launcher_restore gives the thread its own back. The
 * thread's label is read first through the same checked procfs. */
int rp_smack_launcher_set(struct rp_ctx *ctx, struct rp_error *err)
{
    const struct rp_smack *s = ctx->plan->smack;
    const char *label;
    struct statfs sfs;
    int optional, proc, fd, e;
    ssize_t n;

    if (!ctx->plan->nsmack || !leaves_initial_userns(ctx->plan))
        return 0;
    err->step = RP_STEP_SMACK;
    label = rp_plan_str(ctx->plan, s->label);
    optional = !!(s->flags & RP_SMACK_OPTIONAL);
    if (!*label || strlen(label) > MAX_LABEL)
        return rp_fail(err, EINVAL, "SMACK label '%s' must be 1 to %d characters", label, MAX_LABEL);
    proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0)
        return rp_fail_path(err, errno, "/proc", "open the host procfs /proc");
    if (fstatfs(proc, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC) {
        close(proc);
        return rp_fail_path(err, EXDEV, "/proc", "/proc is not a procfs: SMACK label not written");
    }
    fd = openat(proc, ATTR, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        /* the thread is there but not SMACK's directory: no SMACK */
        if (e == ENOENT && faccessat(proc, "thread-self/attr", F_OK, 0) == 0) {
            close(proc);
            ctx->smack_mode = RP_SMACK_NONE;
            return absent(ctx, label, optional, ENOTSUP, err);
        }
        close(proc);
        return rp_fail_path(err, e, "/proc/" ATTR, "open /proc/" ATTR "%s",
                            e == ENOENT ? " (this /proc does not show the launcher's thread)" : "");
    }
    /* not procfs: something answered the open for the kernel, and the
     * descriptor it handed back may be one of the caller's: left alone */
    if (fstatfs(fd, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC) {
        close(proc);
        return rp_fail_path(err, EXDEV, "/proc/" ATTR, "/proc/" ATTR " is not a procfs file: label not written");
    }
    n = read_label(proc, ctx->smack_prev, sizeof(ctx->smack_prev));
    e = n < 0 ? errno : EINVAL;
    close(proc);
    if (n <= 0) {
        close(fd);
        if (e == EXDEV)
            return rp_fail_path(err, EXDEV, "/proc/" ATTR, "/proc/" ATTR " is not a procfs file: label not written");
        if (e == EINVAL) { /* built in but not an active LSM */
            ctx->smack_mode = RP_SMACK_NONE;
            return absent(ctx, label, optional, ENOTSUP, err);
        }
        return rp_fail_path(err, e, "/proc/" ATTR, "read the launcher thread's SMACK label");
    }
    n = write(fd, label, strlen(label));
    if (n != (ssize_t)strlen(label)) {
        e = n < 0 ? errno : EIO;
        close(fd);
        return rp_fail_path(err, e, "/proc/" ATTR, "write SMACK label '%s' on the launcher's thread%s", label,
                            e == EPERM ? " (needs CAP_MAC_ADMIN on the host)" : "");
    }
    ctx->smack_fd = fd;
    ctx->smack_mode = RP_SMACK_INHERITED;
    return 0;
}

/* Launcher, right after clone (done or failed): the thread's own label back.
 * Failing leaves the thread with the node's label: reported, never ignored. */
int rp_smack_launcher_restore(struct rp_ctx *ctx, struct rp_error *err)
{
    size_t len = strlen(ctx->smack_prev);
    ssize_t n;
    int e;

    if (ctx->smack_fd < 0)
        return 0;
    n = write(ctx->smack_fd, ctx->smack_prev, len);
    e = n < 0 ? errno : EIO;
    close(ctx->smack_fd);
    ctx->smack_fd = -1;
    if (n == (ssize_t)len)
        return 0;
    err->step = RP_STEP_SMACK;
    return rp_fail_path(err, e, "/proc/" ATTR, "restore the launcher thread's SMACK label '%s' (it keeps '%s')",
                        ctx->smack_prev, rp_plan_str(ctx->plan, ctx->plan->smack->label));
}
