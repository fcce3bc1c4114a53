/*
 * libFuzzer target for the GGUF reader (and, through a round trip, the
 * writer). Every input either fails to open, leaving a message and a NULL
 * handle, or opens and then:
 *   - every accessor is walked and every byte it exposes is read (keys,
 *     scalars, strings, array elements, string-array elements, tensor data),
 *     so ASan reports any pointer outside the input;
 *   - the lookups agree with the listing (find_kv / find_tensor);
 *   - it is copied through the writer into memory and read back, and the
 *     copy must hold the same metadata and tensor bytes.
 * A broken property calls __builtin_trap(), which libFuzzer reports as a
 * crash and saves the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "realm/error.h"
#include "realm/gguf.h"

#define REQUIRE(x)                                                                                 \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_gguf: property failed: %s (line %d)\n", #x, __LINE__);           \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

/* Skip the write-back when the copy would be much larger than the input
 * (tensors may share one data range in the input but not in the copy). */
#define ROUND_TRIP_MAX_BYTES (16u << 20)

static volatile uint64_t sink;

static uint64_t sum_bytes(const void *p, uint64_t n)
{
    const uint8_t *b = p;
    uint64_t s = 0;
    for (uint64_t i = 0; i < n; i++)
        s += b[i];
    return s;
}

/* Call every typed getter on key; only the matching one may succeed. */
static void poke_getters(const realm_gguf *g, const char *key, realm_gguf_type t)
{
    realm_gguf_value v;
    REQUIRE((realm_gguf_get_u8(g, key, &v.u8) == REALM_OK) == (t == REALM_GGUF_UINT8));
    REQUIRE((realm_gguf_get_i8(g, key, &v.i8) == REALM_OK) == (t == REALM_GGUF_INT8));
    REQUIRE((realm_gguf_get_u16(g, key, &v.u16) == REALM_OK) == (t == REALM_GGUF_UINT16));
    REQUIRE((realm_gguf_get_i16(g, key, &v.i16) == REALM_OK) == (t == REALM_GGUF_INT16));
    REQUIRE((realm_gguf_get_u32(g, key, &v.u32) == REALM_OK) == (t == REALM_GGUF_UINT32));
    REQUIRE((realm_gguf_get_i32(g, key, &v.i32) == REALM_OK) == (t == REALM_GGUF_INT32));
    REQUIRE((realm_gguf_get_u64(g, key, &v.u64) == REALM_OK) == (t == REALM_GGUF_UINT64));
    REQUIRE((realm_gguf_get_i64(g, key, &v.i64) == REALM_OK) == (t == REALM_GGUF_INT64));
    REQUIRE((realm_gguf_get_f32(g, key, &v.f32) == REALM_OK) == (t == REALM_GGUF_FLOAT32));
    REQUIRE((realm_gguf_get_f64(g, key, &v.f64) == REALM_OK) == (t == REALM_GGUF_FLOAT64));
    REQUIRE((realm_gguf_get_bool(g, key, &v.b) == REALM_OK) == (t == REALM_GGUF_BOOL));
    REQUIRE((realm_gguf_get_str(g, key, &v.s) == REALM_OK) == (t == REALM_GGUF_STRING));
    const int rc = realm_gguf_get_int(g, key, &v.i64);
    REQUIRE(rc == REALM_OK || rc == REALM_ERR_TYPE || rc == REALM_ERR_RANGE);
}

/* Touch everything the handle exposes; base/size is the input. */
static void walk(const realm_gguf *g, const uint8_t *base, size_t size)
{
    uint64_t s = realm_gguf_version(g) + realm_gguf_alignment(g) + realm_gguf_data_offset(g);
    REQUIRE(realm_gguf_file_size(g) == size);
    const uint64_t align = realm_gguf_alignment(g);
    REQUIRE(align != 0 && (align & (align - 1)) == 0);
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++) {
        const char *key = realm_gguf_kv_key(g, i);
        REQUIRE(key != NULL);
        REQUIRE(realm_gguf_find_kv(g, key) == i);
        const realm_gguf_type t = realm_gguf_kv_type(g, i);
        REQUIRE(t < REALM_GGUF_TYPE_COUNT);
        poke_getters(g, key, t);
        if (t == REALM_GGUF_STRING) {
            const realm_gguf_str str = realm_gguf_kv_str(g, i);
            REQUIRE(str.data != NULL);
            s += sum_bytes(str.data, str.len);
        } else if (t == REALM_GGUF_ARRAY) {
            const realm_gguf_type et = realm_gguf_kv_arr_type(g, i);
            const uint64_t n = realm_gguf_kv_arr_n(g, i);
            REQUIRE(et < REALM_GGUF_TYPE_COUNT && et != REALM_GGUF_ARRAY);
            int64_t idx = -1;
            uint64_t n2 = 0;
            REQUIRE(realm_gguf_get_arr(g, key, et, &idx, &n2) == REALM_OK && idx == i && n2 == n);
            if (et == REALM_GGUF_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    const realm_gguf_str str = realm_gguf_kv_arr_str(g, i, j);
                    REQUIRE(str.data != NULL);
                    s += sum_bytes(str.data, str.len);
                }
                REQUIRE(realm_gguf_kv_arr_str(g, i, n).data == NULL);
            } else {
                s += sum_bytes(realm_gguf_kv_arr_data(g, i), n * realm_gguf_type_size(et));
            }
        } else {
            s += sum_bytes(realm_gguf_kv_scalar(g, i), realm_gguf_type_size(t));
        }
    }
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        REQUIRE(realm_gguf_find_tensor(g, t->name) == t);
        REQUIRE(t->n_dims >= 1 && t->n_dims <= REALM_GGUF_MAX_DIMS);
        REQUIRE(realm_gguf_tensor_nelements(t) > 0);
        REQUIRE(t->offset % align == 0);
        const uint8_t *d = t->data;
        REQUIRE(d >= base && t->nbytes <= size && (uint64_t)(d - base) <= size - t->nbytes);
        s += sum_bytes(t->data, t->nbytes) + strlen(t->name);
    }
    sink = s;
}

/* Write g through the writer into memory, read it back, compare. */
static void round_trip(const realm_gguf *g)
{
    uint64_t total = 0;
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++)
        total += realm_gguf_tensor_at(g, i)->nbytes;
    if (total > ROUND_TRIP_MAX_BYTES)
        return;

    realm_gguf_writer *w = NULL;
    REQUIRE(realm_gguf_writer_new(&w) == REALM_OK);
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++)
        REQUIRE(realm_gguf_copy_kv(w, g, i) == REALM_OK);
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        REQUIRE(realm_gguf_add_tensor(w, t->name, t->n_dims, t->ne, t->type, NULL) == REALM_OK);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    REQUIRE(f != NULL);
    REQUIRE(realm_gguf_writer_begin(w, f) == REALM_OK);
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        REQUIRE(realm_gguf_writer_put_tensor(w, t->data, t->nbytes) == REALM_OK);
    }
    REQUIRE(realm_gguf_writer_end(w) == REALM_OK);
    fclose(f);
    realm_gguf_writer_free(w);

    realm_gguf *h = NULL;
    if (realm_gguf_open_memory(buf, len, &h) != REALM_OK) {
        fprintf(stderr, "fuzz_gguf: the copy does not open: %s\n", realm_last_error());
        __builtin_trap();
    }
    REQUIRE(realm_gguf_alignment(h) == realm_gguf_alignment(g));
    REQUIRE(realm_gguf_n_kv(h) == realm_gguf_n_kv(g));
    REQUIRE(realm_gguf_n_tensors(h) == realm_gguf_n_tensors(g));
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++) {
        REQUIRE(strcmp(realm_gguf_kv_key(g, i), realm_gguf_kv_key(h, i)) == 0);
        const realm_gguf_type t = realm_gguf_kv_type(g, i);
        REQUIRE(realm_gguf_kv_type(h, i) == t);
        if (t == REALM_GGUF_STRING) {
            const realm_gguf_str a = realm_gguf_kv_str(g, i), b = realm_gguf_kv_str(h, i);
            REQUIRE(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
        } else if (t == REALM_GGUF_ARRAY) {
            const realm_gguf_type et = realm_gguf_kv_arr_type(g, i);
            const uint64_t n = realm_gguf_kv_arr_n(g, i);
            REQUIRE(realm_gguf_kv_arr_type(h, i) == et && realm_gguf_kv_arr_n(h, i) == n);
            if (et == REALM_GGUF_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    const realm_gguf_str a = realm_gguf_kv_arr_str(g, i, j);
                    const realm_gguf_str b = realm_gguf_kv_arr_str(h, i, j);
                    REQUIRE(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
                }
            } else {
                REQUIRE(memcmp(realm_gguf_kv_arr_data(g, i), realm_gguf_kv_arr_data(h, i),
                               n * realm_gguf_type_size(et)) == 0);
            }
        } else {
            REQUIRE(memcmp(realm_gguf_kv_scalar(g, i), realm_gguf_kv_scalar(h, i),
                           realm_gguf_type_size(t)) == 0);
        }
    }
    for (int64_t i = 0; i < realm_gguf_n_tensors(g); i++) {
        const realm_gguf_tensor *a = realm_gguf_tensor_at(g, i), *b = realm_gguf_tensor_at(h, i);
        REQUIRE(strcmp(a->name, b->name) == 0 && a->type == b->type && a->n_dims == b->n_dims);
        REQUIRE(memcmp(a->ne, b->ne, sizeof a->ne) == 0 && a->nbytes == b->nbytes);
        REQUIRE(memcmp(a->data, b->data, a->nbytes) == 0);
    }
    realm_gguf_close(h);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    realm_gguf *g = (realm_gguf *)&g; /* open must reset it */
    realm_clear_error();
    const int rc = realm_gguf_open_memory(data, size, &g);
    if (rc != REALM_OK) {
        REQUIRE(rc < 0 && g == NULL && realm_last_error()[0] != '\0');
        return 0;
    }
    walk(g, data, size);
    round_trip(g);
    realm_gguf_close(g);
    return 0;
}
