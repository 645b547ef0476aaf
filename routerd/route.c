/* route.c: the model -> account table from authd's snapshot. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "route.h"

#define ROUTE_MODEL_MAX 200

int route_table_apply(struct route_table *t, const json_t *snapshot)
{
    const json_t *routes = json_object_get(snapshot, "routes");
    json_t *copy, *e;
    size_t i;

    if (!routes || json_is_null(routes)) {
        copy = json_array();
        if (!copy)
            return -ENOMEM;
    } else {
        if (!json_is_array(routes))
            return -EINVAL;
        json_array_foreach (routes, i, e) {
            const char *m = json_string_value(json_object_get(e, "model"));
            const char *a = json_string_value(json_object_get(e, "account"));

            if (!m || !a || !*m || strlen(m) > ROUTE_MODEL_MAX || !ipc_account_name_is_valid(a))
                return -EINVAL;
        }
        copy = json_deep_copy(routes);
        if (!copy)
            return -ENOMEM;
    }
    json_decref(t->routes);
    t->routes = copy;
    return 0;
}

void route_table_done(struct route_table *t)
{
    if (!t)
        return;
    json_decref(t->routes);
    t->routes = NULL;
}

bool route_pattern_matches(const char *pattern, const char *model)
{
    size_t n = strlen(pattern);

    if (!model)
        return false;
    if (n > 0 && pattern[n - 1] == '*')
        return strncmp(pattern, model, n - 1) == 0;
    return strcmp(pattern, model) == 0;
}

const char *route_account(const struct route_table *t, const char *model)
{
    const char *best = NULL;
    size_t best_len = 0, i;
    json_t *e;

    if (!t || !t->routes || !model)
        return NULL;
    json_array_foreach (t->routes, i, e) {
        const char *m = json_string_value(json_object_get(e, "model"));
        const char *a = json_string_value(json_object_get(e, "account"));
        size_t n = strlen(m);

        if (!route_pattern_matches(m, model))
            continue;
        if (m[n - 1] != '*')
            return a; /* exact */
        /* A pattern: the longest prefix wins; "*" (prefix length 0) only when nothing else. */
        if (!best || n - 1 > best_len) {
            best = a;
            best_len = n - 1;
        }
    }
    return best;
}
