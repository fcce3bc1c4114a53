/*
 * realm run's interactive chat, with Ollama's conventions: ">>> " prompts,
 * multi-line input between """, /commands, replies streamed as they come,
 * Ctrl-C stopping a reply (not the program).
 *
 * The model comes from a registry (a name or a path, as everywhere), and each
 * turn submits the whole conversation, rendered with the model's chat
 * template, to its engine. The engine's prefix cache keeps what earlier turns
 * computed, so a turn computes only its new part; --verbose shows how many
 * prompt tokens came from that cache.
 *
 * Input is read with plain stdio. On a terminal SIGINT interrupts the read
 * (the handler is installed without SA_RESTART) and, during a reply, is seen
 * between pieces, which are awaited with a short timeout for that reason.
 * Only the main thread takes SIGINT: it is blocked while the registry and
 * the engine start their threads, which inherit that mask.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "model_files.h"
#include "realm/chat.h"
#include "realm/engine.h"
#include "realm/error.h"
#include "realm/registry.h"
#include "run_chat.h"

#define CMD            "run"
#define DEFAULT_CTX    4096 /* tokens of conversation when -c is not given */
#define POLL_MS        100  /* how often a reply in progress looks for Ctrl-C */
#define TENANT         1
#define MULTILINE_MARK "\"\"\""

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- the conversation ------------------------------------------------------------ */

typedef struct chat {
    realm_model_ref *ref;
    realm_engine *engine;
    const realm_tokenizer *tok;
    realm_chat_template tmpl;
    realm_gen_options opts;
    char *system;             /* NULL: none */
    realm_chat_message *msgs; /* user and assistant turns; contents owned */
    size_t n, cap;
    int turn;
    bool tty, verbose;
} chat;

static bool chat_push(chat *c, realm_chat_role role, const char *text, size_t len)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        realm_chat_message *m = realloc(c->msgs, cap * sizeof *m);
        if (m == NULL)
            return false;
        c->msgs = m;
        c->cap = cap;
    }
    char *s = malloc(len + 1);
    if (s == NULL)
        return false;
    memcpy(s, text, len);
    s[len] = '\0';
    c->msgs[c->n++] = (realm_chat_message){role, s};
    return true;
}

/* Forget messages [from, from + k). */
static void chat_drop(chat *c, size_t from, size_t k)
{
    for (size_t i = from; i < from + k; i++)
        free((char *)c->msgs[i].content);
    if (c->n > from + k) /* (msgs may be NULL when empty) */
        memmove(c->msgs + from, c->msgs + from + k, (c->n - from - k) * sizeof *c->msgs);
    c->n -= k;
}

static void chat_clear(chat *c)
{
    chat_drop(c, 0, c->n);
}

/* The prompt ids of the conversation: the system message first if set. */
static int chat_prompt(const chat *c, realm_token **ids, int32_t *n_ids)
{
    realm_chat_message *all = malloc((c->n + 1) * sizeof *all);
    if (all == NULL)
        return REALM_ERR_NOMEM;
    size_t n = 0;
    if (c->system != NULL)
        all[n++] = (realm_chat_message){REALM_CHAT_SYSTEM, c->system};
    memcpy(all + n, c->msgs, c->n * sizeof *all);
    n += c->n;
    const realm_chat_prompt p = {.messages = all, .n_messages = n, .tmpl = c->tmpl};
    const int rc = realm_chat_prompt_tokenize(c->tok, &p, ids, n_ids);
    free(all);
    return rc;
}

/* ---- settings -------------------------------------------------------------------- */

typedef enum param_kind { PARAM_FLOAT, PARAM_INT, PARAM_SEED } param_kind;

/* What /set parameter takes: Ollama's names, realm_gen_options' fields. */
static const struct chat_param {
    const char *name;
    param_kind kind;
    size_t offset; /* in realm_gen_options */
    double lo, hi;
    const char *help;
} chat_params[] = {
    {"temperature", PARAM_FLOAT, offsetof(realm_gen_options, sampling.temperature), 0, 100,
     "randomness; 0 is greedy"},
    {"top_p", PARAM_FLOAT, offsetof(realm_gen_options, sampling.top_p), 0, 1,
     "nucleus sampling; 1 is off"},
    {"top_k", PARAM_INT, offsetof(realm_gen_options, sampling.top_k), 0, 1 << 24,
     "keep the K most likely tokens; 0 is off"},
    {"min_p", PARAM_FLOAT, offsetof(realm_gen_options, sampling.min_p), 0, 1,
     "drop tokens below P x the best one's probability"},
    {"repeat_penalty", PARAM_FLOAT, offsetof(realm_gen_options, sampling.repeat_penalty), 0, 100,
     "penalise repeated tokens; 1 is off"},
    {"seed", PARAM_SEED, offsetof(realm_gen_options, sampling.seed), -1, 9007199254740992.0,
     "random seed; -1 draws one per reply"},
    {"num_predict", PARAM_INT, offsetof(realm_gen_options, max_tokens), -2, 1 << 24,
     "most tokens of a reply; -1 (or 0) until the model stops"},
};
#define N_PARAMS (sizeof chat_params / sizeof chat_params[0])

static void param_print(const realm_gen_options *o, const struct chat_param *p)
{
    const char *field = (const char *)o + p->offset;
    if (p->kind == PARAM_FLOAT) {
        float f;
        memcpy(&f, field, sizeof f);
        printf("%-16s %g\n", p->name, f);
    } else if (p->kind == PARAM_INT) {
        int32_t v;
        memcpy(&v, field, sizeof v);
        if (p->offset == offsetof(realm_gen_options, max_tokens) && v == 0)
            printf("%-16s -1\n", p->name);
        else
            printf("%-16s %d\n", p->name, (int)v);
    } else {
        uint64_t v;
        memcpy(&v, field, sizeof v);
        if (v == REALM_SEED_RANDOM)
            printf("%-16s -1\n", p->name);
        else
            printf("%-16s %llu\n", p->name, (unsigned long long)v);
    }
}

/* "/set parameter NAME VALUE" */
static void set_parameter(chat *c, const char *args)
{
    char name[64], value[64], extra[2];
    const int n = sscanf(args, "%63s %63s %1s", name, value, extra);
    if (n != 2) {
        printf("Usage: /set parameter NAME VALUE (see /show for the names)\n");
        return;
    }
    const struct chat_param *p = NULL;
    for (size_t i = 0; i < N_PARAMS && p == NULL; i++)
        if (strcmp(chat_params[i].name, name) == 0)
            p = &chat_params[i];
    if (p == NULL) {
        printf("Unknown parameter '%s'. Parameters:", name);
        for (size_t i = 0; i < N_PARAMS; i++)
            printf(" %s", chat_params[i].name);
        printf("\n");
        return;
    }
    char *end;
    const double v = strtod(value, &end);
    const bool whole = p->kind != PARAM_FLOAT && v != (double)(int64_t)v;
    if (*end != '\0' || !(v >= p->lo && v <= p->hi) || whole) {
        printf("Invalid value '%s' for %s: %s in %g..%g\n", value, name,
               p->kind == PARAM_FLOAT ? "a number" : "an integer", p->lo, p->hi);
        return;
    }
    char *field = (char *)&c->opts + p->offset;
    if (p->kind == PARAM_FLOAT) {
        const float f = (float)v;
        memcpy(field, &f, sizeof f);
    } else if (p->kind == PARAM_INT) {
        const int32_t i = v < 0 ? 0 : (int32_t)v; /* num_predict -1/-2: no limit */
        memcpy(field, &i, sizeof i);
    } else {
        const uint64_t s = v < 0 ? REALM_SEED_RANDOM : (uint64_t)v;
        memcpy(field, &s, sizeof s);
    }
    printf("Set parameter '%s' to '%s'\n", name, value);
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* "/set system TEXT": TEXT, without the quotes around it if any. */
static void set_system(chat *c, const char *text)
{
    text = skip_spaces(text);
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t'))
        n--;
    if (n >= 2 && text[0] == '"' && text[n - 1] == '"') {
        text++;
        n -= 2;
    }
    free(c->system);
    c->system = NULL;
    if (n == 0) {
        printf("Cleared system message.\n");
        return;
    }
    c->system = strndup(text, n);
    printf(c->system ? "Set system message.\n" : "Out of memory.\n");
}

static void show_settings(const chat *c)
{
    printf("model            %s (chat template %s)\n", realm_model_ref_name(c->ref),
           realm_chat_template_name(c->tmpl));
    printf("system           %s\n", c->system ? c->system : "(none)");
    printf("messages         %zu\n", c->n);
    for (size_t i = 0; i < N_PARAMS; i++)
        param_print(&c->opts, &chat_params[i]);
}

static void print_help(void)
{
    printf("Available commands:\n"
           "  /set parameter NAME VALUE  set a sampling parameter (see /show)\n"
           "  /set system TEXT           set the system message (empty: none)\n"
           "  /show                      show the model and the settings\n"
           "  /clear                     forget the conversation\n"
           "  /bye                       exit (or Ctrl-D)\n"
           "  /?, /help                  this help\n"
           "\n"
           "Begin a multi-line message with \"\"\" and end it with \"\"\".\n"
           "Ctrl-C stops a reply.\n");
}

/* A /command; false for /bye. */
static bool command(chat *c, const char *line)
{
    char word[32] = "";
    sscanf(line, "%31s", word);
    const char *rest = skip_spaces(line + strlen(word));
    if (!strcmp(word, "/bye") || !strcmp(word, "/exit"))
        return false;
    if (!strcmp(word, "/clear")) {
        chat_clear(c);
        printf("Cleared session context\n");
    } else if (!strcmp(word, "/set") && !strncmp(rest, "parameter", 9) &&
               (rest[9] == ' ' || rest[9] == '\t' || rest[9] == '\0')) {
        set_parameter(c, rest + 9);
    } else if (!strcmp(word, "/set") && !strncmp(rest, "system", 6) &&
               (rest[6] == ' ' || rest[6] == '\t' || rest[6] == '\0')) {
        set_system(c, rest + 6);
    } else if (!strcmp(word, "/set")) {
        printf("Usage: /set parameter NAME VALUE, or /set system TEXT\n");
    } else if (!strcmp(word, "/show")) {
        show_settings(c);
    } else if (!strcmp(word, "/help") || !strcmp(word, "/?")) {
        print_help();
    } else {
        printf("Unknown command '%s'. Type /? for help\n", word);
    }
    return true;
}

/* ---- input ----------------------------------------------------------------------- */

enum { READ_EOF, READ_LINE, READ_TEXT, READ_INTERRUPTED }; /* READ_TEXT: never a /command */

/* One line into *line (without its newline), showing prompt on a terminal. */
static int read_line(const chat *c, const char *prompt, char **line, size_t *cap)
{
    if (c->tty) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    if (interrupted) {
        interrupted = 0;
        return READ_INTERRUPTED;
    }
    errno = 0;
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) {
        const bool intr = interrupted || errno == EINTR;
        clearerr(stdin);
        interrupted = 0;
        return intr ? READ_INTERRUPTED : READ_EOF;
    }
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
        (*line)[--n] = '\0';
    return READ_LINE;
}

static bool ends_with_mark(const char *s, size_t n)
{
    return n >= 3 && memcmp(s + n - 3, MULTILINE_MARK, 3) == 0;
}

/*
 * The next message into *msg (malloc'ed): a line (READ_LINE), or the lines
 * from one starting with """ to one ending with """ (READ_TEXT: the marks
 * removed, the lines joined with newlines).
 */
static int read_message(const chat *c, char **msg)
{
    char *line = NULL;
    size_t cap = 0;
    *msg = NULL;
    int r = read_line(c, ">>> ", &line, &cap);
    if (r != READ_LINE || strncmp(line, MULTILINE_MARK, 3) != 0) {
        if (r == READ_LINE)
            *msg = line;
        else
            free(line);
        return r;
    }
    /* """ first line, then more until a line ends with """ */
    size_t len = strlen(line + 3), n = len;
    char *text = malloc(len + 1);
    if (text != NULL)
        memcpy(text, line + 3, len + 1);
    bool done = ends_with_mark(text ? text : "", len);
    while (text != NULL && !done) {
        r = read_line(c, "... ", &line, &cap);
        if (r != READ_LINE) {
            free(text);
            free(line);
            return r;
        }
        n = strlen(line);
        char *t = realloc(text, len + 1 + n + 1);
        if (t == NULL) {
            free(text);
            text = NULL;
            break;
        }
        text = t;
        text[len++] = '\n';
        memcpy(text + len, line, n + 1);
        len += n;
        done = ends_with_mark(text, len);
    }
    free(line);
    if (text == NULL) {
        cli_error(CMD, "out of memory");
        return READ_EOF;
    }
    text[len - 3] = '\0';
    *msg = text;
    return READ_TEXT;
}

/* ---- a turn ---------------------------------------------------------------------- */

/* Submit the conversation; when it no longer fits the context, the oldest
 * exchanges are dropped (the latest message always stays). */
static int submit(chat *c, realm_gen **g, int32_t *n_prompt)
{
    for (;;) {
        realm_token *ids = NULL;
        int rc = chat_prompt(c, &ids, n_prompt);
        if (rc == 0) {
            const realm_gen_request req = {
                .prompt = ids, .n_prompt = *n_prompt, .tenant = TENANT, .options = &c->opts};
            rc = realm_engine_submit(c->engine, &req, g);
            free(ids);
        }
        if (rc != REALM_ERR_RANGE || c->n < 2)
            return rc;
        /* drop the oldest message, and the answer to it */
        const size_t k = c->n >= 3 && c->msgs[1].role == REALM_CHAT_ASSISTANT ? 2 : 1;
        chat_drop(c, 0, k);
        if (c->verbose)
            fprintf(stderr, "[the conversation is longer than the context: its oldest "
                            "message is forgotten]\n");
    }
}

/* Answer the conversation (ending with the user's message): stream the reply
 * and add it. False only on an error that ends the chat. */
static bool reply(chat *c)
{
    realm_gen *g = NULL;
    int32_t n_prompt = 0;
    int rc = submit(c, &g, &n_prompt);
    if (rc < 0) {
        fprintf(stderr, "Error: %s\n", realm_last_error());
        chat_drop(c, c->n - 1, 1);
        return rc != REALM_ERR_NOMEM;
    }
    c->turn++;
    char *text = NULL;
    size_t len = 0, cap = 0;
    bool cancelled = false, nomem = false;
    realm_gen_piece piece;
    interrupted = 0;
    for (;;) {
        rc = realm_gen_next(g, &piece, POLL_MS);
        if (interrupted && !cancelled) {
            realm_gen_cancel(g); /* the pieces already made still come, then the end */
            cancelled = true;
        }
        if (rc == REALM_ERR_TIMEOUT)
            continue;
        if (rc <= 0)
            break;
        if (cancelled || piece.len == 0)
            continue;
        fwrite(piece.text, 1, piece.len, stdout);
        fflush(stdout);
        if (len + piece.len + 1 > cap) {
            size_t ncap = cap ? 2 * cap : 256;
            while (ncap < len + piece.len + 1)
                ncap *= 2;
            char *t = realloc(text, ncap);
            if (t == NULL) {
                nomem = true;
                realm_gen_cancel(g);
                continue;
            }
            text = t;
            cap = ncap;
        }
        memcpy(text + len, piece.text, piece.len);
        len += piece.len;
        text[len] = '\0';
    }
    interrupted = 0;
    realm_gen_result res;
    const bool ended = realm_gen_result_get(g, &res) == REALM_OK;
    realm_gen_free(g);
    if (len == 0 || text[len - 1] != '\n' || cancelled)
        putchar('\n');
    if (c->tty)
        putchar('\n');
    fflush(stdout);
    if (ended && res.finish == REALM_FINISH_ERROR)
        fprintf(stderr, "Error: %s\n", res.message);
    else if (ended && res.finish == REALM_FINISH_LENGTH && c->opts.max_tokens == 0)
        fprintf(stderr, "[the reply stopped at the end of the context]\n");
    if (c->verbose && ended) {
        char spec[96] = "";
        if (res.draft_tokens > 0)
            snprintf(spec, sizeof spec, " | %d of %d drafted tokens accepted", res.accepted_tokens,
                     res.draft_tokens);
        fprintf(stderr,
                "turn %d: prompt %d tokens, %d cached | reply %d tokens, %.1f tokens/s%s%s\n",
                c->turn, res.n_prompt, res.n_cached, res.n_completion, res.tokens_per_s, spec,
                cancelled ? " (stopped)" : "");
    }
    /* The reply joins the conversation, even a stopped one; an answer that
     * never began, or failed, takes the question with it. */
    if (nomem || (ended && res.finish == REALM_FINISH_ERROR) || (cancelled && len == 0))
        chat_drop(c, c->n - 1, 1);
    else if (!chat_push(c, REALM_CHAT_ASSISTANT, text ? text : "", len))
        nomem = true;
    free(text);
    if (nomem)
        cli_error(CMD, "out of memory");
    return !nomem;
}

/* ---- the loop -------------------------------------------------------------------- */

static int chat_loop(chat *c)
{
    for (;;) {
        char *msg;
        const int r = read_message(c, &msg);
        if (r == READ_EOF) {
            if (c->tty)
                putchar('\n');
            return 0;
        }
        if (r == READ_INTERRUPTED) {
            printf("\nUse /bye or Ctrl-D to exit.\n");
            continue;
        }
        const char *s = skip_spaces(msg);
        const bool is_command = r == READ_LINE && s[0] == '/';
        bool go_on = true;
        if (is_command) {
            go_on = command(c, s);
        } else if (s[0] != '\0') {
            go_on = chat_push(c, REALM_CHAT_USER, msg, strlen(msg));
            if (!go_on)
                cli_error(CMD, "out of memory");
            go_on = go_on && reply(c);
        }
        free(msg);
        fflush(stdout);
        if (!go_on)
            return is_command ? 0 : 1; /* /bye, or an error */
    }
}

int cli_run_chat(const run_chat_opts *o)
{
    char dir[4096];
    if (!cli_models_dir(CMD, o->models_dir, dir, sizeof dir))
        return 1;
    realm_registry_params p;
    realm_registry_params_init(&p);
    p.models_dir = dir;
    p.mem_budget = o->mem_budget;
    p.n_threads = o->n_threads;
    p.keep_alive_s = 0;
    p.engine.n_ctx_seq = o->n_ctx;                      /* 0: the model's ... */
    p.engine.n_ctx = o->n_ctx ? o->n_ctx : DEFAULT_CTX; /* ... at most this */
    p.engine.max_seqs = 1;
    p.engine.n_batch = o->n_batch;
    p.model.rope = o->rope;
    p.model.repack = o->repack;
    p.engine.type_k = o->type_k;
    p.engine.type_v = o->type_v;

    /* The registry's and the engine's threads inherit a mask blocking SIGINT. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    realm_registry *reg = NULL;
    chat c = {.tty = isatty(STDIN_FILENO) == 1, .verbose = o->verbose};
    int rc = realm_registry_new(&p, &reg);
    const char *key = o->model;
    char path[4096], name[CLI_MODEL_NAME_MAX + 64];
    if (rc == 0 && o->chat_template != NULL) { /* registered with the operator's template */
        if (!cli_model_resolve(CMD, o->models_dir, o->model, path, sizeof path)) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            realm_registry_free(reg);
            return 1;
        }
        const realm_model_config cfg = {.chat_template = o->chat_template};
        key = cli_model_name_of_path(path, name, sizeof name);
        rc = realm_registry_add(reg, key, path, &cfg);
    }
    if (rc == 0)
        rc = realm_registry_acquire(reg, key, strlen(key), NULL, &c.ref);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        cli_error(CMD, "%s", realm_last_error());
        realm_registry_free(reg);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART: reads are interrupted */
    sigemptyset(&sa.sa_mask);
    struct sigaction old_sa;
    sigaction(SIGINT, &sa, &old_sa);

    c.engine = realm_model_ref_engine(c.ref);
    c.tok = realm_engine_tokenizer(c.engine);
    c.tmpl = realm_model_ref_chat_template(c.ref);
    realm_gen_options_init(&c.opts);
    c.opts.sampling = o->sampling;
    c.opts.max_tokens = o->max_tokens;
    if (o->spec.mode != REALM_SPEC_DEFAULT)
        c.opts.speculative = o->spec;
    realm_lora *ads[CLI_LORA_MAX] = {0};
    realm_lora_item items[CLI_LORA_MAX];
    const int n_lora = o->lora ? o->lora->n : 0;
    if (n_lora > 0 && !cli_lora_load(CMD, realm_model_ref_model(c.ref), o->lora, ads)) {
        sigaction(SIGINT, &old_sa, NULL);
        realm_registry_release(c.ref);
        realm_registry_free(reg);
        return 1;
    }
    for (int i = 0; i < n_lora; i++)
        items[i] = (realm_lora_item){ads[i], o->lora->scale[i]};
    c.opts.lora = items;
    c.opts.n_lora = n_lora;
    if (o->verbose)
        fprintf(stderr, "model %s, chat template %s\n", realm_model_ref_name(c.ref),
                realm_chat_template_name(c.tmpl));

    rc = chat_loop(&c);

    sigaction(SIGINT, &old_sa, NULL);
    chat_clear(&c);
    free(c.msgs);
    free(c.system);
    realm_registry_release(c.ref);
    realm_registry_free(reg); /* (its engine is gone: no request uses the adapters now) */
    cli_lora_free(ads, n_lora);
    return rc;
}
