/* seccomp filter of the program, installed last before exec. Not implemented
 * yet: an empty section applies nothing, a filled one is refused. */
#define _GNU_SOURCE
#include <errno.h>

#include "internal.h"

int rp_seccomp_apply(const struct rp_plan *plan, struct rp_error *err)
{
    if (!plan->nseccomp)
        return 0;
    err->step = RP_STEP_SECCOMP;
    return rp_fail(err, ENOSYS, "seccomp filters are not supported by this redpak core");
}
