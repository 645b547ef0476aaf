/* authd.h: dualroute-authd's socket server (server.c) and its op handlers (ops.c).
 *
 * struct authd owns the listening socket, the connections and the per-process state the ops
 * share; it borrows the event loop, the configuration, the store and the credential manager from
 * main.c. A connection (struct authd_conn) holds the peer's roles, fixed at accept, an ipc_reader
 * for its input and a write queue for its output. Requests run in ops.c; those that wait on the
 * credential manager stay pending on their connection and are cancelled when it closes. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "buf.h"
#include "ipc.h"
#include "macro.h"

struct authd_config;
struct cred_manager;
struct store;
struct authd_pending; /* ops.c: a request waiting on the credential manager */
struct authd_login;   /* ops.c: login_id -> account, for login.finish's reply */
struct authd_frame;   /* server.c: one queued frame */

#define AUTHD_MAX_OUTSTANDING 64             /* pending requests per connection */
#define AUTHD_STALL_USEC (30 * USEC_PER_SEC) /* half-sent frame, or unread output */
#define AUTHD_USAGE_SEEN_MAX 8192            /* request_ids remembered by usage.report */

struct authd_conn {
    struct authd *authd;
    struct authd_conn *prev, *next;
    uint64_t number; /* for log lines */
    int fd;
    sd_event_source *io, *timer;
    uid_t uid;
    pid_t pid;
    unsigned roles; /* enum ipc_role bits */
    bool dev_mode;
    bool subscribed_generation;
    bool closing; /* flush the queue, then close */
    struct ipc_reader reader;
    /* Frames not yet written, each in its own buffer (allocated whole, so no realloc() leaves a
     * copy of a reply behind), wiped as it leaves. */
    struct authd_frame *out_head, *out_tail;
    size_t out_bytes;
    uint64_t partial_since; /* CLOCK_MONOTONIC usec when an incomplete frame began, else 0 */
    uint64_t stalled_since; /* when the queue last stopped draining, else 0 */
    uint64_t closing_since;
    struct authd_pending *pending;
    unsigned n_pending;
    /* snapshot.get pages not fetched yet (ops.c): the snapshot's members, of which those from
     * snap_next on still have to go, under snap_generation, for the cursor snap_cursor. */
    json_t *snap_members;
    size_t snap_next;
    uint64_t snap_generation, snap_serial;
    char snap_cursor[48];
};

struct authd {
    sd_event *event;
    const struct authd_config *cfg;
    struct store *store;       /* borrowed */
    struct cred_manager *cred; /* borrowed */
    char *socket_path;
    char *database_path;
    int listen_fd;
    bool socket_owned; /* we bound it, so we unlink it at exit */
    sd_event_source *listen_src;
    struct authd_conn *conns;
    unsigned n_conns;
    uint64_t next_conn_number;
    uid_t self_uid;
    bool have_admin_gid, have_router_uid;
    gid_t admin_gid;
    uid_t router_uid;
    int64_t started_at; /* Unix seconds */
    uint64_t generation_announced;
    struct authd_login *logins;
    /* usage.report's memory of recent request_ids (hashes), a ring. */
    uint64_t usage_seen[AUTHD_USAGE_SEEN_MAX];
    size_t usage_seen_next, usage_seen_n;
};

/* Creates the server (no socket yet). database_path is copied; everything else is borrowed and
 * must outlive it. */
int authd_new(sd_event *e, const struct authd_config *cfg, struct store *store,
              struct cred_manager *cred, const char *database_path, struct authd **ret);
/* Takes the socket systemd passed (fd 3, a Unix stream socket), else binds the configured path
 * (0660 from the start; a stale socket there is removed), and starts accepting. */
int authd_start(struct authd *a);
/* Closes every connection (pending operations are cancelled), the socket, and unlinks the socket
 * path if authd created it. Accepts NULL; returns NULL. */
struct authd *authd_free(struct authd *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct authd *, authd_free);

/* Queues msg (steals it) as one frame on c. A message that cannot be encoded (over 64 KiB) is
 * replaced by a too_large error for the same id. Returns 0 or a negative errno; on a full queue
 * the connection is closed. */
int authd_conn_send(struct authd_conn *c, json_t *msg);
/* Queues a failed reply with a formatted message. */
_printf_(4, 5) int authd_conn_reply_error(struct authd_conn *c, uint64_t id, const char *code,
                                          const char *fmt, ...);
/* Sends the "generation" event to every subscribed connection if the store's generation moved on
 * since the last announcement. */
void authd_announce_generation(struct authd *a);

/* Feeds bytes read from c's peer through the reader and dispatches every complete request. A
 * framing error queues the id-0 connection error and marks c closing. Used by the io handler; the
 * dispatcher takes bytes, not an fd. */
void authd_conn_feed(struct authd_conn *c, const void *p, size_t n);

/* ops.c */

/* Runs one request whose envelope passed ipc_message_check(). Replies now, or later from a
 * credential-manager callback. req is borrowed. */
void authd_ops_dispatch(struct authd_conn *c, const struct ipc_header *h, json_t *req);
/* Cancels and frees the pending requests of c (their replies are never sent). */
void authd_ops_cancel_pending(struct authd_conn *c);
/* Frees the login table. */
void authd_ops_done(struct authd *a);
