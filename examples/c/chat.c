/* chat.c: stream replies from a model to the terminal, token by token.
 *
 *   chat MODEL [PROMPT...]     answers each PROMPT; then, when stdin is a
 *                              terminal, reads more prompts (Ctrl-D ends).
 *
 * Build: cc -std=c99 chat.c $(pkg-config --cflags --libs rkl) -o chat
 * The runtime is found through RKL_RUNTIME, else as librkllmrt.so.
 * Exit status: 0 when every prompt was answered, 1 when anything failed,
 * 2 for a usage error. */
#define _POSIX_C_SOURCE 200809L
#include <rkl.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, rkl_status status) {
    char message[512];
    rkl_last_error_message(message, sizeof message);
    fprintf(stderr, "%s failed: %s: %s\n", what, rkl_status_str(status), message);
    return 1;
}

/* Called with each piece of text: whole UTF-8 characters, valid during the call. */
static int print_text(const char *text, size_t len, void *userdata) {
    (void)userdata;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0; /* non-zero stops the generation */
}

static int ask(rkl_model *model, const char *prompt) {
    rkl_generate_params request;
    rkl_stats stats = {.struct_size = sizeof stats};
    rkl_status status;

    rkl_generate_params_init(&request, sizeof request);
    request.prompt = prompt;
    request.keep_history = true; /* the next prompt continues the conversation */
    status = rkl_generate(model, &request, print_text, NULL, &stats);
    if (status != RKL_OK) return fail("rkl_generate", status);
    printf("\n[%u tokens; first text after %.0f ms; %.1f tokens/s]\n", stats.tokens, stats.ttft_ms,
           stats.decode_ms > 0 ? stats.decode_tokens * 1000.0 / stats.decode_ms : 0.0);
    return 0;
}

int main(int argc, char **argv) {
    rkl_open_params params;
    rkl_model_details info = {.struct_size = sizeof info};
    rkl_model *model;
    rkl_status status;
    char line[4096];
    int i, failed = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [PROMPT...]\n", argv[0]);
        return 2;
    }
    rkl_open_params_init(&params, sizeof params);
    params.model_path = argv[1];
    status = rkl_open(&params, &model);
    if (status != RKL_OK) return fail("rkl_open", status);
    rkl_model_info(model, &info);
    printf("rkl %s: %s on runtime %s (ABI %s)\n", rkl_version(), info.model_path, info.runtime_path,
           info.family);

    for (i = 2; i < argc; i++) {
        printf("> %s\n", argv[i]);
        failed |= ask(model, argv[i]);
    }
    while (isatty(STDIN_FILENO) && (printf("> "), fflush(stdout), fgets(line, sizeof line, stdin))) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '\0') failed |= ask(model, line);
    }
    if (isatty(STDIN_FILENO)) putchar('\n');
    status = rkl_close(model);
    if (status != RKL_OK) failed |= fail("rkl_close", status);
    return failed;
}
