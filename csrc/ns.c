/* Namespaces: clone flags of the plan, setns joins, unshare, the user
 * namespace maps (written by the parent) and the hostname. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "arch.h"
#include "internal.h"

static const struct {
    uint32_t bit;
    unsigned long flag;
    const char *name;
} ns_table[] = {
    {RP_NS_USER, CLONE_NEWUSER, "user"},
    {RP_NS_MNT, CLONE_NEWNS, "mnt"},
    {RP_NS_PID, CLONE_NEWPID, "pid"},
    {RP_NS_NET, CLONE_NEWNET, "net"},
    {RP_NS_IPC, CLONE_NEWIPC, "ipc"},
    {RP_NS_UTS, CLONE_NEWUTS, "uts"},
    {RP_NS_CGROUP, CLONE_NEWCGROUP, "cgroup"},
    {RP_NS_TIME, RP_CLONE_NEWTIME, "time"},
};

unsigned long rp_ns_clone_flags(uint32_t ns)
{
    unsigned long flags = 0;

    for (size_t i = 0; i < sizeof(ns_table) / sizeof(ns_table[0]); i++)
        if (ns & ns_table[i].bit)
            flags |= ns_table[i].flag;
    return flags;
}

static const char *ns_name(uint32_t bit)
{
    for (size_t i = 0; i < sizeof(ns_table) / sizeof(ns_table[0]); i++)
        if (ns_table[i].bit == bit)
            return ns_table[i].name;
    return "?";
}

/* setns() checks that the file really is a namespace of the requested type,
 * so a path swapped for something else is refused by the kernel. */
int rp_ns_join(const struct rp_plan *plan, struct rp_error *err)
{
    err->step = RP_STEP_NS_JOIN;
    for (uint32_t i = 0; i < plan->njoins; i++) {
        const struct rp_join *j = &plan->joins[i];
        const char *path = rp_plan_str(plan, j->path);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
            return rp_fail_path(err, errno, path, "open %s namespace %s", ns_name(j->nstype), path);
        if (setns(fd, (int)rp_ns_clone_flags(j->nstype)) < 0) {
            int e = errno;
            close(fd);
            return rp_fail_path(err, e, path, "join %s namespace %s", ns_name(j->nstype), path);
        }
        close(fd);
    }
    return 0;
}

/* One call: the kernel creates the user namespace first and makes it own the
 * others. PID and TIME namespaces apply to the children of the caller. */
int rp_ns_unshare(const struct rp_plan *plan, struct rp_error *err)
{
    unsigned long flags = rp_ns_clone_flags(plan->proc->new_ns);

    err->step = RP_STEP_NS_NEW;
    if (unshare((int)flags) < 0)
        return rp_fail(err, errno, "unshare namespaces %#lx", flags);
    return 0;
}

static int write_file(pid_t pid, const char *name, const char *text, struct rp_error *err)
{
    char path[64];
    size_t len = strlen(text);
    int fd;
    ssize_t n;

    rp_format(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return rp_fail_path(err, errno, path, "open %s", path);
    n = write(fd, text, len);
    if (n < 0 || (size_t)n != len) {
        int e = n < 0 ? errno : EIO;
        close(fd);
        return rp_fail_path(err, e, path, "write '%s' to %s", text, path);
    }
    close(fd);
    return 0;
}

/* Parent side, while the child waits: setgroups must be denied before an
 * unprivileged gid_map can be written (user_namespaces(7)). */
int rp_ns_write_maps(const struct rp_plan *plan, pid_t pid, struct rp_error *err)
{
    const char *uid_map = rp_plan_str(plan, plan->proc->uid_map);
    const char *gid_map = rp_plan_str(plan, plan->proc->gid_map);

    err->step = RP_STEP_USERNS;
    if ((plan->proc->flags & RP_PROC_SETGROUPS_DENY) && write_file(pid, "setgroups", "deny", err) < 0)
        return -1;
    if (*uid_map && write_file(pid, "uid_map", uid_map, err) < 0)
        return -1;
    if (*gid_map && write_file(pid, "gid_map", gid_map, err) < 0)
        return -1;
    return 0;
}

int rp_ns_hostname(const struct rp_plan *plan, struct rp_error *err)
{
    const char *name = rp_plan_str(plan, plan->proc->hostname);

    err->step = RP_STEP_HOSTNAME;
    if (*name && sethostname(name, strlen(name)) < 0)
        return rp_fail(err, errno, "set hostname '%s'", name);
    return 0;
}

/* A new network namespace has only `lo`, and it is down: connect(127.0.0.1)
 * fails with ENETUNREACH. One RTM_NEWLINK request sets IFF_UP on it (the
 * kernel gives the loopback device index 1 in every namespace), and the
 * kernel's acknowledgement says whether it worked. No `ip` binary, no
 * ioctl socket of the inet family. */
int rp_ns_loopback(const struct rp_plan *plan, struct rp_error *err)
{
    struct {
        struct nlmsghdr nh;
        struct ifinfomsg ifi;
    } req = {
        .nh = {.nlmsg_len = sizeof(req), .nlmsg_type = RTM_NEWLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK,
               .nlmsg_seq = 1},
        .ifi = {.ifi_family = AF_UNSPEC, .ifi_index = 1, .ifi_flags = IFF_UP, .ifi_change = IFF_UP},
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    union {
        struct nlmsghdr nh;
        char buf[512];
    } ack;
    ssize_t n;
    int fd, e;

    if (!(plan->proc->new_ns & RP_NS_NET))
        return 0;
    err->step = RP_STEP_NS_NEW;
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return rp_fail(err, errno, "bring up lo: netlink socket");
    if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) != (ssize_t)sizeof(req)) {
        e = errno;
        close(fd);
        return rp_fail(err, e, "bring up lo: send the netlink request");
    }
    do
        n = recv(fd, &ack, sizeof(ack), 0);
    while (n < 0 && errno == EINTR);
    e = n < 0 ? errno : 0;
    close(fd);
    if (n < 0)
        return rp_fail(err, e, "bring up lo: read the netlink answer");
    if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) || ack.nh.nlmsg_type != NLMSG_ERROR)
        return rp_fail(err, EPROTO, "bring up lo: unexpected netlink answer");
    e = -((struct nlmsgerr *)NLMSG_DATA(&ack.nh))->error;
    if (e)
        return rp_fail(err, e, "bring up lo");
    return 0;
}
