/*
 * The key-value host calls (realm.kv_get / kv_put / kv_delete / kv_list) as a
 * module sees them: tests/sandbox/kv.c, compiled here with clang, run with
 * realm_request_io.kv bound to a real store (realm/store.h) and a tenant, as
 * the server binds it. Covers the calls and the buffer rule, expiry through
 * ttl_s, pagination, two tenants that cannot see each other's data, the
 * embedder without key-value data (UNSUPPORTED), and malicious arguments:
 * pointers and lengths outside memory trap (and the next request runs on a
 * fresh instance), lengths in memory but over the limits are errors.
 */
#include <ftw.h>
#include <jansson.h>
#include <time.h>

#include "realm/sandbox.h"
#include "realm/store.h"
#include "test_util.h"

static char work[256];
static realm_sandbox *sb;
static realm_module *mod;
static realm_instance *in;
static realm_store *store;

/* ---- the embedder's side: ops bound to (store, tenant) --------------------------- */

typedef struct binding {
    realm_store *s;
    int64_t tenant;
} binding;

static int64_t b_get(void *ud, const char *key, void *buf, size_t cap)
{
    binding *b = ud;
    return realm_store_kv_get(b->s, b->tenant, key, buf, cap);
}

static int b_put(void *ud, const char *key, const void *value, size_t len, uint32_t ttl_s)
{
    binding *b = ud;
    return realm_store_kv_put(b->s, b->tenant, key, value, len,
                              ttl_s ? (int64_t)time(NULL) + ttl_s : 0);
}

static int b_del(void *ud, const char *key)
{
    binding *b = ud;
    return realm_store_kv_delete(b->s, b->tenant, key);
}

static int b_list(void *ud, const char *prefix, const char *after, int32_t limit, char ***keys,
                  int32_t *n, bool *more)
{
    binding *b = ud;
    return realm_store_kv_list(b->s, b->tenant, prefix, after, limit, keys, n, more);
}

typedef struct reply {
    int status;
    char *body;
    size_t len;
} reply;

static void on_respond(void *ud, int status, const char *d, size_t n)
{
    reply *r = ud;
    r->status = status;
    free(r->body);
    r->body = malloc(n + 1);
    memcpy(r->body, d, n);
    r->body[n] = '\0';
    r->len = n;
}

/* Run one request as tenant (0: no key-value data). Returns the rc of
 * realm_instance_handle; r gets the answer. */
static int call(int64_t tenant, const char *body, size_t len, reply *r)
{
    binding b = {store, tenant};
    realm_kv_ops ops = {.get = b_get, .put = b_put, .del = b_del, .list = b_list, .ud = &b};
    free(r->body);
    memset(r, 0, sizeof *r);
    realm_request_io io = {
        .body = body, .body_len = len, .respond = on_respond, .ud = r, .kv = tenant ? &ops : NULL};
    int32_t ret;
    return realm_instance_handle(in, &io, &ret);
}

/* The answer's body to a request that must not trap ("" when it did). */
static reply last;
static const char *ask(int64_t tenant, const char *body)
{
    int rc = call(tenant, body, strlen(body), &last);
    CHECK_MSG(rc == REALM_OK && last.status == 200, "%s: rc %d (%s), status %d", body, rc,
              rc ? realm_last_error() : "", last.status);
    return last.body ? last.body : "";
}

#define CHECK_ASK(tenant, body, want)                                                              \
    do {                                                                                           \
        const char *got_ = ask(tenant, body);                                                      \
        CHECK_MSG(strcmp(got_, want) == 0, "%s: got [%.300s], want [%s]", body, got_, want);       \
    } while (0)

/* The answer starts with want (for errors: the code, then the message). */
#define CHECK_ASK_PREFIX(tenant, body, want)                                                       \
    do {                                                                                           \
        const char *got_ = ask(tenant, body);                                                      \
        CHECK_MSG(strncmp(got_, want, strlen(want)) == 0, "%s: got [%.300s], want [%s...]", body,  \
                  got_, want);                                                                     \
    } while (0)

/* ---- the calls ------------------------------------------------------------------- */

static int64_t acme, beta;

static void test_calls(void)
{
    CHECK_ASK(acme, "get\ngreeting\n100", "-6:kv: no key 'greeting'");
    CHECK_ASK(acme, "put\ngreeting\n0\nhello, world", "0");
    CHECK_ASK(acme, "get\ngreeting\n100", "12:hello, world");
    CHECK_ASK(acme, "get\ngreeting\n12", "12:hello, world"); /* exactly fits */
    CHECK_ASK(acme, "get\ngreeting\n11", "12");              /* too small: nothing written */
    CHECK_ASK(acme, "get\ngreeting\n0", "12");               /* measures */
    CHECK_ASK(acme, "alloc\ngreeting", "12:hello, world");
    /* what the guest stored is what the store holds */
    char buf[64];
    CHECK_EQ_INT(realm_store_kv_get(store, acme, "greeting", buf, sizeof buf), 12);
    CHECK(memcmp(buf, "hello, world", 12) == 0);
    /* replace; values with newlines and NULs; an empty value */
    CHECK_ASK(acme, "put\ngreeting\n0\nline 1\nline 2", "0");
    CHECK_ASK(acme, "get\ngreeting\n100", "13:line 1\nline 2");
    CHECK_RC(realm_store_kv_put(store, acme, "bin", "a\0b", 3, 0), 0);
    const char *g = ask(acme, "get\nbin\n10");
    CHECK(last.len == 5 && memcmp(g, "3:a\0b", 5) == 0);
    CHECK_ASK(acme, "put\nempty\n0\n", "0");
    CHECK_ASK(acme, "get\nempty\n10", "0:");
    CHECK_ASK(acme, "alloc\nempty", "0:");
    /* a value larger than any buffer the guest has: rg_kv_get_alloc */
    size_t big_n = 300000;
    char *big = malloc(big_n);
    for (size_t i = 0; i < big_n; i++)
        big[i] = (char)('a' + (i * 7) % 26);
    CHECK_RC(realm_store_kv_put(store, acme, "big", big, big_n, 0), 0);
    g = ask(acme, "alloc\nbig");
    CHECK(strncmp(g, "300000:", 7) == 0 && last.len == 7 + big_n && memcmp(g + 7, big, big_n) == 0);
    free(big);
    /* delete */
    CHECK_ASK(acme, "del\ngreeting", "0");
    CHECK_ASK(acme, "del\ngreeting", "-6:kv: no key 'greeting'");
    CHECK_ASK(acme, "get\ngreeting\n100", "-6:kv: no key 'greeting'");
    /* keys the store refuses: the guest gets its message */
    CHECK_ASK_PREFIX(acme, "put\ntab\there\n0\nv", "-2:kv: the key has a control character");
    CHECK_ASK_PREFIX(acme, "get\n\xff\n10", "-2:kv: the key is not valid UTF-8");
    CHECK_ASK(acme, "put\n\n0\nv", "-2:kv_put: the key is empty");
    CHECK_ASK(acme, "put\ncaf\xc3\xa9 \xe6\x97\xa5\n0\nunicode", "0");
    CHECK_ASK(acme, "get\ncaf\xc3\xa9 \xe6\x97\xa5\n100", "7:unicode");
}

static void test_expiry_and_quota(void)
{
    /* expiry through ttl_s: 2 s, so that it is still there in the next second */
    CHECK_ASK(acme, "put\nbrief\n2\ngone soon", "0");
    const time_t t_put = time(NULL);
    CHECK_ASK(acme, "put\nlasting\n3600\nstays", "0");
    CHECK_ASK(acme, "get\nbrief\n100", "9:gone soon");
    while (time(NULL) < t_put + 2)
        usleep(50000);
    CHECK_ASK(acme, "get\nbrief\n100", "-6:kv: no key 'brief'");
    CHECK_ASK(acme, "get\nlasting\n100", "5:stays");

    /* the quota: beta may keep 100 bytes */
    realm_tenant t;
    CHECK_RC(realm_store_tenant_get_id(store, beta, &t), 0);
    t.kv_quota = 100;
    CHECK_RC(realm_store_tenant_update(store, &t), 0);
    char body[256];
    snprintf(body, sizeof body, "put\nk1\n0\n%048d", 0); /* 2 + 48 bytes */
    CHECK_ASK(beta, body, "0");
    snprintf(body, sizeof body, "put\nk2\n0\n%048d", 0); /* 100 bytes: exactly the quota */
    CHECK_ASK(beta, body, "0");
    CHECK_ASK_PREFIX(beta, "put\nk\n0\n", "-8:kv: storing 'k' (1 bytes with its key) would take");
    CHECK(strstr(last.body, "over its quota of 100") != NULL);
    int64_t bytes, keys;
    CHECK_RC(realm_store_kv_usage(store, beta, &bytes, &keys), 0);
    CHECK_EQ_INT(bytes, 100);
    CHECK_EQ_INT(keys, 2);
    CHECK_ASK(beta, "del\nk1", "0");
    CHECK_ASK(beta, "put\nk\n0\n", "0");
    /* over the value limit: all of the guest's memory as one value */
    CHECK_ASK_PREFIX(acme, "big-value", "-8:kv: the value of 'big' is ");
}

/* Pages of 7 keys over 20, through the guest. */
static void test_list(void)
{
    char key[32], body[128];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "page/%02d", i);
        CHECK_RC(realm_store_kv_put(store, acme, key, "x", 1, 0), 0);
    }
    CHECK_RC(realm_store_kv_put(store, acme, "pagf", "x", 1, 0), 0); /* after the prefix */
    CHECK_RC(realm_store_kv_put(store, acme, "pag", "x", 1, 0), 0);  /* before it */
    char after[32] = "-";
    int total = 0, pages = 0;
    for (;;) {
        snprintf(body, sizeof body, "list\npage/\n%s\n7\n4096", after);
        const char *g = ask(acme, body);
        const char *colon = strchr(g, ':');
        json_t *j = colon ? json_loads(colon + 1, 0, NULL) : NULL;
        json_t *a = json_object_get(j, "keys");
        CHECK_MSG(json_is_array(a) && json_is_boolean(json_object_get(j, "more")), "%s", g);
        if (!json_is_array(a)) {
            json_decref(j);
            break;
        }
        CHECK_EQ_INT(atoi(g), (int)strlen(colon + 1));
        size_t k;
        json_t *v;
        json_array_foreach(a, k, v)
        {
            snprintf(key, sizeof key, "page/%02d", total++);
            CHECK_EQ_STR(json_string_value(v), key);
        }
        pages++;
        const bool more = json_is_true(json_object_get(j, "more"));
        CHECK_EQ_INT(more, total < 20);
        if (json_array_size(a))
            snprintf(after, sizeof after, "%s", json_string_value(json_array_get(a, k - 1)));
        json_decref(j);
        if (!more || pages > 5)
            break;
    }
    CHECK_EQ_INT(total, 20);
    CHECK_EQ_INT(pages, 3);
    /* the buffer rule: too small a buffer gets the size, and nothing */
    CHECK_ASK(acme, "list\npage/\n-\n2\n10", "42");
    CHECK_ASK(acme, "list\npage/\n-\n2\n42",
              "42:{\"keys\":[\"page/00\",\"page/01\"],\"more\":true}");
    CHECK_ASK(acme, "list\nnothing/\n-\n5\n100", "24:{\"keys\":[],\"more\":false}");
    /* bad arguments */
    CHECK_ASK(acme, "zero-limit", "-2:kv_list: the limit 0 is not in 1..1000");
    CHECK_ASK(acme, "huge-limit", "-2:kv_list: the limit 4294967295 is not in 1..1000");
}

/* beta sees none of acme's keys, and the other way round. */
static void test_isolation(void)
{
    CHECK_ASK(acme, "put\nsecret\n0\nacme's", "0");
    CHECK_ASK(beta, "get\nsecret\n100", "-6:kv: no key 'secret'");
    CHECK_ASK(beta, "del\nsecret", "-6:kv: no key 'secret'");
    CHECK_ASK(beta, "list\nsec\n-\n10\n100", "24:{\"keys\":[],\"more\":false}");
    CHECK_ASK(beta, "put\nsecret\n0\nbeta's", "0");
    CHECK_ASK(acme, "get\nsecret\n100", "6:acme's");
    CHECK_ASK(beta, "get\nsecret\n100", "6:beta's");
    CHECK_ASK(acme, "list\nsec\n-\n10\n100", "32:{\"keys\":[\"secret\"],\"more\":false}");
}

/* Without key-value data every call is UNSUPPORTED. */
static void test_unsupported(void)
{
    static const char *const ops[] = {"get\nk\n10", "put\nk\n0\nv", "del\nk", "list\n-\n-\n10\n10",
                                      "alloc\nk"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        const char *g = ask(0, ops[i]);
        CHECK_MSG(strncmp(g, "-5:kv_", 6) == 0 && strstr(g, "no key-value data here"), "%s: %s",
                  ops[i], g);
    }
}

/* Bad pointers and lengths: a trap naming the call, or an error; the store
 * untouched and the next request served. */
static void test_malicious(void)
{
    static const struct {
        const char *op, *msg;
    } traps[] = {
        {"trap-key", "realm.kv_get: range 0xfffffff0 + 64 outside guest memory"},
        {"trap-out", "realm.kv_get: range"},
        {"trap-value", "realm.kv_put: range 0x10 + 4294967295 outside guest memory"},
        {"trap-list", "realm.kv_list: range"},
        {"trap-after", "realm.kv_list: range 0x7fffffff + 2147483647 outside guest memory"},
        {"trap-list-out", "realm.kv_list: range"},
    };
    int64_t keys_before, keys_after;
    CHECK_RC(realm_store_kv_usage(store, acme, NULL, &keys_before), 0);
    for (size_t i = 0; i < sizeof traps / sizeof *traps; i++) {
        reply r = {0};
        int rc = call(acme, traps[i].op, strlen(traps[i].op), &r);
        CHECK_MSG(rc == REALM_ERR_TRAP && strstr(realm_last_error(), traps[i].msg),
                  "%s: rc %d, status %d, body %s, error %s", traps[i].op, rc, r.status,
                  r.body ? r.body : "", realm_last_error());
        free(r.body);
        CHECK_ASK(acme, "get\nsecret\n100", "6:acme's"); /* a fresh instance carries on */
    }
    /* in memory but over the limits: errors, not traps */
    CHECK_ASK(acme, "nul-key", "-2:kv_put: the key contains a NUL byte");
    CHECK_ASK(acme, "long-key", "-2:kv_get: the key is 1048576 bytes, longer than 512");
    CHECK_RC(realm_store_kv_usage(store, acme, NULL, &keys_after), 0);
    CHECK_EQ_INT(keys_after, keys_before);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Compile the guest (clang, wasm32, the SDK) and instantiate it. */
static int start(void)
{
    const char *root = getenv("REALM_SOURCE_DIR");
    root = root ? root : "..";
    char cmd[2048], out[400], dir[400];
    snprintf(out, sizeof out, "%s/kv.wasm", work);
    snprintf(cmd, sizeof cmd,
             "clang --target=wasm32-wasi -O2 -nostdlib -ffreestanding -Wall -Wextra -Werror "
             "-I'%s/guest/include' -Wl,--no-entry -Wl,--export=handle -o '%s' "
             "'%s/tests/sandbox/kv.c' '%s/guest/lib/realm_guest.c' "
             "$(clang --target=wasm32-wasi -print-libgcc-file-name)",
             root, out, root, root);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        test_failures++;
        return -1;
    }
    snprintf(dir, sizeof dir, "%s/data", work);
    CHECK_RC(realm_store_open(dir, &store), REALM_OK);
    realm_tenant t;
    CHECK_RC(realm_store_tenant_add(store, "acme", &t), REALM_OK);
    acme = t.id;
    CHECK_RC(realm_store_tenant_add(store, "beta", &t), REALM_OK);
    beta = t.id;
    CHECK_RC(realm_sandbox_new(&(realm_sandbox_params){.cache_dir = "sandbox-cache"}, &sb),
             REALM_OK);
    if (!sb || !store)
        return -1;
    CHECK_RC(realm_module_load(sb, out, &mod), REALM_OK);
    if (!mod)
        return -1;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.deadline_ms = 10000;
    CHECK_RC(realm_instance_new(mod, &pol, &in), REALM_OK);
    return in ? 0 : -1;
}

int main(void)
{
    test_begin("sandbox_kv", 300);
    const char *t = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/realm-kv-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(work)) {
        perror("mkdtemp");
        return 1;
    }
    if (start() == 0) {
        test_calls();
        test_expiry_and_quota();
        test_list();
        test_isolation();
        test_unsupported();
        test_malicious();
    }
    free(last.body);
    realm_instance_free(in);
    realm_module_free(mod);
    realm_sandbox_free(sb);
    realm_store_close(store);
    nftw(work, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_end();
}
