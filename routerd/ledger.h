/* ledger.h: the usage ledger's routerd side. One record per request (the fields of usage.report,
 * docs/ipc.md), queued in memory and sent to authd in batches: a batch leaves at most
 * LEDGER_FLUSH_USEC after its first record was queued, in frames of at most 64 KiB, one frame on
 * the wire at a time; records are dropped only after authd's ok, and sent again otherwise. So a
 * kill -9 loses at most the records of the last flush interval, and a drain (SIGTERM) sends
 * everything before routerd exits (ledger_flush()).
 *
 * The queue (ledger_add/ledger_batch/ledger_ack/ledger_nack) is pure and unit-tested; the sender
 * (ledger_start/ledger_flush) runs on the sd-event loop through authd-client.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "macro.h"

#define LEDGER_FLUSH_USEC (500 * 1000ULL)
#define LEDGER_FRAME_MAX 65536
/* Records kept while authd is away; beyond this the oldest are dropped (and counted). */
#define LEDGER_QUEUE_MAX 100000

struct authd_client;

struct ledger_record {
    char request_id[32];
    int64_t at_ms;
    char member[65]; /* empty: none (single-user mode) */
    char model[128]; /* upstream */
    char model_requested[200];
    char account[65];     /* empty: none */
    const char *endpoint; /* "anthropic", "openai" (static) */
    unsigned status;
    int64_t input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
    int64_t latency_ms;
    int64_t ttfb_ms; /* < 0: none */
    int64_t cost_micro_usd;
};

/* Called for each record authd acknowledged. */
typedef void (*ledger_stored_cb_t)(const struct ledger_record *rec, void *userdata);
/* Called once by ledger_flush() when the queue is empty or the flush gave up. */
typedef void (*ledger_flushed_cb_t)(void *userdata);

struct ledger {
    struct ledger_record *records; /* queued: records[head .. head + n) */
    size_t cap, head, n;
    size_t in_flight; /* the first in_flight records are on the wire */
    uint64_t dropped;

    /* The sender. */
    sd_event *event;
    struct authd_client *authd;
    sd_event_source *timer, *flush_timer, *flush_defer;
    ledger_stored_cb_t on_stored;
    ledger_flushed_cb_t on_flushed;
    void *userdata, *flushed_userdata;
    bool flushing;
    bool on_stored_skip;
};

void ledger_init(struct ledger *l);
/* Stops the sender and frees every record (unsent ones are lost: flush first). */
void ledger_done(struct ledger *l);

/* Queues a copy of rec; -ENOMEM. Over LEDGER_QUEUE_MAX the oldest record not on the wire goes. */
int ledger_add(struct ledger *l, const struct ledger_record *rec);
size_t ledger_pending(const struct ledger *l);
/* The record as usage.report carries it (a new reference). */
json_t *ledger_record_to_json(const struct ledger_record *rec);
/* Takes the next batch off the front of the queue: as many records as fit in a usage.report frame
 * of at most max_frame bytes (at least one). *ret is a new JSON array, NULL when the queue is empty
 * or a frame is already on the wire. Returns the number of records. */
size_t ledger_batch(struct ledger *l, size_t max_frame, json_t **ret);
/* authd stored the batch: drops it (calling on_stored for each). */
void ledger_ack(struct ledger *l);
/* The batch failed: its records go out again with the next one. */
void ledger_nack(struct ledger *l);

/* Starts sending through authd (the client may be NULL: nothing is sent). */
int ledger_start(struct ledger *l, sd_event *e, struct authd_client *authd,
                 ledger_stored_cb_t on_stored, void *userdata);
/* Records were added: makes sure a send happens within LEDGER_FLUSH_USEC. */
void ledger_kick(struct ledger *l);
/* Sends everything now, then calls done (from the event loop); gives up after timeout_usec. */
int ledger_flush(struct ledger *l, uint64_t timeout_usec, ledger_flushed_cb_t done, void *userdata);
