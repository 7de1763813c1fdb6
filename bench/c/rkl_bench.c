/* rkl's side of the benchmarks, through the C API exactly as a user's
 * program calls it. The runtime is the simulator, given by RKL_RUNTIME.
 *
 *   rkl_bench tokens     MODEL ROUNDS             rkl_generate, C callback
 *   rkl_bench stream     MODEL ROUNDS             rkl_stream_next
 *   rkl_bench roundtrip  MODEL ROUNDS             rkl_generate of 1 token
 *   rkl_bench openclose  MODEL ROUNDS             rkl_open + rkl_close
 *   rkl_bench abort      MODEL ROUNDS MAXDELAY_US rkl_abort -> rkl_generate returns
 *   rkl_bench contention MODEL THREADS MODELS GENS
 *   rkl_bench cache-ttft MODEL DIR ROUNDS LEN...   TTFT without / with a prompt cache
 *   rkl_bench cache-load MODEL DIR ROUNDS TOKENS   first and repeated rkl_cache_load
 *   rkl_bench isolation  MODEL SHORTMODEL FAULTMODEL ROUNDS
 *                                           in-process vs RKL_OPEN_ISOLATED, restart
 *
 * Results are "BENCH {json}" lines on stdout (see common.h).
 */
#define _GNU_SOURCE
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <rkl.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

static void check(rkl_status st, const char *what) {
    if (st == RKL_OK) return;
    char msg[1024];
    rkl_last_error_message(msg, sizeof msg);
    fprintf(stderr, "bench: %s: %s: %s\n", what, rkl_status_str(st), msg);
    exit(2);
}

/* Isolation mode for the models opened next (bench_isolation only). */
static int isolated;

static rkl_model *open_model(const char *path) {
    rkl_open_params p;
    check(rkl_open_params_init(&p, sizeof p), "rkl_open_params_init");
    p.model_path = path;
    p.max_context_len = 16384;
#ifdef RKL_OPEN_ISOLATED
    if (isolated) {
        p.flags = RKL_OPEN_ISOLATED;
        p.max_restarts = 1000000; /* the restart benchmark crashes it on purpose */
    }
#endif
    rkl_model *m = NULL;
    check(rkl_open(&p, &m), "rkl_open");
    return m;
}

typedef struct {
    uint64_t bytes;
    sem_t *first; /* posted at the first text when set */
    uint64_t seen;
    uint64_t abort_at; /* call rkl_abort at this callback (1-based), 0: never */
    uint64_t t_abort;
    rkl_model *model;
} Sink;

/* The application's callback: count the bytes, as the raw driver does. */
static int on_token(const char *text, size_t len, void *userdata) {
    (void)text;
    Sink *s = userdata;
    s->bytes += len;
    uint64_t n = __atomic_add_fetch(&s->seen, 1, __ATOMIC_RELAXED);
    if (n == 1 && s->first) sem_post(s->first);
    if (n == s->abort_at) {
        s->t_abort = now_ns();
        rkl_abort(s->model);
    }
    return 0;
}

static rkl_stats generate(rkl_model *m, const char *prompt, uint32_t max_new_tokens, Sink *sink) {
    rkl_generate_params g;
    check(rkl_generate_params_init(&g, sizeof g), "rkl_generate_params_init");
    g.prompt = prompt;
    g.max_new_tokens = max_new_tokens;
    rkl_stats st = {.struct_size = sizeof st};
    Sink scratch = {0};
    check(rkl_generate(m, &g, on_token, sink ? sink : &scratch, &st), "rkl_generate");
    return st;
}

static rkl_stats stream_all(rkl_model *m, const char *prompt, uint32_t max_new_tokens) {
    rkl_generate_params g;
    check(rkl_generate_params_init(&g, sizeof g), "rkl_generate_params_init");
    g.prompt = prompt;
    g.max_new_tokens = max_new_tokens;
    rkl_stream *s = NULL;
    check(rkl_stream_open(m, &g, &s), "rkl_stream_open");
    uint64_t bytes = 0;
    for (;;) {
        const char *text;
        size_t len;
        check(rkl_stream_next(s, -1, &text, &len), "rkl_stream_next");
        if (!text) break;
        bytes += len;
    }
    rkl_stats st = {.struct_size = sizeof st};
    check(rkl_stream_stats(s, &st), "rkl_stream_stats");
    check(rkl_stream_close(s), "rkl_stream_close");
    (void)bytes;
    return st;
}

/* ---------------------------------------------------------------- per token */

static void bench_tokens(const char *model, int rounds, int use_stream, const char *label) {
    rkl_model *m = open_model(model);
    if (use_stream) stream_all(m, "bench", 0);
    else generate(m, "bench", 0, NULL);
    double *ns = calloc((size_t)rounds, sizeof *ns);
    uint32_t tokens = 0;
    for (int i = 0; i < rounds; i++) {
        uint64_t t0 = now_ns();
        rkl_stats st = use_stream ? stream_all(m, "bench", 0) : generate(m, "bench", 0, NULL);
        ns[i] = (double)(now_ns() - t0) / (double)st.tokens;
        tokens = st.tokens;
    }
    char name[64], extra[64];
    snprintf(extra, sizeof extra, "\"tokens\":%u", tokens);
    snprintf(name, sizeof name, "%s_tokens", label);
    emit(name, "ns/token", ns, rounds, extra);
    if (malloc_count() >= 0) {
        uint32_t n1 = tokens / 4, n2 = tokens;
        double per_token[3];
        for (int k = 0; k < 3; k++) {
            long long c0 = malloc_count();
            rkl_stats a = use_stream ? stream_all(m, "bench", n1) : generate(m, "bench", n1, NULL);
            long long c1 = malloc_count();
            rkl_stats b = use_stream ? stream_all(m, "bench", n2) : generate(m, "bench", n2, NULL);
            long long c2 = malloc_count();
            per_token[k] = (double)((c2 - c1) - (c1 - c0)) / (double)(b.tokens - a.tokens);
        }
        snprintf(name, sizeof name, "%s_allocs", label);
        emit(name, "allocs/token", per_token, 3, NULL);
    }
    check(rkl_close(m), "rkl_close");
    free(ns);
}

static void bench_roundtrip(const char *model, int rounds, const char *label) {
    rkl_model *m = open_model(model);
    double *us = calloc((size_t)rounds, sizeof *us);
    for (int i = -10; i < rounds; i++) {
        uint64_t t0 = now_ns();
        rkl_stats st = generate(m, "bench", 1, NULL);
        if (st.tokens != 1) die("1-token generate gave another count");
        if (i >= 0) us[i] = (double)(now_ns() - t0) / 1000.0;
    }
    char name[64];
    snprintf(name, sizeof name, "%s_roundtrip", label);
    emit(name, "us", us, rounds, NULL);
    check(rkl_close(m), "rkl_close");
    free(us);
}

static void bench_openclose(const char *model, int rounds, const char *label) {
    double *us = calloc((size_t)rounds + 1, sizeof *us);
    for (int i = 0; i <= rounds; i++) {
        uint64_t t0 = now_ns();
        rkl_model *m = open_model(model);
        check(rkl_close(m), "rkl_close");
        us[i] = (double)(now_ns() - t0) / 1000.0;
    }
    /* The first open also loads and identifies the runtime. */
    char name[64];
    snprintf(name, sizeof name, "%s_open_first", label);
    emit(name, "us", us, 1, NULL);
    snprintf(name, sizeof name, "%s_openclose", label);
    emit(name, "us", us + 1, rounds, NULL);
    free(us);
}

/* ---------------------------------------------------------------- abort */

typedef struct {
    rkl_model *m;
    sem_t first;
    uint64_t max_delay_ns;
    _Atomic uint64_t t_abort;
    Sink *sink;
    uint64_t seen_at_abort; /* text callbacks before the abort call */
} Aborter;

static void *abort_thread(void *arg) {
    Aborter *a = arg;
    wait_then_delay(&a->first, a->max_delay_ns);
    atomic_store(&a->t_abort, now_ns());
    a->seen_at_abort = __atomic_load_n(&a->sink->seen, __ATOMIC_RELAXED);
    rkl_abort(a->m);
    return NULL;
}

static void bench_abort(const char *model, int rounds, uint64_t max_delay_us) {
    rkl_model *m = open_model(model);
    double *us = calloc((size_t)rounds, sizeof *us), *after = calloc((size_t)rounds, sizeof *after);
    int done = 0;
    for (int i = 0; i < rounds * 5 && done < rounds; i++) {
        Aborter a = {.m = m, .max_delay_ns = max_delay_us * 1000};
        sem_init(&a.first, 0, 0);
        Sink s = {.first = &a.first, .model = m};
        a.sink = &s;
        pthread_t t;
        if (max_delay_us) pthread_create(&t, NULL, abort_thread, &a);
        else s.abort_at = abort_index();
        rkl_stats st = generate(m, "bench", 0, &s);
        uint64_t end = now_ns();
        if (max_delay_us) {
            if (!s.seen) sem_post(&a.first);
            pthread_join(t, NULL);
        } else {
            atomic_store(&a.t_abort, s.t_abort);
            a.seen_at_abort = s.abort_at;
        }
        sem_destroy(&a.first);
        if (st.finish != RKL_FINISH_ABORTED) continue; /* ended before the abort */
        after[done] = (double)(s.seen - a.seen_at_abort);
        us[done++] = (double)(end - atomic_load(&a.t_abort)) / 1000.0;
    }
    if (done == 0) die("abort: no generation was still running at the abort");
    emit("rkl_abort", "us", us, done, NULL);
    emit("rkl_abort_after", "callbacks", after, done, NULL);
    check(rkl_close(m), "rkl_close");
    free(us);
    free(after);
}

/* ---------------------------------------------------------------- contention */

typedef struct {
    rkl_model *m;
    int gens;
    pthread_barrier_t *start;
    double *queue_ms; /* gens values */
    uint64_t tokens;
} Worker;

static void *contention_thread(void *arg) {
    Worker *w = arg;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < w->gens; i++) {
        rkl_stats st = generate(w->m, "bench", 0, NULL);
        w->queue_ms[i] = st.queue_ms;
        w->tokens += st.tokens;
    }
    return NULL;
}

static void bench_contention(const char *model, int threads, int models, int gens) {
    rkl_model *m[2] = {open_model(model), models > 1 ? open_model(model) : NULL};
    generate(m[0], "bench", 0, NULL);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    Worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    double *queue = calloc((size_t)threads * (size_t)gens, sizeof *queue);
    for (int i = 0; i < threads; i++) {
        w[i] = (Worker){.m = m[i % models], .gens = gens, .start = &start, .queue_ms = queue + i * gens};
        pthread_create(&t[i], NULL, contention_thread, &w[i]);
    }
    pthread_barrier_wait(&start);
    uint64_t t0 = now_ns();
    uint64_t tokens = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        tokens += w[i].tokens;
    }
    double wall_ms = (double)(now_ns() - t0) / 1e6;
    char extra[256];
    snprintf(extra, sizeof extra, "\"threads\":%d,\"models\":%d,\"gens\":%d,\"tokens\":%llu,\"wall_ms\":%.3f",
             threads, models, threads * gens, (unsigned long long)tokens, wall_ms);
    emit("contention", "queue_ms", queue, threads * gens, extra);
    for (int i = 0; i < models; i++) check(rkl_close(m[i]), "rkl_close");
    free(w);
    free(t);
    free(queue);
}

/* ---------------------------------------------------------------- prompt cache */

/* A prompt the simulator counts as `tokens` prefill tokens once wrapped in
 * its default template ("<user>" + prompt + "</user><assistant>", 24
 * characters; tokens = ceil(chars / 4)). */
static char *prompt_of(int tokens) {
    static const char words[] = "the quick brown fox jumps over the lazy dog while rkl keeps the npu busy ";
    size_t n = (size_t)(tokens > 6 ? tokens * 4 - 24 : 1);
    char *p = malloc(n + 1);
    for (size_t i = 0; i < n; i++) p[i] = words[i % (sizeof words - 1)];
    p[n] = 0;
    return p;
}

static const char QUESTION[] = " Summary?"; /* the request after the cached part */

static char *concat(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *r = malloc(na + nb + 1);
    memcpy(r, a, na);
    memcpy(r + na, b, nb + 1);
    return r;
}

static double ms_since(uint64_t t0) { return (double)(now_ns() - t0) / 1e6; }

static void save_cache(rkl_model *m, const char *prompt, const char *path, uint64_t *payload_size,
                       char *payload_path, size_t payload_cap, double *save_ms) {
    rkl_generate_params g;
    check(rkl_generate_params_init(&g, sizeof g), "rkl_generate_params_init");
    g.prompt = prompt;
    rkl_cache_info info = {.struct_size = sizeof info};
    uint64_t t0 = now_ns();
    check(rkl_cache_save(m, &g, path, &info), "rkl_cache_save");
    *save_ms = ms_since(t0);
    *payload_size = info.payload_size;
    if (payload_path) snprintf(payload_path, payload_cap, "%s", info.payload_path);
    check(rkl_cache_info_free(&info), "rkl_cache_info_free");
}

static double load_cache(rkl_model *m, const char *path) {
    uint64_t t0 = now_ns();
    check(rkl_cache_load(m, path, NULL), "rkl_cache_load");
    return ms_since(t0);
}

static void bench_cache_ttft(const char *model, const char *dir, int rounds, int nlen, char **lens) {
    rkl_model *m = open_model(model);
    for (int li = 0; li < nlen; li++) {
        int len = atoi(lens[li]);
        char *cached = prompt_of(len);
        char *full = concat(cached, QUESTION);
        char path[4096];
        snprintf(path, sizeof path, "%s/ttft-%d.rklcache", dir, len);
        /* Without a cache: the whole prompt is prefilled. */
        double *cold_real = calloc((size_t)rounds, sizeof(double)), *warm_real = calloc((size_t)rounds, sizeof(double));
        rkl_stats cold = {0}, warm = {0};
        for (int i = 0; i < rounds; i++) {
            cold = generate(m, full, 1, NULL);
            cold_real[i] = cold.ttft_ms;
        }
        uint64_t payload = 0;
        double save_ms;
        char payload_path[4096];
        save_cache(m, cached, path, &payload, payload_path, sizeof payload_path, &save_ms);
        /* A first load, as in a new process: a new mtime/ctime makes sure
         * rkl copies and hashes it (no copy of an earlier state is reused). */
        if (utimensat(AT_FDCWD, payload_path, NULL, 0) != 0) die("utimensat on the payload failed");
        double load_ms = load_cache(m, path);
        for (int i = 0; i < rounds; i++) {
            warm = generate(m, full, 1, NULL);
            warm_real[i] = warm.ttft_ms;
        }
        check(rkl_cache_release(m), "rkl_cache_release");
        char extra[1024];
        snprintf(extra, sizeof extra,
                 "\"len\":%d,\"cold_prefill_tokens\":%u,\"cold_prefill_ms\":%.3f,\"cold_decode_ms\":%.3f,"
                 "\"warm_prefill_tokens\":%u,\"warm_prefill_ms\":%.3f,\"warm_decode_ms\":%.3f,"
                 "\"payload_bytes\":%llu,\"save_ms\":%.3f,\"first_load_ms\":%.3f,\"warm_real\":[",
                 len, cold.prefill_tokens, cold.prefill_ms, cold.decode_ms, warm.prefill_tokens, warm.prefill_ms,
                 warm.decode_ms, (unsigned long long)payload, save_ms, load_ms);
        for (int i = 0; i < rounds; i++) {
            size_t k = strlen(extra);
            snprintf(extra + k, sizeof extra - k, "%s%.6g", i ? "," : "", warm_real[i]);
        }
        strncat(extra, "]", sizeof extra - strlen(extra) - 1);
        emit("cache_ttft", "ms (cold, real)", cold_real, rounds, extra);
        free(cold_real);
        free(warm_real);
        free(cached);
        free(full);
        /* The payloads are large (112 KiB per token): remove them as we go. */
        unlink(payload_path);
        unlink(path);
    }
    check(rkl_close(m), "rkl_close");
}

static void bench_cache_load(const char *model, const char *dir, int rounds, int tokens) {
    rkl_model *m = open_model(model);
    char *cached = prompt_of(tokens);
    char path[4096], payload_path[4096];
    snprintf(path, sizeof path, "%s/load-%d.rklcache", dir, tokens);
    uint64_t payload = 0;
    double save_ms;
    save_cache(m, cached, path, &payload, payload_path, sizeof payload_path, &save_ms);
    double *first = calloc((size_t)rounds, sizeof(double)), *again = calloc((size_t)rounds, sizeof(double));
    for (int i = 0; i < rounds; i++) {
        /* A new mtime/ctime: rkl makes a new sealed copy (and frees the one
         * of the previous state); the repeated load reuses it. */
        if (utimensat(AT_FDCWD, payload_path, NULL, 0) != 0) die("utimensat on the payload failed");
        first[i] = load_cache(m, path);
        check(rkl_cache_release(m), "rkl_cache_release");
        again[i] = load_cache(m, path);
        check(rkl_cache_release(m), "rkl_cache_release");
    }
    char extra[256];
    snprintf(extra, sizeof extra, "\"payload_bytes\":%llu,\"save_ms\":%.3f,\"prompt_tokens\":%d",
             (unsigned long long)payload, save_ms, tokens);
    emit("cache_load_first", "ms", first, rounds, extra);
    emit("cache_load_again", "ms", again, rounds, extra);
    unlink(payload_path);
    unlink(path);
    check(rkl_close(m), "rkl_close");
    free(first);
    free(again);
    free(cached);
}

/* ---------------------------------------------------------------- isolation */

/* The number of child processes of this process (isolation mode's workers). */
static int child_processes(void) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int n = 0;
    pid_t me = getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char p[300], s[1024];
        snprintf(p, sizeof p, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(p, "r"); /* /proc files have no size: read, don't seek */
        if (!f) continue;
        size_t len = fread(s, 1, sizeof s - 1, f);
        fclose(f);
        s[len] = 0;
        char *r = strrchr(s, ')');
        int ppid = 0;
        if (r && sscanf(r + 2, "%*c %d", &ppid) == 1 && ppid == me) n++;
    }
    closedir(d);
    return n;
}

/* In-process and isolated side by side in one process, then the restart
 * time after a crash: the fault model dies of SIGSEGV at its third token;
 * the next request (1 token, before the fault) needs a new worker, which
 * rkl starts on that call. */
static void bench_isolation(const char *model, const char *short_model, const char *fault_model, int rounds) {
#ifndef RKL_OPEN_ISOLATED
    (void)model;
    (void)short_model;
    (void)fault_model;
    (void)rounds;
    printf("isolation mode not available yet (rkl.h has no RKL_OPEN_ISOLATED)\n");
    emit("iso_unavailable", "", NULL, 0, NULL);
#else
    isolated = 1;
    rkl_model *m = open_model(model);
    generate(m, "bench", 1, NULL);
    int children = child_processes();
    check(rkl_close(m), "rkl_close");
    if (children == 0) {
        printf("isolation mode not available yet (RKL_OPEN_ISOLATED started no worker process)\n");
        emit("iso_unavailable", "", NULL, 0, NULL);
        return;
    }
    for (int k = 0; k < 2; k++) { /* in-process, isolated, in-process, isolated */
        isolated = 0;
        bench_tokens(model, rounds, 0, "inproc");
        isolated = 1;
        bench_tokens(model, rounds, 0, "iso");
    }
    isolated = 0;
    bench_roundtrip(short_model, rounds * 20, "inproc");
    bench_openclose(short_model, rounds, "inproc");
    isolated = 1;
    bench_roundtrip(short_model, rounds * 20, "iso");
    bench_openclose(short_model, rounds, "iso");
    double *us = calloc((size_t)rounds, sizeof(double));
    rkl_model *f = open_model(fault_model);
    for (int i = 0; i < rounds; i++) {
        rkl_generate_params g;
        check(rkl_generate_params_init(&g, sizeof g), "rkl_generate_params_init");
        g.prompt = "crash";
        rkl_stats st = {.struct_size = sizeof st};
        Sink sink = {0};
        rkl_status crashed = rkl_generate(f, &g, on_token, &sink, &st);
        if (crashed != RKL_RUNTIME_CRASHED) {
            fprintf(stderr, "bench: isolation: the crashing request returned %s, not RKL_RUNTIME_CRASHED\n",
                    rkl_status_str(crashed));
            exit(2);
        }
        uint64_t t0 = now_ns();
        g.max_new_tokens = 1;
        check(rkl_generate(f, &g, on_token, &sink, &st), "rkl_generate after a crash");
        us[i] = (double)(now_ns() - t0) / 1000.0;
    }
    emit("iso_restart", "us", us, rounds, NULL);
    check(rkl_close(f), "rkl_close");
    free(us);
#endif
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: see the comment at the top of bench/c/rkl_bench.c\n");
        return 2;
    }
    const char *cmd = argv[1], *model = argv[2];
    if (!strcmp(cmd, "tokens")) bench_tokens(model, atoi(argv[3]), 0, "rkl");
    else if (!strcmp(cmd, "stream")) bench_tokens(model, atoi(argv[3]), 1, "stream");
    else if (!strcmp(cmd, "roundtrip")) bench_roundtrip(model, atoi(argv[3]), "rkl");
    else if (!strcmp(cmd, "openclose")) bench_openclose(model, atoi(argv[3]), "rkl");
    else if (!strcmp(cmd, "abort") && argc > 4) bench_abort(model, atoi(argv[3]), strtoull(argv[4], NULL, 10));
    else if (!strcmp(cmd, "contention") && argc > 5)
        bench_contention(model, atoi(argv[3]), atoi(argv[4]) > 1 ? 2 : 1, atoi(argv[5]));
    else if (!strcmp(cmd, "cache-ttft") && argc > 5) bench_cache_ttft(model, argv[3], atoi(argv[4]), argc - 5, argv + 5);
    else if (!strcmp(cmd, "cache-load") && argc > 5) bench_cache_load(model, argv[3], atoi(argv[4]), atoi(argv[5]));
    else if (!strcmp(cmd, "isolation") && argc > 5) bench_isolation(model, argv[3], argv[4], atoi(argv[5]));
    else die("unknown command or missing arguments");
    return 0;
}
