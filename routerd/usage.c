/* usage.c: reads token usage from Anthropic responses.
 *
 * SSE framing follows the WHATWG event-stream rules: lines end in "\n", "\r\n" or "\r", a field is
 * "name: value" (one leading space dropped), a blank line ends the event, data lines are joined
 * with
 * "\n". Only three event types carry what we need, so other events cost a memchr per line and no
 * JSON parsing. message_start carries input and cache figures (and output so far), message_delta
 * the cumulative output count and the stop reason. */
#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "macro.h"
#include "usage.h"

void sse_scanner_init(struct sse_scanner *s)
{
    *s = (struct sse_scanner){
        .line = BUF_INIT(SSE_SCANNER_MAX),
        .data = BUF_INIT(SSE_SCANNER_MAX),
    };
}

void sse_scanner_done(struct sse_scanner *s)
{
    buf_free(&s->line, false);
    buf_free(&s->data, false);
}

static int64_t json_int(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return -1;
}

/* Copies the figures present in a usage object; absent ones keep their value. */
static void usage_merge(struct usage *u, const json_t *o)
{
    int64_t v;

    if (!json_is_object(o))
        return;
    if ((v = json_int(o, "input_tokens")) >= 0)
        u->input_tokens = v;
    if ((v = json_int(o, "output_tokens")) >= 0)
        u->output_tokens = v;
    if ((v = json_int(o, "cache_read_input_tokens")) >= 0)
        u->cache_read_tokens = v;
    if ((v = json_int(o, "cache_creation_input_tokens")) >= 0)
        u->cache_creation_tokens = v;
    u->seen = true;
}

static void stop_reason_set(struct usage *u, const json_t *v)
{
    if (json_is_string(v))
        snprintf(u->stop_reason, sizeof u->stop_reason, "%s", json_string_value(v));
}

static void sse_dispatch(struct sse_scanner *s)
{
    const char *ev = s->event;
    json_t *root;

    if (s->skip_event || s->data.len == 0)
        goto reset;
    if (strcmp(ev, "message_stop") == 0) {
        s->usage.stopped = true;
        goto reset;
    }
    if (strcmp(ev, "error") == 0)
        s->usage.error = true;
    if (strcmp(ev, "message_start") != 0 && strcmp(ev, "message_delta") != 0 &&
        strcmp(ev, "error") != 0 && ev[0] != '\0')
        goto reset;

    root = json_loadb(s->data.data, s->data.len, JSON_DECODE_INT_AS_REAL, NULL);
    if (json_is_object(root)) {
        const char *type = json_string_value(json_object_get(root, "type"));

        if (type && strcmp(type, "message_start") == 0) {
            json_t *msg = json_object_get(root, "message");
            usage_merge(&s->usage, json_object_get(msg, "usage"));
        } else if (type && strcmp(type, "message_delta") == 0) {
            usage_merge(&s->usage, json_object_get(root, "usage"));
            stop_reason_set(&s->usage,
                            json_object_get(json_object_get(root, "delta"), "stop_reason"));
        } else if (type && strcmp(type, "message_stop") == 0)
            s->usage.stopped = true;
        else if (type && strcmp(type, "error") == 0)
            s->usage.error = true;
    }
    json_decref(root);
reset:
    buf_clear(&s->data);
    s->event[0] = '\0';
    s->skip_event = false;
}

static void sse_line(struct sse_scanner *s, const char *p, size_t n)
{
    const char *colon, *value;
    size_t name_len, value_len;

    if (n == 0) {
        sse_dispatch(s);
        return;
    }
    if (p[0] == ':')
        return; /* comment */
    colon = memchr(p, ':', n);
    name_len = colon ? (size_t)(colon - p) : n;
    value = colon ? colon + 1 : p + n;
    value_len = (size_t)(p + n - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }

    if (name_len == 5 && memcmp(p, "event", 5) == 0) {
        size_t k = MIN(value_len, sizeof s->event - 1);
        memcpy(s->event, value, k);
        s->event[k] = '\0';
    } else if (name_len == 4 && memcmp(p, "data", 4) == 0) {
        if (s->skip_event)
            return;
        if ((s->data.len > 0 && buf_append(&s->data, "\n", 1) < 0) ||
            buf_append(&s->data, value, value_len) < 0) {
            s->skip_event = true;
            buf_clear(&s->data);
        }
    }
}

void sse_scanner_feed(struct sse_scanner *s, const char *p, size_t n)
{
    const char *end = p + n;

    if (n > 0 && s->last_cr) {
        /* "\r\n" split across chunks: the line already ended at the '\r'. */
        if (*p == '\n')
            p++;
        s->last_cr = false;
    }
    while (p < end) {
        const char *q = p;

        while (q < end && *q != '\n' && *q != '\r')
            q++;
        if (q == end) {
            /* Incomplete line: keep it for the next chunk. */
            if (!s->skip_line && buf_append(&s->line, p, (size_t)(q - p)) < 0) {
                s->skip_line = true;
                buf_clear(&s->line);
            }
            return;
        }

        if (s->skip_line) {
            s->skip_line = false;
            buf_clear(&s->line);
        } else if (s->line.len > 0) {
            if (buf_append(&s->line, p, (size_t)(q - p)) == 0)
                sse_line(s, s->line.data, s->line.len);
            buf_clear(&s->line);
        } else
            sse_line(s, p, (size_t)(q - p));

        if (*q == '\r') {
            if (q + 1 < end && q[1] == '\n')
                q++;
            else if (q + 1 == end)
                s->last_cr = true;
        }
        p = q + 1;
    }
}

/* The last occurrence of needle in p[0..n), or NULL. */
static const char *memrmem(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);

    if (n < k)
        return NULL;
    for (const char *q = p + n - k;; q--) {
        if (memcmp(q, needle, k) == 0)
            return q;
        if (q == p)
            return NULL;
    }
}

/* Fast path for a Message as the API writes it (compact, "usage" its last member): parse only the
 * value after the last "usage": and the last "stop_reason":. Inside a JSON string a quote is
 * escaped, so these byte sequences only occur as keys; a tool's input object could hold a "usage"
 * key of its own, but it comes before the top-level one. Returns false when the shortcut does not
 * apply, and the caller parses the whole body. */
static bool usage_from_json_fast(const char *p, size_t n, struct usage *u)
{
    const char *k = memrmem(p, n, "\"usage\":");
    json_t *v;

    if (!k || memmem(p, MIN(n, (size_t)64), "\"type\":\"message\"", 16) == NULL)
        return false;
    k += strlen("\"usage\":");
    v = json_loadb(k, (size_t)(p + n - k), JSON_DISABLE_EOF_CHECK | JSON_DECODE_INT_AS_REAL, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return false;
    }
    usage_merge(u, v);
    json_decref(v);

    k = memrmem(p, n, "\"stop_reason\":");
    if (k) {
        k += strlen("\"stop_reason\":");
        v = json_loadb(k, (size_t)(p + n - k), JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, NULL);
        stop_reason_set(u, v);
        json_decref(v);
    }
    u->stopped = true;
    return true;
}

int usage_from_json(const char *p, size_t n, struct usage *u)
{
    json_t *root;
    const char *type;

    if (usage_from_json_fast(p, n, u))
        return 0;
    root = json_loadb(p, n, JSON_DECODE_INT_AS_REAL, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return -EBADMSG;
    }
    usage_merge(u, json_object_get(root, "usage"));
    if (!json_object_get(root, "usage") && json_object_get(root, "input_tokens"))
        usage_merge(u, root); /* count_tokens */
    stop_reason_set(u, json_object_get(root, "stop_reason"));
    type = json_string_value(json_object_get(root, "type"));
    if (type && strcmp(type, "message") == 0)
        u->stopped = true;
    if (type && strcmp(type, "error") == 0)
        u->error = true;
    json_decref(root);
    return 0;
}
