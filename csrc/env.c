/* The program's environment (built by the parent, before clone), execfd
 * commands run by the launcher, and the PATH lookup done after pivot. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define EXECFD_MAX (16u << 20)
#define DEFAULT_PATH "/bin:/usr/bin"

static const char *lookup(char *const *env, const char *name)
{
    size_t n = strlen(name);

    for (; env && *env; env++)
        if (!strncmp(*env, name, n) && (*env)[n] == '=')
            return *env + n + 1;
    return NULL;
}

static void remove_all(char **env, size_t *n, const char *name)
{
    size_t len = strlen(name), k = 0;

    for (size_t i = 0; i < *n; i++)
        if (strncmp(env[i], name, len) || env[i][len] != '=')
            env[k++] = env[i];
    *n = k;
}

static char *entry(const char *name, const char *value, size_t vlen)
{
    size_t nlen = strlen(name);
    char *s = malloc(nlen + vlen + 2);

    if (!s)
        return NULL;
    memcpy(s, name, nlen);
    s[nlen] = '=';
    memcpy(s + nlen + 1, value, vlen);
    s[nlen + 1 + vlen] = '\0';
    return s;
}

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int read_output(int fd, pid_t pid, unsigned timeout_ms, char **out, size_t *len, struct rp_error *err)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    long deadline = timeout_ms ? now_ms() + timeout_ms : 0;

    if (!buf)
        return rp_fail(err, ENOMEM, "execfd output");
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int wait = deadline ? (int)(deadline - now_ms()) : -1;
        ssize_t r;

        if (deadline && wait <= 0) {
            kill(pid, SIGKILL);
            free(buf);
            return rp_fail(err, ETIMEDOUT, "execfd command still running after %u ms", timeout_ms);
        }
        if (poll(&p, 1, wait) < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return rp_fail(err, errno, "wait for execfd output");
        }
        if (!p.revents)
            continue;
        if (n == cap) {
            char *nb = cap < EXECFD_MAX ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                kill(pid, SIGKILL);
                free(buf);
                return rp_fail(err, EFBIG, "execfd output over %u bytes", EXECFD_MAX);
            }
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return rp_fail(err, errno, "read execfd output");
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Runs /bin/sh -c cmd in the launcher, stdin from /dev/null, signals reset;
 * a non-zero exit is an error (fail closed). Caller frees *out. */
int rp_execfd_run(const char *cmd, char *const envp[], unsigned timeout_ms, char **out, size_t *len,
                  struct rp_error *err)
{
    char *const argv[] = {"sh", "-c", (char *)cmd, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    int pfd[2], status, r;
    pid_t pid;

    err->step = RP_STEP_EXECFD;
    *out = NULL;
    *len = 0;
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return rp_fail(err, errno, "pipe for execfd command '%s'", cmd);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    r = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pfd[1]);
    if (r) {
        close(pfd[0]);
        return rp_fail_path(err, r, "/bin/sh", "run execfd command '%s'", cmd);
    }
    r = read_output(pfd[0], pid, timeout_ms, out, len, err);
    close(pfd[0]);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return rp_fail(err, errno, "wait for execfd command '%s'", cmd);
    if (r < 0)
        return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        free(*out);
        *out = NULL;
        return rp_fail(err, 0, "execfd command '%s' failed (%s %d)", cmd,
                       WIFEXITED(status) ? "exit status" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    return 0;
}

static int apply_op(struct rp_ctx *ctx, const struct rp_env *e, char **env, size_t *n, char **owned,
                    size_t *nowned, struct rp_error *err)
{
    const char *name = rp_plan_str(ctx->plan, e->name);
    const char *value = rp_plan_str(ctx->plan, e->value);
    size_t vlen = strlen(value);
    char *out = NULL, *s;

    remove_all(env, n, name);
    switch (e->op) {
    case RP_ENV_UNSET:
        return 0;
    case RP_ENV_INHERIT:
        value = lookup(ctx->caller_env, name);
        value = value ? value : "";
        vlen = strlen(value);
        break;
    case RP_ENV_EXECFD:
        if (rp_execfd_run(value, ctx->caller_env, ctx->plan->proc->execfd_timeout_ms, &out, &vlen, err) < 0) {
            char why[sizeof(err->msg)];
            int e = err->errnum;
            memcpy(why, err->msg, sizeof(why));
            why[sizeof(why) - 1] = '\0';
            rp_fail(err, 0, "environment variable %s: %s", name, why);
            err->errnum = e;
            return -1;
        }
        while (vlen && out[vlen - 1] == '\n') /* like $(command) */
            vlen--;
        if (memchr(out, '\0', vlen)) {
            free(out);
            return rp_fail(err, EINVAL, "environment variable %s: command output holds a NUL byte", name);
        }
        value = out;
        break;
    default:
        break;
    }
    s = entry(name, value, vlen);
    free(out);
    if (!s)
        return rp_fail(err, ENOMEM, "environment variable %s", name);
    owned[(*nowned)++] = s;
    env[(*n)++] = s;
    return 0;
}

/* Final environment: empty or the caller's, then the plan's ops in order. */
int rp_env_build(struct rp_ctx *ctx, struct rp_error *err)
{
    const struct rp_plan *plan = ctx->plan;
    size_t ncaller = 0, nadd = 0, n = 0, nowned = 0;
    char **env, **owned;
    const char *path;

    err->step = RP_STEP_ENV;
    if (plan->proc->flags & RP_PROC_INHERIT_ENV)
        while (ctx->caller_env && ctx->caller_env[ncaller])
            ncaller++;
    while (ctx->env_add && ctx->env_add[nadd])
        nadd++;
    env = calloc(ncaller + plan->nenv + nadd + 1, sizeof(*env));
    owned = calloc(plan->nenv + 1, sizeof(*owned));
    ctx->envp = env;
    ctx->env_owned = owned;
    if (!env || !owned)
        return rp_fail(err, ENOMEM, "environment");
    for (; n < ncaller; n++)
        env[n] = ctx->caller_env[n];
    for (uint32_t i = 0; i < plan->nenv; i++) {
        int r = apply_op(ctx, &plan->env[i], env, &n, owned, &nowned, err);
        if (r < 0) {
            err->step = RP_STEP_ENV;
            return -1;
        }
    }
    err->step = RP_STEP_ENV;
    for (size_t i = 0; i < nadd; i++) { /* the launch's additions win */
        const char *eq = strchr(ctx->env_add[i], '=');
        char name[256];

        if (!eq || eq == ctx->env_add[i] || (size_t)(eq - ctx->env_add[i]) >= sizeof(name))
            return rp_fail(err, EINVAL, "environment addition '%.64s' is not NAME=value", ctx->env_add[i]);
        memcpy(name, ctx->env_add[i], (size_t)(eq - ctx->env_add[i]));
        name[eq - ctx->env_add[i]] = '\0';
        remove_all(env, &n, name);
        env[n++] = ctx->env_add[i];
    }
    env[n] = NULL;
    path = lookup(env, "PATH");
    ctx->path = path ? path : DEFAULT_PATH;
    return 0;
}

void rp_env_free(struct rp_ctx *ctx)
{
    for (char **p = ctx->env_owned; p && *p; p++)
        free(*p);
    free(ctx->env_owned);
    free(ctx->envp);
    ctx->env_owned = ctx->envp = NULL;
}

/* execvpe() without its allocations and its /bin/sh fallback: the program
 * is looked up in the node's PATH, inside the new root. Returns only on
 * failure: EACCES if a candidate was not executable, else ENOENT. */
int rp_exec(const struct rp_ctx *ctx, struct rp_error *err)
{
    const char *prog = ctx->argv[0];
    size_t plen = strlen(prog);
    int eacces = 0;
    char buf[PATH_MAX];

    err->step = RP_STEP_EXEC;
    if (strchr(prog, '/')) {
        execve(prog, ctx->argv, ctx->envp);
        return rp_fail_path(err, errno, prog, "exec %s", prog);
    }
    for (const char *p = ctx->path;;) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);

        if (dlen + plen + 2 <= sizeof(buf)) {
            memcpy(buf, dlen ? p : ".", dlen ? dlen : 1);
            dlen = dlen ? dlen : 1;
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, prog, plen + 1);
            execve(buf, ctx->argv, ctx->envp);
            switch (errno) {
            case EACCES:
                eacces = 1;
                break;
            case ENOENT: case ENOTDIR: case ELOOP: case ENAMETOOLONG: case ESTALE: case ENODEV:
                break;
            default:
                return rp_fail_path(err, errno, buf, "exec %s", buf);
            }
        }
        if (!*end)
            break;
        p = end + 1;
    }
    return rp_fail_path(err, eacces ? EACCES : ENOENT, prog, "exec %s (PATH=%s)", prog, ctx->path);
}
