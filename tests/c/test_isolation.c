/* Isolation mode from C: RKL_OPEN_ISOLATED runs the runtime in rkl-host
 * (found in ../libexec from the staged librkl.so), and the calling process
 * survives the runtime's crashes and hangs. The full fault matrix is
 * tests/faults.rs; this checks the C surface: flags, statuses, messages,
 * rkl_model_restart, RKL_ISOLATED. */
#include "harness.h"

#include <sys/resource.h>

#define ASCII "reply = abcdefghijklmnopqrstuvwxyz\n"
#define ALL "abcdefghijklmnopqrstuvwxyz"

static rkl_status open_isolated(const char *path, unsigned call_timeout_ms, rkl_model **out) {
    rkl_open_params p;
    rkl_open_params_init(&p, sizeof p);
    p.model_path = path;
    p.flags = RKL_OPEN_ISOLATED;
    p.call_timeout_ms = call_timeout_ms;
    return rkl_open(&p, out);
}

static rkl_status generate(rkl_model *m, h_text *t, rkl_stats *st) {
    rkl_generate_params g;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "x";
    h_text_init(t);
    st->struct_size = sizeof *st;
    return rkl_generate(m, &g, h_collect, t, st);
}

static void test_isolated_generate_stream_and_info(void) {
    rkl_model *m = NULL;
    rkl_model_details info = {.struct_size = sizeof info};
    rkl_stream *s = NULL;
    rkl_generate_params g;
    rkl_stats st;
    h_text t;
    const char *text;
    size_t len, total = 0;
    CHECK_ST(open_isolated(h_model("iso", ASCII "time_scale = 0"), 0, &m), RKL_OK);
    CHECK_ST(rkl_model_info(m, &info), RKL_OK);
    CHECK(strcmp(info.family, h_abi()) == 0);
    CHECK_ST(generate(m, &t, &st), RKL_OK);
    CHECK(strcmp(t.text, ALL) == 0 && t.nul_ok);
    CHECK(st.finish == RKL_FINISH_END && st.tokens > 0 && st.abort_ms == 0);
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "y";
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    while (rkl_stream_next(s, 5000, &text, &len) == RKL_OK && text) total += len;
    CHECK(total == strlen(ALL));
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_crash_is_survived_and_the_model_restarts(void) {
    const char *path = h_model("iso-crash", ASCII "time_scale = 0\nfault = segv@token:3");
    rkl_model *m = NULL;
    rkl_stats st;
    h_text t;
    CHECK_ST(open_isolated(path, 0, &m), RKL_OK);
    CHECK_ST(generate(m, &t, &st), RKL_RUNTIME_CRASHED);
    CHECK_MSG("died of SIGSEGV");
    /* The fault gone from the model file, the next call restarts it. */
    h_model("iso-crash", ASCII "time_scale = 0");
    CHECK_ST(generate(m, &t, &st), RKL_OK);
    CHECK(strcmp(t.text, ALL) == 0);
    CHECK_ST(rkl_model_restart(m), RKL_OK);
    CHECK_ST(generate(m, &t, &st), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
    CHECK_ST(rkl_model_restart(m), RKL_BAD_HANDLE);
}

static void test_hang_times_out(void) {
    rkl_model *m = NULL;
    rkl_stats st;
    h_text t;
    CHECK_ST(open_isolated(h_model("iso-hang", ASCII "time_scale = 0\nfault = hang@prefill"), 300, &m), RKL_OK);
    CHECK_ST(generate(m, &t, &st), RKL_RUNTIME_TIMEOUT);
    CHECK_MSG("no progress for 300 ms");
    CHECK_ST(rkl_close(m), RKL_OK);
    CHECK_ST(open_isolated(h_model("iso-hang-init", ASCII "fault = hang@init"), 300, &m), RKL_RUNTIME_TIMEOUT);
}

static void test_settings_are_checked(void) {
    rkl_open_params p;
    rkl_model *m = NULL;
    rkl_open_params_init(&p, sizeof p);
    p.model_path = h_model("iso-flags", ASCII);
    p.flags = 2;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    CHECK_MSG("flags");
    /* In-process models cannot be restarted. */
    m = h_open(p.model_path);
    CHECK_ST(rkl_model_restart(m), RKL_NOT_SUPPORTED);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_environment_turns_isolation_on(void) {
    rkl_model *m = NULL;
    rkl_stats st;
    h_text t;
    setenv("RKL_ISOLATED", "1", 1);
    m = h_open(h_model("iso-env", ASCII "time_scale = 0\nfault = abort@prefill"));
    unsetenv("RKL_ISOLATED");
    CHECK_ST(generate(m, &t, &st), RKL_RUNTIME_CRASHED);
    CHECK_MSG("died of SIGABRT");
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* Out of descriptors is its own status, in both modes, not "model not
 * found"; once descriptors are free again, the same open works. */
static void test_out_of_descriptors(void) {
    const char *path = h_model("iso-fds", ASCII "time_scale = 0");
    struct rlimit old, low;
    int fds[256];
    int n = 0, isolated, i;
    rkl_model *m = NULL;
    rkl_open_params p;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    for (isolated = 0; isolated <= 1; isolated++) {
        rkl_open_params_init(&p, sizeof p);
        p.model_path = path;
        p.flags = isolated ? RKL_OPEN_ISOLATED : 0;
        low = old;
        low.rlim_cur = 64;
        CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
        for (n = 0; n < 256; n++) {
            fds[n] = dup(0);
            if (fds[n] < 0) break;
        }
        CHECK_ST(rkl_open(&p, &m), RKL_RESOURCE_EXHAUSTED);
        CHECK(m == NULL);
        for (i = 0; i < n; i++) close(fds[i]);
        CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
        CHECK_ST(rkl_open(&p, &m), RKL_OK);
        CHECK_ST(rkl_close(m), RKL_OK);
        m = NULL;
    }
}

int main(void) {
    (void)h_quick;
    RUN(test_isolated_generate_stream_and_info);
    RUN(test_crash_is_survived_and_the_model_restarts);
    RUN(test_hang_times_out);
    RUN(test_settings_are_checked);
    RUN(test_environment_turns_isolation_on);
    RUN(test_out_of_descriptors);
    return h_finish();
}
