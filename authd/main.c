/* main.c: dualroute-authd, the control plane.
 *
 * Reads the configuration, creates the state directory (0700), opens the store, starts the
 * credential manager and the socket server on one sd-event loop, tells systemd it is ready, and
 * runs until SIGTERM or SIGINT. Stopping closes every connection and removes the socket authd
 * created. The process is non-dumpable, so no core file or ptrace by the same user can read the
 * secrets it holds, and jansson wipes every block it frees. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "authd.h"
#include "config.h"
#include "cred.h"
#include "ipc.h"
#include "log.h"
#include "store.h"

static const char *empty_to_null(const char *s)
{
    return s && *s ? s : NULL;
}

static int on_stop_signal(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata)
{
    log_notice("Received %s, stopping.", si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
    (void)sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
    return sd_event_exit(sd_event_source_get_event(src), 0);
}

/* What SIGHUP needs to build the configuration again, the same way as at start. */
struct reload_ctx {
    int argc;
    char **argv;
    struct authd_config *cfg; /* the live one, which the server reads */
};

/* The keys a SIGHUP applies (docs/authd-configuration.md lists them); the others (paths, the
 * group and user names resolved at start, the Google endpoints) need a restart. */
static const char *const reloadable_keys[] = {"log_level", "max_connections_per_uid"};

static bool key_reloadable(const char *name)
{
    for (size_t i = 0; i < ELEMENTSOF(reloadable_keys); i++)
        if (streq(reloadable_keys[i], name))
            return true;
    return false;
}

/* SIGHUP: reads argv, the environment and the file again and applies the reloadable keys that
 * changed; connections stay open. An invalid file changes nothing. */
static int on_reload_signal(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata)
{
    struct reload_ctx *ctx = userdata;
    struct authd_config fresh = {};
    enum authd_config_action action = AUTHD_CONFIG_RUN;
    unsigned changed = 0;
    int r;

    log_notice("SIGHUP received, reloading the configuration.");
    (void)sd_notify(false, "RELOADING=1\nSTATUS=Reloading the configuration");
    r = authd_config_load(ctx->argc, ctx->argv, &fresh, &action);
    if (r < 0) {
        log_error_errno(r, "The configuration is invalid (see above); nothing changed.");
        goto done;
    }
    for (size_t i = 0; i < authd_config_table.n_keys; i++) {
        const struct conf_key *k = &authd_config_table.keys[i];
        char old[256], now[256];

        conf_format_value(k, ctx->cfg, old, sizeof old);
        conf_format_value(k, &fresh, now, sizeof now);
        if (streq(old, now))
            continue;
        if (!key_reloadable(k->name)) {
            log_warning("'%s' changed in the configuration; it takes effect at the next restart.",
                        k->name);
            continue;
        }
        log_notice("Reloaded '%s' = %s.", k->name, now);
        changed++;
    }
    ctx->cfg->log_level = fresh.log_level;
    ctx->cfg->max_connections_per_uid = fresh.max_connections_per_uid;
    log_set_max_level(authd_log_level_to_syslog(ctx->cfg->log_level));
    log_notice("Configuration reloaded: %u key%s changed.", changed, changed == 1 ? "" : "s");
done:
    authd_config_done(&fresh);
    (void)sd_notify(false, r < 0 ? "READY=1\nSTATUS=Reload failed, previous configuration kept"
                                 : "READY=1\nSTATUS=Serving");
    return 0;
}

static int make_state_dir(const char *path)
{
    struct stat st;

    if (mkdir(path, 0700) == 0) {
        log_info("Created the state directory '%s'.", path);
        return 0;
    }
    if (errno != EEXIST)
        return log_error_errno(-errno, "Failed to create the state directory '%s': %m", path);
    if (stat(path, &st) < 0)
        return log_error_errno(-errno, "Failed to stat '%s': %m", path);
    if (!S_ISDIR(st.st_mode))
        return log_error_errno(-ENOTDIR, "State directory '%s' is not a directory.", path);
    if (st.st_mode & 0077)
        log_notice("State directory '%s' is accessible to group or others (mode %04o).", path,
                   (unsigned)(st.st_mode & 07777));
    return 0;
}

static int run(int argc, char **argv)
{
    struct authd_config cfg = {};
    struct reload_ctx reload = {.argc = argc, .argv = argv, .cfg = &cfg};
    enum authd_config_action action = AUTHD_CONFIG_RUN;
    _cleanup_(store_freep) struct store *store = NULL;
    _cleanup_(cred_manager_freep) struct cred_manager *cred = NULL;
    _cleanup_(authd_freep) struct authd *a = NULL;
    _cleanup_free_ char *db_path = NULL;
    struct store_error serr = {};
    struct cred_endpoints ep;
    sd_event *e = NULL;
    sigset_t mask;
    int r;

    r = authd_config_load(argc, argv, &cfg, &action);
    if (r < 0 || action == AUTHD_CONFIG_EXIT_OK) {
        authd_config_done(&cfg);
        return r < 0 ? r : 0;
    }
    if (action == AUTHD_CONFIG_DUMP)
        conf_dump(&authd_config_table, &cfg, stdout);
    if (action == AUTHD_CONFIG_CHECK)
        printf("Configuration OK.\n");
    if (action != AUTHD_CONFIG_RUN) {
        authd_config_done(&cfg);
        return 0;
    }

    log_set_max_level(authd_log_level_to_syslog(cfg.log_level));
    ipc_json_wipe_on_free();
    (void)prctl(PR_SET_DUMPABLE, 0);
    signal(SIGPIPE, SIG_IGN);
    umask(0077);

    r = make_state_dir(cfg.state_dir);
    if (r < 0)
        goto finish;
    db_path = authd_config_database_path(&cfg);
    if (!db_path) {
        r = log_oom();
        goto finish;
    }
    r = store_open_full(db_path, &store, &serr);
    if (r < 0) {
        log_error_errno(r, "Failed to open the database '%s': %s", db_path,
                        serr.text[0] ? serr.text : strerror(-r));
        goto finish;
    }

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
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    r = sd_event_add_signal(e, NULL, SIGTERM, on_stop_signal, NULL);
    if (r >= 0)
        r = sd_event_add_signal(e, NULL, SIGINT, on_stop_signal, NULL);
    if (r >= 0)
        r = sd_event_add_signal(e, NULL, SIGHUP, on_reload_signal, &reload);
    if (r < 0) {
        log_error_errno(r, "Failed to watch signals: %m");
        goto finish;
    }
    /* WatchdogSec= in the unit: the loop itself sends WATCHDOG=1, so a stuck loop is noticed. */
    r = sd_event_set_watchdog(e, true);
    if (r < 0)
        log_warning_errno(r, "Failed to enable the systemd watchdog: %m");

    ep = (struct cred_endpoints){
        .auth_url = empty_to_null(cfg.google_auth_url),
        .token_url = empty_to_null(cfg.google_token_url),
        .revoke_url = empty_to_null(cfg.google_revoke_url),
        .metadata_url = empty_to_null(cfg.metadata_url),
    };
    r = cred_manager_new(e, store, &ep, &cred);
    if (r < 0) {
        log_error_errno(r, "Failed to set up the credential manager: %m");
        goto finish;
    }
    r = authd_new(e, &cfg, store, cred, db_path, &a);
    if (r < 0) {
        log_error_errno(r, "Failed to set up the server: %m");
        goto finish;
    }
    r = authd_start(a);
    if (r < 0)
        goto finish;
    r = cred_manager_start(cred);
    if (r < 0) {
        log_error_errno(r, "Failed to start the credential manager: %m");
        goto finish;
    }

    log_notice("dualroute-authd %s ready (database '%s', %s).", DUALROUTE_VERSION, db_path,
               a->socket_owned ? a->socket_path : "socket from systemd");
    (void)sd_notify(false, "READY=1\nSTATUS=Serving");
    r = sd_event_loop(e);
    if (r < 0)
        log_error_errno(r, "Event loop failed: %m");

finish:
    a = authd_free(a);
    cred = cred_manager_free(cred);
    store = store_free(store);
    e = sd_event_unref(e);
    curl_global_cleanup();
    authd_config_done(&cfg);
    return r;
}

int main(int argc, char **argv)
{
    return run(argc, argv) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
