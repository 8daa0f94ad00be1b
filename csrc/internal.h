/* Internal interface between the C core's files (not part of the public API).
 * struct rp_ctx is built by the parent before clone; the child reads its copy. */
#ifndef RP_INTERNAL_H
#define RP_INTERNAL_H

#include <sys/types.h>

#include "redpak.h"

#define RP_STACK_SIZE (256 << 10)

/* Child exit code when setup failed (the real error goes over the socket). */
#define RP_EXIT_SETUP 125

enum rp_msg_type {
    RP_MSG_READY = 1,   /* child -> parent: namespaces exist, write maps, then GO */
    RP_MSG_GO,          /* parent -> child                                        */
    RP_MSG_PID,         /* child -> parent: the node's first process (CLONE_PARENT) */
    RP_MSG_FDS,         /* child -> parent: lock fds to hold (SCM_RIGHTS)          */
    RP_MSG_EXEC,        /* child -> parent: about to exec the program              */
    RP_MSG_ERROR,       /* child -> parent: setup failed                           */
};

struct rp_msg {
    int type;
    int pid;
    struct rp_error err;
};

#define RP_MAX_JOIN_FDS 16

/* The launch's own cgroups, made before clone (cgroup.c). */
struct rp_cgroups {
    pid_t owner;                 /* the launcher: run-<owner>.<id>; 0 = none */
    uint32_t id;
    int nfds;
    int fds[RP_MAX_JOIN_FDS];    /* tasks files the child joins through      */
    int into_fd;                 /* the v2 run directory, for CLONE_INTO_CGROUP */
    int placed;                  /* clone put the node there: no v2 attach   */
};

struct rp_ctx {
    const struct rp_plan *plan;
    char *const *argv;
    char *const *caller_env;
    char **envp;                 /* final environment of the program         */
    char **env_owned;            /* strings of envp allocated by the parent  */
    const char *path;            /* PATH used to look the program up         */
    char **execfd_out;           /* per mount op index: output of EXECFD ops */
    size_t *execfd_len;
    const int *pass_fds;
    int npass_fds;
    const int *stdio;            /* opts->stdio: 3 fds for 0-2, -1 = kept; NULL = none */
    char *const *env_add;        /* opts->env_add: "NAME=value" after the plan's ops   */
    const char *chdir;           /* opts->chdir: after the plan's chdir; NULL = none   */
    unsigned features;           /* RP_FEAT_* usable for this launch         */
    int cap_last;                /* highest capability number of the kernel  */
    int sock_fd;                 /* child's end of the status socket         */
    int parent_sock_fd;          /* parent's end (closed in the child)       */
    int status_fd;               /* pid 1's end of the early-status pipe; -1 = none */
    int parent_status_fd;        /* launcher's end (closed in the child); -1 = none */
    int need_parent;             /* child waits for GO after READY           */
    int slow_path;               /* joins or late namespaces: unshare + fork */
    int nlocks;
    int lock_fds[RP_MAX_LOCKS];
    mode_t caller_umask;         /* restored when the plan sets none         */
    int host_fd;                 /* O_PATH: host root while building (stage)  */
    int root_fd;                 /* O_PATH: the node's new root               */
    unsigned nfiles;             /* staging files created so far              */
    const char *proc_fds;        /* "/proc/self/fd" as reachable while building */
    int stage_fd;                /* where DATA/EXECFD/FD contents are written */
    int parent_fd;               /* O_PATH: last resolved parent directory    */
    int proc_fd;                 /* O_PATH: the host's procfs, opened before the
                                  * pivot for SMACK's attr writes; -1 = none     */
    int smack_mode;              /* RP_SMACK_*: who sets the program's label   */
    int smack_fd;                /* launcher: its thread's attr file; -1 = none */
    char smack_prev[256];        /* launcher: its thread's label, restored      */
    const struct rp_mount *bind_op; /* last bind op applied with the new mount API */
    int bind_tree;               /* its mount, attached; valid with bind_op      */
    unsigned long long bind_dev, bind_ino; /* its root                          */
    int bind_dir;                /* its root is a directory                      */
    char parent_path[4096];      /* its path in the new root; "" = none       */
    const char *beneath_dir;     /* node directory of the last BENEATH source (in
                                  * the plan), resolved as on the host; NULL = none */
    size_t beneath_len;
    int beneath_fd;              /* O_PATH: it; valid with beneath_dir          */
    struct rp_cgroups cg;        /* the launch's own cgroups                  */
};

/* ns.c */
unsigned long rp_ns_clone_flags(uint32_t ns);
int rp_ns_join(const struct rp_plan *plan, struct rp_error *err);
int rp_ns_unshare(const struct rp_plan *plan, struct rp_error *err);
int rp_ns_write_maps(const struct rp_plan *plan, pid_t pid, struct rp_error *err);
int rp_ns_hostname(const struct rp_plan *plan, struct rp_error *err);
int rp_ns_loopback(const struct rp_plan *plan, struct rp_error *err); /* lo up in a new net ns */

/* mount.c: build the new root in the stage, then pivot into it */
int rp_mount_apply(struct rp_ctx *ctx, struct rp_error *err);
int rp_pivot(struct rp_ctx *ctx, struct rp_error *err);
int rp_open_in_root(const struct rp_ctx *ctx, const char *path);

/* caps.c: identity switch, capability sets, no_new_privs */
int rp_caps_drop(const struct rp_ctx *ctx, struct rp_error *err);
int rp_caps_clear_all(struct rp_error *err);
int rp_cap_last(void);

/* env.c */
int rp_env_build(struct rp_ctx *ctx, struct rp_error *err);
void rp_env_free(struct rp_ctx *ctx);
int rp_execfd_run(const char *cmd, char *const envp[], unsigned timeout_ms, char **out, size_t *len,
                  struct rp_error *err);
int rp_exec(const struct rp_ctx *ctx, struct rp_error *err);

/* fds (launch.c) */
int rp_fds_prepare(const struct rp_ctx *ctx, struct rp_error *err);

/* init.c: pid 1 of a new pid namespace; never returns */
#include <signal.h>
void rp_init_forwarded(sigset_t *set);
void rp_init_run(struct rp_ctx *ctx, pid_t program) __attribute__((noreturn));

/* cgroup.c: launcher side (check and prepare before clone, attach before GO),
 * child side (join first thing; later a cgroup namespace rooted there) */
int rp_cgroup_check(const struct rp_plan *plan, struct rp_error *err);
int rp_cgroup_prepare(const struct rp_plan *plan, struct rp_cgroups *cg, struct rp_error *err);
void rp_cgroup_close(struct rp_cgroups *cg);
int rp_cgroup_open_into(const struct rp_plan *plan, struct rp_cgroups *cg);
void rp_cgroup_close_into(struct rp_cgroups *cg);
int rp_cgroup_attach(const struct rp_plan *plan, const struct rp_cgroups *cg, pid_t pid, struct rp_error *err);
int rp_cgroup_by_launcher(const struct rp_plan *plan);
int rp_cgroup_join(struct rp_ctx *ctx, struct rp_error *err);
int rp_cgroup_enter_ns(const struct rp_plan *plan, struct rp_error *err);

/* smack.c: prepare opens the host procfs before the pivot; apply labels (or,
 * when the launcher set the label around clone, checks it) */
enum {
    RP_SMACK_CHILD = 0,          /* the child writes the label (initial user ns) */
    RP_SMACK_INHERITED,          /* the launcher set it around clone             */
    RP_SMACK_NONE,               /* no SMACK in the kernel, label optional       */
};
int rp_smack_prepare(struct rp_ctx *ctx, struct rp_error *err);
int rp_smack_apply(struct rp_ctx *ctx, struct rp_error *err);
int rp_smack_launcher_set(struct rp_ctx *ctx, struct rp_error *err);
int rp_smack_launcher_restore(struct rp_ctx *ctx, struct rp_error *err);

/* landlock.c, seccomp.c: in the program's process, last before exec */
int rp_landlock_apply(const struct rp_plan *plan, struct rp_error *err);
int rp_seccomp_apply(const struct rp_plan *plan, struct rp_error *err);

#endif
