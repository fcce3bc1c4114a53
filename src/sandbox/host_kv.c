/*
 * Host functions for the tenant's key-value data: kv_get, kv_put, kv_delete,
 * kv_list (docs/host-abi.md). The data is the embedder's
 * (realm_request_io.kv, bound to the request's tenant); without it every call
 * returns UNSUPPORTED. The host checks every guest range first (a bad one
 * traps), then the lengths, and hands keys on NUL-terminated. Values go
 * between guest memory and the embedder without a copy here; the only host
 * memory a call takes is a list's keys (at most REALM_SANDBOX_KV_LIST_MAX of
 * at most REALM_SANDBOX_KV_KEY_MAX bytes) and their JSON.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "host_internal.h"

typedef char kv_key[REALM_SANDBOX_KV_KEY_MAX + 1];

static const realm_kv_ops *kv_ops(const realm_instance *in)
{
    return in->io ? in->io->kv : NULL;
}

static int unsupported(realm_instance *in, const char *fn)
{
    return realm__host_fail(in, REALM_ERR_UNSUPPORTED,
                            "%s: no key-value data here (the embedder keeps none)", fn);
}

/* A callback's failure rc for the guest: its message, else the code's text. */
static int failed(realm_instance *in, const char *fn, int rc)
{
    const char *msg = realm_last_error();
    if (msg[0])
        return realm__host_fail(in, rc, "%s", msg);
    return realm__host_fail(in, rc, "%s: %s", fn, realm_strerror(rc));
}

/* The guest's bytes src[0..len) (already range-checked) as a C string in
 * out: INVAL (for last_error) when longer than REALM_SANDBOX_KV_KEY_MAX,
 * empty where that is not allowed, or holding a NUL. */
static int string_arg(realm_instance *in, const char *fn, const char *what, const uint8_t *src,
                      uint32_t len, bool may_be_empty, kv_key out)
{
    if (len > REALM_SANDBOX_KV_KEY_MAX)
        return realm__host_fail(in, REALM_ERR_INVAL, "%s: the %s is %u bytes, longer than %d", fn,
                                what, len, REALM_SANDBOX_KV_KEY_MAX);
    if (len == 0 && !may_be_empty)
        return realm__host_fail(in, REALM_ERR_INVAL, "%s: the %s is empty", fn, what);
    if (memchr(src, '\0', len))
        return realm__host_fail(in, REALM_ERR_INVAL, "%s: the %s contains a NUL byte", fn, what);
    memcpy(out, src, len);
    out[len] = '\0';
    return 0;
}

/* kv_get(key, key_len, out, cap): the value's length (buffer rule). */
uint32_t realm__host_kv_get(void *c, uint32_t key, uint32_t key_len, uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    const uint8_t *k = realm__host_range(in, "kv_get", key, key_len);
    uint8_t *dst = realm__host_range(in, "kv_get", out, cap);
    const realm_kv_ops *ops = kv_ops(in);
    kv_key kb;
    if (!ops || !ops->get)
        HOST_RETURN(unsupported(in, "kv_get"));
    int rc = string_arg(in, "kv_get", "key", k, key_len, false, kb);
    if (rc < 0)
        HOST_RETURN(rc);
    realm_clear_error();
    const int64_t n = ops->get(ops->ud, kb, dst, cap);
    if (n < 0)
        HOST_RETURN(failed(in, "kv_get", (int)n));
    if (n > INT32_MAX)
        HOST_RETURN(
            realm__host_fail(in, REALM_ERR_RANGE, "kv_get: the value is %lld bytes", (long long)n));
    HOST_RETURN(n);
}

/* kv_put(key, key_len, value, value_len, ttl_s): 0. */
uint32_t realm__host_kv_put(void *c, uint32_t key, uint32_t key_len, uint32_t value,
                            uint32_t value_len, uint32_t ttl_s)
{
    HOST_BEGIN(c);
    const uint8_t *k = realm__host_range(in, "kv_put", key, key_len);
    const uint8_t *v = realm__host_range(in, "kv_put", value, value_len);
    const realm_kv_ops *ops = kv_ops(in);
    kv_key kb;
    if (!ops || !ops->put)
        HOST_RETURN(unsupported(in, "kv_put"));
    int rc = string_arg(in, "kv_put", "key", k, key_len, false, kb);
    if (rc < 0)
        HOST_RETURN(rc);
    realm_clear_error();
    rc = ops->put(ops->ud, kb, v, value_len, ttl_s);
    HOST_RETURN(rc < 0 ? failed(in, "kv_put", rc) : 0);
}

/* kv_delete(key, key_len): 0, NOTFOUND when absent. */
uint32_t realm__host_kv_delete(void *c, uint32_t key, uint32_t key_len)
{
    HOST_BEGIN(c);
    const uint8_t *k = realm__host_range(in, "kv_delete", key, key_len);
    const realm_kv_ops *ops = kv_ops(in);
    kv_key kb;
    if (!ops || !ops->del)
        HOST_RETURN(unsupported(in, "kv_delete"));
    int rc = string_arg(in, "kv_delete", "key", k, key_len, false, kb);
    if (rc < 0)
        HOST_RETURN(rc);
    realm_clear_error();
    rc = ops->del(ops->ud, kb);
    HOST_RETURN(rc < 0 ? failed(in, "kv_delete", rc) : 0);
}

/* The keys as {"keys":[...],"more":bool}; NULL when one is not UTF-8 or out
 * of memory. */
static json_t *keys_json(char **keys, int32_t n, bool more)
{
    json_t *a = json_array(), *j = json_pack("{s:o, s:b}", "keys", a, "more", more);
    for (int32_t i = 0; j && i < n; i++)
        if (json_array_append_new(a, json_string(keys[i])) < 0) {
            json_decref(j);
            j = NULL;
        }
    return j;
}

/* kv_list(prefix, prefix_len, after, after_len, limit, out, cap): JSON length
 * (buffer rule). */
uint32_t realm__host_kv_list(void *c, uint32_t prefix, uint32_t prefix_len, uint32_t after,
                             uint32_t after_len, uint32_t limit, uint32_t out, uint32_t cap)
{
    HOST_BEGIN(c);
    const uint8_t *p = realm__host_range(in, "kv_list", prefix, prefix_len);
    const uint8_t *a = realm__host_range(in, "kv_list", after, after_len);
    uint8_t *dst = realm__host_range(in, "kv_list", out, cap);
    const realm_kv_ops *ops = kv_ops(in);
    kv_key pb, ab;
    if (!ops || !ops->list)
        HOST_RETURN(unsupported(in, "kv_list"));
    int rc = string_arg(in, "kv_list", "prefix", p, prefix_len, true, pb);
    if (rc == 0)
        rc = string_arg(in, "kv_list", "cursor ('after')", a, after_len, true, ab);
    if (rc == 0 && (limit < 1 || limit > REALM_SANDBOX_KV_LIST_MAX))
        rc = realm__host_fail(in, REALM_ERR_INVAL, "kv_list: the limit %u is not in 1..%d", limit,
                              REALM_SANDBOX_KV_LIST_MAX);
    if (rc < 0)
        HOST_RETURN(rc);
    char **keys = NULL;
    int32_t n = 0;
    bool more = false;
    realm_clear_error();
    rc = ops->list(ops->ud, pb, ab, (int32_t)limit, &keys, &n, &more);
    if (rc < 0) {
        free(keys);
        HOST_RETURN(failed(in, "kv_list", rc));
    }
    json_t *j = n <= (int32_t)limit ? keys_json(keys, n, more) : NULL;
    free(keys);
    if (!j)
        HOST_RETURN(realm__host_fail(in, REALM_ERR_IO,
                                     "kv_list: the key-value data gave a list that is not "
                                     "%u keys of UTF-8 at most",
                                     limit));
    HOST_RETURN(realm__host_put_json(dst, cap, j));
}
