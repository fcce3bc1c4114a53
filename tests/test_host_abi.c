/*
 * The host ABI's single lists checked against everything that repeats
 * them: the generate options table (every option: wrong type, out of range,
 * aliases, unknown keys, what is refused by name) against its parser and
 * docs/host-abi.md; the host function list against the docs and the guest
 * SDK's imports; the error codes against the SDK's.
 */
#include <jansson.h>
#include <stdbool.h>

#include "realm/error.h"
#include "sandbox/host_internal.h"
#include "sandbox/options_internal.h"
#include "test_util.h"

#define N_VOCAB 512

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

static const char *source_file(const char *rel)
{
    static char buf[4][4096];
    static int slot;
    const char *dir = getenv("REALM_SOURCE_DIR");
    char *b = buf[slot++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir ? dir : "..", rel);
    return b;
}

/* Parse json; on failure check the code, the param and that the message
 * contains want (when not NULL). */
static int parse(const char *json, realm__gen_opts *o, realm__opt_error *e)
{
    return realm__gen_opts_parse(json, strlen(json), N_VOCAB, o, e);
}

#define CHECK_REFUSED(json, want_rc, want_param, want_msg)                                         \
    do {                                                                                           \
        realm__gen_opts o_;                                                                        \
        realm__opt_error e_;                                                                       \
        const char *m_ = (want_msg);                                                               \
        int rc_ = parse(json, &o_, &e_);                                                           \
        CHECK_MSG(rc_ == (want_rc), "%s: rc %d, want %d (%s)", json, rc_, want_rc, e_.message);    \
        CHECK_MSG(strcmp(e_.param, want_param) == 0, "%s: param '%s', want '%s'", json, e_.param,  \
                  want_param);                                                                     \
        CHECK_MSG(m_ == NULL || strstr(e_.message, m_) != NULL, "%s: message '%s' lacks '%s'",     \
                  json, e_.message, m_ ? m_ : "");                                                 \
        if (rc_ == 0)                                                                              \
            realm__gen_opts_free(&o_);                                                             \
    } while (0)

#define PROMPT "\"prompt\":\"hi\""

/* One row per numeric option: a value in range, one below, one above, and
 * the message's range text. */
typedef struct num_case {
    const char *key;
    const char *good, *low, *high;
    const char *range;
    bool integer;
} num_case;

static void test_numbers(void)
{
    static const num_case cases[] = {
        {"temperature", "1.5", "-0.1", "2.01", "a number between 0 and 2", false},
        {"top_p", "0.5", "-1", "1.5", "a number between 0 and 1", false},
        {"min_p", "0.1", "-0.5", "1.01", "a number between 0 and 1", false},
        {"typical_p", "0.9", "-0.5", "3", "a number between 0 and 1", false},
        {"repeat_penalty", "1.1", "-1", "11", "a number between 0 and 10", false},
        {"presence_penalty", "0.5", "-2.5", "2.5", "a number between -2 and 2", false},
        {"frequency_penalty", "-0.5", "-3", "3", "a number between -2 and 2", false},
        {"top_k", "40", "-1", "3000000000", "an integer between 0 and 2147483647", true},
        {"repeat_last_n", "32", "-1", "70000", "an integer between 0 and 65536", true},
        {"max_tokens", "16", "0", "3000000000", "an integer between 1 and 2147483647", true},
        {"max_completion_tokens", "16", "-5", "3000000000", "an integer between 1 and 2147483647",
         true},
        {"top_logprobs", "5", "-1", "21", "an integer between 0 and 20", true},
        {"n", "1", "0", "9", "an integer between 1 and 8", true},
        {"adapter_scale", "0.5", "-101", "100.5", "a number between -100 and 100", false},
    };
    char json[256], want[160];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const num_case *c = &cases[i];
        realm__gen_opts o;
        realm__opt_error e;
        snprintf(json, sizeof json, "{" PROMPT ",\"%s\":%s}", c->key, c->good);
        CHECK_MSG(parse(json, &o, &e) == 0, "%s: %s", json, e.message);
        realm__gen_opts_free(&o);
        snprintf(want, sizeof want, "'%s' must be %s", c->key, c->range);
        const char *bad[] = {c->low, c->high, "\"1\"", "true", "[1]", "{}"};
        for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
            snprintf(json, sizeof json, "{" PROMPT ",\"%s\":%s}", c->key, bad[b]);
            CHECK_REFUSED(json, REALM_ERR_INVAL, c->key, want);
        }
        if (c->integer) { /* a fraction is not an integer */
            snprintf(json, sizeof json, "{" PROMPT ",\"%s\":1.5}", c->key);
            CHECK_REFUSED(json, REALM_ERR_INVAL, c->key, want);
        }
        /* null is absent */
        snprintf(json, sizeof json, "{" PROMPT ",\"%s\":null}", c->key);
        CHECK_MSG(parse(json, &o, &e) == 0, "%s: %s", json, e.message);
        realm__gen_opts_free(&o);
    }
    /* the issue's own example, word for word */
    CHECK_REFUSED("{" PROMPT ",\"temperature\":\"hot\"}", REALM_ERR_INVAL, "temperature",
                  "'temperature' must be a number between 0 and 2");
}

static void test_values(void)
{
    realm__gen_opts o;
    realm__opt_error e;
    const char *all = "{\"prompt\":\"hi\",\"max_tokens\":7,\"temperature\":0.25,\"top_p\":0.5,"
                      "\"min_p\":0.125,\"top_k\":3,\"typical_p\":0.75,\"repeat_penalty\":1.5,"
                      "\"repeat_last_n\":9,\"presence_penalty\":-1,\"frequency_penalty\":1,"
                      "\"seed\":42,\"stop\":[\"a\",\"\",\"bc\"],\"ignore_eos\":true,"
                      "\"parse_special\":true,\"logit_bias\":{\"5\":-100,\"7\":2.5},"
                      "\"logprobs\":true,\"top_logprobs\":3,\"n\":1,\"tools\":[],"
                      "\"tool_choice\":\"auto\",\"response_format\":{\"type\":\"text\"},"
                      "\"chat_template\":\"chatml\",\"stream\":true,\"model\":\"x\",\"user\":\"u\","
                      "\"no_such_key\":{\"deep\":[1,2]}}";
    CHECK_RC(parse(all, &o, &e), 0);
    CHECK_EQ_INT(o.gen.max_tokens, 7);
    CHECK(o.has_max_tokens);
    CHECK(o.gen.sampling.temperature == 0.25f);
    CHECK(o.gen.sampling.top_p == 0.5f);
    CHECK(o.gen.sampling.min_p == 0.125f);
    CHECK_EQ_INT(o.gen.sampling.top_k, 3);
    CHECK(o.gen.sampling.typical_p == 0.75f);
    CHECK(o.gen.sampling.repeat_penalty == 1.5f);
    CHECK_EQ_INT(o.gen.sampling.penalty_last_n, 9);
    CHECK(o.gen.sampling.presence_penalty == -1.0f);
    CHECK(o.gen.sampling.frequency_penalty == 1.0f);
    CHECK_EQ_INT(o.gen.sampling.seed, 42);
    CHECK_EQ_INT(o.gen.n_stop, 2); /* the empty one is ignored */
    CHECK_EQ_STR(o.gen.stop[0], "a");
    CHECK_EQ_STR(o.gen.stop[1], "bc");
    CHECK(o.gen.ignore_eos);
    CHECK(o.parse_special);
    CHECK_EQ_INT(o.gen.sampling.n_logit_bias, 2);
    CHECK_EQ_INT(o.n_top, 3);
    CHECK_EQ_INT(o.gen.sampling.n_probs, 3);
    CHECK_EQ_STR(o.chat_template, "chatml");
    CHECK_EQ_STR(o.prompt, "hi");
    CHECK(o.msgs == NULL);
    realm__gen_opts_free(&o);

    /* defaults: no limit, the engine's sampling defaults, no log-probabilities */
    CHECK_RC(parse("{" PROMPT "}", &o, &e), 0);
    realm_gen_options d;
    realm_gen_options_init(&d);
    CHECK(!o.has_max_tokens);
    CHECK_EQ_INT(o.gen.max_tokens, 0);
    CHECK(o.gen.sampling.temperature == d.sampling.temperature);
    CHECK(o.gen.sampling.seed == REALM_SEED_RANDOM);
    CHECK_EQ_INT(o.n_top, -1);
    CHECK_EQ_INT(o.gen.sampling.n_probs, 0);
    realm__gen_opts_free(&o);

    /* max_completion_tokens is max_tokens, and wins */
    CHECK_RC(parse("{" PROMPT ",\"max_completion_tokens\":12}", &o, &e), 0);
    CHECK_EQ_INT(o.gen.max_tokens, 12);
    realm__gen_opts_free(&o);
    CHECK_RC(parse("{" PROMPT ",\"max_tokens\":5,\"max_completion_tokens\":12}", &o, &e), 0);
    CHECK_EQ_INT(o.gen.max_tokens, 12);
    realm__gen_opts_free(&o);

    /* seed -1 is random; a legacy logprobs count; a stop string alone */
    CHECK_RC(parse("{" PROMPT ",\"seed\":-1,\"logprobs\":4,\"stop\":\"x\"}", &o, &e), 0);
    CHECK(o.gen.sampling.seed == REALM_SEED_RANDOM);
    CHECK_EQ_INT(o.n_top, 4);
    CHECK_EQ_INT(o.gen.n_stop, 1);
    realm__gen_opts_free(&o);
    CHECK_RC(parse("{" PROMPT ",\"keep_alive\":\"1h30m\"}", &o, &e), 0);
    CHECK(o.has_keep_alive && o.keep_alive_s == 5400);
    realm__gen_opts_free(&o);
    CHECK_RC(parse("{" PROMPT ",\"keep_alive\":-1}", &o, &e), 0);
    CHECK(o.has_keep_alive && o.keep_alive_s == -1);
    realm__gen_opts_free(&o);
    CHECK_RC(parse("{" PROMPT ",\"n\":3}", &o, &e), 0);
    CHECK_EQ_INT(o.n_choices, 3);
    realm__gen_opts_free(&o);
    CHECK_RC(parse("{" PROMPT ",\"logprobs\":false}", &o, &e), 0);
    CHECK_EQ_INT(o.n_top, -1);
    realm__gen_opts_free(&o);
}

static void test_refusals(void)
{
    /* JSON itself */
    CHECK_REFUSED("{\"prompt\":", REALM_ERR_INVAL, "", "not valid JSON");
    CHECK_REFUSED("[1,2]", REALM_ERR_INVAL, "", "must be a JSON object");
    /* prompt / messages */
    CHECK_REFUSED("{}", REALM_ERR_INVAL, "messages", "give 'prompt'");
    CHECK_REFUSED("{\"prompt\":3}", REALM_ERR_INVAL, "prompt", "'prompt' must be a string");
    CHECK_REFUSED("{\"prompt\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}",
                  REALM_ERR_INVAL, "prompt", "not both");
    CHECK_REFUSED("{\"messages\":[]}", REALM_ERR_INVAL, "messages", "non-empty array");
    CHECK_REFUSED("{\"messages\":\"hi\"}", REALM_ERR_INVAL, "messages", "non-empty array");
    CHECK_REFUSED("{\"messages\":[3]}", REALM_ERR_INVAL, "messages[0]", "must be an object");
    CHECK_REFUSED("{\"messages\":[{\"content\":\"x\"}]}", REALM_ERR_INVAL, "messages[0].role",
                  "must be a string");
    CHECK_REFUSED("{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", REALM_ERR_INVAL,
                  "messages[0].role", "\"developer\"");
    CHECK_REFUSED("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"tool\","
                  "\"content\":\"y\"}]}",
                  REALM_ERR_UNSUPPORTED, "messages[1].role", "tool messages");
    CHECK_REFUSED("{\"messages\":[{\"role\":\"user\"}]}", REALM_ERR_INVAL, "messages[0].content",
                  "a string or an array of text parts");
    CHECK_REFUSED("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                  "\"a\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
                  REALM_ERR_UNSUPPORTED, "messages[0].content[1].type", "'image_url'");
    CHECK_REFUSED("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
                  REALM_ERR_INVAL, "messages[0].content[0]", ".text' must be a string");
    CHECK_REFUSED("{\"messages\":[{\"role\":\"user\",\"content\":[\"a\"]}]}", REALM_ERR_INVAL,
                  "messages[0].content[0]", "\"type\"");
    CHECK_REFUSED("{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
                  "[{\"id\":\"c\"}]}]}",
                  REALM_ERR_UNSUPPORTED, "messages[0].tool_calls", "tool calls");
    /* other options */
    CHECK_REFUSED("{" PROMPT ",\"chat_template\":\"nope\"}", REALM_ERR_INVAL, "chat_template",
                  "chatml");
    CHECK_REFUSED("{" PROMPT ",\"chat_template\":5}", REALM_ERR_INVAL, "chat_template", NULL);
    CHECK_REFUSED("{" PROMPT ",\"parse_special\":1}", REALM_ERR_INVAL, "parse_special",
                  "'parse_special' must be true or false");
    CHECK_REFUSED("{" PROMPT ",\"ignore_eos\":\"yes\"}", REALM_ERR_INVAL, "ignore_eos",
                  "'ignore_eos' must be true or false");
    CHECK_REFUSED("{" PROMPT ",\"seed\":1.5}", REALM_ERR_INVAL, "seed",
                  "'seed' must be an integer");
    CHECK_REFUSED("{" PROMPT ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}",
                  REALM_ERR_INVAL, "stop", "at most 8 strings");
    CHECK_REFUSED("{" PROMPT ",\"stop\":[\"a\",1]}", REALM_ERR_INVAL, "stop", "at most 8");
    CHECK_REFUSED("{" PROMPT ",\"stop\":7}", REALM_ERR_INVAL, "stop", NULL);
    CHECK_REFUSED("{" PROMPT ",\"logit_bias\":[1]}", REALM_ERR_INVAL, "logit_bias", "an object");
    CHECK_REFUSED("{" PROMPT ",\"logit_bias\":{\"512\":1}}", REALM_ERR_INVAL, "logit_bias",
                  "0..511");
    CHECK_REFUSED("{" PROMPT ",\"logit_bias\":{\"x1\":1}}", REALM_ERR_INVAL, "logit_bias", "'x1'");
    CHECK_REFUSED("{" PROMPT ",\"logit_bias\":{\"3\":101}}", REALM_ERR_INVAL, "logit_bias",
                  "between -100 and 100");
    CHECK_REFUSED("{" PROMPT ",\"logprobs\":21}", REALM_ERR_INVAL, "logprobs", "0 and 20");
    CHECK_REFUSED("{" PROMPT ",\"logprobs\":\"yes\"}", REALM_ERR_INVAL, "logprobs", NULL);
    CHECK_REFUSED("{" PROMPT ",\"keep_alive\":\"soon\"}", REALM_ERR_INVAL, "keep_alive",
                  "'keep_alive' must be a duration");
    CHECK_REFUSED("{" PROMPT ",\"keep_alive\":true}", REALM_ERR_INVAL, "keep_alive", NULL);
    /* known, not supported yet: refused by name */

    CHECK_REFUSED("{" PROMPT ",\"tools\":[{\"type\":\"function\"}]}", REALM_ERR_UNSUPPORTED,
                  "tools", "tool calling");
    CHECK_REFUSED("{" PROMPT ",\"tools\":{}}", REALM_ERR_INVAL, "tools", "an array");
    CHECK_REFUSED("{" PROMPT ",\"functions\":[{\"name\":\"f\"}]}", REALM_ERR_UNSUPPORTED,
                  "functions", NULL);
    CHECK_REFUSED("{" PROMPT ",\"tool_choice\":\"required\"}", REALM_ERR_UNSUPPORTED, "tool_choice",
                  "requires a tool");
    CHECK_REFUSED("{" PROMPT ",\"tool_choice\":{\"type\":\"function\"}}", REALM_ERR_UNSUPPORTED,
                  "tool_choice", NULL);
    CHECK_REFUSED("{" PROMPT ",\"tool_choice\":\"maybe\"}", REALM_ERR_INVAL, "tool_choice", NULL);
    CHECK_REFUSED("{" PROMPT ",\"response_format\":{\"type\":\"json_object\"}}",
                  REALM_ERR_UNSUPPORTED, "response_format", "'json_object'");
    CHECK_REFUSED("{" PROMPT ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}",
                  REALM_ERR_UNSUPPORTED, "response_format", NULL);
    CHECK_REFUSED("{" PROMPT ",\"response_format\":\"text\"}", REALM_ERR_INVAL, "response_format",
                  NULL);
}

static void test_messages(void)
{
    realm__gen_opts o;
    realm__opt_error e;
    CHECK_RC(parse("{\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
                   "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                   "{\"type\":\"text\",\"text\":\"b\"}],\"name\":\"bob\"},"
                   "{\"role\":\"assistant\",\"content\":\"ok\"}]}",
                   &o, &e),
             0);
    CHECK_EQ_INT(o.n_msgs, 3);
    CHECK_EQ_INT(o.msgs[0].role, REALM_CHAT_SYSTEM);
    CHECK_EQ_STR(o.msgs[0].content, "be brief");
    CHECK_EQ_INT(o.msgs[1].role, REALM_CHAT_USER);
    CHECK_EQ_STR(o.msgs[1].content, "a\nb");
    CHECK_EQ_INT(o.msgs[2].role, REALM_CHAT_ASSISTANT);
    CHECK(o.prompt == NULL);
    realm__gen_opts_free(&o);
}

/* The options section of docs/host-abi.md is the table's own output. */
static void test_options_doc(void)
{
    char *doc = slurp(source_file("docs/host-abi.md"));
    char *md = realm__gen_opts_markdown();
    CHECK(doc != NULL && md != NULL);
    if (doc && md) {
        const char *begin = "<!-- generate-options:begin (realm module options) -->\n";
        const char *end = "<!-- generate-options:end -->";
        char *a = strstr(doc, begin), *b = a ? strstr(a, end) : NULL;
        CHECK_MSG(a && b, "docs/host-abi.md lacks the generate-options markers");
        if (a && b) {
            a += strlen(begin);
            *b = '\0';
            CHECK_MSG(strcmp(a, md) == 0,
                      "docs/host-abi.md's options table differs from the table in "
                      "src/sandbox/options.c: regenerate it with `realm module options`");
        }
    }
    free(doc);
    free(md);
}

/* Every host function has a row in the docs and an RG_IMPORT in the SDK with
 * its parameter count; nothing else is documented or imported. */
static void test_host_functions(void)
{
    char *doc = slurp(source_file("docs/host-abi.md"));
    char *sdk = slurp(source_file("guest/include/realm_guest.h"));
    CHECK(doc && sdk);
    if (!doc || !sdk) {
        free(doc);
        free(sdk);
        return;
    }
    char row[96];
    for (int i = 0; i < REALM__HOST_FN_COUNT; i++) {
        const realm__host_fn *f = &realm__host_fns[i];
        snprintf(row, sizeof row, "\n| `%s` | ", f->name);
        const char *r = strstr(doc, row);
        CHECK_MSG(r != NULL, "docs/host-abi.md has no row for %s", f->name);
        if (r) { /* the parameters column names n_params parameters */
            const char *p = r + strlen(row), *q = strchr(p, '|');
            uint32_t n = 1;
            for (const char *x = p; q && x < q; x++)
                n += *x == ',';
            CHECK_MSG(q && n == f->n_params, "docs: %s has %u parameters, the table says %u",
                      f->name, n, f->n_params);
        }
        snprintf(row, sizeof row, "RG_IMPORT(%s)", f->name);
        const char *imp = strstr(sdk, row);
        CHECK_MSG(imp != NULL, "realm_guest.h does not import %s", f->name);
        if (imp) { /* the prototype's parameters */
            const char *open = strchr(imp + strlen(row), '('),
                       *close = open ? strchr(open, ')') : 0;
            uint32_t n = 1;
            for (const char *x = open; close && x < close; x++)
                n += *x == ',';
            CHECK_MSG(close && n == f->n_params, "realm_guest.h: rg_%s has %u parameters, want %u",
                      f->name, n, f->n_params);
            snprintf(row, sizeof row, "rg_%s(", f->name);
            CHECK_MSG(open && strncmp(open - strlen(row) + 1, row, strlen(row)) == 0,
                      "realm_guest.h: the import %s is not named rg_%s", f->name, f->name);
        }
    }
    /* no import the host does not have */
    int n_imports = 0;
    for (const char *p = strstr(sdk, "RG_IMPORT("); p; p = strstr(p + 1, "RG_IMPORT(")) {
        if (strncmp(p, "RG_IMPORT(name)", 15) == 0)
            continue; /* the macro's definition */
        n_imports++;
    }
    CHECK_EQ_INT(n_imports, REALM__HOST_FN_COUNT);
    free(doc);
    free(sdk);
}

/* The SDK's RG_ERR_* are the host's REALM_ERR_MAP. */
static void test_error_codes(void)
{
    char *sdk = slurp(source_file("guest/include/realm_guest.h"));
    CHECK(sdk != NULL);
    if (!sdk)
        return;
    char want[64];
    int n_host = 0;
#define XX(name, code, text)                                                                       \
    snprintf(want, sizeof want, "RG_ERR_%s = %d,", #name, code);                                   \
    CHECK_MSG(strstr(sdk, want) != NULL, "realm_guest.h lacks '%s'", want);                        \
    n_host++;
    REALM_ERR_MAP(XX)
#undef XX
    int n_sdk = 0;
    for (const char *p = strstr(sdk, "RG_ERR_"); p; p = strstr(p + 1, "RG_ERR_"))
        n_sdk += strstr(p, " = -") == strchr(p, ' ') && strchr(p, ' ') != NULL;
    CHECK_EQ_INT(n_sdk, n_host);
    free(sdk);
}

/* The LoRA options: adapter by name, llama-server's lora by id and scale. */
static void test_lora_options(void)
{
    realm__gen_opts o;
    realm__opt_error e;
    CHECK_RC(parse("{" PROMPT ",\"adapter\":\"pirate\",\"lora\":[{\"id\":3,\"scale\":-0.5},"
                   "{\"id\":0}]}",
                   &o, &e),
             0);
    CHECK_EQ_STR(o.adapter, "pirate");
    CHECK(o.adapter_scale == 1.0f && !o.has_adapter_scale);
    CHECK_EQ_INT(o.n_lora, 2);
    CHECK(o.lora_id[0] == 3 && o.lora_scale[0] == -0.5f && o.lora_id[1] == 0 &&
          o.lora_scale[1] == 1.0f);
    realm__gen_opts_free(&o);
    CHECK_RC(parse("{" PROMPT ",\"adapter_scale\":0}", &o, &e), 0);
    CHECK(o.has_adapter_scale && o.adapter_scale == 0.0f && o.adapter == NULL);
    realm__gen_opts_free(&o);
    CHECK_REFUSED("{" PROMPT ",\"adapter\":\"\"}", REALM_ERR_INVAL, "adapter", "name of a LoRA");
    CHECK_REFUSED("{" PROMPT ",\"adapter\":3}", REALM_ERR_INVAL, "adapter", "name of a LoRA");
    CHECK_REFUSED("{" PROMPT ",\"lora\":{}}", REALM_ERR_INVAL, "lora", "must be an array");
    CHECK_REFUSED("{" PROMPT ",\"lora\":[{\"id\":0},{\"id\":1},{\"id\":2},{\"id\":3},{\"id\":4},"
                  "{\"id\":5},{\"id\":6},{\"id\":7},{\"id\":8}]}",
                  REALM_ERR_INVAL, "lora", "at most 8");
    CHECK_REFUSED("{" PROMPT ",\"lora\":[1]}", REALM_ERR_INVAL, "lora[0]", "must be an object");
    CHECK_REFUSED("{" PROMPT ",\"lora\":[{\"scale\":1}]}", REALM_ERR_INVAL, "lora[0].id",
                  "an adapter's id");
    CHECK_REFUSED("{" PROMPT ",\"lora\":[{\"id\":0},{\"id\":1.5}]}", REALM_ERR_INVAL, "lora[1].id",
                  "an adapter's id");
    CHECK_REFUSED("{" PROMPT ",\"lora\":[{\"id\":-2}]}", REALM_ERR_INVAL, "lora[0].id", NULL);
    CHECK_REFUSED("{" PROMPT ",\"lora\":[{\"id\":0,\"scale\":\"1\"}]}", REALM_ERR_INVAL,
                  "lora[0].scale", "a number from -100 to 100");
    CHECK_REFUSED("{" PROMPT ",\"lora\":[{\"id\":0,\"scale\":101}]}", REALM_ERR_INVAL,
                  "lora[0].scale", NULL);
    CHECK_RC(parse("{" PROMPT ",\"lora\":[],\"adapter\":null}", &o, &e), 0);
    CHECK(o.n_lora == 0 && o.adapter == NULL);
    realm__gen_opts_free(&o);
}

int main(void)
{
    test_begin("host_abi", 120);
    test_numbers();
    test_values();
    test_refusals();
    test_messages();
    test_lora_options();
    test_options_doc();
    test_host_functions();
    test_error_codes();
    return test_end();
}
