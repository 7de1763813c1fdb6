/* The baseline: a plain C program driving librkllmrt.so (the simulator)
 * directly through rkllm_run, with the 1.3 struct layouts declared here from
 * the ABI facts (rkllm-abi.md), exactly as an application without rkl would.
 *
 *   raw_rkllm tokens    MODEL ROUNDS        per-token cost of rkllm_run
 *   raw_rkllm roundtrip MODEL ROUNDS        rkllm_run with max_new_tokens 1
 *   raw_rkllm openclose MODEL ROUNDS        rkllm_init + rkllm_destroy
 *   raw_rkllm abort     MODEL ROUNDS MAXDELAY_US
 *                                           rkllm_abort -> rkllm_run returns
 *
 * Results are "BENCH {json}" lines on stdout (see common.h). Link with
 * -lrkllmrt; run with RKLLM_SIM_ABI=1.3.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef void *LLMHandle;

typedef struct {
    int32_t base_domain_id;
    int8_t embed_flash;
    int8_t enabled_cpus_num;
    uint32_t enabled_cpus_mask;
    uint8_t n_batch;
    int8_t use_cross_attn;
    uint8_t reserved[104];
} RKLLMExtendParam;

typedef struct {
    const char *model_path;
    int32_t max_context_len;
    int32_t max_new_tokens;
    int32_t top_k;
    int32_t n_keep;
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
    bool skip_special_token;
    bool ignore_eos_token;
    bool is_async;
    RKLLMExtendParam extend_param;
} RKLLMParam;

typedef struct {
    const char *role;
    bool enable_thinking;
    int32_t input_type;
    union {
        const char *prompt;
        unsigned char multimodal[144];
    } u;
} RKLLMInput;

typedef struct {
    int32_t mode;
    void *lora_params;
    void *prompt_cache_params;
    void *sampling_params;
    int32_t keep_history;
    int32_t max_new_tokens;
} RKLLMInferParam;

typedef struct {
    float prefill_time_ms;
    int32_t prefill_tokens;
    float generate_time_ms;
    int32_t generate_tokens;
    float memory_usage_mb;
} RKLLMPerfStat;

typedef struct {
    const char *text;
    int32_t token_id;
    struct {
        float *hidden_states;
        int32_t embd_size;
        int32_t num_tokens;
    } last_hidden_layer;
    struct {
        float *logits;
        int32_t vocab_size;
        int32_t num_tokens;
    } logits;
    RKLLMPerfStat perf;
} RKLLMResult;

typedef int (*LLMResultCallback)(RKLLMResult *result, void *userdata, int state);

typedef struct {
    LLMResultCallback result_cb;
    void *result_userdata;
    void *tokenizer_cb;
    void *tokenizer_userdata;
    void *embed_cb;
    void *embed_userdata;
} RKLLMCallback;

_Static_assert(sizeof(RKLLMExtendParam) == 120, "RKLLMExtendParam");
_Static_assert(offsetof(RKLLMParam, extend_param) == 60, "extend_param");
_Static_assert(sizeof(RKLLMParam) == 184, "RKLLMParam 1.3");
_Static_assert(sizeof(RKLLMInput) == 160, "RKLLMInput 1.3");
_Static_assert(sizeof(RKLLMInferParam) == 40, "RKLLMInferParam 1.3");
_Static_assert(offsetof(RKLLMResult, perf) == 48 && sizeof(RKLLMResult) == 72, "RKLLMResult");
_Static_assert(sizeof(RKLLMCallback) == 48, "RKLLMCallback 1.3");

/* Returned through a hidden pointer; the runtime writes its own size (184
 * in 1.3), so the declared type is oversized, as rkllm-abi.md asks. */
typedef struct {
    _Alignas(8) unsigned char bytes[512];
} ParamProbe;

ParamProbe rkllm_createDefaultParam(void);
int rkllm_init(LLMHandle *handle, RKLLMParam *param, RKLLMCallback *callback);
int rkllm_run(LLMHandle handle, RKLLMInput *input, RKLLMInferParam *infer, void *userdata);
int rkllm_abort(LLMHandle handle);
int rkllm_destroy(LLMHandle handle);

enum { NORMAL = 0, WAITING = 1, FINISH = 2, ERROR = 3 };

typedef struct {
    uint64_t tokens;
    uint64_t bytes;
    int finished;
    int failed;
    sem_t *first; /* posted at the first token when set */
    uint64_t abort_at; /* call rkllm_abort at this callback (1-based), 0: never */
    uint64_t t_abort;
    LLMHandle handle;
} Sink;

/* The application's callback: as cheap as the one given to rkl_generate
 * (count the bytes of the text). */
static int on_result(RKLLMResult *r, void *userdata, int state) {
    Sink *s = userdata;
    if (state == NORMAL || state == WAITING) {
        if (r->text) s->bytes += strlen(r->text);
        uint64_t n = __atomic_add_fetch(&s->tokens, 1, __ATOMIC_RELAXED);
        if (n == 1 && s->first) sem_post(s->first);
        if (n == s->abort_at) {
            s->t_abort = now_ns();
            rkllm_abort(s->handle);
        }
    } else if (state == FINISH) {
        s->finished = 1;
    } else if (state == ERROR) {
        s->failed = 1;
    }
    return 0;
}

static LLMHandle open_model(const char *path) {
    ParamProbe probe = rkllm_createDefaultParam();
    RKLLMParam param;
    memcpy(&param, probe.bytes, sizeof param);
    param.model_path = path;
    param.max_context_len = 16384;
    param.max_new_tokens = -1;
    static RKLLMCallback cb = {on_result, NULL, NULL, NULL, NULL, NULL};
    LLMHandle h = NULL;
    if (rkllm_init(&h, &param, &cb) != 0 || !h) die("rkllm_init failed");
    return h;
}

static int run(LLMHandle h, const char *prompt, int max_new_tokens, Sink *sink) {
    RKLLMInput in;
    memset(&in, 0, sizeof in);
    in.role = "user";
    in.input_type = 0;
    in.u.prompt = prompt;
    RKLLMInferParam infer;
    memset(&infer, 0, sizeof infer);
    infer.max_new_tokens = max_new_tokens;
    return rkllm_run(h, &in, &infer, sink);
}

static void bench_tokens(const char *model, int rounds) {
    LLMHandle h = open_model(model);
    Sink warm = {0};
    run(h, "bench", 0, &warm); /* warm-up */
    double *ns = calloc((size_t)rounds, sizeof *ns);
    uint64_t tokens = 0;
    for (int i = 0; i < rounds; i++) {
        Sink s = {0};
        uint64_t t0 = now_ns();
        if (run(h, "bench", 0, &s) != 0 || !s.finished) die("rkllm_run failed");
        ns[i] = (double)(now_ns() - t0) / (double)s.tokens;
        tokens = s.tokens;
    }
    char extra[256];
    snprintf(extra, sizeof extra, "\"tokens\":%llu", (unsigned long long)tokens);
    emit("raw_tokens", "ns/token", ns, rounds, extra);
    /* Allocations per token in steady state: the difference between a long
     * and a short run, so per-run costs cancel. */
    if (malloc_count() >= 0) {
        int n1 = (int)(tokens / 4), n2 = (int)tokens;
        double per_token[3];
        for (int k = 0; k < 3; k++) {
            Sink a = {0}, b = {0};
            long long c0 = malloc_count();
            run(h, "bench", n1, &a);
            long long c1 = malloc_count();
            run(h, "bench", n2, &b);
            long long c2 = malloc_count();
            per_token[k] = (double)((c2 - c1) - (c1 - c0)) / (double)(b.tokens - a.tokens);
        }
        emit("raw_allocs", "allocs/token", per_token, 3, NULL);
    }
    rkllm_destroy(h);
    free(ns);
}

static void bench_roundtrip(const char *model, int rounds) {
    LLMHandle h = open_model(model);
    double *us = calloc((size_t)rounds, sizeof *us);
    for (int i = -10; i < rounds; i++) {
        Sink s = {0};
        uint64_t t0 = now_ns();
        if (run(h, "bench", 1, &s) != 0 || s.tokens != 1) die("rkllm_run (1 token) failed");
        if (i >= 0) us[i] = (double)(now_ns() - t0) / 1000.0;
    }
    emit("raw_roundtrip", "us", us, rounds, NULL);
    rkllm_destroy(h);
    free(us);
}

static void bench_openclose(const char *model, int rounds) {
    double *us = calloc((size_t)rounds + 1, sizeof *us);
    for (int i = 0; i <= rounds; i++) {
        uint64_t t0 = now_ns();
        LLMHandle h = open_model(model);
        rkllm_destroy(h);
        us[i] = (double)(now_ns() - t0) / 1000.0;
    }
    emit("raw_open_first", "us", us, 1, NULL);
    emit("raw_openclose", "us", us + 1, rounds, NULL);
    free(us);
}

typedef struct {
    LLMHandle h;
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
    a->seen_at_abort = __atomic_load_n(&a->sink->tokens, __ATOMIC_RELAXED);
    rkllm_abort(a->h);
    return NULL;
}

static void bench_abort(const char *model, int rounds, uint64_t max_delay_us) {
    LLMHandle h = open_model(model);
    double *us = calloc((size_t)rounds, sizeof *us), *after = calloc((size_t)rounds, sizeof *after);
    int done = 0;
    for (int i = 0; i < rounds * 5 && done < rounds; i++) {
        Aborter a = {.h = h, .max_delay_ns = max_delay_us * 1000};
        sem_init(&a.first, 0, 0);
        Sink s = {.first = &a.first, .handle = h};
        a.sink = &s;
        pthread_t t;
        if (max_delay_us) pthread_create(&t, NULL, abort_thread, &a);
        else s.abort_at = abort_index();
        run(h, "bench", 0, &s);
        uint64_t end = now_ns();
        if (max_delay_us) {
            if (s.tokens == 0) sem_post(&a.first);
            pthread_join(t, NULL);
        } else {
            atomic_store(&a.t_abort, s.t_abort);
            a.seen_at_abort = s.abort_at;
        }
        sem_destroy(&a.first);
        if (s.finished) continue; /* ended before the abort: not a sample */
        after[done] = (double)(s.tokens - a.seen_at_abort);
        us[done++] = (double)(end - atomic_load(&a.t_abort)) / 1000.0;
    }
    if (done == 0) die("abort: no generation was still running at the abort");
    emit("raw_abort", "us", us, done, NULL);
    emit("raw_abort_after", "callbacks", after, done, NULL);
    rkllm_destroy(h);
    free(us);
    free(after);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s tokens|roundtrip|openclose|abort MODEL ROUNDS [MAXDELAY_US]\n", argv[0]);
        return 2;
    }
    const char *cmd = argv[1], *model = argv[2];
    int rounds = atoi(argv[3]);
    if (rounds < 1) rounds = 1;
    if (!strcmp(cmd, "tokens")) bench_tokens(model, rounds);
    else if (!strcmp(cmd, "roundtrip")) bench_roundtrip(model, rounds);
    else if (!strcmp(cmd, "openclose")) bench_openclose(model, rounds);
    else if (!strcmp(cmd, "abort")) bench_abort(model, rounds, argc > 4 ? strtoull(argv[4], NULL, 10) : 0);
    else die("unknown command");
    return 0;
}
