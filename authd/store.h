/* store.h: authd's durable state: upstream accounts with their secrets and cached access tokens,
 * model routes, settings, the routing generation and the usage ledger.
 *
 * struct store is opaque and the functions speak in domain terms, so a backend other than SQLite
 * (PostgreSQL, for several hosts) can implement the same header. Every function returns >= 0 on
 * success or a negative errno:
 *   -EINVAL  a name, value or record that the store refuses (checked before any write)
 *   -EEXIST  the name is taken
 *   -ENOENT  no such account, route or setting
 *   -EBUSY   the database stayed locked for longer than the busy timeout (5 s)
 *   -EUCLEAN the database is corrupt, or the file is not a database
 *   -EPROTONOSUPPORT  the database was written by a newer version of dualroute
 *   -ENOMEM, -ENOSPC, -EROFS, -EACCES, -EIO and other errnos from the file system
 * After a failure, store_last_error() says what went wrong, in words fit for a log line (never a
 * secret). A function that changes accounts, routes, settings or members bumps the generation in
 * the same transaction, so a reader that sees the new generation sees the change. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc.h" /* account names: ipc_account_name_is_valid() */
#include "macro.h"

struct secret;
struct store;

#define STORE_KEY_MAX 64       /* setting keys: [a-z0-9_.-]{1,64} */
#define STORE_MODEL_MAX 256    /* route aliases and targets: printable ASCII, no spaces */
#define STORE_VALUE_MAX 4096   /* setting values and account configs, in bytes */
#define STORE_SECRET_MAX 16384 /* a service-account key is about 2.3 KiB */

enum account_provider {
    ACCOUNT_PROVIDER_ANTHROPIC,
    ACCOUNT_PROVIDER_VERTEX,
    _ACCOUNT_PROVIDER_MAX,
    _ACCOUNT_PROVIDER_INVALID = -EINVAL,
};

enum account_state {
    ACCOUNT_STATE_OK,
    ACCOUNT_STATE_NEEDS_LOGIN,
    ACCOUNT_STATE_DISABLED,
    _ACCOUNT_STATE_MAX,
    _ACCOUNT_STATE_INVALID = -EINVAL,
};

/* "anthropic", "vertex"; NULL for a value out of range. */
const char *account_provider_to_string(enum account_provider p);
enum account_provider account_provider_from_string(const char *s);
/* "ok", "needs-login", "disabled"; NULL for a value out of range. */
const char *account_state_to_string(enum account_state st);
enum account_state account_state_from_string(const char *s);

struct account_record {
    char *name;
    enum account_provider provider;
    enum account_state state;
    char *config;          /* JSON object text: project, region, client_id, auth kind... */
    struct secret *secret; /* API key, refresh token or SA key; NULL if none, and in lists */
    bool has_secret;
    int64_t token_expires_usec; /* the cached access token's expiry, 0 if none is cached */
    int64_t created_usec;       /* CLOCK_REALTIME, microseconds */
    int64_t updated_usec;
};

/* Frees the record, its strings and its secret (wiped); accepts NULL; returns NULL. */
struct account_record *account_record_free(struct account_record *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct account_record *, account_record_free);
/* Frees a list from store_account_list(): an array ended by an entry whose name is NULL. */
struct account_record *account_record_list_free(struct account_record *list);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct account_record *, account_record_list_free);

struct map_entry {
    char *alias;
    char *target;
};

/* Frees a list from store_map_list(): an array ended by an entry whose alias is NULL. */
struct map_entry *map_entry_list_free(struct map_entry *list);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct map_entry *, map_entry_list_free);

/* One request in the usage ledger. Every pointer is borrowed for the duration of the call. */
struct usage_record {
    const char *request_id;      /* routerd's request id, unique in the ledger; NULL: none */
    int64_t time_usec;           /* CLOCK_REALTIME, microseconds */
    const char *member;          /* member name; NULL when there is none (single-user mode) */
    const char *endpoint;        /* "messages", "chat.completions", ... */
    const char *model_requested; /* as the client sent it */
    const char *model_upstream;  /* after mapping */
    const char *account;         /* NULL when the client's own key went upstream */
    int status;                  /* HTTP status returned to the client */
    int64_t input;
    int64_t output;
    int64_t cache_read;
    int64_t cache_write;
    int64_t latency_ms;
    int64_t ttfb_ms;
    int64_t cost_micro_usd;
};

struct store_error {
    char text[256];
};

/* Opens (creating it if needed) the database at path, or an in-memory one for ":memory:", and
 * brings its schema up to date, one transaction per migration. A new file is created 0600; an
 * existing database file, -wal or -shm that group or others may access is tightened to 0600.
 * Sets the process umask to 0077 for the duration of the call. On success *ret owns the new store.
 * On failure, when reterr is not NULL, reterr->text says why (a newer schema, a file that is not a
 * database...). */
int store_open_full(const char *path, struct store **ret, struct store_error *reterr);
/* store_open_full() without the error text. */
int store_open(const char *path, struct store **ret);
/* Finalizes every statement and closes the database; accepts NULL; returns NULL. */
struct store *store_free(struct store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct store *, store_free);

/* The reason for the last failure of a call on s ("" if none); valid until the next call. */
const char *store_last_error(const struct store *s);
/* Runs a full integrity check. Returns 0, or -EUCLEAN with the first problem in store_last_error.
 */
int store_check_integrity(struct store *s);
/* The schema version the database is at (after store_open, the newest this code knows). */
int store_schema_version(struct store *s);

/* Accounts. */

/* Adds an account in state "ok". config is a JSON object's text (NULL means "{}"); secret is
 * borrowed and may be NULL (an account that uses the GCE metadata server has none). -EEXIST if
 * the name is taken. */
int store_account_add(struct store *s, const char *name, enum account_provider provider,
                      const char *config, const struct secret *secret);
/* Reads one account, its secret included. On success *ret is a new record the caller frees with
 * account_record_free(). -ENOENT if there is no such account. */
int store_account_get(struct store *s, const char *name, struct account_record **ret);
/* Reads every account, sorted by name, without secrets. *ret is a new array ended by an entry
 * whose name is NULL, freed with account_record_list_free(); ret_n (may be NULL) gets its length.
 */
int store_account_list(struct store *s, struct account_record **ret, size_t *ret_n);
int store_account_set_state(struct store *s, const char *name, enum account_state state);
/* Replaces the JSON object text of the account's configuration. */
int store_account_set_config(struct store *s, const char *name, const char *config);
/* Replaces the account's secret (borrowed; NULL removes it) and drops its cached access token,
 * which the old secret obtained. */
int store_account_set_secret(struct store *s, const char *name, const struct secret *secret);
int store_account_remove(struct store *s, const char *name);

/* Caches an access token (borrowed; NULL drops it) for the account, until expires_usec
 * (CLOCK_REALTIME). Does not bump the generation: a token is not part of the routing snapshot. */
int store_token_put(struct store *s, const char *name, const struct secret *token,
                    int64_t expires_usec);
/* Reads the cached token. On success *ret_token is a new secret (caller frees) and
 * *ret_expires_usec its expiry. -ENOENT if there is no such account, -ENODATA if it has no
 * cached token. Expiry is the caller's business: an expired token is still returned. */
int store_token_get(struct store *s, const char *name, struct secret **ret_token,
                    int64_t *ret_expires_usec);

/* Routes and settings. */

/* Maps alias to target, replacing an existing mapping of alias. */
int store_map_set(struct store *s, const char *alias, const char *target);
/* -ENOENT if alias is not mapped. */
int store_map_unset(struct store *s, const char *alias);
/* Every mapping, sorted by alias. *ret is a new array ended by an entry whose alias is NULL, freed
 * with map_entry_list_free(); ret_n (may be NULL) gets its length. */
int store_map_list(struct store *s, struct map_entry **ret, size_t *ret_n);
/* Account routes: which account serves a model. model is an exact id, a prefix pattern ending
 * in '*', or "*"; account need not exist yet (routerd answers 503 for an account it cannot get a
 * credential for). Removing an account removes its routes. store_route_list() returns the routes
 * as map_entry pairs: alias is the model pattern, target the account; sorted by pattern. */
int store_route_set(struct store *s, const char *model, const char *account);
/* -ENOENT if model has no route. */
int store_route_unset(struct store *s, const char *model);
int store_route_list(struct store *s, struct map_entry **ret, size_t *ret_n);

/* On success *ret_value is a new string (caller frees). -ENOENT if key is not set. */
int store_setting_get(struct store *s, const char *key, char **ret_value);
/* Sets key to value; value NULL removes the key (-ENOENT if it was not set). */
int store_setting_set(struct store *s, const char *key, const char *value);
/* The generation: 1 in a new database, bumped by every change to accounts, routes or settings. */
int store_generation(struct store *s, uint64_t *ret_generation);

/* Usage ledger. */

/* Inserts n records in one transaction: all of them or none. A record whose request_id the ledger
 * holds already (from an earlier batch, or earlier in this one) is skipped, also across restarts;
 * *ret_stored (may be NULL) gets how many were written. */
int store_usage_insert(struct store *s, const struct usage_record *records, size_t n,
                       size_t *ret_stored);
/* store_usage_insert() without the count. */
int store_usage_insert_batch(struct store *s, const struct usage_record *records, size_t n);

enum usage_group {
    USAGE_GROUP_MEMBER,
    USAGE_GROUP_MODEL, /* the upstream model, which the cost was computed for */
    USAGE_GROUP_ACCOUNT,
    USAGE_GROUP_DAY, /* UTC, "YYYY-MM-DD" */
    _USAGE_GROUP_MAX,
    _USAGE_GROUP_INVALID = -EINVAL,
};

/* "member", "model", "account", "day"; NULL for a value out of range. */
const char *usage_group_to_string(enum usage_group g);
enum usage_group usage_group_from_string(const char *s);

/* One group of store_usage_query(). */
struct usage_row {
    char *key; /* the group's value; NULL for requests with no member or account */
    int64_t requests;
    int64_t input;
    int64_t output;
    int64_t cache_read;
    int64_t cache_write;
    int64_t cost_micro_usd;
    int64_t errors; /* status >= 400 */
};

/* Sums the ledger's records with since_usec <= time < until_usec (and member == member when
 * member is not NULL) by group, sorted by key (NULL first). *ret is a new array of *ret_n rows
 * (possibly 0), freed with usage_rows_free(). */
int store_usage_query(struct store *s, enum usage_group group, int64_t since_usec,
                      int64_t until_usec, const char *member, struct usage_row **ret,
                      size_t *ret_n);
void usage_rows_free(struct usage_row *rows, size_t n);

/* Members: team members and the SHA-256 of their router key (the key itself is never stored). */

#define MEMBER_KEY_SHA256_LEN 64 /* lowercase hex */
#define MEMBER_MODELS_MAX 64     /* model patterns per member */

struct member_record {
    char *name;                                 /* [a-z0-9_-]{1,64}, as account names */
    char key_sha256[MEMBER_KEY_SHA256_LEN + 1]; /* lowercase hex */
    int64_t budget_micro_usd;                   /* monthly; -1: no budget */
    int64_t rate_limit_rpm;                     /* requests per minute; 0: no limit */
    int64_t rate_limit_tpm;                     /* tokens per minute; 0: no limit */
    char *models;            /* JSON array of model patterns; NULL: every model */
    int64_t created_usec;    /* CLOCK_REALTIME */
    int64_t spent_micro_usd; /* the ledger's cost for this member since the lists's since_usec */
};

/* Frees the record and its strings; accepts NULL; returns NULL. */
struct member_record *member_record_free(struct member_record *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct member_record *, member_record_free);
/* Frees a list from store_member_list(): an array ended by an entry whose name is NULL. */
struct member_record *member_record_list_free(struct member_record *list);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct member_record *, member_record_list_free);

/* Adds a member from m's name, key_sha256, limits and models (created_usec and spent are ignored).
 * -EEXIST if the name (or the key) is taken. Bumps the generation. */
int store_member_add(struct store *s, const struct member_record *m);
/* Replaces the member's budget, rate limits and models with m's. -ENOENT if there is no such
 * member. Bumps the generation. */
int store_member_set_limits(struct store *s, const struct member_record *m);
/* Replaces the member's key hash. -ENOENT if there is no such member. Bumps the generation. */
int store_member_set_key(struct store *s, const char *name, const char *key_sha256);
/* Removes the member; the ledger keeps its rows. -ENOENT if there is no such member. Bumps the
 * generation. */
int store_member_remove(struct store *s, const char *name);
/* Reads one member, with its spend since since_usec. -ENOENT if there is no such member. */
int store_member_get(struct store *s, const char *name, int64_t since_usec,
                     struct member_record **ret);
/* Reads every member, sorted by name, each with its spend since since_usec. *ret is a new array
 * ended by an entry whose name is NULL; ret_n (may be NULL) gets its length. */
int store_member_list(struct store *s, int64_t since_usec, struct member_record **ret,
                      size_t *ret_n);
