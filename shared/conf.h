/* conf.h: configuration tables. Each daemon describes every key once (name, type, where it lives
 * in its struct config, default, bounds, one line of help); the file parser, command-line
 * setters, --check-config and --dump-config all walk that table. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum conf_type {
    CONF_BOOL,     /* bool */
    CONF_INT,      /* int64_t, bounded by min/max */
    CONF_SIZE,     /* uint64_t bytes, bounded */
    CONF_DURATION, /* uint64_t microseconds, bounded */
    CONF_STRING,   /* char *, owned by the config */
    CONF_ENUM,     /* int, index into choices */
    _CONF_TYPE_MAX,
    _CONF_TYPE_INVALID = -EINVAL,
};

struct conf_key {
    const char *name;
    enum conf_type type;
    size_t offset;
    const char *def; /* default, in the same text form as a file value; NULL for "unset" */
    uint64_t min, max;
    const char *const *choices; /* CONF_ENUM: NULL-terminated */
    const char *help;
};

struct conf_table {
    const struct conf_key *keys;
    size_t n_keys;
};

/* Where input went wrong, after jansson's json_error_t. line is 0 for a single value. */
struct parse_error {
    char text[160];
    int line, column;
};

/* Sets every key to its default. cfg must start zeroed (string fields NULL): it frees a string
 * field it overwrites. Returns 0 or -ENOMEM. */
int conf_init(const struct conf_table *t, void *cfg);
/* Frees the strings the config owns. */
void conf_done(const struct conf_table *t, void *cfg);
const struct conf_key *conf_find(const struct conf_table *t, const char *name);
/* Parses value for key and stores it. On failure fills reterr (when not NULL) and returns -ENOENT
 * (unknown key), -EINVAL (bad value) or -ERANGE (out of bounds). */
int conf_set(const struct conf_table *t, void *cfg, const char *key, const char *value,
             struct parse_error *reterr);
/* Parses "key = value" lines ('#' comments, blank lines, optional double quotes around the
 * value); stops at the first error, which carries its line. Pure: usable from fuzzers. */
int conf_parse_buffer(const struct conf_table *t, void *cfg, const char *data, size_t len,
                      struct parse_error *reterr);
/* Reads and parses a file (at most 1 MiB). A missing file is -ENOENT, which a caller with a default
 * path treats as "built-in defaults". */
int conf_load_file(const struct conf_table *t, void *cfg, const char *path,
                   struct parse_error *reterr);
/* Command-line helpers for the daemons. Each writes its complaint to f (the daemons pass stderr)
 * and returns the error, so a daemon's options, environment and file read the same way. */

/* conf_set(); on failure writes "program: source: reason". */
int conf_set_or_complain(const struct conf_table *t, void *cfg, const char *program,
                         const char *source, const char *key, const char *value, FILE *f);
/* --set's argument, "KEY=VALUE": sets KEY with source "--set KEY". Without '=' writes
 * "program: --set expects KEY=VALUE, not 'arg'" and returns -EINVAL. */
int conf_set_assignment(const struct conf_table *t, void *cfg, const char *program, const char *arg,
                        FILE *f);
/* Loads path, or default_path when path is NULL; a default file that does not exist is not an
 * error (built-in defaults), an explicit one is. On failure writes "file:line: reason" (or
 * "file: reason" when the error has no line). */
int conf_load_file_or_default(const struct conf_table *t, void *cfg, const char *path,
                              const char *default_path, FILE *f);

/* Writes every key as "key = value", each preceded by its help line, in table order. Strings are
 * quoted ("" for unset); a string key that is unset with no default is written commented out.
 * The output reads back to the same values. */
void conf_dump(const struct conf_table *t, const void *cfg, FILE *f);
/* The text form of one key's current value into out (at least 64 bytes, strings truncated). */
void conf_format_value(const struct conf_key *k, const void *cfg, char *out, size_t outlen);
