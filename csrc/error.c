/* Error reporting of the C core: rp_fail(), step names, and a small
 * async-signal-safe formatter (the child may not use stdio after clone). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "redpak.h"

static const char *const step_names[RP_STEP_COUNT] = {
    [RP_STEP_NONE] = "none",         [RP_STEP_PLAN] = "plan",
    [RP_STEP_DEPS] = "deps",         [RP_STEP_SPAWN] = "spawn",
    [RP_STEP_EXECFD] = "execfd",     [RP_STEP_ENV] = "env",
    [RP_STEP_CGROUP] = "cgroup",     [RP_STEP_USERNS] = "userns",
    [RP_STEP_SYNC] = "sync",         [RP_STEP_PARENT] = "die-with-parent",
    [RP_STEP_NS_JOIN] = "ns-join",   [RP_STEP_NS_NEW] = "ns-new",
    [RP_STEP_MOUNT] = "mount",       [RP_STEP_LOCK] = "lock",
    [RP_STEP_PIVOT] = "pivot",       [RP_STEP_HOSTNAME] = "hostname",
    [RP_STEP_SESSION] = "session",   [RP_STEP_SMACK] = "smack",
    [RP_STEP_IDENTITY] = "identity", [RP_STEP_CAPS] = "caps",
    [RP_STEP_LANDLOCK] = "landlock", [RP_STEP_SECCOMP] = "seccomp",
    [RP_STEP_CHDIR] = "chdir",       [RP_STEP_FDS] = "fds",
    [RP_STEP_EXEC] = "exec",         [RP_STEP_INIT] = "init",
    [RP_STEP_WAIT] = "wait",
};

const char *rp_step_name(int step)
{
    if (step < 0 || step >= RP_STEP_COUNT || !step_names[step])
        return "unknown";
    return step_names[step];
}

const char *rp_version(void)
{
    return RP_VERSION;
}

struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len++] = c;
}

static void puts_(struct out *o, const char *s)
{
    if (!s)
        s = "(null)";
    while (*s)
        put(o, *s++);
}

static void putnum(struct out *o, unsigned long long v, unsigned base, int neg)
{
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (neg)
        put(o, '-');
    while (n)
        put(o, tmp[--n]);
}

static void vformat(struct out *o, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        int lng = 0, alt = 0;

        if (*fmt != '%') {
            put(o, *fmt);
            continue;
        }
        fmt++;
        if (*fmt == '#')
            alt = 1, fmt++;
        while (*fmt == 'l')
            lng++, fmt++;
        switch (*fmt) {
        case 's':
            puts_(o, va_arg(ap, const char *));
            break;
        case 'c':
            put(o, (char)va_arg(ap, int));
            break;
        case 'd': {
            long long v = lng == 0 ? va_arg(ap, int) : lng == 1 ? va_arg(ap, long) : va_arg(ap, long long);
            putnum(o, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v, 10, v < 0);
            break;
        }
        case 'u':
        case 'x':
        case 'o': {
            unsigned long long v = lng == 0 ? va_arg(ap, unsigned)
                                   : lng == 1 ? va_arg(ap, unsigned long)
                                              : va_arg(ap, unsigned long long);
            if (alt && *fmt != 'u')
                puts_(o, *fmt == 'x' ? "0x" : "0");
            putnum(o, v, *fmt == 'u' ? 10 : *fmt == 'x' ? 16 : 8, 0);
            break;
        }
        case '%':
            put(o, '%');
            break;
        case '\0':
            return;
        default:
            put(o, '?');
        }
    }
}

size_t rp_format(char *buf, size_t size, const char *fmt, ...)
{
    struct out o = {buf, size, 0};
    va_list ap;

    va_start(ap, fmt);
    vformat(&o, fmt, ap);
    va_end(ap);
    if (size)
        buf[o.len] = '\0';
    return o.len;
}

/* strerror() may translate (malloc, locks): use the static description table. */
static const char *errtext(int errnum)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
    const char *s = strerrordesc_np(errnum);
    return s ? s : "Unknown error";
#else
    return strerror(errnum);
#endif
}

static int vfail(struct rp_error *err, int errnum, const char *path, const char *fmt, va_list ap)
{
    struct out o = {err->msg, sizeof(err->msg), 0};

    err->errnum = errnum;
    vformat(&o, fmt, ap);
    if (errnum) {
        puts_(&o, ": ");
        puts_(&o, errtext(errnum));
    }
    err->msg[o.len] = '\0';
    if (path) {
        size_t plen = strlen(path);
        /* Keep the path only if it fits whole: a cut path would mislead. */
        if (o.len + 1 + plen + 1 <= sizeof(err->msg))
            memcpy(err->msg + o.len + 1, path, plen + 1);
        else
            err->msg[o.len + 1 < sizeof(err->msg) ? o.len + 1 : o.len] = '\0';
    } else if (o.len + 1 < sizeof(err->msg)) {
        err->msg[o.len + 1] = '\0';
    }
    return -1;
}

int rp_fail(struct rp_error *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = vfail(err, errnum, NULL, fmt, ap);
    va_end(ap);
    return r;
}

int rp_fail_path(struct rp_error *err, int errnum, const char *path, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = vfail(err, errnum, path, fmt, ap);
    va_end(ap);
    return r;
}

const char *rp_error_path(const struct rp_error *err)
{
    size_t len = strnlen(err->msg, sizeof(err->msg));

    if (len + 1 >= sizeof(err->msg))
        return "";
    return err->msg + len + 1;
}
