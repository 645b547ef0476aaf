/* macro.h: small helpers every file in dualroute uses: scope-bound cleanup in systemd's style,
 * ownership hand-off, array sizes. Nothing here allocates. */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Takes the value out of an owning variable, leaving NULL behind, so the variable's cleanup does
 * nothing. Used to hand ownership on: *ret = TAKE_PTR(x); */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _tp_ = (p);                                                                  \
        (p) = NULL;                                                                                \
        _tp_;                                                                                      \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _tf_ = (fd);                                                                           \
        (fd) = -1;                                                                                 \
        _tf_;                                                                                      \
    })

/* Defines name##p(type **p) that calls func(*p) when *p is not NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
    static inline void func##p(type *p)                                                            \
    {                                                                                              \
        if (*p)                                                                                    \
            func(*p);                                                                              \
    }

static inline void *mfree(void *p)
{
    free(p);
    return NULL;
}

static inline void freep(void *p)
{
    free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline int safe_close(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return -1;
}

static inline void closep(int *fd)
{
    safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Returns r as a negative errno; maps 0 (a libc call that failed without setting errno) to -EIO. */
static inline int negative_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

#define streq(a, b) (strcmp((a), (b)) == 0)
#define strcaseeq(a, b) (strcasecmp((a), (b)) == 0)

#define USEC_PER_SEC ((uint64_t)1000000)
#define USEC_PER_MSEC ((uint64_t)1000)
#define NSEC_PER_USEC ((uint64_t)1000)
