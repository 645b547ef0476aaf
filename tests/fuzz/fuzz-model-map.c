/* fuzz-model-map.c: model_map_parse() and model_map_resolve() on arbitrary bytes.
 *
 * Each input is parsed into a map that already holds one mapping and a default model. A failure
 * must come with one of the documented errors, a one-line error text and a line number inside
 * the input, and must leave the map as it was. A success must give a sorted map of valid entries
 * of which each resolves to its own target, must survive a round trip through jansson (dumped
 * and parsed again, the same map comes back) and must list every entry in model_map_aliases().
 * Whatever the outcome, the input as a model name must resolve by the rules, with and without
 * the map. model_map_done() frees everything, so LeakSanitizer sees any string the parser drops. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "conf.h"
#include "fuzz.h"
#include "macro.h"
#include "model-map.h"

static const char *const tier_ids[] = {"claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-7"};

static bool is_tier_id(const char *s)
{
    for (size_t i = 0; i < ELEMENTSOF(tier_ids); i++)
        if (strcmp(s, tier_ids[i]) == 0)
            return true;
    return false;
}

static bool one_line(const char *s, size_t max)
{
    const char *end = memchr(s, '\0', max);

    if (!end || end == s)
        return false;
    for (; s < end; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static void check_entries(const struct model_map *m)
{
    FUZZ_CHECK(m->n_entries <= MODEL_MAP_ENTRIES_MAX);
    FUZZ_CHECK((m->n_entries == 0) == (m->entries == NULL));
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct model_map_entry *e = &m->entries[i];
        enum model_map_reason why = _MODEL_MAP_REASON_INVALID;
        size_t n = strlen(e->name);

        FUZZ_CHECK(n >= 1 && n <= MODEL_MAP_NAME_MAX);
        FUZZ_CHECK(one_line(e->name, n + 1));
        FUZZ_CHECK(model_map_id_is_valid(e->target));
        if (i > 0)
            FUZZ_CHECK(strcmp(m->entries[i - 1].name, e->name) < 0);
        FUZZ_CHECK(model_map_resolve(m, e->name, &why) == e->target);
        FUZZ_CHECK(why == MODEL_MAP_CUSTOM);
    }
}

/* Dumps the map's entries as JSON and parses that into a fresh map: the same entries must come
 * back. */
static void check_roundtrip(const struct model_map *a)
{
    struct model_map b = {};
    json_t *o = json_object();
    char *text;
    int r;

    FUZZ_CHECK(o);
    for (size_t i = 0; i < a->n_entries; i++)
        FUZZ_CHECK(json_object_set_new(o, a->entries[i].name, json_string(a->entries[i].target)) ==
                   0);
    text = json_dumps(o, JSON_COMPACT);
    FUZZ_CHECK(text);
    r = model_map_parse(&b, text, strlen(text), NULL);
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(b.n_entries == a->n_entries);
    for (size_t i = 0; i < a->n_entries; i++) {
        FUZZ_CHECK(strcmp(a->entries[i].name, b.entries[i].name) == 0);
        FUZZ_CHECK(strcmp(a->entries[i].target, b.entries[i].target) == 0);
    }
    model_map_done(&b);
    free(text);
    json_decref(o);
}

struct listing {
    const struct model_map *m;
    size_t n_custom, n_builtin;
};

static void count_alias(const char *alias, const char *target, void *userdata)
{
    struct listing *l = userdata;
    enum model_map_reason why = _MODEL_MAP_REASON_INVALID;

    /* Every listed name resolves to what the listing says. */
    FUZZ_CHECK(strcmp(model_map_resolve(l->m, alias, &why), target) == 0);
    if (why == MODEL_MAP_CUSTOM)
        l->n_custom++;
    else {
        FUZZ_CHECK(why == MODEL_MAP_ALIAS);
        FUZZ_CHECK(is_tier_id(target));
        l->n_builtin++;
    }
}

static void check_aliases(const struct model_map *m)
{
    struct listing l = {.m = m};

    model_map_aliases(m, count_alias, &l);
    FUZZ_CHECK(l.n_custom == m->n_entries);
    FUZZ_CHECK(l.n_builtin <= ELEMENTSOF(tier_ids));
}

/* The input as a model name (up to its first NUL). */
static void check_resolve(const struct model_map *m, const char *name)
{
    enum model_map_reason why = _MODEL_MAP_REASON_INVALID;
    const char *r;

    r = model_map_resolve(m, name, &why);
    FUZZ_CHECK(r);
    FUZZ_CHECK(model_map_reason_to_string(why));
    switch (why) {
    case MODEL_MAP_CUSTOM:
        FUZZ_CHECK(m && model_map_id_is_valid(r));
        break;
    case MODEL_MAP_CLAUDE:
        FUZZ_CHECK(r == name);
        FUZZ_CHECK(strncasecmp(name, "claude-", 7) == 0);
        break;
    case MODEL_MAP_DEFAULT_ENV:
        FUZZ_CHECK(m && r == m->default_model);
        break;
    case MODEL_MAP_ALIAS:
    case MODEL_MAP_PATTERN_HAIKU:
    case MODEL_MAP_PATTERN_OPUS:
    case MODEL_MAP_PATTERN_SONNET:
        FUZZ_CHECK(is_tier_id(r));
        break;
    default:
        FUZZ_CHECK(!"unknown reason");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct model_map m = {};
    struct parse_error err = {.line = -1};
    char *name;
    size_t lines = 1;
    int r;

    FUZZ_CHECK(model_map_parse(&m, "{\"keep\": \"claude-haiku-4-5\"}", 28, NULL) == 0);
    FUZZ_CHECK(model_map_set_default(&m, "claude-opus-4-1") == 0);

    r = model_map_parse(&m, (const char *)data, size, &err);
    if (r < 0) {
        for (size_t i = 0; i < size; i++)
            lines += data[i] == '\n';
        FUZZ_CHECK(r == -EINVAL || r == -E2BIG || r == -EFBIG);
        FUZZ_CHECK(one_line(err.text, sizeof err.text));
        FUZZ_CHECK(err.line >= 0 && (size_t)err.line <= lines);
        FUZZ_CHECK(m.n_entries == 1 && strcmp(m.entries[0].name, "keep") == 0);
    } else {
        FUZZ_CHECK(r == 0);
        check_roundtrip(&m);
    }
    FUZZ_CHECK(strcmp(m.default_model, "claude-opus-4-1") == 0);
    check_entries(&m);
    check_aliases(&m);

    name = strndup((const char *)data, size);
    FUZZ_CHECK(name);
    check_resolve(&m, name);
    check_resolve(NULL, name);
    free(name);

    model_map_done(&m);
    return 0;
}
