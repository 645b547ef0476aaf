/* authd-client.c: routerd's connection to dualroute-authd (docs/ipc.md), on routerd's sd-event
 * loop.
 *
 * One non-blocking AF_UNIX stream socket at a time. The connection goes DOWN -> HELLO (connected,
 * hello sent) -> READY (hello answered with the router role). While READY it fetches the routing
 * snapshot page by page, and again whenever a "generation" event announces a newer one; the last
 * complete snapshot stays applied when a fetch fails. Requests are pipelined: ids come from a
 * counter and replies are matched by id, so a slow token.get holds nothing else up. Outgoing frames
 * wait in a write buffer, and the io source asks for EPOLLOUT only while that buffer is not empty.
 *
 * Credentials: a struct fetch is one token.get for one account, shared by every request for that
 * account that arrives while it is outstanding (its waiters). Replies are cached per account: an
 * access token until token_margin before it expires, an API key while the connection and the
 * snapshot generation are those it was fetched under. While authd is unreachable a cached token
 * that has not expired yet is still served. Each fetch has a deadline: when it passes, the waiters
 * get "unavailable" and, if the request was on the wire, the connection is considered stuck and is
 * dropped. A fetch whose connection drops is sent once more on the next connection if that comes
 * back before the deadline.
 *
 * Every token callback runs from a defer source (the ready queue), never from inside
 * authd_client_token() or from the middle of frame processing; on_snapshot runs from the io
 * handler. Neither may free the client. A failed connect or a dropped connection is retried after
 * a backoff of reconnect_initial (1 s) doubling to 30 s, with +-20% jitter, reset by a successful
 * hello. Log lines name the op, the id, the account and authd's error code, never a token. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "authd-client.h"
#include "buf.h"
#include "conf.h"
#include "ipc.h"
#include "log.h"
#include "macro.h"
#include "secret.h"
#include "util.h"

#define DEFAULT_MARGIN_USEC (120 * USEC_PER_SEC)
#define DEFAULT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define DEFAULT_BACKOFF_USEC (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (30 * USEC_PER_SEC)
/* Requests are small (token.get carries an account name); this only bounds a stuck peer. */
#define WRITE_MAX ((size_t)1 << 20)
#define SNAPSHOT_PAGES_MAX 4096
#define READS_PER_WAKEUP 16

enum conn_state {
    CONN_DOWN,  /* no socket; the reconnect timer is armed */
    CONN_HELLO, /* connected, hello sent */
    CONN_READY, /* hello answered with the router role */
};

/* An owned copy of a credential: a cache entry, or what a ready request delivers. */
struct cred {
    char *account, *provider, *kind, *project, *region;
    struct secret *token;
    int64_t expires_at;               /* 0 for API keys */
    uint64_t conn_serial, generation; /* what an API key is valid under */
    struct cred *next;
};

struct fetch;

/* One usage.report on the wire. */
struct report {
    uint64_t id;
    authd_report_cb_t cb;
    void *userdata;
    struct report *next;
};

struct req_list {
    struct authd_token_req *head, *tail;
};

struct authd_token_req {
    struct authd_client *client;
    struct fetch *fetch; /* the token.get it waits on, or NULL when in the client's ready queue */
    struct authd_token_req *prev, *next;
    authd_token_cb_t cb;
    void *userdata;
    /* The result, once known. */
    int error;
    char *code, *message;
    struct cred *cred;
};

/* One token.get for one account, shared by its waiters. */
struct fetch {
    struct authd_client *client;
    char *account;
    uint64_t id;    /* of the request on the current connection, 0 when not on the wire */
    unsigned sends; /* connections it has been sent on */
    sd_event_source *timer;
    struct req_list waiters;
    struct fetch *prev, *next;
};

struct authd_client {
    sd_event *event;
    char *socket_path;
    authd_snapshot_cb_t on_snapshot;
    void *userdata;
    uint64_t margin_usec, timeout_usec, backoff_initial_usec;

    /* The connection. */
    enum conn_state state;
    int fd;
    sd_event_source *io;
    struct ipc_reader reader;
    struct buf out;
    uint64_t next_id;
    uint64_t conn_serial; /* counts successful hellos */
    uint64_t hello_id;
    sd_event_source *hello_timer;

    /* Reconnecting. */
    sd_event_source *reconnect_timer;
    uint64_t backoff_usec;
    bool connect_warned;
    bool forbidden; /* the last hello said we may not fetch credentials */
    bool forbidden_logged;
    unsigned forbidden_uid;

    /* The snapshot. */
    uint64_t snap_id; /* of the page request on the wire, 0 when none */
    sd_event_source *snap_timer, *snap_retry;
    json_t *snap_partial;
    unsigned snap_pages;
    unsigned snap_failures; /* in a row: the retry delay doubles with each */
    uint64_t generation;    /* of the applied snapshot */
    uint64_t announced;     /* the highest generation an event announced */

    /* Credentials. */
    struct cred *cache;
    struct fetch *fetches;
    struct req_list ready;
    sd_event_source *defer;

    /* usage.report frames awaiting their reply; one deadline for the oldest. */
    struct report *reports;
    sd_event_source *report_timer;
};

static void client_drop(struct authd_client *c, int error);
static void client_schedule_reconnect(struct authd_client *c, int error, bool lost);
static void fetch_send_all(struct authd_client *c);
static void snapshot_start(struct authd_client *c);

/* Lists. */

static void req_list_append(struct req_list *l, struct authd_token_req *req)
{
    req->prev = l->tail;
    req->next = NULL;
    if (l->tail)
        l->tail->next = req;
    else
        l->head = req;
    l->tail = req;
}

static void req_list_remove(struct req_list *l, struct authd_token_req *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        l->head = req->next;
    if (req->next)
        req->next->prev = req->prev;
    else
        l->tail = req->prev;
    req->prev = req->next = NULL;
}

/* Credentials. */

static struct cred *cred_free(struct cred *cr)
{
    if (!cr)
        return NULL;
    free(cr->account);
    free(cr->provider);
    free(cr->kind);
    free(cr->project);
    free(cr->region);
    secret_free(cr->token);
    return mfree(cr);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cred *, cred_free);

static int strdup_opt(const char *s, char **ret)
{
    *ret = NULL;
    if (!s)
        return 0;
    *ret = strdup(s);
    return *ret ? 0 : -ENOMEM;
}

/* Returns a new copy of cr, or NULL on allocation failure. */
static struct cred *cred_copy(const struct cred *cr)
{
    _cleanup_(cred_freep) struct cred *n = calloc(1, sizeof *n);

    if (!n)
        return NULL;
    if (strdup_opt(cr->account, &n->account) < 0 || strdup_opt(cr->provider, &n->provider) < 0 ||
        strdup_opt(cr->kind, &n->kind) < 0 || strdup_opt(cr->project, &n->project) < 0 ||
        strdup_opt(cr->region, &n->region) < 0)
        return NULL;
    n->token = secret_new(cr->token->data, cr->token->len);
    if (!n->token)
        return NULL;
    n->expires_at = cr->expires_at;
    n->conn_serial = cr->conn_serial;
    n->generation = cr->generation;
    return TAKE_PTR(n);
}

static struct cred *cache_find(struct authd_client *c, const char *account)
{
    for (struct cred *cr = c->cache; cr; cr = cr->next)
        if (streq(cr->account, account))
            return cr;
    return NULL;
}

static void cache_drop(struct authd_client *c, const char *account)
{
    for (struct cred **p = &c->cache; *p; p = &(*p)->next)
        if (streq((*p)->account, account)) {
            struct cred *cr = *p;

            *p = cr->next;
            cred_free(cr);
            return;
        }
}

/* Steals cr, replacing the account's entry. */
static void cache_put(struct authd_client *c, struct cred *cr)
{
    cache_drop(c, cr->account);
    cr->next = c->cache;
    c->cache = cr;
}

/* Whether a cached credential may be used without asking authd. */
static bool cred_is_fresh(const struct authd_client *c, const struct cred *cr)
{
    if (cr->expires_at == 0)
        return c->state == CONN_READY && cr->conn_serial == c->conn_serial &&
               cr->generation == c->generation;
    return (uint64_t)cr->expires_at * USEC_PER_SEC > now_realtime_usec() + c->margin_usec;
}

/* Whether a cached credential may still be used while authd cannot give a fresh one. */
static bool cred_is_unexpired(const struct cred *cr)
{
    return cr->expires_at == 0 || (uint64_t)cr->expires_at * USEC_PER_SEC > now_realtime_usec();
}

/* Requests and their delivery. */

static struct authd_token_req *req_free(struct authd_token_req *req)
{
    if (!req)
        return NULL;
    free(req->code);
    free(req->message);
    cred_free(req->cred);
    return mfree(req);
}

static void ready_push(struct authd_client *c, struct authd_token_req *req)
{
    req->fetch = NULL;
    req_list_append(&c->ready, req);
    (void)sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

/* Queues req for delivery with a copy of cr, or with an internal error when copying fails. */
static void req_deliver_cred(struct authd_client *c, struct authd_token_req *req,
                             const struct cred *cr)
{
    req->cred = cred_copy(cr);
    if (!req->cred)
        req->error = -ENOMEM;
    ready_push(c, req);
}

/* Queues req for delivery with an error. code is an IPC error code; message is one line. */
static void req_deliver_error(struct authd_client *c, struct authd_token_req *req, int error,
                              const char *code, const char *message)
{
    req->error = error < 0 ? error : -EIO;
    req->code = strdup(code);
    req->message = strdup(message);
    ready_push(c, req);
}

static int on_defer(sd_event_source *s, void *userdata)
{
    struct authd_client *c = userdata;
    struct authd_token_req *req;

    while ((req = c->ready.head)) {
        struct authd_credential view = {};
        struct authd_token_result res = {.error = req->error};

        req_list_remove(&c->ready, req);
        if (req->error >= 0 && req->cred) {
            view = (struct authd_credential){
                .account = req->cred->account,
                .provider = req->cred->provider,
                .kind = req->cred->kind,
                .token = req->cred->token,
                .expires_at = req->cred->expires_at,
                .project = req->cred->project,
                .region = req->cred->region,
            };
            res.cred = &view;
        } else {
            if (res.error >= 0)
                res.error = -ENOMEM;
            res.code = req->code ?: IPC_ERROR_INTERNAL;
            res.message = req->message ?: "Out of memory.";
        }
        req->cb(&res, req->userdata);
        req_free(req);
    }
    return 0;
}

/* sd-event's default accuracy (250 ms) would swallow the jitter of short backoffs. */
static uint64_t timer_accuracy(uint64_t usec)
{
    return MAX(usec / 20, USEC_PER_MSEC);
}

/* Fetches. */

static struct fetch *fetch_free(struct fetch *f)
{
    struct authd_token_req *req;

    if (!f)
        return NULL;
    while ((req = f->waiters.head)) {
        req_list_remove(&f->waiters, req);
        req_free(req);
    }
    sd_event_source_disable_unref(f->timer);
    free(f->account);
    return mfree(f);
}

static void fetch_unlink(struct fetch *f)
{
    struct authd_client *c = f->client;

    if (f->prev)
        f->prev->next = f->next;
    else
        c->fetches = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

static struct fetch *fetch_find(struct authd_client *c, const char *account)
{
    for (struct fetch *f = c->fetches; f; f = f->next)
        if (streq(f->account, account))
            return f;
    return NULL;
}

static struct fetch *fetch_find_id(struct authd_client *c, uint64_t id)
{
    for (struct fetch *f = c->fetches; f; f = f->next)
        if (f->id == id)
            return f;
    return NULL;
}

/* Hands cr (borrowed) to every waiter and frees the fetch. */
static void fetch_complete(struct fetch *f, const struct cred *cr)
{
    struct authd_client *c = f->client;
    struct authd_token_req *req;

    fetch_unlink(f);
    while ((req = f->waiters.head)) {
        req_list_remove(&f->waiters, req);
        req_deliver_cred(c, req, cr);
    }
    fetch_free(f);
}

static void fetch_fail(struct fetch *f, int error, const char *code, const char *message)
{
    struct authd_client *c = f->client;
    struct authd_token_req *req;

    fetch_unlink(f);
    while ((req = f->waiters.head)) {
        req_list_remove(&f->waiters, req);
        req_deliver_error(c, req, error, code, message);
    }
    fetch_free(f);
}

/* Fails f because authd cannot answer, unless the account's cached credential has not expired
 * yet, which is then served instead. */
static void fetch_fail_unreachable(struct fetch *f, int error, const char *code,
                                   const char *message)
{
    const struct cred *cr = cache_find(f->client, f->account);

    if (cr && cred_is_unexpired(cr)) {
        log_debug("Serving the cached credential of account '%s' while authd cannot answer.",
                  f->account);
        fetch_complete(f, cr);
        return;
    }
    fetch_fail(f, error, code, message);
}

/* The message for a request that authd cannot serve because it cannot be reached. */
static char *unreachable_message(const struct authd_client *c, const char *account)
{
    char *m = NULL;
    int n;

    if (c->forbidden)
        n = asprintf(&m,
                     "dualroute-authd at '%s' does not let uid %u fetch credentials: run "
                     "dualroute-routerd as user dualroute-router (or, in dev mode, as authd's own "
                     "user)",
                     c->socket_path, c->forbidden_uid);
    else
        n = asprintf(&m,
                     "No credential for account '%s': dualroute-authd is not reachable at '%s'; is "
                     "it running? (systemctl status dualroute-authd)",
                     account, c->socket_path);
    return n < 0 ? NULL : m;
}

static void fetch_fail_not_connected(struct fetch *f)
{
    struct authd_client *c = f->client;
    _cleanup_free_ char *m = unreachable_message(c, f->account);

    fetch_fail_unreachable(f, c->forbidden ? -EACCES : -ENOTCONN,
                           c->forbidden ? IPC_ERROR_FORBIDDEN : IPC_ERROR_UNAVAILABLE,
                           m ?: "dualroute-authd is not reachable");
}

static int on_fetch_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct fetch *f = userdata;
    struct authd_client *c = f->client;
    bool on_wire = f->id != 0 && c->state != CONN_DOWN;
    char d[32], *m = NULL;

    format_duration(c->timeout_usec, d);
    if (on_wire) {
        log_warning("authd did not answer token.get (id %" PRIu64 ") for account '%s' within %s, "
                    "reconnecting.",
                    f->id, f->account, d);
        if (asprintf(&m,
                     "dualroute-authd at '%s' did not answer for account '%s' within %s; is it "
                     "stuck? (systemctl status dualroute-authd)",
                     c->socket_path, f->account, d) < 0)
            m = NULL;
        fetch_fail_unreachable(f, -ETIMEDOUT, IPC_ERROR_UNAVAILABLE,
                               m ?: "dualroute-authd did not answer");
        free(m);
        client_drop(c, -ETIMEDOUT);
    } else
        fetch_fail_not_connected(f);
    return 0;
}

/* Puts a token.get for f on the wire. */
static int fetch_send(struct fetch *f)
{
    struct authd_client *c = f->client;
    json_t *msg;
    uint64_t id = c->next_id++;
    int r;

    assert(c->state == CONN_READY);
    msg = ipc_request_new("token.get", id);
    if (!msg || json_object_set_new(msg, "account", json_string(f->account)) < 0) {
        json_decref(msg);
        return -ENOMEM;
    }
    r = ipc_frame_encode(msg, &c->out);
    json_decref(msg);
    if (r < 0)
        return r;
    (void)sd_event_source_set_io_events(c->io, EPOLLIN | EPOLLOUT);
    f->id = id;
    f->sends++;
    log_debug("authd: token.get id=%" PRIu64 " account='%s'", id, f->account);
    return 0;
}

static void fetch_send_or_fail(struct fetch *f)
{
    int r;

    r = fetch_send(f);
    if (r < 0) {
        log_warning_errno(r, "Failed to send token.get for account '%s': %m", f->account);
        fetch_fail(f, r, IPC_ERROR_INTERNAL, "dualroute-routerd could not send the request");
    }
}

static void fetch_send_all(struct authd_client *c)
{
    struct fetch *f, *next;

    for (f = c->fetches; f; f = next) {
        next = f->next;
        if (f->id == 0)
            fetch_send_or_fail(f);
    }
}

/* Creates a fetch for account with its deadline running; it is sent once the connection is
 * ready. */
static int fetch_new(struct authd_client *c, const char *account, struct fetch **ret)
{
    struct fetch *f;
    int r;

    f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->client = c;
    f->account = strdup(account);
    if (!f->account) {
        fetch_free(f);
        return -ENOMEM;
    }
    r = sd_event_add_time_relative(c->event, &f->timer, CLOCK_MONOTONIC, c->timeout_usec,
                                   timer_accuracy(c->timeout_usec), on_fetch_timeout, f);
    if (r < 0) {
        fetch_free(f);
        return r;
    }
    f->next = c->fetches;
    if (c->fetches)
        c->fetches->prev = f;
    c->fetches = f;
    *ret = f;
    return 0;
}

static int errno_from_code(const char *code)
{
    static const struct {
        const char *code;
        int error;
    } table[] = {
        {IPC_ERROR_NOT_FOUND, ENOENT},
        {IPC_ERROR_NEEDS_LOGIN, EKEYREVOKED},
        {IPC_ERROR_UNAVAILABLE, EAGAIN},
        {IPC_ERROR_FORBIDDEN, EACCES},
        {IPC_ERROR_BUSY, EBUSY},
        {IPC_ERROR_BAD_REQUEST, EINVAL},
        {IPC_ERROR_UNKNOWN_OP, EOPNOTSUPP},
    };

    for (size_t i = 0; i < ELEMENTSOF(table); i++)
        if (streq(code, table[i].code))
            return -table[i].error;
    return -EIO;
}

static const char *json_string_or_null(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Builds a credential from a successful token.get reply (borrowed). */
static int cred_from_reply(struct authd_client *c, const char *account, const json_t *msg,
                           struct cred **ret)
{
    _cleanup_(cred_freep) struct cred *cr = NULL;
    const char *provider = json_string_or_null(msg, "provider");
    const char *kind = json_string_or_null(msg, "kind");
    const char *acc = json_string_or_null(msg, "account");
    const json_t *tok, *exp;

    if (!provider || !kind || (acc && !streq(acc, account)))
        return -EBADMSG;
    if (streq(kind, "api_key"))
        tok = json_object_get(msg, "api_key");
    else if (streq(kind, "access_token"))
        tok = json_object_get(msg, "access_token");
    else
        return -EBADMSG;
    if (!json_is_string(tok) || json_string_length(tok) == 0)
        return -EBADMSG;
    exp = json_object_get(msg, "expires_at");
    if (streq(kind, "access_token") && (!json_is_integer(exp) || json_integer_value(exp) <= 0))
        return -EBADMSG;

    cr = calloc(1, sizeof *cr);
    if (!cr)
        return -ENOMEM;
    if (strdup_opt(account, &cr->account) < 0 || strdup_opt(provider, &cr->provider) < 0 ||
        strdup_opt(kind, &cr->kind) < 0 ||
        strdup_opt(json_string_or_null(msg, "project"), &cr->project) < 0 ||
        strdup_opt(json_string_or_null(msg, "region"), &cr->region) < 0)
        return -ENOMEM;
    cr->token = secret_new(json_string_value(tok), json_string_length(tok));
    if (!cr->token)
        return -ENOMEM;
    cr->expires_at = streq(kind, "access_token") ? json_integer_value(exp) : 0;
    cr->conn_serial = c->conn_serial;
    cr->generation = c->generation;
    *ret = TAKE_PTR(cr);
    return 0;
}

static void on_token_reply(struct authd_client *c, struct fetch *f, const json_t *msg,
                           const struct ipc_header *hdr)
{
    struct cred *cr = NULL;
    int r;

    f->id = 0;
    if (!hdr->ok) {
        const char *code =
            ipc_error_code_is_known(hdr->error_code) ? hdr->error_code : IPC_ERROR_INTERNAL;

        log_warning("authd refused token.get (id %" PRIu64 ") for account '%s': %s: %s", hdr->id,
                    f->account, code, hdr->error_message);
        if (streq(code, IPC_ERROR_NOT_FOUND))
            cache_drop(c, f->account);
        if (streq(code, IPC_ERROR_UNAVAILABLE))
            fetch_fail_unreachable(f, errno_from_code(code), code, hdr->error_message);
        else
            fetch_fail(f, errno_from_code(code), code, hdr->error_message);
        return;
    }

    r = cred_from_reply(c, f->account, msg, &cr);
    if (r < 0) {
        _cleanup_free_ char *m = NULL;

        log_warning_errno(
            r, "authd sent an unusable token.get reply (id %" PRIu64 ") for account '%s': %m",
            hdr->id, f->account);
        if (asprintf(&m, "dualroute-authd sent an unusable credential for account '%s'",
                     f->account) < 0)
            m = NULL;
        fetch_fail(f, r, IPC_ERROR_INTERNAL, m ?: "dualroute-authd sent an unusable credential");
        return;
    }
    log_debug("authd: token.get id=%" PRIu64 " account='%s' kind=%s fp=%s expires_at=%" PRId64,
              hdr->id, cr->account, cr->kind, secret_fp(cr->token), cr->expires_at);
    cache_put(c, cr);
    fetch_complete(f, cr);
}

/* The connection. */

static int queue_message(struct authd_client *c, const json_t *msg)
{
    int r;

    r = ipc_frame_encode(msg, &c->out);
    if (r < 0)
        return r;
    return sd_event_source_set_io_events(c->io, EPOLLIN | EPOLLOUT);
}

static int arm_timer(struct authd_client *c, sd_event_source **s, uint64_t usec,
                     sd_event_time_handler_t handler)
{
    *s = sd_event_source_disable_unref(*s);
    return sd_event_add_time_relative(c->event, s, CLOCK_MONOTONIC, usec, timer_accuracy(usec),
                                      handler, c);
}

static void snapshot_discard(struct authd_client *c)
{
    json_decref(c->snap_partial);
    c->snap_partial = NULL;
}

/* Closes the socket and forgets everything tied to it; fetches are left to the caller. */
static void close_connection(struct authd_client *c)
{
    c->io = sd_event_source_disable_unref(c->io);
    c->fd = safe_close(c->fd);
    ipc_reader_done(&c->reader);
    buf_free(&c->out, true);
    c->hello_id = c->snap_id = 0;
    c->hello_timer = sd_event_source_disable_unref(c->hello_timer);
    c->snap_timer = sd_event_source_disable_unref(c->snap_timer);
    c->snap_retry = sd_event_source_disable_unref(c->snap_retry);
    snapshot_discard(c);
    c->state = CONN_DOWN;
}

static void reports_fail(struct authd_client *c, int error)
{
    struct report *list = c->reports, *next;

    c->reports = NULL;
    c->report_timer = sd_event_source_disable_unref(c->report_timer);
    for (struct report *rp = list; rp; rp = next) {
        next = rp->next;
        if (rp->cb)
            rp->cb(error, 0, rp->userdata);
        free(rp);
    }
}

static void client_drop(struct authd_client *c, int error)
{
    bool lost = c->state == CONN_READY;
    struct fetch *f, *next;

    close_connection(c);
    reports_fail(c, error < 0 ? error : -ECONNRESET);

    /* A request whose account has an unexpired cached token gets that. Requests that were on
     * the wire get one more try on the next connection, within their deadline; those that had it
     * already fail now. A forbidden peer will not do better. */
    for (f = c->fetches; f; f = next) {
        const struct cred *cr = cache_find(c, f->account);

        next = f->next;
        if (cr && cred_is_unexpired(cr))
            fetch_complete(f, cr);
        else if (c->forbidden)
            fetch_fail_not_connected(f);
        else if (f->id != 0) {
            f->id = 0;
            if (f->sends >= 2)
                fetch_fail_not_connected(f);
        }
    }
    client_schedule_reconnect(c, error, lost);
}

static int on_hello_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct authd_client *c = userdata;

    log_warning("dualroute-authd at '%s' did not answer hello (id %" PRIu64 "), reconnecting.",
                c->socket_path, c->hello_id);
    client_drop(c, -ETIMEDOUT);
    return 0;
}

static int on_snapshot_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct authd_client *c = userdata;

    log_warning("dualroute-authd at '%s' did not answer snapshot.get (id %" PRIu64
                "), reconnecting.",
                c->socket_path, c->snap_id);
    client_drop(c, -ETIMEDOUT);
    return 0;
}

static void note_forbidden(struct authd_client *c, unsigned uid)
{
    c->forbidden = true;
    c->forbidden_uid = uid;
    if (!c->forbidden_logged)
        log_error("authd does not let uid %u fetch credentials: run dualroute-routerd as user "
                  "dualroute-router (or, in dev mode, as the user authd runs as); retrying with "
                  "backoff.",
                  uid);
    c->forbidden_logged = true;
}

static int on_hello_reply(struct authd_client *c, const json_t *msg, const struct ipc_header *hdr)
{
    const json_t *uid = json_object_get(msg, "uid");
    unsigned roles = 0;

    c->hello_id = 0;
    c->hello_timer = sd_event_source_disable_unref(c->hello_timer);
    if (!hdr->ok) {
        log_warning("authd refused hello: %s: %s", hdr->error_code, hdr->error_message);
        if (streq(hdr->error_code, IPC_ERROR_FORBIDDEN)) {
            note_forbidden(c, (unsigned)getuid());
            return -EACCES;
        }
        return -EPROTO;
    }
    if (ipc_roles_from_json(json_object_get(msg, "roles"), &roles) < 0 ||
        !(roles & IPC_ROLE_ROUTER)) {
        note_forbidden(c, json_is_integer(uid) ? (unsigned)json_integer_value(uid)
                                               : (unsigned)getuid());
        return -EACCES;
    }

    c->state = CONN_READY;
    c->conn_serial++;
    c->backoff_usec = c->backoff_initial_usec;
    c->connect_warned = false;
    c->forbidden = c->forbidden_logged = false;
    log_info("Connected to dualroute-authd %s at '%s'.",
             json_string_or_null(msg, "authd_version") ?: "(unknown version)", c->socket_path);
    fetch_send_all(c);
    snapshot_start(c);
    return 0;
}

/* The snapshot. */

static int snapshot_request(struct authd_client *c, const char *cursor)
{
    json_t *msg;
    uint64_t id = c->next_id++;
    int r;

    msg = ipc_request_new("snapshot.get", id);
    if (!msg)
        return -ENOMEM;
    if (cursor && json_object_set_new(msg, "cursor", json_string(cursor)) < 0) {
        json_decref(msg);
        return -ENOMEM;
    }
    r = queue_message(c, msg);
    json_decref(msg);
    if (r < 0)
        return r;
    c->snap_id = id;
    log_debug("authd: snapshot.get id=%" PRIu64 "%s", id, cursor ? " (next page)" : "");
    return arm_timer(c, &c->snap_timer, c->timeout_usec, on_snapshot_timeout);
}

static int on_snapshot_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct authd_client *c = userdata;

    c->snap_retry = sd_event_source_disable_unref(c->snap_retry);
    snapshot_start(c);
    return 0;
}

/* Gives up on the snapshot being fetched; the applied one stays, and the fetch starts over. */
static void snapshot_retry_later(struct authd_client *c)
{
    uint64_t delay;
    char d[32];
    int r;

    c->snap_id = 0;
    c->snap_timer = sd_event_source_disable_unref(c->snap_timer);
    snapshot_discard(c);
    delay = MIN(c->backoff_initial_usec << MIN(c->snap_failures, 16u), BACKOFF_MAX_USEC);
    c->snap_failures++;
    format_duration(delay, d);
    log_warning("Fetching the routing snapshot again in %s; generation %" PRIu64 " stays applied.",
                d, c->generation);
    r = arm_timer(c, &c->snap_retry, delay, on_snapshot_retry);
    if (r < 0)
        log_warning_errno(r, "Failed to arm the snapshot retry timer: %m");
}

static void snapshot_start(struct authd_client *c)
{
    int r;

    if (c->state != CONN_READY || c->snap_id != 0 || c->snap_retry)
        return;
    snapshot_discard(c);
    c->snap_pages = 0;
    r = snapshot_request(c, NULL);
    if (r < 0) {
        log_warning_errno(r, "Failed to request the routing snapshot: %m");
        snapshot_retry_later(c);
    }
}

static void on_snapshot_reply(struct authd_client *c, const json_t *msg,
                              const struct ipc_header *hdr)
{
    const json_t *gen = json_object_get(msg, "generation"),
                 *members = json_object_get(msg, "members");
    const char *cursor = json_string_or_null(msg, "cursor");
    bool more = json_is_true(json_object_get(msg, "more"));
    json_t *snap;
    int r;

    c->snap_id = 0;
    c->snap_timer = sd_event_source_disable_unref(c->snap_timer);
    if (!hdr->ok) {
        log_warning("authd refused snapshot.get (id %" PRIu64 "): %s: %s", hdr->id, hdr->error_code,
                    hdr->error_message);
        goto retry;
    }
    if (!json_is_integer(gen) || json_integer_value(gen) < 0 ||
        (members && !json_is_null(members) && !json_is_array(members)) || (more && !cursor)) {
        log_warning("authd sent a malformed snapshot.get reply (id %" PRIu64 ").", hdr->id);
        goto retry;
    }

    if (!c->snap_partial) {
        const char *envelope[] = {"v", "id", "ok", "more", "cursor"};

        c->snap_partial = json_copy((json_t *)msg);
        if (!c->snap_partial)
            goto retry;
        for (size_t i = 0; i < ELEMENTSOF(envelope); i++)
            json_object_del(c->snap_partial, envelope[i]);
        if (json_object_set_new(c->snap_partial, "members", json_array()) < 0)
            goto retry;
    } else if (json_integer_value(json_object_get(c->snap_partial, "generation")) !=
               json_integer_value(gen)) {
        log_warning("authd changed generation in the middle of a snapshot (id %" PRIu64 ").",
                    hdr->id);
        goto retry;
    }
    if (json_is_array(members) &&
        json_array_extend(json_object_get(c->snap_partial, "members"), (json_t *)members) < 0)
        goto retry;

    if (more) {
        if (++c->snap_pages >= SNAPSHOT_PAGES_MAX) {
            log_warning("authd's snapshot has more than %u pages.", SNAPSHOT_PAGES_MAX);
            goto retry;
        }
        r = snapshot_request(c, cursor);
        if (r < 0) {
            log_warning_errno(r, "Failed to request the next snapshot page: %m");
            snapshot_retry_later(c);
        }
        return;
    }

    snap = TAKE_PTR(c->snap_partial);
    c->snap_failures = 0;
    c->generation = (uint64_t)json_integer_value(gen);
    log_info("Applied routing snapshot generation %" PRIu64 " (%zu members).", c->generation,
             json_array_size(json_object_get(snap, "members")));
    if (c->on_snapshot)
        c->on_snapshot(snap, c->userdata);
    json_decref(snap);
    if (c->announced > c->generation)
        snapshot_start(c);
    return;

retry:
    snapshot_retry_later(c);
}

static void on_event(struct authd_client *c, const json_t *msg, const struct ipc_header *hdr)
{
    const json_t *gen = json_object_get(msg, "generation");

    if (!streq(hdr->event, "generation")) {
        log_debug("authd: ignoring event '%s'.", hdr->event);
        return;
    }
    if (!json_is_integer(gen) || json_integer_value(gen) < 0)
        return;
    log_debug("authd: generation %" PRId64 " announced.", (int64_t)json_integer_value(gen));
    if ((uint64_t)json_integer_value(gen) <= MAX(c->generation, c->announced))
        return;
    c->announced = (uint64_t)json_integer_value(gen);
    snapshot_start(c); /* when a fetch is under way, its end starts the next one */
}

/* Handles one decoded message (borrowed). Returns < 0 when the connection must be dropped. */
static int handle_message(struct authd_client *c, const json_t *msg)
{
    struct parse_error err = {};
    struct ipc_header hdr;
    struct fetch *f;
    int r;

    r = ipc_message_check(msg, &hdr, &err);
    if (r < 0) {
        log_warning("authd sent an invalid message: %s", err.text);
        return r;
    }
    switch (hdr.kind) {
    case IPC_EVENT:
        on_event(c, msg, &hdr);
        return 0;
    case IPC_REPLY:
        break;
    default:
        log_warning("authd sent a request; dropping the connection.");
        return -EPROTO;
    }

    if (hdr.id == 0) {
        log_warning("authd closed the connection: %s: %s", hdr.error_code ?: "(none)",
                    hdr.error_message ?: "");
        if (hdr.error_code && streq(hdr.error_code, IPC_ERROR_FORBIDDEN))
            note_forbidden(c, (unsigned)getuid());
        return -ECONNRESET;
    }
    if (hdr.id == c->hello_id)
        return on_hello_reply(c, msg, &hdr);
    if (c->state != CONN_READY) {
        log_warning("authd answered id %" PRIu64 " before hello.", hdr.id);
        return -EPROTO;
    }
    if (hdr.id == c->snap_id) {
        on_snapshot_reply(c, msg, &hdr);
        return 0;
    }
    f = fetch_find_id(c, hdr.id);
    if (f) {
        on_token_reply(c, f, msg, &hdr);
        return 0;
    }
    for (struct report **p = &c->reports; *p; p = &(*p)->next)
        if ((*p)->id == hdr.id) {
            struct report *rp = *p;
            const json_t *stored = json_object_get(msg, "stored");

            *p = rp->next;
            if (!c->reports)
                c->report_timer = sd_event_source_disable_unref(c->report_timer);
            if (!hdr.ok)
                log_warning("authd refused usage.report (id %" PRIu64 "): %s: %s", hdr.id,
                            hdr.error_code, hdr.error_message);
            if (rp->cb)
                rp->cb(hdr.ok                                         ? 0
                       : streq(hdr.error_code, IPC_ERROR_BAD_REQUEST) ? -EBADMSG
                                                                      : -EREMOTEIO,
                       json_is_integer(stored) ? (int64_t)json_integer_value(stored) : 0,
                       rp->userdata);
            free(rp);
            return 0;
        }
    log_debug("authd: ignoring a reply to unknown id %" PRIu64 ".", hdr.id);
    return 0;
}

static int client_read(struct authd_client *c)
{
    uint8_t tmp[4096];
    int r;

    for (unsigned i = 0; i < READS_PER_WAKEUP; i++) {
        ssize_t n;

        n = read(c->fd, tmp, MIN(sizeof tmp, ipc_reader_room(&c->reader)));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -errno;
        }
        if (n == 0)
            return -ECONNRESET;
        r = ipc_reader_feed(&c->reader, tmp, (size_t)n);
        explicit_bzero(tmp, (size_t)n);
        if (r < 0)
            return r;
        for (;;) {
            struct parse_error err = {};
            json_t *msg = NULL;

            r = ipc_reader_next(&c->reader, &msg, &err);
            if (r < 0) {
                log_warning_errno(r, "authd sent a frame that cannot be decoded: %s", err.text);
                return r;
            }
            if (r == 0)
                break;
            r = handle_message(c, msg);
            json_decref(msg);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

static int client_flush(struct authd_client *c)
{
    while (c->out.len > 0) {
        ssize_t n;

        n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            return -errno;
        }
        buf_consume(&c->out, (size_t)n);
    }
    return 0;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct authd_client *c = userdata;
    int r;

    if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        r = client_read(c);
        if (r < 0) {
            client_drop(c, r);
            return 0;
        }
    }
    if (revents & EPOLLOUT || c->out.len > 0) {
        r = client_flush(c);
        if (r < 0) {
            client_drop(c, r);
            return 0;
        }
    }
    (void)sd_event_source_set_io_events(c->io, EPOLLIN | (c->out.len > 0 ? EPOLLOUT : 0));
    return 0;
}

static int client_connect(struct authd_client *c)
{
    union {
        struct sockaddr sa;
        struct sockaddr_un un;
    } sa = {.un.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;
    size_t n = strlen(c->socket_path);
    json_t *hello;
    uint64_t id;
    int r;

    assert(c->state == CONN_DOWN);
    if (n == 0 || n >= sizeof sa.un.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.un.sun_path, c->socket_path, n);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* An AF_UNIX connect completes at once or fails (EAGAIN: authd's backlog is full). */
    if (connect(fd, &sa.sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1)) < 0)
        return -errno;

    r = sd_event_add_io(c->event, &c->io, fd, EPOLLIN | EPOLLOUT, on_io, c);
    if (r < 0)
        return r;
    c->fd = TAKE_FD(fd);
    c->state = CONN_HELLO;
    c->reader = IPC_READER_INIT;
    c->out = BUF_INIT(WRITE_MAX);

    id = c->next_id++;
    hello = ipc_request_new("hello", id);
    if (!hello || json_object_set_new(hello, "client", json_string("dualroute-routerd")) < 0 ||
        json_object_set_new(hello, "client_version", json_string(DUALROUTE_VERSION)) < 0 ||
        json_object_set_new(hello, "subscribe", json_pack("[s]", "generation")) < 0)
        r = -ENOMEM;
    else
        r = queue_message(c, hello);
    json_decref(hello);
    if (r >= 0)
        r = arm_timer(c, &c->hello_timer, c->timeout_usec, on_hello_timeout);
    if (r < 0) {
        close_connection(c);
        return r;
    }
    c->hello_id = id;
    log_debug("authd: connected to '%s', hello id=%" PRIu64, c->socket_path, id);
    return 0;
}

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct authd_client *c = userdata;
    int r;

    c->reconnect_timer = sd_event_source_disable_unref(c->reconnect_timer);
    r = client_connect(c);
    if (r < 0)
        client_schedule_reconnect(c, r, false);
    return 0;
}

/* Arms the reconnect timer at the current backoff with +-20% jitter, doubles the backoff, and
 * logs why: lost for a ready connection that went away, else error says what went wrong (the
 * first refusal is a warning, later ones are debug: authd restarting is normal). */
static void client_schedule_reconnect(struct authd_client *c, int error, bool lost)
{
    uint64_t delay = c->backoff_usec;
    uint32_t rnd = 0;
    bool refused, quiet;
    char d[32];
    int r;

    (void)random_bytes(&rnd, sizeof rnd);
    delay = delay * 8 / 10 + (uint64_t)((double)(delay * 4 / 10) * rnd / UINT32_MAX);
    c->backoff_usec = MIN(c->backoff_usec * 2, BACKOFF_MAX_USEC);

    format_duration(delay, d);
    refused = error == -ENOENT || error == -ECONNREFUSED;
    quiet = c->forbidden || (refused && c->connect_warned);
    if (lost)
        log_warning_errno(error,
                          "Lost the connection to dualroute-authd at '%s', reconnecting in %s: %m",
                          c->socket_path, d);
    else
        log_full_errno(quiet ? LOG_DEBUG : LOG_WARNING, error,
                       "Cannot reach dualroute-authd at '%s', retrying in %s: %m", c->socket_path,
                       d);
    if (refused)
        c->connect_warned = true;

    r = arm_timer(c, &c->reconnect_timer, delay, on_reconnect);
    if (r < 0)
        log_error_errno(r, "Failed to arm the authd reconnect timer: %m");
}

/* The API. */

int authd_client_new(sd_event *e, const struct authd_client_config *cfg, struct authd_client **ret)
{
    struct authd_client *c;
    int r;

    assert(e && cfg && ret);
    if (!cfg->socket_path || !*cfg->socket_path)
        return -EINVAL;
    c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->event = sd_event_ref(e);
    c->fd = -1;
    c->reader = IPC_READER_INIT;
    c->out = BUF_INIT(WRITE_MAX);
    c->next_id = 1;
    c->on_snapshot = cfg->on_snapshot;
    c->userdata = cfg->userdata;
    c->margin_usec = cfg->token_margin_usec ?: DEFAULT_MARGIN_USEC;
    c->timeout_usec = cfg->request_timeout_usec ?: DEFAULT_TIMEOUT_USEC;
    c->backoff_initial_usec = cfg->reconnect_initial_usec ?: DEFAULT_BACKOFF_USEC;
    c->backoff_usec = c->backoff_initial_usec;
    c->socket_path = strdup(cfg->socket_path);
    if (!c->socket_path) {
        r = -ENOMEM;
        goto fail;
    }
    r = sd_event_add_defer(e, &c->defer, on_defer, c);
    if (r < 0)
        goto fail;
    (void)sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);

    r = client_connect(c);
    if (r < 0)
        client_schedule_reconnect(c, r, false);
    *ret = c;
    return 0;

fail:
    authd_client_free(c);
    return r;
}

struct authd_client *authd_client_free(struct authd_client *c)
{
    struct authd_token_req *req;
    struct cred *cr;

    if (!c)
        return NULL;
    close_connection(c);
    while (c->fetches) {
        struct fetch *f = c->fetches;

        fetch_unlink(f);
        fetch_free(f);
    }
    while ((req = c->ready.head)) {
        req_list_remove(&c->ready, req);
        req_free(req);
    }
    while ((cr = c->cache)) {
        c->cache = cr->next;
        cred_free(cr);
    }
    while (c->reports) {
        struct report *rp = c->reports;

        c->reports = rp->next;
        free(rp);
    }
    sd_event_source_disable_unref(c->report_timer);
    sd_event_source_disable_unref(c->reconnect_timer);
    sd_event_source_disable_unref(c->defer);
    sd_event_unref(c->event);
    free(c->socket_path);
    return mfree(c);
}

bool authd_client_is_connected(const struct authd_client *c)
{
    return c && c->state == CONN_READY;
}

uint64_t authd_client_generation(const struct authd_client *c)
{
    return c ? c->generation : 0;
}

int authd_client_token(struct authd_client *c, const char *account, authd_token_cb_t cb,
                       void *userdata, struct authd_token_req **ret_req)
{
    struct authd_token_req *req;
    const struct cred *cr;
    struct fetch *f;
    int r;

    assert(c && cb);
    if (!account || !*account)
        return -EINVAL;
    req = calloc(1, sizeof *req);
    if (!req)
        return -ENOMEM;
    req->client = c;
    req->cb = cb;
    req->userdata = userdata;

    cr = cache_find(c, account);
    f = fetch_find(c, account);
    if (cr && cred_is_fresh(c, cr))
        req_deliver_cred(c, req, cr);
    else if (f) {
        req->fetch = f;
        req_list_append(&f->waiters, req);
    } else if (c->state == CONN_DOWN) {
        if (cr && cred_is_unexpired(cr)) {
            log_debug("Serving the cached credential of account '%s' while authd is unreachable.",
                      account);
            req_deliver_cred(c, req, cr);
        } else {
            _cleanup_free_ char *m = unreachable_message(c, account);

            log_debug("No credential for account '%s': authd is unreachable.", account);
            req_deliver_error(c, req, c->forbidden ? -EACCES : -ENOTCONN,
                              c->forbidden ? IPC_ERROR_FORBIDDEN : IPC_ERROR_UNAVAILABLE,
                              m ?: "dualroute-authd is not reachable");
        }
    } else {
        r = fetch_new(c, account, &f);
        if (r < 0) {
            req_free(req);
            return r;
        }
        req->fetch = f;
        req_list_append(&f->waiters, req);
        /* When still saying hello, the fetch goes out once hello is answered. */
        if (c->state == CONN_READY)
            fetch_send_or_fail(f);
    }
    if (ret_req)
        *ret_req = req;
    return 0;
}

void authd_token_req_cancel(struct authd_token_req *req)
{
    if (!req)
        return;
    if (req->fetch)
        req_list_remove(&req->fetch->waiters, req);
    else
        req_list_remove(&req->client->ready, req);
    req_free(req);
}

void authd_client_invalidate(struct authd_client *c, const char *account)
{
    if (!c || !account)
        return;
    log_debug("authd: dropping the cached credential of account '%s'.", account);
    cache_drop(c, account);
}

static int on_report_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct authd_client *c = userdata;

    log_warning("dualroute-authd at '%s' did not answer usage.report, reconnecting.",
                c->socket_path);
    client_drop(c, -ETIMEDOUT);
    return 0;
}

int authd_client_usage_report(struct authd_client *c, json_t *records, authd_report_cb_t cb,
                              void *userdata)
{
    json_t *msg;
    struct report *rp;
    uint64_t id;
    int r;

    if (!c || c->state != CONN_READY)
        return -ENOTCONN;
    rp = calloc(1, sizeof *rp);
    if (!rp)
        return -ENOMEM;
    id = c->next_id++;
    msg = ipc_request_new("usage.report", id);
    if (!msg || json_object_set(msg, "records", records) < 0) {
        json_decref(msg);
        free(rp);
        return -ENOMEM;
    }
    r = queue_message(c, msg);
    json_decref(msg);
    if (r < 0) {
        free(rp);
        return r;
    }
    rp->id = id;
    rp->cb = cb;
    rp->userdata = userdata;
    rp->next = c->reports;
    c->reports = rp;
    if (!c->report_timer)
        (void)arm_timer(c, &c->report_timer, c->timeout_usec, on_report_timeout);
    log_debug("authd: usage.report id=%" PRIu64 " records=%zu", id, json_array_size(records));
    return 0;
}
