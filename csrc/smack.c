/* SMACK label of the program and of the directories redpak created for the
 * node. The label is written to /proc/thread-self/attr/smack/current through
 * the host's procfs, opened before the pivot and checked to be procfs (a
 * node cannot redirect the write to a file of its own: runc CVE-2019-16884).
 * Without SMACK in the kernel the launch fails, unless the plan marks the
 * label optional: a program is never silently run unlabelled. */
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

/* Before the pivot: the host's procfs, wherever the stage left it. */
int rp_smack_prepare(struct rp_ctx *ctx, struct rp_error *err)
{
    char path[PATH_MAX];
    struct statfs sfs;
    size_t len;

    if (!ctx->plan->nsmack)
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

static int label_one(const char *path, const char *label, struct rp_error *err)
{
    if (lsetxattr(path, XATTR, label, strlen(label), 0) < 0)
        return rp_fail_path(err, errno, path, "set SMACK label '%s' on %s", label, path);
    return 0;
}

/* Directories on file systems redpak made (the root tmpfs and the tmpfs,
 * mqueue and dev mounts), never a host file behind a bind: every parent of
 * every mount target on the root tmpfs, and the fresh mounts themselves. */
static int label_dirs(const struct rp_plan *plan, const char *label, struct rp_error *err)
{
    struct stat root, st;
    char path[PATH_MAX];

    if (lstat("/", &root) < 0)
        return rp_fail(err, errno, "stat the node's root");
    if (label_one("/", label, err) < 0)
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
                (st.st_dev == root.st_dev || (last && fresh)) && label_one(path, label, err) < 0)
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
    if (ctx->proc_fd < 0)
        return rp_fail(err, EBADF, "no procfs to write the SMACK label through");
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
    rfd = openat(ctx->proc_fd, ATTR, O_RDONLY | O_CLOEXEC);
    n = rfd < 0 ? -1 : read(rfd, back, sizeof(back) - 1);
    if (rfd >= 0)
        close(rfd);
    close(ctx->proc_fd);
    ctx->proc_fd = -1;
    if (n < 0)
        return rp_fail(err, errno, "read back the SMACK label");
    while (n > 0 && (back[n - 1] == '\n' || back[n - 1] == '\0'))
        n--;
    back[n] = '\0';
    if (strcmp(back, label))
        return rp_fail(err, EPERM, "SMACK label is '%s' after writing '%s'", back, label);
    return label_dirs(ctx->plan, label, err);
}
