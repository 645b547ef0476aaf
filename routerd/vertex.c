/* vertex.c: what changes when a Messages request goes to Claude on Vertex AI instead of the
 * Anthropic API (PROVIDERS.md 1.1-1.5 and 5).
 *
 * The URL carries the project, region and model; the body loses "model" and gains
 * "anthropic_version": "vertex-2023-10-16"; Anthropic's model ids become Vertex's "@" ids; and
 * the anthropic-beta header loses the values Vertex answers with 400. The proxy code calls these
 * and does the IO; each is a pure function of its arguments, so unit tests cover every case.
 *
 * Unlike the Anthropic path, where routerd forwards the client's body byte for byte, a Vertex
 * body has to be rewritten. vertex_body() parses it without JSON_DECODE_INT_AS_REAL so that
 * "max_tokens": 1024 goes out as 1024, not 1024.0. Model ids and betas come from small tables
 * below, the one place to update when Google adds a model or a beta. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "macro.h"
#include "util.h"
#include "vertex.h"

/* Anthropic's undated ids and aliases, and the dated Vertex id each stands for. Sources: the
 * Anthropic "Vertex AI" page's model list (PROVIDERS.md 1.4); the -0 and -latest aliases are
 * Anthropic's names for the same snapshots. */
static const struct {
    const char *anthropic;
    const char *vertex;
} model_table[] = {
    {"claude-3-haiku", "claude-3-haiku@20240307"},
    {"claude-3-5-haiku", "claude-3-5-haiku@20241022"},
    {"claude-3-5-haiku-latest", "claude-3-5-haiku@20241022"},
    {"claude-3-7-sonnet", "claude-3-7-sonnet@20250219"},
    {"claude-3-7-sonnet-latest", "claude-3-7-sonnet@20250219"},
    {"claude-haiku-4-5", "claude-haiku-4-5@20251001"},
    {"claude-opus-4", "claude-opus-4@20250514"},
    {"claude-opus-4-0", "claude-opus-4@20250514"},
    {"claude-opus-4-1", "claude-opus-4-1@20250805"},
    {"claude-opus-4-5", "claude-opus-4-5@20251101"},
    {"claude-sonnet-4", "claude-sonnet-4@20250514"},
    {"claude-sonnet-4-0", "claude-sonnet-4@20250514"},
    {"claude-sonnet-4-5", "claude-sonnet-4-5@20250929"},
};

/* anthropic-beta values Vertex refuses with 400 invalid_request_error ("Unexpected value(s) ...
 * for the anthropic-beta header"). */
static const struct {
    const char *beta;
    bool count_tokens_only;
} beta_deny_table[] = {
    /* pydantic/pydantic-ai#2512: broke Claude 4 on Vertex. */
    {"code-execution-2025-05-22", false},
    /* anthropics/claude-code#12429, #11154: refused on count-tokens:rawPredict. */
    {"web-search-2025-03-05", true},
    {"context-1m-2025-08-07", true},
    /* anthropics/claude-code#21625 and QuantumNous/new-api#2975: sent by Claude Code 2.1. */
    {"prompt-caching-scope-2026-01-05", false},
    /* anthropics/claude-code#34802, can1357/oh-my-pi#5614: sent with thinking. */
    {"effort-2025-11-24", false},
    {"adaptive-thinking-2026-01-28", false},
    /* vercel/ai#10981, QuantumNous/new-api#2975: structured outputs. */
    {"structured-outputs-2025-11-13", false},
    {"structured-outputs-2025-12-15", false},
};

static bool region_is_valid(const char *s)
{
    size_t n;

    if (!s)
        return false;
    n = strlen(s);
    if (n == 0 || n > VERTEX_REGION_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static bool project_is_valid(const char *s)
{
    size_t n;

    if (!s)
        return false;
    n = strlen(s);
    if (n == 0 || n > VERTEX_PROJECT_MAX || s[0] == '.' || s[0] == ':')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.:-") == n;
}

bool vertex_model_id_is_valid(const char *s)
{
    const char *at;
    size_t n;

    if (!s)
        return false;
    n = strlen(s);
    if (n == 0 || n > VERTEX_MODEL_MAX)
        return false;
    if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-@") != n)
        return false;
    /* "." and ".." would be path segments of their own. */
    if (streq(s, ".") || streq(s, ".."))
        return false;
    at = strchr(s, '@');
    if (at && (at == s || at[1] == '\0' || strchr(at + 1, '@')))
        return false;
    return true;
}

/* https://HOST, or http:// to loopback, with no white space, control characters, query or
 * fragment, and no trailing '/'. */
static bool base_url_is_valid(const char *s)
{
    static const char *const loopback[] = {"http://127.0.0.1", "http://localhost", "http://[::1]"};
    size_t n;
    bool ok = false;

    if (!s)
        return false;
    n = strlen(s);
    if (n == 0 || n > 512 || s[n - 1] == '/' || strpbrk(s, "?#"))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return false;
    if (startswith(s, "https://"))
        ok = s[8] != '\0' && s[8] != '/' && s[8] != ':';
    for (size_t i = 0; !ok && i < ELEMENTSOF(loopback); i++) {
        size_t k = strlen(loopback[i]);
        ok = strncmp(s, loopback[i], k) == 0 && strchr(":/", s[k]);
    }
    return ok;
}

int vertex_base_url(const char *region, char **ret)
{
    char *s = NULL;

    assert(ret);
    if (!region_is_valid(region))
        return -EINVAL;
    if (streq(region, "global"))
        s = strdup("https://aiplatform.googleapis.com/v1");
    else if (streq(region, "us") || streq(region, "eu")) {
        if (asprintf(&s, "https://aiplatform.%s.rep.googleapis.com/v1", region) < 0)
            s = NULL;
    } else if (asprintf(&s, "https://%s-aiplatform.googleapis.com/v1", region) < 0)
        s = NULL;
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

int vertex_url(const struct vertex_target *t, const char *model, bool stream, bool count_tokens,
               char **ret)
{
    _cleanup_free_ char *base = NULL;
    const char *segment, *verb;
    char *s;
    int r;

    assert(t);
    assert(ret);
    if (!region_is_valid(t->region) || !project_is_valid(t->project))
        return -EINVAL;
    if (count_tokens) {
        /* The model goes in the body; the path names the count-tokens "model". */
        segment = "count-tokens";
        verb = "rawPredict";
    } else {
        if (!vertex_model_id_is_valid(model))
            return -EINVAL;
        segment = model;
        verb = stream ? "streamRawPredict" : "rawPredict";
    }
    if (t->base_url) {
        if (!base_url_is_valid(t->base_url))
            return -EINVAL;
        base = strdup(t->base_url);
        if (!base)
            return -ENOMEM;
    } else {
        r = vertex_base_url(t->region, &base);
        if (r < 0)
            return r;
    }
    if (asprintf(&s, "%s/projects/%s/locations/%s/publishers/anthropic/models/%s:%s", base,
                 t->project, t->region, segment, verb) < 0)
        return -ENOMEM;
    *ret = s;
    return 0;
}

/* The length of model without a final -YYYYMMDD, or 0 when it has none. */
static size_t dated_prefix_len(const char *model)
{
    size_t n = strlen(model);

    if (n < 10 || model[n - 9] != '-')
        return 0;
    if (strspn(model + n - 8, "0123456789") != 8)
        return 0;
    return n - 9;
}

int vertex_model_id(const char *model, char **ret)
{
    size_t k;
    char *s = NULL;

    assert(ret);
    if (!vertex_model_id_is_valid(model))
        return -EINVAL;
    if (!strchr(model, '@')) {
        for (size_t i = 0; !s && i < ELEMENTSOF(model_table); i++)
            if (streq(model, model_table[i].anthropic)) {
                s = strdup(model_table[i].vertex);
                if (!s)
                    return -ENOMEM;
            }
        k = dated_prefix_len(model);
        if (!s && k > 0) {
            s = strdup(model);
            if (!s)
                return -ENOMEM;
            s[k] = '@';
        }
    }
    if (!s) {
        s = strdup(model);
        if (!s)
            return -ENOMEM;
    }
    if (!vertex_model_id_is_valid(s)) {
        free(s);
        return -EINVAL;
    }
    *ret = s;
    return 0;
}

int vertex_rewrite_body(json_t *body, const char *vertex_model, bool count_tokens)
{
    if (!json_is_object(body))
        return -EINVAL;
    /* Set, not setdefault as the SDK does: a client's "2023-06-01" would get a 404. */
    if (json_object_set_new(body, "anthropic_version", json_string(VERTEX_ANTHROPIC_VERSION)) < 0)
        return -ENOMEM;
    if (!count_tokens)
        json_object_del(body, "model"); /* absent is fine */
    else if (vertex_model && json_object_set_new(body, "model", json_string(vertex_model)) < 0)
        return -ENOMEM;
    return 0;
}

int vertex_body(const char *body, size_t len, const char *vertex_model, bool count_tokens,
                char **ret, size_t *ret_len)
{
    json_auto_t *root = NULL;
    char *s;
    int r;

    assert(ret);
    if (len > VERTEX_BODY_MAX)
        return -EFBIG;
    /* JSON_ALLOW_NUL: "\u0000" inside a string is valid JSON and must survive the round trip. */
    root = json_loadb(body ? body : "", len, JSON_ALLOW_NUL, NULL);
    if (!root)
        return -EINVAL;
    r = vertex_rewrite_body(root, vertex_model, count_tokens);
    if (r < 0)
        return r;
    s = json_dumps(root, JSON_COMPACT);
    if (!s)
        return -ENOMEM;
    if (ret_len)
        *ret_len = strlen(s);
    *ret = s;
    return 0;
}

/* The next item of a comma-separated list at *p, trimmed of spaces and tabs: true with
 * [*ret_item, *ret_item + *ret_n), and *p moved past it; false at the end. Empty items are
 * skipped. */
static bool next_item(const char **p, const char **ret_item, size_t *ret_n)
{
    while (**p) {
        size_t k = strcspn(*p, ",");
        const char *item = *p, *end = *p + k;

        *p += k;
        if (**p == ',')
            (*p)++;
        while (item < end && (*item == ' ' || *item == '\t'))
            item++;
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > item) {
            *ret_item = item;
            *ret_n = (size_t)(end - item);
            return true;
        }
    }
    return false;
}

static bool beta_is_denied(const char *item, size_t n, bool count_tokens, const char *extra_deny)
{
    const char *deny;
    size_t m;

    for (size_t i = 0; i < ELEMENTSOF(beta_deny_table); i++)
        if ((count_tokens || !beta_deny_table[i].count_tokens_only) &&
            strlen(beta_deny_table[i].beta) == n && memcmp(beta_deny_table[i].beta, item, n) == 0)
            return true;
    for (const char *p = extra_deny ? extra_deny : ""; next_item(&p, &deny, &m);)
        if (m == n && memcmp(deny, item, n) == 0)
            return true;
    return false;
}

static int join_append(struct buf *b, const char *item, size_t n)
{
    int r;

    if (b->len > 0) {
        r = buf_append(b, ",", 1);
        if (r < 0)
            return r;
    }
    return buf_append(b, item, n);
}

static void buf_freep_(struct buf *b)
{
    buf_free(b, false);
}

int vertex_filter_betas(const char *value, bool count_tokens, const char *extra_deny,
                        char **ret_value, char **ret_dropped)
{
    _cleanup_(buf_freep_) struct buf kept = BUF_INIT(VERTEX_BETA_HEADER_MAX + 1);
    _cleanup_(buf_freep_) struct buf dropped = BUF_INIT(VERTEX_BETA_HEADER_MAX + 1);
    char *v = NULL, *d = NULL;
    size_t n;
    int r;

    assert(ret_value);
    if (!value)
        value = "";
    n = strnlen(value, VERTEX_BETA_HEADER_MAX + 1);
    if (n > VERTEX_BETA_HEADER_MAX)
        return -E2BIG;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)value[i] < 0x20 && value[i] != '\t') || value[i] == 0x7f)
            return -EINVAL;

    for (const char *p = value, *item; next_item(&p, &item, &n);) {
        r = join_append(beta_is_denied(item, n, count_tokens, extra_deny) ? &dropped : &kept, item,
                        n);
        if (r < 0)
            return r == -ENOBUFS ? -E2BIG : r;
    }

    if (kept.len > 0) {
        v = buf_steal(&kept);
        if (!v)
            return -ENOMEM;
    }
    if (ret_dropped && dropped.len > 0) {
        d = buf_steal(&dropped);
        if (!d) {
            free(v);
            return -ENOMEM;
        }
    }
    *ret_value = v;
    if (ret_dropped)
        *ret_dropped = d;
    return 0;
}
