/* client-key.c: classifies the key a client sent.
 *
 * dualroute never uses Claude consumer-subscription tokens (sk-ant-oat...), so they are told apart
 * from API keys here and refused by the caller. Member keys (dr-...) are recognised so that a later
 * team mode can look them up; in single-user mode, keys that are neither are ignored, as the SDK
 * examples that send "not-used" expect. */
#include <string.h>
#include <strings.h>

#include "client-key.h"
#include "macro.h"
#include "util.h"

static void trim(const char **p, size_t *n)
{
    while (*n > 0 && (**p == ' ' || **p == '\t')) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
        (*n)--;
}

enum client_key_kind client_key_classify(const char *value, size_t len)
{
    if (!value || len == 0)
        return CLIENT_KEY_NONE;
    if (startswith_n(value, len, "sk-ant-oat"))
        return CLIENT_KEY_SUBSCRIPTION;
    if (startswith_n(value, len, "sk-ant-") && len > strlen("sk-ant-"))
        return CLIENT_KEY_ANTHROPIC;
    if (startswith_n(value, len, "dr-") && len > strlen("dr-"))
        return CLIENT_KEY_MEMBER;
    return CLIENT_KEY_OTHER;
}

struct client_key client_key_from_headers(const char *x_api_key, const char *authorization)
{
    struct client_key k = {.kind = CLIENT_KEY_NONE};
    const char *p = NULL;
    size_t n = 0;

    if (x_api_key) {
        p = x_api_key;
        n = strlen(p);
        trim(&p, &n);
    }
    if (n == 0 && authorization) {
        p = authorization;
        n = strlen(p);
        trim(&p, &n);
        if (n > 7 && strncasecmp(p, "Bearer ", 7) == 0) {
            p += 7;
            n -= 7;
            trim(&p, &n);
        } else
            n = 0;
    }
    k.kind = client_key_classify(p, n);
    if (k.kind != CLIENT_KEY_NONE) {
        k.value = p;
        k.len = n;
    }
    return k;
}

const char *client_key_kind_to_string(enum client_key_kind k)
{
    static const char *const names[_CLIENT_KEY_KIND_MAX] = {
        [CLIENT_KEY_NONE] = "none",
        [CLIENT_KEY_ANTHROPIC] = "anthropic",
        [CLIENT_KEY_SUBSCRIPTION] = "subscription",
        [CLIENT_KEY_MEMBER] = "member",
        [CLIENT_KEY_OTHER] = "other",
    };

    if (k < 0 || k >= _CLIENT_KEY_KIND_MAX)
        return "invalid";
    return names[k];
}
