/* cgroup placement of the node (parent side, before the child is released).
 * Not implemented yet: an empty section applies nothing, a filled one is refused. */
#define _GNU_SOURCE
#include <errno.h>

#include "internal.h"

int rp_cgroup_apply(const struct rp_plan *plan, pid_t pid, struct rp_error *err)
{
    (void)pid;
    if (!plan->ncgroup)
        return 0;
    err->step = RP_STEP_CGROUP;
    return rp_fail(err, ENOSYS, "cgroup ops are not supported by this redpak core");
}
