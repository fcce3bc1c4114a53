/*
 * Custom sampler: decodes in the guest with eval + logits instead of the
 * engine's sampler. This one is greedy with a twist a tenant might want: it
 * never picks a token listed in "ban" (an array of ids).
 *
 * Request: {"model": M, "prompt": P, "max_tokens": N, "ban": [ids...]}.
 * Streams each token's text; responds {"tokens": [ids...]}.
 */
#include "realm_guest.h"

#define MAX_BAN 16

/* The ids in the top-level array "ban" (the first MAX_BAN; negative or
 * huge numbers are no ids and are skipped); 0 when there is no such array. */
static int32_t parse_ban(const char *j, size_t n, int32_t *ban)
{
    const char *v;
    size_t vn;
    if (rg_json_raw(j, n, "ban", &v, &vn) < 0 || v[0] != '[')
        return 0;
    int32_t nb = 0;
    size_t i = 1;
    while (i < vn && nb < MAX_BAN) {
        int neg = v[i] == '-';
        if (!neg && (v[i] < '0' || v[i] > '9')) {
            i++;
            continue;
        }
        i += (size_t)neg;
        int64_t x = 0;
        for (; i < vn && v[i] >= '0' && v[i] <= '9'; i++)
            x = x > INT32_MAX ? x : x * 10 + (v[i] - '0');
        if (!neg && x <= INT32_MAX)
            ban[nb++] = (int32_t)x;
    }
    return nb;
}

int32_t handle(void)
{
    rg_reset();
    int32_t n = rg_request_read(0, 0);
    char *body = n > 0 ? rg_alloc((size_t)n) : 0;
    if (!body || rg_request_read(body, (uint32_t)n) != n)
        return rg_respond_str(400, "{\"error\":\"empty request\"}");
    char model[128], prompt[1024];
    int32_t ml = rg_json_string(body, (size_t)n, "model", model, sizeof model);
    int32_t pl = rg_json_string(body, (size_t)n, "prompt", prompt, sizeof prompt);
    if (ml < 0 || pl < 0)
        return rg_respond_str(400, "{\"error\":\"model and prompt required\"}");
    if (ml >= (int32_t)sizeof model || pl >= (int32_t)sizeof prompt)
        return rg_respond_str(400, "{\"error\":\"model or prompt too long\"}");
    int64_t max_tokens = rg_json_int(body, (size_t)n, "max_tokens", 16);
    int32_t ban[MAX_BAN];
    int32_t n_ban = parse_ban(body, (size_t)n, ban);

    int32_t h = rg_model_open(model, (uint32_t)ml);
    if (h < 0)
        return rg_respond_str(404, "{\"error\":\"no model\"}");
    char info[512];
    int32_t il = rg_model_info(h, info, sizeof info);
    size_t info_len = il > 0 && il <= (int32_t)sizeof info ? (size_t)il : 0; /* 0: did not fit */
    int64_t n_vocab = rg_json_int(info, info_len, "n_vocab", 0);
    int64_t eos = rg_json_int(info, info_len, "eos", -1);
    int32_t ids[256];
    int32_t np = rg_tokenize(h, prompt, (uint32_t)pl, 1, ids, 256);
    if (np <= 0 || np > 256 || n_vocab <= 0)
        return rg_respond_str(400, "{\"error\":\"bad prompt\"}");
    float *logits = rg_alloc((size_t)n_vocab * sizeof(float));
    int32_t s = rg_eval(h, ids, (uint32_t)np);
    rg_buf out = {0};
    rg_buf_puts(&out, "{\"tokens\":[");
    for (int64_t t = 0; t < max_tokens && s > 0; t++) {
        if (rg_logits(s, logits, (uint32_t)n_vocab) != n_vocab)
            break;
        int32_t best = -1;
        for (int32_t v = 0; v < n_vocab; v++) {
            int banned = 0;
            for (int32_t b = 0; b < n_ban; b++)
                banned |= ban[b] == v;
            if (!banned && (best < 0 || logits[v] > logits[best]))
                best = v;
        }
        if (best == eos)
            break;
        if (t)
            rg_buf_puts(&out, ",");
        rg_buf_put_int(&out, best);
        char text[64];
        int32_t tl = rg_detokenize(h, &best, 1, 0, text, sizeof text);
        if (tl > 0 && tl <= (int32_t)sizeof text)
            rg_emit(text, (uint32_t)tl);
        s = rg_eval(s, &best, 1);
    }
    rg_buf_puts(&out, "]}");
    if (s < 0) {
        char msg[256];
        int32_t ml = rg_last_error(msg, sizeof msg);
        rg_respond(500, msg, ml > 0 && ml <= (int32_t)sizeof msg ? (uint32_t)ml : 0);
        return 500;
    }
    rg_respond(200, out.data, (uint32_t)out.len);
    return 0;
}
