/* fake-upstream.c: a fake Anthropic API for integration tests and benchmarks.
 *
 * It serves POST /v1/messages (a JSON Message, or an SSE stream when the body asks for
 * "stream": true), POST /v1/messages/count_tokens, GET /v1/models and GET /v1/models/{id} over
 * plain HTTP on loopback, with the real API's x-api-key check, error shape and request-id header.
 * Once listening it prints "PORT=<n>" on stdout; it runs until SIGTERM or SIGINT.
 *
 * Tests steer it with scripts. A script is a JSON object that shapes one reply: its status,
 * headers, body or SSE chunks, and delays, an abrupt cut or a hang. A reply follows the "fake"
 * object of its POST body if there is one, else the oldest script queued through
 * POST /_fake/queue, else the built-in default. A script with neither "body" nor "chunks" keeps the
 * default body (or, for a status of 400 and up, gets an Anthropic error body for that status), so
 * {"first_byte_delay_ms": 500} or {"cut_after": 5} shape the default reply. Every API request is
 * recorded (method, raw URI with its query, headers, body, how it ended) in a ring of the last
 * 2000, read back with GET /_fake/requests; GET /_fake/stats counts TCP connections, so a test can
 * prove that a client reuses them. Nothing under /_fake/ is recorded or counted as a request.
 *
 * libmicrohttpd runs a thread per connection, so a reply may block. A delay or a hang is a poll()
 * on the connection's socket for POLLRDHUP, which wakes as soon as the client goes away, plus a
 * pipe that fake_serve() writes at shutdown so no wait outlives the daemon. Waits before the status
 * line happen in the access handler, before the response is queued; waits between chunks happen in
 * the content reader, which libmicrohttpd calls once per chunk after it has sent the headers.
 *
 * The default replies are built once at start-up, so a benchmark measures the router rather than
 * the fake: a request costs a JSON parse of its body and a couple of small copies (the model and a
 * message id are echoed). --no-record skips the recording as well.
 *
 * It also plays Claude on Vertex AI (PROVIDERS.md section 1), under the same /v1 base:
 * POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict
 * answers like /v1/messages, ...:streamRawPredict always answers with the SSE stream, and
 * .../models/count-tokens:rawPredict answers like /v1/messages/count_tokens; the same scripts (the
 * body's "fake" field, the queue) steer them. A Vertex request passes the checks a real Vertex
 * makes, in this order, before any script is used:
 *   - a path under /v1/projects/ that is not one of those three shapes, or a method other than
 *     POST: 404 NOT_FOUND;
 *   - "Authorization: Bearer <token>" (x-api-key counts for nothing): else 401 UNAUTHENTICATED.
 *     When accepted tokens are set (--vertex-token, or POST /_fake/vertex/tokens
 *     {"tokens": [...]}, which replaces the set; an empty list accepts any token again), a token
 *     outside the set is a 401 too. Tokens are compared in constant time and never logged;
 *   - a model the fake knows: "claude-" then [a-z0-9.-], optionally "@YYYYMMDD"; any other id,
 *     and one dated with a dash ("claude-3-7-sonnet-20250219", as Vertex refuses it): 404
 *     NOT_FOUND;
 *   - a body over the ceiling: 413 (sooner, when its Content-Length announces it);
 *   - the body, a JSON object: 400 INVALID_ARGUMENT otherwise;
 *   - "anthropic_version": missing or not a string is a 400; a string other than
 *     "vertex-2023-10-16" (a client's "2023-06-01") is a 404 NOT_FOUND, as PROVIDERS.md 1.5
 *     reports from the field;
 *   - "model" in the body is a 400 on rawPredict and streamRawPredict (it belongs in the URL);
 *     count-tokens needs it (400 without, 404 for an unknown model);
 *   - an anthropic-beta value in the --vertex-deny-beta list: 400, with the message Vertex gives.
 * Errors come in the two shapes Vertex sends (PROVIDERS.md 1.5): Google's
 * {"error":{"code":N,"message":..,"status":..}} from the front end (auth, unknown path or model,
 * bad JSON, a scripted status without a body), and Anthropic's error with a "req_vrtx_" request id
 * from the Claude backend (body fields, betas, a scripted 529). rawPredict with "stream": true in
 * the body gets the default SSE events as one buffered body (Content-Length, no chunking): Vertex
 * streams only on streamRawPredict, and the SDK uses rawPredict only without "stream" (PROVIDERS.md
 * 1.1). The default Message names the URL's model in Vertex's dash form
 * ("claude-sonnet-4-5@20250929" -> "claude-sonnet-4-5-20250929"). The record of a Vertex request
 * has "vertex": {"project", "region", "model", "verb"} (null for other requests); its headers,
 * Authorization included, are recorded as sent.
 *
 * State shared between connections (the script queue, the record ring, the counters, the Vertex
 * tokens) sits behind one mutex. It is not a real API: no TLS, no validation of request bodies
 * beyond "is it a JSON object" (and the Vertex checks above), no pagination of /v1/models, no rate
 * limits. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "buf.h"
#include "fake-common.h"
#include "log.h"
#include "macro.h"
#include "secret.h"
#include "util.h"

#define BODY_MAX ((size_t)64 * 1024 * 1024)
#define WAIT_CAP_MS ((uint64_t)10 * 60 * 1000)
#define CONNECTION_LIMIT 4000
#define THREAD_STACK_SIZE ((size_t)1024 * 1024)
#define READER_BLOCK_SIZE ((size_t)16 * 1024)
#define INVALID_API_KEY "sk-ant-api03-invalid"
#define DEFAULT_MODEL "claude-sonnet-4-5"
#define CONTENT_TYPE_JSON "application/json"
#define CONTENT_TYPE_SSE "text/event-stream"
#define ARG_NO_RECORD 0x200
#define ARG_VERTEX_TOKEN 0x201
#define ARG_VERTEX_DENY_BETA 0x202
#define VERTEX_ANTHROPIC_VERSION "vertex-2023-10-16"
#define VERTEX_PREFIX "/v1/projects/"
#define VERTEX_TOKENS_MAX 64
#define VERTEX_TOKEN_MAX 4096
#define VERTEX_DENY_BETA_MAX 64
#define ARGS_MAX 16
#define GOOGLE_INVALID_CREDENTIALS                                                                 \
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie " \
    "or other valid authentication credential. See "                                               \
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
#define GOOGLE_MISSING_CREDENTIALS                                                                 \
    "Request is missing required authentication credential. Expected OAuth 2 access token, "       \
    "login cookie or other valid authentication credential. See "                                  \
    "https://developers.google.com/identity/sign-in/web/devconsole-project."

static bool arg_record = true;
/* Borrowed from argv; parse_extra() cannot fail, so run() reports a list that overflowed. */
static const char *arg_vertex_tokens[ARGS_MAX], *arg_vertex_deny_betas[ARGS_MAX];
static size_t arg_n_vertex_tokens, arg_n_vertex_deny_betas;
static bool arg_overflow;

/* The default stream's text, one content_block_delta each; the default Message carries them
 * joined, so a test can compare the two. */
static const char *const default_text[] = {
    "Sure! Here is a short",      " overview of how an",        " HTTP router for language",
    " model APIs can work.",      " Each incoming request",     " is parsed, checked",
    " against its credentials,",  " and translated into the",   " wire format that the",
    " chosen upstream expects.",  " Streaming replies are",     " relayed as server-sent",
    " events, one event at a",    " time, so the client sees",  " tokens as soon as they",
    " arrive. Errors from the",   " upstream are mapped to",    " the error shape the client",
    " understands, and retries",  " honour retry-after. Idle",  " upstream connections are",
    " kept alive and reused, so", " most requests skip a TLS",  " handshake. Limits on body",
    " size, header size and",     " time keep one slow client", " from starving the rest.",
    " Every request is logged",   " with its request id so it", " can be traced later.",
};
#define SSE_DELTAS ELEMENTSOF(default_text)
/* message_start, ping, content_block_start, the deltas, content_block_stop, message_delta,
 * message_stop. */
#define SSE_EVENTS (SSE_DELTAS + 6)

struct model_info {
    const char *id, *display_name, *created_at;
};

static const struct model_info models[] = {
    {"claude-opus-4-7", "Claude Opus 4.7", "2026-01-15T00:00:00Z"},
    {"claude-sonnet-4-5", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"},
    {"claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"},
};

/* One write of a reply body: libmicrohttpd sends it as one HTTP chunk (or, with a known length,
 * as the next bytes of the body). */
struct chunk {
    const char *data; /* borrowed: static, from struct server, or owned by the request */
    size_t len;
    uint64_t delay_ms; /* waited before the first byte of this chunk */
};

struct reply {
    unsigned status;
    const char *content_type; /* default when the script's headers don't set one */
    const json_t *headers;    /* a script's extra headers, borrowed, or NULL */
    bool chunked;             /* no Content-Length; each chunk goes out as an HTTP chunk */
    bool data_static;         /* chunk data outlives the daemon, so a buffer reply needn't copy */
    struct chunk *chunks;     /* owned by the request */
    size_t n_chunks;
    uint64_t first_byte_delay_ms;
    bool hang;
    int64_t cut_after;  /* close the connection after this many chunks; -1: never */
    int64_t hang_after; /* stop after this many chunks until the client leaves; -1: never */
};

/* A parsed script. Everything in it is borrowed from the script's JSON. */
struct script {
    unsigned status; /* 0: unset */
    const json_t *headers, *body, *chunks;
    uint64_t first_byte_delay_ms;
    bool hang;
    int64_t cut_after, hang_after;
};

struct server {
    struct fake_core core; /* the daemon, the shutdown pipe, the lock, the records */

    /* Guarded by core.lock. */
    json_t *queue; /* an array of scripts, oldest first */
    uint64_t open_connections, connections_total;
    struct secret *vertex_tokens[VERTEX_TOKENS_MAX]; /* none: any Bearer token is accepted */
    size_t n_vertex_tokens;

    /* Set at start-up, read-only while the daemon runs. */
    char *vertex_deny_betas[VERTEX_DENY_BETA_MAX];
    size_t n_vertex_deny_betas;

    /* Built by server_precompute(), read-only while the daemon runs. */
    char *message_suffix; /* the default Message after its model */
    size_t message_suffix_len;
    char *sse_events[SSE_EVENTS]; /* [0] (message_start) is built per request */
    size_t sse_events_len[SSE_EVENTS];
    char *models_list;
    size_t models_list_len;
    char *model_items[ELEMENTSOF(models)];
    size_t model_items_len[ELEMENTSOF(models)];
};

/* A Vertex publisher-model path, split: .../projects/{project}/locations/{region}/publishers/
 * anthropic/models/{model}:{verb}. The strings are owned. */
struct vertex_route {
    char *project, *region, *model, *verb;
    bool count_tokens; /* model "count-tokens" */
    bool stream;       /* verb streamRawPredict */
};

/* Per-request state, created by on_uri() and freed by on_completed(). Only the connection's
 * thread touches it. */
struct request {
    struct server *server;
    struct MHD_Connection *connection;
    char *uri; /* the raw request target, query included */
    char method[16];
    double received_at_ms;
    bool started;
    bool control;              /* under /_fake/ */
    bool vertex;               /* under /v1/projects/: Vertex checks and error shapes */
    struct vertex_route route; /* all NULL when vertex but not a route the fake serves */
    uint64_t id;               /* the request counter; 0 for control requests */
    struct buf body;
    bool too_large;

    json_t *record; /* a reference to this request's record; NULL when not recording */
    bool body_recorded;
    bool ended; /* the record's "ended" is set */
    bool server_abort;

    json_t *script;  /* a reference; chunk data may point into it */
    char *generated; /* a body or first SSE event built for this request */
    struct reply reply;
    size_t chunk_index, chunk_offset;
    bool chunk_waited;
};

enum wait_result {
    WAIT_TIMEOUT,
    WAIT_CLIENT_GONE,
    WAIT_STOPPING,
};

static double now_ms(void)
{
    return (double)now_realtime_usec() / 1000.0;
}

/* Start-up: builds the default replies. Returns 0 or -ENOMEM. */
static int server_precompute(struct server *s)
{
    static const char delta_prefix[] = "event: content_block_delta\ndata: ";
    static const char *const fixed_events[] = {
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_start\ndata: "
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
        "\"text\":\"\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: "
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
        "\"stop_sequence\":null},\"usage\":{\"output_tokens\":19}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    };
    _cleanup_(fake_buf_done) struct buf text = BUF_INIT(0), b = BUF_INIT(0);
    json_auto_t *list = NULL;
    _cleanup_free_ char *text_json = NULL;
    size_t e = 1;
    int r;

    /* ping and content_block_start, then the deltas, then the three closing events. */
    for (size_t i = 0; i < 2; i++) {
        s->sse_events[e] = strdup(fixed_events[i]);
        if (!s->sse_events[e])
            return -ENOMEM;
        s->sse_events_len[e++] = strlen(fixed_events[i]);
    }
    for (size_t i = 0; i < SSE_DELTAS; i++) {
        json_auto_t *delta = NULL;
        _cleanup_free_ char *data = NULL;

        delta = json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_delta", "index", 0,
                          "delta", "type", "text_delta", "text", default_text[i]);
        if (!delta)
            return -ENOMEM;
        data = fake_json_dump(delta);
        if (!data)
            return -ENOMEM;
        buf_clear(&b);
        if (buf_append_str(&b, delta_prefix) < 0 || buf_append_str(&b, data) < 0 ||
            buf_append_str(&b, "\n\n") < 0 || buf_append_str(&text, default_text[i]) < 0)
            return -ENOMEM;
        s->sse_events_len[e] = b.len;
        s->sse_events[e++] = buf_steal(&b);
    }
    for (size_t i = 2; i < ELEMENTSOF(fixed_events); i++) {
        s->sse_events[e] = strdup(fixed_events[i]);
        if (!s->sse_events[e])
            return -ENOMEM;
        s->sse_events_len[e++] = strlen(fixed_events[i]);
    }
    assert(e == SSE_EVENTS);

    {
        json_auto_t *t = json_stringn(text.data, text.len);

        text_json = t ? fake_json_dump(t) : NULL;
    }
    if (!text_json)
        return -ENOMEM;
    buf_clear(&b);
    r = buf_append_str(&b, ",\"content\":[{\"type\":\"text\",\"text\":");
    if (r >= 0)
        r = buf_append_str(&b, text_json);
    if (r >= 0)
        r = buf_append_str(&b, "}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
                               "\"usage\":{\"input_tokens\":28,\"output_tokens\":19,"
                               "\"cache_creation_input_tokens\":0,"
                               "\"cache_read_input_tokens\":0}}");
    if (r < 0)
        return -ENOMEM;
    s->message_suffix_len = b.len;
    s->message_suffix = buf_steal(&b);

    list = json_array();
    if (!list)
        return -ENOMEM;
    for (size_t i = 0; i < ELEMENTSOF(models); i++) {
        json_t *item =
            json_pack("{s:s,s:s,s:s,s:s}", "type", "model", "id", models[i].id, "display_name",
                      models[i].display_name, "created_at", models[i].created_at);

        if (json_array_append_new(list, item) < 0)
            return -ENOMEM;
        s->model_items[i] = fake_json_dump(item);
        if (!s->model_items[i])
            return -ENOMEM;
        s->model_items_len[i] = strlen(s->model_items[i]);
    }
    {
        json_auto_t *page = json_pack("{s:O,s:b,s:s,s:s}", "data", list, "has_more", 0, "first_id",
                                      models[0].id, "last_id", models[ELEMENTSOF(models) - 1].id);

        s->models_list = page ? fake_json_dump(page) : NULL;
    }
    if (!s->models_list)
        return -ENOMEM;
    s->models_list_len = strlen(s->models_list);
    return 0;
}

static struct server *server_free(struct server *s)
{
    if (!s)
        return NULL;
    json_decref(s->queue);
    for (size_t i = 0; i < s->n_vertex_tokens; i++)
        secret_free(s->vertex_tokens[i]);
    for (size_t i = 0; i < s->n_vertex_deny_betas; i++)
        free(s->vertex_deny_betas[i]);
    free(s->message_suffix);
    for (size_t i = 0; i < SSE_EVENTS; i++)
        free(s->sse_events[i]);
    free(s->models_list);
    for (size_t i = 0; i < ELEMENTSOF(models); i++)
        free(s->model_items[i]);
    fake_core_done(&s->core);
    free(s);
    return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct server *, server_free);

static int server_new(struct server **ret)
{
    _cleanup_(server_freep) struct server *s = NULL;
    int r;

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    r = fake_core_init(&s->core);
    if (r < 0)
        return r;
    s->queue = json_array();
    if (!s->queue)
        return -ENOMEM;
    r = server_precompute(s);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(s);
    return 0;
}

/* Replaces the accepted Vertex bearer tokens with tokens[0..n); none accepts any token. Each must
 * be 1..VERTEX_TOKEN_MAX printable characters without spaces. Returns 0, -EINVAL (err says why,
 * never quoting a token) or -ENOMEM. */
static int server_set_vertex_tokens(struct server *s, const char *const *tokens, size_t n,
                                    char *err, size_t errlen)
{
    struct secret *new[VERTEX_TOKENS_MAX] = {}, *old[VERTEX_TOKENS_MAX];
    size_t n_old;
    int r = 0;

    if (n > VERTEX_TOKENS_MAX) {
        snprintf(err, errlen, "at most %d tokens", VERTEX_TOKENS_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n && r == 0; i++) {
        size_t len = strlen(tokens[i]);
        bool ok = len > 0 && len <= VERTEX_TOKEN_MAX;

        for (size_t k = 0; k < len && ok; k++)
            ok = tokens[i][k] > ' ' && tokens[i][k] < 0x7f;
        if (!ok) {
            snprintf(err, errlen, "token %zu must be 1 to %d printable characters without spaces",
                     i, VERTEX_TOKEN_MAX);
            r = -EINVAL;
        } else if (!(new[i] = secret_new(tokens[i], len))) {
            snprintf(err, errlen, "out of memory");
            r = -ENOMEM;
        }
    }
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            secret_free(new[i]);
        return r;
    }

    fake_core_lock(&s->core);
    n_old = s->n_vertex_tokens;
    memcpy(old, s->vertex_tokens, n_old * sizeof(old[0]));
    memcpy(s->vertex_tokens, new, n * sizeof(new[0]));
    s->n_vertex_tokens = n;
    fake_core_unlock(&s->core);
    for (size_t i = 0; i < n_old; i++)
        secret_free(old[i]);
    return 0;
}

/* Adds the comma-separated anthropic-beta values in list to the deny list. Returns 0, -E2BIG or
 * -ENOMEM. */
static int server_add_deny_betas(struct server *s, const char *list)
{
    for (const char *p = list; *p;) {
        size_t len;

        p += strspn(p, " \t,");
        len = strcspn(p, ",");
        while (len > 0 && strchr(" \t", p[len - 1]))
            len--;
        if (len > 0) {
            if (s->n_vertex_deny_betas >= VERTEX_DENY_BETA_MAX)
                return -E2BIG;
            s->vertex_deny_betas[s->n_vertex_deny_betas] = strndup(p, len);
            if (!s->vertex_deny_betas[s->n_vertex_deny_betas])
                return -ENOMEM;
            s->n_vertex_deny_betas++;
        }
        p += len;
        p += strcspn(p, ",");
    }
    return 0;
}

/* Returns the oldest queued script (a new reference), or NULL when the queue is empty. */
static json_t *server_queue_pop(struct server *s)
{
    json_t *script = NULL;

    fake_core_lock(&s->core);
    if (json_array_size(s->queue) > 0) {
        script = json_incref(json_array_get(s->queue, 0));
        json_array_remove(s->queue, 0);
    }
    fake_core_unlock(&s->core);
    return script;
}

/* Numbers a new API request and, when recording, creates its record. The number and the ring
 * slot are taken in one critical section, so the ring stays in id order. Returns 0 or -ENOMEM. */
static int request_start(struct request *req)
{
    struct server *s = req->server;
    json_auto_t *rec = NULL;

    if (arg_record) {
        json_t *headers;

        rec = json_object();
        if (!rec || json_object_set_new(rec, "id", json_integer(0)) < 0 ||
            json_object_set_new(rec, "method", fake_json_string_lenient(req->method)) < 0 ||
            json_object_set_new(rec, "path", fake_json_string_lenient(req->uri)) < 0 ||
            json_object_set_new(rec, "headers", json_object()) < 0)
            return -ENOMEM;
        headers = json_object_get(rec, "headers");
        if (fake_collect_headers(req->connection, headers) < 0 ||
            json_object_set_new(rec, "body", json_null()) < 0 ||
            json_object_set_new(rec, "received_at_ms", json_real(req->received_at_ms)) < 0 ||
            json_object_set_new(rec, "status", json_null()) < 0 ||
            json_object_set_new(rec, "ended", json_null()) < 0 ||
            json_object_set_new(rec, "ended_at_ms", json_null()) < 0)
            return -ENOMEM;
        if (json_object_set_new(
                rec, "vertex",
                req->route.verb ? json_pack("{s:o,s:o,s:o,s:o}", "project",
                                            fake_json_string_lenient(req->route.project), "region",
                                            fake_json_string_lenient(req->route.region), "model",
                                            fake_json_string_lenient(req->route.model), "verb",
                                            fake_json_string_lenient(req->route.verb))
                                : json_null()) < 0)
            return -ENOMEM;
    }

    fake_core_lock(&s->core);
    req->id = ++s->core.n_requests;
    if (rec) {
        json_object_set_new(rec, "id", json_integer((json_int_t)req->id));
        fake_records_add_locked(&s->core, rec);
    }
    fake_core_unlock(&s->core);
    req->record = TAKE_PTR(rec);
    return 0;
}

/* Puts the body received so far into the record: as a string when it is UTF-8, else as
 * body_base64. Done once, when the body is complete or the request ends without it. */
static void request_record_body(struct request *req)
{
    json_t *body = NULL, *b64 = NULL;

    if (!req->record || req->body_recorded)
        return;
    req->body_recorded = true;
    if (!req->too_large) {
        body = json_stringn(req->body.data ? req->body.data : "", req->body.len);
        if (!body) {
            _cleanup_free_ char *e = fake_base64_encode(req->body.data, req->body.len, false);

            b64 = e ? json_string(e) : NULL;
        }
    }
    fake_core_lock(&req->server->core);
    json_object_set_new(req->record, "body", body ? body : json_null());
    if (b64)
        json_object_set_new(req->record, "body_base64", b64);
    if (req->too_large)
        json_object_set_new(req->record, "body_too_large", json_true());
    fake_core_unlock(&req->server->core);
}

static void request_record_status(struct request *req)
{
    if (!req->record)
        return;
    fake_core_lock(&req->server->core);
    json_object_set_new(req->record, "status", json_integer(req->reply.status));
    fake_core_unlock(&req->server->core);
}

/* Sets the record's "ended" (once: the first cause seen wins). */
static void request_record_end(struct request *req, const char *how)
{
    if (!req->record || req->ended)
        return;
    req->ended = true;
    fake_core_lock(&req->server->core);
    json_object_set_new(req->record, "ended", json_string(how));
    json_object_set_new(req->record, "ended_at_ms", json_real(now_ms()));
    fake_core_unlock(&req->server->core);
}

static struct request *request_free(struct request *req)
{
    if (!req)
        return NULL;
    if (req->record) {
        fake_core_lock(&req->server->core);
        json_decref(req->record);
        fake_core_unlock(&req->server->core);
    }
    json_decref(req->script);
    free(req->route.project);
    free(req->route.region);
    free(req->route.model);
    free(req->route.verb);
    free(req->generated);
    free(req->reply.chunks);
    buf_free(&req->body, false);
    free(req->uri);
    free(req);
    return NULL;
}

/* Waits up to timeout_ms for the client to go away, without reading from it. Marks the record
 * client_abort when it does. */
static enum wait_result request_wait(struct request *req, uint64_t timeout_ms)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    uint64_t deadline = now_usec() + timeout_ms * USEC_PER_MSEC;
    struct pollfd p[2] = {
        /* POLLRDHUP alone: a pipelined next request (POLLIN) must not end the wait. */
        {.fd = info ? info->connect_fd : -1, .events = POLLRDHUP},
        {.fd = req->server->core.stop_pipe[0], .events = POLLIN},
    };

    for (;;) {
        uint64_t now = now_usec();
        int r;

        if (now >= deadline)
            return WAIT_TIMEOUT;
        r = poll(p, ELEMENTSOF(p), (int)MIN((deadline - now + 999) / 1000, (uint64_t)INT_MAX));
        if (r < 0 && errno != EINTR)
            return WAIT_STOPPING;
        if (r <= 0)
            continue;
        if (p[1].revents)
            return WAIT_STOPPING;
        if (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) {
            request_record_end(req, "client_abort");
            return WAIT_CLIENT_GONE;
        }
    }
}

/* The content reader of chunked and scripted replies: hands out the reply's chunks one per call,
 * waiting before a chunk when it has a delay, and stops where cut_after or hang_after say. */
static ssize_t request_read(void *cls, _unused_ uint64_t pos, char *out, size_t max)
{
    struct request *req = cls;
    const struct reply *r = &req->reply;

    for (;;) {
        const struct chunk *c;
        size_t n;

        if (req->chunk_offset == 0) {
            if (r->cut_after >= 0 && req->chunk_index >= (uint64_t)r->cut_after) {
                req->server_abort = true;
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (r->hang_after >= 0 && req->chunk_index >= (uint64_t)r->hang_after) {
                (void)request_wait(req, WAIT_CAP_MS);
                req->server_abort = true;
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (req->chunk_index >= r->n_chunks)
                return MHD_CONTENT_READER_END_OF_STREAM;
            c = &r->chunks[req->chunk_index];
            if (!req->chunk_waited && c->delay_ms > 0) {
                req->chunk_waited = true;
                if (request_wait(req, c->delay_ms) != WAIT_TIMEOUT)
                    return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            /* Returning 0 would make libmicrohttpd spin, so an empty chunk is skipped here. */
            if (c->len == 0) {
                req->chunk_index++;
                req->chunk_waited = false;
                continue;
            }
        }

        c = &r->chunks[req->chunk_index];
        n = MIN(max, c->len - req->chunk_offset);
        memcpy(out, c->data + req->chunk_offset, n);
        req->chunk_offset += n;
        if (req->chunk_offset == c->len) {
            req->chunk_index++;
            req->chunk_offset = 0;
            req->chunk_waited = false;
        }
        return (ssize_t)n;
    }
}

/* Makes the reply a single chunk. Borrows data: it must live as long as the request (or the
 * daemon, when is_static). */
static int reply_set_body(struct reply *r, const char *data, size_t len, bool is_static)
{
    free(r->chunks);
    r->chunks = calloc(1, sizeof(struct chunk));
    if (!r->chunks)
        return -ENOMEM;
    r->chunks[0] = (struct chunk){.data = data, .len = len};
    r->n_chunks = 1;
    r->chunked = false;
    r->data_static = is_static;
    return 0;
}

static const char *error_type_for_status(unsigned status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static const char *error_message_for_status(unsigned status)
{
    switch (status) {
    case 401:
        return "invalid x-api-key";
    case 403:
        return "Your API key does not have permission to use the specified resource.";
    case 404:
        return "Not found";
    case 413:
        return "Request exceeds the maximum allowed number of bytes.";
    case 429:
        return "Number of requests has exceeded your rate limit.";
    case 500:
        return "Internal server error";
    case 529:
        return "Overloaded";
    default:
        return status >= 500 ? "Internal server error" : "Invalid request";
    }
}

/* Makes the reply an Anthropic error: {"type":"error","error":{"type":..,"message":..},
 * "request_id":..}, the id starting "req_vrtx_" for a Vertex request as Vertex's do. Returns 0 or
 * -ENOMEM. */
static int request_set_error(struct request *req, unsigned status, const char *message)
{
    char request_id[48];
    json_auto_t *j = NULL;

    snprintf(request_id, sizeof(request_id), "%s%" PRIu64,
             req->vertex ? "req_vrtx_fake_" : "req_fake_", req->id);
    j = json_pack("{s:s,s:{s:s,s:o},s:s}", "type", "error", "error", "type",
                  error_type_for_status(status), "message",
                  fake_json_string_lenient(message ? message : error_message_for_status(status)),
                  "request_id", request_id);
    if (!j)
        return -ENOMEM;
    free(req->generated);
    req->generated = fake_json_dump(j);
    if (!req->generated)
        return -ENOMEM;
    req->reply.status = status;
    req->reply.content_type = CONTENT_TYPE_JSON;
    return reply_set_body(&req->reply, req->generated, strlen(req->generated), false);
}

/* The google.rpc.Code name Google's APIs send with an HTTP status. */
static const char *google_status_for_status(unsigned status)
{
    switch (status) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 409:
        return "ABORTED";
    case 413:
        return "OUT_OF_RANGE";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 500:
        return "INTERNAL";
    case 501:
        return "UNIMPLEMENTED";
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return status >= 500 ? "UNKNOWN" : "FAILED_PRECONDITION";
    }
}

/* The message of a Google error with no message of its own. */
static const char *google_message_for_status(unsigned status)
{
    switch (status) {
    case 401:
        return GOOGLE_INVALID_CREDENTIALS;
    case 403:
        return "Permission denied on resource project (or it may not exist).";
    case 429:
        return "Quota exceeded for aiplatform.googleapis.com/"
               "online_prediction_requests_per_base_model with base model: anthropic-claude. "
               "Please submit a quota increase request.";
    case 503:
        return "The service is currently unavailable.";
    case 504:
        return "Deadline expired before operation could complete.";
    default:
        return error_message_for_status(status);
    }
}

/* Makes the reply a Google API error, as Vertex's front end sends them:
 * {"error":{"code":N,"message":..,"status":..}}. Returns 0 or -ENOMEM. */
static int request_set_google_error(struct request *req, unsigned status, const char *message)
{
    json_auto_t *j = NULL;

    j = json_pack("{s:{s:i,s:o,s:s}}", "error", "code", (int)status, "message",
                  fake_json_string_lenient(message ? message : google_message_for_status(status)),
                  "status", google_status_for_status(status));
    if (!j)
        return -ENOMEM;
    free(req->generated);
    req->generated = fake_json_dump(j);
    if (!req->generated)
        return -ENOMEM;
    req->reply.status = status;
    req->reply.content_type = CONTENT_TYPE_JSON;
    return reply_set_body(&req->reply, req->generated, strlen(req->generated), false);
}

/* The error body for a bare status (a script's, or 413): Anthropic's, or for a Vertex request
 * Google's, except 529, which comes from the Claude backend behind Vertex. */
static int request_set_status_error(struct request *req, unsigned status)
{
    if (req->vertex && status != 529)
        return request_set_google_error(req, status, NULL);
    return request_set_error(req, status, NULL);
}

/* Adds the script's headers, then content-type and request-id unless the script set them. */
static int request_add_headers(struct request *req, struct MHD_Response *resp)
{
    json_t *headers = (json_t *)req->reply.headers;
    char request_id[48];

    for (void *it = json_object_iter(headers); it; it = json_object_iter_next(headers, it))
        if (MHD_add_response_header(resp, json_object_iter_key(it),
                                    json_string_value(json_object_iter_value(it))) != MHD_YES)
            return -EINVAL;
    if (req->reply.content_type && !MHD_get_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE) &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->reply.content_type) !=
            MHD_YES)
        return -ENOMEM;
    snprintf(request_id, sizeof(request_id), "%s%" PRIu64,
             req->vertex ? "req_vrtx_fake_" : "req_fake_", req->id);
    if (!req->control && !MHD_get_response_header(resp, "request-id") &&
        MHD_add_response_header(resp, "request-id", request_id) != MHD_YES)
        return -ENOMEM;
    return 0;
}

/* Sends req->reply: waits out first_byte_delay_ms (or hangs), then queues the response. A plain
 * body goes out as a buffer; anything with chunks, a cut or a hang goes through request_read(). */
static enum MHD_Result request_send(struct request *req)
{
    struct reply *r = &req->reply;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    int k;

    if (r->hang || r->first_byte_delay_ms > 0) {
        enum wait_result w = request_wait(req, r->hang ? WAIT_CAP_MS : r->first_byte_delay_ms);

        if (r->hang || w != WAIT_TIMEOUT)
            return MHD_NO;
    }

    if (!r->chunked && r->cut_after < 0 && r->hang_after < 0 && r->n_chunks <= 1) {
        const char *data = r->n_chunks ? r->chunks[0].data : "";
        size_t len = r->n_chunks ? r->chunks[0].len : 0;

        resp = MHD_create_response_from_buffer(
            len, (void *)data, r->data_static ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_COPY);
    } else {
        uint64_t size = MHD_SIZE_UNKNOWN;

        if (!r->chunked) {
            size = 0;
            for (size_t i = 0; i < r->n_chunks; i++)
                size += r->chunks[i].len;
        }
        resp = MHD_create_response_from_callback(size, READER_BLOCK_SIZE, request_read, req, NULL);
    }
    if (!resp)
        return MHD_NO;

    k = request_add_headers(req, resp);
    if (k < 0) {
        MHD_destroy_response(resp);
        if (k != -EINVAL || !r->headers)
            return MHD_NO;
        /* libmicrohttpd refused one of the script's headers (Content-Length, say). */
        r->headers = NULL;
        r->first_byte_delay_ms = 0;
        r->cut_after = r->hang_after = -1;
        if (request_set_error(req, 400, "fake: libmicrohttpd refused one of the headers") < 0)
            return MHD_NO;
        return request_send(req);
    }

    request_record_status(req);
    log_debug("%s '%s' -> %u", req->method, req->uri, r->status);
    ret = MHD_queue_response(req->connection, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result request_send_error(struct request *req, unsigned status, const char *message)
{
    if (request_set_error(req, status, message) < 0)
        return MHD_NO;
    return request_send(req);
}

static enum MHD_Result request_send_google_error(struct request *req, unsigned status,
                                                 const char *message)
{
    if (request_set_google_error(req, status, message) < 0)
        return MHD_NO;
    return request_send(req);
}

static bool header_name_valid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

static int script_get_uint(const json_t *script, const char *key, uint64_t max, uint64_t *ret,
                           char *err, size_t errlen)
{
    const json_t *v = json_object_get(script, key);

    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max) {
        snprintf(err, errlen, "'%s' must be an integer from 0 to %" PRIu64, key, max);
        return -EINVAL;
    }
    *ret = (uint64_t)json_integer_value(v);
    return 0;
}

/* Checks a script and reads it into *ret, which borrows from j. On failure returns -EINVAL and
 * says why in err. */
static int script_parse(const json_t *j, struct script *ret, char *err, size_t errlen)
{
    static const char *const known[] = {
        "status",    "headers",    "body", "chunks", "first_byte_delay_ms",
        "cut_after", "hang_after", "hang",
    };
    struct script sc = {.cut_after = -1, .hang_after = -1};
    const char *key;
    const json_t *v;
    uint64_t u;
    size_t i;

    if (!json_is_object(j)) {
        snprintf(err, errlen, "a script must be a JSON object");
        return -EINVAL;
    }
    for (void *it = json_object_iter((json_t *)j); it;
         it = json_object_iter_next((json_t *)j, it)) {
        bool found = false;

        key = json_object_iter_key(it);
        for (i = 0; i < ELEMENTSOF(known) && !found; i++)
            found = streq(key, known[i]);
        if (!found) {
            snprintf(err, errlen, "unknown field '%.60s'", key);
            return -EINVAL;
        }
    }

    u = 0;
    if (script_get_uint(j, "status", 599, &u, err, errlen) < 0)
        return -EINVAL;
    if (json_object_get(j, "status") && u < 200) {
        snprintf(err, errlen, "'status' must be an integer from 200 to 599");
        return -EINVAL;
    }
    sc.status = (unsigned)u;

    sc.headers = json_object_get(j, "headers");
    if (sc.headers) {
        if (!json_is_object(sc.headers)) {
            snprintf(err, errlen, "'headers' must be an object of strings");
            return -EINVAL;
        }
        for (void *it = json_object_iter((json_t *)sc.headers); it;
             it = json_object_iter_next((json_t *)sc.headers, it)) {
            key = json_object_iter_key(it);
            v = json_object_iter_value(it);
            if (!header_name_valid(key)) {
                snprintf(err, errlen, "header name '%.60s' is not a token", key);
                return -EINVAL;
            }
            if (!json_is_string(v) || strpbrk(json_string_value(v), "\r\n") ||
                strlen(json_string_value(v)) != json_string_length(v)) {
                snprintf(err, errlen, "header '%.60s' must be a string without CR, LF or NUL", key);
                return -EINVAL;
            }
        }
    }

    sc.body = json_object_get(j, "body");
    sc.chunks = json_object_get(j, "chunks");
    if (sc.body && sc.chunks) {
        snprintf(err, errlen, "'body' and 'chunks' exclude each other");
        return -EINVAL;
    }
    if (sc.chunks) {
        if (!json_is_array(sc.chunks)) {
            snprintf(err, errlen, "'chunks' must be an array");
            return -EINVAL;
        }
        for (i = 0; i < json_array_size(sc.chunks); i++) {
            const json_t *data, *delay;

            v = json_array_get(sc.chunks, i);
            data = json_object_get(v, "data");
            delay = json_object_get(v, "delay_ms");
            if (json_is_string(v))
                continue;
            if (!json_is_object(v) || !json_is_string(data) ||
                json_object_size(v) != 1 + (delay != NULL) ||
                (delay && (!json_is_integer(delay) || json_integer_value(delay) < 0 ||
                           (uint64_t)json_integer_value(delay) > WAIT_CAP_MS))) {
                snprintf(err, errlen,
                         "chunk %zu must be a string or {\"data\": string, \"delay_ms\": int}", i);
                return -EINVAL;
            }
        }
    }

    if (script_get_uint(j, "first_byte_delay_ms", WAIT_CAP_MS, &sc.first_byte_delay_ms, err,
                        errlen) < 0)
        return -EINVAL;
    u = UINT64_MAX;
    if (script_get_uint(j, "cut_after", INT32_MAX, &u, err, errlen) < 0)
        return -EINVAL;
    sc.cut_after = u == UINT64_MAX ? -1 : (int64_t)u;
    u = UINT64_MAX;
    if (script_get_uint(j, "hang_after", INT32_MAX, &u, err, errlen) < 0)
        return -EINVAL;
    sc.hang_after = u == UINT64_MAX ? -1 : (int64_t)u;
    v = json_object_get(j, "hang");
    if (v && !json_is_boolean(v)) {
        snprintf(err, errlen, "'hang' must be true or false");
        return -EINVAL;
    }
    sc.hang = json_is_true(v);

    *ret = sc;
    return 0;
}

/* Builds the reply's content from a script's "body" or "chunks". Chunk data is borrowed from the
 * script, which req->script keeps alive. */
static int request_set_script_content(struct request *req, const struct script *sc)
{
    struct reply *r = &req->reply;

    r->status = 200;
    r->content_type = CONTENT_TYPE_JSON;
    if (sc->body) {
        if (json_is_string(sc->body))
            return reply_set_body(r, json_string_value(sc->body), json_string_length(sc->body),
                                  false);
        free(req->generated);
        req->generated = fake_json_dump(sc->body);
        if (!req->generated)
            return -ENOMEM;
        return reply_set_body(r, req->generated, strlen(req->generated), false);
    }

    free(r->chunks);
    r->n_chunks = json_array_size(sc->chunks);
    r->chunks = calloc(MAX(r->n_chunks, (size_t)1), sizeof(struct chunk));
    if (!r->chunks)
        return -ENOMEM;
    for (size_t i = 0; i < r->n_chunks; i++) {
        const json_t *item = json_array_get(sc->chunks, i);
        const json_t *data = json_is_string(item) ? item : json_object_get(item, "data");
        const json_t *delay = json_object_get(item, "delay_ms");

        r->chunks[i] = (struct chunk){
            .data = json_string_value(data),
            .len = json_string_length(data),
            .delay_ms = delay ? (uint64_t)json_integer_value(delay) : 0,
        };
    }
    r->chunked = true;
    r->content_type = CONTENT_TYPE_SSE;
    return 0;
}

/* The default non-streaming Message. model_json is the request's model, serialized. */
static int request_set_default_message(struct request *req, const char *model_json)
{
    struct server *s = req->server;
    char head[96];
    _cleanup_(fake_buf_done) struct buf b = BUF_INIT(0);

    snprintf(head, sizeof(head), "{\"id\":\"msg_fake_%" PRIu64 "\"", req->id);
    if (buf_reserve(&b, strlen(head) + 64 + strlen(model_json) + s->message_suffix_len) < 0 ||
        buf_append_str(&b, head) < 0 ||
        buf_append_str(&b, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":") < 0 ||
        buf_append_str(&b, model_json) < 0 ||
        buf_append(&b, s->message_suffix, s->message_suffix_len) < 0)
        return -ENOMEM;
    free(req->generated);
    req->generated = buf_steal(&b);
    req->reply.status = 200;
    req->reply.content_type = CONTENT_TYPE_JSON;
    return reply_set_body(&req->reply, req->generated, strlen(req->generated), false);
}

/* The default stream: a message_start built for this request (model_json is its model,
 * serialized), then the precomputed events. */
static int request_set_default_stream(struct request *req, const char *model_json)
{
    struct server *s = req->server;
    struct reply *r = &req->reply;
    char head[128];
    _cleanup_(fake_buf_done) struct buf b = BUF_INIT(0);

    snprintf(head, sizeof(head),
             "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"
             "{\"id\":\"msg_fake_%" PRIu64 "\"",
             req->id);
    if (buf_append_str(&b, head) < 0 ||
        buf_append_str(&b, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":") < 0 ||
        buf_append_str(&b, model_json) < 0 ||
        buf_append_str(&b, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                           "\"usage\":{\"input_tokens\":28,\"cache_creation_input_tokens\":0,"
                           "\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n") < 0)
        return -ENOMEM;
    free(req->generated);
    req->generated = buf_steal(&b);

    free(r->chunks);
    r->chunks = calloc(SSE_EVENTS, sizeof(struct chunk));
    if (!r->chunks)
        return -ENOMEM;
    r->chunks[0] = (struct chunk){.data = req->generated, .len = strlen(req->generated)};
    for (size_t i = 1; i < SSE_EVENTS; i++)
        r->chunks[i] = (struct chunk){.data = s->sse_events[i], .len = s->sse_events_len[i]};
    r->n_chunks = SSE_EVENTS;
    r->chunked = true;
    r->status = 200;
    r->content_type = CONTENT_TYPE_SSE;
    return 0;
}

/* The built-in reply for url. body is the parsed request body, or NULL. */
static int request_set_default(struct request *req, const char *url, const char *method,
                               const json_t *body)
{
    struct server *s = req->server;
    bool post = streq(method, "POST"), get = streq(method, "GET");

    if (post && (streq(url, "/v1/messages") || streq(url, "/v1/messages/count_tokens"))) {
        _cleanup_free_ char *model_json = NULL;
        const json_t *model;

        if (!json_is_object(body))
            return request_set_error(req, 400, "request body must be a JSON object");
        if (streq(url, "/v1/messages/count_tokens")) {
            req->reply.status = 200;
            req->reply.content_type = CONTENT_TYPE_JSON;
            return reply_set_body(&req->reply, "{\"input_tokens\":42}", 19, true);
        }
        model = json_object_get(body, "model");
        model_json =
            json_is_string(model) ? fake_json_dump(model) : strdup("\"" DEFAULT_MODEL "\"");
        if (!model_json)
            return -ENOMEM;
        if (json_is_true(json_object_get(body, "stream")))
            return request_set_default_stream(req, model_json);
        return request_set_default_message(req, model_json);
    }

    if (get && streq(url, "/v1/models")) {
        req->reply.status = 200;
        req->reply.content_type = CONTENT_TYPE_JSON;
        return reply_set_body(&req->reply, s->models_list, s->models_list_len, true);
    }
    if (get && startswith(url, "/v1/models/")) {
        const char *id = url + strlen("/v1/models/");
        char message[160];

        for (size_t i = 0; i < ELEMENTSOF(models); i++)
            if (streq(id, models[i].id)) {
                req->reply.status = 200;
                req->reply.content_type = CONTENT_TYPE_JSON;
                return reply_set_body(&req->reply, s->model_items[i], s->model_items_len[i], true);
            }
        snprintf(message, sizeof(message), "model: %.100s", id);
        return request_set_error(req, 404, message);
    }
    return request_set_error(req, 404, NULL);
}

static int request_set_vertex_default(struct request *req, const json_t *body);

/* Replies to an API request that passed its checks: follows the script (the body's "fake" object,
 * else the oldest queued one), else the built-in reply. body is the parsed request body, or
 * NULL. */
static enum MHD_Result request_reply(struct request *req, const char *url, const char *method,
                                     const json_t *body)
{
    struct script sc = {.cut_after = -1, .hang_after = -1};
    char err[160], message[200];
    int r;

    if (json_is_object(body) && json_object_get(body, "fake"))
        req->script = json_incref(json_object_get(body, "fake"));
    if (!req->script)
        req->script = server_queue_pop(req->server);
    if (req->script && script_parse(req->script, &sc, err, sizeof(err)) < 0) {
        snprintf(message, sizeof(message), "fake: %s", err);
        return request_send_error(req, 400, message);
    }

    if (sc.body || sc.chunks)
        r = request_set_script_content(req, &sc);
    else if (sc.status >= 400)
        r = request_set_status_error(req, sc.status);
    else if (req->vertex)
        r = request_set_vertex_default(req, body);
    else
        r = request_set_default(req, url, method, body);
    if (r < 0)
        return MHD_NO;
    if (sc.status > 0)
        req->reply.status = sc.status;
    req->reply.headers = sc.headers;
    req->reply.first_byte_delay_ms = sc.first_byte_delay_ms;
    req->reply.hang = sc.hang;
    req->reply.cut_after = sc.cut_after;
    req->reply.hang_after = sc.hang_after;
    return request_send(req);
}

/* A request for the fake Anthropic API, complete with its body. */
static enum MHD_Result request_dispatch_api(struct request *req, const char *url,
                                            const char *method)
{
    json_auto_t *body = NULL;
    const char *key;

    key = MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, "x-api-key");
    if (!key || !*key)
        return request_send_error(req, 401, "x-api-key header is required");
    if (streq(key, INVALID_API_KEY))
        return request_send_error(req, 401, "invalid x-api-key");
    if (req->too_large)
        return request_send_error(req, 413, NULL);

    if (streq(method, "POST") && req->body.len > 0)
        body = json_loadb(req->body.data, req->body.len, JSON_ALLOW_NUL, NULL);
    return request_reply(req, url, method, body);
}

/* Splits a Vertex path (MHD's url: no query, percent-decoded) into *ret. Returns 1 when url is
 * {VERTEX_PREFIX}{project}/locations/{region}/publishers/anthropic/models/{model}:{verb} with
 * non-empty parts and a verb the fake serves, 0 when it is not (*ret untouched), -ENOMEM. The
 * project may hold ':' (old domain-scoped ids), so the verb follows the last ':'. */
static int vertex_route_parse(const char *url, struct vertex_route *ret)
{
    static const char publishers[] = "/publishers/anthropic/models/";
    const char *project, *region, *model, *colon, *p;
    size_t project_len, region_len;
    struct vertex_route v = {};

    if (!startswith(url, VERTEX_PREFIX))
        return 0;
    project = url + strlen(VERTEX_PREFIX);
    p = strchr(project, '/');
    if (!p || p == project || !startswith(p, "/locations/"))
        return 0;
    project_len = (size_t)(p - project);
    region = p + strlen("/locations/");
    p = strchr(region, '/');
    if (!p || p == region || !startswith(p, publishers))
        return 0;
    region_len = (size_t)(p - region);
    model = p + strlen(publishers);
    colon = strrchr(model, ':');
    if (!colon || colon == model || strchr(model, '/'))
        return 0;
    if (!streq(colon + 1, "rawPredict") && !streq(colon + 1, "streamRawPredict"))
        return 0;

    v.project = strndup(project, project_len);
    v.region = strndup(region, region_len);
    v.model = strndup(model, (size_t)(colon - model));
    v.verb = strdup(colon + 1);
    if (!v.project || !v.region || !v.model || !v.verb) {
        free(v.project);
        free(v.region);
        free(v.model);
        free(v.verb);
        return -ENOMEM;
    }
    v.count_tokens = streq(v.model, "count-tokens");
    v.stream = streq(v.verb, "streamRawPredict");
    *ret = v;
    return 1;
}

/* True for a Vertex model id the fake serves: "claude-" then [a-z0-9.-] not ending in '-',
 * optionally "@" and 8 digits; an id dated with a dash ("...-20250219") is refused, as Vertex
 * answers it with 404 (PROVIDERS.md 1.5). */
static bool vertex_model_known(const char *id)
{
    const char *at = strchr(id, '@'), *end = at ? at : id + strlen(id);
    size_t len, digits = 0;

    if (!startswith(id, "claude-"))
        return false;
    len = (size_t)(end - id);
    if (len <= strlen("claude-") || end[-1] == '-')
        return false;
    for (const char *p = id; p < end; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && !strchr(".-", *p))
            return false;
    for (const char *p = end - 1; p > id && isdigit((unsigned char)*p); p--)
        digits++;
    if (digits == 8 && end[-9] == '-')
        return false;
    if (!at)
        return true;
    if (strlen(at + 1) != 8)
        return false;
    for (const char *p = at + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

/* True when token is one of the accepted Vertex tokens, or when none are set. Every set token is
 * compared, each in constant time. */
static bool vertex_token_accepted(struct server *s, const char *token)
{
    size_t n = strlen(token);
    bool ok;

    fake_core_lock(&s->core);
    ok = s->n_vertex_tokens == 0;
    for (size_t i = 0; i < s->n_vertex_tokens; i++)
        ok |= secret_equal(s->vertex_tokens[i], token, n);
    fake_core_unlock(&s->core);
    return ok;
}

struct beta_check {
    const struct server *server;
    struct buf denied; /* "`a`, `b`" */
    bool failed;
};

static void beta_check_done(struct beta_check *c)
{
    buf_free(&c->denied, false);
}

/* MHD_KeyValueIterator over the request headers: adds the anthropic-beta values on the deny list
 * to the beta_check. */
static enum MHD_Result beta_check_header(void *cls, _unused_ enum MHD_ValueKind kind,
                                         const char *key, const char *value)
{
    struct beta_check *c = cls;
    const char *p = value;

    if (!strcaseeq(key, "anthropic-beta") || !value)
        return MHD_YES;
    while (*p) {
        size_t len;

        p += strspn(p, " \t,");
        len = strcspn(p, ",");
        while (len > 0 && strchr(" \t", p[len - 1]))
            len--;
        for (size_t i = 0; len > 0 && i < c->server->n_vertex_deny_betas; i++) {
            const char *deny = c->server->vertex_deny_betas[i];

            if (strlen(deny) != len || memcmp(deny, p, len) != 0)
                continue;
            if ((c->denied.len > 0 && buf_append_str(&c->denied, ", ") < 0) ||
                buf_append_str(&c->denied, "`") < 0 || buf_append(&c->denied, p, len) < 0 ||
                buf_append_str(&c->denied, "`") < 0) {
                c->failed = true;
                return MHD_NO;
            }
            break;
        }
        p += len;
        p += strcspn(p, ",");
    }
    return MHD_YES;
}

/* The built-in reply to a Vertex request. body is the parsed request body, an object. */
static int request_set_vertex_default(struct request *req, const json_t *body)
{
    const struct vertex_route *v = &req->route;
    _cleanup_free_ char *dashed = NULL, *model_json = NULL;
    json_auto_t *model = NULL;
    char *at;
    int r;

    if (v->count_tokens) {
        req->reply.status = 200;
        req->reply.content_type = CONTENT_TYPE_JSON;
        return reply_set_body(&req->reply, "{\"input_tokens\":42}", 19, true);
    }
    /* Vertex names the model in Anthropic's dash form. */
    dashed = strdup(v->model);
    if (!dashed)
        return -ENOMEM;
    at = strchr(dashed, '@');
    if (at)
        *at = '-';
    model = fake_json_string_lenient(dashed);
    model_json = model ? fake_json_dump(model) : NULL;
    if (!model_json)
        return -ENOMEM;
    if (v->stream)
        return request_set_default_stream(req, model_json);
    if (!json_is_true(json_object_get(body, "stream")))
        return request_set_default_message(req, model_json);

    /* rawPredict with "stream": true: the same events, all in one body. */
    r = request_set_default_stream(req, model_json);
    if (r >= 0) {
        _cleanup_(fake_buf_done) struct buf b = BUF_INIT(0);

        for (size_t i = 0; i < req->reply.n_chunks && r >= 0; i++)
            r = buf_append(&b, req->reply.chunks[i].data, req->reply.chunks[i].len);
        if (r < 0)
            return -ENOMEM;
        free(req->generated);
        req->generated = buf_steal(&b);
        if (!req->generated)
            return -ENOMEM;
        r = reply_set_body(&req->reply, req->generated, strlen(req->generated), false);
    }
    return r;
}

/* A request under VERTEX_PREFIX, complete with its body: the checks a real Vertex makes (see the
 * top comment), then the reply. */
static enum MHD_Result request_dispatch_vertex(struct request *req, const char *url,
                                               const char *method)
{
    const struct vertex_route *v = &req->route;
    _cleanup_(beta_check_done) struct beta_check beta = {.server = req->server};
    json_auto_t *body = NULL;
    const json_t *version, *model;
    const char *auth, *token;
    char message[512];

    if (!v->verb || !streq(method, "POST") || (v->count_tokens && v->stream)) {
        snprintf(message, sizeof(message), "The requested URL %.300s was not found.", url);
        return request_send_google_error(req, 404, message);
    }

    auth = MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND,
                                       MHD_HTTP_HEADER_AUTHORIZATION);
    if (!auth || strncasecmp(auth, "Bearer ", strlen("Bearer ")) != 0)
        return request_send_google_error(req, 401, auth ? NULL : GOOGLE_MISSING_CREDENTIALS);
    token = auth + strlen("Bearer ");
    token += strspn(token, " ");
    if (!*token || !vertex_token_accepted(req->server, token))
        return request_send_google_error(req, 401, NULL);

    if (!v->count_tokens && !vertex_model_known(v->model)) {
        snprintf(message, sizeof(message),
                 "Publisher Model `projects/%.100s/locations/%.60s/publishers/anthropic/models/"
                 "%.200s` not found.",
                 v->project, v->region, v->model);
        return request_send_google_error(req, 404, message);
    }
    if (req->too_large)
        return request_set_status_error(req, 413) < 0 ? MHD_NO : request_send(req);

    if (req->body.len > 0)
        body = json_loadb(req->body.data, req->body.len, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(body))
        return request_send_google_error(req, 400, "Invalid JSON payload received.");

    version = json_object_get(body, "anthropic_version");
    if (!json_is_string(version))
        return request_send_error(req, 400, "anthropic_version: Field required");
    if (!streq(json_string_value(version), VERTEX_ANTHROPIC_VERSION)) {
        snprintf(message, sizeof(message),
                 "anthropic_version \"%.100s\" not found; Vertex AI expects \"%s\".",
                 json_string_value(version), VERTEX_ANTHROPIC_VERSION);
        return request_send_google_error(req, 404, message);
    }
    model = json_object_get(body, "model");
    if (!v->count_tokens && model)
        return request_send_error(req, 400, "model: Extra inputs are not permitted");
    if (v->count_tokens && !json_is_string(model))
        return request_send_error(req, 400, "model: Field required");
    if (v->count_tokens && !vertex_model_known(json_string_value(model))) {
        snprintf(message, sizeof(message),
                 "Publisher Model `projects/%.100s/locations/%.60s/publishers/anthropic/models/"
                 "%.200s` not found.",
                 v->project, v->region, json_string_value(model));
        return request_send_google_error(req, 404, message);
    }

    (void)MHD_get_connection_values(req->connection, MHD_HEADER_KIND, beta_check_header, &beta);
    if (beta.failed)
        return MHD_NO;
    if (beta.denied.len > 0) {
        snprintf(message, sizeof(message),
                 "Unexpected value(s) %.*s for the `anthropic-beta` header. Please consult our "
                 "documentation at docs.anthropic.com or try again without the header.",
                 (int)MIN(beta.denied.len, (size_t)300), beta.denied.data);
        return request_send_error(req, 400, message);
    }
    return request_reply(req, url, method, body);
}

/* Replies to a control request with j, which is stolen. */
static enum MHD_Result control_reply(struct request *req, unsigned status, json_t *j)
{
    char *text = j ? fake_json_dump(j) : NULL;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    json_decref(j);
    if (!text)
        return MHD_NO;
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE_JSON) != MHD_YES) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    ret = MHD_queue_response(req->connection, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result control_error(struct request *req, unsigned status, const char *message)
{
    return control_reply(req, status,
                         json_pack("{s:s,s:{s:s,s:o}}", "type", "error", "error", "type",
                                   error_type_for_status(status), "message",
                                   fake_json_string_lenient(message)));
}

/* POST /_fake/queue: one script or an array of them, each checked before any is queued. */
static enum MHD_Result control_enqueue(struct request *req)
{
    struct server *s = req->server;
    json_auto_t *j = NULL, *items = NULL;
    json_error_t jerr;
    char err[160], message[256];
    size_t i, queued;

    if (req->too_large)
        return control_error(req, 413, "body too large");
    j = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
    if (!j) {
        snprintf(message, sizeof(message), "invalid JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        return control_error(req, 400, message);
    }
    items = json_is_array(j) ? json_incref(j) : json_pack("[O]", j);
    if (!items)
        return MHD_NO;
    for (i = 0; i < json_array_size(items); i++) {
        struct script sc;

        if (script_parse(json_array_get(items, i), &sc, err, sizeof(err)) < 0) {
            snprintf(message, sizeof(message), "script %zu: %s", i, err);
            return control_error(req, 400, message);
        }
    }

    fake_core_lock(&s->core);
    json_array_extend(s->queue, items);
    queued = json_array_size(s->queue);
    fake_core_unlock(&s->core);
    return control_reply(req, 200,
                         json_pack("{s:I,s:I}", "queued", (json_int_t)json_array_size(items),
                                   "queue_length", (json_int_t)queued));
}

/* POST /_fake/vertex/tokens {"tokens": ["...", ...]}: replaces the accepted Vertex tokens. */
static enum MHD_Result control_vertex_tokens(struct request *req)
{
    json_auto_t *j = NULL;
    const json_t *list;
    const char *tokens[VERTEX_TOKENS_MAX];
    char err[160];
    size_t n;

    if (req->too_large)
        return control_error(req, 413, "body too large");
    j = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, NULL);
    list = json_object_get(j, "tokens");
    if (!json_is_array(list) || json_object_size(j) != 1)
        return control_error(req, 400, "the body must be {\"tokens\": [strings]}");
    n = json_array_size(list);
    if (n > VERTEX_TOKENS_MAX)
        return control_error(req, 400, "too many tokens");
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(list, i);

        if (!json_is_string(t))
            return control_error(req, 400, "the body must be {\"tokens\": [strings]}");
        tokens[i] = json_string_value(t);
    }
    switch (server_set_vertex_tokens(req->server, tokens, n, err, sizeof(err))) {
    case 0:
        return control_reply(req, 200, json_pack("{s:I}", "tokens", (json_int_t)n));
    case -EINVAL:
        return control_error(req, 400, err);
    default:
        return MHD_NO;
    }
}

/* A request under /_fake/: read or reset the records, the queue and the counters; set the Vertex
 * tokens. */
static enum MHD_Result request_dispatch_control(struct request *req, const char *url,
                                                const char *method)
{
    struct server *s = req->server;
    json_t *j = NULL;
    size_t n;

    if (streq(url, "/_fake/requests") && streq(method, "GET")) {
        char *text = fake_records_dump(&s->core);
        struct MHD_Response *resp;
        enum MHD_Result ret;

        if (!text)
            return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(text);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE_JSON);
        ret = MHD_queue_response(req->connection, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (streq(url, "/_fake/requests") && streq(method, "DELETE")) {
        fake_core_lock(&s->core);
        n = fake_records_clear_locked(&s->core);
        fake_core_unlock(&s->core);
        return control_reply(req, 200, json_pack("{s:I}", "cleared", (json_int_t)n));
    }
    if (streq(url, "/_fake/queue") && streq(method, "POST"))
        return control_enqueue(req);
    if (streq(url, "/_fake/queue") && streq(method, "GET")) {
        fake_core_lock(&s->core);
        j = json_deep_copy(s->queue);
        fake_core_unlock(&s->core);
        return control_reply(req, 200, j);
    }
    if (streq(url, "/_fake/queue") && streq(method, "DELETE")) {
        fake_core_lock(&s->core);
        n = json_array_size(s->queue);
        json_array_clear(s->queue);
        fake_core_unlock(&s->core);
        return control_reply(req, 200, json_pack("{s:I}", "cleared", (json_int_t)n));
    }
    if (streq(url, "/_fake/vertex/tokens") && streq(method, "POST"))
        return control_vertex_tokens(req);
    if (streq(url, "/_fake/stats") && streq(method, "GET")) {
        fake_core_lock(&s->core);
        j = json_pack("{s:I,s:I,s:I,s:I}", "requests", (json_int_t)s->core.n_requests,
                      "open_connections", (json_int_t)s->open_connections, "connections_total",
                      (json_int_t)s->connections_total, "queued",
                      (json_int_t)json_array_size(s->queue));
        fake_core_unlock(&s->core);
        return control_reply(req, 200, j);
    }
    return control_error(req, 404, "no such control endpoint");
}

/* MHD_OPTION_URI_LOG_CALLBACK: the first sight of a request, with its raw target. The return
 * value becomes the request's con_cls; on_completed() frees it. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *connection)
{
    struct request *req;

    req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->uri = strdup(uri);
    if (!req->uri) {
        free(req);
        return NULL;
    }
    req->server = cls;
    req->connection = connection;
    req->received_at_ms = now_ms();
    req->body = BUF_INIT(BODY_MAX);
    req->reply.cut_after = req->reply.hang_after = -1;
    return req;
}

/* The access handler. The server is reachable from the request, so cls goes unused. */
static enum MHD_Result on_request(_unused_ void *cls, struct MHD_Connection *connection,
                                  const char *url, const char *method, _unused_ const char *version,
                                  const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct request *req = *con_cls;
    int r;

    if (!req)
        return MHD_NO; /* on_uri() ran out of memory */

    if (!req->started) {
        const char *length;
        int64_t n;

        req->started = true;
        snprintf(req->method, sizeof(req->method), "%s", method);
        req->control = startswith(url, "/_fake/");
        req->vertex = startswith(url, VERTEX_PREFIX);
        if (req->vertex && vertex_route_parse(url, &req->route) < 0)
            return MHD_NO;
        if (!req->control) {
            r = request_start(req);
            if (r < 0)
                return MHD_NO;
        }
        /* Refuse an announced oversized body before reading it (and before "100 Continue"). */
        length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                             MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && parse_int64(length, &n) >= 0 && n > (int64_t)BODY_MAX) {
            req->too_large = true;
            if (req->control)
                return control_error(req, 413, "body too large");
            if (request_set_status_error(req, 413) < 0)
                return MHD_NO;
            return request_send(req);
        }
        return MHD_YES;
    }

    if (*upload_data_size > 0)
        return fake_body_upload(&req->body, &req->too_large, upload_data, upload_data_size);

    if (req->control)
        return request_dispatch_control(req, url, method);
    request_record_body(req);
    if (req->vertex)
        return request_dispatch_vertex(req, url, method);
    return request_dispatch_api(req, url, method);
}

/* True when the peer has closed its side of the connection. */
static bool connection_peer_gone(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd p;

    if (!info)
        return false;
    p = (struct pollfd){.fd = info->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void on_completed(_unused_ void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *req = *con_cls;
    const char *how;

    if (!req)
        return;
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK:
        how = "complete";
        break;
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
    case MHD_REQUEST_TERMINATED_READ_ERROR:
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        how = "client_abort";
        break;
    default:
        /* A failed send reports WITH_ERROR too; tell it from our own cuts by the peer's FIN. */
        how = toe == MHD_REQUEST_TERMINATED_WITH_ERROR && !req->server_abort &&
                      connection_peer_gone(connection)
                  ? "client_abort"
                  : "error";
        break;
    }
    request_record_body(req);
    request_record_end(req, how);
    log_debug("%s '%s' ended: %s", req->method, req->uri ? req->uri : "", how);
    *con_cls = request_free(req);
}

static void on_connection(void *cls, _unused_ struct MHD_Connection *connection,
                          _unused_ void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
    struct server *s = cls;

    fake_core_lock(&s->core);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        s->open_connections++;
        s->connections_total++;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && s->open_connections > 0)
        s->open_connections--;
    fake_core_unlock(&s->core);
}

static void parse_extra(int c)
{
    switch (c) {
    case ARG_NO_RECORD:
        arg_record = false;
        break;
    case ARG_VERTEX_TOKEN:
        if (arg_n_vertex_tokens < ARGS_MAX)
            arg_vertex_tokens[arg_n_vertex_tokens++] = optarg;
        else
            arg_overflow = true;
        break;
    default:
        assert(c == ARG_VERTEX_DENY_BETA);
        if (arg_n_vertex_deny_betas < ARGS_MAX)
            arg_vertex_deny_betas[arg_n_vertex_deny_betas++] = optarg;
        else
            arg_overflow = true;
        break;
    }
}

static const struct option extra_options[] = {
    {"no-record", no_argument, NULL, ARG_NO_RECORD},
    {"vertex-token", required_argument, NULL, ARG_VERTEX_TOKEN},
    {"vertex-deny-beta", required_argument, NULL, ARG_VERTEX_DENY_BETA},
    {},
};

static const struct fake_cli cli = {
    .help = "fake-upstream [OPTIONS]\n\n"
            "A fake Anthropic API for dualroute's integration tests and benchmarks.\n\n"
            "  -h --help          Show this help\n"
            "     --listen ADDR   Loopback address to listen on (default 127.0.0.1)\n"
            "     --port N        Port; 0 picks a free one (default 0)\n"
            "     --no-record     Do not record requests (for benchmarks)\n"
            "     --vertex-token TOKEN\n"
            "                     Accept only this bearer token on the Vertex routes (repeatable;\n"
            "                     a test token: argv is world-readable)\n"
            "     --vertex-deny-beta A,B\n"
            "                     Refuse these anthropic-beta values on Vertex, as Vertex does\n"
            "  -v --verbose       Log each request to stderr\n\n"
            "Prints PORT=<n> once listening; runs until SIGTERM or SIGINT.\n",
    .extra = extra_options,
    .parse_extra = parse_extra,
};

static int run(int argc, char *argv[])
{
    _cleanup_(server_freep) struct server *s = NULL;
    struct MHD_OptionItem extra[] = {
        {MHD_OPTION_CONNECTION_LIMIT, CONNECTION_LIMIT, NULL},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096, NULL},
        {MHD_OPTION_THREAD_STACK_SIZE, (intptr_t)THREAD_STACK_SIZE, NULL},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, NULL}, /* cls: s, set below */
        {MHD_OPTION_END, 0, NULL},
    };
    struct fake_options o;
    int r;

    r = fake_parse_argv(&cli, argc, argv, &o);
    if (r <= 0)
        return r;
    fake_raise_nofile_limit();

    if (arg_overflow)
        return log_error_errno(-E2BIG, "At most %d --vertex-token and %d --vertex-deny-beta.",
                               ARGS_MAX, ARGS_MAX);

    r = server_new(&s);
    if (r < 0)
        return log_error_errno(r, "Failed to set up: %m");
    if (arg_n_vertex_tokens > 0) {
        char err[160];

        r = server_set_vertex_tokens(s, arg_vertex_tokens, arg_n_vertex_tokens, err, sizeof(err));
        if (r < 0)
            return log_error_errno(r, "Invalid --vertex-token: %s", err);
    }
    for (size_t i = 0; i < arg_n_vertex_deny_betas; i++) {
        r = server_add_deny_betas(s, arg_vertex_deny_betas[i]);
        if (r < 0)
            return log_error_errno(r, "Invalid --vertex-deny-beta: %m");
    }
    /* Room for thousands of benchmark connections, and a count of them for /_fake/stats. */
    extra[3].ptr_value = s;
    return fake_serve(&s->core, &o,
                      &(const struct fake_daemon){.on_request = on_request,
                                                  .on_uri = on_uri,
                                                  .on_completed = on_completed,
                                                  .extra = extra,
                                                  .cls = s});
}

int main(int argc, char *argv[])
{
    int r = run(argc, argv);

    return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
