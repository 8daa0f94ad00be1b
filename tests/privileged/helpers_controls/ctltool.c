/* Test program run inside nodes by tests/privileged/test_controls.py: each
 * command pushes against one control and prints what the kernel answered,
 * one "key value" line each. Built static (gcc -static).
 *   forkbomb             fork until refused: "forked N errno E" (children wait;
 *                        run it in a pid namespace, whose end kills them)
 *   hog MIB              touch MIB MiB page by page: "touched N" lines, then "hogged"
 *   busy SECONDS         spin: "busy cpu_ms C wall_ms W"
 *   sys NAME             try a syscall: "sys NAME ok|ERRNO" (unshare mount keyctl bpf
 *                        setns clone-ns umount ptrace personality kexec init_module
 *                        perf_event_open userfaultfd open_tree fsopen)
 *   int80 NAME           the i386 entry point: "int80 NAME <ret>" (getpid, unshare)
 *   tiocsti              push a byte into our own terminal with TIOCSTI, with the
 *                        request as is and with bit 32 set: "tiocsti plain|bit32 R"
 *   cgescape             what a node would need to mount a cgroupfs and plant a
 *                        release_agent: "cgescape STEP ok|ERRNO"
 *   put PATH VALUE       write VALUE to an existing file: "put PATH ok|ERRNO"
 *   read PATH / write PATH / readat FD NAME   "… ok|ERRNO"
 *   status               the Seccomp, NoNewPrivs, Cpus/Mems_allowed_list lines of
 *                        /proc/self/status
 *   cgroup               /proc/self/cgroup, one "cgroup LINE" each
 *   exec PATH ARGS...    execv (the rest of the arguments) */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *err_name(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

static void result(const char *what, const char *name, long r)
{
    if (r < 0)
        printf("%s %s %s\n", what, name, err_name(errno));
    else
        printf("%s %s ok\n", what, name);
    fflush(stdout);
}

static int forkbomb(void)
{
    int n = 0;

    for (;;) {
        pid_t pid = fork();
        if (pid == 0) {
            pause();
            _exit(0);
        }
        if (pid < 0)
            break;
        n++;
        if (n >= 100000)
            break;
    }
    printf("forked %d errno %s\n", n, err_name(errno));
    fflush(stdout);
    return 0; /* pid 1 of the node exits with us: the kernel kills the children */
}

static int hog(long mib)
{
    long page = sysconf(_SC_PAGESIZE);

    for (long i = 0; i < mib; i++) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("malloc failed at %ld\n", i);
            return 1;
        }
        for (long off = 0; off < (1 << 20); off += page)
            p[off] = (char)off;
        if (i % 16 == 15) {
            printf("touched %ld\n", i + 1);
            fflush(stdout);
        }
    }
    printf("hogged\n");
    return 0;
}

static double ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int busy(double seconds)
{
    double w0 = ms(CLOCK_MONOTONIC), c0 = ms(CLOCK_PROCESS_CPUTIME_ID);
    volatile unsigned long x = 0;

    while (ms(CLOCK_MONOTONIC) - w0 < seconds * 1e3)
        for (int i = 0; i < 100000; i++)
            x++;
    printf("busy cpu_ms %.0f wall_ms %.0f\n", ms(CLOCK_PROCESS_CPUTIME_ID) - c0, ms(CLOCK_MONOTONIC) - w0);
    return 0;
}

static long try_sys(const char *name)
{
    if (!strcmp(name, "unshare"))
        return unshare(CLONE_NEWUSER | CLONE_NEWNS);
    if (!strcmp(name, "unshare-net"))
        return unshare(CLONE_NEWNET);
    if (!strcmp(name, "unshare-files")) /* no namespace: must stay allowed */
        return unshare(CLONE_FILES);
    if (!strcmp(name, "setns"))
        return syscall(SYS_setns, 0, CLONE_NEWNET);
    if (!strcmp(name, "clone-ns")) {
        long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (r == 0)
            _exit(0);
        if (r > 0)
            waitpid((pid_t)r, NULL, 0);
        return r;
    }
    if (!strcmp(name, "clone3"))
        return syscall(435, NULL, 0);
    if (!strcmp(name, "mount"))
        return mount("none", "/tmp", "tmpfs", 0, NULL);
    if (!strcmp(name, "umount"))
        return umount2("/proc", MNT_DETACH);
    if (!strcmp(name, "open_tree"))
        return syscall(428, AT_FDCWD, "/tmp", 1 /* OPEN_TREE_CLONE */);
    if (!strcmp(name, "fsopen"))
        return syscall(430, "tmpfs", 0);
    if (!strcmp(name, "keyctl"))
        return syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
    if (!strcmp(name, "add_key"))
        return syscall(SYS_add_key, "user", "rp", "x", 1, -3);
    if (!strcmp(name, "bpf")) {
        char attr[128] = {0};
        return syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof(attr));
    }
    if (!strcmp(name, "ptrace"))
        return syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0);
    if (!strcmp(name, "personality"))
        return syscall(SYS_personality, 0x0400000 /* READ_IMPLIES_EXEC */);
    if (!strcmp(name, "personality-query"))
        return syscall(SYS_personality, 0xffffffffUL);
    if (!strcmp(name, "kexec"))
        return syscall(SYS_kexec_load, 0, 0, NULL, 0);
    if (!strcmp(name, "init_module"))
        return syscall(SYS_init_module, NULL, 0, "");
    if (!strcmp(name, "perf_event_open"))
        return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    if (!strcmp(name, "userfaultfd"))
        return syscall(SYS_userfaultfd, 0);
    if (!strcmp(name, "getpid"))
        return syscall(SYS_getpid);
    errno = EINVAL;
    return -1;
}

#if defined(__x86_64__)
static long int80(long nr, long a1)
{
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a1) : "memory");
    return r;
}
#endif

static int i386(const char *name)
{
#if defined(__x86_64__)
    /* i386 numbers: getpid 20, unshare 310 */
    long r = !strcmp(name, "getpid") ? int80(20, 0) : int80(310, CLONE_NEWUSER | CLONE_NEWNS);
    if (r < 0 && r > -4096)
        printf("int80 %s %s\n", name, err_name((int)-r));
    else
        printf("int80 %s ok %ld\n", name, r);
#else
    printf("int80 %s unsupported\n", name);
#endif
    return 0;
}

/* TIOCSTI needs a terminal we control: a new pty, made our controlling one. */
static int tiocsti(void)
{
    char c = 'x';
    int m = posix_openpt(O_RDWR | O_NOCTTY), s;

    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) {
        printf("tiocsti pty %s\n", err_name(errno));
        return 1;
    }
    setsid();
    s = open(ptsname(m), O_RDWR);
    if (s < 0 || ioctl(s, TIOCSCTTY, 0) < 0) {
        printf("tiocsti ctty %s\n", err_name(errno));
        return 1;
    }
    result("tiocsti", "plain", syscall(SYS_ioctl, s, (unsigned long)TIOCSTI, &c));
    result("tiocsti", "bit32", syscall(SYS_ioctl, s, (1UL << 32) | TIOCSTI, &c));
    result("tiocsti", "tiocgwinsz", ({
               struct winsize ws;
               syscall(SYS_ioctl, s, (unsigned long)TIOCGWINSZ, &ws);
           }));
    return 0;
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    long r;

    if (fd < 0)
        return -1;
    r = write(fd, text, strlen(text));
    close(fd);
    return r < 0 ? -1 : 0;
}

/* CVE-2022-0492: a new user, mount and cgroup namespace, a v1 hierarchy mounted
 * in it, a release_agent written there. Also reports what such a mount shows:
 * its sub-cgroups and its pids.max. */
static int cgescape(void)
{
    char buf[64] = "";
    int fd, subdirs = 0;

    mkdir("/tmp/cg", 0700);
    result("cgescape", "unshare", unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP));
    result("cgescape", "mount-v1-rdma", mount("cgroup", "/tmp/cg", "cgroup", 0, "rdma"));
    result("cgescape", "mount-v1", mount("cgroup", "/tmp/cg", "cgroup", 0, "pids"));
    result("cgescape", "release_agent", write_text("/tmp/cg/release_agent", "/tmp/x"));
    fd = open("/tmp/cg/pids.max", O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        buf[n > 0 ? n - 1 : 0] = '\0';
        close(fd);
        DIR *d = opendir("/tmp/cg");
        for (struct dirent *e; d && (e = readdir(d));)
            subdirs += e->d_type == DT_DIR && e->d_name[0] != '.';
        if (d)
            closedir(d);
        printf("cgescape root-pids.max %s\ncgescape subdirs %d\n", buf, subdirs);
    }
    return 0;
}

static void print_file(const char *path, const char *prefix, const char *only)
{
    char line[512];
    FILE *f = fopen(path, "r");

    if (!f) {
        printf("%s %s\n", prefix, err_name(errno));
        return;
    }
    while (fgets(line, sizeof(line), f))
        if (!only || strstr(line, only) == line)
            printf("%s %s", prefix, line);
    fclose(f);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *cmd = argv[i];
        const char *arg = i + 1 < argc ? argv[i + 1] : "";

        if (!strcmp(cmd, "forkbomb"))
            return forkbomb();
        if (!strcmp(cmd, "hog"))
            return hog(atol(arg));
        if (!strcmp(cmd, "busy"))
            return busy(atof(arg));
        if (!strcmp(cmd, "sys")) {
            result("sys", arg, try_sys(arg));
            i++;
        } else if (!strcmp(cmd, "int80")) {
            i386(arg);
            i++;
        } else if (!strcmp(cmd, "tiocsti")) {
            tiocsti();
        } else if (!strcmp(cmd, "cgescape")) {
            cgescape();
        } else if (!strcmp(cmd, "read")) {
            int fd = open(arg, O_RDONLY | O_CLOEXEC);
            result("read", arg, fd);
            if (fd >= 0)
                close(fd);
            i++;
        } else if (!strcmp(cmd, "write")) {
            int fd = open(arg, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            result("write", arg, fd);
            if (fd >= 0)
                close(fd);
            i++;
        } else if (!strcmp(cmd, "readat") && i + 2 < argc) {
            int fd = openat(atoi(arg), argv[i + 2], O_RDONLY | O_CLOEXEC);
            result("readat", argv[i + 2], fd);
            if (fd >= 0)
                close(fd);
            i += 2;
        } else if (!strcmp(cmd, "put") && i + 2 < argc) {
            result("put", arg, write_text(arg, argv[i + 2]));
            i += 2;
        } else if (!strcmp(cmd, "status")) {
            print_file("/proc/self/status", "status", "Seccomp:");
            print_file("/proc/self/status", "status", "NoNewPrivs:");
            print_file("/proc/self/status", "status", "Cpus_allowed_list:");
            print_file("/proc/self/status", "status", "Mems_allowed_list:");
        } else if (!strcmp(cmd, "cgroup")) {
            print_file("/proc/self/cgroup", "cgroup", NULL);
        } else if (!strcmp(cmd, "exec") && i + 1 < argc) {
            fflush(stdout);
            execv(argv[i + 1], argv + i + 1);
            printf("exec %s %s\n", argv[i + 1], err_name(errno));
            return 127;
        } else {
            fprintf(stderr, "ctltool: unknown command %s\n", cmd);
            return 2;
        }
    }
    return 0;
}
