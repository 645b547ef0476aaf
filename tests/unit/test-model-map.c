/* test-model-map.c: every mapping rule in its order, and every way a .router-mappings.json file
 * can be refused. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "macro.h"
#include "model-map.h"
#include "test.h"
#include "util.h"

#define HAIKU "claude-haiku-4-5"
#define SONNET "claude-sonnet-4-6"
#define OPUS "claude-opus-4-7"

static int parse_str(struct model_map *m, const char *json, struct parse_error *err)
{
    return model_map_parse(m, json, strlen(json), err);
}

/* Resolves name and checks both the result and the reason. */
#define ASSERT_MAPS(m, name, expected, why)                                                        \
    do {                                                                                           \
        enum model_map_reason _why = _MODEL_MAP_REASON_INVALID;                                    \
        ASSERT_STREQ(model_map_resolve((m), (name), &_why), (expected));                           \
        ASSERT_EQ(_why, (why));                                                                    \
    } while (0)

TEST(patterns_sonnet)
{
    ASSERT_MAPS(NULL, "gpt-4o", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "gpt-4", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "gpt-4o-mini", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "gpt-4-turbo", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "gpt-5", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "gpt-5.1", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "o3-mini", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "o1-mini", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "o3-mini-high", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "o4-mini", SONNET, MODEL_MAP_PATTERN_SONNET);
    /* Only o1 and o3 are opus: o4, o10, and names that merely start with "o1"/"o3". */
    ASSERT_MAPS(NULL, "o4", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "o10", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "o1x", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "o3preview", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "gpt-4o1", SONNET, MODEL_MAP_PATTERN_SONNET);
    /* "-pr", "-ma" and "pro" without the dash are not the patterns. */
    ASSERT_MAPS(NULL, "gpt-4-preview", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "gpt-4-mathematics", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "gptpro", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "nano", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "gpt3", SONNET, MODEL_MAP_PATTERN_SONNET);
    /* Names that are nearly Claude names or aliases. */
    ASSERT_MAPS(NULL, "claude", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "claude3", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "sonnets", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "opus-", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "haiku ", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, NULL, SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_MAPS(NULL, "llama-3.1-70b", SONNET, MODEL_MAP_PATTERN_SONNET);
}

TEST(patterns_haiku)
{
    ASSERT_MAPS(NULL, "gpt-3.5-turbo", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    ASSERT_MAPS(NULL, "gpt-3.5-turbo-16k", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    ASSERT_MAPS(NULL, "gpt-3", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    ASSERT_MAPS(NULL, "text-gpt-3-davinci", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    ASSERT_MAPS(NULL, "gpt-4.1-nano", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    ASSERT_MAPS(NULL, "gpt-5-nano", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    ASSERT_MAPS(NULL, "gpt-5-nano-2025-08-07", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    ASSERT_MAPS(NULL, "-nano", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    /* Case does not matter to the patterns. */
    ASSERT_MAPS(NULL, "GPT-3.5-Turbo", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    ASSERT_MAPS(NULL, "GPT-4.1-NANO", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    /* A small model marker wins over a large one. */
    ASSERT_MAPS(NULL, "gpt-3.5-pro", HAIKU, MODEL_MAP_PATTERN_HAIKU);
    ASSERT_MAPS(NULL, "o3-nano", HAIKU, MODEL_MAP_PATTERN_HAIKU);
}

TEST(patterns_opus)
{
    ASSERT_MAPS(NULL, "o1", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "o3", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "O3", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "o1-preview", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "o1-2024-12-17", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "o3-pro", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "o3-deep-research", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "gpt-5-pro", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "gpt-5-pro-2025-10-06", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "gemini-2.5-pro", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "qwen-max", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "gemini-ultra", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "GPT-5-PRO", OPUS, MODEL_MAP_PATTERN_OPUS);
    ASSERT_MAPS(NULL, "Gemini-Ultra", OPUS, MODEL_MAP_PATTERN_OPUS);
    /* "-mini" keeps o1/o3 off opus, but not an explicit -pro/-max/-ultra. */
    ASSERT_MAPS(NULL, "gpt-5-pro-mini", OPUS, MODEL_MAP_PATTERN_OPUS);
}

TEST(claude_names_pass_unchanged)
{
    ASSERT_MAPS(NULL, "claude-opus-4-7", "claude-opus-4-7", MODEL_MAP_CLAUDE);
    ASSERT_MAPS(NULL, "claude-sonnet-4-5", "claude-sonnet-4-5", MODEL_MAP_CLAUDE);
    ASSERT_MAPS(NULL, "claude-3-5-haiku-20241022", "claude-3-5-haiku-20241022", MODEL_MAP_CLAUDE);
    /* Patterns do not look inside Claude names. */
    ASSERT_MAPS(NULL, "claude-nano", "claude-nano", MODEL_MAP_CLAUDE);
    ASSERT_MAPS(NULL, "claude-pro", "claude-pro", MODEL_MAP_CLAUDE);
    ASSERT_MAPS(NULL, "claude-", "claude-", MODEL_MAP_CLAUDE);
    /* The prefix ignores case, and the name goes on as the client wrote it. */
    ASSERT_MAPS(NULL, "Claude-Opus-4-7", "Claude-Opus-4-7", MODEL_MAP_CLAUDE);

    /* The result is the caller's own string, not a copy. */
    const char *name = "claude-sonnet-4-6";
    ASSERT_TRUE(model_map_resolve(NULL, name, NULL) == name);
}

TEST(aliases)
{
    ASSERT_MAPS(NULL, "haiku", HAIKU, MODEL_MAP_ALIAS);
    ASSERT_MAPS(NULL, "sonnet", SONNET, MODEL_MAP_ALIAS);
    ASSERT_MAPS(NULL, "opus", OPUS, MODEL_MAP_ALIAS);
    ASSERT_MAPS(NULL, "Opus", OPUS, MODEL_MAP_ALIAS);
    ASSERT_MAPS(NULL, "SONNET", SONNET, MODEL_MAP_ALIAS);
}

TEST(default_model)
{
    _cleanup_(model_map_done) struct model_map m = {};

    ASSERT_OK(model_map_set_default(&m, "claude-opus-4-1"));
    ASSERT_STREQ(m.default_model, "claude-opus-4-1");

    /* It beats every pattern... */
    ASSERT_MAPS(&m, "gpt-4o", "claude-opus-4-1", MODEL_MAP_DEFAULT_ENV);
    ASSERT_MAPS(&m, "gpt-3.5-turbo", "claude-opus-4-1", MODEL_MAP_DEFAULT_ENV);
    ASSERT_MAPS(&m, "gpt-4.1-nano", "claude-opus-4-1", MODEL_MAP_DEFAULT_ENV);
    ASSERT_MAPS(&m, "o3-pro", "claude-opus-4-1", MODEL_MAP_DEFAULT_ENV);
    ASSERT_MAPS(&m, "", "claude-opus-4-1", MODEL_MAP_DEFAULT_ENV);
    /* ...but not Claude names or aliases. */
    ASSERT_MAPS(&m, "claude-haiku-4-5", "claude-haiku-4-5", MODEL_MAP_CLAUDE);
    ASSERT_MAPS(&m, "haiku", HAIKU, MODEL_MAP_ALIAS);
    ASSERT_MAPS(&m, "sonnet", SONNET, MODEL_MAP_ALIAS);

    /* Replacing it, and refusing what is not a model id without touching the old value. */
    ASSERT_OK(model_map_set_default(&m, "anthropic.claude-sonnet-4-5-20250929-v1:0"));
    ASSERT_MAPS(&m, "gpt-4o", "anthropic.claude-sonnet-4-5-20250929-v1:0", MODEL_MAP_DEFAULT_ENV);
    ASSERT_ERROR(model_map_set_default(&m, "claude sonnet"), EINVAL);
    ASSERT_ERROR(model_map_set_default(&m, "claude-sonnet-4-6\n"), EINVAL);
    ASSERT_ERROR(model_map_set_default(&m, "a/b"), EINVAL);
    ASSERT_STREQ(m.default_model, "anthropic.claude-sonnet-4-5-20250929-v1:0");

    /* "" and NULL unset it: the patterns are back. */
    ASSERT_OK(model_map_set_default(&m, ""));
    ASSERT_NULL(m.default_model);
    ASSERT_MAPS(&m, "gpt-4o", SONNET, MODEL_MAP_PATTERN_SONNET);
    ASSERT_OK(model_map_set_default(&m, "claude-opus-4-7@20260101"));
    ASSERT_OK(model_map_set_default(&m, NULL));
    ASSERT_NULL(m.default_model);
}

TEST(custom_beats_everything)
{
    _cleanup_(model_map_done) struct model_map m = {};

    ASSERT_OK(parse_str(&m,
                        "{\"gpt-4o\": \"claude-haiku-4-5\","
                        " \"claude-opus-4-7\": \"claude-sonnet-4-6\","
                        " \"opus\": \"claude-opus-4-1\","
                        " \"o3-pro\": \"claude-sonnet-4-5\","
                        " \"gpt-3.5-turbo\": \"claude-opus-4-7\","
                        " \"my model ü\": \"my.model-id_2:0@x\"}",
                        NULL));
    ASSERT_OK(model_map_set_default(&m, "claude-3-7-sonnet-20250219"));
    ASSERT_EQ(m.n_entries, 6);

    ASSERT_MAPS(&m, "gpt-4o", HAIKU, MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "claude-opus-4-7", SONNET, MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "opus", "claude-opus-4-1", MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "o3-pro", "claude-sonnet-4-5", MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "gpt-3.5-turbo", OPUS, MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "my model ü", "my.model-id_2:0@x", MODEL_MAP_CUSTOM);

    /* Custom names match exactly, case included; what does not match falls through. */
    ASSERT_MAPS(&m, "GPT-4o", "claude-3-7-sonnet-20250219", MODEL_MAP_DEFAULT_ENV);
    ASSERT_MAPS(&m, "Opus", OPUS, MODEL_MAP_ALIAS);
    ASSERT_MAPS(&m, "sonnet", SONNET, MODEL_MAP_ALIAS);
    ASSERT_MAPS(&m, "claude-opus-4-1", "claude-opus-4-1", MODEL_MAP_CLAUDE);
    ASSERT_MAPS(&m, "gpt-4o ", "claude-3-7-sonnet-20250219", MODEL_MAP_DEFAULT_ENV);
}

TEST(parse_replaces_mappings)
{
    _cleanup_(model_map_done) struct model_map m = {};
    struct parse_error err = {};

    ASSERT_OK(model_map_set_default(&m, "claude-opus-4-7"));
    ASSERT_OK(parse_str(&m, "{\"a\": \"claude-haiku-4-5\", \"b\": \"claude-haiku-4-5\"}", NULL));
    ASSERT_EQ(m.n_entries, 2);

    /* A second parse replaces the mappings and keeps the default model. */
    ASSERT_OK(parse_str(&m, "{\"c\": \"claude-sonnet-4-6\"}", NULL));
    ASSERT_EQ(m.n_entries, 1);
    ASSERT_MAPS(&m, "c", SONNET, MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "a", OPUS, MODEL_MAP_DEFAULT_ENV);
    ASSERT_STREQ(m.default_model, "claude-opus-4-7");

    /* A failed parse leaves everything as it was. */
    ASSERT_ERROR(parse_str(&m, "{\"d\": \"claude-haiku-4-5\", \"e\": 1}", &err), EINVAL);
    ASSERT_EQ(m.n_entries, 1);
    ASSERT_MAPS(&m, "c", SONNET, MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "d", OPUS, MODEL_MAP_DEFAULT_ENV);

    /* An empty object is no mappings, not an error. */
    ASSERT_OK(parse_str(&m, " {\n}\n", NULL));
    ASSERT_EQ(m.n_entries, 0);
    ASSERT_NULL(m.entries);
    ASSERT_MAPS(&m, "c", OPUS, MODEL_MAP_DEFAULT_ENV);

    /* model_map_done() leaves an empty map that can be filled again. */
    model_map_done(&m);
    ASSERT_EQ(m.n_entries, 0);
    ASSERT_NULL(m.default_model);
    ASSERT_OK(parse_str(&m, "{\"x\": \"claude-haiku-4-5\"}", NULL));
    ASSERT_MAPS(&m, "x", HAIKU, MODEL_MAP_CUSTOM);
    model_map_done(NULL);
}

/* Parses json into a map that already holds one mapping, and checks the error, its text and
 * its line, and that the map is unchanged. */
static void check_bad(const char *json, size_t len, int expected, const char *text_part, int line)
{
    _cleanup_(model_map_done) struct model_map m = {};
    struct parse_error err = {.line = -1};

    ASSERT_OK(parse_str(&m, "{\"keep\": \"claude-haiku-4-5\"}", NULL));
    ASSERT_EQ(model_map_parse(&m, json, len, &err), expected);
    if (!strstr(err.text, text_part))
        test_fail(__FILE__, __LINE__, "error text '%s' lacks '%s'", err.text, text_part);
    ASSERT_EQ(err.line, line);
    ASSERT_EQ(m.n_entries, 1);
    ASSERT_STREQ(m.entries[0].name, "keep");
}

#define CHECK_BAD(json, expected, text_part, line)                                                 \
    check_bad((json), strlen(json), (expected), (text_part), (line))

TEST(bad_json)
{
    CHECK_BAD("", -EINVAL, "invalid JSON", 1);
    CHECK_BAD("   \n", -EINVAL, "invalid JSON", 2);
    CHECK_BAD("{\"a\": \"claude-haiku-4-5\",\n}", -EINVAL, "invalid JSON", 2);
    CHECK_BAD("{\"a\": \"claude-haiku-4-5\"} {}", -EINVAL, "invalid JSON", 1);
    CHECK_BAD("{\"a\": \"claude-haiku-4-5\"", -EINVAL, "invalid JSON", 1);
    CHECK_BAD("{'a': 'b'}", -EINVAL, "invalid JSON", 1);
    /* A repeated name is an error, not "the last one wins". */
    CHECK_BAD("{\"a\": \"claude-haiku-4-5\",\n \"a\": \"claude-opus-4-7\"}", -EINVAL, "duplicate",
              2);
    /* Invalid UTF-8 and NUL inside a name. */
    CHECK_BAD("{\"\xff\": \"claude-haiku-4-5\"}", -EINVAL, "invalid JSON", 1);
    CHECK_BAD("{\"a\\u0000b\": \"claude-haiku-4-5\"}", -EINVAL, "invalid JSON", 1);
    check_bad("{\"a\": \"x\"}\0", 12, -EINVAL, "invalid JSON", 1);
}

TEST(bad_not_an_object)
{
    CHECK_BAD("[]", -EINVAL, "expected a JSON object", 0);
    CHECK_BAD("[{\"a\": \"claude-haiku-4-5\"}]", -EINVAL, "found an array", 0);
    /* Bare values are not JSON documents to jansson's default decoder. */
    CHECK_BAD("\"claude-haiku-4-5\"", -EINVAL, "invalid JSON", 1);
    CHECK_BAD("42", -EINVAL, "invalid JSON", 1);
    CHECK_BAD("null", -EINVAL, "invalid JSON", 1);
}

TEST(bad_values)
{
    CHECK_BAD("{\"gpt-4o\": 1}", -EINVAL, "mapping for 'gpt-4o' is a number", 0);
    CHECK_BAD("{\"gpt-4o\": null}", -EINVAL, "mapping for 'gpt-4o' is null", 0);
    CHECK_BAD("{\"gpt-4o\": true}", -EINVAL, "is a boolean", 0);
    CHECK_BAD("{\"gpt-4o\": [\"claude-haiku-4-5\"]}", -EINVAL, "is an array", 0);
    CHECK_BAD("{\"gpt-4o\": {\"model\": \"claude-haiku-4-5\"}}", -EINVAL, "is an object", 0);
    CHECK_BAD("{\"gpt-4o\": \"\"}", -EINVAL, "empty model id", 0);
    CHECK_BAD("{\"gpt-4o\": \"claude haiku\"}", -EINVAL,
              "'claude haiku' is not a model id (a space", 0);
    CHECK_BAD("{\"gpt-4o\": \"claude/haiku\"}", -EINVAL, "('/'", 0);
    CHECK_BAD("{\"gpt-4o\": \"claude-haiku-4-5\\n\"}", -EINVAL, "byte 0x0a", 0);
    CHECK_BAD("{\"gpt-4o\": \"claude-h\u00e4iku\"}", -EINVAL, "byte 0xc3", 0);
    CHECK_BAD("{\"gpt-4o\": \"claude\\u0000\"}", -EINVAL, "invalid JSON", 1);
}

TEST(bad_names)
{
    char json[512], name[256];

    CHECK_BAD("{\"\": \"claude-haiku-4-5\"}", -EINVAL, "empty name", 0);
    CHECK_BAD("{\"gpt\\n4o\": \"claude-haiku-4-5\"}", -EINVAL,
              "mapping name 'gpt?4o' contains a control character", 0);
    CHECK_BAD("{\"gpt\\u007f\": \"claude-haiku-4-5\"}", -EINVAL, "control character", 0);

    /* 200 bytes is the longest name; 201 is refused, and the message shows only its start. */
    memset(name, 'n', 200);
    name[200] = '\0';
    snprintf(json, sizeof json, "{\"%s\": \"claude-haiku-4-5\"}", name);
    {
        _cleanup_(model_map_done) struct model_map m = {};
        ASSERT_OK(parse_str(&m, json, NULL));
        ASSERT_MAPS(&m, name, HAIKU, MODEL_MAP_CUSTOM);
    }
    snprintf(json, sizeof json, "{\"%sn\": \"claude-haiku-4-5\"}", name);
    CHECK_BAD(json, -EINVAL, "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...' is longer than 200", 0);

    /* The same for model ids. */
    snprintf(json, sizeof json, "{\"a\": \"%s\"}", name);
    {
        _cleanup_(model_map_done) struct model_map m = {};
        ASSERT_OK(parse_str(&m, json, NULL));
    }
    snprintf(json, sizeof json, "{\"a\": \"%sn\"}", name);
    CHECK_BAD(json, -EINVAL, "model id longer than 200", 0);

    /* A long name with multi-byte characters is cut at a character boundary in the message:
     * 39 ASCII bytes, then "é" (2 bytes) straddling byte 40. */
    snprintf(json, sizeof json, "{\"%.39s\u00e9\u00e9\u00e9\": 1}",
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    CHECK_BAD(json, -EINVAL, "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is a number", 0);
}

static char *many_entries(size_t n)
{
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);

    ASSERT_NOT_NULL(f);
    fputc('{', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\"model-%zu\": \"claude-haiku-4-5\"", i ? ",\n" : "", i);
    fputc('}', f);
    ASSERT_EQ(fclose(f), 0);
    return s;
}

TEST(too_many_entries)
{
    _cleanup_(model_map_done) struct model_map m = {};
    _cleanup_free_ char *ok = many_entries(1000), *bad = many_entries(1001);
    struct parse_error err = {};

    ASSERT_OK(parse_str(&m, ok, NULL));
    ASSERT_EQ(m.n_entries, 1000);
    ASSERT_MAPS(&m, "model-0", HAIKU, MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "model-999", HAIKU, MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "model-1000", SONNET, MODEL_MAP_PATTERN_SONNET);
    /* Sorted, so binary search finds every one. */
    for (size_t i = 1; i < m.n_entries; i++)
        ASSERT_TRUE(strcmp(m.entries[i - 1].name, m.entries[i].name) < 0);

    ASSERT_ERROR(parse_str(&m, bad, &err), E2BIG);
    ASSERT_STREQ(err.text, "1001 mappings, at most 1000 are allowed");
    ASSERT_EQ(m.n_entries, 1000);
}

TEST(oversize_buffer)
{
    _cleanup_(model_map_done) struct model_map m = {};
    struct parse_error err = {};
    size_t n = MODEL_MAP_FILE_MAX + 1;
    _cleanup_free_ char *big = malloc(n);

    ASSERT_NOT_NULL(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    ASSERT_ERROR(model_map_parse(&m, big, n, &err), EFBIG);
    ASSERT_STREQ(err.text, "larger than 1 MiB");
    /* Exactly 1 MiB is fine. */
    big[n - 2] = '}';
    ASSERT_OK(model_map_parse(&m, big, n - 1, NULL));
}

/* A temporary directory with the test's files, removed at the end. */
struct tmpdir {
    char path[64];
};

static void tmpdir_done(struct tmpdir *d)
{
    char cmd[128];

    if (d->path[0] == '\0')
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->path);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", d->path);
}

static void tmpdir_make(struct tmpdir *d)
{
    snprintf(d->path, sizeof d->path, "/tmp/test-model-map.XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(d->path));
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "we");

    ASSERT_NOT_NULL(f);
    ASSERT_EQ(fwrite(data, 1, len, f), len);
    ASSERT_EQ(fclose(f), 0);
}

static void write_str(const char *path, const char *s)
{
    write_file(path, s, strlen(s));
}

TEST(load_file)
{
    _cleanup_(tmpdir_done) struct tmpdir d = {};
    _cleanup_(model_map_done) struct model_map m = {};
    struct parse_error err = {};
    char path[128], expected[256];

    tmpdir_make(&d);
    snprintf(path, sizeof path, "%s/.router-mappings.json", d.path);

    /* Missing: -ENOENT, for the caller to treat as "no mappings". */
    ASSERT_ERROR(model_map_load_file(&m, path, &err), ENOENT);
    snprintf(expected, sizeof expected, "%s: cannot open: %s", path, strerror(ENOENT));
    ASSERT_STREQ(err.text, expected);
    ASSERT_EQ(m.n_entries, 0);

    /* anthropic-max-router's example file. */
    write_str(path, "{\n  \"gpt-5\": \"claude-sonnet-4-5\",\n  \"gpt-4\": \"claude-opus-4-5\",\n"
                    "  \"gpt-3.5-turbo\": \"claude-haiku-4-5\"\n}\n");
    ASSERT_OK(model_map_load_file(&m, path, NULL));
    ASSERT_EQ(m.n_entries, 3);
    ASSERT_MAPS(&m, "gpt-5", "claude-sonnet-4-5", MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "gpt-4", "claude-opus-4-5", MODEL_MAP_CUSTOM);
    ASSERT_MAPS(&m, "gpt-3.5-turbo", "claude-haiku-4-5", MODEL_MAP_CUSTOM);

    /* An empty file is not an object; the error names the file, line and column. */
    write_str(path, "");
    ASSERT_ERROR(model_map_load_file(&m, path, &err), EINVAL);
    snprintf(expected, sizeof expected, "%s:1:0: invalid JSON: ", path);
    ASSERT_TRUE(startswith(err.text, expected));
    ASSERT_EQ(err.line, 1);
    ASSERT_EQ(m.n_entries, 3);

    write_str(path, "{\n  \"gpt-5\": \"claude-sonnet-4-5\"\n  \"gpt-4\": \"x\"\n}\n");
    ASSERT_ERROR(model_map_load_file(&m, path, &err), EINVAL);
    snprintf(expected, sizeof expected, "%s:3:", path);
    ASSERT_TRUE(startswith(err.text, expected));
    ASSERT_EQ(err.line, 3);

    write_str(path, "[\"claude-haiku-4-5\"]");
    ASSERT_ERROR(model_map_load_file(&m, path, &err), EINVAL);
    snprintf(expected, sizeof expected,
             "%s: expected a JSON object of \"name\": \"model-id\" pairs, found an array", path);
    ASSERT_STREQ(err.text, expected);
    ASSERT_EQ(err.line, 0);

    write_str(path, "{\"gpt-4o\": 4}");
    ASSERT_ERROR(model_map_load_file(&m, path, &err), EINVAL);
    snprintf(expected, sizeof expected,
             "%s: mapping for 'gpt-4o' is a number, expected a string with a model id", path);
    ASSERT_STREQ(err.text, expected);

    write_str(path, "{\"gpt-4o\": \"claude sonnet\"}");
    ASSERT_ERROR(model_map_load_file(&m, path, &err), EINVAL);
    ASSERT_TRUE(strstr(err.text, "'claude sonnet' is not a model id"));

    /* All of it was refused: the example file's mappings are still there. */
    ASSERT_EQ(m.n_entries, 3);
    ASSERT_MAPS(&m, "gpt-4", "claude-opus-4-5", MODEL_MAP_CUSTOM);

    /* A directory or a FIFO is not a mappings file (and the FIFO does not block). */
    ASSERT_ERROR(model_map_load_file(&m, d.path, &err), EINVAL);
    snprintf(expected, sizeof expected, "%s: not a regular file", d.path);
    ASSERT_STREQ(err.text, expected);
    snprintf(path, sizeof path, "%s/fifo", d.path);
    ASSERT_EQ(mkfifo(path, 0600), 0);
    ASSERT_ERROR(model_map_load_file(&m, path, &err), EINVAL);
    ASSERT_TRUE(strstr(err.text, "not a regular file"));
}

TEST(load_file_oversize)
{
    _cleanup_(tmpdir_done) struct tmpdir d = {};
    _cleanup_(model_map_done) struct model_map m = {};
    _cleanup_free_ char *big = NULL;
    struct parse_error err = {};
    size_t n = MODEL_MAP_FILE_MAX + 1;
    char path[128], expected[256];

    tmpdir_make(&d);
    snprintf(path, sizeof path, "%s/big.json", d.path);
    big = malloc(n);
    ASSERT_NOT_NULL(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    write_file(path, big, n);
    ASSERT_ERROR(model_map_load_file(&m, path, &err), EFBIG);
    snprintf(expected, sizeof expected, "%s: larger than 1 MiB", path);
    ASSERT_STREQ(err.text, expected);

    /* Exactly 1 MiB is fine. */
    big[1] = '{';
    write_file(path, big + 1, n - 1);
    ASSERT_OK(model_map_load_file(&m, path, &err));
    ASSERT_EQ(m.n_entries, 0);
}

TEST(load_file_long_path)
{
    _cleanup_(tmpdir_done) struct tmpdir d = {};
    _cleanup_(model_map_done) struct model_map m = {};
    struct parse_error err = {};
    char path[512];

    tmpdir_make(&d);
    /* A path longer than 60 bytes is shown as ".../basename", so the problem still fits. */
    snprintf(path, sizeof path, "%s/%s", d.path,
             "a-directory-with-a-rather-long-name-for-testing-purposes");
    ASSERT_EQ(mkdir(path, 0700), 0);
    snprintf(path + strlen(path), sizeof path - strlen(path), "/.router-mappings.json");
    write_str(path, "{\"gpt-4o\": \"claude-haiku-4-5\", \"gpt-4.1\": \"claude opus\"}");
    ASSERT_ERROR(model_map_load_file(&m, path, &err), EINVAL);
    ASSERT_STREQ(err.text, ".../.router-mappings.json: mapping for 'gpt-4.1': 'claude opus' is "
                           "not a model id (a space; allowed: A-Z a-z 0-9 . _ : @ -)");

    /* When even that does not fit, the text is cut with "...". */
    snprintf(path, sizeof path, "%s/%s", d.path,
             "a-file-with-a-long-name-that-is-there-to-fill-the-error-message-up.json");
    write_str(path, "{\"gpt-4.1-with-a-long-model-name-for-testing-the-cut\": \"claude opus\"}");
    ASSERT_ERROR(model_map_load_file(&m, path, &err), EINVAL);
    ASSERT_EQ(strlen(err.text), sizeof err.text - 1);
    ASSERT_TRUE(startswith(err.text,
                           ".../a-file-with-a-long-name-that-is-there-to-fill-the-error-mess: "
                           "mapping for 'gpt-4.1-with-a-long-model-name-for-testi...'"));
    ASSERT_STREQ(err.text + strlen(err.text) - 3, "...");
}

TEST(error_text_is_one_line)
{
    _cleanup_(model_map_done) struct model_map m = {};
    struct parse_error err = {};

    /* jansson quotes the input near the error; a control character there becomes '?'. */
    ASSERT_ERROR(parse_str(&m, "{\"a\": x\ty\n}", &err), EINVAL);
    for (const char *p = err.text; *p; p++)
        ASSERT_TRUE((unsigned char)*p >= 0x20 && *p != 0x7f);
}

struct seen {
    char text[1024];
    size_t n;
};

static void collect(const char *alias, const char *target, void *userdata)
{
    struct seen *s = userdata;
    size_t len = strlen(s->text);

    snprintf(s->text + len, sizeof s->text - len, "%s=%s;", alias, target);
    s->n++;
}

TEST(aliases_listing)
{
    _cleanup_(model_map_done) struct model_map m = {};
    struct seen s = {};

    model_map_aliases(NULL, collect, &s);
    ASSERT_STREQ(s.text, "haiku=" HAIKU ";sonnet=" SONNET ";opus=" OPUS ";");

    /* Custom mappings first, sorted; a custom "sonnet" shadows the built-in one. */
    ASSERT_OK(parse_str(&m,
                        "{\"zeta\": \"claude-opus-4-1\", \"sonnet\": \"claude-sonnet-4-5\","
                        " \"alpha\": \"claude-haiku-4-5\"}",
                        NULL));
    s = (struct seen){};
    model_map_aliases(&m, collect, &s);
    ASSERT_STREQ(s.text, "alpha=claude-haiku-4-5;sonnet=claude-sonnet-4-5;zeta=claude-opus-4-1;"
                         "haiku=" HAIKU ";opus=" OPUS ";");
    ASSERT_EQ(s.n, 5);
}

TEST(id_is_valid)
{
    ASSERT_TRUE(model_map_id_is_valid("claude-opus-4-7"));
    ASSERT_TRUE(model_map_id_is_valid("claude-opus-4-7@20260101"));
    ASSERT_TRUE(model_map_id_is_valid("us.anthropic.claude-sonnet-4-5-20250929-v1:0"));
    ASSERT_TRUE(model_map_id_is_valid("A_Z"));
    ASSERT_FALSE(model_map_id_is_valid(NULL));
    ASSERT_FALSE(model_map_id_is_valid(""));
    ASSERT_FALSE(model_map_id_is_valid("a b"));
    ASSERT_FALSE(model_map_id_is_valid("a/b"));
    ASSERT_FALSE(model_map_id_is_valid("a\"b"));
    ASSERT_FALSE(model_map_id_is_valid("\xc3\xa9"));
}

TEST(reason_to_string)
{
    ASSERT_STREQ(model_map_reason_to_string(MODEL_MAP_CUSTOM), "custom");
    ASSERT_STREQ(model_map_reason_to_string(MODEL_MAP_CLAUDE), "claude");
    ASSERT_STREQ(model_map_reason_to_string(MODEL_MAP_ALIAS), "alias");
    ASSERT_STREQ(model_map_reason_to_string(MODEL_MAP_DEFAULT_ENV), "default-model");
    ASSERT_STREQ(model_map_reason_to_string(MODEL_MAP_PATTERN_HAIKU), "pattern-haiku");
    ASSERT_STREQ(model_map_reason_to_string(MODEL_MAP_PATTERN_OPUS), "pattern-opus");
    ASSERT_STREQ(model_map_reason_to_string(MODEL_MAP_PATTERN_SONNET), "pattern-sonnet");
    ASSERT_NULL(model_map_reason_to_string(_MODEL_MAP_REASON_MAX));
    ASSERT_NULL(model_map_reason_to_string(_MODEL_MAP_REASON_INVALID));
}
