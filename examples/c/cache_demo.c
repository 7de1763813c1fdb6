/* cache_demo.c: time to first token for the same request without and with
 * a prompt cache.
 *
 *   cache_demo MODEL DIR     saves DIR/system-prompt.rklcache (and its payload)
 *
 * A long, fixed system prompt is the part every request shares. Without a
 * cache the runtime prefills all of it for every request; with a cache saved
 * once (rkl_cache_save) and loaded (rkl_cache_load), only the new part is
 * prefilled. Requests still give the FULL prompt: rkl checks that it starts
 * with the cached prompt and sends only the rest.
 *
 * Build: cc -std=c99 cache_demo.c $(pkg-config --cflags --libs rkl) -o cache_demo
 * The runtime is found through RKL_RUNTIME, else as librkllmrt.so. */
#define _POSIX_C_SOURCE 200809L
#include <rkl.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The shared part of every request: about 1300 characters. */
static const char SYSTEM_PROMPT[] =
    "You are Rocky, the support assistant of an industrial gateway built on the Rockchip "
    "RK3588. Answer in the language of the question, in at most three short sentences, and "
    "never invent numbers. The device has an eight-core CPU (four Cortex-A76 and four "
    "Cortex-A55 cores), a Mali-G610 GPU, and an NPU with three cores rated at 6 TOPS for INT8 "
    "work. It ships with 8 GB of LPDDR4x memory, 64 GB of eMMC storage, two gigabit Ethernet "
    "ports, one RS-485 port, one CAN bus port, Wi-Fi 6 and Bluetooth 5.2. It runs Debian 12 "
    "with a long-term support kernel. The language model you run on is Qwen3 0.6B, converted "
    "with the RKLLM toolkit and quantised to W8A8. Users are field technicians who install "
    "the gateway in factories, pumping stations and solar farms. Typical questions are about "
    "wiring, network setup, firmware updates, log files, and the status LEDs. When a question "
    "is about safety, such as mains power, high voltage or lockout procedures, tell the user "
    "to follow the site's safety rules and to ask a qualified electrician. When you do not "
    "know the answer, say so and suggest opening a ticket at the support portal with the "
    "serial number from the label on the bottom of the case. Put shell commands in code "
    "blocks and explain each flag. Do not discuss other products or prices.\n\n";

static const char QUESTION[] = "How fast is the NPU?";

static int fail(const char *what, rkl_status status) {
    char message[1024];
    rkl_last_error_message(message, sizeof message);
    fprintf(stderr, "%s failed: %s: %s\n", what, rkl_status_str(status), message);
    return 1;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int print_text(const char *text, size_t len, void *userdata) {
    (void)userdata;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* Asks the full prompt (system prompt + question) and reports the timing. */
static int ask(rkl_model *model, const char *label, rkl_stats *stats) {
    static char prompt[sizeof SYSTEM_PROMPT + sizeof QUESTION];
    rkl_generate_params request;
    rkl_status status;
    snprintf(prompt, sizeof prompt, "%s%s", SYSTEM_PROMPT, QUESTION);
    rkl_generate_params_init(&request, sizeof request);
    request.prompt = prompt;
    printf("%s  ", label);
    fflush(stdout);
    memset(stats, 0, sizeof *stats);
    stats->struct_size = sizeof *stats;
    status = rkl_generate(model, &request, print_text, NULL, stats);
    if (status != RKL_OK) return fail("rkl_generate", status);
    printf("\n    TTFT %.0f ms (prefill of %u tokens: %.0f ms)\n", stats->ttft_ms, stats->prefill_tokens,
           stats->prefill_ms);
    return 0;
}

int main(int argc, char **argv) {
    rkl_open_params params;
    rkl_model_details details = {.struct_size = sizeof details};
    rkl_generate_params cached;
    rkl_cache_info info = {.struct_size = sizeof info};
    rkl_stats cold, warm;
    rkl_model *model;
    rkl_status status;
    char path[4096];
    double started, load_ms;

    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL DIR\n", argv[0]);
        return 2;
    }
    snprintf(path, sizeof path, "%s/system-prompt.rklcache", argv[2]);

    rkl_open_params_init(&params, sizeof params);
    params.model_path = argv[1];
    params.max_context_len = 4096;
    status = rkl_open(&params, &model);
    if (status != RKL_OK) return fail("rkl_open", status);
    rkl_model_info(model, &details);
    printf("rkl %s: %s on runtime ABI %s\n", rkl_version(), details.model_path, details.family);
    printf("Every request: a %zu-character system prompt, then \"%s\"\n\n", strlen(SYSTEM_PROMPT),
           QUESTION);

    /* 1. Without a cache: the whole prompt is prefilled. */
    if (ask(model, "without cache:", &cold)) return 1;

    /* 2. Save the system prompt's KV state once (prefill + first token). */
    rkl_generate_params_init(&cached, sizeof cached);
    cached.prompt = SYSTEM_PROMPT;
    status = rkl_cache_save(model, &cached, path, &info);
    if (status != RKL_OK) return fail("rkl_cache_save", status);
    printf("\nsaved %s\n    %.1f MiB payload, prefill of %u tokens took %.0f ms, checksum %.16s...\n",
           info.manifest_path, info.payload_size / 1048576.0,
           info.save_stats ? info.save_stats->prefill_tokens : 0,
           info.save_stats ? info.save_stats->prefill_ms : 0.0, info.payload_checksum);
    rkl_cache_info_free(&info);

    /* 3. Load it: validated (manifest, size, checksum, model, runtime) before
     *    the runtime reads it. */
    started = now_ms();
    status = rkl_cache_load(model, path, &info);
    load_ms = now_ms() - started;
    if (status != RKL_OK) return fail("rkl_cache_load", status);
    printf("loaded in %.0f ms, validated first (a payload is hashed once per process while\n"
           "    unchanged): model %s, runtime %s, prompt \"%.40s...\"\n\n", load_ms,
           info.model_path, info.runtime_family, info.prompt_preview);
    rkl_cache_info_free(&info);

    /* 4. The same request: only the question is prefilled now. */
    if (ask(model, "with cache:   ", &warm)) return 1;

    /* The prefix rule: a request that does not start with the cached prompt
     *    is an error, never a silently doubled prefix. */
    {
        rkl_generate_params wrong;
        rkl_generate_params_init(&wrong, sizeof wrong);
        wrong.prompt = QUESTION;
        char message[1024] = "";
        status = rkl_generate(model, &wrong, NULL, NULL, NULL);
        rkl_last_error_message(message, sizeof message);
        printf("\nthe question alone while the cache is loaded: %s\n    %s\n", rkl_status_str(status),
               message);
    }

    printf("\nTTFT %.0f ms -> %.0f ms, %.0fx\n", cold.ttft_ms, warm.ttft_ms,
           warm.ttft_ms > 0 ? cold.ttft_ms / warm.ttft_ms : 0.0);

    rkl_cache_release(model);
    rkl_close(model);
    return 0;
}
