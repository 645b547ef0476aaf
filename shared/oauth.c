/* oauth.c: Google OAuth 2.0 without the network.
 *
 * authd and dualroutectl do the IO (the loopback listener, the POST to the token endpoint, the
 * timers); everything that decides what goes on the wire or what a reply means is here, as pure
 * functions that unit tests and a fuzzer can call: PKCE (RFC 7636), the authorization URL, form
 * bodies for the three grants we use (authorization_code with PKCE, refresh_token, and RFC 7523's
 * JWT bearer for service accounts), RS256 signing and verification through OpenSSL 3's EVP API,
 * the token reply and its error classes, credential files and the refresh schedule.
 *
 * Secrets (codes, tokens, client secrets, private keys, signed assertions and request bodies that
 * carry any of them) travel as struct secret, which is wiped when freed; scratch buffers that held
 * one are wiped too. jansson's own copies are freed without wiping: that is jansson's allocator's
 * business (json_set_alloc_funcs()), not this file's. Nothing here logs, keeps state or reads a
 * clock: "now" and random values come in as arguments, except in oauth_pkce_new() and
 * oauth_state_new(), which call getrandom(). */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "buf.h"
#include "conf.h"
#include "macro.h"
#include "oauth.h"
#include "secret.h"
#include "util.h"

#define JWT_MAX (64 * 1024)
#define RSA_BITS_MIN 2048
#define EXPIRES_IN_MAX (10 * 366 * 24 * 3600) /* seconds; more is a broken reply */
#define FIELD_MAX 1024                        /* ids, e-mail addresses, scopes, URIs */
#define PEM_MAX (16 * 1024)

static void evp_pkey_freep(EVP_PKEY **p)
{
    EVP_PKEY_free(*p);
}

static void evp_md_ctx_freep(EVP_MD_CTX **p)
{
    EVP_MD_CTX_free(*p);
}

static void bio_freep(BIO **p)
{
    BIO_free(*p);
}

/* Wipes a struct buf that held a secret, then frees it. */
static void buf_wipep(struct buf *b)
{
    buf_free(b, true);
}

/* ---- base64url ---- */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Writes the encoding of p[0..n) to out, which has room for (4n + 2) / 3 + 1 bytes. */
static size_t b64url_encode_to(const unsigned char *p, size_t n, char *out)
{
    size_t o = 0, i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

int oauth_base64url_encode(const void *p, size_t n, char **ret)
{
    char *out;

    assert(p || n == 0);
    assert(ret);
    if (n > SIZE_MAX / 4 - 2)
        return -E2BIG;
    out = malloc((4 * n + 2) / 3 + 1);
    if (!out)
        return -ENOMEM;
    b64url_encode_to(p, n, out);
    *ret = out;
    return 0;
}

int oauth_base64url_decode(const char *s, size_t n, void **ret, size_t *ret_len)
{
    unsigned char *out;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    assert(s || n == 0);
    assert(ret);
    /* One leftover character holds only 6 bits, less than a byte: never a valid encoding. */
    if (n % 4 == 1)
        return -EINVAL;
    out = malloc(n / 4 * 3 + 3);
    if (!out)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) {
            free(out);
            return -EINVAL;
        }
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* The bits left over must be zero, so every byte string has exactly one encoding. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        free(out);
        return -EINVAL;
    }
    out[o] = '\0';
    *ret = out;
    if (ret_len)
        *ret_len = o;
    return 0;
}

/* ---- PKCE and state ---- */

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int oauth_pkce_challenge(const char *verifier, char out[static OAUTH_PKCE_CHALLENGE_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t n;

    if (!verifier)
        return -EINVAL;
    n = strnlen(verifier, OAUTH_PKCE_VERIFIER_MAX + 1);
    if (n < OAUTH_PKCE_VERIFIER_MIN || n > OAUTH_PKCE_VERIFIER_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!is_unreserved((unsigned char)verifier[i]))
            return -EINVAL;
    if (EVP_Digest(verifier, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        ERR_clear_error();
        return -EIO;
    }
    b64url_encode_to(md, mdlen, out);
    return 0;
}

void oauth_pkce_from_bytes(const uint8_t bytes[static 32], struct oauth_pkce *ret)
{
    int r;

    assert(ret);
    memset(ret, 0, sizeof(*ret));
    b64url_encode_to(bytes, 32, ret->verifier);
    r = oauth_pkce_challenge(ret->verifier, ret->challenge);
    /* 43 characters of the base64url alphabet are always a valid verifier; only a broken
     * OpenSSL makes SHA-256 fail. */
    assert(r == 0);
    (void)r;
}

int oauth_pkce_new(struct oauth_pkce *ret)
{
    uint8_t bytes[32];
    int r;

    assert(ret);
    r = random_bytes(bytes, sizeof(bytes));
    if (r < 0)
        return r;
    oauth_pkce_from_bytes(bytes, ret);
    explicit_bzero(bytes, sizeof(bytes));
    return 0;
}

void oauth_pkce_done(struct oauth_pkce *p)
{
    if (p)
        explicit_bzero(p, sizeof(*p));
}

int oauth_state_new(char out[static OAUTH_STATE_LEN + 1])
{
    uint8_t bytes[32];
    int r;

    r = random_bytes(bytes, sizeof(bytes));
    if (r < 0)
        return r;
    b64url_encode_to(bytes, sizeof(bytes), out);
    return 0;
}

bool oauth_state_matches(const char *expected, const char *got)
{
    size_t n;

    if (!expected || !got || !*expected)
        return false;
    n = strlen(expected);
    if (strnlen(got, n + 1) != n)
        return false;
    return memeq_consttime(expected, got, n);
}

/* ---- URLs and forms ---- */

/* Appends s percent-encoded for a form or query value. */
static int form_append_escaped(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int r;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[3];

        if (is_unreserved(*p))
            r = buf_append(b, p, 1);
        else if (*p == ' ')
            r = buf_append(b, "+", 1);
        else {
            esc[0] = '%';
            esc[1] = hex[*p >> 4];
            esc[2] = hex[*p & 15];
            r = buf_append(b, esc, 3);
        }
        if (r < 0)
            return r;
    }
    return 0;
}

/* Appends key=value pairs joined with '&'; sep is written before the first pair (or NULL). */
static int form_append(struct buf *b, const char *sep, const struct oauth_param *params, size_t n)
{
    bool first = true;
    int r;

    for (size_t i = 0; i < n; i++) {
        if (!params[i].key)
            return -EINVAL;
        if (!params[i].value)
            continue;
        if (!first || sep) {
            r = buf_append_str(b, first ? sep : "&");
            if (r < 0)
                return r;
        }
        first = false;
        r = form_append_escaped(b, params[i].key);
        if (r < 0)
            return r;
        r = buf_append(b, "=", 1);
        if (r < 0)
            return r;
        r = form_append_escaped(b, params[i].value);
        if (r < 0)
            return r;
    }
    /* An empty form is the empty string, not a missing one. */
    return buf_reserve(b, 1);
}

static int errno_from_buf(int r)
{
    return r == -ENOBUFS ? -E2BIG : r;
}

int oauth_form_encode(const struct oauth_param *params, size_t n, struct secret **ret)
{
    _cleanup_(buf_wipep) struct buf b = BUF_INIT(OAUTH_FORM_MAX);
    struct secret *s;
    int r;

    assert(params || n == 0);
    assert(ret);
    r = form_append(&b, NULL, params, n);
    if (r < 0)
        return errno_from_buf(r);
    s = secret_new(b.data ? b.data : "", b.len);
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

static bool has_ctl_or_space(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return true;
    return false;
}

/* https://HOST..., or http:// to a loopback host (fakes in tests), with no white space or control
 * characters anywhere. */
static bool url_is_allowed(const char *url)
{
    static const char *const loopback[] = {"http://127.0.0.1", "http://localhost", "http://[::1]"};

    if (!url || has_ctl_or_space(url) || strlen(url) > OAUTH_URL_MAX)
        return false;
    if (startswith(url, "https://"))
        return url[8] != '\0' && url[8] != '/' && url[8] != ':' && url[8] != '?';
    for (size_t i = 0; i < ELEMENTSOF(loopback); i++) {
        size_t k = strlen(loopback[i]);
        /* strchr() finds the terminator too, so "http://127.0.0.1" itself passes. */
        if (strncmp(url, loopback[i], k) == 0 && strchr(":/?", url[k]))
            return true;
    }
    return false;
}

int oauth_authorize_url(const struct oauth_authorize *a, char **ret)
{
    _cleanup_(buf_wipep) struct buf b = BUF_INIT(OAUTH_URL_MAX);
    const char *endpoint;
    int r;

    assert(a);
    assert(ret);
    endpoint = a->endpoint ? a->endpoint : OAUTH_GOOGLE_AUTH_URL;
    if (!url_is_allowed(endpoint) || strchr(endpoint, '#'))
        return -EINVAL;
    if (!a->client_id || !*a->client_id || !a->redirect_uri || !*a->redirect_uri ||
        !a->code_challenge || strlen(a->code_challenge) != OAUTH_PKCE_CHALLENGE_LEN || !a->state ||
        !*a->state || (a->scope && !*a->scope))
        return -EINVAL;

    const struct oauth_param params[] = {
        {"client_id", a->client_id},
        {"redirect_uri", a->redirect_uri},
        {"response_type", "code"},
        {"scope", a->scope ? a->scope : OAUTH_SCOPE_CLOUD_PLATFORM},
        {"state", a->state},
        {"code_challenge", a->code_challenge},
        {"code_challenge_method", "S256"},
        /* offline: a refresh token comes with the code. consent: it comes again on a re-login,
         * which Google otherwise skips for a client the user already approved. */
        {"access_type", "offline"},
        {"prompt", "consent"},
    };

    r = buf_append_str(&b, endpoint);
    if (r < 0)
        return errno_from_buf(r);
    r = form_append(&b, strchr(endpoint, '?') ? "&" : "?", params, ELEMENTSOF(params));
    if (r < 0)
        return errno_from_buf(r);
    *ret = buf_steal(&b);
    return *ret ? 0 : -ENOMEM;
}

/* Decodes s[0..n) ('+' is a space, %XX a byte) into a new string. Returns -EBADMSG for a broken
 * escape or a decoded control character (NUL included). */
static int form_decode(const char *s, size_t n, char **ret)
{
    char *out = malloc(n + 1);
    size_t o = 0;

    if (!out)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '+')
            c = ' ';
        else if (c == '%') {
            int hi, lo;

            if (n - i < 3)
                goto bad;
            hi = hex_digit_value(s[i + 1]);
            lo = hex_digit_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                goto bad;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f)
            goto bad;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    *ret = out;
    return 0;
bad:
    explicit_bzero(out, n + 1);
    free(out);
    return -EBADMSG;
}

void oauth_redirect_done(struct oauth_redirect *r)
{
    if (!r)
        return;
    secret_free(r->code);
    free(r->state);
    free(r->error);
    free(r->error_description);
    *r = (struct oauth_redirect){};
}

int oauth_redirect_parse(const char *url, struct oauth_redirect *ret)
{
    _cleanup_(oauth_redirect_done) struct oauth_redirect r = {};
    const char *q, *end;
    int k;

    assert(ret);
    if (!url)
        return -EBADMSG;
    end = url + strnlen(url, OAUTH_URL_MAX + 1);
    if (end - url > OAUTH_URL_MAX)
        return -E2BIG;
    q = memchr(url, '?', (size_t)(end - url));
    if (q)
        q++;
    else if (strstr(url, "://") || url[0] == '/')
        return -EBADMSG; /* a URL without a query carries nothing */
    else
        q = url;
    if (memchr(q, '#', (size_t)(end - q)))
        end = memchr(q, '#', (size_t)(end - q));

    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pair_end - q));
        _cleanup_free_ char *key = NULL;
        char *value = NULL;

        if (pair_end == q) {
            q = pair_end + 1;
            continue;
        }
        k = form_decode(q, (size_t)((eq ? eq : pair_end) - q), &key);
        if (k < 0)
            return k;
        if (eq) {
            k = form_decode(eq + 1, (size_t)(pair_end - eq - 1), &value);
            if (k < 0)
                return k;
        }
        q = pair_end + (amp ? 1 : 0);

        if (streq(key, "code")) {
            if (r.code || !value || !*value)
                goto bad_value;
            r.code = secret_new(value, strlen(value));
            explicit_bzero(value, strlen(value));
            free(value);
            if (!r.code)
                return -ENOMEM;
            continue;
        }

        char **field = streq(key, "state")               ? &r.state
                       : streq(key, "error")             ? &r.error
                       : streq(key, "error_description") ? &r.error_description
                                                         : NULL;
        if (!field) {
            free(value);
            continue;
        }
        if (*field || !value || !*value)
            goto bad_value;
        *field = value;
        continue;

    bad_value:
        if (value)
            explicit_bzero(value, strlen(value));
        free(value);
        return -EBADMSG;
    }

    if (!!r.code == !!r.error)
        return -EBADMSG;
    *ret = r;
    r = (struct oauth_redirect){};
    return 0;
}

/* ---- Token requests ---- */

int oauth_token_request_code(const struct secret *code, const char *code_verifier,
                             const char *redirect_uri, const char *client_id,
                             const struct secret *client_secret, struct secret **ret)
{
    if (!code || code->len == 0 || !code_verifier || !*code_verifier || !redirect_uri ||
        !*redirect_uri || !client_id || !*client_id)
        return -EINVAL;

    const struct oauth_param params[] = {
        {"grant_type", OAUTH_GRANT_AUTHORIZATION_CODE},
        {"code", code->data},
        {"code_verifier", code_verifier},
        {"redirect_uri", redirect_uri},
        {"client_id", client_id},
        {"client_secret", client_secret ? client_secret->data : NULL},
    };
    return oauth_form_encode(params, ELEMENTSOF(params), ret);
}

int oauth_token_request_refresh(const struct secret *refresh_token, const char *client_id,
                                const struct secret *client_secret, struct secret **ret)
{
    if (!refresh_token || refresh_token->len == 0 || !client_id || !*client_id)
        return -EINVAL;

    const struct oauth_param params[] = {
        {"grant_type", OAUTH_GRANT_REFRESH_TOKEN},
        {"refresh_token", refresh_token->data},
        {"client_id", client_id},
        {"client_secret", client_secret ? client_secret->data : NULL},
    };
    return oauth_form_encode(params, ELEMENTSOF(params), ret);
}

int oauth_token_request_jwt(const struct secret *assertion, struct secret **ret)
{
    if (!assertion || assertion->len == 0)
        return -EINVAL;

    const struct oauth_param params[] = {
        {"grant_type", OAUTH_GRANT_JWT_BEARER},
        {"assertion", assertion->data},
    };
    return oauth_form_encode(params, ELEMENTSOF(params), ret);
}

/* ---- RS256 ---- */

/* Refuses encrypted PEM: without this callback OpenSSL would prompt on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    return -1;
}

/* Reads an RSA key of at least 2048 bits from PEM: a private key, or when public is true a
 * public key first and then a private one. */
static int load_rsa_key(const char *pem, size_t len, bool public, EVP_PKEY **ret)
{
    _cleanup_(bio_freep) BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;

    if (!pem || len == 0 || len > PEM_MAX)
        return -EINVAL;
    bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return -ENOMEM;
    if (public) {
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
        if (!pkey) {
            BIO_free(bio);
            bio = BIO_new_mem_buf(pem, (int)len);
            if (!bio)
                return -ENOMEM;
        }
    }
    if (!pkey)
        pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    ERR_clear_error();
    if (!pkey)
        return -EINVAL;
    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        EVP_PKEY_free(pkey);
        return -EINVAL;
    }
    if (EVP_PKEY_get_bits(pkey) < RSA_BITS_MIN) {
        EVP_PKEY_free(pkey);
        return -EKEYREJECTED;
    }
    *ret = pkey;
    return 0;
}

/* Appends b64url(p[0..n)). */
static int buf_append_b64url(struct buf *b, const void *p, size_t n)
{
    int r;

    r = buf_reserve(b, (4 * n + 2) / 3 + 1);
    if (r < 0)
        return r;
    b->len += b64url_encode_to(p, n, b->data + b->len);
    return 0;
}

int oauth_jws_sign_rs256(const struct secret *private_key_pem, const char *header,
                         size_t header_len, const char *payload, size_t payload_len,
                         struct secret **ret)
{
    _cleanup_(evp_pkey_freep) EVP_PKEY *pkey = NULL;
    _cleanup_(evp_md_ctx_freep) EVP_MD_CTX *ctx = NULL;
    _cleanup_(buf_wipep) struct buf b = BUF_INIT(JWT_MAX);
    _cleanup_free_ unsigned char *sig = NULL;
    size_t siglen = 0, signed_len;
    struct secret *s;
    int r;

    assert(ret);
    if (!private_key_pem || !header || !payload)
        return -EINVAL;
    r = load_rsa_key(private_key_pem->data, private_key_pem->len, false, &pkey);
    if (r < 0)
        return r;

    r = buf_append_b64url(&b, header, header_len);
    if (r >= 0)
        r = buf_append(&b, ".", 1);
    if (r >= 0)
        r = buf_append_b64url(&b, payload, payload_len);
    if (r < 0)
        return errno_from_buf(r);
    signed_len = b.len;

    ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -ENOMEM;
    /* RSA keys sign with PKCS#1 v1.5 padding unless told otherwise: that is RS256. */
    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)b.data, signed_len) != 1) {
        ERR_clear_error();
        return -EIO;
    }
    sig = malloc(siglen);
    if (!sig)
        return -ENOMEM;
    if (EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)b.data, signed_len) != 1) {
        ERR_clear_error();
        return -EIO;
    }

    r = buf_append(&b, ".", 1);
    if (r >= 0)
        r = buf_append_b64url(&b, sig, siglen);
    if (r < 0)
        return errno_from_buf(r);
    s = secret_new(b.data, b.len);
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

/* Decodes one base64url part of a JWS into JSON; it must be an object. */
static int jws_part_json(const char *p, size_t n, json_t **ret)
{
    _cleanup_free_ void *raw = NULL;
    size_t len = 0;
    json_t *j;

    if (oauth_base64url_decode(p, n, &raw, &len) < 0)
        return -EBADMSG;
    j = json_loadb(raw, len, JSON_REJECT_DUPLICATES, NULL);
    if (!j)
        return -EBADMSG;
    if (!json_is_object(j)) {
        json_decref(j);
        return -EBADMSG;
    }
    *ret = j;
    return 0;
}

int oauth_jwt_verify_rs256(const char *jwt, size_t n, const char *key_pem, size_t key_len,
                           json_t **ret_header, json_t **ret_claims)
{
    _cleanup_(evp_pkey_freep) EVP_PKEY *pkey = NULL;
    _cleanup_(evp_md_ctx_freep) EVP_MD_CTX *ctx = NULL;
    _cleanup_free_ void *sig = NULL;
    json_auto_t *header = NULL, *claims = NULL;
    const char *dot1, *dot2, *end;
    const json_t *alg;
    size_t siglen = 0;
    int r;

    if (!jwt || n == 0 || n > JWT_MAX)
        return -EBADMSG;
    end = jwt + n;
    dot1 = memchr(jwt, '.', n);
    if (!dot1)
        return -EBADMSG;
    dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1));
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
        return -EBADMSG;

    r = jws_part_json(jwt, (size_t)(dot1 - jwt), &header);
    if (r < 0)
        return r;
    alg = json_object_get(header, "alg");
    if (!json_is_string(alg) || !streq(json_string_value(alg), "RS256"))
        return -EKEYREJECTED;
    if (dot2 + 1 == end ||
        oauth_base64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), &sig, &siglen) < 0)
        return -EBADMSG;

    r = load_rsa_key(key_pem, key_len, true, &pkey);
    if (r < 0)
        return r == -EKEYREJECTED ? -EINVAL : r;
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -ENOMEM;
    if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1) {
        ERR_clear_error();
        return -EIO;
    }
    r = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)jwt, (size_t)(dot2 - jwt));
    ERR_clear_error();
    if (r != 1)
        return -EKEYREJECTED;

    /* Only a signed payload is worth parsing. */
    r = jws_part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1), &claims);
    if (r < 0)
        return r;
    if (ret_header)
        *ret_header = TAKE_PTR(header);
    if (ret_claims)
        *ret_claims = TAKE_PTR(claims);
    return 0;
}

/* ---- Credential files ---- */

static const char *const credentials_type_table[_OAUTH_CREDENTIALS_TYPE_MAX] = {
    [OAUTH_CREDENTIALS_AUTHORIZED_USER] = "authorized_user",
    [OAUTH_CREDENTIALS_SERVICE_ACCOUNT] = "service_account",
};

const char *oauth_credentials_type_to_string(enum oauth_credentials_type t)
{
    if (t < 0 || t >= _OAUTH_CREDENTIALS_TYPE_MAX)
        return NULL;
    return credentials_type_table[t];
}

/* Copies src into dst as one line of printable ASCII, truncated to fit. */
static void copy_text(char *dst, size_t size, const char *src)
{
    size_t i = 0;

    if (size == 0)
        return;
    for (; src && src[i] && i + 1 < size; i++)
        dst[i] = (unsigned char)src[i] >= 0x20 && (unsigned char)src[i] < 0x7f ? src[i] : '?';
    dst[i] = '\0';
}

_printf_(3, 4) static int cred_error(struct parse_error *err, int r, const char *fmt, ...)
{
    char text[sizeof(err->text)];
    va_list ap;

    if (err) {
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        copy_text(err->text, sizeof(err->text), text);
        err->line = 0;
        err->column = 0;
    }
    return r;
}

enum field_kind {
    FIELD_TEXT,   /* printable ASCII, no spaces */
    FIELD_SECRET, /* printable ASCII, no spaces */
    FIELD_PEM,    /* printable ASCII plus new lines */
};

static bool field_chars_ok(const char *s, size_t n, enum field_kind kind)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (kind == FIELD_PEM && (c == '\n' || c == '\r' || c == ' '))
            continue;
        if (c <= ' ' || c >= 0x7f)
            return false;
    }
    return true;
}

/* Looks up key in o: a non-empty string of allowed characters, at most max bytes. *ret stays
 * NULL when the key is absent and !required. The value is borrowed from o. */
static int cred_get(const json_t *o, const char *key, bool required, enum field_kind kind,
                    size_t max, const json_t **ret, struct parse_error *err)
{
    const json_t *v = json_object_get(o, key);
    size_t n;

    *ret = NULL;
    if (!v) {
        if (required)
            return cred_error(err, -EINVAL, "missing '%s'", key);
        return 0;
    }
    if (!json_is_string(v))
        return cred_error(err, -EINVAL, "'%s' is not a string", key);
    n = json_string_length(v);
    if (n == 0)
        return cred_error(err, -EINVAL, "'%s' is empty", key);
    if (n > max)
        return cred_error(err, -EINVAL, "'%s' is too long", key);
    if (strlen(json_string_value(v)) != n || !field_chars_ok(json_string_value(v), n, kind))
        return cred_error(err, -EINVAL, "'%s' has characters it cannot have", key);
    *ret = v;
    return 0;
}

static int cred_dup(const json_t *o, const char *key, bool required, size_t max, char **ret,
                    struct parse_error *err)
{
    const json_t *v;
    int r;

    r = cred_get(o, key, required, FIELD_TEXT, max, &v, err);
    if (r < 0 || !v)
        return r;
    *ret = strdup(json_string_value(v));
    return *ret ? 0 : -ENOMEM;
}

static int cred_secret(const json_t *o, const char *key, enum field_kind kind, size_t max,
                       struct secret **ret, struct parse_error *err)
{
    const json_t *v;
    int r;

    r = cred_get(o, key, true, kind, max, &v, err);
    if (r < 0)
        return r;
    *ret = secret_new(json_string_value(v), json_string_length(v));
    return *ret ? 0 : -ENOMEM;
}

void oauth_credentials_done(struct oauth_credentials *c)
{
    if (!c)
        return;
    free(c->client_id);
    secret_free(c->client_secret);
    secret_free(c->refresh_token);
    free(c->quota_project_id);
    free(c->client_email);
    secret_free(c->private_key);
    free(c->private_key_id);
    free(c->token_uri);
    free(c->project_id);
    *c = (struct oauth_credentials){};
}

static int parse_authorized_user(const json_t *o, struct oauth_credentials *c,
                                 struct parse_error *err)
{
    int r;

    r = cred_dup(o, "client_id", true, FIELD_MAX, &c->client_id, err);
    if (r >= 0)
        r = cred_secret(o, "client_secret", FIELD_SECRET, FIELD_MAX, &c->client_secret, err);
    if (r >= 0)
        r = cred_secret(o, "refresh_token", FIELD_SECRET, OAUTH_TOKEN_MAX, &c->refresh_token, err);
    if (r >= 0)
        r = cred_dup(o, "quota_project_id", false, FIELD_MAX, &c->quota_project_id, err);
    return r;
}

static int parse_service_account(const json_t *o, struct oauth_credentials *c,
                                 struct parse_error *err)
{
    _cleanup_(evp_pkey_freep) EVP_PKEY *pkey = NULL;
    int r;

    r = cred_dup(o, "client_email", true, FIELD_MAX, &c->client_email, err);
    if (r >= 0)
        r = cred_secret(o, "private_key", FIELD_PEM, PEM_MAX, &c->private_key, err);
    if (r >= 0)
        r = cred_dup(o, "private_key_id", true, FIELD_MAX, &c->private_key_id, err);
    if (r >= 0)
        r = cred_dup(o, "token_uri", false, FIELD_MAX, &c->token_uri, err);
    if (r >= 0)
        r = cred_dup(o, "project_id", false, FIELD_MAX, &c->project_id, err);
    if (r < 0)
        return r;

    if (!c->token_uri) {
        c->token_uri = strdup(OAUTH_GOOGLE_TOKEN_URL);
        if (!c->token_uri)
            return -ENOMEM;
    } else if (!url_is_allowed(c->token_uri))
        return cred_error(err, -EINVAL, "'token_uri' is not an https URL");

    /* Read the key now, so a broken file is refused at import rather than at the first
     * refresh. */
    r = load_rsa_key(c->private_key->data, c->private_key->len, false, &pkey);
    if (r == -ENOMEM)
        return r;
    if (r == -EKEYREJECTED)
        return cred_error(err, -EINVAL, "'private_key' is an RSA key shorter than %d bits",
                          RSA_BITS_MIN);
    if (r < 0)
        return cred_error(err, -EINVAL, "'private_key' is not an unencrypted RSA private key");
    return 0;
}

int oauth_credentials_parse(const char *text, size_t len, struct oauth_credentials *ret,
                            struct parse_error *reterr)
{
    _cleanup_(oauth_credentials_done) struct oauth_credentials c = {};
    json_auto_t *root = NULL;
    json_error_t jerr;
    const json_t *type;
    int r;

    assert(ret);
    if (len > OAUTH_CREDENTIALS_MAX)
        return cred_error(reterr, -EFBIG, "file is larger than %d bytes", OAUTH_CREDENTIALS_MAX);
    root = json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (reterr) {
            copy_text(reterr->text, sizeof(reterr->text), jerr.text);
            reterr->line = jerr.line;
            reterr->column = jerr.column;
        }
        return -EINVAL;
    }
    if (!json_is_object(root))
        return cred_error(reterr, -EINVAL, "not a JSON object");
    type = json_object_get(root, "type");
    if (!json_is_string(type))
        return cred_error(reterr, -EINVAL, "missing 'type'");

    if (streq(json_string_value(type), "authorized_user")) {
        c.type = OAUTH_CREDENTIALS_AUTHORIZED_USER;
        r = parse_authorized_user(root, &c, reterr);
    } else if (streq(json_string_value(type), "service_account")) {
        c.type = OAUTH_CREDENTIALS_SERVICE_ACCOUNT;
        r = parse_service_account(root, &c, reterr);
    } else
        return cred_error(reterr, -EOPNOTSUPP,
                          "credentials of type '%.60s' are not supported (use authorized_user or "
                          "service_account)",
                          json_string_value(type));
    if (r < 0)
        return r;
    *ret = c;
    c = (struct oauth_credentials){};
    return 0;
}

int oauth_service_account_assertion(const struct oauth_credentials *sa, const char *scope,
                                    uint64_t now_usec, struct secret **ret)
{
    json_auto_t *header = NULL, *claims = NULL;
    _cleanup_free_ char *h = NULL, *p = NULL;
    json_int_t iat;

    assert(ret);
    if (!sa || sa->type != OAUTH_CREDENTIALS_SERVICE_ACCOUNT || !sa->client_email ||
        !sa->private_key || !sa->private_key_id || !sa->token_uri)
        return -EINVAL;
    iat = (json_int_t)(now_usec / USEC_PER_SEC);

    header = json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid", sa->private_key_id);
    claims = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", sa->client_email, "scope",
                       scope ? scope : OAUTH_SCOPE_CLOUD_PLATFORM, "aud", sa->token_uri, "iat", iat,
                       "exp", iat + OAUTH_JWT_LIFETIME_SEC);
    if (!header || !claims)
        return -ENOMEM;
    h = json_dumps(header, JSON_COMPACT);
    p = json_dumps(claims, JSON_COMPACT);
    if (!h || !p)
        return -ENOMEM;
    return oauth_jws_sign_rs256(sa->private_key, h, strlen(h), p, strlen(p), ret);
}

/* ---- Token replies ---- */

static const char *const error_class_table[_OAUTH_ERROR_CLASS_MAX] = {
    [OAUTH_ERROR_NEEDS_LOGIN] = "needs-login",
    [OAUTH_ERROR_RETRYABLE] = "retryable",
    [OAUTH_ERROR_FAILED] = "failed",
};

const char *oauth_error_class_to_string(enum oauth_error_class c)
{
    if (c < 0 || c >= _OAUTH_ERROR_CLASS_MAX)
        return NULL;
    return error_class_table[c];
}

void oauth_token_done(struct oauth_token *t)
{
    if (!t)
        return;
    secret_free(t->access_token);
    secret_free(t->refresh_token);
    secret_free(t->id_token);
    free(t->scope);
    free(t->token_type);
    *t = (struct oauth_token){};
}

bool oauth_scope_has(const char *list, const char *scope)
{
    size_t n;

    if (!list || !scope || !*scope)
        return false;
    n = strlen(scope);
    for (const char *p = list; *p;) {
        size_t k;

        p += strspn(p, " ");
        k = strcspn(p, " ");
        if (k == n && strncmp(p, scope, n) == 0)
            return true;
        p += k;
    }
    return false;
}

static int token_error(struct oauth_error *err, int http_status, enum oauth_error_class class,
                       const char *error, const char *subtype, const char *description)
{
    if (err) {
        *err = (struct oauth_error){.class = class, .http_status = http_status};
        copy_text(err->error, sizeof(err->error), error);
        copy_text(err->subtype, sizeof(err->subtype), subtype);
        copy_text(err->description, sizeof(err->description), description);
    }
    switch (class) {
    case OAUTH_ERROR_NEEDS_LOGIN:
        return -EKEYREJECTED;
    case OAUTH_ERROR_RETRYABLE:
        return -EAGAIN;
    default:
        return -EBADMSG;
    }
}

static bool status_is_retryable(int s)
{
    return s == 408 || s == 429 || (s >= 500 && s <= 599);
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        if (streq(s, list[i]))
            return true;
    return false;
}

/* Maps an RFC 6749 error reply to its class. */
static int token_error_reply(const json_t *root, int http_status, struct oauth_error *err)
{
    /* invalid_grant: the refresh token is revoked or expired (or, with error_subtype
     * rapt_required/invalid_rapt, the Workspace session ended); invalid_client/deleted_client:
     * the OAuth client is gone; unauthorized_client: the token belongs to another client. Each
     * needs a new login; retrying cannot help. */
    static const char *const terminal[] = {"invalid_grant", "invalid_client", "deleted_client",
                                           "unauthorized_client"};
    /* google-auth's _can_retry() list, matched against error and error_description. */
    static const char *const retryable[] = {"internal_failure", "server_error",
                                            "temporarily_unavailable"};
    const char *error = json_string_value(json_object_get(root, "error"));
    const char *desc = json_string_value(json_object_get(root, "error_description"));
    const char *subtype = json_string_value(json_object_get(root, "error_subtype"));
    enum oauth_error_class class;

    if (in_list(error, terminal, ELEMENTSOF(terminal)))
        class = OAUTH_ERROR_NEEDS_LOGIN;
    else if (in_list(error, retryable, ELEMENTSOF(retryable)) ||
             in_list(desc, retryable, ELEMENTSOF(retryable)) || status_is_retryable(http_status))
        class = OAUTH_ERROR_RETRYABLE;
    else
        class = OAUTH_ERROR_FAILED;
    return token_error(err, http_status, class, error, subtype, desc);
}

/* A token: 1..OAUTH_TOKEN_MAX bytes of visible ASCII. It goes into an HTTP header, so a CR or LF
 * in it must never get that far. */
static bool token_ok(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    if (!s || n == 0 || n > OAUTH_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* Printable ASCII (spaces allowed), at most FIELD_MAX bytes. */
static bool text_ok(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    if (!s || n > FIELD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < ' ' || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static int expires_in_value(const json_t *v, uint64_t *ret)
{
    json_int_t i;

    if (json_is_integer(v))
        i = json_integer_value(v);
    else if (json_is_string(v)) {
        /* Some servers send "3599"; only plain digits count. */
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);

        if (n == 0 || n > 12 || strspn(s, "0123456789") != n)
            return -EBADMSG;
        i = strtoll(s, NULL, 10);
    } else
        return -EBADMSG;
    if (i <= 0 || i > EXPIRES_IN_MAX)
        return -EBADMSG;
    *ret = (uint64_t)i;
    return 0;
}

int oauth_token_parse(int http_status, const char *body, size_t len, uint64_t now_usec,
                      struct oauth_token *ret, struct oauth_error *reterr)
{
    _cleanup_(oauth_token_done) struct oauth_token t = {};
    json_auto_t *root = NULL;
    const json_t *access, *type, *v;
    uint64_t expires_in;
    bool success = http_status >= 200 && http_status <= 299;

    assert(ret);
    if (len > OAUTH_TOKEN_REPLY_MAX)
        return token_error(reterr, http_status,
                           status_is_retryable(http_status) ? OAUTH_ERROR_RETRYABLE
                                                            : OAUTH_ERROR_FAILED,
                           NULL, NULL, "reply is too large");
    root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root))
        return token_error(
            reterr, http_status,
            status_is_retryable(http_status) ? OAUTH_ERROR_RETRYABLE : OAUTH_ERROR_FAILED, NULL,
            NULL, success ? "reply is not a JSON object" : "error reply without JSON");
    /* A reply with "error" is an error whatever its status says. */
    if (!success || json_object_get(root, "error"))
        return token_error_reply(root, http_status, reterr);

    access = json_object_get(root, "access_token");
    if (!token_ok(access))
        return token_error(reterr, http_status, OAUTH_ERROR_FAILED, NULL, NULL,
                           "reply has no valid 'access_token'");
    type = json_object_get(root, "token_type");
    if (!json_is_string(type) || !strcaseeq(json_string_value(type), "Bearer") ||
        json_string_length(type) != 6)
        return token_error(reterr, http_status, OAUTH_ERROR_FAILED, NULL, NULL,
                           "reply's 'token_type' is not Bearer");
    if (expires_in_value(json_object_get(root, "expires_in"), &expires_in) < 0)
        return token_error(reterr, http_status, OAUTH_ERROR_FAILED, NULL, NULL,
                           "reply has no valid 'expires_in'");

    t.access_token = secret_new(json_string_value(access), json_string_length(access));
    t.token_type = strdup("Bearer");
    if (!t.access_token || !t.token_type)
        return -ENOMEM;

    v = json_object_get(root, "refresh_token");
    if (v) {
        if (!token_ok(v))
            return token_error(reterr, http_status, OAUTH_ERROR_FAILED, NULL, NULL,
                               "reply's 'refresh_token' is not valid");
        t.refresh_token = secret_new(json_string_value(v), json_string_length(v));
        if (!t.refresh_token)
            return -ENOMEM;
    }
    v = json_object_get(root, "id_token");
    if (v) {
        if (!token_ok(v))
            return token_error(reterr, http_status, OAUTH_ERROR_FAILED, NULL, NULL,
                               "reply's 'id_token' is not valid");
        t.id_token = secret_new(json_string_value(v), json_string_length(v));
        if (!t.id_token)
            return -ENOMEM;
    }
    v = json_object_get(root, "scope");
    if (v) {
        if (!text_ok(v))
            return token_error(reterr, http_status, OAUTH_ERROR_FAILED, NULL, NULL,
                               "reply's 'scope' is not valid");
        t.scope = strdup(json_string_value(v));
        if (!t.scope)
            return -ENOMEM;
    }

    t.lifetime_usec = expires_in * USEC_PER_SEC;
    t.issued_usec = now_usec;
    t.expires_usec =
        now_usec > UINT64_MAX - t.lifetime_usec ? UINT64_MAX : now_usec + t.lifetime_usec;
    *ret = t;
    t = (struct oauth_token){};
    return 0;
}

/* ---- Refresh schedule ---- */

uint64_t oauth_refresh_at(uint64_t issued_usec, uint64_t expires_usec)
{
    uint64_t lifetime, at80, at_margin, at_half;

    if (expires_usec <= issued_usec)
        return issued_usec;
    lifetime = expires_usec - issued_usec;
    at80 = issued_usec + (lifetime - lifetime / 5);
    at_margin = lifetime > OAUTH_REFRESH_MARGIN_USEC ? expires_usec - OAUTH_REFRESH_MARGIN_USEC
                                                     : issued_usec;
    /* Not before half the lifetime: by the letter of the rule, a token that lives five minutes
     * or less would be refreshed the moment it arrives, and again, in a loop. Google's tokens
     * live an hour, where 80% (48 min) comes first. */
    at_half = issued_usec + lifetime / 2;
    return MAX(MIN(at80, at_margin), at_half);
}

uint64_t oauth_refresh_at_jittered(uint64_t issued_usec, uint64_t expires_usec, uint64_t rnd)
{
    uint64_t at = oauth_refresh_at(issued_usec, expires_usec), span, lifetime;

    if (expires_usec <= issued_usec)
        return at;
    lifetime = expires_usec - issued_usec;
    span = MIN(lifetime / 20, OAUTH_REFRESH_JITTER_MAX_USEC);
    span = MIN(span, at - issued_usec);
    if (span == 0)
        return at;
    return at - rnd % (span + 1);
}

uint64_t oauth_backoff_usec(unsigned attempt, uint64_t base_usec, uint64_t max_usec, uint64_t rnd)
{
    uint64_t d = base_usec, half;

    if (base_usec == 0)
        return 0;
    for (unsigned i = 0; i < attempt && d < max_usec; i++)
        d = d > max_usec / 2 ? max_usec : d * 2;
    d = MIN(d, max_usec);
    half = d / 2;
    return d - half + rnd % (half + 1);
}
