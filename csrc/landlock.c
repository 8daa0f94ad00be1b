/* Landlock ruleset of the program: file access limited to the rules of the
 * plan (the node's exports, read-only where they are), enforced by the
 * kernel for the program and everything it starts. Runs in the program's
 * process after the pivot, so rule paths are the node's own. The ABI is
 * probed here: rights the kernel does not know are neither handled nor
 * granted (they stay as without Landlock). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* Same numbers on every architecture (the generic table); redeclared so
 * that older kernel headers build. */
#define RP_NR_landlock_create_ruleset 444
#define RP_NR_landlock_add_rule       445
#define RP_NR_landlock_restrict_self  446
#define RP_LANDLOCK_CREATE_RULESET_VERSION 1u
#define RP_LANDLOCK_RULE_PATH_BENEATH 1

/* LANDLOCK_ACCESS_FS_*: EXECUTE (bit 0) ... MAKE_SYM (bit 12) since ABI 1,
 * REFER (13) ABI 2, TRUNCATE (14) ABI 3, IOCTL_DEV (15) ABI 5. */
#define LL_EXECUTE    (1ull << 0)
#define LL_WRITE_FILE (1ull << 1)
#define LL_READ_FILE  (1ull << 2)
#define LL_TRUNCATE   (1ull << 14)
#define LL_IOCTL_DEV  (1ull << 15)
/* the only rights a rule on a non-directory may hold */
#define LL_FILE_RIGHTS (LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV)

struct rp_ll_ruleset_attr {
    uint64_t handled_access_fs;
};

struct rp_ll_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

static uint64_t handled_for(long abi)
{
    if (abi >= 5)
        return (1ull << 16) - 1;
    if (abi >= 3)
        return (1ull << 15) - 1;
    if (abi == 2)
        return (1ull << 14) - 1;
    return (1ull << 13) - 1;
}

static int add_rule(const struct rp_plan *plan, const struct rp_landlock_rule *r, int ruleset, uint64_t handled,
                    struct rp_error *err)
{
    const char *path = rp_plan_str(plan, r->path);
    struct rp_ll_path_beneath pb;
    struct stat st;
    int fd;

    if (r->flags & ~RP_LANDLOCK_FLAGS_ALL)
        return rp_fail_path(err, EINVAL, path, "landlock rule %s: unknown flags %#x", path, r->flags);
    fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && (r->flags & RP_LANDLOCK_OPTIONAL))
            return 0;
        /* a path the program cannot reach needs no grant: denial is the default */
        if (errno == EACCES)
            return 0;
        return rp_fail_path(err, errno, path, "landlock rule: open %s", path);
    }
    pb.parent_fd = fd;
    pb.allowed_access = r->access & handled;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return rp_fail_path(err, errno, path, "landlock rule: stat %s", path);
    }
    if (!S_ISDIR(st.st_mode))
        pb.allowed_access &= LL_FILE_RIGHTS;
    if (pb.allowed_access &&
        syscall(RP_NR_landlock_add_rule, ruleset, RP_LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0) {
        int e = errno;
        close(fd);
        return rp_fail_path(err, e, path, "landlock rule for %s (access %#llx)", path,
                            (unsigned long long)pb.allowed_access);
    }
    close(fd);
    return 0;
}

int rp_landlock_apply(const struct rp_plan *plan, struct rp_error *err)
{
    struct rp_ll_ruleset_attr attr;
    long abi;
    int ruleset;

    if (!plan->nlandlock)
        return 0;
    err->step = RP_STEP_LANDLOCK;
    abi = syscall(RP_NR_landlock_create_ruleset, NULL, 0, RP_LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 0) {
        if (errno == ENOSYS)
            return rp_fail(err, errno, "landlock: this kernel has no Landlock (needs Linux 5.13 built with"
                                       " CONFIG_SECURITY_LANDLOCK): remove 'landlock: true' to launch without it");
        if (errno == EOPNOTSUPP)
            return rp_fail(err, errno, "landlock: Landlock is disabled at boot (add landlock to the kernel's"
                                       " lsm= parameter) or remove 'landlock: true' to launch without it");
        return rp_fail(err, errno, "landlock: probe the ABI version");
    }
    attr.handled_access_fs = handled_for(abi);
    ruleset = (int)syscall(RP_NR_landlock_create_ruleset, &attr, sizeof(attr), 0);
    if (ruleset < 0)
        return rp_fail(err, errno, "landlock: create a ruleset (ABI %ld)", abi);
    for (uint32_t i = 0; i < plan->nlandlock; i++)
        if (add_rule(plan, &plan->landlock[i], ruleset, attr.handled_access_fs, err) < 0) {
            close(ruleset);
            return -1;
        }
    /* needs no_new_privs (rp_caps_drop) unless CAP_SYS_ADMIN is kept */
    if (syscall(RP_NR_landlock_restrict_self, ruleset, 0) < 0) {
        int e = errno;
        close(ruleset);
        return rp_fail(err, e, "landlock: restrict the program");
    }
    close(ruleset);
    return 0;
}
