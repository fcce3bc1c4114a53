/*
 * realm/tokenizer.h — text <-> token ids, built from a GGUF file's tokenizer
 * metadata (the `tokenizer.ggml.*` keys), behaving as llama.cpp does.
 *
 * Three tokenizer models, chosen by `tokenizer.ggml.model`:
 *
 *   "llama"  SentencePiece BPE (LLaMA 1/2, TinyLlama, Mistral, Phi-3): spaces
 *            become U+2581, a space is prefixed to the text (and after every
 *            special token), pieces merge by score, characters missing from
 *            the vocabulary fall back to byte tokens <0xXX>.
 *   "gpt2"   byte-level BPE (GPT-2, LLaMA 3, Qwen2, DeepSeek, Falcon, ...):
 *            the text is split by the pre-tokenizer that `tokenizer.ggml.pre`
 *            names (PCRE2 regexes with Unicode properties), each piece's
 *            bytes are mapped to printable characters and merged by the rank
 *            of `tokenizer.ggml.merges`.
 *   "bert"   WordPiece (BERT, BGE): lower-cased, accents stripped, split at
 *            whitespace and punctuation, longest-match-first per word.
 *
 * Example:
 *
 *     realm_tokenizer *tok;
 *     if (realm_tokenizer_load(gguf, &tok) < 0) { puts(realm_last_error()); ... }
 *     realm_token ids[256];
 *     int32_t n = realm_tokenize(tok, "Hello world", 11, REALM_TOKENIZE_ADD_SPECIAL,
 *                                ids, 256);
 *     if (n == REALM_ERR_RANGE) ... // more than 256 tokens; pass out = NULL to count
 *     char text[1024];
 *     int32_t len = realm_detokenize(tok, ids, n, 0, text, sizeof text);
 *     realm_tokenizer_free(tok);
 *
 * Special tokens. Every token has a type from `tokenizer.ggml.token_type`.
 * Control tokens (<s>, <|im_end|>, ...) and unknown tokens are recognised in
 * input text only with REALM_TOKENIZE_PARSE_SPECIAL, so text from a user
 * cannot inject them. User-defined tokens (added tokens that are not special,
 * e.g. GPT-NeoX's runs of spaces) are always recognised, as Hugging Face and
 * llama.cpp do; a token that ends generation (see realm_tokenizer_is_eog) is
 * always treated as a control token, whatever its type in the file.
 *
 * Invalid UTF-8 in input text never fails and never crashes. SentencePiece
 * encodes such bytes with byte tokens <0xXX>, as llama.cpp does: a bad lead
 * byte takes the next 1-3 bytes into its symbol, so a space among them comes
 * back as U+2581 (escaped before the split). Byte-level BPE and WordPiece
 * first replace every byte that does not start a valid UTF-8 sequence
 * (including overlong forms, surrogates and values above U+10FFFF) with
 * U+FFFD, then go on; WordPiece then drops U+FFFD. (llama.cpp also uses one
 * U+FFFD per bad byte; it differs only in accepting overlong forms and
 * surrogates.)
 *
 * Round trips: realm_detokenize(realm_tokenize(x)) == x for valid UTF-8 x,
 * with the reference's exceptions:
 *   - SentencePiece: U+2581 in x comes back as a space; the prefixed space
 *     is removed again only from the first token (so after a BOS it stays).
 *   - Byte-level BPE: bytes the vocabulary has no token for are dropped, as
 *     Hugging Face does (Falcon's lacks 0x03-0x05, 0x0B, 0x11, ... and 0xF2,
 *     StarCoder's 0xF1; GPT-2's and DeepSeek's have all 256).
 *   - Whitespace next to a user-defined token with LSTRIP/RSTRIP (Phi-3's
 *     "</s>") is swallowed.
 *   - REALM_DETOK_CLEAN_SPACES changes spacing on purpose.
 *   - WordPiece is lossy (case, accents, spacing).
 *
 * Ownership: realm_tokenizer_load copies everything it needs; the realm_gguf
 * may be closed right after. Pointers returned by the query functions point
 * into the tokenizer and stay valid until realm_tokenizer_free.
 *
 * Thread safety: a loaded tokenizer is immutable; any number of threads may
 * call every function taking a `const realm_tokenizer *` at once (each call
 * allocates its own scratch). A realm_detok_stream belongs to one thread at a
 * time.
 *
 * Errors: negative codes from realm/error.h with a message in
 * realm_last_error(): REALM_ERR_FORMAT for missing or inconsistent metadata
 * (the message names the key), REALM_ERR_UNSUPPORTED for a tokenizer model or
 * pre-tokenizer this build does not implement, REALM_ERR_RANGE for an output
 * buffer that is too small, REALM_ERR_INVAL for bad arguments (a token id out
 * of range, NULL pointers), REALM_ERR_NOMEM.
 */
#ifndef REALM_TOKENIZER_H
#define REALM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "realm/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The public API: exported from the shared library, which hides the rest. */
#pragma GCC visibility push(default)

typedef int32_t realm_token;
#define REALM_TOKEN_NULL (-1)

typedef struct realm_tokenizer realm_tokenizer;

typedef enum realm_vocab_type {
    REALM_VOCAB_SPM = 0, /* "llama": SentencePiece BPE with byte fallback */
    REALM_VOCAB_BPE = 1, /* "gpt2": byte-level BPE */
    REALM_VOCAB_WPM = 2, /* "bert": WordPiece */
    REALM_VOCAB_TYPE_COUNT
} realm_vocab_type;

/* Token types as stored in tokenizer.ggml.token_type. */
typedef enum realm_token_type {
    REALM_TOKEN_TYPE_UNDEFINED = 0,
    REALM_TOKEN_TYPE_NORMAL = 1,
    REALM_TOKEN_TYPE_UNKNOWN = 2,
    REALM_TOKEN_TYPE_CONTROL = 3,
    REALM_TOKEN_TYPE_USER_DEFINED = 4,
    REALM_TOKEN_TYPE_UNUSED = 5,
    REALM_TOKEN_TYPE_BYTE = 6,
    REALM_TOKEN_TYPE_COUNT
} realm_token_type;

/* Token attributes (bit set): the type, refined at load (end-of-generation
 * tokens gain CONTROL, control tokens named "*unused*" gain UNUSED), plus
 * whether whitespace next to a parsed special token is swallowed. */
enum {
    REALM_TOKEN_ATTR_UNDEFINED = 0,
    REALM_TOKEN_ATTR_UNKNOWN = 1 << 0,
    REALM_TOKEN_ATTR_UNUSED = 1 << 1,
    REALM_TOKEN_ATTR_NORMAL = 1 << 2,
    REALM_TOKEN_ATTR_CONTROL = 1 << 3,
    REALM_TOKEN_ATTR_USER_DEFINED = 1 << 4,
    REALM_TOKEN_ATTR_BYTE = 1 << 5,
    REALM_TOKEN_ATTR_LSTRIP = 1 << 6, /* eats whitespace before it */
    REALM_TOKEN_ATTR_RSTRIP = 1 << 7, /* eats whitespace after it */
};

/* ---- loading and vocabulary queries ------------------------------------ */

/*
 * Build a tokenizer from g's metadata. Required: tokenizer.ggml.model and
 * tokenizer.ggml.tokens (non-empty string array); for "gpt2" also
 * tokenizer.ggml.merges. Optional arrays (scores, token_type) must have one
 * entry per token. Special ids (bos/eos/eot/eom/unk) must be in range;
 * out-of-range padding/sep/cls/mask/fim ids are ignored, as llama.cpp does.
 * Duplicate token texts are an error, and so is add_bos/add_eos without the
 * token. For "gpt2", tokenizer.ggml.pre names the pre-tokenizer: an unknown
 * name is REALM_ERR_UNSUPPORTED; none means llama.cpp's "default" regexes.
 * Models other than llama/gpt2/bert (t5, rwkv, plamo2) are
 * REALM_ERR_UNSUPPORTED. Loads a 150k-token vocabulary in well under 100 ms.
 * On failure *out is NULL.
 */
int realm_tokenizer_load(const realm_gguf *g, realm_tokenizer **out);
void realm_tokenizer_free(realm_tokenizer *tok);

realm_vocab_type realm_tokenizer_type(const realm_tokenizer *tok);
/* "llama", "gpt2" or "bert"; and the pre-tokenizer name ("default" when the
 * file has none). */
const char *realm_tokenizer_model(const realm_tokenizer *tok);
const char *realm_tokenizer_pre(const realm_tokenizer *tok);
int32_t realm_tokenizer_n_vocab(const realm_tokenizer *tok);

/* Special ids, or REALM_TOKEN_NULL when the vocabulary has none. */
realm_token realm_tokenizer_bos(const realm_tokenizer *tok);
realm_token realm_tokenizer_eos(const realm_tokenizer *tok);
realm_token realm_tokenizer_eot(const realm_tokenizer *tok); /* end of turn */
realm_token realm_tokenizer_eom(const realm_tokenizer *tok); /* end of message */
realm_token realm_tokenizer_unk(const realm_tokenizer *tok);
realm_token realm_tokenizer_sep(const realm_tokenizer *tok);
realm_token realm_tokenizer_pad(const realm_tokenizer *tok);
realm_token realm_tokenizer_nl(const realm_tokenizer *tok); /* newline token */
/* Whether REALM_TOKENIZE_ADD_SPECIAL adds BOS / EOS (metadata
 * tokenizer.ggml.add_bos_token / add_eos_token, else the model's default). */
bool realm_tokenizer_add_bos(const realm_tokenizer *tok);
bool realm_tokenizer_add_eos(const realm_tokenizer *tok);

/*
 * End of generation: EOS, EOT, EOM, and tokens recognised by their text as
 * llama.cpp does (<|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>,
 * <|endoftext|>, FIM pad/repo/file-separator tokens, ...).
 */
bool realm_tokenizer_is_eog(const realm_tokenizer *tok, realm_token id);
/* The EOG ids in ascending order: returns their count; writes at most n_max. */
int32_t realm_tokenizer_eog(const realm_tokenizer *tok, realm_token *out, int32_t n_max);

/* Token text exactly as stored in the file (NUL-terminated; *len, if not
 * NULL, gets its length), score, type and attributes. NULL / 0 for an id out
 * of range. */
const char *realm_token_text(const realm_tokenizer *tok, realm_token id, size_t *len);
float realm_token_score(const realm_tokenizer *tok, realm_token id);
realm_token_type realm_token_get_type(const realm_tokenizer *tok, realm_token id);
uint32_t realm_token_attr(const realm_tokenizer *tok, realm_token id);
/* The id whose stored text is exactly text[0..len), or REALM_TOKEN_NULL. */
realm_token realm_tokenizer_find(const realm_tokenizer *tok, const char *text, size_t len);

/* ---- tokenizing -------------------------------------------------------- */

enum {
    /* Add BOS / EOS as the vocabulary says (WordPiece: CLS ... SEP). */
    REALM_TOKENIZE_ADD_SPECIAL = 1 << 0,
    /* Recognise control and unknown tokens written in the text. */
    REALM_TOKENIZE_PARSE_SPECIAL = 1 << 1,
};

/*
 * Tokenize text[0..len) (any bytes; see "Invalid UTF-8" above). Returns the
 * number of tokens written to out (>= 0). With out == NULL and n_max == 0 it
 * only counts. If the tokens do not fit in n_max, returns REALM_ERR_RANGE
 * (the message gives the count needed) and out's contents are unspecified.
 * Text longer than 1 GiB is REALM_ERR_RANGE, and so is a pre-tokenizer regex
 * that exceeds PCRE2's limits (a 64 MiB JIT stack: that takes one "word" of
 * about two million letters with the gpt-4o, tekken or exaone-moe patterns,
 * whose groups repeat per letter; other patterns have no such limit).
 */
int32_t realm_tokenize(const realm_tokenizer *tok, const char *text, size_t len, unsigned flags,
                       realm_token *out, int32_t n_max);
/* The same into a new malloc'ed array (*out, *n_out tokens): the caller frees
 * it with free(). */
int realm_tokenize_alloc(const realm_tokenizer *tok, const char *text, size_t len, unsigned flags,
                         realm_token **out, int32_t *n_out);

/*
 * A text made of parts, some written by a trusted party (a chat template's
 * markers) and some not (the messages): control and unknown tokens are
 * recognised only where they lie wholly inside a part with `special` set.
 * Everything else is as realm_tokenize on the concatenated text with
 * REALM_TOKENIZE_PARSE_SPECIAL: text between two special tokens is one
 * stretch whatever parts it spans, so when no untrusted part contains a
 * control token's text the ids are exactly those of the whole text
 * tokenized with special parsing (llama.cpp's tokenization of a rendered
 * chat prompt).
 */
typedef struct realm_text_part {
    const char *text;
    size_t len;
    bool special; /* control tokens written in this part are recognised */
} realm_text_part;

/* Tokenize parts[0..n) into a new malloc'ed array (*out, *n_out tokens; the
 * caller frees it). flags: REALM_TOKENIZE_ADD_SPECIAL; PARSE_SPECIAL is
 * ignored (each part says). Errors as realm_tokenize_alloc. */
int realm_tokenize_parts_alloc(const realm_tokenizer *tok, const realm_text_part *parts, size_t n,
                               unsigned flags, realm_token **out, int32_t *n_out);

/* ---- detokenizing ------------------------------------------------------ */

enum {
    /* Drop a leading BOS and a trailing EOS (when the vocabulary adds them). */
    REALM_DETOK_REMOVE_SPECIAL = 1 << 0,
    /* Render control and unknown tokens as their text (else they are empty). */
    REALM_DETOK_RENDER_SPECIAL = 1 << 1,
    /* Apply the vocabulary's clean-up of spaces (" ." -> ".", " 's" -> "'s",
     * ...) as Hugging Face's clean_up_tokenization_spaces and llama.cpp do,
     * for the vocabularies that ask for it. Breaks exact round trips. */
    REALM_DETOK_CLEAN_SPACES = 1 << 2,
};

/*
 * The bytes of one token: the text with SentencePiece's U+2581 turned into
 * spaces, byte-level BPE's characters turned back into bytes, <0xXX> into the
 * byte. A piece may be part of a UTF-8 character. Control and unknown tokens
 * are empty unless flags has REALM_DETOK_RENDER_SPECIAL. Returns a pointer
 * into the tokenizer (not NUL-terminated) and its length in *len, or NULL for
 * an id out of range.
 */
const char *realm_token_to_piece(const realm_tokenizer *tok, realm_token id, unsigned flags,
                                 size_t *len);

/*
 * Concatenate the pieces of ids[0..n) into buf (not NUL-terminated) as
 * llama.cpp's llama_detokenize does: with add_space_prefix (SentencePiece) the
 * first token loses one leading space, except when REALM_DETOK_REMOVE_SPECIAL
 * removed a BOS before it (llama.cpp keeps the space then; with the BOS kept,
 * the BOS is the first token and the space stays too). The streaming
 * detokenizer never removes spaces. Returns the byte count; buf == NULL
 * with cap == 0 only measures; REALM_ERR_RANGE if cap is too small,
 * REALM_ERR_INVAL for an id out of range. Output over 1 GiB is RANGE.
 */
int32_t realm_detokenize(const realm_tokenizer *tok, const realm_token *ids, int32_t n,
                         unsigned flags, char *buf, size_t cap);

/*
 * Streaming detokenizer, for generation: feed token ids one at a time and take
 * text that is safe to send.
 *
 * - It never releases part of a UTF-8 character: bytes of an incomplete
 *   character wait for the next tokens. Bytes that can never form a valid
 *   character are released as U+FFFD, so released text is always valid UTF-8.
 * - Stop strings: text that might still become the start of a registered
 *   stop string is held back. When a stop string is complete, the text before
 *   it stays releasable, the stop string and anything after it are dropped,
 *   and the stream is stopped (push returns REALM_DETOK_STOPPED from then on).
 * - flush() ends the stream: held-back text is released, and an incomplete
 *   character at the end becomes U+FFFD.
 *
 *     realm_detok_stream *s;
 *     realm_detok_stream_new(tok, 0, &s);
 *     realm_detok_stream_add_stop(s, "\nUser:", 6);
 *     while (generating) {
 *         int rc = realm_detok_stream_push(s, id);
 *         char out[256]; size_t n;
 *         while ((n = realm_detok_stream_take(s, out, sizeof out)) > 0) send(out, n);
 *         if (rc == REALM_DETOK_STOPPED) break;
 *     }
 *     realm_detok_stream_flush(s);  // then take() the rest
 *     realm_detok_stream_free(s);
 *
 * The stream keeps a pointer to tok, which must outlive it.
 */
typedef struct realm_detok_stream realm_detok_stream;

#define REALM_DETOK_STOPPED 1

/* flags: REALM_DETOK_RENDER_SPECIAL or 0. */
int realm_detok_stream_new(const realm_tokenizer *tok, unsigned flags, realm_detok_stream **out);
void realm_detok_stream_free(realm_detok_stream *s);
/* Register a stop string (copied; non-empty). Only before the first push. */
int realm_detok_stream_add_stop(realm_detok_stream *s, const char *stop, size_t len);
/* Append a token's piece. Returns 0, REALM_DETOK_STOPPED once a stop string
 * has been seen (further tokens are ignored), or a negative error (an id out
 * of range: nothing is appended). */
int realm_detok_stream_push(realm_detok_stream *s, realm_token id);
/* Append raw bytes as if they were a token's piece (same return values). */
int realm_detok_stream_push_bytes(realm_detok_stream *s, const char *bytes, size_t len);
/* Bytes ready to release, without taking them. */
size_t realm_detok_stream_ready(const realm_detok_stream *s);
/* Move up to cap releasable bytes into buf, never ending inside a character
 * (so cap >= 4 always makes progress). Returns the count; 0 when none. */
size_t realm_detok_stream_take(realm_detok_stream *s, char *buf, size_t cap);
/* End of generation: make everything still pending releasable. */
void realm_detok_stream_flush(realm_detok_stream *s);
/* Index (in registration order) of the stop string that stopped the stream,
 * or -1. */
int realm_detok_stream_stop_index(const realm_detok_stream *s);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
