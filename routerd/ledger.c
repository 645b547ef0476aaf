/* ledger.c: the usage records' queue and their sender. See ledger.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "authd-client.h"
#include "ledger.h"
#include "log.h"
#include "util.h"

/* {"v":1,"op":"usage.report","id":9007199254740991,"records":[]} and then some. */
#define FRAME_OVERHEAD 96

void ledger_init(struct ledger *l)
{
    *l = (struct ledger){};
}

void ledger_done(struct ledger *l)
{
    l->timer = sd_event_source_disable_unref(l->timer);
    l->flush_timer = sd_event_source_disable_unref(l->flush_timer);
    l->flush_defer = sd_event_source_disable_unref(l->flush_defer);
    free(l->records);
    *l = (struct ledger){};
}

size_t ledger_pending(const struct ledger *l)
{
    return l->n;
}

int ledger_add(struct ledger *l, const struct ledger_record *rec)
{
    if (l->n >= LEDGER_QUEUE_MAX && l->n > l->in_flight) {
        /* authd has been away for a long time: the oldest record not on the wire goes. */
        size_t victim = l->head + l->in_flight;

        memmove(&l->records[victim], &l->records[victim + 1],
                (l->head + l->n - victim - 1) * sizeof *l->records);
        l->n--;
        l->dropped++;
    }
    if (l->head + l->n == l->cap) {
        if (l->head > 0 && l->head >= l->n) {
            memmove(l->records, &l->records[l->head], l->n * sizeof *l->records);
            l->head = 0;
        } else {
            size_t cap = MAX(l->cap * 2, (size_t)64);
            struct ledger_record *p = realloc(l->records, cap * sizeof *p);

            if (!p)
                return -ENOMEM;
            l->records = p;
            l->cap = cap;
        }
    }
    l->records[l->head + l->n++] = *rec;
    return 0;
}

json_t *ledger_record_to_json(const struct ledger_record *r)
{
    json_t *o;

    o = json_pack("{s:s,s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "request_id", r->request_id,
                  "at_ms", (json_int_t)r->at_ms, "model", r->model, "model_requested",
                  r->model_requested[0] ? r->model_requested : r->model, "endpoint",
                  r->endpoint ? r->endpoint : "anthropic", "status", (json_int_t)r->status,
                  "input_tokens", (json_int_t)r->input_tokens, "output_tokens",
                  (json_int_t)r->output_tokens, "cache_read_tokens",
                  (json_int_t)r->cache_read_tokens, "cache_write_tokens",
                  (json_int_t)r->cache_write_tokens, "latency_ms", (json_int_t)r->latency_ms,
                  "cost_micro_usd", (json_int_t)r->cost_micro_usd);
    if (!o)
        return NULL;
    if ((r->member[0] && json_object_set_new(o, "member", json_string(r->member)) < 0) ||
        (r->account[0] && json_object_set_new(o, "account", json_string(r->account)) < 0) ||
        (r->ttfb_ms >= 0 && json_object_set_new(o, "ttfb_ms", json_integer(r->ttfb_ms)) < 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

size_t ledger_batch(struct ledger *l, size_t max_frame, json_t **ret)
{
    json_t *arr;
    size_t used = FRAME_OVERHEAD, k;

    *ret = NULL;
    if (l->in_flight > 0 || l->n == 0)
        return 0;
    arr = json_array();
    if (!arr)
        return 0;
    for (k = 0; k < l->n; k++) {
        json_t *o = ledger_record_to_json(&l->records[l->head + k]);
        size_t len;

        if (!o)
            break;
        len = json_dumpb(o, NULL, 0, JSON_COMPACT) + 1; /* and a comma */
        if (k > 0 && used + len > max_frame) {
            json_decref(o);
            break;
        }
        used += len;
        if (json_array_append_new(arr, o) < 0)
            break;
    }
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        return 0;
    }
    l->in_flight = json_array_size(arr);
    *ret = arr;
    return l->in_flight;
}

void ledger_ack(struct ledger *l)
{
    for (size_t k = 0; k < l->in_flight && k < l->n; k++)
        if (l->on_stored && !l->on_stored_skip)
            l->on_stored(&l->records[l->head + k], l->userdata);
    l->in_flight = MIN(l->in_flight, l->n);
    l->head += l->in_flight;
    l->n -= l->in_flight;
    l->in_flight = 0;
    if (l->n == 0)
        l->head = 0;
}

void ledger_nack(struct ledger *l)
{
    l->in_flight = 0;
}

/* The sender. */

static void ledger_send(struct ledger *l);

static void flush_finish(struct ledger *l)
{
    ledger_flushed_cb_t done = l->on_flushed;

    l->flushing = false;
    l->on_flushed = NULL;
    l->flush_timer = sd_event_source_disable_unref(l->flush_timer);
    if (done)
        done(l->flushed_userdata);
}

static void on_report(int error, int64_t stored, void *userdata)
{
    struct ledger *l = userdata;
    size_t n = l->in_flight;

    if (error == -EBADMSG) {
        /* Refused as malformed: sending it again would block every later record. */
        log_error("dualroute-authd refused %zu usage records as malformed; dropping them.", n);
        l->dropped += n;
        l->on_stored_skip = true;
        ledger_ack(l);
        l->on_stored_skip = false;
    } else if (error < 0) {
        log_debug_errno(error, "usage.report of %zu records failed, keeping them: %m", n);
        ledger_nack(l);
        ledger_kick(l);
        return;
    } else {
        log_debug("authd stored %lld of %zu usage records.", (long long)stored, n);
        ledger_ack(l);
    }
    if (l->n > 0)
        ledger_send(l);
    else if (l->flushing)
        flush_finish(l);
}

static void ledger_send(struct ledger *l)
{
    json_t *arr = NULL;
    int r;

    if (!l->authd || l->in_flight > 0 || l->n == 0)
        return;
    if (ledger_batch(l, LEDGER_FRAME_MAX, &arr) == 0)
        return;
    r = authd_client_usage_report(l->authd, arr, on_report, l);
    json_decref(arr);
    if (r < 0) {
        ledger_nack(l);
        if (r != -ENOTCONN)
            log_warning_errno(r, "Failed to send %zu usage records to authd: %m", l->n);
        ledger_kick(l);
    }
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct ledger *l = userdata;

    ledger_send(l);
    if (l->n > 0 && l->in_flight == 0)
        ledger_kick(l); /* not connected: try again in a while */
    return 0;
}

int ledger_start(struct ledger *l, sd_event *e, struct authd_client *authd,
                 ledger_stored_cb_t on_stored, void *userdata)
{
    int r;

    l->event = e;
    l->authd = authd;
    l->on_stored = on_stored;
    l->userdata = userdata;
    r = sd_event_add_time(e, &l->timer, CLOCK_MONOTONIC, UINT64_MAX, 10 * 1000, on_timer, l);
    if (r < 0)
        return r;
    return sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
}

void ledger_kick(struct ledger *l)
{
    int enabled = SD_EVENT_OFF;

    if (!l->timer || l->n == 0)
        return;
    (void)sd_event_source_get_enabled(l->timer, &enabled);
    if (enabled != SD_EVENT_OFF)
        return;
    (void)sd_event_source_set_time(l->timer, now_usec() + LEDGER_FLUSH_USEC);
    (void)sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
}

static int on_flush_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct ledger *l = userdata;

    log_warning("Could not hand %zu usage records to dualroute-authd before exiting; they are "
                "lost.",
                l->n);
    flush_finish(l);
    return 0;
}

static int on_flush_defer(sd_event_source *s, void *userdata)
{
    struct ledger *l = userdata;

    l->flush_defer = sd_event_source_disable_unref(l->flush_defer);
    if (l->n == 0)
        flush_finish(l);
    else
        ledger_send(l);
    return 0;
}

int ledger_flush(struct ledger *l, uint64_t timeout_usec, ledger_flushed_cb_t done, void *userdata)
{
    int r;

    l->flushing = true;
    l->on_flushed = done;
    l->flushed_userdata = userdata;
    if (!l->event)
        return -ENOTCONN;
    if (l->n > 0)
        log_notice("Sending %zu usage records to dualroute-authd before exiting.", l->n);
    r = sd_event_add_time_relative(l->event, &l->flush_timer, CLOCK_MONOTONIC, timeout_usec,
                                   10 * 1000, on_flush_timeout, l);
    if (r < 0)
        return r;
    return sd_event_add_defer(l->event, &l->flush_defer, on_flush_defer, l);
}
