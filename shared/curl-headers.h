/* curl-headers.h: libcurl header lists that hold a secret (an API key or a token), for routerd's
 * upstream requests and dualroutectl's requests to routerd. */
#pragma once

#include <stddef.h>

#include <curl/curl.h>

#define AUTH_HEADER_API_KEY "x-api-key: "
#define AUTH_HEADER_BEARER "Authorization: Bearer "

/* Appends the header PREFIX KEY to l (NULL starts a list), prefix being AUTH_HEADER_API_KEY or
 * AUTH_HEADER_BEARER. curl copies the string; the intermediate copy is wiped. Returns the list, or
 * NULL on allocation failure (l is then unchanged). */
struct curl_slist *curl_slist_append_secret(struct curl_slist *l, const char *prefix,
                                            const char *key, size_t len);
/* Wipes every header (one holds a secret) and frees the list. Accepts NULL. */
void curl_slist_wipe_free(struct curl_slist *l);
