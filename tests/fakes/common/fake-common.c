/* fake-common.c: the server plumbing that fake-upstream and fake-oauth share.
 *
 * Both fakes are libmicrohttpd daemons, thread per connection, on a loopback address. This module
 * owns what is the same in both: the command line (--help, --listen, --port, --verbose, plus any
 * long options a fake adds), the loopback check, starting the daemon and printing "PORT=<n>",
 * waiting for SIGTERM or SIGINT and shutting down, the shutdown pipe that waits poll, the ring of
 * the last FAKE_RECORDS_MAX request records behind the one mutex, header collection for a
 * record, request body collection with its ceiling, and small encoding helpers.
 *
 * A fake embeds struct fake_core in its own struct server and keeps its own state behind the
 * same lock. What a record holds, which requests get one, and every endpoint stay in the fakes:
 * this module neither routes requests nor builds replies. */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "buf.h"
#include "fake-common.h"
#include "log.h"
#include "macro.h"
#include "util.h"

#define FAKE_OPTIONS_MAX 16

/* Fills o->address from o->listen and o->port; only loopback addresses are accepted. */
static int listen_address(struct fake_options *o)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(o->port)};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(o->port)};

    memset(&o->address, 0, sizeof(o->address));
    if (inet_pton(AF_INET, o->listen, &sin.sin_addr) == 1) {
        if ((ntohl(sin.sin_addr.s_addr) >> 24) != 127)
            return log_error_errno(-EINVAL, "'%s' is not a loopback address.", o->listen);
        memcpy(&o->address, &sin, sizeof(sin));
        o->ipv6 = false;
        return 0;
    }
    if (inet_pton(AF_INET6, o->listen, &sin6.sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&sin6.sin6_addr))
            return log_error_errno(-EINVAL, "'%s' is not a loopback address.", o->listen);
        memcpy(&o->address, &sin6, sizeof(sin6));
        o->ipv6 = true;
        return 0;
    }
    return log_error_errno(-EINVAL, "Invalid listen address '%s'.", o->listen);
}

/* Parses the command line. cli->extra options must use vals from 0x200 up; each one found goes
 * to cli->parse_extra. With --verbose, turns on debug logging. Returns 0 after --help, 1 to go
 * on (with *ret_options filled and its address checked), or -EINVAL, already logged. */
int fake_parse_argv(const struct fake_cli *cli, int argc, char *argv[],
                    struct fake_options *ret_options)
{
    enum { ARG_LISTEN = 0x100, ARG_PORT };
    static const struct option base[] = {
        {"help", no_argument, NULL, 'h'},
        {"listen", required_argument, NULL, ARG_LISTEN},
        {"port", required_argument, NULL, ARG_PORT},
        {"verbose", no_argument, NULL, 'v'},
    };
    struct fake_options o = {.listen = "127.0.0.1"};
    struct option options[FAKE_OPTIONS_MAX] = {};
    size_t n = 0;
    int64_t port;
    int c, r;

    for (size_t i = 0; i < ELEMENTSOF(base); i++)
        options[n++] = base[i];
    for (const struct option *e = cli->extra; e && e->name; e++) {
        assert(n + 1 < ELEMENTSOF(options) && e->val >= 0x200);
        options[n++] = *e;
    }

    while ((c = getopt_long(argc, argv, "hv", options, NULL)) >= 0)
        switch (c) {
        case 'h':
            fputs(cli->help, stdout);
            return 0;
        case ARG_LISTEN:
            o.listen = optarg;
            break;
        case ARG_PORT:
            if (parse_int64(optarg, &port) < 0 || port < 0 || port > 65535)
                return log_error_errno(-EINVAL, "Invalid port '%s'.", optarg);
            o.port = (uint16_t)port;
            break;
        case 'v':
            o.verbose = true;
            break;
        case '?':
            return -EINVAL;
        default:
            assert(c >= 0x200 && cli->parse_extra);
            cli->parse_extra(c);
        }
    if (optind < argc)
        return log_error_errno(-EINVAL, "Unexpected argument '%s'.", argv[optind]);
    if (o.verbose)
        log_set_max_level(LOG_DEBUG);
    r = listen_address(&o);
    if (r < 0)
        return r;
    *ret_options = o;
    return 1;
}

/* Raises the soft RLIMIT_NOFILE to the hard one, for benchmarks with thousands of connections. */
void fake_raise_nofile_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warning_errno(-errno, "Failed to raise RLIMIT_NOFILE, keeping the soft limit: %m");
}

/* Sets up c, which the caller has zeroed: the lock and the shutdown pipe. Returns 0 or -errno;
 * fake_core_done() copes with a half-done c. */
int fake_core_init(struct fake_core *c)
{
    c->stop_pipe[0] = c->stop_pipe[1] = -1;
    pthread_mutex_init(&c->lock, NULL);
    if (pipe2(c->stop_pipe, O_CLOEXEC) < 0)
        return -errno;
    return 0;
}

/* Drops the records and closes the pipe. Only for a c that fake_core_init() has seen; the daemon
 * must be stopped already. */
void fake_core_done(struct fake_core *c)
{
    (void)fake_records_clear_locked(c);
    c->stop_pipe[0] = safe_close(c->stop_pipe[0]);
    c->stop_pipe[1] = safe_close(c->stop_pipe[1]);
    pthread_mutex_destroy(&c->lock);
}

void fake_core_lock(struct fake_core *c)
{
    pthread_mutex_lock(&c->lock);
}

void fake_core_unlock(struct fake_core *c)
{
    pthread_mutex_unlock(&c->lock);
}

/* Starts the daemon on o->address, prints "PORT=<n>" and runs until SIGTERM or SIGINT; then
 * wakes every wait on the shutdown pipe and stops the daemon, joining its threads. Returns 0, or
 * a negative errno already logged. */
int fake_serve(struct fake_core *c, const struct fake_options *o, const struct fake_daemon *d)
{
    static const struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
    const union MHD_DaemonInfo *info;
    unsigned flags;
    sigset_t mask;
    int r, sig;

    /* Block the signals before libmicrohttpd starts its threads, so they inherit the mask and
     * only sigwait() below sees SIGTERM and SIGINT. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    r = -pthread_sigmask(SIG_BLOCK, &mask, NULL);
    if (r < 0)
        return log_error_errno(r, "Failed to block signals: %m");
    signal(SIGPIPE, SIG_IGN);

    flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (o->ipv6)
        flags |= MHD_USE_IPv6;
    if (o->verbose)
        flags |= MHD_USE_ERROR_LOG;
    c->daemon = MHD_start_daemon(
        flags, o->port, NULL, NULL, d->on_request, d->cls, MHD_OPTION_SOCK_ADDR,
        (const struct sockaddr *)&o->address, MHD_OPTION_CONNECTION_TIMEOUT, 0u,
        MHD_OPTION_URI_LOG_CALLBACK, d->on_uri, d->cls, MHD_OPTION_NOTIFY_COMPLETED,
        d->on_completed, d->cls, MHD_OPTION_ARRAY, d->extra ? d->extra : none, MHD_OPTION_END);
    if (!c->daemon)
        return log_error_errno(-EADDRNOTAVAIL, "Failed to listen on '%s' port %u.", o->listen,
                               (unsigned)o->port);
    info = MHD_get_daemon_info(c->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        MHD_stop_daemon(c->daemon);
        return log_error_errno(-EIO, "Failed to learn the listening port.");
    }
    c->port = info->port;
    if (printf("PORT=%u\n", (unsigned)info->port) < 0 || fflush(stdout) != 0)
        log_warning_errno(-errno, "Failed to print the port, continuing: %m");

    do
        r = sigwait(&mask, &sig);
    while (r == EINTR);
    log_debug("Got signal %d, stopping.", sig);

    /* Wake every reply that is waiting, then let libmicrohttpd join the connection threads. */
    if (write(c->stop_pipe[1], "x", 1) < 0)
        log_warning_errno(-errno, "Failed to wake waiting replies: %m");
    MHD_stop_daemon(c->daemon);
    return 0;
}

/* Stores a record in the ring, dropping the oldest when it is full. Borrows rec: the ring takes
 * its own reference. The caller holds the lock. */
void fake_records_add_locked(struct fake_core *c, json_t *rec)
{
    if (c->n_records == FAKE_RECORDS_MAX) {
        json_decref(c->records[c->records_first]);
        c->records[c->records_first] = json_incref(rec);
        c->records_first = (c->records_first + 1) % FAKE_RECORDS_MAX;
    } else {
        c->records[(c->records_first + c->n_records) % FAKE_RECORDS_MAX] = json_incref(rec);
        c->n_records++;
    }
}

/* Empties the ring. Returns how many records it held. The caller holds the lock. */
size_t fake_records_clear_locked(struct fake_core *c)
{
    size_t n = c->n_records;

    for (size_t i = 0; i < c->n_records; i++)
        json_decref(c->records[(c->records_first + i) % FAKE_RECORDS_MAX]);
    c->n_records = c->records_first = 0;
    return n;
}

/* Serializes every record, oldest first, as a compact JSON array. Records change under the lock
 * as requests finish, so this takes it. Returns a new malloc()ed string or NULL. */
char *fake_records_dump(struct fake_core *c)
{
    json_auto_t *list = json_array();
    char *text;

    if (!list)
        return NULL;
    fake_core_lock(c);
    for (size_t i = 0; i < c->n_records; i++)
        json_array_append(list, c->records[(c->records_first + i) % FAKE_RECORDS_MAX]);
    text = fake_json_dump(list);
    json_array_clear(list);
    fake_core_unlock(c);
    return text;
}

static enum MHD_Result collect_header(void *cls, _unused_ enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    json_t *headers = cls;
    _cleanup_free_ char *name = NULL;
    json_t *v, *old;

    name = strdup(key);
    if (!name)
        return MHD_NO;
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    v = fake_json_string_lenient(value ? value : "");
    if (!v)
        return MHD_NO;

    /* A repeated header is joined the way HTTP allows: "a, b". */
    old = json_object_get(headers, name);
    if (old) {
        _cleanup_(fake_buf_done) struct buf b = BUF_INIT(0);
        int r;

        r = buf_append_str(&b, json_string_value(old));
        if (r >= 0)
            r = buf_append_str(&b, ", ");
        if (r >= 0)
            r = buf_append(&b, json_string_value(v), json_string_length(v));
        json_decref(v);
        if (r < 0)
            return MHD_NO;
        v = json_stringn(b.data, b.len);
        if (!v)
            return MHD_NO;
    }
    if (json_object_set_new(headers, name, v) < 0)
        return MHD_NO;
    return MHD_YES;
}

/* Adds the request's headers to the object headers (borrowed): names lowercased, values as
 * fake_json_string_lenient() makes them, repeats joined with ", ". Returns 0 or -ENOMEM. */
int fake_collect_headers(struct MHD_Connection *connection, json_t *headers)
{
    if (MHD_get_connection_values(connection, MHD_HEADER_KIND, collect_header, headers) < 0)
        return -ENOMEM;
    return 0;
}

/* Takes a piece of an upload (the access handler's upload_data) into body, whose .max is the
 * ceiling. Past the ceiling the body is dropped and *too_large set; later pieces are skipped.
 * Marks the piece consumed. Returns MHD_YES, or MHD_NO when out of memory. */
enum MHD_Result fake_body_upload(struct buf *body, bool *too_large, const char *data, size_t *size)
{
    if (!*too_large) {
        int r = buf_append(body, data, *size);

        if (r == -ENOBUFS) {
            *too_large = true;
            buf_free(body, false);
        } else if (r < 0)
            return MHD_NO;
    }
    *size = 0;
    return MHD_YES;
}

/* A cleanup for a struct buf on the stack. */
void fake_buf_done(struct buf *b)
{
    buf_free(b, false);
}

/* Returns a new malloc()ed, NUL-terminated base64 encoding of data, or NULL. With url, the
 * base64url alphabet and no padding; without, the standard alphabet with padding. */
char *fake_base64_encode(const void *data, size_t n, bool url)
{
    const char *alphabet = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                               : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    char *out, *o;
    size_t i;

    if (n > (SIZE_MAX - 1) / 4 * 3 - 2)
        return NULL;
    out = malloc((n + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    o = out;
    for (i = 0; i + 2 < n; i += 3) {
        *o++ = alphabet[p[i] >> 2];
        *o++ = alphabet[((p[i] & 0x03) << 4) | (p[i + 1] >> 4)];
        *o++ = alphabet[((p[i + 1] & 0x0f) << 2) | (p[i + 2] >> 6)];
        *o++ = alphabet[p[i + 2] & 0x3f];
    }
    if (i < n) {
        *o++ = alphabet[p[i] >> 2];
        if (i + 1 < n) {
            *o++ = alphabet[((p[i] & 0x03) << 4) | (p[i + 1] >> 4)];
            *o++ = alphabet[(p[i + 1] & 0x0f) << 2];
        } else {
            *o++ = alphabet[(p[i] & 0x03) << 4];
            if (!url)
                *o++ = '=';
        }
        if (!url)
            *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* Returns a new JSON string holding s[0..n): as is when it is UTF-8, else read as ISO-8859-1,
 * which is how HTTP has always treated header bytes over 0x7f. NULL only when out of memory. */
json_t *fake_json_stringn_lenient(const char *s, size_t n)
{
    _cleanup_free_ char *u = NULL;
    json_t *j;
    size_t k = 0;

    j = json_stringn(s, n);
    if (j)
        return j;
    u = malloc(2 * n + 1);
    if (!u)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x80) {
            u[k++] = (char)c;
        } else {
            u[k++] = (char)(0xc0 | (c >> 6));
            u[k++] = (char)(0x80 | (c & 0x3f));
        }
    }
    return json_stringn(u, k);
}

/* fake_json_stringn_lenient() of a NUL-terminated s. */
json_t *fake_json_string_lenient(const char *s)
{
    return fake_json_stringn_lenient(s, strlen(s));
}

/* Serializes j compactly; JSON_ENCODE_ANY lets a bare string or number through. Returns a new
 * malloc()ed string or NULL. */
char *fake_json_dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
}
