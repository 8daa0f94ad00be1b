/* Error reporting helpers of the C core. */
#include "redpak.h"

const char *rp_version(void)
{
    return RP_VERSION;
}
