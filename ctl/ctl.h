/* ctl.h: what dualroutectl's verbs share: exit codes, the global options, error printing, the
 * connection to authd and secret input. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "macro.h"

struct secret;
struct ctl_client;

/* Exit codes (docs/dualroutectl.md). */
enum {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAILED = 1,    /* the operation failed: authd said no, a provider refused, ... */
    CTL_EXIT_USAGE = 2,     /* bad command line */
    CTL_EXIT_AUTHD = 3,     /* authd unreachable (or the connection broke) */
    CTL_EXIT_ROUTERD = 4,   /* routerd unreachable */
    CTL_EXIT_FORBIDDEN = 5, /* permission denied: authd's forbidden, or the socket's mode */
};

/* Timeouts, in milliseconds, for one authd request. login.finish and account.add may wait on a
 * provider. */
#define CTL_AUTHD_TIMEOUT_MS (60 * 1000)

/* The global options, set by main.c. */
extern const char *arg_socket;
extern const char *arg_router;
extern bool arg_json;
extern bool arg_quiet;

/* Prints "dualroutectl: <message>" on stderr and returns code. */
int ctl_fail(int code, const char *fmt, ...) _printf_(2, 3);
/* Prints "dualroutectl: warning: <message>" on stderr (not with -q). */
void ctl_warn(const char *fmt, ...) _printf_(1, 2);
/* Informational output on stdout, suppressed by -q and --json. */
void ctl_info(const char *fmt, ...) _printf_(1, 2);

/* Connects to authd at arg_socket. Returns 0, or an exit code having printed the error. */
int ctl_connect(struct ctl_client **ret);
/* Sends one request (fields stolen, may be NULL) and waits for its reply. Returns 0 with
 * *ret_reply (a new reference), or an exit code having printed authd's message (1, or 5 for
 * forbidden, or 3 when the connection failed). */
int ctl_call(struct ctl_client *c, const char *op, json_t *fields, json_t **ret_reply);
/* Connects, calls, disconnects. */
int ctl_call_once(const char *op, json_t *fields, json_t **ret_reply);
/* Prints reply without its envelope (v, id, ok) as indented JSON on stdout. Returns 0 or 1. */
int ctl_print_json(const json_t *reply);

/* Reads a secret from path, or from stdin when path is "-". Warns when the file is readable by
 * group or others. Returns 0, or an exit code having printed the error. */
int ctl_read_secret(const char *path, size_t max, const char *what, struct secret **ret);

/* Prints the accounts array (status, account.list) as a table. */
int ctl_print_accounts(const json_t *accounts);

/* The verbs; each takes argv from the verb on and returns an exit code. */
int verb_status(int argc, char **argv);
int verb_check(int argc, char **argv);
int verb_account(int argc, char **argv);
int verb_logout(int argc, char **argv);
int verb_map(int argc, char **argv);
int verb_route(int argc, char **argv);
int verb_login(int argc, char **argv);
int verb_chat(int argc, char **argv);
int verb_member(int argc, char **argv); /* team.c */
int verb_usage(int argc, char **argv);  /* team.c */

/* Option parsing for verbs: getopt_long() with opterr off and a leading ':' in the optstring;
 * ctl_bad_option() turns its '?' or ':' into the usage error. */
int ctl_bad_option(const char *verb, int c, char **argv);
/* getopt_long() that accepts long options only by their whole name. */
struct option;
int ctl_getopt(int argc, char **argv, const char *optstring, const struct option *options);
/* Resets getopt for the next verb's parse. */
void ctl_getopt_reset(void);
