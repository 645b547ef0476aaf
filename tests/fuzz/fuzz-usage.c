/* fuzz-usage.c: the SSE usage scanner and the JSON usage reader on arbitrary bytes.
 *
 * The first byte picks a split point; the scanner must reach the same usage whether the stream
 * arrives whole, cut in two there, or one byte at a time (usage must not depend on TCP reads).
 * The JSON reader gets the same bytes and must not crash. */
#include <string.h>

#include "fuzz.h"
#include "usage.h"

static void scan(const uint8_t *p, size_t n, size_t step, struct usage *ret)
{
    struct sse_scanner s;

    sse_scanner_init(&s);
    for (size_t i = 0; i < n; i += step)
        sse_scanner_feed(&s, (const char *)p + i, n - i < step ? n - i : step);
    FUZZ_CHECK(s.line.len <= SSE_SCANNER_MAX && s.data.len <= SSE_SCANNER_MAX);
    *ret = s.usage;
    sse_scanner_done(&s);
}

static void same_usage(const struct usage *a, const struct usage *b)
{
    FUZZ_CHECK(a->input_tokens == b->input_tokens);
    FUZZ_CHECK(a->output_tokens == b->output_tokens);
    FUZZ_CHECK(a->cache_read_tokens == b->cache_read_tokens);
    FUZZ_CHECK(a->cache_creation_tokens == b->cache_creation_tokens);
    FUZZ_CHECK(a->seen == b->seen && a->stopped == b->stopped && a->error == b->error);
    FUZZ_CHECK(strcmp(a->stop_reason, b->stop_reason) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct usage whole, split, bytes, json = {};
    struct sse_scanner s;
    size_t cut;

    if (size == 0)
        return 0;
    cut = data[0] % size;
    data++;
    size--;

    scan(data, size, size ? size : 1, &whole);
    scan(data, size, 1, &bytes);
    same_usage(&whole, &bytes);

    sse_scanner_init(&s);
    sse_scanner_feed(&s, (const char *)data, cut);
    sse_scanner_feed(&s, (const char *)data + cut, size - cut);
    split = s.usage;
    sse_scanner_done(&s);
    same_usage(&whole, &split);

    (void)usage_from_json((const char *)data, size, &json);
    return 0;
}
