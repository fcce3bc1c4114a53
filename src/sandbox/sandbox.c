/*
 * The sandbox: where modules are cached and built (used by module.c), and
 * the models the operator registered, each with its chat template.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error_internal.h"
#include "core/log_internal.h"
#include "realm/gguf.h"
#include "sandbox_internal.h"

int realm_sandbox_new(const realm_sandbox_params *p, realm_sandbox **out)
{
    *out = NULL;
    char dir[PATH_MAX];
    const char *env;
    if (p && p->cache_dir)
        snprintf(dir, sizeof dir, "%s", p->cache_dir);
    else if ((env = getenv("REALM_MODULE_CACHE")) && *env)
        snprintf(dir, sizeof dir, "%s", env);
    else if ((env = getenv("XDG_CACHE_HOME")) && *env)
        snprintf(dir, sizeof dir, "%s/realm/modules", env);
    else if ((env = getenv("HOME")) && *env)
        snprintf(dir, sizeof dir, "%s/.cache/realm/modules", env);
    else
        snprintf(dir, sizeof dir, "/tmp/realm-modules-%d", (int)geteuid()); /* checked */
    const char *cc = p && p->cc ? p->cc : getenv("REALM_CC");
    if (!cc || !*cc)
        cc = "cc";
    realm_sandbox *sb = calloc(1, sizeof *sb);
    if (!sb)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    sb->cache_dir = strdup(dir);
    sb->cache_in_tmp = !(p && p->cache_dir) && strncmp(dir, "/tmp/", 5) == 0;
    sb->cc = strdup(cc);
    pthread_mutex_init(&sb->lock, NULL);
    pthread_mutex_init(&sb->build_lock, NULL);
    if (!sb->cache_dir || !sb->cc) {
        realm_sandbox_free(sb);
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    }
    *out = sb;
    return 0;
}

void realm_sandbox_free(realm_sandbox *sb)
{
    if (!sb)
        return;
    for (int32_t i = 0; i < sb->n_models; i++)
        free(sb->models[i].name);
    free(sb->models);
    free(sb->cache_dir);
    free(sb->cc);
    pthread_mutex_destroy(&sb->lock);
    pthread_mutex_destroy(&sb->build_lock);
    free(sb);
}

/*
 * The chat template of a model being registered: the operator's name if
 * given; else the one its tokenizer.chat_template is recognised as; a model
 * without one gets ChatML, as llama-server does, with one warning. A
 * template that is present but not recognised is an error naming the known
 * ones (the operator can name one).
 */
static int resolve_template(const char *name, const realm_model *model, const char *override,
                            realm_chat_template *out)
{
    if (override != NULL && *override != '\0')
        return realm_chat_template_from_name(override, out);
    const realm_gguf *g = realm_model_gguf(model);
    realm_gguf_str s;
    int rc = realm_gguf_get_str(g, "tokenizer.chat_template", &s);
    if (rc == REALM_ERR_NOTFOUND || (rc == REALM_OK && s.len == 0)) {
        realm__log(REALM_LOG_WARN,
                   "model '%s' has no chat template (tokenizer.chat_template); chat requests "
                   "use chatml (name another with --chat-template %s=NAME)",
                   name, name);
        *out = REALM_CHAT_TEMPLATE_CHATML;
        return REALM_OK;
    }
    rc = realm_chat_template_for_model(g, NULL, out);
    if (rc < 0) {
        char detail[600];
        snprintf(detail, sizeof detail, "%s", realm_last_error());
        return realm__error(rc, "model '%s': %s (or name one with --chat-template %s=NAME)", name,
                            detail, name);
    }
    return REALM_OK;
}

int realm_sandbox_add_model(realm_sandbox *sb, const char *name, const realm_model *model,
                            realm_engine *engine, const char *chat_template)
{
    if (!name || !*name || !engine || !model)
        return realm__error(REALM_ERR_INVAL, "sandbox: model name and engine required");
    realm_chat_template tmpl;
    int rc = resolve_template(name, model, chat_template, &tmpl);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sb->lock);
    for (int32_t i = 0; i < sb->n_models; i++)
        if (strcmp(sb->models[i].name, name) == 0)
            rc = realm__error(REALM_ERR_EXISTS, "sandbox: model '%s' already registered", name);
    if (rc == 0) {
        realm__sb_model *m = realloc(sb->models, (size_t)(sb->n_models + 1) * sizeof *m);
        char *n = strdup(name);
        if (!m || !n) {
            free(n);
            if (m)
                sb->models = m;
            rc = realm__error(REALM_ERR_NOMEM, "out of memory");
        } else {
            sb->models = m;
            m[sb->n_models] =
                (realm__sb_model){.name = n, .model = model, .engine = engine, .tmpl = tmpl};
            sb->n_models++;
        }
    }
    pthread_mutex_unlock(&sb->lock);
    return rc;
}

int realm__sandbox_find_model(realm_sandbox *sb, const char *name, size_t len, realm__sb_model *out)
{
    int rc = REALM_ERR_NOTFOUND;
    pthread_mutex_lock(&sb->lock);
    for (int32_t i = 0; i < sb->n_models; i++)
        if (strlen(sb->models[i].name) == len && memcmp(sb->models[i].name, name, len) == 0) {
            *out = sb->models[i];
            rc = 0;
        }
    pthread_mutex_unlock(&sb->lock);
    return rc;
}
