/*
 * Pre-tokenizers of byte-level BPE vocabularies: the regexes that split text
 * into pieces before merging, chosen by tokenizer.ggml.pre, run with PCRE2
 * (UTF + Unicode properties, JIT-compiled where the platform allows).
 *
 * The pattern strings are llama.cpp's (src/llama-vocab.cpp, the commit in
 * ../shared/testdata/README.md), character for character: they are data
 * that must equal the reference for token ids to match. llama.cpp rewrites
 * the case-insensitive groups of the original Hugging Face patterns,
 * "(?i:'s|'t|...)", as "(?:'[sS]|'[tT]|...)"; we keep its form.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_internal.h"
#include "tokenizer/tokenizer_internal.h"

/* clang-format off */
/* LLAMA3 */
static const char *const re_llama3[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* JAIS2 */
static const char *const re_jais2[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}",
    NULL,
};
/* DBRX, SMAUG: same patterns as re_llama3 */
/* DEEPSEEK_LLM */
static const char *const re_deepseek_llm[] = {
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
    NULL,
};
/* DEEPSEEK3_LLM, HUNYUAN_DENSE, JOYAI_LLM */
static const char *const re_deepseek3_llm[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* YOUTU */
static const char *const re_youtu[] = {
    "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* DEEPSEEK_CODER */
static const char *const re_deepseek_coder[] = {
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}",
    NULL,
};
/* FALCON */
static const char *const re_falcon[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]",
    NULL,
};
/* STARCODER, REFACT, COMMAND_R, SMOLLM, CODESHELL, EXAONE, MINERVA */
static const char *const re_starcoder[] = {
    "\\p{N}",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL,
};
/* GPT2, MPT, OLMO, JAIS, TRILLION, GRANITE_DOCLING */
static const char *const re_gpt2[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL,
};
/* STABLELM2, QWEN2, HUNYUAN, SOLAR_OPEN */
static const char *const re_stablelm2[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* QWEN35 */
static const char *const re_qwen35[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* PORO, BLOOM, GPT3_FINNISH */
static const char *const re_poro[] = {
    " ?[^(\\s|.,!?…。，、।۔،)]+",
    NULL,
};
/* CHATGLM4: same patterns as re_llama3 */
/* VIKING */
static const char *const re_viking[] = {
    " ?[^(\\s|.,!?…。，、।۔،)]+",
    "\\p{N}",
    NULL,
};
/* TEKKEN */
static const char *const re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* CHAMELEON */
static const char *const re_chameleon[] = {
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL,
};
/* GPT4O, MINIMAX_M2 */
static const char *const re_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* TINY_AYA */
static const char *const re_tiny_aya[] = {
    "\\d{1,3}(?=(?:\\d{3})*\\b)",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* SUPERBPE */
static const char *const re_superbpe[] = {
    "\\p{N}+",
    "(?=(\\d{3})+(?!\\d))",
    NULL,
};
/* BAILINGMOE */
static const char *const re_bailingmoe[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL,
};
/* SEED_CODER */
static const char *const re_seed_coder[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL,
};
/* GROK_2: same patterns as re_stablelm2 */
/* EXAONE_MOE */
static const char *const re_exaone_moe[] = {
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL,
};
/* DEFAULT */
static const char *const re_default[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "\\p{N}+",
    "[0-9][0-9][0-9]",
    NULL,
};
/* clang-format on */

/*
 * Every accepted tokenizer.ggml.pre name: its patterns and the flags
 * llama.cpp derives from the name. "kimi-k2" and "afmoe" are absent: llama.cpp
 * runs hand-written code for them, not regexes.
 */
static const struct pre_def {
    const char *name;
    const char *const *patterns;
    unsigned flags;
} pre_defs[] = {
    {"default", re_default, 0},
    {"llama3", re_llama3, REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"llama-v3", re_llama3, REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"llama-bpe", re_llama3, REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"falcon3", re_llama3, REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"falcon-h1", re_llama3, REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"pixtral", re_llama3, REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"midm-2.0", re_llama3, REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"lfm2", re_llama3, REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"jina-v5-nano", re_llama3, REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"deepseek-llm", re_deepseek_llm, REALM__PRE_NO_CLEAN_SPACES},
    {"deepseek-coder", re_deepseek_coder, REALM__PRE_NO_CLEAN_SPACES},
    {"deepseek-v3", re_deepseek3_llm, REALM__PRE_NO_CLEAN_SPACES},
    {"hunyuan-dense", re_deepseek3_llm, REALM__PRE_NO_CLEAN_SPACES},
    {"joyai-llm", re_deepseek3_llm, REALM__PRE_NO_CLEAN_SPACES},
    {"youtu", re_youtu, REALM__PRE_NO_CLEAN_SPACES | REALM__PRE_IGNORE_MERGES},
    {"falcon", re_falcon, 0},
    {"mpt", re_gpt2, 0},
    {"starcoder", re_starcoder, 0},
    {"gpt-2", re_gpt2, 0},
    {"phi-2", re_gpt2, 0},
    {"jina-es", re_gpt2, 0},
    {"jina-de", re_gpt2, 0},
    {"gigachat", re_gpt2, 0},
    {"jina-v2-es", re_gpt2, 0},
    {"jina-v2-de", re_gpt2, 0},
    {"a.x-4.0", re_gpt2, 0},
    {"mellum", re_gpt2, 0},
    {"modern-bert", re_gpt2, 0},
    {"exaone4", re_gpt2, 0},
    {"jais-2", re_jais2, 0},
    {"jina-v1-en", re_gpt2, REALM__PRE_ADD_SEP},
    {"jina-v2-code", re_gpt2, REALM__PRE_ADD_SEP},
    {"roberta-bpe", re_gpt2, REALM__PRE_ADD_SEP},
    {"refact", re_starcoder, 0},
    {"command-r", re_starcoder, REALM__PRE_NO_CLEAN_SPACES},
    {"qwen2", re_stablelm2, REALM__PRE_NO_CLEAN_SPACES},
    {"deepseek-r1-qwen", re_stablelm2, REALM__PRE_NO_CLEAN_SPACES},
    {"kormo", re_stablelm2, REALM__PRE_NO_CLEAN_SPACES},
    {"megrez", re_stablelm2, 0},
    {"qwen35", re_qwen35, REALM__PRE_NO_CLEAN_SPACES},
    {"stablelm2", re_stablelm2, 0},
    {"olmo", re_gpt2, 0},
    {"dbrx", re_llama3, 0},
    {"smaug-bpe", re_llama3, 0},
    {"poro-chat", re_poro, REALM__PRE_NO_CLEAN_SPACES},
    {"bloom", re_poro, 0},
    {"gpt3-finnish", re_poro, 0},
    {"glm4", re_llama3, REALM__PRE_NO_BOS_ID},
    {"chatglm-bpe", re_llama3, REALM__PRE_NO_BOS_ID},
    {"viking", re_viking, REALM__PRE_NO_CLEAN_SPACES},
    {"jais", re_gpt2, 0},
    {"tekken", re_tekken,
     REALM__PRE_NO_CLEAN_SPACES | REALM__PRE_IGNORE_MERGES | REALM__PRE_ADD_BOS},
    {"smollm", re_starcoder, REALM__PRE_NO_CLEAN_SPACES},
    {"codeshell", re_starcoder, 0},
    {"exaone", re_starcoder, 0},
    {"exaone-moe", re_exaone_moe, 0},
    {"chameleon", re_chameleon, REALM__PRE_ADD_BOS | REALM__PRE_NO_CLEAN_SPACES},
    {"minerva-7b", re_starcoder, 0},
    {"gpt-4o", re_gpt4o, REALM__PRE_NO_CLEAN_SPACES},
    {"llama4", re_gpt4o, REALM__PRE_NO_CLEAN_SPACES},
    {"kanana2", re_gpt4o, REALM__PRE_NO_CLEAN_SPACES},
    {"minimax-m2", re_gpt4o, REALM__PRE_NO_CLEAN_SPACES},
    {"tiny_aya", re_tiny_aya, REALM__PRE_NO_CLEAN_SPACES},
    {"superbpe", re_superbpe, REALM__PRE_NO_CLEAN_SPACES},
    {"trillion", re_gpt2, REALM__PRE_NO_CLEAN_SPACES},
    {"granite-docling", re_gpt2, REALM__PRE_NO_CLEAN_SPACES},
    {"bailingmoe", re_bailingmoe, REALM__PRE_NO_CLEAN_SPACES},
    {"bailingmoe2", re_bailingmoe, REALM__PRE_NO_CLEAN_SPACES},
    {"llada-moe", re_bailingmoe, REALM__PRE_NO_CLEAN_SPACES},
    {"seed-coder", re_seed_coder, REALM__PRE_NO_CLEAN_SPACES},
    {"hunyuan", re_stablelm2, REALM__PRE_NO_CLEAN_SPACES},
    {"grok-2", re_stablelm2, REALM__PRE_NO_CLEAN_SPACES},
    {"solar-open", re_stablelm2, REALM__PRE_NO_CLEAN_SPACES},
};
#define N_PRE_DEFS (sizeof pre_defs / sizeof pre_defs[0])

#define MAX_PATTERNS 8
/* JIT stacks tried when a match needs more than PCRE2's default 32 KiB. */
#define JIT_STACK_MAX (64u << 20)

struct realm__pretok {
    int n;
    pcre2_code *re[MAX_PATTERNS];
    bool jit[MAX_PATTERNS]; /* JIT-compiled: matched with pcre2_jit_match */
    uint32_t max_pairs;     /* capture groups + 1, over all patterns */
};

static const struct pre_def *find_def(const char *name)
{
    for (size_t i = 0; i < N_PRE_DEFS; i++)
        if (strcmp(pre_defs[i].name, name) == 0)
            return &pre_defs[i];
    return NULL;
}

const char *const *realm__pretok_patterns(const char *name)
{
    const struct pre_def *d = find_def(name);
    return d ? d->patterns : NULL;
}

/*
 * Compile the patterns of `name`. $ matches only at the very end (as in
 * ECMAScript, which llama.cpp's std::regex uses); subjects are checked for
 * valid UTF-8 by the caller, so matching skips PCRE2's own check.
 */
int realm__pretok_new(const char *name, realm__pretok **out, unsigned *flags)
{
    *out = NULL;
    const struct pre_def *d = find_def(name);
    if (d == NULL) {
        if (strcmp(name, "kimi-k2") == 0 || strcmp(name, "afmoe") == 0)
            return realm__error(REALM_ERR_UNSUPPORTED,
                                "pre-tokenizer '%s' is not supported (it is not regex-based)",
                                name);
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "unknown pre-tokenizer '%s' "
                            "(tokenizer.ggml.pre)",
                            name);
    }
    realm__pretok *p = calloc(1, sizeof *p);
    if (p == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory");
    p->max_pairs = 1;
    for (int i = 0; d->patterns[i] != NULL; i++) {
        REALM_ASSERT(i < MAX_PATTERNS);
        int err;
        PCRE2_SIZE err_off;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)d->patterns[i], PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_off, NULL);
        if (re == NULL) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            realm__pretok_free(p);
            return realm__error(REALM_ERR_UNSUPPORTED,
                                "pre-tokenizer '%s': regex %d does not compile at offset %zu: %s",
                                name, i, (size_t)err_off, (const char *)msg);
        }
        /* Without JIT (unsupported CPU, or memory that cannot be executable)
         * the interpreter runs the same pattern, only slower. */
        p->jit[p->n] = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
        uint32_t n_cap = 0;
        pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &n_cap);
        if (n_cap + 1 > p->max_pairs)
            p->max_pairs = n_cap + 1;
        p->re[p->n++] = re;
    }
    if (flags)
        *flags = d->flags;
    *out = p;
    return REALM_OK;
}

void realm__pretok_free(realm__pretok *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->n; i++)
        pcre2_code_free(p->re[i]);
    free(p);
}

/* Matching state of one split call: its match data, and a JIT stack and
 * match context made only if a pattern needs more stack than the default. */
struct matcher {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *stack;
    size_t stack_size;
};

static void matcher_free(struct matcher *m)
{
    pcre2_match_data_free(m->md);
    pcre2_match_context_free(m->mctx);
    pcre2_jit_stack_free(m->stack);
}

/*
 * One pcre2_match of re on subject[0..len) from offset `start`. On a JIT
 * stack overflow it retries with stacks of 1 MiB, 4 MiB, ... up to
 * JIT_STACK_MAX. Returns PCRE2's result (> 0 match, PCRE2_ERROR_NOMATCH) or
 * a Realm error for any other failure.
 */
static int match_once(struct matcher *m, const pcre2_code *re, bool jit, const char *subject,
                      size_t len, size_t start, uint32_t options)
{
    for (;;) {
        /* pcre2_jit_match skips pcre2_match's checks (the subject is valid
         * UTF-8 already); it cannot anchor at match time, which only the
         * rare retry after an empty match asks for. */
        int rc = jit && !(options & PCRE2_ANCHORED)
                     ? pcre2_jit_match(re, (PCRE2_SPTR)subject, len, start, options, m->md, m->mctx)
                     : pcre2_match(re, (PCRE2_SPTR)subject, len, start,
                                   options | PCRE2_NO_UTF_CHECK, m->md, m->mctx);
        if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH)
            return rc == 0 ? 1 : rc;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && m->stack_size < JIT_STACK_MAX) {
            size_t size = m->stack_size ? m->stack_size * 4 : (1u << 20);
            pcre2_jit_stack_free(m->stack);
            m->stack = pcre2_jit_stack_create(32 * 1024, size, NULL);
            if (m->mctx == NULL)
                m->mctx = pcre2_match_context_create(NULL);
            if (m->stack == NULL || m->mctx == NULL)
                return realm__error(REALM_ERR_NOMEM, "out of memory for a regex stack");
            pcre2_jit_stack_assign(m->mctx, NULL, m->stack);
            m->stack_size = size;
            continue;
        }
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return realm__error(REALM_ERR_RANGE,
                            "pre-tokenizer regex failed on a piece of %zu bytes: %s", len,
                            (const char *)msg);
    }
}

/* Append one piece end to ends[*n]. */
static int push_end(uint32_t **ends, size_t *n, size_t *cap, size_t end)
{
    if (*n == *cap) {
        int rc = realm__grow((void **)ends, cap, *n + 1, sizeof **ends);
        if (rc < 0)
            return rc;
    }
    (*ends)[(*n)++] = (uint32_t)end;
    return REALM_OK;
}

/*
 * Split each current piece [start, end) with `re`. New ends are appended
 * after the current ones and then moved down. An empty match splits the piece
 * where it is; the search then goes on (PCRE2's usual loop: retry the same
 * place for a non-empty match, else step one character).
 */
static int split_one(struct matcher *m, const pcre2_code *re, bool jit, const char *text,
                     uint32_t **ends, size_t *n_ends, size_t *cap)
{
    const size_t n_old = *n_ends;
    size_t start = 0;
    int rc;
    for (size_t k = 0; k < n_old; k++) {
        const size_t end = (*ends)[k];
        const char *sub = text + start;
        const size_t len = end - start;
        /* One character cannot be split: skip the regex. */
        if ((size_t)realm__utf8_len((unsigned char)sub[0]) == len) {
            if ((rc = push_end(ends, n_ends, cap, end)) < 0)
                return rc;
            start = end;
            continue;
        }
        size_t pos = 0, last = 0;
        uint32_t opts = 0;
        /* An empty match at the very end could not split anything. */
        while (pos < len) {
            rc = match_once(m, re, jit, sub, len, pos, opts);
            if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
                return rc;
            if (rc == PCRE2_ERROR_NOMATCH) {
                if (opts == 0)
                    break;
                /* No non-empty match right at an empty one: step a character. */
                opts = 0;
                pos++;
                while (pos < len && ((unsigned char)sub[pos] & 0xc0) == 0x80)
                    pos++;
                continue;
            }
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
            const size_t ms = ov[0], me = ov[1];
            if (ms > last && (rc = push_end(ends, n_ends, cap, start + ms)) < 0)
                return rc;
            if (me > ms) {
                if ((rc = push_end(ends, n_ends, cap, start + me)) < 0)
                    return rc;
                last = me;
                pos = me;
                opts = 0;
            } else {
                if (ms > last)
                    last = ms;
                pos = ms;
                opts = PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED;
            }
        }
        if (last < len && (rc = push_end(ends, n_ends, cap, end)) < 0)
            return rc;
        start = end;
    }
    memmove(*ends, *ends + n_old, (*n_ends - n_old) * sizeof **ends);
    *n_ends -= n_old;
    return REALM_OK;
}

int realm__pretok_split(const realm__pretok *p, const char *text, size_t len, uint32_t **ends,
                        size_t *n_ends, size_t *cap_ends)
{
    *n_ends = 0;
    if (len == 0)
        return REALM_OK;
    if (len > UINT32_MAX)
        return realm__error(REALM_ERR_RANGE, "text of %zu bytes is too long", len);
    int rc = push_end(ends, n_ends, cap_ends, len);
    if (rc < 0)
        return rc;
    struct matcher m = {0};
    m.md = pcre2_match_data_create(p->max_pairs, NULL);
    if (m.md == NULL)
        return realm__error(REALM_ERR_NOMEM, "out of memory for regex match data");
    for (int i = 0; i < p->n && rc == REALM_OK; i++)
        rc = split_one(&m, p->re[i], p->jit[i], text, ends, n_ends, cap_ends);
    matcher_free(&m);
    return rc;
}
