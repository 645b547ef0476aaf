/* ipc.h: the frame codec and message envelope that authd, routerd and dualroutectl share on
 * authd's Unix socket. docs/ipc.md is the protocol; this is its pure half: bytes in, json_t out
 * and back, with no fds, no IO and no logging, so unit tests and fuzzers call it directly.
 *
 * A frame is a u32 big-endian length N (1..IPC_FRAME_MAX) followed by N bytes holding one UTF-8
 * JSON object with "v": 1. A message is a request ("op", "id"), a reply ("id", "ok", and
 * "error" when ok is false) or an event ("event", no "id"). */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"

struct parse_error;

#define IPC_PROTOCOL_VERSION 1
#define IPC_HEADER_SIZE 4
#define IPC_FRAME_MAX 65536 /* the largest body N, in bytes */
/* Ids are at most 2^53 - 1, so that every JSON implementation holds them exactly. */
#define IPC_ID_MAX ((uint64_t)9007199254740991)
/* The longest "op", "event" or error "code": 1..64 of [a-z0-9._], starting with a letter. */
#define IPC_NAME_MAX 64
#define IPC_ACCOUNT_NAME_MAX 64

/* Error codes of failed replies (docs/ipc.md, "Errors"). A receiver treats a code it does not
 * know as IPC_ERROR_INTERNAL. */
#define IPC_ERROR_BAD_REQUEST "bad_request"
#define IPC_ERROR_FORBIDDEN "forbidden"
#define IPC_ERROR_NOT_FOUND "not_found"
#define IPC_ERROR_EXISTS "exists"
#define IPC_ERROR_UNKNOWN_OP "unknown_op"
#define IPC_ERROR_UNAVAILABLE "unavailable"
#define IPC_ERROR_NEEDS_LOGIN "needs_login"
#define IPC_ERROR_UPSTREAM "upstream"
#define IPC_ERROR_BUSY "busy"
#define IPC_ERROR_TOO_LARGE "too_large"
#define IPC_ERROR_UNSUPPORTED_VERSION "unsupported_version"
#define IPC_ERROR_INTERNAL "internal"

/* Roles a peer may hold, as bit flags; authd derives them from SO_PEERCRED. */
enum ipc_role {
    IPC_ROLE_ROUTER = 1u << 0, /* fetch credentials and snapshots, report usage */
    IPC_ROLE_ADMIN = 1u << 1,  /* manage accounts, logins, routes and members */
    _IPC_ROLE_ALL = IPC_ROLE_ROUTER | IPC_ROLE_ADMIN,
};

enum ipc_kind {
    IPC_REQUEST,
    IPC_REPLY,
    IPC_EVENT,
    _IPC_KIND_MAX,
    _IPC_KIND_INVALID = -EINVAL,
};

/* The envelope of a message, as ipc_message_check() found it. The strings are borrowed from the
 * message and live as long as it does. */
struct ipc_header {
    enum ipc_kind kind;
    uint64_t id;               /* requests: 1..IPC_ID_MAX; replies: 0..IPC_ID_MAX; events: 0 */
    const char *op;            /* requests only, else NULL */
    const char *event;         /* events only, else NULL */
    bool ok;                   /* replies only */
    const char *error_code;    /* failed replies only, else NULL */
    const char *error_message; /* failed replies only, else NULL */
};

/* Accumulates bytes read from a socket and cuts them into messages. It holds at most
 * IPC_HEADER_SIZE + IPC_FRAME_MAX bytes: the caller reads no more than ipc_reader_room() at a
 * time. Once it has failed it stays failed: every later call returns the same error. */
struct ipc_reader {
    struct buf buf;
    size_t start; /* offset of the first byte not yet handed out */
    int error;    /* 0, or the negative errno it failed with */
};

#define IPC_READER_INIT ((struct ipc_reader){.buf = BUF_INIT(IPC_HEADER_SIZE + IPC_FRAME_MAX)})

/* How many bytes ipc_reader_feed() accepts now: at least 1 whenever ipc_reader_next() has just
 * returned 0, and 0 for a failed reader. */
size_t ipc_reader_room(const struct ipc_reader *r);
/* Copies n bytes into the reader. The first feed allocates the whole buffer, so that realloc()
 * never leaves copies of frames in freed memory. Returns 0, -ENOBUFS when n > ipc_reader_room()
 * (nothing is taken and the reader does not fail), -ENOMEM, or the reader's error if it has
 * failed. */
int ipc_reader_feed(struct ipc_reader *r, const void *p, size_t n);
/* Takes the next complete message. Returns 1 and sets *ret_msg (a new reference) when there is
 * one, 0 when more bytes are needed, or a protocol error, after which the reader stays failed and
 * has wiped its buffer:
 *   -EMSGSIZE  length 0 or > IPC_FRAME_MAX (known from the four header bytes alone)
 *   -EBADMSG   not JSON, invalid UTF-8, a duplicate key, or not an object
 *   -EPROTO    no "v", or "v" other than the integer 1
 * or -ENOMEM, which fails the reader too (the frame is lost). On an error reterr (when not NULL)
 * says where the frame went wrong; line and column count within the frame's JSON text. The bytes of
 * each frame are wiped from the buffer once decoded. */
int ipc_reader_next(struct ipc_reader *r, json_t **ret_msg, struct parse_error *reterr);
/* Wipes and frees the buffer; the reader is then as IPC_READER_INIT left it. */
void ipc_reader_done(struct ipc_reader *r);

/* Appends msg to out as one frame (header and compact JSON). msg is borrowed and must carry
 * "v": 1 and pass ipc_message_check(); it is never modified (the constructors below put "v"
 * there). out gets room for a maximal frame up front, when its ceiling allows, for the reason
 * ipc_reader_feed() gives. Returns 0, -EINVAL for a message that
 * is not a valid envelope, -EMSGSIZE when the JSON would exceed IPC_FRAME_MAX, -ENOBUFS when out's
 * ceiling is too low, or -ENOMEM. On failure out is as it was, and any bytes written past its old
 * length are wiped. */
int ipc_frame_encode(const json_t *msg, struct buf *out);

/* Classifies a decoded message and checks its envelope (docs/ipc.md, "Messages"): the types and
 * ranges of "v", "op", "id", "ok", "error" and "event", and that it is exactly one of request,
 * reply and event. Fields beyond the envelope are not looked at. Returns 0 and fills *ret, or
 * -EPROTO for a missing or wrong "v" and -EBADMSG for any other fault, with reterr (when not NULL)
 * saying which field is wrong. */
int ipc_message_check(const json_t *msg, struct ipc_header *ret, struct parse_error *reterr);

/* Message constructors. Each returns a new reference, or NULL on allocation failure. Names
 * (op, event, code) must be valid (ipc_name_is_valid()) and ids in range; anything else is a
 * programmer error caught by assert(). The caller adds its fields with json_object_set_new(). */
json_t *ipc_request_new(const char *op, uint64_t id);
/* id may be 0 only for errors that end the connection (docs/ipc.md, "Connection errors"). */
json_t *ipc_reply_ok(uint64_t id);
json_t *ipc_reply_error(uint64_t id, const char *code, const char *message);
json_t *ipc_event_new(const char *event);

/* Whether s is 1..IPC_NAME_MAX of [a-z0-9._], starting with a letter. */
bool ipc_name_is_valid(const char *s);
/* Whether s is an account or member name: 1..IPC_ACCOUNT_NAME_MAX of [a-z0-9_-]. authd stores
 * no other, and routerd refuses a snapshot whose routes name another. */
bool ipc_account_name_is_valid(const char *s);
/* Whether code is one this protocol version defines. */
bool ipc_error_code_is_known(const char *code);
/* The error code a server replies with for a negative errno: -EMSGSIZE "too_large",
 * -EPROTO "unsupported_version", -EBADMSG and -EINVAL "bad_request", -EPERM and -EACCES
 * "forbidden", -ENOENT "not_found", -EEXIST "exists", -EOPNOTSUPP "unknown_op", -EAGAIN and
 * -EBUSY "busy", anything else "internal". Returns a static string. */
const char *ipc_error_code_from_errno(int r);

/* The role names as a JSON array, in bit order ("router", "admin"): a new reference, or NULL on
 * allocation failure. */
json_t *ipc_roles_to_json(unsigned roles);
/* Parses such an array (borrowed). Unknown names are ignored (a newer authd may define more);
 * anything but an array of strings is -EBADMSG. */
int ipc_roles_from_json(const json_t *a, unsigned *ret_roles);

/* Makes jansson wipe every block before it frees it (json_set_alloc_funcs() with a free that
 * calls explicit_bzero() over malloc_usable_size() bytes), so decoded secrets and the parser's
 * scratch buffers do not linger in freed memory. Process-wide: authd and dualroutectl call it
 * once at start-up, before they create any JSON value. */
void ipc_json_wipe_on_free(void);
