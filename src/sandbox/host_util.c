/*
 * Helpers every host function uses (host_internal.h): guest ranges, the
 * error a guest reads back, the buffer rule, the call's deadline.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "host_internal.h"

uint8_t *realm__host_range(realm_instance *in, const char *fn, uint32_t ptr, uint64_t len)
{
    wasm_rt_memory_t *m = in->so->memory(in->guest);
    if (len == 0)
        return m->data; /* never past the start of guest memory */
    if ((uint64_t)ptr + len > m->size)
        realm__rt_trap_msg(REALM__TRAP_HOST,
                           "realm.%s: range 0x%x + %llu outside guest memory of %u bytes", fn, ptr,
                           (unsigned long long)len, m->size);
    return m->data + ptr;
}

int realm__host_fail(realm_instance *in, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(in->last_error, sizeof in->last_error, fmt, ap);
    va_end(ap);
    in->last_param[0] = '\0';
    return code;
}

int realm__host_fail_param(realm_instance *in, int code, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(in->last_error, sizeof in->last_error, fmt, ap);
    va_end(ap);
    snprintf(in->last_param, sizeof in->last_param, "%s", param ? param : "");
    return code;
}

int32_t realm__host_put(uint8_t *dst, uint32_t cap, const void *src, size_t len)
{
    if (len > INT32_MAX)
        return REALM_ERR_RANGE;
    if (len <= cap)
        memcpy(dst, src, len);
    return (int32_t)len;
}

int32_t realm__host_put_json(uint8_t *dst, uint32_t cap, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        return REALM_ERR_NOMEM;
    int32_t n = realm__host_put(dst, cap, s, strlen(s));
    free(s);
    return n;
}

int realm__host_remaining_ms(realm_instance *in)
{
    if (!in->call.deadline_ms)
        return -1;
    double left = in->call.t_deadline - realm__now();
    return left <= 0 ? 0 : (int)(left * 1000.0) + 1;
}

int realm__host_wait_slice(realm_instance *in, const char *fn)
{
    const int cancel = in->io && in->io->cancelled ? in->io->cancelled(in->io->ud) : 0;
    if (cancel) {
        for (int i = 0; i < MAX_GENS; i++) /* free the engine's work at its next step */
            for (int32_t k = 0; k < in->gens[i].n; k++)
                realm_gen_cancel(in->gens[i].g[k]);
        if (in->eval_gen)
            realm_gen_cancel(in->eval_gen);
        /* asked to stop: the waits see the generations end ("cancelled") and the
         * guest answers; gone: nobody reads the answer */
        if (cancel != REALM_IO_STOP)
            realm__rt_trap_msg(REALM__TRAP_CANCELLED, "request cancelled: the client went away");
    }
    const int left = realm__host_remaining_ms(in);
    if (left == 0)
        realm__rt_trap_msg(REALM__TRAP_HOST, "deadline of %u ms exceeded in realm.%s",
                           in->call.deadline_ms, fn);
    const int slice = in->io && in->io->cancelled ? 20 : 100;
    return left < 0 || left > slice ? slice : left;
}

model_slot *realm__host_model(realm_instance *in, uint32_t h)
{
    return h >= 1 && h <= (uint32_t)in->n_models ? &in->models[h - 1] : NULL;
}
