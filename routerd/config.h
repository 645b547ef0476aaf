/* config.h: routerd's configuration: one table of keys (routerd.conf), the command line of
 * anthropic-max-router mapped onto it, and the environment variables it honours. Precedence:
 * command line > environment > file > built-in default. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "conf.h"

enum log_mode {
    LOG_MODE_QUIET,   /* -q: start-up messages and errors only */
    LOG_MODE_MINIMAL, /* -m: one line per request */
    LOG_MODE_NORMAL,  /* default: a short summary per request */
    LOG_MODE_VERBOSE, /* -V: the summary plus bodies, credentials redacted */
    _LOG_MODE_MAX,
    _LOG_MODE_INVALID = -EINVAL,
};

enum team_mode {
    TEAM_MODE_AUTO, /* on when the listen address is not loopback */
    TEAM_MODE_ON,
    TEAM_MODE_OFF,
    _TEAM_MODE_MAX,
    _TEAM_MODE_INVALID = -EINVAL,
};

struct router_config {
    char *listen;
    int64_t port;
    char *upstream;
    char *api_key_file;
    char *authd_socket;
    char *vertex_base_url;
    char *vertex_drop_betas;
    bool enable_anthropic;
    bool enable_openai;
    bool bearer_passthrough;
    bool allow_unauthenticated;
    int log_mode;
    uint64_t max_body_size;
    uint64_t max_header_size;
    int64_t max_connections;
    int64_t max_connections_per_ip;
    uint64_t client_request_timeout;
    uint64_t client_idle_timeout;
    uint64_t upstream_connect_timeout;
    uint64_t upstream_first_byte_timeout;
    uint64_t upstream_idle_timeout;
    uint64_t drain_timeout;
    char *mappings;
    char *default_model;
    uint64_t openai_keepalive_interval;
    bool openai_overloaded_as_503;
    int team_mode; /* enum team_mode */
    char *metrics_key_file;
};

extern const struct conf_table router_config_table;

#define ROUTERD_DEFAULT_CONFIG "/etc/dualroute/routerd.conf"

/* What main() does after parsing. */
enum config_action {
    CONFIG_RUN,
    CONFIG_EXIT_OK, /* --help or --version printed */
    CONFIG_CHECK,   /* --check-config */
    CONFIG_DUMP,    /* --dump-config */
    _CONFIG_ACTION_MAX,
    _CONFIG_ACTION_INVALID = -EINVAL,
};

/* Builds the configuration from argv, the environment and the config file. On an error prints a
 * message naming the option, variable or file:line, and returns a negative errno. Owns nothing it
 * returns except the strings in *cfg (freed by router_config_done()). */
int router_config_load(int argc, char **argv, struct router_config *cfg,
                       enum config_action *ret_action);
void router_config_done(struct router_config *cfg);
void router_config_help(FILE *f);
