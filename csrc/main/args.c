/* redwrap's command line, parsed exactly as src/redpak/cli/redwrap.py parse_args()
 * does (same options, same messages): both ends of the cold path must agree on where
 * the program starts. tests/unit/test_redwrap_native_usage.py compares the two. */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "redwrap.h"

enum { FLAG, VALUE };

struct option {
    const char *name;
    int kind;
    size_t field; /* offset of an int (FLAG) or a const char * (VALUE) */
};

static const struct option options[] = {
    {"-a", FLAG, offsetof(struct rp_args, admin)},
    {"--admin", FLAG, offsetof(struct rp_args, admin)},
    {"-s", FLAG, offsetof(struct rp_args, strict)},
    {"--strict", FLAG, offsetof(struct rp_args, strict)},
    {"-f", FLAG, offsetof(struct rp_args, force)},
    {"--force", FLAG, offsetof(struct rp_args, force)},
    {"-d", FLAG, offsetof(struct rp_args, dump)},
    {"--dump", FLAG, offsetof(struct rp_args, dump)},
    {"-D", FLAG, offsetof(struct rp_args, dump_only)},
    {"--dump-only", FLAG, offsetof(struct rp_args, dump_only)},
    {"--unsafe", FLAG, offsetof(struct rp_args, unsafe)}, /* redpak 2.x, no effect */
    {"-r", VALUE, offsetof(struct rp_args, redpath)},
    {"--redpath", VALUE, offsetof(struct rp_args, redpath)},
    {"--rpath", VALUE, offsetof(struct rp_args, redpath)}, /* redpak 2.x */
    {"--rp", VALUE, offsetof(struct rp_args, redpath)},    /* redpak 2.x */
    {"-U", VALUE, offsetof(struct rp_args, user)},
    {"--user", VALUE, offsetof(struct rp_args, user)},
    {"--uid", VALUE, offsetof(struct rp_args, user)}, /* redpak 2.x */
    {"-G", VALUE, offsetof(struct rp_args, group)},
    {"--group", VALUE, offsetof(struct rp_args, group)},
    {"--gid", VALUE, offsetof(struct rp_args, group)}, /* redpak 2.x */
    {"-S", VALUE, offsetof(struct rp_args, smack)},
    {"--smack", VALUE, offsetof(struct rp_args, smack)},
    {"--bwrap", VALUE, offsetof(struct rp_args, bwrap)}, /* redpak 2.x, no effect */
};

static const struct option *find(const char *name, size_t len, int kind)
{
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (options[i].kind == kind && strlen(options[i].name) == len && !strncmp(options[i].name, name, len))
            return &options[i];
    return NULL;
}

static void set_value(struct rp_args *args, const struct option *o, const char *value)
{
    *(const char **)((char *)args + o->field) = value;
}

/* Python's `text.isascii() and text.isdigit()`. */
static int is_number(const char *text)
{
    if (!*text)
        return 0;
    for (; *text; text++)
        if (*text < '0' || *text > '9')
            return 0;
    return 1;
}

static int saturated(const char *digits)
{
    long long v = 0;

    for (; *digits; digits++) {
        v = v * 10 + (*digits - '0');
        if (v > INT_MAX)
            return INT_MAX;
    }
    return (int)v;
}

static int usage_error(char *msg, size_t size, const char *fmt, const char *arg)
{
    snprintf(msg, size, fmt, arg);
    return RP_ARGS_ERROR;
}

int rp_args_parse(int argc, char **argv, struct rp_args *args, char *msg, size_t size)
{
    int i;

    memset(args, 0, sizeof(*args));
    for (i = 0; i < argc; i++) {
        const char *arg = argv[i], *eq = NULL;
        size_t len;
        const struct option *o;

        if (!strcmp(arg, "--")) {
            i++;
            break;
        }
        if (arg[0] != '-' || !strcmp(arg, "-"))
            break;
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
            return RP_ARGS_HELP;
        if (!strncmp(arg, "--", 2))
            eq = strchr(arg, '=');
        len = eq ? (size_t)(eq - arg) : strlen(arg);
        if ((len == 2 && !strncmp(arg, "-v", 2)) || (len == 9 && !strncmp(arg, "--verbose", 9))) {
            if (eq && !is_number(eq + 1))
                return usage_error(msg, size, "--verbose: '%s' is not a number", eq + 1);
            args->verbose = eq ? saturated(eq + 1) : (args->verbose < INT_MAX ? args->verbose + 1 : INT_MAX);
        } else if (!eq && (o = find(arg, len, FLAG))) {
            *(int *)((char *)args + o->field) = 1;
        } else if ((o = find(arg, len, VALUE))) {
            if (eq) {
                set_value(args, o, eq + 1);
            } else {
                if (++i >= argc)
                    return usage_error(msg, size, "%s needs a value", arg);
                set_value(args, o, argv[i]);
            }
        } else if (strlen(arg) > 2 && arg[1] != '-' && (o = find(arg, 2, VALUE))) {
            set_value(args, o, arg + 2); /* -Ubob */
        } else {
            return usage_error(msg, size,
                               "unknown option '%s' (redwrap --help lists them; put the program after '--' if it "
                               "starts with '-')",
                               arg);
        }
    }
    args->program = argv + (i < argc ? i : argc);
    args->nprogram = i < argc ? argc - i : 0;
    if (!args->redpath || !*args->redpath)
        return usage_error(msg, size, "%s", "--redpath NODE is required");
    if (!args->nprogram && !args->dump_only)
        return usage_error(msg, size, "%s", "no program given (redwrap --redpath NODE -- PROGRAM [ARGS])");
    return RP_ARGS_OK;
}

int rp_args_notice(const struct rp_args *args, char *msg, size_t size)
{
    int both = args->unsafe && args->bwrap;

    if (!args->unsafe && !args->bwrap)
        return 0;
    snprintf(msg, size, "redwrap: %s%s%s %s no effect (accepted for redpak 2.x command lines)\n",
             args->unsafe ? "--unsafe" : "", both ? " and " : "", args->bwrap ? "--bwrap" : "", both ? "have" : "has");
    return 1;
}
