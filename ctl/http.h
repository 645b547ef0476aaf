/* http.h: dualroutectl's calls to routerd over HTTP (libcurl, blocking). */
#pragma once

#include <stdbool.h>

struct secret;

/* GET base/health with a 2 s timeout. Returns 0 when routerd answered 200, -ECONNREFUSED (or
 * another -errno) when it could not be reached, -EPROTO for any other status. */
int http_health(const char *base, char *reterr, size_t errlen);

/* One POST base/v1/messages with the user's message, printing the reply's text on stdout
 * (as it arrives when stream). key (may be NULL) goes in x-api-key. Returns an exit code, having
 * printed any error (routerd's message for an HTTP error: 1; unreachable: 4). */
int http_chat(const char *base, const char *model, const char *message, bool stream,
              const struct secret *key);
