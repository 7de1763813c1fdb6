/* C helpers of the Go binding (rkl_go.c). */
#ifndef RKL_GO_H
#define RKL_GO_H

#include <stdint.h>
#include <rkl.h>

/* Installs the Go log receiver with a cgo.Handle as userdata, or removes it
 * (handle 0). */
rkl_status rkl_go_set_log(int32_t max_level, uintptr_t handle);

/* What rkl_go_call runs. */
enum { RKL_GO_STREAM_OPEN = 0, RKL_GO_HIDDEN_STATES = 1, RKL_GO_LOGITS = 2, RKL_GO_CACHE_SAVE = 3 };

/* The structs of a request's inputs, without their arrays (Go memory may
 * hold no Go pointers when passed to C, so the arrays come as arguments of
 * rkl_go_call). A NULL struct pointer: that input is not given. */
typedef struct rkl_go_inputs {
    rkl_media_input images;
    rkl_media_input videos;
    rkl_cross_attn_params cross_attn;
    int has_images, has_videos, has_cross_attn;
} rkl_go_inputs;

/* Copies *params and *in, points the copies at the arrays (each NULL or a
 * pointer valid for the call) and runs `op`: `out` is an rkl_stream**
 * (stream open), an rkl_tensor* (hidden states, logits) or an
 * rkl_cache_info* (cache save, with `path`); `stats` may be NULL. */
rkl_status rkl_go_call(int op, rkl_model *model, const rkl_generate_params *params, const rkl_go_inputs *in,
                       const int32_t *tokens, const float *embeddings, const float *image_values,
                       const float *video_values, const float *k_cache, const float *v_cache, const float *mask,
                       const int32_t *positions, const char *path, void *out, rkl_stats *stats);

#endif
