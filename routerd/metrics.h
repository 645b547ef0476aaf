/* metrics.h: routerd's counters and histograms, rendered for GET /metrics in the Prometheus text
 * format 0.0.4. Pure: proxy.c feeds one sample per finished request; the render is a new string.
 * Label values that clients choose (model) are capped in number: past METRICS_SERIES_MAX series a
 * new model is counted as "other". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_SERIES_MAX 2000
#define METRICS_BUCKETS 14

struct metrics_sample {
    const char *endpoint; /* messages, count_tokens, chat_completions, models, other */
    unsigned status;
    const char *model;  /* may be empty */
    const char *member; /* may be empty */
    uint64_t latency_usec;
    uint64_t ttfb_usec; /* 0: no answer from the upstream */
    int64_t input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
    const char *upstream_error; /* NULL, or a kind: "connect", "timeout", "status_5xx", ... */
};

struct metrics_counter {
    char *labels; /* rendered label set, {a="b",...} */
    uint64_t value;
    struct metrics_counter *next;
};

struct metrics_histogram {
    char *labels;                          /* endpoint="..." */
    uint64_t buckets[METRICS_BUCKETS + 1]; /* cumulative at render; the last is +Inf */
    double sum;
    uint64_t count;
    struct metrics_histogram *next;
};

struct metrics {
    struct metrics_counter *requests, *tokens, *upstream_errors;
    struct metrics_histogram *latency, *ttfb;
    size_t n_series;
};

void metrics_done(struct metrics *m);
void metrics_observe(struct metrics *m, const struct metrics_sample *s);
/* The exposition text (malloc'ed), or NULL on allocation failure. */
char *metrics_render(const struct metrics *m, size_t open_streams, size_t open_requests);
/* Escapes a label value into out (backslash, quote, newline), truncating to fit. */
void metrics_escape(const char *in, char *out, size_t size);
