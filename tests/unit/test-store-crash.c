/* test-store-crash.c: kill -9 in the middle of writes neither corrupts the store nor loses a
 * commit that was acknowledged.
 *
 * Fifty rounds on one database file. In each, a forked child opens the store and writes in a loop:
 * an account with a secret, a route, a batch of usage rows, over and over, and after each call
 * returns it reports what it wrote through a pipe. The parent SIGKILLs it after a random delay
 * (some rounds so early that the child is still opening, or migrating a new file), then opens the
 * store itself and checks: PRAGMA integrity_check says ok, every reported account (secret byte for
 * byte), route and usage batch is there, no usage batch is half written, and the generation counts
 * exactly the account and route changes, which shows that each bump shares its change's
 * transaction. The child may have committed one write it had no time to report; the counts allow
 * for that one and no more. The seed is printed so a failure can be replayed (STORE_CRASH_SEED). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "secret.h"
#include "store.h"
#include "test.h"

#define ROUNDS 50
#define USAGE_BATCH 20

enum ack_kind { ACK_ACCOUNT, ACK_ROUTE, ACK_USAGE, _ACK_KIND_MAX };

struct ack {
    uint32_t round;
    uint32_t seq;
    uint32_t kind;
};

static char temp_dir[64];
static char db_path[128];

static void account_name(const struct ack *a, char out[static 32])
{
    snprintf(out, 32, "r%u-%u", a->round, a->seq);
}

/* Secrets of varying length, with NUL and high bytes, derived from the name. */
static size_t secret_bytes(const struct ack *a, char out[static 96])
{
    size_t n = 16 + (a->seq * 7 + a->round) % 80;

    for (size_t i = 0; i < n; i++)
        out[i] = (char)((a->round * 131 + a->seq * 31 + i * 17) & 0xff);
    return n;
}

static void route_alias(const struct ack *a, char out[static 32])
{
    snprintf(out, 32, "alias-%u-%u", a->round, a->seq);
}

static int64_t usage_time(const struct ack *a)
{
    return ((int64_t)a->round << 32) | a->seq;
}

/* The child: writes until killed. Never returns. */
_Noreturn static void child_run(uint32_t round, int fd)
{
    struct store *s = NULL;
    char name[32], target[48], bytes[96];

    if (store_open(db_path, &s) < 0)
        _exit(2);
    for (uint32_t seq = 0;; seq++) {
        struct ack a = {round, seq, seq % _ACK_KIND_MAX};
        int r;

        if (a.kind == ACK_ACCOUNT) {
            struct secret *secret = secret_new(bytes, secret_bytes(&a, bytes));

            account_name(&a, name);
            r = secret ? store_account_add(s, name, ACCOUNT_PROVIDER_VERTEX, "{\"n\":1}", secret)
                       : -ENOMEM;
            secret_free(secret);
        } else if (a.kind == ACK_ROUTE) {
            route_alias(&a, name);
            snprintf(target, sizeof target, "target-%u-%u", round, seq);
            r = store_map_set(s, name, target);
        } else {
            struct usage_record u[USAGE_BATCH];

            for (size_t i = 0; i < USAGE_BATCH; i++)
                u[i] = (struct usage_record){.time_usec = usage_time(&a),
                                             .member = "crash",
                                             .endpoint = "messages",
                                             .model_requested = "sonnet",
                                             .model_upstream = "claude-sonnet-4-5",
                                             .status = 200,
                                             .input = (int64_t)i};
            r = store_usage_insert_batch(s, u, USAGE_BATCH);
        }
        if (r < 0)
            _exit(3);
        if (write(fd, &a, sizeof a) != (ssize_t)sizeof a)
            _exit(4);
    }
}

static int64_t raw_query_int(sqlite3 *db, const char *sql, int64_t arg)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_bind_parameter_count(st) > 0)
        ASSERT_EQ(sqlite3_bind_int64(st, 1, arg), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int cmp_alias(const void *key, const void *elem)
{
    return strcmp(key, ((const struct map_entry *)elem)->alias);
}

/* Checks the acknowledged writes acks[0..n_acks) and the totals. count[] holds how many writes of
 * each kind the database held after the previous check, plus those acknowledged since; at most
 * one more write may have landed unreported. On return count[] holds what the database holds. */
static void verify(const struct ack *acks, size_t n_acks, size_t count[static _ACK_KIND_MAX])
{
    _cleanup_(store_freep) struct store *s = NULL;
    _cleanup_(map_entry_list_freep) struct map_entry *routes = NULL;
    _cleanup_(account_record_list_freep) struct account_record *accounts = NULL;
    size_t n[_ACK_KIND_MAX] = {}, unreported = 0;
    sqlite3 *db = NULL;
    uint64_t g = 0;
    char name[32], bytes[96];

    ASSERT_OK(store_open(db_path, &s));
    ASSERT_OK(store_check_integrity(s));
    ASSERT_OK(store_map_list(s, &routes, &n[ACK_ROUTE]));
    ASSERT_OK(store_account_list(s, &accounts, &n[ACK_ACCOUNT]));
    ASSERT_OK(store_generation(s, &g));
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);

    for (size_t i = 0; i < n_acks; i++) {
        const struct ack *a = &acks[i];

        if (a->kind == ACK_ACCOUNT) {
            _cleanup_(account_record_freep) struct account_record *rec = NULL;
            size_t len = secret_bytes(a, bytes);

            account_name(a, name);
            ASSERT_OK(store_account_get(s, name, &rec));
            ASSERT_TRUE(secret_equal(rec->secret, bytes, len));
        } else if (a->kind == ACK_ROUTE) {
            char target[48];
            const struct map_entry *e;

            route_alias(a, name);
            snprintf(target, sizeof target, "target-%u-%u", a->round, a->seq);
            e = bsearch(name, routes, n[ACK_ROUTE], sizeof(*routes), cmp_alias);
            ASSERT_NOT_NULL(e);
            ASSERT_STREQ(e->target, target);
        } else
            ASSERT_EQ(raw_query_int(db, "SELECT count(*) FROM usage WHERE time = ?", usage_time(a)),
                      USAGE_BATCH);
    }

    /* Usage batches are whole or absent. */
    ASSERT_EQ(raw_query_int(db,
                            "SELECT count(*) FROM (SELECT time FROM usage GROUP BY time "
                            "HAVING count(*) != 20)",
                            0),
              0);
    n[ACK_USAGE] = (size_t)raw_query_int(db, "SELECT count(DISTINCT time) FROM usage", 0);
    sqlite3_close(db);

    /* Nothing beyond the acknowledged writes but, at most, one the child could not report. */
    for (size_t k = 0; k < _ACK_KIND_MAX; k++) {
        ASSERT_TRUE(n[k] >= count[k]);
        unreported += n[k] - count[k];
        count[k] = n[k];
    }
    ASSERT_TRUE(unreported <= 1);
    /* Each account and route change bumped the generation in its own transaction. */
    ASSERT_EQ(g, 1 + n[ACK_ACCOUNT] + n[ACK_ROUTE]);
}

__attribute__((destructor)) static void remove_temp_dir(void)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[160];

    if (!temp_dir[0])
        return;
    for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
        snprintf(p, sizeof p, "%s%s", db_path, suffixes[i]);
        unlink(p);
    }
    rmdir(temp_dir);
}

TEST(store_crash_kill9)
{
    _cleanup_free_ struct ack *acks = NULL;
    size_t n_acks = 0, round_start, allocated = 0, count[_ACK_KIND_MAX] = {};
    unsigned seed, early = 0;
    const char *e = getenv("STORE_CRASH_SEED");

    seed = e ? (unsigned)strtoul(e, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
    printf("store_crash_kill9: seed %u (set STORE_CRASH_SEED to replay)\n", seed);
    fflush(stdout);
    allocated = 1024;
    acks = reallocarray(NULL, allocated, sizeof(*acks));
    ASSERT_NOT_NULL(acks);
    snprintf(temp_dir, sizeof temp_dir, "/tmp/test-store-crash-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(temp_dir));
    snprintf(db_path, sizeof db_path, "%s/authd.db", temp_dir);

    for (uint32_t round = 0; round < ROUNDS; round++) {
        int fds[2], status = 0;
        struct ack a;
        ssize_t k;
        pid_t pid;
        useconds_t delay;

        /* One round in five dies within 2 ms, while the child opens (or migrates) the store. */
        if (rand_r(&seed) % 5 == 0) {
            delay = (useconds_t)(rand_r(&seed) % 2000);
            early++;
        } else
            delay = (useconds_t)(5000 + rand_r(&seed) % 55000);

        ASSERT_OK(pipe2(fds, O_CLOEXEC));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_run(round, fds[1]);
        }
        close(fds[1]);
        usleep(delay);
        ASSERT_OK(kill(pid, SIGKILL));
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
            close(fds[0]);
            test_fail(__FILE__, __LINE__, "round %u: the child exited with status %d", round,
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }

        round_start = n_acks;
        while ((k = read(fds[0], &a, sizeof a)) == (ssize_t)sizeof a) {
            if (n_acks == allocated) {
                struct ack *p;

                allocated *= 2;
                p = reallocarray(acks, allocated, sizeof(*acks));
                ASSERT_NOT_NULL(p);
                acks = p;
            }
            ASSERT_EQ(a.round, round);
            ASSERT_TRUE(a.kind < _ACK_KIND_MAX);
            acks[n_acks++] = a;
            count[a.kind]++;
        }
        close(fds[0]);
        ASSERT_EQ(k, 0); /* writes of 12 bytes to a pipe are atomic: no torn ack */

        verify(acks + round_start, n_acks - round_start, count);
    }
    /* Everything acknowledged in every round is still there. */
    verify(acks, n_acks, count);
    printf("store_crash_kill9: %d kills (%u early), %zu acknowledged writes survived\n", ROUNDS,
           early, n_acks);
    ASSERT_TRUE(n_acks > 0);
}
