/*
 * Chat templates (realm/chat.h): the template table, recognition of a model's
 * Jinja template by markers, and one renderer per prompt format.
 *
 * Rendering writes through a bounded sink that keeps counting past the end of
 * the caller's buffer, so one pass both measures and fills and nothing is
 * allocated. Each renderer is written from the family's published template;
 * the comment above it gives the shape of its output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error_internal.h"
#include "realm/chat.h"
#include "realm/tokenizer.h"

/* DeepSeek's markers, spelled in UTF-8 (U+FF5C fullwidth bar, U+2581 lower
 * one-eighth block); split literals keep hex escapes from running on. */
#define DS_BAR       "\xef\xbd\x9c"
#define DS_SP        "\xe2\x96\x81"
#define DS_USER      "<" DS_BAR "User" DS_BAR ">"
#define DS_ASSISTANT "<" DS_BAR "Assistant" DS_BAR ">"
#define DS_BOS       "<" DS_BAR "begin" DS_SP "of" DS_SP "sentence" DS_BAR ">"
#define DS_EOS       "<" DS_BAR "end" DS_SP "of" DS_SP "sentence" DS_BAR ">"

/* Token ids being built (malloc'ed). */
typedef struct id_list {
    realm_token *ids;
    int32_t n;
} id_list;

/* ---- output sink ------------------------------------------------------- */

typedef struct chat_out {
    char *buf;           /* may be NULL when cap is 0 */
    unsigned char *from; /* NULL, or cap bytes: 1 where buf holds message text */
    size_t cap;          /* bytes available, including the terminating NUL */
    size_t len;          /* bytes the prompt needs so far (may exceed cap) */
    bool overflow;       /* len wrapped around SIZE_MAX */
} chat_out;

/* Everything a renderer needs; bos/eos are never NULL here. */
typedef struct chat_ctx {
    const realm_chat_message *msg;
    size_t n;
    bool gen;
    const char *bos;
    const char *eos;
    chat_out out;
} chat_ctx;

/* Append s[0..n): copied while it fits with room for the NUL, always
 * counted, so out.len ends as the prompt's full length. msg: the bytes are
 * a message's text (never read for special tokens), not the template's. */
static void put_n(chat_ctx *c, const char *s, size_t n, bool msg)
{
    chat_out *o = &c->out;
    if (n == 0 || o->overflow)
        return;
    if (n > SIZE_MAX - o->len) {
        o->overflow = true;
        return;
    }
    if (o->cap > 0 && o->len < o->cap - 1 && n <= o->cap - 1 - o->len) {
        memcpy(o->buf + o->len, s, n);
        if (o->from)
            memset(o->from + o->len, msg, n);
    }
    o->len += n;
}

/* Template text: markers, role names, separators, BOS/EOS texts. */
static void put(chat_ctx *c, const char *s)
{
    put_n(c, s, strlen(s), false);
}

/* A message's text (or a part of one). */
static void put_msg(chat_ctx *c, const char *s)
{
    put_n(c, s, strlen(s), true);
}

/* ---- Python's str.strip() ---------------------------------------------- */

/* True for the code points Python's str.isspace() accepts. */
static bool is_py_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* Decode the UTF-8 sequence at s[0..n); its length, or 0 if it is not a
 * well-formed sequence (such bytes are never whitespace). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    size_t len;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c < 0xe0) {
        len = 2, v = c & 0x1fu;
    } else if (c >= 0xe0 && c < 0xf0) {
        len = 3, v = c & 0x0fu;
    } else if (c >= 0xf0 && c < 0xf5) {
        len = 4, v = c & 0x07u;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3fu);
    }
    *cp = v;
    return len;
}

/* Bytes of the whitespace code point starting at s, or 0. */
static size_t space_at(const char *s, size_t n)
{
    uint32_t cp;
    size_t len = utf8_decode((const unsigned char *)s, n, &cp);
    return len && is_py_space(cp) ? len : 0;
}

/* Bytes of the whitespace code point ending at s[n - 1], or 0. */
static size_t space_before(const char *s, size_t n)
{
    for (size_t len = 1; len <= 4 && len <= n; len++) {
        unsigned char c = (unsigned char)s[n - len];
        if ((c & 0xc0) == 0x80)
            continue; /* continuation byte: the lead is further back */
        uint32_t cp;
        size_t got = utf8_decode((const unsigned char *)s + n - len, len, &cp);
        return got == len && is_py_space(cp) ? len : 0;
    }
    return 0;
}

typedef struct span {
    const char *p;
    size_t n;
    bool msg; /* message text, as put_n */
} span;

/*
 * Write the concatenation of parts[0..np) with leading and trailing
 * whitespace removed, as Python's (a + b + ...).strip() would: stripping may
 * run across part boundaries when a part is all whitespace.
 */
static void put_strip(chat_ctx *c, const span *parts, size_t np)
{
    size_t i0 = 0, off0 = 0; /* first kept byte: parts[i0].p[off0] */
    for (; i0 < np; i0++, off0 = 0) {
        size_t k;
        while (off0 < parts[i0].n && (k = space_at(parts[i0].p + off0, parts[i0].n - off0)) > 0)
            off0 += k;
        if (off0 < parts[i0].n)
            break;
    }
    if (i0 == np)
        return;                             /* all whitespace */
    size_t i1 = np - 1, end1 = parts[i1].n; /* last kept byte: parts[i1].p[end1 - 1] */
    for (;;) {
        size_t lo = i1 == i0 ? off0 : 0, k;
        while (end1 > lo && (k = space_before(parts[i1].p, end1)) > 0)
            end1 -= k;
        if (end1 > lo || i1 == i0)
            break;
        i1--;
        end1 = parts[i1].n;
    }
    for (size_t i = i0; i <= i1; i++) {
        size_t from = i == i0 ? off0 : 0, to = i == i1 ? end1 : parts[i].n;
        put_n(c, parts[i].p + from, to - from, parts[i].msg);
    }
}

/* A message's text, stripped. */
static void put_msg_trim(chat_ctx *c, const char *s)
{
    span p = {s, strlen(s), true};
    put_strip(c, &p, 1);
}

static const char *role_str(realm_chat_role r)
{
    return realm_chat_role_name(r);
}

/* ---- formats that fold the system prompt into a user turn -------------- */

/*
 * llama2, mistral-legacy, mistral-v1/v3/v3-tekken and gemma have no system
 * turn: the system prompt (only ever messages[0], checked before rendering)
 * is prepended to one user message — the first one, or the last one for
 * mistral-v3. user() gets that prompt or NULL. If there is no user message
 * to carry it (the next message is not a user message, or for v3 there is no
 * user message at all), it gets a user turn of its own with empty content.
 */
typedef struct fold_style {
    bool last_user; /* the system prompt joins the last user message */
    void (*user)(chat_ctx *c, const char *sys, const char *content);
    void (*assistant)(chat_ctx *c, const char *content);
    const char *generation; /* appended when add_generation_prompt */
} fold_style;

static void render_folded(chat_ctx *c, const fold_style *st)
{
    size_t first = 0, target = SIZE_MAX;
    const char *sys = NULL;
    if (c->n > 0 && c->msg[0].role == REALM_CHAT_SYSTEM) {
        sys = c->msg[0].content;
        first = 1;
        if (st->last_user) {
            for (size_t i = c->n; i-- > first;)
                if (c->msg[i].role == REALM_CHAT_USER) {
                    target = i;
                    break;
                }
        } else if (first < c->n && c->msg[first].role == REALM_CHAT_USER) {
            target = first;
        }
        if (target == SIZE_MAX)
            st->user(c, sys, "");
    }
    for (size_t i = first; i < c->n; i++) {
        if (c->msg[i].role == REALM_CHAT_USER)
            st->user(c, i == target ? sys : NULL, c->msg[i].content);
        else
            st->assistant(c, c->msg[i].content);
    }
    if (c->gen && st->generation)
        put(c, st->generation);
}

/*
 * llama2 (Meta's Llama-2-chat template):
 *   [INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U [/INST]
 * Every user turn opens with BOS except the very first (the tokenizer adds
 * that one); the whole user content, system block included, is stripped, and
 * so is the assistant's.
 */
static void llama2_user(chat_ctx *c, const char *sys, const char *u)
{
    if (c->out.len > 0)
        put(c, c->bos);
    put(c, "[INST] ");
    if (sys) {
        span parts[] = {
            {"<<SYS>>\n", 8, false},
            {sys, strlen(sys), true},
            {"\n<</SYS>>\n\n", 11, false},
            {u, strlen(u), true},
        };
        put_strip(c, parts, 4);
    } else {
        put_msg_trim(c, u);
    }
    put(c, " [/INST]");
}

static void llama2_assistant(chat_ctx *c, const char *a)
{
    put(c, " ");
    put_msg_trim(c, a);
    put(c, " ");
    put(c, c->eos);
}

/* mistral-legacy: [INST] S\n\nU [/INST]A</s>[INST] U [/INST] */
static void mistral_legacy_user(chat_ctx *c, const char *sys, const char *u)
{
    put(c, "[INST] ");
    if (sys) {
        put_msg(c, sys);
        put(c, "\n\n");
    }
    put_msg(c, u);
    put(c, " [/INST]");
}

static void mistral_legacy_assistant(chat_ctx *c, const char *a)
{
    put_msg(c, a);
    put(c, c->eos);
}

/* mistral-v1: " [INST] S\n\nU [/INST] A</s> [INST] U [/INST]" */
static void mistral_v1_user(chat_ctx *c, const char *sys, const char *u)
{
    put(c, " [INST] ");
    if (sys) {
        put_msg(c, sys);
        put(c, "\n\n");
    }
    put_msg(c, u);
    put(c, " [/INST]");
}

static void mistral_v1_assistant(chat_ctx *c, const char *a)
{
    put(c, " ");
    put_msg(c, a);
    put(c, c->eos);
}

/* mistral-v3: [INST] U[/INST] T(A)</s>[INST] S\n\nU[/INST] */
static void mistral_v3_user(chat_ctx *c, const char *sys, const char *u)
{
    put(c, "[INST] ");
    if (sys) {
        put_msg(c, sys);
        put(c, "\n\n");
    }
    put_msg(c, u);
    put(c, "[/INST]");
}

static void mistral_v3_assistant(chat_ctx *c, const char *a)
{
    put(c, " ");
    put_msg_trim(c, a);
    put(c, c->eos);
}

/* mistral-v3-tekken: [INST]U[/INST]A</s>[INST]S\n\nU[/INST] */
static void mistral_tekken_user(chat_ctx *c, const char *sys, const char *u)
{
    put(c, "[INST]");
    if (sys) {
        put_msg(c, sys);
        put(c, "\n\n");
    }
    put_msg(c, u);
    put(c, "[/INST]");
}

static void mistral_tekken_assistant(chat_ctx *c, const char *a)
{
    put_msg(c, a);
    put(c, c->eos);
}

/* gemma (Gemma 3's rule for S; S itself is not trimmed):
 *   <start_of_turn>user\nS\n\nT(U)<end_of_turn>\n<start_of_turn>model\nT(A)<end_of_turn>\n */
static void gemma_user(chat_ctx *c, const char *sys, const char *u)
{
    put(c, "<start_of_turn>user\n");
    if (sys) {
        put_msg(c, sys);
        put(c, "\n\n");
    }
    put_msg_trim(c, u);
    put(c, "<end_of_turn>\n");
}

static void gemma_assistant(chat_ctx *c, const char *a)
{
    put(c, "<start_of_turn>model\n");
    put_msg_trim(c, a);
    put(c, "<end_of_turn>\n");
}

static const fold_style style_llama2 = {false, llama2_user, llama2_assistant, NULL};
static const fold_style style_mistral_legacy = {false, mistral_legacy_user,
                                                mistral_legacy_assistant, NULL};
static const fold_style style_mistral_v1 = {false, mistral_v1_user, mistral_v1_assistant, NULL};
static const fold_style style_mistral_v3 = {true, mistral_v3_user, mistral_v3_assistant, NULL};
static const fold_style style_mistral_v3_tekken = {true, mistral_tekken_user,
                                                   mistral_tekken_assistant, NULL};
static const fold_style style_gemma = {false, gemma_user, gemma_assistant,
                                       "<start_of_turn>model\n"};

/* ---- formats with a turn per message ----------------------------------- */

/*
 * mistral-v7 (spaced) and mistral-v7-tekken (not):
 *   [SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST] U[/INST] A</s>
 * System messages may appear anywhere. No generation prompt.
 */
static void render_mistral_v7_common(chat_ctx *c, const char *sp)
{
    for (size_t i = 0; i < c->n; i++) {
        const char *s = c->msg[i].content;
        switch (c->msg[i].role) {
        case REALM_CHAT_SYSTEM:
            put(c, "[SYSTEM_PROMPT]");
            put(c, sp);
            put_msg(c, s);
            put(c, "[/SYSTEM_PROMPT]");
            break;
        case REALM_CHAT_USER:
            put(c, "[INST]");
            put(c, sp);
            put_msg(c, s);
            put(c, "[/INST]");
            break;
        default:
            put(c, sp);
            put_msg(c, s);
            put(c, c->eos);
        }
    }
}

static void render_mistral_v7(chat_ctx *c)
{
    render_mistral_v7_common(c, " ");
}
static void render_mistral_v7_tekken(chat_ctx *c)
{
    render_mistral_v7_common(c, "");
}

/* chatml: <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n */
static void render_chatml(chat_ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        put(c, "<|im_start|>");
        put(c, role_str(c->msg[i].role));
        put(c, "\n");
        put_msg(c, c->msg[i].content);
        put(c, "<|im_end|>\n");
    }
    if (c->gen)
        put(c, "<|im_start|>assistant\n");
}

/* zephyr: <|role|>\ncontent</s>\n ... <|assistant|>\n  (the newlines come from
 * the published template's layout under HF's trim_blocks) */
static void render_zephyr(chat_ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        put(c, "<|");
        put(c, role_str(c->msg[i].role));
        put(c, "|>\n");
        put_msg(c, c->msg[i].content);
        put(c, c->eos);
        put(c, "\n");
    }
    if (c->gen)
        put(c, "<|assistant|>\n");
}

static void llama3_turn(chat_ctx *c, const char *role, const char *content)
{
    put(c, "<|start_header_id|>");
    put(c, role);
    put(c, "<|end_header_id|>\n\n");
    put_msg_trim(c, content);
    put(c, "<|eot_id|>");
}

/* llama3: <|start_header_id|>role<|end_header_id|>\n\nT(content)<|eot_id|> */
static void render_llama3(chat_ctx *c)
{
    for (size_t i = 0; i < c->n; i++)
        llama3_turn(c, role_str(c->msg[i].role), c->msg[i].content);
    if (c->gen)
        put(c, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/*
 * llama3.1: the system turn always comes first and carries the knowledge
 * cutoff and the template's default date before T(S); later messages (a
 * later system message included) are ordinary llama3 turns.
 */
static void render_llama31(chat_ctx *c)
{
    size_t first = 0;
    put(c, "<|start_header_id|>system<|end_header_id|>\n\n"
           "Cutting Knowledge Date: December 2023\n"
           "Today Date: 26 Jul 2024\n\n");
    if (c->n > 0 && c->msg[0].role == REALM_CHAT_SYSTEM) {
        put_msg_trim(c, c->msg[0].content);
        first = 1;
    }
    put(c, "<|eot_id|>");
    for (size_t i = first; i < c->n; i++)
        llama3_turn(c, role_str(c->msg[i].role), c->msg[i].content);
    if (c->gen)
        put(c, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* phi3: <|role|>\ncontent<|end|>\n; then <|assistant|>\n, or EOS without a
 * generation prompt. Empty system messages are skipped (Phi-3.5's rule). */
static void render_phi3(chat_ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->msg[i].role == REALM_CHAT_SYSTEM && c->msg[i].content[0] == '\0')
            continue;
        put(c, "<|");
        put(c, role_str(c->msg[i].role));
        put(c, "|>\n");
        put_msg(c, c->msg[i].content);
        put(c, "<|end|>\n");
    }
    put(c, c->gen ? "<|assistant|>\n" : c->eos);
}

/* DeepSeek-Coder-Instruct's system prompt when the conversation has none. */
static const char deepseek_coder_default_system[] =
    "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by "
    "Deepseek Company, and you only answer questions related to computer science. For "
    "politically sensitive questions, security and privacy issues, and other non-computer "
    "science questions, you will refuse to answer\n";

/* deepseek: S### Instruction:\nU\n### Response:\nA\n<|EOT|>\n ... ### Response:\n */
static void render_deepseek(chat_ctx *c)
{
    bool has_system = false;
    for (size_t i = 0; i < c->n; i++)
        has_system |= c->msg[i].role == REALM_CHAT_SYSTEM;
    if (!has_system)
        put(c, deepseek_coder_default_system);
    for (size_t i = 0; i < c->n; i++) {
        const char *s = c->msg[i].content;
        switch (c->msg[i].role) {
        case REALM_CHAT_SYSTEM:
            put_msg(c, s);
            break;
        case REALM_CHAT_USER:
            put(c, "### Instruction:\n");
            put_msg(c, s);
            put(c, "\n");
            break;
        default:
            put(c, "### Response:\n");
            put_msg(c, s);
            put(c, "\n<|EOT|>\n");
        }
    }
    if (c->gen)
        put(c, "### Response:\n");
}

/* deepseek2: S\n\nUser: U\n\nAssistant: A<eos>User: U\n\nAssistant: */
static void render_deepseek2(chat_ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        const char *s = c->msg[i].content;
        switch (c->msg[i].role) {
        case REALM_CHAT_SYSTEM:
            put_msg(c, s);
            put(c, "\n\n");
            break;
        case REALM_CHAT_USER:
            put(c, "User: ");
            put_msg(c, s);
            put(c, "\n\n");
            break;
        default:
            put(c, "Assistant: ");
            put_msg(c, s);
            put(c, c->eos);
        }
    }
    if (c->gen)
        put(c, "Assistant:");
}

/* deepseek3: every system message, joined by \n\n, comes first; then
 * <｜User｜>U<｜Assistant｜>A<｜end▁of▁sentence｜> ... <｜Assistant｜> */
static void render_deepseek3(chat_ctx *c)
{
    bool first_system = true;
    for (size_t i = 0; i < c->n; i++) {
        if (c->msg[i].role != REALM_CHAT_SYSTEM)
            continue;
        if (!first_system)
            put(c, "\n\n");
        put_msg(c, c->msg[i].content);
        first_system = false;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->msg[i].role == REALM_CHAT_USER) {
            put(c, DS_USER);
            put_msg(c, c->msg[i].content);
        } else if (c->msg[i].role == REALM_CHAT_ASSISTANT) {
            put(c, DS_ASSISTANT);
            put_msg(c, c->msg[i].content);
            put(c, DS_EOS);
        }
    }
    if (c->gen)
        put(c, DS_ASSISTANT);
}

/* command-r: <|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>S<|END_OF_TURN_TOKEN|>,
 * then USER_TOKEN / CHATBOT_TOKEN turns with stripped content. */
static void render_command_r(chat_ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        const char *s = c->msg[i].content;
        switch (c->msg[i].role) {
        case REALM_CHAT_SYSTEM: /* only ever messages[0] */
            put(c, "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>");
            put_msg(c, s);
            break;
        case REALM_CHAT_USER:
            put(c, "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>");
            put_msg_trim(c, s);
            break;
        default:
            put(c, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
            put_msg_trim(c, s);
        }
        put(c, "<|END_OF_TURN_TOKEN|>");
    }
    if (c->gen)
        put(c, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
}

/* FastChat's vicuna_v1.1 system message, used when the conversation has none. */
static const char vicuna_default_system[] =
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions.";

/* vicuna (FastChat ADD_COLON_TWO, sep " ", sep2 EOS):
 *   S USER: U ASSISTANT: A</s>USER: U ASSISTANT: */
static void render_vicuna(chat_ctx *c)
{
    size_t first = 0;
    if (c->n > 0 && c->msg[0].role == REALM_CHAT_SYSTEM) {
        put_msg(c, c->msg[0].content);
        first = 1;
    } else {
        put(c, vicuna_default_system);
    }
    put(c, " ");
    for (size_t i = first; i < c->n; i++) {
        if (c->msg[i].role == REALM_CHAT_USER) {
            put(c, "USER: ");
            put_msg(c, c->msg[i].content);
            put(c, " ");
        } else {
            put(c, "ASSISTANT: ");
            put_msg(c, c->msg[i].content);
            put(c, c->eos);
        }
    }
    if (c->gen)
        put(c, "ASSISTANT:");
}

/* Stanford Alpaca's preamble, used when the conversation has no system message. */
static const char alpaca_default_system[] =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.";

/* alpaca (Stanford's prompt_no_input; sections separated by a blank line,
 * the answer right after "### Response:" as in its training data):
 *   S\n\n### Instruction:\nU\n\n### Response:A</s>\n\n### Instruction:\nU\n\n### Response: */
static void render_alpaca(chat_ctx *c)
{
    size_t first = 0;
    if (c->n > 0 && c->msg[0].role == REALM_CHAT_SYSTEM) {
        put_msg(c, c->msg[0].content);
        first = 1;
    } else {
        put(c, alpaca_default_system);
    }
    for (size_t i = first; i < c->n; i++) {
        if (c->msg[i].role == REALM_CHAT_USER) {
            put(c, "\n\n### Instruction:\n");
            put_msg(c, c->msg[i].content);
        } else {
            put(c, "\n\n### Response:");
            put_msg(c, c->msg[i].content);
            put(c, c->eos);
        }
    }
    if (c->gen)
        put(c, "\n\n### Response:");
}

/* ---- the template table ------------------------------------------------ */

#define MAX_ALIASES 6

typedef struct template_desc {
    const char *name;
    const char *aliases[MAX_ALIASES];
    const fold_style *fold;      /* render_folded with this style, or else: */
    void (*render)(chat_ctx *c); /* a renderer of its own */
    const char *bos, *eos;       /* defaults for NULL bos_text / eos_text */
    bool starts_with_bos;        /* the model expects BOS before the prompt */
    bool system_first_only;      /* a system message may only be messages[0] */
} template_desc;

static const template_desc templates[REALM_CHAT_TEMPLATE_COUNT] = {
    [REALM_CHAT_TEMPLATE_LLAMA2] = {.name = "llama2",
                                    .aliases = {"llama-2"},
                                    .fold = &style_llama2,
                                    .bos = "<s>",
                                    .eos = "</s>",
                                    .starts_with_bos = true,
                                    .system_first_only = true},
    [REALM_CHAT_TEMPLATE_MISTRAL_LEGACY] = {.name = "mistral-legacy",
                                            .aliases = {"mistral-v0"},
                                            .fold = &style_mistral_legacy,
                                            .bos = "<s>",
                                            .eos = "</s>",
                                            .starts_with_bos = true,
                                            .system_first_only = true},
    [REALM_CHAT_TEMPLATE_MISTRAL_V1] = {.name = "mistral-v1",
                                        .fold = &style_mistral_v1,
                                        .bos = "<s>",
                                        .eos = "</s>",
                                        .starts_with_bos = true,
                                        .system_first_only = true},
    [REALM_CHAT_TEMPLATE_MISTRAL_V3] = {.name = "mistral-v3",
                                        .fold = &style_mistral_v3,
                                        .bos = "<s>",
                                        .eos = "</s>",
                                        .starts_with_bos = true,
                                        .system_first_only = true},
    [REALM_CHAT_TEMPLATE_MISTRAL_V3_TEKKEN] = {.name = "mistral-v3-tekken",
                                               .fold = &style_mistral_v3_tekken,
                                               .bos = "<s>",
                                               .eos = "</s>",
                                               .starts_with_bos = true,
                                               .system_first_only = true},
    [REALM_CHAT_TEMPLATE_MISTRAL_V7] = {.name = "mistral-v7",
                                        .render = render_mistral_v7,
                                        .bos = "<s>",
                                        .eos = "</s>",
                                        .starts_with_bos = true},
    [REALM_CHAT_TEMPLATE_MISTRAL_V7_TEKKEN] = {.name = "mistral-v7-tekken",
                                               .render = render_mistral_v7_tekken,
                                               .bos = "<s>",
                                               .eos = "</s>",
                                               .starts_with_bos = true},
    [REALM_CHAT_TEMPLATE_ZEPHYR] = {.name = "zephyr",
                                    .aliases = {"tinyllama"},
                                    .render = render_zephyr,
                                    .bos = "<s>",
                                    .eos = "</s>"},
    [REALM_CHAT_TEMPLATE_CHATML] = {.name = "chatml",
                                    .aliases = {"qwen", "qwen2"},
                                    .render = render_chatml,
                                    .bos = "",
                                    .eos = "<|im_end|>"},
    [REALM_CHAT_TEMPLATE_LLAMA3] = {.name = "llama3",
                                    .aliases = {"llama-3"},
                                    .render = render_llama3,
                                    .bos = "<|begin_of_text|>",
                                    .eos = "<|eot_id|>",
                                    .starts_with_bos = true},
    [REALM_CHAT_TEMPLATE_LLAMA31] = {.name = "llama3.1",
                                     .aliases = {"llama-3.1", "llama3.2", "llama-3.2", "llama3.3",
                                                 "llama-3.3"},
                                     .render = render_llama31,
                                     .bos = "<|begin_of_text|>",
                                     .eos = "<|eot_id|>",
                                     .starts_with_bos = true},
    [REALM_CHAT_TEMPLATE_GEMMA] = {.name = "gemma",
                                   .aliases = {"gemma2", "gemma3"},
                                   .fold = &style_gemma,
                                   .bos = "<bos>",
                                   .eos = "<eos>",
                                   .starts_with_bos = true,
                                   .system_first_only = true},
    [REALM_CHAT_TEMPLATE_PHI3] = {.name = "phi3",
                                  .aliases = {"phi-3", "phi3.5", "phi-3.5"},
                                  .render = render_phi3,
                                  .bos = "<s>",
                                  .eos = "<|endoftext|>"},
    [REALM_CHAT_TEMPLATE_DEEPSEEK] = {.name = "deepseek",
                                      .aliases = {"deepseek-coder"},
                                      .render = render_deepseek,
                                      .bos = DS_BOS,
                                      .eos = "<|EOT|>",
                                      .starts_with_bos = true},
    [REALM_CHAT_TEMPLATE_DEEPSEEK2] = {.name = "deepseek2",
                                       .aliases = {"deepseek-v2", "deepseek-llm"},
                                       .render = render_deepseek2,
                                       .bos = DS_BOS,
                                       .eos = DS_EOS,
                                       .starts_with_bos = true},
    [REALM_CHAT_TEMPLATE_DEEPSEEK3] = {.name = "deepseek3",
                                       .aliases = {"deepseek-v3", "deepseek-r1"},
                                       .render = render_deepseek3,
                                       .bos = DS_BOS,
                                       .eos = DS_EOS,
                                       .starts_with_bos = true},
    [REALM_CHAT_TEMPLATE_COMMAND_R] = {.name = "command-r",
                                       .aliases = {"command-r-plus", "cohere"},
                                       .render = render_command_r,
                                       .bos = "<BOS_TOKEN>",
                                       .eos = "<|END_OF_TURN_TOKEN|>",
                                       .starts_with_bos = true,
                                       .system_first_only = true},
    [REALM_CHAT_TEMPLATE_VICUNA] = {.name = "vicuna",
                                    .aliases = {"vicuna-v1.1"},
                                    .render = render_vicuna,
                                    .bos = "<s>",
                                    .eos = "</s>",
                                    .starts_with_bos = true,
                                    .system_first_only = true},
    [REALM_CHAT_TEMPLATE_ALPACA] = {.name = "alpaca",
                                    .render = render_alpaca,
                                    .bos = "<s>",
                                    .eos = "</s>",
                                    .starts_with_bos = true,
                                    .system_first_only = true},
};

static bool valid_template(realm_chat_template t)
{
    return (int)t >= 0 && t < REALM_CHAT_TEMPLATE_COUNT;
}

const char *realm_chat_template_name(realm_chat_template t)
{
    return valid_template(t) ? templates[t].name : "unknown";
}

/* Kept in table order; test_chat checks it against the table. */
const char *realm_chat_template_names(void)
{
    return "llama2, mistral-legacy, mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, "
           "mistral-v7-tekken, zephyr, chatml, llama3, llama3.1, gemma, phi3, deepseek, "
           "deepseek2, deepseek3, command-r, vicuna, alpaca";
}

bool realm_chat_template_starts_with_bos(realm_chat_template t)
{
    return valid_template(t) && templates[t].starts_with_bos;
}

static const char *const role_names[REALM_CHAT_ROLE_COUNT] = {
    [REALM_CHAT_SYSTEM] = "system",
    [REALM_CHAT_USER] = "user",
    [REALM_CHAT_ASSISTANT] = "assistant",
};

const char *realm_chat_role_name(realm_chat_role r)
{
    return (int)r >= 0 && r < REALM_CHAT_ROLE_COUNT ? role_names[r] : "unknown";
}

int realm_chat_role_from_name(const char *name, realm_chat_role *out)
{
    if (name == NULL || out == NULL)
        return realm__error(REALM_ERR_INVAL, "chat role: NULL argument");
    for (int r = 0; r < REALM_CHAT_ROLE_COUNT; r++)
        if (strcmp(name, role_names[r]) == 0) {
            *out = (realm_chat_role)r;
            return REALM_OK;
        }
    if (strcmp(name, "developer") == 0) { /* OpenAI's newer name for system */
        *out = REALM_CHAT_SYSTEM;
        return REALM_OK;
    }
    return realm__error(REALM_ERR_INVAL,
                        "unknown chat role '%.64s' (expected system, developer, user or assistant)",
                        name);
}

int realm_chat_template_from_name(const char *name, realm_chat_template *out)
{
    if (name == NULL || out == NULL)
        return realm__error(REALM_ERR_INVAL, "chat template: NULL argument");
    for (int i = 0; i < REALM_CHAT_TEMPLATE_COUNT; i++) {
        const template_desc *d = &templates[i];
        bool match = strcasecmp(name, d->name) == 0;
        for (int a = 0; !match && a < MAX_ALIASES && d->aliases[a]; a++)
            match = strcasecmp(name, d->aliases[a]) == 0;
        if (match) {
            *out = (realm_chat_template)i;
            return REALM_OK;
        }
    }
    return realm__error(REALM_ERR_NOTFOUND, "unknown chat template '%.64s'; known templates: %s",
                        name, realm_chat_template_names());
}

/* ---- recognising a Jinja template -------------------------------------- */

typedef struct jinja_src {
    const char *p;
    size_t n;
} jinja_src;

static bool has(jinja_src j, const char *needle)
{
    return memmem(j.p, j.n, needle, strlen(needle)) != NULL;
}

/*
 * The recognition rules, in order; the first that matches decides. Returns
 * the template id, or -1 with *lookalike naming a known-but-unsupported
 * format when one was spotted (else NULL). Rules that reject lookalikes come
 * before the rule they would otherwise trigger.
 */
static int reject(const char **lookalike, const char *what)
{
    *lookalike = what;
    return -1;
}

static int detect(jinja_src j, const char **lookalike)
{
    *lookalike = NULL;
    if (has(j, "<|im_start|>")) {
        if (has(j, "<|im_sep|>"))
            return reject(lookalike, "Phi-4 (<|im_sep|>)");
        if (has(j, "<end_of_utterance>"))
            return reject(lookalike, "SmolVLM (<end_of_utterance>)");
        return REALM_CHAT_TEMPLATE_CHATML;
    }
    if (has(j, "[INST]") || has(j, "[SYSTEM_PROMPT]")) {
        if (has(j, "[SYSTEM_PROMPT]"))
            return has(j, "[SYSTEM_PROMPT] ") ? REALM_CHAT_TEMPLATE_MISTRAL_V7
                                              : REALM_CHAT_TEMPLATE_MISTRAL_V7_TEKKEN;
        if (has(j, "<<SYS>>"))
            return REALM_CHAT_TEMPLATE_LLAMA2;
        if (has(j, " [INST]")) /* ' [INST] ' + ...: Mistral's official v1 */
            return REALM_CHAT_TEMPLATE_MISTRAL_V1;
        if (has(j, "[AVAILABLE_TOOLS]") || has(j, "[TOOL_CALLS]") || !has(j, " [/INST]"))
            return has(j, "[INST] ") ? REALM_CHAT_TEMPLATE_MISTRAL_V3
                                     : REALM_CHAT_TEMPLATE_MISTRAL_V3_TEKKEN;
        return REALM_CHAT_TEMPLATE_MISTRAL_LEGACY; /* '[INST] ' + ... + ' [/INST]' */
    }
    if (has(j, "<|start_header_id|>") && has(j, "<|end_header_id|>"))
        return has(j, "Cutting Knowledge Date") ? REALM_CHAT_TEMPLATE_LLAMA31
                                                : REALM_CHAT_TEMPLATE_LLAMA3;
    if (has(j, "<start_of_turn>"))
        return REALM_CHAT_TEMPLATE_GEMMA;
    if (has(j, "<|START_OF_TURN_TOKEN|>")) {
        if (has(j, "<|START_RESPONSE|>"))
            return reject(lookalike, "Command-R7B / Command-A (<|START_RESPONSE|>)");
        return REALM_CHAT_TEMPLATE_COMMAND_R;
    }
    if (has(j, "<|user|>")) {
        if (has(j, "[gMASK]"))
            return reject(lookalike, "ChatGLM ([gMASK])");
        if (has(j, "Falcon"))
            return reject(lookalike, "Falcon-3");
        if (has(j, "<|end|>")) {
            if (has(j, "<|tool|>"))
                return reject(lookalike, "Phi-4-mini (<|tool|>)");
            return REALM_CHAT_TEMPLATE_PHI3;
        }
        if (has(j, "eos_token") || has(j, "</s>") || has(j, "<|endoftext|>"))
            return REALM_CHAT_TEMPLATE_ZEPHYR;
        return reject(lookalike, "GLM-Edge (<|user|> without an end-of-turn marker)");
    }
    if (has(j, DS_USER) && has(j, DS_ASSISTANT))
        return REALM_CHAT_TEMPLATE_DEEPSEEK3;
    if (has(j, "### Instruction:") && has(j, "<|EOT|>"))
        return REALM_CHAT_TEMPLATE_DEEPSEEK;
    if (has(j, "User: ") && has(j, "Assistant: ") && has(j, "eos_token")) {
        if (has(j, "rwkv") || has(j, "System: "))
            return reject(lookalike, "RWKV-World (System:/User:/Assistant:)");
        return REALM_CHAT_TEMPLATE_DEEPSEEK2;
    }
    if (has(j, "USER: ") && has(j, "ASSISTANT:")) {
        if (has(j, "SYSTEM: "))
            return reject(lookalike, "Orca-Vicuna (SYSTEM: )");
        return REALM_CHAT_TEMPLATE_VICUNA;
    }
    if (has(j, "### Instruction:") && has(j, "### Response:"))
        return REALM_CHAT_TEMPLATE_ALPACA;
    return -1;
}

/* The first line of the template, abbreviated, for error messages. */
static void template_preview(jinja_src j, char *buf, size_t cap)
{
    size_t n = 0;
    while (n < j.n && n < 48 && j.p[n] != '\n' && j.p[n] != '\r')
        n++;
    snprintf(buf, cap, "%.*s%s", (int)n, j.p, n < j.n ? "..." : "");
}

int realm_chat_template_detect(const char *jinja, size_t len, realm_chat_template *out)
{
    if (jinja == NULL || out == NULL)
        return realm__error(REALM_ERR_INVAL, "chat template detection: NULL argument");
    if (len == 0)
        return realm__error(REALM_ERR_INVAL, "chat template is empty");
    jinja_src j = {jinja, len};

    /* Some GGUF files store just a template's name (llama.cpp accepts that). */
    char name[32];
    if (len < sizeof name) {
        memcpy(name, jinja, len);
        name[len] = '\0';
        realm_chat_template t;
        if (memchr(jinja, '\0', len) == NULL &&
            realm_chat_template_from_name(name, &t) == REALM_OK) {
            *out = t;
            return REALM_OK;
        }
    }

    const char *lookalike;
    int t = detect(j, &lookalike);
    if (t >= 0) {
        *out = (realm_chat_template)t;
        return REALM_OK;
    }
    char preview[64];
    template_preview(j, preview, sizeof preview);
    if (lookalike)
        return realm__error(REALM_ERR_UNSUPPORTED,
                            "chat template looks like %s, which Realm does not support; "
                            "choose one of: %s",
                            lookalike, realm_chat_template_names());
    return realm__error(REALM_ERR_UNSUPPORTED,
                        "chat template not recognised (\"%s\"); choose one of: %s", preview,
                        realm_chat_template_names());
}

int realm_chat_template_for_model(const realm_gguf *g, const char *override_name,
                                  realm_chat_template *out)
{
    if (g == NULL || out == NULL)
        return realm__error(REALM_ERR_INVAL, "chat template for model: NULL argument");
    if (override_name != NULL && override_name[0] != '\0')
        return realm_chat_template_from_name(override_name, out);

    realm_gguf_str s;
    int rc = realm_gguf_get_str(g, "tokenizer.chat_template", &s);
    if (rc == REALM_ERR_NOTFOUND)
        return realm__error(REALM_ERR_NOTFOUND,
                            "model has no tokenizer.chat_template; name a template, one of: %s",
                            realm_chat_template_names());
    if (rc < 0)
        return rc; /* REALM_ERR_TYPE, with the reader's message */
    if (s.len == 0)
        return realm__error(REALM_ERR_NOTFOUND,
                            "model's tokenizer.chat_template is empty; name a template, one of: %s",
                            realm_chat_template_names());
    realm_chat_template t;
    rc = realm_chat_template_detect(s.data, (size_t)s.len, &t);
    if (rc < 0) {
        /* Say where the template came from; keep the detector's detail. */
        char detail[512];
        snprintf(detail, sizeof detail, "%s", realm_last_error());
        return realm__error(rc, "tokenizer.chat_template: %s", detail);
    }
    *out = t;
    return REALM_OK;
}

/* ---- rendering --------------------------------------------------------- */

/* Check the conversation against the template's rules before rendering. */
static int check_messages(const template_desc *d, const realm_chat_message *msgs, size_t n)
{
    if (n > 0 && msgs == NULL)
        return realm__error(REALM_ERR_INVAL, "chat render: NULL messages");
    for (size_t i = 0; i < n; i++) {
        if ((int)msgs[i].role < 0 || msgs[i].role >= REALM_CHAT_ROLE_COUNT)
            return realm__error(REALM_ERR_INVAL, "message %zu: invalid role id %d", i,
                                (int)msgs[i].role);
        if (msgs[i].content == NULL)
            return realm__error(REALM_ERR_INVAL, "message %zu: NULL content", i);
        if (msgs[i].role == REALM_CHAT_SYSTEM && i > 0 && d->system_first_only)
            return realm__error(REALM_ERR_INVAL,
                                "message %zu: chat template '%s' takes a system message only "
                                "as the first message",
                                i, d->name);
    }
    return REALM_OK;
}

/* realm_chat_render, also marking in from[0..cap) (when not NULL) which
 * bytes are message text. */
static int64_t render(realm_chat_template t, const realm_chat_message *msgs, size_t n,
                      bool add_generation_prompt, const char *bos_text, const char *eos_text,
                      char *out, unsigned char *from, size_t cap)
{
    if (!valid_template(t))
        return realm__error(REALM_ERR_INVAL, "chat render: invalid template id %d", (int)t);
    if (out == NULL && cap > 0)
        return realm__error(REALM_ERR_INVAL, "chat render: NULL output buffer");
    const template_desc *d = &templates[t];
    int rc = check_messages(d, msgs, n);
    if (rc < 0)
        return rc;

    chat_ctx c = {
        .msg = msgs,
        .n = n,
        .gen = add_generation_prompt,
        .bos = bos_text ? bos_text : d->bos,
        .eos = eos_text ? eos_text : d->eos,
        .out = {out, from, cap, 0, false},
    };
    if (d->fold)
        render_folded(&c, d->fold);
    else
        d->render(&c);
    if (c.out.overflow || c.out.len > (uint64_t)INT64_MAX)
        return realm__error(REALM_ERR_RANGE, "chat render: prompt too large");
    if (c.out.len < cap)
        out[c.out.len] = '\0';
    else if (cap > 0)
        out[0] = '\0'; /* never hand back a truncated prompt */
    return (int64_t)c.out.len;
}

int64_t realm_chat_render(realm_chat_template t, const realm_chat_message *msgs, size_t n,
                          bool add_generation_prompt, const char *bos_text, const char *eos_text,
                          char *out, size_t cap)
{
    return render(t, msgs, n, add_generation_prompt, bos_text, eos_text, out, NULL, cap);
}

int realm_chat_render_alloc(realm_chat_template t, const realm_chat_message *msgs, size_t n,
                            bool add_generation_prompt, const char *bos_text, const char *eos_text,
                            char **out, size_t *len)
{
    if (out == NULL)
        return realm__error(REALM_ERR_INVAL, "chat render: NULL output pointer");
    *out = NULL;
    int64_t need =
        realm_chat_render(t, msgs, n, add_generation_prompt, bos_text, eos_text, NULL, 0);
    if (need < 0)
        return (int)need;
    if ((uint64_t)need >= SIZE_MAX)
        return realm__error(REALM_ERR_RANGE, "chat render: prompt too large");
    char *buf = malloc((size_t)need + 1);
    if (buf == NULL)
        return realm__error(REALM_ERR_NOMEM, "chat render: out of memory for %lld bytes",
                            (long long)need + 1);
    int64_t got = realm_chat_render(t, msgs, n, add_generation_prompt, bos_text, eos_text, buf,
                                    (size_t)need + 1);
    if (got != need) { /* cannot happen: rendering is deterministic */
        free(buf);
        return got < 0 ? (int)got : realm__error(REALM_ERR_INVAL, "chat render: size changed");
    }
    *out = buf;
    if (len)
        *len = (size_t)need;
    return REALM_OK;
}

/* ---- special token texts ----------------------------------------------- */

/* Copy the text of the token whose id is stored under id_key into buf. */
static int copy_token_text(const realm_gguf *g, const char *id_key, char *buf, size_t cap)
{
    if (cap == 0 || buf == NULL)
        return realm__error(REALM_ERR_INVAL, "%s: no output buffer", id_key);
    buf[0] = '\0';
    int64_t id;
    int rc = realm_gguf_get_int(g, id_key, &id);
    if (rc == REALM_ERR_NOTFOUND)
        return REALM_OK; /* the model declares no such token */
    if (rc < 0)
        return rc;
    int64_t kv;
    uint64_t n;
    rc = realm_gguf_get_arr(g, "tokenizer.ggml.tokens", REALM_GGUF_STRING, &kv, &n);
    if (rc < 0)
        return realm__error(REALM_ERR_FORMAT, "%s is set but tokenizer.ggml.tokens is %s", id_key,
                            rc == REALM_ERR_NOTFOUND ? "missing" : "not a string array");
    if (id < 0 || (uint64_t)id >= n)
        return realm__error(REALM_ERR_FORMAT, "%s = %lld is outside the %llu tokens", id_key,
                            (long long)id, (unsigned long long)n);
    realm_gguf_str s = realm_gguf_kv_arr_str(g, kv, (uint64_t)id);
    if (s.len >= cap)
        return realm__error(REALM_ERR_RANGE, "%s: token text of %llu bytes does not fit in %zu",
                            id_key, (unsigned long long)s.len, cap);
    memcpy(buf, s.data, (size_t)s.len);
    buf[s.len] = '\0';
    return REALM_OK;
}

int realm_chat_special_texts(const realm_gguf *g, char *bos, size_t bos_cap, char *eos,
                             size_t eos_cap)
{
    if (g == NULL)
        return realm__error(REALM_ERR_INVAL, "chat special texts: NULL model");
    int rc = copy_token_text(g, "tokenizer.ggml.bos_token_id", bos, bos_cap);
    if (rc < 0)
        return rc;
    return copy_token_text(g, "tokenizer.ggml.eos_token_id", eos, eos_cap);
}

/* ---- prompts as token ids ---------------------------------------------- */

/* The text of token id, or "" when the vocabulary has none. */
static const char *token_text_or_empty(const realm_tokenizer *tok, realm_token id)
{
    const char *s = id == REALM_TOKEN_NULL ? NULL : realm_token_text(tok, id, NULL);
    return s ? s : "";
}

/*
 * A conversation as ids. A final assistant message is continued: the
 * conversation before it is rendered with the generation prompt, and its
 * text follows as is (llama-server's assistant prefill).
 */
static int conversation_ids(const realm_tokenizer *tok, const realm_chat_prompt *p, id_list *res)
{
    size_t n = p->n_messages;
    const char *cont = NULL;
    if (n > 0 && p->messages[n - 1].role == REALM_CHAT_ASSISTANT) {
        cont = p->messages[n - 1].content;
        if (cont == NULL)
            return realm__error(REALM_ERR_INVAL, "message %zu: NULL content", n - 1);
        n--;
    }
    const char *bos = token_text_or_empty(tok, realm_tokenizer_bos(tok));
    const char *eos = token_text_or_empty(tok, realm_tokenizer_eos(tok));
    int64_t need = render(p->tmpl, p->messages, n, true, bos, eos, NULL, NULL, 0);
    if (need < 0)
        return (int)need;
    if ((uint64_t)need >= SIZE_MAX / 2)
        return realm__error(REALM_ERR_RANGE, "chat prompt too large");
    char *text = malloc((size_t)need + 1);
    unsigned char *from = malloc((size_t)need + 1);
    realm_text_part *parts = malloc(((size_t)need + 2) * sizeof *parts);
    int rc = REALM_OK;
    if (text == NULL || from == NULL || parts == NULL)
        rc = realm__error(REALM_ERR_NOMEM, "out of memory for a chat prompt of %lld bytes",
                          (long long)need);
    if (rc == REALM_OK &&
        render(p->tmpl, p->messages, n, true, bos, eos, text, from, (size_t)need + 1) != need)
        rc = realm__error(REALM_ERR_INVAL, "chat render: size changed");
    size_t np = 0;
    for (size_t i = 0; rc == REALM_OK && i < (size_t)need;) {
        size_t j = i + 1;
        while (j < (size_t)need && from[j] == from[i])
            j++;
        parts[np++] = (realm_text_part){text + i, j - i, from[i] == 0};
        i = j;
    }
    if (rc == REALM_OK && cont != NULL)
        parts[np++] = (realm_text_part){cont, strlen(cont), false};
    if (rc == REALM_OK)
        rc = realm_tokenize_parts_alloc(tok, parts, np, REALM_TOKENIZE_ADD_SPECIAL, &res->ids,
                                        &res->n);
    free(text);
    free(from);
    free(parts);
    if (rc < 0)
        return rc;
    /* The template expects BOS but the vocabulary does not add it. */
    const realm_token b = realm_tokenizer_bos(tok);
    if (realm_chat_template_starts_with_bos(p->tmpl) && b != REALM_TOKEN_NULL &&
        (res->n == 0 || res->ids[0] != b)) {
        realm_token *v = realloc(res->ids, ((size_t)res->n + 1) * sizeof *v);
        if (v == NULL)
            return realm__error(REALM_ERR_NOMEM, "out of memory");
        memmove(v + 1, v, (size_t)res->n * sizeof *v);
        v[0] = b;
        res->ids = v;
        res->n++;
    }
    return REALM_OK;
}

int realm_chat_prompt_tokenize(const realm_tokenizer *tok, const realm_chat_prompt *p,
                               realm_token **ids, int32_t *n_ids)
{
    if (ids == NULL || n_ids == NULL)
        return realm__error(REALM_ERR_INVAL, "chat prompt: NULL output");
    *ids = NULL;
    *n_ids = 0;
    if (tok == NULL || p == NULL || (p->messages == NULL && p->n_messages > 0) ||
        (p->text == NULL && p->text_len > 0))
        return realm__error(REALM_ERR_INVAL, "chat prompt: bad arguments");
    id_list res = {NULL, 0};
    int rc;
    if (p->messages != NULL) {
        if (p->n_messages == 0)
            return realm__error(REALM_ERR_INVAL, "chat prompt: no messages");
        rc = conversation_ids(tok, p, &res);
    } else {
        unsigned flags = REALM_TOKENIZE_ADD_SPECIAL;
        if (p->parse_special)
            flags |= REALM_TOKENIZE_PARSE_SPECIAL;
        rc =
            realm_tokenize_alloc(tok, p->text ? p->text : "", p->text_len, flags, &res.ids, &res.n);
        /* A raw prompt that writes BOS itself gets it once. */
        const realm_token b = realm_tokenizer_bos(tok);
        if (rc == REALM_OK && res.n >= 2 && b != REALM_TOKEN_NULL && res.ids[0] == b &&
            res.ids[1] == b && realm_tokenizer_add_bos(tok)) {
            memmove(res.ids, res.ids + 1, (size_t)(res.n - 1) * sizeof *res.ids);
            res.n--;
        }
    }
    if (rc < 0) {
        free(res.ids);
        return rc;
    }
    *ids = res.ids;
    *n_ids = res.n;
    return REALM_OK;
}
