/* server.h: routerd's event loop: one sd-event loop holding libmicrohttpd (epoll mode, suspend and
 * resume), the curl multi handle (socket and timer callbacks), a sweep timer and the signals. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <microhttpd.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "curl-event.h"
#include "curl-headers.h"
#include "ledger.h"
#include "macro.h"
#include "metrics.h"
#include "model-map.h"
#include "route.h"
#include "team.h"
#include "translate.h"

struct authd_client;
struct request;
struct secret;
struct client_conn;
struct models_fetch;

#define EASY_POOL_MAX 256

struct server {
    sd_event *event;
    const struct router_config *cfg;

    struct MHD_Daemon *mhd;
    int listen_fd;
    uint16_t port;
    sd_event_source *mhd_io, *mhd_timer, *mhd_defer;
    uint64_t mhd_deadline;
    bool mhd_wanted; /* a connection was resumed: MHD must run soon */

    struct curl_event curl; /* the upstream transfers */
    CURL *easy_pool[EASY_POOL_MAX];
    size_t n_easy_pool;

    sd_event_source *sweep, *sig_term, *sig_int, *sig_hup, *drain_timer;

    struct secret *api_key;
    char *upstream_base; /* scheme://host[:port][/prefix], no trailing slash */
    bool upstream_plain_http;

    struct request *requests; /* every live request, for the sweep and the drain */
    size_t n_requests;
    struct client_conn *conns; /* every open client connection */
    size_t n_conns;

    struct model_map model_map;
    /* Service mode (authd_socket set): credentials and routes come from authd. */
    struct authd_client *authd;
    struct route_table routes;
    struct translate_options translate_options;
    json_t *model_caps; /* model id -> GET /v1/models item, from the upstream */
    struct models_fetch *models_fetch;
    sd_event_source *models_timer;

    /* Team mode (docs/team.md): member keys, budgets and limits from authd's snapshot; the usage
     * ledger (service mode) and the metrics. */
    bool team_on;
    struct team team;
    struct ledger ledger;
    struct metrics metrics;
    struct secret *metrics_key;
    bool exiting; /* the loop exits once the ledger is flushed */

    uint64_t id_seed, id_counter;
    bool draining;
    bool drain_forced;

    /* SIGHUP: main.c re-reads the configuration into the live struct and then calls
     * server_apply_config(); NULL means reloading is not possible. */
    int (*reload)(struct server *s, void *userdata);
    void *reload_userdata;
};

/* Creates the server; steals api_key (may be NULL: clients must then bring their own key). */
int server_new(sd_event *e, const struct router_config *cfg, struct secret *api_key,
               struct server **ret);
struct server *server_free(struct server *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct server *, server_free);

/* Binds the listening socket (or takes the one systemd passed, socket activation), starts MHD in
 * the loop, tells systemd READY=1. */
int server_start(struct server *s);
/* After a reload changed the live configuration: rebuilds what server_new() derived from it
 * (standalone model mappings and default model, translate options). On an error
 * the previous derived state stays. Every other reloadable key is read per request. */
int server_apply_config(struct server *s);
/* Stops accepting, lets requests finish up to drain_timeout, then exits the loop. */
int server_drain(struct server *s);

/* Asks for an MHD_run() from a defer source: after a resume, and never from inside a curl
 * callback (MHD would call the access handler, which may call curl_multi_add_handle). */
void server_schedule_mhd(struct server *s);
/* Runs curl's due work now (a transfer just added); never from inside a curl callback. */
void server_kick_curl(struct server *s);
/* Called by proxy.c when a request ends, so a drain can finish. */
void server_request_gone(struct server *s);

/* A reset easy handle from the pool, or a new one. NULL on allocation failure. */
CURL *server_easy_get(struct server *s);
/* Returns a handle (already removed from the multi) to the pool. */
void server_easy_put(struct server *s, CURL *e);

struct sockaddr;
/* Whether sa is an IPv4 address in 127.0.0.0/8 or the IPv6 address ::1. */
bool sockaddr_is_loopback(const struct sockaddr *sa);

/* Completes info with what the upstream's model list says about model (NULL: nothing). */
void server_model_caps(struct server *s, const char *model, struct model_info *info);
