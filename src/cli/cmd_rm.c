/*
 * realm rm — delete pulled models from the models directory: NAME.gguf (or
 * every part NAME-0000i-of-0000N.gguf of a split model) and the manifest
 * NAME.json. Only names are taken, never paths, and only files directly in
 * the models directory are removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define CMD "rm"

/* True if file is one of model name's files: NAME.gguf, NAME.json or
 * NAME-NNNNN-of-MMMMM.gguf. */
static bool is_model_file(const char *file, const char *name)
{
    const size_t n = strlen(name);
    if (strncmp(file, name, n) != 0)
        return false;
    const char *rest = file + n;
    if (!strcmp(rest, ".gguf") || !strcmp(rest, ".json"))
        return true;
    static const char tail[] = "-00000-of-00000.gguf";
    if (strlen(rest) != sizeof tail - 1)
        return false;
    for (size_t i = 0; i < sizeof tail - 1; i++)
        if (tail[i] == '0' ? !(rest[i] >= '0' && rest[i] <= '9') : rest[i] != tail[i])
            return false;
    return true;
}

/* Delete name's files from dir; the exit status. */
static int remove_model(const char *dir, const char *name)
{
    const char *problem = cli_model_name_problem(name);
    if (problem != NULL)
        return cli_error(CMD,
                         "'%s' is not a model name: %s (realm rm deletes pulled models by name "
                         "from the models directory, never other files)",
                         name, problem);
    DIR *d = opendir(dir);
    if (d == NULL)
        return cli_error(CMD, "no model '%s': cannot read the models directory %s: %s", name, dir,
                         strerror(errno));
    /* Collect first, then delete: unlinking while reading a directory may skip entries. */
    char files[64][256];
    int n = 0;
    bool any_gguf = false, too_many = false;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_model_file(de->d_name, name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode))
            continue;
        if (n == 64) {
            too_many = true;
            break;
        }
        snprintf(files[n++], sizeof files[0], "%s", de->d_name);
        any_gguf = any_gguf || strcmp(de->d_name + strlen(de->d_name) - 5, ".gguf") == 0;
    }
    int rc = 0;
    if (too_many)
        rc = cli_error(CMD, "'%s' has more than 64 files in %s; nothing deleted", name, dir);
    else if (!any_gguf)
        rc = cli_error(CMD, "no model '%s' in %s (see 'realm models')", name, dir);
    uint64_t bytes = 0;
    int deleted = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        struct stat st;
        if (fstatat(dirfd(d), files[i], &st, AT_SYMLINK_NOFOLLOW) == 0)
            bytes += (uint64_t)st.st_size;
        if (unlinkat(dirfd(d), files[i], 0) != 0)
            rc = cli_error(CMD, "cannot delete %s/%s: %s", dir, files[i], strerror(errno));
        else
            deleted++;
    }
    closedir(d);
    if (deleted > 0) {
        char b[32];
        printf("deleted '%s' (%d file%s, %s)\n", name, deleted, deleted == 1 ? "" : "s",
               cli_format_bytes(bytes, b, sizeof b));
    }
    return rc;
}

static int run_rm(int argc, char **argv)
{
    const char *dir_opt = NULL;
    int n_names = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models-dir")) {
            if (i + 1 == argc)
                return cli_error(CMD, "option --models-dir needs a value");
            dir_opt = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cli_error(CMD, "unknown option '%s' (see 'realm help rm')", argv[i]);
        } else {
            n_names++;
        }
    }
    if (n_names == 0)
        return cli_error(CMD, "missing NAME (see 'realm models')");
    char dir[4096];
    if (!cli_models_dir(CMD, dir_opt, dir, sizeof dir))
        return 1;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models-dir"))
            i++;
        else if (remove_model(dir, argv[i]) != 0)
            rc = 1;
    }
    return rc;
}

const cli_command cli_cmd_rm = {
    "rm",
    run_rm,
    "delete pulled models from the models directory",
    "usage: realm rm NAME... [--models-dir DIR]\n"
    "\n"
    "Deletes NAME.gguf (every part NAME-0000i-of-0000N.gguf of a split model) and its\n"
    "manifest NAME.json from the models directory. NAME is a name as 'realm models'\n"
    "lists it ([A-Za-z0-9._-]), never a path; a name with no model file there is an\n"
    "error.\n"
    "\n"
    "  --models-dir DIR  the models directory (see 'realm help models')\n",
};
