/* test-main.c: the runner behind test.h. Each test runs in order; a failed assertion longjmps
 * back here, so one failure does not hide the others. Exit status is non-zero if any failed. */
#include <stdarg.h>

#include "test.h"

static struct test_case tests[512];
static size_t n_tests;
static jmp_buf test_jmp;

void test_register(const char *name, void (*fn)(void))
{
    if (n_tests >= sizeof tests / sizeof tests[0]) {
        fprintf(stderr, "too many tests\n");
        abort();
    }
    tests[n_tests++] = (struct test_case){name, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "  %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    longjmp(test_jmp, 1);
}

static bool selected(int argc, char **argv, const char *name)
{
    if (argc < 2)
        return true;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    unsigned passed = 0, failed = 0;

    for (size_t i = 0; i < n_tests; i++) {
        if (!selected(argc, argv, tests[i].name))
            continue;
        if (setjmp(test_jmp) == 0) {
            tests[i].fn();
            printf("ok   %s\n", tests[i].name);
            passed++;
        } else {
            printf("FAIL %s\n", tests[i].name);
            failed++;
        }
        fflush(stdout);
    }
    printf("%u passed, %u failed\n", passed, failed);
    return failed ? 1 : 0;
}
