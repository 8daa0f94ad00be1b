/* seccomp filters of the program, installed last before exec. The programs
 * are classic BPF compiled with the plan (controls.py): nothing is built or
 * decided here, the kernel verifies them when they are loaded. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define MAX_INSNS 4096 /* BPF_MAXINSNS */

/* Needs no_new_privs (set by rp_caps_drop) unless CAP_SYS_ADMIN is kept. */
int rp_seccomp_apply(const struct rp_plan *plan, struct rp_error *err)
{
    err->step = RP_STEP_SECCOMP;
    for (uint32_t i = 0; i < plan->nseccomp; i++) {
        struct rp_blob b = plan->seccomp[i].program;
        struct sock_fprog prog = {
            .len = (unsigned short)(b.length / sizeof(struct sock_filter)),
            /* the kernel copies it: the blob's alignment does not matter */
            .filter = (struct sock_filter *)(uintptr_t)rp_plan_blob(plan, b),
        };

        if (b.length / sizeof(struct sock_filter) > MAX_INSNS)
            return rp_fail(err, E2BIG, "seccomp program %u has %u instructions (at most %d)", i,
                           b.length / (unsigned)sizeof(struct sock_filter), MAX_INSNS);
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
            return rp_fail(err, errno, "install seccomp program %u (%u instructions)%s", i, (unsigned)prog.len,
                           errno == EINVAL ? " (the kernel rejected the filter)"
                           : errno == EACCES ? " (no_new_privs is not set)" : "");
    }
    return 0;
}
