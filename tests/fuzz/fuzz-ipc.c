/* fuzz-ipc.c: the IPC frame reader on arbitrary bytes, cut at arbitrary places.
 *
 * The first two bytes of an input seed the cuts; the rest is the byte stream a peer sent. The
 * stream is decoded twice: fed in the largest pieces the reader takes, and fed in pieces of
 * pseudo-random sizes (1 byte up to a few hundred). The cuts must not change anything: the same
 * messages come out in the same order and the reader ends in the same state (waiting, or failed
 * with the same error). Along the way: after ipc_reader_next() returns 0 the reader always has
 * room for more, an error is one of the documented ones and comes with a text, and a failed
 * reader stays failed.
 *
 * Each decoded message then goes through ipc_message_check() and the encoder: a valid envelope
 * encodes (unless the compact form outgrows the limit; jansson spells some reals longer than the
 * input did) and decodes back to an equal message; an invalid one is refused with -EINVAL.
 * jansson runs with the wiping free the daemons use, so ASan also checks that free. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "conf.h"
#include "fuzz.h"
#include "ipc.h"
#include "macro.h"

struct outcome {
    json_t *messages; /* array */
    int end;          /* 0 (waiting for more bytes) or the reader's error */
};

static bool is_reader_error(int r)
{
    return r == -EMSGSIZE || r == -EBADMSG || r == -EPROTO;
}

/* Takes every complete message out of the reader. */
static void drain(struct ipc_reader *r, struct outcome *o)
{
    for (;;) {
        struct parse_error err = {};
        json_t *msg = NULL;
        int k;

        k = ipc_reader_next(r, &msg, &err);
        if (k == 1) {
            FUZZ_CHECK(json_is_object(msg));
            FUZZ_CHECK(json_array_append_new(o->messages, msg) == 0);
            continue;
        }
        FUZZ_CHECK(!msg);
        if (k == 0) {
            FUZZ_CHECK(ipc_reader_room(r) > 0);
            return;
        }
        FUZZ_CHECK(is_reader_error(k));
        FUZZ_CHECK(memchr(err.text, '\0', sizeof err.text) && err.text[0] != '\0');
        FUZZ_CHECK(ipc_reader_room(r) == 0);
        FUZZ_CHECK(ipc_reader_next(r, &msg, NULL) == k);
        FUZZ_CHECK(ipc_reader_feed(r, "x", 1) == k);
        o->end = k;
        return;
    }
}

/* Feeds data in pieces: the largest the reader takes when seed is 0, else pseudo-random sizes. */
static void decode(const uint8_t *data, size_t size, uint32_t seed, struct outcome *o)
{
    struct ipc_reader r = IPC_READER_INIT;
    size_t off = 0;

    o->messages = json_array();
    o->end = 0;
    FUZZ_CHECK(o->messages);

    while (off < size && o->end == 0) {
        size_t n = MIN(size - off, ipc_reader_room(&r));

        if (seed != 0) {
            seed = seed * 1103515245u + 12345u;
            n = MIN(n, 1 + (seed >> 16) % 300);
        }
        FUZZ_CHECK(n > 0);
        FUZZ_CHECK(ipc_reader_feed(&r, data + off, n) == 0);
        off += n;
        drain(&r, o);
    }
    ipc_reader_done(&r);
}

static void check_message(const json_t *msg)
{
    struct parse_error err = {};
    struct ipc_header h = {};
    struct buf b = BUF_INIT(0);
    const json_t *roles;
    unsigned role_bits;
    int r;

    r = ipc_message_check(msg, &h, &err);
    if (r < 0) {
        FUZZ_CHECK(r == -EBADMSG); /* the reader already refused a wrong "v" */
        FUZZ_CHECK(memchr(err.text, '\0', sizeof err.text) && err.text[0] != '\0');
        FUZZ_CHECK(ipc_frame_encode(msg, &b) == -EINVAL);
        FUZZ_CHECK(b.len == 0);
        buf_free(&b, true);
        return;
    }

    switch (h.kind) {
    case IPC_REQUEST:
        FUZZ_CHECK(h.id >= 1 && h.id <= IPC_ID_MAX);
        FUZZ_CHECK(ipc_name_is_valid(h.op) && !h.event && !h.error_code);
        break;
    case IPC_REPLY:
        FUZZ_CHECK(h.id <= IPC_ID_MAX && !h.op && !h.event);
        FUZZ_CHECK(h.ok == !h.error_code);
        FUZZ_CHECK(h.ok == !h.error_message);
        FUZZ_CHECK(h.ok || ipc_name_is_valid(h.error_code));
        break;
    case IPC_EVENT:
        FUZZ_CHECK(h.id == 0 && ipc_name_is_valid(h.event) && !h.op && !h.error_code);
        break;
    default:
        FUZZ_CHECK(!"unknown kind");
    }
    (void)ipc_error_code_is_known(h.error_code);

    roles = json_object_get(msg, "roles");
    if (roles) {
        r = ipc_roles_from_json(roles, &role_bits);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        FUZZ_CHECK(r < 0 || (role_bits & ~(unsigned)_IPC_ROLE_ALL) == 0);
    }

    r = ipc_frame_encode(msg, &b);
    if (r == -EMSGSIZE) {
        FUZZ_CHECK(b.len == 0);
    } else {
        struct outcome back;

        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(b.len > IPC_HEADER_SIZE && b.len <= IPC_HEADER_SIZE + IPC_FRAME_MAX);
        decode((const uint8_t *)b.data, b.len, 0, &back);
        FUZZ_CHECK(back.end == 0);
        FUZZ_CHECK(json_array_size(back.messages) == 1);
        FUZZ_CHECK(json_equal(json_array_get(back.messages, 0), msg));
        json_decref(back.messages);
    }
    buf_free(&b, true);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ipc_json_wipe_on_free();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct outcome whole, cut;
    uint32_t seed;
    size_t i;
    json_t *m;

    if (size < 2)
        return 0;
    seed = 1 + ((uint32_t)data[0] << 8 | data[1]);
    data += 2;
    size -= 2;

    decode(data, size, 0, &whole);
    decode(data, size, seed, &cut);

    FUZZ_CHECK(whole.end == cut.end);
    FUZZ_CHECK(json_array_size(whole.messages) == json_array_size(cut.messages));
    json_array_foreach (whole.messages, i, m) {
        FUZZ_CHECK(json_equal(m, json_array_get(cut.messages, i)));
        check_message(m);
    }

    json_decref(whole.messages);
    json_decref(cut.messages);
    return 0;
}
