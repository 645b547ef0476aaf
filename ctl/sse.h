/* sse.h: a parser for text/event-stream (the HTML living standard's rules, as much as the
 * Anthropic Messages stream needs): bytes in, one callback per complete event. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Called once per event with its type ("message" when the event had no "event:" line) and its data
 * (the "data:" lines joined by '\n', NUL-terminated). A negative return stops the parser and is
 * returned by sse_parser_feed(). */
typedef int (*sse_event_cb)(const char *event, const char *data, size_t data_len, void *userdata);

struct sse_parser {
    struct buf line; /* the current, incomplete line */
    struct buf data; /* the event's data so far */
    char event[64];  /* the event's type so far; "" when not given */
    bool have_data;  /* a data: line was seen */
    bool skip_lf;    /* the last byte was a CR: a following LF ends nothing */
    sse_event_cb cb;
    void *userdata;
};

/* max caps one line and one event's data, in bytes. */
#define SSE_PARSER_INIT(m, c, u)                                                                   \
    ((struct sse_parser){.line = BUF_INIT(m), .data = BUF_INIT(m), .cb = (c), .userdata = (u)})

/* Feeds n bytes. Returns 0, -ENOBUFS when a line or an event exceeds the cap, -ENOMEM, or the
 * callback's negative return. */
int sse_parser_feed(struct sse_parser *p, const char *s, size_t n);
/* Frees the buffers (an event without its closing blank line is dropped, as the spec says). */
void sse_parser_done(struct sse_parser *p);
