/* secret.h: API keys and tokens in memory. A struct secret is wiped before it is freed, is never
 * printed (logs show secret_fp(), 8 hex chars of its SHA-256), and is compared in constant time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

struct secret {
    size_t len;
    char data[]; /* NUL-terminated */
};

/* Returns a new secret holding a copy of p[0..n), or NULL on allocation failure. */
struct secret *secret_new(const char *p, size_t n);
/* Wipes and frees; accepts NULL; returns NULL. */
struct secret *secret_free(struct secret *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct secret *, secret_free);

/* Writes the fingerprint (8 lowercase hex chars of SHA-256, NUL-terminated) to out. */
void secret_fp_buf(const void *p, size_t n, char out[static 9]);
/* The fingerprint of s, in a static per-thread buffer that the next call overwrites. */
const char *secret_fp(const struct secret *s);

/* Compares in time that depends only on n. Returns true when equal. */
bool memeq_consttime(const void *a, const void *b, size_t n);
/* Equal in content and length; the time depends on the lengths only. */
bool secret_equal(const struct secret *a, const char *p, size_t n);

/* Reads a secret from a file: surrounding white space is trimmed, the file must hold between 1 and
 * max bytes. Refuses (-EPERM) a file that group or others may read, unless allow_loose_mode. */
int secret_from_file(const char *path, size_t max, bool allow_loose_mode, struct secret **ret);
/* Reads the environment variable name into a secret, then overwrites the variable's value in place
 * so it does not linger in /proc/PID/environ, and unsets it. Returns -ENOENT if unset or empty. */
int secret_from_env(const char *name, struct secret **ret);

/* Fills p with n random bytes from getrandom(). */
int random_bytes(void *p, size_t n);
