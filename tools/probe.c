/* Probe program run inside nodes by tests/privileged: executes its arguments
 * as a tiny command list and prints what it sees, one "key value" per line.
 * Built static (gcc -static) so a node needs nothing but this file.
 *   info            ids, groups, caps, no_new_privs, hostname, cwd, umask, fds, pid
 *   env             environment, one "env K=V" line each
 *   args            "arg X" for every following argument (consumes the rest)
 *   mounts          /proc/self/mountinfo
 *   write PATH      create/append: "write PATH ok" or "write PATH ERRNO_NAME"
 *   read PATH       "read PATH <content>" (first 200 bytes, newlines as \n)
 *   stat PATH       "stat PATH <type> <mode>" or errno name
 *   readlink PATH   "readlink PATH <text>"
 *   fdcontent N     "fd N <content>"
 *   flock PATH      try a non-blocking exclusive flock: "flock PATH ok|EWOULDBLOCK"
 *   sleep SECONDS   sleep (interrupted sleeps print "signal N" and go on)
 *   trap            handle TERM INT HUP QUIT USR1 USR2 by printing "signal N"
 *   orphan          fork a child that forks a grandchild sleeping 600 s, report its pid
 *   zombie          orphan a short-lived grandchild; "zombie gone" once pid 1 reaped it
 *   exit N          exit with N
 *   kill SIG        kill itself with SIG */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void status_lines(void)
{
    char line[512];
    FILE *f = fopen("/proc/self/status", "r");

    if (!f) {
        printf("status %s\n", strerrorname_np(errno));
        return;
    }
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10) || !strncmp(line, "Umask", 5) ||
            !strncmp(line, "NSpid", 5))
            printf("%s", line);
    fclose(f);
}

static void info(void)
{
    uid_t r, e, s;
    gid_t rg, eg, sg, groups[64];
    char buf[4096];
    int n;
    mode_t m;

    getresuid(&r, &e, &s);
    getresgid(&rg, &eg, &sg);
    printf("uid %u %u %u\ngid %u %u %u\n", r, e, s, rg, eg, sg);
    n = getgroups(64, groups);
    printf("groups");
    for (int i = 0; i < n; i++)
        printf(" %u", groups[i]);
    printf("\n");
    status_lines();
    printf("nnp %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    printf("dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    gethostname(buf, sizeof(buf));
    printf("hostname %s\n", buf);
    printf("cwd %s\n", getcwd(buf, sizeof(buf)) ? buf : strerrorname_np(errno));
    m = umask(0);
    umask(m);
    printf("umask %04o\n", m);
    printf("pid %d\nppid %d\nsid %d\n", getpid(), getppid(), getsid(0));
    printf("fds");
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            printf(" %d", fd);
    printf("\n");
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    printf("sigpipe %s\n", sa.sa_handler == SIG_IGN ? "ignored" : "default");
}

static void cat(const char *key, const char *path, size_t max)
{
    char buf[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, max < sizeof(buf) ? max : sizeof(buf)) : -1;

    if (n < 0) {
        printf("%s %s %s\n", key, path, strerrorname_np(errno));
    } else {
        printf("%s %s ", key, path);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n')
                printf("\\n");
            else
                putchar(buf[i]);
        printf("\n");
    }
    if (fd >= 0)
        close(fd);
}

static void on_signal(int sig)
{
    char msg[32];
    int n = snprintf(msg, sizeof(msg), "signal %d\n", sig);
    write(1, msg, (size_t)n);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *c = argv[i], *a = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(c, "info")) {
            info();
        } else if (!strcmp(c, "env")) {
            for (char **e = environ; *e; e++)
                printf("env %s\n", *e);
        } else if (!strcmp(c, "args")) {
            for (i++; i < argc; i++)
                printf("arg %s\n", argv[i]);
        } else if (!strcmp(c, "mounts")) {
            FILE *f = fopen("/proc/self/mountinfo", "r");
            char line[1024];
            while (f && fgets(line, sizeof(line), f))
                printf("mount %s", line);
            if (f)
                fclose(f);
        } else if (!strcmp(c, "write")) {
            int fd = open(a, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            printf("write %s %s\n", a, fd >= 0 && write(fd, "x\n", 2) == 2 ? "ok" : strerrorname_np(errno));
            if (fd >= 0)
                close(fd);
            i++;
        } else if (!strcmp(c, "read")) {
            cat("read", a, 200);
            i++;
        } else if (!strcmp(c, "stat")) {
            struct stat st;
            if (lstat(a, &st) < 0)
                printf("stat %s %s\n", a, strerrorname_np(errno));
            else
                printf("stat %s %s %04o\n", a,
                       S_ISDIR(st.st_mode) ? "dir" : S_ISLNK(st.st_mode) ? "link" : S_ISREG(st.st_mode) ? "file"
                       : S_ISCHR(st.st_mode) ? "chr" : "other", st.st_mode & 07777);
            i++;
        } else if (!strcmp(c, "readlink")) {
            char buf[4096];
            ssize_t n = readlink(a, buf, sizeof(buf) - 1);
            printf("readlink %s %s\n", a, n < 0 ? strerrorname_np(errno) : (buf[n] = 0, buf));
            i++;
        } else if (!strcmp(c, "fdcontent")) {
            char path[64];
            snprintf(path, sizeof(path), "/proc/self/fd/%s", a);
            cat("fd", path, 200);
            i++;
        } else if (!strcmp(c, "flock")) {
            int fd = open(a, O_RDONLY | O_CLOEXEC);
            printf("flock %s %s\n", a, fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 ? "ok" : strerrorname_np(errno));
            i++;
        } else if (!strcmp(c, "sleep")) {
            /* nanosleep with the remainder: sleep() rounds it down after a signal */
            struct timespec t = {atoi(a), 0};
            while (nanosleep(&t, &t) < 0 && errno == EINTR)
                ;
            i++;
        } else if (!strcmp(c, "trap")) {
            int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
            for (size_t k = 0; k < sizeof(sigs) / sizeof(sigs[0]); k++)
                signal(sigs[k], on_signal);
            printf("trapped\n");
        } else if (!strcmp(c, "orphan")) {
            int p[2];
            pipe(p);
            if (fork() == 0) {
                if (fork() == 0) {
                    char b[16];
                    int n = snprintf(b, sizeof(b), "%d", getpid());
                    write(p[1], b, (size_t)n);
                    close(p[1]);
                    close(1);
                    sleep(600);
                    _exit(0);
                }
                _exit(0);
            }
            close(p[1]);
            char b[16] = {0};
            read(p[0], b, sizeof(b) - 1);
            wait(NULL);
            printf("orphan %s\n", b);
        } else if (!strcmp(c, "zombie")) {
            int p[2];
            pid_t g = 0;
            char path[64], st[256] = "";
            pipe(p);
            if (fork() == 0) {
                pid_t gc = fork();
                if (gc == 0) {
                    usleep(200000);
                    _exit(0);
                }
                write(p[1], &gc, sizeof(gc));
                _exit(0);
            }
            read(p[0], &g, sizeof(g));
            wait(NULL);
            for (int k = 0; k < 50; k++) {
                FILE *f;
                usleep(50000);
                snprintf(path, sizeof(path), "/proc/%d/stat", g);
                f = fopen(path, "r");
                if (!f) {
                    strcpy(st, "gone");
                    break;
                }
                fgets(st, sizeof(st), f);
                fclose(f);
                strcpy(st, strchr(st, ')') && strchr(st, ')')[2] == 'Z' ? "present" : "running");
            }
            printf("zombie %s\n", st);
        } else if (!strcmp(c, "exit")) {
            return atoi(a);
        } else if (!strcmp(c, "kill")) {
            kill(getpid(), atoi(a));
            pause();
        } else {
            printf("unknown %s\n", c);
            return 99;
        }
    }
    return 0;
}
