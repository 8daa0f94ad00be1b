/* SMACK label of the program. Not implemented yet: an empty section applies
 * nothing, a filled one is refused (never run unlabelled). */
#define _GNU_SOURCE
#include <errno.h>

#include "internal.h"

int rp_smack_apply(const struct rp_plan *plan, struct rp_error *err)
{
    if (!plan->nsmack)
        return 0;
    err->step = RP_STEP_SMACK;
    return rp_fail(err, ENOSYS, "SMACK labels are not supported by this redpak core");
}
