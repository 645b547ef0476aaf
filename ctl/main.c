/* main.c: dualroutectl, the operator's command line over dualroute-authd's socket.
 *
 * Parses the global options (up to the verb), picks the socket and routerd's URL, and runs the
 * verb from the table; each verb parses its own options and returns the exit code. Secrets never
 * come from the command line; jansson wipes every block it frees, so a secret that went through
 * a JSON value does not linger, and the process is made non-dumpable. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <curl/curl.h>

#include "ctl.h"
#include "ipc.h"
#include "macro.h"

#define SOCKET_DEV "./state/authd.sock"
#define SOCKET_INSTALLED "/run/dualroute/authd.sock"
#define ROUTER_DEFAULT "http://127.0.0.1:3000"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} verbs[] = {
    {"status", verb_status}, {"check", verb_check},   {"account", verb_account},
    {"login", verb_login},   {"logout", verb_logout}, {"map", verb_map},
    {"route", verb_route},   {"chat", verb_chat},     {"member", verb_member},
    {"usage", verb_usage},
};

static void help(void)
{
    printf("Usage: dualroutectl [--socket PATH] [--router URL] [--json] [-q] VERB ...\n"
           "\n"
           "The operator's command line for dualroute: talks to dualroute-authd over its Unix\n"
           "socket, and to dualroute-routerd over HTTP.\n"
           "\n"
           "Verbs:\n"
           "  status                      authd, routerd and every account\n"
           "  check                       ok/FAIL per component; exit 0 only if all pass\n"
           "  account list|add|remove     manage provider accounts\n"
           "  login vertex ...            log a Vertex account in with Google (PKCE)\n"
           "  logout ACCOUNT              revoke and forget an account's tokens\n"
           "  map list|set|unset|import   model aliases and the default model\n"
           "  route list|set|unset        which account serves which models\n"
           "  member add|list|set|...     team members and their router keys\n"
           "  usage [--by ...]            requests, tokens and cost from the usage ledger\n"
           "  chat MESSAGE                one message through routerd\n"
           "Run 'dualroutectl VERB --help' for a verb's options.\n"
           "\n"
           "Options:\n"
           "  --socket PATH   authd's socket (default: $DUALROUTE_SOCKET, else %s\n"
           "                  if it exists, else %s)\n"
           "  --router URL    routerd (default: $DUALROUTE_ROUTER, else %s)\n"
           "  --json          print authd's reply as JSON, for scripts\n"
           "  -q, --quiet     print only tables, data and errors\n"
           "  -h, --help      this help\n"
           "  --version       the version\n"
           "\n"
           "Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 authd unreachable,\n"
           "4 routerd unreachable, 5 permission denied.\n",
           SOCKET_DEV, SOCKET_INSTALLED, ROUTER_DEFAULT);
}

static const char *default_socket(void)
{
    const char *e = getenv("DUALROUTE_SOCKET");

    if (e && *e)
        return e;
    if (access(SOCKET_DEV, F_OK) == 0)
        return SOCKET_DEV;
    return SOCKET_INSTALLED;
}

static int run(int argc, char **argv)
{
    enum { ARG_SOCKET = 0x100, ARG_ROUTER, ARG_JSON, ARG_VERSION };
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"socket", required_argument, NULL, ARG_SOCKET},
        {"router", required_argument, NULL, ARG_ROUTER},
        {"json", no_argument, NULL, ARG_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"version", no_argument, NULL, ARG_VERSION},
        {},
    };
    const char *e;
    int c;

    ctl_getopt_reset();
    /* '+': stop at the verb, whose options are its own. */
    while ((c = ctl_getopt(argc, argv, "+:hq", options)) >= 0)
        switch (c) {
        case 'h':
            help();
            return 0;
        case ARG_SOCKET:
            arg_socket = optarg;
            break;
        case ARG_ROUTER:
            arg_router = optarg;
            break;
        case ARG_JSON:
            arg_json = true;
            break;
        case 'q':
            arg_quiet = true;
            break;
        case ARG_VERSION:
            printf("dualroutectl %s\n", DUALROUTE_VERSION);
            return 0;
        default:
            return ctl_bad_option(NULL, c, argv);
        }
    if (!arg_socket)
        arg_socket = default_socket();
    e = getenv("DUALROUTE_ROUTER");
    if (!arg_router)
        arg_router = e && *e ? e : ROUTER_DEFAULT;
    if (optind >= argc)
        return ctl_fail(CTL_EXIT_USAGE, "no verb given; see 'dualroutectl --help'");
    if (streq(argv[optind], "help")) {
        help();
        return 0;
    }
    for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
        if (streq(argv[optind], verbs[i].name))
            return verbs[i].fn(argc - optind, argv + optind);
    return ctl_fail(CTL_EXIT_USAGE, "unknown verb '%s'; see 'dualroutectl --help'", argv[optind]);
}

int main(int argc, char **argv)
{
    int r;

    ipc_json_wipe_on_free();
    (void)prctl(PR_SET_DUMPABLE, 0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ctl_fail(CTL_EXIT_FAILED, "libcurl failed to initialise");
    r = run(argc, argv);
    fflush(stdout);
    curl_global_cleanup();
    return r;
}
