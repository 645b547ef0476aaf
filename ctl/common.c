/* common.c: what every dualroutectl verb uses: error output, the connection to authd with its
 * errors mapped to exit codes, JSON output without the envelope, secret input and the accounts
 * table.
 *
 * Every failure is printed once, as one line "dualroutectl: <message>" on stderr, by the function
 * that knows what went wrong, which then returns the exit code; verbs pass it up. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "client.h"
#include "ctl.h"
#include "ipc.h"
#include "macro.h"
#include "secret.h"
#include "table.h"
#include "util.h"

const char *arg_socket = NULL;
const char *arg_router = NULL;
bool arg_json = false;
bool arg_quiet = false;

int ctl_fail(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("dualroutectl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

void ctl_warn(const char *fmt, ...)
{
    va_list ap;

    if (arg_quiet)
        return;
    fputs("dualroutectl: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void ctl_info(const char *fmt, ...)
{
    va_list ap;

    if (arg_quiet || arg_json)
        return;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

int ctl_connect(struct ctl_client **ret)
{
    int r;

    r = ctl_client_connect(arg_socket, ret);
    if (r == -EACCES || r == -EPERM)
        return ctl_fail(CTL_EXIT_FORBIDDEN,
                        "permission denied on authd's socket '%s': run as root or as a member of "
                        "group dualroute-admin",
                        arg_socket);
    if (r < 0)
        return ctl_fail(CTL_EXIT_AUTHD,
                        "dualroute-authd is not reachable at '%s': %s; is it running? (systemctl "
                        "status dualroute-authd)",
                        arg_socket, strerror(-r));
    return 0;
}

int ctl_call(struct ctl_client *c, const char *op, json_t *fields, json_t **ret_reply)
{
    struct ctl_error e = {};
    int r;

    r = ctl_client_call(c, op, fields, CTL_AUTHD_TIMEOUT_MS, ret_reply, &e);
    switch (r) {
    case 0:
        return 0;
    case -EREMOTE:
        return ctl_fail(streq(e.code, IPC_ERROR_FORBIDDEN) ? CTL_EXIT_FORBIDDEN : CTL_EXIT_FAILED,
                        "%s", e.message);
    case -ECONNABORTED:
        if (streq(e.code, IPC_ERROR_FORBIDDEN))
            return ctl_fail(CTL_EXIT_FORBIDDEN, "authd refused this connection: %s", e.message);
        return ctl_fail(streq(e.code, IPC_ERROR_TOO_LARGE) ? CTL_EXIT_FAILED : CTL_EXIT_AUTHD,
                        "authd closed the connection: %s", e.message);
    case -EMSGSIZE:
        return ctl_fail(CTL_EXIT_FAILED, "the request does not fit in one frame (64 KiB)");
    case -ETIMEDOUT:
        return ctl_fail(CTL_EXIT_AUTHD, "authd did not answer '%s' within %d s", op,
                        CTL_AUTHD_TIMEOUT_MS / 1000);
    case -ECONNRESET:
        return ctl_fail(CTL_EXIT_AUTHD, "authd closed the connection during '%s'", op);
    case -EBADMSG:
        return ctl_fail(CTL_EXIT_AUTHD, "authd sent a message that does not decode");
    default:
        return ctl_fail(CTL_EXIT_AUTHD, "talking to authd failed: %s", strerror(-r));
    }
}

int ctl_call_once(const char *op, json_t *fields, json_t **ret_reply)
{
    _cleanup_(ctl_client_freep) struct ctl_client *c = NULL;
    json_auto_t *f = fields;
    int r;

    r = ctl_connect(&c);
    if (r)
        return r;
    return ctl_call(c, op, TAKE_PTR(f), ret_reply);
}

int ctl_print_json(const json_t *reply)
{
    json_auto_t *copy = json_copy((json_t *)reply);
    char *s;

    if (!copy)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    json_object_del(copy, "v");
    json_object_del(copy, "id");
    json_object_del(copy, "ok");
    s = json_dumps(copy, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!s)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    puts(s);
    free(s);
    return 0;
}

/* Reads all of fd (at most max bytes after trimming), trims white space around it, and refuses
 * an empty secret, a NUL, and (unless multiline) a line break inside. */
static int read_secret_fd(int fd, size_t max, bool multiline, struct secret **ret)
{
    struct buf b = BUF_INIT(max + 4096);
    char tmp[4096];
    const char *p;
    size_t n;
    int r = 0;

    for (;;) {
        ssize_t k = read(fd, tmp, sizeof tmp);

        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -errno;
            break;
        }
        if (k == 0)
            break;
        r = buf_append(&b, tmp, (size_t)k);
        explicit_bzero(tmp, (size_t)k);
        if (r < 0) {
            r = -EMSGSIZE;
            break;
        }
    }
    p = b.data ? b.data : "";
    n = b.len;
    while (n > 0 && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (r == 0 && (n == 0 || n > max))
        r = -EMSGSIZE;
    if (r == 0 && (memchr(p, '\0', n) || (!multiline && memchr(p, '\n', n))))
        r = -EBADMSG;
    if (r == 0) {
        *ret = secret_new(p, n);
        if (!*ret)
            r = -ENOMEM;
    }
    buf_free(&b, true);
    return r;
}

/* On a terminal, reads one line with echo off. */
static int read_secret_tty(size_t max, const char *what, struct secret **ret)
{
    struct termios old, quiet;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int r = 0;

    fprintf(stderr, "Enter the %s (not shown): ", what);
    if (tcgetattr(STDIN_FILENO, &old) < 0)
        return -errno;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    n = getline(&line, &cap, stdin);
    (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    if (n < 0)
        r = -EMSGSIZE;
    while (r == 0 && n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (r == 0 && (n == 0 || (size_t)n > max))
        r = -EMSGSIZE;
    if (r == 0) {
        *ret = secret_new(line, (size_t)n);
        if (!*ret)
            r = -ENOMEM;
    }
    if (line) {
        explicit_bzero(line, cap);
        free(line);
    }
    return r;
}

int ctl_read_secret(const char *path, size_t max, const char *what, struct secret **ret)
{
    bool multiline = strstr(what, "file") != NULL;
    _cleanup_close_ int fd = -1;
    struct stat st;
    int r;

    if (streq(path, "-")) {
        if (isatty(STDIN_FILENO) && !multiline)
            r = read_secret_tty(max, what, ret);
        else
            r = read_secret_fd(STDIN_FILENO, max, multiline, ret);
        if (r == -EMSGSIZE)
            return ctl_fail(CTL_EXIT_FAILED, "the %s on stdin is empty or longer than %zu bytes",
                            what, max);
        if (r == -EBADMSG)
            return ctl_fail(CTL_EXIT_FAILED, "the %s on stdin holds a line break or NUL", what);
        if (r < 0)
            return ctl_fail(CTL_EXIT_FAILED, "failed to read the %s from stdin: %s", what,
                            strerror(-r));
        return 0;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return ctl_fail(CTL_EXIT_FAILED, "cannot open %s '%s': %m", what, path);
    if (fstat(fd, &st) < 0)
        return ctl_fail(CTL_EXIT_FAILED, "cannot stat '%s': %m", path);
    if (!S_ISREG(st.st_mode))
        return ctl_fail(CTL_EXIT_FAILED, "'%s' is not a regular file", path);
    if (st.st_mode & 0077)
        ctl_warn("'%s' is readable by group or others; it holds a secret: chmod 600 '%s'", path,
                 path);
    r = read_secret_fd(fd, max, multiline, ret);
    if (r == -EMSGSIZE)
        return ctl_fail(CTL_EXIT_FAILED, "'%s' is empty or longer than %zu bytes", path, max);
    if (r == -EBADMSG)
        return ctl_fail(CTL_EXIT_FAILED, "'%s' holds a line break or NUL inside the %s", path,
                        what);
    if (r < 0)
        return ctl_fail(CTL_EXIT_FAILED, "failed to read '%s': %s", path, strerror(-r));
    return 0;
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : dflt;
}

int ctl_print_accounts(const json_t *accounts)
{
    static const char *const headers[] = {"NAME",    "PROVIDER",    "AUTH",      "STATE",
                                          "EXPIRES", "FINGERPRINT", "LAST ERROR"};
    _cleanup_(table_freep) struct table *t = table_new(ELEMENTSOF(headers), headers);
    const json_t *a;
    size_t i;

    if (!t)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    json_array_foreach (accounts, i, a) {
        const json_t *exp = json_object_get(a, "expires_at");
        char when[32] = "-";
        const char *cells[ELEMENTSOF(headers)];

        if (json_is_integer(exp))
            format_relative_time((int64_t)time(NULL), json_integer_value(exp), when);
        cells[0] = str_or(a, "name", "?");
        cells[1] = str_or(a, "provider", NULL);
        cells[2] = str_or(a, "auth", NULL);
        cells[3] = str_or(a, "state", NULL);
        cells[4] = when;
        cells[5] = str_or(a, "fingerprint", NULL);
        cells[6] = str_or(a, "last_error", NULL);
        if (table_add_row(t, cells) < 0)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    }
    if (table_rows(t) == 0) {
        printf("No accounts. Add one with 'dualroutectl account add NAME --provider ...'.\n");
        return 0;
    }
    return table_print(t, stdout) < 0 ? CTL_EXIT_FAILED : 0;
}

static bool ctl_abbreviated = false;

void ctl_getopt_reset(void)
{
    ctl_abbreviated = false;
    optind = 0; /* glibc: 0 reinitialises getopt completely */
    opterr = 0;
}

static bool token_is_option(const char *token, const char *name)
{
    size_t n = strlen(name);

    return token && startswith(token, "--") && strncmp(token + 2, name, n) == 0 &&
           (token[2 + n] == 0 || token[2 + n] == '=');
}

int ctl_getopt(int argc, char **argv, const char *optstring, const struct option *options)
{
    int idx = -1, c;

    c = getopt_long(argc, argv, optstring, options, &idx);
    /* getopt_long() takes any unambiguous prefix of a long option: "--api-key KEY" would be
     * "--api-key-file KEY", and a key typed where a path belongs would end up in an error message.
     * Only whole names count. */
    if (c >= 0 && idx >= 0 && !token_is_option(argv[optind - 1], options[idx].name) &&
        !(optind >= 2 && token_is_option(argv[optind - 2], options[idx].name))) {
        optopt = 0;
        ctl_abbreviated = true;
        return '?';
    }
    return c;
}

int ctl_bad_option(const char *verb, int c, char **argv)
{
    const char *opt = argv[optind - 1], *eq;
    const char *sep = verb ? " " : "";

    verb = verb ?: "";
    /* An abbreviated option that takes a value: its name is the token before the value. */
    if (ctl_abbreviated && !startswith(opt, "--") && optind >= 2 &&
        startswith(argv[optind - 2], "--"))
        opt = argv[optind - 2];
    if (c == ':')
        return ctl_fail(CTL_EXIT_USAGE, "option '%s' needs a value; see 'dualroutectl%s%s --help'",
                        opt, sep, verb);
    if (optopt && !startswith(opt, "--"))
        return ctl_fail(CTL_EXIT_USAGE, "unknown option '-%c'; see 'dualroutectl%s%s --help'",
                        optopt, sep, verb);
    /* Name the option, never its value: that may be a secret typed in the wrong place. */
    eq = strchr(opt, '=');
    return ctl_fail(CTL_EXIT_USAGE, "unknown option '%.*s'; see 'dualroutectl%s%s --help'",
                    (int)(eq ? eq - opt : (ptrdiff_t)strlen(opt)), opt, sep, verb);
}
