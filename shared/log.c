/* log.c: the one place dualroute writes log lines.
 *
 * Lines go to stderr, written with one write() each so lines from one process never interleave.
 * Under systemd (JOURNAL_STREAM set and naming stderr) the line carries the syslog priority as a
 * "<N>" prefix, which journald parses; on a terminal it carries a wall-clock timestamp instead.
 * Nothing here knows about secrets: callers print secret_fp(), never a secret. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int log_max_level = LOG_INFO;
static int log_journal = -1; /* -1: not decided yet */

void log_set_max_level(int level)
{
    log_max_level = level;
}

int log_get_max_level(void)
{
    return log_max_level;
}

void log_set_journal(bool on)
{
    log_journal = on;
}

/* JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected; only trust it when stderr is
 * still that stream (a child with redirected stderr inherits the variable). */
bool log_is_journal(void)
{
    if (log_journal < 0) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        log_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 &&
                      fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
                      (unsigned long long)st.st_ino == ino;
    }
    return log_journal;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...)
{
    char buf[4096];
    size_t n = 0;
    va_list ap;
    int saved = errno;

    if (error < 0)
        error = -error;

    if (log_is_journal())
        n = (size_t)snprintf(buf, sizeof buf, "<%d>", level & LOG_PRIMASK);
    else {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n = strftime(buf, sizeof buf, "[%H:%M:%S] ", &tm);
    }

    /* Set errno for %m only now: localtime_r() may change it (loading the time zone). */
    if (error != 0)
        errno = error;
    va_start(ap, format);
    int k = vsnprintf(buf + n, sizeof buf - n - 1, format, ap);
    va_end(ap);
    if (k < 0)
        k = 0;
    n = MIN(n + (size_t)k, sizeof buf - 2);
    buf[n++] = '\n';

    /* One write per line; a short write to a pipe is not retried, the line is best effort. */
    ssize_t w = write(STDERR_FILENO, buf, n);
    (void)w;
    (void)file;
    (void)line;
    (void)func;

    errno = saved;
    return error == 0 ? 0 : -error;
}

int log_level_from_string(const char *s)
{
    static const char *const names[] = {"emerg",   "alert",  "crit", "err",
                                        "warning", "notice", "info", "debug"};

    if (!s)
        return -EINVAL;
    if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
        return s[0] - '0';
    if (strcmp(s, "error") == 0)
        return LOG_ERR;
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return -EINVAL;
}
