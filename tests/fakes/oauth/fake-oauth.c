/* fake-oauth.c: a fake Google authorization server, token endpoint, revocation endpoint and GCE
 * metadata server, for authd's tests.
 *
 * It speaks plain HTTP on loopback, prints "PORT=<n>" on stdout once listening, and runs until
 * SIGTERM or SIGINT. The OAuth side follows /work/shared/PROVIDERS.md section 2:
 *
 *   GET  /o/oauth2/v2/auth    the installed-app flow. Instead of a consent page it answers
 *                             302 Location: redirect_uri?state=..&code=..&scope=.. at once, so a
 *                             "fake browser" (curl) follows it to authd's loopback listener.
 *                             An unknown client or a redirect_uri the client may not use is a 400;
 *                             other errors go back to the redirect_uri as ?error=...
 *   POST /token               grant_type authorization_code (S256 PKCE, one-time codes),
 *                             refresh_token, and urn:ietf:params:oauth:grant-type:jwt-bearer
 *                             (RS256 assertions checked with the registered public key). Errors
 *                             have Google's shape {"error","error_description"}.
 *   POST /revoke              token=<refresh or access token>; revoking either revokes the grant
 *                             (the refresh token and every access token minted from it).
 *   GET  /computeMetadata/v1/...   the metadata server's token, email, scopes and project-id,
 *                             403 without "Metadata-Flavor: Google".
 *
 * Tests set it up and inspect it under /_fake/: clients, service accounts, seeded refresh tokens
 * (for ADC authorized_user files), behaviour switches (token lifetime, injected failures,
 * delays), the list of issued tokens (so a test can check what routerd sent upstream) and a
 * record of every request, secrets included: this is a test fake.
 *
 * libmicrohttpd runs a thread per connection; all state sits in JSON objects behind one mutex.
 * A delay is a poll() on a pipe that fake_serve() writes at shutdown, so no wait outlives the
 * daemon. The command line, daemon start-up and the request record ring are in fake-common.c.
 * Not a real server: no TLS, no consent page, no per-user accounts beyond an e-mail address, and
 * id_tokens carry a fake signature nobody can verify. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "buf.h"
#include "fake-common.h"
#include "log.h"
#include "macro.h"
#include "secret.h"
#include "util.h"

#define BODY_MAX ((size_t)1024 * 1024)
#define DELAY_CAP_MS ((int64_t)10 * 60 * 1000)
#define CODE_LIFETIME_S 600
#define ID_TOKEN_LIFETIME_S 3600
#define JWT_MAX_LIFETIME_S 3600
#define JWT_CLOCK_SKEW_S 300
#define CONTENT_TYPE_JSON "application/json; charset=utf-8"
#define CONTENT_TYPE_TEXT "text/plain; charset=utf-8"
#define JWT_BEARER_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define DEFAULT_METADATA_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define DEFAULT_SEEDED_SCOPE "https://www.googleapis.com/auth/cloud-platform openid email"
#define INVALID_GRANT_REVOKED "Token has been expired or revoked."
#define INVALID_JWT_TIME                                                                           \
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "  \
    "Check your iat and exp values in the JWT claim."

static struct fake_options arg_options;

/* The keys POST /_fake/config accepts, with their defaults. */
enum config_type {
    CONFIG_INT,
    CONFIG_BOOL,
    CONFIG_STRING,
    CONFIG_STRING_OR_NULL,
    _CONFIG_TYPE_MAX,
    _CONFIG_TYPE_INVALID = -EINVAL,
};

struct config_key {
    const char *name;
    enum config_type type;
    int64_t min, max;    /* CONFIG_INT only */
    int64_t int_default; /* CONFIG_INT and CONFIG_BOOL */
    const char *string_default;
};

static const struct config_key config_keys[] = {
    {"access_token_lifetime_s", CONFIG_INT, 0, INT32_MAX, 3599, NULL},
    {"fail_next_token_requests", CONFIG_INT, 0, INT32_MAX, 0, NULL},
    {"fail_status", CONFIG_INT, 400, 599, 503, NULL},
    {"fail_error", CONFIG_STRING, 0, 0, 0, "temporarily_unavailable"},
    {"fail_next_metadata_requests", CONFIG_INT, 0, INT32_MAX, 0, NULL},
    {"delay_ms", CONFIG_INT, 0, DELAY_CAP_MS, 0, NULL},
    {"deny_next_authorizations", CONFIG_INT, 0, INT32_MAX, 0, NULL},
    {"require_pkce", CONFIG_BOOL, 0, 0, 1, NULL},
    {"omit_refresh_token", CONFIG_BOOL, 0, 0, 0, NULL},
    {"refresh_reply_includes_refresh_token", CONFIG_BOOL, 0, 0, 0, NULL},
    {"granted_scope", CONFIG_STRING_OR_NULL, 0, 0, 0, NULL},
    {"user_email", CONFIG_STRING, 0, 0, 0, "user@example.com"},
    {"token_url", CONFIG_STRING_OR_NULL, 0, 0, 0, NULL},
    {"project_id", CONFIG_STRING, 0, 0, 0, "fake-project"},
    {"metadata_email", CONFIG_STRING, 0, 0, 0, "default@fake-project.iam.gserviceaccount.com"},
};

struct server {
    struct fake_core core; /* the daemon, the shutdown pipe, the lock, the records */

    /* Guarded by core.lock. */
    json_t *config;           /* every key of config_keys */
    json_t *clients;          /* client_id -> {client_secret, redirect_uris, deleted} */
    json_t *service_accounts; /* client_email -> {private_key_id, public_key_pem} */
    json_t *codes;            /* code -> {client_id, redirect_uri, scope, code_challenge, ...} */
    json_t *refresh_tokens;   /* refresh_token -> {client_id, email, scope, revoked, ...} */
    json_t *access_tokens;    /* access_token -> {grant, subject, scope, expires_at, ...} */
};

/* Per-request state, created by on_uri() and freed by on_completed(). */
struct request {
    struct server *server;
    struct MHD_Connection *connection;
    char *uri; /* the raw request target, query included */
    char method[16];
    bool started;
    bool control; /* under /_fake/ */
    struct buf body;
    bool too_large;
    json_t *record; /* a reference to this request's record; NULL for control requests */
};

/* An OAuth error reply: {"error": error, "error_description": description}. */
struct oauth_error {
    unsigned status;
    const char *error;   /* static */
    const char *subtype; /* static, or NULL */
    char description[256];
};

static int oauth_error_set(struct oauth_error *e, unsigned status, const char *error,
                           const char *description)
{
    e->status = status;
    e->error = error;
    e->subtype = NULL;
    snprintf(e->description, sizeof(e->description), "%s", description);
    return -EINVAL;
}

static int64_t now_s(void)
{
    return (int64_t)(now_realtime_usec() / USEC_PER_SEC);
}

/* Borrowed string member of o, or NULL when absent or not a string. */
static const char *json_get_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* ---- encodings ---- */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Decodes unpadded base64url s[0..n) into out (cleared first). Returns 0, -EINVAL for a character
 * outside the alphabet or an impossible length, or -ENOMEM/-ENOBUFS from out. */
static int b64url_decode(const char *s, size_t n, struct buf *out)
{
    uint32_t acc = 0;
    unsigned bits = 0;

    buf_clear(out);
    if (n % 4 == 1)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        const char *p = s[i] ? strchr(b64url_alphabet, s[i]) : NULL;
        unsigned char c;
        int r;

        if (!p)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)(p - b64url_alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            c = (unsigned char)(acc >> bits);
            r = buf_append(out, &c, 1);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* Decodes the JSON object that base64url s[0..n) holds. Returns a new reference or NULL. */
static json_t *b64url_decode_json_object(const char *s, size_t n)
{
    _cleanup_(fake_buf_done) struct buf b = BUF_INIT(BODY_MAX);
    json_t *j;

    if (b64url_decode(s, n, &b) < 0)
        return NULL;
    j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Appends the form-decoded s[0..n) ('+' is a space, %XX a byte) to out. Returns 0, -EINVAL for a
 * broken escape, or a buf error. */
static int form_decode_append(struct buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int r;

        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;

            if (i + 2 >= n)
                return -EINVAL;
            hi = hex_value(s[i + 1]);
            lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        r = buf_append(out, &c, 1);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Parses an application/x-www-form-urlencoded body into a new JSON object of strings (the first
 * of repeated names wins). Returns 0 or -EINVAL (bad escape, NUL, not UTF-8), -ENOMEM. */
static int form_parse(const char *data, size_t len, json_t **ret)
{
    json_auto_t *form = json_object();
    const char *p = data, *end = data + len;

    if (!form)
        return -ENOMEM;
    while (p < end) {
        _cleanup_(fake_buf_done) struct buf name = BUF_INIT(BODY_MAX), value = BUF_INIT(BODY_MAX);
        const char *amp = memchr(p, '&', (size_t)(end - p)), *eq;
        json_t *v;
        int r;

        if (!amp)
            amp = end;
        eq = memchr(p, '=', (size_t)(amp - p));
        if (amp > p) {
            r = form_decode_append(&name, p, (size_t)((eq ? eq : amp) - p));
            if (r >= 0 && eq)
                r = form_decode_append(&value, eq + 1, (size_t)(amp - eq - 1));
            if (r < 0)
                return r == -ENOMEM ? r : -EINVAL;
            if (buf_append(&name, "", 0) < 0 || buf_append(&value, "", 0) < 0)
                return -ENOMEM;
            if (memchr(name.data, '\0', name.len) || memchr(value.data, '\0', value.len))
                return -EINVAL;
            if (!json_object_get(form, name.data)) {
                v = json_stringn(value.data, value.len);
                if (!v || !utf8_is_valid(name.data, name.len))
                    return -EINVAL;
                if (json_object_set_new(form, name.data, v) < 0)
                    return -ENOMEM;
            }
        }
        p = amp + 1;
    }
    *ret = TAKE_PTR(form);
    return 0;
}

/* Appends s percent-encoded (everything but RFC 3986 unreserved characters) to out. */
static int url_encode_append(struct buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[3] = {'%', hex[c >> 4], hex[c & 0x0f]};
        int r;

        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
            r = buf_append(out, s, 1);
        else
            r = buf_append(out, esc, sizeof(esc));
        if (r < 0)
            return r;
    }
    return 0;
}

/* Returns a new random token "<prefix><43 base64url chars>", or NULL. */
static char *token_new(const char *prefix)
{
    unsigned char raw[32];
    _cleanup_free_ char *enc = NULL;
    char *t;

    if (random_bytes(raw, sizeof(raw)) < 0)
        return NULL;
    enc = fake_base64_encode(raw, sizeof(raw), true);
    if (!enc || asprintf(&t, "%s%s", prefix, enc) < 0)
        return NULL;
    return t;
}

/* Writes base64url(SHA-256(verifier)) to out. Returns 0 or -EIO. */
static int pkce_s256(const char *verifier, char out[static 44])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    _cleanup_free_ char *enc = NULL;

    if (EVP_Digest(verifier, strlen(verifier), md, &md_len, EVP_sha256(), NULL) != 1 ||
        md_len != 32)
        return -EIO;
    enc = fake_base64_encode(md, md_len, true);
    if (!enc)
        return -ENOMEM;
    memcpy(out, enc, 44); /* 43 characters and the NUL */
    return 0;
}

/* RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~]. */
static bool pkce_verifier_valid(const char *s)
{
    size_t n = strlen(s);

    if (n < 43 || n > 128)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-._~", *s))
            return false;
    return true;
}

/* A code_challenge for S256 is base64url of 32 bytes: 43 characters. */
static bool pkce_challenge_valid(const char *s)
{
    if (strlen(s) != 43)
        return false;
    for (; *s; s++)
        if (!strchr(b64url_alphabet, *s))
            return false;
    return true;
}

static bool secret_matches(const char *expected, const char *given)
{
    size_t n = strlen(expected);

    return given && strlen(given) == n && memeq_consttime(expected, given, n);
}

/* True when the space-separated list has the word. */
static bool scope_has(const char *scope, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = scope; p && *p;) {
        size_t len;

        p += strspn(p, " ");
        len = strcspn(p, " ");
        if (len == n && n > 0 && strncmp(p, word, n) == 0)
            return true;
        p += len;
    }
    return false;
}

/* True when every word of sub is in scope. */
static bool scope_is_subset(const char *sub, const char *scope)
{
    for (const char *p = sub; *p;) {
        char word[512];
        size_t len;

        p += strspn(p, " ");
        len = strcspn(p, " ");
        if (len == 0)
            break;
        if (len >= sizeof(word))
            return false;
        memcpy(word, p, len);
        word[len] = '\0';
        if (!scope_has(scope, word))
            return false;
        p += len;
    }
    return true;
}

/* "http://127.0.0.1:PORT[/path]", "http://localhost:PORT..." or "http://[::1]:PORT...", the
 * loopback redirect Google's desktop clients may use with any port. */
static bool redirect_uri_is_loopback(const char *uri)
{
    static const char *const hosts[] = {"http://127.0.0.1", "http://localhost", "http://[::1]"};
    const char *p = NULL;

    for (size_t i = 0; i < ELEMENTSOF(hosts) && !p; i++)
        if (startswith(uri, hosts[i]))
            p = uri + strlen(hosts[i]);
    if (!p)
        return false;
    if (*p == ':') {
        size_t digits = strspn(p + 1, "0123456789");

        if (digits == 0 || digits > 5)
            return false;
        p += 1 + digits;
    }
    return *p == '\0' || *p == '/' || *p == '?';
}

/* client's "redirect_uris" is "loopback" or an array of exact URIs and/or "loopback". */
static bool client_redirect_allowed(const json_t *client, const char *uri)
{
    const json_t *uris = json_object_get(client, "redirect_uris"), *u;
    size_t i;

    if (json_is_string(uris))
        return streq(json_string_value(uris), "loopback") && redirect_uri_is_loopback(uri);
    json_array_foreach (uris, i, u) {
        const char *v = json_string_value(u);

        if (v && (streq(v, uri) || (streq(v, "loopback") && redirect_uri_is_loopback(uri))))
            return true;
    }
    return false;
}

/* ---- server state ---- */

static json_t *config_defaults(void)
{
    json_t *c = json_object();

    for (size_t i = 0; c && i < ELEMENTSOF(config_keys); i++) {
        const struct config_key *k = &config_keys[i];
        json_t *v;

        switch (k->type) {
        case CONFIG_INT:
            v = json_integer(k->int_default);
            break;
        case CONFIG_BOOL:
            v = json_boolean(k->int_default);
            break;
        default:
            v = k->string_default ? json_string(k->string_default) : json_null();
            break;
        }
        if (json_object_set_new(c, k->name, v) < 0) {
            json_decref(c);
            return NULL;
        }
    }
    return c;
}

/* Drops every record, client, account, code and token, and restores the default config. The
 * caller holds the lock. Returns 0 or -ENOMEM. */
static int server_reset_locked(struct server *s)
{
    json_t *fresh[6] = {config_defaults(), json_object(), json_object(),
                        json_object(),     json_object(), json_object()};
    json_t **slots[6] = {&s->config, &s->clients,        &s->service_accounts,
                         &s->codes,  &s->refresh_tokens, &s->access_tokens};

    for (size_t i = 0; i < ELEMENTSOF(fresh); i++)
        if (!fresh[i]) {
            for (size_t j = 0; j < ELEMENTSOF(fresh); j++)
                json_decref(fresh[j]);
            return -ENOMEM;
        }
    for (size_t i = 0; i < ELEMENTSOF(fresh); i++) {
        json_decref(*slots[i]);
        *slots[i] = fresh[i];
    }
    (void)fake_records_clear_locked(&s->core);
    return 0;
}

static struct server *server_free(struct server *s)
{
    if (!s)
        return NULL;
    json_decref(s->config);
    json_decref(s->clients);
    json_decref(s->service_accounts);
    json_decref(s->codes);
    json_decref(s->refresh_tokens);
    json_decref(s->access_tokens);
    fake_core_done(&s->core);
    free(s);
    return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct server *, server_free);

static int server_new(struct server **ret)
{
    _cleanup_(server_freep) struct server *s = NULL;
    int r;

    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    r = fake_core_init(&s->core);
    if (r < 0)
        return r;
    r = server_reset_locked(s);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(s);
    return 0;
}

static int64_t config_int_locked(struct server *s, const char *name)
{
    return json_integer_value(json_object_get(s->config, name));
}

static bool config_bool_locked(struct server *s, const char *name)
{
    return json_is_true(json_object_get(s->config, name));
}

/* Borrowed; NULL for a null value. */
static const char *config_str_locked(struct server *s, const char *name)
{
    return json_string_value(json_object_get(s->config, name));
}

/* Decrements the counter config key when it is positive. Returns true when it was. */
static bool config_take_locked(struct server *s, const char *name)
{
    int64_t n = config_int_locked(s, name);

    if (n <= 0)
        return false;
    json_object_set_new(s->config, name, json_integer(n - 1));
    return true;
}

/* Mints an access token and stores its record. origin_refresh may be NULL. Returns the token
 * (borrowed from the table, valid while the lock is held) or NULL when out of memory. The caller
 * holds the lock. */
static const char *server_issue_access_token_locked(struct server *s, const char *grant,
                                                    const char *client_id, const char *subject,
                                                    const char *scope, const char *origin_refresh,
                                                    int64_t *ret_expires_in)
{
    _cleanup_free_ char *token = token_new("ya29.fake-");
    int64_t lifetime = config_int_locked(s, "access_token_lifetime_s"), now = now_s();
    json_t *rec;

    if (!token)
        return NULL;
    rec = json_pack("{s:s,s:s?,s:s,s:s,s:s?,s:I,s:I,s:b}", "grant", grant, "client_id", client_id,
                    "subject", subject, "scope", scope, "origin_refresh_token", origin_refresh,
                    "issued_at", (json_int_t)now, "expires_at", (json_int_t)(now + lifetime),
                    "revoked", 0);
    if (!rec || json_object_set_new(s->access_tokens, token, rec) < 0)
        return NULL;
    *ret_expires_in = lifetime;
    return json_object_iter_key(json_object_iter_at(s->access_tokens, token));
}

/* Stores a refresh token record under token. Returns 0 or -ENOMEM. The caller holds the lock. */
static int server_add_refresh_token_locked(struct server *s, const char *token,
                                           const char *client_id, const char *email,
                                           const char *scope, bool rapt_required)
{
    json_t *rec = json_pack("{s:s?,s:s,s:s,s:I,s:b,s:b}", "client_id", client_id, "email", email,
                            "scope", scope, "issued_at", (json_int_t)now_s(), "revoked", 0,
                            "rapt_required", rapt_required);

    if (!rec || json_object_set_new(s->refresh_tokens, token, rec) < 0)
        return -ENOMEM;
    return 0;
}

/* Revokes a refresh token and every access token minted from it. The caller holds the lock. */
static void server_revoke_grant_locked(struct server *s, const char *refresh_token)
{
    json_t *rt = json_object_get(s->refresh_tokens, refresh_token), *at;
    const char *key;

    if (rt)
        json_object_set_new(rt, "revoked", json_true());
    json_object_foreach (s->access_tokens, key, at) {
        const char *origin = json_get_str(at, "origin_refresh_token");

        if (origin && streq(origin, refresh_token))
            json_object_set_new(at, "revoked", json_true());
    }
}

/* A fake id_token: a JWT whose signature is not a signature. Returns a new string or NULL. */
static char *id_token_new(const char *client_id, const char *email, bool with_email)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    char sub[24];
    uint64_t h = 0;
    int64_t now = now_s();
    json_auto_t *header = NULL, *claims = NULL;
    _cleanup_free_ char *hj = NULL, *cj = NULL, *he = NULL, *ce = NULL, *se = NULL;
    char *out;

    /* A stable numeric "sub" per address, as Google's are. */
    if (EVP_Digest(email, strlen(email), md, &md_len, EVP_sha256(), NULL) != 1)
        return NULL;
    memcpy(&h, md, sizeof(h));
    snprintf(sub, sizeof(sub), "1%020" PRIu64, h);
    header = json_pack("{s:s,s:s,s:s}", "alg", "RS256", "kid", "fake-oauth", "typ", "JWT");
    claims = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "iss", "https://accounts.google.com", "azp",
                       client_id, "aud", client_id, "sub", sub, "iat", (json_int_t)now, "exp",
                       (json_int_t)(now + ID_TOKEN_LIFETIME_S));
    if (!header || !claims)
        return NULL;
    if (with_email && (json_object_set_new(claims, "email", json_string(email)) < 0 ||
                       json_object_set_new(claims, "email_verified", json_true()) < 0))
        return NULL;
    hj = fake_json_dump(header);
    cj = fake_json_dump(claims);
    if (!hj || !cj)
        return NULL;
    he = fake_base64_encode(hj, strlen(hj), true);
    ce = fake_base64_encode(cj, strlen(cj), true);
    se = fake_base64_encode("fake-signature", strlen("fake-signature"), true);
    if (!he || !ce || !se || asprintf(&out, "%s.%s.%s", he, ce, se) < 0)
        return NULL;
    return out;
}

/* Builds the token reply for a user grant. Returns a new reference or NULL. */
static json_t *user_token_reply(const char *access_token, int64_t expires_in,
                                const char *refresh_token, const char *scope, const char *client_id,
                                const char *email)
{
    json_auto_t *j = json_pack("{s:s,s:I,s:s,s:s}", "access_token", access_token, "expires_in",
                               (json_int_t)expires_in, "scope", scope, "token_type", "Bearer");

    if (!j)
        return NULL;
    if (refresh_token && json_object_set_new(j, "refresh_token", json_string(refresh_token)) < 0)
        return NULL;
    if (scope_has(scope, "openid")) {
        _cleanup_free_ char *id = id_token_new(client_id, email, scope_has(scope, "email"));

        if (!id || json_object_set_new(j, "id_token", json_string(id)) < 0)
            return NULL;
    }
    return TAKE_PTR(j);
}

/* ---- replies ---- */

/* Queues a reply. body is a malloc()ed string and is stolen (NULL: empty body). extra holds
 * name/value pairs and ends with NULL. Records the status of an API request. */
static enum MHD_Result reply_full(struct request *req, unsigned status, const char *content_type,
                                  char *body, const char *const *extra)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(body ? strlen(body) : 0, body ? body : (char *)"",
                                           body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (content_type &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES)
        goto fail;
    for (; extra && extra[0]; extra += 2)
        if (MHD_add_response_header(resp, extra[0], extra[1]) != MHD_YES)
            goto fail;
    if (req->record) {
        fake_core_lock(&req->server->core);
        json_object_set_new(req->record, "status", json_integer(status));
        fake_core_unlock(&req->server->core);
    }
    ret = MHD_queue_response(req->connection, status, resp);
    MHD_destroy_response(resp);
    return ret;
fail:
    MHD_destroy_response(resp);
    return MHD_NO;
}

/* Replies with j, which is stolen (NULL: out of memory, the connection is dropped). */
static enum MHD_Result reply_json(struct request *req, unsigned status, json_t *j,
                                  const char *const *extra)
{
    char *text = j ? fake_json_dump(j) : NULL;

    json_decref(j);
    if (!text)
        return MHD_NO;
    return reply_full(req, status, CONTENT_TYPE_JSON, text, extra);
}

static enum MHD_Result reply_text(struct request *req, unsigned status, const char *text,
                                  const char *const *extra)
{
    char *copy = strdup(text);

    if (!copy)
        return MHD_NO;
    return reply_full(req, status, CONTENT_TYPE_TEXT, copy, extra);
}

static const char *const no_store_headers[] = {"Cache-Control", "no-cache, no-store, max-age=0",
                                               "Pragma", "no-cache", NULL};

static enum MHD_Result reply_oauth_error(struct request *req, const struct oauth_error *e)
{
    json_t *j = json_pack("{s:s,s:s}", "error", e->error, "error_description", e->description);

    if (j && e->subtype) {
        json_object_set_new(j, "error_subtype", json_string(e->subtype));
        json_object_set_new(j, "error_uri",
                            json_string("https://support.google.com/a/answer/9368756"));
    }
    return reply_json(req, e->status, j, no_store_headers);
}

static enum MHD_Result reply_error(struct request *req, unsigned status, const char *error,
                                   const char *description)
{
    struct oauth_error e;

    oauth_error_set(&e, status, error, description);
    return reply_oauth_error(req, &e);
}

/* Waits up to ms milliseconds, or until shutdown. */
static void server_delay(struct server *s, int64_t ms)
{
    struct pollfd p = {.fd = s->core.stop_pipe[0], .events = POLLIN};

    if (ms > 0)
        (void)poll(&p, 1, (int)MIN(ms, DELAY_CAP_MS));
}

/* ---- the authorization endpoint ---- */

static const char *query_arg(struct request *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

/* 302 to redirect_uri with the given query pairs (name, value, ..., NULL); NULL values are
 * skipped. */
static enum MHD_Result reply_redirect(struct request *req, const char *redirect_uri,
                                      const char *const *pairs)
{
    _cleanup_(fake_buf_done) struct buf loc = BUF_INIT(0);
    char sep = strchr(redirect_uri, '?') ? '&' : '?';
    const char *extra[3] = {MHD_HTTP_HEADER_LOCATION, NULL, NULL};
    int r;

    r = buf_append_str(&loc, redirect_uri);
    for (; r >= 0 && pairs[0]; pairs += 2) {
        if (!pairs[1])
            continue;
        r = buf_append(&loc, &sep, 1);
        if (r >= 0)
            r = buf_append_str(&loc, pairs[0]);
        if (r >= 0)
            r = buf_append_str(&loc, "=");
        if (r >= 0)
            r = url_encode_append(&loc, pairs[1]);
        sep = '&';
    }
    if (r < 0)
        return MHD_NO;
    extra[1] = loc.data;
    return reply_full(req, 302, NULL, NULL, extra);
}

static enum MHD_Result reply_redirect_error(struct request *req, const char *redirect_uri,
                                            const char *error, const char *description,
                                            const char *state)
{
    const char *pairs[] = {"error", error, "error_description", description, "state", state, NULL};

    return reply_redirect(req, redirect_uri, pairs);
}

/* GET /o/oauth2/v2/auth: checks the request and, as if the user had consented, sends the browser
 * back to redirect_uri with a one-time code. */
static enum MHD_Result handle_auth(struct request *req)
{
    struct server *s = req->server;
    const char *client_id = query_arg(req, "client_id"),
               *redirect_uri = query_arg(req, "redirect_uri"),
               *response_type = query_arg(req, "response_type"), *scope = query_arg(req, "scope"),
               *state = query_arg(req, "state"), *challenge = query_arg(req, "code_challenge"),
               *method = query_arg(req, "code_challenge_method"),
               *access_type = query_arg(req, "access_type"),
               *login_hint = query_arg(req, "login_hint");
    _cleanup_free_ char *code = NULL, *granted = NULL;
    const json_t *client;
    const char *problem = NULL, *error = "invalid_request";
    bool deny;
    json_t *rec;

    fake_core_lock(&s->core);
    client = client_id ? json_object_get(s->clients, client_id) : NULL;
    if (!client || json_is_true(json_object_get(client, "deleted"))) {
        fake_core_unlock(&s->core);
        return reply_error(req, 400, "invalid_client", "The OAuth client was not found.");
    }
    if (!redirect_uri || !client_redirect_allowed(client, redirect_uri)) {
        fake_core_unlock(&s->core);
        return reply_error(req, 400, "redirect_uri_mismatch",
                           "The redirect_uri is not registered for this client.");
    }

    if (!response_type || !streq(response_type, "code")) {
        error = "unsupported_response_type";
        problem = "response_type must be 'code'.";
    } else if (!scope || !scope[strspn(scope, " ")])
        problem = "Missing required parameter: scope";
    else if (challenge && (!method || !streq(method, "S256")))
        problem = "code_challenge_method must be S256.";
    else if (challenge && !pkce_challenge_valid(challenge))
        problem = "Invalid code_challenge.";
    else if (!challenge && config_bool_locked(s, "require_pkce"))
        problem = "Missing required parameter: code_challenge";
    if (problem) {
        fake_core_unlock(&s->core);
        return reply_redirect_error(req, redirect_uri, error, problem, state);
    }
    deny = config_take_locked(s, "deny_next_authorizations");
    if (deny) {
        fake_core_unlock(&s->core);
        return reply_redirect_error(req, redirect_uri, "access_denied", NULL, state);
    }

    granted = strdup(config_str_locked(s, "granted_scope") ?: scope);
    code = token_new("4/0Afake-");
    rec = granted && code
              ? json_pack("{s:s,s:s,s:s,s:s?,s:b,s:s,s:I,s:b}", "client_id", client_id,
                          "redirect_uri", redirect_uri, "scope", granted, "code_challenge",
                          challenge, "offline", access_type && streq(access_type, "offline"),
                          "email", login_hint ?: config_str_locked(s, "user_email"), "expires_at",
                          (json_int_t)(now_s() + CODE_LIFETIME_S), "used", 0)
              : NULL;
    if (!rec || json_object_set_new(s->codes, code, rec) < 0) {
        fake_core_unlock(&s->core);
        return MHD_NO;
    }
    fake_core_unlock(&s->core);

    {
        const char *pairs[] = {"state", state, "code", code, "scope", granted, NULL};

        return reply_redirect(req, redirect_uri, pairs);
    }
}

/* ---- the token endpoint ---- */

/* Checks client_id and client_secret from the form. Returns the client (borrowed) or NULL with
 * *e set. The caller holds the lock. */
static const json_t *client_authenticate_locked(struct server *s, const json_t *form,
                                                struct oauth_error *e)
{
    const char *client_id = json_get_str(form, "client_id");
    const json_t *client;

    if (!client_id) {
        oauth_error_set(e, 400, "invalid_request", "Could not determine client ID from request.");
        return NULL;
    }
    client = json_object_get(s->clients, client_id);
    if (!client) {
        oauth_error_set(e, 401, "invalid_client", "The OAuth client was not found.");
        return NULL;
    }
    if (json_is_true(json_object_get(client, "deleted"))) {
        oauth_error_set(e, 401, "deleted_client", "The OAuth client was deleted.");
        return NULL;
    }
    if (!secret_matches(json_get_str(client, "client_secret"),
                        json_get_str(form, "client_secret"))) {
        oauth_error_set(e, 401, "invalid_client", "Unauthorized");
        return NULL;
    }
    return client;
}

/* grant_type=authorization_code. Returns 0 with *ret_reply (a new reference) or -errno with *e. */
static int grant_authorization_code(struct server *s, const json_t *form, json_t **ret_reply,
                                    struct oauth_error *e)
{
    const char *code = json_get_str(form, "code"), *verifier = json_get_str(form, "code_verifier"),
               *redirect_uri = json_get_str(form, "redirect_uri"), *client_id, *challenge, *scope,
               *email, *access;
    _cleanup_free_ char *refresh = NULL;
    json_t *c, *reply;
    int64_t expires_in;

    if (!code)
        return oauth_error_set(e, 400, "invalid_request", "Missing required parameter: code");
    fake_core_lock(&s->core);
    if (!client_authenticate_locked(s, form, e))
        goto fail;
    client_id = json_get_str(form, "client_id");
    c = json_object_get(s->codes, code);
    if (!c) {
        oauth_error_set(e, 400, "invalid_grant", "Malformed auth code.");
        goto fail;
    }
    if (json_is_true(json_object_get(c, "used"))) {
        oauth_error_set(e, 400, "invalid_grant", "Bad Request: code already redeemed.");
        goto fail;
    }
    if (json_integer_value(json_object_get(c, "expires_at")) <= now_s()) {
        oauth_error_set(e, 400, "invalid_grant", "Bad Request: code expired.");
        goto fail;
    }
    if (!streq(json_get_str(c, "client_id"), client_id)) {
        oauth_error_set(e, 400, "invalid_grant", "Bad Request: code issued to another client.");
        goto fail;
    }
    if (!redirect_uri || !streq(redirect_uri, json_get_str(c, "redirect_uri"))) {
        oauth_error_set(e, 400, "redirect_uri_mismatch", "Bad Request");
        goto fail;
    }
    challenge = json_get_str(c, "code_challenge");
    if (challenge) {
        char computed[44];

        if (!verifier) {
            oauth_error_set(e, 400, "invalid_grant", "Missing code verifier.");
            goto fail;
        }
        if (!pkce_verifier_valid(verifier) || pkce_s256(verifier, computed) < 0 ||
            !streq(computed, challenge)) {
            oauth_error_set(e, 400, "invalid_grant", "Invalid code verifier.");
            goto fail;
        }
    }

    json_object_set_new(c, "used", json_true());
    scope = json_get_str(c, "scope");
    email = json_get_str(c, "email");
    if (json_is_true(json_object_get(c, "offline")) &&
        !config_bool_locked(s, "omit_refresh_token")) {
        refresh = token_new("1//fake-");
        if (!refresh ||
            server_add_refresh_token_locked(s, refresh, client_id, email, scope, false) < 0)
            goto oom;
    }
    access = server_issue_access_token_locked(s, "authorization_code", client_id, email, scope,
                                              refresh, &expires_in);
    if (!access)
        goto oom;
    reply = user_token_reply(access, expires_in, refresh, scope, client_id, email);
    if (!reply)
        goto oom;
    fake_core_unlock(&s->core);
    *ret_reply = reply;
    return 0;
oom:
    fake_core_unlock(&s->core);
    return -ENOMEM;
fail:
    fake_core_unlock(&s->core);
    return -EINVAL;
}

/* grant_type=refresh_token. Same contract as grant_authorization_code(). */
static int grant_refresh_token(struct server *s, const json_t *form, json_t **ret_reply,
                               struct oauth_error *e)
{
    const char *token = json_get_str(form, "refresh_token"),
               *requested = json_get_str(form, "scope"), *client_id, *scope, *email, *access;
    json_t *rt, *reply;
    int64_t expires_in;

    if (!token)
        return oauth_error_set(e, 400, "invalid_request",
                               "Missing required parameter: refresh_token");
    fake_core_lock(&s->core);
    if (!client_authenticate_locked(s, form, e))
        goto fail;
    client_id = json_get_str(form, "client_id");
    rt = json_object_get(s->refresh_tokens, token);
    if (!rt || json_is_true(json_object_get(rt, "revoked"))) {
        oauth_error_set(e, 400, "invalid_grant", INVALID_GRANT_REVOKED);
        goto fail;
    }
    if (json_get_str(rt, "client_id") && !streq(json_get_str(rt, "client_id"), client_id)) {
        oauth_error_set(e, 401, "unauthorized_client", "Unauthorized");
        goto fail;
    }
    if (json_is_true(json_object_get(rt, "rapt_required"))) {
        oauth_error_set(e, 400, "invalid_grant", "reauth related error (rapt_required)");
        e->subtype = "rapt_required";
        goto fail;
    }
    scope = json_get_str(rt, "scope");
    if (requested && requested[strspn(requested, " ")]) {
        if (!scope_is_subset(requested, scope)) {
            oauth_error_set(e, 400, "invalid_scope",
                            "Some requested scopes were not granted to this refresh token.");
            goto fail;
        }
        scope = requested;
    }
    email = json_get_str(rt, "email");
    access = server_issue_access_token_locked(s, "refresh_token", client_id, email, scope, token,
                                              &expires_in);
    reply = access
                ? user_token_reply(
                      access, expires_in,
                      config_bool_locked(s, "refresh_reply_includes_refresh_token") ? token : NULL,
                      scope, client_id, email)
                : NULL;
    fake_core_unlock(&s->core);
    if (!reply)
        return -ENOMEM;
    *ret_reply = reply;
    return 0;
fail:
    fake_core_unlock(&s->core);
    return -EINVAL;
}

/* pem_password_cb: an encrypted key has no password here, rather than a prompt on the tty. */
static int no_password(_unused_ char *buf, _unused_ int size, _unused_ int rwflag, _unused_ void *u)
{
    return -1;
}

/* Verifies an RS256 signature over signed[0..n) with the key in pem (a public key, a certificate
 * or a private key). Returns 0, -EBADMSG for a bad signature, -EINVAL for a key it can't read. */
static int rs256_verify(const char *pem, const char *signed_part, size_t n, const void *sig,
                        size_t sig_len)
{
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *ctx = NULL;
    BIO *bio;
    int r = -EINVAL;

    for (int attempt = 0; attempt < 3 && !pkey; attempt++) {
        bio = BIO_new_mem_buf(pem, -1);
        if (!bio)
            return -ENOMEM;
        if (attempt == 0)
            pkey = PEM_read_bio_PUBKEY(bio, NULL, no_password, NULL);
        else if (attempt == 1) {
            X509 *x = PEM_read_bio_X509(bio, NULL, no_password, NULL);

            pkey = x ? X509_get_pubkey(x) : NULL;
            X509_free(x);
        } else
            pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
        BIO_free(bio);
    }
    if (!pkey || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA)
        goto out;
    ctx = EVP_MD_CTX_new();
    if (!ctx) {
        r = -ENOMEM;
        goto out;
    }
    if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1)
        goto out;
    r = EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)signed_part, n) == 1 ? 0
                                                                                        : -EBADMSG;
out:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    ERR_clear_error(); /* the failed attempts leave errors on this thread's queue */
    return r;
}

/* True when aud names this token endpoint: the configured token_url, the URL on the listening
 * address, or the URL the client reached us by (its Host header). */
static bool audience_is_ours(struct request *req, const char *aud, const char *token_url)
{
    char url[128];
    const char *host =
        MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);

    if (token_url && streq(aud, token_url))
        return true;
    snprintf(url, sizeof(url), arg_options.ipv6 ? "http://[%s]:%u/token" : "http://%s:%u/token",
             arg_options.listen, (unsigned)req->server->core.port);
    if (streq(aud, url))
        return true;
    if (host) {
        snprintf(url, sizeof(url), "http://%s/token", host);
        if (streq(aud, url))
            return true;
    }
    return false;
}

/* grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer, RFC 7523 as Google runs it for
 * service-account keys. Same contract as grant_authorization_code(). */
static int grant_jwt_bearer(struct request *req, const json_t *form, json_t **ret_reply,
                            struct oauth_error *e)
{
    struct server *s = req->server;
    const char *assertion = json_get_str(form, "assertion"), *dot1, *dot2, *iss, *kid, *aud, *scope,
               *access;
    _cleanup_(fake_buf_done) struct buf sig = BUF_INIT(BODY_MAX);
    json_auto_t *header = NULL, *claims = NULL;
    _cleanup_free_ char *pem = NULL, *token_url = NULL;
    const json_t *sa, *exp, *iat;
    int64_t now = now_s(), expires_in;
    json_t *reply;
    int r;

    if (!assertion)
        return oauth_error_set(e, 400, "invalid_request", "Missing required parameter: assertion");
    dot1 = strchr(assertion, '.');
    dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2 || strchr(dot2 + 1, '.'))
        return oauth_error_set(e, 400, "invalid_grant", "Invalid JWT: not three segments.");
    header = b64url_decode_json_object(assertion, (size_t)(dot1 - assertion));
    claims = b64url_decode_json_object(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!header || !claims || b64url_decode(dot2 + 1, strlen(dot2 + 1), &sig) < 0)
        return oauth_error_set(e, 400, "invalid_grant", "Invalid JWT: cannot decode.");
    if (!json_get_str(header, "alg") || !streq(json_get_str(header, "alg"), "RS256"))
        return oauth_error_set(e, 400, "invalid_grant", "Invalid JWT: alg must be RS256.");
    iss = json_get_str(claims, "iss");
    kid = json_get_str(header, "kid");
    if (!iss)
        return oauth_error_set(e, 400, "invalid_grant", "Invalid JWT: missing iss.");

    fake_core_lock(&s->core);
    sa = json_object_get(s->service_accounts, iss);
    if (sa && kid && streq(kid, json_get_str(sa, "private_key_id")))
        pem = strdup(json_get_str(sa, "public_key_pem"));
    if (config_str_locked(s, "token_url"))
        token_url = strdup(config_str_locked(s, "token_url"));
    fake_core_unlock(&s->core);
    if (!sa)
        return oauth_error_set(e, 400, "invalid_grant", "Invalid grant: account not found");
    if (!pem) /* no kid, or not the registered key's id */
        return oauth_error_set(e, 400, "invalid_grant", "Invalid JWT Signature.");

    r = rs256_verify(pem, assertion, (size_t)(dot2 - assertion), sig.data, sig.len);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return oauth_error_set(e, 400, "invalid_grant", "Invalid JWT Signature.");

    aud = json_get_str(claims, "aud");
    if (!aud || !audience_is_ours(req, aud, token_url)) {
        char d[200];

        snprintf(d, sizeof(d), "Invalid JWT: Failed audience check. The expected value is %s",
                 token_url ? token_url : "this server's /token URL");
        return oauth_error_set(e, 400, "invalid_grant", d);
    }
    exp = json_object_get(claims, "exp");
    iat = json_object_get(claims, "iat");
    if (!json_is_integer(exp) || !json_is_integer(iat) || json_integer_value(exp) <= now ||
        json_integer_value(iat) > now + JWT_CLOCK_SKEW_S ||
        json_integer_value(exp) - json_integer_value(iat) > JWT_MAX_LIFETIME_S ||
        json_integer_value(exp) <= json_integer_value(iat))
        return oauth_error_set(e, 400, "invalid_grant", INVALID_JWT_TIME);
    scope = json_get_str(claims, "scope");
    if (!scope || !scope[strspn(scope, " ")])
        return oauth_error_set(e, 400, "invalid_scope",
                               "Invalid OAuth scope or ID token audience provided.");

    fake_core_lock(&s->core);
    access = server_issue_access_token_locked(s, "jwt-bearer", NULL, iss, scope, NULL, &expires_in);
    reply = access ? json_pack("{s:s,s:I,s:s}", "access_token", access, "expires_in",
                               (json_int_t)expires_in, "token_type", "Bearer")
                   : NULL;
    fake_core_unlock(&s->core);
    if (!reply)
        return -ENOMEM;
    *ret_reply = reply;
    return 0;
}

static bool request_is_form(struct request *req)
{
    const char *ct =
        MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);

    return ct && strncasecmp(ct, "application/x-www-form-urlencoded",
                             strlen("application/x-www-form-urlencoded")) == 0;
}

/* POST /token. */
static enum MHD_Result handle_token(struct request *req)
{
    struct server *s = req->server;
    json_auto_t *form = NULL;
    json_t *reply = NULL;
    struct oauth_error e;
    const char *grant;
    int64_t delay, fail_status = 0;
    char fail_error[64] = "";
    int r;

    if (!streq(req->method, "POST"))
        return reply_error(req, 405, "invalid_request", "Method not allowed.");
    fake_core_lock(&s->core);
    delay = config_int_locked(s, "delay_ms");
    fake_core_unlock(&s->core);
    server_delay(s, delay);

    fake_core_lock(&s->core);
    if (config_take_locked(s, "fail_next_token_requests")) {
        fail_status = config_int_locked(s, "fail_status");
        snprintf(fail_error, sizeof(fail_error), "%s", config_str_locked(s, "fail_error"));
    }
    fake_core_unlock(&s->core);
    if (fail_status > 0)
        return reply_error(req, (unsigned)fail_status, fail_error, "Injected failure.");

    if (req->too_large)
        return reply_error(req, 413, "invalid_request", "Request body too large.");
    if (!request_is_form(req))
        return reply_error(req, 400, "invalid_request",
                           "Content-Type must be application/x-www-form-urlencoded.");
    r = form_parse(req->body.data ? req->body.data : "", req->body.len, &form);
    if (r == -ENOMEM)
        return MHD_NO;
    if (r < 0)
        return reply_error(req, 400, "invalid_request", "Malformed form body.");

    grant = json_get_str(form, "grant_type");
    if (!grant)
        return reply_error(req, 400, "invalid_request", "Missing required parameter: grant_type");
    if (streq(grant, "authorization_code"))
        r = grant_authorization_code(s, form, &reply, &e);
    else if (streq(grant, "refresh_token"))
        r = grant_refresh_token(s, form, &reply, &e);
    else if (streq(grant, JWT_BEARER_GRANT))
        r = grant_jwt_bearer(req, form, &reply, &e);
    else {
        char d[160];

        snprintf(d, sizeof(d), "Invalid grant_type: %s", grant);
        return reply_error(req, 400, "unsupported_grant_type", d);
    }
    if (r == -ENOMEM)
        return MHD_NO;
    if (r < 0)
        return reply_oauth_error(req, &e);
    return reply_json(req, 200, reply, no_store_headers);
}

/* POST /revoke: token in the form body (or the query, which Google also takes). */
static enum MHD_Result handle_revoke(struct request *req)
{
    struct server *s = req->server;
    json_auto_t *form = NULL;
    const char *token = NULL;
    json_t *rec;
    bool ok = false;

    if (!streq(req->method, "POST"))
        return reply_error(req, 405, "invalid_request", "Method not allowed.");
    if (req->body.len > 0 && request_is_form(req)) {
        int r = form_parse(req->body.data, req->body.len, &form);

        if (r == -ENOMEM)
            return MHD_NO;
        if (r < 0)
            return reply_error(req, 400, "invalid_request", "Malformed form body.");
        token = json_get_str(form, "token");
    }
    if (!token)
        token = query_arg(req, "token");
    if (!token)
        return reply_error(req, 400, "invalid_request", "Missing required parameter: token");

    fake_core_lock(&s->core);
    rec = json_object_get(s->refresh_tokens, token);
    if (rec && !json_is_true(json_object_get(rec, "revoked"))) {
        server_revoke_grant_locked(s, token);
        ok = true;
    } else if (!rec) {
        rec = json_object_get(s->access_tokens, token);
        if (rec && !json_is_true(json_object_get(rec, "revoked"))) {
            const char *origin = json_get_str(rec, "origin_refresh_token");

            /* Google revokes the whole grant: the refresh token behind an access token too. */
            json_object_set_new(rec, "revoked", json_true());
            if (origin)
                server_revoke_grant_locked(s, origin);
            ok = true;
        }
    }
    fake_core_unlock(&s->core);
    if (!ok)
        return reply_error(req, 400, "invalid_token", "Token expired or revoked");
    return reply_json(req, 200, json_object(), NULL);
}

/* ---- the metadata server ---- */

static const char *const metadata_headers[] = {"Metadata-Flavor", "Google", "Server",
                                               "Metadata Server for VM", NULL};

static enum MHD_Result handle_metadata(struct request *req, const char *url)
{
    static const char prefix[] = "/computeMetadata/v1/instance/service-accounts/default";
    struct server *s = req->server;
    const char *flavor =
        MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, "Metadata-Flavor");
    const char *sub;
    _cleanup_free_ char *text = NULL;

    if (streq(url, "/") || streq(url, "/computeMetadata/") || streq(url, "/computeMetadata/v1") ||
        streq(url, "/computeMetadata/v1/"))
        return reply_text(req, 200, "instance/\nproject/\n", metadata_headers);
    if (!flavor || !streq(flavor, "Google"))
        return reply_text(req, 403, "Missing Metadata-Flavor:Google header.\n", metadata_headers);
    if (!streq(req->method, "GET"))
        return reply_text(req, 405, "Method not allowed.\n", metadata_headers);

    if (streq(url, "/computeMetadata/v1/project/project-id")) {
        fake_core_lock(&s->core);
        text = strdup(config_str_locked(s, "project_id"));
        fake_core_unlock(&s->core);
        return text ? reply_text(req, 200, text, metadata_headers) : MHD_NO;
    }
    if (streq(url, "/computeMetadata/v1/project/numeric-project-id"))
        return reply_text(req, 200, "123456789012", metadata_headers);
    if (!startswith(url, prefix))
        return reply_text(req, 404, "Not Found\n", metadata_headers);
    sub = url + strlen(prefix);

    if (streq(sub, "/token")) {
        const char *scopes = query_arg(req, "scopes");
        _cleanup_free_ char *scope = strdup(scopes ? scopes : DEFAULT_METADATA_SCOPE);
        const char *access;
        int64_t delay, expires_in;
        bool fail;
        json_t *reply;

        if (!scope)
            return MHD_NO;
        for (char *p = scope; *p; p++)
            if (*p == ',')
                *p = ' ';
        fake_core_lock(&s->core);
        delay = config_int_locked(s, "delay_ms");
        fake_core_unlock(&s->core);
        server_delay(s, delay);
        fake_core_lock(&s->core);
        fail = config_take_locked(s, "fail_next_metadata_requests");
        access = fail ? NULL
                      : server_issue_access_token_locked(s, "metadata", NULL,
                                                         config_str_locked(s, "metadata_email"),
                                                         scope, NULL, &expires_in);
        reply = access ? json_pack("{s:s,s:I,s:s}", "access_token", access, "expires_in",
                                   (json_int_t)expires_in, "token_type", "Bearer")
                       : NULL;
        fake_core_unlock(&s->core);
        if (fail)
            return reply_text(req, 503, "Service Unavailable (injected failure)\n",
                              metadata_headers);
        return reply_json(req, 200, reply, metadata_headers);
    }
    if (streq(sub, "/email")) {
        fake_core_lock(&s->core);
        text = strdup(config_str_locked(s, "metadata_email"));
        fake_core_unlock(&s->core);
        return text ? reply_text(req, 200, text, metadata_headers) : MHD_NO;
    }
    if (streq(sub, "/scopes"))
        return reply_text(req, 200, DEFAULT_METADATA_SCOPE "\n", metadata_headers);
    if (streq(sub, "") || streq(sub, "/")) {
        const char *recursive = query_arg(req, "recursive");
        json_t *j;

        if (!recursive || !streq(recursive, "true"))
            return reply_text(req, 200, "aliases\nemail\nidentity\nscopes\ntoken\n",
                              metadata_headers);
        fake_core_lock(&s->core);
        j = json_pack("{s:[s],s:s,s:[s]}", "aliases", "default", "email",
                      config_str_locked(s, "metadata_email"), "scopes", DEFAULT_METADATA_SCOPE);
        fake_core_unlock(&s->core);
        return reply_json(req, 200, j, metadata_headers);
    }
    return reply_text(req, 404, "Not Found\n", metadata_headers);
}

/* ---- control endpoints ---- */

static enum MHD_Result control_error(struct request *req, unsigned status, const char *message)
{
    return reply_json(req, status, json_pack("{s:s}", "error", message), NULL);
}

/* Parses the control request's body as a JSON object. Returns a new reference, or NULL with a
 * reply already queued in *ret_result. */
static json_t *control_body(struct request *req, enum MHD_Result *ret_result)
{
    json_error_t jerr;
    json_t *j;
    char message[256];

    if (req->too_large) {
        *ret_result = control_error(req, 413, "body too large");
        return NULL;
    }
    j = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
    if (!j) {
        snprintf(message, sizeof(message), "invalid JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        *ret_result = control_error(req, 400, message);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *ret_result = control_error(req, 400, "body must be a JSON object");
        return NULL;
    }
    return j;
}

/* POST /_fake/clients {"client_id","client_secret","redirect_uris","deleted"}: adds or replaces
 * a client. */
static enum MHD_Result control_add_client(struct request *req)
{
    struct server *s = req->server;
    enum MHD_Result result = MHD_NO;
    json_auto_t *body = control_body(req, &result);
    const char *client_id, *secret;
    json_t *uris, *u, *rec;
    size_t i;

    if (!body)
        return result;
    client_id = json_get_str(body, "client_id");
    secret = json_get_str(body, "client_secret");
    if (!client_id || !*client_id || !secret)
        return control_error(req, 400, "client_id and client_secret must be strings");
    uris = json_object_get(body, "redirect_uris");
    if (!uris)
        uris = json_string("loopback");
    else if (json_is_string(uris) && streq(json_string_value(uris), "loopback"))
        json_incref(uris);
    else if (json_is_array(uris)) {
        json_array_foreach (uris, i, u) {
            if (!json_is_string(u))
                return control_error(req, 400, "redirect_uris must hold strings");
        }
        json_incref(uris);
    } else
        return control_error(req, 400, "redirect_uris must be \"loopback\" or an array of URIs");
    rec =
        json_pack("{s:s,s:s,s:o,s:b}", "client_id", client_id, "client_secret", secret,
                  "redirect_uris", uris, "deleted", json_is_true(json_object_get(body, "deleted")));
    if (!rec)
        return MHD_NO;
    fake_core_lock(&s->core);
    json_object_set(s->clients, client_id, rec);
    fake_core_unlock(&s->core);
    return reply_json(req, 200, rec, NULL);
}

/* POST /_fake/service-accounts {"client_email","public_key_pem","private_key_id"}. */
static enum MHD_Result control_add_service_account(struct request *req)
{
    struct server *s = req->server;
    enum MHD_Result result = MHD_NO;
    json_auto_t *body = control_body(req, &result);
    const char *email, *pem, *kid;
    json_t *rec;
    int r;

    if (!body)
        return result;
    email = json_get_str(body, "client_email");
    pem = json_get_str(body, "public_key_pem");
    kid = json_get_str(body, "private_key_id");
    if (!email || !pem || !kid)
        return control_error(req, 400,
                             "client_email, public_key_pem and private_key_id must be strings");
    /* A verification that fails on the signature proves the key itself is readable. */
    r = rs256_verify(pem, "", 0, "", 0);
    if (r == -EINVAL)
        return control_error(req, 400,
                             "public_key_pem holds no RSA public key, certificate or private key");
    rec = json_pack("{s:s,s:s,s:s}", "client_email", email, "public_key_pem", pem, "private_key_id",
                    kid);
    if (!rec)
        return MHD_NO;
    fake_core_lock(&s->core);
    json_object_set(s->service_accounts, email, rec);
    fake_core_unlock(&s->core);
    return reply_json(req, 200, rec, NULL);
}

/* POST /_fake/refresh-tokens {"refresh_token"?, "client_id"?, "email"?, "scope"?,
 * "rapt_required"?}: seeds a refresh token, as an ADC authorized_user file would carry. */
static enum MHD_Result control_add_refresh_token(struct request *req)
{
    struct server *s = req->server;
    enum MHD_Result result = MHD_NO;
    json_auto_t *body = control_body(req, &result);
    _cleanup_free_ char *token = NULL;
    const char *client_id, *scope, *email;
    json_t *reply = NULL;
    int r;

    if (!body)
        return result;
    token = json_get_str(body, "refresh_token") ? strdup(json_get_str(body, "refresh_token"))
                                                : token_new("1//fake-");
    if (!token)
        return MHD_NO;
    client_id = json_get_str(body, "client_id");
    scope = json_get_str(body, "scope") ?: DEFAULT_SEEDED_SCOPE;
    fake_core_lock(&s->core);
    email = json_get_str(body, "email") ?: config_str_locked(s, "user_email");
    r = server_add_refresh_token_locked(s, token, client_id, email, scope,
                                        json_is_true(json_object_get(body, "rapt_required")));
    if (r >= 0) {
        reply = json_deep_copy(json_object_get(s->refresh_tokens, token));
        if (reply)
            json_object_set_new(reply, "refresh_token", json_string(token));
    }
    fake_core_unlock(&s->core);
    return reply_json(req, 200, reply, NULL);
}

/* POST /_fake/config: sets the given keys (each checked first); replies with the whole config. */
static enum MHD_Result control_set_config(struct request *req)
{
    struct server *s = req->server;
    enum MHD_Result result = MHD_NO;
    json_auto_t *body = control_body(req, &result);
    const char *key;
    json_t *v, *copy;
    char message[160];

    if (!body)
        return result;
    json_object_foreach (body, key, v) {
        const struct config_key *k = NULL;
        bool ok;

        for (size_t i = 0; i < ELEMENTSOF(config_keys) && !k; i++)
            if (streq(config_keys[i].name, key))
                k = &config_keys[i];
        if (!k) {
            snprintf(message, sizeof(message), "unknown config key '%s'", key);
            return control_error(req, 400, message);
        }
        switch (k->type) {
        case CONFIG_INT:
            ok = json_is_integer(v) && json_integer_value(v) >= k->min &&
                 json_integer_value(v) <= k->max;
            break;
        case CONFIG_BOOL:
            ok = json_is_boolean(v);
            break;
        case CONFIG_STRING:
            ok = json_is_string(v);
            break;
        default:
            ok = json_is_string(v) || json_is_null(v);
            break;
        }
        if (!ok) {
            snprintf(message, sizeof(message), "bad value for config key '%s'", key);
            return control_error(req, 400, message);
        }
    }
    fake_core_lock(&s->core);
    json_object_update(s->config, body);
    copy = json_deep_copy(s->config);
    fake_core_unlock(&s->core);
    return reply_json(req, 200, copy, NULL);
}

/* GET /_fake/tokens[?token=T]: the access tokens, oldest first, with their state. */
static enum MHD_Result control_list_tokens(struct request *req, bool refresh)
{
    struct server *s = req->server;
    const char *only = query_arg(req, "token"), *key;
    json_t *list = json_array(), *rec;
    int64_t now = now_s();

    if (!list)
        return MHD_NO;
    fake_core_lock(&s->core);
    json_object_foreach (refresh ? s->refresh_tokens : s->access_tokens, key, rec) {
        json_t *item;

        if (only && !streq(only, key))
            continue;
        item = json_deep_copy(rec);
        if (!item || json_object_set_new(item, refresh ? "refresh_token" : "access_token",
                                         json_string(key)) < 0) {
            json_decref(item);
            continue;
        }
        if (!refresh) {
            int64_t expires_at = json_integer_value(json_object_get(rec, "expires_at"));
            bool expired = expires_at <= now,
                 revoked = json_is_true(json_object_get(rec, "revoked"));

            json_object_set_new(item, "expires_in", json_integer(expired ? 0 : expires_at - now));
            json_object_set_new(item, "expired", json_boolean(expired));
            json_object_set_new(item, "valid", json_boolean(!expired && !revoked));
        }
        json_array_append_new(list, item);
    }
    fake_core_unlock(&s->core);
    return reply_json(req, 200, list, NULL);
}

/* GET /_fake/requests: every recorded request, oldest first. */
static enum MHD_Result control_list_requests(struct request *req)
{
    struct server *s = req->server;
    char *text = fake_records_dump(&s->core);

    if (!text)
        return MHD_NO;
    return reply_full(req, 200, CONTENT_TYPE_JSON, text, NULL);
}

static enum MHD_Result dispatch_control(struct request *req, const char *url)
{
    struct server *s = req->server;
    const char *m = req->method;
    json_t *j;
    size_t n;
    int r;

    if (streq(url, "/_fake/requests") && streq(m, "GET"))
        return control_list_requests(req);
    if (streq(url, "/_fake/requests") && streq(m, "DELETE")) {
        fake_core_lock(&s->core);
        n = fake_records_clear_locked(&s->core);
        fake_core_unlock(&s->core);
        return reply_json(req, 200, json_pack("{s:I}", "cleared", (json_int_t)n), NULL);
    }
    if (streq(url, "/_fake/clients") && streq(m, "POST"))
        return control_add_client(req);
    if (streq(url, "/_fake/service-accounts") && streq(m, "POST"))
        return control_add_service_account(req);
    if (streq(url, "/_fake/refresh-tokens") && streq(m, "POST"))
        return control_add_refresh_token(req);
    if (streq(url, "/_fake/config") && streq(m, "POST"))
        return control_set_config(req);
    if (streq(url, "/_fake/tokens") && streq(m, "GET"))
        return control_list_tokens(req, false);
    if (streq(url, "/_fake/refresh-tokens") && streq(m, "GET"))
        return control_list_tokens(req, true);
    if (streq(m, "GET") && (streq(url, "/_fake/config") || streq(url, "/_fake/clients") ||
                            streq(url, "/_fake/service-accounts") || streq(url, "/_fake/codes"))) {
        fake_core_lock(&s->core);
        j = json_deep_copy(streq(url, "/_fake/config")    ? s->config
                           : streq(url, "/_fake/clients") ? s->clients
                           : streq(url, "/_fake/codes")   ? s->codes
                                                          : s->service_accounts);
        fake_core_unlock(&s->core);
        return reply_json(req, 200, j, NULL);
    }
    if (streq(url, "/_fake/reset") && streq(m, "POST")) {
        fake_core_lock(&s->core);
        r = server_reset_locked(s);
        fake_core_unlock(&s->core);
        if (r < 0)
            return MHD_NO;
        return reply_json(req, 200, json_pack("{s:b}", "reset", 1), NULL);
    }
    return control_error(req, 404, "no such control endpoint");
}

/* ---- request plumbing ---- */

/* Records an API request, once its body is in: method, raw target, headers, body. Returns 0 or
 * -ENOMEM. */
static int request_record(struct request *req)
{
    struct server *s = req->server;
    json_auto_t *rec = NULL;
    json_t *headers = json_object();

    rec =
        json_pack("{s:I,s:o,s:o,s:o,s:o,s:n,s:I}", "id", (json_int_t)0, "method",
                  fake_json_stringn_lenient(req->method, strlen(req->method)), "path",
                  fake_json_stringn_lenient(req->uri, strlen(req->uri)), "headers", headers, "body",
                  req->too_large ? json_null()
                                 : fake_json_stringn_lenient(req->body.data ? req->body.data : "",
                                                             req->body.len),
                  "status", "received_at_ms", (json_int_t)(now_realtime_usec() / USEC_PER_MSEC));
    if (!rec)
        return -ENOMEM;
    if (fake_collect_headers(req->connection, headers) < 0)
        return -ENOMEM;
    fake_core_lock(&s->core);
    json_object_set_new(rec, "id", json_integer((json_int_t)++s->core.n_requests));
    fake_records_add_locked(&s->core, rec);
    fake_core_unlock(&s->core);
    req->record = TAKE_PTR(rec);
    return 0;
}

static enum MHD_Result dispatch_api(struct request *req, const char *url)
{
    if (streq(url, "/o/oauth2/v2/auth")) {
        if (!streq(req->method, "GET"))
            return reply_error(req, 405, "invalid_request", "Method not allowed.");
        return handle_auth(req);
    }
    if (streq(url, "/token"))
        return handle_token(req);
    if (streq(url, "/revoke"))
        return handle_revoke(req);
    if (streq(url, "/") || startswith(url, "/computeMetadata"))
        return handle_metadata(req, url);
    return reply_error(req, 404, "not_found", "No such endpoint.");
}

static struct request *request_free(struct request *req)
{
    if (!req)
        return NULL;
    if (req->record) {
        fake_core_lock(&req->server->core);
        json_decref(req->record);
        fake_core_unlock(&req->server->core);
    }
    buf_free(&req->body, false);
    free(req->uri);
    free(req);
    return NULL;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the first sight of a request, with its raw target. The return
 * value becomes the request's con_cls; on_completed() frees it. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *connection)
{
    struct request *req = calloc(1, sizeof(*req));

    if (!req)
        return NULL;
    req->uri = strdup(uri);
    if (!req->uri)
        return mfree(req);
    req->server = cls;
    req->connection = connection;
    req->body = BUF_INIT(BODY_MAX);
    return req;
}

static enum MHD_Result on_request(_unused_ void *cls, struct MHD_Connection *connection,
                                  const char *url, const char *method, _unused_ const char *version,
                                  const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct request *req = *con_cls;

    if (!req)
        return MHD_NO; /* on_uri() ran out of memory */
    if (!req->started) {
        req->started = true;
        snprintf(req->method, sizeof(req->method), "%s", method);
        req->control = startswith(url, "/_fake/");
        return MHD_YES;
    }
    if (*upload_data_size > 0)
        return fake_body_upload(&req->body, &req->too_large, upload_data, upload_data_size);
    if (req->control)
        return dispatch_control(req, url);
    if (request_record(req) < 0)
        return MHD_NO;
    log_debug("%s '%s'", req->method, req->uri);
    return dispatch_api(req, url);
}

static void on_completed(_unused_ void *cls, _unused_ struct MHD_Connection *connection,
                         void **con_cls, _unused_ enum MHD_RequestTerminationCode toe)
{
    *con_cls = request_free(*con_cls);
}

/* ---- main ---- */

static const struct fake_cli cli = {
    .help = "fake-oauth [OPTIONS]\n\n"
            "A fake Google OAuth server, token endpoint and metadata server for authd's tests.\n\n"
            "  -h --help          Show this help\n"
            "     --listen ADDR   Loopback address to listen on (default 127.0.0.1)\n"
            "     --port N        Port; 0 picks a free one (default 0)\n"
            "  -v --verbose       Log each request to stderr\n\n"
            "Prints PORT=<n> once listening; runs until SIGTERM or SIGINT.\n",
};

static int run(int argc, char *argv[])
{
    _cleanup_(server_freep) struct server *s = NULL;
    int r;

    r = fake_parse_argv(&cli, argc, argv, &arg_options);
    if (r <= 0)
        return r;
    r = server_new(&s);
    if (r < 0)
        return log_error_errno(r, "Failed to set up: %m");
    return fake_serve(
        &s->core, &arg_options,
        &(const struct fake_daemon){
            .on_request = on_request, .on_uri = on_uri, .on_completed = on_completed, .cls = s});
}

int main(int argc, char *argv[])
{
    int r = run(argc, argv);

    return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
