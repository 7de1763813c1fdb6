/* The one callback from C into Go: log messages. The userdata is a
 * cgo.Handle (an integer), never a Go pointer. */
#include "rkl_go.h"
#include "_cgo_export.h"

static void rkl_go_log(rkl_log_level level, const char *target, const char *message, void *userdata) {
    rklGoLog((int32_t)level, (char *)target, (char *)message, (uintptr_t)userdata);
}

rkl_status rkl_go_set_log(int32_t max_level, uintptr_t handle) {
    if (handle == 0) return rkl_set_log_callback(NULL, 0, NULL);
    return rkl_set_log_callback(rkl_go_log, max_level, (void *)handle);
}
