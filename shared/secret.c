/* secret.c: keys and tokens in memory.
 *
 * A secret lives in one allocation (length + bytes) so wiping it is one explicit_bzero(). The
 * fingerprint is a prefix of the SHA-256 (OpenSSL's EVP), enough to tell keys apart in logs and
 * far too short to help anyone recover one. Comparisons go through memeq_consttime(), whose time
 * depends only on the length. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "secret.h"

struct secret *secret_new(const char *p, size_t n)
{
    struct secret *s;

    s = malloc(sizeof(*s) + n + 1);
    if (!s)
        return NULL;
    s->len = n;
    if (n > 0)
        memcpy(s->data, p, n);
    s->data[n] = '\0';
    return s;
}

struct secret *secret_free(struct secret *s)
{
    if (!s)
        return NULL;
    explicit_bzero(s, sizeof(*s) + s->len + 1);
    free(s);
    return NULL;
}

void secret_fp_buf(const void *p, size_t n, char out[static 9])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 4) {
        memcpy(out, "????????", 9);
        return;
    }
    for (size_t i = 0; i < 4; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[8] = '\0';
}

const char *secret_fp(const struct secret *s)
{
    static __thread char fp[9];

    if (!s)
        return "(none)";
    secret_fp_buf(s->data, s->len, fp);
    return fp;
}

bool memeq_consttime(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char d = 0;

    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

bool secret_equal(const struct secret *a, const char *p, size_t n)
{
    if (!a || a->len != n)
        return false;
    return memeq_consttime(a->data, p, n);
}

static void trim_span(const char **p, size_t *n)
{
    while (*n > 0 && strchr(" \t\r\n", (*p)[0])) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && strchr(" \t\r\n", (*p)[*n - 1]))
        (*n)--;
}

int secret_from_file(const char *path, size_t max, bool allow_loose_mode, struct secret **ret)
{
    _cleanup_close_ int fd = -1;
    struct stat st;
    char *data;
    size_t n = 0;
    int r = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EBADF;
    if (!allow_loose_mode && (st.st_mode & 0077))
        return -EPERM;
    if (st.st_size <= 0 || (size_t)st.st_size > max + 64)
        return -EMSGSIZE;

    data = malloc(max + 65);
    if (!data)
        return -ENOMEM;
    for (;;) {
        ssize_t k = read(fd, data + n, max + 64 - n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (k == 0)
            break;
        n += (size_t)k;
        if (n >= max + 64) {
            r = -EMSGSIZE;
            break;
        }
    }

    if (r == 0) {
        const char *p = data;
        size_t m = n;

        trim_span(&p, &m);
        if (m == 0 || m > max)
            r = -EMSGSIZE;
        else if (memchr(p, '\0', m) || memchr(p, '\n', m))
            r = -EBADMSG;
        else {
            *ret = secret_new(p, m);
            if (!*ret)
                r = -ENOMEM;
        }
    }
    explicit_bzero(data, max + 65);
    free(data);
    return r;
}

int secret_from_env(const char *name, struct secret **ret)
{
    char *v = getenv(name);
    const char *p;
    size_t n;

    struct secret *sec = NULL;

    if (!v || !*v)
        return -ENOENT;
    p = v;
    n = strlen(v);
    trim_span(&p, &n);
    if (n > 0)
        sec = secret_new(p, n);
    /* getenv() returns the environ string itself; wiping it removes the value from
     * /proc/PID/environ, which shows the original environment block. Done whatever the value
     * was, so a failed read leaves nothing behind either. */
    explicit_bzero(v, strlen(v));
    unsetenv(name);
    if (n == 0)
        return -ENOENT;
    if (!sec)
        return -ENOMEM;
    *ret = sec;
    return 0;
}

int random_bytes(void *p, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t k = getrandom((char *)p + done, n - done, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)k;
    }
    return 0;
}
