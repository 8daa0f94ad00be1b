# Declarations of the C core's public interface (csrc/redpak.h), for _core.pyx.
from libc.stdint cimport uint32_t, uint64_t
from posix.types cimport pid_t

cdef extern from "redpak.h":
    enum:
        RP_MAX_LOCKS
        RP_STEP_PLAN
        RP_STEP_DEPS
        RP_FEAT_OPENAT2
        RP_FEAT_MOUNT_SETATTR
        RP_FEAT_CLOSE_RANGE
        RP_FEAT_PIDFD
        RP_FEAT_MOUNT_API
        RP_FEAT_CLONE3
        RP_FEAT_INTO_CGROUP
        RP_FEAT_OPEN_TREE_ATTR
        RP_LAUNCH_OWN_LIFE

    struct rp_error:
        int errnum
        int step
        char msg[240]

    struct rp_plan:
        size_t size

    struct rp_launch_opts:
        char **envp
        const int *pass_fds
        int npass_fds
        unsigned disable
        const int *stdio
        char **env_add
        const char *chdir
        unsigned flags

    struct rp_child:
        pid_t pid
        int pidfd
        int nheld
        int held_fds[16]
        pid_t cgroup_owner
        uint32_t cgroup_id

    const char *rp_version()
    const char *rp_step_name(int step)
    const char *rp_error_path(const rp_error *err)
    uint64_t rp_plan_checksum(const void *data, size_t len) nogil
    int rp_plan_open(rp_plan *plan, const void *buf, size_t len, rp_error *err) nogil
    int rp_plan_check_deps(const rp_plan *plan, char **envp, rp_error *err) nogil
    int rp_launch(const void *plan, size_t len, char **argv, const rp_launch_opts *opts,
                  rp_child *child, rp_error *err) nogil
    unsigned rp_features() nogil
    int rp_cgroup_oom_killed(const rp_plan *plan, const rp_child *child, char *what, size_t size) nogil
    int rp_cgroup_cleanup(const rp_plan *plan, const rp_child *child, rp_error *err) nogil
