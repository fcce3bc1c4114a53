/*
 * Minimal test harness shared by the tests: checks that print both operands
 * and keep going, a per-test alarm so nothing hangs, and the path of the
 * shared reference data (a missing file is a failure, never a skip).
 *
 *     int main(void) {
 *         test_begin("gguf", 120);
 *         CHECK_EQ_INT(realm_gguf_version(g), 3);
 *         return test_end();
 *     }
 */
#ifndef REALM_TEST_UTIL_H
#define REALM_TEST_UTIL_H

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int test_failures;
static int test_checks;
static const char *test_name_ = "test";

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        test_checks++;                                                                             \
        if (a_ != b_) {                                                                            \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s == %s (%lld vs %lld)\n", __FILE__,     \
                    __LINE__, #a, #b, a_, b_);                                                     \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        test_checks++;                                                                             \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                     \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK_EQ_STR failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, \
                    __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                     \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                             \
        test_checks++;                                                                             \
        if (!(fabs(a_ - b_) <= t_)) {                                                              \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s ~ %s (%.9g vs %.9g, tol %.3g)\n",        \
                    __FILE__, __LINE__, #a, #b, a_, b_, t_);                                       \
        }                                                                                          \
    } while (0)

/* Check that a Realm call returned rc (0 or a negative code). */
#define CHECK_RC(call, rc)                                                                         \
    do {                                                                                           \
        int got_ = (call);                                                                         \
        test_checks++;                                                                             \
        if (got_ != (rc)) {                                                                        \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s)\n", __FILE__, __LINE__,       \
                    #call, got_, (int)(rc), realm_last_error());                                   \
        }                                                                                          \
    } while (0)

static void test_alarm_(int sig)
{
    (void)sig;
    static const char msg[] = "test timed out\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    _exit(124);
}

static inline void test_begin(const char *name, unsigned timeout_s)
{
    test_name_ = name;
    signal(SIGALRM, test_alarm_);
    alarm(timeout_s);
}

static inline int test_end(void)
{
    printf("%s: %d checks, %d failed\n", test_name_, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* Path of a file under ../shared/testdata; aborts the test if unreadable. */
static inline const char *test_data(const char *rel)
{
    static char buf[8][4096];
    static int slot;
    const char *root = getenv("REALM_TESTDATA");
    if (root == NULL || root[0] == '\0') {
        fprintf(stderr, "REALM_TESTDATA is not set\n");
        exit(1);
    }
    char *p = buf[slot++ % 8];
    snprintf(p, 4096, "%s/%s", root, rel);
    if (access(p, R_OK) != 0) {
        fprintf(stderr, "missing test data: %s\n", p);
        exit(1);
    }
    return p;
}

/* Deterministic xorshift random numbers, so failures reproduce. */
static uint64_t test_rng_state = 0x9e3779b97f4a7c15ull;
static inline uint64_t test_rand_u64(void)
{
    uint64_t x = test_rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return test_rng_state = x;
}
/* Uniform in [-1, 1). */
static inline float test_rand_f32(void)
{
    return (float)((double)(test_rand_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
/* Approximately normal(0, 1) (sum of uniforms). */
static inline float test_rand_normal(void)
{
    float s = 0;
    for (int i = 0; i < 12; i++)
        s += test_rand_f32();
    return s * 0.5f;
}

#endif
