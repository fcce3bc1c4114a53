/*
 * realm/threads.h — a fixed pool of compute threads running one data-parallel
 * task at a time.
 *
 *     realm_threadpool *tp;
 *     realm_threadpool_new(4, &tp);
 *     realm_threadpool_run(tp, my_task, &args);   // my_task(&args, ith, 4), ith 0..3
 *     realm_threadpool_free(tp);
 *
 * The calling thread runs part 0, so a pool of n threads starts n - 1 workers.
 * Workers spin briefly after a task (the next one usually follows within
 * microseconds in a forward pass), then sleep on a condition variable, so an
 * idle pool uses no CPU. A task splits its own work by (ith, nth) and needs no
 * locks. One thread at a time may call realm_threadpool_run on a given pool.
 *
 * Sharing: several users (the engines of several loaded models) can share one
 * pool so the cores are never oversubscribed. Each brackets a sequence of
 * tasks (a forward pass) with realm_threadpool_acquire / _release; holders
 * are served in arrival order, so busy users alternate pass by pass.
 */
#ifndef REALM_THREADS_H
#define REALM_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

typedef struct realm_threadpool realm_threadpool;
typedef void (*realm_task_fn)(void *arg, int ith, int nth);

/* n_threads >= 1; 0 means one per online CPU. */
int realm_threadpool_new(int n_threads, realm_threadpool **out);
void realm_threadpool_free(realm_threadpool *tp);
int realm_threadpool_size(const realm_threadpool *tp);
/* Run fn(arg, ith, nth) on every thread; returns when all parts are done. */
void realm_threadpool_run(realm_threadpool *tp, realm_task_fn fn, void *arg);

/* Take the pool for a sequence of runs, waiting (in arrival order) while
 * another user holds it; give it back with realm_threadpool_release. Not
 * recursive. */
void realm_threadpool_acquire(realm_threadpool *tp);
void realm_threadpool_release(realm_threadpool *tp);

/* Number of online CPUs (>= 1). */
int realm_cpu_count(void);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
