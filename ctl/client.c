/* client.c: the IPC client of dualroutectl.
 *
 * dualroutectl opens one connection per command and sends one request at a time, so this is a
 * plain blocking client: write the whole frame, then poll() and read until the reply with our id
 * has arrived or the deadline passes. Frames are cut by shared/ipc.h's reader, which wipes each
 * frame once decoded; outgoing frames are wiped before they are freed, since a request may carry
 * a secret (api_key, client_secret, code). Events are not subscribed to and are skipped if any
 * arrive. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "client.h"
#include "conf.h"
#include "ipc.h"
#include "macro.h"
#include "util.h"

struct ctl_client {
    int fd;
    uint64_t next_id;
    struct ipc_reader reader;
};

int ctl_client_connect(const char *path, struct ctl_client **ret)
{
    _cleanup_close_ int fd = -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct ctl_client *c;

    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return -errno;
    c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fd = TAKE_FD(fd);
    c->next_id = 1;
    c->reader = IPC_READER_INIT;
    *ret = c;
    return 0;
}

struct ctl_client *ctl_client_free(struct ctl_client *c)
{
    if (!c)
        return NULL;
    safe_close(c->fd);
    ipc_reader_done(&c->reader);
    free(c);
    return NULL;
}

static int64_t remaining_ms(uint64_t deadline)
{
    uint64_t now = now_usec();

    return now >= deadline ? 0 : (int64_t)((deadline - now) / 1000);
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void error_fill(const json_t *reply, struct ctl_error *e)
{
    const json_t *err = json_object_get(reply, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));

    if (!e)
        return;
    /* A code this client does not know is treated as "internal" (docs/ipc.md, "Errors"). */
    snprintf(e->code, sizeof e->code, "%s",
             code && ipc_error_code_is_known(code) ? code : IPC_ERROR_INTERNAL);
    snprintf(e->message, sizeof e->message, "%s", msg && *msg ? msg : "(no message)");
}

/* Reads until one whole message is decoded. Returns 1 with *ret, or -errno. */
static int read_message(struct ctl_client *c, uint64_t deadline, json_t **ret)
{
    char tmp[4096];
    int r;

    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        ssize_t n;

        r = ipc_reader_next(&c->reader, ret, NULL);
        if (r != 0)
            return r < 0 ? -EBADMSG : 1;
        r = poll(&p, 1, (int)MIN(remaining_ms(deadline), (int64_t)INT32_MAX));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        n = read(c->fd, tmp, MIN(sizeof tmp, ipc_reader_room(&c->reader)));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET;
        r = ipc_reader_feed(&c->reader, tmp, (size_t)n);
        explicit_bzero(tmp, (size_t)n);
        if (r < 0)
            return r;
    }
}

int ctl_client_call(struct ctl_client *c, const char *op, json_t *fields, int timeout_ms,
                    json_t **ret_reply, struct ctl_error *reterr)
{
    json_auto_t *in = fields;
    json_auto_t *req = NULL;
    struct buf out = BUF_INIT(IPC_HEADER_SIZE + IPC_FRAME_MAX);
    uint64_t id = c->next_id++, deadline = now_usec() + (uint64_t)timeout_ms * 1000;
    int r;

    req = ipc_request_new(op, id);
    if (!req)
        return -ENOMEM;
    if (in && json_object_update(req, in) < 0)
        return -ENOMEM;
    /* The envelope wins over a field of the same name. */
    if (json_object_set_new(req, "v", json_integer(IPC_PROTOCOL_VERSION)) < 0 ||
        json_object_set_new(req, "op", json_string(op)) < 0 ||
        json_object_set_new(req, "id", json_integer((json_int_t)id)) < 0)
        return -ENOMEM;
    r = ipc_frame_encode(req, &out);
    if (r < 0)
        return r;
    r = send_all(c->fd, out.data, out.len);
    buf_free(&out, true);
    if (r < 0)
        return r == -EPIPE ? -ECONNRESET : r;

    for (;;) {
        json_auto_t *msg = NULL;
        struct ipc_header h;

        r = read_message(c, deadline, &msg);
        if (r < 0)
            return r;
        if (ipc_message_check(msg, &h, NULL) < 0 || h.kind == IPC_REQUEST)
            return -EBADMSG;
        if (h.kind == IPC_EVENT)
            continue;
        if (h.id == 0) {
            error_fill(msg, reterr);
            return -ECONNABORTED;
        }
        if (h.id != id)
            continue;
        if (!h.ok) {
            error_fill(msg, reterr);
            return -EREMOTE;
        }
        *ret_reply = TAKE_PTR(msg);
        return 0;
    }
}
