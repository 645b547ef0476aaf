/* test.h: the unit-test harness. TEST(name) defines a test that registers itself; ASSERT_*()
 * report the expression, both values and the line, then fail the test. main() (define
 * TEST_MAIN in exactly one file, or include test-main.h) runs every test, or those named on the
 * command line, and prints "N passed, N failed". */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case {
    const char *name;
    void (*fn)(void);
};

void test_register(const char *name, void (*fn)(void));
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#define TEST(n)                                                                                    \
    static void test_##n(void);                                                                    \
    __attribute__((constructor)) static void test_register_##n(void)                               \
    {                                                                                              \
        test_register(#n, test_##n);                                                               \
    }                                                                                              \
    static void test_##n(void)

#define ASSERT_TRUE(x)                                                                             \
    do {                                                                                           \
        if (!(x))                                                                                  \
            test_fail(__FILE__, __LINE__, "expected true: %s", #x);                                \
    } while (0)
#define ASSERT_FALSE(x)                                                                            \
    do {                                                                                           \
        if (x)                                                                                     \
            test_fail(__FILE__, __LINE__, "expected false: %s", #x);                               \
    } while (0)
#define ASSERT_OK(x)                                                                               \
    do {                                                                                           \
        int64_t _r = (int64_t)(x);                                                                 \
        if (_r < 0)                                                                                \
            test_fail(__FILE__, __LINE__, "%s failed: %" PRId64 " (%s)", #x, _r,                   \
                      strerror((int)-_r));                                                         \
    } while (0)
#define ASSERT_ERROR(x, e)                                                                         \
    do {                                                                                           \
        int64_t _r = (int64_t)(x);                                                                 \
        if (_r != -(int64_t)(e))                                                                   \
            test_fail(__FILE__, __LINE__, "%s returned %" PRId64 ", expected -%s (%d)", #x, _r,    \
                      #e, (int)(e));                                                               \
    } while (0)
#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        int64_t _a = (int64_t)(a), _b = (int64_t)(b);                                              \
        if (_a != _b)                                                                              \
            test_fail(__FILE__, __LINE__, "%s == %s: %" PRId64 " != %" PRId64, #a, #b, _a, _b);    \
    } while (0)
#define ASSERT_STREQ(a, b)                                                                         \
    do {                                                                                           \
        const char *_a = (a), *_b = (b);                                                           \
        if (!_a || !_b || strcmp(_a, _b) != 0)                                                     \
            test_fail(__FILE__, __LINE__, "%s == %s: '%s' != '%s'", #a, #b, _a ? _a : "(null)",    \
                      _b ? _b : "(null)");                                                         \
    } while (0)
#define ASSERT_NULL(x) ASSERT_TRUE((x) == NULL)
#define ASSERT_NOT_NULL(x) ASSERT_TRUE((x) != NULL)
