/* Computes an embedding vector for a text (for retrieval: RAG): the mean
 * of the last hidden layer over the text's tokens, L2-normalised. Build:
 *   cc embed.c $(pkg-config --cflags --libs rkl) -lm
 * Usage: embed MODEL "TEXT"   (prints the vector's dimension and values) */
#include <rkl.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    rkl_open_params op;
    rkl_generate_params gp;
    rkl_tensor hidden = {sizeof(rkl_tensor), NULL, 0, 0, NULL};
    rkl_model *model = NULL;
    rkl_status st;
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL TEXT\n", argv[0]);
        return 2;
    }
    rkl_open_params_init(&op, sizeof op);
    op.model_path = argv[1];
    st = rkl_open(&op, &model);
    if (st == RKL_OK) {
        rkl_generate_params_init(&gp, sizeof gp);
        gp.prompt = argv[2];
        st = rkl_hidden_states(model, &gp, &hidden, NULL);
    }
    if (st == RKL_OK) {
        double norm = 0;
        size_t t, j;
        float *mean = (float *)calloc(hidden.dim, sizeof *mean);
        for (t = 0; t < hidden.tokens; t++)
            for (j = 0; j < hidden.dim; j++) mean[j] += hidden.data[t * hidden.dim + j] / (float)hidden.tokens;
        for (j = 0; j < hidden.dim; j++) norm += (double)mean[j] * mean[j];
        norm = sqrt(norm) > 0 ? sqrt(norm) : 1;
        printf("%zu tokens -> %zu dims:", hidden.tokens, hidden.dim);
        for (j = 0; j < hidden.dim; j++) printf(" %.4f", mean[j] / norm);
        printf("\n");
        free(mean);
        rkl_tensor_free(&hidden);
    } else {
        char message[512];
        rkl_last_error_message(message, sizeof message);
        fprintf(stderr, "%s: %s\n", rkl_status_str(st), message);
    }
    rkl_close(model);
    return st == RKL_OK ? 0 : 1;
}
