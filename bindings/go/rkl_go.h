/* C helpers of the Go binding (rkl_go.c). */
#ifndef RKL_GO_H
#define RKL_GO_H

#include <stdint.h>
#include <rkl.h>

/* Installs the Go log receiver with a cgo.Handle as userdata, or removes it
 * (handle 0). */
rkl_status rkl_go_set_log(int32_t max_level, uintptr_t handle);

#endif
