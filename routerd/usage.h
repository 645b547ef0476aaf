/* usage.h: token usage read from Anthropic responses, JSON or SSE, without touching the bytes that
 * are relayed. The SSE scanner is fed chunks exactly as they arrive (split anywhere) and parses
 * only the message_start, message_delta and error events. Pure: no IO, no globals. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct usage {
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t cache_read_tokens;
    int64_t cache_creation_tokens;
    bool seen;    /* any usage figure was read */
    bool stopped; /* message_stop seen (SSE), or a complete Message (JSON) */
    bool error;   /* an error event (SSE) */
    char stop_reason[32];
};

struct sse_scanner {
    struct buf line; /* the current, incomplete line */
    struct buf data; /* the data of the current event */
    char event[32];
    bool skip_line;  /* the current line overflowed; ignore it */
    bool skip_event; /* the current event's data overflowed; ignore it */
    bool last_cr;    /* the previous chunk ended in '\r' */
    struct usage usage;
};

/* Limits: an SSE line or event data larger than this is skipped (still relayed, not parsed). */
#define SSE_SCANNER_MAX (1024 * 1024)

void sse_scanner_init(struct sse_scanner *s);
void sse_scanner_done(struct sse_scanner *s);
/* Consumes a chunk. Never fails: what cannot be parsed is skipped. */
void sse_scanner_feed(struct sse_scanner *s, const char *p, size_t n);

/* Reads usage, stop_reason and completeness from a whole Message (or count_tokens) JSON body.
 * Returns 0, or -EBADMSG when the body is not a JSON object. */
int usage_from_json(const char *p, size_t n, struct usage *u);
