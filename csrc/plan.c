/* Launch-plan validation and access: the only code that interprets plan bytes.
 * Everything is checked once in rp_plan_open(); later readers trust the views. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "redpak.h"

extern char **environ;

uint64_t rp_plan_checksum(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static const uint32_t record_sizes[RP_SEC_RESERVED_FIRST] = {
    [RP_SEC_STRINGS] = 1,
    [RP_SEC_BLOBS] = 1,
    [RP_SEC_PROCESS] = sizeof(struct rp_process),
    [RP_SEC_JOINS] = sizeof(struct rp_join),
    [RP_SEC_MOUNTS] = sizeof(struct rp_mount),
    [RP_SEC_ENV] = sizeof(struct rp_env),
    [RP_SEC_KEEP_FDS] = sizeof(struct rp_keep_fd),
    [RP_SEC_FILE_DEPS] = sizeof(struct rp_file_dep),
    [RP_SEC_ENV_DEPS] = sizeof(struct rp_env_dep),
    [RP_SEC_SECCOMP] = sizeof(struct rp_seccomp),
    [RP_SEC_LANDLOCK] = sizeof(struct rp_landlock_rule),
    [RP_SEC_CGROUP] = sizeof(struct rp_cgroup_op),
    [RP_SEC_SMACK] = sizeof(struct rp_smack),
};

static const char *const section_names[RP_SEC_RESERVED_FIRST] = {
    "strings", "blobs", "process", "joins", "mounts", "env", "keep_fds",
    "file_deps", "env_deps", "seccomp", "landlock", "cgroup", "smack",
};

static int bad(struct rp_error *err, const char *what, unsigned long long value)
{
    err->step = RP_STEP_PLAN;
    return rp_fail(err, 0, "invalid launch plan: %s (%llu)", what, value);
}

static int check_sections(const struct rp_plan_header *h, size_t len, struct rp_error *err)
{
    uint64_t end = sizeof(*h);

    for (unsigned i = 0; i < RP_SEC_SLOTS; i++) {
        const struct rp_plan_section *s = &h->sections[i];
        uint64_t bytes;

        if (i >= RP_SEC_RESERVED_FIRST) {
            if (s->offset || s->count || s->record_size || s->reserved)
                return bad(err, "reserved section slot in use (plan from a newer redpak?)", i);
            continue;
        }
        if (s->record_size != record_sizes[i] || s->reserved) {
            err->step = RP_STEP_PLAN;
            return rp_fail(err, 0, "invalid launch plan: section %s has record size %u, expected %u",
                           section_names[i], s->record_size, record_sizes[i]);
        }
        if (s->count == 0) {
            if (s->offset)
                return bad(err, "empty section with an offset", i);
            continue;
        }
        bytes = (uint64_t)s->count * s->record_size;
        if (s->offset % 8 || s->offset < end || s->offset > len || bytes > len - s->offset) {
            err->step = RP_STEP_PLAN;
            return rp_fail(err, 0, "invalid launch plan: section %s out of bounds (offset %u, %u records)",
                           section_names[i], s->offset, s->count);
        }
        for (uint64_t pad = end; pad < s->offset; pad++)
            if (((const unsigned char *)h)[pad])
                return bad(err, "non-zero padding at offset", pad);
        end = s->offset + bytes;
    }
    if (((end + 7) & ~7ULL) != len)
        return bad(err, "total size does not end at the last section", len);
    for (uint64_t pad = end; pad < len; pad++)
        if (((const unsigned char *)h)[pad])
            return bad(err, "non-zero padding at offset", pad);
    return 0;
}

static const void *section(const struct rp_plan_header *h, enum rp_section k, uint32_t *count)
{
    *count = h->sections[k].count;
    return *count ? (const unsigned char *)h + h->sections[k].offset : NULL;
}

static int check_str(const struct rp_plan *p, uint32_t ref, const char *what, struct rp_error *err)
{
    if (ref >= p->strings_size) {
        err->step = RP_STEP_PLAN;
        return rp_fail(err, 0, "invalid launch plan: %s string reference %u out of table (%u bytes)",
                       what, ref, p->strings_size);
    }
    return 0;
}

static int check_blob(const struct rp_plan *p, struct rp_blob b, const char *what, struct rp_error *err)
{
    if (b.offset > p->blobs_size || b.length > p->blobs_size - b.offset) {
        err->step = RP_STEP_PLAN;
        return rp_fail(err, 0, "invalid launch plan: %s blob [%u, +%u) out of table (%u bytes)",
                       what, b.offset, b.length, p->blobs_size);
    }
    return 0;
}

static int check_abs_path(const struct rp_plan *p, uint32_t ref, const char *what, struct rp_error *err)
{
    const char *s;

    if (check_str(p, ref, what, err) < 0)
        return -1;
    s = p->strings + ref;
    if (s[0] != '/' || strlen(s) >= PATH_MAX) {
        err->step = RP_STEP_PLAN;
        return rp_fail(err, 0, "invalid launch plan: %s '%s' is not an absolute path", what, s);
    }
    return 0;
}

static int single_ns_bit(uint32_t v)
{
    return v && !(v & (v - 1)) && (v & RP_NS_ALL) && v != RP_NS_MNT;
}

static int check_process(const struct rp_plan *p, struct rp_error *err)
{
    const struct rp_process *pr = p->proc;

    if (pr->flags & ~RP_PROC_FLAGS_ALL)
        return bad(err, "unknown process flags", pr->flags);
    if (pr->new_ns & ~RP_NS_ALL)
        return bad(err, "unknown namespace bits", pr->new_ns);
    if (!(pr->new_ns & RP_NS_MNT))
        return bad(err, "the mount namespace must be new", pr->new_ns);
    if ((pr->flags & RP_PROC_SET_UMASK) && pr->umask > 0777)
        return bad(err, "umask out of range", pr->umask);
    if (check_str(p, pr->hostname, "hostname", err) < 0 || check_str(p, pr->chdir, "chdir", err) < 0 ||
        check_str(p, pr->uid_map, "uid_map", err) < 0 || check_str(p, pr->gid_map, "gid_map", err) < 0)
        return -1;
    if (p->strings[pr->chdir] && p->strings[pr->chdir] != '/')
        return check_abs_path(p, pr->chdir, "chdir", err);
    if ((p->strings[pr->uid_map] || p->strings[pr->gid_map]) && !(pr->new_ns & RP_NS_USER))
        return bad(err, "uid/gid maps without a new user namespace", pr->new_ns);
    if ((pr->cap_ambient & ~(pr->cap_permitted & pr->cap_inheritable)) ||
        (pr->cap_effective & ~pr->cap_permitted))
        return bad(err, "capability sets inconsistent (ambient must be in permitted and inheritable, "
                        "effective in permitted)", pr->cap_ambient);
    return 0;
}

/* RP_MOUNT_BENEATH: a bind whose `data` is an absolute directory, a proper
 * prefix of its source ending at a component boundary. */
static int beneath_ok(const struct rp_plan *p, const struct rp_mount *m)
{
    const char *src = p->strings + m->source;
    const char *dir = (const char *)p->blobs + m->data.offset;
    size_t n = m->data.length;

    if (m->kind != RP_MOUNT_BIND && m->kind != RP_MOUNT_BIND_FILE)
        return 0;
    if (n == 0 || dir[0] != '/' || memchr(dir, '\0', n) || strlen(src) <= n || memcmp(src, dir, n))
        return 0;
    return src[n] == '/' || dir[n - 1] == '/';
}

static int check_mount(const struct rp_plan *p, const struct rp_mount *m, uint32_t i, struct rp_error *err)
{
    if (m->kind >= RP_MOUNT_KIND_COUNT)
        return bad(err, "unknown mount kind in op", i);
    if (m->flags & ~RP_MOUNT_FLAGS_ALL)
        return bad(err, "unknown mount flags in op", i);
    if (m->mode > 07777)
        return bad(err, "mode out of range in mount op", i);
    if (check_abs_path(p, m->target, "mount target", err) < 0 || check_str(p, m->source, "mount source", err) < 0 ||
        check_blob(p, m->data, "mount data", err) < 0)
        return -1;
    if ((m->flags & RP_MOUNT_BENEATH) && !beneath_ok(p, m))
        return bad(err, "beneath flag without a node directory prefixing the bind source in op", i);
    switch (m->kind) {
    case RP_MOUNT_BIND:
    case RP_MOUNT_BIND_FILE:
        return check_abs_path(p, m->source, "bind source", err);
    case RP_MOUNT_SYMLINK:
    case RP_MOUNT_EXECFD:
        if (!p->strings[m->source])
            return bad(err, "symlink or execfd op without text", i);
        break;
    case RP_MOUNT_FD:
        if (m->fd < 0)
            return bad(err, "fd op without a descriptor", i);
        break;
    default:
        break;
    }
    if (m->kind != RP_MOUNT_FD && m->fd != -1)
        return bad(err, "descriptor given for a non-fd mount op", i);
    return 0;
}

static int check_records(struct rp_plan *p, struct rp_error *err)
{
    uint32_t nlocks = 0;

    if (check_process(p, err) < 0)
        return -1;
    for (uint32_t i = 0; i < p->njoins; i++) {
        if (!single_ns_bit(p->joins[i].nstype))
            return bad(err, "join of an invalid namespace type", p->joins[i].nstype);
        if (check_abs_path(p, p->joins[i].path, "namespace path", err) < 0)
            return -1;
    }
    for (uint32_t i = 0; i < p->nmounts; i++) {
        if (check_mount(p, &p->mounts[i], i, err) < 0)
            return -1;
        nlocks += p->mounts[i].kind == RP_MOUNT_LOCK;
    }
    if (nlocks > RP_MAX_LOCKS)
        return bad(err, "too many lock ops", nlocks);
    for (uint32_t i = 0; i < p->nenv; i++) {
        const struct rp_env *e = &p->env[i];
        if (e->op >= RP_ENV_OP_COUNT || e->reserved)
            return bad(err, "unknown env op", e->op);
        if (check_str(p, e->name, "env name", err) < 0 || check_str(p, e->value, "env value", err) < 0)
            return -1;
        if (!p->strings[e->name] || strchr(p->strings + e->name, '='))
            return bad(err, "env name empty or holding '=' in entry", i);
    }
    for (uint32_t i = 0; i < p->nkeep_fds; i++)
        if (p->keep_fds[i].fd < 3 || p->keep_fds[i].reserved)
            return bad(err, "kept descriptor below 3", (unsigned)p->keep_fds[i].fd);
    for (uint32_t i = 0; i < p->nfile_deps; i++)
        if (check_abs_path(p, p->file_deps[i].path, "dependency", err) < 0)
            return -1;
        else if (p->file_deps[i].reserved)
            return bad(err, "reserved field set in dependency", i);
    for (uint32_t i = 0; i < p->nenv_deps; i++) {
        const struct rp_env_dep *d = &p->env_deps[i];
        if (check_str(p, d->name, "env dependency", err) < 0 || check_str(p, d->value, "env dependency", err) < 0)
            return -1;
        if ((d->flags & ~RP_ENV_DEP_UNSET) || d->reserved)
            return bad(err, "unknown env dependency flags", d->flags);
    }
    for (uint32_t i = 0; i < p->nseccomp; i++) {
        if (check_blob(p, p->seccomp[i].program, "seccomp", err) < 0)
            return -1;
        if (p->seccomp[i].program.length % 8 || !p->seccomp[i].program.length || p->seccomp[i].flags ||
            p->seccomp[i].reserved)
            return bad(err, "seccomp program not a whole number of BPF instructions", i);
    }
    for (uint32_t i = 0; i < p->nlandlock; i++)
        if (check_abs_path(p, p->landlock[i].path, "landlock path", err) < 0)
            return -1;
    for (uint32_t i = 0; i < p->ncgroup; i++) {
        const struct rp_cgroup_op *c = &p->cgroup[i];
        if (c->op >= RP_CGROUP_OP_COUNT)
            return bad(err, "unknown cgroup op", c->op);
        if (check_abs_path(p, c->path, "cgroup path", err) < 0 || check_str(p, c->file, "cgroup file", err) < 0 ||
            check_str(p, c->value, "cgroup value", err) < 0)
            return -1;
    }
    if (p->nsmack > 1)
        return bad(err, "more than one smack label", p->nsmack);
    for (uint32_t i = 0; i < p->nsmack; i++)
        if (check_str(p, p->smack[i].label, "smack label", err) < 0 || (p->smack[i].flags & ~RP_SMACK_OPTIONAL))
            return bad(err, "invalid smack record", i);
    return 0;
}

int rp_plan_open(struct rp_plan *plan, const void *buf, size_t len, struct rp_error *err)
{
    const struct rp_plan_header *h = buf;
    uint32_t n;

    memset(plan, 0, sizeof(*plan));
    err->step = RP_STEP_PLAN;
    if (!buf || ((uintptr_t)buf % 8))
        return bad(err, "buffer missing or not 8-byte aligned", (uintptr_t)buf % 8);
    if (len < sizeof(*h))
        return bad(err, "shorter than its header", len);
    if (memcmp(h->magic, RP_PLAN_MAGIC, sizeof(h->magic)))
        return bad(err, "bad magic (not a redpak plan)", 0);
    if (h->version != RP_PLAN_VERSION)
        return bad(err, "unsupported version", h->version);
    if (h->header_size != sizeof(*h) || h->nsections != RP_SEC_SLOTS || h->flags)
        return bad(err, "unexpected header size, section count or flags", h->header_size);
    if (h->total_size != len || len > RP_PLAN_MAX_SIZE)
        return bad(err, "total size does not match the buffer (truncated?)", h->total_size);
    if (rp_plan_checksum((const unsigned char *)buf + 32, len - 32) != h->checksum)
        return bad(err, "checksum mismatch (corrupt)", h->checksum);
    if (check_sections(h, len, err) < 0)
        return -1;

    plan->base = buf;
    plan->size = len;
    plan->strings = section(h, RP_SEC_STRINGS, &plan->strings_size);
    plan->blobs = section(h, RP_SEC_BLOBS, &plan->blobs_size);
    if (!plan->strings || plan->strings[0] || plan->strings[plan->strings_size - 1])
        return bad(err, "string table must start and end with NUL", plan->strings_size);
    plan->proc = section(h, RP_SEC_PROCESS, &n);
    if (n != 1)
        return bad(err, "process section must hold one record", n);
    plan->joins = section(h, RP_SEC_JOINS, &plan->njoins);
    plan->mounts = section(h, RP_SEC_MOUNTS, &plan->nmounts);
    plan->env = section(h, RP_SEC_ENV, &plan->nenv);
    plan->keep_fds = section(h, RP_SEC_KEEP_FDS, &plan->nkeep_fds);
    plan->file_deps = section(h, RP_SEC_FILE_DEPS, &plan->nfile_deps);
    plan->env_deps = section(h, RP_SEC_ENV_DEPS, &plan->nenv_deps);
    plan->seccomp = section(h, RP_SEC_SECCOMP, &plan->nseccomp);
    plan->landlock = section(h, RP_SEC_LANDLOCK, &plan->nlandlock);
    plan->cgroup = section(h, RP_SEC_CGROUP, &plan->ncgroup);
    plan->smack = section(h, RP_SEC_SMACK, &plan->nsmack);
    if (check_records(plan, err) < 0) {
        memset(plan, 0, sizeof(*plan));
        return -1;
    }
    return 0;
}

const char *rp_plan_str(const struct rp_plan *plan, uint32_t ref)
{
    return ref < plan->strings_size ? plan->strings + ref : "";
}

const unsigned char *rp_plan_blob(const struct rp_plan *plan, struct rp_blob ref)
{
    return plan->blobs ? plan->blobs + ref.offset : (const unsigned char *)"";
}

static const char *lookup_env(char *const envp[], const char *name)
{
    size_t n = strlen(name);

    for (; envp && *envp; envp++)
        if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
            return *envp + n + 1;
    return NULL;
}

/* The compiler's marker for "this path must not exist" (ABSENT_MTIME in plan.py). */
static int is_absent_dep(const struct rp_file_dep *d)
{
    return d->dev == 0 && d->ino == 0 && d->size == 0 && d->mtime_ns == -1;
}

int rp_plan_check_deps(const struct rp_plan *plan, char *const envp[], struct rp_error *err)
{
    const struct rp_process *pr = plan->proc;

    err->step = RP_STEP_DEPS;
    if (!envp)
        envp = environ;
    if (!(pr->flags & RP_PROC_CACHEABLE))
        return rp_fail(err, 0, "plan is not cacheable");
    if (getuid() != pr->caller_uid || getgid() != pr->caller_gid)
        return rp_fail(err, 0, "plan was compiled for uid %u gid %u, caller is uid %u gid %u",
                       pr->caller_uid, pr->caller_gid, (unsigned)getuid(), (unsigned)getgid());
    for (uint32_t i = 0; i < plan->nfile_deps; i++) {
        const struct rp_file_dep *d = &plan->file_deps[i];
        const char *path = rp_plan_str(plan, d->path);
        struct stat st;

        if (is_absent_dep(d)) {
            /* ENOENT/ENOTDIR prove absence; any other error (EACCES ...) cannot. */
            if (stat(path, &st) == 0)
                return rp_fail_path(err, 0, path, "dependency %s appeared", path);
            if (errno != ENOENT && errno != ENOTDIR)
                return rp_fail_path(err, errno, path, "dependency %s", path);
            continue;
        }
        if (stat(path, &st) < 0)
            return rp_fail_path(err, errno, path, "dependency %s", path);
        if ((uint64_t)st.st_dev != d->dev || (uint64_t)st.st_ino != d->ino || (uint64_t)st.st_size != d->size ||
            (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != d->mtime_ns)
            return rp_fail_path(err, 0, path, "dependency %s changed", path);
    }
    for (uint32_t i = 0; i < plan->nenv_deps; i++) {
        const struct rp_env_dep *d = &plan->env_deps[i];
        const char *name = rp_plan_str(plan, d->name);
        const char *v = lookup_env(envp, name);

        if (d->flags & RP_ENV_DEP_UNSET ? v != NULL : (!v || strcmp(v, rp_plan_str(plan, d->value))))
            return rp_fail(err, 0, "environment variable %s changed", name);
    }
    return 0;
}
