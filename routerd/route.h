/* route.h: which upstream account serves a model, from the "routes" of authd's snapshot
 * (docs/ipc.md, snapshot.get). Pure: no IO, no logging.
 *
 * A route is {"model": M, "account": NAME}. M is an exact model id, a prefix pattern ending in
 * '*' ("claude-haiku-*"), or "*" alone. For a model the exact route wins, then the pattern with the
 * longest prefix, then "*". */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "macro.h"

struct route_table {
    json_t *routes; /* array of {"model","account"} objects, validated; owned */
};

/* Replaces t's routes with a copy of the snapshot's "routes" array (absent or null: none). Every
 * entry must be an object with a string "model" (1..200 bytes) and a string "account" (a valid
 * account name); entries beyond those two fields are ignored. Returns 0, -EINVAL (t unchanged)
 * for a malformed array, or -ENOMEM. */
int route_table_apply(struct route_table *t, const json_t *snapshot);
void route_table_done(struct route_table *t);

/* The account that serves model, or NULL when no route matches. Borrowed from t. */
const char *route_account(const struct route_table *t, const char *model);

/* Whether a model pattern (exact, a prefix ending in '*', or "*"), as routes, member model lists
 * and prices take it, matches model (NULL matches nothing). */
bool route_pattern_matches(const char *pattern, const char *model);
