/* rkl_stream_read(): all queued text in one call, whole UTF-8 characters in
 * a buffer of any size from 4 bytes, the end and a failure as
 * rkl_stream_next() reports them, and its argument checks. Written in the
 * common subset of C99 and C++: mk/capi.mk builds it both ways. */
#include "harness.h"

#define REPLY "reply = R[{prompt}] héllo wörld ✓ 🚀 ünïcödé 日本語 done\n"
#define EXPECT(prompt) "R[" prompt "] héllo wörld ✓ 🚀 ünïcödé 日本語 done"

/* Whether `s` (of `len` bytes) starts and ends on character boundaries and
 * holds only well-formed sequences. */
static int whole_utf8(const char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        size_t k;
        if (n == 0 || i + n > len) return 0;
        for (k = 1; k < n; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return 0;
        i += n;
    }
    return 1;
}

static rkl_stream *open_stream(rkl_model *m, const char *prompt) {
    rkl_generate_params g;
    rkl_stream *s = NULL;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = prompt;
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    return s;
}

/* Reads to the end with a buffer of `cap` bytes; returns the calls with text. */
static int read_all(rkl_stream *s, size_t cap, char *all, size_t all_cap) {
    char buf[256];
    size_t total = 0, len;
    int calls = 0, guard = 0;
    rkl_status r;
    while ((r = rkl_stream_read(s, -1, buf, cap, &len)) == RKL_OK && len > 0 && guard++ < 10000) {
        CHECK(len <= cap);
        CHECK(whole_utf8(buf, len));
        if (total + len < all_cap) {
            memcpy(all + total, buf, len);
            total += len;
        }
        calls++;
    }
    CHECK_ST(r, RKL_OK);
    all[total] = '\0';
    return calls;
}

static void test_read_batches(void) {
    rkl_model *m = h_open(h_model("read", REPLY "time_scale = 0\n"));
    rkl_stream *s = open_stream(m, "batch");
    rkl_stats st;
    char all[1024], buf[8];
    size_t len = 99;
    int calls;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    h_sleep_ms(100); /* the zero-cost run has queued it all */
    calls = read_all(s, 256, all, sizeof all);
    CHECK(strcmp(all, EXPECT("batch")) == 0);
    /* The end is reported again, and the figures are there. */
    CHECK_ST(rkl_stream_read(s, 0, buf, sizeof buf, &len), RKL_OK);
    CHECK(len == 0);
    CHECK_ST(rkl_stream_stats(s, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_END && st.tokens > 5);
    /* Batches, not a call per token (one call, unless the machine is so
     * slow that the run had not finished within the sleep). */
    CHECK(calls >= 1 && (unsigned)calls * 4 < st.tokens);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_read_small_buffers(void) {
    rkl_model *m = h_open(h_model("read-small", REPLY));
    size_t caps[] = {4, 5, 6, 7, 13};
    size_t i;
    for (i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        char all[1024];
        rkl_stream *s = open_stream(m, "small");
        read_all(s, caps[i], all, sizeof all);
        CHECK(strcmp(all, EXPECT("small")) == 0);
        CHECK_ST(rkl_stream_close(s), RKL_OK);
    }
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_read_failure(void) {
    rkl_model *m = h_open(h_model("read-fail", "reply = one two three four five six\nfault = error@token:4\n"));
    rkl_stream *s = open_stream(m, "x");
    char buf[64], msg[256];
    size_t len, total = 0;
    int failures = 0, text_after = 0, guard = 0;
    rkl_status r;
    for (;;) {
        if (guard++ > 1000) break;
        r = rkl_stream_read(s, -1, buf, sizeof buf, &len);
        if (r == RKL_RUNTIME_FAILED) {
            failures++;
            continue;
        }
        CHECK_ST(r, RKL_OK);
        if (r != RKL_OK || len == 0) break;
        if (failures) text_after = 1;
        total += len;
    }
    CHECK(failures == 1);
    CHECK(!text_after);
    CHECK(total > 0);
    CHECK(rkl_stream_error_message(s, msg, sizeof msg) > 0);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_read_arguments(void) {
    rkl_model *m = h_open(h_model("read-args", "reply = slow words\ntime_scale = 1\ndecode_us_per_token = 200000\n"));
    rkl_stream *s = open_stream(m, "x");
    char buf[8];
    size_t len = 77;
    memset(buf, 'z', sizeof buf);
    CHECK_ST(rkl_stream_read(s, 0, NULL, sizeof buf, &len), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_stream_read(s, 0, buf, sizeof buf, NULL), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_stream_read(s, 0, buf, 3, &len), RKL_INVALID_ARGUMENT);
    CHECK_MSG("at least 4");
    CHECK_ST(rkl_stream_read(NULL, 0, buf, sizeof buf, &len), RKL_BAD_HANDLE);
    CHECK_ST(rkl_stream_read(s, 10, buf, sizeof buf, &len), RKL_TIMEOUT);
    CHECK(len == 77 && buf[0] == 'z');
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_stream_read(s, 0, buf, sizeof buf, &len), RKL_BAD_HANDLE);
    CHECK_ST(rkl_close(m), RKL_OK);
}

int main(void) {
    /* One short run in every mode and ABI. */
    (void)h_quick;
    (void)h_abi;
    RUN(test_read_batches);
    RUN(test_read_small_buffers);
    RUN(test_read_failure);
    RUN(test_read_arguments);
    return h_finish();
}
