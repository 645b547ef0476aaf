/* fake-common.h: the server plumbing fake-upstream and fake-oauth share; see fake-common.c. */
#pragma once

#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>
#include <microhttpd.h>

struct buf;

#define FAKE_RECORDS_MAX 2000

/* The options every fake takes: --listen, --port and --verbose. */
struct fake_options {
    const char *listen; /* borrowed from argv, or the static default */
    uint16_t port;
    bool verbose;
    struct sockaddr_storage address; /* listen and port, checked to be loopback */
    bool ipv6;
};

/* What a fake adds to the common command line. */
struct fake_cli {
    const char *help;           /* printed as is by --help */
    const struct option *extra; /* more long options, ending with {}; or NULL */
    void (*parse_extra)(int c); /* called for each of them, with its val */
};

/* The state both fakes share. Each embeds one as its struct server's "core". */
struct fake_core {
    struct MHD_Daemon *daemon;
    int stop_pipe[2]; /* written once at shutdown; waits poll the read end */
    uint16_t port;    /* the bound port, once listening */

    pthread_mutex_t lock; /* guards what follows and whatever else the fake puts behind it */
    json_t *records[FAKE_RECORDS_MAX]; /* a ring: the oldest is records[records_first] */
    size_t records_first, n_records;
    uint64_t n_requests;
};

/* How a fake's daemon is wired. extra holds more MHD options and ends with MHD_OPTION_END; may be
 * NULL. cls is passed to every callback. */
struct fake_daemon {
    MHD_AccessHandlerCallback on_request;
    void *(*on_uri)(void *cls, const char *uri, struct MHD_Connection *connection);
    MHD_RequestCompletedCallback on_completed;
    const struct MHD_OptionItem *extra;
    void *cls;
};

int fake_parse_argv(const struct fake_cli *cli, int argc, char *argv[],
                    struct fake_options *ret_options);
void fake_raise_nofile_limit(void);

int fake_core_init(struct fake_core *c);
void fake_core_done(struct fake_core *c);
void fake_core_lock(struct fake_core *c);
void fake_core_unlock(struct fake_core *c);
int fake_serve(struct fake_core *c, const struct fake_options *o, const struct fake_daemon *d);

void fake_records_add_locked(struct fake_core *c, json_t *rec);
size_t fake_records_clear_locked(struct fake_core *c);
char *fake_records_dump(struct fake_core *c);

int fake_collect_headers(struct MHD_Connection *connection, json_t *headers);
enum MHD_Result fake_body_upload(struct buf *body, bool *too_large, const char *data, size_t *size);

void fake_buf_done(struct buf *b);
char *fake_base64_encode(const void *data, size_t n, bool url);
json_t *fake_json_stringn_lenient(const char *s, size_t n);
json_t *fake_json_string_lenient(const char *s);
char *fake_json_dump(const json_t *j);
