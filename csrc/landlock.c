/* Landlock ruleset of the program. Not implemented yet: an empty section
 * applies nothing, a filled one is refused. */
#define _GNU_SOURCE
#include <errno.h>

#include "internal.h"

int rp_landlock_apply(const struct rp_plan *plan, struct rp_error *err)
{
    if (!plan->nlandlock)
        return 0;
    err->step = RP_STEP_LANDLOCK;
    return rp_fail(err, ENOSYS, "Landlock rules are not supported by this redpak core");
}
