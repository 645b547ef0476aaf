/* fuzz-snapshot.c: routerd's reading of authd's routing snapshot (the "routes" array) on arbitrary
 * JSON. A malformed snapshot must be refused whole, leaving the previous table in force; an
 * accepted one must answer every lookup with an account whose route matches the model. */
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "route.h"

static void check_lookup(const struct route_table *t, const char *model)
{
    const char *account = route_account(t, model);
    size_t i;
    json_t *e;
    bool found = false;

    if (!account)
        return;
    json_array_foreach (t->routes, i, e)
        if (strcmp(json_string_value(json_object_get(e, "account")), account) == 0 &&
            route_pattern_matches(json_string_value(json_object_get(e, "model")), model))
            found = true;
    FUZZ_CHECK(found);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const models[] = {"claude-opus-4-7", "claude-haiku-4-5", "", "*", "x"};
    struct route_table t = {};
    json_t *snap, *before;
    int r;

    snap = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!snap)
        return 0;
    /* A known-good table first: a refused snapshot must leave it as it was. */
    before = json_pack("{s:[{s:s,s:s}]}", "routes", "model", "*", "account", "prev");
    FUZZ_CHECK(before && route_table_apply(&t, before) == 0);
    r = route_table_apply(&t, snap);
    if (r < 0)
        FUZZ_CHECK(strcmp(route_account(&t, "anything"), "prev") == 0);
    json_decref(snap);
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        check_lookup(&t, models[i]);
    /* Every exact route's own model finds an account that way. */
    for (size_t i = 0; i < json_array_size(t.routes); i++) {
        const char *m = json_string_value(json_object_get(json_array_get(t.routes, i), "model"));

        check_lookup(&t, m);
        if (m[strlen(m) - 1] != '*')
            FUZZ_CHECK(route_account(&t, m) != NULL);
    }
    route_table_done(&t);
    json_decref(before);
    return 0;
}
