/* store.c: authd's durable state, kept in SQLite.
 *
 * One connection, opened at start-up, in WAL mode with synchronous=FULL: a commit is on disk
 * (the WAL is fsynced) before the function returns, so neither kill -9 nor a power cut loses an
 * account, a route or a usage batch that was acknowledged. foreign_keys is on and busy_timeout is
 * 5 s; every write runs in a BEGIN IMMEDIATE transaction, which takes the write lock up front, so a
 * read-modify-write never fails half-way on a lock upgrade.
 *
 * Every query is a prepared statement held in struct store (stmt_sql[] below), prepared once when
 * the store opens; nothing else in authd writes SQL. A statement in use is reset, and its bindings
 * cleared, when the scope that took it ends (_cleanup_stmt_), so no statement keeps a read
 * transaction open. The schema is versioned with PRAGMA user_version: migrations[i] takes the
 * database from version i to i + 1, in one transaction each, and a database newer than this code
 * is refused rather than guessed at. Providers and states are rows of small lookup tables that
 * accounts reference, so a new provider (bedrock) is an INSERT in a migration, not a table rebuild.
 *
 * Secrets (API keys, refresh tokens, service-account keys, access tokens) are stored as BLOBs,
 * byte for byte, and come back as struct secret, which the caller wipes. secure_delete is on, so a
 * replaced secret is zeroed in the database file; SQLite's page cache and the WAL (until the next
 * checkpoint) may still hold copies, and we do not claim otherwise: the file is 0600 and authd's
 * memory is not dumpable.
 *
 * File modes: the database is created 0600 under umask 0077, and SQLite gives the -wal and -shm
 * files the main file's mode. store_open() checks all three and tightens any that group or others
 * may access (a file copied in by hand, an old umask). It does not change ownership. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "secret.h"
#include "store.h"
#include "util.h"

#define STORE_BUSY_TIMEOUT_MS 5000

/* Schema migrations. migrations[i] brings user_version i to i + 1. Append only: never edit one that
 * has shipped. */
static const char *const migrations[] = {
    /* 1: accounts, routes, settings, the generation and the usage ledger. */
    "CREATE TABLE providers (name TEXT PRIMARY KEY NOT NULL) STRICT;\n"
    "INSERT INTO providers (name) VALUES ('anthropic'), ('vertex');\n"
    "CREATE TABLE account_states (name TEXT PRIMARY KEY NOT NULL) STRICT;\n"
    "INSERT INTO account_states (name) VALUES ('ok'), ('needs-login'), ('disabled');\n"
    "CREATE TABLE meta (\n"
    "    id INTEGER PRIMARY KEY CHECK (id = 1),\n"
    "    generation INTEGER NOT NULL\n"
    ") STRICT;\n"
    "INSERT INTO meta (id, generation) VALUES (1, 1);\n"
    "CREATE TABLE accounts (\n"
    "    name TEXT PRIMARY KEY NOT NULL\n"
    "        CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^a-z0-9_-]*'),\n"
    "    provider TEXT NOT NULL REFERENCES providers (name),\n"
    "    state TEXT NOT NULL REFERENCES account_states (name),\n"
    "    config TEXT NOT NULL\n"
    "        CHECK (CASE WHEN json_valid(config) THEN json_type(config) = 'object' ELSE 0 END),\n"
    "    secret BLOB,\n"
    "    token BLOB,\n"
    "    token_expires INTEGER,\n"
    "    created INTEGER NOT NULL,\n"
    "    updated INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE routes (\n"
    "    alias TEXT PRIMARY KEY NOT NULL,\n"
    "    target TEXT NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE settings (\n"
    "    key TEXT PRIMARY KEY NOT NULL,\n"
    "    value TEXT NOT NULL\n"
    ") STRICT;\n"
    /* Times are CLOCK_REALTIME microseconds. No foreign keys: a ledger row outlives the account
     * or member it names. */
    "CREATE TABLE usage (\n"
    "    id INTEGER PRIMARY KEY,\n"
    "    time INTEGER NOT NULL,\n"
    "    member TEXT,\n"
    "    endpoint TEXT NOT NULL,\n"
    "    model_requested TEXT NOT NULL,\n"
    "    model_upstream TEXT NOT NULL,\n"
    "    account TEXT,\n"
    "    status INTEGER NOT NULL,\n"
    "    input INTEGER NOT NULL,\n"
    "    output INTEGER NOT NULL,\n"
    "    cache_read INTEGER NOT NULL,\n"
    "    cache_write INTEGER NOT NULL,\n"
    "    latency_ms INTEGER NOT NULL,\n"
    "    ttfb_ms INTEGER NOT NULL,\n"
    "    cost_micro_usd INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE INDEX usage_time ON usage (time);\n"
    "CREATE INDEX usage_member_time ON usage (member, time);\n",
    /* 2: which account serves which models. Removing an account removes its routes. */
    "CREATE TABLE account_routes (\n"
    "    model TEXT PRIMARY KEY NOT NULL,\n"
    "    account TEXT NOT NULL\n"
    ") STRICT;\n"
    "CREATE TRIGGER account_routes_follow AFTER DELETE ON accounts BEGIN\n"
    "    DELETE FROM account_routes WHERE account = old.name;\n"
    "END;\n",
    /* 3: team members (the SHA-256 of their key, never the key) and the ledger's request ids, so
     * a batch re-sent after a lost reply is skipped even across restarts. Old rows have no id;
     * NULLs do not collide in a UNIQUE index. */
    "CREATE TABLE members (\n"
    "    name TEXT PRIMARY KEY NOT NULL\n"
    "        CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^a-z0-9_-]*'),\n"
    "    key_sha256 TEXT NOT NULL UNIQUE\n"
    "        CHECK (length(key_sha256) = 64 AND key_sha256 NOT GLOB '*[^0-9a-f]*'),\n"
    "    budget INTEGER CHECK (budget IS NULL OR budget >= 0),\n"
    "    rpm INTEGER CHECK (rpm IS NULL OR rpm > 0),\n"
    "    tpm INTEGER CHECK (tpm IS NULL OR tpm > 0),\n"
    "    models TEXT\n"
    "        CHECK (models IS NULL OR\n"
    "               CASE WHEN json_valid(models) THEN json_type(models) = 'array' ELSE 0 END),\n"
    "    created INTEGER NOT NULL\n"
    ") STRICT;\n"
    "ALTER TABLE usage ADD COLUMN request_id TEXT;\n"
    "CREATE UNIQUE INDEX usage_request_id ON usage (request_id);\n",
};

enum stmt {
    STMT_BEGIN_IMMEDIATE,
    STMT_COMMIT,
    STMT_ROLLBACK,
    STMT_USER_VERSION,
    STMT_INTEGRITY_CHECK,
    STMT_GENERATION_GET,
    STMT_GENERATION_BUMP,
    STMT_ACCOUNT_INSERT,
    STMT_ACCOUNT_GET,
    STMT_ACCOUNT_LIST,
    STMT_ACCOUNT_SET_STATE,
    STMT_ACCOUNT_SET_CONFIG,
    STMT_ACCOUNT_SET_SECRET,
    STMT_ACCOUNT_DELETE,
    STMT_TOKEN_PUT,
    STMT_TOKEN_GET,
    STMT_ROUTE_UPSERT,
    STMT_ROUTE_DELETE,
    STMT_ROUTE_LIST,
    STMT_ACCOUNT_ROUTE_UPSERT,
    STMT_ACCOUNT_ROUTE_DELETE,
    STMT_ACCOUNT_ROUTE_LIST,
    STMT_SETTING_GET,
    STMT_SETTING_UPSERT,
    STMT_SETTING_DELETE,
    STMT_USAGE_INSERT,
    STMT_USAGE_QUERY,
    STMT_MEMBER_INSERT,
    STMT_MEMBER_SET_LIMITS,
    STMT_MEMBER_SET_KEY,
    STMT_MEMBER_DELETE,
    STMT_MEMBER_GET,
    STMT_MEMBER_LIST,
    _STMT_MAX,
};

static const char *const stmt_sql[_STMT_MAX] = {
    [STMT_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_USER_VERSION] = "PRAGMA user_version",
    [STMT_INTEGRITY_CHECK] = "PRAGMA integrity_check",
    [STMT_GENERATION_GET] = "SELECT generation FROM meta WHERE id = 1",
    [STMT_GENERATION_BUMP] = "UPDATE meta SET generation = generation + 1 WHERE id = 1",
    [STMT_ACCOUNT_INSERT] = "INSERT INTO accounts (name, provider, state, config, secret, "
                            "created, updated) VALUES (?1, ?2, 'ok', ?3, ?4, ?5, ?5)",
    [STMT_ACCOUNT_GET] = "SELECT name, provider, state, config, secret, token_expires, created, "
                         "updated FROM accounts WHERE name = ?1",
    [STMT_ACCOUNT_LIST] = "SELECT name, provider, state, config, secret IS NOT NULL, "
                          "token_expires, created, updated FROM accounts ORDER BY name",
    [STMT_ACCOUNT_SET_STATE] = "UPDATE accounts SET state = ?2, updated = ?3 WHERE name = ?1",
    [STMT_ACCOUNT_SET_CONFIG] = "UPDATE accounts SET config = ?2, updated = ?3 WHERE name = ?1",
    [STMT_ACCOUNT_SET_SECRET] = "UPDATE accounts SET secret = ?2, token = NULL, token_expires = "
                                "NULL, updated = ?3 WHERE name = ?1",
    [STMT_ACCOUNT_DELETE] = "DELETE FROM accounts WHERE name = ?1",
    [STMT_TOKEN_PUT] = "UPDATE accounts SET token = ?2, token_expires = ?3 WHERE name = ?1",
    [STMT_TOKEN_GET] = "SELECT token, token_expires FROM accounts WHERE name = ?1",
    [STMT_ROUTE_UPSERT] = "INSERT INTO routes (alias, target) VALUES (?1, ?2) "
                          "ON CONFLICT (alias) DO UPDATE SET target = excluded.target",
    [STMT_ROUTE_DELETE] = "DELETE FROM routes WHERE alias = ?1",
    [STMT_ROUTE_LIST] = "SELECT alias, target FROM routes ORDER BY alias",
    [STMT_ACCOUNT_ROUTE_UPSERT] = "INSERT INTO account_routes (model, account) VALUES (?1, ?2) "
                                  "ON CONFLICT (model) DO UPDATE SET account = excluded.account",
    [STMT_ACCOUNT_ROUTE_DELETE] = "DELETE FROM account_routes WHERE model = ?1",
    [STMT_ACCOUNT_ROUTE_LIST] = "SELECT model, account FROM account_routes ORDER BY model",
    [STMT_SETTING_GET] = "SELECT value FROM settings WHERE key = ?1",
    [STMT_SETTING_UPSERT] = "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [STMT_SETTING_DELETE] = "DELETE FROM settings WHERE key = ?1",
    [STMT_USAGE_INSERT] = "INSERT INTO usage (time, member, endpoint, model_requested, "
                          "model_upstream, account, status, input, output, cache_read, "
                          "cache_write, latency_ms, ttfb_ms, cost_micro_usd, request_id) VALUES "
                          "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) "
                          "ON CONFLICT DO NOTHING",
    /* ?1 since, ?2 until (microseconds), ?3 member or NULL, ?4 the usage_group. */
    [STMT_USAGE_QUERY] = "SELECT CASE ?4 WHEN 0 THEN member WHEN 1 THEN model_upstream "
                         "WHEN 2 THEN account "
                         "ELSE strftime('%Y-%m-%d', time / 1000000, 'unixepoch') END AS k, "
                         "count(*), sum(input), sum(output), sum(cache_read), "
                         "sum(cache_write), sum(cost_micro_usd), sum(status >= 400) "
                         "FROM usage WHERE time >= ?1 AND time < ?2 "
                         "AND (?3 IS NULL OR member = ?3) GROUP BY k ORDER BY k",
    [STMT_MEMBER_INSERT] = "INSERT INTO members (name, key_sha256, budget, rpm, tpm, models, "
                           "created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [STMT_MEMBER_SET_LIMITS] = "UPDATE members SET budget = ?2, rpm = ?3, tpm = ?4, models = ?5 "
                               "WHERE name = ?1",
    [STMT_MEMBER_SET_KEY] = "UPDATE members SET key_sha256 = ?2 WHERE name = ?1",
    [STMT_MEMBER_DELETE] = "DELETE FROM members WHERE name = ?1",
    /* ?2: the start of the spend window, in microseconds. */
    [STMT_MEMBER_GET] = "SELECT name, key_sha256, budget, rpm, tpm, models, created, "
                        "(SELECT coalesce(sum(u.cost_micro_usd), 0) FROM usage u "
                        "WHERE u.member = m.name AND u.time >= ?2) "
                        "FROM members m WHERE name = ?1",
    [STMT_MEMBER_LIST] = "SELECT name, key_sha256, budget, rpm, tpm, models, created, "
                         "(SELECT coalesce(sum(u.cost_micro_usd), 0) FROM usage u "
                         "WHERE u.member = m.name AND u.time >= ?1) "
                         "FROM members m ORDER BY name",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmts[_STMT_MAX];
    char error[256];
};

static const char *const provider_names[_ACCOUNT_PROVIDER_MAX] = {
    [ACCOUNT_PROVIDER_ANTHROPIC] = "anthropic",
    [ACCOUNT_PROVIDER_VERTEX] = "vertex",
};

static const char *const state_names[_ACCOUNT_STATE_MAX] = {
    [ACCOUNT_STATE_OK] = "ok",
    [ACCOUNT_STATE_NEEDS_LOGIN] = "needs-login",
    [ACCOUNT_STATE_DISABLED] = "disabled",
};

const char *account_provider_to_string(enum account_provider p)
{
    if (p < 0 || p >= _ACCOUNT_PROVIDER_MAX)
        return NULL;
    return provider_names[p];
}

enum account_provider account_provider_from_string(const char *s)
{
    for (size_t i = 0; s && i < ELEMENTSOF(provider_names); i++)
        if (streq(s, provider_names[i]))
            return (enum account_provider)i;
    return _ACCOUNT_PROVIDER_INVALID;
}

const char *account_state_to_string(enum account_state st)
{
    if (st < 0 || st >= _ACCOUNT_STATE_MAX)
        return NULL;
    return state_names[st];
}

enum account_state account_state_from_string(const char *s)
{
    for (size_t i = 0; s && i < ELEMENTSOF(state_names); i++)
        if (streq(s, state_names[i]))
            return (enum account_state)i;
    return _ACCOUNT_STATE_INVALID;
}

static bool string_is_made_of(const char *s, size_t max, const char *extra)
{
    size_t n;

    if (!s)
        return false;
    n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr(extra, c)))
            return false;
    }
    return true;
}

static bool setting_key_is_valid(const char *key)
{
    return string_is_made_of(key, STORE_KEY_MAX, "_.-");
}

/* Model names and patterns: "gpt-4o", "claude-sonnet-4-5@20250929", "gpt-3.5*". */
static bool model_name_is_valid(const char *s)
{
    size_t n;

    if (!s)
        return false;
    n = strlen(s);
    if (n == 0 || n > STORE_MODEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static bool text_is_valid(const char *s, size_t max)
{
    return s && strlen(s) <= max && utf8_is_valid(s, strlen(s));
}

/* Errors */

static int errno_from_sqlite(sqlite3 *db, int rc)
{
    int e;

    switch (rc) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return -EEXIST;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_TOOBIG:
        return -E2BIG;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EUCLEAN;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
        return -EINVAL;
    }
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return -EINVAL; /* CHECK, NOT NULL, FOREIGN KEY: a value the schema refuses */
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EUCLEAN;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        e = db ? sqlite3_system_errno(db) : 0;
        return e > 0 ? -e : -EIO;
    }
    return -EIO;
}

static int store_failf(struct store *s, int r, const char *fmt, ...) _printf_(3, 4);
static int store_failf(struct store *s, int r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    return r;
}

/* Records SQLite's message for rc and returns it as a negative errno. */
static int store_fail(struct store *s, int rc)
{
    int r = errno_from_sqlite(s->db, rc);

    if (r == 0)
        r = -EIO;
    return store_failf(s, r, "%s", s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

const char *store_last_error(const struct store *s)
{
    return s ? s->error : "";
}

/* Statements and transactions */

static void stmt_resetp(sqlite3_stmt **st)
{
    if (*st) {
        sqlite3_reset(*st);
        sqlite3_clear_bindings(*st);
    }
}
#define _cleanup_stmt_ _cleanup_(stmt_resetp)

/* Steps a statement that returns no row (or whose rows are not wanted). */
static int stmt_exec(struct store *s, sqlite3_stmt *st)
{
    int rc;

    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_fail(s, rc);
    return 0;
}

static int stmt_run(struct store *s, enum stmt id)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[id];

    return stmt_exec(s, st);
}

static int bind_text(struct store *s, sqlite3_stmt *st, int i, const char *v)
{
    int rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);

    return rc == SQLITE_OK ? 0 : store_fail(s, rc);
}

static int bind_int64(struct store *s, sqlite3_stmt *st, int i, int64_t v)
{
    int rc = sqlite3_bind_int64(st, i, v);

    return rc == SQLITE_OK ? 0 : store_fail(s, rc);
}

/* Binds the secret's bytes without a copy: the statement is reset before the secret can go. A
 * zero-length secret is stored as an empty BLOB, not as NULL. */
static int bind_secret(struct store *s, sqlite3_stmt *st, int i, const struct secret *v)
{
    int rc =
        v ? sqlite3_bind_blob64(st, i, v->data, v->len, SQLITE_STATIC) : sqlite3_bind_null(st, i);

    return rc == SQLITE_OK ? 0 : store_fail(s, rc);
}

/* A copy of a BLOB column as a secret; *ret is NULL when the column is NULL. */
static int column_secret(sqlite3_stmt *st, int i, struct secret **ret)
{
    const void *p;
    int n;

    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
        *ret = NULL;
        return 0;
    }
    p = sqlite3_column_blob(st, i);
    n = sqlite3_column_bytes(st, i);
    *ret = secret_new(n > 0 ? p : "", (size_t)n);
    return *ret ? 0 : -ENOMEM;
}

static int column_strdup(sqlite3_stmt *st, int i, char **ret)
{
    const unsigned char *p = sqlite3_column_text(st, i);

    if (!p) {
        *ret = NULL;
        return sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM ? -ENOMEM : 0;
    }
    *ret = strdup((const char *)p);
    return *ret ? 0 : -ENOMEM;
}

static void tx_rollbackp(struct store **p)
{
    struct store *s = *p;
    char saved[sizeof s->error];

    /* Some errors (I/O, a full disk) end the transaction themselves. Keep the message of the
     * failure that led here rather than ROLLBACK's own. */
    if (!s || sqlite3_get_autocommit(s->db))
        return;
    memcpy(saved, s->error, sizeof saved);
    (void)stmt_run(s, STMT_ROLLBACK);
    memcpy(s->error, saved, sizeof saved);
}
/* A transaction in progress: rolled back when the scope ends unless tx_commit() took it. */
#define _cleanup_tx_ _cleanup_(tx_rollbackp)

static int tx_begin(struct store *s, struct store **ret_tx)
{
    int r;

    r = stmt_run(s, STMT_BEGIN_IMMEDIATE);
    if (r < 0)
        return r;
    *ret_tx = s;
    return 0;
}

/* Commits, or rolls back on failure; either way the transaction is over. */
static int tx_commit(struct store **tx)
{
    struct store *s = TAKE_PTR(*tx);
    int r;

    r = stmt_run(s, STMT_COMMIT);
    if (r < 0 && !sqlite3_get_autocommit(s->db))
        (void)stmt_run(s, STMT_ROLLBACK);
    return r;
}

static int generation_bump(struct store *s)
{
    return stmt_run(s, STMT_GENERATION_BUMP);
}

/* Bumps the generation, then commits; on failure the transaction stays open and the caller's
 * _cleanup_tx_ rolls it back. */
static int tx_commit_bumped(struct store **tx)
{
    int r;

    r = generation_bump(*tx);
    if (r < 0)
        return r;
    return tx_commit(tx);
}

/* Runs an UPDATE or DELETE on the row named by ?1 inside the caller's transaction; -ENOENT when it
 * matched nothing. */
static int stmt_exec_one(struct store *s, sqlite3_stmt *st, const char *what, const char *name)
{
    int r;

    r = stmt_exec(s, st);
    if (r < 0)
        return r;
    if (sqlite3_changes(s->db) == 0)
        return store_failf(s, -ENOENT, "No %s '%s'", what, name);
    return 0;
}

/* Steps a statement that reads the one row named name; -ENOENT "No what 'name'" when there is
 * none. */
static int stmt_step_row(struct store *s, sqlite3_stmt *st, const char *what, const char *name)
{
    int rc;

    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return store_failf(s, -ENOENT, "No %s '%s'", what, name);
    if (rc != SQLITE_ROW)
        return store_fail(s, rc);
    return 0;
}

/* Makes room for entry n of a list that ends in a zeroed entry: doubles *allocated (zeroing the
 * new half) when n + 1 would not fit. Returns the list, moved or not, or NULL when out of memory
 * (the old list is then untouched and still the caller's). */
static void *list_reserve(void *list, size_t *allocated, size_t n, size_t size)
{
    char *l;

    if (n + 1 < *allocated)
        return list;
    l = reallocarray(list, *allocated * 2, size);
    if (!l)
        return NULL;
    memset(l + *allocated * size, 0, *allocated * size);
    *allocated *= 2;
    return l;
}

/* Opening and migrations */

/* Tightens path to 0600 if group or others have any access. A missing file is fine. */
static int file_make_private(struct store *s, const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return store_failf(s, negative_errno(), "Cannot stat '%s': %m", path);
    }
    if (S_ISLNK(st.st_mode)) /* SQLite would refuse it too (SQLITE_OPEN_NOFOLLOW) */
        return store_failf(s, -ELOOP, "'%s' is a symbolic link", path);
    if (!S_ISREG(st.st_mode))
        return store_failf(s, -EINVAL, "'%s' is not a regular file", path);
    if ((st.st_mode & 07077) == 0)
        return 0;
    if (chmod(path, st.st_mode & 0700) < 0)
        return store_failf(s, negative_errno(), "Cannot make '%s' private: %m", path);
    return 0;
}

static int files_make_private(struct store *s, const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    _cleanup_free_ char *p = NULL;
    int r;

    for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
        p = mfree(p);
        if (asprintf(&p, "%s%s", path, suffixes[i]) < 0)
            return -ENOMEM;
        r = file_make_private(s, p);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Creates the file 0600 when it does not exist yet, so SQLite never creates it with a looser
 * mode, and refuses a symlink. */
static int file_create_private(struct store *s, const char *path)
{
    _cleanup_close_ int fd = -1;

    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return store_failf(s, negative_errno(), "Cannot open '%s': %m", path);
    return 0;
}

/* Runs each statement of sql, a constant of this file (a pragma, a migration script), in turn.
 * Rows are ignored. Used only while opening, before stmts[] can be prepared. */
static int script_run(struct store *s, const char *sql)
{
    const char *tail = sql;
    int rc;

    while (*tail) {
        sqlite3_stmt *st = NULL;

        rc = sqlite3_prepare_v2(s->db, tail, -1, &st, &tail);
        if (rc != SQLITE_OK)
            return store_fail(s, rc);
        if (!st) /* white space or a comment */
            continue;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return store_fail(s, rc);
    }
    return 0;
}

static int user_version_get(struct store *s, int *ret)
{
    sqlite3_stmt *st = NULL;
    int rc, v;

    /* Prepared here rather than taken from stmts[]: it runs before the statements that need the
     * schema can be prepared. */
    rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc);
    rc = sqlite3_step(st);
    v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return store_fail(s, rc);
    *ret = v;
    return 0;
}

static int migrate(struct store *s)
{
    char sql[64];
    int r, v = 0;

    for (;;) {
        r = script_run(s, "BEGIN IMMEDIATE");
        if (r < 0)
            return r;
        /* Read inside the write lock: another process may have migrated while we waited. */
        r = user_version_get(s, &v);
        if (r < 0)
            goto rollback;
        if (v < 0 || (size_t)v > ELEMENTSOF(migrations)) {
            r = store_failf(s, -EPROTONOSUPPORT,
                            "The database is at schema version %d, newer than this dualroute "
                            "(version %zu): upgrade dualroute, or restore the backup made before "
                            "the upgrade",
                            v, ELEMENTSOF(migrations));
            goto rollback;
        }
        if ((size_t)v == ELEMENTSOF(migrations))
            return script_run(s, "COMMIT");
        r = script_run(s, migrations[v]);
        if (r < 0) {
            store_failf(s, r, "Migration to schema version %d failed: %s", v + 1,
                        sqlite3_errmsg(s->db));
            goto rollback;
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        r = script_run(s, sql);
        if (r < 0)
            goto rollback;
        r = script_run(s, "COMMIT");
        if (r < 0)
            goto rollback;
    }

rollback:
    if (!sqlite3_get_autocommit(s->db))
        (void)script_run(s, "ROLLBACK");
    return r;
}

static int store_setup(struct store *s, const char *path, bool in_memory)
{
    const unsigned char *mode;
    sqlite3_stmt *st = NULL;
    int rc, r;

    if (!in_memory) {
        r = files_make_private(s, path);
        if (r < 0)
            return r;
        r = file_create_private(s, path);
        if (r < 0)
            return r;
    }

    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc);
    sqlite3_extended_result_codes(s->db, 1);
    rc = sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK)
        return store_fail(s, rc);

    /* The first statement that reads the file: a file that is not a database fails here. */
    rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store_fail(s, rc);
    rc = sqlite3_step(st);
    mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    if (!mode)
        r = store_fail(s, rc);
    else if (!in_memory && strcasecmp((const char *)mode, "wal") != 0)
        r = store_failf(s, -EIO, "Cannot use WAL mode (got '%s')", (const char *)mode);
    else
        r = 0;
    sqlite3_finalize(st);
    if (r < 0)
        return r;

    r = script_run(s, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; "
                      "PRAGMA secure_delete = ON");
    if (r < 0)
        return r;

    r = migrate(s);
    if (r < 0)
        return r;

    for (size_t i = 0; i < _STMT_MAX; i++) {
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[i],
                                NULL);
        if (rc != SQLITE_OK)
            return store_fail(s, rc);
    }

    /* SQLite has created -wal and -shm by now; they should have the main file's mode. */
    if (!in_memory) {
        r = files_make_private(s, path);
        if (r < 0)
            return r;
    }
    return 0;
}

int store_open_full(const char *path, struct store **ret, struct store_error *reterr)
{
    _cleanup_(store_freep) struct store *s = NULL;
    bool in_memory;
    mode_t old_umask;
    int r;

    assert(path);
    assert(ret);

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;

    in_memory = streq(path, ":memory:");
    if (!in_memory && (path[0] == '\0' || startswith(path, "file:"))) {
        r = store_failf(s, -EINVAL, "Not a database path: '%s'", path);
    } else {
        old_umask = umask(0077);
        r = store_setup(s, path, in_memory);
        umask(old_umask);
    }
    if (r < 0) {
        if (reterr)
            snprintf(reterr->text, sizeof reterr->text, "%s", s->error);
        return r;
    }
    s->error[0] = '\0';
    *ret = TAKE_PTR(s);
    return 0;
}

int store_open(const char *path, struct store **ret)
{
    return store_open_full(path, ret, NULL);
}

struct store *store_free(struct store *s)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < _STMT_MAX; i++)
        sqlite3_finalize(s->stmts[i]);
    /* sqlite3_close_v2() never fails for a busy statement: every one is finalized above. */
    sqlite3_close_v2(s->db);
    free(s);
    return NULL;
}

int store_check_integrity(struct store *s)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_INTEGRITY_CHECK];
    const unsigned char *msg;
    int rc;

    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return store_fail(s, rc);
    msg = sqlite3_column_text(st, 0);
    if (!msg || strcmp((const char *)msg, "ok") != 0)
        return store_failf(s, -EUCLEAN, "Integrity check failed: %s",
                           msg ? (const char *)msg : "(no answer)");
    return 0;
}

int store_schema_version(struct store *s)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_USER_VERSION];
    int rc;

    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return store_fail(s, rc);
    return sqlite3_column_int(st, 0);
}

int store_generation(struct store *s, uint64_t *ret_generation)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_GENERATION_GET];
    int rc;

    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? store_failf(s, -EUCLEAN, "No generation row")
                                 : store_fail(s, rc);
    *ret_generation = (uint64_t)sqlite3_column_int64(st, 0);
    return 0;
}

/* Accounts */

static int check_account_name(struct store *s, const char *name)
{
    if (!ipc_account_name_is_valid(name))
        return store_failf(s, -EINVAL, "Invalid account name (allowed: [a-z0-9_-]{1,64})");
    return 0;
}

static int check_config(struct store *s, const char *config)
{
    if (!text_is_valid(config, STORE_VALUE_MAX))
        return store_failf(s, -EINVAL, "Invalid account configuration (UTF-8, at most %d bytes)",
                           STORE_VALUE_MAX);
    return 0;
}

static int check_secret(struct store *s, const struct secret *secret)
{
    if (secret && secret->len > STORE_SECRET_MAX)
        return store_failf(s, -E2BIG, "Secret longer than %d bytes", STORE_SECRET_MAX);
    return 0;
}

int store_account_add(struct store *s, const char *name, enum account_provider provider,
                      const char *config, const struct secret *secret)
{
    _cleanup_tx_ struct store *tx = NULL;
    int r;

    if (!config)
        config = "{}";
    r = check_account_name(s, name);
    if (r < 0)
        return r;
    if (!account_provider_to_string(provider))
        return store_failf(s, -EINVAL, "Invalid provider %d", (int)provider);
    r = check_config(s, config);
    if (r < 0)
        return r;
    r = check_secret(s, secret);
    if (r < 0)
        return r;

    r = tx_begin(s, &tx);
    if (r < 0)
        return r;
    {
        _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_ACCOUNT_INSERT];

        if ((r = bind_text(s, st, 1, name)) < 0 ||
            (r = bind_text(s, st, 2, account_provider_to_string(provider))) < 0 ||
            (r = bind_text(s, st, 3, config)) < 0 || (r = bind_secret(s, st, 4, secret)) < 0 ||
            (r = bind_int64(s, st, 5, (int64_t)now_realtime_usec())) < 0)
            return r;
        r = stmt_exec(s, st);
        if (r == -EEXIST)
            return store_failf(s, r, "Account '%s' exists already", name);
        if (r == -EINVAL)
            return store_failf(s, r, "Invalid configuration for account '%s': %s", name,
                               "not a JSON object");
        if (r < 0)
            return r;
    }
    return tx_commit_bumped(&tx);
}

/* Fills a from a row of STMT_ACCOUNT_GET or STMT_ACCOUNT_LIST (the same columns, except that
 * column 4 is the secret in one and "has a secret" in the other). */
static int account_from_row(sqlite3_stmt *st, bool with_secret, struct account_record *a)
{
    int r;

    r = column_strdup(st, 0, &a->name);
    if (r < 0 || !a->name)
        return r < 0 ? r : -EUCLEAN;
    a->provider = account_provider_from_string((const char *)sqlite3_column_text(st, 1));
    a->state = account_state_from_string((const char *)sqlite3_column_text(st, 2));
    if (a->provider < 0 || a->state < 0)
        return -EUCLEAN; /* a provider or state from a newer dualroute */
    r = column_strdup(st, 3, &a->config);
    if (r < 0 || !a->config)
        return r < 0 ? r : -EUCLEAN;
    if (with_secret) {
        r = column_secret(st, 4, &a->secret);
        if (r < 0)
            return r;
        a->has_secret = a->secret != NULL;
    } else
        a->has_secret = sqlite3_column_int(st, 4);
    a->token_expires_usec = sqlite3_column_int64(st, 5);
    a->created_usec = sqlite3_column_int64(st, 6);
    a->updated_usec = sqlite3_column_int64(st, 7);
    return 0;
}

static void account_record_done(struct account_record *a)
{
    free(a->name);
    free(a->config);
    secret_free(a->secret);
}

struct account_record *account_record_free(struct account_record *a)
{
    if (!a)
        return NULL;
    account_record_done(a);
    free(a);
    return NULL;
}

struct account_record *account_record_list_free(struct account_record *list)
{
    if (!list)
        return NULL;
    for (struct account_record *a = list; a->name; a++)
        account_record_done(a);
    free(list);
    return NULL;
}

int store_account_get(struct store *s, const char *name, struct account_record **ret)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_ACCOUNT_GET];
    _cleanup_(account_record_freep) struct account_record *a = NULL;
    int r;

    r = check_account_name(s, name);
    if (r < 0)
        return r;
    r = bind_text(s, st, 1, name);
    if (r < 0)
        return r;
    r = stmt_step_row(s, st, "account", name);
    if (r < 0)
        return r;
    a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    r = account_from_row(st, true, a);
    if (r < 0)
        return store_failf(s, r, "Cannot read account '%s'", name);
    *ret = TAKE_PTR(a);
    return 0;
}

int store_account_list(struct store *s, struct account_record **ret, size_t *ret_n)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_ACCOUNT_LIST];
    _cleanup_(account_record_list_freep) struct account_record *list = NULL;
    size_t n = 0, allocated = 0;
    int rc, r;

    list = calloc(1, sizeof(*list));
    if (!list)
        return -ENOMEM;
    allocated = 1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct account_record *l = list_reserve(list, &allocated, n, sizeof(*l));

        if (!l)
            return -ENOMEM;
        list = l;
        r = account_from_row(st, false, &list[n]);
        if (r < 0) {
            /* Put the list's end marker back where account_record_list_free() expects it. */
            account_record_done(&list[n]);
            list[n] = (struct account_record){0};
            return store_failf(s, r, "Cannot read the list of accounts");
        }
        n++;
    }
    if (rc != SQLITE_DONE)
        return store_fail(s, rc);
    *ret = TAKE_PTR(list);
    if (ret_n)
        *ret_n = n;
    return 0;
}

/* The shape of every account update: one UPDATE on the row, the generation bumped when asked,
 * one transaction. bind binds ?2 and up. */
static int account_update(struct store *s, enum stmt id, const char *name, bool bump,
                          int (*bind)(struct store *s, sqlite3_stmt *st, const void *arg),
                          const void *arg)
{
    _cleanup_tx_ struct store *tx = NULL;
    int r;

    r = check_account_name(s, name);
    if (r < 0)
        return r;
    r = tx_begin(s, &tx);
    if (r < 0)
        return r;
    {
        _cleanup_stmt_ sqlite3_stmt *st = s->stmts[id];

        if ((r = bind_text(s, st, 1, name)) < 0 || (r = bind(s, st, arg)) < 0)
            return r;
        r = stmt_exec_one(s, st, "account", name);
        if (r < 0)
            return r;
    }
    return bump ? tx_commit_bumped(&tx) : tx_commit(&tx);
}

static int bind_text_and_now(struct store *s, sqlite3_stmt *st, const void *arg)
{
    int r;

    r = bind_text(s, st, 2, arg);
    if (r < 0)
        return r;
    return bind_int64(s, st, 3, (int64_t)now_realtime_usec());
}

static int bind_secret_and_now(struct store *s, sqlite3_stmt *st, const void *arg)
{
    int r;

    r = bind_secret(s, st, 2, arg);
    if (r < 0)
        return r;
    return bind_int64(s, st, 3, (int64_t)now_realtime_usec());
}

static int bind_nothing(struct store *s, sqlite3_stmt *st, const void *arg)
{
    return 0;
}

int store_account_set_state(struct store *s, const char *name, enum account_state state)
{
    const char *v = account_state_to_string(state);

    if (!v)
        return store_failf(s, -EINVAL, "Invalid account state %d", (int)state);
    return account_update(s, STMT_ACCOUNT_SET_STATE, name, true, bind_text_and_now, v);
}

int store_account_set_config(struct store *s, const char *name, const char *config)
{
    int r;

    r = check_account_name(s, name);
    if (r < 0)
        return r;
    r = check_config(s, config);
    if (r < 0)
        return r;
    r = account_update(s, STMT_ACCOUNT_SET_CONFIG, name, true, bind_text_and_now, config);
    if (r == -EINVAL)
        return store_failf(s, r, "Invalid configuration for account '%s': %s", name,
                           "not a JSON object");
    return r;
}

int store_account_set_secret(struct store *s, const char *name, const struct secret *secret)
{
    int r;

    r = check_secret(s, secret);
    if (r < 0)
        return r;
    return account_update(s, STMT_ACCOUNT_SET_SECRET, name, true, bind_secret_and_now, secret);
}

int store_account_remove(struct store *s, const char *name)
{
    return account_update(s, STMT_ACCOUNT_DELETE, name, true, bind_nothing, NULL);
}

struct token_arg {
    const struct secret *token;
    int64_t expires_usec;
};

static int bind_token(struct store *s, sqlite3_stmt *st, const void *arg)
{
    const struct token_arg *t = arg;
    int rc, r;

    r = bind_secret(s, st, 2, t->token);
    if (r < 0)
        return r;
    rc = t->token ? sqlite3_bind_int64(st, 3, t->expires_usec) : sqlite3_bind_null(st, 3);
    return rc == SQLITE_OK ? 0 : store_fail(s, rc);
}

int store_token_put(struct store *s, const char *name, const struct secret *token,
                    int64_t expires_usec)
{
    struct token_arg t = {token, expires_usec};
    int r;

    r = check_secret(s, token);
    if (r < 0)
        return r;
    return account_update(s, STMT_TOKEN_PUT, name, false, bind_token, &t);
}

int store_token_get(struct store *s, const char *name, struct secret **ret_token,
                    int64_t *ret_expires_usec)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_TOKEN_GET];
    _cleanup_(secret_freep) struct secret *token = NULL;
    int r;

    r = check_account_name(s, name);
    if (r < 0)
        return r;
    r = bind_text(s, st, 1, name);
    if (r < 0)
        return r;
    r = stmt_step_row(s, st, "account", name);
    if (r < 0)
        return r;
    r = column_secret(st, 0, &token);
    if (r < 0)
        return r;
    if (!token)
        return store_failf(s, -ENODATA, "No access token cached for account '%s'", name);
    *ret_expires_usec = sqlite3_column_int64(st, 1);
    *ret_token = TAKE_PTR(token);
    return 0;
}

/* Routes and settings */

/* Runs one statement that writes, binding ?1 and (when not NULL) ?2, bumps the generation, and
 * commits. -ENOENT names what when the statement had to match a row and did not. */
static int write_and_bump(struct store *s, enum stmt id, const char *a, const char *b,
                          const char *what)
{
    _cleanup_tx_ struct store *tx = NULL;
    int r;

    r = tx_begin(s, &tx);
    if (r < 0)
        return r;
    {
        _cleanup_stmt_ sqlite3_stmt *st = s->stmts[id];

        if ((r = bind_text(s, st, 1, a)) < 0 || (b && (r = bind_text(s, st, 2, b)) < 0))
            return r;
        r = what ? stmt_exec_one(s, st, what, a) : stmt_exec(s, st);
        if (r < 0)
            return r;
    }
    return tx_commit_bumped(&tx);
}

int store_map_set(struct store *s, const char *alias, const char *target)
{
    if (!model_name_is_valid(alias) || !model_name_is_valid(target))
        return store_failf(s, -EINVAL,
                           "Invalid model name (printable ASCII without spaces, 1 to %d bytes)",
                           STORE_MODEL_MAX);
    return write_and_bump(s, STMT_ROUTE_UPSERT, alias, target, NULL);
}

int store_map_unset(struct store *s, const char *alias)
{
    if (!model_name_is_valid(alias))
        return store_failf(s, -EINVAL, "Invalid model name");
    return write_and_bump(s, STMT_ROUTE_DELETE, alias, NULL, "mapping for");
}

struct map_entry *map_entry_list_free(struct map_entry *list)
{
    if (!list)
        return NULL;
    for (struct map_entry *e = list; e->alias; e++) {
        free(e->alias);
        free(e->target);
    }
    free(list);
    return NULL;
}

int store_route_set(struct store *s, const char *model, const char *account)
{
    if (!model_name_is_valid(model))
        return store_failf(s, -EINVAL,
                           "Invalid model pattern (printable ASCII without spaces, 1 to %d bytes)",
                           STORE_MODEL_MAX);
    if (!ipc_account_name_is_valid(account))
        return store_failf(s, -EINVAL, "Invalid account name");
    return write_and_bump(s, STMT_ACCOUNT_ROUTE_UPSERT, model, account, NULL);
}

int store_route_unset(struct store *s, const char *model)
{
    if (!model_name_is_valid(model))
        return store_failf(s, -EINVAL, "Invalid model pattern");
    return write_and_bump(s, STMT_ACCOUNT_ROUTE_DELETE, model, NULL, "route for");
}

static int pair_list(struct store *s, enum stmt id, struct map_entry **ret, size_t *ret_n);

int store_map_list(struct store *s, struct map_entry **ret, size_t *ret_n)
{
    return pair_list(s, STMT_ROUTE_LIST, ret, ret_n);
}

int store_route_list(struct store *s, struct map_entry **ret, size_t *ret_n)
{
    return pair_list(s, STMT_ACCOUNT_ROUTE_LIST, ret, ret_n);
}

/* Every row of a two-column (text, text) query as a map_entry list. */
static int pair_list(struct store *s, enum stmt id, struct map_entry **ret, size_t *ret_n)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[id];
    _cleanup_(map_entry_list_freep) struct map_entry *list = NULL;
    size_t n = 0, allocated = 0;
    int rc, r;

    list = calloc(1, sizeof(*list));
    if (!list)
        return -ENOMEM;
    allocated = 1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        _cleanup_free_ char *alias = NULL, *target = NULL;
        struct map_entry *l = list_reserve(list, &allocated, n, sizeof(*l));

        if (!l)
            return -ENOMEM;
        list = l;
        if ((r = column_strdup(st, 0, &alias)) < 0 || (r = column_strdup(st, 1, &target)) < 0)
            return r;
        if (!alias || !target)
            return store_failf(s, -EUCLEAN, "A mapping or route with an empty column");
        list[n++] = (struct map_entry){TAKE_PTR(alias), TAKE_PTR(target)};
    }
    if (rc != SQLITE_DONE)
        return store_fail(s, rc);
    *ret = TAKE_PTR(list);
    if (ret_n)
        *ret_n = n;
    return 0;
}

int store_setting_get(struct store *s, const char *key, char **ret_value)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_SETTING_GET];
    char *v;
    int rc, r;

    if (!setting_key_is_valid(key))
        return store_failf(s, -EINVAL, "Invalid setting name (allowed: [a-z0-9_.-]{1,64})");
    r = bind_text(s, st, 1, key);
    if (r < 0)
        return r;
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return store_failf(s, -ENOENT, "Setting '%s' is not set", key);
    if (rc != SQLITE_ROW)
        return store_fail(s, rc);
    r = column_strdup(st, 0, &v);
    if (r < 0)
        return r;
    if (!v)
        return store_failf(s, -EUCLEAN, "Setting '%s' has no value", key);
    *ret_value = v;
    return 0;
}

int store_setting_set(struct store *s, const char *key, const char *value)
{
    if (!setting_key_is_valid(key))
        return store_failf(s, -EINVAL, "Invalid setting name (allowed: [a-z0-9_.-]{1,64})");
    if (!value)
        return write_and_bump(s, STMT_SETTING_DELETE, key, NULL, "setting");
    if (!text_is_valid(value, STORE_VALUE_MAX))
        return store_failf(s, -EINVAL, "Invalid value for setting '%s' (UTF-8, at most %d bytes)",
                           key, STORE_VALUE_MAX);
    return write_and_bump(s, STMT_SETTING_UPSERT, key, value, NULL);
}

/* Usage ledger */

static int usage_bind(struct store *s, sqlite3_stmt *st, const struct usage_record *u)
{
    const int64_t ints[] = {u->input,      u->output,  u->cache_read,    u->cache_write,
                            u->latency_ms, u->ttfb_ms, u->cost_micro_usd};
    int r;

    if ((r = bind_int64(s, st, 1, u->time_usec)) < 0 || (r = bind_text(s, st, 2, u->member)) < 0 ||
        (r = bind_text(s, st, 3, u->endpoint)) < 0 ||
        (r = bind_text(s, st, 4, u->model_requested)) < 0 ||
        (r = bind_text(s, st, 5, u->model_upstream)) < 0 ||
        (r = bind_text(s, st, 6, u->account)) < 0 || (r = bind_int64(s, st, 7, u->status)) < 0 ||
        (r = bind_text(s, st, 15, u->request_id)) < 0)
        return r;
    for (size_t i = 0; i < ELEMENTSOF(ints); i++) {
        r = bind_int64(s, st, 8 + (int)i, ints[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

static bool usage_is_valid(const struct usage_record *u)
{
    return u->endpoint && u->model_requested && u->model_upstream &&
           text_is_valid(u->endpoint, STORE_MODEL_MAX) &&
           text_is_valid(u->model_requested, STORE_MODEL_MAX) &&
           text_is_valid(u->model_upstream, STORE_MODEL_MAX) &&
           (!u->member || text_is_valid(u->member, STORE_MODEL_MAX)) &&
           (!u->request_id || text_is_valid(u->request_id, STORE_MODEL_MAX)) &&
           (!u->account || text_is_valid(u->account, STORE_MODEL_MAX));
}

int store_usage_insert(struct store *s, const struct usage_record *records, size_t n,
                       size_t *ret_stored)
{
    _cleanup_tx_ struct store *tx = NULL;
    size_t stored = 0;
    int r;

    assert(records || n == 0);
    for (size_t i = 0; i < n; i++)
        if (!usage_is_valid(&records[i]))
            return store_failf(s, -EINVAL, "Usage record %zu of %zu is incomplete or too long",
                               i + 1, n);
    if (n > 0) {
        r = tx_begin(s, &tx);
        if (r < 0)
            return r;
        for (size_t i = 0; i < n; i++) {
            _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_USAGE_INSERT];

            r = usage_bind(s, st, &records[i]);
            if (r < 0)
                return r;
            r = stmt_exec(s, st);
            if (r < 0)
                return r;
            /* 0 when ON CONFLICT skipped a request_id the ledger holds already. */
            stored += (size_t)sqlite3_changes(s->db);
        }
        r = tx_commit(&tx);
        if (r < 0)
            return r;
    }
    if (ret_stored)
        *ret_stored = stored;
    return 0;
}

int store_usage_insert_batch(struct store *s, const struct usage_record *records, size_t n)
{
    return store_usage_insert(s, records, n, NULL);
}

static const char *const usage_group_names[_USAGE_GROUP_MAX] = {
    [USAGE_GROUP_MEMBER] = "member",
    [USAGE_GROUP_MODEL] = "model",
    [USAGE_GROUP_ACCOUNT] = "account",
    [USAGE_GROUP_DAY] = "day",
};

const char *usage_group_to_string(enum usage_group g)
{
    if (g < 0 || g >= _USAGE_GROUP_MAX)
        return NULL;
    return usage_group_names[g];
}

enum usage_group usage_group_from_string(const char *s)
{
    for (size_t i = 0; s && i < ELEMENTSOF(usage_group_names); i++)
        if (streq(s, usage_group_names[i]))
            return (enum usage_group)i;
    return _USAGE_GROUP_INVALID;
}

void usage_rows_free(struct usage_row *rows, size_t n)
{
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++)
        free(rows[i].key);
    free(rows);
}

int store_usage_query(struct store *s, enum usage_group group, int64_t since_usec,
                      int64_t until_usec, const char *member, struct usage_row **ret, size_t *ret_n)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_USAGE_QUERY];
    struct usage_row *rows = NULL;
    size_t n = 0, allocated = 0;
    int rc, r;

    if (!usage_group_to_string(group))
        return store_failf(s, -EINVAL, "Invalid usage grouping %d", (int)group);
    if (member && !ipc_account_name_is_valid(member))
        return store_failf(s, -EINVAL, "Invalid member name (allowed: [a-z0-9_-]{1,64})");
    if ((r = bind_int64(s, st, 1, since_usec)) < 0 || (r = bind_int64(s, st, 2, until_usec)) < 0 ||
        (r = bind_text(s, st, 3, member)) < 0 || (r = bind_int64(s, st, 4, (int64_t)group)) < 0)
        return r;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct usage_row *row;

        if (n == allocated) {
            struct usage_row *l = reallocarray(rows, allocated ? allocated * 2 : 8, sizeof(*l));
            if (!l) {
                usage_rows_free(rows, n);
                return -ENOMEM;
            }
            rows = l;
            allocated = allocated ? allocated * 2 : 8;
        }
        row = &rows[n];
        *row = (struct usage_row){
            .requests = sqlite3_column_int64(st, 1),
            .input = sqlite3_column_int64(st, 2),
            .output = sqlite3_column_int64(st, 3),
            .cache_read = sqlite3_column_int64(st, 4),
            .cache_write = sqlite3_column_int64(st, 5),
            .cost_micro_usd = sqlite3_column_int64(st, 6),
            .errors = sqlite3_column_int64(st, 7),
        };
        r = column_strdup(st, 0, &row->key);
        if (r < 0) {
            usage_rows_free(rows, n);
            return r;
        }
        n++;
    }
    if (rc != SQLITE_DONE) {
        usage_rows_free(rows, n);
        return store_fail(s, rc);
    }
    *ret = rows;
    *ret_n = n;
    return 0;
}

/* Members */

static bool key_sha256_is_valid(const char *h)
{
    if (!h || strlen(h) != MEMBER_KEY_SHA256_LEN)
        return false;
    for (const char *p = h; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static int check_member(struct store *s, const struct member_record *m, bool with_key)
{
    if (!ipc_account_name_is_valid(m->name))
        return store_failf(s, -EINVAL, "Invalid member name (allowed: [a-z0-9_-]{1,64})");
    if (with_key && !key_sha256_is_valid(m->key_sha256))
        return store_failf(s, -EINVAL, "Invalid key hash (64 lowercase hex digits)");
    if (m->budget_micro_usd < -1 || m->rate_limit_rpm < 0 || m->rate_limit_tpm < 0)
        return store_failf(s, -EINVAL, "Invalid budget or rate limit for member '%s'", m->name);
    if (m->models && !text_is_valid(m->models, STORE_VALUE_MAX))
        return store_failf(s, -EINVAL, "Model list of member '%s' too long", m->name);
    return 0;
}

/* Binds budget, rpm, tpm and models at first, first + 1, ...; "none" is NULL. */
static int bind_member_limits(struct store *s, sqlite3_stmt *st, int first,
                              const struct member_record *m)
{
    const int64_t v[] = {m->budget_micro_usd, m->rate_limit_rpm, m->rate_limit_tpm};
    const int64_t none[] = {-1, 0, 0};
    int rc, r;

    for (size_t i = 0; i < ELEMENTSOF(v); i++) {
        rc = v[i] == none[i] ? sqlite3_bind_null(st, first + (int)i)
                             : sqlite3_bind_int64(st, first + (int)i, v[i]);
        if (rc != SQLITE_OK)
            return store_fail(s, rc);
    }
    r = bind_text(s, st, first + 3, m->models);
    return r;
}

int store_member_add(struct store *s, const struct member_record *m)
{
    _cleanup_tx_ struct store *tx = NULL;
    int r;

    r = check_member(s, m, true);
    if (r < 0)
        return r;
    r = tx_begin(s, &tx);
    if (r < 0)
        return r;
    {
        _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_MEMBER_INSERT];

        if ((r = bind_text(s, st, 1, m->name)) < 0 ||
            (r = bind_text(s, st, 2, m->key_sha256)) < 0 ||
            (r = bind_member_limits(s, st, 3, m)) < 0 ||
            (r = bind_int64(s, st, 7, (int64_t)now_realtime_usec())) < 0)
            return r;
        r = stmt_exec(s, st);
        if (r == -EEXIST)
            return store_failf(s, r, "Member '%s' exists already", m->name);
        if (r == -EINVAL)
            return store_failf(s, r, "Invalid limits or models for member '%s'", m->name);
        if (r < 0)
            return r;
    }
    return tx_commit_bumped(&tx);
}

/* One UPDATE or DELETE of a member row in a transaction that bumps the generation. */
static int member_update(struct store *s, enum stmt id, const char *name,
                         const struct member_record *limits, const char *key_sha256)
{
    _cleanup_tx_ struct store *tx = NULL;
    int r;

    r = tx_begin(s, &tx);
    if (r < 0)
        return r;
    {
        _cleanup_stmt_ sqlite3_stmt *st = s->stmts[id];

        if ((r = bind_text(s, st, 1, name)) < 0 ||
            (limits && (r = bind_member_limits(s, st, 2, limits)) < 0) ||
            (key_sha256 && (r = bind_text(s, st, 2, key_sha256)) < 0))
            return r;
        r = stmt_exec_one(s, st, "member", name);
        if (r == -EINVAL)
            return store_failf(s, r, "Invalid limits or models for member '%s'", name);
        if (r < 0)
            return r;
    }
    return tx_commit_bumped(&tx);
}

int store_member_set_limits(struct store *s, const struct member_record *m)
{
    int r;

    r = check_member(s, m, false);
    if (r < 0)
        return r;
    return member_update(s, STMT_MEMBER_SET_LIMITS, m->name, m, NULL);
}

int store_member_set_key(struct store *s, const char *name, const char *key_sha256)
{
    if (!ipc_account_name_is_valid(name))
        return store_failf(s, -EINVAL, "Invalid member name (allowed: [a-z0-9_-]{1,64})");
    if (!key_sha256_is_valid(key_sha256))
        return store_failf(s, -EINVAL, "Invalid key hash (64 lowercase hex digits)");
    return member_update(s, STMT_MEMBER_SET_KEY, name, NULL, key_sha256);
}

int store_member_remove(struct store *s, const char *name)
{
    if (!ipc_account_name_is_valid(name))
        return store_failf(s, -EINVAL, "Invalid member name (allowed: [a-z0-9_-]{1,64})");
    return member_update(s, STMT_MEMBER_DELETE, name, NULL, NULL);
}

static void member_record_done(struct member_record *m)
{
    free(m->name);
    free(m->models);
}

struct member_record *member_record_free(struct member_record *m)
{
    if (!m)
        return NULL;
    member_record_done(m);
    free(m);
    return NULL;
}

struct member_record *member_record_list_free(struct member_record *list)
{
    if (!list)
        return NULL;
    for (struct member_record *m = list; m->name; m++)
        member_record_done(m);
    free(list);
    return NULL;
}

/* Fills m from a row of STMT_MEMBER_GET or STMT_MEMBER_LIST. */
static int member_from_row(sqlite3_stmt *st, struct member_record *m)
{
    const unsigned char *h;
    int r;

    r = column_strdup(st, 0, &m->name);
    if (r < 0 || !m->name)
        return r < 0 ? r : -EUCLEAN;
    h = sqlite3_column_text(st, 1);
    if (!h || !key_sha256_is_valid((const char *)h))
        return -EUCLEAN;
    memcpy(m->key_sha256, h, MEMBER_KEY_SHA256_LEN + 1);
    m->budget_micro_usd =
        sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 2);
    m->rate_limit_rpm = sqlite3_column_int64(st, 3); /* NULL reads as 0: no limit */
    m->rate_limit_tpm = sqlite3_column_int64(st, 4);
    r = column_strdup(st, 5, &m->models);
    if (r < 0)
        return r;
    m->created_usec = sqlite3_column_int64(st, 6);
    m->spent_micro_usd = sqlite3_column_int64(st, 7);
    return 0;
}

int store_member_get(struct store *s, const char *name, int64_t since_usec,
                     struct member_record **ret)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_MEMBER_GET];
    _cleanup_(member_record_freep) struct member_record *m = NULL;
    int r;

    if (!ipc_account_name_is_valid(name))
        return store_failf(s, -EINVAL, "Invalid member name (allowed: [a-z0-9_-]{1,64})");
    if ((r = bind_text(s, st, 1, name)) < 0 || (r = bind_int64(s, st, 2, since_usec)) < 0)
        return r;
    r = stmt_step_row(s, st, "member", name);
    if (r < 0)
        return r;
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    r = member_from_row(st, m);
    if (r < 0)
        return store_failf(s, r, "Cannot read member '%s'", name);
    *ret = TAKE_PTR(m);
    return 0;
}

int store_member_list(struct store *s, int64_t since_usec, struct member_record **ret,
                      size_t *ret_n)
{
    _cleanup_stmt_ sqlite3_stmt *st = s->stmts[STMT_MEMBER_LIST];
    _cleanup_(member_record_list_freep) struct member_record *list = NULL;
    size_t n = 0, allocated = 1;
    int rc, r;

    r = bind_int64(s, st, 1, since_usec);
    if (r < 0)
        return r;
    list = calloc(1, sizeof(*list));
    if (!list)
        return -ENOMEM;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct member_record *l = list_reserve(list, &allocated, n, sizeof(*l));

        if (!l)
            return -ENOMEM;
        list = l;
        r = member_from_row(st, &list[n]);
        if (r < 0) {
            member_record_done(&list[n]);
            list[n] = (struct member_record){0};
            return store_failf(s, r, "Cannot read the list of members");
        }
        n++;
    }
    if (rc != SQLITE_DONE)
        return store_fail(s, rc);
    *ret = TAKE_PTR(list);
    if (ret_n)
        *ret_n = n;
    return 0;
}
