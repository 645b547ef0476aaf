/* client-key.h: what a client's key is, from x-api-key or "Authorization: Bearer". Pure. */
#pragma once

#include <errno.h>
#include <stddef.h>

enum client_key_kind {
    CLIENT_KEY_NONE,         /* no header, or an empty value */
    CLIENT_KEY_ANTHROPIC,    /* sk-ant-... (not a subscription token): the client's own API key */
    CLIENT_KEY_SUBSCRIPTION, /* sk-ant-oat...: a consumer-subscription OAuth token, refused */
    CLIENT_KEY_MEMBER,       /* dr-...: a dualroute member key */
    CLIENT_KEY_OTHER,        /* anything else ("not-used", "dummy"): ignored in single-user mode */
    _CLIENT_KEY_KIND_MAX,
    _CLIENT_KEY_KIND_INVALID = -EINVAL,
};

struct client_key {
    enum client_key_kind kind;
    const char *value; /* borrowed from the request headers */
    size_t len;
};

/* Picks the key from the two header values (either may be NULL): x-api-key wins, else a Bearer
 * token. Values are trimmed of surrounding blanks; the result borrows from the arguments. */
struct client_key client_key_from_headers(const char *x_api_key, const char *authorization);
enum client_key_kind client_key_classify(const char *value, size_t len);
const char *client_key_kind_to_string(enum client_key_kind k);
