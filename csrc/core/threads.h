/* threads.h: the one persistent thread pool of the core, and run control (Ctrl-C).
 *
 * Kernels split work with tg_parallel_for: the range [0, n) is cut into at most one
 * contiguous chunk per thread; the caller (thread 0) and the woken workers claim
 * chunks until none is left, so a thread may run several (in turn) and a call never
 * waits for a worker that has not started. Workers sleep on a condition variable
 * between calls (they never spin; the caller spins a few microseconds for a chunk
 * still running), so OpenBLAS, when it is called, runs alone with the same thread
 * count. thread_index is the thread running the chunk: per-thread scratch stays
 * private.
 *
 * NOTE: results must not depend on how the range is cut. A kernel whose items are
 * independent (an output row, a channel) is deterministic by construction; a
 * reduction across items must use fixed-size blocks reduced in a fixed order
 * (see tg_parallel_block_count), never one partial per thread. */
#ifndef TG_THREADS_H
#define TG_THREADS_H

#include <stdint.h>

#include "status.h"

typedef void (*tg_range_fn)(void *ctx, int64_t begin, int64_t end, int thread_index);

/* Number of threads kernels use (default: the CPUs this process may run on). */
int tg_threads_count(void);

/* Sets the thread count (1..256); also sets OpenBLAS's to match. Fails with
 * TG_STATUS_VALUE on a count out of range, TG_STATUS_NOMEM if a thread cannot start. */
tg_status tg_threads_set(int count);

/* Runs fn over [0, n) in chunks of at least `grain` items, at most one per thread,
 * and returns when all are done. Called from inside a worker it runs inline. */
void tg_parallel_for(int64_t n, int64_t grain, tg_range_fn fn, void *ctx);

/* Stops and joins the workers (the next tg_parallel_for restarts them). */
void tg_threads_shutdown(void);

/* Run control: a request to stop long work (set from a signal handler; async-signal-safe). */
void tg_interrupt_request(void);
int tg_interrupt_pending(void);
void tg_interrupt_clear(void);

#endif
