/* test-buf.c: unit tests for shared/buf.c.
 *
 * The ceiling is the point of struct buf, so most tests here push against it: a refused append
 * must leave data, len and cap exactly as they were, and capacity must never exceed .max + 1.
 * The rest check growth, consume, clear, free and steal, and that data stays NUL-terminated. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "macro.h"
#include "test.h"

static void assert_terminated(const struct buf *b)
{
    ASSERT_NOT_NULL(b->data);
    ASSERT_TRUE(b->cap >= b->len + 1);
    ASSERT_EQ(b->data[b->len], '\0');
}

TEST(buf_init)
{
    struct buf b = BUF_INIT(64);

    ASSERT_NULL(b.data);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(b.cap, 0);
    ASSERT_EQ(b.max, 64);
}

TEST(buf_append_terminates)
{
    struct buf b = BUF_INIT(0);

    ASSERT_OK(buf_append(&b, "abc", 3));
    ASSERT_EQ(b.len, 3);
    assert_terminated(&b);
    ASSERT_STREQ(b.data, "abc");

    ASSERT_OK(buf_append_str(&b, "def"));
    ASSERT_EQ(b.len, 6);
    assert_terminated(&b);
    ASSERT_STREQ(b.data, "abcdef");
    buf_free(&b, false);
}

TEST(buf_append_nothing_allocates)
{
    struct buf b = BUF_INIT(16);

    /* An empty append still leaves a valid empty string behind, so callers can use .data. */
    ASSERT_OK(buf_append(&b, NULL, 0));
    ASSERT_EQ(b.len, 0);
    assert_terminated(&b);
    ASSERT_STREQ(b.data, "");
    buf_free(&b, false);
}

TEST(buf_append_binary)
{
    static const char bytes[] = {'a', '\0', 'b', '\0', 'c'};
    struct buf b = BUF_INIT(0);

    ASSERT_OK(buf_append(&b, bytes, sizeof bytes));
    ASSERT_EQ(b.len, sizeof bytes);
    ASSERT_TRUE(memcmp(b.data, bytes, sizeof bytes) == 0);
    assert_terminated(&b);
    buf_free(&b, false);
}

TEST(buf_growth)
{
    struct buf b = BUF_INIT(0);
    size_t last_cap = 0;
    unsigned reallocs = 0;

    /* 100 000 one-byte appends: content must survive every realloc, and doubling keeps the number
     * of capacity changes logarithmic. */
    for (size_t i = 0; i < 100000; i++) {
        char c = (char)('a' + i % 26);
        ASSERT_OK(buf_append(&b, &c, 1));
        if (b.cap != last_cap) {
            reallocs++;
            last_cap = b.cap;
        }
    }
    ASSERT_EQ(b.len, 100000);
    assert_terminated(&b);
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] != (char)('a' + i % 26))
            test_fail(__FILE__, __LINE__, "byte %zu is '%c'", i, b.data[i]);
    ASSERT_TRUE(reallocs < 20);
    buf_free(&b, false);
}

TEST(buf_ceiling_refuses_and_keeps_buffer)
{
    struct buf b = BUF_INIT(10);
    size_t cap;
    char *data;

    ASSERT_OK(buf_append(&b, "12345678", 8));
    data = b.data;
    cap = b.cap;

    ASSERT_ERROR(buf_append(&b, "abc", 3), ENOBUFS);
    ASSERT_TRUE(b.data == data);
    ASSERT_EQ(b.len, 8);
    ASSERT_EQ(b.cap, cap);
    ASSERT_STREQ(b.data, "12345678");

    ASSERT_ERROR(buf_append_str(&b, "abc"), ENOBUFS);
    ASSERT_EQ(b.len, 8);
    ASSERT_STREQ(b.data, "12345678");

    /* Exactly up to the ceiling is fine; one byte more is not; nothing more is. */
    ASSERT_OK(buf_append(&b, "9A", 2));
    ASSERT_EQ(b.len, 10);
    ASSERT_STREQ(b.data, "123456789A");
    ASSERT_ERROR(buf_append(&b, "B", 1), ENOBUFS);
    ASSERT_EQ(b.len, 10);
    ASSERT_STREQ(b.data, "123456789A");
    ASSERT_OK(buf_append(&b, "", 0));
    ASSERT_EQ(b.len, 10);
    ASSERT_TRUE(b.cap <= b.max + 1);
    buf_free(&b, false);
}

TEST(buf_ceiling_on_empty_buffer)
{
    char big[33];
    struct buf b = BUF_INIT(32);

    memset(big, 'x', sizeof big);
    ASSERT_ERROR(buf_append(&b, big, sizeof big), ENOBUFS);
    ASSERT_NULL(b.data);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(b.cap, 0);

    ASSERT_OK(buf_append(&b, big, 32));
    ASSERT_EQ(b.len, 32);
    assert_terminated(&b);
    buf_free(&b, false);
}

TEST(buf_ceiling_bounds_capacity)
{
    struct buf b = BUF_INIT(1000);

    /* Growth doubles, but never past the ceiling plus the terminating NUL. */
    for (int i = 0; i < 100; i++)
        ASSERT_OK(buf_append(&b, "0123456789", 10));
    ASSERT_EQ(b.len, 1000);
    ASSERT_TRUE(b.cap <= 1001);
    assert_terminated(&b);
    ASSERT_ERROR(buf_append(&b, "x", 1), ENOBUFS);
    buf_free(&b, false);
}

TEST(buf_ceiling_overflowing_length)
{
    struct buf b = BUF_INIT(0);

    ASSERT_OK(buf_append(&b, "abc", 3));
    /* Lengths that would wrap len + n + 1 must be refused before anything is read from p. */
    ASSERT_ERROR(buf_append(&b, "", SIZE_MAX), ENOBUFS);
    ASSERT_ERROR(buf_append(&b, "", SIZE_MAX - 3), ENOBUFS);
    ASSERT_ERROR(buf_reserve(&b, SIZE_MAX), ENOBUFS);
    ASSERT_ERROR(buf_reserve(&b, SIZE_MAX / 2), ENOBUFS);
    ASSERT_EQ(b.len, 3);
    ASSERT_STREQ(b.data, "abc");
    buf_free(&b, false);
}

TEST(buf_reserve)
{
    struct buf b = BUF_INIT(100);
    char *data;

    ASSERT_OK(buf_reserve(&b, 50));
    ASSERT_EQ(b.len, 0);
    ASSERT_TRUE(b.cap >= 51);
    ASSERT_TRUE(b.cap <= 101);
    data = b.data;

    /* Room that is already there needs no new allocation. */
    ASSERT_OK(buf_append(&b, "hello", 5));
    ASSERT_OK(buf_reserve(&b, 45));
    ASSERT_TRUE(b.data == data);
    ASSERT_EQ(b.len, 5);

    ASSERT_ERROR(buf_reserve(&b, 96), ENOBUFS);
    ASSERT_EQ(b.len, 5);
    ASSERT_STREQ(b.data, "hello");
    ASSERT_OK(buf_reserve(&b, 95));
    ASSERT_TRUE(b.cap >= 101);
    ASSERT_STREQ(b.data, "hello");
    buf_free(&b, false);
}

TEST(buf_consume)
{
    struct buf b = BUF_INIT(0);

    ASSERT_OK(buf_append_str(&b, "hello world"));
    buf_consume(&b, 0);
    ASSERT_STREQ(b.data, "hello world");
    buf_consume(&b, 6);
    ASSERT_EQ(b.len, 5);
    ASSERT_STREQ(b.data, "world");
    assert_terminated(&b);

    ASSERT_OK(buf_append_str(&b, "!"));
    ASSERT_STREQ(b.data, "world!");

    buf_consume(&b, 6);
    ASSERT_EQ(b.len, 0);
    ASSERT_STREQ(b.data, "");

    /* More than len empties the buffer rather than reading past it. */
    ASSERT_OK(buf_append_str(&b, "abc"));
    buf_consume(&b, 1000);
    ASSERT_EQ(b.len, 0);
    ASSERT_STREQ(b.data, "");
    buf_free(&b, false);
}

TEST(buf_consume_unallocated)
{
    struct buf b = BUF_INIT(8);

    buf_consume(&b, 0);
    buf_consume(&b, 5);
    ASSERT_NULL(b.data);
    ASSERT_EQ(b.len, 0);
}

TEST(buf_consume_binary)
{
    static const char bytes[] = {'x', 'y', '\0', 'z'};
    struct buf b = BUF_INIT(0);

    ASSERT_OK(buf_append(&b, bytes, sizeof bytes));
    buf_consume(&b, 1);
    ASSERT_EQ(b.len, 3);
    ASSERT_TRUE(memcmp(b.data, "y\0z", 3) == 0);
    assert_terminated(&b);
    buf_free(&b, false);
}

TEST(buf_clear)
{
    struct buf b = BUF_INIT(32);
    size_t cap;

    buf_clear(&b);
    ASSERT_NULL(b.data);

    ASSERT_OK(buf_append_str(&b, "some text"));
    cap = b.cap;
    buf_clear(&b);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(b.cap, cap);
    ASSERT_STREQ(b.data, "");

    /* The ceiling counts what is in the buffer now, not what ever was. */
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(buf_append(&b, "0123456789abcdef0123456789abcdef", 32));
        buf_clear(&b);
    }
    buf_free(&b, false);
}

TEST(buf_free_and_reuse)
{
    struct buf b = BUF_INIT(32);

    buf_free(&b, false);
    buf_free(&b, true);
    ASSERT_NULL(b.data);

    ASSERT_OK(buf_append_str(&b, "secret"));
    buf_free(&b, true);
    ASSERT_NULL(b.data);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(b.cap, 0);
    ASSERT_EQ(b.max, 32);

    ASSERT_OK(buf_append_str(&b, "again"));
    ASSERT_STREQ(b.data, "again");
    ASSERT_ERROR(buf_append(&b, "0123456789abcdef0123456789abcdef", 32), ENOBUFS);
    buf_free(&b, false);
}

TEST(buf_steal)
{
    _cleanup_free_ char *s = NULL, *t = NULL;
    struct buf b = BUF_INIT(64);

    ASSERT_OK(buf_append_str(&b, "taken"));
    s = buf_steal(&b);
    ASSERT_STREQ(s, "taken");
    ASSERT_NULL(b.data);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(b.cap, 0);
    ASSERT_EQ(b.max, 64);

    /* An empty buffer still hands over a string the caller can free. */
    t = buf_steal(&b);
    ASSERT_STREQ(t, "");

    ASSERT_OK(buf_append_str(&b, "reused"));
    ASSERT_STREQ(b.data, "reused");
    buf_free(&b, false);
}
