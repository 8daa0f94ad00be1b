/* redpak C core: public interface (mirrored in src/redpak/_core.pxd). */
#ifndef REDPAK_H
#define REDPAK_H

#define RP_VERSION "3.0.0"

const char *rp_version(void);

#endif
