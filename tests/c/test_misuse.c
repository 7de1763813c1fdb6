/* Every misuse of rkl.h gives a status and a message, never a crash: NULLs,
 * bad and garbage handles, double close, wrong struct_size, bad text,
 * callbacks that stop, abort or call back in, closing a model while another
 * thread generates on it, streams closed mid-way. */
#include "harness.h"

#include <stddef.h>

#include <math.h>
#include <pthread.h>

#define REPLY "reply = R[{prompt}] héllo wörld ✓ 🚀 ünïcödé 日本語 and some more words to make it last\n"

static const char *fast_model(void) {
    return h_model("fast", REPLY);
}

/* Slow enough to be stopped mid-way: about 2 ms per token. */
static const char *slow_model(void) {
    return h_model("slow", REPLY "time_scale = 0.05\n");
}

static rkl_generate_params params_for(const char *prompt) {
    rkl_generate_params g;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = prompt;
    return g;
}

static void test_null_arguments(void) {
    rkl_open_params p;
    rkl_model *m = NULL;
    rkl_generate_params g = params_for("x");
    rkl_stream *s = NULL;
    const char *text;
    size_t len;

    CHECK_ST(rkl_open_params_init(NULL, sizeof p), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_generate_params_init(NULL, sizeof g), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_open(NULL, &m), RKL_NULL_ARGUMENT);
    CHECK_MSG("params is NULL");
    rkl_open_params_init(&p, sizeof p);
    CHECK_ST(rkl_open(&p, &m), RKL_NULL_ARGUMENT); /* model_path NULL */
    CHECK_MSG("model_path");
    p.model_path = fast_model();
    CHECK_ST(rkl_open(&p, NULL), RKL_NULL_ARGUMENT);
    CHECK(m == NULL); /* out-parameters only on success */

    m = h_open(fast_model());
    CHECK_ST(rkl_generate(m, NULL, NULL, NULL, NULL), RKL_NULL_ARGUMENT);
    g.prompt = NULL;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_NULL_ARGUMENT);
    CHECK_MSG("prompt");
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_NULL_ARGUMENT);
    g.prompt = "x";
    CHECK_ST(rkl_stream_open(m, &g, NULL), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_model_info(m, NULL), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_kv_cache_tokens(m, NULL), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_set_chat_template(m, NULL, "", ""), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_set_chat_template(m, "", NULL, ""), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_set_chat_template(m, "", "", NULL), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_set_function_tools(m, NULL, "[]", "r"), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_set_function_tools(m, "", NULL, "r"), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_set_function_tools(m, "", "[]", NULL), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_load_lora(m, NULL, "n", 1.0f), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_load_lora(m, fast_model(), NULL, 1.0f), RKL_NULL_ARGUMENT);

    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_stream_next(s, -1, NULL, &len), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_stream_next(s, -1, &text, NULL), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_stream_stats(s, NULL), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_bad_handles(void) {
    rkl_model *m = h_open(fast_model());
    rkl_generate_params g = params_for("x");
    rkl_stream *s = NULL;
    int local = 42;
    rkl_model *garbage[4];
    rkl_model_details info;
    const char *text;
    size_t len;
    uint32_t n;
    int i;

    garbage[0] = (rkl_model *)(void *)&local;        /* a real address */
    garbage[1] = (rkl_model *)(uintptr_t)0x1234;       /* small number */
    garbage[2] = (rkl_model *)(uintptr_t)~(uintptr_t)0; /* all ones */
    garbage[3] = (rkl_model *)(void *)&g;
    info.struct_size = sizeof info;

    for (i = 0; i < 4; i++) {
        CHECK_ST(rkl_generate(garbage[i], &g, NULL, NULL, NULL), RKL_BAD_HANDLE);
        CHECK_ST(rkl_abort(garbage[i]), RKL_BAD_HANDLE);
        CHECK_ST(rkl_model_info(garbage[i], &info), RKL_BAD_HANDLE);
        CHECK_ST(rkl_close(garbage[i]), RKL_BAD_HANDLE);
        CHECK_ST(rkl_stream_close((rkl_stream *)(void *)garbage[i]), RKL_BAD_HANDLE);
        CHECK_ST(rkl_stream_next((rkl_stream *)(void *)garbage[i], 0, &text, &len), RKL_BAD_HANDLE);
    }
    CHECK_MSG("not a stream handle issued by rkl");
    CHECK_ST(rkl_generate(NULL, &g, NULL, NULL, NULL), RKL_BAD_HANDLE);
    CHECK_MSG("NULL");
    CHECK_ST(rkl_stream_next(NULL, 0, &text, &len), RKL_BAD_HANDLE);
    CHECK_ST(rkl_stream_stats(NULL, NULL), RKL_BAD_HANDLE);
    CHECK_ST(rkl_stream_abort(NULL), RKL_BAD_HANDLE);
    CHECK_ST(rkl_kv_cache_tokens(NULL, &n), RKL_BAD_HANDLE);
    CHECK_ST(rkl_clear_history(NULL, 0), RKL_BAD_HANDLE);
    CHECK_ST(rkl_set_chat_template(NULL, "", "", ""), RKL_BAD_HANDLE);
    CHECK_ST(rkl_set_function_tools(NULL, "", "[]", ""), RKL_BAD_HANDLE);
    CHECK_ST(rkl_load_lora(NULL, "x", "y", 1.0f), RKL_BAD_HANDLE);
    CHECK_ST(rkl_abort(NULL), RKL_BAD_HANDLE);

    /* A stream handle where a model is expected, and the other way round. */
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_generate((rkl_model *)(void *)s, &g, NULL, NULL, NULL), RKL_BAD_HANDLE);
    CHECK_MSG("a stream handle was passed where a model handle is expected");
    CHECK_ST(rkl_close((rkl_model *)(void *)s), RKL_BAD_HANDLE);
    CHECK_ST(rkl_stream_next((rkl_stream *)(void *)m, 0, &text, &len), RKL_BAD_HANDLE);
    CHECK_MSG("a model handle was passed where a stream handle is expected");
    CHECK_ST(rkl_stream_close((rkl_stream *)(void *)m), RKL_BAD_HANDLE);
    /* Neither was harmed. */
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_closed_and_double_close(void) {
    rkl_model *m = h_open(fast_model());
    rkl_generate_params g = params_for("x");
    rkl_stream *s = NULL;
    const char *text;
    size_t len;
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_stream_close(s), RKL_OK); /* twice: harmless */
    CHECK_ST(rkl_stream_next(s, 0, &text, &len), RKL_BAD_HANDLE);
    CHECK_MSG("closed");
    CHECK_ST(rkl_close(m), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK); /* twice: harmless */
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_BAD_HANDLE);
    CHECK_MSG("the model handle was closed");
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_BAD_HANDLE);
    CHECK_ST(rkl_abort(m), RKL_BAD_HANDLE);
    /* A new model never reuses the old handle. */
    {
        rkl_model *m2 = h_open(fast_model());
        CHECK(m2 != m);
        CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_BAD_HANDLE);
        CHECK_ST(rkl_close(m2), RKL_OK);
    }
}

/* A caller struct with room for fields from a "newer header". */
typedef struct {
    rkl_open_params p;
    unsigned char newer[24];
} bigger_open_params;

static void test_struct_size(void) {
    rkl_open_params p;
    rkl_generate_params g;
    rkl_stats st;
    rkl_model_details info;
    bigger_open_params big;
    rkl_model *m = NULL;
    unsigned char *tail;
    size_t i;

    CHECK_ST(rkl_open_params_init(&p, 4), RKL_INVALID_ARGUMENT);
    CHECK_MSG("struct_size");
    CHECK_ST(rkl_generate_params_init(&g, offsetof(rkl_generate_params, cache_prefix_bytes) - 1), RKL_INVALID_ARGUMENT);
    /* A garbage size is refused before anything is zeroed or read: 2 GiB
     * zeroed from here (or scanned for set bytes) would crash. */
    memset(&p, 0x5a, sizeof p);
    CHECK_ST(rkl_open_params_init(&p, (size_t)1 << 31), RKL_INVALID_ARGUMENT);
    CHECK_MSG("4096");
    CHECK(((unsigned char *)&p)[sizeof p - 1] == 0x5a);
    CHECK_ST(rkl_generate_params_init(&g, 4097), RKL_INVALID_ARGUMENT);
    rkl_open_params_init(&p, sizeof p);
    p.model_path = fast_model();
    p.struct_size = (size_t)1 << 30;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    CHECK(m == NULL);

    rkl_open_params_init(&p, sizeof p);
    p.model_path = fast_model();
    p.struct_size = 0;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    /* Shorter than version 1 of the struct (which ended before `flags`). */
    p.struct_size = offsetof(rkl_open_params, flags) - 4;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    CHECK(m == NULL);

    /* Newer caller: extra bytes all zero are fine... */
    memset(&big, 0x77, sizeof big);
    CHECK_ST(rkl_open_params_init(&big.p, sizeof big), RKL_OK);
    CHECK(big.p.struct_size == sizeof big);
    for (i = 0; i < sizeof big.newer; i++) CHECK(big.newer[i] == 0);
    big.p.model_path = fast_model();
    CHECK_ST(rkl_open(&big.p, &m), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
    m = NULL;
    /* ...a set field this library does not know is refused. */
    big.newer[5] = 1;
    CHECK_ST(rkl_open(&big.p, &m), RKL_INVALID_ARGUMENT);
    CHECK_MSG("does not have");
    CHECK(m == NULL);

    m = h_open(fast_model());
    g = params_for("x");
    /* Output structs: too small is refused before any work... */
    memset(&st, 0, sizeof st);
    st.struct_size = 8;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, &st), RKL_INVALID_ARGUMENT);
    CHECK(st.tokens == 0);
    info.struct_size = 0;
    CHECK_ST(rkl_model_info(m, &info), RKL_INVALID_ARGUMENT);
    /* ...larger is written only up to what the library knows. */
    {
        unsigned char buf[sizeof(rkl_stats) + 16];
        rkl_stats *big_st = (rkl_stats *)(void *)buf;
        memset(buf, 0xab, sizeof buf);
        big_st->struct_size = sizeof buf;
        CHECK_ST(rkl_generate(m, &g, NULL, NULL, big_st), RKL_OK);
        CHECK(big_st->struct_size == sizeof buf);
        CHECK(big_st->finish == RKL_FINISH_END);
        tail = buf + sizeof(rkl_stats);
        for (i = 0; i < 16; i++) CHECK(tail[i] == 0xab);
    }
    /* A bool field holding garbage (e.g. an uninitialised struct). */
    memset(&g.enable_thinking, 7, 1);
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_INVALID_ARGUMENT);
    CHECK_MSG("bool");
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_bad_values(void) {
    rkl_open_params p;
    rkl_generate_params g;
    rkl_model *m = NULL;

    rkl_open_params_init(&p, sizeof p);
    p.model_path = fast_model();
    p.top_p = 1.5f;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    CHECK_MSG("top_p");
    p.top_p = NAN;
    p.skip_special_token = 2;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    CHECK_MSG("skip_special_token");
    p.skip_special_token = RKL_UNSET;
    p.enabled_cpus_num = 9;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    p.enabled_cpus_num = RKL_UNSET;
    p.max_context_len = 0;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    p.max_context_len = RKL_UNSET;
    p.runtime_abi = "9.9";
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    CHECK_MSG("unknown runtime ABI");
    p.runtime_abi = "1.1.4";
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    CHECK_MSG("1.1 or older");
    /* 1.2.0 is a family of its own, told by its symbols: not this runtime. */
    p.runtime_abi = "1.2.0";
    CHECK_ST(rkl_open(&p, &m), RKL_RUNTIME_UNSUPPORTED);
    /* An explicit ABI that contradicts certain detection. */
    p.runtime_abi = strcmp(h_abi(), "1.2") == 0 ? "1.3" : "1.2";
    CHECK_ST(rkl_open(&p, &m), RKL_RUNTIME_UNSUPPORTED);
    p.runtime_abi = NULL;
    CHECK(m == NULL);

    m = h_open(fast_model());
    g = params_for("x");
    g.role = 7;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_INVALID_ARGUMENT);
    CHECK_MSG("role");
    g.role = RKL_ROLE_USER;
    g.max_new_tokens = 0x80000000u;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_INVALID_ARGUMENT);
    g.max_new_tokens = 0;
    CHECK_ST(rkl_load_lora(m, fast_model(), "", 1.0f), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_load_lora(m, fast_model(), "n", NAN), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_load_lora(m, "/nonexistent/adapter.bin", "n", 1.0f), RKL_MODEL_NOT_FOUND);
    CHECK_ST(rkl_set_log_callback(NULL, 99, NULL), RKL_OK); /* removing ignores the level */
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void log_nothing(rkl_log_level level, const char *target, const char *message, void *userdata) {
    (void)level;
    (void)target;
    (void)message;
    (void)userdata;
}

static void test_bad_log_level(void) {
    CHECK_ST(rkl_set_log_callback(log_nothing, 6, NULL), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_set_log_callback(log_nothing, -1, NULL), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_set_log_callback(log_nothing, RKL_LOG_OFF, NULL), RKL_OK);
    CHECK_ST(rkl_set_log_callback(NULL, 0, NULL), RKL_OK);
}

typedef struct {
    int calls;
    rkl_status nested;
} log_reentry;

static void log_and_reenter(rkl_log_level level, const char *target, const char *message, void *userdata) {
    log_reentry *r = (log_reentry *)userdata;
    (void)level;
    (void)target;
    (void)message;
    if (r->calls++ == 0) r->nested = rkl_set_log_callback(NULL, 0, NULL);
}

/* Changing the log callback from inside it is refused, not a deadlock. */
static void test_log_callback_reentry(void) {
    log_reentry r = {0, RKL_OK};
    rkl_model *m;
    CHECK_ST(rkl_set_log_callback(log_and_reenter, RKL_LOG_DEBUG, &r), RKL_OK);
    m = h_open(fast_model()); /* logs "opened ..." at debug level */
    CHECK_ST(rkl_set_log_callback(NULL, 0, NULL), RKL_OK);
    CHECK(r.calls >= 1);
    CHECK(r.nested == RKL_REENTRANT);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* The runtime failing mid-generation: a status for rkl_generate; for a
 * stream, the error once and then the end with RKL_FINISH_ERROR. */
static void test_runtime_error_midway(void) {
    rkl_model *m = h_open(h_model("faulty", REPLY "fault = error@token:3\n"));
    rkl_generate_params g = params_for("fail");
    rkl_stats st = {0};
    rkl_stream *s = NULL;
    const char *text;
    size_t len;
    int guard = 0;
    rkl_status r;
    st.struct_size = sizeof st;
    st.tokens = 4242;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, &st), RKL_RUNTIME_FAILED);
    CHECK_MSG("generation failed");
    CHECK(st.tokens == 4242); /* not written on failure */
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    while ((r = rkl_stream_next(s, -1, &text, &len)) == RKL_OK && text && guard++ < 1000) {
    }
    CHECK_ST(r, RKL_RUNTIME_FAILED);
    CHECK_ST(rkl_stream_next(s, -1, &text, &len), RKL_OK);
    CHECK(text == NULL);
    CHECK_ST(rkl_stream_stats(s, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_ERROR);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_not_utf8(void) {
    rkl_open_params p;
    rkl_model *m = NULL;
    rkl_generate_params g;
    rkl_stream *s = NULL;
    static const char bad[] = {'a', (char)0xff, (char)0xfe, 'b', 0};
    static const char cut[] = {'o', 'k', (char)0xc3, 0}; /* a cut 2-byte character */

    rkl_open_params_init(&p, sizeof p);
    p.model_path = bad;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    CHECK_MSG("UTF-8");
    m = h_open(fast_model());
    g = params_for(bad);
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_INVALID_ARGUMENT);
    CHECK_MSG("params->prompt is not valid UTF-8 (invalid byte at offset 1)");
    g.prompt = cut;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_INVALID_ARGUMENT);
    CHECK(s == NULL);
    g.prompt = "fine";
    g.lora = bad;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_set_chat_template(m, bad, "", ""), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_set_function_tools(m, "", bad, ""), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_load_lora(m, fast_model(), bad, 1.0f), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_open_failures(void) {
    rkl_open_params p;
    rkl_model *m = NULL;
    const char *tmp = getenv("RKL_TEST_TMP");
    rkl_open_params_init(&p, sizeof p);

    p.model_path = "/nonexistent/model.rkllm";
    CHECK_ST(rkl_open(&p, &m), RKL_MODEL_NOT_FOUND);
    CHECK_MSG("/nonexistent/model.rkllm");
    p.model_path = tmp && *tmp ? tmp : "/tmp"; /* a directory */
    CHECK_ST(rkl_open(&p, &m), RKL_MODEL_NOT_FOUND);
    CHECK_MSG("directory");
    p.model_path = h_model("not-a-model", "this key does not exist = 1");
    CHECK_ST(rkl_open(&p, &m), RKL_MODEL_LOAD_FAILED);
    p.model_path = fast_model();
    p.runtime_path = "/nonexistent/librkllmrt.so";
    CHECK_ST(rkl_open(&p, &m), RKL_RUNTIME_NOT_FOUND);
    CHECK_MSG("/nonexistent/librkllmrt.so");
    p.runtime_path = "libm.so.6"; /* a library, but not a runtime */
    CHECK_ST(rkl_open(&p, &m), RKL_RUNTIME_UNSUPPORTED);
    CHECK(m == NULL);
}

/* ---------------------------------------------------------------- callbacks */

typedef struct {
    rkl_model *model;
    int calls;
    int stop_after;       /* return non-zero at this call (0: never) */
    int abort_after;      /* call rkl_abort at this call (0: never) */
    int try_reentry;      /* call other functions from inside */
    rkl_status nested_generate, nested_stream, nested_close, nested_clear, nested_abort;
} cb_state;

static int misbehaving_callback(const char *text, size_t len, void *userdata) {
    cb_state *s = (cb_state *)userdata;
    (void)text;
    (void)len;
    s->calls++;
    if (s->try_reentry && s->calls == 1) {
        rkl_generate_params g = params_for("nested");
        rkl_stream *st = NULL;
        s->nested_generate = rkl_generate(s->model, &g, NULL, NULL, NULL);
        s->nested_stream = rkl_stream_open(s->model, &g, &st);
        s->nested_close = rkl_close(s->model);
        s->nested_clear = rkl_clear_history(s->model, 0);
        s->nested_abort = rkl_abort(NULL);
    }
    if (s->abort_after && s->calls == s->abort_after) rkl_abort(s->model);
    return s->stop_after && s->calls >= s->stop_after;
}

static void test_callback_stops(void) {
    rkl_model *m = h_open(fast_model());
    rkl_generate_params g = params_for("stop");
    rkl_stats st = {0};
    cb_state s;
    memset(&s, 0, sizeof s);
    s.model = m;
    s.stop_after = 1;
    st.struct_size = sizeof st;
    CHECK_ST(rkl_generate(m, &g, misbehaving_callback, &s, &st), RKL_OK);
    CHECK(s.calls == 1);
    CHECK(st.finish == RKL_FINISH_STOPPED);
    /* The model is usable afterwards. */
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_END);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_callback_aborts(void) {
    rkl_model *m = h_open(slow_model());
    rkl_generate_params g = params_for("abort");
    rkl_stats st = {0};
    cb_state s;
    memset(&s, 0, sizeof s);
    s.model = m;
    s.abort_after = 2;
    st.struct_size = sizeof st;
    CHECK_ST(rkl_generate(m, &g, misbehaving_callback, &s, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_ABORTED);
    CHECK(s.calls >= 2 && s.calls < 20);
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_END);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_callback_reentry_is_refused(void) {
    rkl_model *m = h_open(fast_model());
    rkl_generate_params g = params_for("reenter");
    rkl_stats st = {0};
    cb_state s;
    memset(&s, 0, sizeof s);
    s.model = m;
    s.try_reentry = 1;
    st.struct_size = sizeof st;
    CHECK_ST(rkl_generate(m, &g, misbehaving_callback, &s, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_END);
    CHECK(s.nested_generate == RKL_REENTRANT);
    CHECK(s.nested_stream == RKL_REENTRANT);
    CHECK(s.nested_close == RKL_REENTRANT);
    CHECK(s.nested_clear == RKL_REENTRANT);
    CHECK(s.nested_abort == RKL_BAD_HANDLE);
    /* The refused close left the model open. */
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* ---------------------------------------------------------------- threads */

typedef struct {
    rkl_model *model;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int first_token;
    rkl_status status;
    rkl_stats stats;
} gen_thread;

static int signal_first(const char *text, size_t len, void *userdata) {
    gen_thread *t = (gen_thread *)userdata;
    (void)text;
    (void)len;
    pthread_mutex_lock(&t->lock);
    t->first_token = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static void *generate_thread(void *arg) {
    gen_thread *t = (gen_thread *)arg;
    rkl_generate_params g = params_for("a long one, please");
    t->stats.struct_size = sizeof t->stats;
    t->status = rkl_generate(t->model, &g, signal_first, t, &t->stats);
    return NULL;
}

static void start_and_wait_first_token(gen_thread *t, pthread_t *th, rkl_model *m) {
    memset(t, 0, sizeof *t);
    t->model = m;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    pthread_create(th, NULL, generate_thread, t);
    pthread_mutex_lock(&t->lock);
    while (!t->first_token) pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

static void finish_thread(gen_thread *t, pthread_t th) {
    pthread_join(th, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
}

static void test_close_while_other_thread_generates(void) {
    int round, rounds = h_quick() ? 1 : 3;
    for (round = 0; round < rounds; round++) {
        rkl_model *m = h_open(slow_model());
        rkl_generate_params g = params_for("x");
        gen_thread t;
        pthread_t th;
        start_and_wait_first_token(&t, &th, m);
        CHECK_ST(rkl_close(m), RKL_OK);
        finish_thread(&t, th);
        CHECK_ST(t.status, RKL_OK);
        CHECK(t.stats.finish == RKL_FINISH_ABORTED);
        CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_BAD_HANDLE);
        CHECK_ST(rkl_close(m), RKL_OK);
    }
}

static void test_abort_from_other_thread(void) {
    rkl_model *m = h_open(slow_model());
    gen_thread t;
    pthread_t th;
    start_and_wait_first_token(&t, &th, m);
    CHECK_ST(rkl_abort(m), RKL_OK);
    finish_thread(&t, th);
    CHECK_ST(t.status, RKL_OK);
    CHECK(t.stats.finish == RKL_FINISH_ABORTED);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_stream_closed_midway(void) {
    rkl_model *m = h_open(slow_model());
    rkl_generate_params g = params_for("stream");
    rkl_stream *s = NULL;
    rkl_stats st = {0};
    const char *text;
    size_t len;
    st.struct_size = sizeof st;
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_stream_next(s, -1, &text, &len), RKL_OK);
    CHECK(text != NULL && len > 0);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_stream_next(s, 0, &text, &len), RKL_BAD_HANDLE);
    /* The run was aborted: the model is free for the next request. */
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_END);
    /* A stream that is never read, closed at once. */
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_stream_timeout(void) {
    /* A long prefill: nothing can arrive within 5 ms. */
    rkl_model *m = h_open(h_model("slow-prefill", REPLY "time_scale = 1\nprefill_us_per_token = 100000\n"));
    rkl_generate_params g = params_for("wait");
    rkl_stream *s = NULL;
    const char *text = "untouched";
    size_t len = 12345;
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_stream_next(s, 5, &text, &len), RKL_TIMEOUT);
    CHECK(strcmp(text, "untouched") == 0 && len == 12345);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

typedef struct {
    rkl_stream *stream;
    rkl_status status;
    int texts;
} reader;

static void *read_all(void *arg) {
    reader *r = (reader *)arg;
    const char *text;
    size_t len;
    for (;;) {
        r->status = rkl_stream_next(r->stream, -1, &text, &len);
        if (r->status != RKL_OK || !text) break;
        r->texts++;
    }
    return NULL;
}

static void test_stream_closed_by_other_thread(void) {
    rkl_model *m = h_open(slow_model());
    rkl_generate_params g = params_for("closed under a reader");
    reader r;
    pthread_t th;
    memset(&r, 0, sizeof r);
    CHECK_ST(rkl_stream_open(m, &g, &r.stream), RKL_OK);
    pthread_create(&th, NULL, read_all, &r);
    h_sleep_ms(30);
    CHECK_ST(rkl_stream_close(r.stream), RKL_OK);
    pthread_join(th, NULL);
    /* The reader either saw the end (if it was quick) or the closed handle. */
    CHECK(r.status == RKL_BAD_HANDLE || r.status == RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_close_model_under_open_stream(void) {
    rkl_model *m = h_open(slow_model());
    rkl_generate_params g = params_for("orphan");
    rkl_stream *s = NULL;
    rkl_stats st = {0};
    const char *text;
    size_t len;
    int guard = 0;
    rkl_status r;
    st.struct_size = sizeof st;
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_stream_next(s, -1, &text, &len), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
    while ((r = rkl_stream_next(s, -1, &text, &len)) == RKL_OK && text && guard++ < 1000) {
    }
    CHECK_ST(r, RKL_OK);
    CHECK_ST(rkl_stream_stats(s, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_ABORTED);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
}

/* Several threads generating on one model: served one at a time, all fine. */
typedef struct {
    rkl_model *model;
    rkl_status status;
    char text[1024];
} worker;

static int append(const char *text, size_t len, void *userdata) {
    worker *w = (worker *)userdata;
    size_t have = strlen(w->text);
    if (have + len < sizeof w->text) memcpy(w->text + have, text, len + 1);
    return 0;
}

static void *work(void *arg) {
    worker *w = (worker *)arg;
    rkl_generate_params g = params_for("same");
    w->status = rkl_generate(w->model, &g, append, w, NULL);
    return NULL;
}

static void test_concurrent_generations(void) {
    rkl_model *m = h_open(fast_model());
    worker w[4];
    pthread_t th[4];
    int i;
    for (i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].model = m;
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (i = 0; i < 4; i++) {
        CHECK_ST(w[i].status, RKL_OK);
        CHECK(strncmp(w[i].text, "R[same] héllo", strlen("R[same] héllo")) == 0);
        CHECK(strcmp(w[i].text, w[0].text) == 0);
    }
    CHECK_ST(rkl_close(m), RKL_OK);
}

int main(void) {
    printf("rkl %s, simulator ABI %s\n", rkl_version(), h_abi());
    RUN(test_null_arguments);
    RUN(test_bad_handles);
    RUN(test_closed_and_double_close);
    RUN(test_struct_size);
    RUN(test_bad_values);
    RUN(test_bad_log_level);
    RUN(test_log_callback_reentry);
    RUN(test_runtime_error_midway);
    RUN(test_not_utf8);
    RUN(test_open_failures);
    RUN(test_callback_stops);
    RUN(test_callback_aborts);
    RUN(test_callback_reentry_is_refused);
    RUN(test_close_while_other_thread_generates);
    RUN(test_abort_from_other_thread);
    RUN(test_stream_closed_midway);
    RUN(test_stream_timeout);
    RUN(test_stream_closed_by_other_thread);
    RUN(test_close_model_under_open_stream);
    RUN(test_concurrent_generations);
    return h_finish();
}
