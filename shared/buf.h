/* buf.h: a growable byte buffer with a ceiling. Every buffer that holds input (a request body,
 * a response, an SSE event, a frame) is a struct buf, and none grows past .max. The data is
 * always NUL-terminated one byte past .len so it can be handed to string functions. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* the ceiling; 0 means SIZE_MAX/2 */
};

#define BUF_INIT(m) ((struct buf){.max = (m)})

/* Appends n bytes. Returns 0, -ENOBUFS when the result would exceed .max (the buffer is left as it
 * was), or -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
/* Appends one byte: buf_append(b, &c, 1), inline when there is room already. */
static inline int buf_putc(struct buf *b, char c)
{
    if (b->cap - b->len >= 2) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return 0;
    }
    return buf_append(b, &c, 1);
}
/* Ensures room for n more bytes without changing .len. Same errors as buf_append(). */
int buf_reserve(struct buf *b, size_t n);
/* Removes the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
void buf_clear(struct buf *b);
/* Releases the memory; the buffer can be used again. Wipes it first when wipe is true. */
void buf_free(struct buf *b, bool wipe);
/* Hands the data over as a NUL-terminated string (caller frees) and resets the buffer. Returns
 * NULL on allocation failure for an empty buffer. */
char *buf_steal(struct buf *b);
