/* Architecture facts in one place: syscall numbers the libc may not wrap and
 * the seccomp audit arch. Kernel structs are redeclared so old headers build. */
#ifndef RP_ARCH_H
#define RP_ARCH_H

#include <stdint.h>
#include <linux/audit.h>

#if defined(__x86_64__)
#define RP_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define RP_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "redpak supports x86_64 and aarch64: add the architecture's facts here"
#endif

/* Since Linux 5.x, new syscalls share one number on every architecture but
 * alpha; both supported ones use the generic table. */
#define RP_NR_move_mount     429
#define RP_NR_fsopen         430
#define RP_NR_fsconfig       431
#define RP_NR_fsmount        432
#define RP_NR_pidfd_open     434
#define RP_NR_clone3         435
#define RP_NR_close_range    436
#define RP_NR_openat2        437
#define RP_NR_mount_setattr  442
#define RP_NR_open_tree_attr 467  /* Linux 6.15 */

#define RP_RESOLVE_NO_XDEV       0x01
#define RP_RESOLVE_NO_MAGICLINKS 0x02
#define RP_RESOLVE_NO_SYMLINKS   0x04
#define RP_RESOLVE_BENEATH       0x08
#define RP_RESOLVE_IN_ROOT       0x10

struct rp_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

#define RP_MOUNT_ATTR_RDONLY 0x00000001
#define RP_AT_RECURSIVE      0x8000
struct rp_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

#define RP_CLONE_PIDFD       0x00001000ULL
#define RP_CLONE_NEWTIME     0x00000080ULL
#define RP_CLONE_INTO_CGROUP 0x200000000ULL /* 5.7, cgroup v2 only */
struct rp_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;      /* VER1 (5.5) */
    uint64_t set_tid_size;
    uint64_t cgroup;       /* VER2 (5.7): a cgroup v2 directory's descriptor */
};
#define RP_CLONE_ARGS_SIZE_VER0 64
#define RP_CLONE_ARGS_SIZE_VER2 88

#define RP_CLOSE_RANGE_CLOEXEC (1U << 2)

#define RP_FSOPEN_CLOEXEC          0x1
#define RP_FSCONFIG_SET_STRING     1
#define RP_FSCONFIG_CMD_CREATE     6
#define RP_FSMOUNT_CLOEXEC         0x1
#define RP_MOUNT_ATTR_NOSUID       0x2
#define RP_MOUNT_ATTR_NODEV        0x4
#define RP_MOVE_MOUNT_F_EMPTY_PATH 0x4

#endif
