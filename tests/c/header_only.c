/* Compiled, not run: rkl.h alone must compile warning-free as C99 and as
 * C++11 (-Wall -Wextra -Werror -pedantic), and its types must have the
 * sizes the library was built with. */
#include <rkl.h>

#include <stddef.h>

#ifdef __cplusplus
#define RKL_STATIC_ASSERT(cond, msg) static_assert(cond, #msg)
#else
#define RKL_STATIC_ASSERT(cond, msg) typedef char rkl_static_assert_##msg[(cond) ? 1 : -1]
#endif

RKL_STATIC_ASSERT(sizeof(rkl_status) == 4, status_is_32_bits);
RKL_STATIC_ASSERT(sizeof(rkl_finish_reason) == 4, finish_is_32_bits);
#if UINTPTR_MAX == 0xffffffffffffffffu
RKL_STATIC_ASSERT(sizeof(rkl_open_params) == 224, open_params_size);
/* Each version of a struct ended where the next one's fields start; later
 * fields only follow. */
RKL_STATIC_ASSERT(offsetof(rkl_open_params, flags) == 104, open_params_v1_size);
RKL_STATIC_ASSERT(offsetof(rkl_open_params, cache_dir) == 120, open_params_v2_size);
RKL_STATIC_ASSERT(offsetof(rkl_open_params, use_cross_attn) == 136, open_params_v3_size);
RKL_STATIC_ASSERT(sizeof(rkl_generate_params) == 128, generate_params_size);
RKL_STATIC_ASSERT(offsetof(rkl_generate_params, input_kind) == 56, generate_params_v2_inputs);
RKL_STATIC_ASSERT(sizeof(rkl_media_input) == 64, media_input_size);
RKL_STATIC_ASSERT(sizeof(rkl_cross_attn_params) == 56, cross_attn_params_size);
RKL_STATIC_ASSERT(sizeof(rkl_tensor) == 40, tensor_size);
RKL_STATIC_ASSERT(sizeof(rkl_input_kind) == 4, input_kind_is_32_bits);
RKL_STATIC_ASSERT(sizeof(rkl_sampling_params) == 48, sampling_params_size);
RKL_STATIC_ASSERT(offsetof(rkl_generate_params, cache_prefix_bytes) == 40, generate_params_v1_size);
RKL_STATIC_ASSERT(sizeof(rkl_stats) == 88, stats_size);
RKL_STATIC_ASSERT(offsetof(rkl_stats, abort_ms) == 72, stats_v1_size);
RKL_STATIC_ASSERT(offsetof(rkl_stats, cache_use) == 80, stats_v2_size);
RKL_STATIC_ASSERT(sizeof(rkl_cache_use) == 4, cache_use_is_32_bits);
RKL_STATIC_ASSERT(sizeof(rkl_model_details) == 40, details_size);
#endif

int rkl_header_only_probe(void);

int rkl_header_only_probe(void) {
    rkl_open_params p;
    rkl_generate_params g;
    rkl_model *m = 0;
    rkl_status st = rkl_open_params_init(&p, sizeof p);
    (void)rkl_generate_params_init(&g, sizeof g);
    (void)m;
    return (int)st + RKL_VERSION_MAJOR + RKL_UNSET / RKL_UNSET;
}
