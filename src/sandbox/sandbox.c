/*
 * The sandbox: where modules are cached and built (used by module.c), and
 * the registry its modules open models from.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error_internal.h"
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
    pthread_mutex_init(&sb->build_lock, NULL);
    if (!sb->cache_dir || !sb->cc) {
        realm_sandbox_free(sb);
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    }
    if (p && p->registry) {
        sb->reg = p->registry;
    } else {
        int rc = realm_registry_new(NULL, &sb->reg);
        if (rc < 0) {
            realm_sandbox_free(sb);
            return rc;
        }
        sb->own_reg = true;
    }
    *out = sb;
    return 0;
}

void realm_sandbox_free(realm_sandbox *sb)
{
    if (!sb)
        return;
    if (sb->own_reg)
        realm_registry_free(sb->reg);
    free(sb->cache_dir);
    free(sb->cc);
    pthread_mutex_destroy(&sb->build_lock);
    free(sb);
}

int realm_sandbox_add_model(realm_sandbox *sb, const char *name, const realm_model *model,
                            realm_engine *engine, const char *chat_template)
{
    return realm_registry_add_loaded(sb->reg, name, model, engine,
                                     &(realm_model_config){.chat_template = chat_template});
}

realm_registry *realm_sandbox_registry(const realm_sandbox *sb)
{
    return sb->reg;
}
