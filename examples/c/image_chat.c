/* Asks a vision-language model about an image whose embeddings a vision
 * encoder wrote to a file (raw little-endian float32, tokens x dim; running
 * the encoder is not rkl's part). Build:
 *   cc image_chat.c $(pkg-config --cflags --libs rkl)
 * Usage: image_chat MODEL EMBEDDINGS.f32 TOKENS DIM "QUESTION" */
#include <rkl.h>

#include <stdio.h>
#include <stdlib.h>

static int print(const char *text, size_t len, void *userdata) {
    (void)userdata;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* Reads the whole file into a float array of `count` values. */
static float *read_floats(const char *path, size_t count) {
    FILE *f = fopen(path, "rb");
    float *values = (float *)malloc(count * sizeof *values);
    size_t got = 0;
    if (f && values) got = fread(values, sizeof *values, count, f);
    if (!f || got != count || fgetc(f) != EOF) {
        fprintf(stderr, "%s: expected exactly %zu floats\n", path, count);
        free(values);
        values = NULL;
    }
    if (f) fclose(f);
    return values;
}

int main(int argc, char **argv) {
    rkl_open_params op;
    rkl_generate_params gp;
    rkl_media_input image;
    rkl_model *model = NULL;
    char prompt[4096];
    size_t tokens, dim;
    float *embeddings;
    rkl_status st;
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL EMBEDDINGS.f32 TOKENS DIM QUESTION\n", argv[0]);
        return 2;
    }
    tokens = strtoul(argv[3], NULL, 10);
    dim = strtoul(argv[4], NULL, 10);
    embeddings = read_floats(argv[2], tokens * dim);
    if (!embeddings) return 1;

    rkl_open_params_init(&op, sizeof op);
    op.model_path = argv[1];
    /* Qwen2-VL's tags; 1.2 takes them at open, 1.3 per request: rkl does both. */
    op.image_start = "<|vision_start|>";
    op.image_end = "<|vision_end|>";
    op.image_content = "<|image_pad|>";
    st = rkl_open(&op, &model);
    if (st == RKL_OK) {
        rkl_media_input_init(&image, sizeof image);
        image.embeddings = embeddings;
        image.count = 1;
        image.tokens = tokens;
        image.dim = dim;
        snprintf(prompt, sizeof prompt, "<image>%s", argv[5]);
        rkl_generate_params_init(&gp, sizeof gp);
        gp.input_kind = RKL_INPUT_MULTIMODAL;
        gp.prompt = prompt;
        gp.images = &image;
        st = rkl_generate(model, &gp, print, NULL, NULL);
        printf("\n");
    }
    free(embeddings); /* rkl copied what it needed */
    if (st != RKL_OK) {
        char message[512];
        rkl_last_error_message(message, sizeof message);
        fprintf(stderr, "%s: %s\n", rkl_status_str(st), message);
    }
    rkl_close(model);
    return st == RKL_OK ? 0 : 1;
}
