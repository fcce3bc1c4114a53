/*
 * Instances of tenant modules: creating one (its wasm2c instance under the
 * tenant's policy), running its handler for a request, and ending the
 * request (its generations and sessions closed).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "host_internal.h"

void realm_tenant_policy_init(realm_tenant_policy *p)
{
    memset(p, 0, sizeof *p);
    p->max_pages = 1024;
    p->deadline_ms = 30000;
    p->max_call_depth = 20000;
    p->max_generations = 4;
}

/* ---- instances ---------------------------------------------------------- */

static void run_instantiate(void *p)
{
    realm_instance *in = p;
    in->so->instantiate(in->guest, in);
}

static void run_handle(void *p)
{
    realm_instance *in = p;
    in->result = in->so->handle(in->guest);
}

static void setup_call(realm_instance *in)
{
    in->call.max_pages = in->pol.max_pages;
    in->call.deadline_ms = in->pol.deadline_ms;
    in->call.call_depth = in->pol.max_call_depth;
    in->call.depth = in->so->depth();
}

/* Drop the guest's state (after a trap, or at free). The instance was zeroed
 * before instantiation and the runtime's free functions skip what was never
 * allocated, so this is safe after a half-done instantiation too. */
static void drop_guest(realm_instance *in)
{
    if (in->guest && in->started) {
        in->so->free(in->guest);
        memset(in->guest, 0, in->so->instance_size());
    }
    in->started = 0;
    in->live = 0;
    in->call.mem_lo = in->call.mem_hi = NULL;
    in->call.mem_pages = 0;
    in->call.table_bytes = 0;
}

/* (Re)create the guest instance. */
static int instantiate(realm_instance *in)
{
    memset(in->guest, 0, in->so->instance_size());
    setup_call(in);
    in->started = 1;
    int rc = realm__rt_run(&in->call, run_instantiate, in);
    if (rc < 0) {
        drop_guest(in);
        return rc;
    }
    in->live = 1;
    return 0;
}

int realm_instance_new(realm_module *m, const realm_tenant_policy *p, realm_instance **out)
{
    *out = NULL;
    realm_instance *in = calloc(1, sizeof *in);
    if (!in)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    in->mod = m;
    in->so = realm__module_so(m);
    in->sb = realm__module_sandbox(m);
    if (p)
        in->pol = *p;
    else
        realm_tenant_policy_init(&in->pol);
    if (in->pol.max_generations > MAX_GENS)
        in->pol.max_generations = MAX_GENS;
    if (in->pol.models) {
        int32_t n_models = in->pol.n_models > 0 ? in->pol.n_models : 0;
        in->pol.n_models = 0; /* counts the copies made, for realm_instance_free */
        in->allowed = calloc((size_t)n_models + 1, sizeof *in->allowed);
        for (int32_t i = 0; in->allowed && i < n_models; i++) {
            size_t n = strlen(in->pol.models[i]);
            if (!(in->allowed[i] = malloc(n + 1)))
                break;
            memcpy(in->allowed[i], in->pol.models[i], n + 1);
            in->pol.n_models++;
        }
        in->pol.models = (const char *const *)in->allowed;
        if (!in->allowed || in->pol.n_models != n_models) { /* never widen the policy */
            realm_instance_free(in);
            return realm__error(REALM_ERR_NOMEM, "out of memory");
        }
    }
    in->guest = calloc(1, in->so->instance_size());
    if (!in->guest) {
        realm_instance_free(in);
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    }
    int rc = instantiate(in);
    if (rc < 0) {
        realm_instance_free(in);
        return rc;
    }
    *out = in;
    return 0;
}

/* End of a request: generations still open are cancelled and freed,
 * sessions closed, model handles closed. */
static void end_request(realm_instance *in)
{
    realm__host_gens_close(in);
    realm__host_sessions_close(in);
    for (int i = 0; i < in->n_models; i++)
        realm_registry_release(in->models[i].ref);
    in->n_models = 0;
    for (int i = 0; i < in->n_adapters; i++) /* after the generations using them ended */
        realm_registry_release(in->adapters[i]);
    in->n_adapters = 0;
    in->io = NULL;
}

int realm_instance_handle(realm_instance *in, const realm_request_io *io, int32_t *ret)
{
    int rc = 0;
    if (!in->live && (rc = instantiate(in)) < 0)
        return rc;
    in->io = io;
    in->last_error[0] = '\0';
    in->responded = 0;
    in->resp_started = 0;
    setup_call(in);
    rc = realm__rt_run(&in->call, run_handle, in);
    if (rc < 0)
        drop_guest(in); /* a trapped guest starts afresh at its next call */
    end_request(in);
    if (rc == 0 && ret)
        *ret = (int32_t)in->result;
    return rc;
}

void realm_instance_free(realm_instance *in)
{
    if (!in)
        return;
    end_request(in);
    drop_guest(in);
    free(in->guest);
    if (in->allowed)
        for (int32_t i = 0; i < in->pol.n_models; i++)
            free(in->allowed[i]);
    free(in->allowed);
    free(in);
}
