/* cred.c: authd's credential manager (see cred.h).
 *
 * Three kinds of state live here, all in memory and all owned by struct cred_manager:
 *  - struct account: per vertex account, the cached access token (mirrored in the store so a
 *    restart reuses it), the refresh in flight (at most one: a struct fetch), the token.get
 *    operations waiting for it, the refresh timer and the failure count for backoff;
 *  - struct login_session: a PKCE login between login.start and login.finish (10 minutes, one
 *    use);
 *  - struct cred_op: one caller's pending operation. Every result reaches the caller through a
 *    defer event source, never from inside the call that started it nor from inside an HTTP
 *    completion, so a callback may start or cancel anything.
 *
 * The account's durable facts (provider, state, config, secret) are read from the store whenever
 * they are needed, so nothing here goes stale when ops.c changes the store. The config is a JSON
 * object: {"auth": "api_key" | "service_account" | "gcloud_adc" | "login" | "metadata",
 * "project", "region", "client_id"?}. The secret is the API key, the service-account key file,
 * or an authorized_user JSON object (gcloud's ADC file, or one we build after a login:
 * {"type":"authorized_user","client_id","client_secret","refresh_token"}); metadata accounts have
 * none.
 *
 * Log lines name the account, the grant, the HTTP status and the provider's error code, never a
 * token, code or key. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "ipc.h"
#include "log.h"
#include "macro.h"
#include "oauth.h"
#include "secret.h"
#include "store.h"
#include "util.h"

#define DEFAULT_REVOKE_URL "https://oauth2.googleapis.com/revoke"
#define DEFAULT_METADATA_URL "http://metadata.google.internal"
#define METADATA_TOKEN_PATH "/computeMetadata/v1/instance/service-accounts/default/token"
#define TOKEN_MIN_VALIDITY_USEC (60 * USEC_PER_SEC)
#define BACKOFF_BASE_USEC (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (5 * 60 * USEC_PER_SEC)
#define LOGIN_SESSION_USEC (10 * 60 * USEC_PER_SEC)
#define LOGIN_SESSIONS_MAX 64
#define LOGIN_ID_BYTES 16
#define ASSUMED_LIFETIME_USEC (3600 * USEC_PER_SEC) /* of a token read back from the store */
#define MESSAGE_MAX 256

enum auth_kind {
    AUTH_API_KEY,
    AUTH_SERVICE_ACCOUNT,
    AUTH_GCLOUD_ADC,
    AUTH_LOGIN,
    AUTH_METADATA,
    _AUTH_KIND_MAX,
    _AUTH_KIND_INVALID = -EINVAL,
};

static const char *const auth_kind_table[_AUTH_KIND_MAX] = {
    [AUTH_API_KEY] = "api_key",       [AUTH_SERVICE_ACCOUNT] = "service_account",
    [AUTH_GCLOUD_ADC] = "gcloud_adc", [AUTH_LOGIN] = "login",
    [AUTH_METADATA] = "metadata",
};

static enum auth_kind auth_kind_from_string(const char *s)
{
    for (size_t i = 0; s && i < _AUTH_KIND_MAX; i++)
        if (streq(auth_kind_table[i], s))
            return (enum auth_kind)i;
    return _AUTH_KIND_INVALID;
}

/* The grant's name for log lines. */
static const char *auth_kind_grant(enum auth_kind k)
{
    switch (k) {
    case AUTH_SERVICE_ACCOUNT:
        return "jwt-bearer";
    case AUTH_GCLOUD_ADC:
    case AUTH_LOGIN:
        return "refresh_token";
    case AUTH_METADATA:
        return "metadata";
    default:
        return "none";
    }
}

static bool auth_kind_has_refresh_token(enum auth_kind k)
{
    return k == AUTH_GCLOUD_ADC || k == AUTH_LOGIN;
}

/* An account's auth kind from its config text; an anthropic account without one has an API key. */
static enum auth_kind config_auth_kind(enum account_provider provider, const char *config)
{
    json_auto_t *j = config ? json_loads(config, 0, NULL) : NULL;
    const char *s = json_string_value(json_object_get(j, "auth"));

    if (!s)
        return provider == ACCOUNT_PROVIDER_ANTHROPIC ? AUTH_API_KEY : _AUTH_KIND_INVALID;
    return auth_kind_from_string(s);
}

struct fetch;
typedef void (*fetch_callback_t)(int r, const struct oauth_token *tok,
                                 const struct oauth_error *err, const char *message,
                                 void *userdata);

struct account {
    struct cred_manager *manager;
    struct account *next;
    char *name;
    struct secret *token; /* the cached access token, or NULL */
    uint64_t issued_usec, expires_usec;
    bool loaded;             /* the store's cached token was looked at */
    struct fetch *fetch;     /* the refresh in flight */
    struct cred_op *waiters; /* token.get ops waiting for it */
    sd_event_source *timer;  /* the next background refresh */
    unsigned failures;       /* refreshes failed in a row */
    uint64_t retry_usec;     /* CLOCK_REALTIME: no refresh on demand before this */
    bool error;              /* the last refresh failed */
    char last_error[MESSAGE_MAX];
};

struct login_session {
    struct login_session *next;
    char id[LOGIN_ID_BYTES * 2 + 1];
    char state[OAUTH_STATE_LEN + 1];
    struct oauth_pkce pkce;
    char *account, *client_id, *redirect_uri, *project, *region;
    struct secret *client_secret;
    uint64_t expires_usec; /* CLOCK_REALTIME */
};

enum op_kind {
    OP_TOKEN_GET,
    OP_ACCOUNT_ADD,
    OP_LOGIN_FINISH,
    OP_LOGOUT,
};

struct cred_op {
    struct cred_manager *manager;
    enum op_kind kind;
    struct cred_op *prev, *next;   /* manager->ops */
    struct account *account;       /* token.get: the account it waits on */
    struct cred_op *wprev, *wnext; /* account->waiters */
    cred_callback_t cb;
    void *userdata;
    struct fetch *fetch;       /* account.add, login.finish */
    struct http_request *http; /* logout's revocation */
    sd_event_source *defer;    /* set once the result is in */
    bool delivering;

    /* account.add and login.finish: what to store once the token came */
    char *name;
    enum account_provider provider;
    char *config;
    struct secret *secret;
    struct login_session *session; /* login.finish, owned */

    /* the result */
    int error;
    const char *code;
    char message[MESSAGE_MAX];
    struct secret *token;
    const char *token_kind;
    int64_t expires_at;
    bool revoked;
};

struct cred_manager {
    sd_event *event;
    struct store *store;
    struct http_client *http;
    char *auth_url, *token_url, *revoke_url, *metadata_url;
    struct account *accounts;
    struct cred_op *ops;
    struct login_session *sessions;
};

static uint64_t random_u64(void)
{
    uint64_t v = 0;

    (void)random_bytes(&v, sizeof(v));
    return v;
}

/* ---- operations ---- */

static struct cred_op *op_new(struct cred_manager *m, enum op_kind kind, cred_callback_t cb,
                              void *userdata)
{
    struct cred_op *op = calloc(1, sizeof(*op));

    if (!op)
        return NULL;
    op->manager = m;
    op->kind = kind;
    op->cb = cb;
    op->userdata = userdata;
    op->next = m->ops;
    if (op->next)
        op->next->prev = op;
    m->ops = op;
    return op;
}

static void fetch_cancel(struct fetch *f);

static void op_unwait(struct cred_op *op)
{
    struct account *a = op->account;

    if (!a)
        return;
    if (op->wprev)
        op->wprev->wnext = op->wnext;
    else
        a->waiters = op->wnext;
    if (op->wnext)
        op->wnext->wprev = op->wprev;
    op->account = NULL;
    op->wprev = op->wnext = NULL;
}

static void login_session_free(struct login_session *s);

static void op_free(struct cred_op *op)
{
    struct cred_manager *m;

    if (!op)
        return;
    m = op->manager;
    op_unwait(op);
    if (op->prev)
        op->prev->next = op->next;
    else
        m->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    fetch_cancel(op->fetch);
    http_request_cancel(op->http);
    sd_event_source_disable_unref(op->defer);
    free(op->name);
    free(op->config);
    secret_free(op->secret);
    login_session_free(op->session);
    secret_free(op->token);
    explicit_bzero(op->message, sizeof(op->message));
    free(op);
}

void cred_op_cancel(struct cred_op *op)
{
    if (!op || op->delivering)
        return;
    op_free(op);
}

static int op_on_defer(_unused_ sd_event_source *src, void *userdata)
{
    struct cred_op *op = userdata;
    struct cred_result res = {
        .error = op->error,
        .code = op->error < 0 ? op->code : NULL,
        .message = op->error < 0 ? op->message : NULL,
        .token = op->token,
        .kind = op->token_kind,
        .expires_at = op->expires_at,
        .revoked = op->revoked,
    };

    op->delivering = true;
    op->cb(&res, op->userdata);
    op_free(op);
    return 0;
}

/* Delivers the op's result from the event loop. */
static void op_finish(struct cred_op *op)
{
    int r;

    op_unwait(op);
    if (op->defer)
        return;
    r = sd_event_add_defer(op->manager->event, &op->defer, op_on_defer, op);
    if (r < 0)
        log_error_errno(r, "Failed to queue a credential result, dropping it: %m");
}

static void op_fail(struct cred_op *op, int error, const char *code, const char *format, ...)
    _printf_(4, 5);
static void op_fail(struct cred_op *op, int error, const char *code, const char *format, ...)
{
    va_list ap;

    op->error = error < 0 ? error : -EIO;
    op->code = code;
    va_start(ap, format);
    vsnprintf(op->message, sizeof(op->message), format, ap);
    va_end(ap);
    op_finish(op);
}

static void op_succeed_token(struct cred_op *op, const struct secret *token, const char *kind,
                             uint64_t expires_usec)
{
    op->token = secret_new(token->data, token->len);
    if (!op->token) {
        op_fail(op, -ENOMEM, IPC_ERROR_INTERNAL, "out of memory");
        return;
    }
    op->token_kind = kind;
    op->expires_at = (int64_t)(expires_usec / USEC_PER_SEC);
    op->error = 0;
    op_finish(op);
}

/* The caller's op, or the error for one that could not even be set up. */
static int op_return(struct cred_op *op, struct cred_op **ret_op)
{
    if (ret_op)
        *ret_op = op;
    return 0;
}

/* Reads the record of the account an operation names (account may be NULL). On failure fails op,
 * "no account" when there is none or the name is invalid, and returns the error; log_failure logs
 * a database error first. The caller then returns op_return(). */
static int op_account_get(struct cred_op *op, const char *account, bool log_failure,
                          struct account_record **ret)
{
    struct cred_manager *m = op->manager;
    int r;

    r = account ? store_account_get(m->store, account, ret) : -ENOENT;
    if (r == -ENOENT || r == -EINVAL) {
        op_fail(op, -ENOENT, IPC_ERROR_NOT_FOUND, "no account '%s'", account ?: "");
        return -ENOENT;
    }
    if (r < 0) {
        if (log_failure)
            log_error_errno(r, "Failed to read account '%s': %s", account,
                            store_last_error(m->store));
        op_fail(op, r, IPC_ERROR_INTERNAL, "cannot read the account");
        return r;
    }
    return 0;
}

/* ---- token fetches: one HTTP request to a token endpoint or the metadata server ---- */

struct fetch {
    struct cred_manager *manager;
    struct http_request *http;
    fetch_callback_t cb;
    void *userdata;
};

static void fetch_cancel(struct fetch *f)
{
    if (!f)
        return;
    http_request_cancel(f->http);
    free(f);
}

/* Describes a failed fetch in one line for the client and the log: the provider's error code and
 * HTTP status, or the transport's words. Never a secret: the oauth_error fields are sanitised. */
static void fetch_describe(int r, const struct oauth_error *err, const char *reason, char *out,
                           size_t n)
{
    if (reason)
        snprintf(out, n, "%s", reason);
    else if (err && err->error[0])
        snprintf(out, n, "the provider answered '%s'%s%s%s (HTTP %d)", err->error,
                 err->subtype[0] ? " (" : "", err->subtype, err->subtype[0] ? ")" : "",
                 err->http_status);
    else if (err && err->http_status > 0)
        snprintf(out, n, "the provider answered HTTP %d%s%s", err->http_status,
                 err->description[0] ? ": " : "", err->description);
    else
        snprintf(out, n, "%s", strerror(r < 0 ? -r : EIO));
}

static void fetch_on_http(const struct http_response *res, void *userdata)
{
    struct fetch *f = userdata;
    struct oauth_token tok = {};
    struct oauth_error err = {};
    char message[MESSAGE_MAX];
    int r;

    f->http = NULL;
    if (res->error < 0) {
        r = res->error;
        snprintf(message, sizeof(message), "token request failed: %s", res->reason);
        /* A transport failure is worth another try. */
        err.class = OAUTH_ERROR_RETRYABLE;
        f->cb(-EAGAIN, NULL, &err, message, f->userdata);
    } else {
        r = oauth_token_parse((int)res->status, res->body, res->body_len, now_realtime_usec(), &tok,
                              &err);
        if (r < 0) {
            err.http_status = (int)res->status;
            fetch_describe(r, &err, NULL, message, sizeof(message));
            f->cb(r, NULL, &err, message, f->userdata);
        } else
            f->cb(0, &tok, NULL, NULL, f->userdata);
    }
    oauth_token_done(&tok);
    free(f);
}

static int fetch_new(struct cred_manager *m, fetch_callback_t cb, void *userdata,
                     struct fetch **ret)
{
    struct fetch *f = calloc(1, sizeof(*f));

    if (!f)
        return -ENOMEM;
    f->manager = m;
    f->cb = cb;
    f->userdata = userdata;
    *ret = f;
    return 0;
}

static int fetch_post(struct cred_manager *m, const char *url, const struct secret *form,
                      fetch_callback_t cb, void *userdata, struct fetch **ret)
{
    struct fetch *f = NULL;
    int r;

    r = fetch_new(m, cb, userdata, &f);
    if (r < 0)
        return r;
    r = http_post_form(m->http, url, form, 0, fetch_on_http, f, &f->http);
    if (r < 0) {
        free(f);
        return r;
    }
    *ret = f;
    return 0;
}

/* Starts fetching an access token for a credential of kind k with secret s (borrowed; NULL for
 * the metadata server). Returns 0, -EINVAL for a credential that cannot be used (*reterr_message
 * says why), or -ENOMEM. */
static int fetch_token(struct cred_manager *m, enum auth_kind k, const struct secret *s,
                       fetch_callback_t cb, void *userdata, struct fetch **ret,
                       const char **reterr_message)
{
    struct oauth_credentials c = {};
    struct parse_error perr = {};
    _cleanup_(secret_freep) struct secret *assertion = NULL, *form = NULL;
    _cleanup_free_ char *url = NULL;
    struct fetch *f = NULL;
    int r;

    switch (k) {
    case AUTH_METADATA: {
        const char *const headers[] = {"Metadata-Flavor: Google", NULL};

        if (asprintf(&url, "%s%s", m->metadata_url, METADATA_TOKEN_PATH) < 0)
            return -ENOMEM;
        r = fetch_new(m, cb, userdata, &f);
        if (r < 0)
            return r;
        r = http_get(m->http, url, headers, 0, fetch_on_http, f, &f->http);
        if (r < 0) {
            free(f);
            return r;
        }
        *ret = f;
        return 0;
    }
    case AUTH_SERVICE_ACCOUNT:
    case AUTH_GCLOUD_ADC:
    case AUTH_LOGIN:
        break;
    default:
        *reterr_message = "the account has no refreshable credential";
        return -EINVAL;
    }

    if (!s) {
        *reterr_message = "the account has no stored credential";
        return -EINVAL;
    }
    r = oauth_credentials_parse(s->data, s->len, &c, &perr);
    if (r < 0) {
        *reterr_message = "the stored credential is not readable";
        return r == -ENOMEM ? r : -EINVAL;
    }
    if (k == AUTH_SERVICE_ACCOUNT) {
        if (c.type != OAUTH_CREDENTIALS_SERVICE_ACCOUNT) {
            *reterr_message = "the stored credential is not a service-account key";
            r = -EINVAL;
            goto finish;
        }
        r = oauth_service_account_assertion(&c, NULL, now_realtime_usec(), &assertion);
        if (r >= 0)
            r = oauth_token_request_jwt(assertion, &form);
        if (r < 0) {
            *reterr_message = "cannot sign the service account's assertion";
            goto finish;
        }
        r = fetch_post(m, m->token_url ?: c.token_uri ?: OAUTH_GOOGLE_TOKEN_URL, form, cb,
                       userdata, ret);
    } else {
        if (c.type != OAUTH_CREDENTIALS_AUTHORIZED_USER) {
            *reterr_message = "the stored credential is not an authorized_user credential";
            r = -EINVAL;
            goto finish;
        }
        r = oauth_token_request_refresh(c.refresh_token, c.client_id, c.client_secret, &form);
        if (r < 0) {
            *reterr_message = "cannot build the refresh request";
            goto finish;
        }
        r = fetch_post(m, m->token_url ?: OAUTH_GOOGLE_TOKEN_URL, form, cb, userdata, ret);
    }
finish:
    oauth_credentials_done(&c);
    return r;
}

/* ---- accounts in memory ---- */

static struct account *account_find(struct cred_manager *m, const char *name)
{
    for (struct account *a = m->accounts; a; a = a->next)
        if (streq(a->name, name))
            return a;
    return NULL;
}

static struct account *account_get(struct cred_manager *m, const char *name)
{
    struct account *a = account_find(m, name);

    if (a)
        return a;
    a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->name = strdup(name);
    if (!a->name)
        return mfree(a);
    a->manager = m;
    a->next = m->accounts;
    m->accounts = a;
    return a;
}

static void account_drop_token(struct account *a)
{
    a->token = secret_free(a->token);
    a->issued_usec = a->expires_usec = 0;
}

/* Answers every waiter with the same error. */
static void account_fail_waiters(struct account *a, int error, const char *code,
                                 const char *message)
{
    while (a->waiters)
        op_fail(a->waiters, error, code, "%s", message);
}

static void account_free(struct account *a)
{
    struct cred_manager *m = a->manager;

    for (struct account **p = &m->accounts; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    while (a->waiters)
        op_unwait(a->waiters);
    fetch_cancel(a->fetch);
    sd_event_source_disable_unref(a->timer);
    secret_free(a->token);
    free(a->name);
    free(a);
}

static int account_refresh(struct account *a);

static int account_on_timer(_unused_ sd_event_source *src, _unused_ uint64_t usec, void *userdata)
{
    struct account *a = userdata;

    a->timer = sd_event_source_disable_unref(a->timer);
    (void)account_refresh(a);
    return 0;
}

/* Arms the account's refresh timer delay_usec from now, replacing the previous one. */
static void account_schedule(struct account *a, uint64_t delay_usec)
{
    int r;

    a->timer = sd_event_source_disable_unref(a->timer);
    r = sd_event_add_time_relative(a->manager->event, &a->timer, CLOCK_MONOTONIC, delay_usec,
                                   10 * USEC_PER_MSEC, account_on_timer, a);
    if (r < 0)
        log_warning_errno(
            r, "Failed to schedule the refresh of account '%s', refreshing on demand: %m", a->name);
}

/* Schedules the refresh of the current token at its jittered refresh time. */
static void account_schedule_token(struct account *a)
{
    uint64_t now = now_realtime_usec(),
             at = oauth_refresh_at_jittered(a->issued_usec, a->expires_usec, random_u64());

    account_schedule(a, at > now ? at - now : 0);
}

/* Takes the store's cached token, the first time the account is looked at. */
static void account_load(struct account *a)
{
    _cleanup_(secret_freep) struct secret *token = NULL;
    int64_t expires = 0;
    uint64_t now = now_realtime_usec();

    if (a->loaded)
        return;
    a->loaded = true;
    if (store_token_get(a->manager->store, a->name, &token, &expires) < 0)
        return;
    if (expires <= 0 || (uint64_t)expires <= now)
        return;
    secret_free(a->token);
    a->token = TAKE_PTR(token);
    a->expires_usec = (uint64_t)expires;
    /* The store keeps no issue time; tokens usually live an hour. */
    a->issued_usec = a->expires_usec > ASSUMED_LIFETIME_USEC
                         ? MIN(now, a->expires_usec - ASSUMED_LIFETIME_USEC)
                         : now;
}

static bool account_token_fresh(const struct account *a)
{
    return a->token && a->expires_usec >= now_realtime_usec() + TOKEN_MIN_VALIDITY_USEC;
}

/* Keeps tok as the account's token, in memory and in the store. */
static void account_set_token(struct account *a, const struct oauth_token *tok)
{
    struct secret *copy = secret_new(tok->access_token->data, tok->access_token->len);
    int r;

    if (!copy) {
        log_oom();
        return;
    }
    secret_free(a->token);
    a->token = copy;
    a->issued_usec = tok->issued_usec;
    a->expires_usec = tok->expires_usec;
    a->loaded = true;
    a->failures = 0;
    a->retry_usec = 0;
    a->error = false;
    a->last_error[0] = 0;
    r = store_token_put(a->manager->store, a->name, a->token, (int64_t)a->expires_usec);
    if (r < 0)
        log_warning_errno(
            r, "Failed to cache the access token of account '%s', keeping it in memory only: %s",
            a->name, store_last_error(a->manager->store));
    account_schedule_token(a);
}

static void needs_login_message(const char *name, char *out, size_t n)
{
    snprintf(out, n, "account '%s' needs a new login: run 'dualroutectl login vertex --account %s'",
             name, name);
}

/* Marks the account needs-login in the store and forgets its tokens. */
static void account_mark_needs_login(struct account *a)
{
    struct store *s = a->manager->store;
    int r;

    account_drop_token(a);
    a->timer = sd_event_source_disable_unref(a->timer);
    a->error = false;
    a->failures = 0;
    a->retry_usec = 0;
    r = store_account_set_state(s, a->name, ACCOUNT_STATE_NEEDS_LOGIN);
    if (r < 0)
        log_warning_errno(r, "Failed to mark account '%s' needs-login: %s", a->name,
                          store_last_error(s));
    r = store_token_put(s, a->name, NULL, 0);
    if (r < 0 && r != -ENOENT)
        log_debug_errno(r, "Failed to drop the cached token of account '%s': %m", a->name);
}

/* After a failed refresh: remember why and retry later, with exponential backoff and jitter. */
static void account_backoff(struct account *a, const char *message)
{
    uint64_t delay =
        oauth_backoff_usec(a->failures, BACKOFF_BASE_USEC, BACKOFF_MAX_USEC, random_u64());

    a->failures++;
    a->error = true;
    snprintf(a->last_error, sizeof(a->last_error), "%s", message);
    a->retry_usec = now_realtime_usec() + delay;
    log_warning("Failed to refresh the token of account '%s': %s, retrying in %.1fs", a->name,
                message, (double)delay / USEC_PER_SEC);
    account_schedule(a, delay);
}

static void account_on_fetched(int r, const struct oauth_token *tok, const struct oauth_error *err,
                               const char *message, void *userdata)
{
    struct account *a = userdata;
    char text[MESSAGE_MAX];

    a->fetch = NULL;
    if (r >= 0) {
        log_info("Refreshed the access token of account '%s', valid for %" PRIu64 "s", a->name,
                 tok->lifetime_usec / USEC_PER_SEC);
        account_set_token(a, tok);
        while (a->waiters)
            op_succeed_token(a->waiters, a->token, "access_token", a->expires_usec);
        return;
    }
    if (err && err->class == OAUTH_ERROR_NEEDS_LOGIN) {
        log_warning("Token endpoint refused the grant of account '%s': %s; the account needs a "
                    "new login",
                    a->name, message);
        account_mark_needs_login(a);
        needs_login_message(a->name, text, sizeof(text));
        snprintf(a->last_error, sizeof(a->last_error), "%s", message);
        account_fail_waiters(a, -EKEYREJECTED, IPC_ERROR_NEEDS_LOGIN, text);
        return;
    }
    account_backoff(a, message);
    snprintf(text, sizeof(text), "cannot get a token for account '%s': %s", a->name, message);
    account_fail_waiters(a, -EAGAIN, IPC_ERROR_UNAVAILABLE, text);
}

/* Starts the account's refresh unless one is in flight. On failure the waiters are answered and
 * the error is returned. */
static int account_refresh(struct account *a)
{
    struct cred_manager *m = a->manager;
    _cleanup_(account_record_freep) struct account_record *rec = NULL;
    const char *why = "cannot start the refresh";
    char text[MESSAGE_MAX];
    enum auth_kind k;
    int r;

    if (a->fetch)
        return 0;
    r = store_account_get(m->store, a->name, &rec);
    if (r == -ENOENT) {
        snprintf(text, sizeof(text), "no account '%s'", a->name);
        account_fail_waiters(a, r, IPC_ERROR_NOT_FOUND, text);
        return r;
    }
    if (r < 0) {
        log_error_errno(r, "Failed to read account '%s': %s", a->name, store_last_error(m->store));
        account_fail_waiters(a, r, IPC_ERROR_INTERNAL, "cannot read the account");
        return r;
    }
    if (rec->state == ACCOUNT_STATE_NEEDS_LOGIN) {
        needs_login_message(a->name, text, sizeof(text));
        account_fail_waiters(a, -EKEYREJECTED, IPC_ERROR_NEEDS_LOGIN, text);
        return -EKEYREJECTED;
    }
    k = config_auth_kind(rec->provider, rec->config);
    r = fetch_token(m, k, rec->secret, account_on_fetched, a, &a->fetch, &why);
    if (r < 0) {
        snprintf(text, sizeof(text), "cannot refresh account '%s': %s", a->name, why);
        log_warning_errno(r, "Failed to refresh the token of account '%s': %s", a->name, why);
        a->error = true;
        snprintf(a->last_error, sizeof(a->last_error), "%s", why);
        account_fail_waiters(a, -EAGAIN, IPC_ERROR_UNAVAILABLE, text);
        return r;
    }
    log_debug("Refreshing the token of account '%s' (%s)", a->name, auth_kind_grant(k));
    return 0;
}

/* ---- the manager ---- */

int cred_manager_new(sd_event *e, struct store *s, const struct cred_endpoints *ep,
                     struct cred_manager **ret)
{
    struct cred_manager *m;
    int r;

    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->event = e;
    m->store = s;
    r = http_client_new(e, &m->http);
    if (r < 0)
        goto fail;
    r = -ENOMEM;
    m->auth_url = strdup(ep && ep->auth_url ? ep->auth_url : OAUTH_GOOGLE_AUTH_URL);
    /* NULL: a service account posts to its key file's token_uri, everything else to Google's. */
    m->token_url = ep && ep->token_url ? strdup(ep->token_url) : NULL;
    m->revoke_url = strdup(ep && ep->revoke_url ? ep->revoke_url : DEFAULT_REVOKE_URL);
    m->metadata_url = strdup(ep && ep->metadata_url ? ep->metadata_url : DEFAULT_METADATA_URL);
    if (!m->auth_url || !m->revoke_url || !m->metadata_url ||
        (ep && ep->token_url && !m->token_url))
        goto fail;
    *ret = m;
    return 0;
fail:
    cred_manager_free(m);
    return r;
}

int cred_manager_start(struct cred_manager *m)
{
    _cleanup_(account_record_list_freep) struct account_record *list = NULL;
    size_t n = 0;
    int r;

    r = store_account_list(m->store, &list, &n);
    if (r < 0)
        return log_error_errno(r, "Failed to list accounts: %s", store_last_error(m->store));
    for (size_t i = 0; i < n; i++) {
        enum auth_kind k = config_auth_kind(list[i].provider, list[i].config);
        struct account *a;

        if (list[i].state != ACCOUNT_STATE_OK || k < 0 || k == AUTH_API_KEY)
            continue;
        a = account_get(m, list[i].name);
        if (!a)
            return log_oom();
        account_load(a);
        if (account_token_fresh(a))
            account_schedule_token(a);
        else /* spread the start-up refreshes over a second */
            account_schedule(a, random_u64() % USEC_PER_SEC);
    }
    return 0;
}

static void login_session_free(struct login_session *s)
{
    if (!s)
        return;
    oauth_pkce_done(&s->pkce);
    explicit_bzero(s->state, sizeof(s->state));
    free(s->account);
    free(s->client_id);
    free(s->redirect_uri);
    free(s->project);
    free(s->region);
    secret_free(s->client_secret);
    free(s);
}

struct cred_manager *cred_manager_free(struct cred_manager *m)
{
    if (!m)
        return NULL;
    while (m->ops)
        op_free(m->ops);
    while (m->accounts)
        account_free(m->accounts);
    while (m->sessions) {
        struct login_session *s = m->sessions;

        m->sessions = s->next;
        login_session_free(s);
    }
    http_client_free(m->http);
    free(m->auth_url);
    free(m->token_url);
    free(m->revoke_url);
    free(m->metadata_url);
    free(m);
    return NULL;
}

/* ---- token.get ---- */

int cred_token_get(struct cred_manager *m, const char *account, cred_callback_t cb, void *userdata,
                   struct cred_op **ret_op)
{
    _cleanup_(account_record_freep) struct account_record *rec = NULL;
    struct cred_op *op;
    struct account *a;
    char text[MESSAGE_MAX];
    enum auth_kind k;
    int r;

    op = op_new(m, OP_TOKEN_GET, cb, userdata);
    if (!op)
        return -ENOMEM;
    r = op_account_get(op, account, true, &rec);
    if (r < 0)
        return op_return(op, ret_op);
    if (rec->state == ACCOUNT_STATE_NEEDS_LOGIN) {
        needs_login_message(account, text, sizeof(text));
        op_fail(op, -EKEYREJECTED, IPC_ERROR_NEEDS_LOGIN, "%s", text);
        return op_return(op, ret_op);
    }
    if (rec->state == ACCOUNT_STATE_DISABLED) {
        op_fail(op, -EAGAIN, IPC_ERROR_UNAVAILABLE, "account '%s' is disabled", account);
        return op_return(op, ret_op);
    }
    k = config_auth_kind(rec->provider, rec->config);
    if (k == AUTH_API_KEY) {
        if (!rec->secret) {
            op_fail(op, -EAGAIN, IPC_ERROR_UNAVAILABLE, "account '%s' has no API key", account);
            return op_return(op, ret_op);
        }
        op_succeed_token(op, rec->secret, "api_key", 0);
        return op_return(op, ret_op);
    }

    a = account_get(m, account);
    if (!a) {
        op_free(op);
        return -ENOMEM;
    }
    account_load(a);
    if (account_token_fresh(a)) {
        op_succeed_token(op, a->token, "access_token", a->expires_usec);
        return op_return(op, ret_op);
    }
    if (!a->fetch && a->retry_usec > now_realtime_usec()) {
        /* Backing off: the endpoint failed a moment ago; the timer retries. */
        op_fail(op, -EAGAIN, IPC_ERROR_UNAVAILABLE, "cannot get a token for account '%s': %s",
                account, a->last_error);
        return op_return(op, ret_op);
    }

    op->account = a;
    op->wnext = a->waiters;
    if (op->wnext)
        op->wnext->wprev = op;
    a->waiters = op;
    (void)account_refresh(a); /* on failure it has answered the waiters */
    return op_return(op, ret_op);
}

void cred_account_forget(struct cred_manager *m, const char *account)
{
    struct account *a = account ? account_find(m, account) : NULL;
    char text[MESSAGE_MAX];

    if (!a)
        return;
    snprintf(text, sizeof(text), "no account '%s'", account);
    account_fail_waiters(a, -ENOENT, IPC_ERROR_NOT_FOUND, text);
    account_free(a);
}

const char *cred_account_state(struct cred_manager *m, const char *account,
                               const char **ret_last_error)
{
    _cleanup_(account_record_freep) struct account_record *rec = NULL;
    struct account *a = account ? account_find(m, account) : NULL;
    const char *last = a && a->last_error[0] ? a->last_error : NULL;

    if (ret_last_error)
        *ret_last_error = NULL;
    if (a && a->fetch)
        return "refreshing";
    if (account && store_account_get(m->store, account, &rec) >= 0 &&
        rec->state == ACCOUNT_STATE_NEEDS_LOGIN) {
        if (ret_last_error)
            *ret_last_error = last;
        return "needs_login";
    }
    if (a && a->error) {
        if (ret_last_error)
            *ret_last_error = last;
        return "error";
    }
    return "ok";
}

/* ---- account.add ---- */

static const char *json_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool str_nonempty(const char *s)
{
    return s && *s;
}

/* Builds the account's config text. Returns NULL on allocation failure. */
static char *config_build(enum auth_kind k, const char *project, const char *region,
                          const char *client_id)
{
    json_auto_t *j = json_pack("{s:s}", "auth", auth_kind_table[k]);

    if (!j)
        return NULL;
    if ((project && json_object_set_new(j, "project", json_string(project)) < 0) ||
        (region && json_object_set_new(j, "region", json_string(region)) < 0) ||
        (client_id && json_object_set_new(j, "client_id", json_string(client_id)) < 0))
        return NULL;
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

/* Stores the account an op carries (account.add, login.finish) with the token it fetched. When
 * replace, an existing vertex account gets the new config and secret and state ok. Returns 0 or
 * fails the op. */
static int op_store_account(struct cred_op *op, const struct oauth_token *tok, bool replace)
{
    struct cred_manager *m = op->manager;
    _cleanup_(account_record_freep) struct account_record *old = NULL;
    struct account *a;
    int r;

    if (replace && store_account_get(m->store, op->name, &old) >= 0) {
        if (old->provider != op->provider) {
            op_fail(op, -EEXIST, IPC_ERROR_EXISTS, "account '%s' exists with another provider",
                    op->name);
            return -EEXIST;
        }
        r = store_account_set_config(m->store, op->name, op->config);
        if (r >= 0)
            r = store_account_set_secret(m->store, op->name, op->secret);
        if (r >= 0)
            r = store_account_set_state(m->store, op->name, ACCOUNT_STATE_OK);
    } else
        r = store_account_add(m->store, op->name, op->provider, op->config, op->secret);
    if (r == -EEXIST) {
        op_fail(op, r, IPC_ERROR_EXISTS, "account '%s' exists", op->name);
        return r;
    }
    if (r < 0) {
        log_error_errno(r, "Failed to store account '%s': %s", op->name,
                        store_last_error(m->store));
        op_fail(op, r, IPC_ERROR_INTERNAL, "cannot store the account");
        return r;
    }
    if (!tok)
        return 0;
    a = account_get(m, op->name);
    if (!a)
        return log_oom();
    account_set_token(a, tok);
    return 0;
}

static void add_on_fetched(int r, const struct oauth_token *tok,
                           _unused_ const struct oauth_error *err, const char *message,
                           void *userdata)
{
    struct cred_op *op = userdata;

    op->fetch = NULL;
    if (r < 0) {
        log_warning("Refusing account '%s': its credential did not yield a token: %s", op->name,
                    message);
        op_fail(op, -EPROTO, IPC_ERROR_UPSTREAM, "the credential was refused: %s", message);
        return;
    }
    if (op_store_account(op, tok, false) < 0)
        return;
    log_info("Added vertex account '%s'", op->name);
    op->error = 0;
    op_finish(op);
}

/* Checks req for account.add and fills op. Returns 0, or -EINVAL with *ret_message. */
static int add_parse(struct cred_op *op, const json_t *req, enum auth_kind *ret_kind,
                     const char **ret_message)
{
    const char *name = json_str(req, "name"), *provider = json_str(req, "provider"),
               *auth = json_str(req, "auth"), *project = json_str(req, "project"),
               *region = json_str(req, "region"), *text = NULL;
    struct oauth_credentials c = {};
    struct parse_error perr = {};
    enum account_provider p;
    enum auth_kind k;
    int r;

    if (!name || !ipc_account_name_is_valid(name))
        return *ret_message = "name: 1-64 of [a-z0-9_-]", -EINVAL;
    p = provider ? account_provider_from_string(provider) : _ACCOUNT_PROVIDER_INVALID;
    if (p < 0)
        return *ret_message = "provider: must be 'anthropic' or 'vertex'", -EINVAL;
    k = auth ? auth_kind_from_string(auth)
             : (p == ACCOUNT_PROVIDER_ANTHROPIC ? AUTH_API_KEY : _AUTH_KIND_INVALID);
    if (p == ACCOUNT_PROVIDER_ANTHROPIC && k != AUTH_API_KEY)
        return *ret_message = "auth: anthropic accounts use 'api_key'", -EINVAL;
    if (p == ACCOUNT_PROVIDER_VERTEX && k != AUTH_SERVICE_ACCOUNT && k != AUTH_GCLOUD_ADC &&
        k != AUTH_METADATA)
        return *ret_message =
                   "auth: vertex accounts use 'service_account', 'gcloud_adc' or 'metadata' "
                   "(or login.start)",
               -EINVAL;
    if ((project && !str_nonempty(project)) || (region && !str_nonempty(region)))
        return *ret_message = "project, region: must not be empty", -EINVAL;

    switch (k) {
    case AUTH_API_KEY:
        text = json_str(req, "api_key");
        if (!str_nonempty(text))
            return *ret_message = "api_key: missing", -EINVAL;
        break;
    case AUTH_SERVICE_ACCOUNT:
    case AUTH_GCLOUD_ADC:
        text = json_str(req, k == AUTH_SERVICE_ACCOUNT ? "service_account_json" : "adc_json");
        if (!str_nonempty(text))
            return *ret_message = k == AUTH_SERVICE_ACCOUNT ? "service_account_json: missing"
                                                            : "adc_json: missing",
                   -EINVAL;
        r = oauth_credentials_parse(text, strlen(text), &c, &perr);
        if (r == -ENOMEM)
            return r;
        if (r < 0 || c.type != (k == AUTH_SERVICE_ACCOUNT ? OAUTH_CREDENTIALS_SERVICE_ACCOUNT
                                                          : OAUTH_CREDENTIALS_AUTHORIZED_USER)) {
            oauth_credentials_done(&c);
            return *ret_message = k == AUTH_SERVICE_ACCOUNT
                                      ? "service_account_json: not a service-account key file"
                                      : "adc_json: not an authorized_user credentials file",
                   -EINVAL;
        }
        break;
    default:
        break;
    }
    if (p == ACCOUNT_PROVIDER_VERTEX) {
        const char *proj = project ?: c.project_id ?: c.quota_project_id;

        if (!str_nonempty(proj)) {
            oauth_credentials_done(&c);
            return *ret_message = "project: missing", -EINVAL;
        }
        if (!str_nonempty(region)) {
            oauth_credentials_done(&c);
            return *ret_message = "region: missing", -EINVAL;
        }
        op->config = config_build(k, proj, region, c.client_id);
    } else
        op->config = config_build(k, NULL, NULL, NULL);
    oauth_credentials_done(&c);
    op->name = strdup(name);
    op->provider = p;
    if (text)
        op->secret = secret_new(text, strlen(text));
    if (!op->config || !op->name || (text && !op->secret))
        return -ENOMEM;
    *ret_kind = k;
    return 0;
}

int cred_account_add(struct cred_manager *m, const json_t *req, cred_callback_t cb, void *userdata,
                     struct cred_op **ret_op)
{
    _cleanup_(account_record_freep) struct account_record *rec = NULL;
    const char *message = NULL, *why = NULL;
    struct cred_op *op;
    enum auth_kind k = _AUTH_KIND_INVALID;
    int r;

    op = op_new(m, OP_ACCOUNT_ADD, cb, userdata);
    if (!op)
        return -ENOMEM;
    r = add_parse(op, req, &k, &message);
    if (r == -ENOMEM) {
        op_free(op);
        return r;
    }
    if (r < 0) {
        op_fail(op, r, IPC_ERROR_BAD_REQUEST, "%s", message);
        return op_return(op, ret_op);
    }
    if (store_account_get(m->store, op->name, &rec) >= 0) {
        op_fail(op, -EEXIST, IPC_ERROR_EXISTS, "account '%s' exists", op->name);
        return op_return(op, ret_op);
    }
    if (k == AUTH_API_KEY) {
        if (op_store_account(op, NULL, false) >= 0) {
            log_info("Added anthropic account '%s'", op->name);
            op_finish(op);
        }
        return op_return(op, ret_op);
    }
    /* Vertex: try the credential once before storing it. */
    r = fetch_token(m, k, op->secret, add_on_fetched, op, &op->fetch, &why);
    if (r == -ENOMEM) {
        op_free(op);
        return r;
    }
    if (r < 0)
        op_fail(op, -EINVAL, IPC_ERROR_BAD_REQUEST, "%s", why);
    return op_return(op, ret_op);
}

/* ---- login.start / login.finish ---- */

static void sessions_expire(struct cred_manager *m)
{
    uint64_t now = now_realtime_usec();

    for (struct login_session **p = &m->sessions; *p;) {
        struct login_session *s = *p;

        if (s->expires_usec <= now) {
            *p = s->next;
            login_session_free(s);
        } else
            p = &s->next;
    }
}

int cred_login_start(struct cred_manager *m, const json_t *req, json_t **ret_reply,
                     const char **ret_message)
{
    const char *account = json_str(req, "account"), *provider = json_str(req, "provider"),
               *client_id = json_str(req, "client_id"),
               *client_secret = json_str(req, "client_secret"),
               *redirect_uri = json_str(req, "redirect_uri"), *project = json_str(req, "project"),
               *region = json_str(req, "region");
    struct login_session *s;
    _cleanup_free_ char *url = NULL;
    uint8_t id[LOGIN_ID_BYTES];
    size_t n = 0;
    json_t *reply;
    int r;

#define BAD(msg)                                                                                   \
    do {                                                                                           \
        if (ret_message)                                                                           \
            *ret_message = (msg);                                                                  \
        return -EINVAL;                                                                            \
    } while (0)
    if (!account || !ipc_account_name_is_valid(account))
        BAD("account: 1-64 of [a-z0-9_-]");
    if (!provider || !streq(provider, "vertex"))
        BAD("provider: must be 'vertex'");
    if (!str_nonempty(client_id))
        BAD("client_id: missing");
    if (!str_nonempty(client_secret))
        BAD("client_secret: missing");
    if (!str_nonempty(redirect_uri))
        BAD("redirect_uri: missing");
    if (!str_nonempty(project))
        BAD("project: missing");
    if (!str_nonempty(region))
        BAD("region: missing");
#undef BAD

    sessions_expire(m);
    for (struct login_session *i = m->sessions; i; i = i->next)
        n++;
    if (n >= LOGIN_SESSIONS_MAX) {
        if (ret_message)
            *ret_message = "too many login sessions in progress";
        return -EBUSY;
    }

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    r = random_bytes(id, sizeof(id));
    if (r >= 0)
        r = oauth_state_new(s->state);
    if (r >= 0)
        r = oauth_pkce_new(&s->pkce);
    if (r < 0) {
        login_session_free(s);
        return r;
    }
    for (size_t i = 0; i < sizeof(id); i++)
        snprintf(s->id + 2 * i, 3, "%02x", id[i]);
    s->account = strdup(account);
    s->client_id = strdup(client_id);
    s->client_secret = secret_new(client_secret, strlen(client_secret));
    s->redirect_uri = strdup(redirect_uri);
    s->project = strdup(project);
    s->region = strdup(region);
    s->expires_usec = now_realtime_usec() + LOGIN_SESSION_USEC;
    if (!s->account || !s->client_id || !s->client_secret || !s->redirect_uri || !s->project ||
        !s->region) {
        login_session_free(s);
        return -ENOMEM;
    }
    r = oauth_authorize_url(
        &(const struct oauth_authorize){
            .endpoint = m->auth_url,
            .client_id = client_id,
            .redirect_uri = redirect_uri,
            .scope = OAUTH_SCOPE_CLOUD_PLATFORM,
            .code_challenge = s->pkce.challenge,
            .state = s->state,
        },
        &url);
    if (r < 0) {
        login_session_free(s);
        if (r == -EINVAL && ret_message)
            *ret_message = "redirect_uri or client_id: not usable in an authorization URL";
        return r;
    }
    reply = json_pack("{s:s,s:s,s:I}", "login_id", s->id, "authorize_url", url, "expires_at",
                      (json_int_t)(s->expires_usec / USEC_PER_SEC));
    if (!reply) {
        login_session_free(s);
        return -ENOMEM;
    }
    s->next = m->sessions;
    m->sessions = s;
    log_info("Started a login for account '%s'", account);
    *ret_reply = reply;
    return 0;
}

/* The authorized_user JSON a login account keeps as its secret. */
static struct secret *login_secret_build(const struct login_session *s,
                                         const struct secret *refresh)
{
    json_auto_t *j = json_pack("{s:s,s:s,s:s%,s:s%}", "type", "authorized_user", "client_id",
                               s->client_id, "client_secret", s->client_secret->data,
                               s->client_secret->len, "refresh_token", refresh->data, refresh->len);
    char *text;
    struct secret *ret;

    if (!j)
        return NULL;
    text = json_dumps(j, JSON_COMPACT);
    if (!text)
        return NULL;
    ret = secret_new(text, strlen(text));
    explicit_bzero(text, strlen(text));
    free(text);
    return ret;
}

static void finish_on_fetched(int r, const struct oauth_token *tok,
                              _unused_ const struct oauth_error *err, const char *message,
                              void *userdata)
{
    struct cred_op *op = userdata;
    struct login_session *s = op->session;

    op->fetch = NULL;
    if (r < 0) {
        log_warning("Login for account '%s' failed at the token endpoint: %s", s->account, message);
        op_fail(op, -EPROTO, IPC_ERROR_UPSTREAM, "the token endpoint refused the code: %s",
                message);
        return;
    }
    if (!tok->refresh_token) {
        log_warning("Login for account '%s' got no refresh token", s->account);
        op_fail(op, -EPROTO, IPC_ERROR_UPSTREAM,
                "the token endpoint sent no refresh token (access_type=offline was not honoured)");
        return;
    }
    op->name = strdup(s->account);
    op->provider = ACCOUNT_PROVIDER_VERTEX;
    op->config = config_build(AUTH_LOGIN, s->project, s->region, s->client_id);
    op->secret = login_secret_build(s, tok->refresh_token);
    if (!op->name || !op->config || !op->secret) {
        op_fail(op, -ENOMEM, IPC_ERROR_INTERNAL, "out of memory");
        return;
    }
    if (op_store_account(op, tok, true) < 0)
        return;
    log_info("Logged in account '%s'", op->name);
    op->error = 0;
    op_finish(op);
}

int cred_login_finish(struct cred_manager *m, const json_t *req, cred_callback_t cb, void *userdata,
                      struct cred_op **ret_op)
{
    const char *login_id = json_str(req, "login_id"), *code = json_str(req, "code"),
               *state = json_str(req, "state");
    _cleanup_(secret_freep) struct secret *code_secret = NULL, *form = NULL;
    struct login_session *s = NULL;
    struct cred_op *op;
    int r;

    op = op_new(m, OP_LOGIN_FINISH, cb, userdata);
    if (!op)
        return -ENOMEM;
    if (!login_id || !str_nonempty(code) || !str_nonempty(state)) {
        op_fail(op, -EINVAL, IPC_ERROR_BAD_REQUEST,
                !login_id             ? "login_id: missing"
                : !str_nonempty(code) ? "code: missing"
                                      : "state: missing");
        return op_return(op, ret_op);
    }
    sessions_expire(m);
    /* One use: the session leaves the list whatever happens next. */
    for (struct login_session **p = &m->sessions; *p; p = &(*p)->next)
        if (streq((*p)->id, login_id)) {
            s = *p;
            *p = s->next;
            break;
        }
    if (!s) {
        op_fail(op, -ENOENT, IPC_ERROR_NOT_FOUND,
                "no login session '%s' (unknown, used or expired)", login_id);
        return op_return(op, ret_op);
    }
    op->session = s;
    if (!oauth_state_matches(s->state, state)) {
        log_warning("Login for account '%s': the redirect's state does not match, refusing it",
                    s->account);
        op_fail(op, -EINVAL, IPC_ERROR_BAD_REQUEST, "state: does not match the login session");
        return op_return(op, ret_op);
    }
    code_secret = secret_new(code, strlen(code));
    if (!code_secret) {
        op_free(op);
        return -ENOMEM;
    }
    r = oauth_token_request_code(code_secret, s->pkce.verifier, s->redirect_uri, s->client_id,
                                 s->client_secret, &form);
    if (r >= 0)
        r = fetch_post(m, m->token_url ?: OAUTH_GOOGLE_TOKEN_URL, form, finish_on_fetched, op,
                       &op->fetch);
    if (r == -ENOMEM) {
        op_free(op);
        return r;
    }
    if (r < 0)
        op_fail(op, r, IPC_ERROR_BAD_REQUEST, "code: not usable");
    return op_return(op, ret_op);
}

/* ---- logout ---- */

static void logout_on_revoked(const struct http_response *res, void *userdata)
{
    struct cred_op *op = userdata;

    op->http = NULL;
    op->revoked = res->error == 0 && res->status == 200;
    if (res->error < 0)
        log_warning("Failed to revoke the refresh token of account '%s': %s", op->name,
                    res->reason);
    else
        log_info("Revocation of account '%s': HTTP %ld", op->name, res->status);
    op->error = 0;
    op_finish(op);
}

int cred_logout(struct cred_manager *m, const char *account, cred_callback_t cb, void *userdata,
                struct cred_op **ret_op)
{
    _cleanup_(account_record_freep) struct account_record *rec = NULL;
    _cleanup_(secret_freep) struct secret *form = NULL;
    struct oauth_credentials c = {};
    struct parse_error perr = {};
    struct account *a;
    struct cred_op *op;
    char text[MESSAGE_MAX];
    enum auth_kind k;
    int r;

    op = op_new(m, OP_LOGOUT, cb, userdata);
    if (!op)
        return -ENOMEM;
    r = op_account_get(op, account, false, &rec);
    if (r < 0)
        return op_return(op, ret_op);
    op->name = strdup(account);
    if (!op->name) {
        op_free(op);
        return -ENOMEM;
    }
    k = config_auth_kind(rec->provider, rec->config);

    /* Build the revocation before the secret goes. */
    if (auth_kind_has_refresh_token(k) && rec->secret &&
        oauth_credentials_parse(rec->secret->data, rec->secret->len, &c, &perr) >= 0 &&
        c.refresh_token) {
        const struct oauth_param p[] = {{"token", c.refresh_token->data}};

        r = oauth_form_encode(p, ELEMENTSOF(p), &form);
        if (r < 0)
            log_warning_errno(r, "Failed to build the revocation of account '%s': %m", account);
    }
    oauth_credentials_done(&c);

    /* Forget the tokens here and in the store; the account needs a login from now on. */
    a = account_find(m, account);
    if (a) {
        fetch_cancel(a->fetch);
        a->fetch = NULL;
        account_mark_needs_login(a);
        a->last_error[0] = 0;
        needs_login_message(account, text, sizeof(text));
        account_fail_waiters(a, -EKEYREJECTED, IPC_ERROR_NEEDS_LOGIN, text);
    }
    r = store_token_put(m->store, account, NULL, 0);
    if (r >= 0 && auth_kind_has_refresh_token(k))
        r = store_account_set_secret(m->store, account, NULL);
    if (r >= 0)
        r = store_account_set_state(m->store, account, ACCOUNT_STATE_NEEDS_LOGIN);
    if (r < 0) {
        log_error_errno(r, "Failed to log out account '%s': %s", account,
                        store_last_error(m->store));
        op_fail(op, r, IPC_ERROR_INTERNAL, "cannot update the account");
        return op_return(op, ret_op);
    }
    log_info("Logged out account '%s'", account);

    if (form) {
        r = http_post_form(m->http, m->revoke_url, form, 0, logout_on_revoked, op, &op->http);
        if (r >= 0)
            return op_return(op, ret_op);
        log_warning_errno(r, "Failed to send the revocation of account '%s': %m", account);
    }
    op->revoked = false;
    op->error = 0;
    op_finish(op);
    return op_return(op, ret_op);
}
