/* config.c: authd's key table and command line.
 *
 * The table is the single description of every setting: authd.conf is parsed against it,
 * --dump-config prints it, and each command-line option is a conf_set() of a key. The command
 * line is read twice, as routerd does: once to find --config and the informational options, then,
 * after the file and the environment have been applied, for real, so the command line wins. */
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "macro.h"
#include "prices.h"

const char *const authd_log_level_names[] = {"err", "warning", "notice", "info", "debug", NULL};

int authd_log_level_to_syslog(int level)
{
    static const int map[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG};

    if (level < 0 || (size_t)level >= ELEMENTSOF(map))
        return LOG_INFO;
    return map[level];
}

#define KEY(n, t, f, d, lo, hi, h)                                                                 \
    {                                                                                              \
        .name = n, .type = t, .offset = offsetof(struct authd_config, f), .def = d, .min = lo,     \
        .max = hi, .help = h                                                                       \
    }

static const struct conf_key authd_keys[] = {
    KEY("state_dir", CONF_STRING, state_dir, "state", 0, 0,
        "Directory of authd.db and (by default) authd.sock; created 0700 if missing"),
    KEY("socket", CONF_STRING, socket, NULL, 0, 0,
        "Unix socket path; unset or empty: STATE_DIR/authd.sock (ignored under socket "
        "activation)"),
    KEY("database", CONF_STRING, database, NULL, 0, 0,
        "SQLite database path; unset or empty: STATE_DIR/authd.db"),
    KEY("admin_group", CONF_STRING, admin_group, "dualroute-admin", 0, 0,
        "Members of this group get the admin role (uid 0 always has it)"),
    KEY("router_user", CONF_STRING, router_user, "dualroute-router", 0, 0,
        "The uid of this user gets the router role"),
    KEY("max_connections_per_uid", CONF_INT, max_connections_per_uid, "16", 1, 100000,
        "Connections one uid may hold open at once; one more is refused with 'busy'"),
    KEY("google_auth_url", CONF_STRING, google_auth_url, NULL, 0, 0,
        "Google OAuth authorization endpoint; empty: https://accounts.google.com/o/oauth2/v2/auth"),
    KEY("google_token_url", CONF_STRING, google_token_url, NULL, 0, 0,
        "Google OAuth token endpoint; empty: https://oauth2.googleapis.com/token"),
    KEY("google_revoke_url", CONF_STRING, google_revoke_url, NULL, 0, 0,
        "Google OAuth revocation endpoint; empty: https://oauth2.googleapis.com/revoke"),
    KEY("metadata_url", CONF_STRING, metadata_url, NULL, 0, 0,
        "GCE metadata server base URL; empty: http://metadata.google.internal"),
    KEY("prices_file", CONF_STRING, prices_file, NULL, 0, 0,
        "JSON array of model prices in micro-USD per million tokens; its entries replace the "
        "built-in ones for the same model pattern (read at each snapshot)"),
    {.name = "log_level",
     .type = CONF_ENUM,
     .offset = offsetof(struct authd_config, log_level),
     .def = "info",
     .choices = authd_log_level_names,
     .help = "Log level: err, warning, notice, info (one line per change), debug (every request)"},
};

const struct conf_table authd_config_table = {authd_keys, ELEMENTSOF(authd_keys)};

enum {
    OPT_CONFIG = 0x100,
    OPT_STATE_DIR,
    OPT_SOCKET,
    OPT_DATABASE,
    OPT_SET,
    OPT_CHECK,
    OPT_DUMP,
};

static const struct option options[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"database", required_argument, NULL, OPT_DATABASE},
    {"set", required_argument, NULL, OPT_SET},
    {"check-config", no_argument, NULL, OPT_CHECK},
    {"dump-config", no_argument, NULL, OPT_DUMP},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'v'},
    {},
};

void authd_config_help(FILE *f)
{
    fprintf(f,
            "Usage: dualroute-authd [OPTIONS]\n"
            "\n"
            "dualroute's control plane: upstream accounts, logins and token refresh, model\n"
            "aliases and the usage ledger, served to routerd and dualroutectl on a Unix socket.\n"
            "\n"
            "      --config FILE        Configuration file (default %s when it exists)\n"
            "      --state-dir DIR      Directory of authd.db and authd.sock (default ./state)\n"
            "      --socket PATH        Socket path (default STATE_DIR/authd.sock)\n"
            "      --database PATH      Database path (default STATE_DIR/authd.db)\n"
            "      --set KEY=VALUE      Set any configuration key\n"
            "      --check-config       Check the configuration and exit\n"
            "      --dump-config        Print the effective configuration and exit\n"
            "  -q, --quiet              Log start-up messages and errors only\n"
            "  -V, --verbose            Log every request (debug)\n"
            "  -h, --help               Show this help\n"
            "  -v, --version            Show the version\n"
            "\n"
            "Environment: STATE_DIRECTORY (systemd's StateDirectory=, sets state_dir),\n"
            "DUALROUTE_DEBUG (any value: log_level debug), LISTEN_FDS (socket activation).\n",
            AUTHD_DEFAULT_CONFIG);
}

static int set_or_complain(struct authd_config *cfg, const char *source, const char *key,
                           const char *value)
{
    return conf_set_or_complain(&authd_config_table, cfg, "dualroute-authd", source, key, value,
                                stderr);
}

static int apply_option(struct authd_config *cfg, int c, const char *arg)
{
    switch (c) {
    case 'q':
        return set_or_complain(cfg, "-q", "log_level", "notice");
    case 'V':
        return set_or_complain(cfg, "-V", "log_level", "debug");
    case OPT_STATE_DIR:
        return set_or_complain(cfg, "--state-dir", "state_dir", arg);
    case OPT_SOCKET:
        return set_or_complain(cfg, "--socket", "socket", arg);
    case OPT_DATABASE:
        return set_or_complain(cfg, "--database", "database", arg);
    case OPT_SET:
        return conf_set_assignment(&authd_config_table, cfg, "dualroute-authd", arg, stderr);
    default:
        return 0;
    }
}

int authd_config_load(int argc, char **argv, struct authd_config *cfg,
                      enum authd_config_action *ret_action)
{
    enum authd_config_action action = AUTHD_CONFIG_RUN;
    const char *config_path = NULL, *e;
    int c, r;

    r = conf_init(&authd_config_table, cfg);
    if (r < 0)
        return r;

    /* First pass: informational options, --config, and syntax errors. */
    opterr = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "qVhv", options, NULL)) >= 0) {
        switch (c) {
        case 'h':
            authd_config_help(stdout);
            *ret_action = AUTHD_CONFIG_EXIT_OK;
            return 0;
        case 'v':
            printf("dualroute-authd %s\n", DUALROUTE_VERSION);
            *ret_action = AUTHD_CONFIG_EXIT_OK;
            return 0;
        case OPT_CONFIG:
            config_path = optarg;
            break;
        case OPT_CHECK:
            action = AUTHD_CONFIG_CHECK;
            break;
        case OPT_DUMP:
            action = AUTHD_CONFIG_DUMP;
            break;
        case '?':
            fprintf(stderr, "Try 'dualroute-authd --help'.\n");
            return -EINVAL;
        default:
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dualroute-authd: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }

    /* The file: an explicit --config must exist; the default one may be absent. */
    r = conf_load_file_or_default(&authd_config_table, cfg, config_path, AUTHD_DEFAULT_CONFIG,
                                  stderr);
    if (r < 0)
        return r;

    /* systemd's StateDirectory= may list several directories, separated by ':'. */
    e = getenv("STATE_DIRECTORY");
    if (e && *e) {
        _cleanup_free_ char *first = strndup(e, strcspn(e, ":"));

        if (!first)
            return -ENOMEM;
        r = set_or_complain(cfg, "STATE_DIRECTORY", "state_dir", first);
        if (r < 0)
            return r;
    }
    e = getenv("DUALROUTE_DEBUG");
    if (e && *e) {
        r = set_or_complain(cfg, "DUALROUTE_DEBUG", "log_level", "debug");
        if (r < 0)
            return r;
    }

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "qVhv", options, NULL)) >= 0) {
        r = apply_option(cfg, c, optarg);
        if (r < 0)
            return r;
    }

    if (!cfg->state_dir || !*cfg->state_dir) {
        fprintf(stderr, "dualroute-authd: state_dir must not be empty\n");
        return -EINVAL;
    }
    /* A price file that does not parse is refused at start (and by --check-config), not found
     * out at the first snapshot. */
    if (cfg->prices_file && *cfg->prices_file) {
        json_t *prices = NULL;
        char perr[256];

        r = prices_to_json(cfg->prices_file, &prices, perr, sizeof perr);
        if (r < 0) {
            fprintf(stderr, "dualroute-authd: prices_file: %s\n", perr);
            return r;
        }
        json_decref(prices);
    }
    *ret_action = action;
    return 0;
}

static char *path_in_state_dir(const struct authd_config *cfg, const char *set, const char *name)
{
    char *p = NULL;

    if (set && *set)
        return strdup(set);
    if (asprintf(&p, "%s/%s", cfg->state_dir, name) < 0)
        return NULL;
    return p;
}

char *authd_config_socket_path(const struct authd_config *cfg)
{
    return path_in_state_dir(cfg, cfg->socket, "authd.sock");
}

char *authd_config_database_path(const struct authd_config *cfg)
{
    return path_in_state_dir(cfg, cfg->database, "authd.db");
}

void authd_config_done(struct authd_config *cfg)
{
    conf_done(&authd_config_table, cfg);
}
