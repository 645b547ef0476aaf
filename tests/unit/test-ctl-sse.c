/* test-ctl-sse.c: the event-stream parser `dualroutectl chat --stream` reads routerd with
 * (ctl/sse.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sse.h"
#include "test.h"

/* Records events as "type=data;" in a buffer. */
static int record(const char *event, const char *data, size_t len, void *userdata)
{
    struct buf *b = userdata;

    ASSERT_EQ(strlen(data), len);
    ASSERT_OK(buf_append_str(b, event));
    ASSERT_OK(buf_append_str(b, "="));
    ASSERT_OK(buf_append(b, data, len));
    ASSERT_OK(buf_append_str(b, ";"));
    return 0;
}

static char *parse_in_pieces(const char *text, size_t piece)
{
    struct buf out = BUF_INIT(0);
    struct sse_parser p = SSE_PARSER_INIT(1024, record, &out);
    size_t n = strlen(text);

    for (size_t i = 0; i < n; i += piece)
        ASSERT_OK(sse_parser_feed(&p, text + i, piece < n - i ? piece : n - i));
    sse_parser_done(&p);
    if (!out.data)
        return strdup("");
    return buf_steal(&out);
}

TEST(sse_anthropic_stream_any_split)
{
    static const char text[] = "event: message_start\n"
                               "data: {\"type\":\"message_start\"}\n"
                               "\n"
                               ": a comment\n"
                               "event: content_block_delta\r\n"
                               "data: {\"text\":\"Hi\"}\r\n"
                               "\r\n"
                               "data:no-space\r"
                               "data:  two spaces\r"
                               "\r"
                               "event: message_stop\n"
                               "data: {}\n"
                               "\n"
                               "event: dangling\n"
                               "data: never dispatched\n";
    const char *want = "message_start={\"type\":\"message_start\"};"
                       "content_block_delta={\"text\":\"Hi\"};"
                       "message=no-space\n two spaces;"
                       "message_stop={};";

    for (size_t piece = 1; piece <= sizeof text; piece++) {
        char *got = parse_in_pieces(text, piece);

        if (strcmp(got, want) != 0)
            test_fail(__FILE__, __LINE__, "piece %zu: got '%s'", piece, got);
        free(got);
    }
}

TEST(sse_event_without_data_is_not_dispatched)
{
    char *got = parse_in_pieces("event: ping\n\nid: 4\nretry: 10\nfoo: bar\n\ndata\n\n", 3);

    /* "data" with no colon is a data line with an empty value. */
    ASSERT_STREQ(got, "message=;");
    free(got);
}

TEST(sse_line_cap)
{
    struct buf out = BUF_INIT(0);
    struct sse_parser p = SSE_PARSER_INIT(16, record, &out);
    char big[64];

    memset(big, 'a', sizeof big);
    ASSERT_ERROR(sse_parser_feed(&p, big, sizeof big), ENOBUFS);
    sse_parser_done(&p);
    buf_free(&out, false);
}

static int stop_cb(const char *event, const char *data, size_t len, void *userdata)
{
    (*(int *)userdata)++;
    return -ECANCELED;
}

TEST(sse_callback_error_stops)
{
    int calls = 0;
    struct sse_parser p = SSE_PARSER_INIT(1024, stop_cb, &calls);

    ASSERT_ERROR(sse_parser_feed(&p, "data: a\n\ndata: b\n\n", 18), ECANCELED);
    ASSERT_EQ(calls, 1);
    sse_parser_done(&p);
}
