/* test-route.c: which account serves a model, from a snapshot's routes. */
#include <string.h>

#include <jansson.h>

#include "route.h"
#include "test.h"

static int apply(struct route_table *t, const char *json)
{
    json_t *snap = json_loads(json, 0, NULL);
    int r;

    ASSERT_NOT_NULL(snap);
    r = route_table_apply(t, snap);
    json_decref(snap);
    return r;
}

TEST(exact_beats_pattern_beats_star)
{
    struct route_table t = {};

    ASSERT_EQ(apply(&t, "{\"routes\":["
                        "{\"model\":\"*\",\"account\":\"main\"},"
                        "{\"model\":\"claude-haiku-*\",\"account\":\"cheap\"},"
                        "{\"model\":\"claude-*\",\"account\":\"claude\"},"
                        "{\"model\":\"claude-haiku-4-5\",\"account\":\"exact\"}]}"),
              0);
    ASSERT_STREQ(route_account(&t, "claude-haiku-4-5"), "exact");
    ASSERT_STREQ(route_account(&t, "claude-haiku-3"), "cheap");
    ASSERT_STREQ(route_account(&t, "claude-opus-4-7"), "claude");
    ASSERT_STREQ(route_account(&t, "gpt-4o"), "main");
    route_table_done(&t);
}

TEST(no_route_no_account)
{
    struct route_table t = {};

    ASSERT_EQ(apply(&t, "{\"routes\":[{\"model\":\"claude-opus-4-7\",\"account\":\"a\"}]}"), 0);
    ASSERT_NULL(route_account(&t, "claude-sonnet-4-6"));
    ASSERT_NULL(route_account(&t, NULL));
    ASSERT_EQ(apply(&t, "{}"), 0);
    ASSERT_NULL(route_account(&t, "claude-opus-4-7"));
    route_table_done(&t);
    ASSERT_NULL(route_account(&t, "claude-opus-4-7"));
}

TEST(malformed_routes_keep_the_old_table)
{
    struct route_table t = {};

    ASSERT_EQ(apply(&t, "{\"routes\":[{\"model\":\"*\",\"account\":\"main\"}]}"), 0);
    ASSERT_EQ(apply(&t, "{\"routes\":{}}"), -EINVAL);
    ASSERT_EQ(apply(&t, "{\"routes\":[{\"model\":\"*\"}]}"), -EINVAL);
    ASSERT_EQ(apply(&t, "{\"routes\":[{\"model\":\"\",\"account\":\"a\"}]}"), -EINVAL);
    ASSERT_EQ(apply(&t, "{\"routes\":[{\"model\":\"*\",\"account\":\"Bad Name\"}]}"), -EINVAL);
    ASSERT_EQ(apply(&t, "{\"routes\":[{\"model\":\"*\",\"account\":\"../x\"}]}"), -EINVAL);
    ASSERT_STREQ(route_account(&t, "anything"), "main");
    route_table_done(&t);
}

TEST(patterns)
{
    ASSERT_TRUE(route_pattern_matches("*", "x"));
    ASSERT_TRUE(route_pattern_matches("claude-*", "claude-"));
    ASSERT_FALSE(route_pattern_matches("claude-*", "claud"));
    ASSERT_FALSE(route_pattern_matches("claude-opus-4-7", "claude-opus-4-7@20260101"));
    ASSERT_TRUE(route_pattern_matches("claude-opus-4-7", "claude-opus-4-7"));
}
