/* Smoke test of librkllmrt.so (the simulator) from C, with the struct layouts
 * of both releases declared here independently of the Rust code.
 *
 * usage: smoke 1.2|1.3 WORKDIR [double-destroy]
 * The simulator must imitate the same release (RKLLM_SIM_ABI). Writes a model
 * file into WORKDIR, checks the default-param probe signals, runs one prompt,
 * checks the reassembled text and perf numbers, a prompt cache save and load,
 * a context overflow, and the simulator's counters. With "double-destroy" it
 * destroys a handle twice, and the simulator must abort().
 * Exits 0 on success, 1 on any failure (with a message on stderr). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *LLMHandle;

/* ---- layouts (rkllm-abi.md) ---- */

typedef struct {
    int32_t base_domain_id;
    int8_t embed_flash;
    int8_t enabled_cpus_num;
    uint32_t enabled_cpus_mask;
    uint8_t n_batch;
    int8_t use_cross_attn;
    uint8_t reserved[104];
} ExtendParam;
_Static_assert(sizeof(ExtendParam) == 120, "RKLLMExtendParam");

#define PARAM_HEAD                 \
    const char *model_path;        \
    int32_t max_context_len;       \
    int32_t max_new_tokens;        \
    int32_t top_k;                 \
    int32_t n_keep;                \
    float top_p;                   \
    float temperature;             \
    float repeat_penalty;          \
    float frequency_penalty;       \
    float presence_penalty;        \
    int32_t mirostat;              \
    float mirostat_tau;            \
    float mirostat_eta;            \
    bool skip_special_token;

typedef struct {
    PARAM_HEAD
    bool is_async;
    const char *img_start;
    const char *img_end;
    const char *img_content;
    ExtendParam extend_param;
} ParamV12;
_Static_assert(sizeof(ParamV12) == 208, "RKLLMParam 1.2");
_Static_assert(offsetof(ParamV12, img_start) == 64, "img_start");
_Static_assert(offsetof(ParamV12, extend_param) == 88, "1.2 extend_param");

typedef struct {
    PARAM_HEAD
    bool ignore_eos_token;
    bool is_async;
    ExtendParam extend_param;
} ParamV13;
_Static_assert(sizeof(ParamV13) == 184, "RKLLMParam 1.3");
_Static_assert(offsetof(ParamV13, extend_param) == 60, "1.3 extend_param");

typedef struct {
    const char *role;
    bool enable_thinking;
    int32_t input_type;
    union {
        const char *prompt;
        uint64_t multimodal[6];
    } u;
} InputV12;
_Static_assert(sizeof(InputV12) == 64, "RKLLMInput 1.2");

typedef struct {
    const char *role;
    bool enable_thinking;
    int32_t input_type;
    union {
        const char *prompt;
        uint64_t multimodal[18];
    } u;
} InputV13;
_Static_assert(sizeof(InputV13) == 160, "RKLLMInput 1.3");

typedef struct {
    int32_t save_prompt_cache;
    const char *prompt_cache_path;
} PromptCacheParam;
_Static_assert(sizeof(PromptCacheParam) == 16, "RKLLMPromptCacheParam");

typedef struct {
    int32_t mode;
    void *lora_params;
    PromptCacheParam *prompt_cache_params;
    int32_t keep_history;
} InferParamV12;
_Static_assert(sizeof(InferParamV12) == 32, "RKLLMInferParam 1.2");

typedef struct {
    int32_t mode;
    void *lora_params;
    PromptCacheParam *prompt_cache_params;
    void *sampling_params;
    int32_t keep_history;
    int32_t max_new_tokens;
} InferParamV13;
_Static_assert(sizeof(InferParamV13) == 40, "RKLLMInferParam 1.3");

typedef struct {
    float prefill_time_ms;
    int32_t prefill_tokens;
    float generate_time_ms;
    int32_t generate_tokens;
    float memory_usage_mb;
} PerfStat;
_Static_assert(sizeof(PerfStat) == 20, "RKLLMPerfStat");

typedef struct {
    const float *data;
    int32_t a;
    int32_t b;
} FloatBlock;

typedef struct {
    const char *text;
    int32_t token_id;
    FloatBlock last_hidden_layer;
    FloatBlock logits;
    PerfStat perf;
} Result;
_Static_assert(sizeof(Result) == 72, "RKLLMResult");
_Static_assert(offsetof(Result, perf) == 48, "RKLLMResult.perf");

typedef int (*ResultCallback)(Result *result, void *userdata, int state);

typedef struct {
    ResultCallback result_callback;
    void *result_userdata;
    void *tokenizer_callback;
    void *tokenizer_userdata;
    void *embed_callback;
    void *embed_userdata;
} CallbacksV13;
_Static_assert(sizeof(CallbacksV13) == 48, "RKLLMCallback");

/* The probe slot: larger than any release's RKLLMParam. */
typedef struct {
    _Alignas(8) uint8_t bytes[512];
} ParamSlot;

extern ParamSlot rkllm_createDefaultParam(void);
extern int rkllm_init(LLMHandle *handle, void *param, void *callback);
extern int rkllm_run(LLMHandle handle, void *input, void *infer, void *userdata);
extern int rkllm_destroy(LLMHandle handle);
extern int rkllm_load_prompt_cache(LLMHandle handle, const char *path);
extern void rkllm_sim_stats(uint64_t out[4]);

/* ---- checks ---- */

static int failures = 0;

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            fprintf(stderr, "smoke: FAILED %s: ", #cond); \
            fprintf(stderr, __VA_ARGS__);                 \
            fputc('\n', stderr);                          \
            failures++;                                   \
        }                                                 \
    } while (0)

static uint64_t u64_at(const uint8_t *b, size_t off) {
    uint64_t v;
    memcpy(&v, b + off, sizeof v);
    return v;
}

/* ---- collecting callbacks, by the rule that works for every waiting mode ---- */

typedef struct {
    char text[4096];
    size_t len;
    char held[8];
    size_t held_len;
    int tokens;
    int waits;
    int normal_splits;
    int finished;
    int errors;
    PerfStat perf;
    int magic;
} Collector;

static void append(Collector *c, const char *bytes, size_t n) {
    if (c->len + n < sizeof c->text) {
        memcpy(c->text + c->len, bytes, n);
        c->len += n;
        c->text[c->len] = '\0';
    }
}

/* Whether `s` ends inside a UTF-8 sequence (a NORMAL split). */
static bool ends_mid_char(const char *s) {
    size_t n = strlen(s), back = 0;
    while (back < n && back < 4 && ((unsigned char)s[n - 1 - back] & 0xC0) == 0x80) {
        back++;
    }
    if (back == n) {
        return back > 0;
    }
    unsigned char lead = (unsigned char)s[n - 1 - back];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return back + 1 < need;
}

static int on_result(Result *r, void *userdata, int state) {
    Collector *c = userdata;
    if (c == NULL || c->magic != 0x51) {
        fprintf(stderr, "smoke: callback got the wrong userdata %p\n", userdata);
        exit(1);
    }
    switch (state) {
    case 1: /* WAITING: keep the bytes aside */
        c->tokens++;
        c->waits++;
        c->held_len = 0;
        if (r->text != NULL) {
            size_t n = strlen(r->text);
            if (n < sizeof c->held) {
                memcpy(c->held, r->text, n);
                c->held_len = n;
            }
        }
        break;
    case 0: { /* NORMAL: prepend held bytes only before a continuation byte */
        c->tokens++;
        const char *t = r->text != NULL ? r->text : "";
        if (((unsigned char)t[0] & 0xC0) == 0x80) {
            append(c, c->held, c->held_len);
        }
        c->held_len = 0;
        append(c, t, strlen(t));
        if (ends_mid_char(t)) {
            c->normal_splits++;
        }
        break;
    }
    case 2:
        c->finished++;
        c->perf = r->perf;
        break;
    default:
        c->errors++;
        break;
    }
    return 0;
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80) {
            n++;
        }
    }
    return n;
}

static void check_default_param(bool v12) {
    ParamSlot slot = rkllm_createDefaultParam();
    const uint8_t *b = slot.bytes;
    if (v12) {
        CHECK(u64_at(b, 64) != 0 && u64_at(b, 72) != 0, "1.2: img_start/img_end must be pointers");
        CHECK(b[92] == 1 && b[93] == 4, "1.2: embed_flash=%d cpus=%d", b[92], b[93]);
        const ParamV12 *p = (const ParamV12 *)b;
        CHECK(strcmp(p->img_start, "<image>") == 0, "1.2: img_start");
        CHECK(p->max_context_len == 512 && p->top_k == 40, "1.2 defaults");
    } else {
        CHECK(b[64] == 1, "1.3: embed_flash at 64 is %d", b[64]);
        CHECK(b[65] == 4, "1.3: enabled_cpus_num at 65 is %d", b[65]);
        bool zero = true;
        for (size_t i = 74; i < 178; i++) {
            zero = zero && b[i] == 0;
        }
        CHECK(zero, "1.3: reserved bytes 74..178 must be zero");
        const ParamV13 *p = (const ParamV13 *)b;
        CHECK(p->max_context_len == 512 && p->top_k == 40 && p->skip_special_token, "1.3 defaults");
    }
#if defined(__x86_64__)
    /* On x86_64 a struct return is `void *f(void *hidden)`: call it so with a
     * pre-filled buffer and check that exactly the release's size is written. */
    uint8_t raw[512];
    memset(raw, 0xEE, sizeof raw);
    void *(*as_raw)(void *) = (void *(*)(void *))(void (*)(void))rkllm_createDefaultParam;
    void *back = as_raw(raw);
    size_t size = v12 ? 208 : 184;
    CHECK(back == raw, "the hidden result pointer is returned");
    CHECK(raw[size - 1] != 0xEE || raw[size - 2] != 0xEE, "the struct's last bytes are written");
    bool untouched = true;
    for (size_t i = size; i < sizeof raw; i++) {
        untouched = untouched && raw[i] == 0xEE;
    }
    CHECK(untouched, "nothing is written beyond the %zu-byte RKLLMParam", size);
#endif
}

static bool v12;
/* Every run's callbacks land here (1.3 gets it as init's result_userdata). */
static Collector c = {.magic = 0x51};
static CallbacksV13 callbacks = {.result_callback = on_result, .result_userdata = &c};

/* Opens the model at `model_path` with the default params of the release. */
static LLMHandle open_model(const char *model_path, int32_t max_context_len) {
    ParamSlot slot = rkllm_createDefaultParam();
    LLMHandle handle = NULL;
    int rc;
    if (v12) {
        ParamV12 p;
        memcpy(&p, slot.bytes, sizeof p);
        p.model_path = model_path;
        p.max_context_len = max_context_len;
        rc = rkllm_init(&handle, &p, (void *)on_result);
    } else {
        ParamV13 p;
        memcpy(&p, slot.bytes, sizeof p);
        p.model_path = model_path;
        p.max_context_len = max_context_len;
        rc = rkllm_init(&handle, &p, &callbacks);
    }
    CHECK(rc == 0 && handle != NULL, "rkllm_init returned %d", rc);
    if (rc != 0) {
        fprintf(stderr, "smoke: cannot continue without a handle\n");
        exit(1);
    }
    return handle;
}

/* Runs `prompt` into `c` (reset first); returns rkllm_run's code. */
static int run_prompt(LLMHandle handle, const char *prompt, PromptCacheParam *cache) {
    memset(&c, 0, sizeof c);
    c.magic = 0x51;
    if (v12) {
        InputV12 in = {.role = "user", .input_type = 0, .u.prompt = prompt};
        InferParamV12 infer = {.mode = 0, .prompt_cache_params = cache, .keep_history = 0};
        return rkllm_run(handle, &in, &infer, &c);
    }
    InputV13 in = {.role = NULL, .input_type = 0, .u.prompt = prompt};
    InferParamV13 infer = {.mode = 0, .prompt_cache_params = cache, .keep_history = 0};
    /* NULL userdata: 1.3 falls back to init's result_userdata. */
    return rkllm_run(handle, &in, &infer, NULL);
}

static int prompt_tokens(const char *prompt) {
    char prefilled[512];
    snprintf(prefilled, sizeof prefilled, "<user>%s</user><assistant>", prompt);
    return (int)((utf8_chars(prefilled) + 3) / 4);
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4 || (strcmp(argv[1], "1.2") != 0 && strcmp(argv[1], "1.3") != 0)) {
        fprintf(stderr, "usage: smoke 1.2|1.3 WORKDIR [double-destroy]\n");
        return 2;
    }
    v12 = strcmp(argv[1], "1.2") == 0;
    const char *workdir = argv[2];
    check_default_param(v12);

    char model_path[1024];
    snprintf(model_path, sizeof model_path, "%s/model-%s.sim", workdir, argv[1]);
    FILE *f = fopen(model_path, "w");
    if (f == NULL) {
        perror(model_path);
        return 1;
    }
    fputs("RKLLM-SIM 1\n# smoke test\nreply = Smoke {prompt}: é中文🎉 ok, turn {turn}\n", f);
    fclose(f);

    if (argc == 4 && strcmp(argv[3], "double-destroy") == 0) {
        /* The simulator must abort() on the second destroy, as the runtime crashes. */
        LLMHandle handle = open_model(model_path, 1024);
        rkllm_destroy(handle);
        rkllm_destroy(handle);
        fprintf(stderr, "smoke: a double destroy returned\n");
        return 1;
    }

    /* One prompt, reassembled text and perf. */
    LLMHandle handle = open_model(model_path, 1024);
    const char *prompt = "héllo wörld 日本";
    int rc = run_prompt(handle, prompt, NULL);
    CHECK(rc == 0, "rkllm_run returned %d", rc);
    printf("%s\n", c.text);
    const char *expected = "Smoke héllo wörld 日本: é中文🎉 ok, turn 1";
    CHECK(strcmp(c.text, expected) == 0, "got \"%s\", want \"%s\"", c.text, expected);
    CHECK(c.waits >= 1, "no WAITING split happened");
    CHECK(c.normal_splits >= 1, "no NORMAL split happened");
    CHECK(c.finished == 1 && c.errors == 0, "finish %d error %d", c.finished, c.errors);
    CHECK(c.perf.prefill_tokens == prompt_tokens(prompt), "prefill_tokens %d, want %d", c.perf.prefill_tokens,
          prompt_tokens(prompt));
    CHECK(c.perf.generate_tokens == c.tokens, "generate_tokens %d, callbacks %d", c.perf.generate_tokens, c.tokens);
    CHECK(c.perf.generate_time_ms == c.tokens * 40.0f, "generate_time_ms %f", c.perf.generate_time_ms);

    /* A prompt cache: written at the end of the run, loaded as one turn. */
    char cache_path[1100];
    snprintf(cache_path, sizeof cache_path, "%s/cache-%s.bin", workdir, argv[1]);
    PromptCacheParam cache = {.save_prompt_cache = 1, .prompt_cache_path = cache_path};
    rc = run_prompt(handle, "cache me", &cache);
    CHECK(rc == 0 && c.finished == 1, "run with cache save: %d", rc);
    f = fopen(cache_path, "rb");
    long size = -1;
    if (f != NULL) {
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fclose(f);
    }
    long want = 16 + (long)prompt_tokens("cache me") * 114688;
    CHECK(size == want, "cache file has %ld bytes, want %ld", size, want);
    rc = rkllm_load_prompt_cache(handle, cache_path);
    CHECK(rc == 0, "rkllm_load_prompt_cache returned %d", rc);
    rc = run_prompt(handle, "more", NULL);
    CHECK(rc == 0 && strstr(c.text, "turn 2") != NULL, "after a loaded cache: \"%s\"", c.text);
    rc = rkllm_load_prompt_cache(handle, model_path);
    CHECK(rc == -1, "loading a model file as a cache returned %d", rc);

    rc = rkllm_destroy(handle);
    CHECK(rc == 0, "rkllm_destroy returned %d", rc);

    /* A prompt beyond the context: one ERROR callback and -1. */
    handle = open_model(model_path, 4);
    rc = run_prompt(handle, "a prompt that is much longer than four tokens", NULL);
    CHECK(rc == -1 && c.errors == 1 && c.finished == 0 && c.tokens == 0, "context overflow: rc %d errors %d", rc,
          c.errors);
    rkllm_destroy(handle);

    uint64_t stats[4];
    rkllm_sim_stats(stats);
    CHECK(stats[0] == 0, "violations %llu", (unsigned long long)stats[0]);
    CHECK(stats[1] == 0, "live handles %llu", (unsigned long long)stats[1]);
    CHECK(stats[2] == 4, "runs %llu", (unsigned long long)stats[2]);
    CHECK(stats[3] == 1, "caches written %llu", (unsigned long long)stats[3]);

    if (failures != 0) {
        fprintf(stderr, "smoke (%s): %d check(s) failed\n", argv[1], failures);
        return 1;
    }
    return 0;
}
