/* oauth.h: the pure parts of Google OAuth 2.0 for authd and dualroutectl: PKCE and state, the
 * authorization URL, token request bodies (authorization code, refresh token, JWT bearer),
 * service-account JWTs (RS256), token replies and their errors, credential files (ADC
 * authorized_user, service-account keys) and the refresh schedule. No IO, no clock, no logging:
 * the caller passes "now" and any random value in. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

struct json_t;
struct parse_error;
struct secret;

#define OAUTH_GOOGLE_AUTH_URL "https://accounts.google.com/o/oauth2/v2/auth"
#define OAUTH_GOOGLE_TOKEN_URL "https://oauth2.googleapis.com/token"
#define OAUTH_SCOPE_CLOUD_PLATFORM "https://www.googleapis.com/auth/cloud-platform"
/* The login scope when the account's e-mail address is wanted too (it comes in the id_token). */
#define OAUTH_SCOPE_CLOUD_PLATFORM_EMAIL OAUTH_SCOPE_CLOUD_PLATFORM " openid email"
#define OAUTH_GRANT_AUTHORIZATION_CODE "authorization_code"
#define OAUTH_GRANT_REFRESH_TOKEN "refresh_token"
#define OAUTH_GRANT_JWT_BEARER "urn:ietf:params:oauth:grant-type:jwt-bearer"

/* Ceilings. A token reply or credential file over its ceiling is refused with -EFBIG. */
#define OAUTH_TOKEN_REPLY_MAX (64 * 1024)
#define OAUTH_CREDENTIALS_MAX (64 * 1024)
#define OAUTH_TOKEN_MAX 8192 /* bytes of an access, refresh or id token */
#define OAUTH_FORM_MAX (64 * 1024)
#define OAUTH_URL_MAX 8192
#define OAUTH_JWT_LIFETIME_SEC 3600 /* Google caps an assertion's exp - iat at one hour */

/* ---- base64url (RFC 4648 section 5, without padding) ---- */

/* Encodes p[0..n) as base64url without '=' padding. Returns 0 with a new NUL-terminated string in
 * *ret (caller frees), or -ENOMEM / -E2BIG. */
int oauth_base64url_encode(const void *p, size_t n, char **ret);
/* Decodes s[0..n), which must be base64url without padding (trailing '=' is refused too, as JWS
 * requires) and with zero unused bits. Returns 0 with a new buffer in *ret (NUL-terminated one
 * byte past *ret_len; caller frees) or -EINVAL / -ENOMEM. */
int oauth_base64url_decode(const char *s, size_t n, void **ret, size_t *ret_len);

/* ---- PKCE (RFC 7636) and state ---- */

#define OAUTH_PKCE_VERIFIER_MIN 43
#define OAUTH_PKCE_VERIFIER_MAX 128
#define OAUTH_PKCE_CHALLENGE_LEN 43 /* base64url of a SHA-256 */
#define OAUTH_STATE_LEN 43          /* base64url of 32 random bytes */

/* The verifier is a secret until the code is exchanged: wipe it with oauth_pkce_done(). */
struct oauth_pkce {
    char verifier[OAUTH_PKCE_VERIFIER_MAX + 1];
    char challenge[OAUTH_PKCE_CHALLENGE_LEN + 1];
};

/* Makes a verifier of 43 chars from 32 random bytes (base64url) and its S256 challenge. Returns 0
 * or the -errno of getrandom(). */
int oauth_pkce_new(struct oauth_pkce *ret);
/* Same, from 32 given bytes, so tests are deterministic. */
void oauth_pkce_from_bytes(const uint8_t bytes[static 32], struct oauth_pkce *ret);
/* Writes BASE64URL(SHA-256(verifier)) to out. Returns 0, or -EINVAL when the verifier is not
 * 43..128 characters of [A-Za-z0-9-._~]. */
int oauth_pkce_challenge(const char *verifier, char out[static OAUTH_PKCE_CHALLENGE_LEN + 1]);
/* Wipes p. */
void oauth_pkce_done(struct oauth_pkce *p);

/* Writes a fresh random state (43 chars of base64url, 256 bits) to out. Returns 0 or -errno. */
int oauth_state_new(char out[static OAUTH_STATE_LEN + 1]);
/* True when got equals expected, compared in time that does not depend on where they differ.
 * NULL or empty on either side never matches. */
bool oauth_state_matches(const char *expected, const char *got);

/* ---- URLs and forms ---- */

struct oauth_param {
    const char *key;
    const char *value; /* NULL: the pair is left out */
};

/* Encodes params as application/x-www-form-urlencoded the way Python's urlencode() (and so
 * google-auth) does: [A-Za-z0-9-._~] as is, space as '+', every other byte as %XX. Values may be
 * secrets, so the result is one: *ret is a new secret (wiped when freed). Returns 0, -E2BIG over
 * OAUTH_FORM_MAX, -EINVAL for a NULL key, or -ENOMEM. */
int oauth_form_encode(const struct oauth_param *params, size_t n, struct secret **ret);

/* The authorization request's variable parts; every pointer is borrowed. */
struct oauth_authorize {
    const char *endpoint;       /* NULL: OAUTH_GOOGLE_AUTH_URL */
    const char *client_id;      /* required */
    const char *redirect_uri;   /* required, e.g. http://127.0.0.1:PORT */
    const char *scope;          /* NULL: OAUTH_SCOPE_CLOUD_PLATFORM */
    const char *code_challenge; /* required, S256 */
    const char *state;          /* required */
};

/* Builds the authorization URL: endpoint?client_id&redirect_uri&response_type=code&scope&state
 * &code_challenge&code_challenge_method=S256&access_type=offline&prompt=consent (in that order;
 * an endpoint that already has a query gets '&'). The endpoint must be https, or http to a
 * loopback host. Returns 0 with a new string in *ret (caller frees), -EINVAL for a missing
 * field or a bad endpoint, -E2BIG over OAUTH_URL_MAX, or -ENOMEM. */
int oauth_authorize_url(const struct oauth_authorize *a, char **ret);

/* What the loopback redirect carried. Either code or error is set, never both. */
struct oauth_redirect {
    struct secret *code;     /* owned */
    char *state;             /* owned; NULL when absent */
    char *error;             /* owned, e.g. "access_denied" */
    char *error_description; /* owned; NULL when absent */
};

/* Parses the redirect the browser was sent to, as dualroutectl's loopback listener sees its
 * request target ("/?code=..&state=..") or as the user pastes it on a headless host
 * ("http://127.0.0.1:PORT/?state=..&code=..&scope=.."). Anything before '?' and from '#' on is
 * ignored; a string without '?' is taken as the query itself. Keys are percent- and '+'-decoded;
 * unknown keys are skipped. Returns 0 (then r has either code or error), -EBADMSG when neither is
 * there, a key repeats, or a value is empty, not decodable or holds a control character, -E2BIG
 * over OAUTH_URL_MAX, or -ENOMEM. r must start zeroed; on failure it stays zeroed. The caller
 * still checks r->state with oauth_state_matches(). */
int oauth_redirect_parse(const char *url, struct oauth_redirect *r);
void oauth_redirect_done(struct oauth_redirect *r);

/* ---- Token requests (bodies for POST token_uri, application/x-www-form-urlencoded) ---- */

/* grant_type=authorization_code&code&code_verifier&redirect_uri&client_id[&client_secret]. All
 * but client_secret are required. *ret is a new secret. Returns 0, -EINVAL or -ENOMEM. */
int oauth_token_request_code(const struct secret *code, const char *code_verifier,
                             const char *redirect_uri, const char *client_id,
                             const struct secret *client_secret, struct secret **ret);
/* grant_type=refresh_token&refresh_token&client_id[&client_secret]. */
int oauth_token_request_refresh(const struct secret *refresh_token, const char *client_id,
                                const struct secret *client_secret, struct secret **ret);
/* grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion (RFC 7523). */
int oauth_token_request_jwt(const struct secret *assertion, struct secret **ret);

/* ---- JWT (RS256) ---- */

/* Signs a JWS compact serialization: b64url(header) "." b64url(payload) "." b64url(signature),
 * RSASSA-PKCS1-v1_5 with SHA-256, header and payload taken as given bytes (the caller makes them
 * JSON). The key is a PEM private key (PKCS#8 "BEGIN PRIVATE KEY"; OpenSSL also reads the older
 * "BEGIN RSA PRIVATE KEY") and must be RSA of at least 2048 bits. *ret is a new secret: an
 * assertion is a credential for its lifetime. Returns 0, -EINVAL (unreadable or non-RSA key),
 * -EKEYREJECTED (a short RSA key), -EIO (OpenSSL failed) or -ENOMEM. */
int oauth_jws_sign_rs256(const struct secret *private_key_pem, const char *header,
                         size_t header_len, const char *payload, size_t payload_len,
                         struct secret **ret);

/* Verifies a compact JWS with header alg "RS256" (nothing else is accepted, so no algorithm
 * confusion) against a PEM public key ("BEGIN PUBLIC KEY") or private key. On success the header
 * and payload must be JSON objects; *ret_header and *ret_claims (either may be NULL) get new
 * references. Returns 0, -EBADMSG (malformed), -EKEYREJECTED (bad signature or wrong alg),
 * -EINVAL (unusable key) or -ENOMEM. It checks no claim: the caller checks iss, aud and times. */
int oauth_jwt_verify_rs256(const char *jwt, size_t n, const char *key_pem, size_t key_len,
                           struct json_t **ret_header, struct json_t **ret_claims);

/* ---- Credential files ---- */

enum oauth_credentials_type {
    OAUTH_CREDENTIALS_AUTHORIZED_USER, /* gcloud application-default credentials */
    OAUTH_CREDENTIALS_SERVICE_ACCOUNT, /* a service-account key file */
    _OAUTH_CREDENTIALS_TYPE_MAX,
    _OAUTH_CREDENTIALS_TYPE_INVALID = -EINVAL,
};

/* Starts zeroed; every pointer is owned, NULL when the file does not have it. */
struct oauth_credentials {
    enum oauth_credentials_type type;
    /* authorized_user */
    char *client_id;
    struct secret *client_secret;
    struct secret *refresh_token;
    char *quota_project_id; /* optional: goes out as x-goog-user-project */
    /* service_account */
    char *client_email;
    struct secret *private_key; /* PEM */
    char *private_key_id;
    char *token_uri;  /* OAUTH_GOOGLE_TOKEN_URL when the file has none */
    char *project_id; /* optional */
};

/* Parses a credentials file's text. "type" picks the kind: "authorized_user" needs client_id,
 * client_secret and refresh_token; "service_account" needs client_email, private_key (a PEM RSA
 * key that OpenSSL reads), private_key_id and an https (or loopback http) token_uri when present.
 * Other types (external_account, impersonated_service_account, ...) are -EOPNOTSUPP. Returns 0,
 * -EINVAL (bad JSON or field; reterr says which), -EOPNOTSUPP, -EFBIG over OAUTH_CREDENTIALS_MAX
 * or -ENOMEM. c must start zeroed and is left zeroed on failure. text need not be NUL-terminated.
 * Note: jansson's own copies of the secrets are freed without wiping. */
int oauth_credentials_parse(const char *text, size_t len, struct oauth_credentials *c,
                            struct parse_error *reterr);
/* Frees (wiping the secrets) and zeroes c. Accepts NULL. */
void oauth_credentials_done(struct oauth_credentials *c);
/* "authorized_user", "service_account"; NULL out of range. */
const char *oauth_credentials_type_to_string(enum oauth_credentials_type t);

/* Builds the service account's signed assertion for the JWT-bearer grant: header
 * {"alg":"RS256","typ":"JWT","kid":private_key_id}, claims {"iss":client_email,"scope":scope,
 * "aud":token_uri,"iat":now,"exp":now+3600} (now in seconds since the epoch, from now_usec; scope
 * NULL means cloud-platform). *ret is a new secret. Returns 0, -EINVAL (not a service account, or
 * a bad key) or the errors of oauth_jws_sign_rs256(). */
int oauth_service_account_assertion(const struct oauth_credentials *sa, const char *scope,
                                    uint64_t now_usec, struct secret **ret);

/* ---- Token replies ---- */

/* Starts zeroed; pointers owned. */
struct oauth_token {
    struct secret *access_token;
    struct secret *refresh_token; /* NULL: the reply had none; keep the old one */
    struct secret *id_token;      /* NULL unless "openid" was asked for */
    char *scope;                  /* as granted; NULL when the reply has none */
    char *token_type;             /* "Bearer" */
    uint64_t lifetime_usec;       /* expires_in */
    uint64_t issued_usec;         /* the "now" passed in */
    uint64_t expires_usec;        /* issued + lifetime, CLOCK_REALTIME */
};

enum oauth_error_class {
    OAUTH_ERROR_NEEDS_LOGIN, /* the grant is dead: mark the account, never retry */
    OAUTH_ERROR_RETRYABLE,   /* try again later, with backoff */
    OAUTH_ERROR_FAILED,      /* a request or configuration problem: do not retry as is */
    _OAUTH_ERROR_CLASS_MAX,
    _OAUTH_ERROR_CLASS_INVALID = -EINVAL,
};

/* What went wrong, printable: every field is one line of sanitised text, possibly empty. */
struct oauth_error {
    enum oauth_error_class class;
    int http_status;
    char error[64];        /* e.g. "invalid_grant"; "" when the body was not an OAuth error */
    char subtype[64];      /* Google's error_subtype, e.g. "rapt_required" */
    char description[160]; /* error_description, or what was malformed */
};

/* Parses a token endpoint's reply. A 2xx status whose body has a non-empty access_token, a
 * positive expires_in (integer, or a string of digits) and token_type "Bearer" (any case) is a
 * success: 0, with *t filled (t must start zeroed) and expiry = now_usec + expires_in. Anything
 * else fills reterr (may be NULL) and returns:
 *   -EKEYREJECTED  invalid_grant, invalid_client, deleted_client, unauthorized_client
 *                  (class NEEDS_LOGIN);
 *   -EAGAIN        server_error, temporarily_unavailable, internal_failure, or no OAuth error
 *                  with status 408, 429 or 5xx (class RETRYABLE);
 *   -EBADMSG       any other error reply, or a 2xx reply that is not a valid token (FAILED);
 *   -EFBIG         a body over OAUTH_TOKEN_REPLY_MAX (FAILED); -ENOMEM.
 * body need not be NUL-terminated. */
int oauth_token_parse(int http_status, const char *body, size_t len, uint64_t now_usec,
                      struct oauth_token *t, struct oauth_error *reterr);
/* Frees (wiping the secrets) and zeroes t. Accepts NULL. */
void oauth_token_done(struct oauth_token *t);
/* True when the space-separated scope list has scope as one of its items. */
bool oauth_scope_has(const char *scope_list, const char *scope);
const char *oauth_error_class_to_string(enum oauth_error_class c);

/* ---- Refresh schedule (ARCHITECTURE.md, Decisions, "Refresh") ---- */

#define OAUTH_REFRESH_MARGIN_USEC (5 * 60 * USEC_PER_SEC)
#define OAUTH_REFRESH_JITTER_MAX_USEC (60 * USEC_PER_SEC)

/* When to refresh a token issued at issued_usec that expires at expires_usec: at 80% of its
 * lifetime or five minutes before expiry, whichever comes first, but not before half its lifetime
 * (so a token of five minutes or less is not refreshed in a loop). A token that is born expired
 * (expires_usec <= issued_usec) is refreshed at once: issued_usec. */
uint64_t oauth_refresh_at(uint64_t issued_usec, uint64_t expires_usec);
/* oauth_refresh_at() moved earlier by a random amount, so accounts loaded together do not refresh
 * together: up to 5% of the lifetime, at most OAUTH_REFRESH_JITTER_MAX_USEC, chosen by rnd (any
 * 64-bit random value). Never before issued_usec, never later than oauth_refresh_at(). */
uint64_t oauth_refresh_at_jittered(uint64_t issued_usec, uint64_t expires_usec, uint64_t rnd);
/* The delay before retry number attempt (0 for the first retry) after a retryable failure:
 * exponential, base * 2^attempt capped at max, with "equal jitter" (half fixed, half chosen by
 * rnd), so the result is in [d/2, d] where d is the capped value. base 0 gives 0. */
uint64_t oauth_backoff_usec(unsigned attempt, uint64_t base_usec, uint64_t max_usec, uint64_t rnd);
