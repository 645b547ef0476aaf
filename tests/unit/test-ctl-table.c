/* test-ctl-table.c: dualroutectl's column output and relative times (ctl/table.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"
#include "test.h"

/* Prints t into a string (caller frees). */
static char *render(const struct table *t)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);

    ASSERT_NOT_NULL(f);
    ASSERT_OK(table_print(t, f));
    fclose(f);
    return s;
}

TEST(table_aligns_columns)
{
    static const char *const h[] = {"NAME", "STATE", "LAST ERROR"};
    static const char *const r1[] = {"work", "ok", NULL};
    static const char *const r2[] = {"a-much-longer-name", "needs_login", "revoked"};
    struct table *t = table_new(3, h);
    char *s;

    ASSERT_NOT_NULL(t);
    ASSERT_OK(table_add_row(t, r1));
    ASSERT_OK(table_add_row(t, r2));
    ASSERT_EQ(table_rows(t), 2);
    s = render(t);
    ASSERT_STREQ(s, "NAME                STATE        LAST ERROR\n"
                    "work                ok           -\n"
                    "a-much-longer-name  needs_login  revoked\n");
    free(s);
    table_free(t);
}

TEST(table_counts_code_points_and_hides_control_characters)
{
    static const char *const h[] = {"A", "B"};
    static const char *const r1[] = {"\xc3\xa9t\xc3\xa9", "x"}; /* "été": 3 columns, 5 bytes */
    static const char *const r2[] = {"ab\x1b[2Jc", "y\nz"};     /* an escape and a newline */
    struct table *t = table_new(2, h);
    char *s;

    ASSERT_NOT_NULL(t);
    ASSERT_OK(table_add_row(t, r1));
    ASSERT_OK(table_add_row(t, r2));
    s = render(t);
    ASSERT_STREQ(s, "A        B\n"
                    "\xc3\xa9t\xc3\xa9      x\n"
                    "ab?[2Jc  y?z\n");
    free(s);
    table_free(t);
}

TEST(table_empty_and_limits)
{
    static const char *const h[] = {"ONLY"};
    struct table *t = table_new(1, h);
    char *s;

    ASSERT_NOT_NULL(t);
    ASSERT_EQ(table_rows(t), 0);
    s = render(t);
    ASSERT_STREQ(s, "ONLY\n");
    free(s);
    table_free(t);
    ASSERT_NULL(table_new(0, h));
    ASSERT_NULL(table_new(TABLE_COLUMNS_MAX + 1, h));
    ASSERT_NULL(table_free(NULL));
}

TEST(relative_time)
{
    char out[32];

    format_relative_time(1000, 1000, out);
    ASSERT_STREQ(out, "now");
    format_relative_time(1000, 1030, out);
    ASSERT_STREQ(out, "in 30s");
    format_relative_time(1000, 1000 + 42 * 60 + 10, out);
    ASSERT_STREQ(out, "in 42m");
    format_relative_time(1000, 1000 + 3 * 3600 + 5 * 60, out);
    ASSERT_STREQ(out, "in 3h05m");
    format_relative_time(1000, 1000 + 5 * 86400, out);
    ASSERT_STREQ(out, "in 5d");
    format_relative_time(1000, 1000 - 12, out);
    ASSERT_STREQ(out, "12s ago");
    format_relative_time(100000, 100000 - 2 * 3600, out);
    ASSERT_STREQ(out, "2h00m ago");
    format_relative_time(0, INT64_MIN, out);
    ASSERT_TRUE(strstr(out, "d ago") != NULL);
    format_relative_time(INT64_MIN, INT64_MAX, out);
    ASSERT_TRUE(strncmp(out, "in ", 3) == 0);
}
