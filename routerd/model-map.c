/* model-map.c: maps the model name a client asks for to the model id routerd sends upstream.
 *
 * The rules are anthropic-max-router's, in a fixed order: the user's custom mappings from
 * .router-mappings.json, then ANTHROPIC_DEFAULT_MODEL, then name patterns (gpt-3*, *-nano* to
 * haiku, the rest to sonnet). dualroute extends them: Claude model names pass unchanged and the
 * built-in aliases haiku/sonnet/opus apply before the default model, and the patterns send
 * -pro/-max/-ultra and the o1/o3 reasoning models to opus.
 *
 * Custom mappings live in a sorted array, so a lookup is a binary search; the file is small
 * (1,000 entries, 1 MiB) and loaded once, so it is parsed with jansson into a tree first and
 * validated as a whole: a file with one bad entry is refused, never half applied. Nothing here
 * logs or keeps global state; the caller logs the reason model_map_resolve() returns. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "conf.h"
#include "macro.h"
#include "model-map.h"

/* The built-in aliases and the ids the patterns map to. This table is the single place to update
 * when Anthropic releases new models. */
enum {
    TIER_HAIKU,
    TIER_SONNET,
    TIER_OPUS,
    _TIER_MAX,
};

static const struct {
    const char *alias;
    const char *model;
} builtin[_TIER_MAX] = {
    [TIER_HAIKU] = {"haiku", "claude-haiku-4-5"},
    [TIER_SONNET] = {"sonnet", "claude-sonnet-4-6"},
    [TIER_OPUS] = {"opus", "claude-opus-4-7"},
};

static const char *const reason_table[_MODEL_MAP_REASON_MAX] = {
    [MODEL_MAP_CUSTOM] = "custom",
    [MODEL_MAP_CLAUDE] = "claude",
    [MODEL_MAP_ALIAS] = "alias",
    [MODEL_MAP_DEFAULT_ENV] = "default-model",
    [MODEL_MAP_PATTERN_HAIKU] = "pattern-haiku",
    [MODEL_MAP_PATTERN_OPUS] = "pattern-opus",
    [MODEL_MAP_PATTERN_SONNET] = "pattern-sonnet",
};

const char *model_map_reason_to_string(enum model_map_reason r)
{
    if (r < 0 || r >= _MODEL_MAP_REASON_MAX)
        return NULL;
    return reason_table[r];
}

/* Replaces control characters, so that an error text (which may quote the input) is one line
 * that is safe to log. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

_printf_(5, 6) static int map_error(struct parse_error *err, int line, int column, int r,
                                    const char *fmt, ...)
{
    va_list ap;

    if (err) {
        va_start(ap, fmt);
        vsnprintf(err->text, sizeof err->text, fmt, ap);
        va_end(ap);
        sanitize(err->text);
        err->line = line;
        err->column = column;
    }
    return r;
}

static bool is_id_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("._:@-", c);
}

/* The first byte of s[0..n) that may not be in a model id, or NULL. */
static const char *find_bad_id_char(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_id_char((unsigned char)s[i]))
            return s + i;
    return NULL;
}

bool model_map_id_is_valid(const char *s)
{
    size_t n;

    if (!s)
        return false;
    n = strlen(s);
    return n > 0 && n <= MODEL_MAP_NAME_MAX && !find_bad_id_char(s, n);
}

/* A copy of user text fit for an error message: at most 40 bytes (cut at a UTF-8 character
 * boundary, "..." appended), control characters shown as '?'. */
static const char *printable(const char *s, size_t n, char out[static 48])
{
    size_t k = 0, i;

    for (i = 0; i < n && k < 40; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (i < n) {
        /* Back off to the start of the character we cut into. */
        while (k > 0 && ((unsigned char)s[i] & 0xc0) == 0x80) {
            k--;
            i--;
        }
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

static const char *json_type_phrase(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown value";
}

/* Why byte c may not be in a model id, for a message: "' '" or "byte 0x0a". */
static void describe_char(unsigned char c, char out[static 16])
{
    if (c > 0x20 && c < 0x7f)
        snprintf(out, 16, "'%c'", c);
    else if (c == ' ')
        snprintf(out, 16, "a space");
    else
        snprintf(out, 16, "byte 0x%02x", c);
}

struct entries {
    struct model_map_entry *v;
    size_t n;
};

static void entries_free(struct model_map_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].target);
    }
    free(v);
}

static void entries_done(struct entries *e)
{
    entries_free(e->v, e->n);
    *e = (struct entries){};
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct model_map_entry *)a)->name,
                  ((const struct model_map_entry *)b)->name);
}

/* Checks one "name": value pair; key is a NUL-free string of key_len bytes (jansson refuses
 * NUL in object keys). */
static int check_entry(const char *key, size_t key_len, const json_t *value,
                       struct parse_error *reterr)
{
    char name[48], shown[48], what[16];
    const char *s, *bad;
    size_t n;

    if (key_len == 0)
        return map_error(reterr, 0, 0, -EINVAL, "a mapping has an empty name");
    printable(key, key_len, name);
    if (key_len > MODEL_MAP_NAME_MAX)
        return map_error(reterr, 0, 0, -EINVAL, "mapping name '%s' is longer than %d bytes", name,
                         MODEL_MAP_NAME_MAX);
    for (size_t i = 0; i < key_len; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return map_error(reterr, 0, 0, -EINVAL,
                             "mapping name '%s' contains a control character", name);

    if (!json_is_string(value))
        return map_error(reterr, 0, 0, -EINVAL,
                         "mapping for '%s' is %s, expected a string with a model id", name,
                         json_type_phrase(value));
    s = json_string_value(value);
    n = json_string_length(value);
    if (n == 0)
        return map_error(reterr, 0, 0, -EINVAL, "mapping for '%s' has an empty model id", name);
    if (n > MODEL_MAP_NAME_MAX)
        return map_error(reterr, 0, 0, -EINVAL,
                         "mapping for '%s' has a model id longer than %d bytes", name,
                         MODEL_MAP_NAME_MAX);
    bad = find_bad_id_char(s, n);
    if (bad) {
        describe_char((unsigned char)*bad, what);
        return map_error(reterr, 0, 0, -EINVAL,
                         "mapping for '%s': '%s' is not a model id (%s; allowed: A-Z a-z 0-9 . _ "
                         ": @ -)",
                         name, printable(s, n, shown), what);
    }
    return 0;
}

int model_map_parse(struct model_map *m, const char *json, size_t len, struct parse_error *reterr)
{
    _cleanup_(entries_done) struct entries e = {};
    json_auto_t *root = NULL;
    json_error_t jerr;
    const char *key;
    json_t *value;
    size_t n, key_len;
    int r;

    assert(m);
    assert(json || len == 0);

    if (len > MODEL_MAP_FILE_MAX)
        return map_error(reterr, 0, 0, -EFBIG, "larger than 1 MiB");

    root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return map_error(reterr, jerr.line, jerr.column, -EINVAL, "invalid JSON: %s", jerr.text);
    if (!json_is_object(root))
        return map_error(reterr, 0, 0, -EINVAL,
                         "expected a JSON object of \"name\": \"model-id\" pairs, found %s",
                         json_type_phrase(root));
    n = json_object_size(root);
    if (n > MODEL_MAP_ENTRIES_MAX)
        return map_error(reterr, 0, 0, -E2BIG, "%zu mappings, at most %d are allowed", n,
                         MODEL_MAP_ENTRIES_MAX);

    if (n > 0) {
        e.v = calloc(n, sizeof *e.v);
        if (!e.v)
            return map_error(reterr, 0, 0, -ENOMEM, "out of memory");
    }
    json_object_keylen_foreach(root, key, key_len, value)
    {
        struct model_map_entry *x = &e.v[e.n];

        r = check_entry(key, key_len, value, reterr);
        if (r < 0)
            return r;
        x->name = strndup(key, key_len);
        x->target = strdup(json_string_value(value));
        e.n++;
        if (!x->name || !x->target)
            return map_error(reterr, 0, 0, -ENOMEM, "out of memory");
    }
    if (e.n > 1) /* qsort() wants a non-NULL array even for zero elements */
        qsort(e.v, e.n, sizeof *e.v, entry_cmp);

    entries_free(m->entries, m->n_entries);
    m->n_entries = e.n;
    m->entries = TAKE_PTR(e.v);
    e.n = 0;
    return 0;
}

/* Puts "PATH: " (or "PATH:LINE:COLUMN: ") in front of a parse error's text. A long path is
 * shortened to ".../basename" so that the problem itself still fits. */
static void prefix_path(struct parse_error *err, const char *path)
{
    char text[sizeof err->text], where[32] = "";
    const char *base, *dots = "";

    if (!err)
        return;
    memcpy(text, err->text, sizeof text);
    text[sizeof text - 1] = '\0';
    base = path;
    if (strlen(path) > 60) {
        const char *slash = strrchr(path, '/');
        if (slash && slash[1] != '\0') {
            base = slash + 1;
            dots = ".../";
        }
    }
    if (err->line > 0)
        snprintf(where, sizeof where, ":%d:%d", err->line, err->column);
    if (snprintf(err->text, sizeof err->text, "%s%.60s%s: %s", dots, base, where, text) >=
        (int)sizeof err->text)
        memcpy(err->text + sizeof err->text - 4, "...", 4);
    sanitize(err->text);
}

static int read_all(int fd, struct buf *b)
{
    char tmp[8192];

    for (;;) {
        ssize_t k = read(fd, tmp, sizeof tmp);
        int r;

        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            return 0;
        r = buf_append(b, tmp, (size_t)k);
        if (r == -ENOBUFS)
            return -EFBIG;
        if (r < 0)
            return r;
    }
}

static void buf_donep(struct buf *b)
{
    buf_free(b, false);
}

/* model_map_load_file() without the path in front of the error text. */
static int load_file(struct model_map *m, const char *path, struct parse_error *err)
{
    _cleanup_close_ int fd = -1;
    _cleanup_(buf_donep) struct buf b = BUF_INIT(MODEL_MAP_FILE_MAX);
    struct stat st;
    int r;

    /* O_NONBLOCK so that a FIFO in the file's place cannot hang start-up; it is refused below. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        r = -errno;
        return map_error(err, 0, 0, r, "cannot open: %s", strerror(-r));
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        return map_error(err, 0, 0, r, "cannot stat: %s", strerror(-r));
    }
    if (!S_ISREG(st.st_mode))
        return map_error(err, 0, 0, -EINVAL, "not a regular file");
    if (st.st_size > MODEL_MAP_FILE_MAX)
        return map_error(err, 0, 0, -EFBIG, "larger than 1 MiB");
    /* Read to the end rather than trust st_size: the file may grow while we read it. */
    r = read_all(fd, &b);
    if (r == -EFBIG)
        return map_error(err, 0, 0, r, "larger than 1 MiB");
    if (r < 0)
        return map_error(err, 0, 0, r, "cannot read: %s", strerror(-r));
    return model_map_parse(m, b.data ? b.data : "", b.len, err);
}

int model_map_load_file(struct model_map *m, const char *path, struct parse_error *reterr)
{
    struct parse_error e = {};
    int r;

    assert(m);
    assert(path);

    r = load_file(m, path, &e);
    if (r < 0 && reterr) {
        *reterr = e;
        prefix_path(reterr, path);
    }
    return r;
}

int model_map_set_default(struct model_map *m, const char *model)
{
    char *copy = NULL;

    assert(m);

    if (model && model[0] != '\0') {
        if (!model_map_id_is_valid(model))
            return -EINVAL;
        copy = strdup(model);
        if (!copy)
            return -ENOMEM;
    }
    free(m->default_model);
    m->default_model = copy;
    return 0;
}

void model_map_done(struct model_map *m)
{
    if (!m)
        return;
    entries_free(m->entries, m->n_entries);
    free(m->default_model);
    *m = (struct model_map){};
}

static const struct model_map_entry *find_custom(const struct model_map *m, const char *name)
{
    struct model_map_entry key = {.name = (char *)name};

    if (!m || m->n_entries == 0)
        return NULL;
    return bsearch(&key, m->entries, m->n_entries, sizeof *m->entries, entry_cmp);
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Whether s starts with prefix (lower case), ignoring ASCII case. */
static bool startswith_ci(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++)
        if (ascii_lower(*s) != *prefix)
            return false;
    return true;
}

/* Whether s contains needle (lower case), ignoring ASCII case. Not strcasestr(), which follows
 * the locale. */
static bool contains_ci(const char *s, const char *needle)
{
    for (; *s; s++)
        if (startswith_ci(s, needle))
            return true;
    return false;
}

static bool equals_ci(const char *s, const char *lower)
{
    return startswith_ci(s, lower) && s[strlen(lower)] == '\0';
}

static int pattern_tier(const char *name)
{
    bool o_series = equals_ci(name, "o1") || equals_ci(name, "o3") || startswith_ci(name, "o1-") ||
                    startswith_ci(name, "o3-");

    if (contains_ci(name, "gpt-3") || contains_ci(name, "-nano"))
        return TIER_HAIKU;
    if (contains_ci(name, "-pro") || contains_ci(name, "-max") || contains_ci(name, "-ultra"))
        return TIER_OPUS;
    if (o_series && !contains_ci(name, "-mini"))
        return TIER_OPUS;
    return TIER_SONNET;
}

const char *model_map_resolve(const struct model_map *m, const char *requested,
                              enum model_map_reason *ret_reason)
{
    static const enum model_map_reason tier_reason[_TIER_MAX] = {
        [TIER_HAIKU] = MODEL_MAP_PATTERN_HAIKU,
        [TIER_SONNET] = MODEL_MAP_PATTERN_SONNET,
        [TIER_OPUS] = MODEL_MAP_PATTERN_OPUS,
    };
    enum model_map_reason reason;
    const struct model_map_entry *e;
    const char *result = NULL;
    int tier;

    if (!requested)
        requested = "";

    e = find_custom(m, requested);
    if (e) {
        reason = MODEL_MAP_CUSTOM;
        result = e->target;
        goto done;
    }
    if (startswith_ci(requested, "claude-")) {
        reason = MODEL_MAP_CLAUDE;
        result = requested;
        goto done;
    }
    for (size_t i = 0; i < ELEMENTSOF(builtin); i++)
        if (equals_ci(requested, builtin[i].alias)) {
            reason = MODEL_MAP_ALIAS;
            result = builtin[i].model;
            goto done;
        }
    if (m && m->default_model) {
        reason = MODEL_MAP_DEFAULT_ENV;
        result = m->default_model;
        goto done;
    }
    tier = pattern_tier(requested);
    reason = tier_reason[tier];
    result = builtin[tier].model;

done:
    if (ret_reason)
        *ret_reason = reason;
    return result;
}

void model_map_aliases(const struct model_map *m,
                       void (*cb)(const char *alias, const char *target, void *userdata),
                       void *userdata)
{
    assert(cb);

    if (m)
        for (size_t i = 0; i < m->n_entries; i++)
            cb(m->entries[i].name, m->entries[i].target, userdata);
    for (size_t i = 0; i < ELEMENTSOF(builtin); i++)
        if (!find_custom(m, builtin[i].alias))
            cb(builtin[i].alias, builtin[i].model, userdata);
}
