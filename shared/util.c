/* util.c: value parsing and formatting for configuration and command lines, clocks, strings.
 *
 * Parsers accept exactly the documented forms and nothing else: no trailing garbage, no negative
 * sizes, no overflow (each returns -ERANGE rather than wrap). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "macro.h"
#include "util.h"

static int parse_u64_prefix(const char *s, uint64_t *ret, const char **rest)
{
    uint64_t v = 0;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *ret = v;
    *rest = p;
    return 0;
}

static int mul_check(uint64_t v, uint64_t m, uint64_t *ret)
{
    if (m != 0 && v > UINT64_MAX / m)
        return -ERANGE;
    *ret = v * m;
    return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
    static const struct {
        const char *suffix;
        uint64_t factor;
    } table[] = {
        {"", 1},           {"B", 1},
        {"K", 1ULL << 10}, {"KiB", 1ULL << 10},
        {"M", 1ULL << 20}, {"MiB", 1ULL << 20},
        {"G", 1ULL << 30}, {"GiB", 1ULL << 30},
    };
    const char *rest;
    uint64_t v;
    int r;

    if (!s)
        return -EINVAL;
    r = parse_u64_prefix(s, &v, &rest);
    if (r < 0)
        return r;
    for (size_t i = 0; i < ELEMENTSOF(table); i++)
        if (strcmp(rest, table[i].suffix) == 0)
            return mul_check(v, table[i].factor, ret);
    return -EINVAL;
}

int parse_duration(const char *s, uint64_t *ret_usec)
{
    static const struct {
        const char *suffix;
        uint64_t usec;
    } table[] = {
        {"", USEC_PER_SEC},
        {"s", USEC_PER_SEC},
        {"sec", USEC_PER_SEC},
        {"ms", USEC_PER_MSEC},
        {"us", 1},
        {"m", 60 * USEC_PER_SEC},
        {"min", 60 * USEC_PER_SEC},
        {"h", 3600 * USEC_PER_SEC},
    };
    const char *rest;
    uint64_t v;
    int r;

    if (!s)
        return -EINVAL;
    r = parse_u64_prefix(s, &v, &rest);
    if (r < 0)
        return r;
    for (size_t i = 0; i < ELEMENTSOF(table); i++)
        if (strcmp(rest, table[i].suffix) == 0)
            return mul_check(v, table[i].usec, ret_usec);
    return -EINVAL;
}

int parse_bool(const char *s, bool *ret)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};

    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = false;
            return 0;
        }
    }
    return -EINVAL;
}

int parse_int64(const char *s, int64_t *ret)
{
    bool neg = false;
    const char *rest;
    uint64_t v;
    int r;

    if (!s)
        return -EINVAL;
    if (*s == '-') {
        neg = true;
        s++;
    }
    r = parse_u64_prefix(s, &v, &rest);
    if (r < 0)
        return r;
    if (*rest)
        return -EINVAL;
    if (v > (uint64_t)INT64_MAX + (neg ? 1 : 0))
        return -ERANGE;
    *ret = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

void format_size(uint64_t v, char out[static 32])
{
    if (v != 0 && v % (1ULL << 30) == 0)
        snprintf(out, 32, "%" PRIu64 "G", v >> 30);
    else if (v != 0 && v % (1ULL << 20) == 0)
        snprintf(out, 32, "%" PRIu64 "M", v >> 20);
    else if (v != 0 && v % (1ULL << 10) == 0)
        snprintf(out, 32, "%" PRIu64 "K", v >> 10);
    else
        snprintf(out, 32, "%" PRIu64, v);
}

void format_duration(uint64_t usec, char out[static 32])
{
    if (usec != 0 && usec % (3600 * USEC_PER_SEC) == 0)
        snprintf(out, 32, "%" PRIu64 "h", usec / (3600 * USEC_PER_SEC));
    else if (usec != 0 && usec % (60 * USEC_PER_SEC) == 0)
        snprintf(out, 32, "%" PRIu64 "m", usec / (60 * USEC_PER_SEC));
    else if (usec % USEC_PER_SEC == 0)
        snprintf(out, 32, "%" PRIu64 "s", usec / USEC_PER_SEC);
    else if (usec % USEC_PER_MSEC == 0)
        snprintf(out, 32, "%" PRIu64 "ms", usec / USEC_PER_MSEC);
    else
        snprintf(out, 32, "%" PRIu64 "us", usec);
}

static uint64_t clock_usec(clockid_t c)
{
    struct timespec ts;

    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

uint64_t now_usec(void)
{
    return clock_usec(CLOCK_MONOTONIC);
}

uint64_t now_realtime_usec(void)
{
    return clock_usec(CLOCK_REALTIME);
}

bool startswith(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool startswith_n(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);

    return n >= k && memcmp(s, prefix, k) == 0;
}

char *strdup_trim(const char *s)
{
    const char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    return strndup(s, (size_t)(e - s));
}

int hex_digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool utf8_is_valid(const char *s, size_t n)
{
    const unsigned char *p, *end;

    if (n == 0)
        return true;
    p = (const unsigned char *)s;
    end = p + n;
    while (p < end) {
        unsigned c = *p;
        size_t k;
        uint32_t cp;

        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else
            return false;
        if ((size_t)(end - p) <= k)
            return false;
        for (size_t i = 1; i <= k; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += k + 1;
    }
    return true;
}
