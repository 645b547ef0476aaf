/* sse.c: text/event-stream parsing for `dualroutectl chat --stream`.
 *
 * Lines end with LF, CRLF or CR. "event:" sets the type, "data:" lines accumulate, one optional
 * space after the colon is dropped, a line starting with ':' is a comment, unknown fields are
 * ignored, and a blank line dispatches the event (an event with no data line is not dispatched).
 * "id:" and "retry:" mean nothing to a one-shot client and are ignored too. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "buf.h"
#include "macro.h"
#include "sse.h"

static int dispatch(struct sse_parser *p)
{
    int r = 0;

    if (p->have_data) {
        /* The last data line's '\n' is not part of the data. */
        if (p->data.len > 0)
            p->data.len--;
        if (p->data.data)
            p->data.data[p->data.len] = 0;
        r = p->cb(p->event[0] ? p->event : "message", p->data.data ? p->data.data : "", p->data.len,
                  p->userdata);
    }
    buf_clear(&p->data);
    p->event[0] = 0;
    p->have_data = false;
    return r;
}

static int process_line(struct sse_parser *p, const char *l, size_t n)
{
    const char *colon, *value;
    size_t flen, vlen;

    if (n == 0)
        return dispatch(p);
    if (l[0] == ':')
        return 0;
    colon = memchr(l, ':', n);
    flen = colon ? (size_t)(colon - l) : n;
    value = colon ? colon + 1 : l + n;
    vlen = (size_t)(l + n - value);
    if (vlen > 0 && value[0] == ' ') {
        value++;
        vlen--;
    }
    if (flen == 5 && memcmp(l, "event", 5) == 0) {
        size_t k = MIN(vlen, sizeof p->event - 1);

        memcpy(p->event, value, k);
        p->event[k] = 0;
    } else if (flen == 4 && memcmp(l, "data", 4) == 0) {
        int r = buf_append(&p->data, value, vlen);

        if (r < 0)
            return r;
        r = buf_append(&p->data, "\n", 1);
        if (r < 0)
            return r;
        p->have_data = true;
    }
    return 0;
}

int sse_parser_feed(struct sse_parser *p, const char *s, size_t n)
{
    int r;

    for (size_t i = 0; i < n; i++) {
        char ch = s[i];

        if (ch == '\n' && p->skip_lf) {
            p->skip_lf = false;
            continue;
        }
        p->skip_lf = false;
        if (ch == '\n' || ch == '\r') {
            p->skip_lf = ch == '\r';
            r = process_line(p, p->line.data ? p->line.data : "", p->line.len);
            buf_clear(&p->line);
            if (r < 0)
                return r;
            continue;
        }
        r = buf_append(&p->line, &ch, 1);
        if (r < 0)
            return r;
    }
    return 0;
}

void sse_parser_done(struct sse_parser *p)
{
    buf_free(&p->line, true);
    buf_free(&p->data, true);
    p->event[0] = 0;
    p->have_data = false;
}
