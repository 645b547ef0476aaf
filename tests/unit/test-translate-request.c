/* test-translate-request.c: translate_request() and the model table, on the rules the golden
 * cases in tests/translate do not pin: model-table lookups, validation params, id collisions,
 * merge order, thinking per family, schema preparation, cache breakpoints, prefix limits. */
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
        char *w = json_dumps(want, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        fprintf(stderr, "  got:      %s\n  expected: %s\n", g ? g : "(null)", w ? w : "(null)");
        free(g);
        free(w);
        test_fail(__FILE__, __LINE__, "JSON differs");
    }
}

/* Translates in_text for model_id; fails the test on a refusal. Returns a new reference. */
static json_t *translate_ok(const char *model_id, const char *in_text,
                            struct translate_context *ctx)
{
    struct translate_options opt = TRANSLATE_OPTIONS_DEFAULT;
    struct translate_error err = {};
    struct translate_context local = {.created = 1767225600};
    struct model_info m;
    json_auto_t *in = parse(in_text);
    json_t *out = NULL;
    int r;

    model_info_from_table(model_id, &m);
    r = translate_request(in, &m, &opt, &out, ctx ? ctx : &local, &err);
    if (r < 0)
        test_fail(__FILE__, __LINE__, "refused: %u '%s' param '%s'", err.status, err.message,
                  err.param);
    return out;
}

static void translate_refused(const char *model_id, const char *in_text, const char *param,
                              const char *contains)
{
    struct translate_options opt = TRANSLATE_OPTIONS_DEFAULT;
    struct translate_error err = {};
    struct translate_context ctx = {.created = 1};
    struct model_info m;
    json_auto_t *in = parse(in_text);
    json_t *out = NULL;

    model_info_from_table(model_id, &m);
    ASSERT_ERROR(translate_request(in, &m, &opt, &out, &ctx, &err), EINVAL);
    ASSERT_NULL(out);
    ASSERT_EQ(err.status, 400);
    ASSERT_STREQ(err.param, param);
    if (contains && !strstr(err.message, contains))
        test_fail(__FILE__, __LINE__, "message '%s' lacks '%s'", err.message, contains);
}

TEST(model_table_families)
{
    struct model_info m;

    model_info_from_table("claude-sonnet-4-5-20250929", &m);
    ASSERT_STREQ(m.id, "claude-sonnet-4-5-20250929");
    ASSERT_EQ(m.max_output_tokens, 64000);
    ASSERT_TRUE(m.thinking_enabled);
    ASSERT_FALSE(m.thinking_adaptive);
    ASSERT_TRUE(m.sampling_exclusive);
    ASSERT_FALSE(m.prefill_rejected);

    /* Vertex and Bedrock spellings find the same family. */
    model_info_from_table("claude-haiku-4-5@20251001", &m);
    ASSERT_EQ(m.max_output_tokens, 64000);
    model_info_from_table("us.anthropic.claude-opus-4-7-v1:0", &m);
    ASSERT_TRUE(m.rejects_sampling);
    ASSERT_TRUE(m.effort_xhigh);

    /* The longer prefix wins: opus-4-5 is not opus-4. */
    model_info_from_table("claude-opus-4-5", &m);
    ASSERT_TRUE(m.effort);
    model_info_from_table("claude-opus-4-20250514", &m);
    ASSERT_FALSE(m.effort);
    ASSERT_EQ(m.max_output_tokens, 32000);

    model_info_from_table("claude-fable-5", &m);
    ASSERT_TRUE(m.thinking_default_on);
    ASSERT_FALSE(m.thinking_can_disable);

    model_info_from_table("gpt-4o", &m);
    ASSERT_STREQ(m.id, "gpt-4o");
    ASSERT_EQ(m.max_output_tokens, 0);
    ASSERT_FALSE(m.thinking_adaptive || m.thinking_enabled || m.structured_outputs);
}

TEST(model_merge_capabilities)
{
    struct model_info m;
    json_auto_t *item =
        parse("{\"id\":\"claude-new-1\",\"max_tokens\":32000,\"capabilities\":{"
              "\"structured_outputs\":{\"supported\":true},"
              "\"thinking\":{\"supported\":true,\"types\":{\"adaptive\":{\"supported\":true},"
              "\"enabled\":{\"supported\":false},\"disabled\":{\"supported\":false}}},"
              "\"effort\":{\"supported\":true,\"max\":{\"supported\":true}}}}");
    json_auto_t *off = parse("{\"capabilities\":{\"thinking\":{\"supported\":false},"
                             "\"effort\":{\"supported\":false,\"max\":{\"supported\":true}}}}");

    model_info_from_table("claude-new-1", &m);
    model_info_merge_json(&m, item);
    ASSERT_EQ(m.max_output_tokens, 32000);
    ASSERT_TRUE(m.structured_outputs);
    ASSERT_TRUE(m.thinking_adaptive);
    ASSERT_FALSE(m.thinking_enabled);
    ASSERT_FALSE(m.thinking_can_disable);
    ASSERT_TRUE(m.effort && m.effort_max);
    ASSERT_FALSE(m.effort_xhigh);

    model_info_from_table("claude-sonnet-4-6", &m);
    model_info_merge_json(&m, off);
    ASSERT_FALSE(m.thinking_adaptive || m.thinking_enabled);
    ASSERT_FALSE(m.effort || m.effort_max);
    /* What the item does not say keeps the table's value. */
    ASSERT_EQ(m.max_output_tokens, 128000);
    ASSERT_TRUE(m.prefill_rejected);
}

TEST(validation_params)
{
    translate_refused("claude-sonnet-4-6", "[]", "", NULL);
    translate_refused("claude-sonnet-4-6", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                      "model", NULL);
    translate_refused("claude-sonnet-4-6", "{\"model\":\"m\",\"messages\":[]}", "messages", NULL);
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}",
                      "messages[0].role", "robot");
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"temperature\":\"hot\",\"messages\":[{\"role\":\"user\","
                      "\"content\":\"x\"}]}",
                      "temperature", NULL);
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"top_p\":[1],\"messages\":[{\"role\":\"user\","
                      "\"content\":\"x\"}]}",
                      "top_p", NULL);
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\","
                      "\"content\":\"x\"}]}",
                      "max_tokens", NULL);
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
                      "{\"role\":\"tool\",\"content\":\"r\"}]}",
                      "messages[1].tool_call_id", NULL);
    /* A tool result answering no call. */
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
                      "{\"role\":\"tool\",\"tool_call_id\":\"c9\",\"content\":\"r\"}]}",
                      "messages[1].tool_call_id", "c9");
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
                      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/bmp;base64,"
                      "Qk0=\"}}]}]}",
                      "messages[0].content[0].image_url", "image/bmp");
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
                      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"ftp://x/a.png\"}}]}]}",
                      "messages[0].content[0].image_url", NULL);
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
                      "\"bad name\"}}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                      "tools[0].function.name", NULL);
    translate_refused("claude-sonnet-4-6",
                      "{\"model\":\"m\",\"reasoning_effort\":\"huge\",\"messages\":[{\"role\":"
                      "\"user\",\"content\":\"x\"}]}",
                      "reasoning_effort", NULL);
}

TEST(context_filled_and_preset)
{
    struct translate_context ctx = {};
    json_auto_t *out = NULL;

    out =
        translate_ok("claude-sonnet-4-6",
                     "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":"
                     "true},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                     &ctx);
    ASSERT_STREQ(ctx.model, "gpt-4o");
    ASSERT_TRUE(ctx.created > 0);
    ASSERT_TRUE(ctx.stream && ctx.include_usage);
    /* The upstream gets the routed model, with the model's full output for a stream. */
    ASSERT_STREQ(json_string_value(json_object_get(out, "model")), "claude-sonnet-4-6");
    ASSERT_EQ(json_integer_value(json_object_get(out, "max_tokens")), 128000);
    ASSERT_TRUE(json_is_true(json_object_get(out, "stream")));
    json_decref(out);

    ctx = (struct translate_context){.model = "alias", .created = 42};
    out = translate_ok("claude-sonnet-4-6",
                       "{\"model\":\"gpt-4o\",\"stream_options\":{\"include_usage\":true},"
                       "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                       &ctx);
    ASSERT_STREQ(ctx.model, "alias");
    ASSERT_EQ(ctx.created, 42);
    ASSERT_FALSE(ctx.stream || ctx.include_usage);
    ASSERT_NULL(json_object_get(out, "stream"));
    ASSERT_STREQ(ctx.anthropic_beta, "");
    json_decref(out);

    out = translate_ok("claude-sonnet-4-6",
                       "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                       "\"file\",\"file\":{\"file_id\":\"file_011x\",\"filename\":\"r.pdf\"}}]}]}",
                       &ctx);
    ASSERT_STREQ(ctx.anthropic_beta, "files-api-2025-04-14");
    expect_json(json_object_get(json_array_get(json_object_get(out, "messages"), 0), "content"),
                "[{\"type\":\"document\",\"source\":{\"type\":\"file\",\"file_id\":"
                "\"file_011x\"},\"title\":\"r.pdf\"}]");
}

/* tool, user, tool after one assistant turn: the results still lead the merged user turn. */
TEST(tool_results_first_in_merged_turn)
{
    json_auto_t *out = translate_ok(
        "claude-sonnet-4-6",
        "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"go\"},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        "{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}},"
        "{\"id\":\"b\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}"
        ","
        "{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"ra\"},"
        "{\"role\":\"user\",\"content\":\"and\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"b\",\"content\":[{\"type\":\"text\",\"text\":\"\"}]}"
        "]}",
        NULL);

    expect_json(json_object_get(out, "messages"),
                "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"go\"}]},"
                "{\"role\":\"assistant\",\"content\":["
                "{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"f\",\"input\":{}},"
                "{\"type\":\"tool_use\",\"id\":\"b\",\"name\":\"f\",\"input\":{\"value\":[1]}}]},"
                "{\"role\":\"user\",\"content\":["
                "{\"type\":\"tool_result\",\"tool_use_id\":\"a\",\"content\":\"ra\"},"
                "{\"type\":\"tool_result\",\"tool_use_id\":\"b\"},"
                "{\"type\":\"text\",\"text\":\"and\"}]}]");
}

/* "a.b" and "a:b" both sanitise to "a_b": each gets its own hash suffix, and "a_b" itself, which
 * needed no change, keeps its name. Pairs still match. */
TEST(tool_id_collisions)
{
    json_auto_t *out = translate_ok(
        "claude-sonnet-4-6",
        "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"go\"},"
        "{\"role\":\"assistant\",\"tool_calls\":["
        "{\"id\":\"a.b\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}},"
        "{\"id\":\"a:b\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}},"
        "{\"id\":\"a_b\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}"
        "]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"a:b\",\"content\":\"2\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"a.b\",\"content\":\"1\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"a_b\",\"content\":\"3\"}]}",
        NULL);
    json_t *calls = json_object_get(json_array_get(json_object_get(out, "messages"), 1), "content");
    json_t *results =
        json_object_get(json_array_get(json_object_get(out, "messages"), 2), "content");
    const char *id0 = json_string_value(json_object_get(json_array_get(calls, 0), "id"));
    const char *id1 = json_string_value(json_object_get(json_array_get(calls, 1), "id"));

    ASSERT_EQ(strlen(id0), strlen("a_b_") + 8);
    ASSERT_TRUE(strncmp(id0, "a_b_", 4) == 0 && strncmp(id1, "a_b_", 4) == 0);
    ASSERT_TRUE(strcmp(id0, id1) != 0);
    ASSERT_STREQ(json_string_value(json_object_get(json_array_get(calls, 2), "id")), "a_b");
    ASSERT_STREQ(json_string_value(json_object_get(json_array_get(results, 0), "tool_use_id")),
                 id1);
    ASSERT_STREQ(json_string_value(json_object_get(json_array_get(results, 1), "tool_use_id")),
                 id0);
}

TEST(legacy_function_ids_pair)
{
    struct translate_context ctx = {.created = 1};
    json_auto_t *out = translate_ok(
        "claude-haiku-4-5",
        "{\"model\":\"m\",\"functions\":[{\"name\":\"f\",\"parameters\":{\"properties\":{}}}],"
        "\"function_call\":{\"name\":\"f\"},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"go\"},"
        "{\"role\":\"assistant\",\"content\":null,\"function_call\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"x\\\":1}\"}},"
        "{\"role\":\"function\",\"name\":\"f\",\"content\":\"done\"}]}",
        &ctx);
    json_t *msgs = json_object_get(out, "messages");
    const char *use_id = json_string_value(json_object_get(
        json_array_get(json_object_get(json_array_get(msgs, 1), "content"), 0), "id"));
    const char *result_id = json_string_value(json_object_get(
        json_array_get(json_object_get(json_array_get(msgs, 2), "content"), 0), "tool_use_id"));

    ASSERT_TRUE(ctx.legacy_functions);
    ASSERT_TRUE(strncmp(use_id, "call_", 5) == 0);
    ASSERT_EQ(strlen(use_id), 5 + 24);
    ASSERT_STREQ(use_id, result_id);
    expect_json(json_object_get(out, "tool_choice"), "{\"type\":\"tool\",\"name\":\"f\"}");
    /* A root with properties but no type gets type object. */
    expect_json(json_object_get(json_array_get(json_object_get(out, "tools"), 0), "input_schema"),
                "{\"type\":\"object\",\"properties\":{}}");
}

TEST(thinking_per_family)
{
    json_auto_t *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;

    /* Manual thinking on an adaptive-only model becomes adaptive, with an effort from the
     * budget and display kept. */
    a = translate_ok("claude-opus-4-7",
                     "{\"model\":\"m\",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":"
                     "10000,\"display\":\"omitted\"},\"messages\":[{\"role\":\"user\","
                     "\"content\":\"x\"}]}",
                     NULL);
    expect_json(json_object_get(a, "thinking"), "{\"type\":\"adaptive\",\"display\":\"omitted\"}");
    expect_json(json_object_get(a, "output_config"), "{\"effort\":\"high\"}");

    /* none on a default-on model that can be turned off; nothing where it cannot. */
    b = translate_ok("claude-opus-5",
                     "{\"model\":\"m\",\"reasoning_effort\":\"none\",\"messages\":[{\"role\":"
                     "\"user\",\"content\":\"x\"}]}",
                     NULL);
    expect_json(json_object_get(b, "thinking"), "{\"type\":\"disabled\"}");
    c = translate_ok("claude-fable-5",
                     "{\"model\":\"m\",\"reasoning_effort\":\"none\",\"messages\":[{\"role\":"
                     "\"user\",\"content\":\"x\"}]}",
                     NULL);
    ASSERT_NULL(json_object_get(c, "thinking"));

    /* xhigh falls back to high where the model has no xhigh. */
    d = translate_ok(
        "claude-sonnet-4-6",
        "{\"model\":\"m\",\"reasoning_effort\":\"xhigh\",\"temperature\":0.5,"
        "\"top_p\":0.5,\"top_k\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        NULL);
    expect_json(json_object_get(d, "output_config"), "{\"effort\":\"high\"}");
    /* Thinking on a 4.6 model: temperature and top_k go, top_p is raised to 0.95. */
    ASSERT_NULL(json_object_get(d, "temperature"));
    ASSERT_NULL(json_object_get(d, "top_k"));
    ASSERT_TRUE(json_real_value(json_object_get(d, "top_p")) == 0.95);

    /* A max budget is capped by the model's maximum: max_tokens 64000, budget 32000. */
    e = translate_ok("claude-sonnet-4-5",
                     "{\"model\":\"m\",\"reasoning_effort\":\"max\",\"max_tokens\":60000,"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                     NULL);
    expect_json(json_object_get(e, "thinking"), "{\"type\":\"enabled\",\"budget_tokens\":32000}");
    ASSERT_EQ(json_integer_value(json_object_get(e, "max_tokens")), 60000);
    json_decref(e);
    e = translate_ok("claude-sonnet-4-5",
                     "{\"model\":\"m\",\"reasoning_effort\":\"max\",\"max_tokens\":32000,"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                     NULL);
    ASSERT_EQ(json_integer_value(json_object_get(e, "max_tokens")), 64000);
}

TEST(prefill_rules)
{
    struct translate_context ctx = {.created = 1};
    json_auto_t *a = NULL;
    char big[2200];

    /* Trailing white space goes; white space only means no prefill at all. */
    a = translate_ok("claude-opus-4-7",
                     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
                     "{\"role\":\"assistant\",\"content\":\"  \\n\"}]}",
                     NULL);
    ASSERT_EQ(json_array_size(json_object_get(a, "messages")), 1);

    json_decref(a);
    a = translate_ok("claude-haiku-4-5",
                     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
                     "{\"role\":\"assistant\",\"content\":\"Answer: \",\"prefix\":true}]}",
                     &ctx);
    ASSERT_STREQ(ctx.prefix, "Answer:");

    /* Prefill with thinking on is refused before upstream. */
    translate_refused("claude-haiku-4-5",
                      "{\"model\":\"m\",\"reasoning_effort\":\"low\",\"messages\":[{\"role\":"
                      "\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"A\"}]}",
                      "messages", "prefill");

    /* A prefix that would not fit the context is refused rather than cut. */
    memset(big, 'a', sizeof big);
    {
        char text[2400];
        snprintf(text, sizeof text,
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
                 "{\"role\":\"assistant\",\"content\":\"%.*s\",\"prefix\":true}]}",
                 (int)sizeof big, big);
        translate_refused("claude-haiku-4-5", text, "messages", "too long");
    }
}

TEST(schema_prepared_for_structured_outputs)
{
    json_auto_t *out = translate_ok(
        "claude-sonnet-4-6",
        "{\"model\":\"m\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{"
        "\"name\":\"p\",\"schema\":{\"type\":\"object\",\"properties\":{"
        "\"tags\":{\"type\":\"array\",\"minItems\":2,\"items\":{\"type\":\"object\","
        "\"properties\":{\"t\":{\"type\":\"string\",\"format\":\"color\",\"maxLength\":9,"
        "\"description\":\"Tag\"}}}},"
        "\"n\":{\"type\":\"number\",\"minimum\":0.5,\"maximum\":10}},"
        "\"additionalProperties\":true,\"$defs\":{\"d\":{\"type\":\"object\"}}}}},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        NULL);

    expect_json(json_object_get(json_object_get(out, "output_config"), "format"),
                "{\"type\":\"json_schema\",\"schema\":{\"type\":\"object\","
                "\"additionalProperties\":false,\"properties\":{"
                "\"tags\":{\"type\":\"array\",\"description\":\"{minItems: 2}\",\"items\":{"
                "\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
                "\"t\":{\"type\":\"string\",\"description\":\"Tag\\n\\n{maxLength: 9, "
                "format: color}\"}}}},"
                "\"n\":{\"type\":\"number\",\"description\":\"{minimum: 0.5, maximum: 10}\"}},"
                "\"$defs\":{\"d\":{\"type\":\"object\",\"additionalProperties\":false}}}}");
}

TEST(content_parts)
{
    /* A JPEG declared as image/jpg; a PNG declared as image/jpeg; a text file; a PDF as an
     * image_url; a breakpoint. */
    json_auto_t *out = translate_ok(
        "claude-sonnet-4-6",
        "{\"model\":\"m\",\"prompt_cache_options\":{\"ttl\":\"30m\"},\"messages\":[{\"role\":"
        "\"user\",\"content\":["
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/jpg;base64,/9j/4AAQ\"}},"
        "{\"type\":\"image_url\",\"image_url\":\"data:image/jpeg;base64,iVBORw0KGgo=\"},"
        "{\"type\":\"file\",\"file\":{\"filename\":\"n.txt\",\"file_data\":"
        "\"data:text/plain;base64,aMOpbGxv\"}},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:application/pdf;base64,JVBERi0x\"}},"
        "{\"type\":\"text\",\"text\":\"see\",\"prompt_cache_breakpoint\":{\"mode\":\"explicit\"}}"
        "]}]}",
        NULL);

    expect_json(
        json_object_get(json_array_get(json_object_get(out, "messages"), 0), "content"),
        "[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/jpeg\","
        "\"data\":\"/9j/4AAQ\"}},"
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\","
        "\"data\":\"iVBORw0KGgo=\"}},"
        "{\"type\":\"document\",\"source\":{\"type\":\"text\",\"media_type\":\"text/plain\","
        "\"data\":\"h\\u00e9llo\"},\"title\":\"n.txt\"},"
        "{\"type\":\"document\",\"source\":{\"type\":\"base64\",\"media_type\":"
        "\"application/pdf\",\"data\":\"JVBERi0x\"}},"
        "{\"type\":\"text\",\"text\":\"see\",\"cache_control\":{\"type\":\"ephemeral\","
        "\"ttl\":\"1h\"}}]");
}

/* Only the last four breakpoints keep their cache_control. */
TEST(breakpoints_last_four)
{
    struct buf in = BUF_INIT(0);
    json_auto_t *out = NULL;
    json_t *content;

    ASSERT_OK(
        buf_append_str(&in, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["));
    for (int i = 0; i < 6; i++) {
        char part[128];
        snprintf(part, sizeof part,
                 "%s{\"type\":\"text\",\"text\":\"p%d\",\"prompt_cache_breakpoint\":{\"mode\":"
                 "\"explicit\"}}",
                 i ? "," : "", i);
        ASSERT_OK(buf_append_str(&in, part));
    }
    ASSERT_OK(buf_append_str(&in, "]}]}"));
    out = translate_ok("claude-sonnet-4-6", in.data, NULL);
    buf_free(&in, false);
    content = json_object_get(json_array_get(json_object_get(out, "messages"), 0), "content");
    for (size_t i = 0; i < 6; i++)
        ASSERT_EQ(json_object_get(json_array_get(content, i), "cache_control") != NULL, i >= 2);
    expect_json(json_object_get(json_array_get(content, 5), "cache_control"),
                "{\"type\":\"ephemeral\"}");
}

TEST(options_and_extras)
{
    struct translate_options opt = TRANSLATE_OPTIONS_DEFAULT;
    struct translate_error err = {};
    struct translate_context ctx = {.created = 1};
    struct model_info m;
    json_auto_t *in =
        parse("{\"model\":\"m\",\"user\":\"+1 (555) 010-9999\",\"service_tier\":\"flex\","
              "\"stop\":\"END\",\"seed\":1,\"logit_bias\":{},\"metadata\":{\"a\":\"b\"},"
              "\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"cache_control\":{\"type\":"
              "\"ephemeral\"}}]}");
    json_auto_t *out = NULL;
    const char *uid;

    opt.auto_cache = true;
    opt.nonstream_max_tokens_cap = 1000;
    model_info_from_table("claude-haiku-4-5", &m);
    ASSERT_OK(translate_request(in, &m, &opt, &out, &ctx, &err));
    expect_json(json_object_get(out, "cache_control"), "{\"type\":\"ephemeral\"}");
    ASSERT_EQ(json_integer_value(json_object_get(out, "max_tokens")), 1000);
    expect_json(json_object_get(out, "stop_sequences"), "[\"END\"]");
    ASSERT_NULL(json_object_get(out, "service_tier"));
    ASSERT_NULL(json_object_get(out, "seed"));
    ASSERT_NULL(json_object_get(out, "logit_bias"));
    uid = json_string_value(json_object_get(json_object_get(out, "metadata"), "user_id"));
    ASSERT_EQ(strlen(uid), 64);
    expect_json(
        json_object_get(
            json_array_get(
                json_object_get(json_array_get(json_object_get(out, "messages"), 0), "content"), 0),
            "cache_control"),
        "{\"type\":\"ephemeral\"}");

    /* Strict tool arguments: a non-object value is a 400 naming the field. */
    json_decref(in);
    json_decref(out);
    out = NULL;
    opt.strict_tool_arguments = true;
    in = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
               "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
               "\"function\":{\"name\":\"f\",\"arguments\":\"7\"}}]},"
               "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"r\"}]}");
    ASSERT_ERROR(translate_request(in, &m, &opt, &out, &ctx, &err), EINVAL);
    ASSERT_STREQ(err.param, "messages[1].tool_calls[0].function.arguments");
}

/* Manual thinking and a tool turn without its thinking block: thinking is dropped, and the
 * forced JSON tool comes back. */
TEST(manual_thinking_dropped_for_json_tool)
{
    struct translate_context ctx = {.created = 1};
    json_auto_t *out = translate_ok(
        "claude-3-7-sonnet",
        "{\"model\":\"m\",\"reasoning_effort\":\"low\",\"response_format\":{\"type\":"
        "\"json_schema\",\"json_schema\":{\"name\":\"p\",\"schema\":{\"type\":\"object\"}}},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
        "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"r\"}]}",
        &ctx);

    ASSERT_STREQ(ctx.json_tool, "json_tool_call");
    ASSERT_NULL(json_object_get(out, "thinking"));
    expect_json(json_object_get(out, "tool_choice"),
                "{\"type\":\"tool\",\"name\":\"json_tool_call\"}");
}
