/*
 * Redaction filter: generates like the default handler, but rewrites the
 * output stream so that a word never reaches the client.
 *
 * Request: {"model": M, "prompt": P, "redact": WORD, ...generate options}.
 * Every occurrence of WORD in the generated text is replaced by "[redacted]",
 * also when it is split across pieces: the filter holds back the last
 * strlen(WORD) - 1 bytes until the next piece shows whether they start it.
 * Response: {"redactions": N}.
 */
#include "realm_guest.h"

static char word[64];
static size_t wlen;
static rg_buf pending; /* text received but not yet emitted */
static int n_redactions;

/* Emit pending[0..upto), replacing whole occurrences of word. */
static void flush(size_t upto)
{
    rg_buf out = {0};
    size_t i = 0;
    while (i < upto) {
        if (wlen && i + wlen <= pending.len && memcmp(pending.data + i, word, wlen) == 0) {
            rg_buf_puts(&out, "[redacted]");
            n_redactions++;
            i += wlen;
        } else {
            rg_buf_put(&out, pending.data + i, 1);
            i++;
        }
    }
    if (out.len)
        rg_emit(out.data, (uint32_t)out.len);
    /* i may pass upto when a match straddles it */
    memmove(pending.data, pending.data + i, pending.len - i);
    pending.len -= i;
}

int32_t handle(void)
{
    rg_reset();
    pending = (rg_buf){0};
    n_redactions = 0;
    int32_t n = rg_request_read(0, 0);
    char *body = n > 0 ? rg_alloc((size_t)n) : 0;
    if (!body || rg_request_read(body, (uint32_t)n) != n)
        return rg_respond_str(400, "{\"error\":\"empty request\"}");
    char model[128];
    int32_t ml = rg_json_string(body, (size_t)n, "model", model, sizeof model);
    if (ml < 0 || ml >= (int32_t)sizeof model)
        return rg_respond_str(400, "{\"error\":\"model required (a string under 128 bytes)\"}");
    /* a cut word would redact the wrong text: refuse it */
    int32_t wl = rg_json_string(body, (size_t)n, "redact", word, sizeof word);
    if (wl >= (int32_t)sizeof word)
        return rg_respond_str(400, "{\"error\":\"redact: at most 63 bytes\"}");
    wlen = wl > 0 ? (size_t)wl : 0;
    int32_t h = rg_model_open(model, (uint32_t)ml);
    int32_t g = h > 0 ? rg_generate(h, body, (uint32_t)n) : h;
    if (g < 0)
        return rg_respond_str(400, "{\"error\":\"cannot generate\"}");
    static char piece[1024];
    int32_t k;
    while ((k = rg_gen_next(g, piece, sizeof piece)) > 0 && k <= (int32_t)sizeof piece) {
        rg_buf_put(&pending, piece, (size_t)k);
        size_t keep = wlen ? wlen - 1 : 0;
        if (pending.len > keep)
            flush(pending.len - keep);
    }
    flush(pending.len);
    rg_buf r = {0};
    rg_buf_puts(&r, "{\"redactions\":");
    rg_buf_put_int(&r, n_redactions);
    rg_buf_puts(&r, "}");
    rg_respond(200, r.data, (uint32_t)r.len);
    return 0;
}
