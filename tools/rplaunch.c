/* Developer tool: launch a program from a binary plan file with the C core
 * alone (no Python), once, or N times printing median/p95 launch+exit times.
 *   gcc -O2 -Icsrc -o rplaunch tools/rplaunch.c csrc/[a-z]*.c
 *   rplaunch [-n N] PLAN -- PROGRAM [ARGS...] */
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
    struct rp_error err;
    struct rp_child child;
    FILE *f;
    long len;
    void *buf;
    double *t;

    if (i + 1 < argc && !strcmp(argv[i], "-n"))
        n = atoi(argv[i + 1]), i += 2;
    if (i + 2 >= argc || strcmp(argv[i + 1], "--")) {
        fprintf(stderr, "usage: %s [-n N] PLAN -- PROGRAM [ARGS...]\n", argv[0]);
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
    for (int k = 0; k < (n ? n : 1); k++) {
        double t0 = now();
        if (rp_launch(buf, (size_t)len, argv + i + 2, NULL, &child, &err) < 0) {
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
