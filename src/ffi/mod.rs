//! The C API (`include/rkl.h`): the only place with `extern "C"` exports and
//! raw pointers from callers.
