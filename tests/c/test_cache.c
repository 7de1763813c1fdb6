/* Prompt caches through rkl.h: save, inspect, load, release, the prefix
 * rule, rkl_cache_info ownership, the lifetime of the path during the
 * runtime's run, every failure status, and misuse. Runs against the
 * simulator in whichever ABI RKLLM_SIM_ABI selects, under ASan+UBSan and
 * valgrind (see mk/capi.mk). */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <sys/stat.h>

#define KV_BYTES 64
#define REPLY "reply = answer to {prompt}\nkv_bytes_per_token = 64\n"

/* The prompt every cache here holds: the fixed part of later requests. */
static const char SYSTEM[] =
    "You are a careful assistant running on a Rockchip board. Answer briefly and in the "
    "user's language; say so when you do not know. Tools: none. Keep numbers exact, name "
    "units, and prefer short lists over long paragraphs. ";
static const char QUESTION[] = "What is the NPU's peak throughput?";

/* ------------------------------------------------------------ helpers */

static char g_dir[512];

/* A fresh directory for this process's caches: $RKL_TEST_TMP/<pid>-cache/<name>. */
static const char *cache_dir(const char *name) {
    static char path[16][600];
    static int next;
    char *p = path[next++ % 16];
    if (!g_dir[0]) {
        const char *base = getenv("RKL_TEST_TMP");
        if (!base || !*base) base = "/tmp";
        snprintf(g_dir, sizeof g_dir, "%s/%ld-cache", base, (long)getpid());
        if (mkdir(g_dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "cannot create %s\n", g_dir);
            exit(2);
        }
    }
    snprintf(p, 600, "%s/%s", g_dir, name);
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s\n", p);
        exit(2);
    }
    return p;
}

static const char *join(const char *dir, const char *name) {
    static char path[16][1024];
    static int next;
    char *p = path[next++ % 16];
    snprintf(p, 1024, "%s/%s", dir, name);
    return p;
}

static const char *model_a(void) {
    return h_model("cache-a", REPLY "name = model-a\n");
}

static const char *model_b(void) {
    return h_model("cache-b", REPLY "name = model-b\n# another model: other bytes, other fingerprint\n");
}

static rkl_generate_params request(const char *prompt) {
    rkl_generate_params g;
    rkl_generate_params_init(&g, sizeof g);
    g.prompt = prompt;
    return g;
}

static void info_init(rkl_cache_info *info) {
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
}

/* Fills `info` with a pattern, to prove a failing call leaves it alone. */
static void info_poison(rkl_cache_info *info) {
    memset(info, 0x5a, sizeof *info);
    info->struct_size = sizeof *info;
}

static int info_untouched(const rkl_cache_info *info) {
    rkl_cache_info want;
    info_poison(&want);
    return memcmp(info, &want, sizeof want) == 0;
}

/* SYSTEM + QUESTION, the full prompt of a request that uses the cache. */
static const char *full_prompt(const char *question) {
    static char text[1024];
    snprintf(text, sizeof text, "%s%s", SYSTEM, question);
    return text;
}

static rkl_status save(rkl_model *m, const char *prompt, const char *path, rkl_cache_info *out) {
    rkl_generate_params g = request(prompt);
    return rkl_cache_save(m, &g, path, out);
}

/* Generates `prompt`, collecting text into `out` and stats into `st`. */
static rkl_status ask(rkl_model *m, const char *prompt, h_text *out, rkl_stats *st) {
    rkl_generate_params g = request(prompt);
    h_text_init(out);
    memset(st, 0, sizeof *st);
    st->struct_size = sizeof *st;
    return rkl_generate(m, &g, h_collect, out, st);
}

static long file_size(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 ? (long)s.st_size : -1;
}

static int exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0;
}

static char *read_all(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    long n = file_size(path);
    char *buf;
    if (!f || n < 0) {
        if (f) fclose(f);
        return NULL;
    }
    buf = (char *)malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
    buf[n] = '\0';
    fclose(f);
    if (len) *len = n;
    return buf;
}

static void write_all(const char *path, const char *data, long len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* Writes `to` as `from` with the first `old` replaced by `new_text`;
 * returns whether `old` was found. */
static int copy_replacing(const char *from, const char *to, const char *old, const char *new_text) {
    long len;
    char *text = read_all(from, &len);
    char *at = text ? strstr(text, old) : NULL;
    FILE *f;
    if (!at) {
        free(text);
        return 0;
    }
    f = fopen(to, "wb");
    fwrite(text, 1, (size_t)(at - text), f);
    fputs(new_text, f);
    fputs(at + strlen(old), f);
    fclose(f);
    free(text);
    return 1;
}

static void flip_byte(const char *path, long at) {
    long len;
    char *data = read_all(path, &len);
    if (!data || at >= len) {
        fprintf(stderr, "cannot damage %s\n", path);
        exit(2);
    }
    data[at] ^= 0x01;
    write_all(path, data, len);
    free(data);
}

/* Number of entries in `dir` whose name ends in `suffix` ("" = all but . and ..). */
static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    size_t sl = strlen(suffix);
    if (!d) return -1;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (nl >= sl && strcmp(e->d_name + nl - sl, suffix) == 0) n++;
    }
    closedir(d);
    return n;
}

/* Removes `dir`, its files and its subdirectories' files (two levels, as
 * cache_dir makes them). */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1200];
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        struct stat s;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &s) == 0 && S_ISDIR(s.st_mode)) {
            remove_tree(path);
        } else {
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

static int is_hex(const char *s, size_t len) {
    size_t i;
    if (strlen(s) != len) return 0;
    for (i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* ------------------------------------------------------------ happy path */

static void test_save_and_its_info(void) {
    const char *dir = cache_dir("basic");
    const char *path = join(dir, "system prompt ✓ ünï.rklcache"); /* spaces and UTF-8 */
    const char *model_path = model_a();
    rkl_model *m = h_open(model_path);
    rkl_cache_info info, copy;
    time_t before = time(NULL);
    info_init(&info);
    CHECK_ST(save(m, SYSTEM, path, &info), RKL_OK);
    CHECK(info.struct_size == sizeof info);
    CHECK(info.storage != NULL);
    CHECK(info.verdict == RKL_VERDICT_VALID && info.verdict_status == RKL_OK);
    CHECK(info.verdict_message && info.verdict_message[0] == '\0');
    CHECK(info.manifest_path && strcmp(info.manifest_path, path) == 0);
    CHECK(info.format_version == 1);
    CHECK(info.library_version && strcmp(info.library_version, rkl_version()) == 0);
    CHECK(info.runtime_family && strcmp(info.runtime_family, h_abi()) == 0);
    CHECK(info.runtime_version != NULL);
    CHECK(info.model_path && strcmp(info.model_path, model_path) == 0);
    CHECK(info.model_size == (uint64_t)file_size(model_path));
    CHECK(info.model_mtime_ns > 0);
    CHECK(is_hex(info.model_fingerprint, 32));
    CHECK(is_hex(info.prompt_hash, 32));
    CHECK(info.prompt_bytes == strlen(SYSTEM));
    CHECK(strlen(info.prompt_preview) == 80 && strncmp(info.prompt_preview, SYSTEM, 80) == 0);
    CHECK(strcmp(info.role, "user") == 0);
    CHECK(!info.enable_thinking);
    CHECK(info.max_context_len == 0); /* left unset at open */
    CHECK(!info.has_chat_template);
    CHECK(info.chat_system && !*info.chat_system && info.chat_prefix && info.chat_postfix);
    CHECK(is_hex(info.payload_checksum, 32));
    CHECK(info.payload_path && strncmp(info.payload_path, dir, strlen(dir)) == 0);
    CHECK(file_size(info.payload_path) == (long)info.payload_size);
    CHECK(info.created_unix >= (uint64_t)before && info.created_unix <= (uint64_t)time(NULL));
    /* The save run's figures: the runtime's payload is 16 bytes plus
     * kv_bytes_per_token per prefilled token; generation stopped at once. */
    CHECK(info.save_stats != NULL);
    if (info.save_stats) {
        CHECK(info.save_stats->struct_size == sizeof(rkl_stats));
        /* 1.2 has no per-run token limit: rkl stops the save run with an
         * abort, and a runtime that stops on an abort reports no figures, so
         * there they may be 0. 1.3 stops by itself and always reports them. */
        if (strcmp(h_abi(), "1.3") == 0) CHECK(info.save_stats->prefill_tokens > 20);
        if (info.save_stats->prefill_tokens > 0)
            CHECK(info.payload_size == 16 + (uint64_t)info.save_stats->prefill_tokens * KV_BYTES);
        CHECK(info.save_stats->tokens <= 1);
        CHECK(info.save_stats->total_ms >= 0);
    }
    /* Only the manifest and its payload: no temporaries left. */
    CHECK(count_files(dir, "") == 2);
    CHECK(count_files(dir, ".kv") == 1);
    CHECK(count_files(dir, ".tmp") == 0);

    /* The strings outlive the model. */
    CHECK_ST(rkl_close(m), RKL_OK);
    CHECK(strcmp(info.model_path, model_path) == 0);

    /* Freed: every field zero, struct_size kept; freeing again is harmless;
     * a copy of the struct freed after the original is refused, not followed. */
    copy = info;
    CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
    CHECK(info.struct_size == sizeof info);
    CHECK(info.storage == NULL && info.model_path == NULL && info.save_stats == NULL);
    CHECK(info.payload_size == 0 && info.prompt_bytes == 0);
    CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
    CHECK_ST(rkl_cache_info_free(&copy), RKL_INVALID_ARGUMENT);
    CHECK_MSG("freed already");
    CHECK_ST(rkl_cache_info_free(NULL), RKL_OK);
}

static void test_inspect_reports_everything(void) {
    const char *dir = cache_dir("inspect");
    const char *path = join(dir, "c.rklcache");
    rkl_model *m = h_open(model_a());
    rkl_cache_info saved, seen;
    info_init(&saved);
    info_init(&seen);
    CHECK_ST(save(m, SYSTEM, path, &saved), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
    CHECK_ST(rkl_cache_inspect(path, &seen), RKL_OK);
    CHECK(seen.verdict == RKL_VERDICT_VALID && seen.verdict_status == RKL_OK);
    CHECK(seen.save_stats == NULL);
    CHECK(seen.storage != saved.storage);
    CHECK(strcmp(seen.prompt_hash, saved.prompt_hash) == 0);
    CHECK(strcmp(seen.model_fingerprint, saved.model_fingerprint) == 0);
    CHECK(strcmp(seen.payload_checksum, saved.payload_checksum) == 0);
    CHECK(strcmp(seen.payload_path, saved.payload_path) == 0);
    CHECK(strcmp(seen.runtime_family, saved.runtime_family) == 0);
    CHECK(seen.payload_size == saved.payload_size && seen.created_unix == saved.created_unix);
    CHECK(seen.model_size == saved.model_size && seen.model_mtime_ns == saved.model_mtime_ns);
    CHECK(seen.prompt_bytes == saved.prompt_bytes);
    CHECK_ST(rkl_cache_info_free(&saved), RKL_OK);
    CHECK_ST(rkl_cache_info_free(&seen), RKL_OK);
}

/* The settings that shape the KV state are recorded. */
static void test_recorded_settings(void) {
    const char *dir = cache_dir("settings");
    rkl_open_params p;
    rkl_model *m = NULL;
    rkl_generate_params g = request(SYSTEM);
    rkl_cache_info info;
    rkl_open_params_init(&p, sizeof p);
    p.model_path = model_a();
    p.max_context_len = 2048;
    CHECK_ST(rkl_open(&p, &m), RKL_OK);
    CHECK_ST(rkl_set_chat_template(m, "Be brief ✓", "<u>", "</u>"), RKL_OK);
    g.role = RKL_ROLE_TOOL;
    g.enable_thinking = true;
    g.keep_history = true;   /* ignored */
    g.max_new_tokens = 500;  /* ignored */
    info_init(&info);
    CHECK_ST(rkl_cache_save(m, &g, join(dir, "tool.rklcache"), &info), RKL_OK);
    CHECK(strcmp(info.role, "tool") == 0);
    CHECK(info.enable_thinking);
    CHECK(info.max_context_len == 2048);
    CHECK(info.has_chat_template);
    CHECK(strcmp(info.chat_system, "Be brief ✓") == 0);
    CHECK(strcmp(info.chat_prefix, "<u>") == 0 && strcmp(info.chat_postfix, "</u>") == 0);
    CHECK(info.save_stats && info.save_stats->tokens <= 1);
    CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_load_generate_release(void) {
    const char *dir = cache_dir("load");
    const char *path = join(dir, "c.rklcache");
    rkl_model *m = h_open(model_a());
    rkl_cache_info info;
    rkl_stats cold, warm;
    h_text out;
    char want[512];
    uint32_t tokens = 0;
    CHECK_ST(save(m, SYSTEM, path, NULL), RKL_OK); /* out may be NULL */

    CHECK_ST(ask(m, full_prompt(QUESTION), &out, &cold), RKL_OK);
    snprintf(want, sizeof want, "answer to %s", full_prompt(QUESTION));
    CHECK(strcmp(out.text, want) == 0);

    info_init(&info);
    CHECK_ST(rkl_cache_load(m, path, &info), RKL_OK);
    CHECK(info.verdict == RKL_VERDICT_VALID && info.save_stats == NULL);
    CHECK(info.prompt_bytes == strlen(SYSTEM));
    CHECK_ST(rkl_kv_cache_tokens(m, &tokens), RKL_OK);
    CHECK(tokens > 20); /* the cached prefix is the history now */

    /* The full prompt is given; only the continuation reaches the runtime. */
    CHECK_ST(ask(m, full_prompt(QUESTION), &out, &warm), RKL_OK);
    snprintf(want, sizeof want, "answer to %s", QUESTION);
    CHECK(strcmp(out.text, want) == 0);
    CHECK(warm.prefill_tokens > 0 && warm.prefill_tokens < cold.prefill_tokens / 2);
    CHECK(warm.prefill_ms < cold.prefill_ms);

    /* Again (nothing is used up), and through a stream. */
    CHECK_ST(ask(m, full_prompt("And the memory?"), &out, &warm), RKL_OK);
    CHECK(strcmp(out.text, "answer to And the memory?") == 0);
    {
        rkl_generate_params g = request(full_prompt("Streamed?"));
        rkl_stream *s = NULL;
        const char *text;
        size_t len;
        char all[512] = "";
        size_t total = 0;
        int guard = 0;
        CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
        while (rkl_stream_next(s, -1, &text, &len) == RKL_OK && text && guard++ < 1000) {
            if (total + len < sizeof all) {
                memcpy(all + total, text, len);
                total += len;
            }
        }
        all[total] = '\0';
        CHECK(strcmp(all, "answer to Streamed?") == 0);
        CHECK_ST(rkl_stream_close(s), RKL_OK);
    }

    /* Loading the same file again replaces it (and is not re-hashed). */
    {
        int round, rounds = h_quick() ? 2 : 10;
        for (round = 0; round < rounds; round++) {
            CHECK_ST(rkl_cache_load(m, path, NULL), RKL_OK);
            CHECK_ST(ask(m, full_prompt(QUESTION), &out, &warm), RKL_OK);
            CHECK(warm.prefill_tokens < cold.prefill_tokens / 2);
        }
    }

    /* Released: plain prompts again, history empty. */
    CHECK_ST(rkl_cache_release(m), RKL_OK);
    CHECK_ST(rkl_kv_cache_tokens(m, &tokens), RKL_OK);
    CHECK(tokens == 0);
    CHECK_ST(ask(m, QUESTION, &out, &warm), RKL_OK);
    snprintf(want, sizeof want, "answer to %s", QUESTION);
    CHECK(strcmp(out.text, want) == 0);
    CHECK_ST(rkl_cache_release(m), RKL_OK); /* nothing loaded: harmless */

    /* rkl_clear_history unloads it too. */
    CHECK_ST(rkl_cache_load(m, path, NULL), RKL_OK);
    CHECK_ST(rkl_clear_history(m, 0), RKL_OK);
    CHECK_ST(ask(m, QUESTION, &out, &warm), RKL_OK);
    CHECK(strcmp(out.text, want) == 0);

    CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* While a cache is loaded, each request is the FULL prompt starting with the
 * cached one; anything else is RKL_CACHE_MISMATCH, and nothing runs. */
static void test_prefix_rule(void) {
    const char *dir = cache_dir("prefix");
    const char *path = join(dir, "c.rklcache");
    rkl_model *m = h_open(model_a());
    rkl_stats st;
    h_text out;
    char edited[1024];
    rkl_stream *s = NULL;
    rkl_generate_params g;
    CHECK_ST(save(m, SYSTEM, path, NULL), RKL_OK);
    CHECK_ST(rkl_cache_load(m, path, NULL), RKL_OK);

    /* Only the suffix: refused, not prefilled twice. */
    CHECK_ST(ask(m, QUESTION, &out, &st), RKL_CACHE_MISMATCH);
    CHECK_MSG("must start with the cached prompt");
    CHECK(out.calls == 0);
    /* Only the cached prompt: nothing to continue with. */
    CHECK_ST(ask(m, SYSTEM, &out, &st), RKL_CACHE_MISMATCH);
    /* The cached part edited by one character. */
    snprintf(edited, sizeof edited, "%s", full_prompt(QUESTION));
    edited[10] = (char)(edited[10] == 'x' ? 'y' : 'x');
    CHECK_ST(ask(m, edited, &out, &st), RKL_CACHE_MISMATCH);
    CHECK(out.calls == 0);
    /* The same for streams. */
    g = request(QUESTION);
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_CACHE_MISMATCH);
    CHECK(s == NULL);
    /* The right shape still works afterwards; kept turns follow the rule too. */
    g = request(full_prompt("one"));
    g.keep_history = true;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_OK);
    g.prompt = full_prompt("two");
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_OK);
    g.prompt = "three";
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_CACHE_MISMATCH);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* With real (scaled) timing, the cache cuts prefill and time to first text. */
static void test_ttft_reduction(void) {
    const char *dir = cache_dir("ttft");
    const char *path = join(dir, "c.rklcache");
    rkl_model *m = h_open(h_model("cache-timed", REPLY
                                  "prefill_us_per_token = 5400\n"
                                  "decode_us_per_token = 2000\n"
                                  "time_scale = 0.2\n"));
    rkl_stats cold, warm;
    h_text out;
    CHECK_ST(ask(m, full_prompt(QUESTION), &out, &cold), RKL_OK);
    CHECK_ST(save(m, SYSTEM, path, NULL), RKL_OK);
    CHECK_ST(rkl_cache_load(m, path, NULL), RKL_OK);
    CHECK_ST(ask(m, full_prompt(QUESTION), &out, &warm), RKL_OK);
    CHECK(warm.prefill_tokens * 3 < cold.prefill_tokens);
    CHECK(warm.prefill_ms * 3 < cold.prefill_ms);
    CHECK(warm.ttft_ms < cold.ttft_ms);
    printf("     prefill %u -> %u tokens, TTFT %.1f -> %.1f ms (time scale 0.2)\n", cold.prefill_tokens,
           warm.prefill_tokens, cold.ttft_ms, warm.ttft_ms);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* ------------------------------------------------------------ the path's lifetime */

typedef struct {
    const char *dir;
    char *path;   /* the caller's heap copy, freed by the thread mid-run */
    size_t len;
    pthread_mutex_t lock;
    int freed;    /* set under `lock` once the caller's buffer is gone */
    int saw_run;  /* the temporary payload was there: the run had started */
} lifetime_run;

static void *free_path_mid_run(void *arg) {
    lifetime_run *r = (lifetime_run *)arg;
    int waited;
    /* The temporary payload appears once rkl has copied the path and is about
     * to start the runtime's run; wait for it (at most 20 s). */
    for (waited = 0; waited < 20000 && count_files(r->dir, ".tmp") == 0; waited++) h_sleep_ms(1);
    r->saw_run = count_files(r->dir, ".tmp") > 0;
    memset(r->path, 'X', r->len); /* scribble, then free */
    free(r->path);
    pthread_mutex_lock(&r->lock);
    r->freed = 1;
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* The caller's path buffer is scribbled over and freed while the runtime
 * runs; the simulator reads the path it was given only at the end of the
 * run, so if rkl passed the caller's memory instead of its own copy, ASan or
 * valgrind would report a use after free (and the file name would be
 * garbage). */
static void test_path_lifetime(void) {
    const char *dir = cache_dir("lifetime");
    const char *want = join(dir, "heap path.rklcache");
    rkl_model *m = h_open(h_model("cache-slow", REPLY "time_scale = 0.5\n"));
    rkl_generate_params g = request(SYSTEM);
    rkl_cache_info info;
    lifetime_run r;
    pthread_t thread;
    int freed_before_return;
    r.dir = dir;
    r.len = strlen(want) + 1;
    r.path = (char *)malloc(r.len);
    memcpy(r.path, want, r.len);
    r.freed = 0;
    r.saw_run = 0;
    pthread_mutex_init(&r.lock, NULL);
    info_init(&info);
    CHECK(pthread_create(&thread, NULL, free_path_mid_run, &r) == 0);
    CHECK_ST(rkl_cache_save(m, &g, r.path, &info), RKL_OK);
    pthread_mutex_lock(&r.lock);
    freed_before_return = r.freed;
    pthread_mutex_unlock(&r.lock);
    pthread_join(thread, NULL);
    pthread_mutex_destroy(&r.lock);
    CHECK(r.saw_run);
    CHECK(freed_before_return); /* the buffer was gone while rkl_cache_save ran */
    CHECK(info.manifest_path && strcmp(info.manifest_path, want) == 0);
    CHECK(exists(want));
    CHECK(count_files(dir, "") == 2 && count_files(dir, ".tmp") == 0);
    CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
    info_init(&info);
    CHECK_ST(rkl_cache_inspect(want, &info), RKL_OK);
    CHECK(info.verdict == RKL_VERDICT_VALID);
    CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* ------------------------------------------------------------ failures */

static void test_missing_garbage_and_future_manifests(void) {
    const char *dir = cache_dir("manifests");
    const char *good = join(dir, "good.rklcache");
    const char *garbage = join(dir, "garbage.rklcache");
    const char *future = join(dir, "future.rklcache");
    rkl_model *m = h_open(model_a());
    rkl_cache_info info;
    CHECK_ST(save(m, SYSTEM, good, NULL), RKL_OK);

    info_poison(&info);
    CHECK_ST(rkl_cache_load(m, join(dir, "absent.rklcache"), &info), RKL_CACHE_NOT_FOUND);
    CHECK_MSG("no prompt cache");
    CHECK_ST(rkl_cache_inspect(join(dir, "absent.rklcache"), &info), RKL_CACHE_NOT_FOUND);
    CHECK_ST(rkl_cache_load(m, "/nonexistent-dir-rkl/c.rklcache", &info), RKL_CACHE_NOT_FOUND);
    CHECK(info_untouched(&info));

    write_all(garbage, "{ this is not json", 18);
    CHECK_ST(rkl_cache_load(m, garbage, &info), RKL_CACHE_INVALID);
    CHECK_MSG("not valid JSON");
    CHECK_ST(rkl_cache_inspect(garbage, &info), RKL_CACHE_INVALID);
    CHECK_ST(rkl_cache_inspect(dir, &info), RKL_CACHE_INVALID); /* a directory */
    write_all(garbage, "{\"something\": 1}", 16);
    CHECK_ST(rkl_cache_inspect(garbage, &info), RKL_CACHE_INVALID);
    CHECK(info_untouched(&info));

    CHECK(copy_replacing(good, future, "\"rkl_prompt_cache\": 1", "\"rkl_prompt_cache\": 2"));
    CHECK_ST(rkl_cache_load(m, future, &info), RKL_CACHE_VERSION);
    CHECK_MSG("format 2");
    CHECK_ST(rkl_cache_inspect(future, &info), RKL_CACHE_VERSION);
    CHECK(info_untouched(&info));

    /* A manifest must never point the runtime at another file. */
    CHECK(copy_replacing(good, garbage, "\"file\": \"", "\"file\": \"../"));
    CHECK_ST(rkl_cache_load(m, garbage, NULL), RKL_CACHE_INVALID);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* Payload damage: loading fails with its own status; inspect returns RKL_OK
 * with the manifest's fields and the same status as its verdict. */
static void test_damaged_payloads(void) {
    const char *dir = cache_dir("damage");
    rkl_model *m = h_open(model_a());
    rkl_cache_info info;
    struct {
        const char *name;
        int how; /* 0 truncate, 1 remove, 2 flip a byte, 3 grow */
        rkl_status want;
    } cases[] = {
        {"truncated.rklcache", 0, RKL_CACHE_TRUNCATED},
        {"missing.rklcache", 1, RKL_CACHE_TRUNCATED},
        {"flipped.rklcache", 2, RKL_CACHE_CORRUPT},
        {"grown.rklcache", 3, RKL_CACHE_TRUNCATED},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = join(dir, cases[i].name);
        char payload[1024];
        long size;
        info_init(&info);
        CHECK_ST(save(m, SYSTEM, path, &info), RKL_OK);
        snprintf(payload, sizeof payload, "%s", info.payload_path ? info.payload_path : "");
        size = (long)info.payload_size;
        CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
        /* Loaded once (verified and remembered) before the damage. */
        CHECK_ST(rkl_cache_load(m, path, NULL), RKL_OK);
        CHECK_ST(rkl_cache_release(m), RKL_OK);
        switch (cases[i].how) {
        case 0: CHECK(truncate(payload, size - 1) == 0); break;
        case 1: CHECK(unlink(payload) == 0); break;
        case 2: flip_byte(payload, size / 2); break;
        default: {
            FILE *f = fopen(payload, "ab");
            fputc('!', f);
            fclose(f);
        }
        }
        info_poison(&info);
        CHECK_ST(rkl_cache_load(m, path, &info), cases[i].want);
        CHECK(info_untouched(&info));
        if (cases[i].how == 2) CHECK_MSG("checksum");

        info_init(&info);
        CHECK_ST(rkl_cache_inspect(path, &info), RKL_OK);
        CHECK(info.verdict == RKL_VERDICT_INVALID);
        CHECK(info.verdict_status == cases[i].want);
        CHECK(info.verdict_message && strlen(info.verdict_message) > 10);
        CHECK(info.prompt_bytes == strlen(SYSTEM) && info.payload_size == (uint64_t)size);
        CHECK(info.payload_path && strcmp(info.payload_path, payload) == 0);
        CHECK_ST(rkl_cache_info_free(&info), RKL_OK);

        /* The model is unaffected: plain prompts work (no cache loaded). */
        {
            rkl_generate_params g = request(QUESTION);
            CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_OK);
        }
    }
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_other_model_and_runtime(void) {
    const char *dir = cache_dir("mismatch");
    const char *path = join(dir, "a.rklcache");
    const char *other_family = join(dir, "family.rklcache");
    rkl_model *a = h_open(model_a());
    rkl_model *b = h_open(model_b());
    rkl_cache_info info;
    char from[64], to[64], payload[1024], renamed[1024];
    const char *unique;
    h_text out;
    rkl_stats st;
    long len;
    char *bytes;
    info_init(&info);
    CHECK_ST(save(a, SYSTEM, path, &info), RKL_OK);
    snprintf(payload, sizeof payload, "%s", info.payload_path);
    CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
    /* The copy's payload has the name rkl gives a payload of
     * family.rklcache: the manifest's name and the same unique part. */
    unique = strstr(payload, "a.rklcache.") + strlen("a.rklcache");
    snprintf(renamed, sizeof renamed, "%s%s", join(dir, "family.rklcache"), unique);
    bytes = read_all(payload, &len);
    write_all(renamed, bytes, len);
    free(bytes);

    info_poison(&info);
    CHECK_ST(rkl_cache_load(b, path, &info), RKL_CACHE_MISMATCH);
    CHECK_MSG("it was saved for model");
    CHECK(info_untouched(&info));
    /* b is untouched: plain prompts, no prefix expected. */
    CHECK_ST(ask(b, QUESTION, &out, &st), RKL_OK);

    snprintf(from, sizeof from, "\"runtime_family\": \"%s\"", h_abi());
    snprintf(to, sizeof to, "\"runtime_family\": \"%s\"", strcmp(h_abi(), "1.2") == 0 ? "1.3" : "1.2");
    CHECK(copy_replacing(path, other_family, from, to));
    CHECK(copy_replacing(other_family, other_family, "\"a.rklcache.", "\"family.rklcache."));
    CHECK_ST(rkl_cache_load(a, other_family, NULL), RKL_CACHE_MISMATCH);
    CHECK_MSG("runtime ABI");
    CHECK_ST(rkl_cache_load(a, path, NULL), RKL_OK);
    CHECK_ST(rkl_close(a), RKL_OK);
    CHECK_ST(rkl_close(b), RKL_OK);
}

/* The model file changed or vanished after the save: inspect says stale. */
static void test_stale_verdict(void) {
    const char *dir = cache_dir("stale");
    const char *path = join(dir, "c.rklcache");
    const char *model_path = h_model("cache-changing", REPLY "name = before\n");
    rkl_model *m = h_open(model_path);
    rkl_cache_info info;
    CHECK_ST(save(m, SYSTEM, path, NULL), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);

    h_model("cache-changing", REPLY "name = after, with other bytes\n");
    info_init(&info);
    CHECK_ST(rkl_cache_inspect(path, &info), RKL_OK);
    CHECK(info.verdict == RKL_VERDICT_STALE);
    CHECK(info.verdict_status == RKL_CACHE_MISMATCH);
    CHECK(strstr(info.verdict_message, "changed") != NULL);
    CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
    m = h_open(model_path);
    CHECK_ST(rkl_cache_load(m, path, NULL), RKL_CACHE_MISMATCH);
    CHECK_ST(rkl_close(m), RKL_OK);

    CHECK(unlink(model_path) == 0);
    info_init(&info);
    CHECK_ST(rkl_cache_inspect(path, &info), RKL_OK);
    CHECK(info.verdict == RKL_VERDICT_STALE);
    CHECK(strstr(info.verdict_message, "gone") != NULL);
    CHECK_ST(rkl_cache_info_free(&info), RKL_OK);
}

static void test_unwritable_places(void) {
    const char *dir = cache_dir("unwritable");
    rkl_model *m = h_open(model_a());
    rkl_cache_info info;
    info_poison(&info);
    CHECK_ST(save(m, SYSTEM, join(dir, "no such dir/c.rklcache"), &info), RKL_IO);
    CHECK_MSG("does not exist");
    /* Tests run as root, so permissions do not stop a write; /proc does. */
    CHECK_ST(save(m, SYSTEM, "/proc/rkl-test.rklcache", &info), RKL_IO);
    CHECK_MSG("cannot write");
    CHECK(info_untouched(&info));
    CHECK(!exists("/proc/rkl-test.rklcache"));
    CHECK(count_files(dir, "") == 0);
    /* The model still works. */
    CHECK_ST(save(m, SYSTEM, join(dir, "ok.rklcache"), NULL), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* A save stopped by rkl_abort() fails with RKL_ABORTED and leaves the previous
 * cache at the path whole, with no temporaries. */
typedef struct {
    const char *dir;
    rkl_model *m;
} abort_run;

static void *abort_when_running(void *arg) {
    abort_run *r = (abort_run *)arg;
    int waited;
    for (waited = 0; waited < 20000 && count_files(r->dir, ".tmp") == 0; waited++) h_sleep_ms(1);
    h_sleep_ms(20);
    rkl_abort(r->m);
    return NULL;
}

static void test_abort_keeps_the_old_cache(void) {
    const char *dir = cache_dir("abort");
    const char *path = join(dir, "c.rklcache");
    rkl_model *m = h_open(h_model("cache-abort", REPLY "time_scale = 0.5\n"));
    rkl_cache_info before, after;
    abort_run r;
    pthread_t thread;
    info_init(&before);
    CHECK_ST(save(m, "An old prompt that was cached first. ", path, &before), RKL_OK);
    r.dir = dir;
    r.m = m;
    CHECK(pthread_create(&thread, NULL, abort_when_running, &r) == 0);
    info_poison(&after);
    CHECK_ST(save(m, SYSTEM, path, &after), RKL_ABORTED);
    CHECK(info_untouched(&after));
    pthread_join(thread, NULL);
    info_init(&after);
    CHECK_ST(rkl_cache_inspect(path, &after), RKL_OK);
    CHECK(after.verdict == RKL_VERDICT_VALID);
    CHECK(strcmp(after.prompt_hash, before.prompt_hash) == 0);
    CHECK(count_files(dir, "") == 2 && count_files(dir, ".tmp") == 0);
    CHECK_ST(rkl_cache_load(m, path, NULL), RKL_OK);
    CHECK_ST(rkl_cache_info_free(&before), RKL_OK);
    CHECK_ST(rkl_cache_info_free(&after), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* A second save to the same path replaces the first whole; the old payload
 * goes. */
static void test_overwrite(void) {
    const char *dir = cache_dir("overwrite");
    const char *path = join(dir, "c.rklcache");
    rkl_model *m = h_open(model_a());
    rkl_cache_info one, two;
    info_init(&one);
    info_init(&two);
    CHECK_ST(save(m, "First prompt. ", path, &one), RKL_OK);
    CHECK_ST(save(m, SYSTEM, path, &two), RKL_OK);
    CHECK(strcmp(one.prompt_hash, two.prompt_hash) != 0);
    CHECK(!exists(one.payload_path) && exists(two.payload_path));
    CHECK(count_files(dir, "") == 2);
    CHECK_ST(rkl_cache_info_free(&one), RKL_OK);
    CHECK_ST(rkl_cache_info_free(&two), RKL_OK);
    CHECK_ST(rkl_close(m), RKL_OK);
}

/* ------------------------------------------------------------ misuse */

typedef struct {
    rkl_model *m;
    rkl_status got; /* what rkl_cache_save said inside the callback */
    int calls;
} reentry;

static int save_from_callback(const char *text, size_t len, void *userdata) {
    reentry *r = (reentry *)userdata;
    (void)text;
    (void)len;
    if (r->calls++ == 0) {
        rkl_generate_params g = request(SYSTEM);
        r->got = rkl_cache_save(r->m, &g, "/tmp/never-written.rklcache", NULL);
    }
    return 0;
}

static void test_misuse(void) {
    const char *dir = cache_dir("misuse");
    const char *path = join(dir, "c.rklcache");
    rkl_model *m = h_open(model_a());
    rkl_model *closed = h_open(model_a());
    rkl_generate_params g = request(SYSTEM);
    rkl_cache_info info;
    rkl_stream *s = NULL;
    int local = 1;
    char long_name[400];
    unsigned char big[sizeof(rkl_cache_info) + 32];
    size_t i;
    CHECK_ST(rkl_close(closed), RKL_OK);

    info_poison(&info);
    /* Handles. */
    CHECK_ST(rkl_cache_save(NULL, &g, path, &info), RKL_BAD_HANDLE);
    CHECK_ST(rkl_cache_save(closed, &g, path, &info), RKL_BAD_HANDLE);
    CHECK_MSG("closed");
    CHECK_ST(rkl_cache_save((rkl_model *)(void *)&local, &g, path, &info), RKL_BAD_HANDLE);
    CHECK_ST(rkl_cache_load(NULL, path, &info), RKL_BAD_HANDLE);
    CHECK_ST(rkl_cache_load(closed, path, &info), RKL_BAD_HANDLE);
    CHECK_ST(rkl_cache_release(NULL), RKL_BAD_HANDLE);
    CHECK_ST(rkl_cache_release(closed), RKL_BAD_HANDLE);
    CHECK_ST(rkl_cache_release((rkl_model *)(uintptr_t)0x1234), RKL_BAD_HANDLE);
    CHECK_ST(rkl_stream_open(m, &g, &s), RKL_OK);
    CHECK_ST(rkl_cache_save((rkl_model *)(void *)s, &g, path, &info), RKL_BAD_HANDLE);
    CHECK_MSG("a stream handle was passed");
    CHECK_ST(rkl_cache_load((rkl_model *)(void *)s, path, &info), RKL_BAD_HANDLE);
    CHECK_ST(rkl_stream_close(s), RKL_OK);

    /* NULL arguments. */
    CHECK_ST(rkl_cache_save(m, NULL, path, &info), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_cache_save(m, &g, NULL, &info), RKL_NULL_ARGUMENT);
    CHECK_MSG("path is NULL");
    g.prompt = NULL;
    CHECK_ST(rkl_cache_save(m, &g, path, &info), RKL_NULL_ARGUMENT);
    g.prompt = "";
    CHECK_ST(rkl_cache_save(m, &g, path, &info), RKL_INVALID_ARGUMENT);
    CHECK_MSG("empty");
    g.prompt = SYSTEM;
    CHECK_ST(rkl_cache_load(m, NULL, &info), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_cache_inspect(NULL, &info), RKL_NULL_ARGUMENT);
    CHECK_ST(rkl_cache_inspect(path, NULL), RKL_NULL_ARGUMENT);

    /* Bad text and names. */
    CHECK_ST(rkl_cache_save(m, &g, "/tmp/bad-\xff-utf8.rklcache", &info), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_cache_inspect("/tmp/bad-\xff-utf8.rklcache", &info), RKL_INVALID_ARGUMENT);
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    CHECK_ST(save(m, SYSTEM, join(dir, long_name), &info), RKL_INVALID_ARGUMENT);
    CHECK_MSG("at most 220");
    {
        /* A path naming a directory ("dir/"): refused, nothing left behind.
         * (The core currently notices only at the final rename, after the
         * prefill, and says RKL_IO; RKL_INVALID_ARGUMENT up front is wanted.) */
        rkl_status st = save(m, SYSTEM, join(dir, ""), &info);
        CHECK(st == RKL_INVALID_ARGUMENT || st == RKL_IO);
        CHECK(count_files(g_dir, ".kv") == 0 && count_files(g_dir, ".tmp") == 0);
    }
    g.role = 7;
    CHECK_ST(rkl_cache_save(m, &g, path, &info), RKL_INVALID_ARGUMENT);
    g.role = RKL_ROLE_USER;
    CHECK(info_untouched(&info));
    CHECK(count_files(dir, "") == 0);

    /* Wrong struct_size: refused before anything is done. */
    info_init(&info);
    info.struct_size = 8;
    CHECK_ST(rkl_cache_save(m, &g, path, &info), RKL_INVALID_ARGUMENT);
    CHECK_MSG("struct_size");
    CHECK(!exists(path));
    CHECK_ST(rkl_cache_inspect(path, &info), RKL_INVALID_ARGUMENT);
    CHECK_ST(rkl_cache_info_free(&info), RKL_INVALID_ARGUMENT);
    info.struct_size = 0;
    CHECK_ST(rkl_cache_load(m, path, &info), RKL_INVALID_ARGUMENT);
    g.struct_size = 4;
    CHECK_ST(rkl_cache_save(m, &g, path, NULL), RKL_INVALID_ARGUMENT);
    g.struct_size = sizeof g;
    CHECK(!exists(path));

    /* A larger struct (a newer caller): rkl writes only what it knows. */
    memset(big, 0xee, sizeof big);
    ((rkl_cache_info *)(void *)big)->struct_size = sizeof big;
    CHECK_ST(rkl_cache_save(m, &g, path, (rkl_cache_info *)(void *)big), RKL_OK);
    CHECK(((rkl_cache_info *)(void *)big)->struct_size == sizeof big);
    for (i = sizeof(rkl_cache_info); i < sizeof big; i++) CHECK(big[i] == 0xee);
    CHECK_ST(rkl_cache_info_free((rkl_cache_info *)(void *)big), RKL_OK);
    for (i = sizeof(rkl_cache_info); i < sizeof big; i++) CHECK(big[i] == 0xee);

    /* Garbage storage tokens are refused, never followed. */
    info_init(&info);
    info.storage = (void *)&local;
    CHECK_ST(rkl_cache_info_free(&info), RKL_INVALID_ARGUMENT);
    CHECK(info.storage == (void *)&local);

    /* Saving while a cache is loaded. */
    CHECK_ST(rkl_cache_load(m, path, NULL), RKL_OK);
    info_poison(&info);
    CHECK_ST(save(m, SYSTEM, join(dir, "second.rklcache"), &info), RKL_INVALID_ARGUMENT);
    CHECK_MSG("release it");
    CHECK(info_untouched(&info));
    CHECK(!exists(join(dir, "second.rklcache")));
    CHECK_ST(rkl_cache_release(m), RKL_OK);
    CHECK_ST(save(m, SYSTEM, join(dir, "second.rklcache"), NULL), RKL_OK);

    /* From inside a token callback on the same runtime: refused. */
    {
        reentry r;
        rkl_generate_params q = request(QUESTION);
        r.m = m;
        r.got = RKL_OK;
        r.calls = 0;
        CHECK_ST(rkl_generate(m, &q, save_from_callback, &r, NULL), RKL_OK);
        CHECK(r.calls > 0);
        CHECK(r.got == RKL_REENTRANT);
        CHECK(!exists("/tmp/never-written.rklcache"));
    }
    CHECK_ST(rkl_close(m), RKL_OK);
    CHECK_ST(rkl_cache_load(m, path, NULL), RKL_BAD_HANDLE);
}

/* Automatic prompt caching from C: cache_dir at open, cache_prefix_bytes
 * per request; the first request saves, the next ones hit, in this model
 * and in another one on the same directory; stats say which. */
static void test_automatic_caching(void) {
    const char *dir = join(cache_dir("auto"), "store");
    char prompt[1024];
    rkl_open_params p;
    rkl_model *m = NULL, *other = NULL;
    rkl_generate_params g;
    rkl_stats st;
    h_text out;
    int i;
    rkl_open_params_init(&p, sizeof p);
    p.model_path = model_a();
    p.cache_dir = dir;
    p.cache_max_bytes = 64u << 20;
    CHECK_ST(rkl_open(&p, &m), RKL_OK);
    CHECK_ST(rkl_open(&p, &other), RKL_OK);
    snprintf(prompt, sizeof prompt, "%s%s", SYSTEM, QUESTION);
    for (i = 0; i < 3; i++) {
        g = request(prompt);
        g.cache_prefix_bytes = strlen(SYSTEM);
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        h_text_init(&out);
        CHECK_ST(rkl_generate(i == 2 ? other : m, &g, h_collect, &out, &st), RKL_OK);
        CHECK(st.cache_use == (i == 0 ? RKL_CACHE_USE_SAVED : RKL_CACHE_USE_HIT));
        CHECK(strstr(out.text, QUESTION) != NULL);
    }
    /* A prefix that ends mid-character or at the end is refused. */
    g = request(prompt);
    g.cache_prefix_bytes = strlen(prompt);
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, NULL), RKL_INVALID_ARGUMENT);
    /* A caller built before the field existed (version 1 of the struct)
     * gets no automatic caching: the cache loaded for it is released and
     * the prompt runs whole. */
    g = request(prompt);
    g.struct_size = offsetof(rkl_generate_params, cache_prefix_bytes);
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_ST(rkl_generate(m, &g, NULL, NULL, &st), RKL_OK);
    CHECK(st.cache_use == RKL_CACHE_USE_NONE);
    CHECK_ST(rkl_close(m), RKL_OK);
    CHECK_ST(rkl_close(other), RKL_OK);
    rkl_open_params_init(&p, sizeof p);
    p.model_path = model_a();
    p.cache_max_bytes = 1;
    CHECK_ST(rkl_open(&p, &m), RKL_INVALID_ARGUMENT);
    CHECK_MSG("cache_dir");
}

int main(void) {
    printf("rkl %s, simulator ABI %s\n", rkl_version(), h_abi());
    RUN(test_save_and_its_info);
    RUN(test_inspect_reports_everything);
    RUN(test_recorded_settings);
    RUN(test_load_generate_release);
    RUN(test_prefix_rule);
    RUN(test_ttft_reduction);
    RUN(test_path_lifetime);
    RUN(test_missing_garbage_and_future_manifests);
    RUN(test_damaged_payloads);
    RUN(test_other_model_and_runtime);
    RUN(test_stale_verdict);
    RUN(test_unwritable_places);
    RUN(test_abort_keeps_the_old_cache);
    RUN(test_overwrite);
    RUN(test_misuse);
    RUN(test_automatic_caching);
    if (h_failed == 0) remove_tree(g_dir); /* kept for a look when something failed */
    return h_finish();
}
