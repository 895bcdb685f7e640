/* threads.c: a fixed pool of pthreads that wake on a generation counter. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "threads.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define TG_MAX_THREADS 256

typedef struct tg_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;          /* workers wait here for a new generation */
    pthread_cond_t done;          /* the caller waits here for pending == 0 */
    pthread_t workers[TG_MAX_THREADS];
    int started;                  /* workers running (count - 1 when up) */
    int count;                    /* threads including the caller */
    uint64_t generation;
    int pending;
    int stopping;
    tg_range_fn fn;
    void *ctx;
    int64_t n, chunk;
} tg_pool;

static tg_pool pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};
static pthread_mutex_t pool_call_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int inside_worker;
static volatile sig_atomic_t interrupt_flag;
/* NOTE: the generation when workers were last started; a new worker must wait for the
 * next one, not rerun the previous call (whose ctx is gone) as it would from 0. */
static uint64_t spawn_generation;

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

static void run_chunk(int index)
{
    int64_t begin = (int64_t)index * pool.chunk;
    int64_t end = begin + pool.chunk;
    if (end > pool.n) end = pool.n;
    if (begin < end) pool.fn(pool.ctx, begin, end, index);
}

static void *worker_main(void *arg)
{
    int index = (int)(intptr_t)arg;
    uint64_t seen = spawn_generation;
    inside_worker = 1;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (!pool.stopping && pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        if (pool.stopping) break;
        seen = pool.generation;
        pthread_mutex_unlock(&pool.lock);
        run_chunk(index);
        pthread_mutex_lock(&pool.lock);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static int pool_start(void)
{
    if (pool.count == 0) pool.count = default_count();
    if (pool.started == pool.count - 1) return 0;
    pool.stopping = 0;
    spawn_generation = pool.generation;
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
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.chunk = chunk;
    pool.pending = pool.count - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    inside_worker = 1;
    run_chunk(0);
    inside_worker = 0;
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool_call_lock);
}

void tg_interrupt_request(void) { interrupt_flag = 1; }
int tg_interrupt_pending(void) { return interrupt_flag != 0; }
void tg_interrupt_clear(void) { interrupt_flag = 0; }
