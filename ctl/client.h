/* client.h: dualroutectl's connection to dualroute-authd (docs/ipc.md): connect to the Unix
 * socket, send one request at a time and wait for the reply with the same id. */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "ipc.h"
#include "macro.h"

struct ctl_client;

/* What authd said when it refused a request, or the connection error it sent. */
struct ctl_error {
    char code[IPC_NAME_MAX + 1];
    char message[512];
};

/* Connects to the socket at path (blocking, close-on-exec). Returns 0, or the connect() error
 * (-ENOENT, -ECONNREFUSED, -EACCES, ...), or -ENAMETOOLONG for a path that does not fit. */
int ctl_client_connect(const char *path, struct ctl_client **ret);
/* Closes and frees; accepts NULL; returns NULL. */
struct ctl_client *ctl_client_free(struct ctl_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct ctl_client *, ctl_client_free);

/* Sends the request op with fields (stolen, also on failure; may be NULL) copied beside the
 * envelope, and waits up to timeout_ms for its reply. Events and replies to other ids are skipped.
 * Returns 0 with *ret_reply (a new reference, the whole reply) when authd said ok; -EREMOTE when
 * authd refused the request, and -ECONNABORTED when it sent a connection error (id 0), both with
 * reterr filled in; -ETIMEDOUT; -ECONNRESET when authd closed the connection; -EBADMSG for a frame
 * that does not decode or is not a reply; or another -errno from the socket. */
int ctl_client_call(struct ctl_client *c, const char *op, json_t *fields, int timeout_ms,
                    json_t **ret_reply, struct ctl_error *reterr);
