/* login.c: `dualroutectl login vertex`, the browser half of authd's PKCE login.
 *
 * authd holds the PKCE verifier and the state (docs/ipc.md, login.start/login.finish); this side
 * opens a loopback listener on 127.0.0.1 with a port the kernel picks, sends login.start with
 * http://127.0.0.1:PORT/ as redirect_uri, prints the authorize URL and waits for the browser's
 * redirect. libmicrohttpd serves the listener on its own thread; the first request that carries
 * a code or an error is copied (as a secret: it holds the code) and a byte on a pipe wakes the
 * main thread, which polls that pipe and, with --no-browser, stdin, where the user pastes the URL
 * their browser ended on. Either way the URL is parsed with oauth_redirect_parse() and the code
 * and state go to authd in login.finish. The listener stays open with --no-browser too, so a
 * browser on this host still works. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "client.h"
#include "ctl.h"
#include "macro.h"
#include "oauth.h"
#include "secret.h"
#include "util.h"

#define LOGIN_TIMEOUT_S 600
#define CLIENT_SECRET_MAX 1024
#define PASTED_URL_MAX 8192

static const char page_ok[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>dualroute login</title></head>"
    "<body><h1>dualroute received the login</h1><p>You can close this tab and return to the "
    "terminal.</p></body></html>\n";
static const char page_error[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>dualroute login</title></head>"
    "<body><h1>The login was refused</h1><p>See the terminal for the reason.</p></body></html>\n";
static const char page_bad[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>dualroute login</title></head>"
    "<body><p>This address expects the redirect of a Google login.</p></body></html>\n";

struct listener {
    struct MHD_Daemon *daemon;
    uint16_t port;
    int wake[2];
    pthread_mutex_t lock;
    struct secret *target; /* the first redirect's request target; guarded by lock */
    bool signalled;        /* the main thread was woken for it; guarded by lock */
};

/* Every request's target, as MHD saw it with its query, becomes the request's context. */
static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *con)
{
    return secret_new(uri, strlen(uri));
}

/* The main thread is woken only once the browser has its page: woken earlier, it could stop the
 * listener (a refused login ends the command at once) before the page was sent. */
static void completed_cb(void *cls, struct MHD_Connection *con, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct listener *l = cls;

    *req_cls = secret_free(*req_cls);
    pthread_mutex_lock(&l->lock);
    if (l->target && !l->signalled) {
        l->signalled = true;
        (void)!write(l->wake[1], "x", 1);
    }
    pthread_mutex_unlock(&l->lock);
}

static enum MHD_Result reply(struct MHD_Connection *con, unsigned status, const char *page)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(strlen(page), (void *)page, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    ret = MHD_queue_response(con, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *con, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    struct listener *l = cls;
    struct secret *target = *req_cls;
    struct oauth_redirect rd = {};
    bool error;

    if (!streq(method, "GET") && !streq(method, "HEAD"))
        return reply(con, MHD_HTTP_METHOD_NOT_ALLOWED, page_bad);
    if (!streq(url, "/") || !target || oauth_redirect_parse(target->data, &rd) < 0)
        return reply(con, MHD_HTTP_NOT_FOUND, page_bad);
    error = rd.error != NULL;
    oauth_redirect_done(&rd);

    pthread_mutex_lock(&l->lock);
    if (!l->target)
        l->target = secret_new(target->data, target->len);
    pthread_mutex_unlock(&l->lock);
    return reply(con, error ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_OK, error ? page_error : page_ok);
}

static void listener_stop(struct listener *l)
{
    if (l->daemon)
        MHD_stop_daemon(l->daemon);
    l->daemon = NULL;
    safe_close(l->wake[0]);
    safe_close(l->wake[1]);
    l->wake[0] = l->wake[1] = -1;
    l->target = secret_free(l->target);
}

static int listener_start(struct listener *l)
{
    struct sockaddr_in sa = {
        .sin_family = AF_INET,
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        .sin_port = 0,
    };
    const union MHD_DaemonInfo *info;

    if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    l->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, access_cb, l,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_URI_LOG_CALLBACK, uri_cb, l,
        MHD_OPTION_NOTIFY_COMPLETED, completed_cb, l, MHD_OPTION_CONNECTION_LIMIT, 16u,
        MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!l->daemon)
        return -EADDRNOTAVAIL;
    info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0)
        return -EADDRNOTAVAIL;
    l->port = info->port;
    return 0;
}

/* Waits for the redirect from the listener, or a pasted URL on stdin when paste. Returns 0 with
 * *ret (the URL or request target, a secret), or an exit code having printed the error. */
static int wait_redirect(struct listener *l, bool paste, int64_t deadline, struct secret **ret)
{
    for (;;) {
        struct pollfd p[2] = {
            {.fd = l->wake[0], .events = POLLIN},
            {.fd = STDIN_FILENO, .events = POLLIN},
        };
        int64_t left = deadline - (int64_t)time(NULL);
        int r;

        if (left <= 0)
            return ctl_fail(CTL_EXIT_FAILED,
                            "no redirect arrived within %d minutes; run the "
                            "login again",
                            LOGIN_TIMEOUT_S / 60);
        r = poll(p, paste ? 2 : 1, (int)MIN(left, 60) * 1000);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ctl_fail(CTL_EXIT_FAILED, "poll: %m");
        if (p[0].revents) {
            pthread_mutex_lock(&l->lock);
            *ret = TAKE_PTR(l->target);
            pthread_mutex_unlock(&l->lock);
            if (*ret)
                return 0;
        }
        if (paste && p[1].revents) {
            char *line = NULL;
            size_t cap = 0;
            ssize_t n = getline(&line, &cap, stdin);
            struct secret *s = NULL;

            if (n > 0 && (size_t)n <= PASTED_URL_MAX) {
                char *b = line, *e = line + n;

                while (b < e && (*b == ' ' || *b == '\t'))
                    b++;
                while (e > b && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                    e--;
                if (e > b)
                    s = secret_new(b, (size_t)(e - b));
            }
            if (line) {
                explicit_bzero(line, cap);
                free(line);
            }
            if (s) {
                *ret = s;
                return 0;
            }
            if (n < 0)
                return ctl_fail(CTL_EXIT_FAILED, "stdin closed before a URL was pasted");
            if ((size_t)n > PASTED_URL_MAX)
                return ctl_fail(CTL_EXIT_FAILED, "the pasted line is longer than %d bytes",
                                PASTED_URL_MAX);
        }
    }
}

static const char login_help[] =
    "Usage: dualroutectl login vertex --account NAME --project P --region R --client-id ID\n"
    "                          --client-secret-file FILE|- [--no-browser]\n"
    "\n"
    "Logs a Vertex AI account in with Google (OAuth with PKCE), using an OAuth client of type\n"
    "\"Desktop app\" from your Google Cloud project. dualroutectl listens on\n"
    "http://127.0.0.1:PORT/ (a port the kernel picks), prints the URL to open, waits up to 10\n"
    "minutes for the browser to come back, and hands the code to dualroute-authd.\n"
    "\n"
    "  --account NAME              the account to create or log in again\n"
    "  --project P, --region R     the Google Cloud project and Vertex region\n"
    "  --client-id ID              the OAuth client's id\n"
    "  --client-secret-file FILE|- its secret, from a file or stdin ('-')\n"
    "  --no-browser                for a host without a browser: open the URL anywhere; the\n"
    "                              browser then fails to load http://127.0.0.1:PORT/...; copy\n"
    "                              that whole URL from its address bar and paste it here\n"
    "Exit: 0, 1 the login failed (refused, timed out, state mismatch), 2 usage, 3 authd\n"
    "unreachable, 5 permission denied.\n";

int verb_login(int argc, char **argv)
{
    enum {
        ARG_ACCOUNT = 0x100,
        ARG_PROJECT,
        ARG_REGION,
        ARG_CLIENT_ID,
        ARG_CLIENT_SECRET_FILE,
        ARG_NO_BROWSER,
    };
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"account", required_argument, NULL, ARG_ACCOUNT},
        {"project", required_argument, NULL, ARG_PROJECT},
        {"region", required_argument, NULL, ARG_REGION},
        {"client-id", required_argument, NULL, ARG_CLIENT_ID},
        {"client-secret-file", required_argument, NULL, ARG_CLIENT_SECRET_FILE},
        {"no-browser", no_argument, NULL, ARG_NO_BROWSER},
        {},
    };
    const char *account = NULL, *project = NULL, *region = NULL, *client_id = NULL;
    const char *secret_file = NULL;
    bool no_browser = false;
    _cleanup_(ctl_client_freep) struct ctl_client *c = NULL;
    _cleanup_(secret_freep) struct secret *client_secret = NULL;
    _cleanup_(secret_freep) struct secret *redirect = NULL;
    _cleanup_free_ char *redirect_uri = NULL;
    struct listener l = {.wake = {-1, -1}, .lock = PTHREAD_MUTEX_INITIALIZER};
    struct oauth_redirect rd = {};
    json_auto_t *start = NULL;
    json_auto_t *finish = NULL;
    const char *login_id, *url;
    int64_t deadline;
    FILE *out;
    int ch, r;

    ctl_getopt_reset();
    while ((ch = ctl_getopt(argc, argv, ":h", options)) >= 0)
        switch (ch) {
        case 'h':
            fputs(login_help, stdout);
            return 0;
        case ARG_ACCOUNT:
            account = optarg;
            break;
        case ARG_PROJECT:
            project = optarg;
            break;
        case ARG_REGION:
            region = optarg;
            break;
        case ARG_CLIENT_ID:
            client_id = optarg;
            break;
        case ARG_CLIENT_SECRET_FILE:
            secret_file = optarg;
            break;
        case ARG_NO_BROWSER:
            no_browser = true;
            break;
        default:
            return ctl_bad_option("login", ch, argv);
        }
    if (argc - optind != 1)
        return ctl_fail(CTL_EXIT_USAGE, "'login' takes the provider: dualroutectl login vertex "
                                        "...; see 'dualroutectl login --help'");
    if (!streq(argv[optind], "vertex"))
        return ctl_fail(CTL_EXIT_USAGE, "login supports the provider 'vertex' only, not '%s'",
                        argv[optind]);
    if (!account || !project || !region || !client_id || !secret_file)
        return ctl_fail(CTL_EXIT_USAGE, "login vertex needs --account, --project, --region, "
                                        "--client-id and --client-secret-file");
    if (no_browser && streq(secret_file, "-") && !isatty(STDIN_FILENO))
        return ctl_fail(CTL_EXIT_USAGE, "with --no-browser stdin takes the pasted URL: give the "
                                        "client secret in a file");

    r = ctl_read_secret(secret_file, CLIENT_SECRET_MAX, "client secret", &client_secret);
    if (r)
        return r;
    r = ctl_connect(&c);
    if (r)
        return r;
    r = listener_start(&l);
    if (r < 0) {
        listener_stop(&l);
        return ctl_fail(CTL_EXIT_FAILED, "cannot listen on 127.0.0.1: %s", strerror(-r));
    }
    if (asprintf(&redirect_uri, "http://127.0.0.1:%u/", (unsigned)l.port) < 0) {
        listener_stop(&l);
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    }

    r = ctl_call(c, "login.start",
                 json_pack("{s:s, s:s, s:s, s:s%, s:s, s:s, s:s}", "account", account, "provider",
                           "vertex", "client_id", client_id, "client_secret", client_secret->data,
                           client_secret->len, "redirect_uri", redirect_uri, "project", project,
                           "region", region),
                 &start);
    if (r) {
        listener_stop(&l);
        return r;
    }
    login_id = json_string_value(json_object_get(start, "login_id"));
    url = json_string_value(json_object_get(start, "authorize_url"));
    if (!login_id || !url) {
        listener_stop(&l);
        return ctl_fail(CTL_EXIT_FAILED, "authd's login.start reply lacks login_id or "
                                         "authorize_url");
    }
    deadline = (int64_t)time(NULL) + LOGIN_TIMEOUT_S;
    if (json_is_integer(json_object_get(start, "expires_at")))
        deadline = MIN(deadline, json_integer_value(json_object_get(start, "expires_at")));

    /* With --json, stdout is for the reply: the instructions go to stderr. */
    out = arg_json ? stderr : stdout;
    fprintf(out, "Open this URL in a browser:\n\n    %s\n\n", url);
    if (no_browser)
        fprintf(out,
                "The browser will then fail to load %s?...: that is expected. Copy the whole\n"
                "URL from its address bar and paste it here, then press Enter:\n",
                redirect_uri);
    else
        fprintf(out, "Waiting for the browser to come back to %s (up to %d minutes)...\n",
                redirect_uri, LOGIN_TIMEOUT_S / 60);
    fflush(out);

    r = wait_redirect(&l, no_browser, deadline, &redirect);
    listener_stop(&l);
    if (r)
        return r;
    r = oauth_redirect_parse(redirect->data, &rd);
    if (r < 0)
        return ctl_fail(CTL_EXIT_FAILED, "that is not the redirect URL: it carries neither a code "
                                         "nor an error");
    if (rd.error) {
        r = ctl_fail(CTL_EXIT_FAILED, "Google refused the login: %s%s%s", rd.error,
                     rd.error_description ? ": " : "", rd.error_description ?: "");
        oauth_redirect_done(&rd);
        return r;
    }
    r = ctl_call(c, "login.finish",
                 json_pack("{s:s, s:s%, s:s?}", "login_id", login_id, "code", rd.code->data,
                           rd.code->len, "state", rd.state),
                 &finish);
    oauth_redirect_done(&rd);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(finish);
    ctl_info("Logged in: account '%s' (vertex, project %s, region %s).", account, project, region);
    return 0;
}
