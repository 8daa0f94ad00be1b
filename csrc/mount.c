/* The node's file system: a fresh tmpfs root filled by the plan's mount ops,
 * then pivot_root into it. Runs in the child, in its new mount namespace.
 *
 * With the new mount API (Linux 5.2), the node's root tmpfs is created
 * detached (fsmount) and moved on top of "/": our own root and cwd still
 * point at the host's root below it, so host sources resolve as before, and
 * the new root is only reached through its descriptor. One pivot_root then
 * swaps them. Without it, a stage tmpfs is pivoted to "/" first:
 *   /      the stage: a private tmpfs, detached at the end with everything in it
 *   /old   the host's root: sources are resolved in it as on the host
 *   /new   the node's root (a second tmpfs): targets are resolved in it
 * Every path is resolved to a descriptor first, never leaving its root.
 *
 * Each op then, with mount_setattr() too (Linux 5.12, new_api()): the mount
 * is built detached (open_tree of the resolved source, or fsmount of a fresh
 * file system), gets its flags (read-only...) while nobody can see it (in the
 * same call with open_tree_attr(), Linux 6.15), and is
 * attached with move_mount() on a name created in a directory we hold; the
 * name is never followed, and is checked afterwards to show the mount's root.
 * The fallback: mount(2) naming descriptors through /proc/self/fd/N, the
 * target resolved again after each mount and checked to be what was mounted,
 * read-only by a remount. DATA, EXECFD and FD contents are written to a file
 * that is bound onto the target, then unlinked. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/magic.h>

#include "arch.h"
#include "internal.h"

#define MOUNT_ATTR_NOEXEC_ 0x00000008
#ifndef MQUEUE_MAGIC
#define MQUEUE_MAGIC 0x19800202
#endif
/* open_tree(2) and move_mount(2) (Linux 5.2) */
#define RP_NR_open_tree_ 428
#define OPEN_TREE_CLONE_ 1
#define MOVE_MOUNT_T_EMPTY_PATH_ 0x40
#define FSCONFIG_SET_FLAG_ 0

enum { T_NONE, T_DIR, T_FILE };

/* Stage candidates: any directory works (the stage is moved away by the first
 * pivot, so host paths below it stay reachable through /old). */
static const char *const stage_dirs[] = {"/tmp", "/dev", "/mnt", "/run", "/proc"};

static const char *fdpath_(const struct rp_ctx *ctx, char buf[48], int fd)
{
    rp_format(buf, 48, "%s/%d", ctx->proc_fds, fd);
    return buf;
}
#define fdpath(buf, fd) fdpath_(ctx, buf, fd)

static const char *mount_hint(int e)
{
    return e == ENOSPC ? " (mount count limit reached? see /proc/sys/fs/mount-max)" : "";
}

/* Manual resolution when openat2() is missing: one component at a time with
 * O_NOFOLLOW, symlinks re-read and re-resolved from root_fd, ".." clamped at
 * root_fd. Returns an O_PATH fd or -errno. */
static int walk(int root_fd, const char *path, int no_symlinks)
{
    char rest[PATH_MAX], link[PATH_MAX];
    struct stat root_st, st;
    int cur, links = 0;
    size_t len = strlen(path);

    if (len >= sizeof(rest))
        return -ENAMETOOLONG;
    memcpy(rest, path, len + 1);
    if (fstat(root_fd, &root_st) < 0)
        return -errno;
    cur = openat(root_fd, ".", O_PATH | O_CLOEXEC);
    if (cur < 0)
        return -errno;
    for (char *p = rest;;) {
        char *end, save;
        int next;

        while (*p == '/')
            p++;
        if (!*p)
            return cur;
        end = p + strcspn(p, "/");
        save = *end;
        *end = '\0';
        if (!strcmp(p, ".")) {
            *end = save;
            p = end;
            continue;
        }
        if (!strcmp(p, "..")) {
            if (fstat(cur, &st) == 0 && st.st_dev == root_st.st_dev && st.st_ino == root_st.st_ino) {
                *end = save;
                p = end;
                continue;
            }
        }
        next = openat(cur, p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 || fstat(next, &st) < 0) {
            int e = errno;
            if (next >= 0)
                close(next);
            close(cur);
            return -e;
        }
        *end = save;
        if (!S_ISLNK(st.st_mode)) {
            close(cur);
            cur = next;
            p = end;
            continue;
        }
        /* a symlink: continue with its text followed by what is left */
        ssize_t n = readlinkat(next, "", link, sizeof(link) - 1);
        close(next);
        if (no_symlinks || ++links > 40 || n < 0) {
            close(cur);
            return n < 0 ? -errno : -ELOOP;
        }
        link[n] = '\0';
        if ((size_t)n + strlen(end) + 2 > sizeof(rest)) {
            close(cur);
            return -ENAMETOOLONG;
        }
        memmove(rest + n + 1, end, strlen(end) + 1);
        memcpy(rest, link, (size_t)n);
        rest[n] = '/';
        p = rest;
        if (link[0] == '/') {
            close(cur);
            cur = openat(root_fd, ".", O_PATH | O_CLOEXEC);
            if (cur < 0)
                return -errno;
        }
    }
}

/* Opens path (O_PATH) as if root_fd were "/": nothing it names, symlinks and
 * ".." included, can lead out of root_fd. Returns the fd or -errno. */
static int resolve(const struct rp_ctx *ctx, int root_fd, const char *path, int no_symlinks)
{
    if (ctx->features & RP_FEAT_OPENAT2) {
        struct rp_open_how how = {
            .flags = O_PATH | O_CLOEXEC,
            .resolve = RP_RESOLVE_IN_ROOT | RP_RESOLVE_NO_MAGICLINKS |
                       (no_symlinks ? RP_RESOLVE_NO_SYMLINKS : 0),
        };
        for (int tries = 0; tries < 16; tries++) {
            long fd = syscall(RP_NR_openat2, root_fd, path, &how, sizeof(how));
            if (fd >= 0)
                return (int)fd;
            if (errno != EAGAIN) /* EAGAIN: a concurrent rename; retry */
                return -errno;
        }
        return -EAGAIN;
    }
    return walk(root_fd, path, no_symlinks);
}

/* After the pivot: the O_PATH fd of a directory of the node's root, symlinks
 * resolved inside it, magic links (/proc/self/fd/N, /proc/PID/cwd) refused
 * so that a descriptor still open never leads out. -errno on failure. */
int rp_open_in_root(const struct rp_ctx *ctx, const char *path)
{
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), fd;

    if (root < 0)
        return -errno;
    fd = resolve(ctx, root, path, 0);
    close(root);
    return fd;
}

/* RP_MOUNT_BENEATH, without openat2() or to name the culprit: one component
 * at a time below dfd (owned), O_NOFOLLOW. Returns an O_PATH fd or -1 with
 * err naming the first component that is a symlink. */
static int walk_beneath(int dfd, const char *src, size_t skip, struct rp_error *err)
{
    char buf[PATH_MAX];
    size_t len = strlen(src);

    if (len >= sizeof(buf)) {
        close(dfd);
        return rp_fail_path(err, ENAMETOOLONG, src, "bind source %s", src);
    }
    memcpy(buf, src, len + 1);
    for (char *p = buf + skip;;) {
        struct stat st;
        char *end, save;
        int next;

        while (*p == '/')
            p++;
        if (!*p)
            return dfd;
        end = p + strcspn(p, "/");
        save = *end;
        *end = '\0';
        if (!strcmp(p, ".") || !strcmp(p, "..")) {
            close(dfd);
            return rp_fail_path(err, EINVAL, src, "bind source %s: '%s' is not allowed in a node path", src, p);
        }
        next = openat(dfd, p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        close(dfd);
        if (next < 0 || fstat(next, &st) < 0) {
            int e = errno;
            if (next >= 0)
                close(next);
            return rp_fail_path(err, e, src, "bind source %s: open %s", src, buf);
        }
        if (S_ISLNK(st.st_mode)) {
            close(next);
            return rp_fail_path(err, ELOOP, buf,
                                "bind source %s: %s is a symbolic link inside the node (refused: a node's "
                                "files must not lead its mounts elsewhere; replace the link by the directory)",
                                src, buf);
        }
        *end = save;
        p = end;
        dfd = next;
    }
}

/* The node directory of a BENEATH source, resolved as on the host (path:
 * its text, NUL-terminated; blob: the same n bytes in the plan). The ops of
 * one family share it: resolved once per launch, the fd kept (borrowed by
 * the caller) until an op names another. Returns the fd or -errno. */
static int beneath_dir(struct rp_ctx *ctx, const char *path, const char *blob, size_t n)
{
    int fd;

    if (ctx->beneath_dir && ctx->beneath_len == n && !memcmp(ctx->beneath_dir, blob, n))
        return ctx->beneath_fd;
    fd = resolve(ctx, ctx->host_fd, path, 0);
    if (fd < 0)
        return fd;
    if (ctx->beneath_dir)
        close(ctx->beneath_fd);
    ctx->beneath_dir = blob;
    ctx->beneath_len = n;
    ctx->beneath_fd = fd;
    return fd;
}

/* The O_PATH fd of a bind's source: resolved as on the host, or with
 * RP_MOUNT_BENEATH, its node directory resolved as on the host and the rest
 * opened beneath it with no symlink followed (openat2 when the kernel has
 * it; the walk names the link). Returns the fd, -ENOENT for a missing
 * optional source, or -1 with err. */
static int open_bind_source(struct rp_ctx *ctx, const struct rp_mount *m, struct rp_error *err)
{
    const char *src = rp_plan_str(ctx->plan, m->source);
    char dir[PATH_MAX];
    size_t n = m->data.length;
    int dfd, fd;

    if (!(m->flags & RP_MOUNT_BENEATH)) {
        fd = resolve(ctx, ctx->host_fd, src, m->flags & RP_MOUNT_NO_SYMLINKS);
        if (fd == -ENOENT && (m->flags & RP_MOUNT_OPTIONAL))
            return -ENOENT;
        return fd < 0 ? rp_fail_path(err, -fd, src, "bind source %s", src) : fd;
    }
    memcpy(dir, rp_plan_blob(ctx->plan, m->data), n); /* validated: n < strlen(src) */
    dir[n] = '\0';
    dfd = beneath_dir(ctx, dir, rp_plan_blob(ctx->plan, m->data), n);
    if (dfd < 0)
        return rp_fail_path(err, -dfd, dir, "node directory %s of bind source %s", dir, src);
    if (ctx->features & RP_FEAT_OPENAT2) {
        struct rp_open_how how = {
            .flags = O_PATH | O_CLOEXEC,
            .resolve = RP_RESOLVE_BENEATH | RP_RESOLVE_NO_SYMLINKS | RP_RESOLVE_NO_MAGICLINKS,
        };
        const char *rest = src + n + (src[n] == '/');
        long r;

        while ((r = syscall(RP_NR_openat2, dfd, rest, &how, sizeof(how))) < 0 && errno == EAGAIN)
            ;
        if (r >= 0)
            return (int)r;
        if (errno != ELOOP && errno != EXDEV && errno != ENOTDIR && errno != EINVAL)
            return rp_fail_path(err, errno, src, "bind source %s", src);
    }
    dfd = fcntl(dfd, F_DUPFD_CLOEXEC, 0); /* walk_beneath consumes it */
    if (dfd < 0)
        return rp_fail_path(err, errno, dir, "node directory %s of bind source %s", dir, src);
    return walk_beneath(dfd, src, n, err); /* names the link (or fails as openat2 did) */
}

static int check_type(int fd, int kind, const char *path, struct rp_error *err)
{
    struct stat st;

    if (kind == T_NONE)
        return fd;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return rp_fail_path(err, e, path, "stat %s", path);
    }
    if (kind == T_DIR && !S_ISDIR(st.st_mode)) {
        close(fd);
        return rp_fail_path(err, ENOTDIR, path, "mount point %s", path);
    }
    if (kind == T_FILE && S_ISDIR(st.st_mode)) {
        close(fd);
        return rp_fail_path(err, EISDIR, path, "mount point %s", path);
    }
    return fd;
}

/* Opens the directory `name` in parent when it is a plain directory (no
 * symlink, no "." or ".."): -errno otherwise, -ENOTDIR for anything the
 * caller must resolve the slow way. */
static int open_subdir(int parent, const char *name)
{
    int fd;

    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return -ENOTDIR;
    fd = openat(parent, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    return fd >= 0 ? fd : (errno == ELOOP ? -ENOTDIR : -errno);
}

/* Creates the missing components of path in the new root: directories 0755,
 * the last one a directory or an empty file with `mode`. Each component is
 * created through the descriptor of its resolved parent. A plain directory
 * is entered with one openat() from its parent; a symlink, "." or ".." has
 * the whole prefix resolved inside the root again. */
static int create_path(struct rp_ctx *ctx, const char *path, int kind, mode_t mode, struct rp_error *err)
{
    char buf[PATH_MAX];
    int parent = ctx->root_fd, known = 1, fd; /* root_fd is borrowed; known: opened as a directory */

    memcpy(buf, path, strlen(path) + 1); /* plan paths are < PATH_MAX */
    for (char *p = buf;;) {
        char *end, save;
        int last, dir;

        while (*p == '/')
            p++;
        if (!*p)
            break;
        end = p + strcspn(p, "/");
        last = !end[strspn(end, "/")];
        dir = !last || kind != T_FILE;
        save = *end;
        *end = '\0';
        fd = dir ? open_subdir(parent, p) : -ENOTDIR;
        if (fd == -ENOENT) {
            if (mkdirat(parent, p, last ? mode : 0755) < 0 && errno != EEXIST) {
                fd = -errno;
                goto fail;
            }
            fd = open_subdir(parent, p);
        }
        known = fd >= 0;
        if (fd == -ENOTDIR)
            fd = resolve(ctx, ctx->root_fd, buf, 0);
        if (fd == -ENOENT && !dir) {
            int r = openat(parent, p, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
            if (r < 0 && errno != EEXIST) {
                fd = -errno;
                goto fail;
            }
            if (r >= 0)
                close(r);
            fd = openat(parent, p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                fd = -errno;
        }
        if (parent != ctx->root_fd)
            close(parent);
        if (fd < 0)
            return rp_fail_path(err, -fd, path, "resolve %s in the new root", buf);
        parent = fd;
        *end = save;
        p = end;
    }
    if (parent == ctx->root_fd && (parent = openat(ctx->root_fd, ".", O_PATH | O_CLOEXEC)) < 0)
        return rp_fail_path(err, errno, path, "open new root");
    return known && kind == T_DIR ? parent : check_type(parent, kind, path, err);
fail:
    if (parent != ctx->root_fd)
        close(parent);
    return rp_fail_path(err, -fd, path, "create %s in the new root", buf);
}

/* Consecutive ops mostly share a parent directory: its fd is kept until a
 * mount lands on it or on one of its ancestors (mounted_on()). */
static void mounted_on(struct rp_ctx *ctx, const char *path)
{
    size_t n = strlen(path);

    while (n > 1 && path[n - 1] == '/')
        n--;
    if (ctx->parent_fd >= 0 && (n == 1 || (!strncmp(ctx->parent_path, path, n) &&
                                           (!ctx->parent_path[n] || ctx->parent_path[n] == '/')))) {
        close(ctx->parent_fd);
        ctx->parent_fd = -1;
        ctx->parent_path[0] = '\0';
    }
}

/* Splits path into its parent (returned as a borrowed fd, created when
 * missing) and last component. Returns -1 with err, or -2 when the last
 * component is "." or ".." (the caller then resolves the whole path). */
static int parent_of(struct rp_ctx *ctx, const char *path, char *name, struct rp_error *err)
{
    char parent[PATH_MAX];
    size_t len = strlen(path);
    const char *slash;
    int fd;

    while (len > 1 && path[len - 1] == '/')
        len--;
    memcpy(parent, path, len);
    parent[len] = '\0';
    slash = strrchr(parent, '/');
    if (!slash || !slash[1] || !strcmp(slash + 1, ".") || !strcmp(slash + 1, ".."))
        return -2;
    memcpy(name, slash + 1, strlen(slash + 1) + 1);
    parent[slash == parent ? 1 : (size_t)(slash - parent)] = '\0';
    if (ctx->parent_fd >= 0 && !strcmp(ctx->parent_path, parent))
        return ctx->parent_fd;
    fd = create_path(ctx, parent, T_DIR, 0755, err);
    if (fd < 0)
        return -1;
    if (ctx->parent_fd >= 0)
        close(ctx->parent_fd);
    ctx->parent_fd = fd;
    memcpy(ctx->parent_path, parent, strlen(parent) + 1);
    return fd;
}

/* O_PATH fd of a target inside the new root, created when missing (kind).
 * A last component that is a symlink is followed inside the root. Fills st
 * (when given) for an existing target; creating first saves a lookup in the
 * common case of a fresh root. */
static int open_target_st(struct rp_ctx *ctx, const char *path, int kind, mode_t mode, struct stat *st,
                          struct rp_error *err)
{
    char name[PATH_MAX];
    struct stat tmp;
    int pfd = parent_of(ctx, path, name, err), fd, created = 0;

    st = st ? st : &tmp;
    if (pfd == -1)
        return -1;
    if (pfd == -2)
        goto full;
    if (kind != T_NONE) {
        int r = kind == T_FILE ? openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode)
                               : mkdirat(pfd, name, mode);
        if (r < 0 && errno != EEXIST)
            return rp_fail_path(err, errno, path, "create %s in the new root", path);
        if (r >= 0 && kind == T_FILE)
            close(r);
        created = r >= 0;
    }
    fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return rp_fail_path(err, errno, path, "resolve %s in the new root", path);
    if (created && st == &tmp)
        return fd; /* we just made it: its type is known */
    if (fstat(fd, st) < 0) {
        int e = errno;
        close(fd);
        return rp_fail_path(err, e, path, "stat %s", path);
    }
    if (!S_ISLNK(st->st_mode)) {
        if (kind == T_DIR && !S_ISDIR(st->st_mode)) {
            close(fd);
            return rp_fail_path(err, ENOTDIR, path, "mount point %s", path);
        }
        if (kind == T_FILE && S_ISDIR(st->st_mode)) {
            close(fd);
            return rp_fail_path(err, EISDIR, path, "mount point %s", path);
        }
        return fd;
    }
    close(fd);
full:
    fd = resolve(ctx, ctx->root_fd, path, 0);
    if (fd == -ENOENT && kind != T_NONE)
        return create_path(ctx, path, kind, mode, err); /* a dangling link: refused there */
    if (fd < 0)
        return rp_fail_path(err, -fd, path, "resolve %s in the new root", path);
    if (fstat(fd, st) < 0) {
        int e = errno;
        close(fd);
        return rp_fail_path(err, e, path, "stat %s", path);
    }
    return check_type(fd, kind, path, err);
}

static int open_target(struct rp_ctx *ctx, const char *path, int kind, mode_t mode, struct rp_error *err)
{
    return open_target_st(ctx, path, kind, mode, NULL, err);
}

/* Where to mount on target: a mount point we just created is named through
 * its parent's descriptor (one lookup less per op: nothing in the node runs
 * yet, and recheck() proves what was mounted where); an existing one through
 * its own. Fills mpath; returns the fd to close, or -2 when there is none. */
static int place_target(struct rp_ctx *ctx, const char *path, int kind, mode_t mode, char *mpath,
                        struct rp_error *err)
{
    char name[PATH_MAX];
    int pfd = parent_of(ctx, path, name, err), fd;

    if (pfd == -1)
        return -1;
    if (pfd >= 0 && strlen(name) < NAME_MAX + 1) {
        int r = kind == T_FILE ? openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode)
                               : mkdirat(pfd, name, mode);
        if (r >= 0) {
            if (kind == T_FILE)
                close(r);
            rp_format(mpath, PATH_MAX, "%s/%d/%s", ctx->proc_fds, pfd, name);
            return -2;
        }
        if (errno != EEXIST)
            return rp_fail_path(err, errno, path, "create %s in the new root", path);
    }
    fd = open_target(ctx, path, kind, mode, err);
    if (fd >= 0)
        fdpath(mpath, fd);
    return fd;
}

static int recheck(struct rp_ctx *ctx, const char *target, const struct stat *want, unsigned long magic,
                   struct rp_error *err);

/* Mounts are built detached and attached with move_mount() (see the top of
 * this file): needs mount_setattr() for their flags, Linux 5.12. */
static int new_api(const struct rp_ctx *ctx)
{
    unsigned both = RP_FEAT_MOUNT_API | RP_FEAT_MOUNT_SETATTR;

    return (ctx->features & both) == both;
}

static unsigned mount_attrs(unsigned long ms)
{
    return (ms & MS_RDONLY ? RP_MOUNT_ATTR_RDONLY : 0) | (ms & MS_NOSUID ? RP_MOUNT_ATTR_NOSUID : 0) |
           (ms & MS_NODEV ? RP_MOUNT_ATTR_NODEV : 0) | (ms & MS_NOEXEC ? MOUNT_ATTR_NOEXEC_ : 0);
}

/* Creates mount point `name` in dirfd: 1 if created, 0 if it existed, -1
 * with errno. A file mount point is an empty regular file. */
static int make_point(int dirfd, const char *name, int kind, mode_t mode)
{
    int r = kind == T_FILE ? mknodat(dirfd, name, S_IFREG | mode, 0) : mkdirat(dirfd, name, mode);

    if (r == 0)
        return 1;
    return errno == EEXIST ? 0 : -1;
}

static int same_object(const struct stat *got, const struct stat *want, const char *path, struct rp_error *err)
{
    if (got->st_dev != want->st_dev || got->st_ino != want->st_ino)
        return rp_fail_path(err, EXDEV, path, "after mounting on %s, found another object there", path);
    return 0;
}

/* Attaches tree on `name` in dirfd (a mount point we just created; without
 * MOVE_MOUNT_T_SYMLINKS the name is never followed), then checks that the
 * name now shows the tree's root (want). Errors read "<what> <src> on <path>". */
static int move_here(struct rp_ctx *ctx, int tree, int dirfd, const char *name, const char *path,
                     const struct stat *want, const char *what, const char *src, struct rp_error *err)
{
    struct stat st;

    if (syscall(RP_NR_move_mount, tree, "", dirfd, name, RP_MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return rp_fail_path(err, errno, path, "%s %s on %s%s", what, src, path, mount_hint(errno));
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return rp_fail_path(err, errno, path, "stat %s", path);
    mounted_on(ctx, path);
    return same_object(&st, want, path, err);
}

/* Attaches the detached tree on target, created when missing (kind). An
 * existing target is resolved inside the new root (symlinks included) and
 * resolved again after the mount to check what it shows. */
static int attach(struct rp_ctx *ctx, int tree, const char *path, int kind, mode_t mode, const struct stat *want,
                  const char *what, const char *src, struct rp_error *err)
{
    char name[PATH_MAX];
    int pfd = parent_of(ctx, path, name, err), fd, r;

    if (pfd == -1)
        return -1;
    if (pfd >= 0) {
        r = make_point(pfd, name, kind, mode);
        if (r < 0)
            return rp_fail_path(err, errno, path, "create %s in the new root", path);
        if (r == 1)
            return move_here(ctx, tree, pfd, name, path, want, what, src, err);
    }
    fd = open_target(ctx, path, kind, mode, err);
    if (fd < 0)
        return -1;
    r = (int)syscall(RP_NR_move_mount, tree, "", fd, "", RP_MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH_);
    if (r < 0) {
        int e = errno;
        close(fd);
        return rp_fail_path(err, e, path, "%s %s on %s%s", what, src, path, mount_hint(e));
    }
    close(fd);
    mounted_on(ctx, path);
    fd = recheck(ctx, path, want, 0, err);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* A detached mount of a fresh file system of `type`; opts is a mount(2)-style
 * option string ("mode=0755,size=1m"; a word without '=' is a flag). Returns
 * the mount's fd (its root, O_PATH), or -1 with err. */
static int new_fs(const char *type, const char *opts, unsigned attrs, const char *target, struct rp_error *err)
{
    char buf[512];
    int fs, mnt;

    if (strlen(opts) >= sizeof(buf))
        return rp_fail_path(err, E2BIG, target, "%s options for %s too long", type, target);
    memcpy(buf, opts, strlen(opts) + 1);
    fs = (int)syscall(RP_NR_fsopen, type, RP_FSOPEN_CLOEXEC);
    if (fs < 0)
        return rp_fail_path(err, errno, target, "mount %s on %s", type, target);
    if (syscall(RP_NR_fsconfig, fs, RP_FSCONFIG_SET_STRING, "source", type, 0) < 0)
        goto fail;
    for (char *save = NULL, *opt = strtok_r(buf, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(opt, '=');
        if (eq)
            *eq = '\0';
        if (syscall(RP_NR_fsconfig, fs, eq ? RP_FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG_, opt, eq ? eq + 1 : NULL,
                    0) < 0)
            goto fail;
    }
    if (syscall(RP_NR_fsconfig, fs, RP_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        goto fail;
    mnt = (int)syscall(RP_NR_fsmount, fs, RP_FSMOUNT_CLOEXEC, attrs);
    if (mnt < 0)
        goto fail;
    close(fs);
    return mnt;
fail:;
    int e = errno;
    close(fs);
    return rp_fail_path(err, e, target, "mount %s on %s%s%s%s%s", type, target, *opts ? " (" : "", opts,
                        *opts ? ")" : "", mount_hint(e));
}

/* A detached copy of the mount tree at sfd (recursive: with its submounts),
 * with attrs (MOUNT_ATTR_*) set on every mount of it: in one call with
 * open_tree_attr() (Linux 6.15), else open_tree() then mount_setattr(). */
static int clone_tree(const struct rp_ctx *ctx, int sfd, int recursive, unsigned attrs, const char *path,
                      struct rp_error *err)
{
    struct rp_mount_attr a = {.attr_set = attrs};
    unsigned flags = OPEN_TREE_CLONE_ | O_CLOEXEC | AT_EMPTY_PATH | (recursive ? RP_AT_RECURSIVE : 0);
    int fused = attrs && (ctx->features & RP_FEAT_OPEN_TREE_ATTR), tree;

    tree = fused ? (int)syscall(RP_NR_open_tree_attr, sfd, "", flags, &a, sizeof(a))
                 : (int)syscall(RP_NR_open_tree_, sfd, "", flags);
    if (tree < 0 && fused)
        return rp_fail_path(err, errno, path, "copy the mount tree for %s read-only%s", path, mount_hint(errno));
    if (tree < 0)
        return rp_fail_path(err, errno, path, "copy the mount tree for %s%s", path, mount_hint(errno));
    if (attrs && !fused &&
        syscall(RP_NR_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? RP_AT_RECURSIVE : 0), &a, sizeof(a)) < 0) {
        int e = errno;
        close(tree);
        return rp_fail_path(err, e, path, "make %s read-only", path);
    }
    return tree;
}

/* Re-resolves target after a mount: the new fd is the mount's root. Checks it
 * is the object we meant (same inode as the source, or the expected fs). */
static int recheck(struct rp_ctx *ctx, const char *target, const struct stat *want, unsigned long magic,
                   struct rp_error *err)
{
    struct stat st;
    int fd = open_target_st(ctx, target, T_NONE, 0, &st, err);
    struct statfs sfs;

    if (fd < 0)
        return -1;
    if (want && (st.st_dev != want->st_dev || st.st_ino != want->st_ino)) {
        close(fd);
        return rp_fail_path(err, EXDEV, target, "after mounting on %s, found another object there", target);
    }
    if (magic && (fstatfs(fd, &sfs) < 0 || (unsigned long)sfs.f_type != magic)) {
        close(fd);
        return rp_fail_path(err, EXDEV, target, "after mounting on %s, found another file system there", target);
    }
    return fd;
}

static unsigned long locked_flags(const struct statvfs *sv)
{
    unsigned long f = 0;

    if (sv->f_flag & ST_NOSUID)
        f |= MS_NOSUID;
    if (sv->f_flag & ST_NODEV)
        f |= MS_NODEV;
    if (sv->f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (sv->f_flag & ST_NOATIME)
        f |= MS_NOATIME;
    if (sv->f_flag & ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (sv->f_flag & ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

/* Makes the mount whose root is fd read-only and/or noexec. In a user
 * namespace the kernel refuses a remount that would clear a locked flag, so
 * the current nosuid/nodev/noexec/atime flags are read back and kept. */
static int set_readonly(struct rp_ctx *ctx, int fd, int recursive, int ro, int noexec, const char *target,
                        struct rp_error *err)
{
    struct statvfs sv;
    char p[48];

    if (ctx->features & RP_FEAT_MOUNT_SETATTR) {
        struct rp_mount_attr a = {.attr_set = (ro ? RP_MOUNT_ATTR_RDONLY : 0) | (noexec ? MOUNT_ATTR_NOEXEC_ : 0)};
        if (syscall(RP_NR_mount_setattr, fd, "", AT_EMPTY_PATH | (recursive ? RP_AT_RECURSIVE : 0), &a,
                    sizeof(a)) < 0)
            return rp_fail_path(err, errno, target, "make %s read-only", target);
        return 0; /* applied to the whole tree at once, or failed */
    } else {
        if (fstatvfs(fd, &sv) < 0)
            return rp_fail_path(err, errno, target, "statvfs %s", target);
        if (mount(NULL, fdpath(p, fd), NULL,
                  MS_BIND | MS_REMOUNT | (ro ? MS_RDONLY : 0) | (noexec ? MS_NOEXEC : 0) | locked_flags(&sv),
                  NULL) < 0)
            return rp_fail_path(err, errno, target, "remount %s read-only", target);
    }
    if (fstatvfs(fd, &sv) < 0 || (ro && !(sv.f_flag & ST_RDONLY)))
        return rp_fail_path(err, EROFS, target, "%s is still writable after the read-only remount", target);
    return 0;
}

/* What a bind source is: 1 a directory, 0 a file (or device, socket...), or
 * -1 with err. RP_MOUNT_BIND (the plain export modes) binds whatever the
 * source is at launch, as redpak 2.x did; RP_MOUNT_BIND_FILE (the *File modes)
 * refuses a directory. */
static int bind_kind(uint32_t kind, const struct stat *st, const char *src, struct rp_error *err)
{
    if (kind == RP_MOUNT_BIND_FILE && S_ISDIR(st->st_mode))
        return rp_fail_path(err, EISDIR, src, "bind source %s", src);
    return S_ISDIR(st->st_mode) ? 1 : 0;
}

/* m: the plan's op (its source opened by open_bind_source()); NULL for a
 * bind of the launcher's own (a /dev device), src resolved as on the host. */
static int bind(struct rp_ctx *ctx, const struct rp_mount *m, const char *src, const char *dst, uint32_t kind,
                uint32_t flags, struct rp_error *err)
{
    int ro = flags & RP_MOUNT_RDONLY;
    char tp[PATH_MAX];
    int sfd, tfd, dir, rec, r = -1;
    struct stat st;
    char sp[48];

    if (m)
        sfd = open_bind_source(ctx, m, err);
    else if ((sfd = resolve(ctx, ctx->host_fd, src, 0)) < 0 && sfd != -ENOENT)
        return rp_fail_path(err, -sfd, src, "bind source %s", src);
    if (sfd == -ENOENT && (flags & RP_MOUNT_OPTIONAL))
        return 0;
    if (sfd < 0)
        return m ? -1 : rp_fail_path(err, -sfd, src, "bind source %s", src);
    if (fstat(sfd, &st) < 0) {
        rp_fail_path(err, errno, src, "stat %s", src);
        goto out;
    }
    dir = bind_kind(kind, &st, src, err);
    if (dir < 0)
        goto out;
    /* Without mount_setattr() only the top mount can be made read-only, so
     * a read-only bind is then not recursive: nothing below stays writable. */
    rec = dir && !(ro && !(ctx->features & RP_FEAT_MOUNT_SETATTR));
    tfd = place_target(ctx, dst, dir ? T_DIR : T_FILE, dir ? 0755 : 0644, tp, err);
    if (tfd == -1)
        goto out;
    if (mount(fdpath(sp, sfd), tp, NULL, MS_BIND | (rec ? MS_REC : 0), NULL) < 0) {
        int e = errno;
        if (tfd >= 0)
            close(tfd);
        rp_fail_path(err, e, dst, "bind %s on %s%s", src, dst, mount_hint(e));
        goto out;
    }
    if (tfd >= 0)
        close(tfd);
    mounted_on(ctx, dst);
    tfd = recheck(ctx, dst, &st, 0, err);
    if (tfd < 0)
        goto out;
    r = 0;
    if (ro || (flags & RP_MOUNT_NOEXEC))
        r = set_readonly(ctx, tfd, rec, ro, flags & RP_MOUNT_NOEXEC, dst, err);
    close(tfd);
out:
    close(sfd);
    return r;
}

/* New mount API: a copy of the source's mount tree gets its flags while
 * detached, then is attached. An op binding the same source with the same
 * flags as the op just before it copies that op's mount instead: the same
 * tree with the same flags (nothing was mounted in it since), without
 * resolving the source again or walking the host's mounts. */
static int bind_detached(struct rp_ctx *ctx, const struct rp_mount *m, struct rp_error *err)
{
    const char *src = rp_plan_str(ctx->plan, m->source), *dst = rp_plan_str(ctx->plan, m->target);
    int dir, ro = m->flags & RP_MOUNT_RDONLY, sfd, tree, r;
    const struct rp_mount *prev = ctx->bind_op;
    struct stat st;

    ctx->bind_op = NULL;
    if (prev && prev == m - 1 && prev->kind == m->kind && prev->flags == m->flags &&
        (prev->source == m->source || !strcmp(rp_plan_str(ctx->plan, prev->source), src))) {
        sfd = ctx->bind_tree;
        st.st_dev = (dev_t)ctx->bind_dev;
        st.st_ino = (ino_t)ctx->bind_ino;
        dir = ctx->bind_dir;
        tree = clone_tree(ctx, sfd, dir, 0, dst, err);
    } else {
        if (prev)
            close(ctx->bind_tree);
        sfd = open_bind_source(ctx, m, err);
        if (sfd == -ENOENT)
            return 0;
        if (sfd < 0)
            return -1;
        if (fstat(sfd, &st) < 0) {
            rp_fail_path(err, errno, src, "stat %s", src);
            close(sfd);
            return -1;
        }
        dir = bind_kind(m->kind, &st, src, err);
        if (dir < 0) {
            close(sfd);
            return -1;
        }
        tree = clone_tree(ctx, sfd, dir,
                          (ro ? RP_MOUNT_ATTR_RDONLY : 0) | (m->flags & RP_MOUNT_NOEXEC ? MOUNT_ATTR_NOEXEC_ : 0), dst,
                          err);
    }
    close(sfd);
    if (tree < 0)
        return -1;
    r = attach(ctx, tree, dst, dir ? T_DIR : T_FILE, dir ? 0755 : 0644, &st, "bind", src, err);
    if (r < 0) {
        close(tree);
        return -1;
    }
    ctx->bind_op = m;
    ctx->bind_tree = tree;
    ctx->bind_dev = (unsigned long long)st.st_dev;
    ctx->bind_ino = (unsigned long long)st.st_ino;
    ctx->bind_dir = dir;
    return 0;
}

/* Mounts a fresh file system of `type` on target; returns the fd of its root
 * (O_PATH). flags are MS_NOSUID, MS_NODEV, MS_NOEXEC and, with the new mount
 * API only, MS_RDONLY (for the mount, not the super block). */
static int mount_fs(struct rp_ctx *ctx, const char *target, const char *type, unsigned long flags,
                    const char *data, unsigned long magic, struct rp_error *err)
{
    char p[PATH_MAX];
    int fd;

    if (new_api(ctx)) {
        struct stat st;
        int mnt = new_fs(type, data ? data : "", mount_attrs(flags), target, err);

        if (mnt < 0)
            return -1;
        if (fstat(mnt, &st) < 0) {
            rp_fail_path(err, errno, target, "stat the new %s", type);
            close(mnt);
            return -1;
        }
        if (attach(ctx, mnt, target, T_DIR, 0755, &st, "mount", type, err) < 0) {
            close(mnt);
            return -1;
        }
        return mnt;
    }
    fd = place_target(ctx, target, T_DIR, 0755, p, err);
    if (fd == -1)
        return -1;
    if (mount(type, p, type, flags, data) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return rp_fail_path(err, e, target, "mount %s on %s%s", type, target, mount_hint(e));
    }
    if (fd >= 0)
        close(fd);
    mounted_on(ctx, target);
    return recheck(ctx, target, NULL, magic, err);
}

static int join(char *buf, const char *dir, const char *name, struct rp_error *err)
{
    size_t a = strlen(dir), b = strlen(name);

    while (a > 1 && dir[a - 1] == '/')
        a--;
    if (a + 1 + b + 1 > PATH_MAX)
        return rp_fail_path(err, ENAMETOOLONG, dir, "%s/%s", dir, name);
    memcpy(buf, dir, a);
    buf[a] = '/';
    memcpy(buf + a + 1, name, b + 1);
    return 0;
}

static int tmpfs(struct rp_ctx *ctx, const struct rp_mount *m, struct rp_error *err)
{
    const char *dst = rp_plan_str(ctx->plan, m->target);
    const char *extra = rp_plan_str(ctx->plan, m->source);
    char data[512];
    int fd, ro, r = 0;

    if (rp_format(data, sizeof(data), "mode=%o%s%s", m->mode ? m->mode : 0755, *extra ? "," : "", extra) >=
        sizeof(data) - 1)
        return rp_fail_path(err, E2BIG, dst, "tmpfs options for %s too long", dst);
    ro = (m->flags & RP_MOUNT_RDONLY) && new_api(ctx);
    fd = mount_fs(ctx, dst, "tmpfs",
                  MS_NOSUID | MS_NODEV | (m->flags & RP_MOUNT_NOEXEC ? MS_NOEXEC : 0) | (ro ? MS_RDONLY : 0), data,
                  TMPFS_MAGIC, err);
    if (fd < 0)
        return -1;
    if ((m->flags & RP_MOUNT_RDONLY) && !ro)
        r = set_readonly(ctx, fd, 0, 1, 0, dst, err);
    close(fd);
    return r;
}

/* Kernel knobs of a fresh procfs, bound read-only over themselves. */
static const char *const proc_ro[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};

/* New mount API: each knob, a fixed name in the fresh procfs whose root is
 * proc_fd, gets a read-only copy of itself mounted on it. */
static int proc_knobs(struct rp_ctx *ctx, int proc_fd, const char *dst, struct rp_error *err)
{
    char path[PATH_MAX];

    for (size_t i = 0; i < sizeof(proc_ro) / sizeof(proc_ro[0]); i++) {
        struct stat st;
        int kfd, tree, r;

        if (join(path, dst, proc_ro[i], err) < 0)
            return -1;
        kfd = openat(proc_fd, proc_ro[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (kfd < 0 && errno == ENOENT)
            continue; /* e.g. no sysrq-trigger without CONFIG_MAGIC_SYSRQ */
        if (kfd < 0 || fstat(kfd, &st) < 0 || (S_ISLNK(st.st_mode) && (errno = ELOOP))) {
            rp_fail_path(err, errno, path, "open %s", path);
            if (kfd >= 0)
                close(kfd);
            return -1;
        }
        tree = clone_tree(ctx, kfd, 1, RP_MOUNT_ATTR_RDONLY, path, err);
        close(kfd);
        if (tree < 0)
            return -1;
        r = move_here(ctx, tree, proc_fd, proc_ro[i], path, &st, "bind", path, err);
        close(tree);
        if (r < 0)
            return -1;
    }
    return 0;
}

static int procfs(struct rp_ctx *ctx, const struct rp_mount *m, struct rp_error *err)
{
    const char *dst = rp_plan_str(ctx->plan, m->target);
    char path[PATH_MAX], p[48];
    int fd = mount_fs(ctx, dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, PROC_SUPER_MAGIC, err);

    if (fd < 0)
        return -1;
    if (new_api(ctx)) {
        int r = proc_knobs(ctx, fd, dst, err);
        close(fd);
        return r;
    }
    close(fd);
    for (size_t i = 0; i < sizeof(proc_ro) / sizeof(proc_ro[0]); i++) {
        if (join(path, dst, proc_ro[i], err) < 0)
            return -1;
        fd = resolve(ctx, ctx->root_fd, path, 1);
        if (fd == -ENOENT)
            continue; /* e.g. no sysrq-trigger without CONFIG_MAGIC_SYSRQ */
        if (fd < 0)
            return rp_fail_path(err, -fd, path, "open %s", path);
        if (mount(fdpath(p, fd), p, NULL, MS_BIND | MS_REC, NULL) < 0) {
            int e = errno;
            close(fd);
            return rp_fail_path(err, e, path, "bind %s on itself", path);
        }
        close(fd);
        mounted_on(ctx, path);
        fd = recheck(ctx, path, NULL, PROC_SUPER_MAGIC, err);
        if (fd < 0 || set_readonly(ctx, fd, 1, 1, 0, path, err) < 0) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
        close(fd);
    }
    return 0;
}

static int symlink_in(int pfd, const char *name, const char *text, const char *target, struct rp_error *err)
{
    char old[PATH_MAX];

    if (symlinkat(text, pfd, name) < 0) {
        int e = errno;
        ssize_t n = e == EEXIST ? readlinkat(pfd, name, old, sizeof(old) - 1) : -1;
        /* an identical link is already there: nothing to do */
        if (n < 0 || (size_t)n != strlen(text) || memcmp(old, text, (size_t)n))
            return rp_fail_path(err, e, target, "symlink %s -> %s", target, text);
    }
    return 0;
}

static int symlink_at(struct rp_ctx *ctx, const char *text, const char *target, struct rp_error *err)
{
    char name[PATH_MAX];
    int pfd = parent_of(ctx, target, name, err);

    if (pfd == -1)
        return -1;
    if (pfd == -2)
        return rp_fail_path(err, EINVAL, target, "symlink at %s", target);
    return symlink_in(pfd, name, text, target, err);
}

static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
static const char *const dev_links[][2] = {
    {"ptmx", "pts/ptmx"},          {"fd", "/proc/self/fd"},       {"stdin", "/proc/self/fd/0"},
    {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
};

/* New mount API: a fresh file system mounted on `name` in dirfd, a
 * directory only we have written to. */
static int fs_here(struct rp_ctx *ctx, int dirfd, const char *name, const char *path, const char *type,
                   const char *opts, unsigned long flags, struct rp_error *err)
{
    struct stat st;
    int mnt = new_fs(type, opts, mount_attrs(flags), path, err), r;

    if (mnt < 0)
        return -1;
    if (fstat(mnt, &st) < 0)
        r = rp_fail_path(err, errno, path, "stat the new %s", type);
    else if (make_point(dirfd, name, T_DIR, 0755) != 1)
        r = rp_fail_path(err, errno ? errno : EEXIST, path, "create %s", path);
    else
        r = move_here(ctx, mnt, dirfd, name, path, &st, "mount", type, err);
    close(mnt);
    return r;
}

/* New mount API: fills the fresh /dev tmpfs whose root is dev_fd (nothing
 * in it but what we create, so names are created and mounted on directly). */
static int dev_fill(struct rp_ctx *ctx, int dev_fd, const char *dst, struct rp_error *err)
{
    char path[PATH_MAX], src[32];

    for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
        struct stat st;
        int sfd, tree, r;

        if (join(path, dst, devices[i], err) < 0)
            return -1;
        rp_format(src, sizeof(src), "/dev/%s", devices[i]);
        sfd = resolve(ctx, ctx->host_fd, src, 0);
        if (sfd == -ENOENT)
            continue; /* a host without one of them gets a /dev without it */
        if (sfd < 0)
            return rp_fail_path(err, -sfd, src, "bind source %s", src);
        if (fstat(sfd, &st) < 0 || (S_ISDIR(st.st_mode) && (errno = EISDIR))) {
            rp_fail_path(err, errno, src, "bind source %s", src);
            close(sfd);
            return -1;
        }
        tree = clone_tree(ctx, sfd, 0, 0, path, err);
        close(sfd);
        if (tree < 0)
            return -1;
        if (make_point(dev_fd, devices[i], T_FILE, 0644) != 1)
            r = rp_fail_path(err, errno ? errno : EEXIST, path, "create %s", path);
        else
            r = move_here(ctx, tree, dev_fd, devices[i], path, &st, "bind", src, err);
        close(tree);
        if (r < 0)
            return -1;
    }
    if (join(path, dst, "pts", err) < 0 ||
        fs_here(ctx, dev_fd, "pts", path, "devpts", "newinstance,ptmxmode=0666,mode=620", MS_NOSUID | MS_NOEXEC,
                err) < 0)
        return -1;
    if (join(path, dst, "shm", err) < 0 ||
        fs_here(ctx, dev_fd, "shm", path, "tmpfs", "mode=1777", MS_NOSUID | MS_NODEV, err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(dev_links) / sizeof(dev_links[0]); i++)
        if (join(path, dst, dev_links[i][0], err) < 0 || symlink_in(dev_fd, dev_links[i][0], dev_links[i][1], path, err) < 0)
            return -1;
    return 0;
}

static int devfs(struct rp_ctx *ctx, const struct rp_mount *m, struct rp_error *err)
{
    const char *dst = rp_plan_str(ctx->plan, m->target);
    char path[PATH_MAX], src[32];
    int fd = mount_fs(ctx, dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755", TMPFS_MAGIC, err);

    if (fd < 0)
        return -1;
    if (new_api(ctx)) {
        int r = dev_fill(ctx, fd, dst, err);
        close(fd);
        return r;
    }
    close(fd);
    for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
        if (join(path, dst, devices[i], err) < 0)
            return -1;
        rp_format(src, sizeof(src), "/dev/%s", devices[i]);
        /* a host without one of them gets a /dev without it */
        if (bind(ctx, NULL, src, path, 0, RP_MOUNT_OPTIONAL, err) < 0)
            return -1;
    }
    if (join(path, dst, "pts", err) < 0)
        return -1;
    fd = mount_fs(ctx, path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620",
                  DEVPTS_SUPER_MAGIC, err);
    if (fd < 0)
        return -1;
    close(fd);
    if (join(path, dst, "shm", err) < 0)
        return -1;
    fd = mount_fs(ctx, path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", TMPFS_MAGIC, err);
    if (fd < 0)
        return -1;
    close(fd);
    for (size_t i = 0; i < sizeof(dev_links) / sizeof(dev_links[0]); i++)
        if (join(path, dst, dev_links[i][0], err) < 0 || symlink_at(ctx, dev_links[i][1], path, err) < 0)
            return -1;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Copies what descriptor src holds; from offset 0 when it can seek, so the
 * caller's file position is left alone. */
static int copy_fd(int dst, int src)
{
    char buf[8192];
    off_t off = 0;
    int seekable = lseek(src, 0, SEEK_CUR) >= 0;

    for (;;) {
        ssize_t n = seekable ? pread(src, buf, sizeof(buf), off) : read(src, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (write_all(dst, buf, (size_t)n) < 0)
            return -1;
        off += n;
    }
}

/* DATA, EXECFD, FD: the content goes to a file in the stage (never visible in
 * the node), bound onto the target, read-only when asked. */
static int content_file(struct rp_ctx *ctx, const struct rp_mount *m, uint32_t index, struct rp_error *err)
{
    const char *dst = rp_plan_str(ctx->plan, m->target);
    char name[32], sp[48], tp[PATH_MAX];
    struct stat st;
    int fd, tfd, r = -1;

    rp_format(name, sizeof(name), ".rp-content-%u", ctx->nfiles++);
    fd = openat(ctx->stage_fd, name, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, m->mode ? m->mode : 0644);
    if (fd < 0)
        return rp_fail_path(err, errno, dst, "create the content of %s", dst);

    if (m->kind == RP_MOUNT_DATA)
        r = write_all(fd, rp_plan_blob(ctx->plan, m->data), m->data.length);
    else if (m->kind == RP_MOUNT_EXECFD)
        r = write_all(fd, ctx->execfd_out[index], ctx->execfd_len[index]);
    else
        r = copy_fd(fd, m->fd);
    if (r < 0 || fstat(fd, &st) < 0) {
        if (m->kind == RP_MOUNT_FD)
            rp_fail_path(err, errno, dst, "copy descriptor %d to %s", m->fd, dst);
        else
            rp_fail_path(err, errno, dst, "write the content of %s", dst);
        goto out;
    }
    r = -1;
    if (new_api(ctx)) {
        tfd = clone_tree(ctx, fd, 0, m->flags & RP_MOUNT_RDONLY ? RP_MOUNT_ATTR_RDONLY : 0, dst, err);
        if (tfd < 0)
            goto out;
        r = attach(ctx, tfd, dst, T_FILE, 0644, &st, "bind", "content", err);
        close(tfd);
        if (r == 0 && unlinkat(ctx->stage_fd, name, 0) < 0)
            r = rp_fail_path(err, errno, dst, "unlink the content of %s", dst);
        if (r < 0)
            goto out;
        close(fd);
        return 0;
    }
    tfd = place_target(ctx, dst, T_FILE, 0644, tp, err);
    if (tfd == -1)
        goto out;
    if (mount(fdpath(sp, fd), tp, NULL, MS_BIND, NULL) < 0) {
        int e = errno;
        if (tfd >= 0)
            close(tfd);
        rp_fail_path(err, e, dst, "bind content on %s%s", dst, mount_hint(e));
        goto out;
    }
    if (tfd >= 0)
        close(tfd);
    /* the bind keeps the inode; the name must go (the kernel refuses to
     * bind an unlinked file, so not earlier) */
    if (unlinkat(ctx->stage_fd, name, 0) < 0) {
        rp_fail_path(err, errno, dst, "unlink the content of %s", dst);
        goto out;
    }
    mounted_on(ctx, dst);
    tfd = recheck(ctx, dst, &st, 0, err);
    if (tfd < 0) {
        close(fd);
        return -1;
    }
    r = m->flags & RP_MOUNT_RDONLY ? set_readonly(ctx, tfd, 0, 1, 0, dst, err) : 0;
    close(tfd);
    close(fd);
    return r;
out:
    unlinkat(ctx->stage_fd, name, 0); /* best effort: the launch fails anyway */
    close(fd);
    return r;
}

static int lock(struct rp_ctx *ctx, const struct rp_mount *m, struct rp_error *err)
{
    const char *dst = rp_plan_str(ctx->plan, m->target);
    int op = (m->flags & RP_MOUNT_LOCK_EXCL ? LOCK_EX : LOCK_SH) | (m->flags & RP_MOUNT_LOCK_WAIT ? 0 : LOCK_NB);
    char p[48];
    int fd, lfd;

    err->step = RP_STEP_LOCK;
    fd = resolve(ctx, ctx->root_fd, dst, 0);
    if (fd == -ENOENT && (m->flags & RP_MOUNT_OPTIONAL))
        goto done;
    if (fd < 0 && (fd = open_target(ctx, dst, T_FILE, m->mode ? m->mode : 0644, err)) < 0)
        return -1;
    /* flock needs a real open file: reopen the resolved object */
    lfd = open(fdpath(p, fd), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    close(fd);
    if (lfd < 0)
        return rp_fail_path(err, errno, dst, "open lock %s", dst);
    while (flock(lfd, op) < 0) {
        int e = errno;
        if (e == EINTR)
            continue;
        close(lfd);
        return rp_fail_path(err, e, dst, "lock %s%s", dst,
                            e == EWOULDBLOCK ? " (held by another process)" : "");
    }
    ctx->lock_fds[ctx->nlocks++] = lfd;
done:
    err->step = RP_STEP_MOUNT;
    return 0;
}

/* A directory created in its parent is known to be one; an existing entry
 * is resolved to check it is. */
static int make_dir(struct rp_ctx *ctx, const char *path, mode_t mode, struct rp_error *err)
{
    char name[PATH_MAX];
    int pfd = parent_of(ctx, path, name, err), fd;

    if (pfd == -1)
        return -1;
    if (pfd >= 0 && mkdirat(pfd, name, mode) == 0)
        return 0;
    if (pfd >= 0 && errno != EEXIST)
        return rp_fail_path(err, errno, path, "create %s in the new root", path);
    fd = open_target(ctx, path, T_DIR, mode, err);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int apply_op(struct rp_ctx *ctx, const struct rp_mount *m, uint32_t i, struct rp_error *err)
{
    const char *dst = rp_plan_str(ctx->plan, m->target);
    int fd;

    switch (m->kind) {
    case RP_MOUNT_BIND:
    case RP_MOUNT_BIND_FILE:
        if (new_api(ctx))
            return bind_detached(ctx, m, err);
        return bind(ctx, m, rp_plan_str(ctx->plan, m->source), dst, m->kind, m->flags, err);
    case RP_MOUNT_DIR:
        return make_dir(ctx, dst, m->mode ? m->mode : 0755, err);
    case RP_MOUNT_SYMLINK:
        return symlink_at(ctx, rp_plan_str(ctx->plan, m->source), dst, err);
    case RP_MOUNT_TMPFS:
        return tmpfs(ctx, m, err);
    case RP_MOUNT_PROC:
        return procfs(ctx, m, err);
    case RP_MOUNT_DEV:
        return devfs(ctx, m, err);
    case RP_MOUNT_MQUEUE:
        fd = mount_fs(ctx, dst, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, MQUEUE_MAGIC, err);
        if (fd < 0)
            return -1;
        close(fd);
        return 0;
    case RP_MOUNT_DATA:
    case RP_MOUNT_EXECFD:
    case RP_MOUNT_FD:
        return content_file(ctx, m, i, err);
    case RP_MOUNT_LOCK:
        return lock(ctx, m, err);
    }
    return rp_fail(err, EINVAL, "unknown mount op %u", m->kind);
}

/* New mount API: the node's root is created detached and moved on top of
 * "/" (see the top of this file). MS_SLAVE first: host mount events still
 * reach us, ours never reach the host. */
static int stage_on_root(struct rp_ctx *ctx, struct rp_error *err)
{
    int fs, mnt;

    ctx->host_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ctx->host_fd < 0)
        return rp_fail(err, errno, "open the host root");
    fs = (int)syscall(RP_NR_fsopen, "tmpfs", RP_FSOPEN_CLOEXEC);
    if (fs < 0)
        return rp_fail(err, errno, "create the new root tmpfs");
    if (syscall(RP_NR_fsconfig, fs, RP_FSCONFIG_SET_STRING, "source", "tmpfs", 0) < 0 ||
        syscall(RP_NR_fsconfig, fs, RP_FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
        syscall(RP_NR_fsconfig, fs, RP_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        int e = errno;
        close(fs);
        return rp_fail(err, e, "create the new root tmpfs%s", mount_hint(e));
    }
    mnt = (int)syscall(RP_NR_fsmount, fs, RP_FSMOUNT_CLOEXEC, RP_MOUNT_ATTR_NOSUID | RP_MOUNT_ATTR_NODEV);
    close(fs);
    if (mnt < 0)
        return rp_fail(err, errno, "mount the new root tmpfs%s", mount_hint(errno));
    if (syscall(RP_NR_move_mount, mnt, "", AT_FDCWD, "/", RP_MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        int e = errno;
        close(mnt);
        return rp_fail(err, e, "attach the new root tmpfs%s", mount_hint(e));
    }
    ctx->root_fd = mnt;
    ctx->stage_fd = mnt;
    ctx->proc_fds = "/proc/self/fd";
    return 0;
}

/* Fallback: a private stage tmpfs pivoted to "/" with the host root at /old
 * and the node's root tmpfs at /new. */
static int stage_pivot(struct rp_ctx *ctx, struct rp_error *err)
{
    const char *dir = NULL;

    for (size_t i = 0; i < sizeof(stage_dirs) / sizeof(stage_dirs[0]) && !dir; i++) {
        if (mount("tmpfs", stage_dirs[i], "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=16m") == 0)
            dir = stage_dirs[i];
        else if (errno != ENOENT && errno != ENOTDIR)
            return rp_fail_path(err, errno, stage_dirs[i], "mount the stage tmpfs on %s%s", stage_dirs[i],
                                mount_hint(errno));
    }
    if (!dir)
        return rp_fail(err, ENOENT, "no directory to mount the stage on");
    if (chdir(dir) < 0 || mkdir("old", 0700) < 0 || mkdir("new", 0755) < 0)
        return rp_fail_path(err, errno, dir, "prepare the stage in %s", dir);
    if (syscall(SYS_pivot_root, ".", "old") < 0) {
        err->step = RP_STEP_PIVOT;
        return rp_fail_path(err, errno, dir, "pivot_root to the stage %s%s", dir,
                            errno == EINVAL ? " (the stage is not a mount point, or / is shared)" : "");
    }
    if (chdir("/") < 0)
        return rp_fail(err, errno, "chdir to the stage");
    if (mount("tmpfs", "/new", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
        return rp_fail(err, errno, "mount the new root tmpfs%s", mount_hint(errno));
    ctx->host_fd = open("/old", O_PATH | O_DIRECTORY | O_CLOEXEC);
    ctx->root_fd = open("/new", O_PATH | O_DIRECTORY | O_CLOEXEC);
    ctx->stage_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ctx->host_fd < 0 || ctx->root_fd < 0 || ctx->stage_fd < 0)
        return rp_fail(err, errno, "open the stage");
    ctx->proc_fds = "/old/proc/self/fd";
    return 0;
}

static int stage(struct rp_ctx *ctx, struct rp_error *err)
{
    struct statfs sfs;

    if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return rp_fail(err, errno, "make / a slave mount");
    if ((ctx->features & RP_FEAT_MOUNT_API) ? stage_on_root(ctx, err) < 0 : stage_pivot(ctx, err) < 0)
        return -1;
    /* every mount goes through proc's fd links: it must be the real procfs */
    if (statfs(ctx->proc_fds, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC)
        return rp_fail_path(err, errno ? errno : ENOENT, "/proc", "the host has no procfs on /proc");
    return 0;
}

int rp_mount_apply(struct rp_ctx *ctx, struct rp_error *err)
{
    err->step = RP_STEP_MOUNT;
    ctx->caller_umask = umask(0); /* modes in the plan are exact */
    if (stage(ctx, err) < 0)
        return -1;
    for (uint32_t i = 0; i < ctx->plan->nmounts; i++)
        if (apply_op(ctx, &ctx->plan->mounts[i], i, err) < 0)
            return -1;
    if (ctx->bind_op)
        close(ctx->bind_tree);
    ctx->bind_op = NULL;
    if (ctx->beneath_dir)
        close(ctx->beneath_fd);
    ctx->beneath_dir = NULL;
    return 0;
}

/* pivot_root(".", ".") stacks the old root (the stage, or the host's root)
 * on top of the new root; detaching it takes everything of the host along. */
int rp_pivot(struct rp_ctx *ctx, struct rp_error *err)
{
    struct stat want, got;

    err->step = RP_STEP_PIVOT;
    if (fstat(ctx->root_fd, &want) < 0 || fchdir(ctx->root_fd) < 0)
        return rp_fail(err, errno, "enter the new root");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return rp_fail(err, errno, "pivot_root into the new root%s",
                       errno == EINVAL ? " (the new root is not a mount point, or its parent is shared)" : "");
    if (umount2(".", MNT_DETACH) < 0)
        return rp_fail(err, errno, "detach the old root");
    if (chdir("/") < 0 || stat("/", &got) < 0)
        return rp_fail(err, errno, "chdir to the new root");
    if (got.st_dev != want.st_dev || got.st_ino != want.st_ino)
        return rp_fail(err, EXDEV, "after pivot_root, / is not the new root");
    if (ctx->stage_fd != ctx->root_fd)
        close(ctx->stage_fd);
    close(ctx->root_fd);
    close(ctx->host_fd);
    if (ctx->parent_fd >= 0)
        close(ctx->parent_fd);
    ctx->root_fd = ctx->host_fd = ctx->parent_fd = ctx->stage_fd = -1;
    return 0;
}
