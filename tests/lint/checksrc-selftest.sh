#!/usr/bin/env bash
# checksrc-selftest.sh: checks checksrc.sh itself on snippets written to a temp dir: each banned
# form must be reported (with its line), and the look-alikes that are fine must not be. The
# snippets live here rather than as files in the tree so the real lint run never sees them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# expect_bad NAME EXPECTED-TEXT C-SOURCE
expect_bad() {
    printf '%s\n' "$3" >"$tmp/$1.c"
    if out=$(bash "$here/checksrc.sh" "$tmp/$1.c" 2>&1); then
        echo "FAIL $1: not reported"
        failed=1
    elif ! grep -qF -- "$2" <<<"$out"; then
        echo "FAIL $1: expected '$2' in:"
        echo "$out"
        failed=1
    else
        echo "ok   $1"
    fi
}

# expect_good NAME C-SOURCE
expect_good() {
    printf '%s\n' "$2" >"$tmp/$1.c"
    if ! out=$(bash "$here/checksrc.sh" "$tmp/$1.c" 2>&1); then
        echo "FAIL $1: reported:"
        echo "$out"
        failed=1
    else
        echo "ok   $1"
    fi
}

expect_bad sprintf "sprintf.c:2: call to sprintf()" $'void f(char *b)\n{ sprintf(b, "%d", 1); }'
expect_bad vsprintf "call to vsprintf()" 'int f(char *b, va_list ap) { return vsprintf (b, "x", ap); }'
expect_bad strcpy "call to strcpy()" 'void f(char *a) { strcpy(a, "x"); }'
expect_bad strcat "call to strcat()" 'void f(char *a) { strcat(a, "x"); }'
expect_bad strtok "call to strtok()" 'void f(char *a) { strtok(a, ","); }'
expect_bad atoi "call to atoi()" 'int f(const char *a) { return atoi(a); }'
expect_bad atol "call to atol()" 'long f(const char *a) { return atol(a); }'
expect_bad gets "call to gets()" 'void f(char *a) { gets(a); }'
expect_bad cast "call to atoi()" 'int f(const char *a) { return (int)atoi(a) + !atoi(a); }'
expect_bad after-comment "after-comment.c:3: call to strcpy()" \
    $'/* a comment\n * that ends here */ int x;\nvoid f(char *a) { strcpy(a, "/* not a comment"); }'
expect_bad tab "tab.c:2: tab character" $'int x;\n\tint y;'
expect_bad exec-var "sqlite3_exec() with SQL that is not a string literal" \
    'int f(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, NULL, NULL, NULL); }'
expect_bad exec-call "sqlite3_exec() with SQL that is not a string literal" \
    'int f(sqlite3 *db) { return sqlite3_exec(get_db(db, 1), make_sql(), NULL, NULL, NULL); }'
expect_bad exec-multiline "exec-multiline.c:2: sqlite3_exec()" \
    $'int f(sqlite3 *db, char *q)\n{ return sqlite3_exec(db,\n    q, NULL, NULL, NULL); }'

expect_good lookalikes 'void f(char *b, size_t n, va_list ap, FILE *in)
{
    char *save;
    snprintf(b, n, "%d", 1);
    vsnprintf(b, n, "x", ap);
    strtok_r(b, ",", &save);
    fgets(b, (int)n, in);
    my_sprintf(b);
    s.atoi(1);
    p->gets(2);
    strcpy_safe(b, "x");
    int sprintf_count = 0, atoi_x = sprintf_count;
}'
expect_good in-comments $'/* sprintf(buf, ...) would overflow; strcpy( too. */\n// atoi(s) accepts garbage\nconst char *msg = "do not call gets(buf) or \\"strcat(a, b)";\nchar c = \'(\', q = \'"\';\nint n = atoi_checked("x");'
expect_good exec-literal 'int f(sqlite3 *db)
{
    sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    sqlite3_exec(open_db(path, 0),
                 "CREATE TABLE t (a, b);"
                 "CREATE INDEX i ON t (a)",
                 NULL, NULL, NULL);
    return sqlite3_exec (db , "VACUUM", NULL, NULL, NULL);
}'

# Directories are searched, skipping build trees.
mkdir -p "$tmp/tree/src" "$tmp/tree/build-x"
printf 'int x;\n' >"$tmp/tree/src/ok.c"
printf 'void f(char *a) { strcpy(a, "x"); }\n' >"$tmp/tree/build-x/gen.c"
if bash "$here/checksrc.sh" "$tmp/tree" >/dev/null; then
    echo "ok   directory"
else
    echo "FAIL directory: looked inside a build directory"
    failed=1
fi
printf 'void f(char *a) { strcat(a, "x"); }\n' >"$tmp/tree/src/bad.h"
if bash "$here/checksrc.sh" "$tmp/tree" >/dev/null; then
    echo "FAIL directory-header: missed a header"
    failed=1
else
    echo "ok   directory-header"
fi

exit $failed
