/* chat.h: POST /v1/chat/completions: an OpenAI request translated for the Anthropic upstream, and
 * its answer translated back (translate.h does the JSON; this file does the plumbing). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct request;

/* The request body is complete: translates it and starts the upstream transfer, or answers a 400
 * itself. Returns 0 (handled) or a negative errno (internal failure, not yet answered). */
int chat_begin(struct request *req);
/* GET /v1/models[/{id}] for an OpenAI client: asks the upstream for the whole list (or the
 * mapped model) and answers the superset shape. Same returns as chat_begin(). */
int chat_models_begin(struct request *req);
/* The upstream's headers are complete: true when its answer is a stream, which the client then
 * gets as chat.completion.chunk events from now on; otherwise the answer is buffered. */
bool chat_stream_starts(struct request *req);
/* Upstream body bytes. Returns 0, or a negative errno to abort the transfer. */
int chat_on_body(struct request *req, const char *p, size_t n);
/* The upstream answer ended (ok false: it broke, message says how): the buffered answer is
 * translated and sent, or the stream gets its finish (or error) chunk. */
void chat_finish(struct request *req, bool ok, const char *message);
/* Writes an SSE comment when a stream has been silent for the keep-alive interval. */
void chat_keepalive(struct request *req, uint64_t now);
void chat_request_done(struct request *req);
