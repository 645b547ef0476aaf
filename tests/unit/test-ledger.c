/* test-ledger.c: the usage ledger's queue: records as usage.report carries them, batches that fit
 * in one frame, nothing dropped before authd's ok. */
#include <string.h>

#include "ipc.h"
#include "ledger.h"
#include "test.h"

static struct ledger_record record(unsigned i)
{
    struct ledger_record r = {
        .at_ms = 1793491200000LL + i,
        .endpoint = "openai",
        .status = 200,
        .input_tokens = 10,
        .output_tokens = 20,
        .cache_read_tokens = 3,
        .cache_write_tokens = 4,
        .latency_ms = 50,
        .ttfb_ms = 12,
        .cost_micro_usd = 99,
    };

    snprintf(r.request_id, sizeof r.request_id, "rq_%08u", i);
    snprintf(r.member, sizeof r.member, "alice");
    snprintf(r.model, sizeof r.model, "claude-sonnet-4-5");
    snprintf(r.model_requested, sizeof r.model_requested, "gpt-4o");
    snprintf(r.account, sizeof r.account, "work");
    return r;
}

TEST(record_fields)
{
    struct ledger_record r = record(1);
    json_t *o = ledger_record_to_json(&r);

    ASSERT_TRUE(o);
    ASSERT_TRUE(strcmp(json_string_value(json_object_get(o, "request_id")), "rq_00000001") == 0);
    ASSERT_TRUE(strcmp(json_string_value(json_object_get(o, "member")), "alice") == 0);
    ASSERT_TRUE(strcmp(json_string_value(json_object_get(o, "model_requested")), "gpt-4o") == 0);
    ASSERT_TRUE(strcmp(json_string_value(json_object_get(o, "endpoint")), "openai") == 0);
    ASSERT_EQ(json_integer_value(json_object_get(o, "cache_write_tokens")), 4);
    ASSERT_EQ(json_integer_value(json_object_get(o, "ttfb_ms")), 12);
    ASSERT_EQ(json_integer_value(json_object_get(o, "cost_micro_usd")), 99);
    json_decref(o);

    /* Single-user mode: no member, no account; no first byte: no ttfb_ms. */
    r.member[0] = r.account[0] = r.model_requested[0] = '\0';
    r.ttfb_ms = -1;
    o = ledger_record_to_json(&r);
    ASSERT_TRUE(json_object_get(o, "member") == NULL);
    ASSERT_TRUE(json_object_get(o, "account") == NULL);
    ASSERT_TRUE(json_object_get(o, "ttfb_ms") == NULL);
    ASSERT_TRUE(
        strcmp(json_string_value(json_object_get(o, "model_requested")), "claude-sonnet-4-5") == 0);
    json_decref(o);
}

static unsigned stored_count;
static void on_stored(const struct ledger_record *rec, void *userdata)
{
    stored_count++;
}

TEST(batches_fit_a_frame_and_wait_for_ok)
{
    struct ledger l;
    unsigned total = 3000, sent = 0;
    json_t *arr;
    size_t n;

    ledger_init(&l);
    l.on_stored = on_stored;
    stored_count = 0;
    for (unsigned i = 0; i < total; i++) {
        struct ledger_record r = record(i);

        ASSERT_OK(ledger_add(&l, &r));
    }
    ASSERT_EQ(ledger_pending(&l), (size_t)total);

    /* A failed batch goes out again, whole, with the same records. */
    n = ledger_batch(&l, LEDGER_FRAME_MAX, &arr);
    ASSERT_TRUE(n > 10 && n < total);
    ASSERT_TRUE(strcmp(json_string_value(json_object_get(json_array_get(arr, 0), "request_id")),
                       "rq_00000000") == 0);
    json_decref(arr);
    /* Nothing more while one is on the wire. */
    ASSERT_EQ(ledger_batch(&l, LEDGER_FRAME_MAX, &arr), 0u);
    ledger_nack(&l);
    ASSERT_EQ(ledger_pending(&l), (size_t)total);

    while ((n = ledger_batch(&l, LEDGER_FRAME_MAX, &arr)) > 0) {
        json_t *msg = ipc_request_new("usage.report", 9007199254740991LL);
        struct buf out = BUF_INIT(0);

        /* Each batch is one valid frame of at most 64 KiB. */
        json_object_set(msg, "records", arr);
        ASSERT_OK(ipc_frame_encode(msg, &out));
        ASSERT_TRUE(out.len <= 4 + LEDGER_FRAME_MAX);
        {
            char want[16];

            snprintf(want, sizeof want, "rq_%08u", sent);
            ASSERT_TRUE(
                strcmp(json_string_value(json_object_get(json_array_get(arr, 0), "request_id")),
                       want) == 0);
        }
        sent += (unsigned)n;
        buf_free(&out, false);
        json_decref(msg);
        json_decref(arr);
        ledger_ack(&l);
    }
    ASSERT_EQ(sent, total);
    ASSERT_EQ(stored_count, total);
    ASSERT_EQ(ledger_pending(&l), 0u);
    ledger_done(&l);
}

TEST(queue_reuses_space)
{
    struct ledger l;
    json_t *arr;

    ledger_init(&l);
    for (unsigned round = 0; round < 50; round++) {
        for (unsigned i = 0; i < 100; i++) {
            struct ledger_record r = record(round * 100 + i);

            ASSERT_OK(ledger_add(&l, &r));
        }
        while (ledger_batch(&l, LEDGER_FRAME_MAX, &arr) > 0) {
            json_decref(arr);
            ledger_ack(&l);
        }
    }
    ASSERT_EQ(ledger_pending(&l), 0u);
    ASSERT_TRUE(l.cap <= 256);
    ledger_done(&l);
}
