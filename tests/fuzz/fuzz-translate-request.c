/* fuzz-translate-request.c: translate_request(), translate_response() and translate_error() on
 * arbitrary JSON.
 *
 * Each input that parses as JSON is translated as a request for four models (adaptive, budget,
 * sampling-refusing, unknown), lenient and strict. A refusal must come with status 400 and a
 * message; a success must be a Messages body Anthropic could accept in shape: a model, a positive
 * max_tokens, alternating non-empty user/assistant turns, no empty text block, no marker key left
 * behind, a context with a terminated model name. The same input is also read as an upstream
 * Message and as an upstream error body, whose answers must carry OpenAI's required keys. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "fuzz.h"
#include "macro.h"
#include "translate.h"

static const char *const models[] = {"claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7",
                                     "some-unknown-model"};

static bool is_blank_text(const json_t *block)
{
    const char *type = json_string_value(json_object_get(block, "type"));
    const char *text = json_string_value(json_object_get(block, "text"));

    if (!type || strcmp(type, "text") != 0)
        return false;
    if (!text)
        return true;
    for (; *text; text++)
        if (!strchr(" \t\r\n\f\v", *text))
            return false;
    return true;
}

/* a and b hold the same JSON, numbers compared by value: translate_json_dump() writes a real that
 * is whole as "1", which reads back as an integer. */
static bool same_json(const json_t *a, const json_t *b)
{
    const char *key;
    json_t *v;
    size_t i;

    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b))
        return false;
    switch (json_typeof(a)) {
    case JSON_OBJECT:
        if (json_object_size(a) != json_object_size(b))
            return false;
        json_object_foreach ((json_t *)a, key, v)
            if (!same_json(v, json_object_get(b, key)))
                return false;
        return true;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return false;
        json_array_foreach (a, i, v)
            if (!same_json(v, json_array_get(b, i)))
                return false;
        return true;
    default:
        return json_equal(a, b);
    }
}

/* What routerd sends, printed by translate_json_dump(), reads back as the same JSON. */
static void check_dump_round_trip(const json_t *v)
{
    struct buf b = BUF_INIT(0);
    json_t *back;

    FUZZ_CHECK(translate_json_dump(v, &b) == 0);
    FUZZ_CHECK(b.data && b.data[b.len] == '\0');
    back = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    FUZZ_CHECK(back && same_json(v, back));
    json_decref(back);
    buf_free(&b, false);
}

static void check_request(const json_t *out, const struct translate_context *ctx)
{
    json_t *messages = json_object_get(out, "messages"), *turn, *block;
    const char *prev_role = NULL;
    size_t i, j;

    FUZZ_CHECK(json_is_string(json_object_get(out, "model")));
    FUZZ_CHECK(json_integer_value(json_object_get(out, "max_tokens")) > 0);
    FUZZ_CHECK(json_array_size(messages) > 0);
    FUZZ_CHECK(memchr(ctx->model, '\0', sizeof ctx->model));
    FUZZ_CHECK(memchr(ctx->prefix, '\0', sizeof ctx->prefix));
    FUZZ_CHECK(ctx->created != 0);
    json_array_foreach (messages, i, turn) {
        const char *role = json_string_value(json_object_get(turn, "role"));
        json_t *content = json_object_get(turn, "content");

        FUZZ_CHECK(role && (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0));
        FUZZ_CHECK(!prev_role || strcmp(prev_role, role) != 0);
        prev_role = role;
        FUZZ_CHECK(json_array_size(content) > 0);
        json_array_foreach (content, j, block) {
            FUZZ_CHECK(!is_blank_text(block));
            FUZZ_CHECK(!json_object_get(block, "__dualroute_param"));
            FUZZ_CHECK(!json_object_get(block, "__dualroute_orig"));
        }
    }
    json_array_foreach (json_object_get(out, "system"), j, block)
        FUZZ_CHECK(!is_blank_text(block));
    check_dump_round_trip(out);
}

static void check_response(const json_t *in)
{
    struct translate_context ctx = {.model = "m", .created = 1};
    struct usage u;
    json_t *out = translate_response(in, &ctx, &u), *choice, *message;

    if (!out)
        return;
    choice = json_array_get(json_object_get(out, "choices"), 0);
    message = json_object_get(choice, "message");
    FUZZ_CHECK(json_is_string(json_object_get(out, "id")));
    FUZZ_CHECK(json_is_integer(json_object_get(out, "created")));
    FUZZ_CHECK(json_is_string(json_object_get(choice, "finish_reason")));
    FUZZ_CHECK(json_is_null(json_object_get(choice, "logprobs")));
    FUZZ_CHECK(json_is_null(json_object_get(message, "refusal")));
    FUZZ_CHECK(json_is_string(json_object_get(message, "content")) ||
               json_is_null(json_object_get(message, "content")));
    FUZZ_CHECK(json_is_integer(json_object_get(json_object_get(out, "usage"), "total_tokens")));
    check_dump_round_trip(out);
    json_decref(out);
}

static void check_error(const json_t *in, unsigned status)
{
    struct translate_options opt = TRANSLATE_OPTIONS_DEFAULT;
    unsigned sent = 0;
    json_t *out = translate_error(status, in, "fallback", &opt, &sent);
    json_t *e = json_object_get(out, "error");

    FUZZ_CHECK(out);
    FUZZ_CHECK(json_is_string(json_object_get(e, "message")));
    FUZZ_CHECK(json_is_string(json_object_get(e, "type")));
    FUZZ_CHECK(json_object_get(e, "param") && json_object_get(e, "code"));
    FUZZ_CHECK(sent >= 100);
    json_decref(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);

    if (!in)
        return 0;
    for (size_t i = 0; i < 2 * ELEMENTSOF(models); i++) {
        struct translate_options opt = TRANSLATE_OPTIONS_DEFAULT;
        struct translate_context ctx = {};
        struct translate_error err = {};
        struct model_info m;
        json_t *out = NULL;
        int r;

        opt.strict_tool_arguments = i % 2;
        opt.auto_cache = i % 2;
        model_info_from_table(models[i / 2], &m);
        r = translate_request(in, &m, &opt, &out, &ctx, &err);
        if (r < 0) {
            FUZZ_CHECK(r == -EINVAL);
            FUZZ_CHECK(!out);
            FUZZ_CHECK(err.status == 400);
            FUZZ_CHECK(memchr(err.message, '\0', sizeof err.message) && err.message[0]);
            FUZZ_CHECK(memchr(err.param, '\0', sizeof err.param));
        } else {
            FUZZ_CHECK(r == 0 && out);
            check_request(out, &ctx);
            json_decref(out);
        }
    }
    check_dump_round_trip(in);
    check_response(in);
    check_error(in, size % 2 ? 429 : 529);
    check_error(in, 0);
    json_decref(in);
    return 0;
}
