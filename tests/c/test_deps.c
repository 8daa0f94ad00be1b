/* C test driver for rp_plan_check_deps(): for each plan file given, prints
 * "ok" or "stale <errno> <message>" on one line (tests/c/test_deps.py builds
 * the plans and checks the verdicts; built with ASan/UBSan like test_plan). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redpak.h"

static unsigned char *load(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;

    if (!f || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0) {
        perror(path);
        exit(2);
    }
    rewind(f);
    buf = aligned_alloc(8, ((size_t)n + 7) & ~(size_t)7);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        struct rp_error err;
        struct rp_plan plan;
        size_t len;
        unsigned char *buf = load(argv[i], &len);

        memset(&err, 0, sizeof(err));
        if (rp_plan_open(&plan, buf, len, &err) < 0) {
            printf("invalid %s\n", err.msg);
        } else if (rp_plan_check_deps(&plan, NULL, &err) < 0) {
            printf("stale %d %s|%s\n", err.errnum, err.msg, rp_error_path(&err));
        } else {
            printf("ok\n");
        }
        free(buf);
    }
    return 0;
}
