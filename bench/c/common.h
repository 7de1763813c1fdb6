/* Shared helpers of the C bench drivers: a monotonic clock, a tiny PRNG,
 * JSON output and the optional malloc counter (bench/c/malloc_count.c, put
 * in with LD_PRELOAD by the orchestrator for the allocation figures). */
#ifndef RKL_BENCH_COMMON_H
#define RKL_BENCH_COMMON_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <time.h>

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* xorshift64*: reproducible delays for the abort benchmark. */
static uint64_t bench_rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t rng_next(void) {
    bench_rng ^= bench_rng >> 12;
    bench_rng ^= bench_rng << 25;
    bench_rng ^= bench_rng >> 27;
    return bench_rng * 2685821657736338717ull;
}

/* The number of allocations (malloc, calloc, realloc, memalign, ...) made in
 * the process so far, or -1 when the counter is not preloaded. */
static inline long long malloc_count(void) {
    static uint64_t (*fn)(void);
    static int looked;
    if (!looked) {
        *(void **)&fn = dlsym(RTLD_DEFAULT, "bench_malloc_count");
        looked = 1;
    }
    return fn ? (long long)fn() : -1;
}

/* One result line: BENCH {"case": ..., "unit": ..., "values": [...], extra}.
 * The orchestrator (bench/run.py) reads only lines starting with "BENCH ". */
static inline void emit(const char *name, const char *unit, const double *v, int n, const char *extra) {
    printf("BENCH {\"case\":\"%s\",\"unit\":\"%s\",\"values\":[", name, unit);
    for (int i = 0; i < n; i++) printf("%s%.6g", i ? "," : "", v[i]);
    printf("]%s%s}\n", extra && *extra ? "," : "", extra ? extra : "");
    fflush(stdout);
}

static inline void die(const char *what) {
    fprintf(stderr, "bench: %s\n", what);
    exit(2);
}

/* Reads a whole file (the model files are small). */
static inline char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

/* The abort benchmarks' aborting thread (runs with a decode time): wait
 * for the generation's first token, then sleep a random delay below
 * `max_delay_ns`. The latency is measured from just before the abort call,
 * so how long this takes does not enter it. */
static inline void wait_then_delay(sem_t *first, uint64_t max_delay_ns) {
    uint64_t delay = max_delay_ns ? rng_next() % max_delay_ns : 0;
    sem_wait(first);
    sleep_ns(delay);
}

/* With zero-cost tokens a whole generation takes well under a millisecond,
 * less than another thread may need to be scheduled on a busy machine, so
 * the abort is called from the token callback itself (allowed by both APIs)
 * at a random callback 1..1000 of about 4000. */
static inline uint64_t abort_index(void) { return 1 + rng_next() % 1000; }

#endif
