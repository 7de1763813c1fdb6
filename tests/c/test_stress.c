/* A long loop of the whole C API for leak checkers (valgrind, LeakSanitizer):
 * RKL_STRESS_CYCLES cycles (default 300; 40 with RKL_TEST_QUICK) of open, generate, stream read to
 * the end, stream closed mid-way, abort, cache save/inspect/load/release,
 * model info and close, plus a thread that generates while the main thread
 * closes the model under it. Every status is checked; the leak checker
 * checks the rest. */
#include "harness.h"

#include <dlfcn.h>
#include <pthread.h>

#define REPLY "reply = L[{prompt}] héllo ✓ 🚀 日本語 done\nkv_bytes_per_token = 64\n"
#define EXPECT(prompt) "L[" prompt "] héllo ✓ 🚀 日本語 done"

static int cycles(void) {
    const char *c = getenv("RKL_STRESS_CYCLES");
    int n = c && *c ? atoi(c) : h_quick() ? 40 : 300;
    return n > 0 ? n : 1;
}

static rkl_generate_params params_for(const char *prompt) {
    rkl_generate_params g;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = prompt;
    return g;
}

static int stop_after_two(const char *text, size_t len, void *userdata) {
    (void)text;
    (void)len;
    return ++*(int *)userdata >= 2;
}

typedef struct {
    rkl_model *model;
    rkl_status status;
    rkl_stats stats;
} gen_job;

static void *generate_job(void *arg) {
    gen_job *job = (gen_job *)arg;
    rkl_generate_params g = params_for("racing");
    job->stats.struct_size = sizeof job->stats;
    job->status = rkl_generate(job->model, &g, NULL, NULL, &job->stats);
    return NULL;
}

static void one_cycle(const char *model_path, const char *cache_path, int i) {
    rkl_model *m = h_open(model_path);
    rkl_generate_params g = params_for("x");
    rkl_stats st;
    h_text text;
    rkl_stream *s = NULL;
    const char *piece;
    size_t len;
    char streamed[512];
    size_t streamed_len = 0;

    /* Generate by callback, exact text. */
    h_text_init(&text);
    st.struct_size = sizeof st;
    CHECK_ST(rkl_generate(m, &g, h_collect, &text, &st), RKL_OK);
    CHECK(strcmp(text.text, EXPECT("x")) == 0);
    CHECK(st.finish == RKL_FINISH_END);

    /* A callback that stops. */
    {
        int calls = 0;
        CHECK_ST(rkl_generate(m, &g, stop_after_two, &calls, &st), RKL_OK);
        CHECK(st.finish == RKL_FINISH_STOPPED);
    }

    /* A stream read to the end, then its stats. */
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    for (;;) {
        rkl_status r = rkl_stream_next(s, -1, &piece, &len);
        CHECK_ST(r, RKL_OK);
        if (r != RKL_OK || !piece) break;
        if (streamed_len + len < sizeof streamed) {
            memcpy(streamed + streamed_len, piece, len);
            streamed_len += len;
        }
    }
    streamed[streamed_len] = '\0';
    CHECK(strcmp(streamed, EXPECT("x")) == 0);
    CHECK_ST(rkl_stream_stats(s, &st), RKL_OK);
    CHECK_ST(rkl_stream_close(s), RKL_OK);

    /* A stream closed after its first piece, another aborted unread. */
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_stream_next(s, -1, &piece, &len), RKL_OK);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_stream_abort(s), RKL_OK);
    CHECK_ST(rkl_stream_close(s), RKL_OK);

    /* Model info; an abort with nothing running. */
    {
        rkl_model_details d;
        d.struct_size = sizeof d;
        CHECK_ST(rkl_model_info(m, &d), RKL_OK);
        CHECK(strcmp(d.family, h_abi()) == 0);
    }
    CHECK_ST(rkl_abort(m), RKL_OK);

    /* Every fourth cycle: a prompt cache saved, inspected, loaded, used. */
    if (i % 4 == 0) {
        rkl_cache_info info;
        rkl_generate_params c = params_for("a cached prefix");
        rkl_generate_params q = params_for("a cached prefix, and more");
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        CHECK_ST(rkl_cache_save(m, &c, cache_path, &info), RKL_OK);
        CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
        CHECK_ST(rkl_cache_inspect(cache_path, &info), RKL_OK);
        CHECK(info.verdict == RKL_VERDICT_VALID);
        CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
        CHECK_ST(rkl_cache_load(m, cache_path, &info), RKL_OK);
        CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
        h_text_init(&text);
        CHECK_ST(rkl_generate(m, &q, h_collect, &text, NULL), RKL_OK);
        CHECK(strcmp(text.text, EXPECT(", and more")) == 0);
        CHECK_ST(rkl_cache_release(m), RKL_OK);
    }

    CHECK_ST(rkl_close(m), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK); /* twice: harmless */
}

/* Closes a model while a thread generates on it (a slow model, so that the
 * close lands mid-run). */
static void racing_close(const char *slow_path) {
    rkl_model *m = h_open(slow_path);
    pthread_t t;
    gen_job job;
    memset(&job, 0, sizeof job);
    job.model = m;
    pthread_create(&t, NULL, generate_job, &job);
    h_sleep_ms(2);
    CHECK_ST(rkl_close(m), RKL_OK);
    pthread_join(t, NULL);
    CHECK(job.status == RKL_OK || job.status == RKL_BAD_HANDLE || job.status == RKL_CLOSED);
}

/* The simulator's counters (violations, live handles, runs, caches): a
 * handle rkl forgot to destroy is still reachable, so leak checkers miss it;
 * the runtime's own count does not. */
static void sim_stats(unsigned long long out[4]) {
    void *lib = dlopen(getenv("RKL_RUNTIME"), RTLD_NOW | RTLD_NOLOAD);
    void (*f)(unsigned long long *) = NULL;
    memset(out, 0, 4 * sizeof out[0]);
    if (!lib) return;
    *(void **)&f = dlsym(lib, "rkllm_sim_stats");
    if (f) f(out);
    dlclose(lib);
}

static void test_long_loop(void) {
    const char *model_path = h_model("stress", REPLY "time_scale = 0\n");
    /* About 1 ms per token. */
    const char *slow_path = h_model("stress-slow", REPLY "time_scale = 0.02\n");
    char cache_path[600];
    int n = cycles(), i;
    const char *dir = getenv("RKL_TEST_TMP");
    snprintf(cache_path, sizeof cache_path, "%s/%ld-stress.rklcache", dir && *dir ? dir : "/tmp", (long)getpid());
    for (i = 0; i < n && !h_check_failures; i++) {
        if (i % 8 == 1)
            racing_close(slow_path);
        else
            one_cycle(model_path, cache_path, i);
    }
    printf("     %d cycles of open/generate/stream/abort/cache/close\n", i);
    {
        unsigned long long stats[4];
        sim_stats(stats);
        CHECK(stats[2] > 0);  /* the counters were found */
        CHECK(stats[0] == 0); /* never two calls inside the runtime at once */
        CHECK(stats[1] == 0); /* every runtime handle destroyed */
        printf("     %llu runs, %llu caches written, %llu runtime handles left\n", stats[2], stats[3], stats[1]);
    }
}

int main(void) {
    RUN(test_long_loop);
    return h_finish();
}
