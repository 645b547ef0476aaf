/* test-log.c: unit tests for shared/log.c and the macros in log.h.
 *
 * Log lines go to stderr with write(2), so each test points stderr at a memfd for the length of
 * the calls it checks, puts it back, and then reads what was written. Two things depend on
 * process-wide state that cannot be reset from inside: whether JOURNAL_STREAM has been looked at,
 * and whether the C library has loaded the time zone. Tests about those run this binary again as
 * a fresh child (only the one test, with DUALROUTE_TEST_CHILD set) and check its stderr. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "test.h"

#define CHILD_ENV "DUALROUTE_TEST_CHILD"

struct capture {
    int fd;
    int saved;
};

static void capture_begin(struct capture *c)
{
    fflush(stderr);
    c->fd = memfd_create("test-log", MFD_CLOEXEC);
    ASSERT_TRUE(c->fd >= 0);
    c->saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    ASSERT_TRUE(c->saved >= 0);
    ASSERT_TRUE(dup2(c->fd, STDERR_FILENO) == STDERR_FILENO);
}

/* Reads everything written to fd from the start. Returns a new string. */
static char *read_all(int fd)
{
    char *s = NULL;
    size_t n = 0;
    ssize_t k;

    ASSERT_TRUE(lseek(fd, 0, SEEK_SET) == 0);
    for (;;) {
        s = realloc(s, n + 4096 + 1);
        ASSERT_NOT_NULL(s);
        k = read(fd, s + n, 4096);
        ASSERT_TRUE(k >= 0);
        if (k == 0)
            break;
        n += (size_t)k;
    }
    s[n] = '\0';
    return s;
}

/* Restores stderr first, so a failing assertion after this still reaches the terminal. Returns
 * what was logged (caller frees). */
static char *capture_end(struct capture *c)
{
    char *s;

    ASSERT_TRUE(dup2(c->saved, STDERR_FILENO) == STDERR_FILENO);
    close(c->saved);
    s = read_all(c->fd);
    close(c->fd);
    return s;
}

/* "[HH:MM:SS] " */
static bool has_timestamp(const char *s)
{
    static const char pattern[] = "[dd:dd:dd] ";

    for (size_t i = 0; i < sizeof pattern - 1; i++) {
        if (pattern[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pattern[i])
            return false;
    }
    return true;
}

struct env_setting {
    const char *name, *value; /* value NULL: unset */
};

/* Runs this binary again as a fresh process that runs only the test called name, with
 * CHILD_ENV set and env applied; its stdout is discarded. Returns the child's stderr (caller
 * frees). When st is not NULL, fills it with the memfd's stat, for JOURNAL_STREAM. */
static char *run_child(const char *name, const struct env_setting *env, size_t n_env,
                       struct stat *st)
{
    int fd, status;
    pid_t pid;
    char *out;

    fd = memfd_create("test-log-child", MFD_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    if (st)
        ASSERT_OK(fstat(fd, st));
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        char jstream[64];

        if (null < 0 || dup2(null, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(126);
        setenv(CHILD_ENV, "1", 1);
        for (size_t i = 0; i < n_env; i++) {
            const char *v = env[i].value;
            /* "@stream" stands for this child's stderr as JOURNAL_STREAM spells it. */
            if (v && strcmp(v, "@stream") == 0) {
                snprintf(jstream, sizeof jstream, "%llu:%llu", (unsigned long long)st->st_dev,
                         (unsigned long long)st->st_ino);
                v = jstream;
            }
            if (v)
                setenv(env[i].name, v, 1);
            else
                unsetenv(env[i].name);
        }
        execl("/proc/self/exe", "test-log", name, (char *)NULL);
        _exit(127);
    }
    ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
    out = read_all(fd);
    close(fd);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        test_fail(__FILE__, __LINE__, "child for %s failed (status 0x%x): %s", name, status, out);
    return out;
}

static bool in_child(void)
{
    return getenv(CHILD_ENV) != NULL;
}

TEST(log_level_from_string)
{
    static const char *const names[] = {"emerg",   "alert",  "crit", "err",
                                        "warning", "notice", "info", "debug"};
    static const char *const bad[] = {"",     "8",    "9",      "-1",     "07",   "ERR",
                                      "Info", "warn", "errors", "debug ", " info"};

    for (int i = 0; i < 8; i++) {
        char num[2] = {(char)('0' + i), '\0'};
        ASSERT_EQ(log_level_from_string(names[i]), i);
        ASSERT_EQ(log_level_from_string(num), i);
    }
    ASSERT_EQ(log_level_from_string("err"), LOG_ERR);
    ASSERT_EQ(log_level_from_string("error"), LOG_ERR);
    ASSERT_EQ(log_level_from_string("warning"), LOG_WARNING);
    ASSERT_EQ(log_level_from_string("debug"), LOG_DEBUG);
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        if (log_level_from_string(bad[i]) != -EINVAL)
            test_fail(__FILE__, __LINE__, "log_level_from_string('%s') accepted", bad[i]);
    ASSERT_ERROR(log_level_from_string(NULL), EINVAL);
}

TEST(log_max_level)
{
    log_set_max_level(LOG_DEBUG);
    ASSERT_EQ(log_get_max_level(), LOG_DEBUG);
    log_set_max_level(LOG_WARNING);
    ASSERT_EQ(log_get_max_level(), LOG_WARNING);
    log_set_max_level(LOG_INFO);
    ASSERT_EQ(log_get_max_level(), LOG_INFO);
}

TEST(log_journal_prefix)
{
    _cleanup_free_ char *out = NULL;
    struct capture c;

    log_set_journal(true);
    ASSERT_TRUE(log_is_journal());
    log_set_max_level(LOG_DEBUG);
    capture_begin(&c);
    log_error("error %d", 42);
    log_warning("warning '%s'", "quoted");
    log_notice("notice");
    log_info("info");
    log_debug("debug");
    log_full(LOG_CRIT, "crit");
    out = capture_end(&c);
    log_set_max_level(LOG_INFO);

    ASSERT_STREQ(out, "<3>error 42\n"
                      "<4>warning 'quoted'\n"
                      "<5>notice\n"
                      "<6>info\n"
                      "<7>debug\n"
                      "<2>crit\n");
}

TEST(log_timestamp_prefix)
{
    _cleanup_free_ char *out = NULL;
    struct capture c;
    char *second;

    log_set_journal(false);
    ASSERT_FALSE(log_is_journal());
    log_set_max_level(LOG_INFO);
    capture_begin(&c);
    log_error("first line");
    log_info("second %s", "line");
    out = capture_end(&c);

    ASSERT_TRUE(has_timestamp(out));
    ASSERT_TRUE(strncmp(out + 11, "first line\n", 11) == 0);
    second = out + 11 + 11;
    ASSERT_TRUE(has_timestamp(second));
    ASSERT_STREQ(second + 11, "second line\n");
    ASSERT_NULL(strchr(out, '<'));
}

TEST(log_disabled_level_skips_arguments)
{
    _cleanup_free_ char *out = NULL;
    struct capture c;
    int counter = 0, r;

    log_set_journal(true);
    log_set_max_level(LOG_INFO);
    capture_begin(&c);
    log_debug("debug %d", counter++);
    r = log_debug_errno(EIO, "debug errno %d", counter++);
    log_info("info %d", counter++);
    log_set_max_level(LOG_ERR);
    log_warning("warning %d", counter++);
    log_notice("notice %d", counter++);
    log_error("error %d", counter++);
    log_set_max_level(LOG_DEBUG);
    log_debug("debug %d", counter++);
    log_set_max_level(LOG_INFO);
    out = capture_end(&c);

    /* A skipped call still returns its error. */
    ASSERT_EQ(r, -EIO);
    ASSERT_EQ(counter, 3);
    ASSERT_STREQ(out, "<6>info 0\n<3>error 1\n<7>debug 2\n");
}

TEST(log_errno_returns_negative)
{
    _cleanup_free_ char *out = NULL;
    struct capture c;
    int a, b, d, e, oom;

    log_set_journal(true);
    log_set_max_level(LOG_INFO);
    capture_begin(&c);
    a = log_error_errno(EACCES, "positive");
    b = log_error_errno(-EACCES, "negative");
    d = log_debug_errno(-ENOENT, "off, negative");
    e = log_debug_errno(ENOENT, "off, positive");
    oom = log_oom();
    out = capture_end(&c);

    ASSERT_EQ(a, -EACCES);
    ASSERT_EQ(b, -EACCES);
    ASSERT_EQ(d, -ENOENT);
    ASSERT_EQ(e, -ENOENT);
    ASSERT_EQ(oom, -ENOMEM);
    ASSERT_STREQ(out, "<3>positive\n<3>negative\n<3>Out of memory.\n");
}

TEST(log_percent_m)
{
    _cleanup_free_ char *out = NULL, *expected = NULL;
    struct capture c;

    log_set_journal(true);
    log_set_max_level(LOG_INFO);
    ASSERT_TRUE(asprintf(&expected, "<3>open 'x': %s\n<4>bind: %s\n", strerror(ENOENT),
                         strerror(EADDRINUSE)) > 0);
    capture_begin(&c);
    (void)log_error_errno(-ENOENT, "open '%s': %m", "x");
    (void)log_warning_errno(EADDRINUSE, "bind: %m");
    out = capture_end(&c);
    ASSERT_STREQ(out, expected);
}

TEST(log_percent_m_with_timestamp)
{
    _cleanup_free_ char *out = NULL, *expected = NULL;
    struct capture c;

    log_set_journal(false);
    log_set_max_level(LOG_INFO);
    ASSERT_TRUE(asprintf(&expected, "connect: %s\n", strerror(ECONNREFUSED)) > 0);
    capture_begin(&c);
    (void)log_error_errno(ECONNREFUSED, "connect: %m");
    out = capture_end(&c);
    ASSERT_TRUE(has_timestamp(out));
    ASSERT_STREQ(out + 11, expected);
}

TEST(log_preserves_errno)
{
    _cleanup_free_ char *out = NULL;
    struct capture c;

    log_set_journal(true);
    log_set_max_level(LOG_INFO);
    capture_begin(&c);
    errno = EBADF;
    (void)log_error_errno(EACCES, "%m");
    log_info("plain");
    out = capture_end(&c);
    ASSERT_EQ(errno, EBADF);
}

TEST(log_long_line)
{
    _cleanup_free_ char *out = NULL, *big = NULL;
    struct capture c;
    size_t n;

    big = malloc(10001);
    ASSERT_NOT_NULL(big);
    memset(big, 'x', 10000);
    big[10000] = '\0';

    log_set_journal(true);
    log_set_max_level(LOG_INFO);
    capture_begin(&c);
    log_info("%s", big);
    log_info("after");
    out = capture_end(&c);

    /* Cut to the 4 KiB line buffer, but still one line that ends in '\n'. */
    n = strcspn(out, "\n");
    ASSERT_TRUE(n > 4000);
    ASSERT_TRUE(n < 4096);
    ASSERT_TRUE(strncmp(out, "<6>xxxx", 7) == 0);
    ASSERT_STREQ(out + n, "\n<6>after\n");
}

/* JOURNAL_STREAM decides the format only when it names the stream stderr really is. */
TEST(log_journal_stream_detection)
{
    const struct env_setting match[] = {{"JOURNAL_STREAM", "@stream"}};
    const struct env_setting other[] = {{"JOURNAL_STREAM", "1:2"}};
    const struct env_setting garbage[] = {{"JOURNAL_STREAM", "yes"}};
    const struct env_setting unset[] = {{"JOURNAL_STREAM", NULL}};
    _cleanup_free_ char *a = NULL, *b = NULL, *d = NULL, *e = NULL;
    struct stat st;

    if (in_child()) {
        log_error("from child");
        exit(0);
    }

    a = run_child("log_journal_stream_detection", match, ELEMENTSOF(match), &st);
    ASSERT_STREQ(a, "<3>from child\n");
    b = run_child("log_journal_stream_detection", other, ELEMENTSOF(other), NULL);
    ASSERT_TRUE(has_timestamp(b));
    ASSERT_STREQ(b + 11, "from child\n");
    d = run_child("log_journal_stream_detection", garbage, ELEMENTSOF(garbage), NULL);
    ASSERT_TRUE(has_timestamp(d));
    e = run_child("log_journal_stream_detection", unset, ELEMENTSOF(unset), NULL);
    ASSERT_TRUE(has_timestamp(e));
    ASSERT_STREQ(e + 11, "from child\n");
}

/* The first timestamped line makes the C library load the time zone, which sets errno when the
 * zone file is missing (a container without /etc/localtime, or a bad TZ). %m must still print
 * the caller's error. Fails while log_internal() sets errno before formatting the timestamp
 * (reported to the lead). */
TEST(log_percent_m_first_line_bad_timezone)
{
    const struct env_setting env[] = {{"TZ", ":/nonexistent/zoneinfo/Nowhere"}};
    _cleanup_free_ char *out = NULL, *expected = NULL;

    if (in_child()) {
        log_set_journal(false);
        (void)log_error_errno(EACCES, "open: %m");
        exit(0);
    }

    out = run_child("log_percent_m_first_line_bad_timezone", env, ELEMENTSOF(env), NULL);
    ASSERT_TRUE(asprintf(&expected, "open: %s\n", strerror(EACCES)) > 0);
    ASSERT_TRUE(has_timestamp(out));
    ASSERT_STREQ(out + 11, expected);
}
