/* test-translate-stream.c: the chunk_stream state machine. The output must not depend on where
 * the input was cut, framing variants (CRLF, CR, comments, multi-line data) must not change it,
 * and every way a stream can end must end it exactly once. */
#include <jansson.h>

#include "macro.h"
#include "test.h"
#include "translate.h"

static const char transcript[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_S\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-sonnet-4-6\",\"content\":[],\"usage\":{"
    "\"input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n"
    "\n"
    ": keep-alive comment\n"
    "event: ping\n"
    "data: {\"type\":\"ping\"}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
    "\"thinking\",\"thinking\":\"\"}}\n"
    "\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\","
    "\"thinking\":\"\xe2\x82\xac 1\"}}\n"
    "\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\","
    "\"signature\":\"SIG\"}}\n"
    "\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n"
    "\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n"
    "\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\"}}\n"
    "\n"
    "event: future_event\n"
    "data: {\"type\":\"future_event\",\"x\":1}\n"
    "\n"
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":"
    "\"tool_use\",\"id\":\"toolu_X\",\"name\":\"f\",\"input\":{}}}\n"
    "\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"\"}}\n"
    "\n"
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n"
    "\n"
    "data: {\"type\":\"content_block_stop\",\"index\":2}\n"
    "\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{"
    "\"output_tokens\":30,\"output_tokens_details\":{\"thinking_tokens\":12}}}\n"
    "\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

static const char *const expected_lines[] = {
    "data: {\"id\":\"msg_S\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":"
    "null,\"finish_reason\":null}],\"usage\":null}",
    ": ping",
    "data: {\"id\":\"msg_S\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"\xe2\x82\xac 1\"},\"logprobs\":"
    "null,\"finish_reason\":null}],\"usage\":null}",
    "data: {\"id\":\"msg_S\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"thinking_blocks\":[{\"type\":\"thinking\","
    "\"thinking\":\"\xe2\x82\xac 1\",\"signature\":\"SIG\"}]},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}",
    "data: {\"id\":\"msg_S\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\"},"
    "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}",
    "data: {\"id\":\"msg_S\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"toolu_X\","
    "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}",
    "data: {\"id\":\"msg_S\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
    "\"arguments\":\"{\\\"a\\\":1}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":"
    "null}",
    "data: {\"id\":\"msg_S\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
    "\"usage\":null}",
    "data: {\"id\":\"msg_S\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
    "\"choices\":[],\"usage\":{\"prompt_tokens\":15,\"completion_tokens\":30,\"total_tokens\":45,"
    "\"prompt_tokens_details\":{\"cached_tokens\":5,\"cache_write_tokens\":0},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":12}}}",
    "data: [DONE]",
};

static const struct translate_context usage_ctx = {
    .model = "m", .created = 5, .stream = true, .include_usage = true};

/* Feeds text cut at the given points (sorted, within len) and finishes. Returns the output. */
static char *run_cuts(const struct translate_context *ctx, const char *text, size_t len,
                      const size_t *cuts, size_t n_cuts, bool ok, const char *why)
{
    struct chunk_stream *s = NULL;
    struct buf out = BUF_INIT(0);
    size_t at = 0;
    char *res;

    ASSERT_OK(chunk_stream_new(ctx, &s));
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        ASSERT_OK(chunk_stream_feed(s, text + at, end - at, &out));
        at = end;
    }
    ASSERT_OK(chunk_stream_finish(s, ok, why, &out));
    ASSERT_TRUE(chunk_stream_done(s));
    /* Idempotent. */
    ASSERT_OK(chunk_stream_finish(s, false, "again", &out));
    chunk_stream_free(s);
    res = buf_steal(&out);
    ASSERT_NOT_NULL(res);
    return res;
}

static char *run_whole(const struct translate_context *ctx, const char *text, bool ok,
                       const char *why)
{
    return run_cuts(ctx, text, strlen(text), NULL, 0, ok, why);
}

static char *expected_text(void)
{
    struct buf b = BUF_INIT(0);

    for (size_t i = 0; i < ELEMENTSOF(expected_lines); i++) {
        ASSERT_OK(buf_append_str(&b, expected_lines[i]));
        ASSERT_OK(buf_append_str(&b, "\n\n"));
    }
    return buf_steal(&b);
}

/* Replaces every "\n" of text with sep. */
static char *reframe(const char *text, const char *sep)
{
    struct buf b = BUF_INIT(0);

    for (const char *p = text; *p; p++)
        ASSERT_OK(*p == '\n' ? buf_append_str(&b, sep) : buf_append(&b, p, 1));
    return buf_steal(&b);
}

TEST(stream_whole)
{
    _cleanup_free_ char *got = run_whole(&usage_ctx, transcript, true, NULL);
    _cleanup_free_ char *want = expected_text();

    ASSERT_STREQ(got, want);
}

/* Every single cut point and every pair of cut points around the multi-byte characters: the
 * output is byte-for-byte the same. */
TEST(stream_every_split)
{
    _cleanup_free_ char *want = expected_text();
    size_t n = strlen(transcript);

    for (size_t cut = 0; cut <= n; cut++) {
        _cleanup_free_ char *got = run_cuts(&usage_ctx, transcript, n, &cut, 1, true, NULL);
        if (strcmp(got, want) != 0)
            test_fail(__FILE__, __LINE__, "output differs when cut at %zu", cut);
    }
    for (size_t a = 0; a < n; a += 13)
        for (size_t b = a; b <= n; b += 7) {
            size_t cuts[2] = {a, b};
            _cleanup_free_ char *got = run_cuts(&usage_ctx, transcript, n, cuts, 2, true, NULL);
            if (strcmp(got, want) != 0)
                test_fail(__FILE__, __LINE__, "output differs when cut at %zu and %zu", a, b);
        }
}

TEST(stream_line_endings)
{
    _cleanup_free_ char *want = expected_text();
    _cleanup_free_ char *crlf = reframe(transcript, "\r\n");
    _cleanup_free_ char *cr = reframe(transcript, "\r");
    size_t n = strlen(crlf);

    for (size_t cut = 0; cut <= n; cut++) {
        _cleanup_free_ char *got = run_cuts(&usage_ctx, crlf, n, &cut, 1, true, NULL);
        if (strcmp(got, want) != 0)
            test_fail(__FILE__, __LINE__, "CRLF output differs when cut at %zu", cut);
    }
    {
        _cleanup_free_ char *got = run_whole(&usage_ctx, cr, true, NULL);
        ASSERT_STREQ(got, want);
    }
}

/* One event's JSON spread over several data: lines (joined with "\n", which JSON ignores). */
TEST(stream_multiline_data)
{
    struct translate_context ctx = {.model = "m", .created = 1};
    _cleanup_free_ char *got = run_whole(
        &ctx,
        "data: {\"type\":\"message_start\",\n"
        "data: \"message\":{\"id\":\"msg_M\",\"usage\":{}}}\n\n"
        "data:{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
        "\"text\":\"x\"}}\n\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n"
        "data: {\"type\":\"message_stop\"}\n\n",
        true, NULL);

    ASSERT_STREQ(got, "data: {\"id\":\"msg_M\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                      "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                      "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                      "data: {\"id\":\"msg_M\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                      "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},"
                      "\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                      "data: {\"id\":\"msg_M\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                      "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                      "\"finish_reason\":\"stop\"}]}\n\n"
                      "data: [DONE]\n\n");
}

TEST(stream_endings)
{
    struct translate_context ctx = {.model = "m", .created = 1, .include_usage = true};
    const char *start = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_E\"}}\n\n";
    _cleanup_free_ char *premature = run_whole(&ctx, start, true, NULL);
    _cleanup_free_ char *failed = run_whole(&ctx, start, false, "read timeout");
    _cleanup_free_ char *empty = run_whole(&ctx, "", true, NULL);
    _cleanup_free_ char *no_blank = NULL, *after_delta = NULL;
    char buf[512];

    ASSERT_TRUE(strstr(premature, "data: {\"error\":{\"message\":\"upstream stream ended "
                                  "prematurely\",\"type\":\"api_error\",\"param\":null,"
                                  "\"code\":null}}\n\n") != NULL);
    ASSERT_NULL(strstr(premature, "[DONE]"));
    ASSERT_NULL(strstr(premature, "finish_reason\":\"stop"));
    ASSERT_TRUE(strstr(failed, "read timeout") != NULL);
    ASSERT_TRUE(strncmp(empty, "data: {\"error\"", 14) == 0);

    /* A stop reason, then EOF without message_stop (and without the final blank line). */
    snprintf(buf, sizeof buf, "%s%s", start,
             "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"}}");
    no_blank = run_whole(&ctx, buf, false, "connection reset");
    ASSERT_TRUE(strstr(no_blank, "\"finish_reason\":\"length\"") != NULL);
    ASSERT_TRUE(strstr(no_blank, "\"choices\":[],\"usage\":{") != NULL);
    ASSERT_TRUE(strstr(no_blank, "data: [DONE]\n\n") != NULL);

    /* An error event ends it; anything after is ignored. */
    snprintf(buf, sizeof buf, "%s%s", start,
             "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
             "\"message\":\"slow down\"}}\n\n"
             "data: {\"type\":\"message_stop\"}\n\n");
    after_delta = run_whole(&ctx, buf, true, NULL);
    ASSERT_TRUE(strstr(after_delta, "data: {\"error\":{\"message\":\"slow down\",\"type\":"
                                    "\"rate_limit_error\",\"param\":null,\"code\":"
                                    "\"rate_limit_exceeded\"}}\n\n") != NULL);
    ASSERT_NULL(strstr(after_delta, "[DONE]"));
    ASSERT_NULL(strstr(after_delta, "finish_reason\":\""));
}

TEST(stream_event_too_large)
{
    struct translate_context ctx = {.model = "m", .created = 1};
    struct chunk_stream *s = NULL;
    struct buf out = BUF_INIT(0);
    _cleanup_free_ char *big = malloc(1024 * 1024);
    const char *start = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_B\"}}\n\n";

    ASSERT_NOT_NULL(big);
    memset(big, 'x', 1024 * 1024);
    ASSERT_OK(chunk_stream_new(&ctx, &s));
    ASSERT_OK(chunk_stream_feed(s, start, strlen(start), &out));
    ASSERT_OK(chunk_stream_feed(s, "data: ", 6, &out));
    for (int i = 0; i < 5 && !chunk_stream_done(s); i++)
        ASSERT_OK(chunk_stream_feed(s, big, 1024 * 1024, &out));
    ASSERT_TRUE(chunk_stream_done(s));
    ASSERT_TRUE(chunk_stream_usage(s)->error);
    ASSERT_OK(chunk_stream_finish(s, true, NULL, &out));
    ASSERT_TRUE(strstr(out.data, "too large") != NULL);
    ASSERT_NULL(strstr(out.data, "[DONE]"));
    buf_free(&out, false);
    chunk_stream_free(s);
}

TEST(stream_legacy_prefix_and_usage)
{
    struct translate_context ctx = {
        .model = "m", .created = 1, .legacy_functions = true, .prefix = "P"};
    struct chunk_stream *s = NULL;
    struct buf out = BUF_INIT(0);
    const char *text =
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_L\",\"usage\":{"
        "\"input_tokens\":4,\"cache_creation_input_tokens\":2,\"output_tokens\":1}}}\n\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
        "\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{}}}\n\n"
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
        "\"tool_use\",\"id\":\"toolu_2\",\"name\":\"g\",\"input\":{}}}\n\n"
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{"
        "\"output_tokens\":9}}\n\n"
        "data: {\"type\":\"message_stop\"}\n\n";
    const struct usage *u;

    ASSERT_OK(chunk_stream_new(&ctx, &s));
    ASSERT_OK(chunk_stream_feed(s, text, strlen(text), &out));
    ASSERT_TRUE(chunk_stream_done(s));
    u = chunk_stream_usage(s);
    ASSERT_EQ(u->input_tokens, 4);
    ASSERT_EQ(u->cache_creation_tokens, 2);
    ASSERT_EQ(u->output_tokens, 9);
    ASSERT_TRUE(u->stopped);
    ASSERT_STREQ(u->stop_reason, "tool_use");
    ASSERT_TRUE(strstr(out.data, "\"delta\":{\"role\":\"assistant\",\"content\":\"P\"}") != NULL);
    ASSERT_TRUE(strstr(out.data, "\"delta\":{\"function_call\":{\"name\":\"f\",\"arguments\":"
                                 "\"\"}}") != NULL);
    ASSERT_TRUE(strstr(out.data, "\"delta\":{\"function_call\":{\"arguments\":\"{}\"}}") != NULL);
    /* The second call has no place in legacy mode. */
    ASSERT_NULL(strstr(out.data, "toolu_2"));
    ASSERT_NULL(strstr(out.data, "\"name\":\"g\""));
    ASSERT_TRUE(strstr(out.data, "\"finish_reason\":\"function_call\"") != NULL);
    ASSERT_NULL(strstr(out.data, "\"usage\""));
    buf_free(&out, false);
    chunk_stream_free(s);
}

/* The output buffer's ceiling is the caller's: reported, not worked around. */
TEST(stream_output_ceiling)
{
    struct translate_context ctx = {.model = "m", .created = 1};
    struct chunk_stream *s = NULL;
    struct buf out = BUF_INIT(16);
    const char *start = "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_C\"}}\n\n";

    ASSERT_OK(chunk_stream_new(&ctx, &s));
    ASSERT_ERROR(chunk_stream_feed(s, start, strlen(start), &out), ENOBUFS);
    buf_free(&out, false);
    chunk_stream_free(s);
    ASSERT_NULL(chunk_stream_free(NULL));
}
