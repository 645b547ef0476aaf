/* chat.c: the OpenAI Chat Completions endpoint.
 *
 * The client's body is parsed, its model mapped (model-map.c), translated into an Anthropic
 * Messages body (translate-request.c) and sent upstream through the same transfer machinery as the
 * pass-through. What comes back takes one of two paths. A 200 event stream is answered at once
 * with an event stream of our own, and every upstream chunk goes through the chunk_stream state
 * machine into req->out, so back-pressure and disconnects work as for /v1/messages. Anything else
 * (a JSON Message, or an error in any shape) is buffered whole and translated when it is complete,
 * because an OpenAI client must not see a 200 before the upstream has given one.
 *
 * Long silences in a stream (thinking can take minutes) get an SSE comment every keep-alive
 * interval, which OpenAI clients ignore and reverse proxies take as traffic. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chat.h"
#include "json-arena.h"
#include "log.h"
#include "model-map.h"
#include "models.h"
#include "proxy.h"
#include "reqlog.h"
#include "server.h"
#include "translate.h"
#include "util.h"

#define CHAT_CAPTURE_MAX (16 * 1024 * 1024)

static int reply_json(struct request *req, unsigned status, json_t *body)
{
    size_t len;
    char *text = translate_json_text(body, 2048, &len);

    if (!text)
        return -ENOMEM;
    return request_reply_buffer(req, status, "application/json", text);
}

/* Parses, maps and translates the client's body into req->body. The values it makes live in one
 * arena scope and are gone when it returns. */
static int chat_translate(struct request *req)
{
    _cleanup_json_arena_ struct json_arena *arena = json_arena_enter();
    struct server *s = req->server;
    struct translate_error terr = {};
    struct model_info info = {};
    json_auto_t *in = NULL, *out = NULL;
    enum model_map_reason reason = MODEL_MAP_CLAUDE;
    const char *requested, *resolved = NULL;
    char *text;
    size_t len;
    int r;

    r = request_parse_body(req, 0, false, &in);
    if (r < 0)
        return req->responded ? 0 : r; /* answered, unless even the 400 could not be queued */

    requested = json_string_value(json_object_get(in, "model"));
    if (requested) {
        resolved = model_map_resolve(&s->model_map, requested, &reason);
        snprintf(req->tctx.model, sizeof req->tctx.model, "%s", requested);
    }
    model_info_from_table(resolved ? resolved : "", &info);
    server_model_caps(s, resolved, &info);
    req->tctx.created = (int64_t)(now_realtime_usec() / USEC_PER_SEC);

    r = translate_request(in, &info, &s->translate_options, &out, &req->tctx, &terr);
    if (r < 0)
        return http_reply_error_openai(req, terr.status ? terr.status : 400, terr.message,
                                       terr.param[0] ? terr.param : NULL,
                                       terr.code[0] ? terr.code : NULL);
    if (resolved && json_object_set_new(out, "model", json_string(resolved)) < 0)
        return -ENOMEM;

    snprintf(req->model, sizeof req->model, "%s", resolved ? resolved : "");
    if (requested && strcmp(requested, resolved) != 0)
        snprintf(req->model_requested, sizeof req->model_requested, "%s (%s)", requested,
                 model_map_reason_to_string(reason));
    req->stream = req->tctx.stream;
    if (json_is_number(json_object_get(out, "max_tokens")))
        req->max_tokens = (int64_t)json_number_value(json_object_get(out, "max_tokens"));

    text = translate_json_text(out, req->body.len + 512, &len);
    if (!text)
        return -ENOMEM;
    request_set_body(req, text, len);
    return 1;
}

int chat_begin(struct request *req)
{
    int r;

    r = chat_translate(req);
    if (r <= 0)
        return r;
    /* The upstream's model list refines the static capability table; fetched on the first valid
     * request, for the ones after it (outside the arena scope: the fetch outlives the request). */
    if (!req->server->model_caps)
        (void)models_refresh(req->server);
    req->translate = true;
    req->capture.max = CHAT_CAPTURE_MAX; /* the whole answer is buffered, not just its usage */

    reqlog_start(req);
    return proxy_upstream_start(req, "/v1/messages", true);
}

int chat_models_begin(struct request *req)
{
    struct server *s = req->server;
    enum model_map_reason reason;
    const char *target;
    char path[256];

    req->translate = true;
    req->models_list = true;
    req->capture.max = CHAT_CAPTURE_MAX;
    if (req->route == ROUTE_MODELS)
        return proxy_upstream_start(req, "/v1/models?limit=1000", false);

    /* An alias is shown under its own name, with its target's details. */
    target = model_map_resolve(&s->model_map, req->model, &reason);
    if (reason == MODEL_MAP_CUSTOM || reason == MODEL_MAP_ALIAS)
        snprintf(req->model_requested, sizeof req->model_requested, "%s", req->model);
    else
        target = req->model;
    snprintf(path, sizeof path, "/v1/models/%s", target);
    return proxy_upstream_start(req, path, false);
}

bool chat_stream_starts(struct request *req)
{
    if (req->models_list || req->upstream_status != 200 || !req->sse)
        return false;
    if (chunk_stream_new(&req->tctx, &req->chunks) < 0)
        return false;
    return true;
}

int chat_on_body(struct request *req, const char *p, size_t n)
{
    if (req->chunks)
        return chunk_stream_feed(req->chunks, p, n, &req->out);
    if (buf_append(&req->capture, p, n) < 0)
        return -ENOBUFS;
    return 0;
}

static void stream_finish(struct request *req, bool ok, const char *message)
{
    if (chunk_stream_finish(req->chunks, ok, message, &req->out) < 0)
        req->upstream_failed = true;
    req->usage = *chunk_stream_usage(req->chunks);
    if (!ok || req->usage.error) {
        req->usage.error = true;
        if (message)
            snprintf(req->error_text, sizeof req->error_text, "%s", message);
    }
}

void chat_finish(struct request *req, bool ok, const char *message)
{
    _cleanup_json_arena_ struct json_arena *arena = NULL;
    struct server *s = req->server;
    json_auto_t *reply = NULL, *answer = NULL;
    unsigned status = req->upstream_status;

    if (req->chunks) {
        stream_finish(req, ok, message);
        return;
    }
    /* A model list may be kept (server.c caches capabilities); anything else is gone on return. */
    if (!req->models_list)
        arena = json_arena_enter();
    /* Buffered: the whole upstream answer is in req->capture. */
    reply = json_loadb(req->capture.data ? req->capture.data : "", req->capture.len, 0, NULL);
    if (status == 200 && req->models_list) {
        answer = req->route == ROUTE_MODELS
                     ? models_superset_list(s, reply)
                     : models_superset_item(reply,
                                            req->model_requested[0] ? req->model_requested : NULL);
        if (!answer || reply_json(req, 200, answer) < 0)
            (void)http_reply_error(req, 502, "The upstream's model list could not be read.");
        return;
    }
    if (status == 200) {
        answer = reply ? translate_response(reply, &req->tctx, &req->usage) : NULL;
        if (!answer) {
            (void)http_reply_error(req, 502,
                                   "The upstream answered 200 with a body that is not a Message.");
            return;
        }
        if (reply_json(req, 200, answer) < 0)
            req->upstream_failed = true;
        return;
    }
    answer = translate_error(status, reply, "The upstream returned an error.",
                             &s->translate_options, &status);
    if (!answer || reply_json(req, status, answer) < 0)
        (void)http_reply_error(req, 502, "Failed to translate the upstream's error.");
    else {
        json_t *m = json_object_get(json_object_get(answer, "error"), "message");
        snprintf(req->error_text, sizeof req->error_text, "%s",
                 json_is_string(m) ? json_string_value(m) : "");
    }
}

void chat_keepalive(struct request *req, uint64_t now)
{
    uint64_t interval = req->server->cfg->openai_keepalive_interval;

    if (!req->chunks || interval == 0 || chunk_stream_done(req->chunks) || req->out.len > 0 ||
        now - MAX(req->t_last_sent, req->t_first_byte) < interval)
        return;
    if (buf_append_str(&req->out, ": keepalive\n\n") == 0) {
        req->t_last_sent = now;
        request_wake(req);
    }
}

void chat_request_done(struct request *req)
{
    req->chunks = chunk_stream_free(req->chunks);
}
