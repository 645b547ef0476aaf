/* test-util.c: unit tests for shared/util.c.
 *
 * Each parser gets a table of accepted forms with their values and a table of rejected forms with
 * their error: trailing garbage, signs, white space and overflow. The formatters are checked on
 * fixed values and then as a round trip (parse(format(v)) == v) over many pseudo-random values.
 * utf8_is_valid() is fed the classic malformed sequences: overlong forms, surrogates, truncated
 * sequences, stray continuation bytes and code points above U+10FFFF. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "test.h"
#include "util.h"

struct u64_case {
    const char *in;
    uint64_t out;
};

struct err_case {
    const char *in;
    int err;
};

/* xorshift64: deterministic values spread over all magnitudes for the round-trip tests. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

TEST(parse_size_accepts)
{
    static const struct u64_case cases[] = {
        {"0", 0},
        {"1", 1},
        {"4096", 4096},
        {"007", 7},
        {"1B", 1},
        {"32K", 32 << 10},
        {"32KiB", 32 << 10},
        {"32M", 32 << 20},
        {"32MiB", 32 << 20},
        {"1G", 1 << 30},
        {"1GiB", 1 << 30},
        {"0G", 0},
        {"18446744073709551615", UINT64_MAX},
        {"18014398509481983K", UINT64_MAX >> 10 << 10},
        {"17179869183G", (UINT64_MAX >> 30) << 30},
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        uint64_t v = 0;
        int r = parse_size(cases[i].in, &v);
        if (r < 0 || v != cases[i].out)
            test_fail(__FILE__, __LINE__, "parse_size('%s') = %d, %" PRIu64 "; expected %" PRIu64,
                      cases[i].in, r, v, cases[i].out);
    }
}

TEST(parse_size_rejects)
{
    static const struct err_case cases[] = {
        {"", EINVAL},
        {"K", EINVAL},
        {" 1", EINVAL},
        {"1 ", EINVAL},
        {"1 K", EINVAL},
        {"-1", EINVAL},
        {"+1", EINVAL},
        {"1k", EINVAL},
        {"1KB", EINVAL},
        {"1Ki", EINVAL},
        {"1T", EINVAL},
        {"1.5M", EINVAL},
        {"0x10", EINVAL},
        {"1MM", EINVAL},
        {"12abc", EINVAL},
        {"18446744073709551616", ERANGE},
        {"99999999999999999999999", ERANGE},
        {"18014398509481984K", ERANGE},
        {"17592186044416M", ERANGE},
        {"17179869184G", ERANGE},
    };
    uint64_t v = 12345;

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        int r = parse_size(cases[i].in, &v);
        if (r != -cases[i].err)
            test_fail(__FILE__, __LINE__, "parse_size('%s') = %d; expected -%d", cases[i].in, r,
                      cases[i].err);
    }
    ASSERT_ERROR(parse_size(NULL, &v), EINVAL);
    /* A failed parse leaves the output alone. */
    ASSERT_EQ(v, 12345);
}

TEST(parse_duration_accepts)
{
    static const struct u64_case cases[] = {
        {"0", 0},
        {"30", 30 * USEC_PER_SEC},
        {"30s", 30 * USEC_PER_SEC},
        {"30sec", 30 * USEC_PER_SEC},
        {"250ms", 250 * USEC_PER_MSEC},
        {"1500us", 1500},
        {"5m", 5 * 60 * USEC_PER_SEC},
        {"5min", 5 * 60 * USEC_PER_SEC},
        {"1h", 3600 * USEC_PER_SEC},
        {"0ms", 0},
        {"18446744073709551615us", UINT64_MAX},
        {"18446744073709s", 18446744073709 * USEC_PER_SEC},
        {"5124095576h", 5124095576 * 3600 * USEC_PER_SEC},
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        uint64_t v = 0;
        int r = parse_duration(cases[i].in, &v);
        if (r < 0 || v != cases[i].out)
            test_fail(__FILE__, __LINE__,
                      "parse_duration('%s') = %d, %" PRIu64 "; expected %" PRIu64, cases[i].in, r,
                      v, cases[i].out);
    }
}

TEST(parse_duration_rejects)
{
    static const struct err_case cases[] = {
        {"", EINVAL},
        {"s", EINVAL},
        {"ms", EINVAL},
        {" 1s", EINVAL},
        {"1s ", EINVAL},
        {"1 s", EINVAL},
        {"-1s", EINVAL},
        {"+1s", EINVAL},
        {"1S", EINVAL},
        {"1d", EINVAL},
        {"1.5s", EINVAL},
        {"1h30m", EINVAL},
        {"1ns", EINVAL},
        {"1mss", EINVAL},
        {"18446744073709551616us", ERANGE},
        {"18446744073710s", ERANGE},
        {"18446744073710", ERANGE},
        {"5124095577h", ERANGE},
        {"307445734562m", ERANGE},
    };
    uint64_t v = 777;

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        int r = parse_duration(cases[i].in, &v);
        if (r != -cases[i].err)
            test_fail(__FILE__, __LINE__, "parse_duration('%s') = %d; expected -%d", cases[i].in, r,
                      cases[i].err);
    }
    ASSERT_ERROR(parse_duration(NULL, &v), EINVAL);
    ASSERT_EQ(v, 777);
}

TEST(parse_bool)
{
    static const char *const yes[] = {"1", "yes", "true", "on", "YES", "True", "oN"};
    static const char *const no[] = {"0", "no", "false", "off", "NO", "False", "OFF"};
    static const char *const bad[] = {"", "y", "n", "2", "yes ", " no", "truee", "of", "01", "-1"};
    bool b;

    for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
        b = false;
        ASSERT_OK(parse_bool(yes[i], &b));
        ASSERT_TRUE(b);
    }
    for (size_t i = 0; i < ELEMENTSOF(no); i++) {
        b = true;
        ASSERT_OK(parse_bool(no[i], &b));
        ASSERT_FALSE(b);
    }
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        b = true;
        if (parse_bool(bad[i], &b) != -EINVAL)
            test_fail(__FILE__, __LINE__, "parse_bool('%s') accepted", bad[i]);
        ASSERT_TRUE(b);
    }
    ASSERT_ERROR(parse_bool(NULL, &b), EINVAL);
}

TEST(parse_int64_accepts)
{
    static const struct {
        const char *in;
        int64_t out;
    } cases[] = {
        {"0", 0},
        {"-0", 0},
        {"42", 42},
        {"-42", -42},
        {"0042", 42},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775807", -INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        int64_t v = 1;
        int r = parse_int64(cases[i].in, &v);
        if (r < 0 || v != cases[i].out)
            test_fail(__FILE__, __LINE__, "parse_int64('%s') = %d, %" PRId64 "; expected %" PRId64,
                      cases[i].in, r, v, cases[i].out);
    }
}

TEST(parse_int64_rejects)
{
    static const struct err_case cases[] = {
        {"", EINVAL},
        {"-", EINVAL},
        {"+1", EINVAL},
        {"--1", EINVAL},
        {"- 1", EINVAL},
        {" 1", EINVAL},
        {"1 ", EINVAL},
        {"1x", EINVAL},
        {"0x1", EINVAL},
        {"1.0", EINVAL},
        {"1e3", EINVAL},
        {"1K", EINVAL},
        {"9223372036854775808", ERANGE},
        {"-9223372036854775809", ERANGE},
        {"18446744073709551615", ERANGE},
        {"18446744073709551616", ERANGE},
        {"-99999999999999999999", ERANGE},
    };
    int64_t v = 5;

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        int r = parse_int64(cases[i].in, &v);
        if (r != -cases[i].err)
            test_fail(__FILE__, __LINE__, "parse_int64('%s') = %d; expected -%d", cases[i].in, r,
                      cases[i].err);
    }
    ASSERT_ERROR(parse_int64(NULL, &v), EINVAL);
    ASSERT_EQ(v, 5);
}

TEST(format_size)
{
    static const struct u64_case cases[] = {
        {"0", 0},
        {"1", 1},
        {"1023", 1023},
        {"1K", 1024},
        {"1025", 1025},
        {"1536", 1536},
        {"3K", 3072},
        {"1M", 1 << 20},
        {"1025K", 1025 << 10},
        {"32M", 32 << 20},
        {"1G", 1 << 30},
        {"3G", 3ULL << 30},
        {"1048576G", 1ULL << 50},
        {"18446744073709551615", UINT64_MAX},
    };
    char out[32];

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        format_size(cases[i].out, out);
        ASSERT_STREQ(out, cases[i].in);
    }
}

TEST(format_duration)
{
    static const struct u64_case cases[] = {
        {"0s", 0},
        {"1us", 1},
        {"1500us", 1500},
        {"1ms", 1000},
        {"250ms", 250 * USEC_PER_MSEC},
        {"1s", USEC_PER_SEC},
        {"1001ms", 1001 * USEC_PER_MSEC},
        {"30s", 30 * USEC_PER_SEC},
        {"90s", 90 * USEC_PER_SEC},
        {"1m", 60 * USEC_PER_SEC},
        {"61m", 61 * 60 * USEC_PER_SEC},
        {"1h", 3600 * USEC_PER_SEC},
        {"48h", 48 * 3600 * USEC_PER_SEC},
        {"18446744073709551615us", UINT64_MAX},
    };
    char out[32];

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        format_duration(cases[i].out, out);
        ASSERT_STREQ(out, cases[i].in);
    }
}

static void assert_size_roundtrip(uint64_t v)
{
    char out[32];
    uint64_t back = 0;

    format_size(v, out);
    if (parse_size(out, &back) < 0 || back != v)
        test_fail(__FILE__, __LINE__, "size %" PRIu64 " -> '%s' -> %" PRIu64, v, out, back);
}

static void assert_duration_roundtrip(uint64_t v)
{
    char out[32];
    uint64_t back = 0;

    format_duration(v, out);
    if (parse_duration(out, &back) < 0 || back != v)
        test_fail(__FILE__, __LINE__, "duration %" PRIu64 " -> '%s' -> %" PRIu64, v, out, back);
}

TEST(format_parse_roundtrip)
{
    uint64_t state = 0x9e3779b97f4a7c15;

    for (unsigned shift = 0; shift < 64; shift++) {
        uint64_t v = 1ULL << shift;
        assert_size_roundtrip(v);
        assert_size_roundtrip(v - 1);
        assert_size_roundtrip(v + 1);
        assert_duration_roundtrip(v);
        assert_duration_roundtrip(v - 1);
        assert_duration_roundtrip(v + 1);
    }
    assert_size_roundtrip(UINT64_MAX);
    assert_duration_roundtrip(UINT64_MAX);

    /* Random values at every magnitude, and multiples of each unit. */
    for (unsigned i = 0; i < 20000; i++) {
        uint64_t v = next_random(&state) >> (i % 64);
        assert_size_roundtrip(v);
        assert_duration_roundtrip(v);
        assert_size_roundtrip((v >> 30) << 30);
        assert_size_roundtrip((v >> 20) << 20);
        assert_size_roundtrip((v >> 10) << 10);
        assert_duration_roundtrip(v / (3600 * USEC_PER_SEC) * (3600 * USEC_PER_SEC));
        assert_duration_roundtrip(v / (60 * USEC_PER_SEC) * (60 * USEC_PER_SEC));
        assert_duration_roundtrip(v / USEC_PER_SEC * USEC_PER_SEC);
        assert_duration_roundtrip(v / USEC_PER_MSEC * USEC_PER_MSEC);
    }
}

TEST(clocks)
{
    uint64_t a, b, rt;

    a = now_usec();
    b = now_usec();
    ASSERT_TRUE(a > 0);
    ASSERT_TRUE(b >= a);

    /* Within a minute of time(), which counts whole seconds. */
    rt = now_realtime_usec();
    ASSERT_TRUE(rt / USEC_PER_SEC + 60 > (uint64_t)time(NULL));
    ASSERT_TRUE(rt / USEC_PER_SEC < (uint64_t)time(NULL) + 60);
}

TEST(startswith)
{
    ASSERT_TRUE(startswith("Bearer abc", "Bearer "));
    ASSERT_TRUE(startswith("abc", "abc"));
    ASSERT_TRUE(startswith("abc", ""));
    ASSERT_TRUE(startswith("", ""));
    ASSERT_FALSE(startswith("ab", "abc"));
    ASSERT_FALSE(startswith("bearer abc", "Bearer "));
    ASSERT_FALSE(startswith("", "a"));
}

TEST(startswith_n)
{
    /* Not NUL-terminated within n: the function must look at n bytes only. */
    static const char data[] = {'d', 'a', 't', 'a', ':', ' ', 'x'};

    ASSERT_TRUE(startswith_n(data, sizeof data, "data:"));
    ASSERT_TRUE(startswith_n(data, 5, "data:"));
    ASSERT_FALSE(startswith_n(data, 4, "data:"));
    ASSERT_FALSE(startswith_n(data, 0, "d"));
    ASSERT_TRUE(startswith_n(data, 0, ""));
    ASSERT_FALSE(startswith_n(data, sizeof data, "event:"));
    ASSERT_TRUE(startswith_n("a\0b", 3, "a"));
}

TEST(strdup_trim)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"abc", "abc"}, {"  abc", "abc"}, {"abc \t\r\n", "abc"}, {" \t a b  c \n ", "a b  c"},
        {"", ""},       {"   ", ""},      {"\n\v\f\r\t ", ""},   {"x", "x"},
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_free_ char *s = strdup_trim(cases[i].in);
        ASSERT_STREQ(s, cases[i].out);
    }
}

struct utf8_case {
    const char *what;
    const char *s;
    size_t n;
};

#define U8(what, lit)                                                                              \
    {                                                                                              \
        what, lit, sizeof(lit) - 1                                                                 \
    }

TEST(utf8_valid)
{
    static const struct utf8_case cases[] = {
        U8("empty", ""),
        U8("ascii", "hello, world"),
        U8("NUL is a code point", "a\0b"),
        U8("U+007F", "\x7f"),
        U8("U+0080", "\xc2\x80"),
        U8("e acute", "caf\xc3\xa9"),
        U8("U+07FF", "\xdf\xbf"),
        U8("U+0800", "\xe0\xa0\x80"),
        U8("euro", "\xe2\x82\xac"),
        U8("U+D7FF", "\xed\x9f\xbf"),
        U8("U+E000", "\xee\x80\x80"),
        U8("U+FFFD", "\xef\xbf\xbd"),
        U8("U+FFFF", "\xef\xbf\xbf"),
        U8("U+10000", "\xf0\x90\x80\x80"),
        U8("emoji", "\xf0\x9f\x98\x80"),
        U8("U+10FFFF", "\xf4\x8f\xbf\xbf"),
        U8("mixed", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"),
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++)
        if (!utf8_is_valid(cases[i].s, cases[i].n))
            test_fail(__FILE__, __LINE__, "rejected valid UTF-8: %s", cases[i].what);
}

TEST(utf8_invalid)
{
    static const struct utf8_case cases[] = {
        /* Overlong forms. */
        U8("overlong NUL (C0 80)", "\xc0\x80"),
        U8("overlong '/' (C0 AF)", "\xc0\xaf"),
        U8("overlong U+007F (C1 BF)", "\xc1\xbf"),
        U8("overlong 3-byte NUL", "\xe0\x80\x80"),
        U8("overlong U+07FF in 3 bytes", "\xe0\x9f\xbf"),
        U8("overlong 4-byte NUL", "\xf0\x80\x80\x80"),
        U8("overlong U+FFFF in 4 bytes", "\xf0\x8f\xbf\xbf"),
        /* UTF-16 surrogates. */
        U8("U+D800", "\xed\xa0\x80"),
        U8("U+DBFF", "\xed\xaf\xbf"),
        U8("U+DC00", "\xed\xb0\x80"),
        U8("U+DFFF", "\xed\xbf\xbf"),
        U8("surrogate pair", "\xed\xa0\xbd\xed\xb8\x80"),
        /* Beyond U+10FFFF. */
        U8("U+110000", "\xf4\x90\x80\x80"),
        U8("U+13FFFF", "\xf4\xbf\xbf\xbf"),
        U8("F5 lead", "\xf5\x80\x80\x80"),
        U8("F7 lead", "\xf7\xbf\xbf\xbf"),
        U8("5-byte form", "\xf8\x88\x80\x80\x80"),
        U8("6-byte form", "\xfc\x84\x80\x80\x80\x80"),
        U8("FE", "\xfe"),
        U8("FF", "\xff"),
        /* Truncated sequences, alone, at the end and before ASCII. */
        U8("truncated 2-byte", "\xc3"),
        U8("truncated 3-byte (1 of 3)", "\xe2"),
        U8("truncated 3-byte (2 of 3)", "\xe2\x82"),
        U8("truncated 4-byte (3 of 4)", "\xf0\x9f\x98"),
        U8("truncated at end", "ok\xc3\xa9\xe2\x82"),
        U8("truncated before ASCII", "\xe2\x82z"),
        U8("truncated before NUL", "\xc3\0"),
        /* Continuation bytes where none belongs, and missing where one does. */
        U8("lone continuation 80", "\x80"),
        U8("lone continuation BF", "a\xbf"),
        U8("extra continuation", "\xc3\xa9\xa9"),
        U8("bad continuation (C3 28)", "\xc3\x28"),
        U8("bad 2nd of 3 (E2 28 A1)", "\xe2\x28\xa1"),
        U8("bad 3rd of 3 (E2 82 28)", "\xe2\x82\x28"),
        U8("bad 4th of 4", "\xf0\x9f\x98\x28"),
        U8("lead then lead", "\xc3\xc3\xa9"),
    };

    for (size_t i = 0; i < ELEMENTSOF(cases); i++)
        if (utf8_is_valid(cases[i].s, cases[i].n))
            test_fail(__FILE__, __LINE__, "accepted invalid UTF-8: %s", cases[i].what);
}

TEST(utf8_respects_length)
{
    /* Only n bytes count: an invalid byte after them does not, a sequence cut by them does. */
    ASSERT_TRUE(utf8_is_valid("abc\xff", 3));
    ASSERT_TRUE(utf8_is_valid("\xc3\xa9\xff", 2));
    ASSERT_FALSE(utf8_is_valid("\xc3\xa9", 1));
    ASSERT_FALSE(utf8_is_valid("\xf0\x9f\x98\x80", 3));
}

TEST(utf8_every_code_point)
{
    /* Encode every scalar value by hand; each must pass, and each surrogate must fail. */
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        unsigned char b[4];
        size_t n;
        bool surrogate = cp >= 0xd800 && cp <= 0xdfff;

        if (cp < 0x80) {
            b[0] = (unsigned char)cp;
            n = 1;
        } else if (cp < 0x800) {
            b[0] = (unsigned char)(0xc0 | cp >> 6);
            b[1] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (unsigned char)(0xe0 | cp >> 12);
            b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
            b[2] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 3;
        } else {
            b[0] = (unsigned char)(0xf0 | cp >> 18);
            b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
            b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
            b[3] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 4;
        }
        if (utf8_is_valid((const char *)b, n) == surrogate)
            test_fail(__FILE__, __LINE__, "U+%04X: wrong verdict", (unsigned)cp);
    }
}

TEST(hex_digit_value)
{
    const char *digits = "0123456789abcdef", *upper = "ABCDEF";

    for (int i = 0; i < 16; i++)
        ASSERT_EQ(hex_digit_value(digits[i]), i);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(hex_digit_value(upper[i]), 10 + i);
    /* Every other byte, high ones included (char is signed here), is not a digit. */
    for (int c = 0; c < 256; c++)
        if (!strchr("0123456789abcdefABCDEF", c) || c == 0)
            ASSERT_EQ(hex_digit_value((char)c), -1);
}

/* An empty struct buf that was never appended to has data == NULL, so utf8_is_valid(b.data, b.len)
 * is a call real code makes. util.c computes NULL + 0, which C leaves undefined, and the asan
 * preset's UBSan aborts on it. Kept last so such an abort cannot hide the tests above. Fails under
 * -fsanitize=undefined until utf8_is_valid() returns early for n == 0 (reported to the lead). */
TEST(utf8_empty_unallocated)
{
    ASSERT_TRUE(utf8_is_valid(NULL, 0));
}
