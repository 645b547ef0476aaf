/* config.h: authd's configuration: one table of keys (authd.conf), the command line mapped onto
 * it, and the environment variables it honours. Precedence: command line > environment > file >
 * built-in default. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "conf.h"

struct authd_config {
    char *state_dir;
    char *socket;   /* unset: <state_dir>/authd.sock */
    char *database; /* unset: <state_dir>/authd.db */
    char *admin_group;
    char *router_user;
    int64_t max_connections_per_uid;
    char *google_auth_url; /* unset: Google's real endpoints */
    char *google_token_url;
    char *google_revoke_url;
    char *metadata_url;
    char *prices_file; /* unset: the built-in price table only */
    int log_level;     /* index into authd_log_level_names */
};

extern const struct conf_table authd_config_table;
/* "err", "warning", "notice", "info", "debug", NULL-terminated; the syslog level of each is
 * authd_log_level_to_syslog(). */
extern const char *const authd_log_level_names[];
int authd_log_level_to_syslog(int level);

#define AUTHD_DEFAULT_CONFIG "/etc/dualroute/authd.conf"

enum authd_config_action {
    AUTHD_CONFIG_RUN,
    AUTHD_CONFIG_EXIT_OK, /* --help or --version printed */
    AUTHD_CONFIG_CHECK,   /* --check-config */
    AUTHD_CONFIG_DUMP,    /* --dump-config */
    _AUTHD_CONFIG_ACTION_MAX,
    _AUTHD_CONFIG_ACTION_INVALID = -EINVAL,
};

/* Builds the configuration from argv, the environment and the config file. On an error prints a
 * message naming the option, variable or file:line to stderr, and returns a negative errno. The
 * strings in *cfg are owned by it (freed by authd_config_done()), also on failure. */
int authd_config_load(int argc, char **argv, struct authd_config *cfg,
                      enum authd_config_action *ret_action);
/* The socket and database paths: the configured ones, else inside state_dir. Return new strings
 * (caller frees), or NULL on allocation failure. */
char *authd_config_socket_path(const struct authd_config *cfg);
char *authd_config_database_path(const struct authd_config *cfg);
void authd_config_done(struct authd_config *cfg);
void authd_config_help(FILE *f);
