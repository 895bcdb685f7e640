/* alloc_count.h: counts the heap allocations made by the core's own code.
 * The C tests link with -Wl,--wrap for malloc, calloc, realloc and posix_memalign,
 * so every call from trugrade's objects passes through alloc_count.c. */
#ifndef TG_ALLOC_COUNT_H
#define TG_ALLOC_COUNT_H

long alloc_count(void);

#endif
