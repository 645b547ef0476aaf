/* test-translate-response.c: translate_response(), translate_error() and the shared helpers
 * (JSON.stringify-like dumping, finish reasons, usage) on what the golden cases leave open. */
#include <string.h>

#include <jansson.h>

#include "macro.h"
#include "test.h"
#include "translate.h"

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

    if (!j)
        test_fail(__FILE__, __LINE__, "bad test JSON at %d:%d: %s", e.line, e.column, e.text);
    return j;
}

static void expect_json(const json_t *got, const char *want_text)
{
    json_auto_t *want = parse(want_text);

    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        fprintf(stderr, "  got:      %s\n  expected: %s\n", g ? g : "(null)", want_text);
        free(g);
        test_fail(__FILE__, __LINE__, "JSON differs");
    }
}

static void expect_dump(const char *in, const char *want)
{
    json_auto_t *v = parse(in);
    struct buf b = BUF_INIT(0);

    ASSERT_OK(translate_json_dump(v, &b));
    ASSERT_STREQ(b.data, want);
    buf_free(&b, false);
}

TEST(json_dump_like_stringify)
{
    expect_dump("{\"b\":0.7,\"a\":[1,2.5,-0.1,1e300,true,null]}",
                "{\"b\":0.7,\"a\":[1,2.5,-0.1,1e+300,true,null]}");
    expect_dump("\"q\\\"\\\\ \\n\\t\\u0001 \\u00e9 /\"", "\"q\\\"\\\\ \\n\\t\\u0001 \xc3\xa9 /\"");
    expect_dump("0.30000000000000004", "0.30000000000000004");
    expect_dump("{}", "{}");
}

TEST(json_dump_bounded)
{
    json_auto_t *v = parse("{\"key\":\"a long enough value\"}");
    struct buf b = BUF_INIT(8);

    ASSERT_ERROR(translate_json_dump(v, &b), ENOBUFS);
    buf_free(&b, false);
}

TEST(json_dump_escapes_every_control_byte)
{
    char raw[160];
    size_t n = 0;
    json_auto_t *v = NULL, *back = NULL;
    struct buf b = BUF_INIT(0);

    /* Every byte from 0x01 to 0x7f, then UTF-8 for U+00E9 and U+1F600: each either copied or
     * escaped, and jansson reads the result back as the same string. */
    for (int c = 1; c < 0x80; c++)
        raw[n++] = (char)c;
    memcpy(raw + n, "\xc3\xa9\xf0\x9f\x98\x80", 6);
    n += 6;
    v = json_stringn(raw, n);
    ASSERT_NOT_NULL(v);
    ASSERT_OK(translate_json_dump(v, &b));
    back = json_loadb(b.data, b.len, JSON_DECODE_ANY, NULL);
    ASSERT_NOT_NULL(back);
    ASSERT_TRUE(json_equal(v, back));
    /* The short forms where JSON.stringify uses them, \u00XX (lower case) for the rest. */
    ASSERT_NOT_NULL(strstr(b.data, "\"\\u0001\\u0002"));
    ASSERT_NOT_NULL(strstr(b.data, "\\b\\t\\n\\u000b\\f\\r\\u000e"));
    ASSERT_NOT_NULL(strstr(b.data, "\\u001f !\\\"#"));
    ASSERT_NOT_NULL(strstr(b.data, "[\\\\]"));
    ASSERT_NOT_NULL(strstr(b.data, "}~\x7f\xc3\xa9"));
    ASSERT_EQ(b.data[b.len], '\0');
    buf_free(&b, false);
}

TEST(json_dump_integers)
{
    expect_dump("[0,7,-1,10,-10,9223372036854775807,-9223372036854775808]",
                "[0,7,-1,10,-10,9223372036854775807,-9223372036854775808]");
}

TEST(json_dump_bounded_by_escapes)
{
    /* 7 bytes written as a literal if nothing needed escaping, 9 with its two quotes escaped: a
     * ceiling of 8 takes the plain one only. */
    json_auto_t *plain = json_string("abcd"), *quoted = json_string("a\"b\"c");
    struct buf b = BUF_INIT(8);

    ASSERT_OK(translate_json_dump(plain, &b));
    ASSERT_STREQ(b.data, "\"abcd\"");
    buf_clear(&b);
    ASSERT_ERROR(translate_json_dump(quoted, &b), ENOBUFS);
    ASSERT_TRUE(b.len <= 8);
    ASSERT_EQ(b.data[b.len], '\0');
    buf_free(&b, false);
}

TEST(response_text_blocks_joined)
{
    struct translate_context ctx = {.model = "gpt-4o"};
    json_auto_t *one = parse("{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":"
                             "\"only \\\"one\\\"\"}],\"stop_reason\":\"end_turn\"}");
    json_auto_t *many =
        parse("{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"\"},"
              "{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"thinking\",\"thinking\":\"t\"},"
              "{\"type\":\"text\",\"text\":\"\"},{\"type\":\"text\",\"text\":\"b\"}],"
              "\"stop_reason\":\"end_turn\"}");
    json_auto_t *a = translate_response(one, &ctx, NULL);
    json_auto_t *b = translate_response(many, &ctx, NULL);
    json_t *ma = json_object_get(json_array_get(json_object_get(a, "choices"), 0), "message");
    json_t *mb = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "message");

    ASSERT_STREQ(json_string_value(json_object_get(ma, "content")), "only \"one\"");
    ASSERT_STREQ(json_string_value(json_object_get(mb, "content")), "ab");
    ASSERT_STREQ(json_string_value(json_object_get(mb, "reasoning_content")), "t");
}

TEST(finish_reasons)
{
    struct translate_context legacy = {.legacy_functions = true};
    struct translate_context json = {.json_tool = "json_tool_call"};

    ASSERT_STREQ(translate_finish_reason(NULL, NULL), "stop");
    ASSERT_STREQ(translate_finish_reason("end_turn", NULL), "stop");
    ASSERT_STREQ(translate_finish_reason("pause_turn", NULL), "stop");
    ASSERT_STREQ(translate_finish_reason("some_future_reason", NULL), "stop");
    ASSERT_STREQ(translate_finish_reason("max_tokens", NULL), "length");
    ASSERT_STREQ(translate_finish_reason("compaction", NULL), "length");
    ASSERT_STREQ(translate_finish_reason("refusal", NULL), "content_filter");
    ASSERT_STREQ(translate_finish_reason("tool_use", NULL), "tool_calls");
    ASSERT_STREQ(translate_finish_reason("tool_use", &legacy), "function_call");
    ASSERT_STREQ(translate_finish_reason("tool_use", &json), "stop");
}

TEST(usage_shapes)
{
    json_auto_t *a = translate_usage_json(NULL, false);
    json_auto_t *b = NULL, *u = parse("{\"input_tokens\":3,\"output_tokens\":4,"
                                      "\"cache_read_input_tokens\":5}");
    struct usage su = {.output_tokens = 99};

    expect_json(a, "{\"prompt_tokens\":0,\"completion_tokens\":0,\"total_tokens\":0,"
                   "\"prompt_tokens_details\":{\"cached_tokens\":0,\"cache_write_tokens\":0}}");
    b = translate_usage_json(u, true);
    expect_json(b, "{\"prompt_tokens\":8,\"completion_tokens\":4,\"total_tokens\":12,"
                   "\"prompt_tokens_details\":{\"cached_tokens\":5,\"cache_write_tokens\":0},"
                   "\"completion_tokens_details\":{\"reasoning_tokens\":0}}");
    translate_usage_merge(&su, u);
    ASSERT_EQ(su.input_tokens, 3);
    ASSERT_EQ(su.output_tokens, 4);
    ASSERT_EQ(su.cache_read_tokens, 5);
    ASSERT_EQ(su.cache_creation_tokens, 0);
    ASSERT_TRUE(su.seen);
}

TEST(response_legacy_and_annotations)
{
    struct translate_context ctx = {.model = "gpt-4o", .created = 7, .legacy_functions = true};
    struct usage u;
    json_auto_t *msg = parse(
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
        "\"content\":[{\"type\":\"text\",\"text\":\"\\u00e9t\\u00e9 \"},"
        "{\"type\":\"text\",\"text\":\"sun\",\"citations\":[{\"type\":"
        "\"web_search_result_location\",\"url\":\"https://a.example\",\"title\":null},"
        "{\"type\":\"char_location\",\"document_index\":0}]},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{\"x\":0.7}},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"g\",\"input\":{}},"
        "{\"type\":\"server_tool_use\",\"id\":\"srv\",\"name\":\"web_search\",\"input\":{}}],"
        "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2,"
        "\"service_tier\":\"batch\"}}");
    json_auto_t *out = translate_response(msg, &ctx, &u);

    expect_json(out,
                "{\"id\":\"msg_1\",\"object\":\"chat.completion\",\"created\":7,\"model\":"
                "\"gpt-4o\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                "\"content\":\"\\u00e9t\\u00e9 sun\",\"refusal\":null,"
                "\"function_call\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":0.7}\"},"
                "\"annotations\":[{\"type\":\"url_citation\",\"url_citation\":{"
                "\"start_index\":4,\"end_index\":7,\"url\":\"https://a.example\",\"title\":\"\"}}]"
                "},\"logprobs\":null,\"finish_reason\":\"function_call\"}],"
                "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3,"
                "\"prompt_tokens_details\":{\"cached_tokens\":0,\"cache_write_tokens\":0}},"
                "\"service_tier\":\"default\"}");
    ASSERT_EQ(u.input_tokens, 1);
    ASSERT_EQ(u.output_tokens, 2);
    ASSERT_TRUE(u.stopped);
    ASSERT_STREQ(u.stop_reason, "tool_use");
}

TEST(response_prefix_and_fallback_model)
{
    struct translate_context ctx = {.created = 7, .prefix = "{\"a\":"};
    json_auto_t *msg = parse("{\"id\":\"msg_2\",\"type\":\"message\",\"model\":\"claude-y\","
                             "\"content\":[{\"type\":\"text\",\"text\":\"1}\"}],"
                             "\"stop_reason\":\"end_turn\",\"usage\":{}}");
    json_auto_t *out = translate_response(msg, &ctx, NULL);
    json_t *message =
        json_object_get(json_array_get(json_object_get(out, "choices"), 0), "message");

    ASSERT_STREQ(json_string_value(json_object_get(message, "content")), "{\"a\":1}");
    /* No client model known: the upstream's is better than nothing. */
    ASSERT_STREQ(json_string_value(json_object_get(out, "model")), "claude-y");
    ASSERT_NULL(json_object_get(out, "system_fingerprint"));
}

TEST(response_not_a_message)
{
    struct translate_context ctx = {};
    json_auto_t *a = parse("{\"type\":\"error\",\"error\":{}}");
    json_auto_t *b = parse("[1]");
    json_auto_t *c = parse("{\"type\":\"message\",\"content\":\"text\"}");

    ASSERT_NULL(translate_response(a, &ctx, NULL));
    ASSERT_NULL(translate_response(b, &ctx, NULL));
    ASSERT_NULL(translate_response(c, &ctx, NULL));
}

TEST(errors)
{
    struct translate_options opt = TRANSLATE_OPTIONS_DEFAULT;
    unsigned status = 0;
    json_auto_t *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
    json_auto_t *quota =
        parse("{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
              "\"message\":\"You have reached your specified API usage limits\"}}");
    json_auto_t *openai = parse("{\"error\":{\"message\":\"nope\",\"type\":\"x\"}}");
    json_auto_t *overflow =
        parse("{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
              "\"input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000\"}}");

    a = translate_error(0, NULL, "connect failed", &opt, &status);
    ASSERT_EQ(status, 502);
    expect_json(a, "{\"error\":{\"message\":\"connect failed\",\"type\":\"api_error\","
                   "\"param\":null,\"code\":\"upstream_unreachable\"}}");
    b = translate_error(429, quota, NULL, &opt, &status);
    ASSERT_EQ(status, 429);
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(b, "error"), "code")),
                 "insufficient_quota");
    c = translate_error(418, openai, "fallback", NULL, NULL);
    expect_json(c, "{\"error\":{\"message\":\"nope\",\"type\":\"x\",\"param\":null,"
                   "\"code\":null}}");
    d = translate_error(400, overflow, NULL, &opt, &status);
    expect_json(d, "{\"error\":{\"message\":\"input length and `max_tokens` exceed context limit: "
                   "178959 + 64000 > 200000\",\"type\":\"invalid_request_error\",\"param\":"
                   "\"messages\",\"code\":\"context_length_exceeded\"}}");
    opt.overloaded_as_503 = true;
    e = translate_error(529, NULL, NULL, &opt, &status);
    ASSERT_EQ(status, 503);
    expect_json(e, "{\"error\":{\"message\":\"upstream error\",\"type\":\"overloaded_error\","
                   "\"param\":null,\"code\":null}}");
}
