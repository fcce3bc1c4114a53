/*
 * The guest SDK's JSON lookups (guest/lib/realm_guest.c), run where they
 * run in production: inside a sandboxed module, tests/sandbox/json.c, which
 * places each document at the very end of its memory so that reading one
 * byte past it traps. Fixed cases cover top-level-only lookup, escapes,
 * truncation and malformed input; then every prefix of a few documents and
 * random mutations must never trap or hang, and wherever jansson (the host's
 * parser) accepts a document, the lookups must agree with it.
 */
#include <jansson.h>

#include "realm/sandbox.h"
#include "test_util.h"

static char work[256];
static realm_sandbox *sb;
static realm_module *mod;
static realm_instance *in;

typedef struct reply {
    int status;
    char body[8192];
    size_t len;
} reply;

static void on_respond(void *ud, int status, const char *d, size_t n)
{
    reply *r = ud;
    r->status = status;
    r->len = n < sizeof r->body - 1 ? n : sizeof r->body - 1;
    memcpy(r->body, d, r->len);
    r->body[r->len] = '\0';
}

/* Ask the guest "op num key" about doc[0..len). Returns 0, or -1 (counted as
 * a failure) if the guest trapped or did not answer 200. */
static int ask(char op, long long num, const char *key, const char *doc, size_t len, reply *r)
{
    static char body[70000];
    int h = snprintf(body, sizeof body, "%c %lld %s\n", op, num, key);
    if (len > sizeof body - (size_t)h) {
        fprintf(stderr, "document too large\n");
        exit(1);
    }
    memcpy(body + h, doc, len);
    memset(r, 0, sizeof *r);
    realm_request_io io = {
        .body = body, .body_len = (size_t)h + len, .respond = on_respond, .ud = r};
    int32_t ret = 0;
    int rc = realm_instance_handle(in, &io, &ret);
    CHECK_MSG(rc == REALM_OK && r->status == 200, "%c '%s' on [%.*s]: rc %d (%s), status %d: %s",
              op, key, (int)len, doc, rc, rc ? realm_last_error() : "", r->status, r->body);
    return rc == REALM_OK && r->status == 200 ? 0 : -1;
}

static long long ask_num(char op, long long num, const char *key, const char *doc, size_t len)
{
    reply r;
    if (ask(op, num, key, doc, len, &r) < 0)
        return -999;
    return strtoll(r.body, NULL, 10);
}

/*
 * rg_json_string(doc, key, out, cap) must return want_rc and leave out as
 * want[0..want_len) then NUL, the rest of out and 4 bytes beyond it untouched
 * (nothing at all when cap is 0).
 */
static void check_string_n(int line, const char *doc, const char *key, size_t cap, int want_rc,
                           const char *want, size_t want_len)
{
    reply r;
    if (ask('s', (long long)cap, key, doc, strlen(doc), &r) < 0)
        return;
    char *colon = strchr(r.body, ':');
    int rc = atoi(r.body);
    const char *out = colon ? colon + 1 : "";
    size_t n_out = colon ? r.len - (size_t)(colon + 1 - r.body) : 0;
    CHECK_MSG(rc == want_rc, "line %d: '%s' in %s: returned %d, expected %d", line, key, doc, rc,
              want_rc);
    CHECK_MSG(n_out == cap + 4, "line %d: answer of %zu bytes", line, n_out);
    if (n_out != cap + 4)
        return;
    size_t written = cap ? want_len + 1 : 0;
    int ok = written <= cap && (!cap || (memcmp(out, want, want_len) == 0 && !out[want_len]));
    for (size_t i = written; ok && i < cap + 4; i++)
        ok = out[i] == '#';
    CHECK_MSG(ok, "line %d: '%s' in %s, cap %zu: out is [%.*s], expected [%.*s] then NUL", line,
              key, doc, cap, (int)n_out, out, (int)want_len, want);
}

#define CHECK_STRING(doc, key, cap, rc, want)                                                      \
    check_string_n(__LINE__, doc, key, cap, rc, want, strlen(want))

static void check_int(int line, const char *doc, const char *key, long long def, long long want)
{
    long long got = ask_num('i', def, key, doc, strlen(doc));
    CHECK_MSG(got == want, "line %d: rg_json_int '%s' in %s: %lld, expected %lld", line, key, doc,
              got, want);
}
#define CHECK_INT(doc, key, def, want) check_int(__LINE__, doc, key, def, want)

static void check_bool(int line, const char *doc, const char *key, int want)
{
    long long got = ask_num('b', -5, key, doc, strlen(doc));
    CHECK_MSG(got == want, "line %d: rg_json_bool '%s' in %s: %lld, expected %d", line, key, doc,
              got, want);
}
#define CHECK_BOOL(doc, key, want) check_bool(__LINE__, doc, key, want)

static void check_has(int line, const char *doc, const char *key, int want)
{
    long long got = ask_num('h', 0, key, doc, strlen(doc));
    CHECK_MSG(got == want, "line %d: rg_json_has '%s' in %s: %lld, expected %d", line, key, doc,
              got, want);
}
#define CHECK_HAS(doc, key, want) check_has(__LINE__, doc, key, want)

/* want NULL: absent (-1). */
static void check_raw(int line, const char *doc, const char *key, const char *want)
{
    reply r;
    if (ask('r', 0, key, doc, strlen(doc), &r) < 0)
        return;
    if (!want)
        CHECK_MSG(strcmp(r.body, "-1") == 0, "line %d: rg_json_raw '%s' in %s: %s", line, key, doc,
                  r.body);
    else
        CHECK_MSG(strncmp(r.body, "0:", 2) == 0 && strcmp(r.body + 2, want) == 0,
                  "line %d: rg_json_raw '%s' in %s: %s, expected 0:%s", line, key, doc, r.body,
                  want);
}
#define CHECK_RAW(doc, key, want) check_raw(__LINE__, doc, key, want)

static void test_top_level_only(void)
{
    CHECK_STRING("{\"model\":\"tiny\"}", "model", 64, 4, "tiny");
    CHECK_STRING("{\"metadata\":{\"model\":\"evil\"},\"model\":\"tiny\"}", "model", 64, 4, "tiny");
    CHECK_STRING("{\"model\":\"tiny\",\"metadata\":{\"model\":\"evil\"}}", "model", 64, 4, "tiny");
    CHECK_STRING("{\"metadata\":{\"model\":\"evil\"}}", "model", 64, -1, "");
    CHECK_STRING("{\"messages\":[{\"role\":\"user\",\"model\":\"evil\"}],\"n\":1}", "model", 64, -1,
                 "");
    /* keys, quotes and brackets inside strings are text */
    CHECK_STRING("{\"a\":\"\\\"model\\\":\\\"evil\\\"\",\"b\":1}", "model", 64, -1, "");
    CHECK_STRING("{\"a\":\"x\\\"}, \\\"model\\\": \\\"evil\\\"\", \"model\":\"ok\"}", "model", 64,
                 2, "ok");
    CHECK_STRING("{\"a\":\"[{\",\"b\":[\"]}\",{\"c\":\"}\"}],\"model\":\"ok\"}", "model", 64, 2,
                 "ok");
    CHECK_STRING("{\"a\":\"\\\\\",\"model\":\"ok\"}", "model", 64, 2, "ok");
    /* the last of repeated keys, as jansson */
    CHECK_STRING("{\"model\":\"a\",\"model\":\"b\"}", "model", 64, 1, "b");
    /* keys are compared decoded */
    CHECK_STRING("{\"mod\\u0065l\":\"x\"}", "model", 64, 1, "x");
    CHECK_STRING("{\"model\\u0000\":\"x\"}", "model", 64, -1, "");
    CHECK_STRING("{\"mode\":\"x\",\"models\":\"y\"}", "model", 64, -1, "");
    CHECK_STRING(" \n\t{ \"model\" :\r\n \"v\" } \n", "model", 64, 1, "v");

    CHECK_HAS("{\"messages\":[]}", "messages", 1);
    CHECK_HAS("{\"m\":null}", "m", 1);
    CHECK_HAS("{\"x\":{\"messages\":[]}}", "messages", 0);
    CHECK_HAS("{\"prompt\":\"messages\"}", "messages", 0);
    CHECK_HAS("{\"prompt\":\"\\\"messages\\\":[]\"}", "messages", 0);
    CHECK_HAS("{\"prompt\":\"x\"}", "", 0);
    CHECK_HAS("{\"\":1}", "", 1);
}

static void test_strings(void)
{
    CHECK_STRING("{\"k\":\"a\\nb\\t\\\"\\\\\\/\\b\\f\\r\"}", "k", 64, 10, "a\nb\t\"\\/\b\f\r");
    /* \u escapes to UTF-8, surrogate pairs combined */
    CHECK_STRING("{\"k\":\"\\u00e9\\u4E2D\\ud83d\\ude00\\u0041\"}", "k", 64, 10,
                 "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80"
                 "A");
    CHECK_STRING("{\"k\":\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\"}", "k", 64, 9,
                 "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80");
    check_string_n(__LINE__, "{\"k\":\"a\\u0000b\"}", "k", 8, 3, "a\0b", 3);
    /* not JSON strings */
    static const char *const bad[] = {
        "{\"k\":\"\\ud83d\"}",
        "{\"k\":\"\\ude00\"}",
        "{\"k\":\"\\ud83dx\"}",
        "{\"k\":\"\\ud83d\\u0041\"}",
        "{\"k\":\"\\ud83d\\u\"}",
        "{\"k\":\"\\x\"}",
        "{\"k\":\"\\u12\"}",
        "{\"k\":\"\\u12g4\"}",
        "{\"k\":\"a\tb\"}",
        "{\"k\":\"\xff\"}",
        "{\"k\":\"\xc0\x80\"}",
        "{\"k\":\"\xed\xa0\x80\"}",
        "{\"k\":\"\xf4\x90\x80\x80\"}",
        "{\"k\":\"\xe4\xb8\"}",
        "{\"k\":\"\xc3\"}",
        "{\"k\":5}",
        "{\"k\":null}",
        "{\"k\":[\"a\"]}",
        "{\"j\":\"a\"}",
        "",
        "\"k\"",
        "[\"k\",\"v\"]",
        "{\"k\":\"v\"",
        "{\"k\":\"v\"} x",
        "{\"k\" \"v\"}",
        "{\"k\":\"v\",}",
        "{,\"k\":\"v\"}",
        "{\"k\":\"v\"}}",
        "{\"k\":\"v",
        "{\"k\":\"v\\",
        "{\"a\":[1,2,\"k\":\"v\"}",
        "{\"a\":{\"b\":1},\"k\":\"v\"",
        "{\"a\":1 \"k\":\"v\"}",
        "{\"a\":,\"k\":\"v\"}",
        "{\"a\"::1,\"k\":\"v\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_STRING(bad[i], "k", 16, -1, "");
    CHECK_STRING("{\"k\":\"v\"}", "k", 16, 1, "v");
    /* a NUL after the object is text after it, as for jansson */
    CHECK_EQ_INT(ask_num('h', 0, "k", "{\"k\":1}\0", 8), 0);
    CHECK_EQ_INT(ask_num('h', 0, "k", "{\"k\":1}", 7), 1);

    /* truncation: the full length is returned; out holds whole characters */
    CHECK_STRING("{\"k\":\"abcdef\"}", "k", 7, 6, "abcdef");
    CHECK_STRING("{\"k\":\"abcdef\"}", "k", 6, 6, "abcde");
    CHECK_STRING("{\"k\":\"abcdef\"}", "k", 4, 6, "abc");
    CHECK_STRING("{\"k\":\"abcdef\"}", "k", 1, 6, "");
    CHECK_STRING("{\"k\":\"abcdef\"}", "k", 0, 6, "");
    CHECK_STRING("{\"k\":\"\"}", "k", 0, 0, "");
    CHECK_STRING("{\"k\":\"\"}", "k", 1, 0, "");
    static const char mixed[] = "{\"k\":\"a\xc3\xa9\xe4\xb8\xad\"}"; /* 1 + 2 + 3 bytes */
    CHECK_STRING(mixed, "k", 2, 6, "a");
    CHECK_STRING(mixed, "k", 3, 6, "a");
    CHECK_STRING(mixed, "k", 4, 6, "a\xc3\xa9");
    CHECK_STRING(mixed, "k", 6, 6, "a\xc3\xa9");
    CHECK_STRING(mixed, "k", 7, 6, "a\xc3\xa9\xe4\xb8\xad");
    CHECK_STRING("{\"k\":\"\\u00e9\\u00e9x\"}", "k", 4, 5, "\xc3\xa9");
    CHECK_STRING("{\"k\":\"\\ud83d\\ude00\"}", "k", 4, 4, "");
    CHECK_STRING("{\"k\":\"\\ud83d\\ude00\"}", "k", 5, 4, "\xf0\x9f\x98\x80");
    /* a short character after a cut one is not written either */
    CHECK_STRING("{\"k\":\"a\xe4\xb8\xad"
                 "b\"}",
                 "k", 4, 5, "a");
}

static void test_numbers_and_bools(void)
{
    CHECK_INT("{\"n\":42}", "n", -1, 42);
    CHECK_INT("{\"n\":-7}", "n", -1, -7);
    CHECK_INT("{\"n\":0}", "n", -1, 0);
    CHECK_INT("{\"n\":-0}", "n", -1, 0);
    CHECK_INT("{\"n\" : 12 }", "n", -1, 12);
    CHECK_INT("{\"n\":9223372036854775807}", "n", -1, INT64_MAX);
    CHECK_INT("{\"n\":-9223372036854775808}", "n", -1, INT64_MIN);
    static const char *const not_int[] = {
        "{\"n\":9223372036854775808}",
        "{\"n\":-9223372036854775809}",
        "{\"n\":99999999999999999999999}",
        "{\"n\":1.5}",
        "{\"n\":1e3}",
        "{\"n\":1E3}",
        "{\"n\":01}",
        "{\"n\":-01}",
        "{\"n\":\"5\"}",
        "{\"n\":-}",
        "{\"n\":+5}",
        "{\"n\":true}",
        "{\"n\":12abc}",
        "{\"x\":{\"n\":5}}",
        "{\"x\":[{\"n\":5}]}",
        "{\"n\":5",
        "{\"n\":}",
    };
    for (size_t i = 0; i < sizeof not_int / sizeof *not_int; i++)
        CHECK_INT(not_int[i], "n", -3, -3);
    CHECK_INT("{\"n\":5,\"n\":6}", "n", -1, 6);

    CHECK_BOOL("{\"b\":true}", "b", 1);
    CHECK_BOOL("{\"b\":false}", "b", 0);
    CHECK_BOOL("{\"b\" :\ttrue }", "b", 1);
    static const char *const not_bool[] = {
        "{\"b\":1}",    "{\"b\":\"true\"}",     "{\"b\":truex}", "{\"b\":tru}",
        "{\"b\":null}", "{\"x\":{\"b\":true}}", "{\"b\":true",   "{\"b\":falsehood}",
    };
    for (size_t i = 0; i < sizeof not_bool / sizeof *not_bool; i++)
        CHECK_BOOL(not_bool[i], "b", -5);
}

static void test_raw(void)
{
    static const char doc[] =
        "{\"a\" : [1, {\"b\":\"]\"}] ,\"c\":2,\"s\":\"x\\\"y\",\"o\":{},\"z\":null}";
    CHECK_RAW(doc, "a", "[1, {\"b\":\"]\"}]");
    CHECK_RAW(doc, "c", "2");
    CHECK_RAW(doc, "s", "\"x\\\"y\"");
    CHECK_RAW(doc, "o", "{}");
    CHECK_RAW(doc, "z", "null");
    CHECK_RAW(doc, "b", NULL);
    CHECK_RAW("{\"a\":[1,2}", "a", NULL);
    CHECK_RAW("{\"a\":[1,2]", "a", NULL);
}

/* Deep nesting is skipped without recursion. */
static void test_deep(void)
{
    enum { DEPTH = 30000 };
    char *doc = malloc(2 * DEPTH + 64);
    size_t n = 0;
    n += (size_t)sprintf(doc, "{\"a\":");
    for (int i = 0; i < DEPTH; i++)
        doc[n++] = i % 2 ? '{' : '[';
    for (int i = DEPTH - 1; i >= 0; i--)
        doc[n++] = i % 2 ? '}' : ']';
    n += (size_t)sprintf(doc + n, ",\"k\":\"v\"}");
    CHECK_STRING(doc, "k", 8, 1, "v");
    doc[n - 3] = '\0'; /* cut before the end: unbalanced at the top level */
    CHECK_HAS(doc, "k", 0);
    free(doc);
}

/* ---- never past the end, never a hang; agreement with jansson ------------- */

static const char *const keys[] = {"model", "messages", "stream", "n", "k"};

/* The lookups of every key in doc[0..len): the guest must answer (no trap,
 * no hang); when jansson accepts doc as an object, as jansson reads it. */
static void probe(const char *doc, size_t len)
{
    json_t *o = json_loadb(doc, len, 0, NULL);
    int object = json_is_object(o);
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        json_t *v = object ? json_object_get(o, keys[k]) : NULL;
        reply r;
        if (ask('s', 256, keys[k], doc, len, &r) < 0)
            break;
        long long rc = strtoll(r.body, NULL, 10);
        const char *out = strchr(r.body, ':') ? strchr(r.body, ':') + 1 : "";
        if (object && json_is_string(v))
            CHECK_MSG(rc == (long long)json_string_length(v) &&
                          memcmp(out, json_string_value(v), json_string_length(v)) == 0,
                      "'%s' in [%.*s]: %lld", keys[k], (int)len, doc, rc);
        else if (object)
            CHECK_MSG(rc == -1, "'%s' in [%.*s]: %lld", keys[k], (int)len, doc, rc);
        long long got = ask_num('i', 123456789, keys[k], doc, len);
        if (object)
            CHECK_MSG(got == (json_is_integer(v) ? json_integer_value(v) : 123456789),
                      "int '%s' in [%.*s]: %lld", keys[k], (int)len, doc, got);
        got = ask_num('b', -5, keys[k], doc, len);
        if (object)
            CHECK_MSG(got == (json_is_true(v)    ? 1
                              : json_is_false(v) ? 0
                                                 : -5),
                      "bool '%s' in [%.*s]: %lld", keys[k], (int)len, doc, got);
        got = ask_num('h', 0, keys[k], doc, len);
        if (object)
            CHECK_MSG(got == (v != NULL), "has '%s' in [%.*s]: %lld", keys[k], (int)len, doc, got);
        if (ask('r', 0, keys[k], doc, len, &r) == 0)
            CHECK_MSG(strcmp(r.body, "BAD") != 0, "raw '%s' in [%.*s]", keys[k], (int)len, doc);
    }
    json_decref(o);
}

static const char *const seeds[] = {
    "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"say \\\"hi\\\" [ok]\","
    "\"model\":\"x\"}],\"stream\":true,\"n\":3}",
    "{\"meta\":{\"model\":\"evil\",\"k\":[1,{\"n\":2}]},\"k\":\"\\u00e9\\ud83d\\ude00\\n\","
    "\"n\":-12,\"stream\":false}",
    " { \"k\" : \"a\\\\\" , \"n\" : 0 , \"model\" : null , \"messages\" : [ ] } ",
};

static void test_prefixes_and_mutations(void)
{
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        size_t n = strlen(seeds[s]);
        probe(seeds[s], n);
        for (size_t cut = 0; cut < n; cut++)
            probe(seeds[s], cut);
    }
    static const char alphabet[] = "{}[]\":,\\ u0a1-.etn\xc3\xff";
    char doc[512];
    for (int round = 0; round < 300; round++) {
        const char *seed = seeds[test_rand_u64() % (sizeof seeds / sizeof *seeds)];
        size_t n = strlen(seed);
        memcpy(doc, seed, n);
        for (int m = 1 + (int)(test_rand_u64() % 3); m > 0; m--) {
            size_t at = (size_t)(test_rand_u64() % n);
            char c = alphabet[test_rand_u64() % (sizeof alphabet - 1)];
            switch (test_rand_u64() % 3) {
            case 0: /* replace */
                doc[at] = c;
                break;
            case 1: /* delete */
                memmove(doc + at, doc + at + 1, n - at - 1);
                n--;
                break;
            default: /* insert */
                memmove(doc + at + 1, doc + at, n - at);
                doc[at] = c;
                n++;
            }
        }
        probe(doc, n);
    }
}

/* Compile the guest (clang, wasm32, the SDK) and instantiate it. */
static int start_guest(void)
{
    const char *root = getenv("REALM_SOURCE_DIR");
    root = root ? root : "..";
    char cmd[2048], out[400];
    snprintf(out, sizeof out, "%s/json.wasm", work);
    snprintf(cmd, sizeof cmd,
             "clang --target=wasm32-wasi -O2 -nostdlib -ffreestanding -Wall -Wextra -Werror "
             "-I'%s/guest/include' -Wl,--no-entry -Wl,--export=handle -o '%s' "
             "'%s/tests/sandbox/json.c' '%s/guest/lib/realm_guest.c' "
             "$(clang --target=wasm32-wasi -print-libgcc-file-name)",
             root, out, root, root);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        test_failures++;
        return -1;
    }
    CHECK_RC(realm_sandbox_new(&(realm_sandbox_params){.cache_dir = "sandbox-cache"}, &sb),
             REALM_OK);
    if (!sb)
        return -1;
    CHECK_RC(realm_module_load(sb, out, &mod), REALM_OK);
    if (!mod)
        return -1;
    realm_tenant_policy pol;
    realm_tenant_policy_init(&pol);
    pol.deadline_ms = 5000; /* a lookup that loops traps here */
    CHECK_RC(realm_instance_new(mod, &pol, &in), REALM_OK);
    return in ? 0 : -1;
}

int main(void)
{
    test_begin("guest_sdk", 300);
    const char *t = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/realm-gsdk-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(work)) {
        perror("mkdtemp");
        return 1;
    }
    if (start_guest() == 0) {
        test_top_level_only();
        test_strings();
        test_numbers_and_bools();
        test_raw();
        test_deep();
        test_prefixes_and_mutations();
    }
    realm_instance_free(in);
    realm_module_free(mod);
    realm_sandbox_free(sb);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", work);
    return test_end();
}
