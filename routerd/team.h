/* team.h: team mode's member table, from authd's snapshot (docs/ipc.md: members, prices,
 * month_start_at). Pure: no IO, no clock of its own (callers pass the time), no logging.
 *
 * - Keys: a presented dr- key is hashed (SHA-256 of the whole string) and compared with every
 *   member's key_sha256 in constant time; the key itself is never kept.
 * - Models: a member's patterns (exact id, prefix ending in '*', or '*') allow models; absent:
 *   every model.
 * - Budgets: monthly, in micro-USD. A request is admitted while spent + reserved is below the
 *   budget, and reserves its estimated cost (prompt bytes / 4 as tokens at the dearer of the input
 *   and cache-write prices, plus max_tokens at the output price); it settles with its real cost.
 *   So concurrent requests overrun a budget by at most what was in flight when it was crossed.
 *   A request refused only because of reservations gets TEAM_BUDGET_RESERVED (retry shortly),
 *   one refused because spent reached the budget TEAM_OVER_BUDGET.
 *   spent = the snapshot's spent_micro_usd + what routerd settled that authd had not yet stored
 *   when that snapshot came.
 * - Rate limits: token buckets per member: requests per minute (one per request) and tokens per
 *   minute (the prompt estimate taken on admission, corrected by the real input + output + cache
 *   tokens at settlement; a bucket may go as low as minus its capacity).
 * Members are rebuilt on every snapshot; reservations, buckets and unstored spend carry over by
 * name. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "macro.h"

struct team_price {
    char *pattern;
    int64_t input, output, cache_read, cache_write; /* micro-USD per million tokens */
};

struct team_bucket {
    double level;
    uint64_t at_usec; /* of the last refill */
};

struct team_member {
    char *name;
    uint8_t key_sha256[32];
    int64_t budget_micro_usd;   /* -1: none */
    int64_t spent_micro_usd;    /* month to date: the snapshot's, plus settled here since */
    int64_t unstored_micro_usd; /* settled here, not yet acknowledged by authd */
    int64_t reserved_micro_usd; /* in flight */
    int64_t rpm, tpm;           /* 0: no limit */
    char **models;              /* NULL-terminated patterns; NULL: every model */
    struct team_bucket requests, tokens;
};

struct team {
    struct team_member *members;
    size_t n_members;
    struct team_price *prices;
    size_t n_prices;
    int64_t month_start_at; /* Unix seconds */
    bool loaded;            /* a snapshot was applied */
};

/* What a request reserved on admission; settled (or released) exactly once. */
struct team_reservation {
    char member[65];
    int64_t cost_micro_usd;
    int64_t tokens;
    bool active;
};

struct team_usage {
    int64_t input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
};

enum team_verdict {
    TEAM_OK,
    TEAM_MODEL_FORBIDDEN, /* 403 */
    TEAM_OVER_BUDGET,     /* 429, resets next month */
    TEAM_BUDGET_RESERVED, /* 429, retry in a second: requests in flight hold the rest */
    TEAM_RATE_REQUESTS,   /* 429 with retry-after */
    TEAM_RATE_TOKENS,     /* 429 with retry-after */
    _TEAM_VERDICT_MAX,
    _TEAM_VERDICT_INVALID = -EINVAL,
};

void team_done(struct team *t);

/* Replaces the members and prices with the snapshot's, carrying runtime state over by name.
 * Returns 0, or -EBADMSG (the previous table stays) when a member or price is malformed. */
int team_apply_snapshot(struct team *t, const json_t *snapshot, uint64_t now_usec);

/* The member holding this key (constant-time compare over every member), or NULL. */
struct team_member *team_find_key(struct team *t, const char *key, size_t len);
struct team_member *team_find(struct team *t, const char *name);

bool team_model_allowed(const struct team_member *m, const char *model);

/* The price entry for a model (exact, else longest prefix, else '*'), or NULL. */
const struct team_price *team_price_for(const struct team *t, const char *model);
/* Cost in micro-USD, rounded up; 0 without a price. */
int64_t team_cost(const struct team_price *p, const struct team_usage *u);

/* Starts a new month when now_at passed the end of the current one: spending starts from 0. */
void team_roll_month(struct team *t, int64_t now_at);
/* The start of the UTC month after month_start_at. */
int64_t team_month_end(int64_t month_start_at);

/* Admits a request for model: estimated prompt tokens (prompt_tokens) and max_tokens (< 0:
 * none; such a request costs nothing and is not held to the budget, e.g. count_tokens or the
 * model list). now_usec is wall-clock time. On TEAM_OK fills res; on a rate
 * verdict sets *retry_after_sec (≥ 1). */
enum team_verdict team_admit(struct team *t, struct team_member *m, const char *model,
                             int64_t prompt_tokens, int64_t max_tokens, uint64_t now_usec,
                             struct team_reservation *res, uint64_t *retry_after_sec);
/* Settles a reservation with the real cost and tokens (releases it when the member is gone). */
void team_settle(struct team *t, struct team_reservation *res, int64_t cost_micro_usd,
                 int64_t tokens, uint64_t now_usec);
/* authd stored a record of this member's that cost this much. */
void team_stored(struct team *t, const char *member, int64_t cost_micro_usd);

/* Prompt tokens estimated from a body's size. */
int64_t team_estimate_prompt_tokens(size_t body_bytes);
/* SHA-256 of key as 64 lowercase hex chars. */
void team_key_sha256_hex(const char *key, size_t len, char out[static 65]);
