/*
 * realm quantize IN.gguf OUT.gguf SCHEME — convert a model's weights to
 * another tensor type or mixture.
 *
 * Every tensor is converted row by row (dequantize to f32, quantize to the
 * target) on a thread pool. The output goes to a temporary file beside OUT
 * that is renamed over OUT only when complete, so an interrupted or failed
 * run leaves no partial file. Metadata is copied, with general.file_type and
 * general.quantization_version set for the new contents.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/clock_internal.h"
#include "opts.h"
#include "quant_mix.h"
#include "realm/error.h"
#include "realm/gguf.h"
#include "realm/quant.h"
#include "realm/threads.h"

#define CMD "quantize"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

struct convert_task {
    const realm_gguf_tensor *src;
    realm_type dst_type;
    uint8_t *dst;
    int64_t n_rows, row_len;
    size_t src_row_size, dst_row_size;
    float **scratch;  /* one row of floats per thread */
    atomic_int error; /* first failing rc */
};

/* Convert this thread's share of rows: src type -> f32 -> dst type. */
static void convert_rows(void *arg, int ith, int nth)
{
    struct convert_task *t = arg;
    const int64_t per = (t->n_rows + nth - 1) / nth;
    const int64_t r0 = per * ith;
    const int64_t r1 = r0 + per < t->n_rows ? r0 + per : t->n_rows;
    float *row = t->scratch[ith];
    const uint8_t *src = t->src->data;
    for (int64_t r = r0; r < r1; r++) {
        if (interrupted || atomic_load_explicit(&t->error, memory_order_relaxed))
            return;
        int rc =
            realm_dequantize_row(t->src->type, src + (size_t)r * t->src_row_size, row, t->row_len);
        if (rc == REALM_OK)
            rc = realm_quantize_row(t->dst_type, row, t->dst + (size_t)r * t->dst_row_size,
                                    t->row_len);
        if (rc < 0) {
            int expected = 0;
            atomic_compare_exchange_strong(&t->error, &expected, rc);
            return;
        }
    }
}

static bool is_float_type(realm_type t)
{
    return t == REALM_TYPE_F32 || t == REALM_TYPE_F16 || t == REALM_TYPE_BF16;
}

/* The model's query heads per KV head, from {arch}.attention.head_count[_kv]. */
static int model_n_gqa(const realm_gguf *g)
{
    realm_gguf_str arch;
    if (realm_gguf_get_str(g, "general.architecture", &arch) < 0 || arch.len > 64)
        return 1;
    char key[128];
    int64_t n_head = 0, n_head_kv = 0;
    snprintf(key, sizeof key, "%.*s.attention.head_count", (int)arch.len, arch.data);
    if (realm_gguf_get_int(g, key, &n_head) < 0)
        return 1;
    snprintf(key, sizeof key, "%.*s.attention.head_count_kv", (int)arch.len, arch.data);
    if (realm_gguf_get_int(g, key, &n_head_kv) < 0 || n_head_kv <= 0)
        return 1;
    return (int)(n_head / n_head_kv);
}

struct plan {
    realm_type *types; /* chosen type per tensor */
    uint64_t in_bytes, out_bytes;
};

/* Choose every tensor's output type; refuse conversions we cannot or should not do. */
static int make_plan(const realm_gguf *g, const quant_scheme *s, bool pure, bool allow_requant,
                     struct plan *p)
{
    const int64_t n = realm_gguf_n_tensors(g);
    quant_mix_state st = {.n_gqa = model_n_gqa(g),
                          .pure = pure,
                          .has_output = realm_gguf_find_tensor(g, "output.weight") != NULL};
    for (int64_t i = 0; i < n; i++) {
        const char *name = realm_gguf_tensor_at(g, i)->name;
        st.n_attn_v += strstr(name, "attn_v.weight") != NULL;
        st.n_ffn_down += strstr(name, "ffn_down") != NULL;
    }
    p->types = calloc(n > 0 ? (size_t)n : 1, sizeof *p->types);
    if (p->types == NULL)
        return cli_error(CMD, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        realm_type to = quant_mix_choose(s, &st, t->name, t->n_dims, t->ne[0], t->type);
        p->types[i] = to;
        p->in_bytes += t->nbytes;
        p->out_bytes +=
            realm_row_size(to, t->ne[0]) * (uint64_t)(realm_gguf_tensor_nelements(t) / t->ne[0]);
        if (to == t->type)
            continue;
        if (realm_type_check_supported(t->type) < 0)
            return cli_error(CMD, "tensor '%s': cannot convert from %s: %s", t->name,
                             realm_type_name(t->type), realm_last_error());
        if (!is_float_type(t->type) && to != REALM_TYPE_F32 && !allow_requant)
            return cli_error(CMD,
                             "tensor '%s' is already quantized (%s); requantizing to %s loses "
                             "quality: pass --allow-requantize to do it anyway, or start from "
                             "an f32/f16/bf16 file",
                             t->name, realm_type_name(t->type), realm_type_name(to));
    }
    return 0;
}

/* Metadata: everything from the input, with the file type updated. */
static int copy_metadata(realm_gguf_writer *w, const realm_gguf *g, const quant_scheme *s)
{
    for (int64_t i = 0; i < realm_gguf_n_kv(g); i++) {
        const char *key = realm_gguf_kv_key(g, i);
        if (strcmp(key, "general.file_type") == 0 ||
            strcmp(key, "general.quantization_version") == 0)
            continue;
        if (realm_gguf_copy_kv(w, g, i) < 0)
            return cli_error(CMD, "copying metadata '%s': %s", key, realm_last_error());
    }
    if (realm_gguf_set_u32(w, "general.quantization_version", 2) < 0 ||
        realm_gguf_set_u32(w, "general.file_type", s->file_type) < 0)
        return cli_error(CMD, "setting metadata: %s", realm_last_error());
    return 0;
}

/* True if a and b name the same existing file. */
static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Convert (or copy) tensor i into a buffer and write it. */
static int write_tensor(realm_gguf_writer *w, realm_threadpool *tp, float **scratch,
                        const realm_gguf_tensor *t, realm_type to)
{
    if (to == t->type) {
        if (realm_gguf_writer_put_tensor(w, t->data, t->nbytes) < 0)
            return cli_error(CMD, "writing '%s': %s", t->name, realm_last_error());
        return 0;
    }
    const int64_t row_len = t->ne[0];
    const int64_t n_rows = realm_gguf_tensor_nelements(t) / row_len;
    const size_t dst_row = realm_row_size(to, row_len);
    if (n_rows <= 0 || dst_row == 0 || (uint64_t)n_rows > SIZE_MAX / dst_row)
        return cli_error(CMD, "tensor '%s': bad shape", t->name);
    uint8_t *dst = malloc(dst_row * (size_t)n_rows);
    if (dst == NULL)
        return cli_error(CMD, "out of memory for tensor '%s'", t->name);
    for (int i = 0; i < realm_threadpool_size(tp); i++) {
        float *row = realloc(scratch[i], (size_t)row_len * sizeof(float));
        if (row == NULL) {
            free(dst);
            return cli_error(CMD, "out of memory");
        }
        scratch[i] = row;
    }
    struct convert_task task = {
        .src = t,
        .dst_type = to,
        .dst = dst,
        .n_rows = n_rows,
        .row_len = row_len,
        .src_row_size = realm_row_size(t->type, row_len),
        .dst_row_size = dst_row,
        .scratch = scratch,
    };
    realm_threadpool_run(tp, convert_rows, &task);
    int rc = 0;
    if (interrupted)
        rc = cli_error(CMD, "interrupted");
    else if (atomic_load(&task.error))
        rc = cli_error(CMD, "tensor '%s': %s", t->name, realm_last_error());
    else if (realm_gguf_writer_put_tensor(w, dst, dst_row * (size_t)n_rows) < 0)
        rc = cli_error(CMD, "writing '%s': %s", t->name, realm_last_error());
    free(dst);
    return rc;
}

typedef struct quantize_cfg {
    long long threads; /* 0: one per CPU */
    bool pure, allow_requant, quiet;
} quantize_cfg;

/* REALM_THREADS applies, as to the server: how much of the machine realm may
 * use is the operator's setting; the rest are per invocation. */
static const cli_opt quantize_opts[] = {
    {"threads", 't', CLI_OPT_INT, "N", NULL, "worker threads (default: all CPUs)",
     offsetof(quantize_cfg, threads), .env = true, .min = 1, .max = 1024},
    {"pure", 0, CLI_OPT_FLAG, NULL, NULL, "every quantized tensor gets TYPE itself, no mixture",
     offsetof(quantize_cfg, pure), .env = false},
    {"allow-requantize", 0, CLI_OPT_FLAG, NULL, NULL,
     "allow converting already-quantized tensors (loses quality)",
     offsetof(quantize_cfg, allow_requant), .env = false},
    {"quiet", 'q', CLI_OPT_FLAG, NULL, NULL, "no progress output", offsetof(quantize_cfg, quiet),
     .env = false},
};

static int run_quantize(int argc, char **argv)
{
    quantize_cfg cfg = {0};
    cli_args args;
    int status =
        cli_opts_parse(CMD, quantize_opts, CLI_OPTS_N(quantize_opts), argc, argv, &cfg, &args);
    if (status != 0)
        return status == 2 ? 0 : status;
    if (args.n > 3)
        return cli_error(CMD, "unexpected argument '%s'", args.v[3]);
    if (args.n != 3)
        return cli_error(CMD, "expected IN.gguf OUT.gguf TYPE (see 'realm help quantize')");
    const char *const *pos = args.v;
    const long threads = (long)cfg.threads;
    const bool allow_requant = cfg.allow_requant, pure = cfg.pure, quiet = cfg.quiet;
    const char *in = pos[0], *out = pos[1];
    const quant_scheme *s = quant_scheme_find(pos[2]);
    if (s == NULL)
        return cli_error(CMD, "unknown type '%s'; one of: %s", pos[2], quant_scheme_names());
    if (strcmp(in, out) == 0 || same_file(in, out))
        return cli_error(CMD, "refusing to overwrite the input file '%s'", in);

    /* From here on an interrupt is a flag checked between rows, so the
     * temporary file is always removed. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    realm_gguf *g;
    if (realm_gguf_open(in, &g) < 0)
        return cli_error(CMD, "%s", realm_last_error());

    int rc = 1;
    struct plan plan = {0};
    realm_gguf_writer *w = NULL;
    realm_threadpool *tp = NULL;
    float **scratch = NULL;
    FILE *f = NULL;
    char *tmp = NULL;

    if (make_plan(g, s, pure, allow_requant, &plan) != 0 || interrupted)
        goto done;
    if (realm_gguf_writer_new(&w) < 0 || realm_threadpool_new((int)threads, &tp) < 0) {
        cli_error(CMD, "%s", realm_last_error());
        goto done;
    }
    if (copy_metadata(w, g, s) != 0)
        goto done;
    const int64_t n = realm_gguf_n_tensors(g);
    for (int64_t i = 0; i < n; i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        if (realm_gguf_add_tensor(w, t->name, t->n_dims, t->ne, plan.types[i], NULL) < 0) {
            cli_error(CMD, "tensor '%s': %s", t->name, realm_last_error());
            goto done;
        }
    }

    size_t tmp_len = strlen(out) + 16;
    tmp = malloc(tmp_len);
    scratch = calloc((size_t)realm_threadpool_size(tp), sizeof *scratch);
    if (tmp == NULL || scratch == NULL) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    snprintf(tmp, tmp_len, "%s.tmp.XXXXXX", out);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        cli_error(CMD, "cannot create temporary file '%s': %s", tmp, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    fchmod(fd, 0644);
    f = fdopen(fd, "wb");
    if (f == NULL) {
        close(fd);
        cli_error(CMD, "cannot open '%s': %s", tmp, strerror(errno));
        goto done;
    }

    double t0 = realm__now();
    if (realm_gguf_writer_begin(w, f) < 0) {
        cli_error(CMD, "writing '%s': %s", tmp, realm_last_error());
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        const realm_gguf_tensor *t = realm_gguf_tensor_at(g, i);
        if (!quiet) {
            char b1[32], b2[32];
            fprintf(stderr, "[%4" PRId64 "/%" PRId64 "] %-32s %6s -> %-6s %10s -> %s\n", i + 1, n,
                    t->name, realm_type_name(t->type), realm_type_name(plan.types[i]),
                    cli_format_bytes(t->nbytes, b1, sizeof b1),
                    cli_format_bytes(realm_row_size(plan.types[i], t->ne[0]) *
                                         (uint64_t)(realm_gguf_tensor_nelements(t) / t->ne[0]),
                                     b2, sizeof b2));
        }
        if (write_tensor(w, tp, scratch, t, plan.types[i]) != 0)
            goto done;
        if (interrupted) {
            cli_error(CMD, "interrupted");
            goto done;
        }
    }
    if (realm_gguf_writer_end(w) < 0) {
        cli_error(CMD, "writing '%s': %s", tmp, realm_last_error());
        goto done;
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        cli_error(CMD, "writing '%s': %s", tmp, strerror(errno));
        goto done;
    }
    int close_rc = fclose(f);
    f = NULL;
    if (close_rc != 0 || rename(tmp, out) != 0) {
        cli_error(CMD, "cannot finish '%s': %s", out, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
    if (!quiet) {
        char b1[32], b2[32];
        fprintf(stderr, "%s: %s -> %s (%s, %s) in %.1f s\n", out,
                cli_format_bytes(plan.in_bytes, b1, sizeof b1),
                cli_format_bytes(plan.out_bytes, b2, sizeof b2), s->name, pure ? "pure" : "mixture",
                realm__now() - t0);
    }
    rc = 0;
done:
    if (f)
        fclose(f);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    if (scratch)
        for (int i = 0; i < realm_threadpool_size(tp); i++)
            free(scratch[i]);
    free(scratch);
    realm_threadpool_free(tp);
    realm_gguf_writer_free(w);
    free(plan.types);
    realm_gguf_close(g);
    return rc;
}

static const char usage_head[] =
    "usage: realm quantize IN.gguf OUT.gguf TYPE [-t THREADS] [--pure] [--allow-requantize]\n"
    "\n"
    "TYPE: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_s, q3_k_m,\n"
    "      q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl, iq4_xs\n"
    "\n"
    "The _S/_M/_L types are mixtures as known from llama.cpp: q4_k_m stores most\n"
    "weights as Q4_K but output.weight and part of attn_v/ffn_down as Q6_K.\n"
    "Norms and other 1-D tensors keep their type. f32 dequantizes any file.\n"
    "The output is written to a temporary file and renamed when complete, so an\n"
    "interrupted run leaves nothing behind; OUT may not be the input file.\n";
static char usage[2048];

/* main prints the usage before any command runs: build it before main. */
__attribute__((constructor)) static void make_usage(void)
{
    cli_opts_usage(usage, sizeof usage, usage_head, quantize_opts, CLI_OPTS_N(quantize_opts));
}

const cli_command cli_cmd_quantize = {
    "quantize",
    run_quantize,
    "convert a model's weights to another tensor type or mixture",
    usage,
};
