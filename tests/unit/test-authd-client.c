/* test-authd-client.c: routerd's authd client against a fake authd.
 *
 * The fake is an in-process server: a listening Unix socket in a temp dir, served on the same
 * sd-event loop as the client, decoding frames with shared/ipc.h like the real authd will. Its
 * replies are scripted per test (hello's roles, snapshot pages, token.get replies with API keys or
 * access tokens, errors, delays, no reply at all), and it can hang up, stop listening, listen
 * again and push "generation" events. It counts what it was asked, so a test can tell a cache hit
 * from a token.get. Timeouts and backoffs are set in milliseconds so the whole file runs in a few
 * seconds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "authd-client.h"
#include "buf.h"
#include "conf.h"
#include "ipc.h"
#include "macro.h"
#include "secret.h"
#include "test.h"
#include "util.h"

#define MSEC USEC_PER_MSEC

/* Runs the loop until cond holds or ms pass; evaluates to cond. */
#define RUN_UNTIL(e, cond, ms)                                                                     \
    ({                                                                                             \
        uint64_t _deadline = now_usec() + (uint64_t)(ms)*MSEC;                                     \
        while (!(cond) && now_usec() < _deadline)                                                  \
            ASSERT_OK(sd_event_run((e), 5 * MSEC));                                                \
        (bool)(cond);                                                                              \
    })

static void run_for(sd_event *e, unsigned ms)
{
    (void)RUN_UNTIL(e, false, ms);
}

/* The fake authd. */

struct fake;

struct delayed {
    struct fake *fake;
    unsigned conn_serial;
    json_t *reply;
    sd_event_source *timer;
};

struct fake {
    sd_event *e;
    char dir[64], path[100];
    int listen_fd;
    sd_event_source *listen_src;
    int conn_fd;
    unsigned conn_serial;
    sd_event_source *conn_src;
    struct ipc_reader reader;

    /* The script. */
    json_t *roles;  /* hello's "roles" */
    json_t *pages;  /* snapshot pages: objects of op fields, without more/cursor */
    json_t *tokens; /* account -> reply fields, or "_error_code"/"_error_message", "_noreply",
                       "_delay_ms" */
    bool hangup_on_accept;
    unsigned fail_next_pages;   /* answer this many later-page requests not_found */
    unsigned drop_on_token_get; /* hang up instead of answering this many token.gets */
    struct delayed delayed[8];

    /* What it saw. */
    unsigned accepts, hellos, snapshot_gets, token_gets;
    json_t *last_hello;
};

static void fake_send(struct fake *f, const json_t *msg)
{
    struct buf b = BUF_INIT(0);
    size_t off = 0;

    ASSERT_OK(ipc_frame_encode(msg, &b));
    while (off < b.len) {
        ssize_t n = write(f->conn_fd, b.data + off, b.len - off);

        if (n < 0)
            break; /* the client went away */
        off += (size_t)n;
    }
    buf_free(&b, true);
}

static void fake_close_conn(struct fake *f)
{
    f->conn_src = sd_event_source_disable_unref(f->conn_src);
    f->conn_fd = safe_close(f->conn_fd);
    ipc_reader_done(&f->reader);
}

static int on_delayed(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct delayed *d = userdata;

    if (d->fake->conn_fd >= 0 && d->fake->conn_serial == d->conn_serial)
        fake_send(d->fake, d->reply);
    json_decref(d->reply);
    d->reply = NULL;
    d->timer = sd_event_source_disable_unref(d->timer);
    return 0;
}

/* Sends reply (stolen) after ms. */
static void fake_send_later(struct fake *f, json_t *reply, unsigned ms)
{
    for (size_t i = 0; i < ELEMENTSOF(f->delayed); i++) {
        struct delayed *d = &f->delayed[i];

        if (d->reply)
            continue;
        *d = (struct delayed){.fake = f, .conn_serial = f->conn_serial, .reply = reply};
        ASSERT_OK(sd_event_add_time_relative(f->e, &d->timer, CLOCK_MONOTONIC, ms * MSEC, 0,
                                             on_delayed, d));
        return;
    }
    ASSERT_TRUE(!"too many delayed replies");
}

static void fake_on_token_get(struct fake *f, uint64_t id, const char *account)
{
    const json_t *script = json_object_get(f->tokens, account), *v;
    const char *k;
    json_t *reply;

    f->token_gets++;
    if (f->drop_on_token_get > 0) {
        f->drop_on_token_get--;
        fake_close_conn(f);
        return;
    }
    if (!script)
        reply = ipc_reply_error(id, "not_found", "No such account");
    else if (json_is_true(json_object_get(script, "_noreply")))
        return;
    else if (json_object_get(script, "_error_code"))
        reply = ipc_reply_error(id, json_string_value(json_object_get(script, "_error_code")),
                                json_string_value(json_object_get(script, "_error_message")));
    else {
        reply = ipc_reply_ok(id);
        ASSERT_OK(json_object_set_new(reply, "account", json_string(account)));
        json_object_foreach ((json_t *)script, k, v)
            if (k[0] != '_')
                ASSERT_OK(json_object_set(reply, k, (json_t *)v));
    }
    if (json_is_integer(json_object_get(script, "_delay_ms")))
        fake_send_later(f, reply,
                        (unsigned)json_integer_value(json_object_get(script, "_delay_ms")));
    else {
        fake_send(f, reply);
        json_decref(reply);
    }
}

static void fake_on_snapshot_get(struct fake *f, uint64_t id, const char *cursor)
{
    size_t page = cursor ? strtoul(cursor + 1, NULL, 10) : 0, n = json_array_size(f->pages);
    json_t *reply;

    f->snapshot_gets++;
    if (page > 0 && f->fail_next_pages > 0) {
        f->fail_next_pages--;
        reply = ipc_reply_error(id, "not_found", "Cursor is not this connection's");
    } else if (page >= n)
        reply = ipc_reply_error(id, "not_found", "No such page");
    else {
        reply = ipc_reply_ok(id);
        ASSERT_OK(json_object_update(reply, json_array_get(f->pages, page)));
        ASSERT_OK(json_object_set_new(reply, "more", json_boolean(page + 1 < n)));
        if (page + 1 < n) {
            char c[32];

            snprintf(c, sizeof c, "p%zu", page + 1);
            ASSERT_OK(json_object_set_new(reply, "cursor", json_string(c)));
        }
    }
    fake_send(f, reply);
    json_decref(reply);
}

static void fake_handle(struct fake *f, json_t *msg)
{
    struct ipc_header hdr;
    json_t *reply;

    ASSERT_OK(ipc_message_check(msg, &hdr, NULL));
    ASSERT_EQ(hdr.kind, IPC_REQUEST);
    if (streq(hdr.op, "hello")) {
        f->hellos++;
        json_decref(f->last_hello);
        f->last_hello = json_incref(msg);
        reply = ipc_reply_ok(hdr.id);
        ASSERT_OK(json_object_set_new(reply, "protocol", json_integer(1)));
        ASSERT_OK(json_object_set_new(reply, "authd_version", json_string("0.1.0")));
        ASSERT_OK(json_object_set_new(reply, "roles", json_deep_copy(f->roles)));
        ASSERT_OK(json_object_set_new(reply, "uid", json_integer(getuid())));
        ASSERT_OK(json_object_set_new(reply, "dev_mode", json_true()));
        ASSERT_OK(json_object_set_new(reply, "subscribed", json_pack("[s]", "generation")));
        fake_send(f, reply);
        json_decref(reply);
    } else if (streq(hdr.op, "snapshot.get"))
        fake_on_snapshot_get(f, hdr.id, json_string_value(json_object_get(msg, "cursor")));
    else if (streq(hdr.op, "token.get"))
        fake_on_token_get(f, hdr.id, json_string_value(json_object_get(msg, "account")));
    else {
        reply = ipc_reply_error(hdr.id, "unknown_op", "Unknown op");
        fake_send(f, reply);
        json_decref(reply);
    }
}

static int fake_on_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct fake *f = userdata;
    char tmp[4096];
    ssize_t n;
    json_t *msg;
    int r;

    n = read(fd, tmp, MIN(sizeof tmp, ipc_reader_room(&f->reader)));
    if (n <= 0) {
        fake_close_conn(f);
        return 0;
    }
    ASSERT_OK(ipc_reader_feed(&f->reader, tmp, (size_t)n));
    while ((r = ipc_reader_next(&f->reader, &msg, NULL)) > 0) {
        unsigned serial = f->conn_serial;

        fake_handle(f, msg);
        json_decref(msg);
        if (f->conn_fd < 0 || f->conn_serial != serial)
            break; /* it hung up */
    }
    ASSERT_OK(r);
    return 0;
}

static int fake_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct fake *f = userdata;
    int c;

    c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    ASSERT_TRUE(c >= 0);
    f->accepts++;
    if (f->hangup_on_accept) {
        close(c);
        return 0;
    }
    fake_close_conn(f);
    f->conn_fd = c;
    f->conn_serial++;
    f->reader = IPC_READER_INIT;
    ASSERT_OK(sd_event_add_io(f->e, &f->conn_src, c, EPOLLIN, fake_on_conn, f));
    return 0;
}

static void fake_listen(struct fake *f)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f->path);
    f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ASSERT_TRUE(f->listen_fd >= 0);
    ASSERT_OK(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa));
    ASSERT_OK(listen(f->listen_fd, 16));
    ASSERT_OK(sd_event_add_io(f->e, &f->listen_src, f->listen_fd, EPOLLIN, fake_on_accept, f));
}

/* authd stops: the connection and the socket go away. */
static void fake_stop(struct fake *f)
{
    fake_close_conn(f);
    f->listen_src = sd_event_source_disable_unref(f->listen_src);
    f->listen_fd = safe_close(f->listen_fd);
    (void)unlink(f->path);
}

static void fake_push_generation(struct fake *f, int64_t generation)
{
    json_t *ev = ipc_event_new("generation");

    ASSERT_OK(json_object_set_new(ev, "generation", json_integer(generation)));
    fake_send(f, ev);
    json_decref(ev);
}

/* The usual script: two snapshot pages of generation 5, and a few accounts. */
static void fake_init(struct fake *f, sd_event *e)
{
    int64_t now = (int64_t)time(NULL);

    *f = (struct fake){.e = e, .listen_fd = -1, .conn_fd = -1, .reader = IPC_READER_INIT};
    snprintf(f->dir, sizeof f->dir, "/tmp/test-authd-client-XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/authd.sock", f->dir);
    f->roles = json_pack("[s]", "router");
    f->pages = json_pack(
        "[{s:I, s:s, s:{s:s}, s:[{s:s, s:s}], s:[{s:s}, {s:s}]}, {s:I, s:[{s:s}]}]", "generation",
        (json_int_t)5, "default_model", "claude-sonnet-4-5", "aliases", "fast", "claude-haiku-4-5",
        "routes", "model", "*", "account", "work", "members", "name", "alice", "name", "bob",
        "generation", (json_int_t)5, "members", "name", "carol");
    f->tokens = json_pack(
        "{s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:I, s:s, s:s}, s:{s:s, s:s, s:s, s:I},"
        " s:{s:s, s:s}, s:{s:b}, s:{s:s, s:s, s:s, s:i}}",
        "key", "provider", "anthropic", "kind", "api_key", "api_key", "sk-ant-test-1", "vertex",
        "provider", "vertex", "kind", "access_token", "access_token", "ya29.first", "expires_at",
        (json_int_t)(now + 3600), "project", "my-proj", "region", "us-east5", "soon", "provider",
        "vertex", "kind", "access_token", "access_token", "ya29.soon", "expires_at",
        (json_int_t)(now + 60), "login", "_error_code", "needs_login", "_error_message",
        "Account 'login' needs a new login: dualroutectl login vertex --account login", "stuck",
        "_noreply", 1, "slow", "provider", "anthropic", "kind", "api_key", "api_key", "sk-ant-slow",
        "_delay_ms", 100);
    ASSERT_NOT_NULL(f->pages);
    ASSERT_NOT_NULL(f->tokens);
    fake_listen(f);
}

static void fake_done(struct fake *f)
{
    fake_stop(f);
    for (size_t i = 0; i < ELEMENTSOF(f->delayed); i++) {
        json_decref(f->delayed[i].reply);
        sd_event_source_disable_unref(f->delayed[i].timer);
    }
    json_decref(f->roles);
    json_decref(f->pages);
    json_decref(f->tokens);
    json_decref(f->last_hello);
    (void)rmdir(f->dir);
}

/* The client's side. */

struct result {
    unsigned calls;
    int error;
    char code[64], message[512], token[128], kind[32], provider[32], project[32];
    int64_t expires_at;
};

static void on_token(const struct authd_token_result *res, void *userdata)
{
    struct result *r = userdata;

    r->calls++;
    r->error = res->error;
    if (res->cred) {
        snprintf(r->token, sizeof r->token, "%s", res->cred->token->data);
        snprintf(r->kind, sizeof r->kind, "%s", res->cred->kind);
        snprintf(r->provider, sizeof r->provider, "%s", res->cred->provider);
        snprintf(r->project, sizeof r->project, "%s", res->cred->project ?: "");
        r->expires_at = res->cred->expires_at;
    } else {
        snprintf(r->code, sizeof r->code, "%s", res->code);
        snprintf(r->message, sizeof r->message, "%s", res->message);
    }
}

struct snaps {
    unsigned count;
    json_t *last;
};

static void on_snapshot(const json_t *snapshot, void *userdata)
{
    struct snaps *s = userdata;

    s->count++;
    json_decref(s->last);
    s->last = json_deep_copy(snapshot);
}

struct env {
    sd_event *e;
    struct fake fake;
    struct snaps snaps;
    struct authd_client *client;
};

static void env_start(struct env *v, uint64_t timeout_usec)
{
    struct authd_client_config cfg = {
        .socket_path = v->fake.path,
        .on_snapshot = on_snapshot,
        .userdata = &v->snaps,
        .request_timeout_usec = timeout_usec ?: 2 * USEC_PER_SEC,
        .reconnect_initial_usec = 20 * MSEC,
    };

    ASSERT_OK(authd_client_new(v->e, &cfg, &v->client));
}

/* The fake is set up and listening; the client is not created yet. */
static void env_init(struct env *v)
{
    *v = (struct env){};
    ASSERT_OK(sd_event_new(&v->e));
    fake_init(&v->fake, v->e);
}

/* Starts the client and waits for its first snapshot. */
static void env_init_connected(struct env *v)
{
    env_init(v);
    env_start(v, 0);
    ASSERT_TRUE(RUN_UNTIL(v->e, v->snaps.count == 1, 2000));
    ASSERT_TRUE(authd_client_is_connected(v->client));
}

static void env_done(struct env *v)
{
    v->client = authd_client_free(v->client);
    fake_done(&v->fake);
    json_decref(v->snaps.last);
    sd_event_unref(v->e);
}

/* Asks for account's token and waits for the answer. */
static void get_token(struct env *v, const char *account, struct result *r)
{
    unsigned before = r->calls;

    ASSERT_OK(authd_client_token(v->client, account, on_token, r, NULL));
    ASSERT_EQ(r->calls, before); /* never from inside authd_client_token() */
    ASSERT_TRUE(RUN_UNTIL(v->e, r->calls > before, 3000));
}

TEST(hello_and_snapshot_in_two_pages)
{
    struct env v;
    const json_t *members;

    env_init(&v);
    env_start(&v, 0);
    ASSERT_FALSE(authd_client_is_connected(v.client));
    ASSERT_EQ(authd_client_generation(v.client), 0);
    ASSERT_TRUE(RUN_UNTIL(v.e, v.snaps.count == 1, 2000));

    ASSERT_TRUE(authd_client_is_connected(v.client));
    ASSERT_EQ(authd_client_generation(v.client), 5);
    ASSERT_EQ(v.fake.hellos, 1);
    ASSERT_EQ(v.fake.snapshot_gets, 2);
    ASSERT_STREQ(json_string_value(json_object_get(v.fake.last_hello, "client")),
                 "dualroute-routerd");
    ASSERT_STREQ(
        json_string_value(json_array_get(json_object_get(v.fake.last_hello, "subscribe"), 0)),
        "generation");

    /* The first page's fields, members joined across pages, no envelope or paging keys. */
    ASSERT_EQ(json_integer_value(json_object_get(v.snaps.last, "generation")), 5);
    ASSERT_STREQ(json_string_value(json_object_get(v.snaps.last, "default_model")),
                 "claude-sonnet-4-5");
    ASSERT_STREQ(
        json_string_value(json_object_get(json_object_get(v.snaps.last, "aliases"), "fast")),
        "claude-haiku-4-5");
    members = json_object_get(v.snaps.last, "members");
    ASSERT_EQ(json_array_size(members), 3);
    ASSERT_STREQ(json_string_value(json_object_get(json_array_get(members, 2), "name")), "carol");
    ASSERT_NULL(json_object_get(v.snaps.last, "more"));
    ASSERT_NULL(json_object_get(v.snaps.last, "cursor"));
    ASSERT_NULL(json_object_get(v.snaps.last, "id"));
    ASSERT_NULL(json_object_get(v.snaps.last, "ok"));
    env_done(&v);
}

TEST(generation_event_fetches_a_new_snapshot)
{
    struct env v;
    struct result r = {};

    env_init_connected(&v);
    get_token(&v, "key", &r);
    ASSERT_EQ(v.fake.token_gets, 1);

    json_object_set_new(json_array_get(v.fake.pages, 0), "generation", json_integer(6));
    json_object_set_new(json_array_get(v.fake.pages, 1), "generation", json_integer(6));
    json_object_set_new(json_array_get(v.fake.pages, 0), "default_model", json_string("fast"));
    fake_push_generation(&v.fake, 6);
    ASSERT_TRUE(RUN_UNTIL(v.e, v.snaps.count == 2, 2000));
    ASSERT_EQ(authd_client_generation(v.client), 6);
    ASSERT_STREQ(json_string_value(json_object_get(v.snaps.last, "default_model")), "fast");
    ASSERT_EQ(v.fake.snapshot_gets, 4);

    /* A generation that is not newer fetches nothing. */
    fake_push_generation(&v.fake, 6);
    fake_push_generation(&v.fake, 3);
    run_for(v.e, 100);
    ASSERT_EQ(v.fake.snapshot_gets, 4);
    ASSERT_EQ(v.snaps.count, 2);

    /* API keys are cached until the next snapshot. */
    get_token(&v, "key", &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_EQ(v.fake.token_gets, 2);
    env_done(&v);
}

TEST(snapshot_failing_halfway_is_retried_and_the_old_one_stays)
{
    struct env v;

    env_init_connected(&v);
    json_object_set_new(json_array_get(v.fake.pages, 0), "generation", json_integer(7));
    json_object_set_new(json_array_get(v.fake.pages, 1), "generation", json_integer(7));
    v.fake.fail_next_pages = 1;
    fake_push_generation(&v.fake, 7);
    ASSERT_TRUE(RUN_UNTIL(v.e, v.fake.snapshot_gets == 4, 2000));
    /* Page 2 failed: nothing new applied. */
    ASSERT_EQ(v.snaps.count, 1);
    ASSERT_EQ(authd_client_generation(v.client), 5);
    ASSERT_TRUE(RUN_UNTIL(v.e, v.snaps.count == 2, 2000));
    ASSERT_EQ(authd_client_generation(v.client), 7);
    ASSERT_EQ(v.fake.snapshot_gets, 6);
    ASSERT_EQ(json_array_size(json_object_get(v.snaps.last, "members")), 3);
    env_done(&v);
}

TEST(token_is_cached)
{
    struct env v;
    struct result r = {};

    env_init_connected(&v);
    get_token(&v, "vertex", &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_STREQ(r.token, "ya29.first");
    ASSERT_STREQ(r.kind, "access_token");
    ASSERT_STREQ(r.provider, "vertex");
    ASSERT_STREQ(r.project, "my-proj");
    ASSERT_TRUE(r.expires_at > (int64_t)time(NULL));
    ASSERT_EQ(v.fake.token_gets, 1);

    memset(&r, 0, sizeof r);
    get_token(&v, "vertex", &r); /* served from the cache, from the loop */
    ASSERT_EQ(r.error, 0);
    ASSERT_STREQ(r.token, "ya29.first");
    ASSERT_EQ(v.fake.token_gets, 1);

    get_token(&v, "key", &r);
    get_token(&v, "key", &r);
    ASSERT_STREQ(r.token, "sk-ant-test-1");
    ASSERT_STREQ(r.kind, "api_key");
    ASSERT_EQ(v.fake.token_gets, 2);

    /* The upstream refused it: the next request asks authd again. */
    authd_client_invalidate(v.client, "key");
    get_token(&v, "key", &r);
    ASSERT_EQ(v.fake.token_gets, 3);
    env_done(&v);
}

TEST(concurrent_requests_share_one_token_get)
{
    struct env v;
    struct result a = {}, b = {}, c = {};

    env_init_connected(&v);
    ASSERT_OK(authd_client_token(v.client, "slow", on_token, &a, NULL));
    ASSERT_OK(authd_client_token(v.client, "slow", on_token, &b, NULL));
    run_for(v.e, 30);
    ASSERT_OK(authd_client_token(v.client, "slow", on_token, &c, NULL));
    ASSERT_TRUE(RUN_UNTIL(v.e, a.calls && b.calls && c.calls, 2000));
    ASSERT_EQ(v.fake.token_gets, 1);
    ASSERT_STREQ(a.token, "sk-ant-slow");
    ASSERT_STREQ(b.token, "sk-ant-slow");
    ASSERT_STREQ(c.token, "sk-ant-slow");
    run_for(v.e, 50);
    ASSERT_EQ(a.calls + b.calls + c.calls, 3);
    env_done(&v);
}

TEST(token_within_the_margin_is_fetched_again)
{
    struct env v;
    struct result r = {};

    /* "soon" expires in 60 s, inside the default margin of 120 s. */
    env_init_connected(&v);
    get_token(&v, "soon", &r);
    ASSERT_STREQ(r.token, "ya29.soon");
    get_token(&v, "soon", &r);
    ASSERT_EQ(r.calls, 2);
    ASSERT_EQ(v.fake.token_gets, 2);
    env_done(&v);

    /* With a margin of 30 s it is served from the cache. */
    env_init(&v);
    {
        struct authd_client_config cfg = {.socket_path = v.fake.path,
                                          .token_margin_usec = 30 * USEC_PER_SEC,
                                          .reconnect_initial_usec = 20 * MSEC};
        ASSERT_OK(authd_client_new(v.e, &cfg, &v.client));
    }
    memset(&r, 0, sizeof r);
    get_token(&v, "soon", &r);
    get_token(&v, "soon", &r);
    ASSERT_STREQ(r.token, "ya29.soon");
    ASSERT_EQ(v.fake.token_gets, 1);
    env_done(&v);
}

TEST(authd_down_serves_cached_tokens_and_says_unavailable_otherwise)
{
    struct env v;
    struct result r = {};

    env_init_connected(&v);
    get_token(&v, "key", &r);
    get_token(&v, "vertex", &r);
    get_token(&v, "soon", &r);
    ASSERT_EQ(v.fake.token_gets, 3);

    fake_stop(&v.fake);
    ASSERT_TRUE(RUN_UNTIL(v.e, !authd_client_is_connected(v.client), 2000));

    memset(&r, 0, sizeof r);
    get_token(&v, "key", &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_STREQ(r.token, "sk-ant-test-1");
    get_token(&v, "vertex", &r);
    ASSERT_STREQ(r.token, "ya29.first");
    get_token(&v, "soon", &r); /* inside the margin, but not expired */
    ASSERT_EQ(r.error, 0);
    ASSERT_STREQ(r.token, "ya29.soon");

    get_token(&v, "other", &r);
    ASSERT_TRUE(r.error < 0);
    ASSERT_STREQ(r.code, "unavailable");
    ASSERT_NOT_NULL(strstr(r.message, v.fake.path));
    ASSERT_NOT_NULL(strstr(r.message, "is it running?"));
    ASSERT_NOT_NULL(strstr(r.message, "'other'"));
    ASSERT_EQ(v.fake.token_gets, 3);
    env_done(&v);
}

TEST(reconnects_after_authd_restarts)
{
    struct env v;
    struct result r = {};

    env_init_connected(&v);
    fake_stop(&v.fake);
    ASSERT_TRUE(RUN_UNTIL(v.e, !authd_client_is_connected(v.client), 2000));
    run_for(v.e, 150); /* several refused attempts */
    fake_listen(&v.fake);
    ASSERT_TRUE(RUN_UNTIL(v.e, authd_client_is_connected(v.client), 2000));
    ASSERT_TRUE(RUN_UNTIL(v.e, v.snaps.count == 2, 2000));
    ASSERT_EQ(v.fake.hellos, 2);
    get_token(&v, "vertex", &r);
    ASSERT_STREQ(r.token, "ya29.first");
    env_done(&v);
}

TEST(reconnect_backs_off)
{
    struct env v;

    /* authd accepts and hangs up at once: 50 ms doubling gives attempts at about 0, 50, 150, 350
     * and 750 ms (each +-20%), so 700 ms see 4 of them; retrying without backoff would be many
     * more. */
    env_init(&v);
    v.fake.hangup_on_accept = true;
    {
        struct authd_client_config cfg = {.socket_path = v.fake.path,
                                          .reconnect_initial_usec = 50 * MSEC};
        ASSERT_OK(authd_client_new(v.e, &cfg, &v.client));
    }
    run_for(v.e, 700);
    ASSERT_TRUE(v.fake.accepts >= 3);
    ASSERT_TRUE(v.fake.accepts <= 5);
    ASSERT_FALSE(authd_client_is_connected(v.client));
    env_done(&v);
}

TEST(needs_login_passes_code_and_message_through)
{
    struct env v;
    struct result r = {};

    env_init_connected(&v);
    get_token(&v, "login", &r);
    ASSERT_TRUE(r.error < 0);
    ASSERT_STREQ(r.code, "needs_login");
    ASSERT_STREQ(r.message,
                 "Account 'login' needs a new login: dualroutectl login vertex --account login");
    get_token(&v, "nope", &r);
    ASSERT_STREQ(r.code, "not_found");
    ASSERT_TRUE(authd_client_is_connected(v.client));
    env_done(&v);
}

TEST(request_timeout_says_unavailable_and_reconnects)
{
    struct env v;
    struct result r = {};

    env_init(&v);
    env_start(&v, 200 * MSEC);
    ASSERT_TRUE(RUN_UNTIL(v.e, v.snaps.count == 1, 2000));
    get_token(&v, "stuck", &r);
    ASSERT_TRUE(r.error < 0);
    ASSERT_STREQ(r.code, "unavailable");
    ASSERT_NOT_NULL(strstr(r.message, "'stuck'"));
    /* authd is considered stuck: the connection is made again. */
    ASSERT_TRUE(RUN_UNTIL(v.e, v.fake.hellos == 2 && authd_client_is_connected(v.client), 2000));
    env_done(&v);
}

TEST(dropped_request_is_retried_once_on_the_new_connection)
{
    struct env v;
    struct result r = {};

    env_init_connected(&v);
    v.fake.drop_on_token_get = 1;
    get_token(&v, "vertex", &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_STREQ(r.token, "ya29.first");
    ASSERT_EQ(v.fake.token_gets, 2);
    ASSERT_EQ(v.fake.hellos, 2);

    /* Dropped on both connections: it fails without waiting for the timeout. */
    memset(&r, 0, sizeof r);
    v.fake.drop_on_token_get = 2;
    get_token(&v, "key", &r);
    ASSERT_TRUE(r.error < 0);
    ASSERT_STREQ(r.code, "unavailable");
    ASSERT_EQ(v.fake.token_gets, 4);
    env_done(&v);
}

TEST(cancelled_request_is_not_called)
{
    struct env v;
    struct result r = {}, cached = {};
    struct authd_token_req *req = NULL;

    env_init_connected(&v);
    ASSERT_OK(authd_client_token(v.client, "slow", on_token, &r, &req));
    ASSERT_NOT_NULL(req);
    authd_token_req_cancel(req);
    ASSERT_TRUE(RUN_UNTIL(v.e, v.fake.token_gets == 1, 1000));
    run_for(v.e, 250); /* the delayed reply arrives and is cached */
    ASSERT_EQ(r.calls, 0);

    /* A cache hit cancelled before the loop delivers it. */
    ASSERT_OK(authd_client_token(v.client, "slow", on_token, &cached, &req));
    authd_token_req_cancel(req);
    run_for(v.e, 50);
    ASSERT_EQ(cached.calls, 0);
    ASSERT_EQ(v.fake.token_gets, 1);
    env_done(&v);
}

TEST(forbidden_hello_says_so)
{
    struct env v;
    struct result r = {};

    env_init(&v);
    json_decref(v.fake.roles);
    v.fake.roles = json_pack("[s]", "admin");
    env_start(&v, 0);
    ASSERT_TRUE(RUN_UNTIL(v.e, v.fake.hellos >= 2, 2000)); /* tried again, with backoff */
    ASSERT_FALSE(authd_client_is_connected(v.client));
    ASSERT_EQ(v.snaps.count, 0);
    ASSERT_EQ(v.fake.snapshot_gets, 0);
    get_token(&v, "key", &r);
    ASSERT_STREQ(r.code, "forbidden");
    ASSERT_NOT_NULL(strstr(r.message, "fetch credentials"));
    ASSERT_EQ(v.fake.token_gets, 0);
    env_done(&v);
}

TEST(free_with_pending_requests)
{
    struct env v;
    struct result a = {}, b = {}, c = {}, d = {};

    env_init_connected(&v);
    get_token(&v, "vertex", &a);
    ASSERT_OK(authd_client_token(v.client, "stuck", on_token, &b, NULL));
    ASSERT_OK(authd_client_token(v.client, "stuck", on_token, &c, NULL));
    run_for(v.e, 20);
    ASSERT_OK(authd_client_token(v.client, "vertex", on_token, &d, NULL)); /* ready, not run */
    v.client = authd_client_free(v.client);
    run_for(v.e, 50);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(b.calls + c.calls + d.calls, 0);
    env_done(&v);
}

TEST(requests_before_hello_wait_for_it)
{
    struct env v;
    struct result r = {};

    env_init(&v);
    env_start(&v, 0);
    ASSERT_FALSE(authd_client_is_connected(v.client));
    get_token(&v, "vertex", &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_STREQ(r.token, "ya29.first");
    env_done(&v);
}

TEST(dropped_request_with_an_unexpired_cached_token_gets_it)
{
    struct env v;
    struct result r = {};

    /* "soon" is inside the margin, so it is asked for again; authd hangs up on that request, and
     * the cached token, which has not expired, is served at once rather than after a retry. */
    env_init_connected(&v);
    get_token(&v, "soon", &r);
    v.fake.drop_on_token_get = 1;
    memset(&r, 0, sizeof r);
    get_token(&v, "soon", &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_STREQ(r.token, "ya29.soon");
    ASSERT_EQ(v.fake.token_gets, 2);
    env_done(&v);
}
