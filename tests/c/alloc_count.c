/* alloc_count.c: the --wrap wrappers behind alloc_count(). */
#include <stddef.h>

#include "alloc_count.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *ptr, size_t size);
int __real_posix_memalign(void **out, size_t alignment, size_t size);

static long allocations;

long alloc_count(void) { return __atomic_load_n(&allocations, __ATOMIC_RELAXED); }

static void count(void) { __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED); }

void *__wrap_malloc(size_t size) { count(); return __real_malloc(size); }
void *__wrap_calloc(size_t count_, size_t size) { count(); return __real_calloc(count_, size); }
void *__wrap_realloc(void *ptr, size_t size) { count(); return __real_realloc(ptr, size); }
int __wrap_posix_memalign(void **out, size_t alignment, size_t size)
{
    count();
    return __real_posix_memalign(out, alignment, size);
}
