/* config.c: routerd's key table and command line.
 *
 * The table is the single description of every setting: routerd.conf is parsed against it,
 * --dump-config prints it, and each command-line option is a conf_set() of a key. The command
 * line is read twice: once to find --config (and the informational options), then, after the
 * file and the environment have been applied, for real, so the command line wins. */
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "macro.h"

static const char *const log_mode_names[] = {"quiet", "minimal", "normal", "verbose", NULL};
static const char *const team_mode_names[] = {"auto", "on", "off", NULL};

#define KEY(n, t, f, d, lo, hi, h)                                                                 \
    {                                                                                              \
        .name = n, .type = t, .offset = offsetof(struct router_config, f), .def = d, .min = lo,    \
        .max = hi, .help = h                                                                       \
    }
#define SEC(x) ((uint64_t)(x)*1000000ULL)

static const struct conf_key router_keys[] = {
    KEY("listen", CONF_STRING, listen, "127.0.0.1", 0, 0,
        "Address to listen on; a non-loopback address needs member keys or allow_unauthenticated"),
    KEY("port", CONF_INT, port, "3000", 0, 65535, "TCP port; 0 picks a free port"),
    KEY("upstream", CONF_STRING, upstream, "https://api.anthropic.com", 0, 0,
        "Anthropic API base URL: https, or plain http to a loopback address (tests)"),
    KEY("api_key_file", CONF_STRING, api_key_file, NULL, 0, 0,
        "File holding the router's Anthropic API key (mode 0600); else $CREDENTIALS_DIRECTORY/"
        "anthropic-api-key or ANTHROPIC_API_KEY"),
    KEY("authd_socket", CONF_STRING, authd_socket, NULL, 0, 0,
        "dualroute-authd's socket: credentials and routes come from authd (service mode); unset:"
        " standalone, with the router's own key; env DUALROUTE_AUTHD_SOCKET"),
    KEY("vertex_base_url", CONF_STRING, vertex_base_url, NULL, 0, 0,
        "Vertex AI base URL (https, or http to loopback for tests); unset: by each account's "
        "region"),
    KEY("vertex_drop_betas", CONF_STRING, vertex_drop_betas, NULL, 0, 0,
        "anthropic-beta values never sent to Vertex AI, comma-separated, beyond the built-in "
        "table"),
    KEY("enable_anthropic", CONF_BOOL, enable_anthropic, "yes", 0, 0,
        "Serve the Anthropic Messages API (/v1/messages)"),
    KEY("enable_openai", CONF_BOOL, enable_openai, "yes", 0, 0,
        "Serve the OpenAI Chat Completions API (/v1/chat/completions)"),
    KEY("bearer_passthrough", CONF_BOOL, bearer_passthrough, "yes", 0, 0,
        "Use a client's own sk-ant- key upstream for its request"),
    KEY("allow_unauthenticated", CONF_BOOL, allow_unauthenticated, "no", 0, 0,
        "Allow listening on a non-loopback address with no client authentication"),
    {.name = "log_mode",
     .type = CONF_ENUM,
     .offset = offsetof(struct router_config, log_mode),
     .def = "normal",
     .choices = log_mode_names,
     .help = "Request logging: quiet, minimal (one line), normal, verbose (bodies, redacted)"},
    KEY("max_body_size", CONF_SIZE, max_body_size, "32M", 1024, 1ULL << 30,
        "Largest request body accepted (413 above); Anthropic's own limit is 32 MB"),
    KEY("max_header_size", CONF_SIZE, max_header_size, "32K", 8192, 1024 * 1024,
        "Memory for one connection's request line and headers (MHD's connection memory limit)"),
    KEY("max_connections", CONF_INT, max_connections, "2048", 1, 1000000,
        "Concurrent client connections; each open stream needs two file descriptors"),
    KEY("max_connections_per_ip", CONF_INT, max_connections_per_ip, "256", 0, 1000000,
        "Concurrent connections from one IP address (0: no limit); teams behind NAT share one"),
    KEY("client_request_timeout", CONF_DURATION, client_request_timeout, "60s", SEC(1), SEC(3600),
        "Time a client has to send a complete request (slow-client defence)"),
    KEY("client_idle_timeout", CONF_DURATION, client_idle_timeout, "60s", SEC(1), SEC(3600),
        "Idle time after which a client connection is closed"),
    KEY("upstream_connect_timeout", CONF_DURATION, upstream_connect_timeout, "10s", 1000, SEC(300),
        "Time to connect to the upstream (502 after)"),
    KEY("upstream_first_byte_timeout", CONF_DURATION, upstream_first_byte_timeout, "300s", SEC(1),
        SEC(3600), "Time for the upstream to answer; thinking models can take minutes (504)"),
    KEY("upstream_idle_timeout", CONF_DURATION, upstream_idle_timeout, "300s", SEC(1), SEC(3600),
        "Silence allowed in the middle of an upstream response before it is cut"),
    KEY("drain_timeout", CONF_DURATION, drain_timeout, "90s", 0, SEC(3600),
        "On SIGTERM, time in-flight requests get to finish"),
    KEY("mappings", CONF_STRING, mappings, ".router-mappings.json", 0, 0,
        "Model mappings file (anthropic-max-router's format); a missing file means none"),
    KEY("default_model", CONF_STRING, default_model, NULL, 0, 0,
        "Model for OpenAI model names no mapping covers; env ANTHROPIC_DEFAULT_MODEL"),
    KEY("openai_keepalive_interval", CONF_DURATION, openai_keepalive_interval, "15s", 0, SEC(300),
        "SSE comment sent on a silent /v1/chat/completions stream; 0 turns it off"),
    KEY("openai_overloaded_as_503", CONF_BOOL, openai_overloaded_as_503, "no", 0, 0,
        "Answer OpenAI clients 503 instead of Anthropic's 529 (for clients that only retry 5xx"
        " up to 504)"),
    {.name = "team_mode",
     .type = CONF_ENUM,
     .offset = offsetof(struct router_config, team_mode),
     .def = "auto",
     .choices = team_mode_names,
     .help = "Member keys from dualroute-authd for every request: on, off, or auto (on when "
             "listening on a non-loopback address)"},
    KEY("metrics_key_file", CONF_STRING, metrics_key_file, NULL, 0, 0,
        "File holding the metrics key (mode 0600): GET /metrics with it as x-api-key or Bearer"
        " is served to any peer; without it, to loopback peers only"),
};

const struct conf_table router_config_table = {router_keys, ELEMENTSOF(router_keys)};

enum {
    OPT_LISTEN = 0x100,
    OPT_UPSTREAM,
    OPT_CONFIG,
    OPT_API_KEY_FILE,
    OPT_ENABLE_ANTHROPIC,
    OPT_DISABLE_ANTHROPIC,
    OPT_ENABLE_OPENAI,
    OPT_DISABLE_OPENAI,
    OPT_ENABLE_ALL,
    OPT_DISABLE_PASSTHROUGH,
    OPT_ALLOW_UNAUTH,
    OPT_SET,
    OPT_CHECK,
    OPT_DUMP,
    OPT_MAPPINGS,
    OPT_AUTHD_SOCKET,
};

static const struct option options[] = {
    {"port", required_argument, NULL, 'p'},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"upstream", required_argument, NULL, OPT_UPSTREAM},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"api-key-file", required_argument, NULL, OPT_API_KEY_FILE},
    {"enable-anthropic", no_argument, NULL, OPT_ENABLE_ANTHROPIC},
    {"disable-anthropic", no_argument, NULL, OPT_DISABLE_ANTHROPIC},
    {"enable-openai", no_argument, NULL, OPT_ENABLE_OPENAI},
    {"disable-openai", no_argument, NULL, OPT_DISABLE_OPENAI},
    {"enable-all-endpoints", no_argument, NULL, OPT_ENABLE_ALL},
    {"disable-bearer-passthrough", no_argument, NULL, OPT_DISABLE_PASSTHROUGH},
    {"allow-unauthenticated", no_argument, NULL, OPT_ALLOW_UNAUTH},
    {"set", required_argument, NULL, OPT_SET},
    {"mappings", required_argument, NULL, OPT_MAPPINGS},
    {"authd-socket", required_argument, NULL, OPT_AUTHD_SOCKET},
    {"check-config", no_argument, NULL, OPT_CHECK},
    {"dump-config", no_argument, NULL, OPT_DUMP},
    {"quiet", no_argument, NULL, 'q'},
    {"minimal", no_argument, NULL, 'm'},
    {"verbose", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'v'},
    {},
};

void router_config_help(FILE *f)
{
    fprintf(f,
            "Usage: dualroute-routerd [OPTIONS]\n"
            "\n"
            "Serves the Anthropic Messages API and the OpenAI Chat Completions API with Claude\n"
            "behind them.\n"
            "\n"
            "  -p, --port N                  Listen on port N (default 3000; env ROUTER_PORT)\n"
            "      --listen ADDR             Listen address (default 127.0.0.1)\n"
            "      --upstream URL            Anthropic API base URL (default "
            "https://api.anthropic.com)\n"
            "      --config FILE             Configuration file (default %s)\n"
            "      --api-key-file FILE       Read the router's Anthropic API key from FILE\n"
            "      --mappings FILE           Model mappings (default ./.router-mappings.json)\n"
            "      --authd-socket PATH       Get credentials and routes from dualroute-authd\n"
            "      --enable-anthropic        Serve /v1/messages (default)\n"
            "      --disable-anthropic       Do not serve /v1/messages\n"
            "      --enable-openai           Serve /v1/chat/completions (default)\n"
            "      --disable-openai          Do not serve /v1/chat/completions\n"
            "      --enable-all-endpoints    Serve both APIs (default)\n"
            "      --disable-bearer-passthrough\n"
            "                                Never use a client's own sk-ant- key upstream\n"
            "      --allow-unauthenticated   Allow a non-loopback listen address without keys\n"
            "      --set KEY=VALUE           Set any configuration key\n"
            "      --check-config            Check the configuration and exit\n"
            "      --dump-config             Print the effective configuration and exit\n"
            "  -q, --quiet                   Log start-up messages and errors only\n"
            "  -m, --minimal                 Log one line per request\n"
            "  -V, --verbose                 Log request and response bodies (credentials "
            "redacted)\n"
            "  -h, --help                    Show this help\n"
            "  -v, --version                 Show the version\n"
            "\n"
            "Environment: ANTHROPIC_API_KEY (the router's key; wiped from the environment once\n"
            "read), ROUTER_PORT, ANTHROPIC_DEFAULT_MODEL, CREDENTIALS_DIRECTORY (systemd\n"
            "credential 'anthropic-api-key'), DUALROUTE_AUTHD_SOCKET.\n",
            ROUTERD_DEFAULT_CONFIG);
}

static int set_or_complain(struct router_config *cfg, const char *source, const char *key,
                           const char *value)
{
    return conf_set_or_complain(&router_config_table, cfg, "dualroute-routerd", source, key, value,
                                stderr);
}

/* Applies one parsed option; NULL key means the option is not a setting. */
static int apply_option(struct router_config *cfg, int c, const char *arg)
{
    static const struct {
        int opt;
        const char *key, *value;
    } flags[] = {
        {OPT_ENABLE_ANTHROPIC, "enable_anthropic", "yes"},
        {OPT_DISABLE_ANTHROPIC, "enable_anthropic", "no"},
        {OPT_ENABLE_OPENAI, "enable_openai", "yes"},
        {OPT_DISABLE_OPENAI, "enable_openai", "no"},
        {OPT_DISABLE_PASSTHROUGH, "bearer_passthrough", "no"},
        {OPT_ALLOW_UNAUTH, "allow_unauthenticated", "yes"},
        {'q', "log_mode", "quiet"},
        {'m', "log_mode", "minimal"},
        {'V', "log_mode", "verbose"},
    };

    for (size_t i = 0; i < ELEMENTSOF(flags); i++)
        if (flags[i].opt == c)
            return set_or_complain(cfg, "command line", flags[i].key, flags[i].value);

    switch (c) {
    case 'p':
        return set_or_complain(cfg, "--port", "port", arg);
    case OPT_LISTEN:
        return set_or_complain(cfg, "--listen", "listen", arg);
    case OPT_UPSTREAM:
        return set_or_complain(cfg, "--upstream", "upstream", arg);
    case OPT_API_KEY_FILE:
        return set_or_complain(cfg, "--api-key-file", "api_key_file", arg);
    case OPT_MAPPINGS:
        return set_or_complain(cfg, "--mappings", "mappings", arg);
    case OPT_AUTHD_SOCKET:
        return set_or_complain(cfg, "--authd-socket", "authd_socket", arg);
    case OPT_ENABLE_ALL: {
        int r = set_or_complain(cfg, "command line", "enable_anthropic", "yes");
        return r < 0 ? r : set_or_complain(cfg, "command line", "enable_openai", "yes");
    }
    case OPT_SET:
        return conf_set_assignment(&router_config_table, cfg, "dualroute-routerd", arg, stderr);
    default:
        return 0;
    }
}

int router_config_load(int argc, char **argv, struct router_config *cfg,
                       enum config_action *ret_action)
{
    /* The environment, applied after the file and before the command line, in this order. */
    static const struct {
        const char *env, *key;
    } env_keys[] = {
        {"ANTHROPIC_DEFAULT_MODEL", "default_model"},
        {"DUALROUTE_AUTHD_SOCKET", "authd_socket"},
        {"ROUTER_PORT", "port"},
    };
    enum config_action action = CONFIG_RUN;
    const char *config_path = NULL;
    int c, r;

    r = conf_init(&router_config_table, cfg);
    if (r < 0)
        return r;

    /* First pass: informational options, --config, and syntax errors. */
    opterr = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:qmVhv", options, NULL)) >= 0) {
        switch (c) {
        case 'h':
            router_config_help(stdout);
            *ret_action = CONFIG_EXIT_OK;
            return 0;
        case 'v':
            printf("dualroute-routerd %s\n", DUALROUTE_VERSION);
            *ret_action = CONFIG_EXIT_OK;
            return 0;
        case OPT_CONFIG:
            config_path = optarg;
            break;
        case OPT_CHECK:
            action = CONFIG_CHECK;
            break;
        case OPT_DUMP:
            action = CONFIG_DUMP;
            break;
        case '?':
            fprintf(stderr, "Try 'dualroute-routerd --help'.\n");
            return -EINVAL;
        default:
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dualroute-routerd: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }

    /* The file: an explicit --config must exist; the default one may be absent. */
    r = conf_load_file_or_default(&router_config_table, cfg, config_path, ROUTERD_DEFAULT_CONFIG,
                                  stderr);
    if (r < 0)
        return r;

    for (size_t i = 0; i < ELEMENTSOF(env_keys); i++) {
        const char *e = getenv(env_keys[i].env);

        if (e && *e) {
            r = set_or_complain(cfg, env_keys[i].env, env_keys[i].key, e);
            if (r < 0)
                return r;
        }
    }

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "p:qmVhv", options, NULL)) >= 0) {
        r = apply_option(cfg, c, optarg);
        if (r < 0)
            return r;
    }

    *ret_action = action;
    return 0;
}

void router_config_done(struct router_config *cfg)
{
    conf_done(&router_config_table, cfg);
}
