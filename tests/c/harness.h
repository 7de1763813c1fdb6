/* A tiny test harness for the C tests: CHECK / CHECK_ST inside test
 * functions, RUN(test) in main, and a closing "N passed, M failed" line.
 * Single-threaded bookkeeping: call CHECK only on the main thread. */
#ifndef RKL_TEST_HARNESS_H
#define RKL_TEST_HARNESS_H

#include <rkl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int h_passed, h_failed, h_check_failures;
static const char *h_test = "";

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            h_check_failures++;                                                       \
            fprintf(stderr, "%s:%d: in %s: CHECK(%s) failed\n", __FILE__, __LINE__,  \
                    h_test, #cond);                                                   \
        }                                                                             \
    } while (0)

/* Checks a status; on a mismatch prints both statuses and the last message. */
#define CHECK_ST(expr, want)                                                          \
    do {                                                                              \
        rkl_status h_got_ = (expr);                                                   \
        if (h_got_ != (want)) {                                                       \
            char h_msg_[512];                                                         \
            rkl_last_error_message(h_msg_, sizeof h_msg_);                            \
            h_check_failures++;                                                       \
            fprintf(stderr, "%s:%d: in %s: %s gave %d (%s), want %d (%s): %s\n",      \
                    __FILE__, __LINE__, h_test, #expr, (int)h_got_,                   \
                    rkl_status_str(h_got_), (int)(want), rkl_status_str(want), h_msg_); \
        }                                                                             \
    } while (0)

/* Checks that the last error message contains `needle`. */
#define CHECK_MSG(needle)                                                             \
    do {                                                                              \
        char h_msg_[1024];                                                            \
        rkl_last_error_message(h_msg_, sizeof h_msg_);                                \
        if (!strstr(h_msg_, (needle))) {                                              \
            h_check_failures++;                                                       \
            fprintf(stderr, "%s:%d: in %s: last error \"%s\" lacks \"%s\"\n",         \
                    __FILE__, __LINE__, h_test, h_msg_, (needle));                    \
        }                                                                             \
    } while (0)

#define RUN(test)                                                                     \
    do {                                                                              \
        h_test = #test;                                                               \
        h_check_failures = 0;                                                         \
        test();                                                                       \
        if (h_check_failures) {                                                       \
            h_failed++;                                                               \
            printf("FAIL %s\n", #test);                                               \
        } else {                                                                      \
            h_passed++;                                                               \
            printf("ok   %s\n", #test);                                               \
        }                                                                             \
        fflush(stdout);                                                               \
    } while (0)

static int h_collect(const char *text, size_t len, void *userdata);
static void h_sleep_ms(long ms);
static void h_text_init(void *t);

static int h_finish(void) {
    /* Not every program uses every helper. */
    (void)h_collect;
    (void)h_sleep_ms;
    (void)h_text_init;
    printf("%d passed, %d failed\n", h_passed, h_failed);
    return h_failed ? 1 : 0;
}

/* Whether the run should be short (under valgrind). */
static int h_quick(void) {
    const char *q = getenv("RKL_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

static void h_sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* Writes a simulator model file ("RKLLM-SIM 1" + `body`) into $RKL_TEST_TMP
 * and returns its path (static storage; one per `name`). */
static const char *h_model(const char *name, const char *body) {
    static char paths[16][512];
    static int next;
    const char *dir = getenv("RKL_TEST_TMP");
    char *path = paths[next++ % 16];
    FILE *f;
    if (!dir || !*dir) dir = "/tmp";
    snprintf(path, 512, "%s/%ld-%s.sim", dir, (long)getpid(), name);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fprintf(f, "RKLLM-SIM 1\n%s\n", body);
    fclose(f);
    return path;
}

/* The ABI the simulator imitates in this run. */
static const char *h_abi(void) {
    const char *abi = getenv("RKLLM_SIM_ABI");
    return abi && *abi ? abi : "1.3";
}

/* Opens `model_path` with default parameters; exits on failure. */
static rkl_model *h_open(const char *model_path) {
    rkl_open_params p;
    rkl_model *m = NULL;
    rkl_status st;
    rkl_open_params_init(&p, sizeof p);
    p.model_path = model_path;
    st = rkl_open(&p, &m);
    if (st != RKL_OK) {
        char msg[512];
        rkl_last_error_message(msg, sizeof msg);
        fprintf(stderr, "cannot open %s: %s: %s\n", model_path, rkl_status_str(st), msg);
        exit(2);
    }
    return m;
}

/* A growing text buffer for token callbacks. */
typedef struct {
    char text[8192];
    size_t len;
    int calls;
    int nul_ok; /* every chunk was NUL-terminated at text[len] */
} h_text;

static int h_collect(const char *text, size_t len, void *userdata) {
    h_text *t = (h_text *)userdata;
    if (text[len] != '\0') t->nul_ok = 0;
    if (t->len + len < sizeof t->text) {
        memcpy(t->text + t->len, text, len);
        t->len += len;
        t->text[t->len] = '\0';
    }
    t->calls++;
    return 0;
}

static void h_text_init(void *text) {
    h_text *t = (h_text *)text;
    memset(t, 0, sizeof *t);
    t->nul_ok = 1;
}

#endif
