/*
 * realm/registry.h — models by name: loaded on demand within a memory budget,
 * shared by every tenant, unloaded when idle.
 *
 * A registry maps names to model files and, while a model is loaded, to its
 * realm_model and realm_engine. Every loaded model's engine runs its forward
 * passes on one compute thread pool, so N models never oversubscribe the
 * cores; busy models take turns pass by pass (realm/threads.h).
 *
 *     realm_registry_params p;
 *     realm_registry_params_init(&p);             // budget: 3/4 of available memory
 *     p.mem_budget = 6ull << 30;
 *     realm_registry *r;
 *     realm_registry_new(&p, &r);
 *     realm_registry_add(r, "tiny", "models/stories260K.gguf", NULL);  // the operator's
 *     realm_model_ref *ref;
 *     if (realm_registry_acquire(r, "tiny", NULL, &ref) == 0) {        // loads it
 *         realm_engine *e = realm_model_ref_engine(ref);
 *         ... submit requests ...
 *         realm_registry_release(ref);            // idle: unloaded after keep-alive
 *     }
 *     realm_registry_free(r);
 *
 * Where a model comes from. realm_registry_acquire takes a name or a path:
 *   1. an existing file path wins (a GGUF file, or any part of a split model);
 *      it is registered under its file name without ".gguf" (and without
 *      "-00001-of-0000N" for a split model);
 *   2. else a name the operator registered (realm_registry_add, or
 *      realm_registry_add_loaded for a model the caller loaded itself);
 *   3. else NAME.gguf (or NAME-00001-of-0000N.gguf) in the models directory,
 *      where `realm pull` puts models with a NAME.json manifest beside them.
 *
 * Memory. Each loaded model counts its mapped weights, its engine's KV pool
 * (at the cache types, engine.type_k and type_v: a Q8_0 pool is about half
 * an F16 one, so a pool sized to the budget holds about twice the tokens)
 * and scratch (realm_engine_bytes). A cache type the model cannot take fails
 * its load with REALM_ERR_UNSUPPORTED. Loading a model that
 * does not fit unloads the least recently used idle models (no reference
 * held, not pinned); if that cannot make room the acquire fails with
 * REALM_ERR_OVERLOADED and a message giving the sizes (a server answers 503).
 * A model being loaded is loaded once: other acquires of it wait, and a
 * failed load is reported to all of them.
 *
 * Keep-alive, as Ollama users know it: when the last reference to a model is
 * released, it stays loaded for its keep-alive (the registry's default, or
 * the value the last reference set with realm_model_ref_set_keep_alive): 0
 * unloads it at once, a negative value never. Pinned models are never
 * unloaded (nor evicted).
 *
 * KV pool per model: engine.n_ctx tokens if set; else n_ctx_seq × max_seqs
 * (n_ctx_seq defaults to the model's training context, max_seqs to 16),
 * reduced to what fits in the budget beside the weights, but at least one
 * whole sequence.
 *
 * LoRA adapters (realm/lora.h) are registered by name too
 * (realm_registry_add_lora), in the same namespace as models: an adapter is
 * loaded once, for its base model, and shared by every request that names
 * it. realm_registry_acquire of an adapter's name (or
 * realm_registry_acquire_lora_id of its id) gives a reference to the base
 * model with the adapter (realm_model_ref_lora); the caller applies it to
 * its engine requests (realm_gen_options.lora). The base is the registered
 * model the adapter fits (architecture and every tensor's shape), or the one
 * the operator names; a loaded adapter holds a reference on its base, so
 * the base stays loaded (never evicted nor expired; realm_registry_unload of
 * it fails with REALM_ERR_EXISTS naming the adapters) until its adapters are
 * unloaded. The adapter's tensors count against the memory budget.
 * realm_registry_remove_lora unloads one at once for new requests (its name
 * is then unknown and may be registered again); the requests holding it
 * finish, and its memory is freed when the last one releases it.
 *
 * Ownership and threads: every function is thread-safe. A realm_model_ref
 * belongs to its caller until realm_registry_release; while held, the model
 * and engine it gives stay loaded. realm_registry_free needs every reference
 * released; it unloads everything (models added with _add_loaded are the
 * caller's and are not freed).
 */
#ifndef REALM_REGISTRY_H
#define REALM_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realm/chat.h"
#include "realm/engine.h"
#include "realm/error.h"
#include "realm/lora.h"
#include "realm/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

typedef struct realm_registry realm_registry;
typedef struct realm_model_ref realm_model_ref;

typedef struct realm_registry_params {
    const char *models_dir;     /* pulled models; NULL: $REALM_MODELS_DIR, else
                                   $XDG_CACHE_HOME/realm/models, else ~/.cache/realm/models */
    uint64_t mem_budget;        /* bytes for all loaded models; 0: 3/4 of the memory available
                                   (MemAvailable) when the registry is made */
    double keep_alive_s;        /* default keep-alive; init sets 300 (5 minutes) */
    int32_t n_threads;          /* the shared compute pool; 0: one per CPU */
    realm_engine_params engine; /* every model's engine; n_ctx, n_ctx_seq and max_seqs as
                                   described above; pool and tokenizer are the registry's */
    realm_model_params model;   /* how every model it loads is loaded (RoPE overrides ...);
                                   not models added with _add_loaded */
} realm_registry_params;

/* Defaults: everything 0 but keep_alive_s = 300. */
void realm_registry_params_init(realm_registry_params *p);

/* The default budget: 3/4 of MemAvailable (from /proc/meminfo), or of the
 * physical memory where that is unknown. */
uint64_t realm_registry_default_budget(void);

int realm_registry_new(const realm_registry_params *p, realm_registry **out);
void realm_registry_free(realm_registry *r);

/* Operator settings of one model. NULL: all defaults. */
typedef struct realm_model_config {
    const char *chat_template; /* NULL: the model's own (chatml, with a warning, when it
                                  has none; an unrecognised one fails the load) */
    bool pinned;               /* never unloaded */
    bool has_keep_alive;       /* keep_alive_s below overrides the registry's default */
    double keep_alive_s;
    const char *draft; /* a GGUF file drafting for speculative decoding (its vocabulary
                          must equal the model's): loaded with the model, counted in its
                          memory (weights, a KV pool as long as the model's, scratch), and
                          the model's requests speculate with it by default
                          (realm_engine_params.draft). NULL: none */
} realm_model_config;

/*
 * Register path under name (NULL: derived from the file name as above).
 * Nothing is loaded yet. REALM_ERR_EXISTS if the name is taken,
 * REALM_ERR_NOTFOUND if path is not a readable file, REALM_ERR_INVAL for a
 * name with characters other than [A-Za-z0-9._:-] or longer than 128 bytes.
 */
int realm_registry_add(realm_registry *r, const char *name, const char *path,
                       const realm_model_config *c);

/* Register a model the caller loaded, with its engine (both must outlive the
 * registry; never unloaded; their memory is counted). The chat template is
 * resolved now, so an unrecognised one is refused here. */
int realm_registry_add_loaded(realm_registry *r, const char *name, const realm_model *m,
                              realm_engine *e, const realm_model_config *c);

/* Per acquisition. NULL: defaults. */
typedef struct realm_acquire_opts {
    bool has_keep_alive; /* set the model's keep-alive from this request on */
    double keep_alive_s;
    bool names_only; /* registered and pulled names only, never a file path (what a
                        tenant asks for must not open arbitrary files) */
} realm_acquire_opts;

/*
 * A duration as Ollama's keep_alive takes it: "5m", "30s", "1h", "1h30m",
 * "250ms", a plain number of seconds ("300", "0.5"), "0", or a negative value
 * ("-1", "-1s": never). Sets *seconds. REALM_ERR_INVAL, naming the text, for
 * anything else.
 */
int realm_parse_duration(const char *text, double *seconds);

/*
 * A size in bytes with an optional unit: "6G", "512M", "1.5GiB", "800k",
 * "4096" (bytes); K/M/G/T (with or without "i"/"iB"/"B") are powers of 1024,
 * case-insensitive. REALM_ERR_INVAL, naming the text, for anything else or
 * for more than 2^62 bytes.
 */
int realm_parse_size(const char *text, uint64_t *bytes);

/*
 * A reference to the model name_or_path[0..len) (see "Where a model comes
 * from"), loading it if needed. Errors: REALM_ERR_NOTFOUND (no such model; the
 * message lists the registered names), REALM_ERR_OVERLOADED (it does not fit
 * the budget beside the models in use), the load's own error (a malformed
 * file, an unrecognised chat template ...). On failure *out is NULL.
 */
int realm_registry_acquire(realm_registry *r, const char *name_or_path, size_t len,
                           const realm_acquire_opts *o, realm_model_ref **out);
/* Give the reference back. NULL is a no-op. */
void realm_registry_release(realm_model_ref *ref);

/* The name acquired: the model's, or the adapter's for a reference to an adapter. */
const char *realm_model_ref_name(const realm_model_ref *ref);
/* The model's name (an adapter's base). */
const char *realm_model_ref_base_name(const realm_model_ref *ref);
/* The adapter of a reference acquired by an adapter's name or id, else NULL.
 * Valid while the reference is held (and while engine requests given it run:
 * release the reference only after they ended). */
const realm_lora *realm_model_ref_lora(const realm_model_ref *ref);
const realm_model *realm_model_ref_model(const realm_model_ref *ref);
realm_engine *realm_model_ref_engine(const realm_model_ref *ref);
realm_chat_template realm_model_ref_chat_template(const realm_model_ref *ref);
/* The keep-alive the model gets when this is the last reference released. */
void realm_model_ref_set_keep_alive(realm_model_ref *ref, double keep_alive_s);

/* A tenant's scheduling limits (realm_engine_set_tenant) for every model's
 * engine, loaded now or later. REALM_ERR_INVAL for bad limits. */
int realm_registry_set_tenant(realm_registry *r, uint32_t tenant, const realm_tenant_limits *l);

/* Pin (never unload) or unpin a registered model. REALM_ERR_NOTFOUND. */
int realm_registry_pin(realm_registry *r, const char *name, bool pinned);
/* Unload a model now if no reference is held (REALM_ERR_EXISTS if one is;
 * REALM_ERR_NOTFOUND). A pinned model is unpinned first. */
int realm_registry_unload(realm_registry *r, const char *name);

typedef struct realm_model_status {
    char name[129];
    char path[4096];
    bool loaded, loading, pinned, external; /* external: added with _add_loaded */
    bool pulled;                            /* found in the models directory */
    int32_t refs;
    uint64_t file_bytes; /* on disk (all parts) */
    uint64_t mem_bytes;  /* counted against the budget while loaded */
    double idle_s;       /* since the last reference was released (loaded, no refs) */
    double expires_in_s; /* keep-alive left; < 0: never (pinned or keep-alive < 0) */
} realm_model_status;

/* Every registered model and every model in the models directory, sorted by
 * name, as a malloc'ed array (*n entries; free() it). */
int realm_registry_list(realm_registry *r, realm_model_status **out, int32_t *n);

/* Call fn for every loaded model with its engine's statistics and the bytes
 * it counts (under the registry's lock: fn must not call the registry). */
void realm_registry_foreach_loaded(realm_registry *r,
                                   void (*fn)(void *ud, const char *name,
                                              const realm_engine_stats *st, uint64_t mem_bytes),
                                   void *ud);

/*
 * Load the LoRA adapter at path (realm_lora_load's checks: an untrusted
 * file) under name, for the model base (a registered model's name), or, when
 * base is NULL, for the one registered model it fits: each registered model
 * is checked, on its loaded model or its file mapped for the check. The base
 * is loaded (if it was not) and held. Errors: REALM_ERR_INVAL for a bad name
 * or when several models fit ("name its base"), REALM_ERR_EXISTS for a name
 * taken by a model or an adapter, REALM_ERR_NOTFOUND for a missing file or
 * base, realm_lora_load's errors (REALM_ERR_FORMAT, _UNSUPPORTED, _IO) for a
 * file that is not an adapter of the base or fits no registered model,
 * REALM_ERR_OVERLOADED when it does not fit the budget. Each message names
 * the adapter, and the file or tensor at fault.
 */
int realm_registry_add_lora(realm_registry *r, const char *name, const char *path,
                            const char *base);

/* Unload the adapter name: new acquisitions fail at once (REALM_ERR_NOTFOUND);
 * the references held go on working and the last release frees it (*in_use,
 * if not NULL: how many there were). REALM_ERR_NOTFOUND for no such adapter. */
int realm_registry_remove_lora(realm_registry *r, const char *name, int32_t *in_use);

/* A reference to the adapter numbered id (realm_lora_status.id), as
 * realm_registry_acquire of its name gives. REALM_ERR_NOTFOUND. */
int realm_registry_acquire_lora_id(realm_registry *r, int64_t id, realm_model_ref **out);

typedef struct realm_lora_status {
    char name[129];
    char base[129];  /* the base model's name */
    char path[4096]; /* the file it was read from */
    int64_t id;      /* numbered from 0 in the order loaded; never reused */
    int32_t refs;    /* requests using it now */
    bool unloading;  /* unloaded while in use: freed when refs reaches 0 */
    uint64_t mem_bytes;
    int32_t rank, n_weights;
    float alpha;
    uint64_t requests; /* acquisitions so far */
} realm_lora_status;

/* Every adapter, loaded or still in use after its unload, in the order
 * loaded, as a malloc'ed array (*n entries; free() it). */
int realm_registry_list_lora(realm_registry *r, realm_lora_status **out, int32_t *n);

/* The budget, and the bytes the loaded models and adapters count now. */
uint64_t realm_registry_budget(const realm_registry *r);
uint64_t realm_registry_used(realm_registry *r);
/* The directory pulled models are looked up in. */
const char *realm_registry_models_dir(const realm_registry *r);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
