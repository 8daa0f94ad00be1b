/* pid 1 of a new pid namespace: forwards TERM INT HUP QUIT USR1 USR2 to the
 * program, reaps orphans, and exits with the program's status (128+N for
 * signal N; pid 1 cannot die of a signal sent from inside its namespace),
 * sent first on the early-status pipe when the launcher asked for it and
 * the program was the node's last process.
 * It keeps no capability and only the descriptors of the node's locks. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch.h"
#include "internal.h"

void rp_init_forwarded(sigset_t *set)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD};

    sigemptyset(set);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(set, sigs[i]);
}

static void close_all_but(const int *keep, int n)
{
    int lo = 0; /* close [lo, next kept fd) for each kept fd in increasing order */

    for (;;) {
        int next = -1;
        for (int i = 0; i < n; i++)
            if (keep[i] >= lo && (next < 0 || keep[i] < next))
                next = keep[i];
        if (next < 0) {
            if (syscall(RP_NR_close_range, lo, ~0U, 0) < 0)
                for (int fd = lo; fd < lo + 1024; fd++)
                    close(fd);
            return;
        }
        for (int fd = lo; fd < next; fd++)
            close(fd);
        lo = next + 1;
    }
}

static int status_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* 1 if the program was the last process of the node: every process we did
 * not reap yet is our child by now (the program's children were re-parented
 * to us before it could be reaped). Else the launcher keeps its full wait:
 * the others would outlive it until the kernel kills them in our exit. */
static int last_process(void)
{
    for (;;) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);

        if (pid < 0)
            return errno == ECHILD;
        if (pid == 0)
            return 0;
    }
}

/* In our exit the kernel releases the locks, tears the namespaces down, kills
 * the rest of the node, and only then lets the launcher's waitpid() return.
 * The early status skips that wait, so the locks go first, as in our exit:
 * the caller may launch the node again as soon as it has the status. */
static void __attribute__((noreturn)) exit_with(const struct rp_ctx *ctx, int code)
{
    if (ctx->status_fd >= 0 && last_process()) {
        for (int i = 0; i < ctx->nlocks; i++)
            close(ctx->lock_fds[i]);
        while (write(ctx->status_fd, &code, sizeof(code)) < 0 && errno == EINTR)
            ;
    }
    _exit(code);
}

void rp_init_run(struct rp_ctx *ctx, pid_t program)
{
    struct rp_error err = {0};
    sigset_t set;
    int sfd, nkeep, keep[RP_MAX_LOCKS + 2];

    rp_init_forwarded(&set); /* already blocked before the program was forked */
    sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0 || rp_caps_clear_all(&err) < 0) {
        if (sfd < 0)
            rp_fail(&err, errno, "signalfd in pid 1");
        err.step = RP_STEP_INIT;
        struct rp_msg msg = {.type = RP_MSG_ERROR, .err = err};
        send(ctx->sock_fd, &msg, sizeof(msg), MSG_NOSIGNAL);
        kill(program, SIGKILL);
        _exit(RP_EXIT_SETUP);
    }
    memcpy(keep, ctx->lock_fds, sizeof(int) * (size_t)ctx->nlocks);
    nkeep = ctx->nlocks;
    keep[nkeep++] = sfd;
    if (ctx->status_fd >= 0)
        keep[nkeep++] = ctx->status_fd;
    /* closes the status socket too: the launcher sees EOF and returns */
    close_all_but(keep, nkeep);
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof(si));

        if (n < 0 && errno == EINTR)
            continue;
        if (n != sizeof(si))
            _exit(RP_EXIT_SETUP);
        if (si.ssi_signo != SIGCHLD) {
            kill(program, (int)si.ssi_signo);
            continue;
        }
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid == program)
                exit_with(ctx, status_code(status)); /* the kernel then kills the rest of the namespace */
            if (pid <= 0)
                break;
        }
    }
}
