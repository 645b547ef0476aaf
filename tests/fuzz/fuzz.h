/* fuzz.h: the libFuzzer entry points, declared once for the fuzz targets and replay-main.c.
 *
 * A fuzz target defines LLVMFuzzerTestOneInput(); it must not keep state between calls, must
 * accept any bytes (data is not NUL-terminated) and reports a broken invariant by crashing, which
 * FUZZ_CHECK() does with a message. It may also define LLVMFuzzerInitialize(), which both
 * libFuzzer and replay-main.c call once before the first input. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(x)                                                                              \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
