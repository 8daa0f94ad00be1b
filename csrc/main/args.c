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

/* The option -C (a single letter). */
static const struct option *letter(char c, int kind)
{
    const char name[3] = {'-', c, 0};

    return find(name, 2, kind);
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

#define SEE_HELP "redwrap --help lists them; put the program after '--' if it starts with '-'"

/* The bytes of the UTF-8 character at s (at least 1), so that an unknown letter is named
 * whole, as Python names the character. */
static size_t char_len(const char *s)
{
    size_t n = 1;

    if (((unsigned char)s[0] & 0xc0) == 0xc0)
        while (((unsigned char)s[n] & 0xc0) == 0x80)
            n++;
    return n;
}

/* One argument of single-letter options, bundled as getopt does (-av, -vvU bob, -aUbob):
 * flags one after the other; a letter taking a value takes the rest of the argument, or
 * the next one. *i: the index of the last argument used. As _parse_bundle() in redwrap.py. */
static int parse_bundle(int argc, char **argv, int *i, struct rp_args *args, char *msg, size_t size)
{
    const char *arg = argv[*i];
    const struct option *o;

    for (const char *p = arg + 1; *p; p++) {
        size_t n;

        if (*p == 'h')
            return RP_ARGS_HELP;
        if (*p == 'v') {
            args->verbose = args->verbose < INT_MAX ? args->verbose + 1 : INT_MAX;
        } else if ((o = letter(*p, FLAG))) {
            *(int *)((char *)args + o->field) = 1;
        } else if ((o = letter(*p, VALUE))) {
            if (p[1]) {
                set_value(args, o, p + 1);
            } else {
                if (*i + 1 >= argc) {
                    snprintf(msg, size, "-%c needs a value", *p);
                    return RP_ARGS_ERROR;
                }
                set_value(args, o, argv[++*i]);
            }
            return RP_ARGS_OK;
        } else if (*p == '=' && p > arg + 1) {
            snprintf(msg, size, "%.*s takes no value (in '%s'; a verbosity level is written --verbose=N)",
                     (int)(p - arg), arg, arg);
            return RP_ARGS_ERROR;
        } else {
            n = char_len(p);
            if (p == arg + 1 && !p[n])
                return usage_error(msg, size, "unknown option '%s' (" SEE_HELP ")", arg);
            snprintf(msg, size, "unknown option letter '%.*s' in '%s' (" SEE_HELP ")", (int)n, p, arg);
            return RP_ARGS_ERROR;
        }
    }
    return RP_ARGS_OK;
}

int rp_args_parse(int argc, char **argv, struct rp_args *args, char *msg, size_t size)
{
    int i, r;

    memset(args, 0, sizeof(*args));
    for (i = 0; i < argc; i++) {
        const char *arg = argv[i], *eq;
        size_t len;
        const struct option *o;

        if (!strcmp(arg, "--")) {
            i++;
            break;
        }
        if (arg[0] != '-' || !strcmp(arg, "-"))
            break;
        if (arg[1] != '-') {
            if ((r = parse_bundle(argc, argv, &i, args, msg, size)) != RP_ARGS_OK)
                return r;
            continue;
        }
        if (!strcmp(arg, "--help"))
            return RP_ARGS_HELP;
        if (!strcmp(arg, "--version"))
            return RP_ARGS_VERSION;
        eq = strchr(arg, '=');
        len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (len == 9 && !strncmp(arg, "--verbose", 9)) {
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
        } else {
            return usage_error(msg, size, "unknown option '%s' (" SEE_HELP ")", arg);
        }
    }
    args->program = argv + (i < argc ? i : argc);
    args->nprogram = i < argc ? argc - i : 0;
    if (!args->redpath || !*args->redpath)
        return usage_error(msg, size, "%s", "--redpath NODE is required");
    if (!args->nprogram && !args->dump_only)
        return usage_error(msg, size, "%s", "no program given (redwrap --redpath NODE -- PROGRAM [ARGS])");
    if (args->nprogram && !args->program[0][0])
        return usage_error(msg, size, "%s", "the program name is empty (redwrap --redpath NODE -- PROGRAM [ARGS])");
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
