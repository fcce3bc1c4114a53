/*
 * Compute thread pool (realm/threads.h).
 *
 * One task runs at a time. realm_threadpool_run publishes (fn, arg) and bumps
 * a generation counter; workers that are spinning see the new generation at
 * once, workers that went to sleep are woken by a broadcast. Each worker runs
 * its part, decrements `pending`, and the last one wakes the caller if it
 * sleeps. Spinning is bounded (~a millisecond), so an idle pool sleeps.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "error_internal.h"
#include "realm/threads.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ITERATIONS 20000

struct worker {
    realm_threadpool *tp;
    int ith;
    pthread_t thread;
};

struct realm_threadpool {
    int n_threads;
    struct worker *workers; /* n_threads - 1 of them: part 0 is the caller */

    realm_task_fn fn;
    void *arg;
    atomic_uint generation;
    atomic_int pending;
    atomic_bool stop;

    pthread_mutex_t mutex;
    pthread_cond_t work_cv; /* generation changed or stop */
    pthread_cond_t done_cv; /* pending reached 0 */
    int sleepers;           /* workers waiting on work_cv, under mutex */
    bool caller_waiting;    /* caller waiting on done_cv, under mutex */

    /* Holders of a shared pool, served in ticket order (acquire/release). */
    pthread_mutex_t owner_mutex;
    pthread_cond_t owner_cv;
    uint64_t next_ticket, serving;
};

int realm_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Wait until the generation differs from `seen` or stop is set. */
static unsigned wait_for_work(realm_threadpool *tp, unsigned seen)
{
    for (int i = 0; i < SPIN_ITERATIONS; i++) {
        unsigned g = atomic_load_explicit(&tp->generation, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&tp->stop, memory_order_relaxed))
            return g;
        cpu_relax();
    }
    pthread_mutex_lock(&tp->mutex);
    unsigned g;
    while ((g = atomic_load_explicit(&tp->generation, memory_order_acquire)) == seen &&
           !atomic_load(&tp->stop)) {
        tp->sleepers++;
        pthread_cond_wait(&tp->work_cv, &tp->mutex);
        tp->sleepers--;
    }
    pthread_mutex_unlock(&tp->mutex);
    return g;
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    realm_threadpool *tp = w->tp;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_work(tp, seen);
        if (atomic_load(&tp->stop))
            break;
        tp->fn(tp->arg, w->ith, tp->n_threads);
        if (atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&tp->mutex);
            if (tp->caller_waiting)
                pthread_cond_signal(&tp->done_cv);
            pthread_mutex_unlock(&tp->mutex);
        }
    }
    return NULL;
}

int realm_threadpool_new(int n_threads, realm_threadpool **out)
{
    *out = NULL;
    if (n_threads == 0)
        n_threads = realm_cpu_count();
    if (n_threads < 1 || n_threads > 1024)
        return realm__error(REALM_ERR_INVAL, "thread count %d is out of range 1..1024", n_threads);
    realm_threadpool *tp = calloc(1, sizeof *tp);
    if (tp == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory creating a thread pool");
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->mutex, NULL);
    pthread_mutex_init(&tp->owner_mutex, NULL);
    pthread_cond_init(&tp->owner_cv, NULL);
    pthread_cond_init(&tp->work_cv, NULL);
    pthread_cond_init(&tp->done_cv, NULL);
    if (n_threads > 1) {
        tp->workers = calloc((size_t)n_threads - 1, sizeof *tp->workers);
        if (tp->workers == NULL) {
            realm_threadpool_free(tp);
            return realm__error(REALM_ERR_NOMEM, "out of memory creating a thread pool");
        }
    }
    for (int i = 0; i < n_threads - 1; i++) {
        struct worker *w = &tp->workers[i];
        w->tp = tp;
        w->ith = i + 1;
        int err = pthread_create(&w->thread, NULL, worker_main, w);
        if (err != 0) {
            tp->n_threads = i + 1; /* join only the ones that started */
            realm_threadpool_free(tp);
            return realm__error(REALM_ERR_NOMEM, "cannot start compute thread %d: errno %d", i + 1,
                                err);
        }
    }
    *out = tp;
    return REALM_OK;
}

void realm_threadpool_free(realm_threadpool *tp)
{
    if (tp == NULL)
        return;
    pthread_mutex_lock(&tp->mutex);
    atomic_store(&tp->stop, true);
    pthread_cond_broadcast(&tp->work_cv);
    pthread_mutex_unlock(&tp->mutex);
    if (tp->workers)
        for (int i = 0; i < tp->n_threads - 1; i++)
            pthread_join(tp->workers[i].thread, NULL);
    pthread_mutex_destroy(&tp->mutex);
    pthread_mutex_destroy(&tp->owner_mutex);
    pthread_cond_destroy(&tp->owner_cv);
    pthread_cond_destroy(&tp->work_cv);
    pthread_cond_destroy(&tp->done_cv);
    free(tp->workers);
    free(tp);
}

/* A ticket lock: each caller takes the next number and waits until it is
 * served, so callers get the pool in arrival order and two busy users
 * alternate. */
void realm_threadpool_acquire(realm_threadpool *tp)
{
    pthread_mutex_lock(&tp->owner_mutex);
    const uint64_t ticket = tp->next_ticket++;
    while (tp->serving != ticket)
        pthread_cond_wait(&tp->owner_cv, &tp->owner_mutex);
    pthread_mutex_unlock(&tp->owner_mutex);
}

void realm_threadpool_release(realm_threadpool *tp)
{
    pthread_mutex_lock(&tp->owner_mutex);
    tp->serving++;
    pthread_cond_broadcast(&tp->owner_cv);
    pthread_mutex_unlock(&tp->owner_mutex);
}

int realm_threadpool_size(const realm_threadpool *tp)
{
    return tp->n_threads;
}

void realm_threadpool_run(realm_threadpool *tp, realm_task_fn fn, void *arg)
{
    if (tp->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store_explicit(&tp->pending, tp->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&tp->mutex);
    atomic_fetch_add_explicit(&tp->generation, 1, memory_order_release);
    if (tp->sleepers > 0)
        pthread_cond_broadcast(&tp->work_cv);
    pthread_mutex_unlock(&tp->mutex);

    fn(arg, 0, tp->n_threads);

    for (int i = 0; i < SPIN_ITERATIONS; i++) {
        if (atomic_load_explicit(&tp->pending, memory_order_acquire) == 0)
            return;
        cpu_relax();
    }
    pthread_mutex_lock(&tp->mutex);
    tp->caller_waiting = true;
    while (atomic_load_explicit(&tp->pending, memory_order_acquire) != 0)
        pthread_cond_wait(&tp->done_cv, &tp->mutex);
    tp->caller_waiting = false;
    pthread_mutex_unlock(&tp->mutex);
}
