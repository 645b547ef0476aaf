/* authd-client.h: routerd's side of authd's socket (docs/ipc.md). One connection for the
 * process's lifetime, on routerd's sd-event loop: it connects, says hello (subscribing to
 * "generation"), fetches the routing snapshot (every page of snapshot.get) and fetches it again
 * whenever authd announces a new generation. Credentials come from token.get and are cached per
 * account until shortly before they expire (API keys until the next snapshot), so routerd keeps
 * serving from the cache while authd restarts. A dropped or refused connection is retried with
 * backoff: 1 s doubling to 30 s, with jitter. Nothing here blocks.
 *
 * Callbacks are never called from inside the function that started the operation; they run from
 * the event loop. Secrets stay in struct secret and are wiped when dropped; log lines name the op,
 * the account and authd's error code, never a token. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "macro.h"

struct authd_client;
struct authd_token_req; /* one pending token request */
struct secret;

/* An account's credential as routerd uses it. Strings and the secret are borrowed for the
 * duration of the callback (copy what you keep). */
struct authd_credential {
    const char *account;
    const char *provider; /* "anthropic", "vertex" */
    const char *kind;     /* "api_key", "access_token" */
    const struct secret *token;
    int64_t expires_at;  /* Unix seconds; 0 for API keys */
    const char *project; /* vertex, else NULL */
    const char *region;  /* vertex, else NULL */
};

/* The result of a token request: error 0 with cred set, or a negative errno with code (an IPC
 * error code: "needs_login", "unavailable", "not_found", ...; "unavailable" also when authd
 * cannot be reached and nothing usable is cached) and message (one line fit for the client, naming
 * the account and what to run, never a secret). */
struct authd_token_result {
    int error;
    const char *code;
    const char *message;
    const struct authd_credential *cred;
};

typedef void (*authd_token_cb_t)(const struct authd_token_result *res, void *userdata);
/* Called with each complete snapshot (the first page's fields, with "members" joined across pages,
 * "generation" included; borrowed for the call). */
typedef void (*authd_snapshot_cb_t)(const json_t *snapshot, void *userdata);

struct authd_client_config {
    const char *socket_path;         /* e.g. ./state/authd.sock */
    authd_snapshot_cb_t on_snapshot; /* may be NULL */
    void *userdata;
    uint64_t token_margin_usec;      /* refetch a cached token this long before expiry; 0: 120 s */
    uint64_t request_timeout_usec;   /* one op's reply; 0: 10 s */
    uint64_t reconnect_initial_usec; /* first reconnect delay, doubling to 30 s; 0: 1 s */
};

/* Creates the client and starts connecting (at once, then with backoff). */
int authd_client_new(sd_event *e, const struct authd_client_config *cfg, struct authd_client **ret);
/* Closes the connection, fails nothing (pending callbacks are dropped), wipes the cache, frees. */
struct authd_client *authd_client_free(struct authd_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct authd_client *, authd_client_free);

/* Whether the connection is up and hello was answered. */
bool authd_client_is_connected(const struct authd_client *c);
/* The generation of the last applied snapshot, 0 if none yet. */
uint64_t authd_client_generation(const struct authd_client *c);

/* Gets the account's credential: from the cache when it is valid for longer than the margin, else
 * with token.get (requests for the same account share one token.get). When authd is unreachable
 * a cached token that has not yet expired is still used. *ret_req (may be NULL) lets the caller
 * cancel (its client went away). */
int authd_client_token(struct authd_client *c, const char *account, authd_token_cb_t cb,
                       void *userdata, struct authd_token_req **ret_req);
/* The callback of a pending request will not be called. */
void authd_token_req_cancel(struct authd_token_req *req);

/* Drops the account's cached credential (the upstream answered 401 with it). */
void authd_client_invalidate(struct authd_client *c, const char *account);

/* The result of a usage.report: error 0 and authd's "stored" count once authd has the records
 * (they may be dropped then), -EBADMSG when authd refused them as malformed (sending them again
 * will not help), or another negative errno (busy, connection lost, no reply in time: send them
 * again). Called from the event loop, never from inside authd_client_usage_report(). */
typedef void (*authd_report_cb_t)(int error, int64_t stored, void *userdata);
/* Sends one usage.report frame holding records (a JSON array, borrowed; it must fit in one
 * frame). -ENOTCONN when the connection is not ready, -EMSGSIZE over 64 KiB. */
int authd_client_usage_report(struct authd_client *c, json_t *records, authd_report_cb_t cb,
                              void *userdata);
