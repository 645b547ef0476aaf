/* proxy.c: one client request through routerd.
 *
 * MHD's URI-log callback creates the struct request (so the raw URI, query string included, is
 * kept byte for byte); the access handler routes it, collects the body under max_body_size, and on
 * the final call either answers at once or starts an upstream transfer and suspends the
 * connection. curl's header callback queues the response on the still-suspended connection as soon
 * as the upstream's headers are complete; its write callback appends to req->out and resumes the
 * connection; MHD's content reader drains req->out and, when it is empty, suspends again before
 * returning 0 (otherwise MHD would spin). Back-pressure: past OUT_HIGH bytes the write callback
 * pauses the transfer, and the reader unpauses it below OUT_LOW, so a slow client holds at most
 * ~80 KiB per request.
 *
 * A suspended connection is invisible to MHD, so the sweep watches its socket for a hang-up and
 * enforces the first-byte and stall timeouts. Every exit path ends in proxy_completed(), the one
 * place that logs the request and frees it. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

#include "authd-client.h"
#include "chat.h"
#include "json-arena.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "reqlog.h"
#include "route.h"
#include "secret.h"
#include "server.h"
#include "translate.h"
#include "util.h"
#include "vertex.h"

#define OUT_HIGH (64 * 1024)
#define BUFFERED_MAX (1024 * 1024)
#define OUT_LOW (16 * 1024)
#define CAPTURE_MAX (1024 * 1024)
#define RESPONSE_HEADERS_MAX (16 * 1024)

static const char *const health_body = "{\"status\":\"ok\",\"service\":\"dualroute\"}";

/* Request headers that reach the upstream; everything else (cookies, Host, Accept-Encoding, the
 * client's credentials) stays here. */
static const char *const forward_request_headers[] = {"anthropic-version", "anthropic-beta",
                                                      "content-type", "accept"};

static void conn_set_waiting(struct MHD_Connection *c, bool in_request)
{
    const union MHD_ConnectionInfo *ci;
    struct client_conn *cc;

    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (!ci || !ci->socket_context)
        return;
    cc = ci->socket_context;
    cc->in_request = in_request;
    if (!in_request)
        cc->waiting_since = now_usec();
}

void proxy_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe)
{
    struct server *s = cls;
    struct client_conn *cc = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci;

        cc = calloc(1, sizeof(*cc));
        if (!cc)
            return;
        ci = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        cc->connection = connection;
        cc->fd = ci ? ci->connect_fd : -1;
        cc->waiting_since = now_usec();
        cc->next = s->conns;
        if (s->conns)
            s->conns->prev = cc;
        s->conns = cc;
        s->n_conns++;
        *socket_context = cc;
        return;
    }
    if (!cc)
        return;
    if (cc->prev)
        cc->prev->next = cc->next;
    else
        s->conns = cc->next;
    if (cc->next)
        cc->next->prev = cc->prev;
    s->n_conns--;
    free(cc);
    *socket_context = NULL;
    /* At max_connections MHD stops watching the listening socket and looks again only when it
     * runs: make it run, or a freed slot would go unnoticed while no other connection is busy. */
    server_schedule_mhd(s);
}

void *proxy_uri_log(void *cls, const char *uri, struct MHD_Connection *connection)
{
    struct server *s = cls;
    struct request *req;

    req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->uri = strdup(uri);
    if (!req->uri)
        return mfree(req);
    req->server = s;
    req->connection = connection;
    req->t_start = now_usec();
    req->content_length = -1;
    req->max_tokens = -1;
    req->body = BUF_INIT(s->cfg->max_body_size);
    req->out = BUF_INIT(0);
    req->capture = BUF_INIT(CAPTURE_MAX);
    req->response_headers = BUF_INIT(RESPONSE_HEADERS_MAX);
    sse_scanner_init(&req->scanner);
    snprintf(req->id, sizeof req->id, "rq_%08" PRIx64 "%08" PRIx64, s->id_seed & 0xffffffff,
             ++s->id_counter);

    req->next = s->requests;
    if (s->requests)
        s->requests->prev = req;
    s->requests = req;
    s->n_requests++;
    return req;
}

static void upstream_release(struct request *req)
{
    struct server *s = req->server;

    if (req->easy) {
        curl_multi_remove_handle(s->curl.multi, req->easy);
        server_easy_put(s, req->easy);
        req->easy = NULL;
    }
    curl_slist_wipe_free(req->upstream_headers);
    req->upstream_headers = NULL;
}

static struct request *request_free(struct request *req)
{
    struct server *s;

    if (!req)
        return NULL;
    s = req->server;
    upstream_release(req);
    chat_request_done(req);
    if (req->token_req)
        authd_token_req_cancel(req->token_req);
    req->hup_watch = sd_event_source_disable_unref(req->hup_watch);
    if (req->prev)
        req->prev->next = req->next;
    else
        s->requests = req->next;
    if (req->next)
        req->next->prev = req->prev;
    s->n_requests--;

    buf_free(&req->body, true);
    buf_free(&req->out, false);
    buf_free(&req->capture, false);
    buf_free(&req->response_headers, false);
    sse_scanner_done(&req->scanner);
    free(req->uri);
    return mfree(req);
}

static void request_suspend(struct request *req)
{
    if (req->suspended)
        return;
    MHD_suspend_connection(req->connection);
    req->suspended = true;
}

/* Resumes a suspended connection and has MHD run soon (never from here: we may be inside a curl
 * callback). */
void request_wake(struct request *req)
{
    if (!req->suspended)
        return;
    req->suspended = false;
    if (req->hup_watch)
        sd_event_source_set_enabled(req->hup_watch, SD_EVENT_OFF);
    MHD_resume_connection(req->connection);
    server_schedule_mhd(req->server);
}

/* The upstream's headers that the client gets. Pass-through: as they came. Translated answers:
 * the request id (also as x-request-id, which the OpenAI SDKs report) and the retry hints; the
 * rate-limit counts under OpenAI's names; no content-type or other anthropic-* headers. */
static void response_add_upstream_headers(struct request *req, struct MHD_Response *resp)
{
    static const struct {
        const char *from, *to;
    } openai_names[] = {
        {"anthropic-ratelimit-requests-limit", "x-ratelimit-limit-requests"},
        {"anthropic-ratelimit-requests-remaining", "x-ratelimit-remaining-requests"},
        {"anthropic-ratelimit-tokens-limit", "x-ratelimit-limit-tokens"},
        {"anthropic-ratelimit-tokens-remaining", "x-ratelimit-remaining-tokens"},
        {"request-id", "x-request-id"},
    };

    for (size_t i = 0; i < req->response_headers.len;) {
        const char *name = req->response_headers.data + i;
        const char *value = name + strlen(name) + 1;

        i = (size_t)(value + strlen(value) + 1 - req->response_headers.data);
        if (!req->translate) {
            MHD_add_response_header(resp, name, value);
            continue;
        }
        for (size_t k = 0; k < ELEMENTSOF(openai_names); k++)
            if (strcmp(name, openai_names[k].from) == 0)
                MHD_add_response_header(resp, openai_names[k].to, value);
        if (strcmp(name, "request-id") == 0 || strcmp(name, "retry-after") == 0 ||
            strcmp(name, "retry-after-ms") == 0 || strcmp(name, "x-should-retry") == 0)
            MHD_add_response_header(resp, name, value);
    }
}

/* Queues resp (consumed either way) with routerd's own headers, after the upstream's when it has
 * answered, and resumes the connection. The one place a response leaves for the client. */
static int request_queue(struct request *req, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ok;

    if (req->headers_done)
        response_add_upstream_headers(req, resp);
    MHD_add_response_header(resp, "x-dualroute-request-id", req->id);
    if (req->retry_after > 0) {
        char v[24];

        snprintf(v, sizeof v, "%u", req->retry_after);
        MHD_add_response_header(resp, "retry-after", v);
    }
    if (req->no_retry)
        MHD_add_response_header(resp, "x-should-retry", "false");
    if (req->server->draining)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ok = MHD_queue_response(req->connection, status, resp);
    MHD_destroy_response(resp);
    if (ok != MHD_YES)
        return -EIO;
    req->responded = true;
    req->status = status;
    request_wake(req);
    return 0;
}

int request_reply_buffer(struct request *req, unsigned status, const char *content_type, char *body)
{
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return -ENOMEM;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                req->route == ROUTE_MODELS || req->route == ROUTE_MODEL ||
                                        req->route == ROUTE_HEALTH || req->route == ROUTE_METRICS
                                    ? "GET"
                                    : "POST");
    return request_queue(req, status, resp);
}

/* Appends an Anthropic SSE error event, so a stream that breaks ends in an error the SDKs raise
 * instead of a silent EOF that looks like success. */
static void request_fail_midstream(struct request *req, const char *message)
{
    _cleanup_free_ char *body = NULL;

    snprintf(req->error_text, sizeof req->error_text, "%s", message);
    if (req->translate) {
        chat_finish(req, false, message);
        return;
    }
    if (!req->sse) {
        req->upstream_failed = true; /* a truncated JSON body: close without completing it */
        return;
    }
    body = error_body_new(API_FORMAT_ANTHROPIC, 500, "api_error", message, NULL, NULL, req->id);
    if (!body || buf_append_str(&req->out, "event: error\ndata: ") < 0 ||
        buf_append_str(&req->out, body) < 0 || buf_append_str(&req->out, "\n\n") < 0)
        req->upstream_failed = true;
    req->usage.error = true;
}

/* Ends a running upstream transfer. status/message: the error the client gets if nothing was sent
 * yet (status 0: the client is gone, send nothing). */
static void upstream_abort(struct request *req, unsigned status, const char *message)
{
    if (req->upstream != UPSTREAM_RUNNING)
        return;
    upstream_release(req);
    req->upstream = UPSTREAM_DONE;
    req->curl_result = CURLE_ABORTED_BY_CALLBACK;
    req->upstream_paused = false;

    if (req->client_gone || status == 0) {
        request_wake(req);
        return;
    }
    if (!req->responded)
        (void)http_reply_error(req, status, message);
    else {
        request_fail_midstream(req, message);
        request_wake(req);
    }
}

static ssize_t response_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct request *req = cls;

    /* A client that left must not get a cleanly ended (truncated) body, nor count as served. */
    if (req->client_gone)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (req->out.len > 0) {
        size_t n = MIN(max, req->out.len);

        memcpy(buf, req->out.data, n);
        buf_consume(&req->out, n);
        req->t_last_sent = now_usec();
        if (req->upstream_paused && req->out.len < OUT_LOW && req->easy) {
            req->upstream_paused = false;
            curl_easy_pause(req->easy, CURLPAUSE_CONT);
        }
        return (ssize_t)n;
    }
    if (req->upstream == UPSTREAM_DONE)
        return req->upstream_failed ? MHD_CONTENT_READER_END_WITH_ERROR
                                    : MHD_CONTENT_READER_END_OF_STREAM;
    request_suspend(req);
    return 0;
}

static bool response_header_forwarded(const char *name, size_t n)
{
    static const char *const names[] = {"content-type",   "request-id",     "retry-after",
                                        "retry-after-ms", "x-should-retry", "x-request-id"};

    if (n > 10 && strncasecmp(name, "anthropic-", 10) == 0)
        return true;
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        if (strlen(names[i]) == n && strncasecmp(name, names[i], n) == 0)
            return true;
    return false;
}

static int upstream_queue_response(struct request *req)
{
    struct MHD_Response *resp;
    uint64_t size = MHD_SIZE_UNKNOWN;

    if (!req->sse && req->content_length >= 0 && !req->translate)
        size = (uint64_t)req->content_length;
    resp = MHD_create_response_from_callback(size, 16 * 1024, response_reader, req, NULL);
    if (!resp)
        return -ENOMEM;
    if (req->translate) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "x-accel-buffering", "no");
    }
    return request_queue(req, req->upstream_status, resp);
}

static size_t on_upstream_header(char *p, size_t size, size_t nmemb, void *userdata)
{
    struct request *req = userdata;
    size_t len = size * nmemb, name_len;
    const char *colon, *v, *end = p + len;

    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A status line: a new header block (after a 100 Continue, say). */
        buf_clear(&req->response_headers);
        req->content_length = -1;
        req->sse = false;
        return len;
    }
    if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        long code = 0;

        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
        if ((code >= 100 && code < 200) || req->responded)
            return len; /* an interim response, or the end of trailers */
        req->upstream_status = (unsigned)code;
        req->headers_done = true;
        if (code == 401 && req->account[0] && req->server->authd) {
            /* The account's credential no longer works (revoked, rotated): ask authd afresh
             * next time instead of serving the cached one until it expires. */
            log_notice("[%s] The upstream refused account '%s''s credential; dropping it from "
                       "the cache.",
                       req->id, req->account);
            authd_client_invalidate(req->server->authd, req->account);
        }
        req->t_first_byte = req->t_last_byte = now_usec();
        if (req->client_gone)
            return 0;
        if (req->translate && !chat_stream_starts(req))
            return len; /* buffered until complete, then translated */
        if (!req->translate && !req->sse && req->content_length >= 0 &&
            req->content_length <= BUFFERED_MAX) {
            /* A JSON answer of known, modest size goes out in one piece when complete: headers
             * and body in one send, and a transfer that breaks midway still gets a clean 502. */
            req->buffered = true;
            return len;
        }
        return upstream_queue_response(req) < 0 ? 0 : len;
    }

    colon = memchr(p, ':', len);
    if (!colon)
        return len;
    name_len = (size_t)(colon - p);
    v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;

    if (name_len == 12 && strncasecmp(p, "content-type", 12) == 0)
        req->sse = (size_t)(end - v) >= 17 && strncasecmp(v, "text/event-stream", 17) == 0;
    else if (name_len == 14 && strncasecmp(p, "content-length", 14) == 0) {
        char tmp[24];
        int64_t cl;

        if ((size_t)(end - v) < sizeof tmp) {
            memcpy(tmp, v, (size_t)(end - v));
            tmp[end - v] = '\0';
            if (parse_int64(tmp, &cl) == 0 && cl >= 0)
                req->content_length = cl;
        }
    }
    if (response_header_forwarded(p, name_len)) {
        /* Header names go out lowercased, as HTTP/2 upstreams send them. */
        size_t start = req->response_headers.len;

        if (buf_append(&req->response_headers, p, name_len) < 0 ||
            buf_append(&req->response_headers, "", 1) < 0 ||
            buf_append(&req->response_headers, v, (size_t)(end - v)) < 0 ||
            buf_append(&req->response_headers, "", 1) < 0) {
            req->response_headers.len = start; /* over the cap: drop this header */
            return len;
        }
        for (size_t i = start; i < start + name_len; i++)
            req->response_headers.data[i] =
                (char)tolower((unsigned char)req->response_headers.data[i]);
    }
    return len;
}

static size_t on_upstream_body(char *p, size_t size, size_t nmemb, void *userdata)
{
    struct request *req = userdata;
    size_t len = size * nmemb;

    if (req->client_gone)
        return 0;
    if (req->buffered) {
        req->t_last_byte = now_usec();
        return buf_append(&req->out, p, len) < 0 ? 0 : len;
    }
    if (req->out.len >= OUT_HIGH) {
        req->upstream_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    req->t_last_byte = now_usec();
    if (req->translate) {
        if (chat_on_body(req, p, len) < 0)
            return 0;
        request_wake(req);
        return len;
    }
    if (buf_append(&req->out, p, len) < 0)
        return 0;
    if (req->sse)
        sse_scanner_feed(&req->scanner, p, len);
    if (!req->sse || req->server->cfg->log_mode == LOG_MODE_VERBOSE)
        (void)buf_append(&req->capture, p,
                         MIN(len, CAPTURE_MAX - MIN(CAPTURE_MAX, req->capture.len)));
    request_wake(req);
    return len;
}

/* Sends a buffered answer: the upstream's status, forwarded headers and body, in one response. */
static int upstream_reply_buffered(struct request *req)
{
    struct MHD_Response *resp;
    size_t len = req->out.len;

    if (req->upstream_status >= 200 && req->upstream_status < 300)
        (void)usage_from_json(req->out.data ? req->out.data : "", len, &req->usage);
    if (req->server->cfg->log_mode == LOG_MODE_VERBOSE)
        (void)buf_append(&req->capture, req->out.data ? req->out.data : "", MIN(len, CAPTURE_MAX));
    resp = MHD_create_response_from_buffer(len, buf_steal(&req->out), MHD_RESPMEM_MUST_FREE);
    if (!resp)
        return -ENOMEM;
    return request_queue(req, req->upstream_status, resp);
}

void proxy_upstream_done(struct request *req, CURLcode result)
{
    char msg[160];

    upstream_release(req);
    req->upstream = UPSTREAM_DONE;
    req->curl_result = result;

    if (req->buffered && result == CURLE_OK) {
        if (upstream_reply_buffered(req) < 0)
            (void)http_reply_error(req, 500, "Failed to relay the upstream's answer.");
        return;
    }
    if (req->buffered) {
        snprintf(msg, sizeof msg, "The upstream's answer broke off: %s",
                 curl_easy_strerror(result));
        (void)http_reply_error(req, 502, msg);
        return;
    }

    if (result != CURLE_OK) {
        bool timeout = result == CURLE_OPERATION_TIMEDOUT;

        if (!req->responded) {
            snprintf(msg, sizeof msg, "%s upstream %s: %s",
                     timeout ? "Timed out connecting to the" : "Could not reach the",
                     req->server->upstream_base, curl_easy_strerror(result));
            (void)http_reply_error(req, timeout ? 504 : 502, msg);
            return;
        }
        snprintf(msg, sizeof msg, "Upstream connection lost mid-response: %s",
                 curl_easy_strerror(result));
        request_fail_midstream(req, msg);
    } else if (req->translate && req->headers_done) {
        chat_finish(req, true, NULL);
    } else if (!req->responded) {
        (void)http_reply_error(req, 502, "The upstream closed the connection without an answer.");
        return;
    } else if (req->sse) {
        req->usage = req->scanner.usage;
        if (req->upstream_status == 200 && !req->usage.stopped && !req->usage.error)
            request_fail_midstream(req, "The upstream stream ended before message_stop.");
    } else
        (void)usage_from_json(req->capture.data ? req->capture.data : "", req->capture.len,
                              &req->usage);
    request_wake(req);
}

static enum MHD_Result collect_forward_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                              const char *value)
{
    struct request *req = cls;
    _cleanup_free_ char *line = NULL;
    struct curl_slist *l;

    for (size_t i = 0; i < ELEMENTSOF(forward_request_headers); i++) {
        if (strcasecmp(key, forward_request_headers[i]) != 0)
            continue;
        if (asprintf(&line, "%s: %s", forward_request_headers[i], value) < 0)
            return MHD_NO;
        l = curl_slist_append(req->upstream_headers, line);
        if (!l)
            return MHD_NO;
        req->upstream_headers = l;
        break;
    }
    return MHD_YES;
}

static const char *header(struct request *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

/* The key the client sent, in x-api-key or Authorization: Bearer. */
static struct client_key request_client_key(struct request *req)
{
    return client_key_from_headers(header(req, "x-api-key"),
                                   header(req, MHD_HTTP_HEADER_AUTHORIZATION));
}

/* Whether the request asks a model for tokens (and so costs money): a Messages request, or a
 * chat completion. count_tokens names a model but costs nothing. */
static bool request_billable(const struct request *req)
{
    return req->route == ROUTE_MESSAGES || (req->route == ROUTE_CHAT && !req->models_list);
}

/* The credential a request goes upstream with; every pointer is borrowed until the launch. */
struct upstream_cred {
    const char *key;
    size_t len;
    bool vertex;                  /* Vertex AI: Bearer token, URL by region and project */
    const char *project, *region; /* Vertex */
};

static int upstream_launch(struct request *req, const struct upstream_cred *cred);

/* Asks authd for the credential of the account that serves the request's model; the request
 * waits, suspended, and goes on in on_credential(). */
static void on_credential(const struct authd_token_result *res, void *userdata)
{
    struct request *req = userdata;
    struct upstream_cred cred = {};
    int r;

    req->token_req = NULL;
    if (req->client_gone) {
        request_wake(req);
        return;
    }
    if (res->error < 0) {
        log_warning("[%s] No credential for account '%s': %s (%s)", req->id, req->account,
                    res->message ? res->message : "unknown error", res->code ? res->code : "-");
        (void)http_reply_error(req, 503, res->message ? res->message : "No credential.");
        return;
    }
    cred.key = res->cred->token->data;
    cred.len = res->cred->token->len;
    cred.vertex = res->cred->provider && streq(res->cred->provider, "vertex");
    cred.project = res->cred->project;
    cred.region = res->cred->region;
    r = upstream_launch(req, &cred);
    if (r < 0 && !req->responded) {
        log_warning_errno(r, "[%s] Failed to start the upstream request: %m", req->id);
        (void)http_reply_error(req, 500, "Internal error in dualroute.");
    }
}

static int request_account_credential(struct request *req)
{
    struct server *s = req->server;
    const char *account;
    char msg[300];
    int r;

    account = route_account(&s->routes, req->model);
    if (!account) {
        if (authd_client_generation(s->authd) == 0 && authd_client_is_connected(s->authd))
            snprintf(msg, sizeof msg,
                     "dualroute-routerd is still fetching its routes from dualroute-authd; "
                     "retry in a moment.");
        else if (authd_client_generation(s->authd) == 0)
            snprintf(msg, sizeof msg,
                     "dualroute has no routes yet: dualroute-authd is not reachable at %s. Is it "
                     "running? (systemctl status dualroute-authd)",
                     s->cfg->authd_socket);
        else
            snprintf(msg, sizeof msg,
                     "No account serves model '%.120s'. Add one with: dualroutectl account add, "
                     "or route the model with: dualroutectl route set MODEL ACCOUNT",
                     req->model);
        return http_reply_error(req, 503, msg);
    }
    snprintf(req->account, sizeof req->account, "%s", account);
    request_suspend(req);
    r = authd_client_token(s->authd, account, on_credential, req, &req->token_req);
    if (r < 0)
        return r;
    return 0;
}

/* Team mode: whether the member may send this request now (model, budget, rate limits). Answers
 * 403 or 429 itself and returns 1 then; 0 to go on. */
static int team_check(struct request *req)
{
    struct server *s = req->server;
    struct team_member *m = team_find(&s->team, req->member);
    bool billable = request_billable(req);
    bool has_model = billable || req->route == ROUTE_COUNT_TOKENS;
    uint64_t retry = 0, now = now_realtime_usec();
    enum team_verdict v;
    char msg[400];

    if (!m) {
        (void)http_reply_error(req, 401, "This member key is no longer valid.");
        return 1;
    }
    v = team_admit(&s->team, m, has_model ? req->model : NULL,
                   billable ? team_estimate_prompt_tokens(req->body.len) : 0,
                   billable ? MAX(req->max_tokens, (int64_t)0) : -1, now, &req->reservation,
                   &retry);
    switch (v) {
    case TEAM_OK:
        return 0;
    case TEAM_MODEL_FORBIDDEN:
        snprintf(msg, sizeof msg, "Member '%s' may not use the model '%.120s'.", m->name,
                 req->model);
        (void)http_reply_error(req, 403, msg);
        return 1;
    case TEAM_OVER_BUDGET: {
        time_t reset = (time_t)team_month_end(s->team.month_start_at);
        struct tm tm = {};
        char when[40] = "the start of next month (UTC)";

        if (s->team.month_start_at > 0 && gmtime_r(&reset, &tm))
            strftime(when, sizeof when, "%Y-%m-%d 00:00 UTC", &tm);
        snprintf(msg, sizeof msg,
                 "Member '%s' has used $%.6f of its monthly budget of $%.6f; the budget resets "
                 "on %s.",
                 m->name, (double)(m->spent_micro_usd + m->reserved_micro_usd) / 1e6,
                 (double)m->budget_micro_usd / 1e6, when);
        req->no_retry = true;
        if (s->team.month_start_at > 0 && (int64_t)reset > (int64_t)(now / USEC_PER_SEC))
            req->retry_after =
                (unsigned)MIN((int64_t)reset - (int64_t)(now / USEC_PER_SEC), (int64_t)UINT32_MAX);
        (void)http_reply_error(req, 429, msg);
        return 1;
    }
    case TEAM_BUDGET_RESERVED:
        snprintf(msg, sizeof msg,
                 "Member '%s' has used $%.6f of its monthly budget of $%.6f, and requests in "
                 "flight hold the rest; retry in a second.",
                 m->name, (double)m->spent_micro_usd / 1e6, (double)m->budget_micro_usd / 1e6);
        req->retry_after = 1;
        (void)http_reply_error(req, 429, msg);
        return 1;
    case TEAM_RATE_REQUESTS:
    case TEAM_RATE_TOKENS:
        snprintf(msg, sizeof msg,
                 "Member '%s' is over its limit of %lld %s per minute; retry in %llu s.", m->name,
                 (long long)(v == TEAM_RATE_REQUESTS ? m->rpm : m->tpm),
                 v == TEAM_RATE_REQUESTS ? "requests" : "tokens", (unsigned long long)retry);
        req->retry_after = (unsigned)MIN(retry, (uint64_t)UINT32_MAX);
        (void)http_reply_error(req, 429, msg);
        return 1;
    default:
        return -EINVAL;
    }
}

/* Picks the credential for the upstream: the client's own Anthropic key with bearer passthrough,
 * else the router's key, or in service mode the routed account's credential from authd (then the
 * launch happens later). Answers 401 itself when there is none. */
static int request_credential(struct request *req)
{
    struct server *s = req->server;
    struct upstream_cred cred = {};
    struct client_key k;

    k = request_client_key(req);
    req->key_kind = k.kind;

    if (k.kind == CLIENT_KEY_SUBSCRIPTION)
        return http_reply_error(req, 401,
                                "dualroute does not use Claude subscription (OAuth) tokens. Use an "
                                "Anthropic API key, or no key at all to use the router's own.");
    if (s->team_on) {
        int r = team_check(req);

        if (r != 0)
            return r < 0 ? r : 0; /* answered */
    } else if (k.kind == CLIENT_KEY_ANTHROPIC && s->cfg->bearer_passthrough) {
        /* The log names the client's key by its fingerprint; keys that are not used upstream
         * ("not-used") are not hashed at all. */
        secret_fp_buf(k.value, k.len, req->key_fp);
        req->key_passthrough = true;
        cred.key = k.value;
        cred.len = k.len;
        return upstream_launch(req, &cred);
    }
    if (s->authd)
        return request_account_credential(req);
    if (!s->api_key)
        return http_reply_error(req, 401,
                                "dualroute has no Anthropic API key: start dualroute-routerd with "
                                "ANTHROPIC_API_KEY or --api-key-file, or send your own key in "
                                "x-api-key.");
    cred.key = s->api_key->data;
    cred.len = s->api_key->len;
    return upstream_launch(req, &cred);
}

int proxy_upstream_start(struct request *req, const char *path, bool post)
{
    /* A copy: the launch may come later, once authd has answered. */
    if ((size_t)snprintf(req->upstream_path, sizeof req->upstream_path, "%s", path) >=
        sizeof req->upstream_path)
        return -ENAMETOOLONG;
    req->upstream_post = post;
    return request_credential(req);
}

static int append_header(struct request *req, const char *name, const char *value)
{
    _cleanup_free_ char *line = NULL;
    struct curl_slist *l;

    if (asprintf(&line, "%s: %s", name, value) < 0)
        return -ENOMEM;
    l = curl_slist_append(req->upstream_headers, line);
    if (!l)
        return -ENOMEM;
    req->upstream_headers = l;
    return 0;
}

/* Rewrites the request for Vertex AI: the model into the URL, the body's anthropic_version, the
 * betas Vertex refuses dropped. Answers 400 itself (returns -EINVAL) for a model Vertex cannot
 * name. */
static int vertex_prepare(struct request *req, const struct upstream_cred *cred, char **ret_url)
{
    struct server *s = req->server;
    bool count = req->route == ROUTE_COUNT_TOKENS;
    _cleanup_free_ char *model = NULL, *body = NULL, *betas = NULL, *dropped = NULL;
    const char *beta;
    char msg[300];
    size_t len = 0;
    int r;

    if (req->route != ROUTE_MESSAGES && req->route != ROUTE_COUNT_TOKENS && !req->translate) {
        (void)http_reply_error(req, 404,
                               "Vertex AI has no model list; this router's account for the "
                               "request is a Vertex AI account.");
        return -EINVAL;
    }
    r = vertex_model_id(req->model, &model);
    if (r < 0) {
        snprintf(msg, sizeof msg, "The model '%.120s' has no Vertex AI id.", req->model);
        (void)http_reply_error(req, 400, msg);
        return r;
    }
    r = vertex_url(&(struct vertex_target){.base_url = s->cfg->vertex_base_url,
                                           .region = cred->region,
                                           .project = cred->project},
                   model, req->stream, count, ret_url);
    if (r < 0) {
        snprintf(msg, sizeof msg, "Account '%s' has no usable Vertex AI project or region.",
                 req->account);
        (void)http_reply_error(req, 503, msg);
        return r;
    }
    r = vertex_body(req->body.data ? req->body.data : "", req->body.len, model, count, &body, &len);
    if (r < 0) {
        (void)http_reply_error(req, 400, "The request body cannot be rewritten for Vertex AI.");
        return r;
    }
    request_set_body(req, TAKE_PTR(body), len);

    beta = req->translate ? (req->tctx.anthropic_beta[0] ? req->tctx.anthropic_beta : NULL)
                          : header(req, "anthropic-beta");
    if (beta) {
        r = vertex_filter_betas(beta, count, s->cfg->vertex_drop_betas, &betas, &dropped);
        if (r < 0)
            return http_reply_error(req, 400, "The anthropic-beta header is not valid.") < 0
                       ? -ENOMEM
                       : -EINVAL;
        if (dropped)
            log_info("[%s] Not sending anthropic-beta values Vertex AI refuses: %s", req->id,
                     dropped);
        if (betas && append_header(req, "anthropic-beta", betas) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int upstream_launch(struct request *req, const struct upstream_cred *cred)
{
    struct server *s = req->server;
    _cleanup_free_ char *url = NULL;
    const char *query;
    struct curl_slist *l;
    bool post = req->upstream_post;
    int r;

    /* The key goes into curl's header list, wiped when the request ends. */
    l = curl_slist_append_secret(NULL, cred->vertex ? AUTH_HEADER_BEARER : AUTH_HEADER_API_KEY,
                                 cred->key, cred->len);
    if (!l)
        return -ENOMEM;
    req->upstream_headers = l;

    if (cred->vertex) {
        req->vertex = true;
        r = vertex_prepare(req, cred, &url);
        if (r == -EINVAL || req->responded)
            return 0; /* answered */
        if (r < 0)
            return r;
        if (append_header(req, "content-type", "application/json") < 0)
            return -ENOMEM;
    } else {
        query = req->translate ? NULL : strchr(req->uri, '?'); /* a translated request is ours */
        if (asprintf(&url, "%s%s%s", s->upstream_base, req->upstream_path, query ? query : "") < 0)
            return -ENOMEM;
        if (req->translate) {
            /* A translated request is ours: a fixed API version, and no client header upstream. */
            if (append_header(req, "anthropic-version", "2023-06-01") < 0 ||
                (req->tctx.anthropic_beta[0] &&
                 append_header(req, "anthropic-beta", req->tctx.anthropic_beta) < 0))
                return -ENOMEM;
        } else if (MHD_get_connection_values(req->connection, MHD_HEADER_KIND,
                                             collect_forward_header, req) < 0)
            return -ENOMEM;
        if (post && (req->translate || !header(req, MHD_HTTP_HEADER_CONTENT_TYPE)) &&
            append_header(req, "content-type", "application/json") < 0)
            return -ENOMEM;
    }
    /* No "Expect: 100-continue" round trip for large bodies; our own User-Agent. */
    l = curl_slist_append(req->upstream_headers, "Expect:");
    if (l)
        l = curl_slist_append(l, "User-Agent: dualroute/" DUALROUTE_VERSION);
    if (!l)
        return -ENOMEM;
    req->upstream_headers = l;

    req->easy = server_easy_get(s);
    if (!req->easy)
        return -ENOMEM;
    curl_easy_setopt(req->easy, CURLOPT_URL, url);
    curl_easy_setopt(req->easy, CURLOPT_PROTOCOLS_STR,
                     cred->vertex             ? "http,https"
                     : s->upstream_plain_http ? "http"
                                              : "https");
    curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->upstream_headers);
    if (post) {
        curl_easy_setopt(req->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, req->body.data ? req->body.data : "");
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
    } else
        curl_easy_setopt(req->easy, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(req->easy, CURLOPT_HEADERFUNCTION, on_upstream_header);
    curl_easy_setopt(req->easy, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, on_upstream_body);
    curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req);
    curl_easy_setopt(req->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(req->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(s->cfg->upstream_connect_timeout / USEC_PER_MSEC));

    if (curl_multi_add_handle(s->curl.multi, req->easy) != CURLM_OK) {
        server_easy_put(s, req->easy);
        req->easy = NULL;
        return -EIO;
    }
    req->upstream = UPSTREAM_RUNNING;
    req->t_upstream = now_usec();
    /* Start the transfer now instead of on curl's 0 ms timer one loop pass later. A fast upstream
     * may have answered (or the transfer failed) before curl returns: the response is then
     * already queued, and the connection needs no suspend and resume (two epoll_ctl() calls and
     * a loop pass). Otherwise it waits, suspended. */
    server_kick_curl(s);
    if (!req->responded)
        request_suspend(req);
    return 0;
}

/* Reads model, stream and max_tokens from a copy of a Messages body. The body itself is forwarded
 * untouched; integers are decoded as reals so that a huge number does not make a valid body a 400.
 */
int request_parse_body(struct request *req, size_t flags, bool allow_overflow, json_t **ret)
{
    json_error_t jerr;
    json_t *root;
    char msg[160 + sizeof jerr.text];

    root = json_loadb(req->body.data ? req->body.data : "", req->body.len, flags, &jerr);
    if (!root && allow_overflow && json_error_code(&jerr) == json_error_numeric_overflow)
        return -ERANGE;
    if (!root) {
        snprintf(msg, sizeof msg, "The request body is not valid JSON: %s (line %d, column %d)",
                 jerr.text, jerr.line, jerr.column);
        (void)http_reply_error(req, 400, msg);
        return -EBADMSG;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        (void)http_reply_error(req, 400, "The request body must be a JSON object.");
        return -EBADMSG;
    }
    *ret = root;
    return 0;
}

void request_set_body(struct request *req, char *text, size_t len)
{
    buf_free(&req->body, true);
    req->body.data = text;
    req->body.len = len;
    req->body.cap = len + 1;
}

/* A configured alias: the one rewrite of a Messages body. The body is parsed again exactly
 * (integers stay integers, "\u0000" survives), its model replaced, and printed compactly. */
static int body_set_model(struct request *req, const char *model)
{
    json_t *root;
    char *text;
    size_t len;
    int r = -ENOMEM;

    root = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_ALLOW_NUL, NULL);
    if (!root) {
        /* An integer beyond 64 bits: forwarded as it is, alias and all. */
        log_debug("[%s] Cannot rewrite the model of this body; forwarding it unchanged.", req->id);
        return 0;
    }
    if (json_object_set_new(root, "model", json_string(model)) == 0 &&
        (text = translate_json_text(root, req->body.len + 64, &len))) {
        request_set_body(req, text, len);
        r = 0;
    }
    json_decref(root);
    return r;
}

/* Reads model, stream and max_tokens from a Messages body, and applies an alias. The values it
 * makes live in one arena scope and are gone when it returns. */
static int messages_peek(struct request *req)
{
    _cleanup_json_arena_ struct json_arena *arena = json_arena_enter();
    json_t *root = NULL, *v;
    int r;

    r = request_parse_body(req, JSON_DECODE_INT_AS_REAL, true, &root);
    if (r == -ERANGE) {
        /* A number beyond a double (1e400) is still JSON; the upstream judges it. The body goes
         * out unpeeked: no model in the log, and the answer's type tells whether it streams. */
        log_debug("[%s] Body has a number too large to peek at; forwarding it as is.", req->id);
        return 0;
    }
    if (r < 0)
        return r;
    v = json_object_get(root, "model");
    if (json_is_string(v)) {
        enum model_map_reason why;
        const char *target = model_map_resolve(&req->server->model_map, json_string_value(v), &why);

        snprintf(req->model, sizeof req->model, "%s", json_string_value(v));
        if ((why == MODEL_MAP_CUSTOM || why == MODEL_MAP_ALIAS) && !streq(target, req->model)) {
            snprintf(req->model_requested, sizeof req->model_requested, "%s (%s)", req->model,
                     model_map_reason_to_string(why));
            snprintf(req->model, sizeof req->model, "%s", target);
            r = body_set_model(req, target);
            if (r < 0) {
                json_decref(root);
                return r;
            }
        }
    }
    req->stream = json_is_true(json_object_get(root, "stream"));
    v = json_object_get(root, "max_tokens");
    if (json_is_number(v))
        req->max_tokens = (int64_t)json_number_value(v);
    json_decref(root);
    return 0;
}

/* A model id in /v1/models/{id}: the characters model ids and aliases use, nothing that could
 * change the upstream path. */
static bool model_id_valid(const char *id)
{
    if (!*id || strlen(id) > 200)
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-._:@", *p))
            return false;
    return true;
}

static enum route route_of(const char *url)
{
    static const struct {
        const char *path;
        enum route route;
    } table[] = {
        {"/health", ROUTE_HEALTH},
        {"/v1/messages", ROUTE_MESSAGES},
        {"/v1/messages/count_tokens", ROUTE_COUNT_TOKENS},
        {"/v1/models", ROUTE_MODELS},
        {"/v1/chat/completions", ROUTE_CHAT},
        {"/metrics", ROUTE_METRICS},
    };

    for (size_t i = 0; i < ELEMENTSOF(table); i++)
        if (strcmp(url, table[i].path) == 0)
            return table[i].route;
    if (startswith(url, "/v1/models/") && url[strlen("/v1/models/")] &&
        !strchr(url + strlen("/v1/models/"), '/'))
        return ROUTE_MODEL;
    return ROUTE_NONE;
}

static int request_begin(struct request *req, const char *url, const char *method)
{
    const char *cl;

    req->method = method;
    req->route = route_of(url);
    switch (req->route) {
    case ROUTE_MESSAGES:
    case ROUTE_COUNT_TOKENS:
        req->format = API_FORMAT_ANTHROPIC;
        break;
    case ROUTE_CHAT:
        req->format = API_FORMAT_OPENAI;
        break;
    default:
        req->format = header(req, "anthropic-version") ? API_FORMAT_ANTHROPIC : API_FORMAT_OPENAI;
    }

    /* A declared body over the limit is refused before a byte of it is read; MHD then closes the
     * connection. A chunked body is cut off as it arrives (request_receive()). */
    cl = header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        uint64_t n;

        if (parse_size(cl, &n) == 0 && n > req->server->cfg->max_body_size) {
            char msg[160], lim[32];

            format_size(req->server->cfg->max_body_size, lim);
            snprintf(msg, sizeof msg, "The request body is %" PRIu64 " bytes; the limit is %s.", n,
                     lim);
            return http_reply_error(req, 413, msg);
        }
    }
    return 0;
}

/* Team mode: the member key. Answers 401 (503 before authd's member list arrived) itself and
 * returns 1 then; 0 with req->member set. The key is hashed and forgotten; logs name the member. */
static int team_authenticate(struct request *req)
{
    struct server *s = req->server;
    struct team_member *m = NULL;
    struct client_key k;

    k = request_client_key(req);
    if (!s->team.loaded) {
        (void)http_reply_error(req, 503,
                               "dualroute has no member list yet: dualroute-authd is not "
                               "reachable. Is it running? (systemctl status dualroute-authd)");
        return 1;
    }
    if (k.kind == CLIENT_KEY_MEMBER)
        m = team_find_key(&s->team, k.value, k.len);
    if (!m) {
        (void)http_reply_error(
            req, 401,
            k.kind == CLIENT_KEY_NONE
                ? "This dualroute router is shared by a team: send your member key (dr-...) in "
                  "x-api-key or Authorization: Bearer."
            : k.kind == CLIENT_KEY_MEMBER
                ? "The member key is not valid (mistyped, rotated or removed); ask your admin "
                  "for a new one: dualroutectl member rotate NAME."
                : "This dualroute router is shared by a team and needs your member key (dr-...), "
                  "not another kind of key.");
        return 1;
    }
    snprintf(req->member, sizeof req->member, "%s", m->name);
    return 0;
}

static bool peer_is_loopback(struct request *req)
{
    const union MHD_ConnectionInfo *ci;
    const struct sockaddr *sa;

    ci = MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return false;
    sa = ci->client_addr;
    if (sockaddr_is_loopback(sa))
        return true;
    /* An IPv4 client of a dual-stack listener shows as ::ffff:127.x.y.z. */
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* GET /metrics: for loopback peers, or anyone with the metrics key (metrics_key_file). */
static int metrics_reply(struct request *req)
{
    struct server *s = req->server;
    struct client_key k = request_client_key(req);
    size_t streams = 0;
    char *text;

    if (!peer_is_loopback(req) &&
        !(s->metrics_key && k.value && secret_equal(s->metrics_key, k.value, k.len)))
        return http_reply_error(req, 403,
                                "GET /metrics is served to loopback clients, or with the metrics "
                                "key (metrics_key_file).");
    for (struct request *r = s->requests; r; r = r->next)
        if (r->upstream == UPSTREAM_RUNNING && r->responded && (r->sse || r->chunks))
            streams++;
    text = metrics_render(&s->metrics, streams, s->n_requests > 0 ? s->n_requests - 1 : 0);
    if (!text)
        return -ENOMEM;
    return request_reply_buffer(req, 200, "text/plain; version=0.0.4; charset=utf-8", text);
}

static int request_dispatch(struct request *req)
{
    const struct router_config *cfg = req->server->cfg;
    bool get = strcmp(req->method, MHD_HTTP_METHOD_GET) == 0;
    bool post = strcmp(req->method, MHD_HTTP_METHOD_POST) == 0;
    char msg[200], path[256];
    int r;

    if (req->body_too_large) {
        char lim[32];

        format_size(cfg->max_body_size, lim);
        snprintf(msg, sizeof msg, "The request body is larger than the limit of %s.", lim);
        return http_reply_error(req, 413, msg);
    }
    if (req->server->team_on && req->route != ROUTE_HEALTH && req->route != ROUTE_METRICS &&
        team_authenticate(req))
        return 0; /* answered */

    switch (req->route) {
    case ROUTE_METRICS:
        if (!get)
            return http_reply_error(req, 405, "Use GET for /metrics.");
        return metrics_reply(req);

    case ROUTE_HEALTH:
        if (!get)
            return http_reply_error(req, 405, "Use GET for /health.");
        return request_reply_buffer(req, 200, "application/json", strdup(health_body));

    case ROUTE_MESSAGES:
    case ROUTE_COUNT_TOKENS:
        if (!cfg->enable_anthropic)
            return http_reply_error(req, 404,
                                    "The Anthropic endpoints are disabled on this router "
                                    "(--disable-anthropic).");
        if (!post)
            return http_reply_error(req, 405, "Use POST for this endpoint.");
        r = messages_peek(req);
        if (r < 0)
            return 0; /* answered */
        reqlog_start(req);
        return proxy_upstream_start(
            req, req->route == ROUTE_MESSAGES ? "/v1/messages" : "/v1/messages/count_tokens", true);

    case ROUTE_MODELS:
    case ROUTE_MODEL:
        if (!get)
            return http_reply_error(req, 405, "Use GET for /v1/models.");
        if (req->route == ROUTE_MODEL && !model_id_valid(req->model))
            return http_reply_error(req, 404, "No such model.");
        /* Anthropic clients get the upstream's pages as they are; others the superset list. */
        if (req->format == API_FORMAT_OPENAI)
            return chat_models_begin(req);
        if (req->route == ROUTE_MODELS)
            return proxy_upstream_start(req, "/v1/models", false);
        snprintf(path, sizeof path, "/v1/models/%s", req->model);
        return proxy_upstream_start(req, path, false);

    case ROUTE_CHAT:
        if (!cfg->enable_openai)
            return http_reply_error(req, 404,
                                    "The OpenAI endpoint is disabled on this router "
                                    "(--disable-openai).");
        if (!post)
            return http_reply_error(req, 405, "Use POST for /v1/chat/completions.");
        return chat_begin(req);

    default:
        snprintf(msg, sizeof msg, "Not found: %s %.120s", req->method, req->uri);
        return http_reply_error(req, 404, msg);
    }
}

enum MHD_Result proxy_access(void *cls, struct MHD_Connection *connection, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **con_cls)
{
    struct request *req = *con_cls;
    int r;

    if (!req)
        return MHD_NO; /* the URI-log callback ran out of memory */

    if (!req->started) {
        req->started = true;
        r = request_begin(req, url, method);
        if (req->route == ROUTE_MODEL) {
            /* The id from the raw URI, undecoded: a %00 or %2F must not change what is asked
             * upstream; model_id_valid() refuses the '%'. */
            const char *id = req->uri + strlen("/v1/models/");
            size_t n = strcspn(id, "?");

            snprintf(req->model, sizeof req->model, "%.*s", (int)MIN(n, sizeof req->model - 1), id);
        }
        return r < 0 ? MHD_NO : MHD_YES;
    }

    if (*upload_data_size > 0) {
        if (!req->body_too_large && buf_append(&req->body, upload_data, *upload_data_size) < 0) {
            req->body_too_large = true;
            buf_free(&req->body, true);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (req->client_gone)
        return MHD_NO;
    if (req->received) {
        /* Resumed with no response yet (a spurious wake-up): keep waiting. */
        request_suspend(req);
        return MHD_YES;
    }
    req->received = true;
    conn_set_waiting(connection, true);
    r = request_dispatch(req);
    if (r < 0) {
        log_warning_errno(r, "[%s] Failed to handle the request: %m", req->id);
        if (!req->responded && http_reply_error(req, 500, "Internal error in dualroute.") < 0)
            return MHD_NO;
    }
    return MHD_YES;
}

static const char *metrics_endpoint(const struct request *req)
{
    switch (req->route) {
    case ROUTE_MESSAGES:
        return "messages";
    case ROUTE_COUNT_TOKENS:
        return "count_tokens";
    case ROUTE_CHAT:
        return "chat_completions";
    case ROUTE_MODELS:
    case ROUTE_MODEL:
        return "models";
    case ROUTE_HEALTH:
        return "health";
    case ROUTE_METRICS:
        return "metrics";
    default:
        return "other";
    }
}

/* A finished request's accounting: its reservation settled with the real cost, the metrics, and
 * (service mode) its usage record for authd's ledger. Never the prompt or the answer. */
static void request_account(struct request *req)
{
    struct server *s = req->server;
    bool billable = request_billable(req);
    bool api = billable || req->route == ROUTE_COUNT_TOKENS;
    struct team_usage u = {};
    uint64_t now = now_usec();
    const char *upstream_error = NULL;
    int64_t cost = 0;

    if (!req->started)
        return;
    if (billable) {
        u = (struct team_usage){.input_tokens = req->usage.input_tokens,
                                .output_tokens = req->usage.output_tokens,
                                .cache_read_tokens = req->usage.cache_read_tokens,
                                .cache_write_tokens = req->usage.cache_creation_tokens};
        cost = team_cost(team_price_for(&s->team, req->model), &u);
    }
    team_settle(&s->team, &req->reservation, cost,
                u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens,
                now_realtime_usec());

    if (req->t_upstream && req->curl_result != CURLE_OK &&
        req->curl_result != CURLE_ABORTED_BY_CALLBACK)
        upstream_error = "transport";
    else if (req->t_upstream && req->upstream_status >= 500)
        upstream_error = "status_5xx";
    else if (req->t_upstream && req->upstream_failed)
        upstream_error = "broken_response";
    metrics_observe(&s->metrics,
                    &(struct metrics_sample){
                        .endpoint = metrics_endpoint(req),
                        .status = req->status,
                        .model = api || req->route == ROUTE_MODEL ? req->model : "",
                        .member = req->member,
                        .latency_usec = now - req->t_start,
                        .ttfb_usec = req->t_first_byte ? req->t_first_byte - req->t_start : 0,
                        .input_tokens = u.input_tokens,
                        .output_tokens = u.output_tokens,
                        .cache_read_tokens = u.cache_read_tokens,
                        .cache_write_tokens = u.cache_write_tokens,
                        .upstream_error = upstream_error,
                    });

    if (s->authd && api && req->received && (!s->team_on || req->member[0])) {
        struct ledger_record rec = {
            .at_ms = (int64_t)(now_realtime_usec() / USEC_PER_MSEC),
            .endpoint = req->format == API_FORMAT_OPENAI ? "openai" : "anthropic",
            .status = req->status,
            .input_tokens = u.input_tokens,
            .output_tokens = u.output_tokens,
            .cache_read_tokens = u.cache_read_tokens,
            .cache_write_tokens = u.cache_write_tokens,
            .latency_ms = (int64_t)((now - req->t_start) / USEC_PER_MSEC),
            .ttfb_ms = req->t_first_byte
                           ? (int64_t)((req->t_first_byte - req->t_start) / USEC_PER_MSEC)
                           : -1,
            .cost_micro_usd = cost,
        };
        const char *cut = strstr(req->model_requested, " (");

        snprintf(rec.request_id, sizeof rec.request_id, "%s", req->id);
        snprintf(rec.member, sizeof rec.member, "%s", req->member);
        snprintf(rec.model, sizeof rec.model, "%s", req->model[0] ? req->model : "unknown");
        snprintf(rec.model_requested, sizeof rec.model_requested, "%.*s",
                 cut ? (int)(cut - req->model_requested) : (int)strlen(req->model_requested),
                 req->model_requested);
        snprintf(rec.account, sizeof rec.account, "%s", req->account);
        if (rec.status == 0)
            rec.status = 499; /* the client left before an answer */
        if (ledger_add(&s->ledger, &rec) < 0)
            log_warning("[%s] Out of memory; this request's usage record is lost.", req->id);
        ledger_kick(&s->ledger);
    }
}

void proxy_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                     enum MHD_RequestTerminationCode toe)
{
    struct request *req = *con_cls;
    struct server *s = cls;

    conn_set_waiting(connection, false);
    if (!req)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        req->client_gone = true;
    if (req->upstream == UPSTREAM_RUNNING) {
        upstream_abort(req, 0, NULL);
        req->usage = req->scanner.usage;
    }
    request_account(req);
    reqlog_finish(req, toe);
    request_free(req);
    *con_cls = NULL;
    server_request_gone(s);
}

static int on_client_hup(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    struct request *req = userdata;

    sd_event_source_set_enabled(src, SD_EVENT_OFF);
    if (req->client_gone)
        return 0;
    req->client_gone = true;
    log_debug("[%s] Client went away while waiting on the upstream.", req->id);
    if (req->upstream == UPSTREAM_RUNNING) {
        req->usage = req->scanner.usage;
        upstream_abort(req, 0, NULL);
    }
    request_wake(req);
    return 0;
}

static void request_watch_hangup(struct request *req)
{
    const union MHD_ConnectionInfo *ci;

    if (req->client_gone)
        return;
    if (req->hup_watch) {
        sd_event_source_set_enabled(req->hup_watch, SD_EVENT_ON);
        return;
    }
    ci = MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    if (sd_event_add_io(req->server->event, &req->hup_watch, ci->connect_fd, EPOLLRDHUP,
                        on_client_hup, req) < 0)
        req->hup_watch = NULL;
}

void proxy_sweep(struct server *s, uint64_t now)
{
    const struct router_config *cfg = s->cfg;
    char msg[160];

    for (struct client_conn *cc = s->conns; cc; cc = cc->next)
        if (!cc->in_request && cc->fd >= 0 &&
            now - cc->waiting_since > cfg->client_request_timeout) {
            /* The client has not sent a complete request in time: MHD sees the shut-down socket
             * and closes the connection. */
            (void)shutdown(cc->fd, SHUT_RDWR);
            cc->waiting_since = now;
        }

    for (struct request *req = s->requests; req; req = req->next) {
        if (req->upstream == UPSTREAM_RUNNING) {
            if (!req->headers_done && now - req->t_upstream > cfg->upstream_first_byte_timeout) {
                snprintf(msg, sizeof msg, "The upstream did not answer within %" PRIu64 " s.",
                         cfg->upstream_first_byte_timeout / USEC_PER_SEC);
                upstream_abort(req, 504, msg);
            } else if (req->headers_done && !req->upstream_paused &&
                       now - req->t_last_byte > cfg->upstream_idle_timeout) {
                snprintf(msg, sizeof msg,
                         "The upstream sent nothing for %" PRIu64 " s; the response was cut.",
                         cfg->upstream_idle_timeout / USEC_PER_SEC);
                req->usage = req->scanner.usage;
                upstream_abort(req, 504, msg);
            }
        }
        if (req->chunks && req->upstream == UPSTREAM_RUNNING)
            chat_keepalive(req, now);
        if (req->suspended)
            request_watch_hangup(req);
    }
}

void proxy_abort_all(struct server *s)
{
    for (struct request *req = s->requests; req; req = req->next) {
        if (req->upstream == UPSTREAM_RUNNING) {
            req->usage = req->scanner.usage;
            upstream_abort(req, 503, "dualroute is shutting down; retry the request.");
        } else if (!req->responded && req->suspended)
            (void)http_reply_error(req, 503, "dualroute is shutting down; retry the request.");
        else
            request_wake(req);
    }
}
