/* test-ipc.c: unit tests for shared/ipc.c, the frame codec of authd's socket.
 *
 * Frames are built by hand here (raw_frame()) as well as with ipc_frame_encode(), so the reader is
 * tested against the bytes docs/ipc.md describes and not only against its own encoder. The
 * reader's contract is checked at its edges: every split of the input gives the same messages,
 * the length limits hold to the byte, each protocol error is final, and bytes it has handed out
 * or given up on are wiped. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "conf.h"
#include "ipc.h"
#include "macro.h"
#include "test.h"

/* Appends a frame with the given length field and body, whatever they are. */
static void raw_frame(struct buf *b, uint32_t len, const void *body, size_t n)
{
    unsigned char h[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 8), (unsigned char)len};

    ASSERT_OK(buf_append(b, h, sizeof h));
    ASSERT_OK(buf_append(b, body, n));
}

static void raw_frame_str(struct buf *b, const char *json)
{
    raw_frame(b, (uint32_t)strlen(json), json, strlen(json));
}

/* Feeds all of p in one go and decodes one message, which must be there. */
static json_t *decode_one(const void *p, size_t n)
{
    struct ipc_reader r = IPC_READER_INIT;
    json_t *msg = NULL;

    ASSERT_OK(ipc_reader_feed(&r, p, n));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    ASSERT_NOT_NULL(msg);
    ASSERT_EQ(ipc_reader_next(&r, &(json_t *){NULL}, NULL), 0);
    ipc_reader_done(&r);
    return msg;
}

/* Feeds p and returns the first non-1 result of ipc_reader_next(), with its error text. */
static int decode_error(const void *p, size_t n, struct parse_error *err)
{
    struct ipc_reader r = IPC_READER_INIT;
    int k;

    ASSERT_OK(ipc_reader_feed(&r, p, n));
    for (;;) {
        json_t *msg = NULL;
        k = ipc_reader_next(&r, &msg, err);
        if (k != 1)
            break;
        json_decref(msg);
    }
    ipc_reader_done(&r);
    return k;
}

TEST(request_roundtrip)
{
    struct buf b = BUF_INIT(0);
    json_auto_t *req = ipc_request_new("token.get", 7);
    struct ipc_header h;

    ASSERT_NOT_NULL(req);
    ASSERT_OK(json_object_set_new(req, "account", json_string("work")));
    ASSERT_OK(ipc_frame_encode(req, &b));
    ASSERT_EQ(b.len, 4 + strlen("{\"v\":1,\"op\":\"token.get\",\"id\":7,\"account\":\"work\"}"));
    ASSERT_TRUE(memcmp(b.data, "\0\0\0\x30", 4) == 0);
    ASSERT_STREQ(b.data + 4, "{\"v\":1,\"op\":\"token.get\",\"id\":7,\"account\":\"work\"}");

    json_auto_t *back = decode_one(b.data, b.len);
    ASSERT_TRUE(json_equal(req, back));
    ASSERT_OK(ipc_message_check(back, &h, NULL));
    ASSERT_EQ(h.kind, IPC_REQUEST);
    ASSERT_STREQ(h.op, "token.get");
    ASSERT_EQ(h.id, 7);
    ASSERT_NULL(h.event);
    ASSERT_NULL(h.error_code);
    buf_free(&b, true);
}

TEST(reply_and_event_roundtrip)
{
    struct buf b = BUF_INIT(0);
    json_auto_t *ok = ipc_reply_ok(7);
    json_auto_t *err = ipc_reply_error(8, IPC_ERROR_NOT_FOUND, "No account 'work'");
    json_auto_t *ev = ipc_event_new("generation");
    struct ipc_reader r = IPC_READER_INIT;
    struct ipc_header h;
    json_t *msg = NULL;

    ASSERT_OK(json_object_set_new(ev, "generation", json_integer(42)));
    ASSERT_OK(ipc_frame_encode(ok, &b));
    ASSERT_OK(ipc_frame_encode(err, &b));
    ASSERT_OK(ipc_frame_encode(ev, &b));

    /* Three frames in one feed come out one by one, in order. */
    ASSERT_OK(ipc_reader_feed(&r, b.data, b.len));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    ASSERT_TRUE(json_equal(msg, ok));
    ASSERT_OK(ipc_message_check(msg, &h, NULL));
    ASSERT_EQ(h.kind, IPC_REPLY);
    ASSERT_TRUE(h.ok);
    ASSERT_EQ(h.id, 7);
    json_decref(msg);

    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    ASSERT_TRUE(json_equal(msg, err));
    ASSERT_OK(ipc_message_check(msg, &h, NULL));
    ASSERT_EQ(h.kind, IPC_REPLY);
    ASSERT_FALSE(h.ok);
    ASSERT_EQ(h.id, 8);
    ASSERT_STREQ(h.error_code, "not_found");
    ASSERT_STREQ(h.error_message, "No account 'work'");
    json_decref(msg);

    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    ASSERT_TRUE(json_equal(msg, ev));
    ASSERT_OK(ipc_message_check(msg, &h, NULL));
    ASSERT_EQ(h.kind, IPC_EVENT);
    ASSERT_STREQ(h.event, "generation");
    ASSERT_EQ(h.id, 0);
    ASSERT_NULL(h.op);
    json_decref(msg);

    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 0);
    ASSERT_EQ(r.buf.len, 0);
    ipc_reader_done(&r);
    buf_free(&b, false);
}

TEST(split_at_every_byte)
{
    struct buf b = BUF_INIT(0);
    json_auto_t *a = ipc_request_new("hello", 1);
    json_auto_t *c = ipc_reply_error(2, "bad_request", "caf\xc3\xa9 \xe2\x82\xac");

    ASSERT_OK(ipc_frame_encode(a, &b));
    ASSERT_OK(ipc_frame_encode(c, &b));

    /* Two cuts anywhere, including inside the header and inside a UTF-8 sequence. */
    for (size_t i = 0; i <= b.len; i++)
        for (size_t j = i; j <= b.len; j++) {
            struct ipc_reader r = IPC_READER_INIT;
            size_t cuts[] = {0, i, j, b.len};
            json_t *got[3] = {};
            size_t n = 0;

            for (size_t k = 0; k + 1 < ELEMENTSOF(cuts); k++) {
                json_t *msg = NULL;
                int q;

                ASSERT_OK(ipc_reader_feed(&r, b.data + cuts[k], cuts[k + 1] - cuts[k]));
                while ((q = ipc_reader_next(&r, &msg, NULL)) == 1) {
                    ASSERT_TRUE(n < 2);
                    got[n++] = msg;
                }
                ASSERT_EQ(q, 0);
            }
            ASSERT_EQ(n, 2);
            ASSERT_TRUE(json_equal(got[0], a));
            ASSERT_TRUE(json_equal(got[1], c));
            json_decref(got[0]);
            json_decref(got[1]);
            ipc_reader_done(&r);
        }
    buf_free(&b, false);
}

TEST(one_byte_at_a_time)
{
    struct buf b = BUF_INIT(0);
    struct ipc_reader r = IPC_READER_INIT;
    unsigned n = 0;

    for (uint64_t id = 1; id <= 50; id++) {
        json_auto_t *m = ipc_request_new("status", id);
        ASSERT_OK(ipc_frame_encode(m, &b));
    }
    for (size_t i = 0; i < b.len; i++) {
        json_t *msg = NULL;
        struct ipc_header h;

        ASSERT_OK(ipc_reader_feed(&r, b.data + i, 1));
        while (ipc_reader_next(&r, &msg, NULL) == 1) {
            ASSERT_OK(ipc_message_check(msg, &h, NULL));
            ASSERT_EQ(h.id, ++n);
            json_decref(msg);
        }
    }
    ASSERT_EQ(n, 50);
    ipc_reader_done(&r);
    buf_free(&b, false);
}

/* A body of exactly n bytes that is one valid message: padding in a string field. */
static void sized_body(struct buf *body, size_t n)
{
    static const char head[] = "{\"v\":1,\"event\":\"pad\",\"x\":\"";

    ASSERT_TRUE(n >= sizeof head + 1);
    ASSERT_OK(buf_append_str(body, head));
    while (body->len < n - 2)
        ASSERT_OK(buf_append(body, "a", 1));
    ASSERT_OK(buf_append_str(body, "\"}"));
    ASSERT_EQ(body->len, n);
}

TEST(limit_65536_accepted)
{
    struct buf body = BUF_INIT(0), frame = BUF_INIT(0);
    struct ipc_reader r = IPC_READER_INIT;
    json_t *msg = NULL;

    sized_body(&body, IPC_FRAME_MAX);
    raw_frame(&frame, IPC_FRAME_MAX, body.data, body.len);
    ASSERT_EQ(frame.len, 65540);

    /* The whole frame fits in an empty reader, and not one byte more. */
    ASSERT_EQ(ipc_reader_room(&r), 65540);
    ASSERT_ERROR(ipc_reader_feed(&r, frame.data, 65541), ENOBUFS);
    ASSERT_OK(ipc_reader_feed(&r, frame.data, frame.len - 1));
    ASSERT_EQ(ipc_reader_room(&r), 1);
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 0);
    ASSERT_OK(ipc_reader_feed(&r, frame.data + frame.len - 1, 1));
    ASSERT_EQ(ipc_reader_room(&r), 0);
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    ASSERT_EQ(strlen(json_string_value(json_object_get(msg, "x"))), IPC_FRAME_MAX - 28);
    ASSERT_EQ(ipc_reader_room(&r), 65540);

    /* The encoder produces the same frame. */
    struct buf out = BUF_INIT(0);
    ASSERT_OK(ipc_frame_encode(msg, &out));
    ASSERT_EQ(out.len, frame.len);
    ASSERT_TRUE(memcmp(out.data, frame.data, frame.len) == 0);

    json_decref(msg);
    ipc_reader_done(&r);
    buf_free(&body, false);
    buf_free(&frame, false);
    buf_free(&out, false);
}

TEST(limit_65537_refused)
{
    struct buf body = BUF_INIT(0), out = BUF_INIT(0);
    struct parse_error err = {};
    json_auto_t *msg = NULL;
    unsigned char h[4] = {0, 1, 0, 1};

    /* The reader refuses on the header alone, before any body arrives. */
    ASSERT_ERROR(decode_error(h, sizeof h, &err), EMSGSIZE);
    ASSERT_STREQ(err.text, "Frame length 65537 is outside 1..65536");
    ASSERT_STREQ(ipc_error_code_from_errno(-EMSGSIZE), "too_large");

    /* The encoder refuses a message one byte too long, and leaves out as it was. */
    sized_body(&body, IPC_FRAME_MAX + 1);
    msg = json_loadb(body.data, body.len, 0, NULL);
    ASSERT_NOT_NULL(msg);
    ASSERT_OK(buf_append_str(&out, "keep"));
    ASSERT_ERROR(ipc_frame_encode(msg, &out), EMSGSIZE);
    ASSERT_EQ(out.len, 4);
    ASSERT_STREQ(out.data, "keep");
    /* A refused message may hold a secret: what was written of it is wiped. The secret comes
     * first, so it is written before the encoder runs into the limit. */
    json_auto_t *secret = json_pack("{s:i, s:s, s:s, s:o}", "v", 1, "op", "account.add", "api_key",
                                    "SECRET-MARKER", "id", json_integer(1));
    ASSERT_NOT_NULL(secret);
    ASSERT_OK(json_object_set(secret, "pad", json_object_get(msg, "x")));
    ASSERT_ERROR(ipc_frame_encode(secret, &out), EMSGSIZE);
    ASSERT_EQ(out.len, 4);
    ASSERT_NULL(memmem(out.data, out.cap, "SECRET-MARKER", 13));

    unsigned char huge[4] = {0xff, 0xff, 0xff, 0xff};
    ASSERT_ERROR(decode_error(huge, sizeof huge, NULL), EMSGSIZE);
    buf_free(&body, false);
    buf_free(&out, false);
}

TEST(limit_zero_refused)
{
    static const unsigned char zero[4] = {0, 0, 0, 0};
    struct parse_error err = {};

    ASSERT_ERROR(decode_error(zero, sizeof zero, &err), EMSGSIZE);
    ASSERT_STREQ(err.text, "Frame length 0 is outside 1..65536");
}

TEST(short_input_waits)
{
    struct buf b = BUF_INIT(0);
    struct ipc_reader r = IPC_READER_INIT;
    json_t *msg = NULL;

    raw_frame_str(&b, "{\"v\":1,\"op\":\"hello\",\"id\":1}");
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 0);
    ASSERT_OK(ipc_reader_feed(&r, b.data, 3));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 0);
    ASSERT_OK(ipc_reader_feed(&r, b.data + 3, 5));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 0);
    ASSERT_OK(ipc_reader_feed(&r, NULL, 0));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 0);
    ASSERT_NULL(msg);
    ipc_reader_done(&r);
    buf_free(&b, false);
}

TEST(bad_json)
{
    static const char *const bad[] = {
        "{",                                    /* truncated */
        "{\"v\":1,}",                           /* trailing comma */
        "{\"v\":1} {}",                         /* two values */
        "{\"v\":1,\"s\":\"\\u0000\"}",          /* NUL in a string */
        "{\"v\":1,\"s\":\"\xff\"}",             /* invalid UTF-8 */
        "{\"v\":1,\"s\":\"\xc3\"}",             /* truncated UTF-8 */
        "{\"v\":1,\"s\":\"\xed\xa0\x80\"}",     /* UTF-16 surrogate in UTF-8 */
        "{\"v\":1,\"v\":1}",                    /* duplicate key */
        "{\"v\":1,\"n\":99999999999999999999}", /* integer overflow */
        "nul",
        "\"a string\"",
        "42",
    };

    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        struct buf b = BUF_INIT(0);
        struct parse_error err = {};

        raw_frame_str(&b, bad[i]);
        ASSERT_ERROR(decode_error(b.data, b.len, &err), EBADMSG);
        ASSERT_TRUE(err.text[0] != '\0');
        buf_free(&b, false);
    }

    /* A raw NUL byte inside the frame. */
    struct buf b = BUF_INIT(0);
    raw_frame(&b, 10, "{\"v\":1}\0  ", 10);
    ASSERT_ERROR(decode_error(b.data, b.len, NULL), EBADMSG);
    buf_free(&b, false);
}

TEST(bad_json_position)
{
    struct buf b = BUF_INIT(0);
    struct parse_error err = {};

    raw_frame_str(&b, "{\"v\":1,\n \"op\": nope}");
    ASSERT_ERROR(decode_error(b.data, b.len, &err), EBADMSG);
    ASSERT_EQ(err.line, 2);
    ASSERT_TRUE(err.column > 0);
    ASSERT_TRUE(strncmp(err.text, "Invalid JSON: ", 14) == 0);
    buf_free(&b, false);
}

TEST(bad_json_text_hides_input)
{
    struct buf b = BUF_INIT(0);
    struct parse_error err = {};

    /* Invalid UTF-8 inside a key: jansson's own text would quote the string around it. */
    raw_frame_str(&b, "{\"v\":1,\"api_key\":\"sk-ant-api03-SECRET\xff\"}");
    ASSERT_ERROR(decode_error(b.data, b.len, &err), EBADMSG);
    ASSERT_NULL(strstr(err.text, "SECRET"));
    ASSERT_NULL(strstr(err.text, "near"));
    buf_free(&b, false);
}

TEST(not_an_object)
{
    static const char *const bad[] = {"[]", "[{\"v\":1}]", "[1,2,3]"};

    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        struct buf b = BUF_INIT(0);
        struct parse_error err = {};

        raw_frame_str(&b, bad[i]);
        ASSERT_ERROR(decode_error(b.data, b.len, &err), EBADMSG);
        ASSERT_STREQ(err.text, "A frame must hold a JSON object");
        buf_free(&b, false);
    }
}

TEST(wrong_version)
{
    static const char *const bad[] = {
        "{}",
        "{\"op\":\"hello\",\"id\":1}",
        "{\"v\":2,\"op\":\"hello\",\"id\":1}",
        "{\"v\":0}",
        "{\"v\":\"1\"}",
        "{\"v\":1.0}",
        "{\"v\":true}",
        "{\"v\":null}",
    };

    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        struct buf b = BUF_INIT(0);
        struct parse_error err = {};

        raw_frame_str(&b, bad[i]);
        ASSERT_ERROR(decode_error(b.data, b.len, &err), EPROTO);
        ASSERT_TRUE(strstr(err.text, "\"v\"") != NULL);
        buf_free(&b, false);
    }
    ASSERT_STREQ(ipc_error_code_from_errno(-EPROTO), "unsupported_version");
}

TEST(whitespace_allowed)
{
    static const char body[] = " \r\n\t{ \"v\" : 1 , \"event\" : \"x\" }\n ";
    struct buf b = BUF_INIT(0);

    raw_frame_str(&b, body);
    json_auto_t *msg = decode_one(b.data, b.len);
    ASSERT_STREQ(json_string_value(json_object_get(msg, "event")), "x");
    buf_free(&b, false);
}

TEST(reader_stays_failed)
{
    struct buf b = BUF_INIT(0);
    struct ipc_reader r = IPC_READER_INIT;
    struct parse_error err = {};
    json_t *msg = NULL;

    /* A good frame, a bad one, then another good one in the same feed. */
    raw_frame_str(&b, "{\"v\":1,\"op\":\"hello\",\"id\":1}");
    raw_frame_str(&b, "{\"v\":1,");
    raw_frame_str(&b, "{\"v\":1,\"op\":\"hello\",\"id\":2}");
    ASSERT_OK(ipc_reader_feed(&r, b.data, b.len));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    json_decref(msg);
    msg = NULL;
    ASSERT_ERROR(ipc_reader_next(&r, &msg, &err), EBADMSG);
    ASSERT_NULL(msg);

    /* The buffer is gone, and nothing gets through any more. */
    ASSERT_NULL(r.buf.data);
    ASSERT_EQ(ipc_reader_room(&r), 0);
    ASSERT_ERROR(ipc_reader_next(&r, &msg, &err), EBADMSG);
    ASSERT_STREQ(err.text, "An earlier frame on this connection was invalid");
    ASSERT_ERROR(ipc_reader_feed(&r, b.data, 4), EBADMSG);
    ASSERT_ERROR(ipc_reader_next(&r, &msg, NULL), EBADMSG);
    ASSERT_NULL(msg);

    /* ipc_reader_done() makes it usable again. */
    ipc_reader_done(&r);
    ASSERT_EQ(ipc_reader_room(&r), 65540);
    ASSERT_OK(ipc_reader_feed(&r, b.data, b.len));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    json_decref(msg);
    ipc_reader_done(&r);
    buf_free(&b, false);
}

TEST(feed_too_much_is_not_fatal)
{
    struct buf b = BUF_INIT(0);
    struct ipc_reader r = IPC_READER_INIT;
    char *big = calloc(1, 70000);
    json_t *msg = NULL;

    ASSERT_NOT_NULL(big);
    ASSERT_ERROR(ipc_reader_feed(&r, big, 70000), ENOBUFS);
    raw_frame_str(&b, "{\"v\":1,\"op\":\"hello\",\"id\":1}");
    ASSERT_OK(ipc_reader_feed(&r, b.data, b.len));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    json_decref(msg);
    ipc_reader_done(&r);
    buf_free(&b, false);
    free(big);
}

TEST(room_after_partial_frame)
{
    struct buf body = BUF_INIT(0), b = BUF_INIT(0);
    struct ipc_reader r = IPC_READER_INIT;
    json_t *msg = NULL;

    /* A small frame followed by most of a big one: once the small one is out, room counts only
     * the unread bytes, and the tail moves to the front on the next feed. */
    raw_frame_str(&b, "{\"v\":1,\"event\":\"a\"}");
    sized_body(&body, 60000);
    raw_frame(&b, 60000, body.data, body.len);
    ASSERT_OK(ipc_reader_feed(&r, b.data, b.len - 10));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    json_decref(msg);
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 0);
    ASSERT_EQ(ipc_reader_room(&r), 65540 - (60004 - 10));
    ASSERT_OK(ipc_reader_feed(&r, b.data + b.len - 10, 10));
    ASSERT_EQ(r.start, 0);
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    ASSERT_STREQ(json_string_value(json_object_get(msg, "event")), "pad");
    json_decref(msg);
    ipc_reader_done(&r);
    buf_free(&body, false);
    buf_free(&b, false);
}

TEST(wipe)
{
    static const char secret[] = "sk-ant-api03-SECRETSECRETSECRET";
    struct buf b = BUF_INIT(0);
    struct ipc_reader r = IPC_READER_INIT;
    json_t *msg = NULL;
    char *body;

    ASSERT_TRUE(asprintf(&body, "{\"v\":1,\"op\":\"account.add\",\"id\":3,\"api_key\":\"%s\"}",
                         secret) > 0);
    raw_frame_str(&b, body);
    raw_frame_str(&b, body);

    /* One and a half frames: the decoded frame's bytes are wiped at once, and the half frame is
     * wiped by ipc_reader_done(). */
    ASSERT_OK(ipc_reader_feed(&r, b.data, b.len - 20));
    ASSERT_EQ(ipc_reader_next(&r, &msg, NULL), 1);
    ASSERT_STREQ(json_string_value(json_object_get(msg, "api_key")), secret);
    json_decref(msg);
    for (size_t i = 0; i < r.start; i++)
        ASSERT_EQ(r.buf.data[i], 0);

    /* The tail moves to the front on the next feed; what it leaves behind is wiped too. */
    size_t old_len = r.buf.len;
    ASSERT_TRUE(r.start > 0);
    ASSERT_OK(ipc_reader_feed(&r, b.data + b.len - 20, 10));
    ASSERT_EQ(r.start, 0);
    ASSERT_TRUE(r.buf.len < old_len);
    for (size_t i = r.buf.len + 1; i < old_len; i++)
        ASSERT_EQ(r.buf.data[i], 0);

    ipc_reader_done(&r);
    ASSERT_NULL(r.buf.data);
    ASSERT_EQ(r.buf.len, 0);
    ASSERT_EQ(r.error, 0);

    /* A failed reader wipes at once. */
    ASSERT_OK(ipc_reader_feed(&r, b.data, 4 + 10));
    r.buf.data[0] = (char)0xff; /* corrupt the length: the reader must fail and drop it all */
    ASSERT_ERROR(ipc_reader_next(&r, &msg, NULL), EMSGSIZE);
    ASSERT_NULL(r.buf.data);
    ipc_reader_done(&r);

    free(body);
    buf_free(&b, true);
}

TEST(encode_requires_envelope)
{
    static const char *const bad[] = {
        "{}",
        "{\"v\":2,\"event\":\"x\"}",
        "{\"v\":1}",
        "{\"v\":1,\"op\":\"hello\"}",
        "{\"v\":1,\"op\":\"hello\",\"id\":0}",
        "{\"v\":1,\"op\":\"Hello\",\"id\":1}",
        "{\"v\":1,\"ok\":true}",
        "[1]",
    };
    struct buf b = BUF_INIT(0);

    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        json_auto_t *m = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        ASSERT_NOT_NULL(m);
        ASSERT_ERROR(ipc_frame_encode(m, &b), EINVAL);
        ASSERT_EQ(b.len, 0);
    }
    ASSERT_ERROR(ipc_frame_encode(NULL, &b), EINVAL);
    buf_free(&b, false);
}

TEST(encode_respects_out_ceiling)
{
    struct buf b = BUF_INIT(20);
    json_auto_t *m = ipc_request_new("snapshot.get", 12345);

    ASSERT_ERROR(ipc_frame_encode(m, &b), ENOBUFS);
    ASSERT_EQ(b.len, 0);
    buf_free(&b, false);
}

/* Parses json into *m (replacing what it held) and checks it; h borrows from *m. */
static int check_str(json_t **m, const char *json, struct ipc_header *h, struct parse_error *err)
{
    json_decref(*m);
    *m = json_loads(json, 0, NULL);
    ASSERT_NOT_NULL(*m);
    return ipc_message_check(*m, h, err);
}

TEST(message_check_accepts)
{
    json_auto_t *m = NULL;
    struct ipc_header h;

    ASSERT_OK(
        check_str(&m, "{\"v\":1,\"op\":\"map.set\",\"id\":9007199254740991,\"x\":[]}", &h, NULL));
    ASSERT_EQ(h.kind, IPC_REQUEST);
    ASSERT_EQ(h.id, IPC_ID_MAX);
    /* id 0 only in replies, for errors that end the connection. */
    ASSERT_OK(check_str(&m,
                        "{\"v\":1,\"id\":0,\"ok\":false,\"error\":{\"code\":\"too_large\","
                        "\"message\":\"\"}}",
                        &h, NULL));
    ASSERT_EQ(h.kind, IPC_REPLY);
    ASSERT_EQ(h.id, 0);
    ASSERT_STREQ(h.error_code, "too_large");
    /* An unknown error code is still a valid envelope. */
    ASSERT_OK(check_str(&m,
                        "{\"v\":1,\"id\":4,\"ok\":false,\"error\":{\"code\":\"quota_x\","
                        "\"message\":\"m\",\"detail\":1}}",
                        &h, NULL));
    ASSERT_FALSE(ipc_error_code_is_known(h.error_code));
    ASSERT_OK(check_str(&m, "{\"v\":1,\"id\":4,\"ok\":true,\"accounts\":[]}", &h, NULL));
    ASSERT_TRUE(h.ok);
    ASSERT_NULL(h.error_code);
    ASSERT_OK(check_str(&m, "{\"v\":1,\"event\":\"generation\",\"generation\":42}", &h, NULL));
    ASSERT_EQ(h.kind, IPC_EVENT);
}

TEST(message_check_refuses)
{
    static const struct {
        const char *json;
        int error;
        const char *text;
    } bad[] = {
        {"{\"op\":\"hello\",\"id\":1}", EPROTO, "\"v\" must be 1"},
        {"{\"v\":1}", EBADMSG, "A message needs \"op\", \"ok\" or \"event\""},
        {"{\"v\":1,\"op\":\"hello\"}", EBADMSG, "Missing \"id\""},
        {"{\"v\":1,\"op\":\"hello\",\"id\":0}", EBADMSG, NULL},
        {"{\"v\":1,\"op\":\"hello\",\"id\":-1}", EBADMSG, NULL},
        {"{\"v\":1,\"op\":\"hello\",\"id\":1.0}", EBADMSG, NULL},
        {"{\"v\":1,\"op\":\"hello\",\"id\":\"1\"}", EBADMSG, NULL},
        {"{\"v\":1,\"op\":\"hello\",\"id\":9007199254740992}", EBADMSG, NULL},
        {"{\"v\":1,\"op\":\"\",\"id\":1}", EBADMSG, NULL},
        {"{\"v\":1,\"op\":\"1hello\",\"id\":1}", EBADMSG, NULL},
        {"{\"v\":1,\"op\":\"he llo\",\"id\":1}", EBADMSG, NULL},
        {"{\"v\":1,\"op\":7,\"id\":1}", EBADMSG, NULL},
        {"{\"v\":1,\"op\":\"hello\",\"id\":1,\"ok\":true}", EBADMSG,
         "A request must not carry \"ok\""},
        {"{\"v\":1,\"op\":\"hello\",\"id\":1,\"event\":\"x\"}", EBADMSG, NULL},
        {"{\"v\":1,\"event\":\"x\",\"id\":1}", EBADMSG, "A event must not carry \"id\""},
        {"{\"v\":1,\"event\":\"x\",\"ok\":true}", EBADMSG, NULL},
        {"{\"v\":1,\"event\":\"\"}", EBADMSG, NULL},
        {"{\"v\":1,\"ok\":true}", EBADMSG, "Missing \"id\""},
        {"{\"v\":1,\"ok\":1,\"id\":1}", EBADMSG, "\"ok\" must be true or false"},
        {"{\"v\":1,\"ok\":true,\"id\":1,\"error\":{}}", EBADMSG, NULL},
        {"{\"v\":1,\"ok\":false,\"id\":1}", EBADMSG, NULL},
        {"{\"v\":1,\"ok\":false,\"id\":1,\"error\":\"x\"}", EBADMSG, NULL},
        {"{\"v\":1,\"ok\":false,\"id\":1,\"error\":{\"message\":\"m\"}}", EBADMSG, NULL},
        {"{\"v\":1,\"ok\":false,\"id\":1,\"error\":{\"code\":\"x\"}}", EBADMSG, NULL},
        {"{\"v\":1,\"ok\":false,\"id\":1,\"error\":{\"code\":\"X\",\"message\":\"m\"}}", EBADMSG,
         NULL},
    };

    json_auto_t *m = NULL;

    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        struct ipc_header h = {.id = 77};
        struct parse_error err = {};

        ASSERT_ERROR(check_str(&m, bad[i].json, &h, &err), bad[i].error);
        ASSERT_EQ(h.id, 77); /* ret is set only on success */
        ASSERT_TRUE(err.text[0] != '\0');
        if (bad[i].text)
            ASSERT_STREQ(err.text, bad[i].text);
    }
}

TEST(names)
{
    char longest[IPC_NAME_MAX + 2];

    ASSERT_TRUE(ipc_name_is_valid("hello"));
    ASSERT_TRUE(ipc_name_is_valid("snapshot.get"));
    ASSERT_TRUE(ipc_name_is_valid("needs_login"));
    ASSERT_TRUE(ipc_name_is_valid("a1"));
    ASSERT_FALSE(ipc_name_is_valid(NULL));
    ASSERT_FALSE(ipc_name_is_valid(""));
    ASSERT_FALSE(ipc_name_is_valid(".get"));
    ASSERT_FALSE(ipc_name_is_valid("Get"));
    ASSERT_FALSE(ipc_name_is_valid("a-b"));
    memset(longest, 'a', IPC_NAME_MAX);
    longest[IPC_NAME_MAX] = '\0';
    ASSERT_TRUE(ipc_name_is_valid(longest));
    longest[IPC_NAME_MAX] = 'a';
    longest[IPC_NAME_MAX + 1] = '\0';
    ASSERT_FALSE(ipc_name_is_valid(longest));
}

TEST(account_names)
{
    char longest[IPC_ACCOUNT_NAME_MAX + 2];

    ASSERT_TRUE(ipc_account_name_is_valid("work"));
    ASSERT_TRUE(ipc_account_name_is_valid("a_b-c9"));
    ASSERT_FALSE(ipc_account_name_is_valid(""));
    ASSERT_FALSE(ipc_account_name_is_valid(NULL));
    ASSERT_FALSE(ipc_account_name_is_valid("Work"));
    ASSERT_FALSE(ipc_account_name_is_valid("a b"));
    ASSERT_FALSE(ipc_account_name_is_valid("../x"));
    memset(longest, 'a', IPC_ACCOUNT_NAME_MAX);
    longest[IPC_ACCOUNT_NAME_MAX] = '\0';
    ASSERT_TRUE(ipc_account_name_is_valid(longest));
    longest[IPC_ACCOUNT_NAME_MAX] = 'a';
    longest[IPC_ACCOUNT_NAME_MAX + 1] = '\0';
    ASSERT_FALSE(ipc_account_name_is_valid(longest));
}

TEST(error_codes)
{
    static const char *const codes[] = {
        "bad_request", "forbidden", "not_found", "exists",    "unknown_op",          "unavailable",
        "needs_login", "upstream",  "busy",      "too_large", "unsupported_version", "internal",
    };

    for (size_t i = 0; i < ELEMENTSOF(codes); i++) {
        ASSERT_TRUE(ipc_error_code_is_known(codes[i]));
        ASSERT_TRUE(ipc_name_is_valid(codes[i]));
    }
    ASSERT_FALSE(ipc_error_code_is_known("nope"));
    ASSERT_FALSE(ipc_error_code_is_known(NULL));
    ASSERT_STREQ(ipc_error_code_from_errno(-EBADMSG), "bad_request");
    ASSERT_STREQ(ipc_error_code_from_errno(-EACCES), "forbidden");
    ASSERT_STREQ(ipc_error_code_from_errno(-ENOENT), "not_found");
    ASSERT_STREQ(ipc_error_code_from_errno(-EEXIST), "exists");
    ASSERT_STREQ(ipc_error_code_from_errno(-EOPNOTSUPP), "unknown_op");
    ASSERT_STREQ(ipc_error_code_from_errno(-EBUSY), "busy");
    ASSERT_STREQ(ipc_error_code_from_errno(-ENOMEM), "internal");
}

TEST(roles)
{
    json_auto_t *none = ipc_roles_to_json(0);
    json_auto_t *all = ipc_roles_to_json(IPC_ROLE_ROUTER | IPC_ROLE_ADMIN);
    json_auto_t *extra = json_loads("[\"admin\",\"auditor\"]", 0, NULL);
    json_auto_t *bad = json_loads("[\"admin\",1]", 0, NULL);
    unsigned roles = 99;

    ASSERT_EQ(json_array_size(none), 0);
    ASSERT_EQ(json_array_size(all), 2);
    ASSERT_STREQ(json_string_value(json_array_get(all, 0)), "router");
    ASSERT_STREQ(json_string_value(json_array_get(all, 1)), "admin");
    ASSERT_OK(ipc_roles_from_json(all, &roles));
    ASSERT_EQ(roles, IPC_ROLE_ROUTER | IPC_ROLE_ADMIN);
    ASSERT_OK(ipc_roles_from_json(extra, &roles));
    ASSERT_EQ(roles, IPC_ROLE_ADMIN);
    roles = 99;
    ASSERT_ERROR(ipc_roles_from_json(bad, &roles), EBADMSG);
    ASSERT_ERROR(ipc_roles_from_json(NULL, &roles), EBADMSG);
    ASSERT_EQ(roles, 99);
}

/* The wiping free changes only what freed memory holds, so jansson works as before with it; the
 * test puts the plain functions back all the same. */
TEST(wipe_on_free_keeps_jansson_working)
{
    ipc_json_wipe_on_free();
    json_auto_t *m = ipc_reply_error(5, "internal", "x");
    struct buf b = BUF_INIT(0);

    ASSERT_OK(ipc_frame_encode(m, &b));
    json_auto_t *back = decode_one(b.data, b.len);
    ASSERT_TRUE(json_equal(m, back));
    buf_free(&b, false);
    json_set_alloc_funcs(malloc, free);
}
