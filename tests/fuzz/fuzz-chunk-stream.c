/* fuzz-chunk-stream.c: the chunk_stream state machine on arbitrary upstream bytes.
 *
 * Each input is fed three ways (whole, one byte at a time, and in pieces whose sizes come from the
 * input itself) under three contexts (include_usage; forced-tool JSON mode; legacy functions with
 * a prefix); the three feedings must give byte-for-byte the same output. The output must be
 * well-formed for an OpenAI client: only "data: <JSON object>" events, ": ping" comments and one
 * final "data: [DONE]"; a "data: {"error": ...}" event only as the very last event and never with
 * [DONE]; every chunk with the same id, "chat.completion.chunk" and choices; and the stream is
 * done after chunk_stream_finish(). Fed whole once more with parse_every_event, it must give the
 * same bytes again: the text_delta shortcut reads what the full parse reads. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "macro.h"
#include "translate.h"

static const struct translate_context contexts[] = {
    {.model = "m", .created = 1, .stream = true, .include_usage = true},
    {.model = "m", .created = 1, .stream = true, .json_tool = "json_tool_call"},
    {.model = "", .created = 1, .stream = true, .legacy_functions = true, .prefix = "P"},
};

enum feeding { FEED_WHOLE, FEED_BYTES, FEED_PIECES };

static void run(const struct translate_context *ctx, const uint8_t *data, size_t size,
                enum feeding how, bool ok, struct buf *out)
{
    struct chunk_stream *s = NULL;
    size_t at = 0, k = 0;

    FUZZ_CHECK(chunk_stream_new(ctx, &s) == 0);
    while (at < size) {
        size_t n = size;

        if (how == FEED_BYTES)
            n = 1;
        else if (how == FEED_PIECES)
            n = 1 + (size_t)data[k++ % size] % 61;

        n = MIN(n, size - at);
        FUZZ_CHECK(chunk_stream_feed(s, (const char *)data + at, n, out) == 0);
        at += n;
    }
    FUZZ_CHECK(chunk_stream_finish(s, ok, "upstream failed", out) == 0);
    FUZZ_CHECK(chunk_stream_done(s));
    FUZZ_CHECK(chunk_stream_finish(s, ok, "again", out) == 0);
    chunk_stream_free(s);
}

static void check_output(const struct buf *out)
{
    const char *p = out->data ? out->data : "", *end = p + out->len;
    bool done = false, error = false;
    json_t *first_id = NULL;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len;

        FUZZ_CHECK(nl && nl + 1 < end && nl[1] == '\n'); /* every event ends in "\n\n" */
        len = (size_t)(nl - p);
        FUZZ_CHECK(!done && !error);
        if (len == 6 && memcmp(p, ": ping", 6) == 0) {
            /* keep-alive */
        } else if (len == 12 && memcmp(p, "data: [DONE]", 12) == 0)
            done = true;
        else {
            json_t *j;

            FUZZ_CHECK(len > 6 && memcmp(p, "data: ", 6) == 0);
            j = json_loadb(p + 6, len - 6, 0, NULL);
            FUZZ_CHECK(json_is_object(j));
            if (json_object_get(j, "error")) {
                json_t *e = json_object_get(j, "error");
                FUZZ_CHECK(json_is_string(json_object_get(e, "message")));
                FUZZ_CHECK(json_is_string(json_object_get(e, "type")));
                error = true;
            } else {
                json_t *choices = json_object_get(j, "choices");
                json_t *c = json_array_get(choices, 0);

                FUZZ_CHECK(json_is_string(json_object_get(j, "id")));
                FUZZ_CHECK(strcmp(json_string_value(json_object_get(j, "object")),
                                  "chat.completion.chunk") == 0);
                FUZZ_CHECK(json_is_array(choices));
                FUZZ_CHECK(!c || json_is_object(json_object_get(c, "delta")));
                FUZZ_CHECK(!c || json_is_null(json_object_get(c, "logprobs")));
                if (!first_id)
                    first_id = json_incref(json_object_get(j, "id"));
                FUZZ_CHECK(json_equal(first_id, json_object_get(j, "id")));
            }
            json_decref(j);
        }
        p = nl + 2;
    }
    FUZZ_CHECK(done != error);
    json_decref(first_id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t c = 0; c < ELEMENTSOF(contexts); c++) {
        struct buf whole = BUF_INIT(0), bytes = BUF_INIT(0), pieces = BUF_INIT(0),
                   parsed = BUF_INIT(0);
        struct translate_context exact = contexts[c];
        bool ok = c != 1;

        exact.parse_every_event = true;
        run(&contexts[c], data, size, FEED_WHOLE, ok, &whole);
        run(&contexts[c], data, size, FEED_BYTES, ok, &bytes);
        run(&contexts[c], data, size, FEED_PIECES, ok, &pieces);
        run(&exact, data, size, FEED_WHOLE, ok, &parsed);
        FUZZ_CHECK(whole.len == bytes.len && whole.len == pieces.len && whole.len == parsed.len);
        FUZZ_CHECK(whole.len == 0 || (memcmp(whole.data, bytes.data, whole.len) == 0 &&
                                      memcmp(whole.data, pieces.data, whole.len) == 0 &&
                                      memcmp(whole.data, parsed.data, whole.len) == 0));
        check_output(&whole);
        buf_free(&whole, false);
        buf_free(&bytes, false);
        buf_free(&pieces, false);
        buf_free(&parsed, false);
    }
    return 0;
}
