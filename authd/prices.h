/* prices.h: what a model costs, in micro-USD per million tokens, as snapshot.get hands it to
 * routerd (docs/ipc.md, "prices"): the table kept in this repo, with the operator's overrides from
 * authd's prices_file on top. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct price {
    const char *model; /* a model id, a prefix ending in '*', or "*" */
    int64_t input;     /* micro-USD per million tokens */
    int64_t output;
    int64_t cache_read;
    int64_t cache_write; /* the 5-minute cache write */
};

/* The repo's table, sorted by model pattern. */
extern const struct price prices_builtin[];
extern const size_t prices_builtin_n;

/* The snapshot's "prices" array: the built-in table with the entries of the JSON file at path
 * (may be NULL or "") on top; an entry there replaces the built-in one with the same pattern.
 * Sorted by pattern. Returns 0 with a new array in *ret; or -errno with a one-line reason in err
 * (the file cannot be read, is not an array of valid entries), and then *ret is untouched. */
int prices_to_json(const char *path, json_t **ret, char *err, size_t err_size);
