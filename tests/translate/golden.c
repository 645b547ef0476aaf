/* golden.c: runs one translator case directory (tests/translate/<case>/).
 *
 *   case.json             optional: {"model_id": "claude-sonnet-4-6", "model_caps": {GET
 *                         /v1/models item}, "options": {"strict_tool_arguments": true, ...},
 *                         "created": 1767225600, "status": 429 (for upstream-error.json),
 *                         "stream_ok": false, "stream_error": "why" (how the upstream ended)}
 *   input.json            the client's OpenAI request
 *   upstream-request.json what must go upstream (compared structurally)
 *   expected-error.json   instead: {"status": 400, "param": "n", "message_contains": "..."}
 *   upstream-reply.json   an Anthropic Message  -> expected.json (chat.completion)
 *   upstream-reply.sse    an Anthropic stream   -> expected.sse (OpenAI chunks, then [DONE])
 *   upstream-error.json   an Anthropic error body (status from case.json) -> expected.json
 *
 * Streams are fed whole, one byte at a time and in 7-byte pieces; all three must give the
 * expected events. Events compare as JSON, so key order and number formatting do not matter. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "macro.h"
#include "translate.h"

static int failures;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FAIL: " __VA_ARGS__);                                                     \
        fputc('\n', stderr);                                                                       \
        failures++;                                                                                \
    } while (0)

static char *read_file(const char *dir, const char *name, size_t *ret_len)
{
    char path[4096];
    FILE *f;
    struct buf b = BUF_INIT(64 * 1024 * 1024);
    char tmp[8192];
    size_t n;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "re");
    if (!f)
        return NULL;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (buf_append(&b, tmp, n) < 0)
            break;
    fclose(f);
    if (ret_len)
        *ret_len = b.len;
    return buf_steal(&b);
}

static json_t *load_json(const char *dir, const char *name)
{
    _cleanup_free_ char *text = read_file(dir, name, NULL);
    json_error_t err;
    json_t *j;

    if (!text)
        return NULL;
    j = json_loads(text, JSON_DECODE_ANY, &err);
    if (!j) {
        fprintf(stderr, "%s/%s:%d: %s\n", dir, name, err.line, err.text);
        exit(2);
    }
    return j;
}

static void show(const char *what, const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);

    fprintf(stderr, "%s:\n%s\n", what, s ? s : "(null)");
    free(s);
}

static void expect_equal(const char *what, const json_t *got, const json_t *want)
{
    if (json_equal(got, want))
        return;
    FAIL("%s differs", what);
    show("got", got);
    show("expected", want);
}

/* Splits SSE text into its data payloads, in order. Comment lines are ignored. */
static json_t *sse_events(const char *p, size_t n)
{
    json_t *list = json_array();
    const char *end = p + n;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

        if (len >= 6 && memcmp(p, "data: ", 6) == 0) {
            json_t *v = json_loadb(p + 6, len - 6, JSON_DECODE_ANY, NULL);
            if (!v)
                v = json_stringn(p + 6, len - 6); /* [DONE] */
            json_array_append_new(list, v);
        } else if (len > 0 && p[0] != ':') {
            json_array_append_new(list, json_pack("{s:s%}", "bad-line", p, len));
        }
        p += len + 1;
    }
    return list;
}

static void run_stream(const char *dir, const json_t *cs, const struct translate_context *ctx)
{
    _cleanup_free_ char *reply = NULL, *want_text = NULL;
    size_t reply_len, want_len;
    const size_t pieces[] = {0, 1, 7};
    json_t *want;
    bool ok = !json_is_false(json_object_get(cs, "stream_ok"));
    const char *why = json_string_value(json_object_get(cs, "stream_error"));

    reply = read_file(dir, "upstream-reply.sse", &reply_len);
    want_text = read_file(dir, "expected.sse", &want_len);
    if (!reply || !want_text) {
        FAIL("upstream-reply.sse needs expected.sse");
        return;
    }
    want = sse_events(want_text, want_len);

    for (size_t i = 0; i < ELEMENTSOF(pieces); i++) {
        struct chunk_stream *s = NULL;
        struct buf out = BUF_INIT(0);
        size_t step = pieces[i] ? pieces[i] : reply_len;
        char what[64];
        json_t *got;

        if (chunk_stream_new(ctx, &s) < 0) {
            FAIL("chunk_stream_new failed");
            break;
        }
        for (size_t k = 0; k < reply_len; k += step)
            if (chunk_stream_feed(s, reply + k, MIN(step, reply_len - k), &out) < 0)
                FAIL("chunk_stream_feed failed");
        if (chunk_stream_finish(s, ok, why ? why : "upstream failed", &out) < 0)
            FAIL("chunk_stream_finish failed");
        if (!chunk_stream_done(s))
            FAIL("stream not done after finish");
        got = sse_events(out.data ? out.data : "", out.len);
        snprintf(what, sizeof what, "stream fed in %s pieces",
                 pieces[i] == 0   ? "whole"
                 : pieces[i] == 1 ? "1-byte"
                                  : "7-byte");
        expect_equal(what, got, want);
        json_decref(got);
        buf_free(&out, false);
        chunk_stream_free(s);
    }
    json_decref(want);
}

static void options_from_json(const json_t *o, struct translate_options *opt)
{
    json_t *v;

    if ((v = json_object_get(o, "strict_tool_arguments")))
        opt->strict_tool_arguments = json_is_true(v);
    if ((v = json_object_get(o, "auto_cache")))
        opt->auto_cache = json_is_true(v);
    if ((v = json_object_get(o, "overloaded_as_503")))
        opt->overloaded_as_503 = json_is_true(v);
    if ((v = json_object_get(o, "nonstream_max_tokens_cap")))
        opt->nonstream_max_tokens_cap = json_integer_value(v);
}

int main(int argc, char **argv)
{
    struct translate_options opt = TRANSLATE_OPTIONS_DEFAULT;
    struct translate_context ctx = {};
    struct translate_error err = {};
    struct model_info model = {};
    json_t *cs, *in, *v;
    const char *dir, *id;

    if (argc != 2) {
        fprintf(stderr, "usage: %s CASE_DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    cs = load_json(dir, "case.json");
    if (!cs)
        cs = json_object();
    options_from_json(json_object_get(cs, "options"), &opt);

    in = load_json(dir, "input.json");
    id = json_string_value(json_object_get(cs, "model_id"));
    if (!id && in)
        id = json_string_value(json_object_get(in, "model"));
    model_info_from_table(id ? id : "", &model);
    if ((v = json_object_get(cs, "model_caps")))
        model_info_merge_json(&model, v);
    ctx.created = json_integer_value(json_object_get(cs, "created"));
    if (ctx.created == 0)
        ctx.created = 1767225600;

    if (in) {
        json_t *out = NULL, *want_err = load_json(dir, "expected-error.json"),
               *want = load_json(dir, "upstream-request.json");
        int r = translate_request(in, &model, &opt, &out, &ctx, &err);

        if (want_err) {
            const char *contains = json_string_value(json_object_get(want_err, "message_contains"));
            const char *param = json_string_value(json_object_get(want_err, "param"));

            if (r >= 0)
                FAIL("request accepted, expected an error");
            else {
                if (err.status != json_integer_value(json_object_get(want_err, "status")))
                    FAIL("error status %u", err.status);
                if (param && strcmp(param, err.param) != 0)
                    FAIL("error param '%s', expected '%s'", err.param, param);
                if (contains && !strstr(err.message, contains))
                    FAIL("error message '%s' lacks '%s'", err.message, contains);
            }
        } else if (r < 0)
            FAIL("request refused: %u %s (param '%s')", err.status, err.message, err.param);
        else if (want)
            expect_equal("upstream request", out, want);
        json_decref(out);
        json_decref(want);
        json_decref(want_err);
    }

    {
        json_t *reply = load_json(dir, "upstream-reply.json");
        json_t *uerr = load_json(dir, "upstream-error.json");
        json_t *want = load_json(dir, "expected.json");

        if (reply) {
            json_t *got = translate_response(reply, &ctx, NULL);
            if (!want)
                FAIL("upstream-reply.json needs expected.json");
            else
                expect_equal("response", got, want);
            json_decref(got);
        }
        if (uerr) {
            unsigned status = (unsigned)json_integer_value(json_object_get(cs, "status"));
            unsigned sent = 0;
            json_t *got = translate_error(status, uerr, "upstream error", &opt, &sent);
            json_t *want_status = json_object_get(cs, "expected_status");

            if (want_status && sent != json_integer_value(want_status))
                FAIL("status %u sent", sent);
            if (want)
                expect_equal("error body", got, want);
            json_decref(got);
        }
        json_decref(reply);
        json_decref(uerr);
        json_decref(want);
    }
    if (access(dir, R_OK) == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/upstream-reply.sse", dir);
        if (access(path, R_OK) == 0)
            run_stream(dir, cs, &ctx);
    }

    json_decref(in);
    json_decref(cs);
    if (failures == 0)
        printf("1 passed, 0 failed\n");
    else
        printf("0 passed, 1 failed\n");
    return failures ? 1 : 0;
}
