/* fuzz-redact.c: redact_credentials() and client_key_from_headers() on arbitrary bytes.
 *
 * Invariants: the output is a NUL-terminated string with no NUL inside; no run of 12 or more key
 * characters that followed "sk-ant-" in the input survives after an "sk-ant-" in the output
 * (the tail of a key never reaches a log); header parsing returns a key inside its input. */
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "client-key.h"
#include "fuzz.h"
#include "redact.h"

static bool key_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out, *copy, *half;
    struct client_key k;

    out = redact_credentials((const char *)data, size);
    FUZZ_CHECK(out);
    for (const char *p = strstr(out, "sk-ant-"); p; p = strstr(p + 1, "sk-ant-")) {
        size_t run = 0;

        for (const char *q = p + 7; *q && key_char(*q); q++)
            run++;
        FUZZ_CHECK(run < 12);
    }
    free(out);

    /* Header values are NUL-terminated strings: split the input at its first NUL. */
    copy = malloc(size + 1);
    FUZZ_CHECK(copy);
    memcpy(copy, data, size);
    copy[size] = '\0';
    half = copy + strlen(copy);
    half = half < copy + size ? half + 1 : half;
    k = client_key_from_headers(copy, half);
    if (k.kind != CLIENT_KEY_NONE) {
        FUZZ_CHECK(k.value && k.len > 0);
        FUZZ_CHECK((k.value >= copy && k.value + k.len <= copy + size));
    }
    k = client_key_from_headers(NULL, copy);
    FUZZ_CHECK(k.kind == client_key_classify(k.value, k.len));
    free(copy);
    return 0;
}
