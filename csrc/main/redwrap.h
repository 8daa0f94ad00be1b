/* The native redwrap executable (csrc/main/): its command line, shared by args.c
 * and redwrap.c. The usage text comes from the generated redwrap_build.h. */
#ifndef REDPAK_REDWRAP_H
#define REDPAK_REDWRAP_H

#include <stddef.h>

/* Parsed like src/redpak/cli/redwrap.py parse_args(); strings point into argv. */
struct rp_args {
    const char *redpath;
    const char *user, *group, *smack;   /* NULL when not given */
    const char *bwrap;                  /* redpak 2.x --bwrap PATH: no effect */
    int admin, strict, force, dump, dump_only;
    int unsafe;                         /* redpak 2.x --unsafe: no effect */
    int verbose;
    char **program;                     /* the rest of argv, NULL-terminated */
    int nprogram;
};

#define RP_ARGS_OK 0
#define RP_ARGS_HELP 1    /* -h/--help: print the usage on stdout, exit 0 */
#define RP_ARGS_VERSION 2 /* --version: print the version on stdout, exit 0 */
#define RP_ARGS_ERROR (-1) /* msg holds the usage error (without "redwrap: ") */

/* argv: the arguments after the command name (argv[argc] must be NULL). */
int rp_args_parse(int argc, char **argv, struct rp_args *args, char *msg, size_t size);

/* The notice for the redpak 2.x options without effect (--unsafe, --bwrap), as
 * no_effect_notice() in redwrap.py, with "redwrap: " and a newline; 0 if none given. */
int rp_args_notice(const struct rp_args *args, char *msg, size_t size);

#endif
