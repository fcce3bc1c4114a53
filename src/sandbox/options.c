/*
 * The options of realm.generate, from one table: each row names a key, its
 * JSON type, its range, its default and where it goes. Parsing walks the
 * table (never the body), so an unknown key is ignored, while a known key
 * with a wrong type or value is refused with a message that names it and
 * says what it must be. The same rows print the documentation.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "options_internal.h"
#include "realm/registry.h"

typedef enum opt_kind {
    K_NUMBER, /* a JSON number into a float at `off` */
    K_INT,    /* a JSON integer into an int32_t at `off` */
    K_BOOL,   /* true / false into a bool at `off` */
    K_CUSTOM, /* parsed by `set` */
} opt_kind;

typedef struct opt_desc opt_desc;

struct opt_desc {
    const char *key;
    opt_kind kind;
    double min, max; /* K_NUMBER / K_INT */
    size_t off;      /* K_NUMBER / K_INT / K_BOOL: offset in realm__gen_opts */
    int (*set)(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
               realm__opt_error *e); /* K_CUSTOM */
    const char *type;                /* for the documentation */
    const char *def;
    const char *doc;
};

static int refuse(realm__opt_error *e, int code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fill *e; returns code. */
static int refuse(realm__opt_error *e, int code, const char *param, const char *fmt, ...)
{
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return code;
}

/* "between 0 and 2", ">= 1" or "" for the range of d. */
static void range_text(const opt_desc *d, char *buf, size_t cap)
{
    const bool lo = d->min > -HUGE_VAL, hi = d->max < HUGE_VAL;
    if (lo && hi)
        snprintf(buf, cap, " between %.15g and %.15g", d->min, d->max);
    else if (lo)
        snprintf(buf, cap, " >= %.15g", d->min);
    else if (hi)
        snprintf(buf, cap, " <= %.15g", d->max);
    else
        buf[0] = '\0';
}

/* A number or integer in d's range, or a refusal naming the key. */
static int check_number(json_t *v, const opt_desc *d, bool integer, double *out,
                        realm__opt_error *e)
{
    char range[96];
    range_text(d, range, sizeof range);
    const bool ok_type = integer ? json_is_integer(v) : json_is_number(v);
    const double x = ok_type ? json_number_value(v) : 0;
    if (!ok_type || !(x >= d->min && x <= d->max))
        return refuse(e, REALM_ERR_INVAL, d->key, "'%s' must be %s%s", d->key,
                      integer ? "an integer" : "a number", range);
    *out = x;
    return 0;
}

/* ---- custom options ------------------------------------------------------ */

static int set_prompt(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                      realm__opt_error *e)
{
    if (!json_is_string(v))
        return refuse(e, REALM_ERR_INVAL, d->key, "'prompt' must be a string");
    o->prompt = json_string_value(v);
    o->prompt_len = json_string_length(v);
    return 0;
}

/* Join the text parts of messages[i].content (an array) with newlines, as
 * llama.cpp and vLLM do for templates that take text. */
static int join_parts(realm__gen_opts *o, size_t i, json_t *parts, const char **out,
                      realm__opt_error *e)
{
    char param[96];
    size_t len = 0;
    for (size_t j = 0; j < json_array_size(parts); j++) {
        json_t *p = json_array_get(parts, j);
        json_t *type = json_object_get(p, "type");
        json_t *text = json_object_get(p, "text");
        snprintf(param, sizeof param, "messages[%zu].content[%zu]", i, j);
        if (!json_is_object(p) || !json_is_string(type))
            return refuse(e, REALM_ERR_INVAL, param,
                          "'%s' must be an object with a \"type\" (\"text\")", param);
        if (strcmp(json_string_value(type), "text") != 0) {
            snprintf(param, sizeof param, "messages[%zu].content[%zu].type", i, j);
            return refuse(e, REALM_ERR_UNSUPPORTED, param,
                          "content parts of type '%.40s' are not supported (only \"text\")",
                          json_string_value(type));
        }
        if (!json_is_string(text))
            return refuse(e, REALM_ERR_INVAL, param, "'%s.text' must be a string", param);
        len += json_string_length(text) + 1;
    }
    char *s = malloc(len + 1);
    if (s == NULL)
        return refuse(e, REALM_ERR_NOMEM, "messages", "out of memory");
    size_t at = 0;
    for (size_t j = 0; j < json_array_size(parts); j++) {
        json_t *text = json_object_get(json_array_get(parts, j), "text");
        if (j > 0)
            s[at++] = '\n';
        memcpy(s + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    s[at] = '\0';
    o->joined[i] = s;
    *out = s;
    return 0;
}

static int set_messages(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                        realm__opt_error *e)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return refuse(e, REALM_ERR_INVAL, d->key, "'messages' must be a non-empty array");
    const size_t n = json_array_size(v);
    o->msgs = calloc(n, sizeof *o->msgs);
    o->joined = calloc(n, sizeof *o->joined);
    if (o->msgs == NULL || o->joined == NULL)
        return refuse(e, REALM_ERR_NOMEM, d->key, "out of memory");
    o->n_msgs = n;
    char param[64];
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        json_t *role = json_object_get(m, "role");
        json_t *content = json_object_get(m, "content");
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m))
            return refuse(e, REALM_ERR_INVAL, param, "'%s' must be an object", param);
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role))
            return refuse(e, REALM_ERR_INVAL, param, "'%s' must be a string", param);
        const char *r = json_string_value(role);
        if (strcmp(r, "tool") == 0 || strcmp(r, "function") == 0)
            return refuse(e, REALM_ERR_UNSUPPORTED, param,
                          "'%s' is '%s': tool messages are not supported yet", param, r);
        if (realm_chat_role_from_name(r, &o->msgs[i].role) < 0)
            return refuse(e, REALM_ERR_INVAL, param,
                          "'%s' must be \"system\", \"developer\", \"user\" or \"assistant\"",
                          param);
        json_t *calls = json_object_get(m, "tool_calls");
        if (json_is_array(calls) && json_array_size(calls) > 0) {
            snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
            return refuse(e, REALM_ERR_UNSUPPORTED, param, "'%s': tool calls are not supported yet",
                          param);
        }
        snprintf(param, sizeof param, "messages[%zu].content", i);
        int rc = 0;
        if (json_is_string(content))
            o->msgs[i].content = json_string_value(content);
        else if (json_is_array(content))
            rc = join_parts(o, i, content, &o->msgs[i].content, e);
        else
            rc = refuse(e, REALM_ERR_INVAL, param,
                        "'%s' must be a string or an array of text parts", param);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int set_template(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                        realm__opt_error *e)
{
    realm_chat_template t;
    if (!json_is_string(v) || realm_chat_template_from_name(json_string_value(v), &t) < 0)
        return refuse(e, REALM_ERR_INVAL, d->key,
                      "'chat_template' must name a template, one of: %s",
                      realm_chat_template_names());
    o->chat_template = json_string_value(v);
    return 0;
}

static int set_max_tokens(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                          realm__opt_error *e)
{
    double x = 0;
    int rc = check_number(v, d, true, &x, e);
    if (rc == 0) {
        o->gen.max_tokens = (int32_t)x;
        o->has_max_tokens = true;
    }
    return rc;
}

static int set_seed(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                    realm__opt_error *e)
{
    if (!json_is_integer(v))
        return refuse(e, REALM_ERR_INVAL, d->key, "'seed' must be an integer");
    const json_int_t s = json_integer_value(v);
    o->gen.sampling.seed = s == -1 ? REALM_SEED_RANDOM : (uint64_t)s;
    return 0;
}

static int set_logit_bias(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                          realm__opt_error *e)
{
    if (!json_is_object(v))
        return refuse(e, REALM_ERR_INVAL, d->key,
                      "'logit_bias' must be an object mapping token ids to numbers");
    const size_t n = json_object_size(v);
    if (n > (size_t)n_vocab)
        return refuse(e, REALM_ERR_INVAL, d->key, "'logit_bias' has more entries than tokens");
    o->bias = calloc(n ? n : 1, sizeof *o->bias);
    if (o->bias == NULL)
        return refuse(e, REALM_ERR_NOMEM, d->key, "out of memory");
    const char *k;
    json_t *b;
    int32_t i = 0;
    json_object_foreach(v, k, b)
    {
        char *end;
        long id = strtol(k, &end, 10);
        if (*k == '\0' || *end != '\0' || id < 0 || id >= n_vocab)
            return refuse(e, REALM_ERR_INVAL, d->key,
                          "'logit_bias' keys must be token ids 0..%d, not '%.32s'", n_vocab - 1, k);
        if (!json_is_number(b) || !(json_number_value(b) >= -100 && json_number_value(b) <= 100))
            return refuse(e, REALM_ERR_INVAL, d->key,
                          "'logit_bias' values must be numbers between -100 and 100");
        o->bias[i++] = (realm_logit_bias){(int32_t)id, (float)json_number_value(b)};
    }
    o->gen.sampling.logit_bias = o->bias;
    o->gen.sampling.n_logit_bias = i;
    return 0;
}

/* "logprobs": true (chat) or an int k (completions' legacy form). */
static int set_logprobs(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                        realm__opt_error *e)
{
    if (json_is_boolean(v)) {
        if (json_is_true(v) && o->n_top < 0)
            o->n_top = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > REALM_SAMPLER_MAX_PROBS)
        return refuse(e, REALM_ERR_INVAL, d->key,
                      "'logprobs' must be true, false or an integer between 0 and %d",
                      REALM_SAMPLER_MAX_PROBS);
    if ((int)json_integer_value(v) > o->n_top)
        o->n_top = (int)json_integer_value(v);
    return 0;
}

static int set_top_logprobs(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                            realm__opt_error *e)
{
    double x = 0;
    int rc = check_number(v, d, true, &x, e);
    if (rc == 0)
        o->n_top = (int)x;
    return rc;
}

static int set_stop(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                    realm__opt_error *e)
{
    if (json_is_string(v)) {
        if (json_string_length(v) > 0)
            o->stops[o->gen.n_stop++] = json_string_value(v);
    } else if (json_is_array(v) && json_array_size(v) <= REALM__MAX_STOP) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *s = json_array_get(v, i);
            if (!json_is_string(s))
                return refuse(e, REALM_ERR_INVAL, d->key,
                              "'stop' must be a string or an array of at most %d strings",
                              REALM__MAX_STOP);
            if (json_string_length(s) > 0)
                o->stops[o->gen.n_stop++] = json_string_value(s);
        }
    } else {
        return refuse(e, REALM_ERR_INVAL, d->key,
                      "'stop' must be a string or an array of at most %d strings", REALM__MAX_STOP);
    }
    o->gen.stop = o->gen.n_stop ? o->stops : NULL;
    return 0;
}

static int set_n(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                 realm__opt_error *e)
{
    double x = 0;
    int rc = check_number(v, d, true, &x, e);
    if (rc == 0)
        o->n_choices = (int32_t)x;
    return rc;
}

static int set_tools(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                     realm__opt_error *e)
{
    if (!json_is_array(v))
        return refuse(e, REALM_ERR_INVAL, d->key, "'%s' must be an array", d->key);
    if (json_array_size(v) > 0)
        return refuse(e, REALM_ERR_UNSUPPORTED, d->key,
                      "'%s' is not supported yet (tool calling); send an empty list or none",
                      d->key);
    return 0;
}

static int set_tool_choice(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                           realm__opt_error *e)
{
    const char *s = json_string_value(v);
    if (s && (strcmp(s, "none") == 0 || strcmp(s, "auto") == 0))
        return 0;
    if (json_is_object(v) || (s && strcmp(s, "required") == 0))
        return refuse(e, REALM_ERR_UNSUPPORTED, d->key,
                      "'tool_choice' that requires a tool is not supported yet (tool calling)");
    return refuse(e, REALM_ERR_INVAL, d->key,
                  "'tool_choice' must be \"none\", \"auto\", \"required\" or an object");
}

static int set_response_format(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                               realm__opt_error *e)
{
    const char *type = json_string_value(json_object_get(v, "type"));
    if (!json_is_object(v) || type == NULL)
        return refuse(e, REALM_ERR_INVAL, d->key,
                      "'response_format' must be an object with a \"type\"");
    if (strcmp(type, "text") != 0)
        return refuse(e, REALM_ERR_UNSUPPORTED, d->key,
                      "'response_format' of type '%.40s' is not supported yet (only \"text\")",
                      type);
    return 0;
}

static int set_keep_alive(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                          realm__opt_error *e)
{
    if (json_is_number(v)) {
        o->keep_alive_s = json_number_value(v);
    } else if (!json_is_string(v) ||
               realm_parse_duration(json_string_value(v), &o->keep_alive_s) < 0) {
        return refuse(e, REALM_ERR_INVAL, d->key,
                      "'keep_alive' must be a duration such as \"5m\", \"30s\", \"1h\", a number "
                      "of seconds, 0 (unload when idle) or -1 (never)");
    }
    o->has_keep_alive = true;
    return 0;
}

static int set_adapter(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                       realm__opt_error *e)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 128 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return refuse(e, REALM_ERR_INVAL, d->key,
                      "'adapter' must be the name of a LoRA adapter (1..128 bytes)");
    o->adapter = json_string_value(v);
    return 0;
}

static int set_adapter_scale(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                             realm__opt_error *e)
{
    double x = 0;
    int rc = check_number(v, d, false, &x, e);
    if (rc == 0) {
        o->adapter_scale = (float)x;
        o->has_adapter_scale = true;
    }
    return rc;
}

static int set_lora(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                    realm__opt_error *e)
{
    if (!json_is_array(v) || json_array_size(v) > REALM__MAX_LORA)
        return refuse(e, REALM_ERR_INVAL, d->key,
                      "'lora' must be an array of at most %d objects {\"id\", \"scale\"}",
                      REALM__MAX_LORA);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *it = json_array_get(v, i), *id = json_object_get(it, "id"),
               *scale = json_object_get(it, "scale");
        char param[40];
        snprintf(param, sizeof param, "lora[%zu]", i);
        if (!json_is_object(it))
            return refuse(e, REALM_ERR_INVAL, param, "'%s' must be an object {\"id\", \"scale\"}",
                          param);
        snprintf(param, sizeof param, "lora[%zu].id", i);
        if (!json_is_integer(id) || json_integer_value(id) < 0)
            return refuse(e, REALM_ERR_INVAL, param,
                          "'%s' must be an adapter's id (an integer >= 0, as GET /lora-adapters "
                          "numbers them)",
                          param);
        snprintf(param, sizeof param, "lora[%zu].scale", i);
        const double x = scale ? json_number_value(scale) : 1.0;
        if ((scale && !json_is_number(scale)) || !(fabs(x) <= REALM__LORA_SCALE_MAX))
            return refuse(e, REALM_ERR_INVAL, param, "'%s' must be a number from -%g to %g", param,
                          REALM__LORA_SCALE_MAX, REALM__LORA_SCALE_MAX);
        o->lora_id[o->n_lora] = (int64_t)json_integer_value(id);
        o->lora_scale[o->n_lora++] = (float)x;
    }
    return 0;
}

/* {"mode": "off"|"lookup"|"draft"|"default", "n_max", "n_min", "p_min"}: every
 * member optional, each refused by its own name. */
static int set_speculative(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                           realm__opt_error *e)
{
    if (!json_is_object(v))
        return refuse(e, REALM_ERR_INVAL, d->key,
                      "'speculative' must be an object {\"mode\", \"n_max\", \"n_min\", "
                      "\"p_min\"}");
    realm_spec_options *so = &o->gen.speculative;
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x)
    {
        char param[64];
        snprintf(param, sizeof param, "speculative.%.40s", key);
        if (strcmp(key, "mode") == 0) {
            const int m = json_is_string(x) ? realm_spec_mode_parse(json_string_value(x)) : -1;
            if (m < 0)
                return refuse(e, REALM_ERR_INVAL, param,
                              "'%s' must be \"off\", \"lookup\", \"draft\" or \"default\"", param);
            so->mode = m;
        } else if (strcmp(key, "n_max") == 0 || strcmp(key, "n_min") == 0) {
            const bool max = key[2] == 'm' && key[3] == 'a';
            const double n = json_is_integer(x) ? json_number_value(x) : -1;
            if (!(n >= (max ? 1 : 0) && n <= REALM_SPEC_MAX_DRAFT))
                return refuse(e, REALM_ERR_INVAL, param, "'%s' must be an integer from %d to %d",
                              param, max ? 1 : 0, REALM_SPEC_MAX_DRAFT);
            *(max ? &so->n_max : &so->n_min) = (int32_t)n;
        } else if (strcmp(key, "p_min") == 0) {
            const double p = json_is_number(x) ? json_number_value(x) : -1;
            if (!(p >= 0 && p <= 1))
                return refuse(e, REALM_ERR_INVAL, param, "'%s' must be a number from 0 to 1",
                              param);
            so->p_min = (float)p;
        } else {
            return refuse(e, REALM_ERR_INVAL, param,
                          "'%s' is not a speculative option (mode, n_max, n_min, p_min)", param);
        }
    }
    return 0;
}

/* ---- the table ------------------------------------------------------------ */

#define OFF(field) offsetof(realm__gen_opts, field)
#define INF        HUGE_VAL

static const opt_desc opts[] = {
    {"prompt", K_CUSTOM, 0, 0, 0, set_prompt, "string", "",
     "a raw prompt: BOS added as the vocabulary says, special tokens written in it are text "
     "unless `parse_special`"},
    {"messages", K_CUSTOM, 0, 0, 0, set_messages, "array of `{\"role\",\"content\"}`", "",
     "a conversation, rendered with the model's chat template: the template's markers become "
     "special tokens, the messages' text never does. Roles `system`, `developer` (as system), "
     "`user`, `assistant` (a last assistant message is continued); `content` a string or an "
     "array of `{\"type\":\"text\",\"text\"}` parts (joined with newlines). Give `prompt` or "
     "`messages`"},
    {"chat_template", K_CUSTOM, 0, 0, 0, set_template, "string", "the model's",
     "render `messages` with this template instead (a name `realm chat-template` knows)"},
    {"parse_special", K_BOOL, 0, 0, OFF(parse_special), NULL, "boolean", "false",
     "recognise control tokens written in `prompt`"},
    {"max_tokens", K_CUSTOM, 1, INT32_MAX, 0, set_max_tokens, "integer", "no limit",
     "most tokens to generate; without it, until end of generation or the context is full "
     "(the tenant's `max_tokens` caps both)"},
    {"max_completion_tokens", K_CUSTOM, 1, INT32_MAX, 0, set_max_tokens, "integer", "no limit",
     "OpenAI's newer name of `max_tokens` (wins when both are given)"},
    {"temperature", K_NUMBER, 0, 2, OFF(gen.sampling.temperature), NULL, "number", "0.8",
     "0 is greedy"},
    {"top_p", K_NUMBER, 0, 1, OFF(gen.sampling.top_p), NULL, "number", "0.95",
     "nucleus sampling; 1 is off"},
    {"min_p", K_NUMBER, 0, 1, OFF(gen.sampling.min_p), NULL, "number", "0.05",
     "drop tokens below this fraction of the best one's probability; 0 is off"},
    {"top_k", K_INT, 0, INT32_MAX, OFF(gen.sampling.top_k), NULL, "integer", "0",
     "keep the k most likely tokens; 0 is off"},
    {"typical_p", K_NUMBER, 0, 1, OFF(gen.sampling.typical_p), NULL, "number", "1",
     "locally typical sampling; 1 is off"},
    {"repeat_penalty", K_NUMBER, 0, 10, OFF(gen.sampling.repeat_penalty), NULL, "number", "1",
     "divide the logits of recent tokens (llama.cpp's rule); 1 is off"},
    {"repeat_last_n", K_INT, 0, 65536, OFF(gen.sampling.penalty_last_n), NULL, "integer", "64",
     "tokens the penalties look back over"},
    {"presence_penalty", K_NUMBER, -2, 2, OFF(gen.sampling.presence_penalty), NULL, "number", "0",
     "OpenAI's presence penalty"},
    {"frequency_penalty", K_NUMBER, -2, 2, OFF(gen.sampling.frequency_penalty), NULL, "number", "0",
     "OpenAI's frequency penalty"},
    {"seed", K_CUSTOM, 0, 0, 0, set_seed, "integer", "random",
     "sampler seed: the same seed, prompt and options give the same tokens; -1 is random"},
    {"logit_bias", K_CUSTOM, 0, 0, 0, set_logit_bias, "object", "",
     "token id (as a string) to a bias between -100 and 100 added to its logit"},
    {"logprobs", K_CUSTOM, 0, 0, 0, set_logprobs, "boolean or integer 0..20", "false",
     "record each token's log-probability for `gen_tokens` (an integer k: with k "
     "alternatives)"},
    {"top_logprobs", K_CUSTOM, 0, REALM_SAMPLER_MAX_PROBS, 0, set_top_logprobs, "integer", "0",
     "alternatives per token (implies `logprobs`)"},
    {"stop", K_CUSTOM, 0, 0, 0, set_stop, "string or array of at most 8 strings", "",
     "stop strings: generation ends before them and they are never sent (empty ones are "
     "ignored)"},
    {"ignore_eos", K_BOOL, 0, 0, OFF(gen.ignore_eos), NULL, "boolean", "false",
     "go on past end-of-generation tokens"},
    {"n", K_CUSTOM, 1, 8, 0, set_n, "integer", "1",
     "choices: the prompt is computed once, each choice sampled on its own (with a seed, choice "
     "i uses seed + i); `gen_next` takes their pieces in turn and `gen_choice` says whose"},
    {"keep_alive", K_CUSTOM, 0, 0, 0, set_keep_alive, "string or number", "the server's",
     "how long the model stays loaded once idle, as Ollama takes it: `\"5m\"`, `\"1h\"`, "
     "seconds, `0` unloads it when idle, `-1` never"},
    {"tools", K_CUSTOM, 0, 0, 0, set_tools, "array", "",
     "tool calling is not supported yet: only an empty list is accepted"},
    {"functions", K_CUSTOM, 0, 0, 0, set_tools, "array", "",
     "the legacy form of `tools`: only an empty list is accepted"},
    {"tool_choice", K_CUSTOM, 0, 0, 0, set_tool_choice, "string or object", "",
     "`\"none\"` and `\"auto\"` are accepted; one requiring a tool is refused"},
    {"response_format", K_CUSTOM, 0, 0, 0, set_response_format, "object", "",
     "only `{\"type\":\"text\"}` is supported yet"},
    {"adapter", K_CUSTOM, 0, 0, 0, set_adapter, "string", "",
     "a LoRA adapter by name (`/v1/models` lists them with their `parent`), applied on top of "
     "the model, which must be its base; the tenant must be allowed the adapter itself. A model "
     "opened by an adapter's name already applies that adapter"},
    {"adapter_scale", K_CUSTOM, -REALM__LORA_SCALE_MAX, REALM__LORA_SCALE_MAX, 0, set_adapter_scale,
     "number", "1",
     "the scale of `adapter` (or of the adapter the model was opened as); 0 is none"},
    {"speculative", K_CUSTOM, 0, 0, 0, set_speculative,
     "object `{\"mode\", \"n_max\", \"n_min\", \"p_min\"}`", "the model's",
     "speculative decoding: `mode` `\"off\"`, `\"lookup\"` (n-grams of the prompt and output), "
     "`\"draft\"` (the model's draft model, `realm serve --draft`; refused without one) or "
     "`\"default\"` (the server's choice for the model); `n_max` most drafted tokens per step "
     "(1..32), `n_min` fewer than this and a step does not speculate, `p_min` a draft model "
     "stops below this probability. Greedy and seeded output is the same as without it, except "
     "a draft model's sampled drafts: the same distribution, other tokens, yet for a seed the "
     "same tokens whatever `n_max`, `n_min`, `p_min` and the load"},
    {"speculative.n_max", K_INT, 1, REALM_SPEC_MAX_DRAFT, OFF(gen.speculative.n_max), NULL,
     "integer", "the server's", "`speculative`'s `n_max` as llama-server names it"},
    {"speculative.n_min", K_INT, 0, REALM_SPEC_MAX_DRAFT, OFF(gen.speculative.n_min), NULL,
     "integer", "the server's", "`speculative`'s `n_min` as llama-server names it"},
    {"speculative.p_min", K_NUMBER, 0, 1, OFF(gen.speculative.p_min), NULL, "number",
     "the server's", "`speculative`'s `p_min` as llama-server names it"},
    {"lora", K_CUSTOM, 0, 0, 0, set_lora, "array of `{\"id\", \"scale\"}`", "",
     "llama-server's per-request adapters: ids as `GET /lora-adapters` numbers them, each with "
     "its scale (default 1); added to the adapters above, at most 8 in all, each of the model "
     "and allowed to the tenant"},
};

/* ---- parsing ---------------------------------------------------------------- */

void realm__gen_opts_free(realm__gen_opts *o)
{
    if (o->joined)
        for (size_t i = 0; i < o->n_msgs; i++)
            free(o->joined[i]);
    free(o->joined);
    free(o->msgs);
    free(o->bias);
    json_decref(o->root);
    memset(o, 0, sizeof *o);
}

static int parse_one(realm__gen_opts *o, json_t *v, const opt_desc *d, int32_t n_vocab,
                     realm__opt_error *e)
{
    double x = 0;
    int rc;
    switch (d->kind) {
    case K_NUMBER:
        if ((rc = check_number(v, d, false, &x, e)) == 0)
            *(float *)((char *)o + d->off) = (float)x;
        return rc;
    case K_INT:
        if ((rc = check_number(v, d, true, &x, e)) == 0)
            *(int32_t *)((char *)o + d->off) = (int32_t)x;
        return rc;
    case K_BOOL:
        if (!json_is_boolean(v))
            return refuse(e, REALM_ERR_INVAL, d->key, "'%s' must be true or false", d->key);
        *(bool *)((char *)o + d->off) = json_is_true(v);
        return 0;
    default:
        return d->set(o, v, d, n_vocab, e);
    }
}

int realm__gen_opts_parse(const char *json, size_t len, int32_t n_vocab, realm__gen_opts *o,
                          realm__opt_error *err)
{
    memset(o, 0, sizeof *o);
    memset(err, 0, sizeof *err);
    realm_gen_options_init(&o->gen);
    o->n_choices = 1;
    o->n_top = -1;
    o->adapter_scale = 1.0f;
    json_error_t jerr;
    o->root = json_loadb(json, len, 0, &jerr);
    if (!json_is_object(o->root)) {
        int rc = o->root ? refuse(err, REALM_ERR_INVAL, "", "options must be a JSON object")
                         : refuse(err, REALM_ERR_INVAL, "",
                                  "options are not valid JSON: %s (at byte %d)", jerr.text,
                                  jerr.position);
        realm__gen_opts_free(o);
        return rc;
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof opts / sizeof *opts && rc == 0; i++) {
        json_t *v = json_object_get(o->root, opts[i].key);
        if (v != NULL && !json_is_null(v))
            rc = parse_one(o, v, &opts[i], n_vocab, err);
    }
    if (rc == 0 && o->msgs == NULL && o->prompt == NULL)
        rc = refuse(err, REALM_ERR_INVAL, "messages",
                    "give 'prompt' (a string) or 'messages' (a non-empty array)");
    if (rc == 0 && o->msgs != NULL && o->prompt != NULL)
        rc = refuse(err, REALM_ERR_INVAL, "prompt", "give 'prompt' or 'messages', not both");
    if (rc == 0 && o->n_top >= 0)
        o->gen.sampling.n_probs = o->n_top > 0 ? o->n_top : 1; /* 1: the chosen one's */
    if (rc < 0)
        realm__gen_opts_free(o);
    return rc;
}

/* ---- documentation ------------------------------------------------------------ */

char *realm__gen_opts_markdown(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return NULL;
    fprintf(f, "| key | type | range | default | meaning |\n| --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        const opt_desc *d = &opts[i];
        char range[96] = "";
        if (d->kind == K_NUMBER || d->kind == K_INT || (d->kind == K_CUSTOM && d->max > d->min))
            range_text(d, range, sizeof range);
        fprintf(f, "| `%s` | %s | %s | %s | %s |\n", d->key, d->type, range[0] ? range + 1 : "",
                d->def, d->doc);
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
