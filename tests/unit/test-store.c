/* test-store.c: unit tests for authd/store.c.
 *
 * Most tests run on ":memory:"; those about files (migrations, reopening, modes, a newer schema,
 * a file that is not a database, two connections) use a private temp dir and, where the store
 * offers no way to look (user_version, the usage rows), read the file with SQLite directly.
 * Secrets are checked byte for byte, NUL and high bytes included. The kill -9 test lives in
 * test-store-crash.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "secret.h"
#include "store.h"
#include "test.h"

static char temp_dir[64];

static void remove_db_files(const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[160];

    for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
        snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
        unlink(p);
    }
}

/* A path in this test's temp dir where no database file exists yet. */
static void temp_path(const char *name, char path[static 128])
{
    if (!temp_dir[0]) {
        snprintf(temp_dir, sizeof temp_dir, "/tmp/test-store-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(temp_dir));
    }
    snprintf(path, 128, "%s/%s", temp_dir, name);
    remove_db_files(path);
}

__attribute__((destructor)) static void remove_temp_dir(void)
{
    static const char *const names[] = {"migrate.db", "newer.db",  "garbage.db", "modes.db",
                                        "loose.db",   "usage.db",  "two.db",     "reopen.db",
                                        "link.db",    "target.db", "persist.db"};
    char p[128];

    if (!temp_dir[0])
        return;
    for (size_t i = 0; i < ELEMENTSOF(names); i++) {
        snprintf(p, sizeof p, "%s/%s", temp_dir, names[i]);
        remove_db_files(p);
    }
    rmdir(temp_dir);
}

static uint64_t generation(struct store *s)
{
    uint64_t g = 0;

    ASSERT_OK(store_generation(s, &g));
    return g;
}

/* Runs one query that returns an integer on the database file at path, outside the store. */
static int64_t raw_query_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v;

    ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;

    ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
              SQLITE_OK);
    while (*sql) {
        sqlite3_stmt *st = NULL;

        ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, &sql), SQLITE_OK);
        if (st) {
            ASSERT_TRUE(sqlite3_step(st) != SQLITE_ERROR);
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(db);
}

static mode_t file_mode(const char *path, const char *suffix)
{
    char p[160];
    struct stat st;

    snprintf(p, sizeof p, "%s%s", path, suffix);
    ASSERT_OK(stat(p, &st));
    return st.st_mode & 07777;
}

TEST(store_open_memory)
{
    _cleanup_(store_freep) struct store *s = NULL;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_EQ(store_schema_version(s), 3);
    ASSERT_EQ(generation(s), 1);
    ASSERT_OK(store_check_integrity(s));
    ASSERT_STREQ(store_last_error(s), "");
    ASSERT_NULL(store_free(NULL));
    ASSERT_STREQ(store_last_error(NULL), "");
}

TEST(store_open_bad_paths)
{
    struct store *s = NULL;
    struct store_error err = {};
    char path[128];

    ASSERT_ERROR(store_open_full("", &s, &err), EINVAL);
    ASSERT_ERROR(store_open("file:x.db?mode=memory", &s), EINVAL);
    ASSERT_ERROR(store_open("/nonexistent-dir-dualroute/x.db", &s), ENOENT);
    ASSERT_NULL(s);

    /* A symlink is refused: the file would not be the one whose mode we checked. */
    temp_path("target.db", path);
    ASSERT_OK(close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)));
    {
        char link_path[128];
        temp_path("link.db", link_path);
        ASSERT_OK(symlink(path, link_path));
        ASSERT_ERROR(store_open_full(link_path, &s, &err), ELOOP);
        ASSERT_TRUE(strstr(err.text, "link.db") != NULL);
    }
}

TEST(store_enum_strings)
{
    ASSERT_STREQ(account_provider_to_string(ACCOUNT_PROVIDER_ANTHROPIC), "anthropic");
    ASSERT_STREQ(account_provider_to_string(ACCOUNT_PROVIDER_VERTEX), "vertex");
    ASSERT_NULL(account_provider_to_string(_ACCOUNT_PROVIDER_MAX));
    ASSERT_NULL(account_provider_to_string(_ACCOUNT_PROVIDER_INVALID));
    ASSERT_EQ(account_provider_from_string("vertex"), ACCOUNT_PROVIDER_VERTEX);
    ASSERT_EQ(account_provider_from_string("bedrock"), -EINVAL);
    ASSERT_EQ(account_provider_from_string(NULL), -EINVAL);

    ASSERT_STREQ(account_state_to_string(ACCOUNT_STATE_OK), "ok");
    ASSERT_STREQ(account_state_to_string(ACCOUNT_STATE_NEEDS_LOGIN), "needs-login");
    ASSERT_STREQ(account_state_to_string(ACCOUNT_STATE_DISABLED), "disabled");
    ASSERT_NULL(account_state_to_string(_ACCOUNT_STATE_MAX));
    ASSERT_EQ(account_state_from_string("needs-login"), ACCOUNT_STATE_NEEDS_LOGIN);
    ASSERT_EQ(account_state_from_string("OK"), -EINVAL);
}

TEST(store_account_roundtrip)
{
    static const char key[] = "sk-ant-api03-\0\x01\xff\x80tail";
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(secret_freep) struct secret *secret = secret_new(key, sizeof key - 1);
    _cleanup_(account_record_freep) struct account_record *a = NULL;
    _cleanup_(account_record_list_freep) struct account_record *list = NULL;
    size_t n = 99;

    ASSERT_NOT_NULL(secret);
    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(
        store_account_add(s, "work", ACCOUNT_PROVIDER_ANTHROPIC, "{\"kind\":\"api-key\"}", secret));
    ASSERT_OK(store_account_add(s, "gcp", ACCOUNT_PROVIDER_VERTEX,
                                "{\"project\":\"p\",\"region\":\"us-east5\"}", NULL));
    ASSERT_EQ(generation(s), 3);

    ASSERT_OK(store_account_get(s, "work", &a));
    ASSERT_STREQ(a->name, "work");
    ASSERT_EQ(a->provider, ACCOUNT_PROVIDER_ANTHROPIC);
    ASSERT_EQ(a->state, ACCOUNT_STATE_OK);
    ASSERT_STREQ(a->config, "{\"kind\":\"api-key\"}");
    ASSERT_NOT_NULL(a->secret);
    ASSERT_TRUE(a->has_secret);
    ASSERT_EQ(a->secret->len, sizeof key - 1);
    ASSERT_TRUE(secret_equal(a->secret, key, sizeof key - 1));
    ASSERT_EQ(a->token_expires_usec, 0);
    ASSERT_TRUE(a->created_usec > 0);
    ASSERT_EQ(a->updated_usec, a->created_usec);
    a = account_record_free(a);

    ASSERT_OK(store_account_get(s, "gcp", &a));
    ASSERT_EQ(a->provider, ACCOUNT_PROVIDER_VERTEX);
    ASSERT_NULL(a->secret);
    ASSERT_FALSE(a->has_secret);

    ASSERT_OK(store_account_list(s, &list, &n));
    ASSERT_EQ(n, 2);
    ASSERT_STREQ(list[0].name, "gcp"); /* sorted by name */
    ASSERT_STREQ(list[1].name, "work");
    ASSERT_NULL(list[2].name);
    ASSERT_NULL(list[1].secret); /* lists never carry secrets */
    ASSERT_TRUE(list[1].has_secret);
    ASSERT_FALSE(list[0].has_secret);
    ASSERT_STREQ(list[0].config, "{\"project\":\"p\",\"region\":\"us-east5\"}");
    ASSERT_EQ(list[0].provider, ACCOUNT_PROVIDER_VERTEX);
}

TEST(store_account_list_empty_and_many)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(account_record_list_freep) struct account_record *list = NULL;
    size_t n = 99;
    char name[32];

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_account_list(s, &list, &n));
    ASSERT_EQ(n, 0);
    ASSERT_NULL(list[0].name);
    list = account_record_list_free(list);

    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "acct-%02d", i);
        ASSERT_OK(store_account_add(s, name, ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL));
    }
    ASSERT_OK(store_account_list(s, &list, NULL));
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "acct-%02d", i);
        ASSERT_STREQ(list[i].name, name);
        ASSERT_STREQ(list[i].config, "{}");
    }
    ASSERT_NULL(list[40].name);
}

TEST(store_account_add_errors)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(secret_freep) struct secret *big = NULL;
    char name[80];

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_account_add(s, "work", ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL));
    ASSERT_ERROR(store_account_add(s, "work", ACCOUNT_PROVIDER_VERTEX, NULL, NULL), EEXIST);
    ASSERT_TRUE(strstr(store_last_error(s), "'work'") != NULL);

    ASSERT_ERROR(store_account_add(s, "", ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL), EINVAL);
    ASSERT_ERROR(store_account_add(s, NULL, ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL), EINVAL);
    ASSERT_ERROR(store_account_add(s, "Work", ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL), EINVAL);
    ASSERT_ERROR(store_account_add(s, "a/b", ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL), EINVAL);
    memset(name, 'a', 64);
    name[64] = '\0';
    ASSERT_OK(store_account_add(s, name, ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL));
    name[64] = 'a';
    name[65] = '\0';
    ASSERT_ERROR(store_account_add(s, name, ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL), EINVAL);

    ASSERT_ERROR(store_account_add(s, "x", _ACCOUNT_PROVIDER_MAX, NULL, NULL), EINVAL);
    ASSERT_ERROR(store_account_add(s, "x", _ACCOUNT_PROVIDER_INVALID, NULL, NULL), EINVAL);
    ASSERT_ERROR(store_account_add(s, "x", ACCOUNT_PROVIDER_VERTEX, "not json", NULL), EINVAL);
    ASSERT_TRUE(strstr(store_last_error(s), "JSON") != NULL);
    ASSERT_ERROR(store_account_add(s, "x", ACCOUNT_PROVIDER_VERTEX, "[1]", NULL), EINVAL);
    ASSERT_ERROR(store_account_add(s, "x", ACCOUNT_PROVIDER_VERTEX, "\"s\"", NULL), EINVAL);
    ASSERT_ERROR(store_account_add(s, "x", ACCOUNT_PROVIDER_VERTEX, "{\"a\":\xff}", NULL), EINVAL);

    big = malloc(sizeof(*big) + STORE_SECRET_MAX + 2);
    ASSERT_NOT_NULL(big);
    big->len = STORE_SECRET_MAX + 1;
    memset(big->data, 'k', big->len + 1);
    big->data[big->len] = '\0';
    ASSERT_ERROR(store_account_add(s, "x", ACCOUNT_PROVIDER_VERTEX, NULL, big), E2BIG);

    /* Nothing of the failed calls is left behind, and only the two adds bumped the generation. */
    ASSERT_ERROR(store_account_get(s, "x", &(struct account_record *){NULL}), ENOENT);
    ASSERT_EQ(generation(s), 3);
}

TEST(store_account_set_state)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(account_record_freep) struct account_record *a = NULL;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_account_add(s, "gcp", ACCOUNT_PROVIDER_VERTEX, NULL, NULL));
    for (enum account_state st = 0; st < _ACCOUNT_STATE_MAX; st++) {
        uint64_t g = generation(s);

        ASSERT_OK(store_account_set_state(s, "gcp", st));
        ASSERT_EQ(generation(s), g + 1);
        ASSERT_OK(store_account_get(s, "gcp", &a));
        ASSERT_EQ(a->state, st);
        ASSERT_TRUE(a->updated_usec >= a->created_usec);
        a = account_record_free(a);
    }
    ASSERT_ERROR(store_account_set_state(s, "nope", ACCOUNT_STATE_OK), ENOENT);
    ASSERT_TRUE(strstr(store_last_error(s), "'nope'") != NULL);
    ASSERT_ERROR(store_account_set_state(s, "gcp", _ACCOUNT_STATE_MAX), EINVAL);
    ASSERT_ERROR(store_account_set_state(s, "gcp", _ACCOUNT_STATE_INVALID), EINVAL);
    ASSERT_ERROR(store_account_set_state(s, "BAD", ACCOUNT_STATE_OK), EINVAL);
    ASSERT_EQ(generation(s), 2 + _ACCOUNT_STATE_MAX);
}

TEST(store_account_set_config)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(account_record_freep) struct account_record *a = NULL;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_account_add(s, "gcp", ACCOUNT_PROVIDER_VERTEX, "{\"region\":\"a\"}", NULL));
    ASSERT_OK(store_account_set_config(s, "gcp", "{\"region\":\"europe-west1\",\"n\":[1,2]}"));
    ASSERT_OK(store_account_get(s, "gcp", &a));
    ASSERT_STREQ(a->config, "{\"region\":\"europe-west1\",\"n\":[1,2]}");
    ASSERT_EQ(generation(s), 3);
    ASSERT_ERROR(store_account_set_config(s, "gcp", "{"), EINVAL);
    ASSERT_ERROR(store_account_set_config(s, "gcp", NULL), EINVAL);
    ASSERT_ERROR(store_account_set_config(s, "nope", "{}"), ENOENT);
    ASSERT_EQ(generation(s), 3);
}

TEST(store_account_set_secret)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(account_record_freep) struct account_record *a = NULL;
    _cleanup_(secret_freep) struct secret *old = secret_new("refresh-1", 9);
    _cleanup_(secret_freep) struct secret *new = secret_new("refresh-2-longer", 16);
    _cleanup_(secret_freep) struct secret *token = secret_new("ya29.token", 10);
    _cleanup_(secret_freep) struct secret *got = NULL;
    int64_t expires = 0;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_account_add(s, "gcp", ACCOUNT_PROVIDER_VERTEX, NULL, old));
    ASSERT_OK(store_token_put(s, "gcp", token, 1234567));
    ASSERT_EQ(generation(s), 2);

    ASSERT_OK(store_account_set_secret(s, "gcp", new));
    ASSERT_EQ(generation(s), 3);
    ASSERT_OK(store_account_get(s, "gcp", &a));
    ASSERT_TRUE(secret_equal(a->secret, "refresh-2-longer", 16));
    ASSERT_EQ(a->token_expires_usec, 0);
    a = account_record_free(a);
    /* The token the old secret obtained is gone. */
    ASSERT_ERROR(store_token_get(s, "gcp", &got, &expires), ENODATA);

    ASSERT_OK(store_account_set_secret(s, "gcp", NULL));
    ASSERT_OK(store_account_get(s, "gcp", &a));
    ASSERT_NULL(a->secret);
    ASSERT_FALSE(a->has_secret);
    ASSERT_ERROR(store_account_set_secret(s, "nope", new), ENOENT);
    ASSERT_EQ(generation(s), 4);
}

TEST(store_account_remove)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(account_record_list_freep) struct account_record *list = NULL;
    struct account_record *a = NULL;
    size_t n = 99;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_account_add(s, "a", ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL));
    ASSERT_OK(store_account_add(s, "b", ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL));
    ASSERT_OK(store_account_remove(s, "a"));
    ASSERT_EQ(generation(s), 4);
    ASSERT_ERROR(store_account_get(s, "a", &a), ENOENT);
    ASSERT_NULL(a);
    ASSERT_ERROR(store_account_remove(s, "a"), ENOENT);
    ASSERT_ERROR(store_account_remove(s, ""), EINVAL);
    ASSERT_EQ(generation(s), 4);
    ASSERT_OK(store_account_list(s, &list, &n));
    ASSERT_EQ(n, 1);
    ASSERT_STREQ(list[0].name, "b");
    /* The name is free again. */
    ASSERT_OK(store_account_add(s, "a", ACCOUNT_PROVIDER_VERTEX, NULL, NULL));
}

TEST(store_token_cache)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(secret_freep) struct secret *token = secret_new("ya29.a0\0\xfe", 9);
    _cleanup_(secret_freep) struct secret *empty = secret_new("", 0);
    _cleanup_(secret_freep) struct secret *got = NULL;
    _cleanup_(account_record_list_freep) struct account_record *list = NULL;
    int64_t expires = 0;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_ERROR(store_token_get(s, "gcp", &got, &expires), ENOENT);
    ASSERT_ERROR(store_token_put(s, "gcp", token, 1), ENOENT);
    ASSERT_OK(store_account_add(s, "gcp", ACCOUNT_PROVIDER_VERTEX, NULL, NULL));
    ASSERT_ERROR(store_token_get(s, "gcp", &got, &expires), ENODATA);
    ASSERT_NULL(got);

    ASSERT_OK(store_token_put(s, "gcp", token, INT64_C(1767225600000000)));
    ASSERT_OK(store_token_get(s, "gcp", &got, &expires));
    ASSERT_EQ(got->len, 9);
    ASSERT_TRUE(secret_equal(got, "ya29.a0\0\xfe", 9));
    ASSERT_EQ(expires, INT64_C(1767225600000000));
    got = secret_free(got);
    /* A token is not part of the routing snapshot. */
    ASSERT_EQ(generation(s), 2);

    ASSERT_OK(store_account_list(s, &list, NULL));
    ASSERT_EQ(list[0].token_expires_usec, INT64_C(1767225600000000));

    /* An empty token is a token, not "none". */
    ASSERT_OK(store_token_put(s, "gcp", empty, 5));
    ASSERT_OK(store_token_get(s, "gcp", &got, &expires));
    ASSERT_EQ(got->len, 0);
    ASSERT_EQ(expires, 5);
    got = secret_free(got);

    ASSERT_OK(store_token_put(s, "gcp", NULL, 0));
    ASSERT_ERROR(store_token_get(s, "gcp", &got, &expires), ENODATA);
    ASSERT_EQ(generation(s), 2);
}

TEST(store_secrets_exact)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(secret_freep) struct secret *all = NULL, *big = NULL, *empty = secret_new("", 0);
    _cleanup_(account_record_freep) struct account_record *a = NULL;
    char bytes[256];
    _cleanup_free_ char *pem = malloc(STORE_SECRET_MAX);

    for (int i = 0; i < 256; i++)
        bytes[i] = (char)(255 - i);
    all = secret_new(bytes, sizeof bytes);
    ASSERT_NOT_NULL(pem);
    for (size_t i = 0; i < STORE_SECRET_MAX; i++)
        pem[i] = "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n"[i % 35];
    big = secret_new(pem, STORE_SECRET_MAX);

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_account_add(s, "all", ACCOUNT_PROVIDER_ANTHROPIC, NULL, all));
    ASSERT_OK(store_account_add(s, "big", ACCOUNT_PROVIDER_VERTEX, NULL, big));
    ASSERT_OK(store_account_add(s, "empty", ACCOUNT_PROVIDER_ANTHROPIC, NULL, empty));

    ASSERT_OK(store_account_get(s, "all", &a));
    ASSERT_EQ(a->secret->len, 256);
    ASSERT_TRUE(secret_equal(a->secret, bytes, sizeof bytes));
    ASSERT_EQ(a->secret->data[256], '\0');
    a = account_record_free(a);
    ASSERT_OK(store_account_get(s, "big", &a));
    ASSERT_EQ(a->secret->len, STORE_SECRET_MAX);
    ASSERT_TRUE(secret_equal(a->secret, pem, STORE_SECRET_MAX));
    a = account_record_free(a);
    ASSERT_OK(store_account_get(s, "empty", &a));
    ASSERT_NOT_NULL(a->secret);
    ASSERT_TRUE(a->has_secret);
    ASSERT_EQ(a->secret->len, 0);
}

TEST(store_map)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(map_entry_list_freep) struct map_entry *list = NULL;
    char long_name[STORE_MODEL_MAX + 2];
    size_t n = 99;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_map_list(s, &list, &n));
    ASSERT_EQ(n, 0);
    ASSERT_NULL(list[0].alias);
    list = map_entry_list_free(list);

    ASSERT_OK(store_map_set(s, "gpt-4o", "claude-sonnet-4-5"));
    ASSERT_OK(store_map_set(s, "fast", "claude-haiku-4-5"));
    ASSERT_OK(store_map_set(s, "gpt-3.5*", "claude-haiku-4-5@20251001"));
    ASSERT_OK(store_map_set(s, "gpt-4o", "claude-opus-4-1")); /* replaces */
    ASSERT_EQ(generation(s), 5);
    ASSERT_OK(store_map_list(s, &list, &n));
    ASSERT_EQ(n, 3);
    ASSERT_STREQ(list[0].alias, "fast");
    ASSERT_STREQ(list[0].target, "claude-haiku-4-5");
    ASSERT_STREQ(list[1].alias, "gpt-3.5*");
    ASSERT_STREQ(list[1].target, "claude-haiku-4-5@20251001");
    ASSERT_STREQ(list[2].alias, "gpt-4o");
    ASSERT_STREQ(list[2].target, "claude-opus-4-1");
    ASSERT_NULL(list[3].alias);
    list = map_entry_list_free(list);

    ASSERT_OK(store_map_unset(s, "fast"));
    ASSERT_ERROR(store_map_unset(s, "fast"), ENOENT);
    ASSERT_TRUE(strstr(store_last_error(s), "'fast'") != NULL);
    ASSERT_ERROR(store_map_set(s, "", "x"), EINVAL);
    ASSERT_ERROR(store_map_set(s, "x", ""), EINVAL);
    ASSERT_ERROR(store_map_set(s, NULL, "x"), EINVAL);
    ASSERT_ERROR(store_map_set(s, "a b", "x"), EINVAL);
    ASSERT_ERROR(store_map_set(s, "x", "y\n"), EINVAL);
    ASSERT_ERROR(store_map_set(s, "caf\xc3\xa9", "x"), EINVAL);
    memset(long_name, 'm', STORE_MODEL_MAX);
    long_name[STORE_MODEL_MAX] = '\0';
    ASSERT_OK(store_map_set(s, long_name, "x"));
    long_name[STORE_MODEL_MAX] = 'm';
    long_name[STORE_MODEL_MAX + 1] = '\0';
    ASSERT_ERROR(store_map_set(s, long_name, "x"), EINVAL);
    ASSERT_EQ(generation(s), 7);
    ASSERT_OK(store_map_list(s, &list, &n));
    ASSERT_EQ(n, 3);
}

TEST(store_settings)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_free_ char *v = NULL;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_ERROR(store_setting_get(s, "default_model", &v), ENOENT);
    ASSERT_NULL(v);
    ASSERT_OK(store_setting_set(s, "default_model", "claude-sonnet-4-5"));
    ASSERT_OK(store_setting_get(s, "default_model", &v));
    ASSERT_STREQ(v, "claude-sonnet-4-5");
    v = mfree(v);
    ASSERT_OK(store_setting_set(s, "default_model", "claude-opus-4-1"));
    ASSERT_OK(store_setting_get(s, "default_model", &v));
    ASSERT_STREQ(v, "claude-opus-4-1");
    v = mfree(v);
    ASSERT_OK(store_setting_set(s, "motd", "")); /* an empty value is a value */
    ASSERT_OK(store_setting_get(s, "motd", &v));
    ASSERT_STREQ(v, "");
    v = mfree(v);
    ASSERT_EQ(generation(s), 4);

    ASSERT_OK(store_setting_set(s, "default_model", NULL));
    ASSERT_ERROR(store_setting_get(s, "default_model", &v), ENOENT);
    ASSERT_ERROR(store_setting_set(s, "default_model", NULL), ENOENT);
    ASSERT_ERROR(store_setting_set(s, "Bad Key", "x"), EINVAL);
    ASSERT_ERROR(store_setting_get(s, "", &v), EINVAL);
    ASSERT_ERROR(store_setting_set(s, "k", "\xff"), EINVAL);
    ASSERT_EQ(generation(s), 5);
}

TEST(store_usage_batch)
{
    _cleanup_(store_freep) struct store *s = NULL;
    char path[128];
    struct usage_record u[3] = {
        {.time_usec = 1000,
         .member = "alice",
         .endpoint = "messages",
         .model_requested = "sonnet",
         .model_upstream = "claude-sonnet-4-5",
         .account = "work",
         .status = 200,
         .input = 28,
         .output = 19,
         .cache_read = 5,
         .cache_write = 7,
         .latency_ms = 812,
         .ttfb_ms = 301,
         .cost_micro_usd = 369},
        {.time_usec = 2000,
         .endpoint = "chat.completions",
         .model_requested = "gpt-4o",
         .model_upstream = "claude-sonnet-4-5",
         .status = 429},
        {.time_usec = 3000,
         .member = "bob",
         .endpoint = "messages",
         .model_requested = "opus",
         .model_upstream = "claude-opus-4-1",
         .account = "gcp",
         .status = 200,
         .input = INT64_MAX,
         .cost_micro_usd = 1},
    };

    temp_path("usage.db", path);
    ASSERT_OK(store_open(path, &s));
    ASSERT_OK(store_usage_insert_batch(s, u, 0));
    ASSERT_OK(store_usage_insert_batch(s, u, 3));
    ASSERT_EQ(generation(s), 1); /* usage is not routing */

    /* One bad record: the whole batch is refused and nothing of it is written. */
    u[1].model_upstream = NULL;
    ASSERT_ERROR(store_usage_insert_batch(s, u, 3), EINVAL);
    ASSERT_TRUE(strstr(store_last_error(s), "2 of 3") != NULL);
    s = store_free(s);

    ASSERT_EQ(raw_query_int(path, "SELECT count(*) FROM usage"), 3);
    ASSERT_EQ(raw_query_int(path, "SELECT count(*) FROM usage WHERE member IS NULL AND account "
                                  "IS NULL AND status = 429 AND input = 0"),
              1);
    ASSERT_EQ(raw_query_int(path, "SELECT input FROM usage WHERE member = 'bob'"), INT64_MAX);
    ASSERT_EQ(raw_query_int(path, "SELECT count(*) FROM usage WHERE time = 1000 AND member = "
                                  "'alice' AND endpoint = 'messages' AND model_requested = "
                                  "'sonnet' AND model_upstream = 'claude-sonnet-4-5' AND account "
                                  "= 'work' AND status = 200 AND input = 28 AND output = 19 AND "
                                  "cache_read = 5 AND cache_write = 7 AND latency_ms = 812 AND "
                                  "ttfb_ms = 301 AND cost_micro_usd = 369"),
              1);
}

TEST(store_migrate_empty_file_and_reopen)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(secret_freep) struct secret *key = secret_new("sk-ant-api03-x", 14);
    _cleanup_(account_record_freep) struct account_record *a = NULL;
    _cleanup_free_ char *v = NULL;
    char path[128];

    temp_path("migrate.db", path);
    ASSERT_OK(close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)));
    ASSERT_OK(store_open(path, &s));
    ASSERT_EQ(store_schema_version(s), 3);
    ASSERT_OK(store_account_add(s, "work", ACCOUNT_PROVIDER_ANTHROPIC, NULL, key));
    ASSERT_OK(store_map_set(s, "fast", "claude-haiku-4-5"));
    ASSERT_OK(store_setting_set(s, "default_model", "claude-sonnet-4-5"));
    s = store_free(s);
    ASSERT_EQ(raw_query_int(path, "PRAGMA user_version"), 3);

    /* Reopening migrates nothing and keeps everything. */
    ASSERT_OK(store_open(path, &s));
    ASSERT_EQ(store_schema_version(s), 3);
    ASSERT_EQ(generation(s), 4);
    ASSERT_OK(store_account_get(s, "work", &a));
    ASSERT_TRUE(secret_equal(a->secret, "sk-ant-api03-x", 14));
    ASSERT_OK(store_setting_get(s, "default_model", &v));
    ASSERT_STREQ(v, "claude-sonnet-4-5");
    ASSERT_OK(store_check_integrity(s));
    ASSERT_EQ(raw_query_int(path, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = "
                                  "'wal'"),
              1);
}

TEST(store_newer_schema_refused)
{
    struct store *s = NULL;
    struct store_error err = {};
    char path[128];

    temp_path("newer.db", path);
    ASSERT_OK(store_open(path, &s));
    s = store_free(s);
    raw_exec(path, "PRAGMA user_version = 99");
    ASSERT_ERROR(store_open_full(path, &s, &err), EPROTONOSUPPORT);
    ASSERT_NULL(s);
    ASSERT_TRUE(strstr(err.text, "schema version 99") != NULL);
    ASSERT_TRUE(strstr(err.text, "newer") != NULL);
    /* Refusing changed nothing. */
    ASSERT_EQ(raw_query_int(path, "PRAGMA user_version"), 99);
}

TEST(store_not_a_database)
{
    struct store *s = NULL;
    struct store_error err = {};
    char path[128], junk[4096];
    int fd;

    temp_path("garbage.db", path);
    memset(junk, 'x', sizeof junk);
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    ASSERT_ERROR(store_open_full(path, &s, &err), EUCLEAN);
    ASSERT_NULL(s);
    ASSERT_TRUE(err.text[0] != '\0');
}

TEST(store_file_modes)
{
    _cleanup_(store_freep) struct store *s = NULL;
    char path[128];
    mode_t old;

    /* A careless umask must not leak into the database or its side files. */
    old = umask(0022);
    temp_path("modes.db", path);
    ASSERT_OK(store_open(path, &s));
    ASSERT_EQ(umask(0022), 0022); /* restored */
    ASSERT_OK(store_account_add(s, "work", ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL));
    ASSERT_OK(store_map_set(s, "fast", "claude-haiku-4-5"));
    ASSERT_EQ(file_mode(path, ""), 0600);
    ASSERT_EQ(file_mode(path, "-wal"), 0600);
    ASSERT_EQ(file_mode(path, "-shm"), 0600);
    s = store_free(s);

    /* A database made readable to others (copied in by hand) is tightened on open. */
    temp_path("loose.db", path);
    raw_exec(path, "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    ASSERT_OK(chmod(path, 0644));
    ASSERT_OK(store_open(path, &s));
    ASSERT_EQ(file_mode(path, ""), 0600);
    ASSERT_OK(store_setting_set(s, "k", "v"));
    ASSERT_EQ(file_mode(path, "-wal"), 0600);
    ASSERT_EQ(file_mode(path, "-shm"), 0600);
    umask(old);
}

TEST(store_two_connections)
{
    _cleanup_(store_freep) struct store *a = NULL, *b = NULL;
    _cleanup_(map_entry_list_freep) struct map_entry *list = NULL;
    char path[128];
    size_t n = 0;

    temp_path("two.db", path);
    ASSERT_OK(store_open(path, &a));
    ASSERT_OK(store_open(path, &b));
    ASSERT_OK(store_map_set(a, "fast", "claude-haiku-4-5"));
    ASSERT_EQ(generation(b), 2);
    ASSERT_OK(store_map_list(b, &list, &n));
    ASSERT_EQ(n, 1);
    ASSERT_OK(store_account_add(b, "work", ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL));
    ASSERT_ERROR(store_account_add(a, "work", ACCOUNT_PROVIDER_ANTHROPIC, NULL, NULL), EEXIST);
    ASSERT_EQ(generation(a), 3);
}

TEST(store_account_routes)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(map_entry_list_freep) struct map_entry *list = NULL;
    _cleanup_(secret_freep) struct secret *key = secret_new("sk-ant-api03-y", 14);
    uint64_t g0, g1;
    size_t n = 99;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_account_add(s, "work", ACCOUNT_PROVIDER_ANTHROPIC, NULL, key));
    ASSERT_OK(store_account_add(s, "gcp", ACCOUNT_PROVIDER_VERTEX, NULL, NULL));
    ASSERT_OK(store_generation(s, &g0));
    ASSERT_OK(store_route_set(s, "*", "work"));
    ASSERT_OK(store_route_set(s, "claude-opus-*", "gcp"));
    ASSERT_OK(store_route_set(s, "claude-opus-*", "work")); /* replaces */
    ASSERT_OK(store_generation(s, &g1));
    ASSERT_EQ(g1, g0 + 3);
    ASSERT_OK(store_route_list(s, &list, &n));
    ASSERT_EQ(n, 2);
    ASSERT_STREQ(list[0].alias, "*");
    ASSERT_STREQ(list[0].target, "work");
    ASSERT_STREQ(list[1].alias, "claude-opus-*");
    ASSERT_STREQ(list[1].target, "work");
    list = map_entry_list_free(list);

    ASSERT_EQ(store_route_set(s, "has space", "work"), -EINVAL);
    ASSERT_EQ(store_route_set(s, "*", "Bad/Name"), -EINVAL);
    ASSERT_EQ(store_route_unset(s, "claude-haiku-*"), -ENOENT);
    ASSERT_OK(store_route_set(s, "claude-haiku-*", "gcp"));

    /* Removing an account removes the routes that named it, and only those. */
    ASSERT_OK(store_account_remove(s, "work"));
    ASSERT_OK(store_route_list(s, &list, &n));
    ASSERT_EQ(n, 1);
    ASSERT_STREQ(list[0].alias, "claude-haiku-*");
    ASSERT_STREQ(list[0].target, "gcp");
    ASSERT_OK(store_route_unset(s, "claude-haiku-*"));
    list = map_entry_list_free(list);
    ASSERT_OK(store_route_list(s, &list, &n));
    ASSERT_EQ(n, 0);
}

#define HASH_A "a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
#define HASH_B "0000000000000000000000000000000000000000000000000000000000000001"

TEST(store_members)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(member_record_list_freep) struct member_record *list = NULL;
    _cleanup_(member_record_freep) struct member_record *m = NULL;
    struct member_record add = {.name = (char *)"alice",
                                .key_sha256 = HASH_A,
                                .budget_micro_usd = 5000000,
                                .rate_limit_rpm = 60,
                                .rate_limit_tpm = 0,
                                .models = (char *)"[\"claude-sonnet-*\"]"};
    size_t n = 0;

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_member_add(s, &add));
    ASSERT_EQ(generation(s), 2);
    ASSERT_ERROR(store_member_add(s, &add), EEXIST);
    ASSERT_TRUE(strstr(store_last_error(s), "alice") != NULL);
    /* Another name with the same key hash: the key is unique too. */
    add.name = (char *)"bob";
    ASSERT_ERROR(store_member_add(s, &add), EEXIST);
    memcpy(add.key_sha256, HASH_B, sizeof add.key_sha256);
    add.budget_micro_usd = -1;
    add.rate_limit_rpm = 0;
    add.models = NULL;
    ASSERT_OK(store_member_add(s, &add));

    ASSERT_OK(store_member_get(s, "alice", 0, &m));
    ASSERT_STREQ(m->key_sha256, HASH_A);
    ASSERT_EQ(m->budget_micro_usd, 5000000);
    ASSERT_EQ(m->rate_limit_rpm, 60);
    ASSERT_EQ(m->rate_limit_tpm, 0);
    ASSERT_STREQ(m->models, "[\"claude-sonnet-*\"]");
    ASSERT_TRUE(m->created_usec > 0);
    m = member_record_free(m);

    ASSERT_OK(store_member_list(s, 0, &list, &n));
    ASSERT_EQ(n, 2);
    ASSERT_STREQ(list[0].name, "alice");
    ASSERT_STREQ(list[1].name, "bob");
    ASSERT_EQ(list[1].budget_micro_usd, -1);
    ASSERT_NULL(list[1].models);
    ASSERT_NULL(list[2].name);

    /* Limits are replaced as a whole; "none" is -1 / 0 / NULL. */
    add = (struct member_record){
        .name = (char *)"alice", .budget_micro_usd = -1, .rate_limit_tpm = 1000};
    ASSERT_OK(store_member_set_limits(s, &add));
    ASSERT_OK(store_member_get(s, "alice", 0, &m));
    ASSERT_EQ(m->budget_micro_usd, -1);
    ASSERT_EQ(m->rate_limit_rpm, 0);
    ASSERT_EQ(m->rate_limit_tpm, 1000);
    ASSERT_NULL(m->models);
    ASSERT_STREQ(m->key_sha256, HASH_A);
    m = member_record_free(m);

    /* Bad values are refused before any write. */
    add.models = (char *)"{\"not\":\"an array\"}";
    ASSERT_ERROR(store_member_set_limits(s, &add), EINVAL);
    add.models = NULL;
    add.rate_limit_rpm = -5;
    ASSERT_ERROR(store_member_set_limits(s, &add), EINVAL);
    ASSERT_ERROR(store_member_set_key(s, "alice", "ABCDEF"), EINVAL);
    ASSERT_ERROR(store_member_get(s, "Alice!", 0, &m), EINVAL);

    ASSERT_OK(store_member_set_key(s, "alice",
                                   "ffffffffffffffffffffffffffffffffffffffffffffffff"
                                   "ffffffffffffffff"));
    ASSERT_OK(store_member_get(s, "alice", 0, &m));
    ASSERT_EQ(m->key_sha256[0], 'f');
    m = member_record_free(m);

    ASSERT_ERROR(store_member_set_key(s, "carol", HASH_A), ENOENT);
    ASSERT_ERROR(store_member_remove(s, "carol"), ENOENT);
    ASSERT_ERROR(store_member_get(s, "carol", 0, &m), ENOENT);
    ASSERT_OK(store_member_remove(s, "bob"));
    ASSERT_ERROR(store_member_get(s, "bob", 0, &m), ENOENT);
    /* add alice, add bob, set limits, set key, remove bob */
    ASSERT_EQ(generation(s), 6);
}

static struct usage_record usage_at(const char *request_id, int64_t time_usec, const char *member,
                                    const char *model, const char *account, int status,
                                    int64_t cost)
{
    return (struct usage_record){.request_id = request_id,
                                 .time_usec = time_usec,
                                 .member = member,
                                 .endpoint = "anthropic",
                                 .model_requested = model,
                                 .model_upstream = model,
                                 .account = account,
                                 .status = status,
                                 .input = 10,
                                 .output = 20,
                                 .cache_read = 3,
                                 .cache_write = 4,
                                 .latency_ms = 100,
                                 .ttfb_ms = 50,
                                 .cost_micro_usd = cost};
}

#define DAY_USEC (86400LL * 1000000LL)
#define T0 (1793491200LL * 1000000LL) /* 2026-11-01T00:00:00Z */

TEST(store_usage_request_id_dedupe)
{
    _cleanup_(store_freep) struct store *s = NULL;
    char path[128];
    size_t stored = 99;
    struct usage_record u[3] = {
        usage_at("r1", T0, "alice", "claude-sonnet-4-5", "work", 200, 10),
        usage_at("r2", T0, "alice", "claude-sonnet-4-5", "work", 200, 20),
        usage_at("r1", T0, "alice", "claude-sonnet-4-5", "work", 200, 10), /* repeat */
    };

    temp_path("dedupe.db", path);
    ASSERT_OK(store_open(path, &s));
    ASSERT_OK(store_usage_insert(s, u, 3, &stored));
    ASSERT_EQ(stored, 2);
    ASSERT_OK(store_usage_insert(s, u, 2, &stored));
    ASSERT_EQ(stored, 0);
    s = store_free(s);

    /* Across a restart too. */
    ASSERT_OK(store_open(path, &s));
    u[2].request_id = "r3";
    ASSERT_OK(store_usage_insert(s, u, 3, &stored));
    ASSERT_EQ(stored, 1);
    /* Records without an id are never deduplicated. */
    u[0].request_id = u[1].request_id = NULL;
    ASSERT_OK(store_usage_insert(s, u, 2, &stored));
    ASSERT_EQ(stored, 2);
    s = store_free(s);
    ASSERT_EQ(raw_query_int(path, "SELECT count(*) FROM usage"), 5);
    ASSERT_EQ(raw_query_int(path, "SELECT count(*) FROM usage WHERE request_id = 'r1'"), 1);
}

TEST(store_usage_query_and_spend)
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(member_record_list_freep) struct member_record *list = NULL;
    struct usage_row *rows = NULL;
    size_t n = 0, stored = 0;
    struct member_record alice = {
        .name = (char *)"alice", .key_sha256 = HASH_A, .budget_micro_usd = -1};
    struct usage_record u[] = {
        usage_at("a", T0 - 1, "alice", "claude-opus-4-1", "work", 200, 1000), /* October */
        usage_at("b", T0, "alice", "claude-sonnet-4-5", "work", 200, 100),
        usage_at("c", T0 + DAY_USEC + 5, "alice", "claude-sonnet-4-5", "gcp", 500, 7),
        usage_at("d", T0 + DAY_USEC, "bob", "claude-haiku-4-5", "gcp", 429, 3),
        usage_at("e", T0 + 2 * DAY_USEC, NULL, "claude-haiku-4-5", NULL, 200, 1),
    };

    ASSERT_OK(store_open(":memory:", &s));
    ASSERT_OK(store_usage_insert(s, u, ELEMENTSOF(u), &stored));
    ASSERT_EQ(stored, ELEMENTSOF(u));

    ASSERT_OK(store_usage_query(s, USAGE_GROUP_MEMBER, T0, T0 + 30 * DAY_USEC, NULL, &rows, &n));
    ASSERT_EQ(n, 3);
    ASSERT_NULL(rows[0].key); /* no member sorts first */
    ASSERT_EQ(rows[0].requests, 1);
    ASSERT_STREQ(rows[1].key, "alice");
    ASSERT_EQ(rows[1].requests, 2);
    ASSERT_EQ(rows[1].cost_micro_usd, 107);
    ASSERT_EQ(rows[1].errors, 1);
    ASSERT_EQ(rows[1].input, 20);
    ASSERT_EQ(rows[1].output, 40);
    ASSERT_EQ(rows[1].cache_read, 6);
    ASSERT_EQ(rows[1].cache_write, 8);
    ASSERT_STREQ(rows[2].key, "bob");
    ASSERT_EQ(rows[2].errors, 1);
    usage_rows_free(rows, n);

    ASSERT_OK(store_usage_query(s, USAGE_GROUP_DAY, 0, INT64_MAX, NULL, &rows, &n));
    ASSERT_EQ(n, 4);
    ASSERT_STREQ(rows[0].key, "2026-10-31");
    ASSERT_STREQ(rows[1].key, "2026-11-01");
    ASSERT_STREQ(rows[2].key, "2026-11-02");
    ASSERT_EQ(rows[2].requests, 2);
    ASSERT_STREQ(rows[3].key, "2026-11-03");
    usage_rows_free(rows, n);

    ASSERT_OK(store_usage_query(s, USAGE_GROUP_MODEL, 0, INT64_MAX, "alice", &rows, &n));
    ASSERT_EQ(n, 2);
    ASSERT_STREQ(rows[0].key, "claude-opus-4-1");
    ASSERT_STREQ(rows[1].key, "claude-sonnet-4-5");
    ASSERT_EQ(rows[1].cost_micro_usd, 107);
    usage_rows_free(rows, n);

    /* until is exclusive. */
    ASSERT_OK(store_usage_query(s, USAGE_GROUP_ACCOUNT, T0, T0 + DAY_USEC, NULL, &rows, &n));
    ASSERT_EQ(n, 1);
    ASSERT_STREQ(rows[0].key, "work");
    ASSERT_EQ(rows[0].cost_micro_usd, 100);
    usage_rows_free(rows, n);

    ASSERT_OK(store_usage_query(s, USAGE_GROUP_MEMBER, 0, INT64_MAX, "nobody", &rows, &n));
    ASSERT_EQ(n, 0);
    usage_rows_free(rows, n);
    ASSERT_ERROR(store_usage_query(s, (enum usage_group)9, 0, 1, NULL, &rows, &n), EINVAL);
    ASSERT_EQ(usage_group_from_string("day"), USAGE_GROUP_DAY);
    ASSERT_EQ(usage_group_from_string("week"), -EINVAL);

    /* A member's spend counts from the window's start: November only. */
    ASSERT_OK(store_member_add(s, &alice));
    ASSERT_OK(store_member_list(s, T0, &list, &n));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(list[0].spent_micro_usd, 107);
    list = member_record_list_free(list);
    ASSERT_OK(store_member_list(s, 0, &list, &n));
    ASSERT_EQ(list[0].spent_micro_usd, 1107);
}
