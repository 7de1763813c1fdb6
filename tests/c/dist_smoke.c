/* The packaged library as a user's program sees it (scripts/dist-test.sh):
 *
 *   dist_smoke version            prints rkl_version()
 *   dist_smoke MODEL [isolated]   opens MODEL (in a worker with "isolated"),
 *                                 generates a reply to "ping", prints it
 *
 * Exit status 0 on success, 1 with rkl's message on stderr otherwise. */
#include <rkl.h>
#include <stdio.h>
#include <string.h>

static int print_text(const char *text, size_t len, void *userdata) {
    (void)userdata;
    fwrite(text, 1, len, stdout);
    return 0;
}

static int fail(const char *what) {
    char why[512];
    rkl_last_error_message(why, sizeof why);
    fprintf(stderr, "%s: %s\n", what, why);
    return 1;
}

int main(int argc, char **argv) {
    rkl_open_params open;
    rkl_generate_params ask;
    rkl_model *model;
    rkl_stats stats;
    if (argc < 2) {
        fprintf(stderr, "usage: %s version | MODEL [isolated]\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "version") == 0) {
        printf("%s\n", rkl_version());
        return 0;
    }
    rkl_open_params_init(&open, sizeof open);
    open.model_path = argv[1];
    if (argc > 2 && strcmp(argv[2], "isolated") == 0) open.flags = RKL_OPEN_ISOLATED;
    if (rkl_open(&open, &model) != RKL_OK) return fail("rkl_open");
    rkl_generate_params_init(&ask, sizeof ask);
    ask.prompt = "ping";
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    if (rkl_generate(model, &ask, print_text, NULL, &stats) != RKL_OK) {
        int status = fail("rkl_generate");
        rkl_close(model);
        return status;
    }
    printf("\n%u tokens\n", stats.tokens);
    return rkl_close(model) == RKL_OK ? 0 : fail("rkl_close");
}
