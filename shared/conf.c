/* conf.c: the configuration-table parser.
 *
 * A table entry knows how to parse, bound-check, store and print its key, so adding a key is one
 * line in a daemon's table. Files are "key = value" per line; lines longer than 4 KiB, unknown
 * keys, repeated '=' forms that do not parse and out-of-range values are errors reported with the
 * line number, never silently ignored. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "macro.h"
#include "util.h"

#define CONF_LINE_MAX 4096
#define CONF_FILE_MAX (1024 * 1024)

_printf_(4, 5) static int conf_error(struct parse_error *err, int line, int r, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        va_start(ap, fmt);
        vsnprintf(err->text, sizeof err->text, fmt, ap);
        va_end(ap);
        err->line = line;
        err->column = 0;
    }
    return r;
}

static void *field(void *cfg, const struct conf_key *k)
{
    return (char *)cfg + k->offset;
}

static const void *cfield(const void *cfg, const struct conf_key *k)
{
    return (const char *)cfg + k->offset;
}

const struct conf_key *conf_find(const struct conf_table *t, const char *name)
{
    for (size_t i = 0; i < t->n_keys; i++)
        if (strcmp(t->keys[i].name, name) == 0)
            return &t->keys[i];
    return NULL;
}

static int conf_store(const struct conf_key *k, void *cfg, const char *value,
                      struct parse_error *err)
{
    int r;

    switch (k->type) {
    case CONF_BOOL: {
        bool b;
        r = parse_bool(value, &b);
        if (r < 0)
            return conf_error(err, 0, -EINVAL, "'%s' expects yes or no, not '%.40s'", k->name,
                              value);
        *(bool *)field(cfg, k) = b;
        return 0;
    }
    case CONF_INT: {
        int64_t v;
        r = parse_int64(value, &v);
        if (r < 0 && r != -ERANGE)
            return conf_error(err, 0, -EINVAL, "'%s' expects an integer, not '%.40s'", k->name,
                              value);
        if (r == -ERANGE || v < (int64_t)k->min || v > (int64_t)k->max)
            return conf_error(err, 0, -ERANGE, "'%s' must be between %" PRId64 " and %" PRId64,
                              k->name, (int64_t)k->min, (int64_t)k->max);
        *(int64_t *)field(cfg, k) = v;
        return 0;
    }
    case CONF_SIZE:
    case CONF_DURATION: {
        char lo[32], hi[32];
        uint64_t v;
        bool size = k->type == CONF_SIZE;

        r = size ? parse_size(value, &v) : parse_duration(value, &v);
        if (r < 0 && r != -ERANGE)
            return conf_error(err, 0, -EINVAL, "'%s' expects a %s, not '%.40s'", k->name,
                              size ? "size such as 32M" : "duration such as 30s", value);
        if (r == -ERANGE || v < k->min || v > k->max) {
            if (size) {
                format_size(k->min, lo);
                format_size(k->max, hi);
            } else {
                format_duration(k->min, lo);
                format_duration(k->max, hi);
            }
            return conf_error(err, 0, -ERANGE, "'%s' must be between %s and %s", k->name, lo, hi);
        }
        *(uint64_t *)field(cfg, k) = v;
        return 0;
    }
    case CONF_STRING: {
        /* An empty value means "unset", as it prints in conf_dump(). */
        char *s = NULL, **p = field(cfg, k);

        for (const char *c = value; *c; c++)
            if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
                return conf_error(err, 0, -EINVAL, "'%s' has a control character in its value",
                                  k->name);
        if (*value && !(s = strdup(value)))
            return conf_error(err, 0, -ENOMEM, "out of memory");
        free(*p);
        *p = s;
        return 0;
    }
    case CONF_ENUM:
        for (int i = 0; k->choices[i]; i++)
            if (strcmp(k->choices[i], value) == 0) {
                *(int *)field(cfg, k) = i;
                return 0;
            }
        return conf_error(err, 0, -EINVAL, "'%s' has no choice '%.40s'", k->name, value);
    default:
        return conf_error(err, 0, -EINVAL, "'%s' has an invalid type", k->name);
    }
}

int conf_init(const struct conf_table *t, void *cfg)
{
    for (size_t i = 0; i < t->n_keys; i++) {
        const struct conf_key *k = &t->keys[i];
        int r;

        if (!k->def) {
            if (k->type == CONF_STRING)
                *(char **)field(cfg, k) = NULL;
            continue;
        }
        r = conf_store(k, cfg, k->def, NULL);
        if (r < 0)
            return r;
    }
    return 0;
}

void conf_done(const struct conf_table *t, void *cfg)
{
    for (size_t i = 0; i < t->n_keys; i++)
        if (t->keys[i].type == CONF_STRING) {
            char **p = field(cfg, &t->keys[i]);
            *p = mfree(*p);
        }
}

int conf_set(const struct conf_table *t, void *cfg, const char *key, const char *value,
             struct parse_error *reterr)
{
    const struct conf_key *k;

    k = conf_find(t, key);
    if (!k)
        return conf_error(reterr, 0, -ENOENT, "unknown key '%.60s'", key);
    return conf_store(k, cfg, value, reterr);
}

int conf_set_or_complain(const struct conf_table *t, void *cfg, const char *program,
                         const char *source, const char *key, const char *value, FILE *f)
{
    struct parse_error err = {};
    int r;

    r = conf_set(t, cfg, key, value, &err);
    if (r < 0)
        fprintf(f, "%s: %s: %s\n", program, source, err.text);
    return r;
}

int conf_set_assignment(const struct conf_table *t, void *cfg, const char *program, const char *arg,
                        FILE *f)
{
    _cleanup_free_ char *key = strdup(arg);
    char source[64], *eq;

    if (!key)
        return -ENOMEM;
    eq = strchr(key, '=');
    if (!eq) {
        fprintf(f, "%s: --set expects KEY=VALUE, not '%s'\n", program, arg);
        return -EINVAL;
    }
    *eq = '\0';
    snprintf(source, sizeof source, "--set %.40s", key);
    return conf_set_or_complain(t, cfg, program, source, key, eq + 1, f);
}

int conf_load_file_or_default(const struct conf_table *t, void *cfg, const char *path,
                              const char *default_path, FILE *f)
{
    const char *p = path ? path : default_path;
    struct parse_error err = {};
    int r;

    r = conf_load_file(t, cfg, p, &err);
    if (r == -ENOENT && !path && err.line == 0)
        return 0;
    if (r < 0) {
        if (err.line > 0)
            fprintf(f, "%s:%d: %s\n", p, err.line, err.text);
        else
            fprintf(f, "%s: %s\n", p, err.text);
    }
    return r;
}

static char *span_trim(char *s, char *e)
{
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *e = '\0';
    return s;
}

int conf_parse_buffer(const struct conf_table *t, void *cfg, const char *data, size_t len,
                      struct parse_error *reterr)
{
    char line[CONF_LINE_MAX + 1];
    size_t pos = 0;
    int lineno = 0;

    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;
        char *s, *eq, *key, *value;
        int r;

        lineno++;
        if (n > CONF_LINE_MAX)
            return conf_error(reterr, lineno, -E2BIG, "line longer than %d bytes", CONF_LINE_MAX);
        memcpy(line, data + pos, n);
        line[n] = '\0';
        pos += n + (nl ? 1 : 0);

        if (memchr(line, '\0', n))
            return conf_error(reterr, lineno, -EINVAL, "NUL byte in line");
        s = span_trim(line, line + n);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        eq = strchr(s, '=');
        if (!eq)
            return conf_error(reterr, lineno, -EINVAL, "expected 'key = value'");
        key = span_trim(s, eq);
        value = span_trim(eq + 1, eq + 1 + strlen(eq + 1));
        if (*key == '\0')
            return conf_error(reterr, lineno, -EINVAL, "missing key before '='");
        if (value[0] == '"') {
            size_t vl = strlen(value);
            if (vl < 2 || value[vl - 1] != '"')
                return conf_error(reterr, lineno, -EINVAL, "unterminated quoted value");
            value[vl - 1] = '\0';
            value++;
        }
        r = conf_set(t, cfg, key, value, reterr);
        if (r < 0) {
            if (reterr)
                reterr->line = lineno;
            return r;
        }
    }
    return 0;
}

int conf_load_file(const struct conf_table *t, void *cfg, const char *path,
                   struct parse_error *reterr)
{
    _cleanup_close_ int fd = -1;
    struct buf b = BUF_INIT(CONF_FILE_MAX);
    char tmp[8192];
    int r = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return conf_error(reterr, 0, -errno, "cannot open: %s", strerror(errno));
    for (;;) {
        ssize_t k = read(fd, tmp, sizeof tmp);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            r = conf_error(reterr, 0, -errno, "cannot read: %s", strerror(errno));
            break;
        }
        if (k == 0)
            break;
        r = buf_append(&b, tmp, (size_t)k);
        if (r < 0) {
            r = conf_error(reterr, 0, r, "file larger than 1 MiB");
            break;
        }
    }
    if (r == 0)
        r = conf_parse_buffer(t, cfg, b.data ? b.data : "", b.len, reterr);
    buf_free(&b, false);
    return r;
}

void conf_format_value(const struct conf_key *k, const void *cfg, char *out, size_t outlen)
{
    char tmp[32];

    switch (k->type) {
    case CONF_BOOL:
        snprintf(out, outlen, "%s", *(const bool *)cfield(cfg, k) ? "yes" : "no");
        break;
    case CONF_INT:
        snprintf(out, outlen, "%" PRId64, *(const int64_t *)cfield(cfg, k));
        break;
    case CONF_SIZE:
        format_size(*(const uint64_t *)cfield(cfg, k), tmp);
        snprintf(out, outlen, "%s", tmp);
        break;
    case CONF_DURATION:
        format_duration(*(const uint64_t *)cfield(cfg, k), tmp);
        snprintf(out, outlen, "%s", tmp);
        break;
    case CONF_STRING: {
        const char *s = *(char *const *)cfield(cfg, k);
        snprintf(out, outlen, "%s", s ? s : "");
        break;
    }
    case CONF_ENUM:
        snprintf(out, outlen, "%s", k->choices[*(const int *)cfield(cfg, k)]);
        break;
    default:
        snprintf(out, outlen, "?");
    }
}

void conf_dump(const struct conf_table *t, const void *cfg, FILE *f)
{
    char v[4096];

    for (size_t i = 0; i < t->n_keys; i++) {
        const struct conf_key *k = &t->keys[i];

        conf_format_value(k, cfg, v, sizeof v);
        fprintf(f, "# %s (default: %s)\n", k->help ? k->help : k->name, k->def ? k->def : "unset");
        if (k->type != CONF_STRING)
            fprintf(f, "%s = %s\n", k->name, v);
        else if (!*(char *const *)cfield(cfg, k) && !k->def)
            fprintf(f, "#%s = \n", k->name); /* unset, and unset by default */
        else
            /* Quoted, so that padding and quotes survive; "" reads back as unset. */
            fprintf(f, "%s = \"%s\"\n", k->name, v);
    }
}
