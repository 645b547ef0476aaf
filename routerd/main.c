/* main.c: dualroute-routerd, the data plane.
 *
 * Reads the configuration, the router's Anthropic API key (file, systemd credential, or the
 * environment, in that order), then runs the event loop in server.c until SIGTERM has drained the
 * in-flight requests. The process is made non-dumpable so no core file or ptrace of the same user
 * can read the key. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "ipc.h"
#include "json-arena.h"
#include "log.h"
#include "secret.h"
#include "server.h"

#define API_KEY_MAX 4096

static int load_api_key(const struct router_config *cfg, struct secret **ret)
{
    const char *creds = getenv("CREDENTIALS_DIRECTORY");
    int r;

    *ret = NULL;
    if (cfg->authd_socket && *cfg->authd_socket) {
        /* Service mode: authd holds every credential. A key in the environment is still wiped
         * from it, so it does not linger in /proc/PID/environ. */
        if (secret_from_env("ANTHROPIC_API_KEY", ret) >= 0) {
            log_warning("Ignoring ANTHROPIC_API_KEY: in service mode the keys come from "
                        "dualroute-authd (dualroutectl account add).");
            *ret = secret_free(*ret);
        }
        if (cfg->api_key_file)
            log_warning("Ignoring api_key_file: in service mode the keys come from "
                        "dualroute-authd.");
        return 0;
    }
    if (cfg->api_key_file) {
        r = secret_from_file(cfg->api_key_file, API_KEY_MAX, false, ret);
        if (r == -EPERM)
            return log_error_errno(r,
                                   "Refusing API key file '%s': group or others can read it; run "
                                   "'chmod 600 %s'.",
                                   cfg->api_key_file, cfg->api_key_file);
        if (r < 0)
            return log_error_errno(r, "Failed to read API key file '%s': %m", cfg->api_key_file);
        log_notice("Using the Anthropic API key from '%s' (fingerprint %s).", cfg->api_key_file,
                   secret_fp(*ret));
        return 0;
    }
    if (creds) {
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/anthropic-api-key", creds) < 0)
            return log_oom();
        r = secret_from_file(path, API_KEY_MAX, true, ret);
        if (r >= 0) {
            log_notice("Using the Anthropic API key from the systemd credential (fingerprint %s).",
                       secret_fp(*ret));
            return 0;
        }
        if (r != -ENOENT)
            return log_error_errno(r, "Failed to read credential '%s': %m", path);
    }
    r = secret_from_env("ANTHROPIC_API_KEY", ret);
    if (r >= 0) {
        log_notice("Using the Anthropic API key from ANTHROPIC_API_KEY (fingerprint %s).",
                   secret_fp(*ret));
        return 0;
    }
    if (r != -ENOENT)
        return log_error_errno(r, "Failed to read ANTHROPIC_API_KEY: %m");
    log_warning("No Anthropic API key configured (ANTHROPIC_API_KEY, --api-key-file): only "
                "clients that send their own sk-ant- key will be served.");
    return 0;
}

/* Quiet mode keeps start-up messages (notice) and failures; request lines are info. */
static void apply_log_level(const struct router_config *cfg)
{
    log_set_max_level(cfg->log_mode == LOG_MODE_QUIET ? LOG_NOTICE : LOG_INFO);
    if (getenv("DUALROUTE_DEBUG"))
        log_set_max_level(LOG_DEBUG);
}

/* What SIGHUP needs to build the configuration again, the same way as at start. */
struct reload_ctx {
    int argc;
    char **argv;
    struct router_config *cfg; /* the live one, which the server reads */
};

/* The keys a SIGHUP applies without a restart (docs/configuration.md lists them): read per request,
 * or rebuilt by server_apply_config(). The rest (listen address and port, upstream, credentials,
 * authd_socket, libmicrohttpd's connection limits) need a restart. */
static const char *const reloadable_keys[] = {
    "log_mode",
    "max_body_size",
    "client_request_timeout",
    "upstream_connect_timeout",
    "upstream_first_byte_timeout",
    "upstream_idle_timeout",
    "drain_timeout",
    "enable_anthropic",
    "enable_openai",
    "bearer_passthrough",
    "mappings",
    "default_model",
    "vertex_drop_betas",
    "openai_keepalive_interval",
    "openai_overloaded_as_503",
};

static bool key_reloadable(const char *name)
{
    for (size_t i = 0; i < ELEMENTSOF(reloadable_keys); i++)
        if (strcmp(reloadable_keys[i], name) == 0)
            return true;
    return false;
}

/* Exchanges one key's value between two configurations (strings change owner, not copied). */
static void swap_value(const struct conf_key *k, void *a, void *b)
{
    static const size_t sizes[_CONF_TYPE_MAX] = {
        [CONF_BOOL] = sizeof(bool),     [CONF_INT] = sizeof(int64_t),
        [CONF_SIZE] = sizeof(uint64_t), [CONF_DURATION] = sizeof(uint64_t),
        [CONF_STRING] = sizeof(char *), [CONF_ENUM] = sizeof(int),
    };
    unsigned char tmp[sizeof(uint64_t) > sizeof(char *) ? sizeof(uint64_t) : sizeof(char *)];
    size_t n = sizes[k->type];

    memcpy(tmp, (char *)a + k->offset, n);
    memcpy((char *)a + k->offset, (char *)b + k->offset, n);
    memcpy((char *)b + k->offset, tmp, n);
}

/* SIGHUP: reads argv, the environment and the file again; applies the reloadable keys that
 * changed, warns about the others. Open connections and in-flight requests are untouched. An
 * invalid file changes nothing. */
static int reload_config(struct server *s, void *userdata)
{
    struct reload_ctx *ctx = userdata;
    struct router_config fresh = {};
    enum config_action action = CONFIG_RUN;
    unsigned changed = 0;
    int r;

    log_notice("SIGHUP received, reloading the configuration.");
    r = router_config_load(ctx->argc, ctx->argv, &fresh, &action);
    if (r < 0) {
        router_config_done(&fresh);
        return log_error_errno(r, "The configuration is invalid (see above); nothing changed.");
    }
    for (size_t i = 0; i < router_config_table.n_keys; i++) {
        const struct conf_key *k = &router_config_table.keys[i];
        char old[256], now[256];

        conf_format_value(k, ctx->cfg, old, sizeof old);
        conf_format_value(k, &fresh, now, sizeof now);
        if (strcmp(old, now) == 0)
            continue;
        if (!key_reloadable(k->name)) {
            log_warning("'%s' changed in the configuration; it takes effect at the next restart.",
                        k->name);
            continue;
        }
        swap_value(k, ctx->cfg, &fresh);
        log_notice("Reloaded '%s' = %s.", k->name, now);
        changed++;
    }
    router_config_done(&fresh);
    apply_log_level(ctx->cfg);
    r = server_apply_config(s);
    if (r < 0)
        return r;
    log_notice("Configuration reloaded: %u key%s changed.", changed, changed == 1 ? "" : "s");
    return 0;
}

static int run(int argc, char **argv)
{
    struct router_config cfg = {};
    struct reload_ctx reload = {.argc = argc, .argv = argv, .cfg = &cfg};
    _cleanup_(server_freep) struct server *s = NULL;
    _cleanup_(secret_freep) struct secret *key = NULL;
    sd_event *e = NULL;
    enum config_action action = CONFIG_RUN;
    int r;

    r = router_config_load(argc, argv, &cfg, &action);
    if (r < 0 || action == CONFIG_EXIT_OK) {
        router_config_done(&cfg);
        return r < 0 ? r : 0;
    }
    if (action == CONFIG_DUMP)
        conf_dump(&router_config_table, &cfg, stdout);
    if (action == CONFIG_CHECK)
        printf("Configuration OK.\n");
    if (action != CONFIG_RUN) {
        router_config_done(&cfg);
        return 0;
    }

    apply_log_level(&cfg);
    /* Every request allocates and frees a few buffers of 16 KiB and more; without this glibc
     * hands the top of the heap back to the kernel after each and faults it in again for the
     * next request (about one page fault per request, measured). */
    (void)mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    (void)mallopt(M_TOP_PAD, 4 * 1024 * 1024);

    /* Service mode decodes tokens from authd's frames: jansson wipes what it frees. Standalone
     * mode keeps its key out of JSON and skips the cost. */
    if (cfg.authd_socket && *cfg.authd_socket)
        ipc_json_wipe_on_free();
    /* Request bodies are parsed and translated in arena scopes (json-arena.h). */
    json_arena_install(cfg.authd_socket && *cfg.authd_socket);
    r = load_api_key(&cfg, &key);
    if (r < 0)
        goto finish;
    (void)prctl(PR_SET_DUMPABLE, 0);
    signal(SIGPIPE, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        r = log_error_errno(-EIO, "Failed to initialise libcurl.");
        goto finish;
    }
    /* Not sd_event_default(): that loop checks on every iteration, with a gettid() system call,
     * that it runs in the thread that made it. This one is only ever run by main(). */
    r = sd_event_new(&e);
    if (r < 0) {
        log_error_errno(r, "Failed to create the event loop: %m");
        goto finish;
    }
    /* WatchdogSec= in the unit: the loop itself sends WATCHDOG=1, so a stuck loop is noticed. */
    r = sd_event_set_watchdog(e, true);
    if (r < 0)
        log_warning_errno(r, "Failed to enable the systemd watchdog: %m");
    r = server_new(e, &cfg, TAKE_PTR(key), &s);
    if (r < 0) {
        log_error_errno(r, "Failed to set up the router: %m");
        goto finish;
    }
    s->reload = reload_config;
    s->reload_userdata = &reload;
    r = server_start(s);
    if (r < 0)
        goto finish;
    r = sd_event_loop(e);
    if (r < 0)
        log_error_errno(r, "Event loop failed: %m");

finish:
    s = server_free(s);
    e = sd_event_unref(e);
    curl_global_cleanup();
    router_config_done(&cfg);
    return r;
}

int main(int argc, char **argv)
{
    return run(argc, argv) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
