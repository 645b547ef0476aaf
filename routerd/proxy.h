/* proxy.h: one client request, from the first byte MHD shows us to the log line: routing,
 * authentication, the upstream transfer, and the relay of its answer. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <microhttpd.h>
#include <systemd/sd-event.h>

#include "buf.h"
#include "client-key.h"
#include "http-error.h"
#include "team.h"
#include "translate.h"
#include "usage.h"

struct authd_credential;
struct authd_token_req;
struct server;

enum route {
    ROUTE_NONE,
    ROUTE_HEALTH,
    ROUTE_MESSAGES,
    ROUTE_COUNT_TOKENS,
    ROUTE_MODELS,
    ROUTE_MODEL,
    ROUTE_CHAT,
    ROUTE_METRICS,
    _ROUTE_MAX,
    _ROUTE_INVALID = -EINVAL,
};

enum upstream_state {
    UPSTREAM_IDLE,
    UPSTREAM_RUNNING,
    UPSTREAM_DONE,
    _UPSTREAM_STATE_MAX,
    _UPSTREAM_STATE_INVALID = -EINVAL,
};

/* One open client connection, tracked for the slow-client timeout. */
struct client_conn {
    struct client_conn *prev, *next;
    struct MHD_Connection *connection;
    int fd;
    uint64_t waiting_since; /* when it started waiting for a complete request */
    bool in_request;        /* a complete request is being served */
};

struct request {
    struct server *server;
    struct MHD_Connection *connection;
    struct request *prev, *next;
    char id[32];
    char *uri; /* raw, query included */
    const char *method;
    enum route route;
    enum api_format format;
    bool started; /* the access handler has seen the headers */
    bool received;
    bool responded; /* a response is queued */
    bool suspended;
    bool client_gone;
    bool router_error;
    unsigned status;
    char error_text[160];

    struct buf body;
    bool body_too_large;

    char model[128];           /* the upstream model */
    char model_requested[200]; /* for /v1/chat/completions: what the client asked, if mapped */
    int64_t max_tokens;
    bool stream;

    bool translate;   /* the answer goes through chat.c: /v1/chat/completions, OpenAI /v1/models */
    bool models_list; /* translate: GET /v1/models for an OpenAI client (models.c's superset) */
    struct translate_context tctx;
    struct chunk_stream *chunks; /* the streaming answer's translator, once a stream started */

    enum client_key_kind key_kind;
    bool key_passthrough;
    char key_fp[9];

    /* Team mode: the member the key belongs to (never the key), and what the request reserved. */
    char member[65];
    struct team_reservation reservation;
    unsigned retry_after; /* seconds, sent as retry-after with routerd's own 429 */
    bool no_retry;        /* x-should-retry: false (a budget: retrying will not help) */

    /* Service mode: the account that serves the request, and its credential on the way. */
    char account[65];
    struct authd_token_req *token_req;
    char upstream_path[256];
    bool upstream_post;
    bool vertex; /* the upstream is Vertex AI */

    CURL *easy;
    struct curl_slist *upstream_headers;
    enum upstream_state upstream;
    CURLcode curl_result;
    bool upstream_failed;
    bool upstream_paused;
    bool headers_done;
    bool sse;
    bool buffered; /* a small non-stream answer: collected whole, then sent in one piece */
    int64_t content_length;
    unsigned upstream_status;
    struct buf response_headers; /* "name\0value\0" pairs to forward */
    struct buf out;              /* upstream bytes not yet written to the client */
    struct buf capture;          /* JSON body (usage) and verbose-log copy */
    struct sse_scanner scanner;
    struct usage usage;
    sd_event_source *hup_watch;

    uint64_t t_start, t_upstream, t_first_byte, t_last_byte, t_last_sent;
};

/* MHD callbacks (cls is the struct server). */
void *proxy_uri_log(void *cls, const char *uri, struct MHD_Connection *connection);
enum MHD_Result proxy_access(void *cls, struct MHD_Connection *connection, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **con_cls);
void proxy_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                     enum MHD_RequestTerminationCode toe);
void proxy_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);

/* Replaces the body that goes upstream with text (len bytes and a NUL, malloc'ed; taken). The old
 * body is wiped. */
void request_set_body(struct request *req, char *text, size_t len);

/* Called by the server when curl finishes a transfer (never from inside a curl callback). */
void proxy_upstream_done(struct request *req, CURLcode result);
/* Periodic work: client and upstream timeouts, hang-up watches for suspended requests. */
void proxy_sweep(struct server *s, uint64_t now);
/* Ends every upstream transfer with a "shutting down" error (drain timeout). */
void proxy_abort_all(struct server *s);

/* Queues a complete response (steals body) and resumes the connection if suspended. Once the
 * upstream has answered, its forwarded headers go along. */
int request_reply_buffer(struct request *req, unsigned status, const char *content_type,
                         char *body);
/* Parses req's body with jansson flags into a new reference to a JSON object. Answers the 400
 * itself (and returns -EBADMSG) when the body is not JSON or not an object. With
 * allow_overflow, a number beyond a double returns -ERANGE unanswered (it is still JSON). */
int request_parse_body(struct request *req, size_t flags, bool allow_overflow, json_t **ret);
/* Resumes a suspended connection and schedules MHD (safe from inside curl callbacks). */
void request_wake(struct request *req);
/* Sends req->body to the upstream path (POST) or GETs it, with the credential req is entitled
 * to, and suspends the connection. Answers 401 itself when there is no credential. */
int proxy_upstream_start(struct request *req, const char *path, bool post);
