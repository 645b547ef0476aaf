/* metrics.c: counters, histograms and their Prometheus text rendering. See metrics.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "macro.h"
#include "metrics.h"

/* Seconds. */
static const double bucket_bounds[METRICS_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                      1,     2.5,  5,     10,   30,  60,   300};

_printf_(2, 3) static int buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    return buf_append(b, tmp, MIN((size_t)n, sizeof tmp - 1));
}

void metrics_escape(const char *in, char *out, size_t size)
{
    size_t o = 0;

    for (const char *p = in ? in : ""; *p && o + 3 < size; p++) {
        if (*p == '\\' || *p == '"') {
            out[o++] = '\\';
            out[o++] = *p;
        } else if (*p == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else
            out[o++] = *p;
    }
    out[o] = '\0';
}

static void counters_free(struct metrics_counter *c)
{
    while (c) {
        struct metrics_counter *next = c->next;

        free(c->labels);
        free(c);
        c = next;
    }
}

static void histograms_free(struct metrics_histogram *h)
{
    while (h) {
        struct metrics_histogram *next = h->next;

        free(h->labels);
        free(h);
        h = next;
    }
}

void metrics_done(struct metrics *m)
{
    counters_free(m->requests);
    counters_free(m->tokens);
    counters_free(m->upstream_errors);
    histograms_free(m->latency);
    histograms_free(m->ttfb);
    *m = (struct metrics){};
}

static struct metrics_counter *counter_get(struct metrics *m, struct metrics_counter **list,
                                           const char *labels)
{
    struct metrics_counter *c;

    for (c = *list; c; c = c->next)
        if (streq(c->labels, labels))
            return c;
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->labels = strdup(labels);
    if (!c->labels)
        return mfree(c);
    c->next = *list;
    *list = c;
    m->n_series++;
    return c;
}

static void counter_add(struct metrics *m, struct metrics_counter **list, const char *labels,
                        uint64_t n)
{
    struct metrics_counter *c = counter_get(m, list, labels);

    if (c)
        c->value += n;
}

static void histogram_observe(struct metrics_histogram **list, const char *labels, double v)
{
    struct metrics_histogram *h;

    for (h = *list; h; h = h->next)
        if (streq(h->labels, labels))
            break;
    if (!h) {
        h = calloc(1, sizeof *h);
        if (!h)
            return;
        h->labels = strdup(labels);
        if (!h->labels) {
            free(h);
            return;
        }
        h->next = *list;
        *list = h;
    }
    for (size_t i = 0; i < METRICS_BUCKETS; i++)
        if (v <= bucket_bounds[i]) {
            h->buckets[i]++;
            break;
        }
    h->sum += v;
    h->count++;
}

static bool series_known(const struct metrics_counter *list, const char *labels)
{
    for (; list; list = list->next)
        if (streq(list->labels, labels))
            return true;
    return false;
}

void metrics_observe(struct metrics *m, const struct metrics_sample *s)
{
    char endpoint[64], model[256], member[160], labels[640];
    static const char *const kinds[] = {"input", "output", "cache_read", "cache_write"};
    const int64_t counts[] = {s->input_tokens, s->output_tokens, s->cache_read_tokens,
                              s->cache_write_tokens};

    metrics_escape(s->endpoint ? s->endpoint : "other", endpoint, sizeof endpoint);
    metrics_escape(s->model, model, sizeof model);
    metrics_escape(s->member, member, sizeof member);
    snprintf(labels, sizeof labels, "endpoint=\"%s\",status=\"%u\",model=\"%s\",member=\"%s\"",
             endpoint, s->status, model, member);
    if (m->n_series >= METRICS_SERIES_MAX && !series_known(m->requests, labels))
        snprintf(labels, sizeof labels,
                 "endpoint=\"%s\",status=\"%u\",model=\"other\",member=\"%s\"", endpoint, s->status,
                 member);
    counter_add(m, &m->requests, labels, 1);

    for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
        if (counts[i] <= 0)
            continue;
        snprintf(labels, sizeof labels, "kind=\"%s\",model=\"%s\",member=\"%s\"", kinds[i], model,
                 member);
        if (m->n_series >= METRICS_SERIES_MAX && !series_known(m->tokens, labels))
            snprintf(labels, sizeof labels, "kind=\"%s\",model=\"other\",member=\"%s\"", kinds[i],
                     member);
        counter_add(m, &m->tokens, labels, (uint64_t)counts[i]);
    }
    if (s->upstream_error) {
        snprintf(labels, sizeof labels, "kind=\"%s\"", s->upstream_error);
        counter_add(m, &m->upstream_errors, labels, 1);
    }
    snprintf(labels, sizeof labels, "endpoint=\"%s\"", endpoint);
    histogram_observe(&m->latency, labels, (double)s->latency_usec / 1e6);
    if (s->ttfb_usec > 0)
        histogram_observe(&m->ttfb, labels, (double)s->ttfb_usec / 1e6);
}

static int render_counters(struct buf *b, const char *name, const char *help,
                           const struct metrics_counter *list)
{
    int r = buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);

    for (; r >= 0 && list; list = list->next)
        r = buf_printf(b, "%s{%s} %" PRIu64 "\n", name, list->labels, list->value);
    return r;
}

static int render_histograms(struct buf *b, const char *name, const char *help,
                             const struct metrics_histogram *list)
{
    int r = buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);

    for (; r >= 0 && list; list = list->next) {
        uint64_t cum = 0;

        for (size_t i = 0; r >= 0 && i < METRICS_BUCKETS; i++) {
            cum += list->buckets[i];
            r = buf_printf(b, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n", name, list->labels,
                           bucket_bounds[i], cum);
        }
        if (r >= 0)
            r = buf_printf(b,
                           "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n%s_sum{%s} %.6f\n%s_count{%s} "
                           "%" PRIu64 "\n",
                           name, list->labels, list->count, name, list->labels, list->sum, name,
                           list->labels, list->count);
    }
    return r;
}

char *metrics_render(const struct metrics *m, size_t open_streams, size_t open_requests)
{
    struct buf b = BUF_INIT(0);
    int r;

    r = render_counters(&b, "dualroute_requests_total",
                        "Requests served, by endpoint, HTTP status, model and member.",
                        m->requests);
    if (r >= 0)
        r = render_counters(&b, "dualroute_tokens_total",
                            "Tokens reported by the upstream, by kind, model and member.",
                            m->tokens);
    if (r >= 0)
        r = render_counters(&b, "dualroute_upstream_errors_total",
                            "Upstream failures: connect, timeout, broken responses, 5xx.",
                            m->upstream_errors);
    if (r >= 0)
        r = render_histograms(&b, "dualroute_request_duration_seconds",
                              "Time from the request to its last byte.", m->latency);
    if (r >= 0)
        r = render_histograms(&b, "dualroute_first_byte_seconds",
                              "Time from the request to the upstream's first byte.", m->ttfb);
    if (r >= 0)
        r = buf_printf(&b,
                       "# HELP dualroute_open_streams Streaming responses being relayed.\n"
                       "# TYPE dualroute_open_streams gauge\ndualroute_open_streams %zu\n"
                       "# HELP dualroute_open_requests Requests in progress.\n"
                       "# TYPE dualroute_open_requests gauge\ndualroute_open_requests %zu\n",
                       open_streams, open_requests);
    if (r < 0) {
        buf_free(&b, false);
        return NULL;
    }
    return buf_steal(&b);
}
