/* Smoke test of librkllmrt.so (the simulator) from C, with the struct layouts
 * of both releases declared here independently of the Rust code.
 *
 * usage: smoke 1.2|1.3 WORKDIR [double-destroy]
 *        smoke-old 1.2.0|1.2.1b1|silent WORKDIR [release-key]   (built with -DOLD_FAMILY)
 * The simulator must imitate the same release (RKLLM_SIM_ABI; for smoke-old
 * the family-1-2-0 build and RKLLM_SIM_RELEASE, or with "release-key" the
 * model file's `release` key). Writes a model file into WORKDIR, checks the
 * default-param probe signals, runs one prompt, checks the reassembled text
 * and perf numbers, a prompt cache save and load, a context overflow, the
 * simulator's counters, then token, embed and multimodal input, infer modes
 * 1 and 2, 1.3's tokenizer and embedding callbacks and cross-attention. With
 * "double-destroy" it destroys a handle twice, and the simulator must abort().
 * Exits 0 on success, 1 on any failure (with a message on stderr). */

#include <dlfcn.h>
#include <math.h>
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
    const int32_t *ids;
    size_t n_tokens;
} TokenInput;
_Static_assert(sizeof(TokenInput) == 16, "RKLLMTokenInput");

typedef struct {
    const float *embed;
    size_t n_tokens;
} EmbedInput;
_Static_assert(sizeof(EmbedInput) == 16, "RKLLMEmbedInput");

typedef struct {
    const char *prompt;
    const float *image_embed;
    size_t n_image_tokens;
    size_t n_image;
    size_t image_width;
    size_t image_height;
} MultimodalV12;
_Static_assert(sizeof(MultimodalV12) == 48, "RKLLMMultiModalInput 1.2.1b1..1.2.3");
_Static_assert(offsetof(MultimodalV12, image_height) == 40, "1.2 image_height");

typedef struct {
    const char *prompt;
    const float *image_embed;
    size_t n_image_tokens;
} MultimodalV120;
_Static_assert(sizeof(MultimodalV120) == 24, "RKLLMMultiModalInput 1.2.0");

typedef struct {
    const char *prompt;
    const float *image_embed;
    size_t n_image_tokens;
    size_t n_image;
    const char *image_start;
    const char *image_end;
    const char *image_content;
    size_t image_width;
    size_t image_height;
    const float *video_embed;
    size_t n_frame_tokens;
    size_t n_frame_per_video;
    size_t n_video;
    const char *video_start;
    const char *video_end;
    const char *video_content;
    size_t frame_width;
    size_t frame_height;
} MultimodalV13;
_Static_assert(sizeof(MultimodalV13) == 144, "RKLLMMultiModalInput 1.3");
_Static_assert(offsetof(MultimodalV13, image_start) == 32, "1.3 image_start");
_Static_assert(offsetof(MultimodalV13, video_embed) == 72, "1.3 video_embed");
_Static_assert(offsetof(MultimodalV13, frame_height) == 136, "1.3 frame_height");

typedef struct {
    const char *role;
    bool enable_thinking;
    int32_t input_type;
    union {
        const char *prompt;
        TokenInput tokens;
        EmbedInput embed;
        MultimodalV12 multimodal;
    } u;
} InputV12;
_Static_assert(sizeof(InputV12) == 64, "RKLLMInput 1.2");
_Static_assert(offsetof(InputV12, u) == 16, "RKLLMInput 1.2 union");

typedef struct {
    const char *role;
    bool enable_thinking;
    int32_t input_type;
    union {
        const char *prompt;
        TokenInput tokens;
        EmbedInput embed;
        MultimodalV13 multimodal;
    } u;
} InputV13;
_Static_assert(sizeof(InputV13) == 160, "RKLLMInput 1.3");
_Static_assert(offsetof(InputV13, u) == 16, "RKLLMInput 1.3 union");

/* 1.2.0 and 1.2.1b1: no role, no enable_thinking. */
typedef struct {
    int32_t input_type;
    union {
        const char *prompt;
        TokenInput tokens;
        EmbedInput embed;
        MultimodalV120 multimodal;
    } u;
} InputV120;
_Static_assert(sizeof(InputV120) == 32, "RKLLMInput 1.2.0");
_Static_assert(offsetof(InputV120, u) == 8, "RKLLMInput 1.2.0 union");

typedef struct {
    int32_t input_type;
    union {
        const char *prompt;
        TokenInput tokens;
        EmbedInput embed;
        MultimodalV12 multimodal;
    } u;
} InputV121b1;
_Static_assert(sizeof(InputV121b1) == 56, "RKLLMInput 1.2.1b1");
_Static_assert(offsetof(InputV121b1, u) == 8, "RKLLMInput 1.2.1b1 union");

typedef struct {
    const float *encoder_k_cache;
    const float *encoder_v_cache;
    const float *encoder_mask;
    const int32_t *encoder_pos;
    int32_t num_tokens;
} CrossAttnParam;
_Static_assert(sizeof(CrossAttnParam) == 40, "RKLLMCrossAttnParam");
_Static_assert(offsetof(CrossAttnParam, num_tokens) == 32, "num_tokens");

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

/* 1.2.0 and 1.2.1b1: 48 bytes, no perf. */
typedef struct {
    const char *text;
    int32_t token_id;
    FloatBlock last_hidden_layer;
    FloatBlock logits;
} Result48;
_Static_assert(sizeof(Result48) == 48, "RKLLMResult 1.2.0");

typedef int (*ResultCallback)(Result *result, void *userdata, int state);
typedef void (*VoidResultCallback)(Result48 *result, void *userdata, int state);
typedef int (*TokenizerCallback)(void *ud, const char *text, int32_t text_len, int32_t *tokens, int32_t n_tokens_max);
typedef int (*EmbedCallback)(void *ud, int32_t *tokens, uint64_t num_tokens, void *embed, uint64_t len_bytes);

typedef struct {
    ResultCallback result_callback;
    void *result_userdata;
    TokenizerCallback tokenizer_callback;
    void *tokenizer_userdata;
    EmbedCallback embed_callback;
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
#ifdef OLD_FAMILY
/* 1.2.0 and 1.2.1b1: two arguments; no get_kv_cache_size, set_function_tools
 * or set_cross_attn_params (checked with dlsym). */
extern int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt);
#else
extern int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt, int *start_pos, int *end_pos);
extern int rkllm_set_cross_attn_params(LLMHandle handle, CrossAttnParam *params);
#endif

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
    /* mode 1 / 2: the one callback with arrays */
    int arrays;
    FloatBlock hidden;
    FloatBlock logits;
    float first[2]; /* elements [0][0] and [0][1] */
    float last;     /* the last element */
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

/* Both result layouts come here; `perf` is NULL for the 48-byte result. */
static void collect(void *userdata, const char *text, int32_t token_id, FloatBlock hidden, FloatBlock logits,
                    const PerfStat *perf, int state) {
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
        if (text != NULL) {
            size_t n = strlen(text);
            if (n < sizeof c->held) {
                memcpy(c->held, text, n);
                c->held_len = n;
            }
        }
        break;
    case 0: { /* NORMAL: prepend held bytes only before a continuation byte */
        if (text == NULL && token_id == -1) { /* mode 1 or 2 */
            c->arrays++;
            c->hidden = hidden;
            c->logits = logits;
            const FloatBlock *b = hidden.data != NULL ? &hidden : &logits;
            if (b->data != NULL && b->a >= 2 && b->b >= 1) {
                c->first[0] = b->data[0];
                c->first[1] = b->data[1];
                c->last = b->data[(size_t)b->a * (size_t)b->b - 1];
            }
            break;
        }
        c->tokens++;
        const char *t = text != NULL ? text : "";
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
        if (perf != NULL) {
            c->perf = *perf;
        }
        break;
    default:
        c->errors++;
        break;
    }
}

#ifdef OLD_FAMILY
static void on_result48(Result48 *r, void *userdata, int state) {
    collect(userdata, r->text, r->token_id, r->last_hidden_layer, r->logits, NULL, state);
}
#else
static int on_result(Result *r, void *userdata, int state) {
    collect(userdata, r->text, r->token_id, r->last_hidden_layer, r->logits, &r->perf, state);
    return 0;
}
#endif

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80) {
            n++;
        }
    }
    return n;
}

/* ---- the simulator's hash and value formula (README) ---- */

#define FNV0 0xcbf29ce484222325ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static float sim_value(uint64_t h, uint32_t t, uint32_t j) {
    uint32_t seed = (uint32_t)(h ^ (h >> 32));
    uint32_t v = seed + 131u * t + 7u * j;
    return ((float)(v % 2003u) - 1001.0f) / 1024.0f;
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
#ifdef OLD_FAMILY
        CHECK(b[88 + 12] == 0 && b[88 + 13] == 0, "1.2.0: extend_param bytes 12, 13 are reserved, not %d %d",
              b[88 + 12], b[88 + 13]);
#endif
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
/* 1.2.0 (old_120) or 1.2.1b1 / silent (old_121b1): the smoke-old build. */
static bool old_120, old_121b1;
/* Every run's callbacks land here (1.3 gets it as init's result_userdata). */
static Collector c = {.magic = 0x51};
#ifndef OLD_FAMILY
static CallbacksV13 callbacks = {.result_callback = on_result, .result_userdata = &c};
#endif

static void reset(void) {
    memset(&c, 0, sizeof c);
    c.magic = 0x51;
}

/* Opens the model at `model_path` with the default params of the release;
 * `cross_attn` sets extend_param.use_cross_attn; `cbs` (1.3) replaces the
 * default RKLLMCallback. */
static LLMHandle open_model_with(const char *model_path, int32_t max_context_len, bool cross_attn, void *cbs) {
    ParamSlot slot = rkllm_createDefaultParam();
    LLMHandle handle = NULL;
    int rc;
    if (v12) {
        ParamV12 p;
        memcpy(&p, slot.bytes, sizeof p);
        p.model_path = model_path;
        p.max_context_len = max_context_len;
        p.extend_param.use_cross_attn = cross_attn;
#ifdef OLD_FAMILY
        (void)cbs;
        rc = rkllm_init(&handle, &p, (void *)on_result48);
#else
        rc = rkllm_init(&handle, &p, (void *)on_result);
#endif
    } else {
        ParamV13 p;
        memcpy(&p, slot.bytes, sizeof p);
        p.model_path = model_path;
        p.max_context_len = max_context_len;
        p.extend_param.use_cross_attn = cross_attn;
#ifdef OLD_FAMILY
        rc = -1;
        (void)cbs;
#else
        rc = rkllm_init(&handle, &p, cbs != NULL ? cbs : &callbacks);
#endif
    }
    CHECK(rc == 0 && handle != NULL, "rkllm_init returned %d", rc);
    if (rc != 0) {
        fprintf(stderr, "smoke: cannot continue without a handle\n");
        exit(1);
    }
    return handle;
}

static LLMHandle open_model(const char *model_path, int32_t max_context_len) {
    return open_model_with(model_path, max_context_len, false, NULL);
}

/* Runs one input of `input_type` (the union member is copied from `member`,
 * `member_size` bytes) in infer `mode` into `c` (reset first). */
static int run_input(LLMHandle handle, int input_type, const void *member, size_t member_size, int mode,
                     PromptCacheParam *cache) {
    reset();
    if (old_120 || old_121b1) {
        InferParamV12 infer = {.mode = mode, .prompt_cache_params = cache, .keep_history = 0};
        if (old_120) {
            InputV120 in = {.input_type = input_type};
            memcpy(&in.u, member, member_size);
            return rkllm_run(handle, &in, &infer, &c);
        }
        InputV121b1 in = {.input_type = input_type};
        memcpy(&in.u, member, member_size);
        return rkllm_run(handle, &in, &infer, &c);
    }
    if (v12) {
        InputV12 in = {.role = "user", .input_type = input_type};
        memcpy(&in.u, member, member_size);
        InferParamV12 infer = {.mode = mode, .prompt_cache_params = cache, .keep_history = 0};
        return rkllm_run(handle, &in, &infer, &c);
    }
    InputV13 in = {.role = NULL, .input_type = input_type};
    memcpy(&in.u, member, member_size);
    InferParamV13 infer = {.mode = mode, .prompt_cache_params = cache, .keep_history = 0};
    /* NULL userdata: 1.3 falls back to init's result_userdata. */
    return rkllm_run(handle, &in, &infer, NULL);
}

/* Runs `prompt` into `c` (reset first); returns rkllm_run's code. */
static int run_prompt(LLMHandle handle, const char *prompt, PromptCacheParam *cache) {
    return run_input(handle, 0, &prompt, sizeof prompt, 0, cache);
}

static int prompt_tokens(const char *prompt) {
    char prefilled[512];
    snprintf(prefilled, sizeof prefilled, "<user>%s</user><assistant>", prompt);
    return (int)((utf8_chars(prefilled) + 3) / 4);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* ---- input kinds and infer modes ---- */

/* The model for these: reply shows the new placeholders, hidden size 4,
 * vocabulary 50, 2 floats per cross-attention token. */
#define KINDS_MODEL                                                                 \
    "RKLLM-SIM 1\n"                                                                 \
    "reply = {input}|{prefill}|{prompt}|{tokenizer}|{embed}|{cross_attn}\n"         \
    "hidden_size = 4\nvocab_size = 50\ncross_attn_floats_per_token = 2\n"
#define HIDDEN 4
#define VOCAB 50

static void expect_text(const char *want, const char *what) {
    CHECK(strcmp(c.text, want) == 0, "%s: got \"%s\", want \"%s\"", what, c.text, want);
}

/* Mode 1 and 2 of one input whose hash is `h` and prefill `prefill`. */
static void check_modes(LLMHandle handle, int input_type, const void *member, size_t size, uint64_t h, int prefill) {
    int rc = run_input(handle, input_type, member, size, 1, NULL);
    CHECK(rc == 0 && c.arrays == 1 && c.tokens == 0 && c.finished == 1, "mode 1: rc %d arrays %d tokens %d finish %d",
          rc, c.arrays, c.tokens, c.finished);
    CHECK(c.hidden.data != NULL && c.hidden.a == HIDDEN && c.hidden.b == prefill && c.logits.data == NULL &&
              c.logits.a == 0 && c.logits.b == 0,
          "mode 1: hidden %d x %d (want %d x %d), logits %p", c.hidden.b, c.hidden.a, prefill, HIDDEN,
          (const void *)c.logits.data);
    CHECK(c.first[0] == sim_value(h, 0, 0) && c.first[1] == sim_value(h, 0, 1), "mode 1: [0][0] %f [0][1] %f",
          c.first[0], c.first[1]);
    CHECK(c.last == sim_value(h, (uint32_t)prefill - 1, HIDDEN - 1), "mode 1: last element %f", c.last);
    if (!old_120 && !old_121b1) {
        CHECK(c.perf.prefill_tokens == prefill && c.perf.generate_tokens == 0 && c.perf.generate_time_ms == 0,
              "mode 1 perf: prefill %d generate %d", c.perf.prefill_tokens, c.perf.generate_tokens);
    }
    rc = run_input(handle, input_type, member, size, 2, NULL);
    CHECK(rc == 0 && c.arrays == 1 && c.finished == 1, "mode 2: rc %d arrays %d", rc, c.arrays);
    CHECK(c.logits.data != NULL && c.logits.a == VOCAB && c.logits.b == 1 && c.hidden.data == NULL,
          "mode 2: logits %d x %d", c.logits.b, c.logits.a);
    CHECK(c.first[0] == sim_value(h, 0, 0) && c.first[1] == sim_value(h, 0, 1) &&
              c.last == sim_value(h, 0, VOCAB - 1),
          "mode 2: values %f %f %f", c.first[0], c.first[1], c.last);
}

static char fnv_hex[17];
static const char *hex(uint64_t h) {
    snprintf(fnv_hex, sizeof fnv_hex, "%016llx", (unsigned long long)h);
    return fnv_hex;
}

static void check_kinds(LLMHandle handle) {
    char want[1024];
    /* Prompt input. */
    const char *prompt = "plain words";
    int rc = run_prompt(handle, prompt, NULL);
    snprintf(want, sizeof want, "prompt|%d|%s|builtin|builtin|none", prompt_tokens(prompt), prompt);
    CHECK(rc == 0, "prompt: %d", rc);
    expect_text(want, "prompt input");
    check_modes(handle, 0, &prompt, sizeof prompt, fnv(FNV0, prompt, strlen(prompt)), prompt_tokens(prompt));

    /* Token input. */
    int32_t ids[3] = {1, 2, 49};
    TokenInput t = {.ids = ids, .n_tokens = 3};
    uint64_t h = fnv(FNV0, ids, sizeof ids);
    rc = run_input(handle, 1, &t, sizeof t, 0, NULL);
    snprintf(want, sizeof want, "tokens n=3 fnv=%s|3||builtin|builtin|none", hex(h));
    CHECK(rc == 0 && c.finished == 1, "tokens: %d", rc);
    expect_text(want, "token input");
    if (!old_120 && !old_121b1) {
        CHECK(c.perf.prefill_tokens == 3, "tokens: prefill_tokens %d", c.perf.prefill_tokens);
    }
    check_modes(handle, 1, &t, sizeof t, h, 3);
    int32_t bad_ids[2] = {1, VOCAB};
    TokenInput bad = {.ids = bad_ids, .n_tokens = 2};
    rc = run_input(handle, 1, &bad, sizeof bad, 0, NULL);
    CHECK(rc == -1 && c.tokens == 0 && c.errors == 0 && c.finished == 0, "an id >= vocab_size: rc %d", rc);
    TokenInput none = {.ids = ids, .n_tokens = 0};
    rc = run_input(handle, 1, &none, sizeof none, 0, NULL);
    CHECK(rc == -1 && c.errors == 0, "no ids: rc %d", rc);

    /* Embed input: 2 tokens of HIDDEN floats. */
    float embed[2 * HIDDEN] = {0.5f, -1.0f, 2.0f, 0.25f, 1.5f, 3.0f, -0.5f, 8.0f};
    EmbedInput e = {.embed = embed, .n_tokens = 2};
    h = fnv(FNV0, embed, sizeof embed);
    rc = run_input(handle, 2, &e, sizeof e, 0, NULL);
    snprintf(want, sizeof want, "embed n=2 dim=%d fnv=%s|2||builtin|builtin|none", HIDDEN, hex(h));
    CHECK(rc == 0, "embed: %d", rc);
    expect_text(want, "embed input");
    check_modes(handle, 2, &e, sizeof e, h, 2);
    embed[5] = NAN;
    rc = run_input(handle, 2, &e, sizeof e, 0, NULL);
    CHECK(rc == -1 && c.errors == 0 && c.tokens == 0, "a NaN embedding: rc %d", rc);
    embed[5] = 3.0f;

    /* Multimodal input: 2 images of 3 tokens (1.2.0: one image). */
    float images[2 * 3 * HIDDEN];
    for (size_t i = 0; i < sizeof images / sizeof images[0]; i++) {
        images[i] = (float)i / 8.0f;
    }
    const char *mm_prompt = old_120 ? "see <image> now" : "see <image> and <image> now";
    int n_image = old_120 ? 1 : 2;
    int text_tokens = prompt_tokens(old_120 ? "see  now" : "see  and  now");
    int mm_prefill = text_tokens + n_image * 3;
    h = fnv(fnv(FNV0, mm_prompt, strlen(mm_prompt)), images, (size_t)n_image * 3 * HIDDEN * sizeof(float));
    if (old_120) {
        MultimodalV120 m = {.prompt = mm_prompt, .image_embed = images, .n_image_tokens = 3};
        rc = run_input(handle, 3, &m, sizeof m, 0, NULL);
        snprintf(want, sizeof want, "multimodal images=1 tokens=3 size=?x? tags=<image>|</image>|<unk> fnv=%s|%d|%s|builtin|builtin|none",
                 hex(h), mm_prefill, mm_prompt);
        expect_text(want, "1.2.0 multimodal input");
        check_modes(handle, 3, &m, sizeof m, h, mm_prefill);
        m.prompt = "no marker";
        rc = run_input(handle, 3, &m, sizeof m, 0, NULL);
        CHECK(rc == -1, "1.2.0 multimodal without a marker: %d", rc);
    } else if (v12) {
        MultimodalV12 m = {.prompt = mm_prompt, .image_embed = images, .n_image_tokens = 3, .n_image = 2,
                           .image_width = 640, .image_height = 480};
        rc = run_input(handle, 3, &m, sizeof m, 0, NULL);
        snprintf(want, sizeof want, "multimodal images=2 tokens=3 size=640x480 tags=<image>|</image>|<unk> fnv=%s|%d|%s|builtin|builtin|none",
                 hex(h), mm_prefill, mm_prompt);
        expect_text(want, "1.2 multimodal input");
        check_modes(handle, 3, &m, sizeof m, h, mm_prefill);
        m.n_image = 1;
        rc = run_input(handle, 3, &m, sizeof m, 0, NULL);
        CHECK(rc == -1, "1.2 multimodal: 2 markers for 1 image: %d", rc);
    } else {
        /* 1.3: images and one video of 2 frames of 1 token, tags per run. */
        const char *vprompt = "see <image> and <image> now <video>";
        float video[2 * 1 * HIDDEN] = {9, 8, 7, 6, 5, 4, 3, 2};
        MultimodalV13 m = {.prompt = vprompt, .image_embed = images, .n_image_tokens = 3, .n_image = 2,
                           .image_start = "<is>", .image_end = "</is>", .image_content = "<ic>",
                           .image_width = 64, .image_height = 48, .video_embed = video, .n_frame_tokens = 1,
                           .n_frame_per_video = 2, .n_video = 1, .video_start = "<vs>", .video_end = "</vs>",
                           .video_content = "<vc>", .frame_width = 32, .frame_height = 24};
        h = fnv(fnv(fnv(FNV0, vprompt, strlen(vprompt)), images, sizeof images), video, sizeof video);
        mm_prefill = prompt_tokens("see  and  now ") + 2 * 3 + 2;
        rc = run_input(handle, 3, &m, sizeof m, 0, NULL);
        snprintf(want, sizeof want,
                 "multimodal images=2 tokens=3 size=64x48 tags=<is>|</is>|<ic> videos=1 frames=2 frame_tokens=1 "
                 "frame=32x24 video_tags=<vs>|</vs>|<vc> fnv=%s|%d|%s|builtin|builtin|none",
                 hex(h), mm_prefill, vprompt);
        expect_text(want, "1.3 multimodal input");
        check_modes(handle, 3, &m, sizeof m, h, mm_prefill);
        MultimodalV13 m2 = m;
        m2.video_end = NULL;
        rc = run_input(handle, 3, &m2, sizeof m2, 0, NULL);
        CHECK(rc == -1 && c.errors == 0, "1.3 multimodal with a NULL video tag: %d", rc);
        m2 = m;
        m2.n_image = 0;
        m2.n_video = 0;
        m2.prompt = "nothing";
        rc = run_input(handle, 3, &m2, sizeof m2, 0, NULL);
        CHECK(rc == -1, "1.3 multimodal with nothing multimodal: %d", rc);
    }
    rc = run_input(handle, 4, &prompt, sizeof prompt, 0, NULL);
    CHECK(rc == -1 && c.errors == 0, "input_type 4: %d", rc);
    rc = run_input(handle, 0, &prompt, sizeof prompt, 3, NULL);
    CHECK(rc == -1 && c.errors == 0, "mode 3: %d", rc);
}

#ifndef OLD_FAMILY
/* ---- 1.3's tokenizer and embedding callbacks ---- */

typedef struct {
    int magic;
    int calls;
    int result; /* what to return; 0: the count */
    char text[256];
    int32_t text_len;
} TokenizerState;

/* Tokenises `text` into (text_len % 7) + 2 ids: 10, 11, 12, ... */
static int tokenizer(void *ud, const char *text, int32_t text_len, int32_t *tokens, int32_t n_tokens_max) {
    TokenizerState *s = ud;
    CHECK(s->magic == 0x7a, "tokenizer userdata");
    s->calls++;
    s->text_len = text_len;
    snprintf(s->text, sizeof s->text, "%s", text);
    CHECK((int32_t)strlen(text) == text_len && n_tokens_max == text_len + 16, "tokenizer: len %d max %d", text_len,
          n_tokens_max);
    int n = text_len % 7 + 2;
    for (int i = 0; i < n; i++) {
        tokens[i] = 10 + i;
    }
    return s->result != 0 ? s->result : n;
}

typedef struct {
    int magic;
    int calls;
    uint64_t num_tokens;
    int fill_nan;
} EmbedState;

/* Embedding of id k, column j: k + j / 4. */
static int embedder(void *ud, int32_t *tokens, uint64_t num_tokens, void *embed, uint64_t len_bytes) {
    EmbedState *s = ud;
    CHECK(s->magic == 0x7b, "embed userdata");
    s->calls++;
    s->num_tokens = num_tokens;
    CHECK(len_bytes == num_tokens * HIDDEN * 4, "embed: len_bytes %llu", (unsigned long long)len_bytes);
    float *out = embed;
    CHECK(isnan(out[0]), "embed: the buffer is pre-filled with NaN");
    for (uint64_t t = 0; t < num_tokens; t++) {
        for (int j = 0; j < HIDDEN; j++) {
            out[t * HIDDEN + j] = (float)tokens[t] + (float)j / 4.0f;
        }
    }
    if (s->fill_nan) {
        out[1] = NAN;
    }
    return 0;
}

static void check_callbacks(const char *kinds_path) {
    TokenizerState ts = {.magic = 0x7a};
    EmbedState es = {.magic = 0x7b};
    CallbacksV13 cbs = {.result_callback = on_result, .result_userdata = &c, .tokenizer_callback = tokenizer,
                        .tokenizer_userdata = &ts, .embed_callback = embedder, .embed_userdata = &es};
    LLMHandle handle = open_model_with(kinds_path, 1024, false, &cbs);
    const char *prompt = "tokenise me";
    int rc = run_prompt(handle, prompt, NULL);
    char full[256];
    snprintf(full, sizeof full, "<user>%s</user><assistant>", prompt);
    int n = (int)strlen(full) % 7 + 2;
    int32_t ids[16];
    float floats[16 * HIDDEN];
    for (int i = 0; i < n; i++) {
        ids[i] = 10 + i;
        for (int j = 0; j < HIDDEN; j++) {
            floats[i * HIDDEN + j] = (float)ids[i] + (float)j / 4.0f;
        }
    }
    char tok_hex[17], emb_hex[17], want[512];
    snprintf(tok_hex, sizeof tok_hex, "%s", hex(fnv(FNV0, ids, (size_t)n * 4)));
    snprintf(emb_hex, sizeof emb_hex, "%s", hex(fnv(FNV0, floats, (size_t)n * HIDDEN * 4)));
    snprintf(want, sizeof want, "prompt|%d|%s|n=%d fnv=%s|fnv=%s|none", n, prompt, n, tok_hex, emb_hex);
    CHECK(rc == 0 && ts.calls == 1 && es.calls == 1 && es.num_tokens == (uint64_t)n, "callbacks: rc %d calls %d %d",
          rc, ts.calls, es.calls);
    CHECK(strcmp(ts.text, full) == 0, "tokenizer got \"%s\"", ts.text);
    expect_text(want, "tokenizer and embed callbacks");
    CHECK(c.perf.prefill_tokens == n, "prefill_tokens %d, want %d", c.perf.prefill_tokens, n);

    /* Token input goes to the embedding callback only. */
    int32_t in_ids[2] = {3, 4};
    TokenInput t = {.ids = in_ids, .n_tokens = 2};
    ts.calls = es.calls = 0;
    rc = run_input(handle, 1, &t, sizeof t, 0, NULL);
    float tf[2 * HIDDEN];
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < HIDDEN; j++) {
            tf[i * HIDDEN + j] = (float)in_ids[i] + (float)j / 4.0f;
        }
    }
    snprintf(want, sizeof want, "tokens n=2 fnv=%s|2||builtin|", hex(fnv(FNV0, in_ids, sizeof in_ids)));
    size_t wl = strlen(want);
    snprintf(want + wl, sizeof want - wl, "fnv=%s|none", hex(fnv(FNV0, tf, sizeof tf)));
    CHECK(rc == 0 && ts.calls == 0 && es.calls == 1, "token input with callbacks: rc %d calls %d %d", rc, ts.calls,
          es.calls);
    expect_text(want, "token input through embed_callback");

    /* Failures: ERROR and -1. */
    ts.result = -1;
    rc = run_prompt(handle, prompt, NULL);
    CHECK(rc == -1 && c.errors == 1 && c.tokens == 0 && c.finished == 0, "tokenizer -1: rc %d errors %d", rc, c.errors);
    ts.result = 1000;
    rc = run_prompt(handle, prompt, NULL);
    CHECK(rc == -1 && c.errors == 1, "tokenizer count > max: rc %d", rc);
    ts.result = 0;
    es.fill_nan = 1;
    rc = run_prompt(handle, prompt, NULL);
    CHECK(rc == -1 && c.errors == 1, "embed leaves a NaN: rc %d", rc);
    rkllm_destroy(handle);
}

/* ---- cross-attention ---- */

static void check_cross_attn(const char *kinds_path, LLMHandle without) {
    float k[3 * 2] = {1, 2, 3, 4, 5, 6}, v[3 * 2] = {6, 5, 4, 3, 2, 1}, mask[3] = {0, 0, 1};
    int32_t pos[3] = {0, 1, 2};
    CrossAttnParam p = {.encoder_k_cache = k, .encoder_v_cache = v, .encoder_mask = mask, .encoder_pos = pos,
                        .num_tokens = 3};
    CHECK(rkllm_set_cross_attn_params(without, &p) == -1, "cross-attention without use_cross_attn is refused");
    LLMHandle handle = open_model_with(kinds_path, 1024, true, NULL);
    CHECK(rkllm_set_cross_attn_params(handle, NULL) == -1, "NULL cross-attention params are refused");
    CrossAttnParam bad = p;
    bad.encoder_mask = NULL;
    CHECK(rkllm_set_cross_attn_params(handle, &bad) == -1, "a NULL mask is refused");
    bad = p;
    bad.num_tokens = 0;
    CHECK(rkllm_set_cross_attn_params(handle, &bad) == -1, "0 tokens are refused");
    CHECK(rkllm_set_cross_attn_params(handle, &p) == 0, "cross-attention params are accepted");
    const char *prompt = "x";
    uint64_t h = fnv(fnv(fnv(fnv(FNV0, k, sizeof k), v, sizeof v), mask, sizeof mask), pos, sizeof pos);
    char want[256];
    snprintf(want, sizeof want, "prompt|%d|x|builtin|builtin|tokens=3 fnv=%s", prompt_tokens(prompt), hex(h));
    int rc = run_prompt(handle, prompt, NULL);
    CHECK(rc == 0, "a run with cross-attention: %d", rc);
    expect_text(want, "cross-attention");
    /* The pointer is kept: a change shows at the next run. */
    k[0] = 100;
    p.num_tokens = 2;
    h = fnv(fnv(fnv(fnv(FNV0, k, 4 * sizeof(float)), v, 4 * sizeof(float)), mask, 2 * sizeof(float)), pos,
            2 * sizeof(int32_t));
    snprintf(want, sizeof want, "prompt|%d|x|builtin|builtin|tokens=2 fnv=%s", prompt_tokens(prompt), hex(h));
    rc = run_prompt(handle, prompt, NULL);
    expect_text(want, "cross-attention read again at the run");
    p.num_tokens = 0;
    rc = run_prompt(handle, prompt, NULL);
    CHECK(rc == -1 && c.tokens == 0 && c.errors == 0, "a run after the kept params went bad: %d", rc);
    p.num_tokens = 3;
    rkllm_destroy(handle);
}
#endif

int main(int argc, char **argv) {
#ifdef OLD_FAMILY
    const char *usage = "usage: smoke-old 1.2.0|1.2.1b1|silent WORKDIR [release-key]\n";
    bool ok_release = argc >= 2 && (strcmp(argv[1], "1.2.0") == 0 || strcmp(argv[1], "1.2.1b1") == 0 ||
                                    strcmp(argv[1], "silent") == 0);
    if (argc < 3 || argc > 4 || !ok_release || (argc == 4 && strcmp(argv[3], "release-key") != 0)) {
        fputs(usage, stderr);
        return 2;
    }
    v12 = true;
    old_120 = strcmp(argv[1], "1.2.0") == 0;
    old_121b1 = !old_120;
    const char *release_key = argc == 4 ? argv[1] : NULL;
#else
    if (argc < 3 || argc > 4 || (strcmp(argv[1], "1.2") != 0 && strcmp(argv[1], "1.3") != 0)) {
        fprintf(stderr, "usage: smoke 1.2|1.3 WORKDIR [double-destroy]\n");
        return 2;
    }
    v12 = strcmp(argv[1], "1.2") == 0;
    const char *release_key = NULL;
#endif
    const char *workdir = argv[2];
    check_default_param(v12);

    char model_path[1024];
    snprintf(model_path, sizeof model_path, "%s/model-%s.sim", workdir, argv[1]);
    char model_text[512];
    snprintf(model_text, sizeof model_text,
             "RKLLM-SIM 1\n# smoke test\nreply = Smoke {prompt}: é中文🎉 ok, turn {turn}\n%s%s%s",
             release_key ? "release = " : "", release_key ? release_key : "", release_key ? "\n" : "");
    write_file(model_path, model_text);

    if (argc == 4 && strcmp(argv[3], "double-destroy") == 0) {
        /* The simulator must abort() on the second destroy, as the runtime crashes. */
        LLMHandle handle = open_model(model_path, 1024);
        rkllm_destroy(handle);
        rkllm_destroy(handle);
        fprintf(stderr, "smoke: a double destroy returned\n");
        return 1;
    }
    bool old = old_120 || old_121b1;

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
    if (!old) {
        CHECK(c.perf.prefill_tokens == prompt_tokens(prompt), "prefill_tokens %d, want %d", c.perf.prefill_tokens,
              prompt_tokens(prompt));
        CHECK(c.perf.generate_tokens == c.tokens, "generate_tokens %d, callbacks %d", c.perf.generate_tokens,
              c.tokens);
        CHECK(c.perf.generate_time_ms == c.tokens * 40.0f, "generate_time_ms %f", c.perf.generate_time_ms);
    }

    /* A prompt cache: written at the end of the run, loaded as one turn. */
    char cache_path[1100];
    snprintf(cache_path, sizeof cache_path, "%s/cache-%s.bin", workdir, argv[1]);
    PromptCacheParam cache = {.save_prompt_cache = 1, .prompt_cache_path = cache_path};
    rc = run_prompt(handle, "cache me", &cache);
    CHECK(rc == 0 && c.finished == 1, "run with cache save: %d", rc);
    FILE *f = fopen(cache_path, "rb");
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
#ifdef OLD_FAMILY
    rc = rkllm_clear_kv_cache(handle, 1);
#else
    rc = rkllm_clear_kv_cache(handle, 1, NULL, NULL);
#endif
    CHECK(rc == 0, "rkllm_clear_kv_cache returned %d", rc);
    rc = run_prompt(handle, "more", NULL);
    CHECK(rc == 0 && strstr(c.text, "turn 1") != NULL, "after clear_kv_cache: \"%s\"", c.text);

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
    CHECK(stats[2] == 5, "runs %llu", (unsigned long long)stats[2]);
    CHECK(stats[3] == 1, "caches written %llu", (unsigned long long)stats[3]);

    /* Input kinds and infer modes. */
    char kinds_path[1100];
    snprintf(kinds_path, sizeof kinds_path, "%s/kinds-%s.sim", workdir, argv[1]);
    snprintf(model_text, sizeof model_text, "%s%s%s%s", KINDS_MODEL, release_key ? "release = " : "",
             release_key ? release_key : "", release_key ? "\n" : "");
    write_file(kinds_path, model_text);
    handle = open_model(kinds_path, 1024);
    check_kinds(handle);
#ifdef OLD_FAMILY
    const char *absent[] = {"rkllm_get_kv_cache_size", "rkllm_set_function_tools", "rkllm_set_cross_attn_params"};
    for (size_t i = 0; i < 3; i++) {
        CHECK(dlsym(RTLD_DEFAULT, absent[i]) == NULL, "%s is exported by the 1.2.0 build", absent[i]);
    }
#else
    CHECK(dlsym(RTLD_DEFAULT, "rkllm_get_kv_cache_size") != NULL, "rkllm_get_kv_cache_size is exported");
    check_cross_attn(kinds_path, handle);
    if (!v12) {
        check_callbacks(kinds_path);
    }
#endif
    rkllm_destroy(handle);
    rkllm_sim_stats(stats);
    CHECK(stats[0] == 0 && stats[1] == 0, "violations %llu, live handles %llu", (unsigned long long)stats[0],
          (unsigned long long)stats[1]);

    if (failures != 0) {
        fprintf(stderr, "smoke (%s): %d check(s) failed\n", argv[1], failures);
        return 1;
    }
    return 0;
}
