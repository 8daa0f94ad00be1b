/* redpak C core: the launch-plan binary layout, rp_error and the entry points
 * (mirrored in src/redpak/_core.pxd; the Python encoder is src/redpak/planfile.py). */
#ifndef REDPAK_H
#define REDPAK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RP_VERSION "3.0.0"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the plan format is little-endian; add byte swapping before porting to big-endian"
#endif

/*
 * LAUNCH PLAN FORMAT, version 1 (also described in docs/plan-format.md)
 * =====================================================================
 * One flat little-endian buffer, no pointers. Every integer is unsigned
 * unless noted; every offset is in bytes from the start of the buffer.
 *
 *   0   8  magic          "REDPLAN\0"
 *   8   4  version        RP_PLAN_VERSION (1)
 *  12   4  header_size    sizeof(struct rp_plan_header) = 296
 *  16   8  total_size     length of the whole buffer
 *  24   8  checksum       FNV-1a 64 of bytes [32, total_size)
 *  32   4  flags          0 (reserved)
 *  36   4  nsections      RP_SEC_SLOTS (16)
 *  40 256  sections[16]   {u32 offset, u32 count, u32 record_size, u32 reserved}
 *
 * Slot i of the section table describes section kind i (enum rp_section).
 * A section holds `count` fixed-size records of `record_size` bytes
 * (record_size 1 for the byte sections STRINGS and BLOBS). Rules checked by
 * rp_plan_open() before anything else reads the plan:
 *   - record_size equals the size this version defines for the kind, even
 *     when count is 0; an empty section has offset 0; reserved is 0;
 *   - non-empty sections start 8-byte aligned, in slot order, without
 *     overlapping, after the header; total_size is the end of the last one
 *     rounded up to 8 (padding bytes are 0);
 *   - slots RP_SEC_RESERVED_FIRST.. are empty: a plan asking for something
 *     this core does not know is refused, never half-applied.
 * STRINGS: NUL-terminated strings; a string reference (u32) is an offset into
 *   the table. The table starts and ends with NUL, so reference 0 is "" and
 *   every in-range reference is terminated.
 * BLOBS: raw bytes; a blob reference is {u32 offset, u32 length}.
 * Enums and flag words are checked against the values below; unknown bits
 * are an error. The SECCOMP, LANDLOCK, CGROUP and SMACK records were
 * defined with version 1 (CGROUP ops COPY and CHECK added since: an older
 * core refuses them as unknown ops, failing closed).
 */

#define RP_PLAN_MAGIC "REDPLAN"          /* 8 bytes with the NUL */
#define RP_PLAN_VERSION 1
#define RP_SEC_SLOTS 16
#define RP_PLAN_MAX_SIZE (64u << 20)      /* refuse absurd plans early */

enum rp_section {
    RP_SEC_STRINGS = 0,  /* char[]                                 */
    RP_SEC_BLOBS,        /* unsigned char[]                        */
    RP_SEC_PROCESS,      /* struct rp_process, exactly one         */
    RP_SEC_JOINS,        /* struct rp_join: setns, in plan order   */
    RP_SEC_MOUNTS,       /* struct rp_mount: applied in plan order */
    RP_SEC_ENV,          /* struct rp_env: applied in plan order   */
    RP_SEC_KEEP_FDS,     /* struct rp_keep_fd: fds left open       */
    RP_SEC_FILE_DEPS,    /* struct rp_file_dep: cache validity     */
    RP_SEC_ENV_DEPS,     /* struct rp_env_dep: cache validity      */
    RP_SEC_SECCOMP,      /* struct rp_seccomp: BPF program (blob)  */
    RP_SEC_LANDLOCK,     /* struct rp_landlock_rule                */
    RP_SEC_CGROUP,       /* struct rp_cgroup_op: parent side       */
    RP_SEC_SMACK,        /* struct rp_smack: at most one           */
    RP_SEC_RESERVED_FIRST,
};

struct rp_plan_section {
    uint32_t offset;
    uint32_t count;
    uint32_t record_size;
    uint32_t reserved;
};

struct rp_plan_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint64_t total_size;
    uint64_t checksum;
    uint32_t flags;
    uint32_t nsections;
    struct rp_plan_section sections[RP_SEC_SLOTS];
};

struct rp_blob {
    uint32_t offset;
    uint32_t length;
};

/* Namespaces (bitmask). The mount namespace is always new (RP_NS_MNT must be set). */
#define RP_NS_USER   0x01u
#define RP_NS_MNT    0x02u
#define RP_NS_PID    0x04u
#define RP_NS_NET    0x08u
#define RP_NS_IPC    0x10u
#define RP_NS_UTS    0x20u
#define RP_NS_CGROUP 0x40u
#define RP_NS_TIME   0x80u
#define RP_NS_ALL    0xffu

/* struct rp_process.flags */
#define RP_PROC_DIE_WITH_PARENT 0x0001u /* SIGKILL the node when the launcher dies  */
#define RP_PROC_NEW_SESSION     0x0002u /* setsid(): no TIOCSTI into the caller's tty */
#define RP_PROC_INHERIT_ENV     0x0004u /* start from the caller's env, not empty    */
#define RP_PROC_SET_UID         0x0008u /* setresuid(uid) inside                     */
#define RP_PROC_SET_GID         0x0010u /* setresgid(gid) inside                     */
#define RP_PROC_DROP_GROUPS     0x0020u /* setgroups(0, NULL) inside                 */
#define RP_PROC_SETGROUPS_DENY  0x0040u /* parent writes "deny" to /proc/PID/setgroups */
#define RP_PROC_SET_UMASK       0x0080u
#define RP_PROC_CACHEABLE       0x0100u /* rp_plan_check_deps() may accept the plan  */
#define RP_PROC_FLAGS_ALL       0x01ffu

/* Process-wide settings. Capability masks are applied exactly: bounding by
 * PR_CAPBSET_DROP, permitted/effective/inheritable by capset, ambient raised
 * one by one after PR_CAP_AMBIENT_CLEAR_ALL. */
struct rp_process {
    uint32_t flags;           /* RP_PROC_*                                   */
    uint32_t new_ns;          /* RP_NS_* created for the node                */
    uint32_t uid, gid;        /* final ids inside, with SET_UID / SET_GID    */
    uint32_t umask;           /* with SET_UMASK                              */
    uint32_t hostname;        /* str; "" = leave (needs RP_NS_UTS otherwise) */
    uint32_t chdir;           /* str; "" = "/" of the node                   */
    uint32_t uid_map;         /* str written verbatim to /proc/PID/uid_map   */
    uint32_t gid_map;         /* str; "" = not written                       */
    uint32_t caller_uid;      /* deps: the plan was compiled for this caller */
    uint32_t caller_gid;
    uint32_t execfd_timeout_ms; /* 0 = no limit on execfd commands           */
    uint64_t cap_bounding;
    uint64_t cap_permitted;
    uint64_t cap_effective;
    uint64_t cap_inheritable;
    uint64_t cap_ambient;
};

/* setns() into an existing namespace. Joins run in plan order in the child
 * BEFORE the new namespaces are unshared: joining needs CAP_SYS_ADMIN in the
 * namespace's owning user namespace, which a fresh user namespace never is.
 * Put a user-namespace join first when the other joined namespaces belong to
 * it (then its capabilities allow the rest), last otherwise. */
struct rp_join {
    uint32_t nstype;          /* exactly one RP_NS_* bit (not MNT)           */
    uint32_t path;            /* str: e.g. /proc/1234/ns/net                  */
};

enum rp_mount_kind {
    RP_MOUNT_BIND = 0,    /* bind `source` on `target`: a directory (recursive) or a
                           * file, whichever the source is at launch                 */
    RP_MOUNT_BIND_FILE,   /* bind file `source` on `target` (a directory is refused) */
    RP_MOUNT_DIR,         /* create directory `target` (and parents) with `mode`     */
    RP_MOUNT_SYMLINK,     /* symlink `target` -> text `source`                       */
    RP_MOUNT_TMPFS,       /* fresh tmpfs, root dir `mode`; `source` = extra options   */
    RP_MOUNT_PROC,        /* fresh procfs, kernel knobs bound read-only              */
    RP_MOUNT_DEV,         /* minimal /dev                                            */
    RP_MOUNT_MQUEUE,      /* fresh mqueue fs                                         */
    RP_MOUNT_DATA,        /* file with content `data`, mode `mode`                    */
    RP_MOUNT_EXECFD,      /* file with stdout of /bin/sh -c `source` run at launch    */
    RP_MOUNT_FD,          /* file with the content read from descriptor `fd`          */
    RP_MOUNT_LOCK,        /* flock `target` for the node's lifetime                   */
    RP_MOUNT_KIND_COUNT,
};

/* struct rp_mount.flags */
#define RP_MOUNT_RDONLY      0x01u /* read-only (kept nosuid/nodev/noexec)            */
#define RP_MOUNT_OPTIONAL    0x02u /* source missing: skip the op                      */
#define RP_MOUNT_NO_SYMLINKS 0x04u /* source path may contain no symlink at all        */
#define RP_MOUNT_LOCK_EXCL   0x08u /* LOCK: exclusive (default shared)                 */
#define RP_MOUNT_LOCK_WAIT   0x10u /* LOCK: wait for the lock (default: fail if held)  */
#define RP_MOUNT_NOEXEC      0x20u /* TMPFS/binds: add noexec                          */
#define RP_MOUNT_BENEATH     0x40u /* binds: `data` names the node directory holding the
                                    * source; below it no component may be a symlink  */
#define RP_MOUNT_FLAGS_ALL   0x7fu

#define RP_MAX_LOCKS 16           /* LOCK ops per plan; their fds are held by the node */

/* Mount ops run in a fresh tmpfs that becomes the root. `target` is an
 * absolute path resolved inside that root without leaving it (symlinks are
 * resolved as if the root were "/"); missing parents are created 0755. Host
 * sources are resolved as on the host (absolute symlinks relative to the host
 * root), except with RP_MOUNT_BENEATH: then `data` is a node directory, a
 * prefix of `source`, resolved as on the host, and the rest of `source` is
 * opened beneath it without following any symlink (a node's own files never
 * lead the mount out of it). */
struct rp_mount {
    uint32_t kind;            /* enum rp_mount_kind                          */
    uint32_t flags;           /* RP_MOUNT_*                                  */
    uint32_t mode;            /* created dir/file mode; 0 = kind default     */
    int32_t fd;               /* RP_MOUNT_FD: descriptor number, else -1     */
    uint32_t source;          /* str                                         */
    uint32_t target;          /* str, absolute                               */
    struct rp_blob data;      /* RP_MOUNT_DATA content                       */
};

enum rp_env_op {
    RP_ENV_SET = 0,   /* name=value                                            */
    RP_ENV_UNSET,     /* remove name                                           */
    RP_ENV_INHERIT,   /* name=caller's value, or empty                         */
    RP_ENV_EXECFD,    /* name=stdout of /bin/sh -c value, last newline removed */
    RP_ENV_OP_COUNT,
};

struct rp_env {
    uint32_t op;
    uint32_t name;            /* str, no '='                                 */
    uint32_t value;           /* str                                         */
    uint32_t reserved;
};

struct rp_keep_fd {
    int32_t fd;               /* stays open (inheritable) in the program     */
    uint32_t reserved;
};

struct rp_file_dep {
    uint32_t path;            /* str: stat() must still report these values  */
    uint32_t reserved;
    uint64_t dev, ino, size;
    int64_t mtime_ns;
};

#define RP_ENV_DEP_UNSET 0x1u /* the variable must be absent */
struct rp_env_dep {
    uint32_t name, value, flags, reserved;
};

/* Resource and access controls (compiled by src/redpak/controls.py; see
 * docs/controls.md). */
struct rp_seccomp {
    struct rp_blob program;   /* struct sock_filter[], installed last        */
    uint32_t flags, reserved;
};

#define RP_LANDLOCK_OPTIONAL  0x1u /* path may be missing in the node: no rule  */
#define RP_LANDLOCK_FLAGS_ALL 0x1u
struct rp_landlock_rule {
    uint64_t access;          /* LANDLOCK_ACCESS_FS_* allowed beneath path   */
    uint32_t path;            /* str, inside the node                         */
    uint32_t flags;           /* RP_LANDLOCK_*                                */
};

/* Run by the launcher, in plan order, before the child is released:
 *   CHECK  path file value  the launcher's /proc/self/cgroup line for the
 *                           hierarchy `file` ("" = v2) still reads `value`
 *                           (checked before clone; else the plan is stale)
 *   MKDIR  path             create the directory (EEXIST: shared)
 *   WRITE  path file value  write value to path/file
 *   COPY   path file        copy the parent directory's file to path/file
 *   ATTACH path file        create path/run-<launcher pid>.<id> and move the node
 *                           into it through its `file`: "tasks" (v1) is written by
 *                           the child itself ("0": one thread, no thread-group
 *                           lock), cgroup.procs ("" too) by the launcher (its pid) */
enum rp_cgroup_op_kind {
    RP_CGROUP_MKDIR = 0, RP_CGROUP_WRITE, RP_CGROUP_ATTACH, RP_CGROUP_COPY, RP_CGROUP_CHECK,
    RP_CGROUP_OP_COUNT
};
struct rp_cgroup_op {
    uint32_t op;              /* enum rp_cgroup_op_kind, run by the parent    */
    uint32_t path;            /* str: cgroup directory                        */
    uint32_t file;            /* str: file name (WRITE, COPY), key (CHECK)    */
    uint32_t value;           /* str: value (WRITE), cgroup path (CHECK)      */
};

#define RP_SMACK_OPTIONAL 0x1u /* no SMACK in the kernel: run unlabelled     */
struct rp_smack {
    uint32_t label;           /* str                                          */
    uint32_t flags;
};

/* A validated plan: views into the caller's buffer (which must outlive it). */
struct rp_plan {
    const unsigned char *base;
    size_t size;
    const char *strings;
    uint32_t strings_size;
    const unsigned char *blobs;
    uint32_t blobs_size;
    const struct rp_process *proc;
    const struct rp_join *joins;
    uint32_t njoins;
    const struct rp_mount *mounts;
    uint32_t nmounts;
    const struct rp_env *env;
    uint32_t nenv;
    const struct rp_keep_fd *keep_fds;
    uint32_t nkeep_fds;
    const struct rp_file_dep *file_deps;
    uint32_t nfile_deps;
    const struct rp_env_dep *env_deps;
    uint32_t nenv_deps;
    const struct rp_seccomp *seccomp;
    uint32_t nseccomp;
    const struct rp_landlock_rule *landlock;
    uint32_t nlandlock;
    const struct rp_cgroup_op *cgroup;
    uint32_t ncgroup;
    const struct rp_smack *smack;
    uint32_t nsmack;
};

/* ---- errors ------------------------------------------------------------ */

enum rp_step {
    RP_STEP_NONE = 0,
    RP_STEP_PLAN,        /* plan buffer invalid                          */
    RP_STEP_DEPS,        /* cached plan no longer valid                  */
    RP_STEP_SPAWN,       /* launcher: descriptors, clone                 */
    RP_STEP_EXECFD,      /* running an execfd command                    */
    RP_STEP_ENV,         /* building the environment                     */
    RP_STEP_CGROUP,      /* parent: cgroup writes / placement            */
    RP_STEP_USERNS,      /* parent: uid_map, gid_map, setgroups          */
    RP_STEP_SYNC,        /* parent/child handshake                       */
    RP_STEP_PARENT,      /* die-with-parent: launcher gone               */
    RP_STEP_NS_JOIN,     /* setns                                        */
    RP_STEP_NS_NEW,      /* unshare                                      */
    RP_STEP_MOUNT,       /* mount ops, new root                          */
    RP_STEP_LOCK,        /* LOCK ops                                     */
    RP_STEP_PIVOT,       /* pivot_root and old root detach               */
    RP_STEP_HOSTNAME,
    RP_STEP_SESSION,     /* setsid                                       */
    RP_STEP_SMACK,
    RP_STEP_IDENTITY,    /* setgroups, setresgid, setresuid              */
    RP_STEP_CAPS,        /* bounding, capset, ambient, no_new_privs      */
    RP_STEP_LANDLOCK,
    RP_STEP_SECCOMP,
    RP_STEP_CHDIR,
    RP_STEP_FDS,         /* closing inherited descriptors                */
    RP_STEP_EXEC,        /* ENOENT: not found (127), EACCES: not executable (126) */
    RP_STEP_INIT,        /* pid 1 of the node                            */
    RP_STEP_WAIT,
    RP_STEP_COUNT,
};

/* Fixed size: the child sends it over the status socket. `msg` holds the
 * message; when a path is known it follows the message's terminating NUL
 * (read it with rp_error_path()). */
struct rp_error {
    int errnum;   /* errno of the failed call; 0 for plan errors */
    int step;     /* enum rp_step                                 */
    char msg[240];
};

/* Fill err and return -1. The message is fmt's expansion, then ": strerror"
 * when errnum != 0. Async-signal-safe (own formatter: %s %d %u %ld %lu %lld
 * %llu %x %lx %llx %o %c %%). rp_fail_path also records path. */
int rp_fail(struct rp_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int rp_fail_path(struct rp_error *err, int errnum, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *rp_error_path(const struct rp_error *err);
const char *rp_step_name(int step);
/* Bounded formatter used by rp_fail; returns the length written. */
size_t rp_format(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- plan -------------------------------------------------------------- */

uint64_t rp_plan_checksum(const void *data, size_t len);
/* Validates buf (8-byte aligned, len bytes) and fills plan with views into it. */
int rp_plan_open(struct rp_plan *plan, const void *buf, size_t len, struct rp_error *err);
/* A validated string reference; never NULL for a plan that rp_plan_open accepted. */
const char *rp_plan_str(const struct rp_plan *plan, uint32_t ref);
const unsigned char *rp_plan_blob(const struct rp_plan *plan, struct rp_blob ref);
/* 0 if the cached plan still matches: cacheable flag, caller uid/gid, every
 * file dep (stat, following symlinks) and env dep (in envp; NULL = environ). */
int rp_plan_check_deps(const struct rp_plan *plan, char *const envp[], struct rp_error *err);

/* ---- launch ------------------------------------------------------------ */

/* Features the launcher probes once; tests disable some to exercise the
 * fallbacks next to them. */
#define RP_FEAT_OPENAT2       0x01u
#define RP_FEAT_MOUNT_SETATTR 0x02u
#define RP_FEAT_CLOSE_RANGE   0x04u
#define RP_FEAT_PIDFD         0x08u
#define RP_FEAT_MOUNT_API     0x10u  /* fsopen/fsmount/move_mount (5.2) */
#define RP_FEAT_CLONE3        0x20u  /* clone3: one clone makes every namespace, time too (5.3) */
#define RP_FEAT_INTO_CGROUP   0x40u  /* clone3 CLONE_INTO_CGROUP: the node starts in its v2 cgroup (5.7) */
#define RP_FEAT_OPEN_TREE_ATTR 0x80u /* open_tree_attr: a copy of a mount tree with its flags, one call (6.15) */

struct rp_launch_opts {
    char *const *envp;        /* caller's environment for INHERIT; NULL = environ */
    const int *pass_fds;      /* extra descriptors left open in the program       */
    int npass_fds;
    unsigned disable;         /* RP_FEAT_* forced off                             */
    const int *stdio;         /* the program's descriptors 0, 1, 2: 3 fds, -1 = the
                               * caller's; NULL = the caller's three (Python API)    */
    char *const *env_add;     /* "NAME=value" set after the plan's env ops; NULL = none */
    const char *chdir;        /* working directory after the plan's, relative to it;
                               * NULL = the plan's                                 */
    unsigned flags;           /* RP_LAUNCH_*                                      */
};

/* struct rp_launch_opts.flags. With die-with-parent in the plan, the node
 * dies when the launcher's parent dies: the launcher (redwrap) gets the
 * parent-death signal SIGKILL itself, and the node's first process gets it
 * for the launcher. A long-lived program launching nodes (the Python API)
 * sets OWN_LIFE: its life is not tied to its parent's, only the node's to it. */
#define RP_LAUNCH_OWN_LIFE 0x1u

/* The running node. Keep it until rp_wait(): held_fds carry the LOCK ops'
 * locks when no process of the node can hold them (no pid namespace). */
struct rp_child {
    pid_t pid;                /* node's first process (pid 1 of its pid ns, or the program) */
    int pidfd;                /* -1 if the kernel has none                        */
    int nheld;
    int held_fds[RP_MAX_LOCKS];
    pid_t cgroup_owner;       /* names the node's own cgroup:                     */
    uint32_t cgroup_id;       /* <leaf>/run-<owner>.<id hex>; owner 0 = none      */
    int status_fd;            /* early status from pid 1 (rp_launch_early); -1 = none */
};

/* Spawns argv[0] (looked up with the node's PATH after pivot) as the plan
 * says. Returns 0 once the program was exec'd, -1 with err filled if any step
 * failed, in which case nothing of the node is left running. argv reaches
 * the program verbatim. Blocks only for the setup of the node. */
/* Descriptors a launch needs: 0, 1 and 2 open, and an open-file limit
 * (RLIMIT_NOFILE) of at least RP_MIN_FDS, so that a tiny `ulimit -n` fails
 * here with a message rather than half-way (or in an interpreter the cold
 * path starts). 0, or -1 with err (step SPAWN, EBADF or EMFILE). */
#define RP_MIN_FDS 16
int rp_check_descriptors(struct rp_error *err);

int rp_launch(const void *plan, size_t len, char *const argv[],
              const struct rp_launch_opts *opts, struct rp_child *child, struct rp_error *err);
/* rp_launch() for a caller that may return as soon as the program ended: with a
 * new pid namespace and no cgroup op (their cleanup needs every process gone),
 * pid 1 sends the program's status on child->status_fd when the program was
 * the node's last process, then exits; the kernel tears the node down (a few
 * µs per mount) while the caller goes on. */
int rp_launch_early(const void *plan, size_t len, char *const argv[],
                    const struct rp_launch_opts *opts, struct rp_child *child, struct rp_error *err);
/* Waits for the node, closes child's descriptors and returns its status the
 * redwrap way: exit code, or 128+N if it died of signal N. -1 on error. */
int rp_wait(struct rp_child *child, struct rp_error *err);
/* After rp_launch_early(): the program's status (as rp_wait() returns it) as
 * soon as pid 1 sent it, with child's descriptors closed; pid 1 is then still
 * exiting and must not be waited for. -1 if no status came (none asked, other
 * processes left in the node, or pid 1 killed): call rp_wait(). */
int rp_wait_early(struct rp_child *child);
/* Probed kernel features (RP_FEAT_*), computed once. */
unsigned rp_features(void);

/* After rp_wait(), with the plan the node was launched from: 1 if the OOM
 * killer killed a process of this launch (what = "mem.max 64M of node 'app'",
 * the tightest memory limit of the family), else 0. Call before cleanup. */
int rp_cgroup_oom_killed(const struct rp_plan *plan, const struct rp_child *child, char *what, size_t size);
/* After rp_wait(): removes the launch's cgroup, then every family cgroup no
 * other launch uses (leaf to root). 0, or -1 with err naming the directory. */
int rp_cgroup_cleanup(const struct rp_plan *plan, const struct rp_child *child, struct rp_error *err);

const char *rp_version(void);

#endif
