/* fuzz-oauth-token.c: oauth_token_parse() on arbitrary bytes, with the other two parsers of
 * untrusted text in shared/oauth.c riding along: oauth_redirect_parse() (a URL the user pastes)
 * and oauth_credentials_parse() (a file the user imports).
 *
 * The first byte picks the HTTP status (200, 400, 401, 429, 500 or 503), the rest is the body.
 * The return value and the error class must agree (0 success; -EKEYREJECTED needs-login; -EAGAIN
 * retryable; -EBADMSG/-EFBIG failed), error texts must be one printable line, and a success
 * must carry tokens of visible ASCII (they go into HTTP headers), token_type "Bearer" and an
 * expiry after "now". The done() functions free everything, so LeakSanitizer sees any copy a
 * parser drops. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "fuzz.h"
#include "oauth.h"
#include "secret.h"

#define NOW ((uint64_t)1700000000 * 1000000)

static bool printable_line(const char *s, size_t size)
{
    const char *end = memchr(s, '\0', size);

    if (!end)
        return false;
    for (; s < end; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static bool visible_token(const struct secret *s)
{
    if (!s || s->len == 0 || s->len > OAUTH_TOKEN_MAX || s->data[s->len] != '\0')
        return false;
    for (size_t i = 0; i < s->len; i++)
        if ((unsigned char)s->data[i] <= ' ' || (unsigned char)s->data[i] >= 0x7f)
            return false;
    return true;
}

static void check_token(const char *body, size_t len, int status)
{
    struct oauth_token t = {};
    struct oauth_error err = {.class = _OAUTH_ERROR_CLASS_INVALID};
    int r;

    r = oauth_token_parse(status, body, len, NOW, &t, &err);
    if (r == 0) {
        FUZZ_CHECK(status >= 200 && status <= 299);
        FUZZ_CHECK(visible_token(t.access_token));
        FUZZ_CHECK(!t.refresh_token || visible_token(t.refresh_token));
        FUZZ_CHECK(!t.id_token || visible_token(t.id_token));
        FUZZ_CHECK(t.token_type && strcmp(t.token_type, "Bearer") == 0);
        FUZZ_CHECK(!t.scope || printable_line(t.scope, strlen(t.scope) + 1));
        FUZZ_CHECK(t.lifetime_usec > 0);
        FUZZ_CHECK(t.issued_usec == NOW && t.expires_usec == NOW + t.lifetime_usec);
        FUZZ_CHECK(oauth_refresh_at(t.issued_usec, t.expires_usec) < t.expires_usec);
        oauth_token_done(&t);
        FUZZ_CHECK(!t.access_token);
        return;
    }
    FUZZ_CHECK(!t.access_token && !t.refresh_token && !t.id_token && !t.scope && !t.token_type);
    FUZZ_CHECK(err.http_status == status);
    FUZZ_CHECK(oauth_error_class_to_string(err.class));
    switch (r) {
    case -EKEYREJECTED:
        FUZZ_CHECK(err.class == OAUTH_ERROR_NEEDS_LOGIN);
        FUZZ_CHECK(err.error[0] != '\0');
        break;
    case -EAGAIN:
        FUZZ_CHECK(err.class == OAUTH_ERROR_RETRYABLE);
        break;
    case -EBADMSG:
        FUZZ_CHECK(err.class == OAUTH_ERROR_FAILED);
        break;
    default:
        FUZZ_CHECK(!"unexpected error");
    }
    FUZZ_CHECK(printable_line(err.error, sizeof err.error));
    FUZZ_CHECK(printable_line(err.subtype, sizeof err.subtype));
    FUZZ_CHECK(printable_line(err.description, sizeof err.description));
}

static void check_redirect(const char *data, size_t size)
{
    struct oauth_redirect r = {};
    char *url = strndup(data, size);
    int k;

    FUZZ_CHECK(url);
    k = oauth_redirect_parse(url, &r);
    if (k == 0) {
        FUZZ_CHECK(!!r.code != !!r.error);
        FUZZ_CHECK(!r.code || (r.code->len > 0 && r.code->len == strlen(r.code->data)));
        FUZZ_CHECK(!r.state || r.state[0]);
        oauth_redirect_done(&r);
    } else {
        FUZZ_CHECK(k == -EBADMSG || k == -E2BIG);
        FUZZ_CHECK(!r.code && !r.state && !r.error && !r.error_description);
    }
    free(url);
}

static void check_credentials(const char *data, size_t size)
{
    struct oauth_credentials c = {};
    struct parse_error err = {};
    int r;

    r = oauth_credentials_parse(data, size, &c, &err);
    if (r == 0) {
        FUZZ_CHECK(oauth_credentials_type_to_string(c.type));
        if (c.type == OAUTH_CREDENTIALS_AUTHORIZED_USER)
            FUZZ_CHECK(c.client_id && c.client_secret && c.refresh_token);
        else
            FUZZ_CHECK(c.client_email && c.private_key && c.private_key_id && c.token_uri);
        oauth_credentials_done(&c);
    } else {
        FUZZ_CHECK(r == -EINVAL || r == -EOPNOTSUPP || r == -EFBIG);
        FUZZ_CHECK(printable_line(err.text, sizeof err.text));
        FUZZ_CHECK(!c.client_id && !c.client_secret && !c.private_key && !c.token_uri);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int statuses[] = {200, 400, 401, 429, 500, 503};
    const char *body = (const char *)data;
    int status = 200;

    if (size > 0) {
        status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
        body++;
        size--;
    }
    check_token(body, size, status);
    /* The body as a 2xx reply too: success is the interesting path. */
    check_token(body, size, 200);
    check_redirect(body, size);
    check_credentials(body, size);
    return 0;
}
