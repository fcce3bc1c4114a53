/*
 * WordPiece (tokenizer.ggml.model = "bert"), as llama.cpp's
 * llm_tokenizer_wpm. GGUF stores BERT's vocabulary with word-initial pieces
 * prefixed by U+2581 instead of continuation pieces prefixed by "##".
 *
 * Normalisation, per code point (Unicode data from utf8proc): replace it by
 * the first code point of its canonical decomposition (so accents drop off),
 * split words at White_Space, drop NUL, U+FFFD and Cc/Cf/Co/Cs, lower-case,
 * and make punctuation (P*), ASCII symbols and CJK ideographs words of their
 * own. Each word, prefixed by U+2581, is cut into the longest tokens from the
 * left; a word that cannot be cut completely becomes [UNK].
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error_internal.h"
#include "tokenizer/tokenizer_internal.h"

static bool is_white_space(uint32_t cp, utf8proc_category_t cat)
{
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x85 || cat == UTF8PROC_CATEGORY_ZS ||
           cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

/* The CJK ranges of BERT's _is_chinese_char, including the range that
 * Hugging Face's Rust code starts at U+2B920 (llama.cpp copies that). */
static bool is_chinese(uint32_t cp)
{
    return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
           (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
           (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf) ||
           (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

static uint32_t nfd_first(uint32_t cp)
{
    utf8proc_int32_t buf[8];
    int last = 0;
    utf8proc_ssize_t n =
        utf8proc_decompose_char((utf8proc_int32_t)cp, buf, 8, UTF8PROC_DECOMPOSE, &last);
    return n > 0 ? (uint32_t)buf[0] : cp;
}

/* Greedy longest-match of one word (already prefixed with U+2581). */
static int cut_word(const realm_tokenizer *tok, const char *w, size_t n, realm__tokvec *out)
{
    const size_t mark = out->n;
    for (size_t i = 0; i < n;) {
        size_t j = i + (size_t)tok->max_token_len < n ? i + (size_t)tok->max_token_len : n;
        int32_t id = -1;
        for (; j > i; j--) {
            id = realm__strmap_find(&tok->text_map, tok->text, w + i, j - i);
            if (id >= 0)
                break;
        }
        if (id < 0) {
            out->n = mark;
            break;
        }
        int rc = realm__tokvec_push(out, id);
        if (rc < 0)
            return rc;
        i = j;
    }
    if (out->n == mark && tok->unk >= 0)
        return realm__tokvec_push(out, tok->unk);
    return REALM_OK;
}

int realm__wpm_tokenize(const realm_tokenizer *tok, realm__scratch *s, const char *text, size_t len,
                        realm__tokvec *out)
{
    /* Each code point becomes at most 4 bytes; its lower case can be longer
     * than the original, so size by code points: 3 (U+2581) + 4 per cp. */
    if (len > (SIZE_MAX - 3) / 4)
        return realm__error(REALM_ERR_RANGE, "text too long");
    int rc = realm__scratch_buf(s, 3 + 4 * len);
    if (rc < 0)
        return rc;
    char *w = s->buf;
    size_t wn = 3;
    memcpy(w, "\xe2\x96\x81", 3);

    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i <= len;) {
        uint32_t cp = 0;
        bool end = i == len;
        if (!end) {
            int k = realm__utf8_decode(u + i, len - i, &cp);
            if (k == 0) {
                cp = 0xfffd, k = 1;
            }
            i += (size_t)k;
            cp = nfd_first(cp);
        }
        const utf8proc_category_t cat =
            end ? UTF8PROC_CATEGORY_CN : utf8proc_category((utf8proc_int32_t)cp);
        if (end || is_white_space(cp, cat)) {
            if (wn > 3 && (rc = cut_word(tok, w, wn, out)) < 0)
                return rc;
            wn = 3;
            if (end)
                break;
            continue;
        }
        if (cp == 0 || cp == 0xfffd || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
            cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS)
            continue;
        const uint32_t lc = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
        const bool alone =
            (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO) ||
            (cp < 0x7f && cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO) ||
            is_chinese(cp);
        if (alone) {
            if (wn > 3 && (rc = cut_word(tok, w, wn, out)) < 0)
                return rc;
            wn = 3 + (size_t)realm__utf8_encode(lc, w + 3);
            if ((rc = cut_word(tok, w, wn, out)) < 0)
                return rc;
            wn = 3;
        } else {
            wn += (size_t)realm__utf8_encode(lc, w + wn);
        }
    }
    return REALM_OK;
}
