/* Developer tool: launch a program from a binary plan file with the C core
 * alone (no Python), once, or N times printing median/p95 launch+exit times.
 *   gcc -O2 -static -Icsrc -o rplaunch tools/rplaunch.c csrc/[a-z]*.c
 *   musl-gcc -O2 -static -Icsrc -idirafter KH -o rplaunch tools/rplaunch.c csrc/[a-z]*.c
 *     (KH: a directory with links to /usr/include/{linux,asm-generic} and the
 *     arch's asm/; musl's static start-up skips glibc's CPU probing, which
 *     costs ~0.3 ms per exec in some VMs: see bench/bench_core.py)
 *   rplaunch [-n N] [-D MASK] PLAN -- PROGRAM [ARGS...]
 * -D turns kernel features off (RP_FEAT_* bits, as rp_launch_opts.disable). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redpak.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int n = 0, i = 1, status = 0;
    struct rp_launch_opts opts = {0};
    struct rp_error err;
    struct rp_child child;
    FILE *f;
    long len;
    void *buf;
    double *t;

    for (; i + 1 < argc && argv[i][0] == '-' && argv[i][1] && !argv[i][2]; i += 2) {
        if (argv[i][1] == 'n')
            n = atoi(argv[i + 1]);
        else if (argv[i][1] == 'D')
            opts.disable = (unsigned)strtoul(argv[i + 1], NULL, 0);
        else
            break;
    }
    if (i + 2 >= argc || strcmp(argv[i + 1], "--")) {
        fprintf(stderr, "usage: %s [-n N] [-D MASK] PLAN -- PROGRAM [ARGS...]\n", argv[0]);
        return 125;
    }
    f = fopen(argv[i], "rb");
    if (!f || fseek(f, 0, SEEK_END) < 0 || (len = ftell(f)) < 0) {
        perror(argv[i]);
        return 125;
    }
    rewind(f);
    buf = aligned_alloc(8, ((size_t)len + 7) & ~(size_t)7);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len)
        return 125;
    fclose(f);
    t = calloc(n ? (size_t)n : 1, sizeof(double));
    if (!t)
        return 125;
    for (int k = 0; k < (n ? n : 1); k++) {
        double t0 = now();
        if (rp_launch(buf, (size_t)len, argv + i + 2, &opts, &child, &err) < 0) {
            fprintf(stderr, "redpak: %s: %s\n", rp_step_name(err.step), err.msg);
            return 125;
        }
        status = rp_wait(&child, &err);
        t[k] = now() - t0;
    }
    if (n) {
        qsort(t, (size_t)n, sizeof(double), cmp);
        printf("%d launches: median %.1f us, p95 %.1f us\n", n, t[n / 2] * 1e6, t[n * 95 / 100] * 1e6);
    }
    return status;
}
