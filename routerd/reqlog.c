/* reqlog.c: request log lines.
 *
 * Modes, as in anthropic-max-router: minimal prints one line per request
 * ("[Anthropic] ✓ 200 claude-sonnet-4-5 (in:28 out:19)", the timestamp coming from log.c);
 * normal prints the request, its outcome and its tokens; verbose adds the bodies; quiet prints
 * only failures. Bodies pass through redact_credentials() and header values are never printed, so
 * no key reaches a log; a key shows as its fingerprint. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "proxy.h"
#include "redact.h"
#include "reqlog.h"
#include "secret.h"
#include "server.h"
#include "util.h"

#define VERBOSE_BODY_MAX (64 * 1024)

static const char *route_tag(const struct request *req)
{
    switch (req->route) {
    case ROUTE_MESSAGES:
    case ROUTE_COUNT_TOKENS:
        return "Anthropic";
    case ROUTE_CHAT:
        return "OpenAI";
    case ROUTE_MODELS:
    case ROUTE_MODEL:
        return "Models";
    default:
        return "HTTP";
    }
}

static void log_body(const struct request *req, const char *what, const char *p, size_t n)
{
    _cleanup_free_ char *clean = NULL;
    size_t shown = MIN(n, (size_t)VERBOSE_BODY_MAX);

    clean = redact_credentials(p ? p : "", p ? shown : 0);
    if (!clean)
        return;
    log_info("[%s] %s (%zu bytes%s):\n%s", req->id, what, n, shown < n ? ", truncated" : "", clean);
}

/* Text the client chose (URI, model, error messages that quote them) passes through redaction
 * too: a key pasted into a query string or a model field must not reach the log either. */
struct clean_text {
    char *uri, *model, *error;
};

static void clean_text_init(const struct request *req, struct clean_text *c)
{
    c->uri = redact_credentials(req->uri, strlen(req->uri));
    c->model = redact_credentials(req->model, strlen(req->model));
    c->error = redact_credentials(req->error_text, strlen(req->error_text));
}

static void clean_text_done(struct clean_text *c)
{
    free(c->uri);
    free(c->model);
    free(c->error);
}

static const char * or (const char *s, const char *fallback)
{
    return s ? s : fallback;
}

static const char *key_source(const struct request *req)
{
    if (req->member[0])
        return "member";
    if (req->key_passthrough)
        return "client key";
    return "router key";
}

void reqlog_start(const struct request *req)
{
    int mode = req->server->cfg->log_mode;
    _cleanup_(clean_text_done) struct clean_text c = {};

    if (mode < LOG_MODE_NORMAL)
        return;
    clean_text_init(req, &c);
    log_info("[%s] %s %s [%s] model=%s%s%s%s max_tokens=%" PRId64 " stream=%s%s%s", req->id,
             req->method, or (c.uri, "?"), route_tag(req), req->model[0] ? or (c.model, "?") : "-",
             req->model_requested[0] ? " (mapped from " : "", req->model_requested,
             req->model_requested[0] ? ")" : "", req->max_tokens, req->stream ? "yes" : "no",
             req->member[0] ? " member=" : "", req->member);
    if (mode == LOG_MODE_VERBOSE)
        log_body(req, "Request body", req->body.data, req->body.len);
}

void reqlog_finish(const struct request *req, enum MHD_RequestTerminationCode toe)
{
    int mode = req->server->cfg->log_mode;
    bool ok = req->status >= 200 && req->status < 400 && !req->usage.error &&
              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->upstream_failed;
    bool failure = !ok && (req->status >= 500 || req->status == 0 || req->router_error ||
                           toe != MHD_REQUEST_TERMINATED_COMPLETED_OK || req->usage.error);
    uint64_t now = now_usec();
    _cleanup_(clean_text_done) struct clean_text c = {};
    const char *why =
        req->client_gone && toe != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? " (client disconnected)"
        : toe == MHD_REQUEST_TERMINATED_COMPLETED_OK                      ? ""
        : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT || toe == MHD_REQUEST_TERMINATED_READ_ERROR
            ? " (client disconnected)"
        : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (client timed out)"
        : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? " (shutdown)"
                                                        : " (connection error)";
    int level = failure ? LOG_WARNING : LOG_INFO;

    if (!req->started)
        return;
    if (req->route == ROUTE_HEALTH && ok) {
        log_debug("[%s] GET /health 200", req->id);
        return;
    }

    if (mode < LOG_MODE_MINIMAL && !failure)
        return;
    clean_text_init(req, &c);

    if (mode == LOG_MODE_MINIMAL || (mode == LOG_MODE_QUIET && failure)) {
        log_full(level, "[%s] %s %u %s (in:%" PRId64 " out:%" PRId64 ")%s%s%s%s%s", route_tag(req),
                 ok ? "\xe2\x9c\x93" : "\xe2\x9c\x97", req->status,
                 or (req->model[0] ? c.model : c.uri, "?"), req->usage.input_tokens,
                 req->usage.output_tokens, req->member[0] ? " member=" : "", req->member, why,
                 req->error_text[0] ? " " : "", or (c.error, ""));
        return;
    }
    if (mode < LOG_MODE_NORMAL)
        return;

    if (!req->t_upstream)
        log_full(level, "[%s] %s %s [%s] %u%s%s%s", req->id, req->method, or (c.uri, "?"),
                 route_tag(req), req->status, why, req->error_text[0] ? ": " : "",
                 or (c.error, ""));
    else {
        log_full(level, "[%s] %s %u via %s (%s) in %" PRIu64 " ms, first byte %" PRIu64 " ms%s%s%s",
                 req->id, ok ? "\xe2\x9c\x93" : "\xe2\x9c\x97", req->status, key_source(req),
                 req->member[0]         ? req->member
                 : req->key_passthrough ? req->key_fp
                                        : secret_fp(req->server->api_key),
                 (now - req->t_start) / USEC_PER_MSEC,
                 req->t_first_byte ? (req->t_first_byte - req->t_start) / USEC_PER_MSEC : 0, why,
                 req->error_text[0] ? ": " : "", or (c.error, ""));
        if (req->usage.seen)
            log_full(level,
                     "[%s] Tokens: input=%" PRId64 ", output=%" PRId64 ", cache_read=%" PRId64
                     ", cache_write=%" PRId64,
                     req->id, req->usage.input_tokens, req->usage.output_tokens,
                     req->usage.cache_read_tokens, req->usage.cache_creation_tokens);
    }
    if (mode == LOG_MODE_VERBOSE && req->capture.len > 0)
        log_body(req, "Response body", req->capture.data, req->capture.len);
}
