/* Unit tests of the pure C helpers: plan validation (every corrupted byte and
 * truncation of a sample plan is refused without crashing), string access,
 * step names and the formatter. Built with ASan/UBSan by tests/c/Makefile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redpak.h"

static int failures, checks;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        checks++;                                          \
        if (!(cond)) {                                     \
            failures++;                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fputc('\n', stderr);                           \
        }                                                  \
    } while (0)

static unsigned char *load(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;

    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = aligned_alloc(8, ((size_t)n + 7) & ~(size_t)7);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        exit(2);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void reseal(unsigned char *buf, size_t len)
{
    uint64_t sum;

    if (len < 32)
        return;
    sum = rp_plan_checksum(buf + 32, len - 32);
    memcpy(buf + 24, &sum, sizeof(sum));
}

/* Touch everything an accepted plan exposes, so ASan sees any bad view. */
static size_t walk(const struct rp_plan *p)
{
    size_t n = 0;

    n += strlen(rp_plan_str(p, p->proc->hostname)) + strlen(rp_plan_str(p, p->proc->chdir));
    n += strlen(rp_plan_str(p, p->proc->uid_map)) + strlen(rp_plan_str(p, p->proc->gid_map));
    for (uint32_t i = 0; i < p->njoins; i++)
        n += strlen(rp_plan_str(p, p->joins[i].path));
    for (uint32_t i = 0; i < p->nmounts; i++) {
        const struct rp_mount *m = &p->mounts[i];
        const unsigned char *d = rp_plan_blob(p, m->data);
        n += strlen(rp_plan_str(p, m->source)) + strlen(rp_plan_str(p, m->target));
        for (uint32_t k = 0; k < m->data.length; k++)
            n += d[k];
    }
    for (uint32_t i = 0; i < p->nenv; i++)
        n += strlen(rp_plan_str(p, p->env[i].name)) + strlen(rp_plan_str(p, p->env[i].value));
    for (uint32_t i = 0; i < p->nfile_deps; i++)
        n += strlen(rp_plan_str(p, p->file_deps[i].path));
    for (uint32_t i = 0; i < p->nenv_deps; i++)
        n += strlen(rp_plan_str(p, p->env_deps[i].name)) + strlen(rp_plan_str(p, p->env_deps[i].value));
    for (uint32_t i = 0; i < p->nseccomp; i++) {
        const unsigned char *d = rp_plan_blob(p, p->seccomp[i].program);
        for (uint32_t k = 0; k < p->seccomp[i].program.length; k++)
            n += d[k];
    }
    for (uint32_t i = 0; i < p->nlandlock; i++)
        n += strlen(rp_plan_str(p, p->landlock[i].path));
    for (uint32_t i = 0; i < p->ncgroup; i++)
        n += strlen(rp_plan_str(p, p->cgroup[i].path)) + strlen(rp_plan_str(p, p->cgroup[i].value));
    for (uint32_t i = 0; i < p->nsmack; i++)
        n += strlen(rp_plan_str(p, p->smack[i].label));
    return n;
}

static void test_valid(const unsigned char *orig, size_t len)
{
    struct rp_plan plan;
    struct rp_error err = {0};

    CHECK(rp_plan_open(&plan, orig, len, &err) == 0, "sample plan refused: %s", err.msg);
    CHECK(plan.nmounts > 0 && plan.nenv > 0 && plan.njoins > 0, "sample plan should be rich");
    walk(&plan);
}

/* Without resealing, the checksum must catch every single-byte change. */
static void test_corrupt_bytes(const unsigned char *orig, size_t len)
{
    unsigned char *buf = aligned_alloc(8, (len + 7) & ~(size_t)7);
    static const unsigned char xors[] = {0x01, 0x80, 0xff};

    for (size_t i = 0; i < len; i++)
        for (size_t x = 0; x < sizeof(xors); x++) {
            struct rp_plan plan;
            struct rp_error err = {0};

            memcpy(buf, orig, len);
            buf[i] ^= xors[x];
            CHECK(rp_plan_open(&plan, buf, len, &err) < 0, "byte %zu ^ %#x accepted", i, xors[x]);
            CHECK(err.step == RP_STEP_PLAN && err.msg[0], "byte %zu: no plan error message", i);
        }
    free(buf);
}

/* With a valid checksum the structural checks must hold: anything accepted is
 * safe to walk (ASan watches), and structural fields are refused. */
static void test_corrupt_resealed(const unsigned char *orig, size_t len, unsigned seed)
{
    unsigned char *buf = aligned_alloc(8, (len + 7) & ~(size_t)7);
    size_t accepted = 0, refused = 0;

    srand(seed);
    for (size_t i = 0; i < len; i++)
        for (int v = 0; v < 6; v++) {
            struct rp_plan plan;
            struct rp_error err = {0};
            unsigned char nv = v == 0 ? 0 : v == 1 ? 0xff : (unsigned char)rand();

            memcpy(buf, orig, len);
            if (buf[i] == nv)
                continue;
            buf[i] = nv;
            reseal(buf, len);
            if (rp_plan_open(&plan, buf, len, &err) == 0) {
                accepted++;
                walk(&plan);
            } else {
                refused++;
                CHECK(err.msg[0] && err.step == RP_STEP_PLAN, "no message for byte %zu", i);
            }
            if (i < 24) /* magic, version, header size, total size */
                CHECK(rp_plan_open(&plan, buf, len, &err) < 0, "header byte %zu = %#x accepted", i, nv);
        }
    /* random multi-byte damage */
    for (int round = 0; round < 20000; round++) {
        struct rp_plan plan;
        struct rp_error err = {0};

        memcpy(buf, orig, len);
        for (int k = 1 + rand() % 4; k > 0; k--)
            buf[32 + (size_t)rand() % (len - 32)] = (unsigned char)rand();
        reseal(buf, len);
        if (rp_plan_open(&plan, buf, len, &err) == 0)
            walk(&plan);
    }
    printf("resealed corruption: %zu accepted, %zu refused\n", accepted, refused);
    CHECK(refused > 0, "resealed corruption never refused");
    free(buf);
}

static void test_truncated(const unsigned char *orig, size_t len)
{
    for (size_t n = 0; n < len; n++) {
        unsigned char *buf = aligned_alloc(8, n ? (n + 7) & ~(size_t)7 : 8);
        struct rp_plan plan;
        struct rp_error err = {0};

        memcpy(buf, orig, n);
        CHECK(rp_plan_open(&plan, buf, n, &err) < 0, "truncated to %zu accepted", n);
        /* even with size and checksum patched, a cut plan is refused */
        if (n >= 32) {
            uint64_t total = n;
            memcpy(buf + 16, &total, 8);
            reseal(buf, n);
            CHECK(rp_plan_open(&plan, buf, n, &err) < 0, "truncated+resealed to %zu accepted", n);
        }
        free(buf);
    }
}

static void test_misc(const unsigned char *orig, size_t len)
{
    struct rp_plan plan;
    struct rp_error err = {0};
    char buf[64];
    unsigned char *odd = malloc(len + 1);

    memcpy(odd + 1, orig, len);
    CHECK(rp_plan_open(&plan, odd + 1, len, &err) < 0, "misaligned buffer accepted");
    free(odd);
    CHECK(rp_plan_open(&plan, NULL, 0, &err) < 0, "NULL accepted");

    CHECK(!strcmp(rp_step_name(RP_STEP_MOUNT), "mount"), "step name");
    CHECK(!strcmp(rp_step_name(RP_STEP_EXEC), "exec"), "step name");
    CHECK(!strcmp(rp_step_name(-3), "unknown") && !strcmp(rp_step_name(RP_STEP_COUNT), "unknown"), "bad step");
    for (int s = 0; s < RP_STEP_COUNT; s++)
        CHECK(strcmp(rp_step_name(s), "unknown"), "step %d has no name", s);

    rp_format(buf, sizeof(buf), "%s=%d/%u/%x/%o/%lld%%%c", "k", -42, 7u, 255u, 8u, -9000000000LL, '!');
    CHECK(!strcmp(buf, "k=-42/7/ff/10/-9000000000%!"), "format: %s", buf);
    rp_format(buf, 8, "%s", "0123456789");
    CHECK(!strcmp(buf, "0123456"), "format truncation: %s", buf);

    err.step = RP_STEP_MOUNT;
    rp_fail_path(&err, 2, "/data", "bind %s on %s", "/srv", "/data");
    CHECK(!strcmp(err.msg, "bind /srv on /data: No such file or directory"), "msg: %s", err.msg);
    CHECK(!strcmp(rp_error_path(&err), "/data"), "path: %s", rp_error_path(&err));
    rp_fail(&err, 0, "plain");
    CHECK(!strcmp(err.msg, "plain") && !strcmp(rp_error_path(&err), ""), "plain msg");

    CHECK(rp_plan_checksum("", 0) == 0xcbf29ce484222325ULL, "fnv empty");
    CHECK(rp_plan_checksum("a", 1) == 0xaf63dc4c8601ec8cULL, "fnv a");
}

int main(int argc, char **argv)
{
    size_t len;
    unsigned char *orig;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SAMPLE_PLAN\n", argv[0]);
        return 2;
    }
    orig = load(argv[1], &len);
    test_valid(orig, len);
    test_misc(orig, len);
    test_corrupt_bytes(orig, len);
    test_truncated(orig, len);
    test_corrupt_resealed(orig, len, 1);
    free(orig);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
