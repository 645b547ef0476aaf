/* cred.h: authd's credential manager. It turns an account's stored secret into a credential
 * routerd can send upstream: an Anthropic API key as it is, a Vertex access token obtained from
 * Google's token endpoint (refresh_token grant for PKCE logins and gcloud ADC files, RFC 7523
 * jwt-bearer grant for service-account keys) or from the GCE metadata server. It caches access
 * tokens (in memory and in the store), refreshes them ahead of expiry (oauth_refresh_at_jittered)
 * with one refresh in flight per account, backs off exponentially on failure, and marks an account
 * needs-login when the provider answers invalid_grant. It also runs the PKCE login sessions
 * (login.start / login.finish) and logout's revocation.
 *
 * All HTTP goes through libcurl's multi interface on authd's sd-event loop: nothing here blocks.
 * Completion is reported through callbacks, which are never called from inside the function that
 * started the operation (they run from the event loop), so a caller may hold pointers across the
 * call. Every secret stays in struct secret and is wiped when dropped; log lines name the account
 * and the provider's error code, never a token. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "macro.h"

struct cred_manager;
struct cred_op; /* one pending asynchronous operation */
struct secret;
struct store;

/* Where the providers' endpoints are; every field may be NULL for Google's real one. Tests point
 * them at tests/fakes/oauth. */
struct cred_endpoints {
    const char *auth_url;     /* https://accounts.google.com/o/oauth2/v2/auth */
    const char *token_url;    /* https://oauth2.googleapis.com/token */
    const char *revoke_url;   /* https://oauth2.googleapis.com/revoke */
    const char *metadata_url; /* http://metadata.google.internal (no path) */
};

/* What a finished operation produced. Strings are borrowed for the duration of the callback. */
struct cred_result {
    int error;                  /* 0, or a negative errno */
    const char *code;           /* on error: an IPC error code (IPC_ERROR_NEEDS_LOGIN, ...) */
    const char *message;        /* on error: one line for the client, never a secret */
    const struct secret *token; /* token.get: the API key or access token */
    const char *kind;           /* token.get: "api_key" or "access_token" */
    int64_t expires_at;         /* token.get: Unix seconds, 0 for API keys */
    bool revoked;               /* logout: the provider confirmed the revocation */
};

typedef void (*cred_callback_t)(const struct cred_result *res, void *userdata);

/* Creates the manager on event loop e over store s (both borrowed; they outlive it). ep is copied.
 * Does not start anything; call cred_manager_start(). */
int cred_manager_new(sd_event *e, struct store *s, const struct cred_endpoints *ep,
                     struct cred_manager **ret);
/* Schedules the refresh of every account that has a refreshable credential, from the store. */
int cred_manager_start(struct cred_manager *m);
/* Cancels every pending operation (their callbacks are not called), wipes cached tokens, frees. */
struct cred_manager *cred_manager_free(struct cred_manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct cred_manager *, cred_manager_free);

/* A pending operation's callback will not be called; safe until the callback has run. */
void cred_op_cancel(struct cred_op *op);

/* The account's credential: an API key at once (still through the callback), a cached access token
 * valid for at least 60 more seconds, else the result of a refresh (joining the one in flight).
 * Errors: not_found, needs_login, unavailable (with the provider's words). *ret_op (may be NULL)
 * lets the caller cancel when its connection goes away. */
int cred_token_get(struct cred_manager *m, const char *account, cred_callback_t cb, void *userdata,
                   struct cred_op **ret_op);

/* Validates and stores a new account (account.add): provider "anthropic" with auth "api_key";
 * "vertex" with auth "service_account" (service_account_json), "gcloud_adc" (adc_json, an
 * authorized_user file) or "metadata". Vertex credentials are tried once (a token is fetched)
 * before the account is stored; a failure is reported with code "upstream" and nothing is stored.
 * req is the request object (borrowed for the call; the function copies what it needs and wipes
 * nothing in it). Errors: exists, bad_request (the message names the field), upstream. */
int cred_account_add(struct cred_manager *m, const json_t *req, cred_callback_t cb, void *userdata,
                     struct cred_op **ret_op);

/* Forgets the account's in-memory state (refresh timer, cached token, pending waiters get
 * not_found). Call after store_account_remove(). */
void cred_account_forget(struct cred_manager *m, const char *account);

/* The account's live state for status: "ok", "refreshing", "needs_login" or "error", and the last
 * error as one line (NULL if none). Pointers stay valid until the next event loop iteration. */
const char *cred_account_state(struct cred_manager *m, const char *account,
                               const char **ret_last_error);

/* login.start: creates a session (10 minutes, one use) with a fresh state and PKCE verifier for
 * req's account, provider "vertex", client_id, client_secret, redirect_uri, project, region. On
 * success *ret_reply gets the op fields of the reply: login_id, authorize_url, expires_at.
 * Errors are returned as -EINVAL (bad field; *ret_message names it) or -ENOMEM. */
int cred_login_start(struct cred_manager *m, const json_t *req, json_t **ret_reply,
                     const char **ret_message);

/* login.finish: checks state (constant time) against the session's, exchanges code with the
 * verifier at the token endpoint, and stores (or replaces) the account with the refresh token and
 * caches the access token. Errors: not_found (unknown, used or expired session), bad_request (state
 * mismatch), upstream (the token endpoint refused). */
int cred_login_finish(struct cred_manager *m, const json_t *req, cred_callback_t cb, void *userdata,
                      struct cred_op **ret_op);

/* logout: revokes the refresh token at the provider (best effort), drops the account's tokens and
 * secret where it is a refresh token, and sets it needs-login. res->revoked says whether the
 * provider confirmed. Errors: not_found. */
int cred_logout(struct cred_manager *m, const char *account, cred_callback_t cb, void *userdata,
                struct cred_op **ret_op);
