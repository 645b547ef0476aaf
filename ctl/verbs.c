/* verbs.c: dualroutectl's verbs over authd's management ops: status, check, account, logout and
 * map and route (login is in login.c, chat's transfer in http.c).
 *
 * Each verb parses its own options with getopt_long(), builds the op's fields as docs/ipc.md
 * defines them, makes one request and prints the reply: a table or a sentence for people, the
 * reply without its envelope with --json. Secrets only ever come from files or stdin. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "buf.h"
#include "client.h"
#include "ctl.h"
#include "http.h"
#include "macro.h"
#include "secret.h"
#include "table.h"
#include "util.h"

#define API_KEY_MAX 4096
#define CREDENTIAL_FILE_MAX ((size_t)48 * 1024)
#define MAPPINGS_FILE_MAX ((size_t)1024 * 1024)

static const struct option help_only[] = {
    {"help", no_argument, NULL, 'h'},
    {},
};

/* Parses a verb that takes only --help and exactly nargs positional arguments. Returns -1 to go
 * on, or an exit code (0 after printing the help). */
static int parse_simple(int argc, char **argv, const char *verb, const char *help, int nargs)
{
    int c;

    ctl_getopt_reset();
    while ((c = ctl_getopt(argc, argv, ":h", help_only)) >= 0) {
        if (c == 'h') {
            fputs(help, stdout);
            return 0;
        }
        return ctl_bad_option(verb, c, argv);
    }
    if (argc - optind != nargs)
        return ctl_fail(CTL_EXIT_USAGE, "'%s' takes %d argument%s; see 'dualroutectl %s --help'",
                        verb, nargs, nargs == 1 ? "" : "s", verb);
    return -1;
}

/* ---- status ---- */

static const char status_help[] =
    "Usage: dualroutectl status\n"
    "\n"
    "Shows whether dualroute-authd and dualroute-routerd are reachable, then every account:\n"
    "name, provider, auth, state, when its access token expires, the fingerprint of its\n"
    "credential and its last error. Never a secret.\n"
    "Exit: 0, 3 authd unreachable, 4 routerd unreachable, 5 permission denied.\n";

int verb_status(int argc, char **argv)
{
    json_auto_t *reply = NULL;
    char err[256] = "";
    int r, hr;

    r = parse_simple(argc, argv, "status", status_help, 0);
    if (r >= 0)
        return r;
    r = ctl_call_once("status", NULL, &reply);
    if (r)
        return r;
    hr = http_health(arg_router, err, sizeof err);
    if (arg_json) {
        json_auto_t *out = json_deep_copy(reply);

        if (!out ||
            json_object_set_new(out, "routerd",
                                json_pack("{s:s, s:b, s:s?}", "url", arg_router, "reachable",
                                          hr == 0, "error", hr < 0 ? err : NULL)) < 0)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        r = ctl_print_json(out);
    } else {
        printf("authd:    ok, version %s at %s (generation %" JSON_INTEGER_FORMAT ")\n",
               json_string_value(json_object_get(reply, "authd_version")) ?: "?", arg_socket,
               json_integer_value(json_object_get(reply, "generation")));
        if (hr == 0)
            printf("routerd:  ok at %s\n", arg_router);
        else
            printf("routerd:  FAIL at %s: %s\n", arg_router, err);
        printf("\n");
        r = ctl_print_accounts(json_object_get(reply, "accounts"));
    }
    if (r)
        return r;
    if (hr < 0)
        return ctl_fail(CTL_EXIT_ROUTERD, "routerd is not reachable at %s: %s", arg_router, err);
    return 0;
}

/* ---- check ---- */

static const char check_help[] =
    "Usage: dualroutectl check\n"
    "\n"
    "Checks that dualroute-authd answers, that every account is usable (state ok) and that\n"
    "dualroute-routerd answers GET /health, printing one line each with ok or FAIL.\n"
    "Exit: 0 when everything passed; else the code of the first check that failed:\n"
    "3 authd, 5 permission denied, 1 an account, 4 routerd.\n";

static int check_line(json_t *checks, bool ok, const char *name, const char *detail)
{
    if (arg_json)
        return json_array_append_new(
            checks, json_pack("{s:s, s:b, s:s?}", "check", name, "ok", ok, "detail", detail));
    printf("%-5s %s%s%s\n", ok ? "ok" : "FAIL", name, detail ? ": " : "", detail ?: "");
    return 0;
}

int verb_check(int argc, char **argv)
{
    _cleanup_(ctl_client_freep) struct ctl_client *c = NULL;
    json_auto_t *checks = json_array();
    json_auto_t *reply = NULL;
    _cleanup_free_ char *name = NULL;
    struct ctl_error e = {};
    char err[256] = "";
    int r, code = 0;

    r = parse_simple(argc, argv, "check", check_help, 0);
    if (r >= 0)
        return r;
    if (!checks)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");

    if (asprintf(&name, "authd at %s", arg_socket) < 0)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    r = ctl_client_connect(arg_socket, &c);
    if (r < 0) {
        code = r == -EACCES || r == -EPERM ? CTL_EXIT_FORBIDDEN : CTL_EXIT_AUTHD;
        check_line(checks, false, name, strerror(-r));
    } else {
        r = ctl_client_call(c, "status", NULL, CTL_AUTHD_TIMEOUT_MS, &reply, &e);
        if (r < 0) {
            code = streq(e.code, "forbidden") ? CTL_EXIT_FORBIDDEN : CTL_EXIT_AUTHD;
            check_line(checks, false, name,
                       r == -EREMOTE || r == -ECONNABORTED ? e.message : strerror(-r));
        } else
            check_line(checks, true, name, NULL);
    }
    if (reply) {
        const json_t *a;
        size_t i;

        json_array_foreach (json_object_get(reply, "accounts"), i, a) {
            const char *state = json_string_value(json_object_get(a, "state")) ?: "?";
            const char *last = json_string_value(json_object_get(a, "last_error"));
            bool ok = streq(state, "ok");
            _cleanup_free_ char *n = NULL, *detail = NULL;

            if (asprintf(&n, "account '%s' (%s)",
                         json_string_value(json_object_get(a, "name")) ?: "?",
                         json_string_value(json_object_get(a, "provider")) ?: "?") < 0)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
            if (!ok && asprintf(&detail, "state %s%s%s", state, last ? ": " : "", last ?: "") < 0)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
            check_line(checks, ok, n, detail);
            if (!ok && code == 0)
                code = CTL_EXIT_FAILED;
        }
    }

    free(name);
    if (asprintf(&name, "routerd at %s", arg_router) < 0)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    r = http_health(arg_router, err, sizeof err);
    check_line(checks, r == 0, name, r < 0 ? err : NULL);
    if (r < 0 && code == 0)
        code = CTL_EXIT_ROUTERD;

    if (arg_json) {
        json_auto_t *out = json_pack("{s:b, s:O}", "ok", code == 0, "checks", checks);
        char *s = out ? json_dumps(out, JSON_INDENT(2)) : NULL;

        if (!s)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        puts(s);
        free(s);
    }
    return code;
}

/* ---- account ---- */

static const char account_help[] =
    "Usage: dualroutectl account list\n"
    "       dualroutectl account add NAME --provider anthropic --api-key-file FILE|-\n"
    "       dualroutectl account add NAME --provider vertex --project P --region R\n"
    "                    (--service-account-file FILE | --adc-file FILE | --metadata)\n"
    "       dualroutectl account remove NAME\n"
    "\n"
    "Manages the provider accounts authd holds credentials for. A secret is read from FILE, or\n"
    "from stdin when FILE is '-' (never from the command line); a file that group or others can\n"
    "read gets a warning. authd tries the credential once before storing it.\n"
    "For an interactive Google login use 'dualroutectl login vertex'.\n"
    "\n"
    "Options of 'add':\n"
    "  --provider P                  anthropic or vertex\n"
    "  --api-key-file FILE|-         anthropic: the API key\n"
    "  --project P, --region R       vertex: the Google Cloud project and region\n"
    "  --service-account-file FILE|- vertex: a service account key file (JSON)\n"
    "  --adc-file FILE|-             vertex: gcloud's application_default_credentials.json\n"
    "  --metadata                    vertex: the GCE metadata server's account\n"
    "Exit: 0, 1 refused by authd (exists, not_found, upstream, ...), 2 usage, 3 authd\n"
    "unreachable, 5 permission denied.\n";

static int account_list(int argc, char **argv)
{
    json_auto_t *reply = NULL;
    int r;

    r = parse_simple(argc, argv, "account", account_help, 0);
    if (r >= 0)
        return r;
    r = ctl_call_once("account.list", NULL, &reply);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(reply);
    return ctl_print_accounts(json_object_get(reply, "accounts"));
}

static int account_remove(int argc, char **argv)
{
    json_auto_t *reply = NULL;
    int r;

    r = parse_simple(argc, argv, "account", account_help, 1);
    if (r >= 0)
        return r;
    r = ctl_call_once("account.remove", json_pack("{s:s}", "name", argv[optind]), &reply);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(reply);
    ctl_info("Removed account '%s'.", argv[optind]);
    return 0;
}

static int account_add(int argc, char **argv)
{
    enum {
        ARG_PROVIDER = 0x100,
        ARG_API_KEY_FILE,
        ARG_PROJECT,
        ARG_REGION,
        ARG_SA_FILE,
        ARG_ADC_FILE,
        ARG_METADATA,
    };
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"provider", required_argument, NULL, ARG_PROVIDER},
        {"api-key-file", required_argument, NULL, ARG_API_KEY_FILE},
        {"project", required_argument, NULL, ARG_PROJECT},
        {"region", required_argument, NULL, ARG_REGION},
        {"service-account-file", required_argument, NULL, ARG_SA_FILE},
        {"adc-file", required_argument, NULL, ARG_ADC_FILE},
        {"metadata", no_argument, NULL, ARG_METADATA},
        {},
    };
    const char *provider = NULL, *key_file = NULL, *project = NULL, *region = NULL;
    const char *sa_file = NULL, *adc_file = NULL, *name;
    bool metadata = false;
    _cleanup_(secret_freep) struct secret *s = NULL;
    json_auto_t *fields = NULL;
    json_auto_t *reply = NULL;
    const json_t *acct;
    int c, r, sources;

    ctl_getopt_reset();
    while ((c = ctl_getopt(argc, argv, ":h", options)) >= 0)
        switch (c) {
        case 'h':
            fputs(account_help, stdout);
            return 0;
        case ARG_PROVIDER:
            provider = optarg;
            break;
        case ARG_API_KEY_FILE:
            key_file = optarg;
            break;
        case ARG_PROJECT:
            project = optarg;
            break;
        case ARG_REGION:
            region = optarg;
            break;
        case ARG_SA_FILE:
            sa_file = optarg;
            break;
        case ARG_ADC_FILE:
            adc_file = optarg;
            break;
        case ARG_METADATA:
            metadata = true;
            break;
        default:
            return ctl_bad_option("account", c, argv);
        }
    if (argc - optind != 1)
        return ctl_fail(CTL_EXIT_USAGE, "'account add' takes one NAME; see 'dualroutectl account "
                                        "--help'");
    name = argv[optind];
    if (!provider)
        return ctl_fail(CTL_EXIT_USAGE, "'account add' needs --provider anthropic or vertex");

    if (streq(provider, "anthropic")) {
        if (!key_file)
            return ctl_fail(CTL_EXIT_USAGE, "an anthropic account needs --api-key-file FILE "
                                            "(or '-' for stdin)");
        if (project || region || sa_file || adc_file || metadata)
            return ctl_fail(CTL_EXIT_USAGE, "--project, --region, --service-account-file, "
                                            "--adc-file and --metadata are for vertex accounts");
        r = ctl_read_secret(key_file, API_KEY_MAX, "API key", &s);
        if (r)
            return r;
        fields = json_pack("{s:s, s:s, s:s, s:s%}", "name", name, "provider", provider, "auth",
                           "api_key", "api_key", s->data, s->len);
    } else if (streq(provider, "vertex")) {
        const char *auth, *file = sa_file ?: adc_file;

        sources = !!sa_file + !!adc_file + !!metadata;
        if (sources != 1)
            return ctl_fail(CTL_EXIT_USAGE, "a vertex account needs exactly one of "
                                            "--service-account-file, --adc-file and --metadata");
        if (!project || !region)
            return ctl_fail(CTL_EXIT_USAGE, "a vertex account needs --project and --region");
        if (key_file)
            return ctl_fail(CTL_EXIT_USAGE, "--api-key-file is for anthropic accounts");
        auth = sa_file ? "service_account" : adc_file ? "gcloud_adc" : "metadata";
        fields = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name, "provider", provider, "auth",
                           auth, "project", project, "region", region);
        if (fields && file) {
            r = ctl_read_secret(file, CREDENTIAL_FILE_MAX, "credential file", &s);
            if (r)
                return r;
            if (json_object_set_new(fields, sa_file ? "service_account_json" : "adc_json",
                                    json_stringn(s->data, s->len)) < 0)
                return ctl_fail(CTL_EXIT_FAILED, "'%s' is not UTF-8 text", file);
        }
    } else
        return ctl_fail(CTL_EXIT_USAGE, "unknown provider '%s': use anthropic or vertex", provider);
    if (!fields)
        return ctl_fail(CTL_EXIT_FAILED, "the secret is not UTF-8 text, or out of memory");

    r = ctl_call_once("account.add", TAKE_PTR(fields), &reply);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(reply);
    acct = json_object_get(reply, "account");
    ctl_info("Added account '%s' (%s, %s, fingerprint %s).", name, provider,
             json_string_value(json_object_get(acct, "auth")) ?: "?",
             json_string_value(json_object_get(acct, "fingerprint")) ?: "-");
    return 0;
}

int verb_account(int argc, char **argv)
{
    if (argc < 2)
        return ctl_fail(CTL_EXIT_USAGE, "'account' needs list, add or remove; see 'dualroutectl "
                                        "account --help'");
    if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
        fputs(account_help, stdout);
        return 0;
    }
    if (streq(argv[1], "list"))
        return account_list(argc - 1, argv + 1);
    if (streq(argv[1], "add"))
        return account_add(argc - 1, argv + 1);
    if (streq(argv[1], "remove"))
        return account_remove(argc - 1, argv + 1);
    return ctl_fail(CTL_EXIT_USAGE,
                    "unknown 'account' verb '%s'; see 'dualroutectl account --help'", argv[1]);
}

/* ---- logout ---- */

static const char logout_help[] =
    "Usage: dualroutectl logout ACCOUNT\n"
    "\n"
    "Revokes the account's refresh token at the provider (best effort), deletes its tokens and\n"
    "leaves it needing a new 'dualroutectl login'. Says whether the provider confirmed.\n"
    "Exit: 0, 1 not_found, 3 authd unreachable, 5 permission denied.\n";

int verb_logout(int argc, char **argv)
{
    json_auto_t *reply = NULL;
    const char *name;
    int r;

    r = parse_simple(argc, argv, "logout", logout_help, 1);
    if (r >= 0)
        return r;
    name = argv[optind];
    r = ctl_call_once("logout", json_pack("{s:s}", "account", name), &reply);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(reply);
    if (json_is_true(json_object_get(reply, "revoked")))
        ctl_info("Logged out of '%s': the provider confirmed the revocation.", name);
    else
        ctl_info("Logged out of '%s': tokens deleted; the provider did not confirm a revocation.",
                 name);
    return 0;
}

/* ---- map ---- */

static const char map_help[] =
    "Usage: dualroutectl map list\n"
    "       dualroutectl map set ALIAS MODEL\n"
    "       dualroutectl map set --default MODEL\n"
    "       dualroutectl map unset ALIAS\n"
    "       dualroutectl map unset --default\n"
    "       dualroutectl map import FILE [--replace]\n"
    "\n"
    "Manages model aliases (a requested model name to the model id routerd sends) and the\n"
    "default model for OpenAI names no alias covers. 'import' reads a .router-mappings.json\n"
    "file ({\"alias\": \"model\", ...}); --replace drops aliases the file does not hold.\n"
    "Exit: 0, 1 refused by authd (not_found, bad_request), 2 usage, 3 authd unreachable,\n"
    "5 permission denied.\n";

/* The routes array of map.list / route.list as a table ("implicit" for authd's one-account
 * default). Returns 0 or an exit code. */
static int print_routes(const json_t *list)
{
    static const char *const rh[] = {"MODEL", "ACCOUNT", "NOTE"};
    _cleanup_(table_freep) struct table *routes = table_new(3, rh);
    const json_t *v;
    size_t i;

    if (!routes)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    json_array_foreach (list, i, v) {
        const char *cells[] = {
            json_string_value(json_object_get(v, "model")),
            json_string_value(json_object_get(v, "account")),
            json_is_true(json_object_get(v, "implicit")) ? "implicit: the only account" : NULL};

        if (table_add_row(routes, cells) < 0)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    }
    if (table_rows(routes) == 0) {
        printf("No routes: no account serves any model yet.\n");
        return 0;
    }
    return table_print(routes, stdout) < 0 ? CTL_EXIT_FAILED : 0;
}

static int map_list(int argc, char **argv)
{
    static const char *const ah[] = {"ALIAS", "MODEL"};
    _cleanup_(table_freep) struct table *aliases = table_new(2, ah);
    json_auto_t *reply = NULL;
    const json_t *v;
    const char *k;
    int r;

    r = parse_simple(argc, argv, "map", map_help, 0);
    if (r >= 0)
        return r;
    if (!aliases)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    r = ctl_call_once("map.list", NULL, &reply);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(reply);
    printf("Default model: %s\n",
           json_string_value(json_object_get(reply, "default_model")) ?: "(none)");
    json_object_foreach ((json_t *)json_object_get(reply, "aliases"), k, v) {
        const char *cells[] = {k, json_string_value(v)};

        if (table_add_row(aliases, cells) < 0)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    }
    printf("\n");
    if (table_rows(aliases) == 0)
        printf("No aliases.\n");
    else if (table_print(aliases, stdout) < 0)
        return CTL_EXIT_FAILED;
    printf("\n");
    return print_routes(json_object_get(reply, "routes"));
}

static const struct option default_options[] = {
    {"help", no_argument, NULL, 'h'},
    {"default", no_argument, NULL, 'd'},
    {},
};

static int map_set_unset(int argc, char **argv, bool set)
{
    json_auto_t *fields = NULL;
    json_auto_t *reply = NULL;
    bool dflt = false;
    int c, r, want;

    ctl_getopt_reset();
    while ((c = ctl_getopt(argc, argv, ":h", default_options)) >= 0)
        switch (c) {
        case 'h':
            fputs(map_help, stdout);
            return 0;
        case 'd':
            dflt = true;
            break;
        default:
            return ctl_bad_option("map", c, argv);
        }
    want = set ? (dflt ? 1 : 2) : (dflt ? 0 : 1);
    if (argc - optind != want)
        return ctl_fail(CTL_EXIT_USAGE, "usage: dualroutectl map %s; see 'dualroutectl map --help'",
                        set ? (dflt ? "set --default MODEL" : "set ALIAS MODEL")
                            : (dflt ? "unset --default" : "unset ALIAS"));
    if (set && dflt)
        fields = json_pack("{s:s}", "default_model", argv[optind]);
    else if (set)
        fields = json_pack("{s:s, s:s}", "name", argv[optind], "model", argv[optind + 1]);
    else if (dflt)
        fields = json_pack("{s:n}", "default_model");
    else
        fields = json_pack("{s:s}", "name", argv[optind]);
    if (!fields)
        return ctl_fail(CTL_EXIT_USAGE, "the names must be UTF-8 text");
    r = ctl_call_once(set || dflt ? "map.set" : "map.unset", TAKE_PTR(fields), &reply);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(reply);
    if (set && dflt)
        ctl_info("Default model is now '%s'.", argv[optind]);
    else if (set)
        ctl_info("'%s' now maps to '%s'.", argv[optind], argv[optind + 1]);
    else if (dflt)
        ctl_info("Default model removed.");
    else
        ctl_info("Removed alias '%s'.", argv[optind]);
    return 0;
}

static int map_import(int argc, char **argv)
{
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"replace", no_argument, NULL, 'r'},
        {},
    };
    json_auto_t *mappings = NULL;
    json_auto_t *reply = NULL;
    json_error_t jerr;
    bool replace = false;
    int c, r;

    ctl_getopt_reset();
    while ((c = ctl_getopt(argc, argv, ":h", options)) >= 0)
        switch (c) {
        case 'h':
            fputs(map_help, stdout);
            return 0;
        case 'r':
            replace = true;
            break;
        default:
            return ctl_bad_option("map", c, argv);
        }
    if (argc - optind != 1)
        return ctl_fail(CTL_EXIT_USAGE, "usage: dualroutectl map import FILE [--replace]");
    mappings = json_load_file(argv[optind], JSON_REJECT_DUPLICATES, &jerr);
    if (!mappings)
        return ctl_fail(CTL_EXIT_FAILED, "%s:%d:%d: %s", argv[optind], jerr.line, jerr.column,
                        jerr.text);
    if (!json_is_object(mappings))
        return ctl_fail(CTL_EXIT_FAILED, "%s: not a JSON object of alias to model", argv[optind]);
    r = ctl_call_once("map.import",
                      json_pack("{s:O, s:b}", "mappings", mappings, "replace", replace), &reply);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(reply);
    ctl_info("Imported '%s': %" JSON_INTEGER_FORMAT " added, %" JSON_INTEGER_FORMAT
             " changed, %" JSON_INTEGER_FORMAT " removed.",
             argv[optind], json_integer_value(json_object_get(reply, "added")),
             json_integer_value(json_object_get(reply, "changed")),
             json_integer_value(json_object_get(reply, "removed")));
    return 0;
}

int verb_map(int argc, char **argv)
{
    if (argc < 2)
        return ctl_fail(CTL_EXIT_USAGE, "'map' needs list, set, unset or import; see "
                                        "'dualroutectl map --help'");
    if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
        fputs(map_help, stdout);
        return 0;
    }
    if (streq(argv[1], "list"))
        return map_list(argc - 1, argv + 1);
    if (streq(argv[1], "set"))
        return map_set_unset(argc - 1, argv + 1, true);
    if (streq(argv[1], "unset"))
        return map_set_unset(argc - 1, argv + 1, false);
    if (streq(argv[1], "import"))
        return map_import(argc - 1, argv + 1);
    return ctl_fail(CTL_EXIT_USAGE, "unknown 'map' verb '%s'; see 'dualroutectl map --help'",
                    argv[1]);
}

/* ---- route ---- */

static const char route_help[] =
    "Usage: dualroutectl route list\n"
    "       dualroutectl route set MODEL ACCOUNT\n"
    "       dualroutectl route unset MODEL\n"
    "\n"
    "Says which account serves which models. MODEL is a model id (claude-opus-4-7), a prefix\n"
    "ending in '*' (claude-haiku-*), or '*' for every other model; for a request routerd takes\n"
    "the exact route, else the longest prefix, else '*'. With no route at all and exactly one\n"
    "account, that account serves everything. Routes apply to aliases after mapping. Removing\n"
    "an account removes its routes.\n"
    "Exit: 0, 1 refused by authd (not_found: no such account or route), 2 usage, 3 authd\n"
    "unreachable, 5 permission denied.\n";

int verb_route(int argc, char **argv)
{
    json_auto_t *reply = NULL;
    const char *sub;
    bool set;
    int r;

    if (argc < 2)
        return ctl_fail(CTL_EXIT_USAGE,
                        "'route' needs list, set or unset; see 'dualroutectl route --help'");
    sub = argv[1];
    if (streq(sub, "--help") || streq(sub, "-h") || streq(sub, "help")) {
        fputs(route_help, stdout);
        return 0;
    }
    if (streq(sub, "list")) {
        r = parse_simple(argc - 1, argv + 1, "route", route_help, 0);
        if (r >= 0)
            return r;
        r = ctl_call_once("route.list", NULL, &reply);
        if (r)
            return r;
        return arg_json ? ctl_print_json(reply) : print_routes(json_object_get(reply, "routes"));
    }
    if (!streq(sub, "set") && !streq(sub, "unset"))
        return ctl_fail(CTL_EXIT_USAGE,
                        "unknown 'route' verb '%s'; see 'dualroutectl route --help'", sub);
    set = streq(sub, "set");
    r = parse_simple(argc - 1, argv + 1, "route", route_help, set ? 2 : 1);
    if (r >= 0)
        return r;
    r = ctl_call_once(
        set ? "route.set" : "route.unset",
        set ? json_pack("{s:s, s:s}", "model", argv[optind + 1], "account", argv[optind + 2])
            : json_pack("{s:s}", "model", argv[optind + 1]),
        &reply);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(reply);
    if (set)
        ctl_info("'%s' is now served by account '%s'.", argv[optind + 1], argv[optind + 2]);
    else
        ctl_info("Removed the route for '%s'.", argv[optind + 1]);
    return 0;
}

/* ---- chat ---- */

static const char chat_help[] =
    "Usage: dualroutectl chat MESSAGE [--model M] [--stream]\n"
    "\n"
    "Sends MESSAGE as one POST /v1/messages through dualroute-routerd (--router) and prints the\n"
    "reply's text; with --stream as it arrives. The key for routerd comes from\n"
    "$DUALROUTE_API_KEY (none when unset). --model defaults to 'sonnet'.\n"
    "Exit: 0, 1 routerd answered an error (its message is printed), 2 usage, 4 routerd\n"
    "unreachable.\n";

int verb_chat(int argc, char **argv)
{
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"model", required_argument, NULL, 'm'},
        {"stream", no_argument, NULL, 's'},
        {},
    };
    _cleanup_(secret_freep) struct secret *key = NULL;
    const char *model = NULL;
    bool stream = false;
    int c, r;

    ctl_getopt_reset();
    while ((c = ctl_getopt(argc, argv, ":hm:", options)) >= 0)
        switch (c) {
        case 'h':
            fputs(chat_help, stdout);
            return 0;
        case 'm':
            model = optarg;
            break;
        case 's':
            stream = true;
            break;
        default:
            return ctl_bad_option("chat", c, argv);
        }
    if (argc - optind != 1)
        return ctl_fail(CTL_EXIT_USAGE, "'chat' takes one MESSAGE (quote it); see 'dualroutectl "
                                        "chat --help'");
    r = secret_from_env("DUALROUTE_API_KEY", &key);
    if (r < 0 && r != -ENOENT)
        return ctl_fail(CTL_EXIT_FAILED, "cannot read DUALROUTE_API_KEY: %s", strerror(-r));
    return http_chat(arg_router, model, argv[optind], stream, key);
}
