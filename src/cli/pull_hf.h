/*
 * What `realm pull` (cmd_pull.c) and its Hugging Face hub half (pull_hf.c)
 * share: the transfer context, the curl handle factory, and the hub's source
 * syntax, file listing and quantization picking.
 */
#ifndef REALM_CLI_PULL_HF_H
#define REALM_CLI_PULL_HF_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PULL_HUB_DEFAULT "https://huggingface.co"
#define PULL_SHA256_HEX  65 /* 64 hex digits and a NUL */

/* One pull's settings, shared by every request it makes. */
typedef struct pull_ctx {
    const char *cmd;   /* command name for messages: "pull" */
    char hub[512];     /* $HF_ENDPOINT or PULL_HUB_DEFAULT, without a trailing '/' */
    const char *token; /* $HF_TOKEN, sent to the hub's host only; NULL if unset */
    long timeout_s;    /* connect timeout, and the longest stall of a transfer */
    bool tty;          /* stderr is a terminal: one updating progress line */
    char errbuf[CURL_ERROR_SIZE];
} pull_ctx;

/*
 * A curl handle for url with the pull's policy: http and https only (also
 * for redirects, at most 10), connect and stall timeouts, the user agent,
 * ctx->errbuf for curl's message, and the bearer token when url is on the
 * hub's host. curl sends the token only to the host of the first request, so
 * a redirect to a CDN never carries it. NULL when curl cannot allocate.
 */
CURL *pull_easy(pull_ctx *ctx, const char *url);
/* True if url has the hub's scheme, host and port. */
bool pull_url_on_hub(const pull_ctx *ctx, const char *url);

/* If the header line (len bytes, CRLF included) is "Name: value" (name
 * compared without case), its value without surrounding blanks into out
 * (truncated to cap - 1 bytes) and true. */
bool pull_header_value(const char *line, size_t len, const char *name, char *out, size_t cap);

/* hf:OWNER/REPO/PATH or hf:OWNER/REPO[:QUANT], split into its parts. */
typedef struct pull_hf_ref {
    char owner[97];
    char repo[97];
    char path[1024]; /* file inside the repository; "" for the QUANT form */
    char quant[33];  /* "" when not given */
} pull_hf_ref;

/* Parse spec (with its "hf:" prefix). False with the reason in err. */
bool pull_hf_parse(const char *spec, pull_hf_ref *ref, char *err, size_t cap);
/* BASE/OWNER/REPO/resolve/main/PATH with each path segment escaped; malloc'd
 * (NULL when out of memory). */
char *pull_hf_resolve_url(const pull_ctx *ctx, const pull_hf_ref *ref, const char *path);

/* One GGUF file of a repository, from the hub's tree listing. */
typedef struct pull_file {
    char *path;                   /* inside the repository */
    uint64_t size;                /* bytes; 0 if the listing has none */
    char sha256[PULL_SHA256_HEX]; /* the LFS object id; "" for a non-LFS file */
} pull_file;

/*
 * Fetch the repository's *.gguf files from BASE/api/models/OWNER/REPO/tree/main
 * (recursive, following the listing's "next" pages). 0 and a malloc'd array
 * to free with pull_files_free, or 1 after printing an error.
 */
int pull_hf_list(pull_ctx *ctx, const pull_hf_ref *ref, pull_file **files, size_t *n);
void pull_files_free(pull_file *files, size_t n);

/*
 * Choose what hf:OWNER/REPO[:QUANT] names among files: the files whose name
 * carries quant (Q4_K_M when quant is ""), else with no quant given the
 * repository's only model. A single file is preferred to a split model; a
 * split model gives every part, in order. mmproj* files (vision projectors)
 * are never picked. 0 with *pick (malloc'd indices into files) and *n_pick,
 * or 1 after printing why nothing or several things match.
 */
int pull_hf_pick(const char *cmd, const pull_hf_ref *ref, const pull_file *files, size_t n,
                 size_t **pick, size_t *n_pick);

/*
 * True if the file name at the end of path carries the quantization quant:
 * case-insensitive, preceded by the start of the name or a character that is
 * not a letter or digit, and followed by the end, '.', '-' or another
 * character that is neither a letter, a digit nor '_'. So Q4_K_M matches
 * "m-Q4_K_M.gguf", "m.q4_k_m.gguf" and "m_Q4_K_M-00001-of-00002.gguf", but not
 * "m-Q4_K_M_L.gguf" or "m-IQ4_K_M.gguf", and Q4_K does not match "m-Q4_K_M.gguf".
 */
bool pull_quant_match(const char *path, const char *quant);

/*
 * If the file name at the end of s (a path or a URL path, before any '?')
 * ends in "-IIIII-of-NNNNN.gguf" (llama.cpp's split naming; any one width of
 * digits), set *at to the offset of that '-', *index and *count, *width to the
 * digit count, and return true.
 */
bool pull_split_parse(const char *s, size_t *at, unsigned *index, unsigned *count, int *width);

/* A 64-hex-digit SHA-256 from an ETag-like header value (quoted, W/ weak
 * prefix allowed) into out in lower case; false if it is not one. */
bool pull_sha256_from_etag(const char *value, char out[PULL_SHA256_HEX]);

#endif
