/*
 * The models directory and model names, shared by the commands that fill it
 * (pull) and read it. A pulled model is DIR/NAME.gguf (or the parts
 * DIR/NAME-00001-of-0000N.gguf ...) with its manifest DIR/NAME.json.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

bool cli_models_dir(const char *cmd, const char *opt, char *buf, int cap)
{
    const char *dir = opt != NULL ? opt : env_nonempty("REALM_MODELS_DIR");
    const char *xdg = env_nonempty("XDG_CACHE_HOME");
    int n;
    if (dir != NULL) {
        if (dir[0] == '\0') {
            cli_error(cmd, "the models directory is an empty path");
            return false;
        }
        n = snprintf(buf, (size_t)cap, "%s", dir);
    } else if (xdg != NULL && xdg[0] == '/') { /* relative values are invalid: ignored */
        n = snprintf(buf, (size_t)cap, "%s/realm/models", xdg);
    } else {
        const char *home = env_nonempty("HOME");
        if (home == NULL) {
            const struct passwd *pw = getpwuid(getuid());
            home = pw != NULL && pw->pw_dir != NULL && pw->pw_dir[0] != '\0' ? pw->pw_dir : NULL;
        }
        if (home == NULL) {
            cli_error(cmd, "cannot find the home directory for the models directory: set "
                           "REALM_MODELS_DIR or pass --models-dir");
            return false;
        }
        n = snprintf(buf, (size_t)cap, "%s/.cache/realm/models", home);
    }
    if (n < 0 || n >= cap) {
        cli_error(cmd, "the models directory's path is too long");
        return false;
    }
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    return true;
}

bool cli_models_dir_create(const char *cmd, const char *dir)
{
    char path[4096];
    size_t len = strlen(dir);
    if (len >= sizeof path) {
        cli_error(cmd, "the models directory's path is too long");
        return false;
    }
    memcpy(path, dir, len + 1);
    /* mkdir -p: each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            cli_error(cmd, "cannot create the models directory %s: %s", path, strerror(errno));
            return false;
        }
        path[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cli_error(cmd, "the models directory %s is not a directory", dir);
        return false;
    }
    return true;
}

const char *cli_model_name_problem(const char *name)
{
    size_t n = strlen(name);
    if (n == 0)
        return "it is empty";
    if (n > CLI_MODEL_NAME_MAX)
        return "it is longer than 128 bytes";
    if (name[0] == '.')
        return "it starts with '.'";
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return "a name may only contain letters, digits, '.', '_' and '-'";
    }
    return NULL;
}
