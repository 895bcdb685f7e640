/* threads.c: a fixed pool of pthreads that wake on a generation counter and claim the
 * chunks of a tg_parallel_for from a shared ticket.
 *
 * NOTE: chunks are claimed, not assigned: the caller starts on them at once and takes
 * every chunk a worker has not claimed yet, so a call never waits for a worker the
 * scheduler has not run (on a loaded machine that wait, a time slice per call, was
 * most of a step). Which thread runs a chunk changes nothing: chunks are the same
 * ranges, and kernels' per-thread scratch is indexed by the thread that runs it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "threads.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define TG_MAX_THREADS 256
#define TG_TICKET_INDEX_MASK 0xffffffffull

typedef struct tg_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;          /* workers wait here for a new generation */
    pthread_cond_t done;          /* the caller waits here for finished == chunks */
    pthread_t workers[TG_MAX_THREADS];
    int started;                  /* workers running (count - 1 when up) */
    int count;                    /* threads including the caller */
    uint64_t generation;
    uint64_t spawn_generation;    /* generation when the workers started: they wait for the next */
    int stopping;
    tg_range_fn fn;
    void *ctx;
    int64_t n, chunk, chunks;
    _Atomic uint64_t ticket;      /* (generation << 32) | next chunk to claim */
    _Atomic int64_t finished;     /* chunks of the current generation done */
} tg_pool;

static tg_pool pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};
static pthread_mutex_t pool_call_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int inside_worker;
static volatile sig_atomic_t interrupt_flag;

/* OpenBLAS's setter, when OpenBLAS is linked (weak so plain C tests need not link it). */
extern void openblas_set_num_threads(int) __attribute__((weak));

static int default_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n < TG_MAX_THREADS ? n : TG_MAX_THREADS;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n < TG_MAX_THREADS ? n : TG_MAX_THREADS) : 1;
}

/* One call's work as a thread saw it when it woke (or started it). */
typedef struct pool_job {
    uint64_t generation;
    tg_range_fn fn;
    void *ctx;
    int64_t n, chunk, chunks;
} pool_job;

/* Claims and runs chunks of `job` until none is left. A thread holding a job of an
 * older generation claims nothing: the ticket carries the generation. */
static void run_chunks(const pool_job *job, int thread_index)
{
    const uint64_t tag = (job->generation & TG_TICKET_INDEX_MASK) << 32;
    for (;;) {
        uint64_t ticket = atomic_load_explicit(&pool.ticket, memory_order_acquire);
        if ((ticket & ~TG_TICKET_INDEX_MASK) != tag || (int64_t)(ticket & TG_TICKET_INDEX_MASK) >= job->chunks) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.ticket, &ticket, ticket + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        int64_t begin = (int64_t)(ticket & TG_TICKET_INDEX_MASK) * job->chunk;
        int64_t end = begin + job->chunk < job->n ? begin + job->chunk : job->n;
        if (begin < end) job->fn(job->ctx, begin, end, thread_index);
        if (atomic_fetch_add_explicit(&pool.finished, 1, memory_order_acq_rel) + 1 == job->chunks) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

static void *worker_main(void *arg)
{
    int index = (int)(intptr_t)arg;
    uint64_t seen = pool.spawn_generation;   /* NOTE: not 0: a restarted pool must not rerun the last call */
    inside_worker = 1;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (!pool.stopping && pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        if (pool.stopping) break;
        seen = pool.generation;
        pool_job job = {.generation = seen, .fn = pool.fn, .ctx = pool.ctx, .n = pool.n, .chunk = pool.chunk,
                        .chunks = pool.chunks};
        pthread_mutex_unlock(&pool.lock);
        run_chunks(&job, index);
        pthread_mutex_lock(&pool.lock);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static int pool_start(void)
{
    if (pool.count == 0) pool.count = default_count();
    if (pool.started == pool.count - 1) return 0;
    pool.stopping = 0;
    pool.spawn_generation = pool.generation;
    for (int i = 1; i < pool.count; i++) {
        if (pthread_create(&pool.workers[i], NULL, worker_main, (void *)(intptr_t)i) != 0) {
            pool.count = i;
            return -1;
        }
        pool.started++;
    }
    return 0;
}

void tg_threads_shutdown(void)
{
    pthread_mutex_lock(&pool_call_lock);
    pthread_mutex_lock(&pool.lock);
    pool.stopping = 1;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 1; i <= pool.started; i++) pthread_join(pool.workers[i], NULL);
    pool.started = 0;
    pool.stopping = 0;
    pthread_mutex_unlock(&pool_call_lock);
}

int tg_threads_count(void)
{
    if (pool.count == 0) pool.count = default_count();
    return pool.count;
}

tg_status tg_threads_set(int count)
{
    if (count < 1 || count > TG_MAX_THREADS)
        return tg_error(TG_STATUS_VALUE, "thread count %d is out of range; use 1 to %d", count, TG_MAX_THREADS);
    tg_threads_shutdown();
    pthread_mutex_lock(&pool_call_lock);
    pool.count = count;
    pthread_mutex_unlock(&pool_call_lock);
    if (openblas_set_num_threads) openblas_set_num_threads(count);
    return TG_STATUS_OK;
}

void tg_parallel_for(int64_t n, int64_t grain, tg_range_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int threads = tg_threads_count();
    if (inside_worker || threads == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&pool_call_lock);
    if (pool_start() != 0 && pool.count == 1) {
        pthread_mutex_unlock(&pool_call_lock);
        fn(ctx, 0, n, 0);
        return;
    }
    int64_t chunks = (n + grain - 1) / grain;
    if (chunks > pool.count) chunks = pool.count;
    int64_t chunk = (n + chunks - 1) / chunks;
    chunks = (n + chunk - 1) / chunk;
    pthread_mutex_lock(&pool.lock);
    pool.generation++;
    pool_job job = {.generation = pool.generation, .fn = fn, .ctx = ctx, .n = n, .chunk = chunk, .chunks = chunks};
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.chunk = chunk;
    pool.chunks = chunks;
    atomic_store_explicit(&pool.finished, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.ticket, (job.generation & TG_TICKET_INDEX_MASK) << 32, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    inside_worker = 1;
    run_chunks(&job, 0);
    inside_worker = 0;
    /* every chunk is claimed; wait for those a worker is still running */
    for (int spin = 0; spin < 2000 && atomic_load_explicit(&pool.finished, memory_order_acquire) < chunks; spin++)
        __builtin_ia32_pause();
    if (atomic_load_explicit(&pool.finished, memory_order_acquire) < chunks) {
        pthread_mutex_lock(&pool.lock);
        while (atomic_load_explicit(&pool.finished, memory_order_acquire) < chunks)
            pthread_cond_wait(&pool.done, &pool.lock);
        pthread_mutex_unlock(&pool.lock);
    }
    pthread_mutex_unlock(&pool_call_lock);
}

void tg_interrupt_request(void) { interrupt_flag = 1; }
int tg_interrupt_pending(void) { return interrupt_flag != 0; }
void tg_interrupt_clear(void) { interrupt_flag = 0; }
