/* Test helper run inside a node by tests/privileged/test_security*.py: each command
 * performs one escape attempt and prints "<command> <target> ok" or "<command> <target>
 * <errno name>", then goes on with the next. Nothing here changes a value on the host
 * when the attempt succeeds: writes put back the value the file already holds.
 *   io_uring              io_uring_setup(2, ...)
 *   keyctl                keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
 *   keyring DESC          find the "user" key DESC from the session keyring and read it:
 *                         "keyring DESC <value>" or the errno name
 *   remount PATH          remount the mount at PATH read-write (MS_REMOUNT|MS_BIND)
 *   umount PATH           umount2(PATH, MNT_DETACH)
 *   rewrite PATH          read PATH, write the same bytes back (O_WRONLY, no truncation)
 *   mountcg DIR CTRL      mount the cgroup v1 hierarchy of CTRL (e.g. memory) on DIR
 *   cwd                   print "cwd <getcwd()>" and "cwdino <dev>:<ino>" of "."
 *   fds                   "fds 0 1 2 ..." (open descriptors, without the listing's own)
 *   daemon                fork, setsid, fork a grandchild that sleeps 600 s: "daemon <pid>"
 *   sleep SECONDS */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void result(const char *what, const char *arg, long r)
{
    printf("%s%s%s %s\n", what, arg ? " " : "", arg ? arg : "", r < 0 ? strerrorname_np(errno) : "ok");
    fflush(stdout);
}

static long rewrite(const char *path)
{
    char buf[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n < 0)
        return -1;
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (write(fd, buf, (size_t)n) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return close(fd);
}

static void fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    printf("fds");
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
            printf(" %s", e->d_name);
    printf("\n");
    fflush(stdout);
    if (d)
        closedir(d);
}

static void daemonize(void)
{
    int p[2];
    pid_t pid;

    if (pipe(p) < 0)
        return;
    pid = fork();
    if (pid == 0) {
        setsid();
        pid_t g = fork();
        if (g == 0) {
            close(p[0]);
            close(p[1]);
            for (int i = 0; i < 3; i++)
                close(i);
            sleep(600);
            _exit(0);
        }
        write(p[1], &g, sizeof(g));
        _exit(0);
    }
    close(p[1]);
    pid_t g = -1;
    read(p[0], &g, sizeof(g));
    close(p[0]);
    waitpid(pid, NULL, 0);
    printf("daemon %d\n", (int)g);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *c = argv[i], *a = i + 1 < argc ? argv[i + 1] : "";

        if (!strcmp(c, "io_uring")) {
            char params[120] = {0};
            long r = syscall(425 /* io_uring_setup, both architectures */, 2, params);
            result(c, NULL, r);
            if (r >= 0)
                close((int)r);
        } else if (!strcmp(c, "keyctl")) {
            result(c, NULL, syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
        } else if (!strcmp(c, "keyring")) {
            char buf[256];
            long id = syscall(SYS_request_key, "user", a, NULL, -3 /* session */), n = -1;
            if (id >= 0 && (n = syscall(SYS_keyctl, 11 /* KEYCTL_READ */, id, buf, sizeof buf - 1)) >= 0) {
                buf[n] = '\0';
                printf("keyring %s %s\n", a, buf);
                fflush(stdout);
            } else
                result(c, a, -1);
            i++;
        } else if (!strcmp(c, "remount")) {
            result(c, a, mount(NULL, a, NULL, MS_REMOUNT | MS_BIND, NULL));
            i++;
        } else if (!strcmp(c, "umount")) {
            result(c, a, umount2(a, MNT_DETACH));
            i++;
        } else if (!strcmp(c, "rewrite")) {
            result(c, a, rewrite(a));
            i++;
        } else if (!strcmp(c, "mountcg") && i + 2 < argc) {
            mkdir(a, 0755);
            result(c, a, mount("cgroup", a, "cgroup", 0, argv[i + 2]));
            i += 2;
        } else if (!strcmp(c, "cwd")) {
            char buf[4096];
            struct stat st;
            printf("cwd %s\n", getcwd(buf, sizeof(buf)) ? buf : strerrorname_np(errno));
            if (stat(".", &st) == 0)
                printf("cwdino %lu:%lu\n", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
            fflush(stdout);
        } else if (!strcmp(c, "fds")) {
            fds();
        } else if (!strcmp(c, "daemon")) {
            daemonize();
        } else if (!strcmp(c, "sleep")) {
            sleep((unsigned)atoi(a));
            i++;
        } else {
            fprintf(stderr, "attack: unknown command %s\n", c);
            return 2;
        }
    }
    return 0;
}
