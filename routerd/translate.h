/* translate.h: OpenAI Chat Completions <-> Anthropic Messages. Pure functions: JSON in, JSON out,
 * no IO, no globals, no logging (golden tests in tests/translate rely on that). The rules are
 * TRANSLATION.md's, sections (a) and (b); each function's comment names what it covers. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "usage.h"

/* What the translator needs to know about the target model: from the upstream's GET /v1/models
 * capabilities when known, else from the static family table. */
struct model_info {
    char id[128];
    int64_t max_output_tokens; /* 0: unknown */
    bool thinking_adaptive;    /* thinking {type: adaptive} accepted */
    bool thinking_enabled;     /* thinking {type: enabled, budget_tokens} accepted */
    bool thinking_default_on;  /* the model thinks unless told otherwise */
    bool thinking_can_disable; /* {type: disabled} accepted */
    bool structured_outputs;   /* output_config.format and strict tools */
    bool rejects_sampling;     /* non-default temperature/top_p/top_k are a 400 */
    bool sampling_exclusive;   /* temperature XOR top_p (the 4.5 family) */
    bool effort;               /* output_config.effort accepted */
    bool effort_xhigh;
    bool effort_max;
    bool prefill_rejected; /* a trailing assistant turn is a 400 */
};

/* Fills info for id from the static per-family table (TRANSLATION.md 2.6); unknown ids get
 * conservative defaults (no thinking, no structured outputs, max_output_tokens 0). */
void model_info_from_table(const char *id, struct model_info *ret);
/* Overrides what a GET /v1/models item (borrowed) states: max_tokens, capabilities. */
void model_info_merge_json(struct model_info *info, const json_t *item);

struct translate_options {
    int64_t nonstream_max_tokens_cap; /* default max_tokens cap for non-streaming requests */
    int64_t unknown_model_max_tokens; /* default max_tokens when the model's maximum is unknown */
    bool strict_tool_arguments;       /* invalid JSON tool arguments: 400 instead of {} */
    bool auto_cache;                  /* add top-level cache_control: {type: ephemeral} */
    bool overloaded_as_503;           /* 529 -> 503 */
};

#define TRANSLATE_OPTIONS_DEFAULT                                                                  \
    ((struct translate_options){                                                                   \
        .nonstream_max_tokens_cap = 16384, .unknown_model_max_tokens = 8192, .auto_cache = false})

/* A request the router refuses (400 before any upstream call), OpenAI-shaped by the caller. */
struct translate_error {
    unsigned status;
    char param[128]; /* "messages[3].tool_calls[0].function.arguments"; "" for null */
    char code[64];   /* "" for null */
    char message[256];
};

/* What the response side needs to know about the request. */
struct translate_context {
    char model[128]; /* the model the client asked for: echoed in every response */
    int64_t created; /* unix seconds when the request arrived */
    bool stream;
    bool include_usage;    /* stream_options.include_usage */
    bool legacy_functions; /* the request used functions/function_call */
    char json_tool[64];    /* forced-tool JSON mode: this tool's input is the content; "" if off */
    char prefix[1024];     /* prefix: true on the final assistant message: prepended to the
                            * answer's content (a longer prefix is refused with a 400); "" if off */
    char anthropic_beta[64]; /* anthropic-beta the translated request needs upstream (2.7), e.g.
                              * "files-api-2025-04-14" for a file_id part; "" for none */
    bool parse_every_event;  /* tests: no byte-template shortcuts in the stream translator, so that
                              * its output can be compared with the full parse's */
};

/* Translates an OpenAI chat.completion request (borrowed) for model (borrowed). On success returns
 * 0, *ret_out a new reference to the Anthropic Messages body (model included; "stream": true only
 * when streaming) and fills *ret_ctx (whose created and model the caller may preset: created is
 * kept when non-zero). On a request the router refuses returns -EINVAL and fills *reterr. */
int translate_request(const json_t *in, const struct model_info *model,
                      const struct translate_options *opt, json_t **ret_out,
                      struct translate_context *ret_ctx, struct translate_error *reterr);

/* Translates a complete Anthropic Message (borrowed) into a chat.completion: returns a new
 * reference, or NULL when msg is not a Message. Fills *ret_usage when not NULL. */
json_t *translate_response(const json_t *msg, const struct translate_context *ctx,
                           struct usage *ret_usage);

/* An OpenAI error body {"error":{message,type,param,code}} for an upstream error answer: status
 * and body (borrowed; NULL or not Anthropic-shaped is fine: message falls back to fallback).
 * Returns a new reference; *ret_status gets the status to send (529 may become 503). */
json_t *translate_error(unsigned status, const json_t *upstream_body, const char *fallback,
                        const struct translate_options *opt, unsigned *ret_status);

/* The streaming state machine: Anthropic SSE bytes in (split anywhere, UTF-8 included),
 * "data: {chat.completion.chunk}\n\n" bytes out, then "data: [DONE]\n\n"; a mid-stream error
 * becomes "data: {"error":{...}}\n\n" with no finish chunk and no [DONE]. */
struct chunk_stream;

int chunk_stream_new(const struct translate_context *ctx, struct chunk_stream **ret);
struct chunk_stream *chunk_stream_free(struct chunk_stream *s);
/* Consumes n bytes of upstream SSE, appends client bytes to out. Returns 0 or -ENOMEM/-ENOBUFS. */
int chunk_stream_feed(struct chunk_stream *s, const char *p, size_t n, struct buf *out);
/* The upstream ended: ok false means the transfer failed (error_message says why). Appends the
 * finish chunk, the usage chunk and [DONE] after a complete stream, or the error chunk after an
 * incomplete one. Idempotent. */
int chunk_stream_finish(struct chunk_stream *s, bool ok, const char *error_message,
                        struct buf *out);
/* True once [DONE] or an error chunk was emitted. */
bool chunk_stream_done(const struct chunk_stream *s);
/* Usage as far as the stream has told (input side from message_start, output cumulative). */
const struct usage *chunk_stream_usage(const struct chunk_stream *s);

/* Shared by the translator's own files (translate-*.c); other callers use the functions above. */

/* The OpenAI finish_reason for an Anthropic stop_reason (NULL is "stop"), TRANSLATION.md 3.2:
 * tool_use is "function_call" in legacy mode and "stop" in forced-tool JSON mode. Static string. */
const char *translate_finish_reason(const char *stop_reason, const struct translate_context *ctx);
/* The OpenAI usage object for an Anthropic usage object (borrowed; NULL counts as zeros),
 * TRANSLATION.md 3.3. completion_tokens_details.reasoning_tokens comes from
 * output_tokens_details.thinking_tokens; when that is absent it is 0 if always_reasoning, else the
 * details object is left out. Returns a new reference, or NULL on allocation failure. */
json_t *translate_usage_json(const json_t *usage, bool always_reasoning);
/* Copies the figures of an Anthropic usage object (borrowed) into *u; absent ones keep their
 * value. */
void translate_usage_merge(struct usage *u, const json_t *usage);
/* Serialises v (borrowed) like JSON.stringify: compact, keys in insertion order, reals in their
 * shortest round-trip form (0.7, not 0.69999999999999996). Appends to out; 0, -ENOMEM or
 * -ENOBUFS. */
int translate_json_dump(const json_t *v, struct buf *out);
/* The same text in a new NUL-terminated string, from malloc(), for free(); NULL when out of memory.
 * size_hint is the expected length, to allocate once; *ret_len (if not NULL) gets the length.
 * Unlike json_dumps() text, it may be freed with free() inside a json-arena scope. */
char *translate_json_text(const json_t *v, size_t size_hint, size_t *ret_len);
/* Appends the JSON string literal of n bytes of UTF-8, escaped as JSON.stringify and jansson both
 * do: quote, backslash and control characters only. */
int translate_json_dump_string(const char *s, size_t n, struct buf *out);
