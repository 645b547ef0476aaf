/* fuzz-ctl-sse.c: dualroutectl's text/event-stream parser on arbitrary bytes.
 *
 * The first byte picks a split point. Fed whole, cut in two there, or one byte at a time, the
 * parser must report the same events (a stream's meaning must not depend on TCP reads), never
 * hold more than its cap, and hand the callback NUL-terminated data of the stated length. */
#include <string.h>

#include "fuzz.h"
#include "sse.h"

#define CAP 4096

struct digest {
    unsigned events;
    size_t bytes;
    unsigned long hash;
};

static int on_event(const char *event, const char *data, size_t len, void *userdata)
{
    struct digest *d = userdata;

    FUZZ_CHECK(strlen(event) < 64);
    FUZZ_CHECK(data[len] == '\0');
    d->events++;
    d->bytes += len;
    for (const char *p = event; *p; p++)
        d->hash = d->hash * 31 + (unsigned char)*p;
    for (size_t i = 0; i < len; i++)
        d->hash = d->hash * 131 + (unsigned char)data[i];
    return 0;
}

static int feed(const uint8_t *p, size_t n, size_t cut, size_t step, struct digest *d)
{
    struct sse_parser s = SSE_PARSER_INIT(CAP, on_event, d);
    int r = 0;

    *d = (struct digest){};
    if (cut > 0)
        r = sse_parser_feed(&s, (const char *)p, cut);
    for (size_t i = cut; r >= 0 && i < n; i += step)
        r = sse_parser_feed(&s, (const char *)p + i, n - i < step ? n - i : step);
    FUZZ_CHECK(s.line.len <= CAP && s.data.len <= CAP);
    sse_parser_done(&s);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct digest whole, split, bytes;
    size_t cut;
    int rw, rs, rb;

    if (size == 0)
        return 0;
    cut = data[0] % size;
    data++;
    size--;

    rw = feed(data, size, 0, size ? size : 1, &whole);
    rs = feed(data, size, cut, size ? size : 1, &split);
    rb = feed(data, size, 0, 1, &bytes);
    FUZZ_CHECK(rw == rs && rw == rb);
    if (rw >= 0) {
        FUZZ_CHECK(whole.events == split.events && whole.events == bytes.events);
        FUZZ_CHECK(whole.bytes == split.bytes && whole.bytes == bytes.bytes);
        FUZZ_CHECK(whole.hash == split.hash && whole.hash == bytes.hash);
    }
    return 0;
}
