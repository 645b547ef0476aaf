/* redact.h: removes credentials from text before it is logged. Pure. */
#pragma once

#include <stddef.h>

/* Returns a new NUL-terminated copy of p[0..n) (caller frees) in which every credential-looking
 * token (sk-ant-..., dr-..., the token after "Bearer ", and the values of JSON or header fields
 * named like api_key, x-api-key, authorization, access_token, refresh_token, client_secret,
 * password) is replaced by "[redacted:FP]", FP being secret_fp() of the token. NUL bytes in the
 * input become "\0" text. Returns NULL on allocation failure. */
char *redact_credentials(const char *p, size_t n);
