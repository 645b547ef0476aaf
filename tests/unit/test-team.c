/* test-team.c: the member table of team mode: keys, model patterns, prices, budgets with
 * reservations, token buckets, carrying state across snapshots. */
#include <string.h>

#include "metrics.h"
#include "route.h"
#include "team.h"
#include "test.h"

#define KEY_A "dr-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define KEY_B "dr-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
#define SEC 1000000ULL
/* 2026-11-01 00:00 UTC and a moment in that month. */
#define MONTH_START 1793491200LL
#define NOW ((uint64_t)(MONTH_START + 86400) * SEC)

static json_t *price(const char *model, int64_t in, int64_t out, int64_t cr, int64_t cw)
{
    return json_pack("{s:s,s:I,s:I,s:I,s:I}", "model", model, "input_micro_usd_per_mtok",
                     (json_int_t)in, "output_micro_usd_per_mtok", (json_int_t)out,
                     "cache_read_micro_usd_per_mtok", (json_int_t)cr,
                     "cache_write_micro_usd_per_mtok", (json_int_t)cw);
}

static json_t *snapshot_fixed(int64_t spent_a, const char *models_a, int64_t rpm, int64_t tpm)
{
    char ha[65], hb[65];
    json_t *a;

    team_key_sha256_hex(KEY_A, strlen(KEY_A), ha);
    team_key_sha256_hex(KEY_B, strlen(KEY_B), hb);
    a = json_pack("{s:s,s:s,s:I,s:I}", "name", "alice", "key_sha256", ha, "budget_micro_usd",
                  (json_int_t)50000, "spent_micro_usd", (json_int_t)spent_a);
    if (models_a)
        json_object_set_new(a, "models", json_pack("[s]", models_a));
    if (rpm)
        json_object_set_new(a, "rate_limit_rpm", json_integer(rpm));
    if (tpm)
        json_object_set_new(a, "rate_limit_tpm", json_integer(tpm));
    return json_pack("{s:I,s:[o,{s:s,s:s,s:I}],s:I,s:[o,o]}", "generation", (json_int_t)3,
                     "members", a, "name", "bob", "key_sha256", hb, "spent_micro_usd",
                     (json_int_t)0, "month_start_at", (json_int_t)MONTH_START, "prices",
                     price("claude-sonnet-4-5", 3000000, 15000000, 300000, 3750000),
                     price("claude-*", 1000000, 5000000, 100000, 1250000));
}

TEST(keys_are_found_by_hash)
{
    struct team t = {};
    json_t *snap = snapshot_fixed(0, NULL, 0, 0);
    struct team_member *m;

    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    ASSERT_TRUE(t.loaded);
    ASSERT_EQ(t.n_members, 2u);
    m = team_find_key(&t, KEY_A, strlen(KEY_A));
    ASSERT_TRUE(m && strcmp(m->name, "alice") == 0);
    m = team_find_key(&t, KEY_B, strlen(KEY_B));
    ASSERT_TRUE(m && strcmp(m->name, "bob") == 0);
    /* One character off, a prefix, or the hash itself: nobody. */
    ASSERT_TRUE(team_find_key(&t, KEY_A, strlen(KEY_A) - 1) == NULL);
    ASSERT_TRUE(team_find_key(&t, "dr-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", 46) == NULL);
    ASSERT_EQ(t.members[0].budget_micro_usd, 50000);
    ASSERT_EQ(t.members[1].budget_micro_usd, -1);
    json_decref(snap);
    team_done(&t);
}

TEST(malformed_snapshot_keeps_previous)
{
    struct team t = {};
    json_t *snap = snapshot_fixed(0, NULL, 0, 0), *bad;

    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    bad = json_deep_copy(snap);
    json_object_set_new(json_array_get(json_object_get(bad, "members"), 0), "key_sha256",
                        json_string("abc"));
    ASSERT_ERROR(team_apply_snapshot(&t, bad, NOW), EBADMSG);
    ASSERT_TRUE(team_find_key(&t, KEY_A, strlen(KEY_A)) != NULL);
    json_decref(bad);
    json_decref(snap);
    team_done(&t);
}

TEST(patterns)
{
    ASSERT_TRUE(route_pattern_matches("*", "claude-opus-4-1"));
    ASSERT_TRUE(route_pattern_matches("claude-haiku-*", "claude-haiku-4-5"));
    ASSERT_FALSE(route_pattern_matches("claude-haiku-*", "claude-sonnet-4-5"));
    ASSERT_TRUE(route_pattern_matches("claude-sonnet-4-5", "claude-sonnet-4-5"));
    ASSERT_FALSE(route_pattern_matches("claude-sonnet-4-5", "claude-sonnet-4-5-20250929"));
}

TEST(model_restriction_is_403)
{
    struct team t = {};
    json_t *snap = snapshot_fixed(0, "claude-haiku-*", 0, 0);
    struct team_reservation res;
    uint64_t retry = 0;

    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    ASSERT_EQ(team_admit(&t, &t.members[0], "claude-sonnet-4-5", 10, 10, NOW, &res, &retry),
              TEAM_MODEL_FORBIDDEN);
    ASSERT_FALSE(res.active);
    ASSERT_EQ(team_admit(&t, &t.members[0], "claude-haiku-4-5", 10, 10, NOW, &res, &retry),
              TEAM_OK);
    team_settle(&t, &res, 0, 0, NOW);
    /* bob has no list: every model. */
    ASSERT_EQ(team_admit(&t, &t.members[1], "claude-opus-4-1", 10, 10, NOW, &res, &retry), TEAM_OK);
    json_decref(snap);
    team_done(&t);
}

TEST(prices_and_cost)
{
    struct team t = {};
    json_t *snap = snapshot_fixed(0, NULL, 0, 0);
    const struct team_price *p;
    struct team_usage u = {.input_tokens = 1000,
                           .output_tokens = 100,
                           .cache_read_tokens = 10000,
                           .cache_write_tokens = 2000};

    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    p = team_price_for(&t, "claude-sonnet-4-5");
    ASSERT_TRUE(p && strcmp(p->pattern, "claude-sonnet-4-5") == 0);
    /* 1000*3 + 100*15 + 10000*0.3 + 2000*3.75 micro-USD = 3000+1500+3000+7500 */
    ASSERT_EQ(team_cost(p, &u), 15000);
    p = team_price_for(&t, "claude-haiku-4-5");
    ASSERT_TRUE(p && strcmp(p->pattern, "claude-*") == 0);
    ASSERT_TRUE(team_price_for(&t, "gpt-4o") == NULL);
    ASSERT_EQ(team_cost(NULL, &u), 0);
    /* Rounded up: one token at 1 micro-USD per 1M tokens still costs 1. */
    ASSERT_EQ(team_cost(&(struct team_price){.input = 1}, &(struct team_usage){.input_tokens = 1}),
              1);
    json_decref(snap);
    team_done(&t);
}

TEST(budget_reservations_bound_the_overrun)
{
    struct team t = {};
    json_t *snap = snapshot_fixed(40000, NULL, 0, 0);
    struct team_reservation res[10];
    struct team_member *a;
    uint64_t retry = 0;
    size_t admitted = 0;

    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    a = team_find(&t, "alice");
    /* 40000 of 50000 spent; each request reserves 100 prompt tokens at 3.75 + 200 output at 15
     * = 375 + 3000 = 3375: three fit under the budget (40000 + 3*3375 = 50125 crosses it), then
     * nothing more is admitted while they are in flight. */
    for (size_t i = 0; i < 10; i++)
        if (team_admit(&t, a, "claude-sonnet-4-5", 100, 200, NOW, &res[admitted], &retry) ==
            TEAM_OK)
            admitted++;
    ASSERT_EQ(admitted, 3u);
    ASSERT_EQ(a->reserved_micro_usd, 3 * 3375);
    /* Only the reservations stand in the way: retry shortly. */
    ASSERT_EQ(team_admit(&t, a, "claude-sonnet-4-5", 100, 200, NOW, &res[9], &retry),
              TEAM_BUDGET_RESERVED);
    ASSERT_EQ(retry, 1u);
    /* Settling with the real (smaller) cost frees room again. */
    team_settle(&t, &res[0], 1000, 0, NOW);
    ASSERT_EQ(a->spent_micro_usd, 41000);
    ASSERT_EQ(a->reserved_micro_usd, 2 * 3375);
    ASSERT_EQ(team_admit(&t, a, "claude-sonnet-4-5", 100, 200, NOW, &res[0], &retry), TEAM_OK);
    team_settle(&t, &res[0], 3375, 0, NOW);
    team_settle(&t, &res[1], 3375, 0, NOW);
    team_settle(&t, &res[2], 3375, 0, NOW);
    /* Settling twice changes nothing. */
    team_settle(&t, &res[2], 3375, 0, NOW);
    ASSERT_EQ(a->reserved_micro_usd, 0);
    ASSERT_EQ(a->spent_micro_usd, 41000 + 3 * 3375);
    ASSERT_EQ(team_admit(&t, a, "claude-sonnet-4-5", 100, 200, NOW, &res[0], &retry),
              TEAM_OVER_BUDGET);
    /* Free requests (count_tokens, the model list) are not held to the budget. */
    ASSERT_EQ(team_admit(&t, a, "claude-sonnet-4-5", 0, -1, NOW, &res[0], &retry), TEAM_OK);
    json_decref(snap);
    team_done(&t);
}

TEST(unstored_spend_survives_a_snapshot)
{
    struct team t = {};
    json_t *snap = snapshot_fixed(1000, NULL, 0, 0);
    struct team_reservation res;
    uint64_t retry;

    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    ASSERT_EQ(team_admit(&t, &t.members[0], "claude-sonnet-4-5", 1, 1, NOW, &res, &retry), TEAM_OK);
    team_settle(&t, &res, 500, 0, NOW);
    ASSERT_EQ(t.members[0].spent_micro_usd, 1500);
    /* authd has not stored it: a new snapshot (still 1000) plus the 500 routerd knows of. */
    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    ASSERT_EQ(t.members[0].spent_micro_usd, 1500);
    /* Once stored, the next snapshot carries it and it is not counted twice. */
    team_stored(&t, "alice", 500);
    json_decref(snap);
    snap = snapshot_fixed(1500, NULL, 0, 0);
    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    ASSERT_EQ(t.members[0].spent_micro_usd, 1500);
    json_decref(snap);
    team_done(&t);
}

TEST(month_rolls_over)
{
    struct team t = {};
    json_t *snap = snapshot_fixed(60000, NULL, 0, 0);
    struct team_reservation res;
    uint64_t retry;
    uint64_t next = (uint64_t)team_month_end(MONTH_START) * SEC + SEC;

    ASSERT_EQ(team_month_end(MONTH_START), 1796083200LL);  /* 2026-12-01 */
    ASSERT_EQ(team_month_end(1796083200LL), 1798761600LL); /* 2027-01-01 */
    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    ASSERT_EQ(team_admit(&t, &t.members[0], "claude-sonnet-4-5", 1, 1, NOW, &res, &retry),
              TEAM_OVER_BUDGET);
    ASSERT_EQ(team_admit(&t, &t.members[0], "claude-sonnet-4-5", 1, 1, next, &res, &retry),
              TEAM_OK);
    ASSERT_EQ(t.month_start_at, 1796083200LL);
    json_decref(snap);
    team_done(&t);
}

TEST(rate_limits_are_token_buckets)
{
    struct team t = {};
    json_t *snap = snapshot_fixed(0, NULL, 6, 600);
    struct team_reservation res;
    struct team_member *a;
    uint64_t retry = 0;

    ASSERT_OK(team_apply_snapshot(&t, snap, NOW));
    a = &t.members[0];
    for (int i = 0; i < 6; i++) {
        ASSERT_EQ(team_admit(&t, a, "claude-haiku-4-5", 10, 0, NOW, &res, &retry), TEAM_OK);
        team_settle(&t, &res, 0, 10, NOW);
    }
    /* 6 per minute: the next one in 10 s. */
    ASSERT_EQ(team_admit(&t, a, "claude-haiku-4-5", 10, 0, NOW, &res, &retry), TEAM_RATE_REQUESTS);
    ASSERT_EQ(retry, 10u);
    ASSERT_EQ(team_admit(&t, a, "claude-haiku-4-5", 10, 0, NOW + 10 * SEC, &res, &retry), TEAM_OK);
    /* Tokens: 600 per minute; a request that used 1000 drives the bucket below zero. */
    team_settle(&t, &res, 0, 1000, NOW + 10 * SEC);
    ASSERT_EQ(team_admit(&t, a, "claude-haiku-4-5", 10, 0, NOW + 20 * SEC, &res, &retry),
              TEAM_RATE_TOKENS);
    ASSERT_TRUE(retry >= 1 && retry <= 60);
    /* A new snapshot with the same limits keeps the buckets; bob has none. */
    ASSERT_OK(team_apply_snapshot(&t, snap, NOW + 20 * SEC));
    ASSERT_EQ(
        team_admit(&t, &t.members[0], "claude-haiku-4-5", 10, 0, NOW + 20 * SEC, &res, &retry),
        TEAM_RATE_TOKENS);
    ASSERT_EQ(
        team_admit(&t, &t.members[1], "claude-haiku-4-5", 10, 0, NOW + 20 * SEC, &res, &retry),
        TEAM_OK);
    json_decref(snap);
    team_done(&t);
}

TEST(metrics_render)
{
    struct metrics m = {};
    char *text;

    metrics_observe(&m, &(struct metrics_sample){.endpoint = "messages",
                                                 .status = 200,
                                                 .model = "claude-\"x\"\n",
                                                 .member = "alice",
                                                 .latency_usec = 30000,
                                                 .ttfb_usec = 20000,
                                                 .input_tokens = 5,
                                                 .output_tokens = 7});
    metrics_observe(&m, &(struct metrics_sample){.endpoint = "messages",
                                                 .status = 200,
                                                 .model = "claude-\"x\"\n",
                                                 .member = "alice",
                                                 .latency_usec = 3000000,
                                                 .upstream_error = "transport"});
    text = metrics_render(&m, 1, 2);
    ASSERT_TRUE(text);
    ASSERT_TRUE(strstr(text, "dualroute_requests_total{endpoint=\"messages\",status=\"200\","
                             "model=\"claude-\\\"x\\\"\\n\",member=\"alice\"} 2\n"));
    ASSERT_TRUE(strstr(text, "dualroute_tokens_total{kind=\"output\""));
    ASSERT_TRUE(strstr(text, "dualroute_request_duration_seconds_bucket{endpoint=\"messages\","
                             "le=\"0.05\"} 1\n"));
    ASSERT_TRUE(strstr(text, "dualroute_request_duration_seconds_bucket{endpoint=\"messages\","
                             "le=\"+Inf\"} 2\n"));
    ASSERT_TRUE(strstr(text, "dualroute_upstream_errors_total{kind=\"transport\"} 1\n"));
    ASSERT_TRUE(strstr(text, "dualroute_open_streams 1\n"));
    free(text);
    metrics_done(&m);
}
