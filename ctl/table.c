/* table.c: column output for dualroutectl.
 *
 * Cells are copied in as rows arrive and the widths are computed when the table is printed, so a
 * verb adds rows as it walks a reply and prints once. Widths count UTF-8 code points, which is
 * right for the ASCII names and ids authd returns and close enough for anything else. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "table.h"

struct table {
    size_t ncols, nrows, cap;
    char **cells; /* (nrows + 1) * ncols; row 0 is the header */
};

struct table *table_new(size_t ncols, const char *const *headers)
{
    struct table *t;

    if (ncols == 0 || ncols > TABLE_COLUMNS_MAX)
        return NULL;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ncols = ncols;
    if (table_add_row(t, headers) < 0) {
        /* table_add_row() freed the cells it had copied. */
        free(t->cells);
        free(t);
        return NULL;
    }
    return t;
}

struct table *table_free(struct table *t)
{
    if (!t)
        return NULL;
    for (size_t i = 0; i < (t->nrows + 1) * t->ncols && t->cells; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
    return NULL;
}

size_t table_rows(const struct table *t)
{
    return t->nrows;
}

static char *cell_dup(const char *s)
{
    char *c;

    if (!s || !*s)
        s = "-";
    c = strdup(s);
    if (!c)
        return NULL;
    for (char *p = c; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return c;
}

int table_add_row(struct table *t, const char *const *cells)
{
    /* Row 0 is the header: while it is being added, nrows is 0 and cells is empty. */
    size_t used = t->cells ? (t->nrows + 1) * t->ncols : 0;

    if (used + t->ncols > t->cap) {
        size_t cap = MAX(t->cap * 2, used + t->ncols);
        char **n = realloc(t->cells, cap * sizeof *n);

        if (!n)
            return -ENOMEM;
        t->cells = n;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        t->cells[used + i] = cell_dup(cells[i]);
        if (!t->cells[used + i]) {
            while (i-- > 0)
                free(t->cells[used + i]);
            return -ENOMEM;
        }
    }
    if (used > 0)
        t->nrows++;
    return 0;
}

static size_t utf8_width(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

int table_print(const struct table *t, FILE *f)
{
    size_t width[TABLE_COLUMNS_MAX] = {};

    for (size_t r = 0; r <= t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++)
            width[c] = MAX(width[c], utf8_width(t->cells[r * t->ncols + c]));
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            bool last = c + 1 == t->ncols;

            fputs(cell, f);
            if (!last)
                fprintf(f, "%*s", (int)(width[c] - utf8_width(cell) + 2), "");
        }
        fputc('\n', f);
    }
    return ferror(f) ? -EIO : 0;
}

void format_relative_time(int64_t now, int64_t at, char out[static 32])
{
    char span[24];
    uint64_t a;
    int64_t d;
    bool past;

    /* Times come from authd: a huge one must not overflow. */
    if (__builtin_sub_overflow(at, now, &d))
        d = at > now ? INT64_MAX : INT64_MIN;
    past = d < 0;
    a = past ? (uint64_t)(-(d + 1)) + 1 : (uint64_t)d;

    if (a == 0) {
        snprintf(out, 32, "now");
        return;
    }
    if (a < 60)
        snprintf(span, sizeof span, "%us", (unsigned)a);
    else if (a < 3600)
        snprintf(span, sizeof span, "%um", (unsigned)(a / 60));
    else if (a < 48 * 3600)
        snprintf(span, sizeof span, "%uh%02um", (unsigned)(a / 3600), (unsigned)(a % 3600 / 60));
    else
        snprintf(span, sizeof span, "%llud", (unsigned long long)(a / 86400));
    snprintf(out, 32, past ? "%s ago" : "in %s", span);
}
