/* redact.c: credential redaction for logs.
 *
 * Two rules, applied in one left-to-right pass: a token that starts with a known key prefix is
 * replaced up to its last key character; and after a field whose name says it holds a secret
 * (JSON "name": "value", or a header "name: value"), the value is replaced whatever it looks
 * like. The replacement keeps a fingerprint so two log lines about the same key can be matched,
 * which is the one thing an operator needs from it. */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "macro.h"
#include "redact.h"
#include "secret.h"

static bool key_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '+' ||
           c == '/' || c == '=';
}

static const char *const prefixes[] = {"sk-ant-", "dr-", "Bearer ", "bearer "};

static const char *const secret_fields[] = {
    "x-api-key",     "api_key",  "api-key",       "apikey",   "authorization", "access_token",
    "refresh_token", "id_token", "client_secret", "password", "private_key",   "secret",
};

static int append_redacted(struct buf *out, const char *tok, size_t n)
{
    char fp[9];
    int r;

    secret_fp_buf(tok, n, fp);
    r = buf_append_str(out, "[redacted:");
    if (r >= 0)
        r = buf_append(out, fp, 8);
    if (r >= 0)
        r = buf_append(out, "]", 1);
    return r;
}

/* If p starts a secret field name ending in a quote or a colon, returns the length up to the
 * start of its value and sets *quoted. */
static size_t secret_field_at(const char *p, const char *end, bool *quoted)
{
    for (size_t i = 0; i < ELEMENTSOF(secret_fields); i++) {
        size_t k = strlen(secret_fields[i]);
        const char *q;

        if ((size_t)(end - p) < k || strncasecmp(p, secret_fields[i], k) != 0)
            continue;
        q = p + k;
        if (q < end && *q == '"')
            q++;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        if (q >= end || (*q != ':' && *q != '='))
            continue;
        q++;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        *quoted = q < end && *q == '"';
        if (*quoted)
            q++;
        return (size_t)(q - p);
    }
    return 0;
}

char *redact_credentials(const char *p, size_t n)
{
    struct buf out = BUF_INIT(0);
    const char *end = p + n;
    bool prev_key_char = false;
    int r = 0;

    while (p < end && r >= 0) {
        size_t skip = 0, k;
        bool quoted = false;

        /* A field that holds a secret: keep the name, replace the value. */
        if (!prev_key_char && (skip = secret_field_at(p, end, &quoted)) > 0) {
            const char *v = p + skip, *w = v;

            if (quoted)
                while (w < end && *w != '"')
                    w++;
            else
                while (w < end && *w != '\r' && *w != '\n' && *w != ',' && *w != '}' && *w != '"')
                    w++;
            r = buf_append(&out, p, skip);
            if (r >= 0 && w > v)
                r = append_redacted(&out, v, (size_t)(w - v));
            p = w;
            prev_key_char = false;
            continue;
        }

        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
            const char *q;

            /* An Anthropic key is redacted wherever it starts; the other prefixes are common
             * inside words ("hdr-", "Bearer" in prose) and count only at a word start. */
            if (prev_key_char && i > 0)
                continue;
            k = strlen(prefixes[i]);
            if ((size_t)(end - p) <= k || memcmp(p, prefixes[i], k) != 0)
                continue;
            q = p + k;
            while (q < end && key_char(*q))
                q++;
            /* Short runs ("dr-x", "Bearer a") are words, not keys. */
            if (q - (p + k) < 8)
                continue;
            r = buf_append(&out, p, k);
            if (r >= 0)
                r = append_redacted(&out, p + k, (size_t)(q - (p + k)));
            skip = (size_t)(q - p);
            break;
        }
        if (skip > 0) {
            p += skip;
            prev_key_char = false;
            continue;
        }

        if (*p == '\0')
            r = buf_append(&out, "\\0", 2);
        else
            r = buf_append(&out, p, 1);
        prev_key_char = key_char(*p) && *p != '-' && *p != '/' && *p != '=';
        p++;
    }
    if (r < 0) {
        buf_free(&out, true);
        return NULL;
    }
    return buf_steal(&out);
}
