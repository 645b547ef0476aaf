/* table.h: aligned column output for people, and the small formatters its cells use. Pure: no IO
 * beyond the FILE the caller hands to table_print(). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"

#define TABLE_COLUMNS_MAX 16

struct table;

/* A new table with the given header cells (ncols of them, 1..TABLE_COLUMNS_MAX), or NULL. */
struct table *table_new(size_t ncols, const char *const *headers);
/* Frees; accepts NULL; returns NULL. */
struct table *table_free(struct table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct table *, table_free);
/* Appends one row of ncols cells (copied; NULL or "" shows as "-"). Control characters in a cell
 * are shown as '?', so that a value from authd cannot move the cursor. Returns 0 or -ENOMEM. */
int table_add_row(struct table *t, const char *const *cells);
size_t table_rows(const struct table *t);
/* Prints the header and the rows, columns separated by two spaces and padded to the widest cell
 * (counted in UTF-8 code points); the last column is not padded. Returns 0 or -EIO. */
int table_print(const struct table *t, FILE *f);

/* Formats the time from now to at, both Unix seconds: "in 42m", "in 3h05m", "in 2d", "12s ago",
 * "now". out must hold 32 bytes. */
void format_relative_time(int64_t now, int64_t at, char out[static 32]);
