/* test-json-arena.c: jansson allocating from arena scopes: values freed in the scope, values that
 * outlive it, nested scopes, allocations too big for a block, and a whole chat translation. */
#include <jansson.h>

#include "json-arena.h"
#include "macro.h"
#include "test.h"
#include "translate.h"

/* Installing twice keeps the first fallbacks (a second install must not make the arena its own
 * fallback, which would recurse); wiping is on, as in service mode. */
static void install_once(void)
{
    json_arena_install(true);
    json_arena_install(true);
}

/* A JSON array of n small objects, as text. */
static char *many_objects(size_t n)
{
    struct buf b = BUF_INIT(0);

    ASSERT_OK(buf_append_str(&b, "["));
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(buf_append_str(&b, i ? ",{\"k\":\"v\",\"n\":1}" : "{\"k\":\"v\",\"n\":1}"));
    ASSERT_OK(buf_append_str(&b, "]"));
    return buf_steal(&b);
}

/* Parses n small objects in a scope and checks how many blocks the scope holds while they live
 * (blocks_min..blocks_max), that every value reads back, and that all is released after. */
static void parse_in_scope(size_t n, size_t blocks_min, size_t blocks_max)
{
    _cleanup_free_ char *text = many_objects(n);
    struct json_arena *a;
    json_t *v;

    install_once();
    a = json_arena_enter();
    ASSERT_NOT_NULL(a);
    v = json_loads(text, 0, NULL);
    ASSERT_NOT_NULL(v);
    ASSERT_EQ(json_array_size(v), n);
    ASSERT_STREQ(json_string_value(json_object_get(json_array_get(v, n - 1), "k")), "v");
    ASSERT_TRUE(json_arena_blocks() >= blocks_min);
    ASSERT_TRUE(json_arena_blocks() <= blocks_max);
    json_decref(v);
    json_arena_leave(a);
    ASSERT_EQ(json_arena_blocks(), 0);
    ASSERT_EQ(json_arena_retained(), 0);
}

TEST(scope_released_when_its_values_are_freed)
{
    /* 2,000 objects with their keys and strings do not fit one 16 KiB block. */
    parse_in_scope(2000, 2, 8);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

TEST(released_blocks_are_wiped)
{
#ifdef UNDER_ASAN
    /* A released block is poisoned: reading it is what AddressSanitizer reports. */
    return;
#else
    struct json_arena *a;
    json_t *v;
    const char *text;

    install_once();
    a = json_arena_enter();
    v = json_string("sk-ant-api03-a-secret-in-a-body");
    text = json_string_value(v);
    ASSERT_STREQ(text, "sk-ant-api03-a-secret-in-a-body");
    json_decref(v);
    json_arena_leave(a);
    /* The block went to the spare list, still mapped: nothing of the string is left in it. */
    for (size_t i = 0; i < sizeof "sk-ant-api03-a-secret-in-a-body"; i++)
        ASSERT_EQ(text[i], 0);
#endif
}

TEST(big_body_capped_at_eight_blocks)
{
    /* 200,000 objects: far past a scope's 128 KiB. What does not fit comes from malloc(), so the
     * blocks free() has to look through stay few however big the body (a walk over hundreds of
     * blocks per free made a 4 MB body take seconds). */
    parse_in_scope(200000, 8, 8);
}

TEST(value_outliving_its_scope)
{
    struct json_arena *a;
    json_t *keep, *big;
    char long_text[4096];

    install_once();
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    a = json_arena_enter();
    keep = json_pack("{s:s,s:[i,i]}", "name", "kept", "list", 1, 2);
    /* Bigger than a block's share: from malloc(), freed to free() whatever the scope. */
    big = json_string(long_text);
    ASSERT_NOT_NULL(keep);
    ASSERT_NOT_NULL(big);
    json_arena_leave(a);

    /* The scope is gone but its values are not: its blocks stay until the last one is freed. */
    ASSERT_EQ(json_arena_retained(), 1);
    ASSERT_TRUE(json_arena_blocks() >= 1);
    ASSERT_STREQ(json_string_value(json_object_get(keep, "name")), "kept");
    ASSERT_EQ(json_integer_value(json_array_get(json_object_get(keep, "list"), 1)), 2);
    ASSERT_EQ(json_string_length(big), sizeof long_text - 1);
    json_decref(big);
    ASSERT_EQ(json_arena_retained(), 1);
    json_decref(keep);
    ASSERT_EQ(json_arena_retained(), 0);
    ASSERT_EQ(json_arena_blocks(), 0);
}

TEST(nested_scopes)
{
    struct json_arena *outer, *inner;
    json_t *list, *item;

    install_once();
    outer = json_arena_enter();
    list = json_array();
    inner = json_arena_enter();
    item = json_string("from the inner scope");
    ASSERT_OK(json_array_append_new(list, item));
    json_arena_leave(inner);
    ASSERT_EQ(json_arena_retained(), 1); /* the inner scope's string lives on in the list */

    /* The outer scope allocates again once the inner one is left. */
    ASSERT_OK(json_array_append_new(list, json_integer(7)));
    json_decref(list);
    ASSERT_EQ(json_arena_retained(), 0);
    json_arena_leave(outer);
    ASSERT_EQ(json_arena_blocks(), 0);
}

TEST(outside_a_scope_jansson_uses_malloc)
{
    json_t *v;
    char *text;

    install_once();
    v = json_pack("{s:s}", "a", "b");
    ASSERT_EQ(json_arena_blocks(), 0);
    text = json_dumps(v, JSON_COMPACT);
    ASSERT_STREQ(text, "{\"a\":\"b\"}");
    free(text); /* json_dumps() text outside a scope is malloc()'s */
    json_decref(v);
    json_arena_leave(NULL);
}

TEST(chat_translation_leaves_nothing_behind)
{
    struct translate_options opt = TRANSLATE_OPTIONS_DEFAULT;
    struct translate_context ctx = {};
    struct translate_error err = {};
    struct model_info m;
    struct usage u;
    struct json_arena *a;
    json_t *in, *out = NULL, *reply, *answer;
    char *text;

    install_once();
    model_info_from_table("claude-sonnet-4-5", &m);
    a = json_arena_enter();
    in = json_loads("{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be "
                    "brief.\"},{\"role\":\"user\",\"content\":\"Hi\"}],\"tools\":[{\"type\":"
                    "\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":"
                    "\"object\"}}}],\"max_tokens\":100}",
                    0, NULL);
    ASSERT_NOT_NULL(in);
    ASSERT_OK(translate_request(in, &m, &opt, &out, &ctx, &err));
    text = translate_json_text(out, 0, NULL);
    ASSERT_NOT_NULL(strstr(text, "\"system\":"));
    free(text);
    reply = json_loads("{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":"
                       "[{\"type\":\"text\",\"text\":\"Hello\"},{\"type\":\"tool_use\",\"id\":"
                       "\"toolu_1\",\"name\":\"f\",\"input\":{\"x\":1}}],\"stop_reason\":"
                       "\"tool_use\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}",
                       0, NULL);
    answer = translate_response(reply, &ctx, &u);
    ASSERT_NOT_NULL(answer);
    text = translate_json_text(answer, 0, NULL);
    ASSERT_NOT_NULL(strstr(text, "\"finish_reason\":\"tool_calls\""));
    free(text);
    json_decref(answer);
    json_decref(reply);
    json_decref(out);
    json_decref(in);
    json_arena_leave(a);
    /* Every value the translators made was freed: no reference leaked out of the scope. */
    ASSERT_EQ(json_arena_retained(), 0);
    ASSERT_EQ(json_arena_blocks(), 0);
}
