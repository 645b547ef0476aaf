/* team.c: the member table, budgets with reservations, and token-bucket rate limits. See team.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "route.h"
#include "team.h"
#include "util.h"

static void patterns_free(char **l)
{
    for (char **p = l; p && *p; p++)
        free(*p);
    free(l);
}

static void member_done(struct team_member *m)
{
    free(m->name);
    patterns_free(m->models);
}

static void prices_free(struct team_price *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].pattern);
    free(p);
}

void team_done(struct team *t)
{
    for (size_t i = 0; i < t->n_members; i++)
        member_done(&t->members[i]);
    free(t->members);
    prices_free(t->prices, t->n_prices);
    *t = (struct team){};
}

static int parse_sha256(const char *hex, uint8_t out[32])
{
    if (!hex || strlen(hex) != 64)
        return -EBADMSG;
    for (size_t i = 0; i < 32; i++) {
        int hi = hex_digit_value(hex[2 * i]), lo = hex_digit_value(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -EBADMSG;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* An optional non-negative integer field: -1 when absent or null. */
static int opt_int(const json_t *o, const char *key, int64_t *ret)
{
    const json_t *v = json_object_get(o, key);

    if (!v || json_is_null(v)) {
        *ret = -1;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -EBADMSG;
    *ret = (int64_t)json_integer_value(v);
    return 0;
}

static int parse_models(const json_t *v, char ***ret)
{
    char **l;
    size_t i;
    const json_t *item;

    *ret = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return -EBADMSG;
    l = calloc(json_array_size(v) + 1, sizeof(char *));
    if (!l)
        return -ENOMEM;
    json_array_foreach (v, i, item) {
        if (!json_is_string(item) || !(l[i] = strdup(json_string_value(item)))) {
            patterns_free(l);
            return json_is_string(item) ? -ENOMEM : -EBADMSG;
        }
    }
    *ret = l;
    return 0;
}

static int parse_member(const json_t *o, struct team_member *m)
{
    const char *name = json_string_value(json_object_get(o, "name"));
    int64_t rpm, tpm, spent;
    int r;

    if (!json_is_object(o) || !name || !*name || strlen(name) > 64)
        return -EBADMSG;
    r = parse_sha256(json_string_value(json_object_get(o, "key_sha256")), m->key_sha256);
    if (r < 0)
        return r;
    if (opt_int(o, "budget_micro_usd", &m->budget_micro_usd) < 0 ||
        opt_int(o, "spent_micro_usd", &spent) < 0 || opt_int(o, "rate_limit_rpm", &rpm) < 0 ||
        opt_int(o, "rate_limit_tpm", &tpm) < 0)
        return -EBADMSG;
    m->spent_micro_usd = MAX(spent, (int64_t)0);
    m->rpm = MAX(rpm, (int64_t)0);
    m->tpm = MAX(tpm, (int64_t)0);
    r = parse_models(json_object_get(o, "models"), &m->models);
    if (r < 0)
        return r;
    m->name = strdup(name);
    return m->name ? 0 : -ENOMEM;
}

static int parse_price(const json_t *o, struct team_price *p)
{
    const char *pattern = json_string_value(json_object_get(o, "model"));

    if (!json_is_object(o) || !pattern || !*pattern ||
        opt_int(o, "input_micro_usd_per_mtok", &p->input) < 0 ||
        opt_int(o, "output_micro_usd_per_mtok", &p->output) < 0 ||
        opt_int(o, "cache_read_micro_usd_per_mtok", &p->cache_read) < 0 ||
        opt_int(o, "cache_write_micro_usd_per_mtok", &p->cache_write) < 0)
        return -EBADMSG;
    p->input = MAX(p->input, (int64_t)0);
    p->output = MAX(p->output, (int64_t)0);
    p->cache_read = MAX(p->cache_read, (int64_t)0);
    p->cache_write = MAX(p->cache_write, (int64_t)0);
    p->pattern = strdup(pattern);
    return p->pattern ? 0 : -ENOMEM;
}

static void bucket_init(struct team_bucket *b, int64_t capacity, uint64_t now_usec)
{
    b->level = (double)capacity;
    b->at_usec = now_usec;
}

int team_apply_snapshot(struct team *t, const json_t *snapshot, uint64_t now_usec)
{
    const json_t *members = json_object_get(snapshot, "members"),
                 *prices = json_object_get(snapshot, "prices"),
                 *month = json_object_get(snapshot, "month_start_at");
    struct team n = {};
    const json_t *item;
    size_t i;
    int r = 0;

    if ((members && !json_is_null(members) && !json_is_array(members)) ||
        (prices && !json_is_null(prices) && !json_is_array(prices)) ||
        (month && !json_is_null(month) && !json_is_integer(month)))
        return -EBADMSG;

    n.members = calloc(json_array_size(members) + 1, sizeof(*n.members));
    n.prices = calloc(json_array_size(prices) + 1, sizeof(*n.prices));
    if (!n.members || !n.prices) {
        team_done(&n);
        return -ENOMEM;
    }
    json_array_foreach (members, i, item) {
        struct team_member *m = &n.members[n.n_members];

        r = parse_member(item, m);
        if (r < 0) {
            member_done(m);
            goto fail;
        }
        n.n_members++;
        for (size_t k = 0; k + 1 < n.n_members; k++)
            if (streq(n.members[k].name, m->name)) {
                r = -EBADMSG;
                goto fail;
            }
    }
    json_array_foreach (prices, i, item) {
        r = parse_price(item, &n.prices[n.n_prices]);
        if (r < 0) {
            free(n.prices[n.n_prices].pattern);
            goto fail;
        }
        n.n_prices++;
    }
    n.month_start_at = json_is_integer(month) ? (int64_t)json_integer_value(month) : 0;
    n.loaded = true;

    /* Runtime state carries over by name; a new or re-limited member starts with full buckets. */
    for (i = 0; i < n.n_members; i++) {
        struct team_member *m = &n.members[i], *old = team_find(t, m->name);

        bucket_init(&m->requests, m->rpm, now_usec);
        bucket_init(&m->tokens, m->tpm, now_usec);
        if (!old)
            continue;
        m->reserved_micro_usd = old->reserved_micro_usd;
        /* What authd had not stored when it made this snapshot is not in its spent figure. */
        m->unstored_micro_usd = old->unstored_micro_usd;
        if (n.month_start_at == t->month_start_at)
            m->spent_micro_usd += old->unstored_micro_usd;
        if (old->rpm == m->rpm)
            m->requests = old->requests;
        if (old->tpm == m->tpm)
            m->tokens = old->tokens;
    }
    team_done(t);
    *t = n;
    return 0;

fail:
    team_done(&n);
    return r < 0 ? r : -EBADMSG;
}

struct team_member *team_find(struct team *t, const char *name)
{
    for (size_t i = 0; i < t->n_members; i++)
        if (streq(t->members[i].name, name))
            return &t->members[i];
    return NULL;
}

struct team_member *team_find_key(struct team *t, const char *key, size_t len)
{
    uint8_t digest[SHA256_DIGEST_LENGTH];
    struct team_member *found = NULL;

    SHA256((const unsigned char *)key, len, digest);
    /* Every member is compared, so the time does not tell which one matched. */
    for (size_t i = 0; i < t->n_members; i++)
        if (CRYPTO_memcmp(digest, t->members[i].key_sha256, sizeof digest) == 0)
            found = &t->members[i];
    OPENSSL_cleanse(digest, sizeof digest);
    return found;
}

void team_key_sha256_hex(const char *key, size_t len, char out[static 65])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t digest[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)key, len, digest);
    for (size_t i = 0; i < sizeof digest; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[64] = '\0';
}

bool team_model_allowed(const struct team_member *m, const char *model)
{
    if (!m->models)
        return true;
    for (char **p = m->models; *p; p++)
        if (route_pattern_matches(*p, model))
            return true;
    return false;
}

const struct team_price *team_price_for(const struct team *t, const char *model)
{
    const struct team_price *best = NULL;
    size_t best_len = 0;

    for (size_t i = 0; i < t->n_prices; i++) {
        const char *p = t->prices[i].pattern;
        size_t n = strlen(p);

        if (streq(p, model))
            return &t->prices[i];
        if (n > 0 && p[n - 1] == '*' && route_pattern_matches(p, model) &&
            (!best || n > best_len)) {
            best = &t->prices[i];
            best_len = n;
        }
    }
    return best;
}

int64_t team_cost(const struct team_price *p, const struct team_usage *u)
{
    int64_t sum;

    if (!p)
        return 0;
    sum = MAX(u->input_tokens, (int64_t)0) * p->input +
          MAX(u->output_tokens, (int64_t)0) * p->output +
          MAX(u->cache_read_tokens, (int64_t)0) * p->cache_read +
          MAX(u->cache_write_tokens, (int64_t)0) * p->cache_write;
    return (sum + 999999) / 1000000;
}

int64_t team_month_end(int64_t month_start_at)
{
    time_t t = (time_t)month_start_at;
    struct tm tm;

    if (!gmtime_r(&t, &tm))
        return month_start_at + 31 * 86400;
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    if (++tm.tm_mon == 12) {
        tm.tm_mon = 0;
        tm.tm_year++;
    }
    return (int64_t)timegm(&tm);
}

void team_roll_month(struct team *t, int64_t now_at)
{
    int64_t end;

    if (!t->loaded || t->month_start_at <= 0)
        return;
    end = team_month_end(t->month_start_at);
    if (now_at < end)
        return;
    while (now_at >= team_month_end(end))
        end = team_month_end(end);
    t->month_start_at = end;
    for (size_t i = 0; i < t->n_members; i++)
        t->members[i].spent_micro_usd = 0;
}

static void bucket_refill(struct team_bucket *b, int64_t per_minute, uint64_t now_usec)
{
    if (now_usec > b->at_usec) {
        b->level += (double)(now_usec - b->at_usec) * (double)per_minute / 60e6;
        b->at_usec = now_usec;
    }
    if (b->level > (double)per_minute)
        b->level = (double)per_minute;
}

/* Seconds until the bucket holds need, at least 1. */
static uint64_t bucket_wait(const struct team_bucket *b, double need, int64_t per_minute)
{
    double s = (need - b->level) * 60.0 / (double)per_minute;

    uint64_t whole;

    if (s < 1.0)
        return 1;
    whole = (uint64_t)s;
    return (double)whole < s ? whole + 1 : whole;
}

int64_t team_estimate_prompt_tokens(size_t body_bytes)
{
    return (int64_t)(body_bytes / 4 + 1);
}

enum team_verdict team_admit(struct team *t, struct team_member *m, const char *model,
                             int64_t prompt_tokens, int64_t max_tokens, uint64_t now_usec,
                             struct team_reservation *res, uint64_t *retry_after_sec)
{
    const struct team_price *p;
    int64_t cost = 0;
    double need_tokens = 0;

    *res = (struct team_reservation){};
    if (model && *model && !team_model_allowed(m, model))
        return TEAM_MODEL_FORBIDDEN;

    team_roll_month(t, (int64_t)(now_usec / 1000000));
    if (max_tokens >= 0 && m->budget_micro_usd >= 0) {
        if (m->spent_micro_usd >= m->budget_micro_usd)
            return TEAM_OVER_BUDGET;
        if (m->spent_micro_usd + m->reserved_micro_usd >= m->budget_micro_usd) {
            *retry_after_sec = 1;
            return TEAM_BUDGET_RESERVED;
        }
    }

    if (m->rpm > 0) {
        bucket_refill(&m->requests, m->rpm, now_usec);
        if (m->requests.level < 1.0) {
            *retry_after_sec = bucket_wait(&m->requests, 1.0, m->rpm);
            return TEAM_RATE_REQUESTS;
        }
    }
    if (m->tpm > 0) {
        bucket_refill(&m->tokens, m->tpm, now_usec);
        need_tokens = (double)MIN(MAX(prompt_tokens, (int64_t)0), m->tpm);
        if (m->tokens.level < need_tokens || m->tokens.level <= 0) {
            *retry_after_sec = bucket_wait(&m->tokens, MAX(need_tokens, 1.0), m->tpm);
            return TEAM_RATE_TOKENS;
        }
    }

    if (max_tokens >= 0 && (p = team_price_for(t, model ? model : ""))) {
        struct team_usage u = {.input_tokens = prompt_tokens, .output_tokens = max_tokens};
        struct team_price dear = *p;

        /* The prompt may be written to the cache, which costs more than plain input. */
        dear.input = MAX(p->input, p->cache_write);
        cost = team_cost(&dear, &u);
    }
    if (m->rpm > 0)
        m->requests.level -= 1.0;
    if (m->tpm > 0)
        m->tokens.level -= need_tokens;
    m->reserved_micro_usd += cost;
    snprintf(res->member, sizeof res->member, "%s", m->name);
    res->cost_micro_usd = cost;
    res->tokens = (int64_t)need_tokens;
    res->active = true;
    return TEAM_OK;
}

void team_settle(struct team *t, struct team_reservation *res, int64_t cost_micro_usd,
                 int64_t tokens, uint64_t now_usec)
{
    struct team_member *m;

    if (!res->active)
        return;
    res->active = false;
    m = team_find(t, res->member);
    if (!m)
        return;
    m->reserved_micro_usd = MAX(m->reserved_micro_usd - res->cost_micro_usd, (int64_t)0);
    m->spent_micro_usd += cost_micro_usd;
    m->unstored_micro_usd += cost_micro_usd;
    if (m->tpm > 0) {
        bucket_refill(&m->tokens, m->tpm, now_usec);
        m->tokens.level -= (double)(tokens - res->tokens);
        if (m->tokens.level < -(double)m->tpm)
            m->tokens.level = -(double)m->tpm;
        if (m->tokens.level > (double)m->tpm)
            m->tokens.level = (double)m->tpm;
    }
}

void team_stored(struct team *t, const char *member, int64_t cost_micro_usd)
{
    struct team_member *m = member ? team_find(t, member) : NULL;

    if (m)
        m->unstored_micro_usd = MAX(m->unstored_micro_usd - cost_micro_usd, (int64_t)0);
}
