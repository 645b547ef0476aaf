/* ipc.c: the frame codec for authd's Unix socket (docs/ipc.md).
 *
 * The reader keeps one bounded buffer of IPC_HEADER_SIZE + IPC_FRAME_MAX bytes. Bytes are appended
 * at the end; complete frames are cut from .start, decoded with jansson, and wiped from the
 * buffer at once, because frames carry API keys and tokens. The unread tail is moved to the front
 * on the next feed, so a long run of small frames costs one pass, not one move per frame. A length
 * out of range fails the reader as soon as its four bytes arrive, without waiting for a body that
 * may never come. Any protocol error is final: the stream has lost its framing (or its peer speaks
 * another protocol), so the reader wipes its buffer and returns the same error from then on.
 *
 * The encoder streams jansson's output straight into the caller's buffer behind a placeholder
 * header and stops at the frame limit, so an oversized message is never held twice and a refused
 * one leaves nothing readable behind.
 *
 * What it won't do: touch a file descriptor, log, or interpret an op's fields. Roles and
 * authorization are authd's; this file only names them. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "conf.h"
#include "ipc.h"
#include "macro.h"

static const char *const role_names[] = {"router", "admin"};

static const char *const known_error_codes[] = {
    IPC_ERROR_BAD_REQUEST, IPC_ERROR_FORBIDDEN,   IPC_ERROR_NOT_FOUND,           IPC_ERROR_EXISTS,
    IPC_ERROR_UNKNOWN_OP,  IPC_ERROR_UNAVAILABLE, IPC_ERROR_NEEDS_LOGIN,         IPC_ERROR_UPSTREAM,
    IPC_ERROR_BUSY,        IPC_ERROR_TOO_LARGE,   IPC_ERROR_UNSUPPORTED_VERSION, IPC_ERROR_INTERNAL,
};

/* Fills reterr (when not NULL) and returns error. */
_printf_(5, 6) static int set_error(struct parse_error *reterr, int error, int line, int column,
                                    const char *fmt, ...)
{
    va_list ap;

    if (!reterr)
        return error;
    va_start(ap, fmt);
    vsnprintf(reterr->text, sizeof reterr->text, fmt, ap);
    va_end(ap);
    reterr->line = line;
    reterr->column = column;
    return error;
}

bool ipc_name_is_valid(const char *s)
{
    size_t n;

    if (!s || !(*s >= 'a' && *s <= 'z'))
        return false;
    for (n = 0; s[n]; n++) {
        char c = s[n];
        if (n >= IPC_NAME_MAX)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_'))
            return false;
    }
    return true;
}

bool ipc_account_name_is_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > IPC_ACCOUNT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-'))
            return false;
    return true;
}

bool ipc_error_code_is_known(const char *code)
{
    if (!code)
        return false;
    for (size_t i = 0; i < ELEMENTSOF(known_error_codes); i++)
        if (streq(code, known_error_codes[i]))
            return true;
    return false;
}

const char *ipc_error_code_from_errno(int r)
{
    switch (r) {
    case -EMSGSIZE:
        return IPC_ERROR_TOO_LARGE;
    case -EPROTO:
        return IPC_ERROR_UNSUPPORTED_VERSION;
    case -EBADMSG:
    case -EINVAL:
        return IPC_ERROR_BAD_REQUEST;
    case -EPERM:
    case -EACCES:
        return IPC_ERROR_FORBIDDEN;
    case -ENOENT:
        return IPC_ERROR_NOT_FOUND;
    case -EEXIST:
        return IPC_ERROR_EXISTS;
    case -EOPNOTSUPP:
        return IPC_ERROR_UNKNOWN_OP;
    case -EAGAIN:
    case -EBUSY:
        return IPC_ERROR_BUSY;
    default:
        return IPC_ERROR_INTERNAL;
    }
}

/* The reader. */

size_t ipc_reader_room(const struct ipc_reader *r)
{
    if (r->error < 0)
        return 0;
    return r->buf.max - (r->buf.len - r->start);
}

/* Fails the reader for good: nothing it holds will ever be decoded, so it goes now. */
static int reader_fail(struct ipc_reader *r, int error)
{
    buf_free(&r->buf, true);
    r->start = 0;
    r->error = error;
    return error;
}

int ipc_reader_feed(struct ipc_reader *r, const void *p, size_t n)
{
    size_t unread;

    assert(r);
    assert(p || n == 0);

    if (r->error < 0)
        return r->error;
    if (n > ipc_reader_room(r))
        return -ENOBUFS;
    if (n == 0)
        return 0;

    /* The whole buffer at once, for the reason ipc_frame_encode() gives. */
    if (r->buf.cap <= r->buf.max) {
        int k = buf_reserve(&r->buf, r->buf.max - r->buf.len);
        if (k < 0)
            return k;
    }

    if (r->start > 0) {
        unread = r->buf.len - r->start;
        memmove(r->buf.data, r->buf.data + r->start, unread);
        /* The vacated tail held bytes of frames already handed out. */
        explicit_bzero(r->buf.data + unread, r->buf.len - unread);
        r->buf.len = unread;
        r->buf.data[unread] = '\0';
        r->start = 0;
    }
    return buf_append(&r->buf, p, n);
}

int ipc_reader_next(struct ipc_reader *r, json_t **ret_msg, struct parse_error *reterr)
{
    const unsigned char *h;
    json_error_t jerr;
    json_t *v;
    size_t avail;
    uint32_t n;

    assert(r);
    assert(ret_msg);

    if (r->error < 0)
        return set_error(reterr, r->error, 0, 0, "An earlier frame on this connection was invalid");

    avail = r->buf.len - r->start;
    if (avail < IPC_HEADER_SIZE)
        return 0;
    h = (const unsigned char *)r->buf.data + r->start;
    n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | (uint32_t)h[3];
    if (n == 0 || n > IPC_FRAME_MAX) {
        reader_fail(r, -EMSGSIZE);
        return set_error(reterr, -EMSGSIZE, 0, 0, "Frame length %" PRIu32 " is outside 1..%d", n,
                         IPC_FRAME_MAX);
    }
    if (avail - IPC_HEADER_SIZE < n)
        return 0;

    /* No JSON_DECODE_ANY: only an array or object parses, and an array is refused below.
     * Duplicate keys are refused because two readers could pick different ones. */
    json_auto_t *msg =
        json_loadb((const char *)h + IPC_HEADER_SIZE, n, JSON_REJECT_DUPLICATES, &jerr);
    explicit_bzero(r->buf.data + r->start, IPC_HEADER_SIZE + n);
    r->start += IPC_HEADER_SIZE + n;
    if (r->start == r->buf.len) {
        r->start = 0;
        buf_clear(&r->buf);
    }

    if (!msg && json_error_code(&jerr) == json_error_out_of_memory) {
        /* The frame is gone from the buffer, so the stream cannot go on without it. */
        reader_fail(r, -ENOMEM);
        return set_error(reterr, -ENOMEM, 0, 0, "Out of memory decoding a frame");
    }
    if (!msg) {
        /* jansson quotes the text around the fault ("... near '\"sk-ant-api03-...'"): that may be
         * a secret, and this text ends up in logs and replies, so it stops before the quote. */
        char *near = strstr(jerr.text, " near '");
        if (near)
            *near = '\0';
        reader_fail(r, -EBADMSG);
        return set_error(reterr, -EBADMSG, jerr.line, jerr.column, "Invalid JSON: %s", jerr.text);
    }
    if (!json_is_object(msg)) {
        reader_fail(r, -EBADMSG);
        return set_error(reterr, -EBADMSG, 1, 1, "A frame must hold a JSON object");
    }
    v = json_object_get(msg, "v");
    if (!json_is_integer(v) || json_integer_value(v) != IPC_PROTOCOL_VERSION) {
        reader_fail(r, -EPROTO);
        return set_error(reterr, -EPROTO, 0, 0, "%s \"v\": this peer speaks version %d",
                         v ? "Unsupported" : "Missing", IPC_PROTOCOL_VERSION);
    }

    *ret_msg = TAKE_PTR(msg);
    return 1;
}

void ipc_reader_done(struct ipc_reader *r)
{
    if (!r)
        return;
    buf_free(&r->buf, true);
    *r = IPC_READER_INIT;
}

/* The envelope. */

static int check_id(const json_t *msg, uint64_t min, uint64_t *ret, struct parse_error *reterr)
{
    const json_t *id = json_object_get(msg, "id");
    json_int_t i;

    if (!id)
        return set_error(reterr, -EBADMSG, 0, 0, "Missing \"id\"");
    i = json_is_integer(id) ? json_integer_value(id) : -1;
    if (i < 0 || (uint64_t)i < min || (uint64_t)i > IPC_ID_MAX)
        return set_error(reterr, -EBADMSG, 0, 0,
                         "\"id\" must be an integer in %" PRIu64 "..%" PRIu64, min, IPC_ID_MAX);
    *ret = (uint64_t)i;
    return 0;
}

static int check_name(const json_t *msg, const char *key, const char **ret,
                      struct parse_error *reterr)
{
    const json_t *s = json_object_get(msg, key);

    if (!json_is_string(s) || !ipc_name_is_valid(json_string_value(s)))
        return set_error(reterr, -EBADMSG, 0, 0,
                         "\"%s\" must be 1..%d of [a-z0-9._], starting with a letter", key,
                         IPC_NAME_MAX);
    *ret = json_string_value(s);
    return 0;
}

static int check_forbidden(const json_t *msg, const char *what, const char *const *keys, size_t n,
                           struct parse_error *reterr)
{
    for (size_t i = 0; i < n; i++)
        if (json_object_get(msg, keys[i]))
            return set_error(reterr, -EBADMSG, 0, 0, "A %s must not carry \"%s\"", what, keys[i]);
    return 0;
}

static int check_reply(const json_t *msg, struct ipc_header *h, struct parse_error *reterr)
{
    static const char *const not_in_reply[] = {"op", "event"};
    const json_t *ok = json_object_get(msg, "ok"), *error, *code, *message;
    int r;

    r = check_forbidden(msg, "reply", not_in_reply, ELEMENTSOF(not_in_reply), reterr);
    if (r < 0)
        return r;
    r = check_id(msg, 0, &h->id, reterr);
    if (r < 0)
        return r;
    if (!json_is_boolean(ok))
        return set_error(reterr, -EBADMSG, 0, 0, "\"ok\" must be true or false");
    h->ok = json_is_true(ok);

    error = json_object_get(msg, "error");
    if (h->ok) {
        if (error)
            return set_error(reterr, -EBADMSG, 0, 0, "A successful reply must not carry \"error\"");
        return 0;
    }
    if (!json_is_object(error))
        return set_error(reterr, -EBADMSG, 0, 0, "A failed reply must carry an \"error\" object");
    code = json_object_get(error, "code");
    message = json_object_get(error, "message");
    if (!json_is_string(code) || !ipc_name_is_valid(json_string_value(code)))
        return set_error(reterr, -EBADMSG, 0, 0, "\"error.code\" must be a valid name");
    if (!json_is_string(message))
        return set_error(reterr, -EBADMSG, 0, 0, "\"error.message\" must be a string");
    h->error_code = json_string_value(code);
    h->error_message = json_string_value(message);
    return 0;
}

int ipc_message_check(const json_t *msg, struct ipc_header *ret, struct parse_error *reterr)
{
    static const char *const not_in_request[] = {"ok", "error", "event"};
    static const char *const not_in_event[] = {"id", "op", "ok", "error"};
    struct ipc_header h = {.kind = _IPC_KIND_INVALID};
    const json_t *v;
    int r;

    assert(ret);

    if (!json_is_object(msg))
        return set_error(reterr, -EBADMSG, 0, 0, "A message must be a JSON object");
    v = json_object_get(msg, "v");
    if (!json_is_integer(v) || json_integer_value(v) != IPC_PROTOCOL_VERSION)
        return set_error(reterr, -EPROTO, 0, 0, "\"v\" must be %d", IPC_PROTOCOL_VERSION);

    if (json_object_get(msg, "op")) {
        h.kind = IPC_REQUEST;
        r = check_forbidden(msg, "request", not_in_request, ELEMENTSOF(not_in_request), reterr);
        if (r >= 0)
            r = check_name(msg, "op", &h.op, reterr);
        if (r >= 0)
            r = check_id(msg, 1, &h.id, reterr);
    } else if (json_object_get(msg, "event")) {
        h.kind = IPC_EVENT;
        r = check_forbidden(msg, "event", not_in_event, ELEMENTSOF(not_in_event), reterr);
        if (r >= 0)
            r = check_name(msg, "event", &h.event, reterr);
    } else if (json_object_get(msg, "ok")) {
        h.kind = IPC_REPLY;
        r = check_reply(msg, &h, reterr);
    } else
        return set_error(reterr, -EBADMSG, 0, 0, "A message needs \"op\", \"ok\" or \"event\"");
    if (r < 0)
        return r;

    *ret = h;
    return 0;
}

/* The encoder. */

struct encode_state {
    struct buf *out;
    size_t body; /* offset of the JSON text in out */
    int error;
};

static int encode_append(const char *p, size_t n, void *userdata)
{
    struct encode_state *s = userdata;
    int r;

    if (s->out->len - s->body + n > IPC_FRAME_MAX) {
        s->error = -EMSGSIZE;
        return -1;
    }
    r = buf_append(s->out, p, n);
    if (r < 0) {
        s->error = r;
        return -1;
    }
    return 0;
}

int ipc_frame_encode(const json_t *msg, struct buf *out)
{
    static const char zero[IPC_HEADER_SIZE];
    struct ipc_header h;
    size_t old_len = out->len, n;
    unsigned char *p;
    int r;

    assert(out);

    if (ipc_message_check(msg, &h, NULL) < 0)
        return -EINVAL;

    /* Room for the largest frame up front, so that realloc() never copies part of a message and
     * frees the old block unwiped. A buffer whose ceiling is lower grows as it must. */
    r = buf_reserve(out, IPC_HEADER_SIZE + IPC_FRAME_MAX);
    if (r == -ENOMEM)
        return r;
    r = buf_append(out, zero, sizeof zero);
    if (r < 0)
        return r;
    struct encode_state s = {.out = out, .body = out->len};
    if (json_dump_callback(msg, encode_append, &s, JSON_COMPACT) < 0) {
        explicit_bzero(out->data + old_len, out->len - old_len);
        out->len = old_len;
        out->data[old_len] = '\0';
        return s.error < 0 ? s.error : -ENOMEM;
    }

    n = out->len - s.body;
    assert(n >= 2 && n <= IPC_FRAME_MAX);
    p = (unsigned char *)out->data + old_len;
    p[0] = (unsigned char)(n >> 24);
    p[1] = (unsigned char)(n >> 16);
    p[2] = (unsigned char)(n >> 8);
    p[3] = (unsigned char)n;
    return 0;
}

/* Constructors. */

static json_t *message_new(void)
{
    json_t *m = json_object();

    if (!m || json_object_set_new(m, "v", json_integer(IPC_PROTOCOL_VERSION)) < 0)
        return json_decref(m), NULL;
    return m;
}

static json_t *reply_new(uint64_t id, bool ok)
{
    json_auto_t *m = NULL;

    assert(id <= IPC_ID_MAX);
    m = message_new();
    if (!m || json_object_set_new(m, "id", json_integer((json_int_t)id)) < 0 ||
        json_object_set_new(m, "ok", json_boolean(ok)) < 0)
        return NULL;
    return TAKE_PTR(m);
}

json_t *ipc_request_new(const char *op, uint64_t id)
{
    json_auto_t *m = NULL;

    assert(ipc_name_is_valid(op));
    assert(id >= 1 && id <= IPC_ID_MAX);
    m = message_new();
    if (!m || json_object_set_new(m, "op", json_string(op)) < 0 ||
        json_object_set_new(m, "id", json_integer((json_int_t)id)) < 0)
        return NULL;
    return TAKE_PTR(m);
}

json_t *ipc_reply_ok(uint64_t id)
{
    return reply_new(id, true);
}

json_t *ipc_reply_error(uint64_t id, const char *code, const char *message)
{
    json_auto_t *m = NULL;
    json_t *e;

    assert(ipc_name_is_valid(code));
    assert(message);
    m = reply_new(id, false);
    if (!m)
        return NULL;
    e = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (!e || json_object_set_new(m, "error", e) < 0)
        return NULL;
    return TAKE_PTR(m);
}

json_t *ipc_event_new(const char *event)
{
    json_auto_t *m = NULL;

    assert(ipc_name_is_valid(event));
    m = message_new();
    if (!m || json_object_set_new(m, "event", json_string(event)) < 0)
        return NULL;
    return TAKE_PTR(m);
}

/* Roles. */

json_t *ipc_roles_to_json(unsigned roles)
{
    json_auto_t *a = json_array();

    if (!a)
        return NULL;
    for (size_t i = 0; i < ELEMENTSOF(role_names); i++)
        if ((roles & (1u << i)) && json_array_append_new(a, json_string(role_names[i])) < 0)
            return NULL;
    return TAKE_PTR(a);
}

int ipc_roles_from_json(const json_t *a, unsigned *ret_roles)
{
    const json_t *e;
    unsigned roles = 0;
    size_t i;

    if (!json_is_array(a))
        return -EBADMSG;
    json_array_foreach (a, i, e) {
        if (!json_is_string(e))
            return -EBADMSG;
        for (size_t k = 0; k < ELEMENTSOF(role_names); k++)
            if (streq(json_string_value(e), role_names[k]))
                roles |= 1u << k;
    }
    *ret_roles = roles;
    return 0;
}

/* Wiping. */

static void wiping_free(void *p)
{
    if (!p)
        return;
    explicit_bzero(p, malloc_usable_size(p));
    free(p);
}

void ipc_json_wipe_on_free(void)
{
    json_set_alloc_funcs(malloc, wiping_free);
}
