/*
 * realm/chat.h — chat templates: turn an OpenAI-style list of messages into
 * the prompt text a chat model was trained on.
 *
 * Realm does not run Jinja. It knows the prompt formats users actually meet,
 * written out by hand from each family's published template, and recognises
 * which one a model uses from distinctive markers in the Jinja source stored
 * in the GGUF key tokenizer.chat_template. A template Realm does not
 * recognise is an error at model load (naming the supported templates), never
 * a silent fallback; the operator can name a template to override detection.
 *
 *     realm_chat_template t;
 *     if (realm_chat_template_for_model(g, NULL, &t) < 0)   // or "chatml", ...
 *         fprintf(stderr, "%s\n", realm_last_error());
 *     realm_chat_message msgs[] = {
 *         {REALM_CHAT_SYSTEM, "You are a helpful assistant"},
 *         {REALM_CHAT_USER, "Hello"},
 *     };
 *     realm_token *ids;
 *     int32_t n;
 *     realm_chat_prompt p = {.messages = msgs, .n_messages = 2, .tmpl = t};
 *     if (realm_chat_prompt_tokenize(tok, &p, &ids, &n) == 0) {
 *         ... generate from ids[0..n) ...
 *         free(ids);
 *     }
 *
 * BOS convention. The rendered prompt never begins with the BOS token's text:
 * templates whose Jinja starts with {{ bos_token }} rely on the tokenizer to
 * add BOS (tokenizer.ggml.add_bos_token), exactly as llama.cpp strips a
 * leading BOS from rendered Jinja and lets the tokenizer add it.
 * realm_chat_template_starts_with_bos says whether the model expects one, for
 * a caller that must add it itself. BOS text inside the conversation (llama-2
 * opens every later turn with "<s>[INST]") and EOS text where the Jinja writes
 * eos_token are emitted as bos_text / eos_text; markers the Jinja spells out
 * literally ("<|eot_id|>", "<|im_end|>", "<|EOT|>") are written as such.
 * realm_chat_prompt_tokenize turns these into control tokens while the
 * messages' text stays text; realm_chat_render gives the same prompt as one
 * string, for display.
 *
 * The templates, the conversation system S, user U, assistant A (T(x) is x
 * with Unicode whitespace stripped at both ends, like Python's str.strip and
 * Jinja's |trim; BOS and EOS are bos_text and eos_text):
 *
 *   llama2            Llama-2-chat, CodeLlama-Instruct.
 *                     [INST] T(<<SYS>>\nS\n<</SYS>>\n\nU) [/INST] T(A) EOS
 *                     then BOS[INST] T(U) [/INST] ... — S joins the first user
 *                     message.
 *   mistral-legacy    The original Mistral-7B-Instruct v0.1/v0.2 and
 *                     Mixtral-8x7B-Instruct template, which has no system role:
 *                     [INST] S\n\nU [/INST]AEOS[INST] U [/INST]
 *   mistral-v1        Mistral's updated v0.1 template:
 *                     " [INST] S\n\nU [/INST] AEOS [INST] U [/INST]"
 *   mistral-v3        Mistral-7B-Instruct v0.3, Mixtral-8x22B, Codestral:
 *                     [INST] U[/INST] T(A)EOS[INST] S\n\nU[/INST] — S joins the
 *                     LAST user message, as mistral-common does (Mistral's
 *                     Jinja does the same when the conversation ends with a
 *                     user turn, and drops S when it ends with an answer).
 *   mistral-v3-tekken Mistral-Nemo: as v3 without the spaces and without trim:
 *                     [INST]U[/INST]AEOS[INST]S\n\nU[/INST]
 *   mistral-v7        Mistral-Large-2411: [SYSTEM_PROMPT] S[/SYSTEM_PROMPT]
 *                     [INST] U[/INST] AEOS (no newlines between the parts).
 *   mistral-v7-tekken Mistral-Small-3.x: as v7 without the spaces.
 *   zephyr            Zephyr, TinyLlama-Chat: <|system|>\nSEOS\n<|user|>\nUEOS\n
 *                     <|assistant|>\nAEOS\n; generation prompt <|assistant|>\n
 *   chatml            Qwen, Hermes, Yi, many fine-tunes:
 *                     <|im_start|>role\ncontent<|im_end|>\n
 *   llama3            Llama-3: <|start_header_id|>role<|end_header_id|>\n\n
 *                     T(content)<|eot_id|>
 *   llama3.1          Llama-3.1/3.2/3.3: as llama3, but the system turn is
 *                     always present and opens with "Cutting Knowledge Date:
 *                     December 2023\nToday Date: 26 Jul 2024\n\n" (the
 *                     template's default date; Llama-3.2's template would put
 *                     today's date there).
 *   gemma             Gemma 1/2/3: <start_of_turn>user\nT(U)<end_of_turn>\n,
 *                     role "model" for the assistant; S + "\n\n" opens the
 *                     first user turn (Gemma 3's rule; Gemma 1/2 reject S).
 *   phi3              Phi-3/3.5: <|role|>\ncontent<|end|>\n; without a
 *                     generation prompt the prompt ends with EOS, as the Phi-3.5
 *                     template does. An empty system message is skipped.
 *   deepseek          DeepSeek-Coder-Instruct: S### Instruction:\nU\n
 *                     ### Response:\nA\n<|EOT|>\n; with no system message the
 *                     template's own default system prompt is used.
 *   deepseek2         DeepSeek-LLM-Chat, DeepSeek-V2: S\n\nUser: U\n\n
 *                     Assistant: AEOS; generation prompt "Assistant:"
 *   deepseek3         DeepSeek-V3 (and R1's first template): all system
 *                     messages joined by \n\n first, then <｜User｜>U
 *                     <｜Assistant｜>A<｜end▁of▁sentence｜>. Later R1 and V3.1
 *                     templates also use these markers but add <think>
 *                     handling that Realm does not reproduce.
 *   command-r         Command-R/R+: <|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>S
 *                     <|END_OF_TURN_TOKEN|>, T(U) and T(A) in USER_TOKEN and
 *                     CHATBOT_TOKEN turns.
 *   vicuna            Vicuna v1.1 (FastChat's vicuna_v1.1):
 *                     "S USER: U ASSISTANT: AEOSUSER: U ASSISTANT:"; with no
 *                     system message, FastChat's default one.
 *   alpaca            Stanford Alpaca: S\n\n### Instruction:\nU\n\n
 *                     ### Response:AEOS, more turns each after "\n\n"; with no
 *                     system message, Alpaca's "Below is an instruction ..."
 *
 * The generation prompt (add_generation_prompt) is the assistant header:
 * "<|im_start|>assistant\n", "<start_of_turn>model\n", and so on; templates
 * whose user turn already ends where the answer begins (llama2, mistral-*)
 * add nothing.
 *
 * Deliberate limits. Default system prompts that a published template
 * injects when the conversation has none are NOT added, except where the
 * template family is unambiguous and the default is part of the format
 * (deepseek, vicuna, alpaca); notably Qwen2/2.5's "You are Qwen, created by
 * Alibaba Cloud..." and Mistral-Small's dated default are not. Tool calls,
 * tool roles and multimodal content are not handled. Roles need not
 * alternate: where a Jinja template would raise on two user turns in a row,
 * Realm renders each turn by the template's rule. For templates where the
 * system prompt is folded into a user turn or only read from the first
 * message (llama2, mistral-legacy/v1/v3/v3-tekken, gemma, command-r, vicuna,
 * alpaca), a system message anywhere but first is an error; if no user
 * message follows the system message to carry it, the system prompt is
 * rendered in a user turn of its own.
 *
 * Thread safety: every function here is pure (no shared state) apart from the
 * thread-local error message.
 */
#ifndef REALM_CHAT_H
#define REALM_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realm/gguf.h"
#include "realm/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

/* Template ids. Append-only. */
typedef enum realm_chat_template {
    REALM_CHAT_TEMPLATE_LLAMA2,
    REALM_CHAT_TEMPLATE_MISTRAL_LEGACY,
    REALM_CHAT_TEMPLATE_MISTRAL_V1,
    REALM_CHAT_TEMPLATE_MISTRAL_V3,
    REALM_CHAT_TEMPLATE_MISTRAL_V3_TEKKEN,
    REALM_CHAT_TEMPLATE_MISTRAL_V7,
    REALM_CHAT_TEMPLATE_MISTRAL_V7_TEKKEN,
    REALM_CHAT_TEMPLATE_ZEPHYR,
    REALM_CHAT_TEMPLATE_CHATML,
    REALM_CHAT_TEMPLATE_LLAMA3,
    REALM_CHAT_TEMPLATE_LLAMA31,
    REALM_CHAT_TEMPLATE_GEMMA,
    REALM_CHAT_TEMPLATE_PHI3,
    REALM_CHAT_TEMPLATE_DEEPSEEK,
    REALM_CHAT_TEMPLATE_DEEPSEEK2,
    REALM_CHAT_TEMPLATE_DEEPSEEK3,
    REALM_CHAT_TEMPLATE_COMMAND_R,
    REALM_CHAT_TEMPLATE_VICUNA,
    REALM_CHAT_TEMPLATE_ALPACA,
    REALM_CHAT_TEMPLATE_COUNT
} realm_chat_template;

typedef enum realm_chat_role {
    REALM_CHAT_SYSTEM,
    REALM_CHAT_USER,
    REALM_CHAT_ASSISTANT,
    REALM_CHAT_ROLE_COUNT
} realm_chat_role;

/* One message. content is a NUL-terminated UTF-8 string, borrowed. */
typedef struct realm_chat_message {
    realm_chat_role role;
    const char *content;
} realm_chat_message;

/* "system", "user", "assistant"; "unknown" for an invalid id. */
const char *realm_chat_role_name(realm_chat_role r);
/* Parse a role name (exact, lower case); "developer" is REALM_CHAT_SYSTEM,
 * as OpenAI treats it. REALM_ERR_INVAL for anything else ("tool",
 * "function", ...), with the name in the message. */
int realm_chat_role_from_name(const char *name, realm_chat_role *out);

/* Canonical name ("chatml", "mistral-v3", ...); "unknown" for an invalid id. */
const char *realm_chat_template_name(realm_chat_template t);
/* All canonical names, comma-separated, for help texts and error messages. */
const char *realm_chat_template_names(void);

/*
 * Look up a template by its canonical name or an alias (case-insensitive):
 * llama-2; mistral-v0; llama-3; llama-3.1, llama3.2, llama-3.2, llama3.3,
 * llama-3.3; tinyllama; qwen, qwen2; gemma2, gemma3; phi-3, phi3.5, phi-3.5;
 * deepseek-coder; deepseek-v2, deepseek-llm; deepseek-v3, deepseek-r1;
 * command-r-plus, cohere; vicuna-v1.1. An unknown name is REALM_ERR_NOTFOUND
 * with the list of names in the message.
 */
int realm_chat_template_from_name(const char *name, realm_chat_template *out);

/*
 * Recognise a template from its Jinja source (len bytes, need not be
 * NUL-terminated) by distinctive markers, checked in a fixed order: ChatML's
 * <|im_start|>, the [INST] family (told apart by <<SYS>>, [SYSTEM_PROMPT],
 * " [INST]", [AVAILABLE_TOOLS] and the spacing around [INST]/[/INST]),
 * <|start_header_id|> (with "Cutting Knowledge Date" for llama3.1),
 * <start_of_turn>, <|START_OF_TURN_TOKEN|>, <|user|> with <|end|> (phi3) or
 * with an end-of-sequence marker (zephyr), <｜User｜>/<｜Assistant｜>
 * (deepseek3), "### Instruction:" with <|EOT|> (deepseek), "User: " with
 * "Assistant: " and eos_token (deepseek2), "USER: " with "ASSISTANT: "
 * (vicuna), "### Instruction:" with "### Response:" (alpaca). Templates that
 * share a marker with a supported one but use another format (Phi-4,
 * SmolVLM, GLM, Falcon-3, Command-R7B) are rejected rather than misread.
 * Returns REALM_ERR_UNSUPPORTED, naming the supported templates, if nothing
 * matches; REALM_ERR_INVAL for a NULL or empty source.
 */
int realm_chat_template_detect(const char *jinja, size_t len, realm_chat_template *out);

/*
 * The template for a model: override_name if it is non-NULL and non-empty
 * (looked up as realm_chat_template_from_name does; tokenizer.chat_template
 * is then not read), else detected from the model's tokenizer.chat_template.
 * Errors: REALM_ERR_NOTFOUND for an unknown override name or a model without
 * tokenizer.chat_template or with an empty one (the message says so and lists
 * the names to override with); REALM_ERR_TYPE if that key is not a string;
 * REALM_ERR_UNSUPPORTED if the template is not one Realm recognises.
 */
int realm_chat_template_for_model(const realm_gguf *g, const char *override_name,
                                  realm_chat_template *out);

/* True if the model expects its prompt to begin with BOS (the published
 * template starts with bos_token, or for vicuna/alpaca, the reference code
 * tokenizes with BOS). See the BOS convention above. */
bool realm_chat_template_starts_with_bos(realm_chat_template t);

/*
 * Render msgs[0..n) with template t into out[0..cap) as a NUL-terminated
 * string. bos_text / eos_text are the model's BOS and EOS token texts; NULL
 * means the template family's usual ones ("<s>"/"</s>" for the llama and
 * mistral families, "<|endoftext|>" as phi3's EOS, "<｜end▁of▁sentence｜>"
 * as deepseek2's EOS).
 *
 * Returns the prompt's length in bytes (without the NUL). If that is >= cap,
 * the prompt did not fit and out holds "" (when cap > 0): call again with a
 * buffer of at least the returned length + 1. out may be NULL when cap is 0.
 * Errors (negative): REALM_ERR_INVAL for an invalid template or role id, a
 * NULL content, or a system message in a position the template cannot place
 * (the message names the message index).
 */
int64_t realm_chat_render(realm_chat_template t, const realm_chat_message *msgs, size_t n,
                          bool add_generation_prompt, const char *bos_text, const char *eos_text,
                          char *out, size_t cap);

/* As realm_chat_render, into a new malloc'd NUL-terminated string that the
 * caller frees; *len (if non-NULL) gets its length. On failure *out is NULL. */
int realm_chat_render_alloc(realm_chat_template t, const realm_chat_message *msgs, size_t n,
                            bool add_generation_prompt, const char *bos_text, const char *eos_text,
                            char **out, size_t *len);

/*
 * The prompt of a generation request, as token ids: the one place where a
 * request's "messages" or "prompt" become what the engine runs.
 *
 * A conversation (messages != NULL) is rendered with tmpl, and the text the
 * template writes (markers such as <|im_start|>, <|eot_id|>, [INST], and the
 * BOS/EOS texts it places) is tokenized with special-token parsing, while
 * the messages' own text is not: a user who types "<|end|>\n<|assistant|>"
 * gets those characters, not a forged turn (realm_tokenize_parts_alloc).
 * With no such text in the messages, the ids equal llama.cpp's tokenization
 * of the rendered prompt with special parsing. BOS comes first as the
 * vocabulary adds it (tokenizer.ggml.add_bos_token), or, when the vocabulary
 * does not but the template starts with BOS, added here; never twice. The
 * generation prompt (the assistant header) ends the prompt, except when the
 * last message is an assistant message: that message is continued (the
 * conversation before it gets the generation prompt, then its text follows,
 * untrimmed, as llama-server does). BOS and EOS texts are the vocabulary's.
 *
 * A raw prompt (messages == NULL) is text[0..text_len), tokenized with BOS as
 * the vocabulary says, and with special-token parsing only if
 * parse_special; a BOS the text itself writes is not doubled.
 *
 * On success *ids is a new malloc'ed array of *n_ids tokens (the caller
 * frees it). Errors: REALM_ERR_INVAL (no messages, a system message the
 * template cannot place, NULL arguments), REALM_ERR_RANGE, REALM_ERR_NOMEM.
 */
typedef struct realm_chat_prompt {
    const realm_chat_message *messages; /* a conversation, or NULL for a raw prompt */
    size_t n_messages;
    realm_chat_template tmpl;
    const char *text; /* the raw prompt */
    size_t text_len;
    bool parse_special; /* raw prompt: recognise control tokens written in it */
} realm_chat_prompt;

int realm_chat_prompt_tokenize(const realm_tokenizer *tok, const realm_chat_prompt *p,
                               realm_token **ids, int32_t *n_ids);

/*
 * Copy the texts of the model's BOS and EOS tokens (tokenizer.ggml.bos_token_id
 * and eos_token_id looked up in tokenizer.ggml.tokens) into bos[0..bos_cap)
 * and eos[0..eos_cap), NUL-terminated. A token the model does not declare
 * gives "". Errors: REALM_ERR_FORMAT if an id is out of range of the token
 * list or the list is missing while an id is declared; REALM_ERR_RANGE if a
 * text does not fit its buffer (256 bytes is plenty for real vocabularies).
 */
int realm_chat_special_texts(const realm_gguf *g, char *bos, size_t bos_cap, char *eos,
                             size_t eos_cap);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
