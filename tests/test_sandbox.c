/*
 * The tenant sandbox (realm/sandbox.h): module checks, the build cache, and
 * isolation — every kind of guest failure ends only its own call with a clear
 * error, the next call on the same thread and on other threads succeeds.
 *
 * Guests are assembled at test time from tests/sandbox/isolation.wat with
 * wat2wasm (TAG replaced to make distinct modules); the compiled objects are
 * cached in ./sandbox-cache (the test's working directory) between runs.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#include "realm/sandbox.h"
#include "sandbox/sandbox_internal.h"
#include "test_util.h"

static char work[256];
static realm_sandbox *sb;

/* ---- helpers ------------------------------------------------------------ */

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Assemble WebAssembly text into a malloc'ed binary (NULL on failure). */
static uint8_t *assemble_text(const char *wat, size_t *len)
{
    static int seq;
    char in[300], out[300], cmd[700];
    snprintf(in, sizeof in, "%s/m%d.wat", work, seq);
    snprintf(out, sizeof out, "%s/m%d.wasm", work, seq++);
    FILE *f = fopen(in, "w");
    if (!f)
        return NULL;
    fputs(wat, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "wat2wasm '%s' -o '%s'", in, out);
    if (system(cmd) != 0) {
        fprintf(stderr, "wat2wasm failed on %s\n", in);
        return NULL;
    }
    return (uint8_t *)read_all(out, len);
}

/* tests/sandbox/isolation.wat with its TAG replaced (3 characters). */
static uint8_t *isolation_module(const char *tag, size_t *len)
{
    char path[512];
    const char *src = getenv("REALM_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/sandbox/isolation.wat", src ? src : "..");
    size_t n;
    char *wat = read_all(path, &n);
    if (!wat) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    char *p = strstr(wat, "\"TAG\"");
    if (p)
        memcpy(p + 1, tag, 3);
    uint8_t *w = assemble_text(wat, len);
    free(wat);
    return w;
}

typedef struct capture {
    char emitted[256];
    size_t n_emitted;
    int status;
    char body[256];
} capture;

static void on_emit(void *ud, const char *d, size_t n)
{
    capture *c = ud;
    if (c->n_emitted + n < sizeof c->emitted) {
        memcpy(c->emitted + c->n_emitted, d, n);
        c->n_emitted += n;
        c->emitted[c->n_emitted] = '\0';
    }
}

static void on_respond(void *ud, int status, const char *d, size_t n)
{
    capture *c = ud;
    c->status = status;
    snprintf(c->body, sizeof c->body, "%.*s", (int)n, d);
}

/* One request: body `req`; returns the handle's result or the error code. */
static int call(realm_instance *in, const char *req, size_t req_len, int32_t *ret, capture *cap)
{
    capture local;
    if (!cap)
        cap = &local;
    memset(cap, 0, sizeof *cap);
    realm_request_io io = {.body = req, .body_len = req_len, .emit = on_emit,
                           .respond = on_respond, .ud = cap};
    *ret = 0;
    return realm_instance_handle(in, &io, ret);
}

static realm_module *load(const uint8_t *w, size_t n)
{
    realm_module *m = NULL;
    CHECK_RC(realm_module_load_bytes(sb, w, n, &m), REALM_OK);
    return m;
}

/* ---- module checks ------------------------------------------------------ */

static void expect_rejected(const char *wat, int code, const char *needle)
{
    size_t n;
    uint8_t *w = assemble_text(wat, &n);
    CHECK(w != NULL);
    if (!w)
        return;
    CHECK_RC(realm_module_check(w, n, NULL), code);
    CHECK_MSG(strstr(realm_last_error(), needle), "'%s' lacks '%s'", realm_last_error(), needle);
    realm_module *m = NULL;
    CHECK_RC(realm_module_load_bytes(sb, w, n, &m), code);
    CHECK(m == NULL);
    free(w);
}

#define EXPORTS "(memory (export \"memory\") 1) (func (export \"handle\") (result i32) i32.const 0)"

static void test_rules(void)
{
    size_t n;
    uint8_t *w = isolation_module("chk", &n);
    realm_module_info info;
    CHECK_RC(realm_module_check(w, n, &info), REALM_OK);
    CHECK_EQ_INT(info.n_imports, 5);
    int has_handle = 0;
    for (uint32_t i = 0; i < info.n_exports; i++)
        has_handle |= strcmp(info.exports[i], "handle (func)") == 0;
    CHECK(has_handle);
    CHECK_EQ_STR(info.imports[0], "realm.request_read (func)");
    realm_module_info_free(&info);

    expect_rejected("(module (import \"env\" \"foo\" (func (param i32))) " EXPORTS ")",
                    REALM_ERR_DENIED, "env.foo");
    expect_rejected("(module (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 "
                    "i32 i32) (result i32))) " EXPORTS ")",
                    REALM_ERR_DENIED, "WASI function wasi_snapshot_preview1.fd_write");
    expect_rejected("(module (import \"realm\" \"launch_missiles\" (func)) " EXPORTS ")",
                    REALM_ERR_DENIED, "realm.launch_missiles");
    expect_rejected("(module (import \"realm\" \"emit\" (func (param i32) (result i32))) " EXPORTS
                    ")",
                    REALM_ERR_DENIED, "realm.emit with the wrong signature");
    expect_rejected("(module (import \"realm\" \"mem\" (memory 1)) (func (export \"handle\") "
                    "(result i32) i32.const 0))",
                    REALM_ERR_DENIED, "imports a memory");
    expect_rejected("(module (memory (export \"memory\") 1))", REALM_ERR_INVAL, "'handle'");
    expect_rejected("(module (func (export \"handle\") (result i32) i32.const 0))",
                    REALM_ERR_INVAL, "'memory'");
    expect_rejected("(module (memory (export \"memory\") 1) (func (export \"handle\") (param i32) "
                    "(result i32) i32.const 0))",
                    REALM_ERR_INVAL, "() -> i32");

    /* malformed images: truncated, bad magic, bad section, mutations */
    CHECK_RC(realm_module_check(w, n / 2, NULL), REALM_ERR_FORMAT);
    realm_module *m = NULL;
    CHECK_RC(realm_module_load_bytes(sb, w, n / 2, &m), REALM_ERR_FORMAT);
    CHECK_RC(realm_module_check(w, 7, NULL), REALM_ERR_FORMAT);
    uint8_t *bad = malloc(n);
    memcpy(bad, w, n);
    bad[1] = 'x';
    CHECK_RC(realm_module_check(bad, n, NULL), REALM_ERR_FORMAT);
    memcpy(bad, w, n);
    bad[8] = 0x42; /* unknown section id */
    CHECK_RC(realm_module_check(bad, n, NULL), REALM_ERR_FORMAT);
    int n_ok = 0;
    for (int iter = 0; iter < 60; iter++) {
        memcpy(bad, w, n);
        for (int k = 0; k < 1 + iter % 4; k++)
            bad[8 + test_rand_u64() % (n - 8)] = (uint8_t)test_rand_u64();
        size_t cut = iter % 5 == 0 ? 8 + test_rand_u64() % (n - 8) : n;
        int rc = realm_module_check(bad, cut, NULL);
        CHECK_MSG(rc == 0 || rc == REALM_ERR_FORMAT || rc == REALM_ERR_DENIED ||
                      rc == REALM_ERR_INVAL,
                  "mutation %d: rc %d (%s)", iter, rc, realm_last_error());
        n_ok += rc == 0;
    }
    /* the parser alone, in-process (ASan sees every read): many more */
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(bad, w, n);
        for (int k = 0; k < 1 + iter % 8; k++)
            bad[8 + test_rand_u64() % (n - 8)] = (uint8_t)test_rand_u64();
        size_t cut = iter % 3 == 0 ? 8 + test_rand_u64() % (n - 8) : n;
        realm_module_info mi;
        int rc = realm__module_rules(bad, cut, &mi);
        if (rc == 0)
            realm_module_info_free(&mi);
        CHECK(rc == 0 || rc == REALM_ERR_FORMAT || rc == REALM_ERR_DENIED ||
              rc == REALM_ERR_INVAL);
    }
    free(bad);
    free(w);
}

/* ---- isolation ---------------------------------------------------------- */

typedef struct trap_case {
    const char *req;
    const char *needle;
} trap_case;

static void test_traps(void)
{
    size_t n;
    uint8_t *w = isolation_module("t00", &n);
    realm_module *m = load(w, n);
    free(w);
    if (!m)
        return;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.max_pages = 50;
    pol.deadline_ms = 300;
    pol.max_call_depth = 5000;
    realm_instance *in = NULL;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    if (!in)
        return;
    int32_t ret;
    capture cap;
    CHECK_RC(call(in, "e hello", 7, &ret, &cap), REALM_OK);
    CHECK_EQ_INT(ret, 7);
    CHECK_EQ_STR(cap.emitted, "t00");
    CHECK_EQ_INT(cap.status, 200);
    CHECK_EQ_STR(cap.body, "e hello");
    CHECK_RC(call(in, "c", 1, &ret, NULL), REALM_OK);
    CHECK_EQ_INT(ret, 1);
    CHECK_RC(call(in, "c", 1, &ret, NULL), REALM_OK);
    CHECK_EQ_INT(ret, 2);
    CHECK_RC(call(in, "bxyz", 4, &ret, NULL), REALM_OK);
    CHECK_EQ_INT(ret, 4); /* the size needed */
    CHECK_RC(call(in, "x", 1, &ret, NULL), REALM_OK);
    CHECK(ret > 10); /* length of "model_open: no model named 'nope'" */

    static const trap_case cases[] = {
        {"o", "out-of-bounds memory access"},
        {"s", "out-of-bounds memory access"},
        {"p", "realm.emit: range 0xffffff00 + 16 outside guest memory"},
        {"l", "realm.emit: range 0x10 + 4294967295 outside guest memory"},
        {"u", "unreachable executed"},
        {"d\0", "integer divide by zero"},
        {"r", "call stack exhausted"},
        {"g", "memory.grow to 102 pages refused: tenant cap is 50 pages"},
        {"i", "deadline of 300 ms exceeded"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_RC(call(in, cases[i].req, strlen(cases[i].req) + (cases[i].req[0] == 'd'), &ret,
                      NULL),
                 REALM_ERR_TRAP);
        CHECK_MSG(strstr(realm_last_error(), cases[i].needle), "case %s: '%s'", cases[i].req,
                  realm_last_error());
        /* the same instance works again, rebuilt from scratch */
        CHECK_RC(call(in, "c", 1, &ret, NULL), REALM_OK);
        CHECK_EQ_INT(ret, 1);
        CHECK_RC(call(in, "c", 1, &ret, NULL), REALM_OK);
        CHECK_EQ_INT(ret, 2);
    }
    realm_instance_free(in);

    /* growing within the cap works */
    pol.max_pages = 200;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    CHECK_RC(call(in, "g", 1, &ret, NULL), REALM_OK);
    CHECK_EQ_INT(ret, 102);
    realm_instance_free(in);

    /* initial memory over the cap fails at instantiation */
    pol.max_pages = 1;
    in = NULL;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_ERR_TRAP);
    CHECK(in == NULL);
    CHECK_MSG(strstr(realm_last_error(), "exceeds the tenant's cap of 1 pages"), "%s",
              realm_last_error());
    realm_module_free(m);

    /* a module without imports */
    w = assemble_text("(module (memory (export \"memory\") 1) (func (export \"handle\") "
                      "(result i32) i32.const 42))",
                      &n);
    m = w ? load(w, n) : NULL;
    free(w);
    in = NULL;
    if (m)
        CHECK_RC(realm_instance_new(m, NULL, &in), REALM_OK);
    if (in) {
        CHECK_RC(call(in, "", 0, &ret, NULL), REALM_OK);
        CHECK_EQ_INT(ret, 42);
    }
    realm_instance_free(in);
    realm_module_free(m);
}

/* Deep recursion without a depth budget, on a small thread stack: the guard
 * page below the stack catches it. */
static void *deep_fn(void *p)
{
    realm_module *m = p;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.max_call_depth = 100000000; /* effectively none */
    realm_instance *in = NULL;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    int32_t ret;
    if (in) {
        CHECK_RC(call(in, "r", 1, &ret, NULL), REALM_ERR_TRAP);
        CHECK_MSG(strstr(realm_last_error(), "call stack exhausted"), "%s", realm_last_error());
        CHECK_RC(call(in, "c", 1, &ret, NULL), REALM_OK);
        CHECK_EQ_INT(ret, 1);
    }
    realm_instance_free(in);
    return NULL;
}

static void test_stack_guard(void)
{
    size_t n;
    uint8_t *w = isolation_module("t00", &n);
    realm_module *m = load(w, n);
    free(w);
    if (!m)
        return;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    pthread_t th;
    pthread_create(&th, &attr, deep_fn, m);
    pthread_join(th, NULL);
    pthread_attr_destroy(&attr);
    realm_module_free(m);
}

/* ---- the cache ------------------------------------------------------------ */

static void test_cache(void)
{
    size_t n;
    uint8_t *w = isolation_module("c01", &n);
    char *so = NULL;
    CHECK_RC(realm_module_build(sb, w, n, &so), REALM_OK);
    CHECK(so && access(so, R_OK) == 0);
    for (int round = 0; so && round < 2; round++) {
        if (round == 0) { /* corrupt */
            FILE *f = fopen(so, "w");
            fputs("garbage", f);
            fclose(f);
        } else { /* another ABI: a valid object that says so */
            char src[300], cmd[900];
            snprintf(src, sizeof src, "%s/abi.c", work);
            FILE *f = fopen(src, "w");
            fputs("unsigned realm_guest_abi(void) { return 999; }\n", f);
            fclose(f);
            snprintf(cmd, sizeof cmd, "cc -shared -fPIC -o '%s' '%s'", so, src);
            CHECK_EQ_INT(system(cmd), 0);
        }
        realm_module *m = load(w, n);
        realm_instance *in = NULL;
        if (m)
            CHECK_RC(realm_instance_new(m, NULL, &in), REALM_OK);
        int32_t ret;
        capture cap;
        if (in) {
            CHECK_RC(call(in, "e!", 2, &ret, &cap), REALM_OK);
            CHECK_EQ_STR(cap.emitted, "c01");
        }
        realm_instance_free(in);
        realm_module_free(m);
    }
    free(so);
    free(w);
}

/* ---- threads -------------------------------------------------------------- */

#define N_THREADS 8
#define N_MODULES 4

typedef struct worker {
    realm_module *m;
    char tag[4];
    int id, iters, errors;
} worker;

static void *work_fn(void *p)
{
    worker *wk = p;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.deadline_ms = 5000;
    realm_instance *in = NULL;
    if (realm_instance_new(wk->m, &pol, &in) < 0) {
        wk->errors++;
        return NULL;
    }
    int32_t ret;
    capture cap;
    for (int i = 0; i < wk->iters; i++) {
        int32_t mine = (wk->id + 1) * 1000003 + i;
        char req[5] = {'w'};
        memcpy(req + 1, &mine, 4);
        if (call(in, req, 5, &ret, NULL) != 0 || ret != mine)
            wk->errors++;
        if (call(in, "W", 1, &ret, NULL) != 0 || ret != mine)
            wk->errors++;
        if (i % 50 == 7) {
            const char *bad = (i / 50) % 2 ? "o" : "u";
            if (call(in, bad, 1, &ret, NULL) != REALM_ERR_TRAP)
                wk->errors++;
            /* after a trap the instance starts afresh: memory zeroed */
            if (call(in, "W", 1, &ret, NULL) != 0 || ret != 0)
                wk->errors++;
        }
        if (i % 100 == 0 && (call(in, "e", 1, &ret, &cap) != 0 || strcmp(cap.emitted, wk->tag)))
            wk->errors++;
    }
    realm_instance_free(in);
    return NULL;
}

static void test_threads(void)
{
    realm_module *mods[N_MODULES] = {0};
    char tags[N_MODULES][4];
    for (int i = 0; i < N_MODULES; i++) {
        size_t n;
        snprintf(tags[i], sizeof tags[i], "p%02d", i);
        uint8_t *w = isolation_module(tags[i], &n);
        mods[i] = load(w, n);
        free(w);
        if (!mods[i])
            return;
    }
    pthread_t th[N_THREADS];
    worker wk[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        wk[i] = (worker){.m = mods[i % N_MODULES], .id = i, .iters = 1500};
        memcpy(wk[i].tag, tags[i % N_MODULES], 4);
        pthread_create(&th[i], NULL, work_fn, &wk[i]);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(wk[i].errors == 0, "thread %d: %d errors", i, wk[i].errors);
    }
    for (int i = 0; i < N_MODULES; i++)
        realm_module_free(mods[i]);
}

int main(void)
{
    test_begin("sandbox", 300);
    const char *t = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/realm-sbx-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(work)) {
        perror("mkdtemp");
        return 1;
    }
    CHECK_RC(realm_sandbox_new(&(realm_sandbox_params){.cache_dir = "sandbox-cache"}, &sb),
             REALM_OK);
    test_rules();
    test_traps();
    test_stack_guard();
    test_cache();
    test_threads();
    realm_sandbox_free(sb);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", work);
    return test_end();
}
