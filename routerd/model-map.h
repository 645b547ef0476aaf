/* model-map.h: which upstream model a requested model name goes to. Custom mappings from a
 * .router-mappings.json file, the built-in aliases, ANTHROPIC_DEFAULT_MODEL and
 * anthropic-max-router's name patterns. Pure, except model_map_load_file(). */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

struct parse_error;

#define MODEL_MAP_ENTRIES_MAX 1000
#define MODEL_MAP_NAME_MAX 200 /* bytes, for both a requested name and a model id */
#define MODEL_MAP_FILE_MAX (1024 * 1024)

/* Why model_map_resolve() chose what it chose, for the log line. */
enum model_map_reason {
    MODEL_MAP_CUSTOM,         /* a custom mapping for the exact name */
    MODEL_MAP_CLAUDE,         /* a Claude model name ("claude-..."), passed unchanged */
    MODEL_MAP_ALIAS,          /* a built-in alias: haiku, sonnet, opus */
    MODEL_MAP_DEFAULT_ENV,    /* ANTHROPIC_DEFAULT_MODEL */
    MODEL_MAP_PATTERN_HAIKU,  /* gpt-3*, *-nano* */
    MODEL_MAP_PATTERN_OPUS,   /* *-pro*, *-max*, *-ultra*, o1 and o3 but not their -mini */
    MODEL_MAP_PATTERN_SONNET, /* everything else */
    _MODEL_MAP_REASON_MAX,
    _MODEL_MAP_REASON_INVALID = -EINVAL,
};

struct model_map_entry {
    char *name;   /* the requested name, owned */
    char *target; /* the model id it maps to, owned */
};

/* Starts zeroed (struct model_map m = {};), which is a map with no custom mappings and no default.
 * Declare it _cleanup_(model_map_done) to free it at the end of the scope. */
struct model_map {
    struct model_map_entry *entries; /* sorted by name (strcmp), owned */
    size_t n_entries;
    char *default_model; /* ANTHROPIC_DEFAULT_MODEL, owned; NULL when unset */
};

/* Parses a .router-mappings.json text: one JSON object of {"requested-name": "model-id", ...}.
 * Names are 1..200 bytes of UTF-8 without control characters and appear once; values are model
 * ids (see model_map_id_is_valid()); at most 1,000 entries. On success the parsed mappings
 * replace m's custom mappings (the default model stays). On failure m is unchanged and reterr
 * (when not NULL) says what is wrong, with line and column for JSON syntax errors and line 0
 * otherwise. Returns 0, -EINVAL (bad JSON or a bad entry), -E2BIG (too many entries), -EFBIG
 * (len over 1 MiB) or -ENOMEM. json need not be NUL-terminated. */
int model_map_parse(struct model_map *m, const char *json, size_t len, struct parse_error *reterr);

/* Reads a file of at most 1 MiB and parses it as model_map_parse() does. On failure reterr's text
 * starts with the path ("PATH: problem", or "PATH:LINE:COLUMN: problem" for a syntax error), so
 * it can be logged as is. A missing file is -ENOENT, which a caller reading the default path
 * treats as "no custom mappings"; a file that is not a regular file is -EINVAL, an oversize one
 * -EFBIG; other open and read errors pass through as -errno. */
int model_map_load_file(struct model_map *m, const char *path, struct parse_error *reterr);

/* Sets the default model (ANTHROPIC_DEFAULT_MODEL) to a copy of model; NULL or "" unsets it.
 * Returns 0, -EINVAL when model is not a model id (m unchanged) or -ENOMEM. */
int model_map_set_default(struct model_map *m, const char *model);

/* Frees everything m owns and zeroes it, so it can be filled again. Accepts NULL. */
void model_map_done(struct model_map *m);

/* The upstream model id for a requested model name, by the first rule that applies:
 *   1. a custom mapping for the exact name (case-sensitive);
 *   2. a Claude model name (starts with "claude-", any case): requested itself, unchanged;
 *   3. a built-in alias (haiku, sonnet, opus; any case);
 *   4. the default model, when set;
 *   5. patterns on the name, ignoring ASCII case: containing "gpt-3" (so gpt-3.5 too) or
 *      "-nano" → haiku; containing "-pro", "-max" or "-ultra", or o1/o3 ("o1", "o3", "o1-...",
 *      "o3-...") without "-mini" → opus; anything else → sonnet.
 * Never returns NULL. The result is borrowed: from m (valid until m changes), from the built-in
 * table (static) or requested itself. m may be NULL (no mappings, no default) and requested may
 * be NULL (taken as ""). ret_reason may be NULL. */
const char *model_map_resolve(const struct model_map *m, const char *requested,
                              enum model_map_reason *ret_reason);

/* Calls cb for every name the router answers to besides real model ids: the custom mappings
 * (sorted by name), then the built-in aliases a custom mapping of the same name does not shadow.
 * alias and target are borrowed for the duration of the call. m may be NULL. */
void model_map_aliases(const struct model_map *m,
                       void (*cb)(const char *alias, const char *target, void *userdata),
                       void *userdata);

/* True when s is 1..200 bytes of [A-Za-z0-9._:@-], which covers Anthropic ("claude-opus-4-7"),
 * Vertex ("claude-opus-4-7@20260101") and Bedrock ("anthropic.claude-opus-4-7-v1:0") ids. */
bool model_map_id_is_valid(const char *s);

/* "custom", "claude", "alias", "default-model", "pattern-haiku", "pattern-opus",
 * "pattern-sonnet"; NULL for a value out of range. */
const char *model_map_reason_to_string(enum model_map_reason r);
