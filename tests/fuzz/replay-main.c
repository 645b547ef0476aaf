/* replay-main.c: a plain main() for the fuzz targets, so their corpora run under ctest in every
 * build, with or without clang and sanitizers.
 *
 * Each argument is a file, or a directory whose regular files (not dot files, not
 * subdirectories) are taken in sorted order. Every file becomes one LLVMFuzzerTestOneInput() call,
 * on a copy in an allocation of exactly its size, so AddressSanitizer sees a read past the end as
 * it would under libFuzzer. The name is printed before the call, so a crash names its input. A
 * path that cannot be read, or no inputs at all, is a failure: an empty corpus proves nothing. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* Weak, so targets need not define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static unsigned n_inputs;

/* Reads path into a new allocation of exactly its size. */
static int read_file(const char *path, uint8_t **ret_data, size_t *ret_size)
{
    uint8_t *data = NULL;
    size_t size = 0, cap = 0;
    int fd, r = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t k;

        if (size == cap) {
            uint8_t *p;
            cap = cap ? cap * 2 : 4096;
            p = realloc(data, cap);
            if (!p) {
                r = -ENOMEM;
                break;
            }
            data = p;
        }
        k = read(fd, data + size, cap - size);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (k == 0)
            break;
        size += (size_t)k;
    }
    close(fd);
    if (r < 0) {
        free(data);
        return r;
    }

    /* Shrink to the exact size; malloc(0) still gives a pointer ASan watches. */
    uint8_t *exact = malloc(size);
    if (!exact && size > 0) {
        free(data);
        return -ENOMEM;
    }
    if (size > 0)
        memcpy(exact, data, size);
    free(data);
    *ret_data = exact;
    *ret_size = size;
    return 0;
}

static int run_file(const char *path)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int r;

    r = read_file(path, &data, &size);
    if (r < 0) {
        fprintf(stderr, "replay: cannot read '%s': %s\n", path, strerror(-r));
        return r;
    }
    printf("Running: %s (%zu bytes)\n", path, size);
    fflush(stdout);
    (void)LLVMFuzzerTestOneInput(data, size);
    free(data);
    n_inputs++;
    return 0;
}

static int skip_dot(const struct dirent *de)
{
    return de->d_name[0] != '.';
}

static int run_dir(const char *dir)
{
    struct dirent **names = NULL;
    int n, r = 0;

    n = scandir(dir, &names, skip_dot, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: cannot list '%s': %s\n", dir, strerror(errno));
        return -errno;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;

        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name) >= (int)sizeof path) {
            fprintf(stderr, "replay: path too long: '%s/%s'\n", dir, names[i]->d_name);
            r = -ENAMETOOLONG;
        } else if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            int k = run_file(path);
            if (k < 0)
                r = k;
        }
        free(names[i]);
    }
    free(names);
    return r;
}

int main(int argc, char **argv)
{
    int failed = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);

    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "replay: '%s': %s\n", argv[i], strerror(errno));
            failed = 1;
        } else if (S_ISDIR(st.st_mode) ? run_dir(argv[i]) < 0 : run_file(argv[i]) < 0)
            failed = 1;
    }

    printf("replay: %u inputs\n", n_inputs);
    if (n_inputs == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    return failed;
}
