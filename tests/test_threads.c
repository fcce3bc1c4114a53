/* Thread pool: every part runs exactly once per task, results are visible to
 * the caller afterwards, pools of any size work, and an idle pool sleeps. */
#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>

#include "realm/error.h"
#include "realm/threads.h"
#include "test_util.h"

struct count_task {
    int nth_seen;
    int counts[64]; /* plain ints: the pool's barrier must publish them */
    atomic_int total;
};

static void count_part(void *arg, int ith, int nth)
{
    struct count_task *t = arg;
    t->counts[ith]++;
    if (ith == 0)
        t->nth_seen = nth;
    atomic_fetch_add(&t->total, 1);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void test_pool(int n, int runs)
{
    realm_threadpool *tp;
    CHECK_RC(realm_threadpool_new(n, &tp), REALM_OK);
    CHECK_EQ_INT(realm_threadpool_size(tp), n);
    struct count_task t = {0};
    for (int r = 0; r < runs; r++) {
        realm_threadpool_run(tp, count_part, &t);
        CHECK_EQ_INT(atomic_load(&t.total), (r + 1) * n);
        if (test_failures)
            break;
    }
    for (int i = 0; i < n; i++)
        CHECK_EQ_INT(t.counts[i], runs);
    CHECK_EQ_INT(t.nth_seen, n);
    realm_threadpool_free(tp);
}

int main(void)
{
    test_begin("threads", 120);
    test_pool(1, 100);
    test_pool(2, 20000);
    test_pool(3, 5000);
    test_pool(8, 2000); /* more threads than cores: sleeping path */

    /* Alternate busy runs and pauses long enough for workers to sleep. */
    realm_threadpool *tp;
    CHECK_RC(realm_threadpool_new(4, &tp), REALM_OK);
    struct count_task t = {0};
    for (int r = 0; r < 20; r++) {
        realm_threadpool_run(tp, count_part, &t);
        nanosleep(&(struct timespec){0, 3 * 1000 * 1000}, NULL);
    }
    CHECK_EQ_INT(atomic_load(&t.total), 20 * 4);

    /* Idle: after the spin period, workers must not burn CPU. Measured in
     * process CPU time, which other load on the machine does not inflate. */
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    double c0 = cpu_seconds();
    nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
    double used = cpu_seconds() - c0;
    CHECK_MSG(used < 0.05, "idle pool used %.3f s of CPU in 0.3 s", used);
    realm_threadpool_free(tp);

    CHECK_RC(realm_threadpool_new(-1, &tp), REALM_ERR_INVAL);
    CHECK(tp == NULL);
    CHECK(realm_cpu_count() >= 1);
    return test_end();
}
