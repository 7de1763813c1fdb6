/* LD_PRELOAD allocation counter for the bench drivers: counts every
 * malloc, calloc, realloc, memalign, posix_memalign, aligned_alloc and
 * valloc of the process (all threads, every library: rkl, the simulator,
 * libc), and forwards them to glibc's own implementations. The drivers read
 * the count with dlsym(RTLD_DEFAULT, "bench_malloc_count"). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static uint64_t count;

uint64_t bench_malloc_count(void) { return __atomic_load_n(&count, __ATOMIC_RELAXED); }

static inline void counted(void) { __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED); }

void *malloc(size_t n) { counted(); return __libc_malloc(n); }
void *calloc(size_t n, size_t m) { counted(); return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { counted(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t a, size_t n) { counted(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { counted(); return __libc_memalign(a, n); }
void *valloc(size_t n) { counted(); return __libc_memalign(4096, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    if (a < sizeof(void *) || (a & (a - 1))) return EINVAL;
    counted();
    void *p = __libc_memalign(a, n);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}
