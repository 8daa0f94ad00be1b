/* The native redwrap (also installed as redpak-run): runs a program in a node from the
 * node's plan cached in the caller's plan cache (never inside a node), without Python. Anything it cannot do from the cache
 * (no cache, a stale or corrupt one, an option that needs policy) goes to the cold path:
 * it execs `<python> -P -m redpak.cli.redwrap <the same arguments>`, which compiles the
 * plan, caches it and runs the program. The cache is only a shortcut, never trusted
 * beyond what rp_plan_open() and rp_plan_check_deps() prove. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "redpak.h"
#include "redwrap.h"
#include "redwrap_build.h"

#define EXIT_REDPAK 125
#define EXIT_NOEXEC 126
#define EXIT_NOTFOUND 127

/* The caller's plan cache, as cache_dir()/cache_path() in src/redpak/cli/redwrap.py:
 * never inside a node, where an admin sandbox could plant a plan. */
static int cache_dir(char *out, size_t size)
{
    const char *env = getenv("REDPAK_CACHE_DIR"), *base;

    if (env && *env)
        return snprintf(out, size, "%s", env) < (int)size ? 0 : -1;
    if (getuid() == 0)
        return snprintf(out, size, "/var/cache/redpak") < (int)size ? 0 : -1;
    base = getenv("XDG_CACHE_HOME");
    if (base && *base == '/')
        return snprintf(out, size, "%s/redpak", base) < (int)size ? 0 : -1;
    base = getenv("HOME");
    if (base && *base == '/')
        return snprintf(out, size, "%s/.cache/redpak", base) < (int)size ? 0 : -1;
    return -1;
}
#define STATUS_FILE "/.rednode.yaml"

extern char **environ;

struct why {
    char text[PATH_MAX + 512]; /* why the cached plan was not used (or its path), for -v */
};

static int because(struct why *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int because(struct why *why, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why->text, sizeof(why->text), fmt, ap);
    va_end(ap);
    return -1;
}

/* The cold path: the Python redwrap with our original arguments. Never returns.
 * -P: `python -m` would otherwise import from the current directory first, and a
 * `redpak` directory there would run as the caller (root, often). */
static void __attribute__((noreturn)) cold_path(int argc, char **argv, int verbose, const struct why *why)
{
    const char *python = getenv("REDPAK_PYTHON");
    char **av = calloc((size_t)argc + 4, sizeof(char *));

    if (!python || !*python)
        python = RP_PYTHON;
    if (verbose)
        fprintf(stderr, "redwrap: rebuilding the plan (%s) with %s\n", why->text, python);
    if (av) {
        av[0] = (char *)python;
        av[1] = "-P";
        av[2] = "-m";
        av[3] = "redpak.cli.redwrap";
        memcpy(av + 4, argv + 1, sizeof(char *) * (size_t)(argc - 1));
        execvp(python, av);
    }
    fprintf(stderr, "redwrap: cold path: cannot run %s: %s (set REDPAK_PYTHON to a Python that has redpak)\n",
            python, strerror(errno));
    exit(EXIT_REDPAK);
}

/* os.path.normpath(os.path.abspath(path)) with one leading '/': lexical, like
 * redpak.node.normalize_path (no symlink is resolved). NULL if the cwd is unknown. */
static char *normalize_path(const char *path)
{
    char *joined, *out, *cwd = NULL;
    size_t n = 0;

    if (path[0] != '/' && !(cwd = getcwd(NULL, 0)))
        return NULL;
    if (asprintf(&joined, "%s/%s", cwd ? cwd : "", path) < 0)
        joined = NULL;
    free(cwd);
    if (!joined || !(out = malloc(strlen(joined) + 2))) {
        free(joined);
        return NULL;
    }
    for (const char *p = joined; *p;) {
        const char *end;
        size_t len;

        while (*p == '/')
            p++;
        end = strchrnul(p, '/');
        len = (size_t)(end - p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 0 && out[--n] != '/')
                ;
        } else if (len && !(len == 1 && p[0] == '.')) {
            out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p = end;
    }
    if (!n)
        out[n++] = '/';
    out[n] = '\0';
    free(joined);
    return out;
}

static int is_absent(const struct rp_file_dep *d)
{
    return d->dev == 0 && d->ino == 0 && d->size == 0 && d->mtime_ns == -1;
}

/* The cache file is shared by every path that reaches the node's directory, so check
 * that the plan's leaf is this path: its family's deepest node (a present
 * .rednode.yaml dependency) must be `node` itself. */
static int plan_leaf_is(const struct rp_plan *plan, const char *node)
{
    size_t n = strlen(node), tail = strlen(STATUS_FILE);
    int found = 0;

    for (uint32_t i = 0; i < plan->nfile_deps; i++) {
        const char *path = rp_plan_str(plan, plan->file_deps[i].path);
        size_t len = strlen(path);

        if (is_absent(&plan->file_deps[i]) || len < tail || strcmp(path + len - tail, STATUS_FILE))
            continue;
        if (len - tail == n && !strncmp(path, node, n))
            found = 1;
        else if (len - tail > n && !strncmp(path, node, n) && path[n] == '/')
            return 0;
    }
    return found;
}

/* redwrap-dnf (src/redpak/pkg/stage.py): a node of the family holding a package journal
 * is between its old and its new state. Never launched from the cache: the cold path
 * refuses it, naming the recovery command. */
#define PKG_JOURNAL "/.redpak-dnf.journal"
static int pkg_journal_pending(const struct rp_plan *plan, struct why *why)
{
    size_t tail = strlen(STATUS_FILE);

    for (uint32_t i = 0; i < plan->nfile_deps; i++) {
        const char *path = rp_plan_str(plan, plan->file_deps[i].path);
        size_t len = strlen(path);
        char journal[PATH_MAX];
        struct stat st;

        if (is_absent(&plan->file_deps[i]) || len < tail || strcmp(path + len - tail, STATUS_FILE))
            continue;
        if (snprintf(journal, sizeof(journal), "%.*s%s", (int)(len - tail), path, PKG_JOURNAL) >= (int)sizeof(journal)
            || lstat(journal, &st) == 0)
            return because(why, "a package transaction is pending (%s)", journal);
    }
    return 0;
}

static int check_owner(const char *path, const struct stat *st, struct why *why)
{
    if (st->st_uid != getuid() && st->st_uid != 0)
        return because(why, "%s is owned by uid %u, neither the caller nor root", path, (unsigned)st->st_uid);
    if (st->st_mode & (S_IWGRP | S_IWOTH))
        return because(why, "%s is writable by group or others", path);
    return 0;
}

static int read_all(int fd, unsigned char *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t r = read(fd, buf + done, len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

/* Reads and checks the cached plan of `node`; 0 with *buf (8-byte aligned, caller
 * frees) and *len, or -1 with the reason in why. */
static int load_cache(const char *node, int admin, unsigned char **buf, size_t *len, struct why *why)
{
    char dir[PATH_MAX + 16], path[PATH_MAX + 64];
    const char *name;
    struct rp_error err;
    struct rp_plan plan;
    struct stat st;
    int dfd, fd, r = -1;

    *buf = NULL;
    if (cache_dir(dir, sizeof(dir)) < 0)
        return because(why, "no plan cache for this caller (no HOME)");
    if (snprintf(path, sizeof(path), "%s/plan-%016llx-%s-%u.bin", dir,
                 (unsigned long long)rp_plan_checksum(node, strlen(node)),
                 admin ? "admin" : "normal", (unsigned)getuid()) >= (int)sizeof(path))
        return because(why, "cache path too long");
    name = path + strlen(dir) + 1;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return because(why, errno == ENOENT ? "no cached plan in %s" : "cannot open %s: %m", dir);
    if (fstat(dfd, &st) < 0) {
        because(why, "cannot stat %s: %m", dir);
        goto out_dir;
    }
    if (check_owner(dir, &st, why) < 0)
        goto out_dir;
    fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        because(why, errno == ENOENT ? "no cached plan %s" : "cannot open %s: %m", path);
        goto out_dir;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        because(why, "cached plan %s is not a regular file", path);
        goto out;
    }
    if (check_owner(path, &st, why) < 0)
        goto out;
    if (st.st_size < (off_t)sizeof(struct rp_plan_header) || st.st_size > RP_PLAN_MAX_SIZE) {
        because(why, "cached plan %s is corrupt: size %lld", path, (long long)st.st_size);
        goto out;
    }
    *len = (size_t)st.st_size;
    *buf = aligned_alloc(8, (*len + 7) & ~(size_t)7);
    if (!*buf || read_all(fd, *buf, *len) < 0) {
        because(why, "cannot read the cached plan %s", path);
        goto out;
    }
    if (rp_plan_open(&plan, *buf, *len, &err) < 0) {
        because(why, "cached plan %s is corrupt: %s", path, err.msg);
        goto out;
    }
    if (!plan_leaf_is(&plan, node)) {
        because(why, "cached plan %s was compiled for another path to this node", path);
        goto out;
    }
    if (rp_plan_check_deps(&plan, environ, &err) < 0) {
        because(why, "cached plan %s is stale: %s", path, err.msg);
        goto out;
    }
    if (pkg_journal_pending(&plan, why) < 0)
        goto out;
    snprintf(why->text, sizeof(why->text), "%s", path);
    r = 0;
out:
    close(fd);
out_dir:
    close(dfd);
    if (r < 0) {
        free(*buf);
        *buf = NULL;
    }
    return r;
}

static const char *policy_option(const struct rp_args *a)
{
    return a->user ? "-U" : a->group ? "-G" : a->smack ? "-S" : a->strict ? "-s" : a->force ? "-f"
         : a->dump ? "-d" : a->dump_only ? "-D" : NULL;
}

/* Exit status of a launch failure, as redpak.launch.exec_failure_status(). */
static int failure_status(const struct rp_error *err)
{
    if (err->step != RP_STEP_EXEC)
        return EXIT_REDPAK;
    switch (err->errnum) {
    case ENOENT:
    case ENOTDIR:
        return EXIT_NOTFOUND;
    case EACCES:
    case ENOEXEC:
    case EISDIR:
    case EPERM:
    case ELIBBAD:
    case ETXTBSY:
        return EXIT_NOEXEC;
    default:
        return EXIT_REDPAK;
    }
}

static volatile sig_atomic_t node_pid;

static void forward(int sig)
{
    int saved = errno;

    if (node_pid > 0)
        kill((pid_t)node_pid, sig);
    errno = saved;
}

/* After the node ended: report an OOM kill, remove the launch's cgroups (as
 * redpak.launch.run_plan does on the cold path). */
static void finish(const unsigned char *buf, size_t len, const struct rp_child *child, int status)
{
    struct rp_error err;
    struct rp_plan plan;
    char what[256] = "";

    if (!child->cgroup_id || rp_plan_open(&plan, buf, len, &err) < 0)
        return;
    if (rp_cgroup_oom_killed(&plan, child, what, sizeof(what)))
        fprintf(stderr, "redwrap: %s killed by the OOM killer (%s)\n",
                status == 128 + SIGKILL ? "the program was" : "a process of the node was", what);
    if (rp_cgroup_cleanup(&plan, child, &err) < 0)
        fprintf(stderr, "redwrap: warning: %s\n", err.msg);
}

/* Launches and waits, forwarding TERM INT HUP QUIT USR1 USR2 to the node (its pid 1
 * passes them to the program). They are blocked until the node's pid is known, so
 * one that arrives during setup is forwarded as soon as the program runs. A plan the
 * launcher finds stale (the caller moved to another cgroup) goes to the cold path:
 * nothing ran yet. With a pid 1 and no cgroup to remove, the program's status is
 * returned as soon as pid 1 sends it (the program was the node's last process): the
 * node's teardown (a few µs per mount) goes on without us. */
static int run(const unsigned char *buf, size_t len, const struct rp_args *args, int argc, char **argv)
{
    static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
    struct rp_launch_opts opts = {.envp = environ};
    struct rp_child child;
    struct rp_error err;
    sigset_t set, old;
    char notice[128];
    int status, r;

    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaddset(&set, forwarded[i]);
    sa.sa_mask = set;
    sigprocmask(SIG_BLOCK, &set, &old);
    r = rp_launch_early(buf, len, args->program, &opts, &child, &err);
    if (r < 0 && err.step == RP_STEP_DEPS) {
        struct why why;
        sigprocmask(SIG_SETMASK, &old, NULL);
        because(&why, "cached plan is stale: %s", err.msg);
        cold_path(argc, argv, args->verbose, &why);
    }
    /* Here, once: a stale plan above goes to the cold path, which prints its own. */
    if (rp_args_notice(args, notice, sizeof(notice)))
        fputs(notice, stderr);
    if (r < 0) {
        fprintf(stderr, "redwrap: %s: %s\n", rp_step_name(err.step), err.msg);
        return failure_status(&err);
    }
    node_pid = child.pid;
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaction(forwarded[i], &sa, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    status = rp_wait_early(&child);
    if (status >= 0)
        return status; /* no cgroup: nothing to finish */
    status = rp_wait(&child, &err);
    if (status < 0) {
        fprintf(stderr, "redwrap: %s: %s\n", rp_step_name(err.step), err.msg);
        return EXIT_REDPAK;
    }
    finish(buf, len, &child, status);
    return status;
}

int main(int argc, char **argv)
{
    struct rp_args args;
    struct why why = {""};
    struct rp_error err;
    char msg[512];
    const char *option;
    unsigned char *buf;
    size_t len = 0;
    char *node;

    if (argc < 1) { /* no argv[0]: argv + 1 would be the environment */
        fputs("redwrap: empty argument vector\n", stderr);
        return EXIT_REDPAK;
    }
    switch (rp_args_parse(argc - 1, argv + 1, &args, msg, sizeof(msg))) {
    case RP_ARGS_HELP:
        fputs(RP_REDWRAP_USAGE, stdout);
        return fflush(stdout) == 0 ? 0 : EXIT_REDPAK;
    case RP_ARGS_VERSION:
        fputs(RP_REDWRAP_VERSION, stdout);
        return fflush(stdout) == 0 ? 0 : EXIT_REDPAK;
    case RP_ARGS_ERROR:
        fprintf(stderr, "redwrap: %s\n", msg);
        return EXIT_REDPAK;
    default:
        break;
    }
    if (rp_check_descriptors(&err) < 0) { /* fds 0-2 and ulimit -n: before we take any */
        fprintf(stderr, "redwrap: spawn: %s\n", err.msg);
        return EXIT_REDPAK;
    }
    if ((option = policy_option(&args))) {
        because(&why, "option %s needs the plan compiler", option);
        cold_path(argc, argv, args.verbose, &why);
    }
    node = normalize_path(args.redpath);
    if (!node) {
        because(&why, "cannot make '%s' absolute: %m", args.redpath);
        cold_path(argc, argv, args.verbose, &why);
    }
    if (load_cache(node, args.admin, &buf, &len, &why) < 0)
        cold_path(argc, argv, args.verbose, &why);
    if (args.verbose)
        fprintf(stderr, "redwrap: using the cached plan %s\n", why.text);
    free(node);
    return run(buf, len, &args, argc, argv);
}
