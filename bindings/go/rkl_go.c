/* C helpers of the Go binding. The one callback from C into Go: log
 * messages; its userdata is a cgo.Handle (an integer), never a Go pointer. */
#include "rkl_go.h"
#include "_cgo_export.h"

static void rkl_go_log(rkl_log_level level, const char *target, const char *message, void *userdata) {
    rklGoLog((int32_t)level, (char *)target, (char *)message, (uintptr_t)userdata);
}

rkl_status rkl_go_set_log(int32_t max_level, uintptr_t handle) {
    if (handle == 0) return rkl_set_log_callback(NULL, 0, NULL);
    return rkl_set_log_callback(rkl_go_log, max_level, (void *)handle);
}

rkl_status rkl_go_call(int op, rkl_model *model, const rkl_generate_params *params, const rkl_go_inputs *in,
                       const int32_t *tokens, const float *embeddings, const float *image_values,
                       const float *video_values, const float *k_cache, const float *v_cache, const float *mask,
                       const int32_t *positions, const char *path, void *out, rkl_stats *stats) {
    rkl_generate_params p = *params;
    rkl_go_inputs local = *in;
    p.tokens = tokens;
    p.embeddings = embeddings;
    if (local.has_images) {
        local.images.embeddings = image_values;
        p.images = &local.images;
    }
    if (local.has_videos) {
        local.videos.embeddings = video_values;
        p.videos = &local.videos;
    }
    if (local.has_cross_attn) {
        local.cross_attn.k_cache = k_cache;
        local.cross_attn.v_cache = v_cache;
        local.cross_attn.mask = mask;
        local.cross_attn.positions = positions;
        p.cross_attn = &local.cross_attn;
    }
    switch (op) {
    case RKL_GO_STREAM_OPEN: return rkl_stream_open(model, &p, (rkl_stream **)out);
    case RKL_GO_HIDDEN_STATES: return rkl_hidden_states(model, &p, (rkl_tensor *)out, stats);
    case RKL_GO_LOGITS: return rkl_logits(model, &p, (rkl_tensor *)out, stats);
    case RKL_GO_CACHE_SAVE: return rkl_cache_save(model, &p, path, (rkl_cache_info *)out);
    }
    return RKL_INVALID_ARGUMENT;
}
