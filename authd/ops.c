/* ops.c: authd's op handlers (docs/ipc.md, "Ops").
 *
 * One table names every op with the roles that may call it and its handler. A handler checks its
 * fields, then either replies at once (the store is local and fast) or hands the work to the
 * credential manager (cred.h) and replies from its callback; such a request is a struct
 * authd_pending on its connection, cancelled if the connection closes first. Every change that
 * moves the store's generation is announced by the caller (server.c) after the handler returns,
 * and by the callbacks here after theirs.
 *
 * Log lines name the op, the id and the account, never a secret and never a whole frame; user
 * strings reach the log only after they passed validation (account names, model names). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "authd.h"
#include "config.h"
#include "cred.h"
#include "log.h"
#include "oauth.h"
#include "prices.h"
#include "secret.h"
#include "store.h"
#include "util.h"

#define SETTING_DEFAULT_MODEL "default_model"
#define ALIAS_MAX 200 /* a .router-mappings.json name, as routerd's model-map.c allows */
#define IMPORT_MAX 1000
#define LOGINS_MAX 64
#define LOGIN_TTL_SEC 600
#define MEMBER_KEY_PREFIX "dr-"
#define MEMBER_KEY_BYTES 32
#define MEMBER_KEY_LEN 46         /* "dr-" and 43 characters of base64url */
#define TIME_MAX_SEC 253402300799 /* 9999-12-31T23:59:59Z: seconds that fit in microseconds */

struct authd_pending {
    struct authd_pending *prev, *next;
    struct authd_conn *conn;
    uint64_t id;
    const char *op; /* static */
    char *account;  /* validated, or NULL */
    char *login_id; /* login.finish */
    struct cred_op *cop;
};

struct authd_login {
    struct authd_login *next;
    char *login_id;
    char *account;
    int64_t expires_at;
};

/* --- helpers ---------------------------------------------------------------------------------- */

static struct authd_pending *pending_new(struct authd_conn *c, uint64_t id, const char *op,
                                         const char *account)
{
    struct authd_pending *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    if (account) {
        p->account = strdup(account);
        if (!p->account)
            return mfree(p);
    }
    p->conn = c;
    p->id = id;
    p->op = op;
    p->next = c->pending;
    if (c->pending)
        c->pending->prev = p;
    c->pending = p;
    c->n_pending++;
    return p;
}

static void pending_free(struct authd_pending *p)
{
    struct authd_conn *c = p->conn;

    if (p->prev)
        p->prev->next = p->next;
    else
        c->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    c->n_pending--;
    free(p->account);
    free(p->login_id);
    free(p);
}

void authd_ops_cancel_pending(struct authd_conn *c)
{
    while (c->pending) {
        struct authd_pending *p = c->pending;

        if (p->cop)
            cred_op_cancel(p->cop);
        log_debug("Connection %" PRIu64 ": op '%s' id %" PRIu64 " cancelled.", c->number, p->op,
                  p->id);
        pending_free(p);
    }
}

static struct authd_login *login_free(struct authd_login *l)
{
    if (l) {
        free(l->login_id);
        free(l->account);
        free(l);
    }
    return NULL;
}

void authd_ops_done(struct authd *a)
{
    while (a->logins) {
        struct authd_login *l = a->logins;
        a->logins = l->next;
        login_free(l);
    }
}

/* Removes the login session login_id from the table; returns its account (caller frees) or NULL.
 * Expired sessions go too. */
static char *login_take(struct authd *a, const char *login_id)
{
    int64_t now = (int64_t)(now_realtime_usec() / USEC_PER_SEC);
    char *account = NULL;

    for (struct authd_login **l = &a->logins; *l;) {
        struct authd_login *x = *l;

        if ((login_id && streq(x->login_id, login_id)) || x->expires_at < now) {
            if (login_id && streq(x->login_id, login_id) && !account)
                account = TAKE_PTR(x->account);
            *l = x->next;
            login_free(x);
        } else
            l = &x->next;
    }
    return account;
}

static void login_remember(struct authd *a, const char *login_id, const char *account,
                           int64_t expires_at)
{
    struct authd_login *l;
    size_t n = 0;

    free(login_take(a, NULL)); /* drops expired ones */
    for (l = a->logins; l; l = l->next)
        n++;
    if (n >= LOGINS_MAX) /* the oldest is last */
        for (struct authd_login **p = &a->logins; *p; p = &(*p)->next)
            if (!(*p)->next) {
                *p = login_free(*p);
                break;
            }
    l = calloc(1, sizeof *l);
    if (!l)
        return;
    l->login_id = strdup(login_id);
    l->account = strdup(account);
    l->expires_at =
        expires_at > 0 ? expires_at : (int64_t)(now_realtime_usec() / USEC_PER_SEC) + LOGIN_TTL_SEC;
    if (!l->login_id || !l->account) {
        login_free(l);
        return;
    }
    l->next = a->logins;
    a->logins = l;
}

/* The string field key of req, or NULL when it is absent, null or not a string. */
static const char *field_str(const json_t *req, const char *key)
{
    return json_string_value(json_object_get(req, key));
}

/* Like field_str(), but replies bad_request (and returns NULL) when the field is missing, not a
 * string or empty. */
static const char *require_str(struct authd_conn *c, uint64_t id, const json_t *req,
                               const char *key)
{
    json_t *v = json_object_get(req, key);

    if (!v || json_is_null(v)) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST, "Field '%s' is missing", key);
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field '%s' must be a non-empty string", key);
        return NULL;
    }
    return json_string_value(v);
}

static const char *require_account(struct authd_conn *c, uint64_t id, const json_t *req,
                                   const char *key)
{
    const char *name = require_str(c, id, req, key);

    if (name && !ipc_account_name_is_valid(name)) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field '%s' must be 1-64 characters of [a-z0-9_-]", key);
        return NULL;
    }
    return name;
}

static void reply_store_error(struct authd_conn *c, uint64_t id, int r, const char *what)
{
    log_error_errno(r, "Connection %" PRIu64 ": id %" PRIu64 ": %s failed: %s", c->number, id, what,
                    store_last_error(c->authd->store));
    (void)authd_conn_reply_error(c, id, r == -EBUSY ? IPC_ERROR_BUSY : IPC_ERROR_INTERNAL,
                                 "Database error while trying to %s; see authd's log", what);
}

/* The code for an error a cred_*() call returned at once. */
static const char *cred_errno_code(int r)
{
    switch (r) {
    case -ENOENT:
        return IPC_ERROR_NOT_FOUND;
    case -EEXIST:
        return IPC_ERROR_EXISTS;
    case -EINVAL:
        return IPC_ERROR_BAD_REQUEST;
    case -EBUSY:
    case -EAGAIN:
        return IPC_ERROR_BUSY;
    default:
        return IPC_ERROR_INTERNAL;
    }
}

static void reply_cred_error(struct authd_conn *c, uint64_t id, int r, const char *message)
{
    const char *code = cred_errno_code(r);

    if (streq(code, IPC_ERROR_INTERNAL))
        log_error_errno(r, "Connection %" PRIu64 ": id %" PRIu64 ": credential manager: %m",
                        c->number, id);
    if (message)
        (void)authd_conn_reply_error(c, id, code, "%s", message);
    else
        (void)authd_conn_reply_error(c, id, code, "The credential manager failed: %s",
                                     strerror(-r));
}

static void reply_cred_result(struct authd_conn *c, uint64_t id, const struct cred_result *res)
{
    const char *code = res->code && ipc_name_is_valid(res->code)
                           ? res->code
                           : ipc_error_code_from_errno(res->error);

    (void)authd_conn_reply_error(c, id, code, "%s",
                                 res->message ? res->message : "The operation failed");
}

static int64_t model_ok_len(const char *s, bool id)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > ALIAS_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (id) {
            /* routerd's model_map_id_is_valid(): [A-Za-z0-9._:@-] */
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || strchr("._:@-", ch)))
                return -1;
        } else if (ch <= ' ' || ch > '~') /* the store's rule for aliases */
            return -1;
    }
    return (int64_t)n;
}

static bool model_id_is_valid(const char *s)
{
    return model_ok_len(s, true) > 0;
}

static bool alias_is_valid(const char *s)
{
    return model_ok_len(s, false) > 0;
}

/* The current generation, or 0 after logging a failure. */
static uint64_t current_generation(struct authd *a)
{
    uint64_t g = 0;

    if (store_generation(a->store, &g) < 0)
        log_error("Failed to read the generation: %s", store_last_error(a->store));
    return g;
}

/* The account routes, as route.list, map.list and snapshot.get carry them. With no route at all
 * and exactly one account, that account serves every model: an implicit "*" route, marked so. */
static int add_routes(struct authd *a, json_t *reply)
{
    _cleanup_(map_entry_list_freep) struct map_entry *list = NULL;
    _cleanup_(account_record_list_freep) struct account_record *accounts = NULL;
    json_t *routes;
    size_t n = 0, n_accounts = 0;
    int r;

    r = store_route_list(a->store, &list, &n);
    if (r < 0)
        return r;
    routes = json_array();
    if (!routes)
        return -ENOMEM;
    if (json_object_set_new(reply, "routes", routes) < 0)
        return -ENOMEM;
    for (struct map_entry *m = list; m->alias; m++)
        if (json_array_append_new(
                routes, json_pack("{s:s,s:s}", "model", m->alias, "account", m->target)) < 0)
            return -ENOMEM;
    if (n > 0)
        return 0;
    r = store_account_list(a->store, &accounts, &n_accounts);
    if (r < 0)
        return r;
    if (n_accounts == 1 &&
        json_array_append_new(routes, json_pack("{s:s,s:s,s:b}", "model", "*", "account",
                                                accounts[0].name, "implicit", 1)) < 0)
        return -ENOMEM;
    return 0;
}

/* default_model, aliases and routes, as map.list and snapshot.get carry them, added to reply. */
static int add_mappings(struct authd *a, json_t *reply)
{
    _cleanup_(map_entry_list_freep) struct map_entry *list = NULL;
    _cleanup_free_ char *def = NULL;
    json_t *aliases;
    int r;

    r = store_setting_get(a->store, SETTING_DEFAULT_MODEL, &def);
    if (r < 0 && r != -ENOENT)
        return r;
    r = store_map_list(a->store, &list, NULL);
    if (r < 0)
        return r;
    aliases = json_object();
    if (!aliases)
        return -ENOMEM;
    for (struct map_entry *m = list; m->alias; m++)
        if (json_object_set_new(aliases, m->alias, json_string(m->target)) < 0) {
            json_decref(aliases);
            return -ENOMEM;
        }
    if (json_object_set_new(reply, "default_model", def ? json_string(def) : json_null()) < 0 ||
        json_object_set_new(reply, "aliases", aliases) < 0)
        return -ENOMEM;
    return add_routes(a, reply);
}

/* One entry of account.list and status; rec comes from store_account_list() (no secret). Returns
 * a new reference or NULL. */
static json_t *account_entry(struct authd *a, const struct account_record *rec)
{
    _cleanup_(account_record_freep) struct account_record *full = NULL;
    json_auto_t *config = NULL, *e = NULL;
    const char *state, *last_error = NULL, *auth;

    config = json_loads(rec->config ? rec->config : "{}", 0, NULL);
    auth = json_string_value(json_object_get(config, "auth"));
    if (!auth && rec->provider == ACCOUNT_PROVIDER_ANTHROPIC)
        auth = "api_key";

    state = cred_account_state(a->cred, rec->name, &last_error);
    if (rec->state == ACCOUNT_STATE_NEEDS_LOGIN)
        state = "needs_login";
    else if (rec->state == ACCOUNT_STATE_DISABLED) {
        state = "error";
        last_error = last_error ? last_error : "The account is disabled";
    } else if (!state)
        state = "ok";

    e = json_pack("{s:s, s:s, s:o, s:s}", "name", rec->name, "provider",
                  account_provider_to_string(rec->provider) ?: "unknown", "auth",
                  auth ? json_string(auth) : json_null(), "state", state);
    if (!e)
        return NULL;
    if (rec->token_expires_usec > 0)
        json_object_set_new(e, "expires_at",
                            json_integer((json_int_t)(rec->token_expires_usec / 1000000)));
    if (last_error)
        json_object_set_new(e, "last_error", json_string(last_error));
    /* The fingerprint needs the secret, which lists do not carry. */
    if (store_account_get(a->store, rec->name, &full) >= 0 && full->secret)
        json_object_set_new(e, "fingerprint", json_string(secret_fp(full->secret)));
    else
        json_object_set_new(e, "fingerprint", json_null());
    return TAKE_PTR(e);
}

static int accounts_array(struct authd *a, json_t **ret)
{
    _cleanup_(account_record_list_freep) struct account_record *list = NULL;
    json_auto_t *arr = json_array();
    int r;

    if (!arr)
        return -ENOMEM;
    r = store_account_list(a->store, &list, NULL);
    if (r < 0)
        return r;
    for (struct account_record *rec = list; rec->name; rec++) {
        json_t *e = account_entry(a, rec);

        if (!e || json_array_append_new(arr, e) < 0)
            return -ENOMEM;
    }
    *ret = TAKE_PTR(arr);
    return 0;
}

/* The entry of one account, by name; NULL if it cannot be read. */
static json_t *account_entry_by_name(struct authd *a, const char *name)
{
    _cleanup_(account_record_list_freep) struct account_record *list = NULL;

    if (store_account_list(a->store, &list, NULL) < 0)
        return NULL;
    for (struct account_record *rec = list; rec->name; rec++)
        if (streq(rec->name, name))
            return account_entry(a, rec);
    return NULL;
}

static json_t *reply_with_generation(struct authd *a, uint64_t id)
{
    json_t *reply = ipc_reply_ok(id);

    if (reply)
        json_object_set_new(reply, "generation", json_integer((json_int_t)current_generation(a)));
    return reply;
}

/* Unix seconds of the start of the current UTC month: what members' spend counts from. */
static int64_t month_start_at(void)
{
    time_t now = (time_t)(now_realtime_usec() / USEC_PER_SEC);
    struct tm tm;

    if (!gmtime_r(&now, &tm))
        return 0;
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm);
}

/* One member as member.list (for_router false) or snapshot.get (true) carries it. */
static json_t *member_entry(const struct member_record *m, bool for_router)
{
    json_auto_t *e =
        json_pack("{s:s, s:I}", "name", m->name, "spent_micro_usd", (json_int_t)m->spent_micro_usd);

    if (!e)
        return NULL;
    if (for_router) {
        if (json_object_set_new(e, "key_sha256", json_string(m->key_sha256)) < 0)
            return NULL;
    } else {
        char fp[9];

        memcpy(fp, m->key_sha256, 8);
        fp[8] = '\0';
        if (json_object_set_new(e, "key_fingerprint", json_string(fp)) < 0 ||
            json_object_set_new(e, "created_at",
                                json_integer((json_int_t)(m->created_usec / 1000000))) < 0)
            return NULL;
    }
    if (m->budget_micro_usd >= 0 &&
        json_object_set_new(e, "budget_micro_usd", json_integer(m->budget_micro_usd)) < 0)
        return NULL;
    if (m->rate_limit_rpm > 0 &&
        json_object_set_new(e, "rate_limit_rpm", json_integer(m->rate_limit_rpm)) < 0)
        return NULL;
    if (m->rate_limit_tpm > 0 &&
        json_object_set_new(e, "rate_limit_tpm", json_integer(m->rate_limit_tpm)) < 0)
        return NULL;
    if (m->models) {
        json_t *models = json_loads(m->models, 0, NULL);

        if (!json_is_array(models) || json_object_set_new(e, "models", models) < 0) {
            json_decref(models);
            return NULL;
        }
    }
    return TAKE_PTR(e);
}

static int members_array(struct authd *a, bool for_router, json_t **ret)
{
    _cleanup_(member_record_list_freep) struct member_record *list = NULL;
    json_auto_t *arr = json_array();
    int r;

    if (!arr)
        return -ENOMEM;
    r = store_member_list(a->store, month_start_at() * 1000000, &list, NULL);
    if (r < 0)
        return r;
    for (struct member_record *m = list; m->name; m++) {
        json_t *e = member_entry(m, for_router);

        if (!e || json_array_append_new(arr, e) < 0)
            return -ENOMEM;
    }
    *ret = TAKE_PTR(arr);
    return 0;
}

/* members, month_start_at and prices, as snapshot.get carries them. A prices_file that stopped
 * parsing since authd started (it was checked then) is logged and the built-in table is used. */
static int add_team(struct authd *a, json_t *reply)
{
    const char *path = a->cfg ? a->cfg->prices_file : NULL;
    json_t *members = NULL, *prices = NULL;
    char err[256];
    int r;

    r = members_array(a, true, &members);
    if (r < 0)
        return r;
    if (json_object_set_new(reply, "members", members) < 0 ||
        json_object_set_new(reply, "month_start_at", json_integer(month_start_at())) < 0)
        return -ENOMEM;
    r = prices_to_json(path, &prices, err, sizeof err);
    if (r < 0 && r != -ENOMEM) {
        log_error("prices_file: %s; using the built-in prices.", err);
        r = prices_to_json(NULL, &prices, err, sizeof err);
    }
    if (r < 0)
        return r;
    return json_object_set_new(reply, "prices", prices) < 0 ? -ENOMEM : 0;
}

/* --- ops -------------------------------------------------------------------------------------- */

static void op_hello(struct authd_conn *c, uint64_t id, json_t *req)
{
    json_t *sub = json_object_get(req, "subscribe"), *v;
    json_auto_t *reply = NULL, *subscribed = json_array();
    const char *client = field_str(req, "client");
    size_t i;

    if (sub && !json_is_null(sub) && !json_is_array(sub)) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'subscribe' must be an array of event names");
        return;
    }
    json_array_foreach (sub, i, v) {
        if (json_is_string(v) && streq(json_string_value(v), "generation") &&
            !c->subscribed_generation) {
            c->subscribed_generation = true;
            json_array_append_new(subscribed, json_string("generation"));
        }
    }
    if (client && ipc_name_is_valid(client) == false) {
        bool printable = strlen(client) <= 64;
        for (const char *p = client; printable && *p; p++)
            printable = *p > ' ' && *p <= '~';
        if (!printable)
            client = "(unprintable)";
    }
    log_debug("Connection %" PRIu64 ": hello from '%s'%s.", c->number, client ? client : "?",
              c->subscribed_generation ? ", subscribed to generation" : "");

    reply = ipc_reply_ok(id);
    if (!reply || !subscribed ||
        json_object_set_new(reply, "protocol", json_integer(IPC_PROTOCOL_VERSION)) < 0 ||
        json_object_set_new(reply, "authd_version", json_string(DUALROUTE_VERSION)) < 0 ||
        json_object_set_new(reply, "roles", ipc_roles_to_json(c->roles)) < 0 ||
        json_object_set_new(reply, "uid", json_integer((json_int_t)c->uid)) < 0 ||
        json_object_set_new(reply, "dev_mode", json_boolean(c->dev_mode)) < 0 ||
        json_object_set(reply, "subscribed", subscribed) < 0) {
        log_oom();
        return;
    }
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

static void op_status(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    json_auto_t *reply = ipc_reply_ok(id);
    json_t *accounts = NULL;
    int r;

    r = accounts_array(a, &accounts);
    if (r < 0) {
        reply_store_error(c, id, r, "list the accounts");
        return;
    }
    if (!reply || json_object_set_new(reply, "authd_version", json_string(DUALROUTE_VERSION)) < 0 ||
        json_object_set_new(reply, "started_at", json_integer(a->started_at)) < 0 ||
        json_object_set_new(reply, "generation", json_integer((json_int_t)current_generation(a))) <
            0 ||
        json_object_set_new(reply, "database", json_string(a->database_path)) < 0 ||
        json_object_set_new(reply, "connections", json_integer(a->n_conns)) < 0 ||
        json_object_set_new(reply, "accounts", accounts) < 0) {
        log_oom();
        return;
    }
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

/* What a page's envelope may add to a reply after its items are counted ("more", a cursor), with
 * room to spare; a continuation key of the page's own (usage.query's next_after) comes on top. */
#define PAGE_SLACK 256

/* Appends items[from], items[from + 1], ... (borrowed) to page, an array inside reply, while the
 * reply, plus slack bytes the caller will add, still fits in one frame. Returns the index of the
 * first item left out (the size of items when all went in); a return of from means not even one
 * fits. */
static size_t page_fill(const json_t *reply, json_t *page, const json_t *items, size_t from,
                        size_t slack)
{
    size_t used = json_dumpb(reply, NULL, 0, JSON_COMPACT) + slack, n = json_array_size(items);

    for (; from < n; from++) {
        json_t *item = json_array_get(items, from);
        size_t size = json_dumpb(item, NULL, 0, JSON_COMPACT) + 1; /* and a comma */

        if (used + size > IPC_FRAME_MAX || json_array_append(page, item) < 0)
            break;
        used += size;
    }
    return from;
}

static void snapshot_pages_drop(struct authd_conn *c)
{
    json_decref(c->snap_members);
    c->snap_members = NULL;
    c->snap_next = 0;
    c->snap_cursor[0] = '\0';
}

/* Sends reply (owned: the first page's fields, or a bare reply for a later page) with as many of
 * the connection's pending members as fit in one frame, and a cursor when some are left. */
static void snapshot_page_send(struct authd_conn *c, uint64_t id, json_t *reply)
{
    json_auto_t *r = reply;
    json_t *page = json_array();
    size_t n = json_array_size(c->snap_members);

    if (!r || !page || json_object_set_new(r, "members", page) < 0)
        return (void)log_oom();
    c->snap_next = page_fill(r, page, c->snap_members, c->snap_next, PAGE_SLACK);
    if (c->snap_next < n && json_array_size(page) == 0) {
        /* Not even one member fits next to the first page's fields. */
        snapshot_pages_drop(c);
        (void)authd_conn_reply_error(c, id, IPC_ERROR_TOO_LARGE,
                                     "A member does not fit in one snapshot page");
        return;
    }
    if (c->snap_next < n) {
        snprintf(c->snap_cursor, sizeof c->snap_cursor, "%" PRIu64 ".%zu", c->snap_serial,
                 c->snap_next);
        if (json_object_set_new(r, "more", json_true()) < 0 ||
            json_object_set_new(r, "cursor", json_string(c->snap_cursor)) < 0)
            return (void)log_oom();
    } else {
        snapshot_pages_drop(c);
        if (json_object_set_new(r, "more", json_false()) < 0)
            return (void)log_oom();
    }
    (void)authd_conn_send(c, TAKE_PTR(r));
}

/* The first page carries everything but members, and as many members as fit; each later page
 * only members, taken from the list made for the first, so every page belongs to the generation
 * the first one had. A new request without a cursor starts over. */
static void op_snapshot_get(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    json_t *cursor = json_object_get(req, "cursor");
    json_auto_t *reply = NULL;
    int r;

    if (cursor && !json_is_null(cursor)) {
        if (!json_is_string(cursor) || !c->snap_members ||
            !streq(json_string_value(cursor), c->snap_cursor)) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND,
                                         "Unknown snapshot cursor; start again without one");
            return;
        }
        reply = ipc_reply_ok(id);
        if (!reply || json_object_set_new(reply, "generation",
                                          json_integer((json_int_t)c->snap_generation)) < 0)
            return (void)log_oom();
        snapshot_page_send(c, id, TAKE_PTR(reply));
        return;
    }

    snapshot_pages_drop(c);
    reply = reply_with_generation(a, id);
    if (!reply)
        return (void)log_oom();
    r = add_mappings(a, reply);
    if (r < 0) {
        reply_store_error(c, id, r, "read the mappings");
        return;
    }
    r = add_team(a, reply);
    if (r < 0) {
        reply_store_error(c, id, r, "read the members");
        return;
    }
    c->snap_members = json_incref(json_object_get(reply, "members"));
    c->snap_generation = (uint64_t)json_integer_value(json_object_get(reply, "generation"));
    c->snap_serial++;
    snapshot_page_send(c, id, TAKE_PTR(reply));
}

static void on_token(const struct cred_result *res, void *userdata)
{
    struct authd_pending *p = userdata;
    struct authd_conn *c = p->conn;
    struct authd *a = c->authd;
    _cleanup_(account_record_freep) struct account_record *rec = NULL;
    json_auto_t *reply = NULL, *config = NULL;
    json_t *tok;
    bool is_key;

    p->cop = NULL;
    if (res->error < 0 || !res->token) {
        log_info("Connection %" PRIu64 ": token.get id %" PRIu64 " account '%s': %s.", c->number,
                 p->id, p->account, res->code ? res->code : "failed");
        reply_cred_result(c, p->id, res);
        goto done;
    }
    if (store_account_get(a->store, p->account, &rec) < 0) {
        (void)authd_conn_reply_error(c, p->id, IPC_ERROR_NOT_FOUND, "No account '%s'", p->account);
        goto done;
    }
    is_key = res->kind ? streq(res->kind, "api_key") : res->expires_at == 0;
    tok = json_stringn(res->token->data, res->token->len);
    reply = ipc_reply_ok(p->id);
    if (!tok || !reply) {
        json_decref(tok);
        (void)authd_conn_reply_error(c, p->id, IPC_ERROR_INTERNAL,
                                     "The credential could not be encoded");
        goto done;
    }
    json_object_set_new(reply, "account", json_string(p->account));
    json_object_set_new(reply, "provider",
                        json_string(account_provider_to_string(rec->provider) ?: "unknown"));
    json_object_set_new(reply, "kind", json_string(is_key ? "api_key" : "access_token"));
    json_object_set_new(reply, is_key ? "api_key" : "access_token", tok);
    if (!is_key)
        json_object_set_new(reply, "expires_at", json_integer(res->expires_at));
    if (rec->provider == ACCOUNT_PROVIDER_VERTEX) {
        config = json_loads(rec->config ? rec->config : "{}", 0, NULL);
        const char *project = json_string_value(json_object_get(config, "project"));
        const char *region = json_string_value(json_object_get(config, "region"));
        if (project)
            json_object_set_new(reply, "project", json_string(project));
        if (region)
            json_object_set_new(reply, "region", json_string(region));
    }
    log_debug("Connection %" PRIu64 ": token.get id %" PRIu64 " account '%s': %s %s.", c->number,
              p->id, p->account, is_key ? "api_key" : "access_token", secret_fp(res->token));
    (void)authd_conn_send(c, TAKE_PTR(reply));
done:
    pending_free(p);
}

typedef int (*account_op_t)(struct cred_manager *m, const char *account, cred_callback_t cb,
                            void *userdata, struct cred_op **ret_op);

/* Starts an asynchronous credential operation on the request's "account"; done() answers. */
static void start_account_op(struct authd_conn *c, uint64_t id, json_t *req, const char *op,
                             account_op_t fn, cred_callback_t done)
{
    const char *account = require_account(c, id, req, "account");
    struct authd_pending *p;
    int r;

    if (!account)
        return;
    p = pending_new(c, id, op, account);
    if (!p)
        return (void)log_oom();
    r = fn(c->authd->cred, account, done, p, &p->cop);
    if (r < 0) {
        pending_free(p);
        if (r == -ENOENT)
            (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No account '%s'", account);
        else
            reply_cred_error(c, id, r, NULL);
    }
}

static void op_token_get(struct authd_conn *c, uint64_t id, json_t *req)
{
    start_account_op(c, id, req, "token.get", cred_token_get, on_token);
}

static void op_account_list(struct authd_conn *c, uint64_t id, json_t *req)
{
    json_auto_t *reply = ipc_reply_ok(id);
    json_t *accounts = NULL;
    int r;

    r = accounts_array(c->authd, &accounts);
    if (r < 0) {
        reply_store_error(c, id, r, "list the accounts");
        return;
    }
    if (!reply || json_object_set_new(reply, "accounts", accounts) < 0)
        return (void)log_oom();
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

static void reply_account(struct authd_conn *c, uint64_t id, const char *name)
{
    json_auto_t *reply = ipc_reply_ok(id);
    json_t *e = account_entry_by_name(c->authd, name);

    if (!reply || !e) {
        json_decref(e);
        (void)authd_conn_reply_error(c, id, IPC_ERROR_INTERNAL, "Failed to read account '%s'",
                                     name);
        return;
    }
    json_object_set_new(reply, "account", e);
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

static void on_account_added(const struct cred_result *res, void *userdata)
{
    struct authd_pending *p = userdata;
    struct authd_conn *c = p->conn;

    p->cop = NULL;
    if (res->error < 0) {
        log_info("Connection %" PRIu64 ": account.add id %" PRIu64 " account '%s': %s.", c->number,
                 p->id, p->account, res->code ? res->code : "failed");
        reply_cred_result(c, p->id, res);
    } else {
        log_info("Added account '%s'.", p->account);
        reply_account(c, p->id, p->account);
    }
    pending_free(p);
    authd_announce_generation(c->authd);
}

static void op_account_add(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    const char *name, *provider, *auth, *key;
    _cleanup_(secret_freep) struct secret *s = NULL;
    struct authd_pending *p;
    int r;

    if (!(name = require_account(c, id, req, "name")) ||
        !(provider = require_str(c, id, req, "provider")) ||
        !(auth = require_str(c, id, req, "auth")))
        return;
    if (account_provider_from_string(provider) < 0) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'provider' must be 'anthropic' or 'vertex'");
        return;
    }

    if (streq(provider, "anthropic")) {
        /* An API key needs nothing from the network: stored as it is. */
        if (!streq(auth, "api_key")) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "Field 'auth' must be 'api_key' for provider 'anthropic'");
            return;
        }
        if (!(key = require_str(c, id, req, "api_key")))
            return;
        if (strlen(key) > STORE_SECRET_MAX) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "Field 'api_key' is longer than %d bytes",
                                         STORE_SECRET_MAX);
            return;
        }
        s = secret_new(key, strlen(key));
        if (!s)
            return (void)log_oom();
        r = store_account_add(a->store, name, ACCOUNT_PROVIDER_ANTHROPIC, "{\"auth\":\"api_key\"}",
                              s);
        if (r == -EEXIST) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_EXISTS, "Account '%s' exists", name);
            return;
        }
        if (r == -EINVAL) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "The store refused account '%s'", name);
            return;
        }
        if (r < 0) {
            reply_store_error(c, id, r, "add the account");
            return;
        }
        log_info("Added account '%s' (anthropic, api_key, fingerprint %s).", name, secret_fp(s));
        reply_account(c, id, name);
        return;
    }

    p = pending_new(c, id, "account.add", name);
    if (!p)
        return (void)log_oom();
    r = cred_account_add(a->cred, req, on_account_added, p, &p->cop);
    if (r < 0) {
        pending_free(p);
        if (r == -EEXIST)
            (void)authd_conn_reply_error(c, id, IPC_ERROR_EXISTS, "Account '%s' exists", name);
        else
            reply_cred_error(c, id, r, NULL);
    }
}

static void op_account_remove(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    const char *name = require_account(c, id, req, "name");
    int r;

    if (!name)
        return;
    r = store_account_remove(a->store, name);
    if (r == -ENOENT) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No account '%s'", name);
        return;
    }
    if (r < 0) {
        reply_store_error(c, id, r, "remove the account");
        return;
    }
    cred_account_forget(a->cred, name);
    log_info("Removed account '%s'.", name);
    (void)authd_conn_send(c, ipc_reply_ok(id));
}

static void op_login_start(struct authd_conn *c, uint64_t id, json_t *req)
{
    const char *account, *message = NULL, *login_id;
    json_auto_t *fields = NULL, *reply = NULL;
    int r;

    if (!(account = require_account(c, id, req, "account")) || !require_str(c, id, req, "provider"))
        return;
    r = cred_login_start(c->authd->cred, req, &fields, &message);
    if (r < 0) {
        reply_cred_error(c, id, r, message);
        return;
    }
    login_id = field_str(fields, "login_id");
    if (login_id)
        login_remember(c->authd, login_id, account,
                       json_integer_value(json_object_get(fields, "expires_at")));
    reply = ipc_reply_ok(id);
    if (!reply || json_object_update(reply, fields) < 0)
        return (void)log_oom();
    log_info("Login started for account '%s'.", account);
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

static void on_login_finished(const struct cred_result *res, void *userdata)
{
    struct authd_pending *p = userdata;
    struct authd_conn *c = p->conn;

    p->cop = NULL;
    if (res->error < 0) {
        log_info("Connection %" PRIu64 ": login.finish id %" PRIu64 ": %s.", c->number, p->id,
                 res->code ? res->code : "failed");
        reply_cred_result(c, p->id, res);
    } else {
        json_t *reply = ipc_reply_ok(p->id);

        log_info("Login finished for account '%s'.", p->account ? p->account : "?");
        if (reply)
            json_object_set_new(reply, "account",
                                p->account ? json_string(p->account) : json_null());
        (void)authd_conn_send(c, reply);
    }
    pending_free(p);
    authd_announce_generation(c->authd);
}

static void op_login_finish(struct authd_conn *c, uint64_t id, json_t *req)
{
    const char *login_id;
    _cleanup_free_ char *account = NULL;
    struct authd_pending *p;
    int r;

    if (!(login_id = require_str(c, id, req, "login_id")) || !require_str(c, id, req, "code") ||
        !require_str(c, id, req, "state"))
        return;
    account = login_take(c->authd, login_id);
    p = pending_new(c, id, "login.finish", account);
    if (!p)
        return (void)log_oom();
    r = cred_login_finish(c->authd->cred, req, on_login_finished, p, &p->cop);
    if (r < 0) {
        pending_free(p);
        reply_cred_error(c, id, r, r == -ENOENT ? "No such login session" : NULL);
    }
}

static void on_logout(const struct cred_result *res, void *userdata)
{
    struct authd_pending *p = userdata;
    struct authd_conn *c = p->conn;

    p->cop = NULL;
    if (res->error < 0)
        reply_cred_result(c, p->id, res);
    else {
        json_t *reply = ipc_reply_ok(p->id);

        log_info("Logged out account '%s' (revoked: %s).", p->account, res->revoked ? "yes" : "no");
        if (reply)
            json_object_set_new(reply, "revoked", json_boolean(res->revoked));
        (void)authd_conn_send(c, reply);
    }
    pending_free(p);
    authd_announce_generation(c->authd);
}

static void op_logout(struct authd_conn *c, uint64_t id, json_t *req)
{
    start_account_op(c, id, req, "logout", cred_logout, on_logout);
}

static void op_map_list(struct authd_conn *c, uint64_t id, json_t *req)
{
    json_auto_t *reply = ipc_reply_ok(id);
    int r;

    if (!reply)
        return (void)log_oom();
    r = add_mappings(c->authd, reply);
    if (r < 0) {
        reply_store_error(c, id, r, "read the mappings");
        return;
    }
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

static void op_map_set(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    json_t *def = json_object_get(req, "default_model");
    const char *name, *model;
    int r;

    if (def) {
        if (!json_is_null(def) && !model_id_is_valid(json_string_value(def))) {
            (void)authd_conn_reply_error(
                c, id, IPC_ERROR_BAD_REQUEST,
                "Field 'default_model' must be null or a model id (1-200 of [A-Za-z0-9._:@-])");
            return;
        }
        r = store_setting_set(a->store, SETTING_DEFAULT_MODEL, json_string_value(def));
        if (r < 0 && !(r == -ENOENT && json_is_null(def))) {
            reply_store_error(c, id, r, "set the default model");
            return;
        }
        log_info("Default model %s%s%s.", json_is_null(def) ? "unset" : "set to '",
                 json_is_null(def) ? "" : json_string_value(def), json_is_null(def) ? "" : "'");
    } else {
        if (!(name = require_str(c, id, req, "name")) ||
            !(model = require_str(c, id, req, "model")))
            return;
        if (!alias_is_valid(name)) {
            (void)authd_conn_reply_error(
                c, id, IPC_ERROR_BAD_REQUEST,
                "Field 'name' must be 1-200 printable ASCII characters without spaces");
            return;
        }
        if (!model_id_is_valid(model)) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "Field 'model' must be a model id (1-200 of "
                                         "[A-Za-z0-9._:@-])");
            return;
        }
        r = store_map_set(a->store, name, model);
        if (r < 0) {
            reply_store_error(c, id, r, "set the mapping");
            return;
        }
        log_info("Mapped '%s' to '%s'.", name, model);
    }
    (void)authd_conn_send(c, reply_with_generation(a, id));
}

static void op_map_unset(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    const char *name = require_str(c, id, req, "name");
    int r;

    if (!name)
        return;
    if (!alias_is_valid(name)) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No such mapping");
        return;
    }
    r = store_map_unset(a->store, name);
    if (r == -ENOENT) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No mapping for '%s'", name);
        return;
    }
    if (r < 0) {
        reply_store_error(c, id, r, "remove the mapping");
        return;
    }
    log_info("Unmapped '%s'.", name);
    (void)authd_conn_send(c, reply_with_generation(a, id));
}

static void op_route_list(struct authd_conn *c, uint64_t id, json_t *req)
{
    json_auto_t *reply = ipc_reply_ok(id);
    int r;

    if (!reply)
        return (void)log_oom();
    r = add_routes(c->authd, reply);
    if (r < 0) {
        reply_store_error(c, id, r, "read the routes");
        return;
    }
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

/* A route's model: an exact model id, a prefix pattern ending in '*', or "*". */
static bool route_model_is_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    _cleanup_free_ char *prefix = NULL;

    if (n == 0 || n > 200)
        return false;
    if (s[n - 1] != '*')
        return model_id_is_valid(s);
    if (n == 1)
        return true;
    prefix = strndup(s, n - 1);
    return prefix && model_id_is_valid(prefix);
}

static void op_route_set(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    _cleanup_(account_record_freep) struct account_record *rec = NULL;
    const char *model, *account;
    int r;

    if (!(model = require_str(c, id, req, "model")) ||
        !(account = require_account(c, id, req, "account")))
        return;
    if (!route_model_is_valid(model)) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'model' must be a model id, a prefix ending in '*' "
                                     "(claude-opus-*), or '*'");
        return;
    }
    r = store_account_get(a->store, account, &rec);
    if (r == -ENOENT) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No account '%s'", account);
        return;
    }
    if (r >= 0)
        r = store_route_set(a->store, model, account);
    if (r < 0) {
        reply_store_error(c, id, r, "set the route");
        return;
    }
    log_info("Route: '%s' is served by account '%s'.", model, account);
    (void)authd_conn_send(c, reply_with_generation(a, id));
}

static void op_route_unset(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    const char *model = require_str(c, id, req, "model");
    int r;

    if (!model)
        return;
    r = route_model_is_valid(model) ? store_route_unset(a->store, model) : -ENOENT;
    if (r == -ENOENT) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No route for '%s'", model);
        return;
    }
    if (r < 0) {
        reply_store_error(c, id, r, "remove the route");
        return;
    }
    log_info("Route for '%s' removed.", model);
    (void)authd_conn_send(c, reply_with_generation(a, id));
}

static void op_map_import(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    json_t *mappings = json_object_get(req, "mappings"), *replace = json_object_get(req, "replace");
    _cleanup_(map_entry_list_freep) struct map_entry *list = NULL;
    json_auto_t *reply = NULL;
    int64_t added = 0, changed = 0, removed = 0;
    const char *k;
    json_t *v;
    int r;

    if (!json_is_object(mappings)) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'mappings' must be an object of name: model id");
        return;
    }
    if (replace && !json_is_null(replace) && !json_is_boolean(replace)) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'replace' must be a boolean");
        return;
    }
    if (json_object_size(mappings) > IMPORT_MAX) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'mappings' has more than %d entries", IMPORT_MAX);
        return;
    }
    /* Checked as a whole first: a file with one bad entry is refused, never half applied. */
    json_object_foreach (mappings, k, v) {
        if (!alias_is_valid(k)) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "Mapping names must be 1-200 printable ASCII characters "
                                         "without spaces");
            return;
        }
        if (!model_id_is_valid(json_string_value(v))) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "The mapping of '%s' is not a model id (1-200 of "
                                         "[A-Za-z0-9._:@-])",
                                         k);
            return;
        }
    }
    r = store_map_list(a->store, &list, NULL);
    if (r < 0) {
        reply_store_error(c, id, r, "read the mappings");
        return;
    }
    json_object_foreach (mappings, k, v) {
        const char *target = json_string_value(v), *old = NULL;

        for (struct map_entry *m = list; m->alias; m++)
            if (streq(m->alias, k)) {
                old = m->target;
                break;
            }
        if (old && streq(old, target))
            continue;
        r = store_map_set(a->store, k, target);
        if (r < 0) {
            reply_store_error(c, id, r, "import the mappings");
            return;
        }
        if (old)
            changed++;
        else
            added++;
    }
    if (json_is_true(replace))
        for (struct map_entry *m = list; m->alias; m++) {
            if (json_object_get(mappings, m->alias))
                continue;
            r = store_map_unset(a->store, m->alias);
            if (r < 0 && r != -ENOENT) {
                reply_store_error(c, id, r, "import the mappings");
                return;
            }
            removed++;
        }
    log_info("Imported mappings: %" PRId64 " added, %" PRId64 " changed, %" PRId64 " removed.",
             added, changed, removed);
    reply = reply_with_generation(a, id);
    if (!reply)
        return (void)log_oom();
    json_object_set_new(reply, "added", json_integer(added));
    json_object_set_new(reply, "changed", json_integer(changed));
    json_object_set_new(reply, "removed", json_integer(removed));
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

/* --- members and usage ------------------------------------------------------------------------ */

static bool route_model_is_valid(const char *s);

/* A new member key ("dr-" and 32 random bytes in base64url) in key, and the lowercase hex of its
 * SHA-256 in sha. The caller wipes key. */
static int member_key_new(char key[static MEMBER_KEY_LEN + 1],
                          char sha[static MEMBER_KEY_SHA256_LEN + 1])
{
    uint8_t bytes[MEMBER_KEY_BYTES], md[EVP_MAX_MD_SIZE];
    _cleanup_free_ char *b64 = NULL;
    unsigned mdlen = 0;
    int r;

    r = random_bytes(bytes, sizeof bytes);
    if (r >= 0)
        r = oauth_base64url_encode(bytes, sizeof bytes, &b64);
    explicit_bzero(bytes, sizeof bytes);
    if (r < 0)
        return r;
    if (strlen(b64) + strlen(MEMBER_KEY_PREFIX) != MEMBER_KEY_LEN) {
        explicit_bzero(b64, strlen(b64));
        return -EINVAL;
    }
    memcpy(key, MEMBER_KEY_PREFIX, strlen(MEMBER_KEY_PREFIX));
    memcpy(key + strlen(MEMBER_KEY_PREFIX), b64, strlen(b64) + 1);
    explicit_bzero(b64, strlen(b64));
    if (EVP_Digest(key, MEMBER_KEY_LEN, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        explicit_bzero(key, MEMBER_KEY_LEN + 1);
        return -EIO;
    }
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(sha + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* Reads one optional limit of member.add / member.set into *v: absent leaves it, null sets none,
 * else an integer >= min. Replies bad_request and returns false when it is something else. */
static bool member_limit(struct authd_conn *c, uint64_t id, const json_t *req, const char *key,
                         int64_t min, int64_t none, int64_t *v)
{
    json_t *f = json_object_get(req, key);

    if (!f)
        return true;
    if (json_is_null(f)) {
        *v = none;
        return true;
    }
    if (!json_is_integer(f) || json_integer_value(f) < min) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field '%s' must be an integer >= %" PRId64 " or null", key,
                                     min);
        return false;
    }
    *v = json_integer_value(f);
    return true;
}

/* Applies the fields of member.add / member.set that are present in req to m. */
static bool member_fields(struct authd_conn *c, uint64_t id, const json_t *req,
                          struct member_record *m)
{
    json_t *models = json_object_get(req, "models"), *v;
    size_t i;

    if (!member_limit(c, id, req, "budget_micro_usd", 0, -1, &m->budget_micro_usd) ||
        !member_limit(c, id, req, "rate_limit_rpm", 1, 0, &m->rate_limit_rpm) ||
        !member_limit(c, id, req, "rate_limit_tpm", 1, 0, &m->rate_limit_tpm))
        return false;
    if (!models)
        return true;
    m->models = mfree(m->models);
    if (json_is_null(models))
        return true;
    if (!json_is_array(models) || json_array_size(models) == 0 ||
        json_array_size(models) > MEMBER_MODELS_MAX) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'models' must be an array of 1-%d model patterns, or "
                                     "null for every model",
                                     MEMBER_MODELS_MAX);
        return false;
    }
    json_array_foreach (models, i, v)
        if (!route_model_is_valid(json_string_value(v))) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "Field 'models[%zu]' must be a model id, a prefix "
                                         "ending in '*' (claude-sonnet-*), or '*'",
                                         i);
            return false;
        }
    m->models = json_dumps(models, JSON_COMPACT);
    if (!m->models) {
        log_oom();
        (void)authd_conn_reply_error(c, id, IPC_ERROR_INTERNAL, "Out of memory");
        return false;
    }
    return true;
}

/* Replies with the member (as member.list shows it) and, when key is not NULL, the new key. */
static void reply_member(struct authd_conn *c, uint64_t id, const char *name, const char *key)
{
    struct authd *a = c->authd;
    _cleanup_(member_record_freep) struct member_record *m = NULL;
    json_auto_t *reply = NULL;
    json_t *e;
    int r;

    r = store_member_get(a->store, name, month_start_at() * 1000000, &m);
    if (r < 0) {
        reply_store_error(c, id, r, "read the member");
        return;
    }
    reply = ipc_reply_ok(id);
    e = member_entry(m, false);
    if (!reply || !e || json_object_set_new(reply, "member", e) < 0 ||
        (key && json_object_set_new(reply, "key", json_stringn(key, MEMBER_KEY_LEN)) < 0)) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_INTERNAL, "Out of memory");
        return (void)log_oom();
    }
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

static const char *require_member(struct authd_conn *c, uint64_t id, const json_t *req)
{
    return require_account(c, id, req, "name"); /* the same rule as account names */
}

static void op_member_add(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    struct member_record m = {.budget_micro_usd = -1};
    char key[MEMBER_KEY_LEN + 1], fp[9];
    const char *name = require_member(c, id, req);
    int r;

    if (!name)
        return;
    m.name = (char *)name;
    if (!member_fields(c, id, req, &m))
        goto finish;
    r = member_key_new(key, m.key_sha256);
    if (r < 0) {
        log_error_errno(r, "Failed to make a member key: %m");
        (void)authd_conn_reply_error(c, id, IPC_ERROR_INTERNAL, "Could not make a key");
        goto finish;
    }
    secret_fp_buf(key, MEMBER_KEY_LEN, fp);
    r = store_member_add(a->store, &m);
    if (r == -EEXIST)
        (void)authd_conn_reply_error(c, id, IPC_ERROR_EXISTS, "Member '%s' exists already", name);
    else if (r == -EINVAL)
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST, "%s",
                                     store_last_error(a->store));
    else if (r < 0)
        reply_store_error(c, id, r, "add the member");
    else {
        log_info("Member '%s' added (key %s).", name, fp);
        reply_member(c, id, name, key);
    }
    explicit_bzero(key, sizeof key);
finish:
    free(m.models);
}

static void op_member_list(struct authd_conn *c, uint64_t id, json_t *req)
{
    json_auto_t *reply = ipc_reply_ok(id);
    json_t *members = NULL;
    int r;

    if (!reply)
        return (void)log_oom();
    r = members_array(c->authd, false, &members);
    if (r < 0) {
        reply_store_error(c, id, r, "list the members");
        return;
    }
    if (json_object_set_new(reply, "members", members) < 0)
        return (void)log_oom();
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

static void op_member_set(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    _cleanup_(member_record_freep) struct member_record *m = NULL;
    const char *name = require_member(c, id, req);
    int r;

    if (!name)
        return;
    r = store_member_get(a->store, name, 0, &m);
    if (r == -ENOENT) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No member '%s'", name);
        return;
    }
    if (r < 0) {
        reply_store_error(c, id, r, "read the member");
        return;
    }
    if (!member_fields(c, id, req, m))
        return;
    r = store_member_set_limits(a->store, m);
    if (r == -ENOENT) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No member '%s'", name);
        return;
    }
    if (r < 0) {
        reply_store_error(c, id, r, "change the member");
        return;
    }
    log_info("Member '%s' changed.", name);
    reply_member(c, id, name, NULL);
}

static void op_member_rotate(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    char key[MEMBER_KEY_LEN + 1], sha[MEMBER_KEY_SHA256_LEN + 1], fp[9];
    const char *name = require_member(c, id, req);
    int r;

    if (!name)
        return;
    r = member_key_new(key, sha);
    if (r < 0) {
        log_error_errno(r, "Failed to make a member key: %m");
        (void)authd_conn_reply_error(c, id, IPC_ERROR_INTERNAL, "Could not make a key");
        return;
    }
    secret_fp_buf(key, MEMBER_KEY_LEN, fp);
    r = store_member_set_key(a->store, name, sha);
    if (r == -ENOENT)
        (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No member '%s'", name);
    else if (r < 0)
        reply_store_error(c, id, r, "rotate the member's key");
    else {
        log_info("Member '%s' has a new key (%s).", name, fp);
        reply_member(c, id, name, key);
    }
    explicit_bzero(key, sizeof key);
}

static void op_member_remove(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    const char *name = require_member(c, id, req);
    int r;

    if (!name)
        return;
    r = store_member_remove(a->store, name);
    if (r == -ENOENT) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_NOT_FOUND, "No member '%s'", name);
        return;
    }
    if (r < 0) {
        reply_store_error(c, id, r, "remove the member");
        return;
    }
    log_info("Member '%s' removed.", name);
    (void)authd_conn_send(c, ipc_reply_ok(id));
}

/* An optional time field in Unix seconds; replies bad_request when it is not one. */
static bool time_field(struct authd_conn *c, uint64_t id, const json_t *req, const char *key,
                       int64_t *ret_usec)
{
    json_t *v = json_object_get(req, key);

    if (!v || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > TIME_MAX_SEC) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field '%s' must be Unix seconds (an integer >= 0)", key);
        return false;
    }
    *ret_usec = json_integer_value(v) * 1000000;
    return true;
}

static json_t *usage_row_json(const struct usage_row *u, bool with_key)
{
    json_t *o = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "requests", (json_int_t)u->requests, "input_tokens",
        (json_int_t)u->input, "output_tokens", (json_int_t)u->output, "cache_read_tokens",
        (json_int_t)u->cache_read, "cache_write_tokens", (json_int_t)u->cache_write,
        "cost_micro_usd", (json_int_t)u->cost_micro_usd, "errors", (json_int_t)u->errors);

    if (o && with_key &&
        json_object_set_new(o, "key", u->key ? json_string(u->key) : json_null()) < 0)
        return json_decref(o), NULL;
    return o;
}

static void op_usage_query(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    json_t *member_f = json_object_get(req, "member"), *group_f = json_object_get(req, "group_by");
    int64_t since = month_start_at() * 1000000, until = (int64_t)now_realtime_usec() + 1;
    enum usage_group group = USAGE_GROUP_MEMBER;
    json_t *after_f = json_object_get(req, "after");
    struct usage_row *rows = NULL, total = {};
    const char *member = NULL, *after = NULL;
    json_auto_t *reply = NULL, *all = NULL;
    json_t *arr;
    size_t n = 0, first = 0, next, key_max = 0;
    int r;

    if (!time_field(c, id, req, "since", &since) || !time_field(c, id, req, "until", &until))
        return;
    if (after_f && !json_is_null(after_f)) {
        after = json_string_value(after_f);
        if (!after) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "Field 'after' must be a string");
            return;
        }
    }
    if (member_f && !json_is_null(member_f)) {
        member = json_string_value(member_f);
        if (!member || !ipc_account_name_is_valid(member)) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "Field 'member' must be 1-64 characters of [a-z0-9_-]");
            return;
        }
    }
    if (group_f && !json_is_null(group_f)) {
        group = usage_group_from_string(json_string_value(group_f));
        if (group < 0) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "Field 'group_by' must be member, model, account or day");
            return;
        }
    }
    r = store_usage_query(a->store, group, since, until, member, &rows, &n);
    if (r < 0) {
        reply_store_error(c, id, r, "query the usage ledger");
        return;
    }
    reply = ipc_reply_ok(id);
    arr = json_array();
    all = json_array();
    if (!reply || !arr || !all || json_object_set_new(reply, "rows", arr) < 0)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        total.requests += rows[i].requests;
        total.input += rows[i].input;
        total.output += rows[i].output;
        total.cache_read += rows[i].cache_read;
        total.cache_write += rows[i].cache_write;
        total.cost_micro_usd += rows[i].cost_micro_usd;
        total.errors += rows[i].errors;
        /* Rows come sorted by key, null first: a page after a key starts past it. */
        if (after && (!rows[i].key || strcmp(rows[i].key, after) <= 0))
            first = i + 1;
        if (rows[i].key)
            key_max = MAX(key_max, strlen(rows[i].key));
    }
    for (size_t i = first; i < n; i++)
        if (json_array_append_new(all, usage_row_json(&rows[i], true)) < 0)
            goto oom;
    if (json_object_set_new(reply, "total", usage_row_json(&total, false)) < 0)
        goto oom;
    /* Room for "next_after" with a key escaped at worst (\u00XX for every byte). */
    next = first + page_fill(reply, arr, all, 0, PAGE_SLACK + 6 * key_max);
    if (next < n) {
        json_t *last = json_object_get(json_array_get(arr, json_array_size(arr) - 1), "key");

        if (next == first) {
            usage_rows_free(rows, n);
            (void)authd_conn_reply_error(c, id, IPC_ERROR_TOO_LARGE,
                                         "A usage row does not fit in one frame");
            return;
        }
        /* The null key sorts before every string, "" included. */
        if (json_object_set_new(reply, "more", json_true()) < 0 ||
            json_object_set_new(reply, "next_after",
                                json_string(json_is_string(last) ? json_string_value(last) : "")) <
                0)
            goto oom;
    } else if (json_object_set_new(reply, "more", json_false()) < 0)
        goto oom;
    usage_rows_free(rows, n);
    log_debug("Connection %" PRIu64 ": usage.query id %" PRIu64 ": rows %zu-%zu of %zu by %s.",
              c->number, id, first, next, n, usage_group_to_string(group));
    (void)authd_conn_send(c, TAKE_PTR(reply));
    return;
oom:
    usage_rows_free(rows, n);
    (void)authd_conn_reply_error(c, id, IPC_ERROR_INTERNAL, "Out of memory");
    log_oom();
}

/* Reads an integer field >= 0 (bounded by max) of record i; replies bad_request when it is not. */
static bool record_int(struct authd_conn *c, uint64_t id, const json_t *rec, size_t i,
                       const char *key, int64_t max, int64_t *ret)
{
    json_t *v = json_object_get(rec, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'records[%zu].%s' must be an integer in 0..%" PRId64, i,
                                     key, max);
        return false;
    }
    *ret = json_integer_value(v);
    return true;
}

static bool record_str(struct authd_conn *c, uint64_t id, const json_t *rec, size_t i,
                       const char *key, bool optional, const char **ret)
{
    json_t *v = json_object_get(rec, key);

    if (optional && (!v || json_is_null(v))) {
        *ret = NULL;
        return true;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'records[%zu].%s' must be a string of 1-256 bytes", i,
                                     key);
        return false;
    }
    *ret = json_string_value(v);
    return true;
}

static void op_usage_report(struct authd_conn *c, uint64_t id, json_t *req)
{
    struct authd *a = c->authd;
    json_t *records = json_object_get(req, "records"), *rec;
    _cleanup_free_ struct usage_record *u = NULL;
    json_auto_t *reply = NULL;
    size_t i, total, stored = 0;
    int r;

    if (!json_is_array(records)) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "Field 'records' must be an array");
        return;
    }
    total = json_array_size(records);
    u = calloc(total ? total : 1, sizeof *u);
    if (!u)
        return (void)log_oom();

    json_array_foreach (records, i, rec) {
        struct usage_record *x = &u[i];
        int64_t at_ms, status;

        if (!json_is_object(rec)) {
            (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                         "Field 'records[%zu]' must be an object", i);
            return;
        }
        if (!record_str(c, id, rec, i, "request_id", false, &x->request_id) ||
            !record_int(c, id, rec, i, "at_ms", INT64_MAX / 1000, &at_ms) ||
            !record_str(c, id, rec, i, "member", true, &x->member) ||
            !record_str(c, id, rec, i, "model", false, &x->model_upstream) ||
            !record_str(c, id, rec, i, "model_requested", true, &x->model_requested) ||
            !record_str(c, id, rec, i, "account", true, &x->account) ||
            !record_str(c, id, rec, i, "endpoint", false, &x->endpoint) ||
            !record_int(c, id, rec, i, "status", 999, &status) ||
            !record_int(c, id, rec, i, "input_tokens", INT64_MAX, &x->input) ||
            !record_int(c, id, rec, i, "output_tokens", INT64_MAX, &x->output) ||
            !record_int(c, id, rec, i, "cache_read_tokens", INT64_MAX, &x->cache_read) ||
            !record_int(c, id, rec, i, "cache_write_tokens", INT64_MAX, &x->cache_write) ||
            !record_int(c, id, rec, i, "latency_ms", INT64_MAX, &x->latency_ms) ||
            !record_int(c, id, rec, i, "cost_micro_usd", INT64_MAX, &x->cost_micro_usd))
            return;
        if (json_object_get(rec, "ttfb_ms") && !json_is_null(json_object_get(rec, "ttfb_ms")) &&
            !record_int(c, id, rec, i, "ttfb_ms", INT64_MAX, &x->ttfb_ms))
            return;
        if (!x->model_requested)
            x->model_requested = x->model_upstream;
        x->time_usec = at_ms * 1000;
        x->status = (int)status;
    }
    /* The ledger skips request_ids it holds (a frame re-sent after a lost reply, also across an
     * authd restart) and repeats within this frame. */
    r = store_usage_insert(a->store, u, total, &stored);
    if (r == -EINVAL) {
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST,
                                     "The store refused a record (text not UTF-8?)");
        return;
    }
    if (r < 0) {
        reply_store_error(c, id, r, "store usage records");
        return;
    }
    log_debug("Connection %" PRIu64 ": usage.report id %" PRIu64 ": %zu of %zu records stored.",
              c->number, id, stored, total);
    reply = ipc_reply_ok(id);
    if (!reply)
        return (void)log_oom();
    json_object_set_new(reply, "stored", json_integer((json_int_t)stored));
    (void)authd_conn_send(c, TAKE_PTR(reply));
}

/* --- dispatch --------------------------------------------------------------------------------- */

static const struct op {
    const char *name;
    unsigned roles; /* any of these may call it; 0: everyone */
    void (*run)(struct authd_conn *c, uint64_t id, json_t *req);
} op_table[] = {
    {"hello", 0, op_hello},
    {"status", IPC_ROLE_ROUTER | IPC_ROLE_ADMIN, op_status},
    {"snapshot.get", IPC_ROLE_ROUTER | IPC_ROLE_ADMIN, op_snapshot_get},
    {"token.get", IPC_ROLE_ROUTER, op_token_get},
    {"usage.report", IPC_ROLE_ROUTER, op_usage_report},
    {"account.list", IPC_ROLE_ADMIN, op_account_list},
    {"account.add", IPC_ROLE_ADMIN, op_account_add},
    {"account.remove", IPC_ROLE_ADMIN, op_account_remove},
    {"login.start", IPC_ROLE_ADMIN, op_login_start},
    {"login.finish", IPC_ROLE_ADMIN, op_login_finish},
    {"logout", IPC_ROLE_ADMIN, op_logout},
    {"map.list", IPC_ROLE_ADMIN, op_map_list},
    {"map.set", IPC_ROLE_ADMIN, op_map_set},
    {"map.unset", IPC_ROLE_ADMIN, op_map_unset},
    {"map.import", IPC_ROLE_ADMIN, op_map_import},
    {"route.list", IPC_ROLE_ADMIN, op_route_list},
    {"route.set", IPC_ROLE_ADMIN, op_route_set},
    {"route.unset", IPC_ROLE_ADMIN, op_route_unset},
    {"member.add", IPC_ROLE_ADMIN, op_member_add},
    {"member.list", IPC_ROLE_ADMIN, op_member_list},
    {"member.set", IPC_ROLE_ADMIN, op_member_set},
    {"member.rotate", IPC_ROLE_ADMIN, op_member_rotate},
    {"member.remove", IPC_ROLE_ADMIN, op_member_remove},
    {"usage.query", IPC_ROLE_ADMIN, op_usage_query},
};

void authd_ops_dispatch(struct authd_conn *c, const struct ipc_header *h, json_t *req)
{
    const char *account = field_str(req, "account") ?: field_str(req, "name");

    if (account && !ipc_account_name_is_valid(account))
        account = NULL;
    for (size_t i = 0; i < ELEMENTSOF(op_table); i++) {
        const struct op *op = &op_table[i];

        if (!streq(op->name, h->op))
            continue;
        log_debug("Connection %" PRIu64 ": op '%s' id %" PRIu64 "%s%s%s.", c->number, op->name,
                  h->id, account ? " account '" : "", account ? account : "", account ? "'" : "");
        if (op->roles && !(c->roles & op->roles)) {
            log_notice("Connection %" PRIu64 " (uid %u): op '%s' id %" PRIu64 " refused: role.",
                       c->number, (unsigned)c->uid, op->name, h->id);
            (void)authd_conn_reply_error(
                c, h->id, IPC_ERROR_FORBIDDEN, "Op '%s' needs the %s role", op->name,
                op->roles & IPC_ROLE_ROUTER
                    ? (op->roles & IPC_ROLE_ADMIN ? "router or admin" : "router")
                    : "admin");
            return;
        }
        op->run(c, h->id, req);
        return;
    }
    log_debug("Connection %" PRIu64 ": unknown op '%s' id %" PRIu64 ".", c->number, h->op, h->id);
    (void)authd_conn_reply_error(c, h->id, IPC_ERROR_UNKNOWN_OP, "Unknown op '%s'", h->op);
}
