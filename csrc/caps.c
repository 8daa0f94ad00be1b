/* Identity and privileges of the program: supplementary groups, uid/gid,
 * the five capability sets applied exactly, and no_new_privs (always).
 * Raw syscalls only: after a raw clone, glibc's set*id() would try to
 * synchronise threads that do not exist in the child. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

#include "internal.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* Highest capability the kernel knows: PR_CAPBSET_READ fails with EINVAL
 * past it. A binary search takes six cheap calls and needs no /proc (reading
 * /proc/sys/kernel/cap_last_cap costs several times more); 40
 * (CAP_CHECKPOINT_RESTORE) if even cap 0 reads as invalid. */
int rp_cap_last(void)
{
    static int last = -1;
    int lo = 0, hi = 63;

    if (last >= 0)
        return last;
    if (prctl(PR_CAPBSET_READ, 0, 0, 0, 0) < 0)
        return last = 40;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (prctl(PR_CAPBSET_READ, mid, 0, 0, 0) >= 0)
            lo = mid;
        else
            hi = mid - 1;
    }
    last = lo;
    return last;
}

static int capset_masks(uint64_t eff, uint64_t perm, uint64_t inh)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2] = {
        {(uint32_t)eff, (uint32_t)perm, (uint32_t)inh},
        {(uint32_t)(eff >> 32), (uint32_t)(perm >> 32), (uint32_t)(inh >> 32)},
    };

    return (int)syscall(SYS_capset, &h, d);
}

static int switch_identity(const struct rp_process *pr, struct rp_error *err)
{
    uid_t r, e, s;
    gid_t rg, eg, sg;

    err->step = RP_STEP_IDENTITY;
    if ((pr->flags & RP_PROC_DROP_GROUPS) && syscall(SYS_setgroups, 0, NULL) < 0)
        return rp_fail(err, errno, "drop supplementary groups");
    /* keep the permitted set across the uid change; capset restores the rest */
    if ((pr->flags & RP_PROC_SET_UID) && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return rp_fail(err, errno, "keep capabilities across setresuid");
    if ((pr->flags & RP_PROC_SET_GID) && syscall(SYS_setresgid, pr->gid, pr->gid, pr->gid) < 0)
        return rp_fail(err, errno, "setresgid %u", pr->gid);
    if ((pr->flags & RP_PROC_SET_UID) && syscall(SYS_setresuid, pr->uid, pr->uid, pr->uid) < 0)
        return rp_fail(err, errno, "setresuid %u", pr->uid);
    /* trust what the kernel reports, not what we asked for */
    if (syscall(SYS_getresuid, &r, &e, &s) < 0 || syscall(SYS_getresgid, &rg, &eg, &sg) < 0)
        return rp_fail(err, errno, "read back the identity");
    if ((pr->flags & RP_PROC_SET_UID) && (r != pr->uid || e != pr->uid || s != pr->uid))
        return rp_fail(err, EPERM, "uid is %u/%u/%u after setresuid %u", r, e, s, pr->uid);
    if ((pr->flags & RP_PROC_SET_GID) && (rg != pr->gid || eg != pr->gid || sg != pr->gid))
        return rp_fail(err, EPERM, "gid is %u/%u/%u after setresgid %u", rg, eg, sg, pr->gid);
    return 0;
}

/* Order: bounding set (needs CAP_SETPCAP), identity (CAP_SETUID/SETGID),
 * then the exact sets, then ambient (needs them permitted and inheritable),
 * then no_new_privs. */
int rp_caps_drop(const struct rp_ctx *ctx, struct rp_error *err)
{
    const struct rp_process *pr = ctx->plan->proc;

    err->step = RP_STEP_CAPS;
    /* Each drop replaces our credentials; a fresh user namespace starts
     * with a full bounding set, so drop first and read only when refused
     * (without CAP_SETPCAP, dropping what is already gone is fine). */
    for (int c = 0; c <= ctx->cap_last; c++) {
        if ((pr->cap_bounding & (1ULL << c)) || prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0)
            continue;
        if (errno != EPERM || prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 0)
            return rp_fail(err, errno, "drop capability %d from the bounding set", c);
    }
    if (switch_identity(pr, err) < 0)
        return -1;
    err->step = RP_STEP_CAPS;
    if (capset_masks(pr->cap_effective, pr->cap_permitted, pr->cap_inheritable) < 0)
        return rp_fail(err, errno, "set capabilities permitted %#llx effective %#llx inheritable %#llx",
                       (unsigned long long)pr->cap_permitted, (unsigned long long)pr->cap_effective,
                       (unsigned long long)pr->cap_inheritable);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return rp_fail(err, errno, "clear the ambient capabilities");
    for (int c = 0; c <= ctx->cap_last; c++)
        if ((pr->cap_ambient & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
            return rp_fail(err, errno, "raise ambient capability %d", c);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return rp_fail(err, errno, "set no_new_privs");
    return 0;
}

/* pid 1 of the node keeps no privilege once the program runs. */
int rp_caps_clear_all(struct rp_error *err)
{
    err->step = RP_STEP_INIT;
    if (capset_masks(0, 0, 0) < 0)
        return rp_fail(err, errno, "drop the capabilities of pid 1");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return rp_fail(err, errno, "set no_new_privs on pid 1");
    return 0;
}
