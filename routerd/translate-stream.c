/* translate-stream.c: Anthropic SSE -> OpenAI chat.completion.chunk SSE (TRANSLATION.md 3.4).
 *
 * Two layers. The framing layer splits upstream bytes into lines ("\n", "\r\n" or "\r", split
 * anywhere across feeds), ignores comments, "event:" and unknown fields, joins "data:" lines, and
 * hands one complete event's data to the event layer at each blank line. Nothing is decoded
 * before that point, so a UTF-8 character or a JSON token cut between two reads is whole by the
 * time it is parsed, and the output does not depend on where the input was cut. An event (or a
 * line) larger than STREAM_EVENT_MAX ends the stream with an error chunk: memory stays bounded.
 *
 * The event layer trusts the JSON "type", not the SSE event name, and emits OpenAI chunks:
 *   message_start        the role chunk ({"role":"assistant","content":""}), remembers id, usage
 *   text / thinking      {"content"} / {"reasoning_content"} deltas
 *   tool_use             {"tool_calls":[{index k, id, type, function {name, arguments ""}}]},
 *                        then {"tool_calls":[{index k, function {arguments}}]}; k counts tool_use
 *                        blocks, not Anthropic block indexes; "{}" when a call had no arguments
 *   signature_delta      one replayable {"thinking_blocks":[...]} with the block's whole text
 *   message_delta        remembers the stop reason and the cumulative usage; emits nothing
 *   message_stop         the finish chunk, the usage chunk (include_usage) and [DONE]
 *   error                {"error":{...}} and nothing after it: no finish chunk, no [DONE]
 *   ping                 an SSE comment, which clients ignore and proxies see as traffic
 * An upstream that ends after a stop reason finishes normally (some gateways drop message_stop);
 * one that ends before any stop reason gets an error chunk, never a clean "stop".
 *
 * Forced-tool JSON mode (ctx->json_tool) streams that tool's argument fragments as content, and
 * legacy function mode streams the first call as function_call deltas. Pure: no IO, no globals. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "macro.h"
#include "translate.h"
#include "util.h"

/* One upstream event (or line) may not exceed this. Anthropic's largest events are single
 * content deltas, far below it. */
#define STREAM_EVENT_MAX (4u * 1024 * 1024)
/* The text of one thinking block, kept to repeat it beside its signature. */
#define STREAM_THINKING_MAX (8u * 1024 * 1024)
/* Content blocks of one message that the stream keeps track of. */
#define STREAM_BLOCKS_MAX 4096

enum block_kind {
    BLOCK_OTHER,
    BLOCK_TEXT,
    BLOCK_THINKING,
    BLOCK_TOOL,      /* a client tool call: tool_calls deltas */
    BLOCK_JSON,      /* the forced JSON tool: content deltas */
    BLOCK_FUNCTION,  /* legacy mode's first call: function_call deltas */
    BLOCK_DISCARDED, /* legacy mode's further calls: nothing */
};

struct block {
    int64_t index; /* Anthropic's content block index */
    enum block_kind kind;
    int64_t tool; /* ordinal among tool_use blocks */
    bool got_args;
};

struct chunk_stream {
    struct translate_context ctx;
    char *id;    /* message id from message_start */
    char *model; /* the upstream's model, used only when ctx.model is empty */

    struct buf head; /* every chunk's bytes before its delta; empty until the first chunk */

    /* Framing. */
    struct buf line;
    struct buf data;
    bool has_data;
    bool last_cr;

    /* Events. */
    struct block *blocks;
    size_t n_blocks;
    int64_t n_tools;
    int64_t thinking_index; /* block whose text is in .thinking; -1 for none */
    struct buf thinking;
    json_t *usage; /* Anthropic usage: message_start's, updated by each message_delta */
    char *stop_reason;
    bool have_stop_reason;
    bool started;
    bool done;
    struct usage u;
};

int chunk_stream_new(const struct translate_context *ctx, struct chunk_stream **ret)
{
    struct chunk_stream *s = calloc(1, sizeof *s);

    if (!s)
        return -ENOMEM;
    s->ctx = *ctx;
    s->head = BUF_INIT(STREAM_EVENT_MAX);
    s->line = BUF_INIT(STREAM_EVENT_MAX);
    s->data = BUF_INIT(STREAM_EVENT_MAX);
    s->thinking = BUF_INIT(STREAM_THINKING_MAX);
    s->thinking_index = -1;
    s->usage = json_object();
    if (!s->usage) {
        free(s);
        return -ENOMEM;
    }
    *ret = s;
    return 0;
}

struct chunk_stream *chunk_stream_free(struct chunk_stream *s)
{
    if (!s)
        return NULL;
    free(s->id);
    free(s->model);
    free(s->stop_reason);
    free(s->blocks);
    buf_free(&s->head, false);
    buf_free(&s->line, false);
    buf_free(&s->data, false);
    buf_free(&s->thinking, false);
    json_decref(s->usage);
    free(s);
    return NULL;
}

bool chunk_stream_done(const struct chunk_stream *s)
{
    return s->done;
}

const struct usage *chunk_stream_usage(const struct chunk_stream *s)
{
    return &s->u;
}

/* Appends "data: <json>\n\n" for j (borrowed). */
static int emit_json(const json_t *j, struct buf *out)
{
    int r = buf_append_str(out, "data: ");

    if (r >= 0)
        r = translate_json_dump(j, out);
    if (r >= 0)
        r = buf_append(out, "\n\n", 2);
    return r;
}

/* Appends the part of every chunk before its delta: "data: {"id":...,"choices":[{"index":0,
 * "delta":". It is the same for the whole stream once message_start has named the id, so it is
 * made once, by the first chunk, which ensure_started() makes sure follows message_start. */
static int emit_chunk_head(struct chunk_stream *s, struct buf *out)
{
    const char *model = s->ctx.model[0] ? s->ctx.model : s->model;
    const char *id = s->id ? s->id : "chatcmpl-dualroute";
    char created[32];
    int r = 0;

    if (s->head.len == 0) {
        snprintf(created, sizeof created, "%" PRId64, s->ctx.created);
        r = buf_append_str(&s->head, "data: {\"id\":");
        if (r >= 0)
            r = translate_json_dump_string(id, strlen(id), &s->head);
        if (r >= 0)
            r = buf_append_str(&s->head, ",\"object\":\"chat.completion.chunk\",\"created\":");
        if (r >= 0)
            r = buf_append_str(&s->head, created);
        if (r >= 0)
            r = buf_append_str(&s->head, ",\"model\":");
        if (r >= 0)
            r = translate_json_dump_string(model ? model : "", model ? strlen(model) : 0, &s->head);
        if (r >= 0)
            r = buf_append_str(&s->head, ",\"choices\":[{\"index\":0,\"delta\":");
        if (r < 0) {
            buf_clear(&s->head);
            return r;
        }
    }
    return buf_append(out, s->head.data, s->head.len);
}

/* Appends the part of a chunk after its delta, with finish_reason (NULL for null). */
static int emit_chunk_tail(struct chunk_stream *s, const char *finish, struct buf *out)
{
    int r = buf_append_str(out, ",\"logprobs\":null,\"finish_reason\":");

    if (r >= 0)
        r = finish ? translate_json_dump_string(finish, strlen(finish), out)
                   : buf_append_str(out, "null");
    if (r >= 0)
        r = buf_append_str(out, s->ctx.include_usage ? "}],\"usage\":null}\n\n" : "}]}\n\n");
    return r;
}

/* Appends one chunk with delta (stolen; NULL on allocation failure) and finish_reason (NULL for
 * null). */
static int emit_chunk(struct chunk_stream *s, json_t *delta, const char *finish, struct buf *out)
{
    int r;

    if (!delta)
        return -ENOMEM;
    r = emit_chunk_head(s, out);
    if (r >= 0)
        r = translate_json_dump(delta, out);
    if (r >= 0)
        r = emit_chunk_tail(s, finish, out);
    json_decref(delta);
    return r;
}

/* The role chunk, once, before anything else the client sees. */
static int ensure_started(struct chunk_stream *s, struct buf *out)
{
    if (s->started)
        return 0;
    s->started = true;
    return emit_chunk(s,
                      json_pack("{s:s,s:s}", "role", "assistant", "content",
                                s->ctx.prefix[0] ? s->ctx.prefix : ""),
                      NULL, out);
}

/* Ends the stream with {"error": ...} (body borrowed): no finish chunk, no [DONE]. */
static int emit_error(struct chunk_stream *s, const json_t *body, struct buf *out)
{
    s->done = true;
    s->u.error = true;
    if (!body)
        return -ENOMEM;
    return emit_json(body, out);
}

static int emit_error_message(struct chunk_stream *s, const char *message, struct buf *out)
{
    json_auto_t *body = translate_error(500, NULL, message, NULL, NULL);

    return emit_error(s, body, out);
}

static int emit_content(struct chunk_stream *s, const char *key, const char *text, size_t n,
                        struct buf *out)
{
    int r;

    if (n == 0)
        return 0;
    r = ensure_started(s, out);
    /* The commonest chunk by far, {"<key>":"<text>"}, is written without a json_t. */
    if (r >= 0)
        r = emit_chunk_head(s, out);
    if (r >= 0)
        r = buf_append_str(out, "{\"");
    if (r >= 0)
        r = buf_append_str(out, key);
    if (r >= 0)
        r = buf_append_str(out, "\":");
    if (r >= 0)
        r = translate_json_dump_string(text, n, out);
    if (r >= 0)
        r = buf_append_str(out, "}");
    if (r >= 0)
        r = emit_chunk_tail(s, NULL, out);
    return r;
}

static int emit_tool_args(struct chunk_stream *s, struct block *b, const char *args, size_t n,
                          struct buf *out)
{
    int r;

    if (n == 0)
        return 0;
    b->got_args = true;
    switch (b->kind) {
    case BLOCK_JSON:
        return emit_content(s, "content", args, n, out);
    case BLOCK_FUNCTION:
        r = ensure_started(s, out);
        if (r < 0)
            return r;
        return emit_chunk(s, json_pack("{s:{s:s%}}", "function_call", "arguments", args, n), NULL,
                          out);
    case BLOCK_TOOL:
        r = ensure_started(s, out);
        if (r < 0)
            return r;
        return emit_chunk(s,
                          json_pack("{s:[{s:I,s:{s:s%}}]}", "tool_calls", "index",
                                    (json_int_t)b->tool, "function", "arguments", args, n),
                          NULL, out);
    default:
        return 0;
    }
}

static struct block *block_find(struct chunk_stream *s, int64_t index)
{
    /* Blocks arrive in order, so the one asked for is nearly always the last. */
    for (size_t i = s->n_blocks; i > 0; i--)
        if (s->blocks[i - 1].index == index)
            return &s->blocks[i - 1];
    return NULL;
}

static int block_add(struct chunk_stream *s, int64_t index, enum block_kind kind,
                     struct block **ret)
{
    struct block *b = block_find(s, index), *p;

    if (b) {
        /* A repeated content_block_start: the later one wins. */
        b->kind = kind;
        *ret = b;
        return 0;
    }
    if (s->n_blocks >= STREAM_BLOCKS_MAX)
        return -ERANGE;
    p = realloc(s->blocks, (s->n_blocks + 1) * sizeof *p);
    if (!p)
        return -ENOMEM;
    s->blocks = p;
    b = &s->blocks[s->n_blocks++];
    *b = (struct block){.index = index, .kind = kind};
    *ret = b;
    return 0;
}

static int64_t event_index(const json_t *ev)
{
    json_t *v = json_object_get(ev, "index");

    return json_is_integer(v) ? json_integer_value(v) : -1;
}

static int on_message_start(struct chunk_stream *s, const json_t *ev, struct buf *out)
{
    json_t *msg = json_object_get(ev, "message");
    const char *id = json_string_value(json_object_get(msg, "id"));
    const char *model = json_string_value(json_object_get(msg, "model"));
    json_t *usage = json_object_get(msg, "usage");

    if (s->started)
        return 0;
    if (id && !(s->id = strdup(id)))
        return -ENOMEM;
    if (model && !(s->model = strdup(model)))
        return -ENOMEM;
    if (json_is_object(usage)) {
        if (json_object_update(s->usage, usage) < 0)
            return -ENOMEM;
        translate_usage_merge(&s->u, usage);
    }
    return ensure_started(s, out);
}

static int on_block_start(struct chunk_stream *s, const json_t *ev, struct buf *out)
{
    json_t *cb = json_object_get(ev, "content_block");
    const char *type = json_string_value(json_object_get(cb, "type"));
    int64_t index = event_index(ev);
    struct block *b;
    int r;

    if (!type)
        return 0;
    if (streq(type, "text")) {
        const char *t = json_string_value(json_object_get(cb, "text"));

        r = block_add(s, index, BLOCK_TEXT, &b);
        if (r < 0)
            return r;
        return t ? emit_content(s, "content", t, strlen(t), out) : 0;
    }
    if (streq(type, "thinking")) {
        const char *t = json_string_value(json_object_get(cb, "thinking"));

        r = block_add(s, index, BLOCK_THINKING, &b);
        if (r < 0)
            return r;
        buf_clear(&s->thinking);
        s->thinking_index = index;
        if (!t || !*t)
            return 0;
        r = buf_append_str(&s->thinking, t);
        if (r < 0)
            return r == -ENOBUFS ? -ERANGE : r;
        return emit_content(s, "reasoning_content", t, strlen(t), out);
    }
    if (streq(type, "redacted_thinking")) {
        const char *d = json_string_value(json_object_get(cb, "data"));

        r = block_add(s, index, BLOCK_OTHER, &b);
        if (r < 0)
            return r;
        r = ensure_started(s, out);
        if (r < 0)
            return r;
        return emit_chunk(s,
                          json_pack("{s:[{s:s,s:s}]}", "thinking_blocks", "type",
                                    "redacted_thinking", "data", d ? d : ""),
                          NULL, out);
    }
    if (streq(type, "tool_use")) {
        const char *name = json_string_value(json_object_get(cb, "name"));
        const char *id = json_string_value(json_object_get(cb, "id"));
        json_t *input = json_object_get(cb, "input");
        enum block_kind kind;

        if (s->ctx.json_tool[0] && name && streq(name, s->ctx.json_tool))
            kind = BLOCK_JSON;
        else if (s->ctx.legacy_functions)
            kind = s->n_tools == 0 ? BLOCK_FUNCTION : BLOCK_DISCARDED;
        else
            kind = BLOCK_TOOL;
        r = block_add(s, index, kind, &b);
        if (r < 0)
            return r;
        if (kind == BLOCK_TOOL || kind == BLOCK_FUNCTION || kind == BLOCK_DISCARDED)
            b->tool = s->n_tools++;
        if (kind == BLOCK_TOOL || kind == BLOCK_FUNCTION) {
            r = ensure_started(s, out);
            if (r < 0)
                return r;
            if (kind == BLOCK_TOOL)
                r = emit_chunk(s,
                               json_pack("{s:[{s:I,s:s,s:s,s:{s:s,s:s}}]}", "tool_calls", "index",
                                         (json_int_t)b->tool, "id", id ? id : "", "type",
                                         "function", "function", "name", name ? name : "",
                                         "arguments", ""),
                               NULL, out);
            else
                r = emit_chunk(s,
                               json_pack("{s:{s:s,s:s}}", "function_call", "name", name ? name : "",
                                         "arguments", ""),
                               NULL, out);
            if (r < 0)
                return r;
        }
        /* Anthropic opens with "input": {}; a gateway that sends the whole input up front gets
         * it forwarded as the first fragment. */
        if (json_object_size(input) > 0) {
            struct buf args = BUF_INIT(STREAM_EVENT_MAX);

            r = translate_json_dump(input, &args);
            if (r >= 0)
                r = emit_tool_args(s, b, args.data, args.len, out);
            buf_free(&args, false);
            return r;
        }
        return 0;
    }
    /* server_tool_use, web_search_tool_result and unknown types: server-side work. */
    return block_add(s, index, BLOCK_OTHER, &b);
}

static int on_block_delta(struct chunk_stream *s, const json_t *ev, struct buf *out)
{
    json_t *delta = json_object_get(ev, "delta");
    const char *type = json_string_value(json_object_get(delta, "type"));
    int64_t index = event_index(ev);
    struct block *b = block_find(s, index);
    json_t *v;
    int r;

    if (!type)
        return 0;
    if (streq(type, "text_delta")) {
        v = json_object_get(delta, "text");
        return emit_content(s, "content", json_string_value(v), json_string_length(v), out);
    }
    if (streq(type, "thinking_delta")) {
        v = json_object_get(delta, "thinking");
        if (!json_is_string(v))
            return 0;
        if (s->thinking_index != index) {
            buf_clear(&s->thinking);
            s->thinking_index = index;
        }
        r = buf_append(&s->thinking, json_string_value(v), json_string_length(v));
        if (r < 0)
            return r == -ENOBUFS ? -ERANGE : r;
        return emit_content(s, "reasoning_content", json_string_value(v), json_string_length(v),
                            out);
    }
    if (streq(type, "signature_delta")) {
        const char *sig = json_string_value(json_object_get(delta, "signature"));
        bool have_text = s->thinking_index == index;

        if (!sig)
            return 0;
        r = ensure_started(s, out);
        if (r < 0)
            return r;
        return emit_chunk(s,
                          json_pack("{s:[{s:s,s:s%,s:s}]}", "thinking_blocks", "type", "thinking",
                                    "thinking",
                                    have_text && s->thinking.data ? s->thinking.data : "",
                                    have_text ? s->thinking.len : (size_t)0, "signature", sig),
                          NULL, out);
    }
    if (streq(type, "input_json_delta")) {
        v = json_object_get(delta, "partial_json");
        if (!b || !json_is_string(v))
            return 0;
        /* Anthropic opens each call with an empty fragment: skipped by emit_tool_args(). */
        return emit_tool_args(s, b, json_string_value(v), json_string_length(v), out);
    }
    /* citations_delta and unknown delta types are dropped. */
    return 0;
}

static int on_block_stop(struct chunk_stream *s, int64_t index, struct buf *out)
{
    struct block *b = block_find(s, index);

    /* A call without argument bytes still has to accumulate to valid JSON. */
    if (b && !b->got_args &&
        (b->kind == BLOCK_TOOL || b->kind == BLOCK_FUNCTION || b->kind == BLOCK_JSON))
        return emit_tool_args(s, b, "{}", 2, out);
    return 0;
}

static int on_message_delta(struct chunk_stream *s, const json_t *ev)
{
    json_t *delta = json_object_get(ev, "delta");
    json_t *reason = json_object_get(delta, "stop_reason");
    json_t *usage = json_object_get(ev, "usage");

    if (json_is_string(reason)) {
        char *p = strdup(json_string_value(reason));
        if (!p)
            return -ENOMEM;
        free(s->stop_reason);
        s->stop_reason = p;
        s->have_stop_reason = true;
        snprintf(s->u.stop_reason, sizeof s->u.stop_reason, "%s", p);
    }
    if (json_is_object(usage)) {
        /* Cumulative: each field present replaces the earlier value. */
        if (json_object_update(s->usage, usage) < 0)
            return -ENOMEM;
        translate_usage_merge(&s->u, usage);
    }
    return 0;
}

/* The normal end: finish chunk, usage chunk when asked for, [DONE]. */
static int finish_ok(struct chunk_stream *s, struct buf *out)
{
    int r;

    r = ensure_started(s, out);
    if (r < 0)
        return r;
    s->done = true;
    r = emit_chunk(s, json_object(), translate_finish_reason(s->stop_reason, &s->ctx), out);
    if (r < 0)
        return r;
    if (s->ctx.include_usage) {
        const char *model = s->ctx.model[0] ? s->ctx.model : s->model;
        json_auto_t *chunk = json_pack(
            "{s:s,s:s,s:I,s:s,s:[],s:o}", "id", s->id ? s->id : "chatcmpl-dualroute", "object",
            "chat.completion.chunk", "created", (json_int_t)s->ctx.created, "model",
            model ? model : "", "choices", "usage", translate_usage_json(s->usage, true));
        if (!chunk)
            return -ENOMEM;
        r = emit_json(chunk, out);
        if (r < 0)
            return r;
    }
    return buf_append_str(out, "data: [DONE]\n\n");
}

/* Whether p[0..n) is a JSON string literal without escapes: a quote, then bytes that are neither
 * quote, backslash nor control character and are valid UTF-8 (what jansson checks too), then the
 * closing quote. Its value is then the bytes between the quotes; anything else is left to
 * jansson. Most text deltas are like this, and a jansson call costs thousands of instructions
 * even for a few words. */
static bool plain_string_literal(const char *p, size_t n)
{
    if (n < 2 || p[0] != '"' || p[n - 1] != '"')
        return false;
    for (size_t i = 1; i < n - 1; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c < 0x20 || c == '"' || c == '\\')
            return false;
    }
    return utf8_is_valid(p + 1, n - 2);
}

/* Reads the JSON integer an event's "index" has as the API writes it: digits, no leading zero,
 * at most 18 of them (so it fits an int64_t, as jansson would read it). Returns the byte after
 * it, or NULL. */
static const char *index_digits(const char *p, const char *end, int64_t *ret)
{
    int64_t v = 0;
    size_t n = 0;

    while (p + n < end && p[n] >= '0' && p[n] <= '9' && n < 19)
        v = v * 10 + (p[n++] - '0');
    if (n == 0 || n > 18 || (n > 1 && p[0] == '0'))
        return NULL;
    *ret = v;
    return p + n;
}

/* The text of a text delta, p[0..n) the bytes between "text": and the closing "}}": as it is
 * when it is a plain literal, otherwise parsed by jansson, which accepts nothing but one whole
 * string there. */
static int on_text(struct chunk_stream *s, const char *p, size_t n, struct buf *out)
{
    json_auto_t *text = NULL;
    int r;

    if (plain_string_literal(p, n))
        /* Without escapes, the text is the bytes between the quotes. */
        r = emit_content(s, "content", p + 1, n - 2, out);
    else {
        text = json_loadb(p, n, JSON_DECODE_ANY, NULL);
        if (!json_is_string(text))
            return 0;
        r = emit_content(s, "content", json_string_value(text), json_string_length(text), out);
    }
    return r < 0 ? r : 1;
}

/* Shortcuts for the events that make up nearly all of a stream, written exactly as the API
 * writes them:
 *   {"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"..."}}
 *   {"type":"content_block_stop","index":N}
 *   {"type":"ping"}
 *   {"type":"message_stop"}
 * Only whole bytes are compared, except for N and the text (see on_text()). So a shortcut takes
 * an event only when the full parse would read the same from it, and any other spelling
 * (spaces, another key order, more keys) goes to the full parse; fuzz/chunk-stream compares the
 * two. Each jansson call costs thousands of instructions even for a few bytes: a 36-event
 * stream went from 187 us to 18 us of translation. Returns 1 when the event was handled. */
static int on_event_shortcut(struct chunk_stream *s, struct buf *out)
{
    static const char delta_head[] = "{\"type\":\"content_block_delta\",\"index\":";
    static const char delta_mid[] = ",\"delta\":{\"type\":\"text_delta\",\"text\":";
    static const char stop_head[] = "{\"type\":\"content_block_stop\",\"index\":";
    const char *p = s->data.data, *end = p + s->data.len;
    size_t n = s->data.len;
    int64_t index;
    int r;

    if (n > sizeof delta_head && memcmp(p, delta_head, sizeof delta_head - 1) == 0) {
        p = index_digits(p + sizeof delta_head - 1, end, &index);
        if (!p || (size_t)(end - p) < sizeof delta_mid - 1 + 4 ||
            memcmp(p, delta_mid, sizeof delta_mid - 1) != 0 || memcmp(end - 2, "}}", 2) != 0)
            return 0;
        p += sizeof delta_mid - 1;
        return on_text(s, p, (size_t)(end - 2 - p), out);
    }
    if (n > sizeof stop_head && memcmp(p, stop_head, sizeof stop_head - 1) == 0) {
        p = index_digits(p + sizeof stop_head - 1, end, &index);
        if (!p || end - p != 1 || *p != '}')
            return 0;
        r = on_block_stop(s, index, out);
        return r < 0 ? r : 1;
    }
    if (n == strlen("{\"type\":\"ping\"}") && memcmp(p, "{\"type\":\"ping\"}", n) == 0) {
        r = buf_append_str(out, ": ping\n\n");
        return r < 0 ? r : 1;
    }
    if (n == strlen("{\"type\":\"message_stop\"}") &&
        memcmp(p, "{\"type\":\"message_stop\"}", n) == 0) {
        s->u.stopped = true;
        r = finish_ok(s, out);
        return r < 0 ? r : 1;
    }
    return 0;
}

static int on_event(struct chunk_stream *s, struct buf *out)
{
    json_auto_t *ev = NULL;
    const char *type;
    int r;

    if (!s->ctx.parse_every_event && (r = on_event_shortcut(s, out)) != 0)
        return r < 0 ? r : 0;

    ev = json_loadb(s->data.data ? s->data.data : "", s->data.len, 0, NULL);
    type = json_string_value(json_object_get(ev, "type"));
    if (!type)
        return 0; /* not JSON, or not an event we know the shape of */

    if (streq(type, "message_start"))
        return on_message_start(s, ev, out);
    if (streq(type, "content_block_start"))
        return on_block_start(s, ev, out);
    if (streq(type, "content_block_delta"))
        return on_block_delta(s, ev, out);
    if (streq(type, "content_block_stop"))
        return on_block_stop(s, event_index(ev), out);
    if (streq(type, "message_delta"))
        return on_message_delta(s, ev);
    if (streq(type, "message_stop")) {
        s->u.stopped = true;
        return finish_ok(s, out);
    }
    if (streq(type, "error")) {
        json_auto_t *body = translate_error(500, ev, "upstream error", NULL, NULL);
        return emit_error(s, body, out);
    }
    if (streq(type, "ping"))
        return buf_append_str(out, ": ping\n\n");
    return 0; /* unknown events: versioning policy says ignore */
}

/* Dispatches the event collected so far, if any. */
static int event_end(struct chunk_stream *s, struct buf *out)
{
    int r = 0;

    if (s->has_data)
        r = on_event(s, out);
    buf_clear(&s->data);
    s->has_data = false;
    if (r == -ERANGE && !s->done)
        /* Too many blocks, or a thinking block too long to repeat: not Anthropic's behaviour. */
        r = emit_error_message(s, "upstream stream exceeds the router's limits", out);
    return r;
}

/* One line, p[0..n), without its end. */
static int on_line(struct chunk_stream *s, const char *p, size_t n, struct buf *out)
{
    size_t name_len;
    const char *colon;
    int r;

    if (n == 0)
        return event_end(s, out);
    if (p[0] == ':')
        return 0; /* comment */
    colon = memchr(p, ':', n);
    name_len = colon ? (size_t)(colon - p) : n;
    if (name_len != 4 || memcmp(p, "data", 4) != 0)
        return 0; /* event:, id:, retry: and unknown fields */
    if (colon) {
        p = colon + 1;
        n -= name_len + 1;
        if (n > 0 && p[0] == ' ')
            p++, n--;
    } else
        n = 0;
    if (s->has_data && (r = buf_append(&s->data, "\n", 1)) < 0)
        return r == -ENOBUFS ? -E2BIG : r;
    s->has_data = true;
    r = buf_append(&s->data, p, n);
    return r == -ENOBUFS ? -E2BIG : r;
}

/* An event or line over STREAM_EVENT_MAX. */
static int too_large(struct chunk_stream *s, struct buf *out)
{
    buf_free(&s->line, false);
    buf_free(&s->data, false);
    return emit_error_message(s, "upstream stream event too large", out);
}

/* Where the line starting at p ends: its '\n' or '\r', or end. */
static const char *line_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *cr = memchr(p, '\r', (size_t)((nl ? nl : end) - p));

    return cr ? cr : nl ? nl : end;
}

int chunk_stream_feed(struct chunk_stream *s, const char *p, size_t n, struct buf *out)
{
    const char *end = p + n;
    int r;

    while (p < end && !s->done) {
        const char *q;

        if (s->last_cr) {
            s->last_cr = false;
            if (*p == '\n') {
                p++;
                continue;
            }
        }
        q = line_end(p, end);
        if (q == end || s->line.len > 0) {
            /* The line started in an earlier feed, or ends in a later one: it is collected. */
            r = buf_append(&s->line, p, (size_t)(q - p));
            if (r == -ENOBUFS)
                return too_large(s, out);
            if (r < 0)
                return r;
            if (q == end)
                break;
            r = on_line(s, s->line.data, s->line.len, out);
            buf_clear(&s->line);
        } else if ((size_t)(q - p) > STREAM_EVENT_MAX)
            return too_large(s, out); /* what collecting it would have found */
        else
            r = on_line(s, p, (size_t)(q - p), out);
        s->last_cr = *q == '\r';
        if (r == -E2BIG)
            return too_large(s, out);
        if (r < 0)
            return r;
        p = q + 1;
    }
    return 0;
}

int chunk_stream_finish(struct chunk_stream *s, bool ok, const char *error_message, struct buf *out)
{
    int r;

    if (s->done)
        return 0;
    /* A last event without its closing blank line still counts. */
    if (s->line.len > 0) {
        r = on_line(s, s->line.data, s->line.len, out);
        buf_clear(&s->line);
        if (r == -E2BIG)
            return too_large(s, out);
        if (r < 0)
            return r;
    }
    r = event_end(s, out);
    if (r < 0 || s->done)
        return r;

    /* After a stop reason the content is complete, whether or not message_stop arrived. */
    if (s->have_stop_reason)
        return finish_ok(s, out);
    if (ok || !error_message || !*error_message)
        error_message = "upstream stream ended prematurely";
    return emit_error_message(s, error_message, out);
}
