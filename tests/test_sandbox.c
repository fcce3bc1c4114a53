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
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "core/clock_internal.h"
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
    char log[8192];
    int log_level, n_logs;
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

static void on_log(void *ud, int level, const char *line, size_t n)
{
    capture *c = ud;
    c->log_level = level;
    c->n_logs++;
    snprintf(c->log, sizeof c->log, "%.*s", (int)n, line);
}

/* One request: body `req`; returns the handle's result or the error code. */
static int call(realm_instance *in, const char *req, size_t req_len, int32_t *ret, capture *cap)
{
    capture local;
    if (!cap)
        cap = &local;
    memset(cap, 0, sizeof *cap);
    realm_request_io io = {.body = req,
                           .body_len = req_len,
                           .emit = on_emit,
                           .respond = on_respond,
                           .log = on_log,
                           .ud = cap};
    *ret = 0;
    return realm_instance_handle(in, &io, ret);
}

static realm_module *load(const uint8_t *w, size_t n)
{
    realm_module *m = NULL;
    CHECK_RC(realm_module_load_bytes(sb, w, n, &m), REALM_OK);
    return m;
}

/* Append formatted text to a growing buffer (the generated modules are big). */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = 2 * (b->n + (size_t)k + 1);
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
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
    CHECK_EQ_INT(info.n_imports, 6);
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
    expect_rejected("(module (func (export \"handle\") (result i32) i32.const 0))", REALM_ERR_INVAL,
                    "'memory'");
    expect_rejected("(module (memory (export \"memory\") 1) (func (export \"handle\") (param i32) "
                    "(result i32) i32.const 0))",
                    REALM_ERR_INVAL, "() -> i32");

    /* limits: locals per function, tables, width of a function type */
    {
        sbuf b = {0};
        sb_printf(&b, "(module (memory (export \"memory\") 1) (func $big (local");
        for (int i = 0; i < 50001; i++)
            sb_printf(&b, " i32");
        sb_printf(&b, ")) (func (export \"handle\") (result i32) i32.const 0))");
        expect_rejected(b.p, REALM_ERR_DENIED, "more than 50000 locals");
        b.n = 0;
        sb_printf(&b, "(module " EXPORTS);
        for (int i = 0; i < 17; i++)
            sb_printf(&b, " (table %d funcref)", i);
        sb_printf(&b, ")");
        expect_rejected(b.p, REALM_ERR_DENIED, "17 tables");
        b.n = 0;
        sb_printf(&b, "(module " EXPORTS " (type (func (param");
        for (int i = 0; i < 1001; i++)
            sb_printf(&b, " i32");
        sb_printf(&b, "))))");
        expect_rejected(b.p, REALM_ERR_DENIED, "1001 parameters");
        free(b.p);
    }

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
        CHECK(rc == 0 || rc == REALM_ERR_FORMAT || rc == REALM_ERR_DENIED || rc == REALM_ERR_INVAL);
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
    /* a log line stays one line: control characters escaped, level clamped,
     * length bounded */
    static const char forge[] = "Lok\n[tenant 0] forged\x1b[2J\tend";
    CHECK_RC(call(in, forge, sizeof forge - 1, &ret, &cap), REALM_OK);
    CHECK_EQ_INT(ret, 0);
    CHECK_EQ_INT(cap.n_logs, 1);
    CHECK_EQ_INT(cap.log_level, 3);
    CHECK_EQ_STR(cap.log, "ok\\x0a[tenant 0] forged\\x1b[2J\tend");
    static char big[4000];
    memset(big, 'a', sizeof big);
    big[0] = 'L';
    CHECK_RC(call(in, big, sizeof big, &ret, &cap), REALM_OK);
    CHECK(strlen(cap.log) <= 1024 && strstr(cap.log, "...") != NULL);

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
        CHECK_RC(
            call(in, cases[i].req, strlen(cases[i].req) + (cases[i].req[0] == 'd'), &ret, NULL),
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

/* ---- robustness: stacks, deadlines, tables, the cache --------------------- */

/*
 * A module whose $f(n) has n_locals i64 locals, all loaded from memory before
 * it calls $f(n - 1) and used after (so they live in its C stack frame), and
 * optionally calls realm.model_open at every level. handle reads a depth d
 * (i32) from the request; an empty request returns 7. with_rec: handle runs
 * $rec(d), d small frames, then $f(1) (one big frame at the bottom); else
 * $f(d) directly.
 */
static uint8_t *stack_module(int n_locals, int host_call, int with_rec, size_t *len)
{
    sbuf b = {0};
    sb_printf(&b, "(module\n"
                  " (import \"realm\" \"request_read\" (func $rr (param i32 i32) (result i32)))\n"
                  " (import \"realm\" \"model_open\" (func $mo (param i32 i32) (result i32)))\n"
                  " (memory (export \"memory\") 2)\n"
                  " (data (i32.const 16) \"no-such-model\")\n"
                  " (func $f (param $n i32) (result i64)\n");
    for (int i = 0; i < n_locals; i++)
        sb_printf(&b, "  (local $l%d i64)\n", i);
    for (int i = 0; i < n_locals; i++)
        sb_printf(&b,
                  "  (local.set $l%d (i64.load offset=%d"
                  " (i32.and (local.get $n) (i32.const 7))))\n",
                  i, 64 + 8 * (i % 4000));
    if (host_call)
        sb_printf(&b, "  (drop (call $mo (i32.const 16) (i32.const 13)))\n");
    sb_printf(&b, "  (if (i32.eqz (local.get $n)) (then (return (i64.const 0))))\n"
                  "  local.get $n\n  i32.const 1\n  i32.sub\n  call $f\n");
    for (int i = 0; i < n_locals; i++)
        sb_printf(&b, "  local.get $l%d\n  i64.%s\n", i, i % 2 ? "xor" : "add");
    sb_printf(&b,
              " )\n"
              " (func $rec (param $d i32) (result i64)\n"
              "  (if (result i64) (i32.eqz (local.get $d)) (then (call $f (i32.const 1)))\n"
              "   (else (i64.add (call $rec (i32.sub (local.get $d) (i32.const 1)))"
              " (i64.const 1)))))\n"
              " (func (export \"handle\") (result i32)\n"
              "  (if (i32.eqz (call $rr (i32.const 65536) (i32.const 4)))"
              " (then (return (i32.const 7))))\n"
              "  (i32.wrap_i64 (call %s (i32.load (i32.const 65536))))))\n",
              with_rec ? "$rec" : "$f");
    uint8_t *w = assemble_text(b.p, len);
    free(b.p);
    return w;
}

/* Stack clash: a guest function with a 64 KiB frame at the bottom of a small
 * thread stack. Compiled with stack clash protection, it probes the guard
 * page and traps; it never writes past the guard into what lies below (here
 * a canary region standing for another thread's stack). */
#define CANARY 0x1122334455667788ull

typedef struct clash {
    realm_module *m;
    int n_ok, n_trapped;
} clash;

static void *clash_guest(void *p)
{
    clash *cl = p;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.deadline_ms = 0;
    pol.max_call_depth = 100000000; /* only the stack guard stops it */
    realm_instance *in = NULL;
    CHECK_RC(realm_instance_new(cl->m, &pol, &in), REALM_OK);
    /* Walk the depth so that the big frame's lowest address passes the guard
     * page in small steps: somewhere its first store (at the bottom of the
     * frame) lands below the guard, which only probing catches. */
    for (int32_t d = 0; in && d <= 16000; d += 25) {
        int32_t ret;
        int rc = call(in, (const char *)&d, 4, &ret, NULL);
        if (rc == 0) {
            CHECK_EQ_INT(ret, d);
            cl->n_ok++;
            continue;
        }
        cl->n_trapped++;
        CHECK_RC(rc, REALM_ERR_TRAP);
        CHECK_MSG(strstr(realm_last_error(), "call stack exhausted"), "depth %d: %s", d,
                  realm_last_error());
        CHECK_RC(call(in, "", 0, &ret, NULL), REALM_OK);
        CHECK_EQ_INT(ret, 7);
    }
    realm_instance_free(in);
    return NULL;
}

static void test_stack_clash(void)
{
    size_t n;
    uint8_t *w = stack_module(8000, 0, 1, &n);
    clash cl = {.m = w ? load(w, n) : NULL};
    free(w);
    if (!cl.m)
        return;
    /* [canary 256 KiB][guard 4 KiB][guest stack 256 KiB], as a fresh pthread
     * stack lies right above another thread's. */
    size_t below = 256 * 1024, guard = 4096, stack = 256 * 1024;
    uint8_t *area = mmap(NULL, below + guard + stack, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    CHECK(area != MAP_FAILED);
    if (area == MAP_FAILED)
        return;
    uint64_t *canary = (uint64_t *)area;
    for (size_t i = 0; i < below / 8; i++)
        canary[i] = CANARY;
    mprotect(area + below, guard, PROT_NONE);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, area + below + guard, stack);
    pthread_t th;
    pthread_create(&th, &attr, clash_guest, &cl);
    pthread_join(th, NULL);
    pthread_attr_destroy(&attr);
    size_t changed = 0;
    for (size_t i = 0; i < below / 8; i++)
        changed += canary[i] != CANARY;
    munmap(area, below + guard + stack);
    CHECK_MSG(changed == 0, "%zu words below the guard page were overwritten", changed);
    CHECK(cl.n_ok > 0);
    CHECK(cl.n_trapped > 0);
    realm_module_free(cl.m);
}

/* Deep recursion that calls a host function at every level: host code must
 * not run off the end of the stack (the process would die); the guest traps
 * while entering the host function instead. */
static void *host_stack_fn(void *p)
{
    realm_module *m = p;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.max_call_depth = 100000000;
    realm_instance *in = NULL;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    int32_t ret, d = 1000000;
    for (int i = 0; in && i < 3; i++) {
        CHECK_RC(call(in, (const char *)&d, 4, &ret, NULL), REALM_ERR_TRAP);
        CHECK_MSG(strstr(realm_last_error(), "call stack exhausted"), "%s", realm_last_error());
        CHECK_RC(call(in, "", 0, &ret, NULL), REALM_OK);
        CHECK_EQ_INT(ret, 7);
    }
    realm_instance_free(in);
    return NULL;
}

static void test_host_stack(void)
{
    size_t n;
    uint8_t *w = stack_module(60, 1, 0, &n);
    realm_module *m = w ? load(w, n) : NULL;
    free(w);
    if (!m)
        return;
    size_t sizes[] = {1024 * 1024, 8 * 1024 * 1024};
    for (int i = 0; i < 2; i++) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, sizes[i]);
        pthread_t th;
        pthread_create(&th, &attr, host_stack_fn, m);
        pthread_join(th, NULL);
        pthread_attr_destroy(&attr);
    }
    realm_module_free(m);
}

/* A module for the runtime's host paths: the first request byte picks. */
static const char robust_wat[] =
    "(module\n"
    " (import \"realm\" \"request_read\" (func $rr (param i32 i32) (result i32)))\n"
    " (type $a (func (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32"
    " i32 i32 i32 i32) (result i32)))\n"
    " (type $b (func (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32"
    " i32 i32 i32 i32) (result i32)))\n"
    " (memory (export \"memory\") 1)\n"
    " (table $t 0 funcref)\n"
    " (table $w 1 funcref)\n"
    " (table $x1 0 funcref) (table $x2 0 funcref) (table $x3 0 funcref)\n"
    " (elem (table $w) (i32.const 0) func $wide)\n"
    " (func $wide (type $a) (i32.add (local.get 0) (local.get 19)))\n"
    " (func (export \"handle\") (result i32) (local $n i32) (local $op i32) (local $r i32)\n"
    "  (local.set $n (call $rr (i32.const 1024) (i32.const 64)))\n"
    "  (if (i32.eqz (local.get $n)) (then (return (i32.const 7))))\n"
    "  (local.set $op (i32.load8_u (i32.const 1024)))\n"
    "  ;; 'g', 'z', 't': loop forever in memory.grow(100000), memory.grow(0), table.grow\n"
    "  (if (i32.eq (local.get $op) (i32.const 103)) (then\n"
    "   (loop $l (drop (memory.grow (i32.const 100000))) (br $l))))\n"
    "  (if (i32.eq (local.get $op) (i32.const 122)) (then\n"
    "   (loop $l (drop (memory.grow (i32.const 0))) (br $l))))\n"
    "  (if (i32.eq (local.get $op) (i32.const 116)) (then\n"
    "   (loop $l (drop (table.grow $t (ref.null func) (i32.const 1))) (br $l))))\n"
    "  ;; 'T': tables share the memory cap (4 pages); one bit per expectation\n"
    "  (if (i32.eq (local.get $op) (i32.const 84)) (then\n"
    "   (local.set $r (i32.eqz (table.grow $t (ref.null func) (i32.const 1000))))\n"
    "   (local.set $r (i32.or (local.get $r) (i32.shl (i32.eq (table.grow $t (ref.null func)"
    " (i32.const 10000)) (i32.const -1)) (i32.const 1))))\n"
    "   (local.set $r (i32.or (local.get $r) (i32.shl (i32.eq (memory.grow (i32.const 3))"
    " (i32.const -1)) (i32.const 2))))\n"
    "   (local.set $r (i32.or (local.get $r) (i32.shl (i32.eq (memory.grow (i32.const 2))"
    " (i32.const 1)) (i32.const 3))))\n"
    "   (local.set $r (i32.or (local.get $r) (i32.shl (i32.eq (table.grow $x1 (ref.null func)"
    " (i32.const 10000000)) (i32.const -1)) (i32.const 4))))\n"
    "   (local.set $r (i32.or (local.get $r) (i32.shl (i32.eq (table.grow $x2 (ref.null func)"
    " (i32.const 1048576)) (i32.const -1)) (i32.const 5))))\n"
    "   (return (local.get $r))))\n"
    "  ;; 'w': call_indirect through an identical 20-parameter type\n"
    "  (if (i32.eq (local.get $op) (i32.const 119)) (then\n"
    "   (return (call_indirect $w (type $b) (i32.const 1) (i32.const 2) (i32.const 3)"
    " (i32.const 4) (i32.const 5) (i32.const 6) (i32.const 7) (i32.const 8) (i32.const 9)"
    " (i32.const 10) (i32.const 11) (i32.const 12) (i32.const 13) (i32.const 14)"
    " (i32.const 15) (i32.const 16) (i32.const 17) (i32.const 18) (i32.const 19)"
    " (i32.const 20) (i32.const 0)))))\n"
    "  ;; 'm': cap 0 measures, whatever the pointer\n"
    "  (if (i32.eq (local.get $op) (i32.const 109)) (then\n"
    "   (return (call $rr (i32.const 0xffffff00) (i32.const 0)))))\n"
    "  (i32.const -2)))\n";

typedef struct bounded {
    realm_instance *in;
    const trap_case *cases;
    size_t n_cases;
} bounded;

/* Each case traps with its needle; the next call on the thread works. */
static void *bounded_fn(void *p)
{
    bounded *b = p;
    for (size_t i = 0; i < b->n_cases; i++) {
        int32_t ret;
        double t0 = realm__now();
        CHECK_RC(call(b->in, b->cases[i].req, strlen(b->cases[i].req), &ret, NULL), REALM_ERR_TRAP);
        CHECK_MSG(strstr(realm_last_error(), b->cases[i].needle), "case %s: '%s'", b->cases[i].req,
                  realm_last_error());
        CHECK_MSG(realm__now() - t0 < 10.0, "case %s took %.1f s", b->cases[i].req,
                  realm__now() - t0);
        CHECK_RC(call(b->in, "", 0, &ret, NULL), REALM_OK);
        CHECK_EQ_INT(ret, 7);
    }
    return NULL;
}

/* Run the cases on a thread; a hang is a failure after 60 s (well past any
 * deadline), not a stuck test. */
static void run_bounded(realm_instance *in, const trap_case *cases, size_t n)
{
    bounded b = {in, cases, n};
    pthread_t th;
    pthread_create(&th, NULL, bounded_fn, &b);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    if (pthread_timedjoin_np(th, NULL, &until) != 0) {
        fprintf(stderr, "FAIL: a guest ran past its deadline (still running after 60 s)\n");
        _exit(1);
    }
}

static void test_runtime_paths(void)
{
    size_t n;
    uint8_t *w = assemble_text(robust_wat, &n);
    realm_module *m = w ? load(w, n) : NULL;
    free(w);
    if (!m)
        return;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.deadline_ms = 100;
    pol.max_pages = 16;
    realm_instance *in = NULL;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    if (!in)
        return;
    /* The deadline is not lost while the guest sits in the runtime's host
     * paths (memory.grow, table.grow). Repeated: the timer fires at a
     * different point each time. */
    static const trap_case cases[] = {
        {"g", "deadline of 100 ms exceeded"}, {"z", "deadline of 100 ms exceeded"},
        {"t", "deadline of 100 ms exceeded"}, {"g", "deadline of 100 ms exceeded"},
        {"z", "deadline of 100 ms exceeded"}, {"t", "deadline of 100 ms exceeded"},
        {"t", "deadline of 100 ms exceeded"}, {"t", "deadline of 100 ms exceeded"},
    };
    run_bounded(in, cases, sizeof cases / sizeof cases[0]);

    int32_t ret;
    CHECK_RC(call(in, "w", 1, &ret, NULL), REALM_OK); /* wide types compare in full */
    CHECK_EQ_INT(ret, 21);
    CHECK_RC(call(in, "m", 1, &ret, NULL), REALM_OK); /* cap 0 with a pointer past the end */
    CHECK_EQ_INT(ret, 1);
    realm_instance_free(in);

    /* Tables count against the memory cap: 4 pages for memory and tables. */
    pol.max_pages = 4;
    pol.deadline_ms = 200;
    in = NULL;
    CHECK_RC(realm_instance_new(m, &pol, &in), REALM_OK);
    for (int round = 0; in && round < 2; round++) { /* a trap resets the account */
        CHECK_RC(call(in, "T", 1, &ret, NULL), REALM_OK);
        CHECK_MSG(ret == 63, "table/memory cap results 0x%x, want 0x3f", (unsigned)ret);
        CHECK_RC(call(in, "g", 1, &ret, NULL), REALM_ERR_TRAP);
    }
    realm_instance_free(in);
    realm_module_free(m);

    /* A wide-typed module loaded again registers no new types (its call
     * still works after another load). */
    w = assemble_text(robust_wat, &n);
    m = w ? load(w, n) : NULL;
    free(w);
    in = NULL;
    if (m)
        CHECK_RC(realm_instance_new(m, NULL, &in), REALM_OK);
    if (in) {
        CHECK_RC(call(in, "w", 1, &ret, NULL), REALM_OK);
        CHECK_EQ_INT(ret, 21);
    }
    realm_instance_free(in);
    realm_module_free(m);
}

/* A module of its own (distinct bytes, so a fresh cache entry). */
static uint8_t *unique_module(const char *tag, size_t *len)
{
    char wat[400];
    snprintf(wat, sizeof wat,
             "(module (memory (export \"memory\") 1) (data (i32.const 0) \"%s-%d-%ld\")"
             " (func (export \"handle\") (result i32) (i32.const 7)))",
             tag, (int)getpid(), (long)time(NULL));
    return assemble_text(wat, len);
}

/* Load and run a module once: 0 when it answers 7. */
static int load_and_run(realm_sandbox *s, const uint8_t *w, size_t n)
{
    realm_module *m = NULL;
    int rc = realm_module_load_bytes(s, w, n, &m);
    realm_instance *in = NULL;
    if (rc == 0)
        rc = realm_instance_new(m, NULL, &in);
    int32_t ret = 0;
    if (rc == 0)
        rc = call(in, "", 0, &ret, NULL);
    if (rc == 0 && ret != 7)
        rc = -1000;
    realm_instance_free(in);
    realm_module_free(m);
    return rc;
}

/* The cache root must be private: a group- or world-writable one (where
 * another user could plant a module.so) is refused, naming it. */
static void test_cache_dir_checks(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/open-cache", work);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(chmod(dir, 0777) == 0);
    realm_sandbox *s = NULL;
    CHECK_RC(realm_sandbox_new(&(realm_sandbox_params){.cache_dir = dir}, &s), REALM_OK);
    size_t n;
    uint8_t *w = unique_module("perm", &n);
    realm_module *m = NULL;
    CHECK_RC(realm_module_load_bytes(s, w, n, &m), REALM_ERR_DENIED);
    CHECK(m == NULL);
    CHECK_MSG(strstr(realm_last_error(), dir) && strstr(realm_last_error(), "writable"), "%s",
              realm_last_error());
    CHECK(chmod(dir, 0755) == 0); /* fixed: now it is used */
    CHECK_RC(load_and_run(s, w, n), REALM_OK);
    realm_sandbox_free(s);

    /* directories the sandbox creates are private */
    snprintf(dir, sizeof dir, "%s/new-cache/sub", work);
    CHECK_RC(realm_sandbox_new(&(realm_sandbox_params){.cache_dir = dir}, &s), REALM_OK);
    CHECK_RC(load_and_run(s, w, n), REALM_OK);
    struct stat st;
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 077) == 0);
    realm_sandbox_free(s);

    /* a cache named (by the environment) in /tmp that is a symbolic link,
     * as another user could plant there: refused, even to our own dir */
    char link[64];
    snprintf(link, sizeof link, "/tmp/realm-test-link-%d", (int)getpid());
    unlink(link);
    CHECK(symlink(dir, link) == 0);
    const char *old = getenv("REALM_MODULE_CACHE");
    char *saved = old ? strdup(old) : NULL;
    setenv("REALM_MODULE_CACHE", link, 1);
    CHECK_RC(realm_sandbox_new(NULL, &s), REALM_OK);
    CHECK_RC(realm_module_load_bytes(s, w, n, &m), REALM_ERR_DENIED);
    CHECK_MSG(strstr(realm_last_error(), "symbolic link"), "%s", realm_last_error());
    realm_sandbox_free(s);
    if (saved)
        setenv("REALM_MODULE_CACHE", saved, 1);
    else
        unsetenv("REALM_MODULE_CACHE");
    free(saved);
    unlink(link);
    free(w);
}

/* Several "processes" (sandboxes with their own locks) build the same new
 * module into one cache at once: every one gets a working module. A stale
 * entry holding a subdirectory is replaced. */
typedef struct racer {
    const uint8_t *w;
    size_t n;
    const char *dir;
    int rc;
    pthread_barrier_t *bar;
} racer;

static void *race_fn(void *p)
{
    racer *r = p;
    realm_sandbox *s = NULL;
    r->rc = realm_sandbox_new(&(realm_sandbox_params){.cache_dir = r->dir}, &s);
    pthread_barrier_wait(r->bar);
    if (r->rc == 0)
        r->rc = load_and_run(s, r->w, r->n);
    realm_sandbox_free(s);
    return NULL;
}

static void test_cache_races(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/race-cache", work);
    for (int iter = 0; iter < 3; iter++) {
        size_t n;
        char tag[16];
        snprintf(tag, sizeof tag, "race%d", iter);
        uint8_t *w = unique_module(tag, &n);
        enum { N = 4 };
        pthread_t th[N];
        racer r[N];
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, N);
        for (int i = 0; i < N; i++) {
            r[i] = (racer){.w = w, .n = n, .dir = dir, .bar = &bar};
            pthread_create(&th[i], NULL, race_fn, &r[i]);
        }
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            CHECK_MSG(r[i].rc == 0, "racer %d: %d", i, r[i].rc);
        }
        pthread_barrier_destroy(&bar);
        free(w);
    }

    /* stale entry: junk module.so and a subdirectory */
    size_t n;
    uint8_t *w = unique_module("stale", &n);
    realm_sandbox *s = NULL;
    CHECK_RC(realm_sandbox_new(&(realm_sandbox_params){.cache_dir = dir}, &s), REALM_OK);
    char *so = NULL;
    CHECK_RC(realm_module_build(s, w, n, &so), REALM_OK);
    if (so) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd,
                 "d=$(dirname '%s') && rm -rf \"$d\" && mkdir -p \"$d/sub/deeper\" && "
                 "echo junk > \"$d/module.so\" && echo x > \"$d/sub/deeper/f\"",
                 so);
        CHECK_EQ_INT(system(cmd), 0);
        CHECK_RC(load_and_run(s, w, n), REALM_OK);
        CHECK_RC(load_and_run(s, w, n), REALM_OK);
    }
    free(so);
    realm_sandbox_free(s);
    free(w);
}

/* The compiler runs without the server's file descriptors, and a build does
 * not hold the lock that guests' model lookups take. The C compiler here is a
 * script that fails if it inherited descriptor 200, and, while a "hold" file
 * exists, waits (up to 60 s) until the test lets it go. */
typedef struct gated {
    realm_sandbox *s;
    const uint8_t *w;
    size_t n;
    int rc;
} gated;

static void *gated_build(void *p)
{
    gated *g = p;
    g->rc = load_and_run(g->s, g->w, g->n);
    return NULL;
}

static int wait_file(const char *path, int seconds)
{
    for (int i = 0; i < seconds * 100; i++) {
        if (access(path, F_OK) == 0)
            return 1;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    return 0;
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
}

static void test_build_isolation(void)
{
    char script[300], hold[300], started[300], go[300], dir[300];
    snprintf(script, sizeof script, "%s/cc.sh", work);
    snprintf(hold, sizeof hold, "%s/gate.hold", work);
    snprintf(started, sizeof started, "%s/gate.started", work);
    snprintf(go, sizeof go, "%s/gate.go", work);
    snprintf(dir, sizeof dir, "%s/cc-cache", work);
    FILE *f = fopen(script, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f,
            "#!/bin/sh\n"
            "if [ -e /proc/$$/fd/200 ]; then echo 'inherited descriptor 200'; exit 1; fi\n"
            "if [ -e '%s' ]; then\n"
            "  touch '%s'\n"
            "  i=0; while [ ! -e '%s' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
            "fi\n"
            "exec cc \"$@\"\n",
            hold, started, go);
    fclose(f);
    chmod(script, 0700);
    int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, like a server's socket */
    CHECK(fd >= 0 && dup2(fd, 200) == 200);
    if (fd >= 0)
        close(fd);

    realm_sandbox *s = NULL;
    CHECK_RC(realm_sandbox_new(&(realm_sandbox_params){.cache_dir = dir, .cc = script}, &s),
             REALM_OK);
    size_t n;
    uint8_t *w = isolation_module("gx1", &n);
    realm_module *m = NULL;
    CHECK_RC(realm_module_load_bytes(s, w, n, &m), REALM_OK);
    CHECK_MSG(m != NULL, "%s", realm_last_error());
    free(w);
    realm_instance *in = NULL;
    if (m)
        CHECK_RC(realm_instance_new(m, NULL, &in), REALM_OK);

    touch(hold);
    w = unique_module("gate", &n);
    gated g = {.s = s, .w = w, .n = n};
    pthread_t th;
    pthread_create(&th, NULL, gated_build, &g);
    CHECK_MSG(wait_file(started, 60), "the compiler did not start");
    if (in) { /* the build is in progress: a guest of the same sandbox opens a model */
        int32_t ret;
        double t0 = realm__now();
        CHECK_RC(call(in, "x", 1, &ret, NULL), REALM_OK);
        CHECK(ret > 10);
        CHECK_MSG(realm__now() - t0 < 30.0, "model_open waited %.1f s for a build",
                  realm__now() - t0);
    }
    touch(go);
    pthread_join(th, NULL);
    CHECK_MSG(g.rc == 0, "gated build: %d", g.rc);
    unlink(hold);
    close(200);
    realm_instance_free(in);
    realm_module_free(m);
    realm_sandbox_free(s);
    free(w);
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
    test_stack_clash();
    test_host_stack();
    test_runtime_paths();
    test_cache_dir_checks();
    test_cache_races();
    test_build_isolation();
    realm_sandbox_free(sb);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", work);
    return test_end();
}
