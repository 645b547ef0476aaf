/* test-usage.c: the SSE usage scanner and the JSON usage reader. */
#include "test.h"
#include "usage.h"

static const char transcript[] =
    "event: message_start\n"
    "data: "
    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":28,"
    "\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":7,\"output_tokens\":1}}}\n"
    "\n"
    "event: ping\n"
    "data: {\"type\":\"ping\"}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"h\\u00e9llo\"}}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":"
    "{\"output_tokens\":19}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

static void check_full(const struct usage *u)
{
    ASSERT_TRUE(u->seen);
    ASSERT_EQ(u->input_tokens, 28);
    ASSERT_EQ(u->output_tokens, 19);
    ASSERT_EQ(u->cache_read_tokens, 5);
    ASSERT_EQ(u->cache_creation_tokens, 7);
    ASSERT_TRUE(u->stopped);
    ASSERT_FALSE(u->error);
    ASSERT_STREQ(u->stop_reason, "end_turn");
}

TEST(sse_whole)
{
    struct sse_scanner s;

    sse_scanner_init(&s);
    sse_scanner_feed(&s, transcript, sizeof transcript - 1);
    check_full(&s.usage);
    sse_scanner_done(&s);
}

/* Every split point, and one byte at a time: the result must not depend on how the bytes were
 * cut into chunks. */
TEST(sse_every_split)
{
    size_t n = sizeof transcript - 1;

    for (size_t cut = 0; cut <= n; cut++) {
        struct sse_scanner s;

        sse_scanner_init(&s);
        sse_scanner_feed(&s, transcript, cut);
        sse_scanner_feed(&s, transcript + cut, n - cut);
        check_full(&s.usage);
        sse_scanner_done(&s);
    }
    {
        struct sse_scanner s;

        sse_scanner_init(&s);
        for (size_t i = 0; i < n; i++)
            sse_scanner_feed(&s, transcript + i, 1);
        check_full(&s.usage);
        sse_scanner_done(&s);
    }
}

static void feed_with_crlf(struct sse_scanner *s, const char *eol)
{
    char buf[4096];
    size_t k = 0;

    for (const char *p = transcript; *p; p++) {
        if (*p == '\n') {
            for (const char *e = eol; *e; e++)
                buf[k++] = *e;
        } else
            buf[k++] = *p;
    }
    for (size_t i = 0; i < k; i += 3)
        sse_scanner_feed(s, buf + i, k - i < 3 ? k - i : 3);
}

TEST(sse_crlf_and_cr_line_endings)
{
    struct sse_scanner s;

    sse_scanner_init(&s);
    feed_with_crlf(&s, "\r\n");
    check_full(&s.usage);
    sse_scanner_done(&s);

    sse_scanner_init(&s);
    feed_with_crlf(&s, "\r");
    check_full(&s.usage);
    sse_scanner_done(&s);
}

TEST(sse_error_event_and_missing_stop)
{
    static const char t[] = "event: message_start\n"
                            "data: {\"type\":\"message_start\",\"message\":{\"usage\":"
                            "{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
                            "event: error\n"
                            "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                            "\"message\":\"Overloaded\"}}\n\n";
    struct sse_scanner s;

    sse_scanner_init(&s);
    sse_scanner_feed(&s, t, sizeof t - 1);
    ASSERT_TRUE(s.usage.error);
    ASSERT_FALSE(s.usage.stopped);
    ASSERT_EQ(s.usage.input_tokens, 3);
    sse_scanner_done(&s);
}

TEST(sse_garbage_is_skipped)
{
    static const char t[] =
        "event: message_delta\ndata: {not json\n\n"
        ": a comment\n"
        "data\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":4}}\n\n";
    struct sse_scanner s;

    sse_scanner_init(&s);
    sse_scanner_feed(&s, t, sizeof t - 1);
    ASSERT_EQ(s.usage.output_tokens, 4);
    sse_scanner_done(&s);
}

/* A data line over the ceiling is skipped without growing past it; the next event still parses. */
TEST(sse_oversized_event_is_skipped)
{
    static const char tail[] =
        "\n\nevent: message_delta\n"
        "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n";
    struct sse_scanner s;
    char *big = malloc(64 * 1024);

    ASSERT_NOT_NULL(big);
    memset(big, 'x', 64 * 1024);
    sse_scanner_init(&s);
    sse_scanner_feed(&s, "event: message_start\ndata: ", 27);
    for (size_t i = 0; i < (SSE_SCANNER_MAX / (64 * 1024)) + 2; i++)
        sse_scanner_feed(&s, big, 64 * 1024);
    ASSERT_TRUE(s.line.len <= SSE_SCANNER_MAX);
    sse_scanner_feed(&s, tail, sizeof tail - 1);
    ASSERT_EQ(s.usage.output_tokens, 9);
    sse_scanner_done(&s);
    free(big);
}

TEST(json_message_and_count_tokens)
{
    static const char msg[] = "{\"type\":\"message\",\"stop_reason\":\"max_tokens\",\"usage\":"
                              "{\"input_tokens\":10,\"output_tokens\":20,"
                              "\"cache_read_input_tokens\":30}}";
    static const char count[] = "{\"input_tokens\":42}";
    static const char err[] = "{\"type\":\"error\",\"error\":{\"type\":\"api_error\"}}";
    struct usage u = {};

    ASSERT_OK(usage_from_json(msg, sizeof msg - 1, &u));
    ASSERT_EQ(u.input_tokens, 10);
    ASSERT_EQ(u.output_tokens, 20);
    ASSERT_EQ(u.cache_read_tokens, 30);
    ASSERT_TRUE(u.stopped);
    ASSERT_STREQ(u.stop_reason, "max_tokens");

    u = (struct usage){};
    ASSERT_OK(usage_from_json(count, sizeof count - 1, &u));
    ASSERT_EQ(u.input_tokens, 42);

    u = (struct usage){};
    ASSERT_OK(usage_from_json(err, sizeof err - 1, &u));
    ASSERT_TRUE(u.error);
    ASSERT_FALSE(u.seen);

    ASSERT_ERROR(usage_from_json("[1,2]", 5, &u), EBADMSG);
    ASSERT_ERROR(usage_from_json("{", 1, &u), EBADMSG);
}
