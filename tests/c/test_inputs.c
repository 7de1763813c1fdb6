/* Every input kind and both float outputs through rkl.h, with the argument
 * rules: NULL arrays, counts that overflow, fields of another kind, bad
 * struct sizes; the tensor's ownership (freed once, a copy refused). Run
 * under ASan/UBSan and valgrind: every array rkl reads is exactly the
 * caller's size, and rkl's copies outlive the caller's. */
#include "harness.h"

#include <stdint.h>

#define DIM 8

static rkl_model *model(const char *reply) {
    char body[256];
    snprintf(body, sizeof body, "reply = %s\nhidden_size = %d\nvocab_size = 50\n", reply, DIM);
    return h_open(h_model("inputs", body));
}

static void generate(rkl_model *m, const rkl_generate_params *p, h_text *out, rkl_status want) {
    h_text_init(out);
    CHECK_ST(rkl_generate(m, p, h_collect, out, NULL), want);
}

static void test_tokens(void) {
    rkl_model *m = model("[{input}|{prefill}]");
    rkl_generate_params p;
    h_text out;
    int32_t *ids = (int32_t *)malloc(3 * sizeof *ids);
    ids[0] = 7;
    ids[1] = 8;
    ids[2] = 9;
    rkl_generate_params_init(&p, sizeof p);
    p.input_kind = RKL_INPUT_TOKENS;
    p.tokens = ids;
    p.n_tokens = 3;
    generate(m, &p, &out, RKL_OK);
    CHECK(strncmp(out.text, "[tokens n=3 fnv=", 16) == 0);
    CHECK(strstr(out.text, "|3]") != NULL);
    free(ids); /* rkl copied them; nothing refers to them any more */

    p.tokens = NULL;
    generate(m, &p, &out, RKL_NULL_ARGUMENT); /* NULL with a count */
    p.n_tokens = 0;
    generate(m, &p, &out, RKL_INVALID_ARGUMENT); /* nothing to feed */
    CHECK_MSG("count is 0");
    p.input_kind = 9;
    generate(m, &p, &out, RKL_INVALID_ARGUMENT);
    CHECK_MSG("input_kind");
    p.input_kind = RKL_INPUT_TEXT;
    p.prompt = "x";
    p.n_tokens = 2; /* a field of another kind */
    generate(m, &p, &out, RKL_INVALID_ARGUMENT);
    CHECK_MSG("does not use it");
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_embeddings_and_overflow(void) {
    rkl_model *m = model("[{input}]");
    rkl_generate_params p;
    h_text out;
    float rows[2 * DIM];
    size_t i;
    for (i = 0; i < 2 * DIM; i++) rows[i] = (float)i / 4.0f;
    rkl_generate_params_init(&p, sizeof p);
    p.input_kind = RKL_INPUT_EMBEDDINGS;
    p.embeddings = rows;
    p.n_embedding_tokens = 2;
    p.embedding_dim = DIM;
    generate(m, &p, &out, RKL_OK);
    CHECK(strncmp(out.text, "[embed n=2 dim=8 fnv=", 21) == 0);
    p.n_embedding_tokens = SIZE_MAX / 4 + 1; /* tokens x dim overflows */
    generate(m, &p, &out, RKL_INVALID_ARGUMENT);
    CHECK_MSG("more than");
    p.n_embedding_tokens = 2;
    p.embedding_dim = 0;
    generate(m, &p, &out, RKL_INVALID_ARGUMENT);
    CHECK_MSG("embedding_dim is 0");
    p.embedding_dim = DIM;
    p.prompt = "text";
    generate(m, &p, &out, RKL_INVALID_ARGUMENT);
    CHECK_MSG("no prompt text");
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_images(void) {
    rkl_model *m = model("[{input}|{prompt}]");
    rkl_generate_params p;
    rkl_media_input img;
    h_text out;
    float *values = (float *)malloc(2 * 3 * DIM * sizeof *values);
    size_t i;
    for (i = 0; i < 2 * 3 * DIM; i++) values[i] = (float)i;
    CHECK_ST(rkl_media_input_init(&img, sizeof img), RKL_OK);
    img.embeddings = values;
    img.count = 2;
    img.tokens = 3;
    img.dim = DIM;
    img.width = 448;
    img.height = 448;
    rkl_generate_params_init(&p, sizeof p);
    p.input_kind = RKL_INPUT_MULTIMODAL;
    p.prompt = "<image> vs <image>";
    p.images = &img;
    generate(m, &p, &out, RKL_OK);
    CHECK(strncmp(out.text, "[multimodal images=2 tokens=3 size=448x448 ", 43) == 0);
    CHECK(strstr(out.text, "|<image> vs <image>]") != NULL);
    p.prompt = "only one <image>";
    generate(m, &p, &out, RKL_INVALID_ARGUMENT);
    CHECK_MSG("marker");
    p.prompt = "<image> vs <image>";
    img.frames = 2; /* images have no frames */
    generate(m, &p, &out, RKL_INVALID_ARGUMENT);
    img.frames = 0;
    img.struct_size = 8;
    generate(m, &p, &out, RKL_INVALID_ARGUMENT);
    CHECK_MSG("struct_size");
    img.struct_size = sizeof img;
    p.images = NULL;
    generate(m, &p, &out, RKL_NULL_ARGUMENT);
    free(values);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_hidden_states_and_logits(void) {
    rkl_model *m = model("unused");
    rkl_generate_params p;
    rkl_tensor t, copy;
    rkl_stats stats;
    rkl_generate_params_init(&p, sizeof p);
    p.prompt = "Embed me.";
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    stats.struct_size = sizeof stats;
    CHECK_ST(rkl_hidden_states(m, &p, &t, &stats), RKL_OK);
    CHECK(t.data != NULL && t.dim == DIM && t.tokens >= 1);
    CHECK(stats.tokens == 0);
    /* The last element is readable (ASan/valgrind check the size). */
    CHECK(t.data[t.tokens * t.dim - 1] == t.data[t.tokens * t.dim - 1]);
    copy = t;
    CHECK_ST(rkl_tensor_free(&t), RKL_OK);
    CHECK(t.data == NULL && t.storage == NULL && t.struct_size == sizeof t);
    CHECK_ST(rkl_tensor_free(&t), RKL_OK);                  /* owns nothing now */
    CHECK_ST(rkl_tensor_free(&copy), RKL_INVALID_ARGUMENT); /* freed through the original */
    CHECK_ST(rkl_tensor_free(NULL), RKL_OK);

    CHECK_ST(rkl_logits(m, &p, &t, NULL), RKL_OK);
    CHECK(t.tokens == 1 && t.dim == 50);
    CHECK_ST(rkl_tensor_free(&t), RKL_OK);
    CHECK_ST(rkl_logits(m, &p, NULL, NULL), RKL_NULL_ARGUMENT);
    t.struct_size = 3;
    CHECK_ST(rkl_logits(m, &p, &t, NULL), RKL_INVALID_ARGUMENT);
    t.struct_size = sizeof t;
    CHECK_ST(rkl_hidden_states(NULL, &p, &t, NULL), RKL_BAD_HANDLE);
    CHECK_ST(rkl_close(m), RKL_OK);
}

static void test_cross_attention(void) {
    rkl_open_params op;
    rkl_model *m = NULL;
    rkl_generate_params p;
    rkl_cross_attn_params c;
    h_text out;
    float *k = (float *)calloc(2 * 32, sizeof(float)), *v = (float *)calloc(2 * 32, sizeof(float));
    float mask[2] = {1.0f, 1.0f};
    int32_t pos[2] = {0, 1};
    rkl_open_params_init(&op, sizeof op);
    op.model_path = h_model("cross", "reply = [{cross_attn}]\n");
    op.use_cross_attn = 1;
    CHECK_ST(rkl_open(&op, &m), RKL_OK);
    if (!m) return;
    CHECK_ST(rkl_cross_attn_params_init(&c, sizeof c), RKL_OK);
    c.k_cache = k;
    c.v_cache = v;
    c.cache_floats = 2 * 32;
    c.mask = mask;
    c.positions = pos;
    c.num_tokens = 2;
    rkl_generate_params_init(&p, sizeof p);
    p.prompt = "x";
    p.cross_attn = &c;
    generate(m, &p, &out, RKL_OK);
    CHECK(strncmp(out.text, "[tokens=2 fnv=", 14) == 0);
    free(k);
    free(v);
    /* The runtime still points at rkl's copy: the next run reads it. */
    p.cross_attn = NULL;
    {
        h_text again;
        generate(m, &p, &again, RKL_OK);
        CHECK(strcmp(again.text, out.text) == 0);
    }
    CHECK_ST(rkl_close(m), RKL_OK);
}

int main(void) {
    (void)h_quick; /* every test here is short and runs in both ABIs */
    (void)h_abi;
    RUN(test_tokens);
    RUN(test_embeddings_and_overflow);
    RUN(test_images);
    RUN(test_hidden_states_and_logits);
    RUN(test_cross_attention);
    return h_finish();
}
