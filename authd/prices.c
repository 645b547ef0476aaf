/* prices.c: the price table routerd costs requests with (prices.h).
 *
 * Anthropic's list prices per million tokens (https://platform.claude.com/docs/en/about-claude/
 * pricing, "Model pricing", as of November 2026): base input, output, cache hits ("cache read")
 * and 5-minute cache writes. Vertex AI charges the same list prices for these models. A pattern
 * is matched as routes are: exact id, else the longest prefix ending in '*'. Models that are not
 * here cost 0 until the operator lists them in prices_file. Check the page and update this table
 * when Anthropic changes a price; the operator's file wins in the meantime. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "prices.h"

#define USD(x) ((int64_t)((x)*1000000.0 + 0.5))
#define PRICES_FILE_MAX 1000 /* entries */

/* clang-format off */
const struct price prices_builtin[] = {
    /* model pattern           input       output      cache read   cache write (5m) */
    {"claude-3-5-haiku*",      USD(0.80),  USD(4),     USD(0.08),   USD(1)},
    {"claude-3-5-sonnet*",     USD(3),     USD(15),    USD(0.30),   USD(3.75)},
    {"claude-3-7-sonnet*",     USD(3),     USD(15),    USD(0.30),   USD(3.75)},
    {"claude-3-haiku*",        USD(0.25),  USD(1.25),  USD(0.03),   USD(0.30)},
    {"claude-3-opus*",         USD(15),    USD(75),    USD(1.50),   USD(18.75)},
    {"claude-haiku-4*",        USD(1),     USD(5),     USD(0.10),   USD(1.25)},
    {"claude-opus-4*",         USD(5),     USD(25),    USD(0.50),   USD(6.25)},  /* 4.5 and on */
    {"claude-opus-4-0*",       USD(15),    USD(75),    USD(1.50),   USD(18.75)},
    {"claude-opus-4-1*",       USD(15),    USD(75),    USD(1.50),   USD(18.75)},
    {"claude-opus-4-2*",       USD(15),    USD(75),    USD(1.50),   USD(18.75)}, /* claude-opus-4-20250514 */
    {"claude-opus-4@*",        USD(15),    USD(75),    USD(1.50),   USD(18.75)}, /* Vertex: claude-opus-4@20250514 */
    {"claude-sonnet-4*",       USD(3),     USD(15),    USD(0.30),   USD(3.75)},
};
/* clang-format on */
const size_t prices_builtin_n = ELEMENTSOF(prices_builtin);

static const char *const price_fields[] = {
    "input_micro_usd_per_mtok",
    "output_micro_usd_per_mtok",
    "cache_read_micro_usd_per_mtok",
    "cache_write_micro_usd_per_mtok",
};

/* A model pattern as routes take it: [A-Za-z0-9._:@-]{1,200}, optionally ending in '*'; or "*". */
static bool pattern_is_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > 200)
        return false;
    if (s[n - 1] == '*')
        n--;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._:@-", c)))
            return false;
    }
    return true;
}

static json_t *price_json(const char *model, const int64_t v[4])
{
    return json_pack("{s:s, s:I, s:I, s:I, s:I}", "model", model, price_fields[0], (json_int_t)v[0],
                     price_fields[1], (json_int_t)v[1], price_fields[2], (json_int_t)v[2],
                     price_fields[3], (json_int_t)v[3]);
}

/* Checks the operator's file: an array of entries with a valid, unique pattern and the four
 * prices as integers >= 0. */
static int check_file(const json_t *arr, char *err, size_t err_size)
{
    const json_t *e, *f;
    size_t i, j;

    if (!json_is_array(arr)) {
        snprintf(err, err_size, "not a JSON array of price entries");
        return -EINVAL;
    }
    if (json_array_size(arr) > PRICES_FILE_MAX) {
        snprintf(err, err_size, "more than %d entries", PRICES_FILE_MAX);
        return -EINVAL;
    }
    json_array_foreach (arr, i, e) {
        const char *model = json_string_value(json_object_get(e, "model"));

        if (!json_is_object(e) || !pattern_is_valid(model)) {
            snprintf(err, err_size,
                     "entry %zu: 'model' must be a model id, a prefix ending in '*', or '*'",
                     i + 1);
            return -EINVAL;
        }
        for (j = 0; j < ELEMENTSOF(price_fields); j++) {
            f = json_object_get(e, price_fields[j]);
            if (!json_is_integer(f) || json_integer_value(f) < 0 ||
                json_integer_value(f) > INT64_C(1000000000000)) {
                snprintf(err, err_size, "entry %zu ('%s'): '%s' must be an integer >= 0", i + 1,
                         model, price_fields[j]);
                return -EINVAL;
            }
        }
        for (j = 0; j < i; j++)
            if (streq(json_string_value(json_object_get(json_array_get(arr, j), "model")), model)) {
                snprintf(err, err_size, "entry %zu: '%s' is listed twice", i + 1, model);
                return -EINVAL;
            }
    }
    return 0;
}

static int by_model(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "model")),
                  json_string_value(json_object_get(*(json_t *const *)b, "model")));
}

int prices_to_json(const char *path, json_t **ret, char *err, size_t err_size)
{
    json_auto_t *file = NULL, *out = NULL, *merged = json_object();
    _cleanup_free_ json_t **sorted = NULL;
    json_error_t jerr;
    const char *k;
    json_t *v;
    size_t i, n = 0;
    int r;

    if (!merged)
        return -ENOMEM;
    for (i = 0; i < prices_builtin_n; i++) {
        const struct price *p = &prices_builtin[i];
        const int64_t vals[4] = {p->input, p->output, p->cache_read, p->cache_write};

        if (json_object_set_new(merged, p->model, price_json(p->model, vals)) < 0)
            return -ENOMEM;
    }
    if (path && *path) {
        file = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (!file) {
            snprintf(err, err_size, "%s: %s", path, jerr.text);
            return -EINVAL;
        }
        r = check_file(file, err, err_size);
        if (r < 0)
            return r;
        json_array_foreach (file, i, v) {
            const char *model = json_string_value(json_object_get(v, "model"));
            int64_t vals[4];

            for (size_t j = 0; j < ELEMENTSOF(price_fields); j++)
                vals[j] = json_integer_value(json_object_get(v, price_fields[j]));
            if (json_object_set_new(merged, model, price_json(model, vals)) < 0)
                return -ENOMEM;
        }
    }

    sorted = calloc(json_object_size(merged) + 1, sizeof *sorted);
    out = json_array();
    if (!sorted || !out)
        return -ENOMEM;
    json_object_foreach (merged, k, v)
        sorted[n++] = v;
    qsort(sorted, n, sizeof *sorted, by_model);
    for (i = 0; i < n; i++)
        if (json_array_append(out, sorted[i]) < 0)
            return -ENOMEM;
    *ret = TAKE_PTR(out);
    return 0;
}
