/*
 * Module pipeline: check a .wasm image, translate it with wasm2c, compile it
 * into the module cache, dlopen it.
 *
 * Cache layout: <cache_dir>/<key>/module.so where key is the hex SHA-256 of
 * the wasm bytes followed by "realm-sandbox-abi-<N>". The cache root must
 * belong to the effective user and be writable by nobody else (the host
 * dlopens what it finds there); directories are created 0700. An entry is
 * built in a private temporary directory (mkdtemp) and renamed into place, so
 * readers never see a half-written one. When another process installed the
 * entry first, its entry is used if it loads; an entry that fails to load or
 * reports another ABI or key is moved aside under a unique name, deleted, and
 * replaced.
 */

#define MAX_TABLES     16     /* tables per module */
#define MAX_LOCALS     50000u /* locals (parameters included) per function */
#define MAX_FUNC_ARITY 1000u  /* parameters, and results, of a function type */
#define TOOL_TIMEOUT_S 120    /* wasm-validate, wasm2c, cc: killed after this */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/clock_internal.h"
#include "core/error_internal.h"
#include "host_internal.h"
#include "sandbox_internal.h"

extern const unsigned char realm__wasm_rt_h[]; /* src/sandbox/wasm-rt.h, embedded by CMake */

struct realm_module {
    realm_sandbox *sb;
    char key[65];
    realm__guest_so so;
};

/* ---- the module cache --------------------------------------------------- */

static char *xstrdup(const char *s)
{
    char *p = malloc(strlen(s) + 1);
    if (p)
        strcpy(p, s);
    return p;
}

/* mkdir -p; what it creates is private to the user (0700). */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return realm__error(REALM_ERR_RANGE, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return realm__error(REALM_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return realm__error(REALM_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
    return 0;
}

/* The cache root must be a directory of the effective user that no one else
 * can write: anything planted in it would be dlopened. */
static int check_cache_root(const char *dir, bool in_shared_tmp)
{
    struct stat st;
    /* in a directory anyone can write, a symbolic link planted under our
     * name could redirect the cache: not followed there */
    if (in_shared_tmp && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
        return realm__error(REALM_ERR_DENIED,
                            "module cache %s is a symbolic link in a shared directory: "
                            "refusing to use it",
                            dir);
    if (stat(dir, &st) != 0)
        return realm__error(REALM_ERR_IO, "module cache %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return realm__error(REALM_ERR_DENIED, "module cache %s is not a directory", dir);
    if (st.st_uid != geteuid())
        return realm__error(REALM_ERR_DENIED,
                            "module cache %s is owned by uid %u, not by this user (uid %u): "
                            "refusing to load code from it",
                            dir, (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return realm__error(REALM_ERR_DENIED,
                            "module cache %s is writable by group or others (mode %04o): "
                            "refusing to load code from it",
                            dir, (unsigned)(st.st_mode & 07777));
    return 0;
}

/* ---- reading the binary ------------------------------------------------- */

typedef struct rd {
    const uint8_t *p, *end;
    int bad;
} rd;

static uint32_t rd_u32(rd *r)
{
    uint32_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (r->p >= r->end) {
            r->bad = 1;
            return 0;
        }
        uint8_t b = *r->p++;
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->bad = 1;
    return 0;
}

static uint8_t rd_byte(rd *r)
{
    if (r->p >= r->end) {
        r->bad = 1;
        return 0;
    }
    return *r->p++;
}

/* A name: returns a pointer into the image and its length. */
static const uint8_t *rd_name(rd *r, uint32_t *len)
{
    *len = rd_u32(r);
    if (r->bad || *len > (size_t)(r->end - r->p)) {
        r->bad = 1;
        *len = 0;
        return r->p;
    }
    const uint8_t *s = r->p;
    r->p += *len;
    return s;
}

static void rd_limits(rd *r)
{
    uint8_t flags = rd_byte(r);
    rd_u32(r);
    if (flags & 1)
        rd_u32(r);
}

typedef struct functype {
    uint32_t n_params, n_results;
    int all_i32; /* every parameter and result is i32 */
} functype;

typedef struct wasm_desc {
    functype *types;
    uint32_t n_types;
    uint32_t *func_type; /* type of each function, imports first */
    uint32_t n_funcs, n_func_imports;
    realm_module_info info;
    uint32_t handle_type; /* type index of export "handle", or UINT32_MAX */
    int has_handle, has_memory;
} wasm_desc;

static void desc_free(wasm_desc *d)
{
    free(d->types);
    free(d->func_type);
    realm_module_info_free(&d->info);
}

static const char *const kind_names[] = {"func", "table", "memory", "global", "tag"};

static int host_index(const uint8_t *name, uint32_t len)
{
    for (int i = 0; i < REALM__HOST_FN_COUNT; i++)
        if (strlen(realm__host_fns[i].name) == len &&
            memcmp(realm__host_fns[i].name, name, len) == 0)
            return i;
    return -1;
}

static int push_str(char ***list, uint32_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int push_str(char ***list, uint32_t *n, const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **l = realloc(*list, (*n + 1) * sizeof *l);
    if (!l)
        return REALM_ERR_NOMEM;
    *list = l;
    if (!(l[*n] = xstrdup(buf)))
        return REALM_ERR_NOMEM;
    (*n)++;
    return 0;
}

/* Printable form of a name from the binary (bounded, control bytes escaped). */
static void show(char *out, size_t cap, const uint8_t *s, uint32_t len)
{
    size_t o = 0;
    for (uint32_t i = 0; i < len && o + 5 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, s[i] >= 0x20 && s[i] < 0x7f ? "%c" : "\\x%02x",
                              s[i]);
    out[o] = '\0';
}

/*
 * Walk the sections the rules need (types, imports, functions, exports) and
 * apply the rules: imports only of `realm` host functions with their ABI
 * signature; exports `handle: () -> i32` and `memory`. The image has passed
 * wasm-validate, but every read is bounds-checked anyway.
 */
static int parse_and_check(const uint8_t *w, size_t n, wasm_desc *d)
{
    memset(d, 0, sizeof *d);
    if (n < 8 || memcmp(w, "\0asm\1\0\0\0", 8) != 0)
        return realm__error(REALM_ERR_FORMAT, "not a WebAssembly binary (bad magic or version)");
    rd r = {w + 8, w + n, 0};
    int rc = 0;
    uint32_t seen = 0;
    while (r.p < r.end && rc == 0) {
        uint8_t id = rd_byte(&r);
        uint32_t size = rd_u32(&r);
        if (r.bad || size > (size_t)(r.end - r.p))
            return realm__error(REALM_ERR_FORMAT, "truncated section %u", id);
        rd s = {r.p, r.p + size, 0};
        r.p += size;
        if (id >= 1 && id <= 11) { /* known sections appear at most once */
            if (seen & (1u << id))
                return realm__error(REALM_ERR_FORMAT, "duplicate section %u", id);
            seen |= 1u << id;
        }
        if (id == 1) {
            uint32_t cnt = rd_u32(&s);
            if (s.bad || cnt > size)
                return realm__error(REALM_ERR_FORMAT, "bad type section");
            d->types = calloc(cnt ? cnt : 1, sizeof *d->types);
            if (!d->types)
                return realm__error(REALM_ERR_NOMEM, "out of memory");
            d->n_types = cnt;
            for (uint32_t i = 0; i < cnt && !s.bad; i++) {
                functype *t = &d->types[i];
                t->all_i32 = rd_byte(&s) == 0x60;
                t->n_params = rd_u32(&s);
                for (uint32_t k = 0; k < t->n_params && !s.bad; k++)
                    t->all_i32 &= rd_byte(&s) == 0x7f;
                t->n_results = rd_u32(&s);
                for (uint32_t k = 0; k < t->n_results && !s.bad; k++)
                    t->all_i32 &= rd_byte(&s) == 0x7f;
                if (!s.bad && (t->n_params > MAX_FUNC_ARITY || t->n_results > MAX_FUNC_ARITY))
                    return realm__error(REALM_ERR_DENIED,
                                        "function type %u has %u parameters and %u results; the "
                                        "sandbox allows at most %u of each",
                                        i, t->n_params, t->n_results, MAX_FUNC_ARITY);
            }
        } else if (id == 2) {
            uint32_t cnt = rd_u32(&s);
            for (uint32_t i = 0; i < cnt && !s.bad && rc == 0; i++) {
                uint32_t ml, fl;
                const uint8_t *mod = rd_name(&s, &ml), *fld = rd_name(&s, &fl);
                uint8_t kind = rd_byte(&s);
                uint32_t type = UINT32_MAX;
                if (kind == 0)
                    type = rd_u32(&s);
                else if (kind == 1) {
                    rd_byte(&s);
                    rd_limits(&s);
                } else if (kind == 2)
                    rd_limits(&s);
                else if (kind == 3) {
                    rd_byte(&s);
                    rd_byte(&s);
                } else
                    s.bad = 1;
                if (s.bad)
                    break;
                char sm[128], sf[128];
                show(sm, sizeof sm, mod, ml);
                show(sf, sizeof sf, fld, fl);
                if (push_str(&d->info.imports, &d->info.n_imports, "%s.%s (%s)", sm, sf,
                             kind_names[kind]) < 0)
                    return realm__error(REALM_ERR_NOMEM, "out of memory");
                if (!(ml == 5 && memcmp(mod, "realm", 5) == 0)) {
                    if (ml >= 4 && memcmp(mod, "wasi", 4) == 0)
                        rc = realm__error(REALM_ERR_DENIED,
                                          "module imports WASI function %s.%s: WASI is not "
                                          "available in the Realm sandbox (build with -nostdlib "
                                          "and the guest SDK)",
                                          sm, sf);
                    else
                        rc = realm__error(REALM_ERR_DENIED,
                                          "module imports %s.%s, which is not a Realm host "
                                          "function (only module 'realm' may be imported)",
                                          sm, sf);
                    break;
                }
                if (kind != 0) {
                    rc = realm__error(REALM_ERR_DENIED,
                                      "module imports a %s (realm.%s): only host functions may "
                                      "be imported",
                                      kind_names[kind], sf);
                    break;
                }
                int h = host_index(fld, fl);
                if (h < 0) {
                    rc = realm__error(REALM_ERR_DENIED,
                                      "module imports realm.%s, which is not a Realm host "
                                      "function (docs/host-abi.md)",
                                      sf);
                    break;
                }
                if (type >= d->n_types || !d->types[type].all_i32 ||
                    d->types[type].n_params != realm__host_fns[h].n_params ||
                    d->types[type].n_results != 1) {
                    rc = realm__error(REALM_ERR_DENIED,
                                      "module imports realm.%s with the wrong signature "
                                      "(expected %u i32 parameters and an i32 result)",
                                      sf, realm__host_fns[h].n_params);
                    break;
                }
                uint32_t *ft = realloc(d->func_type, (d->n_funcs + 1) * sizeof *ft);
                if (!ft)
                    return realm__error(REALM_ERR_NOMEM, "out of memory");
                d->func_type = ft;
                ft[d->n_funcs++] = type;
                d->n_func_imports++;
            }
        } else if (id == 3) {
            uint32_t cnt = rd_u32(&s);
            if (s.bad || cnt > size)
                return realm__error(REALM_ERR_FORMAT, "bad function section");
            uint32_t *ft = realloc(d->func_type, (d->n_funcs + cnt + 1) * sizeof *ft);
            if (!ft)
                return realm__error(REALM_ERR_NOMEM, "out of memory");
            d->func_type = ft;
            for (uint32_t i = 0; i < cnt && !s.bad; i++)
                ft[d->n_funcs++] = rd_u32(&s);
        } else if (id == 4) {
            uint32_t cnt = rd_u32(&s);
            if (!s.bad && cnt > MAX_TABLES)
                return realm__error(REALM_ERR_DENIED,
                                    "module declares %u tables; the sandbox allows at most %d", cnt,
                                    MAX_TABLES);
            s.p = s.end; /* the entries themselves are not needed */
        } else if (id == 10) {
            /* Each body starts with its locals, run-length coded. A function
             * with very many would have a huge C stack frame. */
            uint32_t cnt = rd_u32(&s);
            for (uint32_t i = 0; i < cnt && !s.bad; i++) {
                uint32_t body = rd_u32(&s);
                if (s.bad || body > (size_t)(s.end - s.p)) {
                    s.bad = 1;
                    break;
                }
                rd b = {s.p, s.p + body, 0};
                s.p += body;
                uint32_t fn = d->n_func_imports + i, ty;
                uint64_t n_locals = 0;
                if (fn < d->n_funcs && (ty = d->func_type[fn]) < d->n_types)
                    n_locals = d->types[ty].n_params;
                uint32_t groups = rd_u32(&b);
                for (uint32_t k = 0; k < groups && !b.bad && n_locals <= MAX_LOCALS; k++) {
                    n_locals += rd_u32(&b);
                    rd_byte(&b);
                }
                if (b.bad)
                    s.bad = 1;
                else if (n_locals > MAX_LOCALS)
                    return realm__error(REALM_ERR_DENIED,
                                        "function %u has more than %u locals (parameters "
                                        "included); the sandbox allows at most %u per function",
                                        fn, MAX_LOCALS, MAX_LOCALS);
            }
        } else if (id == 7) {
            uint32_t cnt = rd_u32(&s);
            for (uint32_t i = 0; i < cnt && !s.bad; i++) {
                uint32_t nl;
                const uint8_t *name = rd_name(&s, &nl);
                uint8_t kind = rd_byte(&s);
                uint32_t idx = rd_u32(&s);
                if (s.bad || kind > 4)
                    break;
                char sn[128];
                show(sn, sizeof sn, name, nl);
                if (push_str(&d->info.exports, &d->info.n_exports, "%s (%s)", sn,
                             kind_names[kind]) < 0)
                    return realm__error(REALM_ERR_NOMEM, "out of memory");
                if (nl == 6 && memcmp(name, "handle", 6) == 0 && kind == 0) {
                    d->has_handle = 1;
                    d->handle_type = idx < d->n_funcs ? d->func_type[idx] : UINT32_MAX;
                }
                if (nl == 6 && memcmp(name, "memory", 6) == 0 && kind == 2)
                    d->has_memory = 1;
            }
        }
        if (s.bad)
            return realm__error(REALM_ERR_FORMAT, "malformed section %u", id);
    }
    if (rc < 0)
        return rc;
    if (r.bad)
        return realm__error(REALM_ERR_FORMAT, "malformed module");
    if (!d->has_handle)
        return realm__error(REALM_ERR_INVAL, "module does not export a function 'handle'");
    if (d->handle_type >= d->n_types || !d->types[d->handle_type].all_i32 ||
        d->types[d->handle_type].n_params != 0 || d->types[d->handle_type].n_results != 1)
        return realm__error(REALM_ERR_INVAL, "export 'handle' must have type () -> i32");
    if (!d->has_memory)
        return realm__error(REALM_ERR_INVAL, "module does not export its memory as 'memory'");
    return 0;
}

int realm__module_rules(const void *wasm, size_t len, realm_module_info *info)
{
    wasm_desc d;
    int rc = parse_and_check(wasm, len, &d);
    if (rc == 0 && info) {
        *info = d.info;
        memset(&d.info, 0, sizeof d.info);
    }
    desc_free(&d);
    return rc;
}

void realm_module_info_free(realm_module_info *info)
{
    if (!info)
        return;
    for (uint32_t i = 0; i < info->n_imports; i++)
        free(info->imports[i]);
    for (uint32_t i = 0; i < info->n_exports; i++)
        free(info->exports[i]);
    free(info->imports);
    free(info->exports);
    memset(info, 0, sizeof *info);
}

/* ---- running the tools -------------------------------------------------- */

/*
 * Run argv (searched in PATH) with stdin on /dev/null and no other file
 * descriptor of the server; its stdout and stderr go to out (NUL-terminated,
 * truncated to cap). The tool and its children form a process group, killed
 * after TOOL_TIMEOUT_S seconds. Returns the exit status, or -1 if it could
 * not be run, died of a signal or timed out (out then says so).
 */
static int run_tool(char *const argv[], char *out, size_t cap)
{
    int pfd[2];
    out[0] = '\0';
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        closefrom(3);
        execvp(argv[0], argv);
        dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, 0); /* also here: no window in which a kill misses the group */
    close(pfd[1]);
    const double t0 = realm__now();
    size_t len = 0;
    int timed_out = 0;
    char tmp[4096];
    for (;;) {
        long left_ms = (long)((TOOL_TIMEOUT_S - (realm__now() - t0)) * 1000.0);
        if (left_ms <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pl = {.fd = pfd[0], .events = POLLIN};
        int pr = poll(&pl, 1, (int)(left_ms < 1000 ? left_ms : 1000));
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        ssize_t k = read(pfd[0], tmp, sizeof tmp);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break; /* end of output (or a read error): the tool is done with it */
        size_t take = (size_t)k < cap - 1 - len ? (size_t)k : cap - 1 - len;
        memcpy(out + len, tmp, take);
        len += take;
    }
    out[len] = '\0';
    close(pfd[0]);
    int st;
    pid_t w;
    /* The output has ended; the tool gets the rest of its time to exit. */
    while (!timed_out && (w = waitpid(pid, &st, WNOHANG)) == 0) {
        if (realm__now() - t0 >= TOOL_TIMEOUT_S)
            timed_out = 1;
        else
            nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    if (timed_out) {
        kill(-pid, SIGKILL);
        snprintf(out, cap, "%s timed out after %d s and was killed", argv[0], TOOL_TIMEOUT_S);
    } else if (w == pid) {
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (timed_out)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int pathf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* snprintf for paths: REALM_ERR_RANGE instead of a truncated path. */
static int pathf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return realm__error(REALM_ERR_RANGE, "path too long: %s...", out);
    return 0;
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return realm__error(REALM_ERR_IO, "%s: %s", path, strerror(errno));
    size_t w = fwrite(data, 1, len, f);
    if (fclose(f) != 0 || w != len)
        return realm__error(REALM_ERR_IO, "%s: write failed", path);
    return 0;
}

/* rm -r of a cache entry or a temporary directory. Symbolic links are
 * removed, never followed; nesting deeper than a few levels is not ours and
 * is left alone (the rmdir then fails). */
static void remove_tree_at(const char *dir, int depth)
{
    DIR *dp = opendir(dir);
    if (dp) {
        struct dirent *e;
        char p[PATH_MAX];
        struct stat st;
        while ((e = readdir(dp)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                pathf(p, sizeof p, "%s/%s", dir, e->d_name) == 0) {
                if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
                    if (depth < 8)
                        remove_tree_at(p, depth + 1);
                } else {
                    unlink(p);
                }
            }
        closedir(dp);
    }
    rmdir(dir);
}

static void remove_dir(const char *dir)
{
    remove_tree_at(dir, 0);
}

/* wasm-validate on the image (written to a file in dir). */
static int validate(const char *wasm_path)
{
    char out[2048];
    char *argv[] = {"wasm-validate", (char *)wasm_path, NULL};
    int st = run_tool(argv, out, sizeof out);
    if (st == 0)
        return 0;
    if (st == 127 || st < 0)
        return realm__error(REALM_ERR_UNSUPPORTED, "cannot run wasm-validate (install wabt): %s",
                            out);
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    /* Drop the temporary path from wabt's "path:offset: error: ..." lines. */
    const char *msg = strstr(out, "error:");
    return realm__error(REALM_ERR_FORMAT, "invalid WebAssembly module: %s", msg ? msg : out);
}

static int tmp_image(const void *wasm, size_t len, char *path, size_t cap)
{
    const char *t = getenv("TMPDIR");
    snprintf(path, cap, "%s/realm-wasm-XXXXXX", t && *t ? t : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return realm__error(REALM_ERR_IO, "mkstemp: %s", strerror(errno));
    const uint8_t *p = wasm;
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(fd, p + off, len - off);
        if (k <= 0) {
            close(fd);
            unlink(path);
            return realm__error(REALM_ERR_IO, "write %s: %s", path, strerror(errno));
        }
        off += (size_t)k;
    }
    close(fd);
    return 0;
}

int realm_module_check(const void *wasm, size_t len, realm_module_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    char path[PATH_MAX];
    int rc = tmp_image(wasm, len, path, sizeof path);
    if (rc < 0)
        return rc;
    rc = validate(path);
    unlink(path);
    if (rc < 0)
        return rc;
    wasm_desc d;
    rc = parse_and_check(wasm, len, &d);
    if (rc == 0 && info) {
        *info = d.info;
        memset(&d.info, 0, sizeof d.info);
    }
    desc_free(&d);
    return rc;
}

/* ---- building ----------------------------------------------------------- */

static void cache_key(const void *wasm, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char abi[64];
    int n = snprintf(abi, sizeof abi, "realm-sandbox-abi-%u", REALM__SANDBOX_ABI);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, wasm, len);
    EVP_DigestUpdate(ctx, abi, (size_t)n);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/*
 * The glue compiled beside wasm2c's output: the wasm_rt_* functions wasm2c
 * calls (forwarding to the host's table), the `realm` imports (forwarding to
 * the host functions), and the entry points the host looks up with dlsym.
 */
static int write_glue(const char *path, const char *key, const char *mod, const wasm_desc *d,
                      const uint8_t *wasm, size_t len)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return realm__error(REALM_ERR_IO, "%s: %s", path, strerror(errno));
    fprintf(f,
            "#include <stdarg.h>\n#include \"wasm-rt.h\"\n#include \"module.h\"\n"
            "#define EXPORT __attribute__((visibility(\"default\")))\n"
            "static const struct realm_wasm_rt_host *rt;\n"
            "_Thread_local uint32_t wasm_rt_call_stack_depth;\n"
            "void wasm_rt_init(void) {}\n"
            "bool wasm_rt_is_initialized(void) { return rt != 0; }\n"
            "void wasm_rt_free(void) {}\n"
            "void wasm_rt_trap(wasm_rt_trap_t t) { rt->trap(t); }\n"
            "const char *wasm_rt_strerror(wasm_rt_trap_t t) { (void)t; return \"trap\"; }\n"
            "uint32_t wasm_rt_register_func_type(uint32_t p, uint32_t r, ...) {\n"
            "  wasm_rt_type_t t[%u]; va_list ap; va_start(ap, r);\n"
            "  for (uint32_t i = 0; i < p + r && i < %uu; i++)"
            " t[i] = (wasm_rt_type_t)va_arg(ap, int);\n"
            "  va_end(ap); return rt->register_func_type(p, r, t);\n}\n"
            "void wasm_rt_allocate_memory(wasm_rt_memory_t *m, uint32_t i, uint32_t x)"
            " { rt->allocate_memory(m, i, x); }\n"
            "uint32_t wasm_rt_grow_memory(wasm_rt_memory_t *m, uint32_t d)"
            " { return rt->grow_memory(m, d); }\n"
            "void wasm_rt_free_memory(wasm_rt_memory_t *m) { rt->free_memory(m); }\n"
            "void wasm_rt_allocate_funcref_table(wasm_rt_funcref_table_t *t, uint32_t n,"
            " uint32_t x) { rt->allocate_funcref_table(t, n, x); }\n"
            "void wasm_rt_free_funcref_table(wasm_rt_funcref_table_t *t)"
            " { rt->free_funcref_table(t); }\n"
            "uint32_t wasm_rt_grow_funcref_table(wasm_rt_funcref_table_t *t, uint32_t d,"
            " wasm_rt_funcref_t i) { return rt->grow_funcref_table(t, d, i); }\n"
            "void wasm_rt_allocate_externref_table(wasm_rt_externref_table_t *t, uint32_t n,"
            " uint32_t x) { rt->allocate_externref_table(t, n, x); }\n"
            "void wasm_rt_free_externref_table(wasm_rt_externref_table_t *t)"
            " { rt->free_externref_table(t); }\n"
            "uint32_t wasm_rt_grow_externref_table(wasm_rt_externref_table_t *t, uint32_t d,"
            " wasm_rt_externref_t i) { return rt->grow_externref_table(t, d, i); }\n"
            "EXPORT uint32_t realm_guest_abi(void) { return %uu; }\n"
            "EXPORT const char *realm_guest_key(void) { return \"%s\"; }\n"
            "EXPORT void realm_guest_bind(const struct realm_wasm_rt_host *h)"
            " { if (!rt) { rt = h; Z_%s_init_module(); } }\n"
            "EXPORT size_t realm_guest_instance_size(void) { return sizeof(Z_%s_instance_t); }\n"
            "EXPORT void realm_guest_instantiate(void *i, void *c)"
            " { (void)c; Z_%s_instantiate(i%s); }\n"
            "EXPORT void realm_guest_free(void *i) { Z_%s_free(i); }\n"
            "EXPORT uint32_t realm_guest_handle(void *i) { return Z_%sZ_handle(i); }\n"
            "EXPORT wasm_rt_memory_t *realm_guest_memory(void *i) { return Z_%sZ_memory(i); }\n"
            "EXPORT uint32_t *realm_guest_depth(void) { return &wasm_rt_call_stack_depth; }\n",
            2 * MAX_FUNC_ARITY, 2 * MAX_FUNC_ARITY, REALM__SANDBOX_ABI, key, mod, mod, mod,
            d->n_func_imports ? ", c" : "", /* no imports: no import argument */
            mod, mod, mod);
    /* One forwarder per imported host function, with its exact signature. */
    for (int h = 0; h < REALM__HOST_FN_COUNT; h++) {
        int imported = 0;
        char want[64];
        snprintf(want, sizeof want, "realm.%s (func)", realm__host_fns[h].name);
        for (uint32_t i = 0; i < d->info.n_imports; i++)
            imported |= strcmp(d->info.imports[i], want) == 0;
        if (!imported)
            continue;
        fprintf(f, "u32 Z_realmZ_%s(struct Z_realm_instance_t *c", realm__host_fns[h].name);
        for (uint32_t a = 0; a < realm__host_fns[h].n_params; a++)
            fprintf(f, ", u32 a%u", a);
        fprintf(f, ") {\n  return ((u32 (*)(void *");
        for (uint32_t a = 0; a < realm__host_fns[h].n_params; a++)
            fprintf(f, ", u32");
        fprintf(f, "))rt->host_fn[%d])(c", h);
        for (uint32_t a = 0; a < realm__host_fns[h].n_params; a++)
            fprintf(f, ", a%u", a);
        fprintf(f, ");\n}\n");
    }
    if (fclose(f) != 0)
        return realm__error(REALM_ERR_IO, "%s: write failed", path);
    return 0;
}

/*
 * Translate and compile an image into a fresh private directory beside its
 * entry (<entry>.tmp-XXXXXX); tmp gets its path, for install_entry. The
 * caller holds sb->build_lock.
 */
static int build_entry(realm_sandbox *sb, const uint8_t *wasm, size_t len, const char *key,
                       const char *entry, char tmp[PATH_MAX])
{
    wasm_desc d;
    int rc = parse_and_check(wasm, len, &d);
    if (rc < 0) {
        desc_free(&d);
        return rc;
    }
    char p_wasm[PATH_MAX], p_c[PATH_MAX], p_h[PATH_MAX], p_glue[PATH_MAX], p_so[PATH_MAX],
        inc[PATH_MAX + 2], mod[24], log[8192];
    if ((rc = pathf(tmp, PATH_MAX, "%s.tmp-XXXXXX", entry)) < 0) {
        desc_free(&d);
        return rc;
    }
    if (!mkdtemp(tmp)) {
        rc = realm__error(REALM_ERR_IO, "mkdtemp %s: %s", tmp, strerror(errno));
        desc_free(&d);
        return rc;
    }
    if ((rc = pathf(p_wasm, sizeof p_wasm, "%s/module.wasm", tmp)) < 0 ||
        (rc = pathf(p_c, sizeof p_c, "%s/module.c", tmp)) < 0 ||
        (rc = pathf(p_h, sizeof p_h, "%s/wasm-rt.h", tmp)) < 0 ||
        (rc = pathf(p_glue, sizeof p_glue, "%s/glue.c", tmp)) < 0 ||
        (rc = pathf(p_so, sizeof p_so, "%s/module.so", tmp)) < 0 ||
        (rc = pathf(inc, sizeof inc, "-I%s", tmp)) < 0)
        goto out;
    snprintf(mod, sizeof mod, "m_%.16s", key);
    if ((rc = write_file(p_wasm, wasm, len)) < 0 ||
        (rc = write_file(p_h, realm__wasm_rt_h, strlen((const char *)realm__wasm_rt_h))) < 0)
        goto out;
    if ((rc = validate(p_wasm)) < 0)
        goto out;
    if ((rc = write_glue(p_glue, key, mod, &d, wasm, len)) < 0)
        goto out;
    char *w2c[] = {"wasm2c", p_wasm, "-n", mod, "-o", p_c, NULL};
    int st = run_tool(w2c, log, sizeof log);
    if (st != 0) {
        rc = realm__error(st == 127 || st < 0 ? REALM_ERR_UNSUPPORTED : REALM_ERR_FORMAT,
                          "wasm2c failed: %s", log);
        goto out;
    }
    /* Stack clash protection: a function with a large frame probes every page
     * it allocates, so it faults on the guard page below the thread's stack
     * (a clean trap) instead of writing past it into another thread's. */
    char *cc[] = {sb->cc,
                  "-O2",
                  "-fPIC",
                  "-shared",
                  "-fstack-clash-protection",
                  "-fvisibility=hidden",
                  "-w",
                  "-fno-strict-aliasing",
                  inc,
                  "-o",
                  p_so,
                  p_c,
                  p_glue,
                  "-lm",
                  NULL};
    st = run_tool(cc, log, sizeof log);
    if (st != 0)
        rc =
            realm__error(REALM_ERR_IO, "compiling the module with %s failed: %.2000s", sb->cc, log);
out:
    if (rc < 0)
        remove_dir(tmp);
    desc_free(&d);
    return rc;
}

/* A function from the guest object (dlsym gives an object pointer). */
/* What a guest is bound to: the runtime's table with the host functions
 * filled in from the one list. */
static struct realm_wasm_rt_host guest_rt;
static pthread_once_t guest_rt_once = PTHREAD_ONCE_INIT;

static void guest_table_init(void)
{
    guest_rt = *realm__rt_host();
    for (int i = 0; i < REALM__HOST_FN_COUNT; i++)
        guest_rt.host_fn[i] = realm__host_fns[i].fn;
}

static const struct realm_wasm_rt_host *guest_table(void)
{
    pthread_once(&guest_rt_once, guest_table_init);
    return &guest_rt;
}

static void sym(void *dl, const char *name, void *fn_out)
{
    void *p = dlsym(dl, name);
    memcpy(fn_out, &p, sizeof p);
}

/* dlopen an entry and check it is ours (ABI and key). */
static int open_entry(const char *so_path, const char *key, realm__guest_so *so)
{
    memset(so, 0, sizeof *so);
    void *dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
    if (!dl)
        return realm__error(REALM_ERR_FORMAT, "cannot load %s: %s", so_path, dlerror());
    uint32_t (*abi)(void);
    const char *(*k)(void);
    void (*bind)(const struct realm_wasm_rt_host *);
    sym(dl, "realm_guest_abi", &abi);
    sym(dl, "realm_guest_key", &k);
    sym(dl, "realm_guest_bind", &bind);
    sym(dl, "realm_guest_instance_size", &so->instance_size);
    sym(dl, "realm_guest_instantiate", &so->instantiate);
    sym(dl, "realm_guest_free", &so->free);
    sym(dl, "realm_guest_handle", &so->handle);
    sym(dl, "realm_guest_memory", &so->memory);
    sym(dl, "realm_guest_depth", &so->depth);
    if (!abi || !k || !bind || !so->instance_size || !so->instantiate || !so->free || !so->handle ||
        !so->memory || !so->depth || abi() != REALM__SANDBOX_ABI || strcmp(k(), key) != 0) {
        dlclose(dl);
        memset(so, 0, sizeof *so);
        return realm__error(REALM_ERR_FORMAT, "%s is not a module of this Realm ABI", so_path);
    }
    bind(guest_table());
    so->dl = dl;
    return 0;
}

/* Move a bad entry out of the way under a unique name (rename is atomic: a
 * reader sees the old entry or none), then delete it. */
static void discard_entry(const char *entry)
{
    static atomic_uint seq;
    char aside[PATH_MAX];
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned n = atomic_fetch_add(&seq, 1);
        if (pathf(aside, sizeof aside, "%s.old-%d-%d-%u", entry, (int)getpid(), (int)gettid(), n) <
            0)
            return;
        if (rename(entry, aside) == 0) {
            remove_dir(aside);
            return;
        }
        if (errno != EEXIST && errno != ENOTEMPTY)
            return; /* gone already (ENOENT), or not ours to move */
    }
}

/*
 * Put a freshly built tmp directory in place as entry and load it. If an
 * entry appeared meanwhile (another process built the same module), it is
 * used when it loads, else replaced. tmp is gone afterwards.
 */
static int install_entry(const char *tmp, const char *entry, const char *so_path, const char *key,
                         realm__guest_so *so)
{
    int rc = REALM_ERR_IO;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (rename(tmp, entry) == 0)
            return open_entry(so_path, key, so);
        if (errno != EEXIST && errno != ENOTEMPTY) {
            rc = realm__error(REALM_ERR_IO, "rename %s to %s: %s", tmp, entry, strerror(errno));
            break;
        }
        if (open_entry(so_path, key, so) == 0) {
            remove_dir(tmp);
            return 0;
        }
        discard_entry(entry);
        rc = realm__error(REALM_ERR_IO, "cannot replace the cache entry %s", entry);
    }
    remove_dir(tmp);
    return rc;
}

/*
 * Find or make the cache entry for an image; with so_out, load it too. A
 * cached entry is opened without any lock; builds take sb->build_lock (never
 * sb->lock, so model lookups by running guests do not wait for a compile).
 */
static int build_or_open(realm_sandbox *sb, const void *wasm, size_t len, char key[65],
                         realm__guest_so *so_out, char **path_out)
{
    cache_key(wasm, len, key);
    char entry[PATH_MAX], so_path[PATH_MAX], tmp[PATH_MAX];
    int rc;
    if ((rc = pathf(entry, sizeof entry, "%s/%s", sb->cache_dir, key)) < 0 ||
        (rc = pathf(so_path, sizeof so_path, "%s/module.so", entry)) < 0)
        return rc;
    if ((rc = make_dirs(sb->cache_dir)) < 0 ||
        (rc = check_cache_root(sb->cache_dir, sb->cache_in_tmp)) < 0)
        return rc;
    realm__guest_so so;
    rc = access(so_path, R_OK) == 0 ? open_entry(so_path, key, &so) : REALM_ERR_NOTFOUND;
    if (rc < 0) { /* missing, corrupt or another ABI: (re)build, once per sandbox at a time */
        pthread_mutex_lock(&sb->build_lock);
        rc = access(so_path, R_OK) == 0 ? open_entry(so_path, key, &so) : REALM_ERR_NOTFOUND;
        if (rc < 0) {
            rc = build_entry(sb, wasm, len, key, entry, tmp);
            if (rc == 0)
                rc = install_entry(tmp, entry, so_path, key, &so);
        }
        pthread_mutex_unlock(&sb->build_lock);
    }
    if (rc < 0)
        return rc;
    if (so_out)
        *so_out = so;
    else
        dlclose(so.dl);
    if (path_out && !(*path_out = xstrdup(so_path))) {
        if (so_out)
            dlclose(so.dl);
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    }
    return 0;
}

int realm_module_build(realm_sandbox *sb, const void *wasm, size_t len, char **so_path)
{
    char key[65];
    if (so_path)
        *so_path = NULL;
    int rc = realm_module_check(wasm, len, NULL);
    if (rc < 0)
        return rc;
    return build_or_open(sb, wasm, len, key, NULL, so_path);
}

int realm_module_load_bytes(realm_sandbox *sb, const void *wasm, size_t len, realm_module **out)
{
    *out = NULL;
    wasm_desc d;
    /* Rules first (cheap, and the answer for a cached module must not
     * depend on the cache); wasm-validate runs when an entry is built. */
    int rc = parse_and_check(wasm, len, &d);
    desc_free(&d);
    if (rc < 0)
        return rc;
    realm_module *m = calloc(1, sizeof *m);
    if (!m)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    m->sb = sb;
    rc = build_or_open(sb, wasm, len, m->key, &m->so, NULL);
    if (rc < 0) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int realm_module_load(realm_sandbox *sb, const char *wasm_path, realm_module **out)
{
    *out = NULL;
    FILE *f = fopen(wasm_path, "rb");
    if (!f)
        return realm__error(REALM_ERR_IO, "%s: %s", wasm_path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? 2 * cap : 65536;
            uint8_t *nb = nc <= ((size_t)1 << 30) ? realloc(buf, nc) : NULL;
            if (!nb) {
                free(buf);
                fclose(f);
                return realm__error(REALM_ERR_RANGE, "%s: too large", wasm_path);
            }
            buf = nb;
            cap = nc;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0)
            break;
    }
    fclose(f);
    int rc = realm_module_load_bytes(sb, buf, len, out);
    free(buf);
    return rc;
}

const char *realm_module_key(const realm_module *m)
{
    return m->key;
}

void realm_module_free(realm_module *m)
{
    if (!m)
        return;
    if (m->so.dl)
        dlclose(m->so.dl);
    free(m);
}

const realm__guest_so *realm__module_so(const realm_module *m)
{
    return &m->so;
}

realm_sandbox *realm__module_sandbox(const realm_module *m)
{
    return m->sb;
}
