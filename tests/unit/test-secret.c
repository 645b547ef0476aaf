/* test-secret.c: unit tests for shared/secret.c.
 *
 * Fingerprints are checked against published SHA-256 vectors, comparisons against every way two
 * secrets can differ, and the readers against the files and environments they must refuse. The
 * environment test owns the "NAME=value" string it hands to putenv(), so it can check that the
 * bytes getenv() pointed at really were wiped, not only that the variable is gone. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secret.h"
#include "test.h"

static char temp_dir[64];

/* Writes data to name in this test's temp dir with the given mode and returns the path in path. */
static void write_secret_file(const char *name, const void *data, size_t n, mode_t mode,
                              char path[static 128])
{
    int fd;

    if (!temp_dir[0]) {
        snprintf(temp_dir, sizeof temp_dir, "/tmp/test-secret-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(temp_dir));
    }
    snprintf(path, 128, "%s/%s", temp_dir, name);
    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, data, n), (ssize_t)n);
    ASSERT_OK(fchmod(fd, mode));
    close(fd);
}

__attribute__((destructor)) static void remove_temp_dir(void)
{
    if (temp_dir[0])
        rmdir(temp_dir);
}

static bool is_fingerprint(const char *fp)
{
    if (strlen(fp) != 8)
        return false;
    for (size_t i = 0; i < 8; i++)
        if (!strchr("0123456789abcdef", fp[i]))
            return false;
    return true;
}

TEST(secret_new_free)
{
    _cleanup_(secret_freep) struct secret *s = NULL;

    s = secret_new("sk-abc123", 9);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(s->len, 9);
    ASSERT_STREQ(s->data, "sk-abc123");
    ASSERT_EQ(s->data[9], '\0');

    /* Only n bytes are copied, and the copy is terminated. */
    s = secret_free(s);
    ASSERT_NULL(s);
    s = secret_new("abcdef", 3);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(s->len, 3);
    ASSERT_STREQ(s->data, "abc");

    ASSERT_NULL(secret_free(NULL));
}

TEST(secret_new_empty_and_binary)
{
    _cleanup_(secret_freep) struct secret *e = NULL, *b = NULL;

    e = secret_new(NULL, 0);
    ASSERT_NOT_NULL(e);
    ASSERT_EQ(e->len, 0);
    ASSERT_STREQ(e->data, "");

    b = secret_new("a\0b", 3);
    ASSERT_NOT_NULL(b);
    ASSERT_EQ(b->len, 3);
    ASSERT_TRUE(memcmp(b->data, "a\0b", 4) == 0);
}

TEST(secret_fp_known_vectors)
{
    _cleanup_(secret_freep) struct secret *s = NULL;
    char fp[9];

    /* FIPS 180-2: SHA-256("abc") = ba7816bf 8f01cfea ..., SHA-256("") = e3b0c442 98fc1c14 ... */
    secret_fp_buf("abc", 3, fp);
    ASSERT_STREQ(fp, "ba7816bf");
    secret_fp_buf("", 0, fp);
    ASSERT_STREQ(fp, "e3b0c442");
    secret_fp_buf("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, fp);
    ASSERT_STREQ(fp, "248d6a61");

    s = secret_new("abc", 3);
    ASSERT_NOT_NULL(s);
    ASSERT_STREQ(secret_fp(s), "ba7816bf");
    ASSERT_TRUE(is_fingerprint(secret_fp(s)));
    ASSERT_STREQ(secret_fp(NULL), "(none)");
}

TEST(secret_fp_is_short_hex)
{
    char fp[9];

    for (unsigned i = 0; i < 200; i++) {
        char in[16];
        int n = snprintf(in, sizeof in, "key-%u", i);
        secret_fp_buf(in, (size_t)n, fp);
        ASSERT_TRUE(is_fingerprint(fp));
    }
}

TEST(secret_fp_buffer_is_reused)
{
    _cleanup_(secret_freep) struct secret *a = NULL, *b = NULL;
    const char *fa;

    a = secret_new("abc", 3);
    b = secret_new("", 0);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    /* Documented: the next call overwrites the static buffer. */
    fa = secret_fp(a);
    ASSERT_STREQ(secret_fp(b), "e3b0c442");
    ASSERT_STREQ(fa, "e3b0c442");
}

TEST(memeq_consttime)
{
    ASSERT_TRUE(memeq_consttime("abcdef", "abcdef", 6));
    ASSERT_FALSE(memeq_consttime("abcdef", "Abcdef", 6));
    ASSERT_FALSE(memeq_consttime("abcdef", "abcdeF", 6));
    ASSERT_FALSE(memeq_consttime("abcdef", "abcXef", 6));
    ASSERT_TRUE(memeq_consttime("abcdef", "abcXef", 3));
    ASSERT_TRUE(memeq_consttime("a\0c", "a\0c", 3));
    ASSERT_FALSE(memeq_consttime("a\0c", "a\0d", 3));
    /* Every bit counts, including the top one. */
    ASSERT_FALSE(memeq_consttime("\x80", "\x00", 1));
    ASSERT_FALSE(memeq_consttime("\x01", "\x00", 1));
    ASSERT_TRUE(memeq_consttime("x", "y", 0));
    ASSERT_TRUE(memeq_consttime(NULL, NULL, 0));
}

TEST(secret_equal)
{
    _cleanup_(secret_freep) struct secret *s = NULL, *e = NULL;

    s = secret_new("token-1", 7);
    ASSERT_NOT_NULL(s);
    ASSERT_TRUE(secret_equal(s, "token-1", 7));
    ASSERT_FALSE(secret_equal(s, "token-2", 7));
    /* A prefix or an extension is not equal, whatever the shared bytes. */
    ASSERT_FALSE(secret_equal(s, "token-1", 6));
    ASSERT_FALSE(secret_equal(s, "token-1x", 8));
    ASSERT_FALSE(secret_equal(s, "", 0));
    ASSERT_FALSE(secret_equal(NULL, "token-1", 7));
    ASSERT_FALSE(secret_equal(NULL, "", 0));

    e = secret_new("", 0);
    ASSERT_NOT_NULL(e);
    ASSERT_TRUE(secret_equal(e, "", 0));
    ASSERT_FALSE(secret_equal(e, "a", 1));
}

TEST(secret_from_file_trims)
{
    _cleanup_(secret_freep) struct secret *s = NULL;
    char path[128];

    write_secret_file("key", " \t sk-live-123 \r\n\n", 18, 0600, path);
    ASSERT_OK(secret_from_file(path, 64, false, &s));
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(s->len, 11);
    ASSERT_STREQ(s->data, "sk-live-123");
    s = secret_free(s);

    write_secret_file("key", "plain", 5, 0400, path);
    ASSERT_OK(secret_from_file(path, 64, false, &s));
    ASSERT_STREQ(s->data, "plain");
    ASSERT_TRUE(secret_equal(s, "plain", 5));
    unlink(path);
}

TEST(secret_from_file_mode)
{
    struct secret *s = NULL;
    char path[128];

    write_secret_file("loose", "value\n", 6, 0644, path);
    ASSERT_ERROR(secret_from_file(path, 64, false, &s), EPERM);
    ASSERT_NULL(s);

    write_secret_file("loose", "value\n", 6, 0640, path);
    ASSERT_ERROR(secret_from_file(path, 64, false, &s), EPERM);
    write_secret_file("loose", "value\n", 6, 0604, path);
    ASSERT_ERROR(secret_from_file(path, 64, false, &s), EPERM);
    write_secret_file("loose", "value\n", 6, 0620, path);
    ASSERT_ERROR(secret_from_file(path, 64, false, &s), EPERM);
    ASSERT_NULL(s);

    write_secret_file("loose", "value\n", 6, 0644, path);
    ASSERT_OK(secret_from_file(path, 64, true, &s));
    ASSERT_NOT_NULL(s);
    ASSERT_STREQ(s->data, "value");
    secret_free(s);
    unlink(path);
}

TEST(secret_from_file_size)
{
    struct secret *s = NULL;
    char path[128], big[200];

    /* The limit applies to the trimmed secret: max bytes load, max + 1 do not. */
    write_secret_file("size", "12345678\n", 9, 0600, path);
    ASSERT_OK(secret_from_file(path, 8, false, &s));
    ASSERT_EQ(s->len, 8);
    s = secret_free(s);

    write_secret_file("size", "123456789", 9, 0600, path);
    ASSERT_ERROR(secret_from_file(path, 8, false, &s), EMSGSIZE);
    ASSERT_NULL(s);

    /* A file much larger than max is refused before it is read. */
    memset(big, 'k', sizeof big);
    write_secret_file("size", big, sizeof big, 0600, path);
    ASSERT_ERROR(secret_from_file(path, 8, false, &s), EMSGSIZE);
    ASSERT_NULL(s);
    unlink(path);
}

TEST(secret_from_file_empty)
{
    struct secret *s = NULL;
    char path[128];

    write_secret_file("empty", "", 0, 0600, path);
    ASSERT_ERROR(secret_from_file(path, 64, false, &s), EMSGSIZE);
    write_secret_file("empty", " \n\t\r\n", 5, 0600, path);
    ASSERT_ERROR(secret_from_file(path, 64, false, &s), EMSGSIZE);
    ASSERT_NULL(s);
    unlink(path);
}

TEST(secret_from_file_bad_content)
{
    struct secret *s = NULL;
    char path[128];

    /* Two lines are two secrets, or a mistake; either way not one secret. */
    write_secret_file("lines", "first\nsecond\n", 13, 0600, path);
    ASSERT_ERROR(secret_from_file(path, 64, false, &s), EBADMSG);
    write_secret_file("lines", "a\0b", 3, 0600, path);
    ASSERT_ERROR(secret_from_file(path, 64, false, &s), EBADMSG);
    ASSERT_NULL(s);
    unlink(path);
}

TEST(secret_from_file_not_regular)
{
    struct secret *s = NULL;

    ASSERT_ERROR(secret_from_file("/nonexistent/key", 64, false, &s), ENOENT);
    ASSERT_ERROR(secret_from_file("/", 64, true, &s), EBADF);
    ASSERT_ERROR(secret_from_file("/dev/null", 64, true, &s), EBADF);
    ASSERT_NULL(s);
}

/* putenv() keeps this very array in environ, so after secret_from_env() the test can look at the
 * bytes the value occupied. */
static char env_entry[] = "DUALROUTE_TEST_SECRET=  sk-env-456 \n";

TEST(secret_from_env)
{
    _cleanup_(secret_freep) struct secret *s = NULL;
    const char *value;
    size_t n;

    ASSERT_OK(putenv(env_entry));
    value = getenv("DUALROUTE_TEST_SECRET");
    ASSERT_TRUE(value == env_entry + strlen("DUALROUTE_TEST_SECRET="));
    n = strlen(value);

    ASSERT_OK(secret_from_env("DUALROUTE_TEST_SECRET", &s));
    ASSERT_NOT_NULL(s);
    ASSERT_STREQ(s->data, "sk-env-456");
    ASSERT_EQ(s->len, 10);

    ASSERT_NULL(getenv("DUALROUTE_TEST_SECRET"));
    for (size_t i = 0; i < n; i++)
        if (value[i] != '\0')
            test_fail(__FILE__, __LINE__, "byte %zu of the environ value survived: 0x%02x", i,
                      (unsigned char)value[i]);
    /* The name is not secret and is left alone. */
    ASSERT_TRUE(memcmp(env_entry, "DUALROUTE_TEST_SECRET=", 22) == 0);
}

TEST(secret_from_env_unset_or_empty)
{
    struct secret *s = NULL;

    unsetenv("DUALROUTE_TEST_NONE");
    ASSERT_ERROR(secret_from_env("DUALROUTE_TEST_NONE", &s), ENOENT);
    ASSERT_OK(setenv("DUALROUTE_TEST_NONE", "", 1));
    ASSERT_ERROR(secret_from_env("DUALROUTE_TEST_NONE", &s), ENOENT);
    ASSERT_OK(setenv("DUALROUTE_TEST_NONE", " \t\n", 1));
    ASSERT_ERROR(secret_from_env("DUALROUTE_TEST_NONE", &s), ENOENT);
    ASSERT_NULL(s);
    unsetenv("DUALROUTE_TEST_NONE");
}

TEST(random_bytes)
{
    unsigned char a[32] = {}, b[32] = {}, zero[32] = {};

    ASSERT_OK(random_bytes(a, sizeof a));
    ASSERT_OK(random_bytes(b, sizeof b));
    /* 2^-256 odds of a false failure. */
    ASSERT_TRUE(memcmp(a, b, sizeof a) != 0);
    ASSERT_TRUE(memcmp(a, zero, sizeof a) != 0);
    ASSERT_OK(random_bytes(NULL, 0));

    unsigned char big[100000];
    ASSERT_OK(random_bytes(big, sizeof big));
}
