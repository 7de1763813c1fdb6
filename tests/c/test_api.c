/* The happy path of every function of rkl.h, against the simulator runtime
 * (RKL_RUNTIME), in whichever ABI RKLLM_SIM_ABI selects. */
#include "harness.h"

#include <math.h>
#include <stddef.h>

/* Multi-byte text in the reply exercises the split-character reassembly. */
#define REPLY "reply = R[{prompt}] héllo wörld ✓ 🚀 ünïcödé 日本語 done\n"
#define EXPECT(prompt) "R[" prompt "] héllo wörld ✓ 🚀 ünïcödé 日本語 done"

static const char *plain_model(void) {
    return h_model("plain", REPLY);
}

typedef struct {
    int calls;
    int saw_open;
    int bad_text;
} log_seen;

static void on_log(rkl_log_level level, const char *target, const char *message, void *userdata) {
    log_seen *seen = (log_seen *)userdata;
    seen->calls++;
    if (level < RKL_LOG_ERROR || level > RKL_LOG_TRACE || !target || !message) seen->bad_text = 1;
    if (message && strstr(message, "opened")) seen->saw_open = 1;
}

/* Runs first, so that the runtime's first load is logged too. */
static void test_log_callback(void) {
    log_seen seen = {0, 0, 0};
    rkl_model *m;
    CHECK_ST(rkl_set_log_callback(on_log, RKL_LOG_DEBUG, &seen), RKL_OK);
    m = h_open(plain_model());
    CHECK_ST(rkl_set_log_callback(NULL, 0, NULL), RKL_OK);
    CHECK(seen.calls >= 1);
    CHECK(seen.saw_open);
    CHECK(!seen.bad_text);
    {
        int before = seen.calls;
        CHECK_ST(rkl_close(m), RKL_OK);
        CHECK(seen.calls == before); /* removed: no more calls */
    }
}

static void test_version(void) {
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", RKL_VERSION_MAJOR, RKL_VERSION_MINOR, RKL_VERSION_PATCH);
    CHECK(rkl_version() != NULL);
    CHECK(strcmp(rkl_version(), want) == 0);
}

static void test_status_str(void) {
    int i, j;
    for (i = RKL_OK; i <= RKL_CACHE_UNTRUSTED; i++) {
        const char *s = rkl_status_str(i);
        CHECK(s && *s && strcmp(s, "unknown status") != 0);
        for (j = RKL_OK; j < i; j++) CHECK(strcmp(s, rkl_status_str(j)) != 0);
    }
    CHECK(strcmp(rkl_status_str(RKL_CACHE_UNTRUSTED + 1), "unknown status") == 0);
    CHECK(strcmp(rkl_status_str(-1), "unknown status") == 0);
    CHECK(strcmp(rkl_status_str(1 << 30), "unknown status") == 0);
    CHECK(RKL_OK == 0 && RKL_BAD_HANDLE == 11 && RKL_TIMEOUT == 13 && RKL_PANIC == 15);
}

static void test_last_error_message(void) {
    char buf[256], small[8];
    size_t n;
    CHECK_ST(rkl_open(NULL, NULL), RKL_NULL_ARGUMENT);
    n = rkl_last_error_message(NULL, 0);
    CHECK(n > 0);
    CHECK(rkl_last_error_message(buf, sizeof buf) == n);
    CHECK(strlen(buf) == n);
    CHECK(strncmp(buf, "rkl_open: ", 10) == 0);
    /* rkl_status_str and rkl_version leave the message alone. */
    (void)rkl_status_str(RKL_OK);
    (void)rkl_version();
    CHECK(rkl_last_error_message(NULL, 0) == n);
    /* Cut like snprintf, always NUL-terminated. */
    memset(small, 'x', sizeof small);
    CHECK(rkl_last_error_message(small, sizeof small) == n);
    CHECK(strlen(small) == sizeof small - 1);
    CHECK(strncmp(small, buf, sizeof small - 1) == 0);
    /* A successful call clears it. */
    CHECK_ST(rkl_abort(NULL), RKL_BAD_HANDLE);
    CHECK(rkl_last_error_message(NULL, 0) > 0);
    {
        rkl_model *m = h_open(plain_model());
        CHECK(rkl_last_error_message(NULL, 0) == 0);
        CHECK(rkl_last_error_message(buf, sizeof buf) == 0 && buf[0] == '\0');
        CHECK_ST(rkl_close(m), RKL_OK);
    }
}

static void test_open_params_defaults(void) {
    rkl_open_params p;
    memset(&p, 0x5a, sizeof p);
    CHECK_ST(rkl_open_params_init(&p, sizeof p), RKL_OK);
    CHECK(p.struct_size == sizeof p);
    CHECK(p.model_path == NULL && p.runtime_path == NULL && p.runtime_abi == NULL);
    CHECK(p.max_context_len == RKL_UNSET && p.max_new_tokens == RKL_UNSET);
    CHECK(p.top_k == RKL_UNSET && p.n_keep == RKL_UNSET && p.mirostat == RKL_UNSET);
    CHECK(isnan(p.top_p) && isnan(p.temperature) && isnan(p.repeat_penalty));
    CHECK(isnan(p.frequency_penalty) && isnan(p.presence_penalty));
    CHECK(isnan(p.mirostat_tau) && isnan(p.mirostat_eta));
    CHECK(p.skip_special_token == RKL_UNSET && p.embed_flash == RKL_UNSET);
    CHECK(p.enabled_cpus_num == RKL_UNSET && p.enabled_cpus_mask == 0);
    CHECK(p.base_domain_id == RKL_UNSET);
    CHECK(p.flags == 0 && p.call_timeout_ms == 0 && p.abort_grace_ms == 0 && p.max_restarts == 0);
}

/* A caller built against version 1 of the structs (rkl_open_params up to
 * base_domain_id, rkl_stats up to memory_mb) keeps working: the newer
 * fields read as their defaults and are never written. */
static void test_version_1_structs(void) {
    size_t v1_open = offsetof(rkl_open_params, flags);
    size_t v1_stats = offsetof(rkl_stats, abort_ms);
    union {
        rkl_open_params p;
        unsigned char bytes[sizeof(rkl_open_params)];
    } old;
    union {
        rkl_stats st;
        unsigned char bytes[sizeof(rkl_stats)];
    } out;
    rkl_generate_params g;
    rkl_model *m = NULL;
    CHECK(v1_open == (sizeof(void *) == 8 ? 104 : 84)); /* sizeof of version 1 */
    memset(old.bytes, 0x5a, sizeof old.bytes);
    CHECK_ST(rkl_open_params_init(&old.p, v1_open), RKL_OK);
    CHECK(old.p.struct_size == v1_open);
    CHECK(old.bytes[v1_open] == 0x5a); /* nothing written past the old size */
    /* What version 1 had as padding may hold anything. */
    old.p._reserved = 0xdeadbeefu;
    old.p.model_path = plain_model();
    CHECK_ST(rkl_open(&old.p, &m), RKL_OK);
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "old";
    memset(out.bytes, 0x5a, sizeof out.bytes);
    out.st.struct_size = v1_stats;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, &out.st), RKL_OK);
    CHECK(out.st.finish == RKL_FINISH_END && out.st.tokens > 0);
    CHECK(out.bytes[v1_stats] == 0x5a);
    CHECK_ST(rkl_close(m), RKL_OK);
    /* One byte short of version 1 is refused. */
    old.p.struct_size = v1_open - 1;
    CHECK_ST(rkl_open(&old.p, &m), RKL_INVALID_ARGUMENT);
}

static void test_generate_params_defaults(void) {
    rkl_generate_params g;
    memset(&g, 0x5a, sizeof g);
    CHECK_ST(rkl_generate_params_init(&g, sizeof g), RKL_OK);
    CHECK(g.struct_size == sizeof g);
    CHECK(g.prompt == NULL && g.lora == NULL);
    CHECK(g.role == RKL_ROLE_USER && g.max_new_tokens == 0);
    CHECK(!g.enable_thinking && !g.keep_history);
}

static void test_open_with_settings_and_info(void) {
    rkl_open_params p;
    rkl_model *m = NULL;
    rkl_model_details info;
    const char *path = plain_model();
    rkl_open_params_init(&p, sizeof p);
    p.model_path = path;
    p.runtime_path = getenv("RKL_RUNTIME");
    p.runtime_abi = h_abi();
    p.max_context_len = 4096;
    p.max_new_tokens = 256;
    p.top_k = 20;
    p.top_p = 0.8f;
    p.temperature = 0.6f;
    p.repeat_penalty = 1.05f;
    p.skip_special_token = 1;
    p.embed_flash = 1;
    p.enabled_cpus_num = 4;
    p.enabled_cpus_mask = 0xf0;
    CHECK_ST(rkl_open(&p, &m), RKL_OK);
    CHECK(m != NULL);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK_ST(rkl_model_info(m, &info), RKL_OK);
    CHECK(info.struct_size == sizeof info);
    CHECK(info.model_path && strcmp(info.model_path, path) == 0);
    CHECK(info.runtime_path && strcmp(info.runtime_path, getenv("RKL_RUNTIME")) == 0);
    CHECK(info.family && strcmp(info.family, h_abi()) == 0);
    /* What the simulator prints at init: 1.2.3 or 1.3.0. */
    CHECK(info.runtime_version && strncmp(info.runtime_version, h_abi(), 3) == 0 && strlen(info.runtime_version) == 5);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_generate(void) {
    rkl_model *m = h_open(plain_model());
    rkl_generate_params g;
    rkl_stats st;
    h_text out;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "hi ünï";
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, &st), RKL_OK);
    CHECK(strcmp(out.text, EXPECT("hi ünï")) == 0);
    CHECK(out.nul_ok);
    CHECK(out.calls > 5);
    CHECK(st.struct_size == sizeof st);
    CHECK(st.finish == RKL_FINISH_END);
    CHECK(st.tokens >= (uint32_t)out.calls);
    CHECK(st.decode_tokens > 0 && st.prefill_tokens > 0);
    CHECK(st.ttft_ms > 0 && st.total_ms >= st.ttft_ms && st.queue_ms >= 0);
    CHECK(st.memory_mb >= 0);
    /* No callback and no stats: allowed. */
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_generate_token_limit(void) {
    rkl_model *m = h_open(plain_model());
    rkl_generate_params g;
    rkl_stats st = {0};
    h_text out;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "limit";
    g.max_new_tokens = 3;
    st.struct_size = sizeof st;
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_MAX_TOKENS);
    CHECK(st.tokens == 3);
    CHECK(out.len > 0 && strncmp(out.text, "R[limit]", out.len) == 0);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_stream(void) {
    rkl_model *m = h_open(plain_model());
    rkl_generate_params g;
    rkl_stream *s = NULL;
    rkl_stats st = {0};
    const char *text = NULL;
    size_t len = 0;
    char all[4096] = "";
    size_t total = 0;
    int chunks = 0, guard = 0;
    rkl_status r;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "stream me";
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK(s != NULL);
    st.struct_size = sizeof st;
    while ((r = rkl_stream_next(s, -1, &text, &len)) == RKL_OK && text && guard++ < 10000) {
        CHECK(text[len] == '\0');
        memcpy(all + total, text, len);
        total += len;
        chunks++;
    }
    CHECK_ST(r, RKL_OK);
    CHECK(text == NULL && len == 0);
    all[total] = '\0';
    CHECK(strcmp(all, EXPECT("stream me")) == 0);
    CHECK(chunks > 5);
    /* The end is reported again. */
    text = "x";
    CHECK_ST(rkl_stream_next(s, 0, &text, &len), RKL_OK);
    CHECK(text == NULL);
    CHECK_ST(rkl_stream_stats(s, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_END && st.tokens > 0);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* Polling with timeout 0 gives either text or RKL_TIMEOUT, never blocks. */
static void test_stream_polling(void) {
    rkl_model *m = h_open(h_model("polled", REPLY "time_scale = 0.02\n"));
    rkl_generate_params g;
    rkl_stream *s = NULL;
    const char *text;
    size_t len;
    char all[4096] = "";
    size_t total = 0;
    int timeouts = 0, guard = 0;
    rkl_status r;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "poll";
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    for (;;) {
        r = rkl_stream_next(s, 0, &text, &len);
        if (r == RKL_TIMEOUT) {
            timeouts++;
            h_sleep_ms(1);
        } else if (r == RKL_OK && text) {
            memcpy(all + total, text, len);
            total += len;
        } else {
            break;
        }
        if (guard++ > 100000) break;
    }
    CHECK_ST(r, RKL_OK);
    all[total] = '\0';
    CHECK(strcmp(all, EXPECT("poll")) == 0);
    CHECK(timeouts > 0);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_stream_abort(void) {
    rkl_model *m = h_open(h_model("slow-stream", REPLY "time_scale = 0.05\n"));
    rkl_generate_params g;
    rkl_stream *s = NULL;
    rkl_stats st = {0};
    const char *text;
    size_t len;
    int guard = 0;
    rkl_status r;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "abort me";
    st.struct_size = sizeof st;
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_stream_next(s, -1, &text, &len), RKL_OK);
    CHECK_ST(rkl_stream_stats(s, &st), RKL_IN_PROGRESS);
    CHECK_ST(rkl_stream_abort(s), RKL_OK);
    while ((r = rkl_stream_next(s, -1, &text, &len)) == RKL_OK && text && guard++ < 1000) {
    }
    CHECK_ST(r, RKL_OK);
    CHECK_ST(rkl_stream_stats(s, &st), RKL_OK);
    CHECK(st.finish == RKL_FINISH_ABORTED);
    CHECK_ST(rkl_stream_abort(s), RKL_OK); /* finished: harmless */
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* A failed generation's message stays with the stream, for callers that
 * pulled on another thread; later successful calls do not clear it. */
static void test_stream_failure_message(void) {
    rkl_model *m = h_open(h_model("failing-stream", REPLY "fault = error@token:2\n"));
    rkl_generate_params g;
    rkl_stream *s = NULL;
    const char *text;
    size_t len, n;
    int guard = 0;
    char last[512], kept[512], tiny[8];
    rkl_status r;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "fail me";
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK(rkl_stream_error_message(s, kept, sizeof kept) == 0 && kept[0] == '\0');
    while ((r = rkl_stream_next(s, -1, &text, &len)) == RKL_OK && text && guard++ < 1000) {
    }
    CHECK_ST(r, RKL_RUNTIME_FAILED);
    CHECK(rkl_last_error_message(last, sizeof last) > 0);
    CHECK(strncmp(last, "rkl_stream_next: ", 17) == 0);
    /* The end is reported next, which clears the thread's message... */
    CHECK_ST(rkl_stream_next(s, -1, &text, &len), RKL_OK);
    CHECK(text == NULL && rkl_last_error_message(NULL, 0) == 0);
    /* ...but the stream keeps its own. */
    n = rkl_stream_error_message(s, kept, sizeof kept);
    CHECK(n == strlen(last) && strcmp(kept, last) == 0);
    CHECK(rkl_stream_error_message(s, NULL, 0) == n);
    CHECK(rkl_stream_error_message(s, tiny, sizeof tiny) == n);
    CHECK(strlen(tiny) == sizeof tiny - 1 && strncmp(tiny, last, sizeof tiny - 1) == 0);
    CHECK_ST(rkl_stream_close(s), RKL_OK);
    /* A closed or bogus stream has no message. */
    CHECK(rkl_stream_error_message(s, kept, sizeof kept) == 0 && kept[0] == '\0');
    CHECK(rkl_stream_error_message(NULL, kept, sizeof kept) == 0);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_chat_template(void) {
    rkl_model *m = h_open(h_model("template", "reply = [{system}] {prompt}\n"));
    rkl_generate_params g;
    h_text out;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "hey";
    CHECK_ST(rkl_set_chat_template(m, "Be brief ✓", "<u>", "</u>"), RKL_OK);
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "[Be brief ✓] hey") == 0);
    CHECK_ST(rkl_set_chat_template(m, "", "", ""), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_function_tools_and_tool_role(void) {
    rkl_model *m = h_open(h_model("tools", "reply = {role}: {tools}\n"));
    rkl_generate_params g;
    h_text out;
    rkl_generate_params_init(&g, sizeof g);
    CHECK_ST(rkl_set_function_tools(m, "You may call tools.", "[{\"name\":\"clock\"}]", "tool_response"), RKL_OK);
    g.prompt = "{\"time\":\"12:00\"}";
    g.role = RKL_ROLE_TOOL;
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "tool: [{\"name\":\"clock\"}]") == 0);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_lora(void) {
    const char *adapter = h_model("adapter", "# a LoRA file only needs to exist for the simulator");
    rkl_model *m = h_open(h_model("lora", "reply = lora={lora}\n"));
    rkl_generate_params g;
    h_text out;
    CHECK_ST(rkl_load_lora(m, adapter, "style", 1.0f), RKL_OK);
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "x";
    g.lora = "style";
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "lora=style") == 0);
    g.lora = NULL;
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "lora=") == 0);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_history(void) {
    rkl_model *m = h_open(h_model("history", "reply = turn {turn}\n"));
    rkl_generate_params g;
    h_text out;
    uint32_t tokens = 99;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "one";
    g.keep_history = true;
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "turn 1") == 0);
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "turn 2") == 0);
    CHECK_ST(rkl_kv_cache_tokens(m, &tokens), RKL_OK);
    CHECK(tokens > 0 && tokens != 99);
    /* Not kept: the history stays at two turns. */
    g.keep_history = false;
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "turn 3") == 0);
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "turn 3") == 0);
    CHECK_ST(rkl_clear_history(m, 0), RKL_OK);
    CHECK_ST(rkl_kv_cache_tokens(m, &tokens), RKL_OK);
    CHECK(tokens == 0);
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "turn 1") == 0);
    CHECK_ST(rkl_clear_history(m, 1), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_thinking(void) {
    rkl_model *m = h_open(h_model("think", "reply = ok\n"));
    rkl_generate_params g;
    h_text out;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "think";
    g.enable_thinking = true;
    h_text_init(&out);
    CHECK_ST(rkl_generate(m, &g, h_collect, &out, NULL), RKL_OK);
    CHECK(strcmp(out.text, "<think>sim</think>ok") == 0);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* Abort with nothing running is a no-op; close of NULL is a no-op. */
static void test_idle_abort_and_null_close(void) {
    rkl_model *m = h_open(plain_model());
    CHECK_ST(rkl_abort(m), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
    CHECK_ST(rkl_close(NULL), RKL_OK);
    CHECK_ST(rkl_stream_close(NULL), RKL_OK);
}

/* Several models at once, opened and closed repeatedly. */
static void test_many_models(void) {
    rkl_model *ms[4];
    int round, i, rounds = h_quick() ? 2 : 10;
    rkl_generate_params g;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = "many";
    for (round = 0; round < rounds; round++) {
        for (i = 0; i < 4; i++) ms[i] = h_open(plain_model());
        for (i = 0; i < 4; i++) CHECK_ST(rkl_generate(ms[i], &g, NULL, NULL, NULL), RKL_OK);
        for (i = 0; i < 4; i++) CHECK_ST(rkl_close(ms[i]), RKL_OK);
    }
}

/* Per-request sampling: on 1.3 the run gets the set fields over the model's
 * values; on 1.2 it is refused (never ignored). */
static void test_sampling(void) {
    rkl_model *m = h_open(h_model("sampling", "reply = [{sampling}]\n"));
    rkl_sampling_params s;
    rkl_generate_params g;
    h_text t;
    CHECK_ST(rkl_sampling_params_init(&s, sizeof s), RKL_OK);
    CHECK(s.top_k == RKL_UNSET && s.mirostat == RKL_UNSET && s.temperature != s.temperature);
    s.temperature = 0.25f;
    rkl_generate_params_init(&g, sizeof g);
    CHECK(g.sampling == NULL);
    g.prompt = "x";
    g.sampling = &s;
    h_text_init(&t);
    if (strcmp(h_abi(), "1.3") == 0) {
        CHECK_ST(rkl_generate(m, &g, h_collect, &t, NULL), RKL_OK);
        CHECK(strstr(t.text, "temperature=0.25") != NULL && strstr(t.text, "top_k=40") != NULL);
    } else {
        CHECK_ST(rkl_generate(m, &g, h_collect, &t, NULL), RKL_NOT_SUPPORTED);
        CHECK_MSG("1.3");
    }
    s.top_p = 2.0f;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_INVALID_ARGUMENT);
    s.struct_size = 4;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_INVALID_ARGUMENT);
    CHECK_MSG("struct_size");
    CHECK_ST(rkl_close(m), RKL_OK);
}

int main(void) {
    printf("rkl %s, simulator ABI %s\n", rkl_version(), h_abi());
    RUN(test_log_callback);
    RUN(test_version);
    RUN(test_status_str);
    RUN(test_last_error_message);
    RUN(test_open_params_defaults);
    RUN(test_version_1_structs);
    RUN(test_generate_params_defaults);
    RUN(test_open_with_settings_and_info);
    RUN(test_generate);
    RUN(test_generate_token_limit);
    RUN(test_stream);
    RUN(test_stream_polling);
    RUN(test_stream_abort);
    RUN(test_stream_failure_message);
    RUN(test_chat_template);
    RUN(test_function_tools_and_tool_role);
    RUN(test_lora);
    RUN(test_history);
    RUN(test_thinking);
    RUN(test_idle_abort_and_null_close);
    RUN(test_many_models);
    RUN(test_sampling);
    return h_finish();
}
