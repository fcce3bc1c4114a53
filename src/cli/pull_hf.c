/*
 * realm pull, the Hugging Face hub half: the hf: source syntax, the URLs the
 * hub answers (file resolution, the tree listing), choosing a file by
 * quantization, split-model names and the LFS hash carried in ETags.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "pull_hf.h"

#define LIST_MAX_BYTES (64u << 20) /* a tree listing page larger than this is refused */
#define LIST_MAX_PAGES 100

static bool repo_char_ok(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

/* Copy [s, s+len) into dst (cap bytes) if it fits; false otherwise. */
static bool copy_span(char *dst, size_t cap, const char *s, size_t len)
{
    if (len >= cap)
        return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/* OWNER or REPO: [A-Za-z0-9._-]+, not "." or "..". */
static bool check_id(const char *what, const char *s, char *err, size_t cap)
{
    if (s[0] == '\0') {
        snprintf(err, cap, "missing %s", what);
        return false;
    }
    for (const char *p = s; *p; p++)
        if (!repo_char_ok(*p)) {
            snprintf(err, cap, "%s '%s' may only contain letters, digits, '.', '_' and '-'", what,
                     s);
            return false;
        }
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
        snprintf(err, cap, "%s '%s' is not a name", what, s);
        return false;
    }
    return true;
}

bool pull_hf_parse(const char *spec, pull_hf_ref *ref, char *err, size_t cap)
{
    static const char usage[] = "expected hf:OWNER/REPO/FILE.gguf or hf:OWNER/REPO[:QUANT]";
    memset(ref, 0, sizeof *ref);
    if (strncmp(spec, "hf:", 3) != 0) {
        snprintf(err, cap, "%s", usage);
        return false;
    }
    const char *s = spec + 3;
    const char *slash = strchr(s, '/');
    if (slash == NULL) {
        snprintf(err, cap, "no repository in '%s': %s", spec, usage);
        return false;
    }
    if (!copy_span(ref->owner, sizeof ref->owner, s, (size_t)(slash - s))) {
        snprintf(err, cap, "owner name too long in '%s'", spec);
        return false;
    }
    const char *r = slash + 1;
    const char *end = r + strcspn(r, "/:");
    if (!copy_span(ref->repo, sizeof ref->repo, r, (size_t)(end - r))) {
        snprintf(err, cap, "repository name too long in '%s'", spec);
        return false;
    }
    if (!check_id("owner", ref->owner, err, cap) || !check_id("repository", ref->repo, err, cap))
        return false;
    if (*end == '/') {
        const char *path = end + 1;
        if (!copy_span(ref->path, sizeof ref->path, path, strlen(path))) {
            snprintf(err, cap, "file path too long in '%s'", spec);
            return false;
        }
        /* Segments are escaped in the URL; still refuse what could climb out. */
        const char *seg = ref->path;
        for (;;) {
            size_t len = strcspn(seg, "/");
            if (len == 0 || (len == 1 && seg[0] == '.') ||
                (len == 2 && seg[0] == '.' && seg[1] == '.')) {
                snprintf(err, cap, "bad file path '%s' in '%s'", ref->path, spec);
                return false;
            }
            if (seg[len] == '\0')
                break;
            seg += len + 1;
        }
        for (const char *p = ref->path; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                snprintf(err, cap, "control character in the file path of '%s'", spec);
                return false;
            }
    } else if (*end == ':') {
        const char *q = end + 1;
        size_t len = strlen(q);
        if (len == 0) {
            snprintf(err, cap, "empty quantization after ':' in '%s'", spec);
            return false;
        }
        if (!copy_span(ref->quant, sizeof ref->quant, q, len)) {
            snprintf(err, cap, "quantization too long in '%s'", spec);
            return false;
        }
        for (const char *p = ref->quant; *p; p++)
            if (!repo_char_ok(*p)) {
                snprintf(err, cap, "bad quantization '%s' (e.g. Q4_K_M)", ref->quant);
                return false;
            }
    }
    return true;
}

char *pull_hf_resolve_url(const pull_ctx *ctx, const pull_hf_ref *ref, const char *path)
{
    size_t cap = strlen(ctx->hub) + strlen(ref->owner) + strlen(ref->repo) + 3 * strlen(path) + 32;
    char *url = malloc(cap);
    if (url == NULL)
        return NULL;
    int n = snprintf(url, cap, "%s/%s/%s/resolve/main/", ctx->hub, ref->owner, ref->repo);
    size_t len = (size_t)n;
    /* Percent-encode every byte but the unreserved ones and the segments' '/'. */
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
            url[len++] = (char)c;
        } else {
            snprintf(url + len, 4, "%%%02X", c);
            len += 3;
        }
    }
    url[len] = '\0';
    return url;
}

/* ---- the tree listing ----------------------------------------------------- */

typedef struct list_response {
    char *body;
    size_t len;
    bool too_big;
    char next[2048];   /* Link: <URL>; rel="next" */
    char message[256]; /* X-Error-Message */
} list_response;

static size_t list_write(char *data, size_t size, size_t nmemb, void *user)
{
    list_response *r = user;
    size_t n = size * nmemb;
    if (r->len + n > LIST_MAX_BYTES) {
        r->too_big = true;
        return 0;
    }
    char *grown = realloc(r->body, r->len + n + 1);
    if (grown == NULL)
        return 0;
    r->body = grown;
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

bool pull_header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return false;
    const char *v = line + nl + 1, *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t n = (size_t)(e - v) < cap - 1 ? (size_t)(e - v) : cap - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

static size_t list_header(char *line, size_t size, size_t nmemb, void *user)
{
    list_response *r = user;
    size_t n = size * nmemb;
    char v[2048];
    if (strncmp(line, "HTTP/", 5) == 0) {
        r->next[0] = r->message[0] = '\0';
    } else if (pull_header_value(line, n, "X-Error-Message", v, sizeof v)) {
        snprintf(r->message, sizeof r->message, "%.255s", v);
    } else if (pull_header_value(line, n, "Link", v, sizeof v)) {
        /* <URL>; rel="next", possibly among other comma-separated links */
        for (char *lt = strchr(v, '<'); lt != NULL; lt = strchr(lt + 1, '<')) {
            char *gt = strchr(lt, '>');
            if (gt == NULL)
                break;
            char *comma = strchr(gt, ',');
            char *rel = strstr(gt, "rel=\"next\"");
            if (rel != NULL && (comma == NULL || rel < comma)) {
                *gt = '\0';
                snprintf(r->next, sizeof r->next, "%s", lt + 1);
                break;
            }
        }
    }
    return n;
}

static bool ends_with_gguf(const char *path)
{
    size_t n = strlen(path);
    return n >= 5 && strcasecmp(path + n - 5, ".gguf") == 0;
}

/* Add the .gguf files of one listing page (a JSON array) to *files. */
static int list_parse(const char *cmd, const char *url, const list_response *r, pull_file **files,
                      size_t *n)
{
    json_error_t jerr;
    json_t *root = json_loadb(r->body ? r->body : "", r->len, 0, &jerr);
    if (root == NULL || !json_is_array(root)) {
        json_decref(root);
        return cli_error(cmd, "%s: the hub's file listing is not a JSON array (%s)", url,
                         root == NULL ? jerr.text : "another JSON value");
    }
    size_t i;
    json_t *e;
    json_array_foreach(root, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *path = json_string_value(json_object_get(e, "path"));
        if (type == NULL || strcmp(type, "file") != 0 || path == NULL || !ends_with_gguf(path))
            continue;
        pull_file *grown = realloc(*files, (*n + 1) * sizeof **files);
        if (grown == NULL) {
            json_decref(root);
            return cli_error(cmd, "out of memory");
        }
        *files = grown;
        pull_file *f = &(*files)[*n];
        memset(f, 0, sizeof *f);
        if ((f->path = strdup(path)) == NULL) {
            json_decref(root);
            return cli_error(cmd, "out of memory");
        }
        (*n)++;
        json_t *size = json_object_get(e, "size");
        json_t *lfs = json_object_get(e, "lfs");
        if (json_is_object(lfs)) {
            const char *oid = json_string_value(json_object_get(lfs, "oid"));
            if (oid != NULL)
                pull_sha256_from_etag(oid, f->sha256);
            if (json_is_integer(json_object_get(lfs, "size")))
                size = json_object_get(lfs, "size");
        }
        if (json_is_integer(size) && json_integer_value(size) > 0)
            f->size = (uint64_t)json_integer_value(size);
    }
    json_decref(root);
    return 0;
}

int pull_hf_list(pull_ctx *ctx, const pull_hf_ref *ref, pull_file **files, size_t *n)
{
    *files = NULL;
    *n = 0;
    char first[1024];
    snprintf(first, sizeof first, "%s/api/models/%s/%s/tree/main?recursive=true", ctx->hub,
             ref->owner, ref->repo);
    char *url = strdup(first);
    int rc = 0;
    for (int page = 0; url != NULL && rc == 0; page++) {
        if (page == LIST_MAX_PAGES) {
            rc = cli_error(ctx->cmd, "%s/%s: the file listing has more than %d pages", ref->owner,
                           ref->repo, LIST_MAX_PAGES);
            break;
        }
        CURL *h = pull_easy(ctx, url);
        if (h == NULL) {
            rc = cli_error(ctx->cmd, "cannot start curl");
            break;
        }
        list_response r = {0};
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, list_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, list_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
        curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 4 * ctx->timeout_s);
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        if (cc != CURLE_OK) {
            rc = cli_error(ctx->cmd, "%s: cannot list the repository's files: %s", url,
                           r.too_big        ? "the listing is too large"
                           : ctx->errbuf[0] ? ctx->errbuf
                                            : curl_easy_strerror(cc));
        } else if (status == 401 || status == 403) {
            rc = cli_error(ctx->cmd, "%s/%s: HTTP %ld: the repository is private or gated%s (%s)",
                           ref->owner, ref->repo, status,
                           ctx->token ? "; does HF_TOKEN have access, and were its terms accepted?"
                                      : "; set HF_TOKEN to a token with access",
                           r.message[0] ? r.message : url);
        } else if (status == 404) {
            rc = cli_error(ctx->cmd, "repository %s/%s not found at %s%s%s", ref->owner, ref->repo,
                           ctx->hub, r.message[0] ? ": " : "", r.message);
        } else if (status != 200) {
            rc = cli_error(ctx->cmd, "%s: HTTP %ld%s%s", url, status, r.message[0] ? ": " : "",
                           r.message);
        } else {
            rc = list_parse(ctx->cmd, url, &r, files, n);
        }
        free(url);
        url = NULL;
        /* Follow a next page only on the hub itself. */
        if (rc == 0 && r.next[0] != '\0' && pull_url_on_hub(ctx, r.next))
            url = strdup(r.next);
        free(r.body);
    }
    if (rc != 0) {
        pull_files_free(*files, *n);
        *files = NULL;
        *n = 0;
    }
    return rc;
}

void pull_files_free(pull_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(files[i].path);
    free(files);
}

/* ---- choosing a file ---------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

bool pull_quant_match(const char *path, const char *quant)
{
    const char *name = base_name(path);
    size_t nq = strlen(quant), nn = strlen(name);
    if (nq == 0)
        return false;
    for (size_t i = 0; i + nq <= nn; i++) {
        if (strncasecmp(name + i, quant, nq) != 0)
            continue;
        bool left = i == 0 || !isalnum((unsigned char)name[i - 1]);
        unsigned char after = (unsigned char)name[i + nq];
        bool right = after == '\0' || (!isalnum(after) && after != '_');
        if (left && right)
            return true;
    }
    return false;
}

bool pull_split_parse(const char *s, size_t *at, unsigned *index, unsigned *count, int *width)
{
    size_t end = strcspn(s, "?#");
    if (end < 5 || strncasecmp(s + end - 5, ".gguf", 5) != 0)
        return false;
    /* Walk back over NNNNN, "-of-", IIIII, "-". */
    size_t p = end - 5, d = 0;
    while (d < p && isdigit((unsigned char)s[p - d - 1]))
        d++;
    if (d == 0 || d > 9 || p - d < 4 || strncmp(s + p - d - 4, "-of-", 4) != 0)
        return false;
    size_t n_at = p - d;
    p = n_at - 4;
    size_t d2 = 0;
    while (d2 < p && isdigit((unsigned char)s[p - d2 - 1]))
        d2++;
    if (d2 != d || p - d2 < 1 || s[p - d2 - 1] != '-')
        return false;
    unsigned i = (unsigned)strtoul(s + p - d2, NULL, 10);
    unsigned c = (unsigned)strtoul(s + n_at, NULL, 10);
    if (i < 1 || c < 1 || i > c)
        return false;
    *at = p - d2 - 1;
    *index = i;
    *count = c;
    *width = (int)d;
    return true;
}

/* The outcome of choosing a model among candidate files. */
enum { CHOOSE_OK, CHOOSE_NONE, CHOOSE_SEVERAL, CHOOSE_INCOMPLETE };

/*
 * Among the files cand[0..nc) (indices into files): the only single file if
 * there is one, else the only split model (every part, in order). The
 * CHOOSE_* outcome; for CHOOSE_INCOMPLETE, *missing is the absent part.
 */
static int choose_model(const pull_file *files, const size_t *cand, size_t nc, size_t *pick,
                        size_t *n_pick, unsigned *missing)
{
    size_t singles = 0, single = 0;
    for (size_t k = 0; k < nc; k++) {
        size_t at;
        unsigned idx, cnt;
        int w;
        if (!pull_split_parse(files[cand[k]].path, &at, &idx, &cnt, &w)) {
            singles++;
            single = cand[k];
        }
    }
    if (singles == 1) {
        pick[0] = single;
        *n_pick = 1;
        return CHOOSE_OK;
    }
    if (singles > 1)
        return CHOOSE_SEVERAL;
    /* Only split parts: they must all belong to one model (same prefix and count). */
    if (nc == 0)
        return CHOOSE_NONE;
    size_t at0;
    unsigned idx0, cnt0;
    int w0;
    const char *p0 = files[cand[0]].path;
    pull_split_parse(p0, &at0, &idx0, &cnt0, &w0);
    for (size_t k = 0; k < nc; k++) {
        const char *p = files[cand[k]].path;
        size_t at;
        unsigned idx, cnt;
        int w;
        pull_split_parse(p, &at, &idx, &cnt, &w);
        if (cnt != cnt0 || at != at0 || strncmp(p, p0, at) != 0)
            return CHOOSE_SEVERAL;
    }
    /* Parts 1..cnt0 each exactly once; pick[] gets at most nc entries, as
     * every candidate has one index. */
    for (unsigned want = 1; want <= cnt0; want++) {
        size_t found = 0;
        for (size_t k = 0; k < nc; k++) {
            size_t at;
            unsigned idx, cnt;
            int w;
            pull_split_parse(files[cand[k]].path, &at, &idx, &cnt, &w);
            if (idx == want) {
                pick[want - 1] = cand[k];
                found++;
            }
        }
        if (found != 1) {
            *missing = want;
            return found == 0 ? CHOOSE_INCOMPLETE : CHOOSE_SEVERAL;
        }
    }
    *n_pick = cnt0;
    return CHOOSE_OK;
}

/* "a.gguf, b.gguf, ..." for messages: at most 12 names. */
static void list_names(const pull_file *files, const size_t *idx, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t k = 0; k < n && len < cap; k++) {
        if (k == 12) {
            snprintf(out + len, cap - len, ", ... (%zu files)", n);
            return;
        }
        int w = snprintf(out + len, cap - len, "%s%s", k ? ", " : "", files[idx[k]].path);
        if (w < 0)
            return;
        len += (size_t)w;
    }
}

int pull_hf_pick(const char *cmd, const pull_hf_ref *ref, const pull_file *files, size_t n,
                 size_t **pick, size_t *n_pick)
{
    *pick = NULL;
    *n_pick = 0;
    size_t *cand = malloc((n + 1) * sizeof *cand);
    size_t *match = malloc((n + 1) * sizeof *match);
    size_t *out = malloc((n + 1) * sizeof *out);
    char names[1024];
    int rc = 1;
    if (cand == NULL || match == NULL || out == NULL) {
        cli_error(cmd, "out of memory");
        goto done;
    }
    size_t nc = 0, nm = 0;
    for (size_t i = 0; i < n; i++)
        if (strncasecmp(base_name(files[i].path), "mmproj", 6) != 0)
            cand[nc++] = i;
    if (nc == 0) {
        cli_error(cmd, "%s/%s has no GGUF model file", ref->owner, ref->repo);
        goto done;
    }
    const char *quant = ref->quant[0] ? ref->quant : "Q4_K_M";
    for (size_t k = 0; k < nc; k++)
        if (pull_quant_match(files[cand[k]].path, quant))
            match[nm++] = cand[k];
    unsigned missing = 0;
    int how;
    if (nm > 0) {
        how = choose_model(files, match, nm, out, n_pick, &missing);
        list_names(files, match, nm, names, sizeof names);
    } else if (ref->quant[0] == '\0') {
        /* No Q4_K_M: the repository's only model, if it has one. */
        how = choose_model(files, cand, nc, out, n_pick, &missing);
        list_names(files, cand, nc, names, sizeof names);
        if (how == CHOOSE_SEVERAL) {
            cli_error(cmd,
                      "%s/%s has several GGUF models and none is Q4_K_M: name one with "
                      "hf:%s/%s:QUANT or hf:%s/%s/FILE (files: %s)",
                      ref->owner, ref->repo, ref->owner, ref->repo, ref->owner, ref->repo, names);
            goto done;
        }
    } else {
        list_names(files, cand, nc, names, sizeof names);
        cli_error(cmd, "no GGUF file of %s/%s carries the quantization '%s' (files: %s)",
                  ref->owner, ref->repo, ref->quant, names);
        goto done;
    }
    if (how == CHOOSE_SEVERAL) {
        cli_error(cmd, "several GGUF files of %s/%s match '%s': %s; name one with hf:%s/%s/FILE",
                  ref->owner, ref->repo, quant, names, ref->owner, ref->repo);
    } else if (how == CHOOSE_INCOMPLETE) {
        cli_error(cmd, "%s/%s: the split model %s lacks part %u", ref->owner, ref->repo, names,
                  missing);
    } else if (how == CHOOSE_NONE) {
        cli_error(cmd, "%s/%s has no GGUF model file", ref->owner, ref->repo);
    } else {
        *pick = out;
        out = NULL;
        rc = 0;
    }
done:
    free(cand);
    free(match);
    free(out);
    return rc;
}

bool pull_sha256_from_etag(const char *value, char out[PULL_SHA256_HEX])
{
    const char *v = value;
    if (strncmp(v, "W/", 2) == 0)
        v += 2;
    if (*v == '"')
        v++;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)v[i]))
            return false;
    if (v[64] != '\0' && v[64] != '"')
        return false;
    for (int i = 0; i < 64; i++)
        out[i] = (char)tolower((unsigned char)v[i]);
    out[64] = '\0';
    return true;
}
