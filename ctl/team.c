/* team.c: dualroutectl's team verbs: member (add, list, set, rotate, remove) over authd's member.*
 * ops, and usage over usage.query (docs/ipc.md).
 *
 * A member key is printed once, by 'member add' and 'member rotate', and never again: authd keeps
 * only its SHA-256. Money is integer micro-USD on the wire and USD with 4 decimals on screen. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ctl.h"
#include "macro.h"
#include "table.h"
#include "util.h"

#define DAY_SEC 86400

/* micro-USD as "12.3456" (rounded to 1/10000 USD) in out (32 bytes). */
static void format_usd(int64_t micro, char out[static 32])
{
    int64_t t = (micro < 0 ? -micro : micro) + 50; /* to the nearest 1/10000 */

    snprintf(out, 32, "%s%" PRId64 ".%04" PRId64, micro < 0 ? "-" : "", t / 1000000,
             (t % 1000000) / 100);
}

/* "12.5", "0.05", "100" (USD) to micro-USD. Refuses more than 6 decimals, signs and junk. */
static int parse_usd(const char *s, int64_t *ret)
{
    int64_t whole = 0, frac = 0;
    int digits = 0;
    const char *p = s;

    if (!*p || *p == '.')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (whole > (INT64_MAX / 1000000 - 9) / 10)
            return -ERANGE;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (++digits > 6)
                return -EINVAL;
            frac = frac * 10 + (*p - '0');
        }
        if (digits == 0)
            return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    for (; digits < 6; digits++)
        frac *= 10;
    *ret = whole * 1000000 + frac;
    return 0;
}

/* --- member ----------------------------------------------------------------------------------- */

static const char member_help[] =
    "Usage: dualroutectl member add NAME [--budget USD] [--rpm N] [--tpm N] [--models P[,P...]]\n"
    "       dualroutectl member list\n"
    "       dualroutectl member set NAME [--budget USD|none] [--rpm N|none] [--tpm N|none]\n"
    "                    [--models P[,P...]|none]\n"
    "       dualroutectl member rotate NAME\n"
    "       dualroutectl member remove NAME\n"
    "\n"
    "Manages team members and their router keys. 'add' and 'rotate' print the member's new key\n"
    "(dr-...) once: authd keeps only its SHA-256, so it cannot be shown again. After 'rotate'\n"
    "the old key stops working. 'remove' keeps the member's rows in the usage ledger.\n"
    "\n"
    "Options of 'add' and 'set' ('none' removes the limit, with 'set'):\n"
    "  --budget USD        monthly budget in USD (UTC calendar month), e.g. 25 or 7.50\n"
    "  --rpm N             requests per minute\n"
    "  --tpm N             tokens per minute\n"
    "  --models P[,P...]   models the member may use: ids, prefixes ending in '*'\n"
    "                      (claude-sonnet-*), or '*'; default every model\n"
    "  --json              print {\"member\": ..., \"key\": ...} (also the global --json)\n"
    "Exit: 0, 1 refused by authd (exists, not_found, bad_request), 2 usage, 3 authd\n"
    "unreachable, 5 permission denied.\n";

/* Puts the field for one --budget/--rpm/--tpm value into fields: "none" is null (only when
 * allow_none). Returns 0 or an exit code. */
static int limit_field(json_t *fields, const char *key, const char *opt, const char *v, bool money,
                       bool allow_none)
{
    int64_t n;
    int r;

    if (streq(v, "none")) {
        if (!allow_none)
            return ctl_fail(CTL_EXIT_USAGE, "%s none: only 'member set' removes a limit", opt);
        return json_object_set_new(fields, key, json_null()) < 0 ? CTL_EXIT_FAILED : 0;
    }
    r = money ? parse_usd(v, &n) : parse_int64(v, &n);
    if (r < 0 || n < (money ? 0 : 1))
        return ctl_fail(CTL_EXIT_USAGE, "%s expects %s, not '%s'", opt,
                        money ? "an amount in USD (12.50)" : "an integer > 0", v);
    return json_object_set_new(fields, key, json_integer(n)) < 0 ? CTL_EXIT_FAILED : 0;
}

static int models_field(json_t *fields, const char *v, bool allow_none)
{
    json_t *arr;
    const char *p = v;

    if (streq(v, "none")) {
        if (!allow_none)
            return ctl_fail(CTL_EXIT_USAGE, "--models none: only 'member set' removes a limit");
        return json_object_set_new(fields, "models", json_null()) < 0 ? CTL_EXIT_FAILED : 0;
    }
    arr = json_array();
    if (!arr || json_object_set_new(fields, "models", arr) < 0)
        return CTL_EXIT_FAILED;
    while (*p) {
        size_t n = strcspn(p, ",");

        if (n == 0)
            return ctl_fail(CTL_EXIT_USAGE, "--models: empty pattern in '%s'", v);
        if (json_array_append_new(arr, json_stringn(p, n)) < 0)
            return CTL_EXIT_FAILED;
        p += n;
        if (*p == ',' && !*++p)
            return ctl_fail(CTL_EXIT_USAGE, "--models: empty pattern in '%s'", v);
    }
    return 0;
}

/* Prints the reply of member.add / member.rotate: the key once, with a warning, or as JSON. The
 * printed text is wiped from memory afterwards. */
static int print_new_key(const json_t *reply, bool json, bool rotated)
{
    const json_t *member = json_object_get(reply, "member");
    const char *name = json_string_value(json_object_get(member, "name"));
    const char *key = json_string_value(json_object_get(reply, "key"));

    if (!key || !name)
        return ctl_fail(CTL_EXIT_FAILED, "authd's reply holds no key");
    if (json) {
        json_auto_t *o = json_pack("{s:O, s:s}", "member", member, "key", key);
        char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;

        if (!s)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        puts(s);
        explicit_bzero(s, strlen(s));
        free(s);
        return 0;
    }
    if (rotated)
        printf("Member '%s' has a new key; the old one stops working now.\n", name);
    else
        printf("Member '%s' added.\n", name);
    printf("Key: %s\n", key);
    printf("This key will not be shown again: give it to %s now (authd keeps only its hash).\n",
           name);
    return 0;
}

static int member_add_set(int argc, char **argv, bool add)
{
    enum { ARG_BUDGET = 0x100, ARG_RPM, ARG_TPM, ARG_MODELS, ARG_JSON };
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"budget", required_argument, NULL, ARG_BUDGET},
        {"rpm", required_argument, NULL, ARG_RPM},
        {"tpm", required_argument, NULL, ARG_TPM},
        {"models", required_argument, NULL, ARG_MODELS},
        {"json", no_argument, NULL, ARG_JSON},
        {},
    };
    json_auto_t *fields = json_object(), *reply = NULL;
    bool json = arg_json;
    int c, r = 0;

    if (!fields)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    ctl_getopt_reset();
    while ((c = ctl_getopt(argc, argv, ":h", options)) >= 0) {
        switch (c) {
        case 'h':
            fputs(member_help, stdout);
            return 0;
        case ARG_BUDGET:
            r = limit_field(fields, "budget_micro_usd", "--budget", optarg, true, !add);
            break;
        case ARG_RPM:
            r = limit_field(fields, "rate_limit_rpm", "--rpm", optarg, false, !add);
            break;
        case ARG_TPM:
            r = limit_field(fields, "rate_limit_tpm", "--tpm", optarg, false, !add);
            break;
        case ARG_MODELS:
            r = models_field(fields, optarg, !add);
            break;
        case ARG_JSON:
            json = true;
            break;
        default:
            return ctl_bad_option("member", c, argv);
        }
        if (r)
            return r;
    }
    if (argc - optind != 1)
        return ctl_fail(CTL_EXIT_USAGE,
                        "'member %s' takes one NAME; see 'dualroutectl member "
                        "--help'",
                        add ? "add" : "set");
    if (!add && json_object_size(fields) == 0)
        return ctl_fail(CTL_EXIT_USAGE, "'member set' needs --budget, --rpm, --tpm or --models");
    if (json_object_set_new(fields, "name", json_string(argv[optind])) < 0)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    r = ctl_call_once(add ? "member.add" : "member.set", TAKE_PTR(fields), &reply);
    if (r)
        return r;
    if (add)
        return print_new_key(reply, json, false);
    if (json)
        return ctl_print_json(reply);
    ctl_info("Member '%s' changed.", argv[optind]);
    return 0;
}

static int member_list(int argc, char **argv)
{
    static const char *const headers[] = {"NAME", "BUDGET/MONTH", "SPENT", "RPM",
                                          "TPM",  "MODELS",       "KEY",   "CREATED"};
    _cleanup_(table_freep) struct table *t = table_new(ELEMENTSOF(headers), headers);
    json_auto_t *reply = NULL;
    const json_t *m;
    size_t i;
    int r;

    if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
        fputs(member_help, stdout);
        return 0;
    }
    if (argc != 1)
        return ctl_fail(CTL_EXIT_USAGE, "'member list' takes no arguments");
    if (!t)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    r = ctl_call_once("member.list", NULL, &reply);
    if (r)
        return r;
    if (arg_json)
        return ctl_print_json(reply);
    json_array_foreach (json_object_get(reply, "members"), i, m) {
        char budget[32] = "none", spent[32], rpm[32] = "none", tpm[32] = "none", created[32];
        _cleanup_free_ char *models = NULL;
        const json_t *v;
        time_t at = (time_t)json_integer_value(json_object_get(m, "created_at"));
        struct tm tm;

        if ((v = json_object_get(m, "budget_micro_usd")))
            format_usd(json_integer_value(v), budget);
        format_usd(json_integer_value(json_object_get(m, "spent_micro_usd")), spent);
        if ((v = json_object_get(m, "rate_limit_rpm")))
            snprintf(rpm, sizeof rpm, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        if ((v = json_object_get(m, "rate_limit_tpm")))
            snprintf(tpm, sizeof tpm, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        if ((v = json_object_get(m, "models"))) {
            const json_t *p;
            size_t j, len = 0;
            FILE *f = open_memstream(&models, &len);

            if (!f)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
            json_array_foreach (v, j, p)
                fprintf(f, "%s%s", j > 0 ? "," : "", json_string_value(p) ?: "");
            if (fclose(f) != 0)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        }
        if (gmtime_r(&at, &tm))
            strftime(created, sizeof created, "%Y-%m-%d", &tm);
        else
            snprintf(created, sizeof created, "-");
        {
            const char *cells[] = {json_string_value(json_object_get(m, "name")),
                                   budget,
                                   spent,
                                   rpm,
                                   tpm,
                                   models ? models : "all",
                                   json_string_value(json_object_get(m, "key_fingerprint")),
                                   created};

            if (table_add_row(t, cells) < 0)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        }
    }
    if (table_rows(t) == 0) {
        printf("No members: routerd accepts requests without a member key only in single-user "
               "mode.\n");
        return 0;
    }
    return table_print(t, stdout) < 0 ? CTL_EXIT_FAILED : 0;
}

static int member_name_op(int argc, char **argv, const char *sub)
{
    json_auto_t *reply = NULL;
    bool rotate = streq(sub, "rotate");
    int r;

    if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
        fputs(member_help, stdout);
        return 0;
    }
    if (argc != 2)
        return ctl_fail(CTL_EXIT_USAGE, "'member %s' takes one NAME", sub);
    r = ctl_call_once(rotate ? "member.rotate" : "member.remove",
                      json_pack("{s:s}", "name", argv[1]), &reply);
    if (r)
        return r;
    if (rotate)
        return print_new_key(reply, arg_json, true);
    if (arg_json)
        return ctl_print_json(reply);
    ctl_info("Removed member '%s' (the usage ledger keeps their rows).", argv[1]);
    return 0;
}

int verb_member(int argc, char **argv)
{
    const char *sub;

    if (argc < 2)
        return ctl_fail(CTL_EXIT_USAGE, "'member' needs add, list, set, rotate or remove; see "
                                        "'dualroutectl member --help'");
    sub = argv[1];
    if (streq(sub, "--help") || streq(sub, "-h") || streq(sub, "help")) {
        fputs(member_help, stdout);
        return 0;
    }
    if (streq(sub, "add") || streq(sub, "set"))
        return member_add_set(argc - 1, argv + 1, streq(sub, "add"));
    if (streq(sub, "list"))
        return member_list(argc - 1, argv + 1);
    if (streq(sub, "rotate") || streq(sub, "remove"))
        return member_name_op(argc - 1, argv + 1, sub);
    return ctl_fail(CTL_EXIT_USAGE, "unknown 'member' verb '%s'; see 'dualroutectl member --help'",
                    sub);
}

/* --- usage ------------------------------------------------------------------------------------ */

static const char usage_help[] =
    "Usage: dualroutectl usage [--member M] [--since WHEN] [--until WHEN]\n"
    "                          [--by member|model|day|account] [--json|--csv]\n"
    "\n"
    "Sums the usage ledger: requests, tokens, errors (status >= 400) and cost in USD, per member\n"
    "(default), upstream model, UTC day or account. WHEN is a number of days back ('7d'), a UTC\n"
    "date (2026-11-01) or Unix seconds. --since defaults to the start of this UTC month,\n"
    "--until (exclusive) to now.\n"
    "  --json   authd's reply: rows and total, costs in integer micro-USD\n"
    "  --csv    a header row and one row per group, costs in USD\n"
    "Exit: 0, 1 refused by authd, 2 usage, 3 authd unreachable, 5 permission denied.\n";

/* "7d", "2026-11-01" or Unix seconds to Unix seconds. */
static int parse_when(const char *s, int64_t *ret)
{
    struct tm tm = {};
    const char *end;
    int64_t n;
    size_t len = strlen(s);

    if (len >= 2 && s[len - 1] == 'd') {
        _cleanup_free_ char *num = strndup(s, len - 1);

        if (!num || parse_int64(num, &n) < 0 || n < 0 || n > 100000)
            return -EINVAL;
        *ret = (int64_t)(now_realtime_usec() / 1000000) - n * DAY_SEC;
        return 0;
    }
    end = strptime(s, "%Y-%m-%d", &tm);
    if (end && !*end && len == 10) {
        *ret = (int64_t)timegm(&tm);
        return 0;
    }
    if (parse_int64(s, &n) >= 0 && n >= 0) {
        *ret = n;
        return 0;
    }
    return -EINVAL;
}

static void csv_cell(const char *s, bool last)
{
    if (s && strpbrk(s, ",\"\r\n")) {
        putchar('"');
        for (; *s; s++) {
            if (*s == '"')
                putchar('"');
            putchar(*s);
        }
        putchar('"');
    } else if (s)
        fputs(s, stdout);
    putchar(last ? '\n' : ',');
}

static void usage_cells(const json_t *row, char cells[7][32])
{
    static const char *const keys[] = {"requests",          "input_tokens",       "output_tokens",
                                       "cache_read_tokens", "cache_write_tokens", "errors"};

    for (size_t i = 0; i < ELEMENTSOF(keys); i++)
        snprintf(cells[i], 32, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(row, keys[i])));
    format_usd(json_integer_value(json_object_get(row, "cost_micro_usd")), cells[6]);
}

#define USAGE_PAGES_MAX 10000

/* usage.query, every page of it: authd answers as many rows as fit in one frame, and "more" with
 * the key to continue after. *ret_reply is the last page's reply, holding every page's rows. */
static int usage_query_all(const json_t *fields, json_t **ret_reply)
{
    json_auto_t *rows = json_array();
    _cleanup_free_ char *after = NULL;

    if (!rows)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    for (unsigned page = 0; page < USAGE_PAGES_MAX; page++) {
        json_auto_t *f = json_deep_copy(fields), *reply = NULL;
        json_t *next;
        int r;

        if (!f || (after && json_object_set_new(f, "after", json_string(after)) < 0))
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        r = ctl_call_once("usage.query", TAKE_PTR(f), &reply);
        if (r)
            return r;
        if (!json_is_array(json_object_get(reply, "rows")))
            return ctl_fail(CTL_EXIT_FAILED, "dualroute-authd's usage answer has no rows");
        if (json_array_extend(rows, json_object_get(reply, "rows")) < 0)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        next = json_object_get(reply, "next_after");
        if (!json_is_true(json_object_get(reply, "more")) || !json_is_string(next)) {
            json_object_del(reply, "more");
            json_object_del(reply, "next_after");
            if (json_object_set(reply, "rows", rows) < 0)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
            *ret_reply = TAKE_PTR(reply);
            return 0;
        }
        free(after);
        after = strdup(json_string_value(next));
        if (!after)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    }
    return ctl_fail(CTL_EXIT_FAILED, "dualroute-authd's usage answer did not end after %u pages",
                    USAGE_PAGES_MAX);
}

int verb_usage(int argc, char **argv)
{
    enum { ARG_MEMBER = 0x100, ARG_SINCE, ARG_UNTIL, ARG_BY, ARG_JSON, ARG_CSV };
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"member", required_argument, NULL, ARG_MEMBER},
        {"since", required_argument, NULL, ARG_SINCE},
        {"until", required_argument, NULL, ARG_UNTIL},
        {"by", required_argument, NULL, ARG_BY},
        {"json", no_argument, NULL, ARG_JSON},
        {"csv", no_argument, NULL, ARG_CSV},
        {},
    };
    json_auto_t *fields = json_object(), *reply = NULL;
    const char *by = "member";
    bool json = arg_json, csv = false;
    const json_t *row;
    int64_t t;
    size_t i;
    int c, r;

    if (!fields)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    ctl_getopt_reset();
    while ((c = ctl_getopt(argc, argv, ":h", options)) >= 0)
        switch (c) {
        case 'h':
            fputs(usage_help, stdout);
            return 0;
        case ARG_MEMBER:
            json_object_set_new(fields, "member", json_string(optarg));
            break;
        case ARG_SINCE:
        case ARG_UNTIL:
            if (parse_when(optarg, &t) < 0)
                return ctl_fail(CTL_EXIT_USAGE,
                                "%s expects 7d, a date (2026-11-01) or Unix seconds, not '%s'",
                                c == ARG_SINCE ? "--since" : "--until", optarg);
            json_object_set_new(fields, c == ARG_SINCE ? "since" : "until", json_integer(t));
            break;
        case ARG_BY:
            if (!streq(optarg, "member") && !streq(optarg, "model") && !streq(optarg, "day") &&
                !streq(optarg, "account"))
                return ctl_fail(CTL_EXIT_USAGE, "--by expects member, model, day or account");
            by = optarg;
            break;
        case ARG_JSON:
            json = true;
            break;
        case ARG_CSV:
            csv = true;
            break;
        default:
            return ctl_bad_option("usage", c, argv);
        }
    if (optind != argc)
        return ctl_fail(CTL_EXIT_USAGE, "'usage' takes no arguments; see 'dualroutectl usage "
                                        "--help'");
    if (json && csv)
        return ctl_fail(CTL_EXIT_USAGE, "--json and --csv exclude each other");
    json_object_set_new(fields, "group_by", json_string(by));
    r = usage_query_all(fields, &reply);
    if (r)
        return r;
    if (json)
        return ctl_print_json(reply);

    if (csv) {
        static const char *const h[] = {"requests",          "input_tokens",       "output_tokens",
                                        "cache_read_tokens", "cache_write_tokens", "errors",
                                        "cost_usd"};

        csv_cell(by, false);
        for (i = 0; i < ELEMENTSOF(h); i++)
            csv_cell(h[i], i + 1 == ELEMENTSOF(h));
        json_array_foreach (json_object_get(reply, "rows"), i, row) {
            char cells[7][32];

            usage_cells(row, cells);
            csv_cell(json_string_value(json_object_get(row, "key")), false);
            for (size_t j = 0; j < 7; j++)
                csv_cell(cells[j], j == 6);
        }
        return fflush(stdout) == 0 ? 0 : CTL_EXIT_FAILED;
    }

    {
        char header[16];
        const char *headers[] = {header,       "REQUESTS",    "INPUT",  "OUTPUT",
                                 "CACHE_READ", "CACHE_WRITE", "ERRORS", "COST_USD"};
        _cleanup_(table_freep) struct table *tbl = NULL;
        char cells[7][32];

        snprintf(header, sizeof header, "%s", by);
        for (char *p = header; *p; p++)
            *p = (char)(*p - 'a' + 'A');
        tbl = table_new(ELEMENTSOF(headers), headers);
        if (!tbl)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        json_array_foreach (json_object_get(reply, "rows"), i, row) {
            const char *key = json_string_value(json_object_get(row, "key"));
            const char *rc[8];

            usage_cells(row, cells);
            rc[0] = key ? key : "(none)";
            for (size_t j = 0; j < 7; j++)
                rc[j + 1] = cells[j];
            if (table_add_row(tbl, rc) < 0)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        }
        if (table_rows(tbl) == 0) {
            printf("No requests in this period.\n");
            return 0;
        }
        usage_cells(json_object_get(reply, "total"), cells);
        {
            const char *rc[8] = {"TOTAL"};

            for (size_t j = 0; j < 7; j++)
                rc[j + 1] = cells[j];
            if (table_add_row(tbl, rc) < 0)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        }
        return table_print(tbl, stdout) < 0 ? CTL_EXIT_FAILED : 0;
    }
}
