/* translate-response.c: Anthropic answers -> OpenAI answers (TRANSLATION.md 3.1-3.3, 3.5).
 *
 * translate_response() turns a complete Message into a chat.completion that validates against
 * OpenAI's CreateChatCompletionResponse: every required key present, logprobs and refusal null,
 * system_fingerprint left out (it is not nullable), content null rather than "" when there is no
 * text. Thinking goes to the reasoning_content and thinking_blocks extensions, never into content.
 * The model echoed is the one the client asked for (ctx->model), not the upstream's snapshot name.
 *
 * translate_error() turns an upstream error answer into {"error":{message,type,param,code}} with
 * the codes of the 3.5 table; the stream translator uses it for mid-stream error events too.
 *
 * The helpers declared at the bottom of translate.h (finish reasons, usage, JSON.stringify-like
 * serialisation) live here because both the response and the stream translators need them.
 * Pure: no IO, no globals, no logging. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "http-error.h"
#include "macro.h"
#include "translate.h"

/* The text, reasoning and serialised-arguments buffers of one answer: no Message routerd accepts
 * comes near it (the upstream body itself is capped below this). */
#define RESPONSE_TEXT_MAX (64u * 1024 * 1024)

const char *translate_finish_reason(const char *stop_reason, const struct translate_context *ctx)
{
    if (!stop_reason)
        return "stop";
    if (streq(stop_reason, "tool_use")) {
        if (ctx && ctx->json_tool[0])
            return "stop";
        return ctx && ctx->legacy_functions ? "function_call" : "tool_calls";
    }
    if (streq(stop_reason, "max_tokens") || streq(stop_reason, "model_context_window_exceeded") ||
        streq(stop_reason, "compaction"))
        return "length";
    if (streq(stop_reason, "refusal"))
        return "content_filter";
    /* end_turn, stop_sequence, pause_turn, and any future value: never a raw Anthropic value. */
    return "stop";
}

static int64_t usage_int(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    if (json_is_integer(v) && json_integer_value(v) >= 0)
        return json_integer_value(v);
    if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) < 9e18)
        return (int64_t)json_real_value(v);
    return 0;
}

json_t *translate_usage_json(const json_t *usage, bool always_reasoning)
{
    int64_t input = usage_int(usage, "input_tokens");
    int64_t cache_read = usage_int(usage, "cache_read_input_tokens");
    int64_t cache_creation = usage_int(usage, "cache_creation_input_tokens");
    int64_t output = usage_int(usage, "output_tokens");
    json_t *details = json_object_get(usage, "output_tokens_details");
    json_t *thinking = json_object_get(details, "thinking_tokens");
    int64_t prompt = input + cache_read + cache_creation;
    json_auto_t *u = NULL;

    u = json_pack("{s:I,s:I,s:I,s:{s:I,s:I}}", "prompt_tokens", (json_int_t)prompt,
                  "completion_tokens", (json_int_t)output, "total_tokens",
                  (json_int_t)(prompt + output), "prompt_tokens_details", "cached_tokens",
                  (json_int_t)cache_read, "cache_write_tokens", (json_int_t)cache_creation);
    if (!u)
        return NULL;
    if (thinking || always_reasoning) {
        int64_t reasoning = usage_int(details, "thinking_tokens");
        if (json_object_set_new(u, "completion_tokens_details",
                                json_pack("{s:I}", "reasoning_tokens", (json_int_t)reasoning)) < 0)
            return NULL;
    }
    return TAKE_PTR(u);
}

void translate_usage_merge(struct usage *u, const json_t *usage)
{
    static const struct {
        const char *key;
        size_t offset;
    } fields[] = {
        {"input_tokens", offsetof(struct usage, input_tokens)},
        {"output_tokens", offsetof(struct usage, output_tokens)},
        {"cache_read_input_tokens", offsetof(struct usage, cache_read_tokens)},
        {"cache_creation_input_tokens", offsetof(struct usage, cache_creation_tokens)},
    };

    if (!json_is_object(usage))
        return;
    for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
        json_t *v = json_object_get(usage, fields[i].key);
        if (json_is_integer(v) || json_is_real(v)) {
            int64_t *dst = (int64_t *)((char *)u + fields[i].offset);
            *dst = usage_int(usage, fields[i].key);
        }
    }
    u->seen = true;
}

/* The shortest "%.*g" form that reads back as the same double, as JSON.stringify prints. */
static int dump_real(double d, struct buf *out)
{
    char tmp[64];

    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    return buf_append_str(out, tmp);
}

/* The bytes a JSON string literal must escape: the quote, the backslash and the C0 controls. */
static const bool json_escaped[256] = {
    [0x00 ... 0x1f] = true,
    ['"'] = true,
    ['\\'] = true,
};

int translate_json_dump_string(const char *s, size_t n, struct buf *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    int r;

    /* Room for the literal as it is when nothing needs escaping; each escape asks for more. */
    r = buf_reserve(out, n + 2);
    if (r < 0)
        return r;
    out->data[out->len++] = '"';
    for (;;) {
        size_t j = i;
        char esc[6] = {'\\'};
        size_t esc_len = 2;
        unsigned char c;

        while (j < n && !json_escaped[(unsigned char)s[j]])
            j++;
        memcpy(out->data + out->len, s + i, j - i);
        out->len += j - i;
        if (j == n)
            break;

        c = (unsigned char)s[j];
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            esc_len = 6;
        }
        /* The escape, the rest of the string and the closing quote. */
        r = buf_reserve(out, esc_len + (n - j - 1) + 1);
        if (r < 0) {
            out->data[out->len] = '\0';
            return r;
        }
        memcpy(out->data + out->len, esc, esc_len);
        out->len += esc_len;
        i = j + 1;
    }
    out->data[out->len++] = '"';
    out->data[out->len] = '\0';
    return 0;
}

/* An integer in decimal, as "%" JSON_INTEGER_FORMAT prints it, without printf's machinery. */
static int dump_integer(json_int_t v, struct buf *out)
{
    char tmp[24], *p = tmp + sizeof tmp;
    /* Negated as unsigned, so the most negative value has its digits too. */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        *--p = '-';
    return buf_append(out, p, (size_t)(tmp + sizeof tmp - p));
}

int translate_json_dump(const json_t *v, struct buf *out)
{
    int r;

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        bool first = true;

        r = buf_putc(out, '{');
        if (r < 0)
            return r;
        json_object_foreach ((json_t *)v, key, item) {
            if (!first && (r = buf_putc(out, ',')) < 0)
                return r;
            first = false;
            r = translate_json_dump_string(key, strlen(key), out);
            if (r < 0)
                return r;
            r = buf_putc(out, ':');
            if (r < 0)
                return r;
            r = translate_json_dump(item, out);
            if (r < 0)
                return r;
        }
        return buf_putc(out, '}');
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *item;

        r = buf_putc(out, '[');
        if (r < 0)
            return r;
        json_array_foreach ((json_t *)v, i, item) {
            if (i > 0 && (r = buf_putc(out, ',')) < 0)
                return r;
            r = translate_json_dump(item, out);
            if (r < 0)
                return r;
        }
        return buf_putc(out, ']');
    }
    case JSON_STRING:
        return translate_json_dump_string(json_string_value(v), json_string_length(v), out);
    case JSON_INTEGER:
        return dump_integer(json_integer_value(v), out);
    case JSON_REAL:
        return dump_real(json_real_value(v), out);
    case JSON_TRUE:
        return buf_append(out, "true", 4);
    case JSON_FALSE:
        return buf_append(out, "false", 5);
    case JSON_NULL:
    default:
        return buf_append(out, "null", 4);
    }
}

char *translate_json_text(const json_t *v, size_t size_hint, size_t *ret_len)
{
    struct buf b = BUF_INIT(0);

    if (buf_reserve(&b, size_hint) < 0 || translate_json_dump(v, &b) < 0) {
        buf_free(&b, false);
        return NULL;
    }
    if (ret_len)
        *ret_len = b.len;
    return buf_steal(&b);
}

/* JSON.stringify(v) (v borrowed) as a new jansson string (a new reference), or NULL. */
static json_t *json_stringify(const json_t *v)
{
    struct buf b = BUF_INIT(RESPONSE_TEXT_MAX);
    json_t *s = NULL;

    if (translate_json_dump(v, &b) >= 0)
        s = json_stringn(b.data ? b.data : "", b.len);
    buf_free(&b, false);
    return s;
}

/* Number of code points in UTF-8 text: OpenAI's annotation offsets count characters. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;

    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Appends url_citation annotations (TRANSLATION.md 3.1) for the web_search_result_location
 * citations of a text block (borrowed) that covers characters [start, start + len) of content. */
static int annotations_add(json_t *annotations, const json_t *block, size_t start, size_t len)
{
    json_t *citations = json_object_get(block, "citations"), *c;
    size_t i;

    json_array_foreach (citations, i, c) {
        const char *url = json_string_value(json_object_get(c, "url"));
        const char *title = json_string_value(json_object_get(c, "title"));

        if (!json_is_string(json_object_get(c, "type")) ||
            !streq(json_string_value(json_object_get(c, "type")), "web_search_result_location") ||
            !url)
            continue;
        if (json_array_append_new(annotations,
                                  json_pack("{s:s,s:{s:I,s:I,s:s,s:s}}", "type", "url_citation",
                                            "url_citation", "start_index", (json_int_t)start,
                                            "end_index", (json_int_t)(start + len), "url", url,
                                            "title", title ? title : "")) < 0)
            return -ENOMEM;
    }
    return 0;
}

static const char *service_tier_map(const char *tier)
{
    if (!tier)
        return NULL;
    if (streq(tier, "priority"))
        return "priority";
    if (streq(tier, "standard") || streq(tier, "batch"))
        return "default";
    return NULL;
}

json_t *translate_response(const json_t *msg, const struct translate_context *ctx,
                           struct usage *ret_usage)
{
    json_t *content = json_object_get(msg, "content"), *block, *v;
    const char *id = json_string_value(json_object_get(msg, "id"));
    const char *model =
        ctx && ctx->model[0] ? ctx->model : json_string_value(json_object_get(msg, "model"));
    const char *stop_reason = json_string_value(json_object_get(msg, "stop_reason"));
    json_t *usage = json_object_get(msg, "usage");
    json_auto_t *out = NULL, *message = NULL, *tool_calls = NULL, *thinking_blocks = NULL,
                *annotations = NULL, *json_content = NULL;
    struct buf text = BUF_INIT(RESPONSE_TEXT_MAX), reasoning = BUF_INIT(RESPONSE_TEXT_MAX);
    json_t *first_tool = NULL, *only_text = NULL;
    size_t i;
    int r = 0;

    if (!json_is_object(msg) || !json_is_array(content))
        return NULL;
    v = json_object_get(msg, "type");
    if (v && (!json_is_string(v) || !streq(json_string_value(v), "message")))
        return NULL;

    tool_calls = json_array();
    thinking_blocks = json_array();
    annotations = json_array();
    if (!tool_calls || !thinking_blocks || !annotations)
        return NULL;
    if (ctx && ctx->prefix[0])
        r = buf_append_str(&text, ctx->prefix);

    json_array_foreach (content, i, block) {
        const char *type = json_string_value(json_object_get(block, "type"));

        if (r < 0)
            break;
        if (!type)
            continue;
        if (streq(type, "text")) {
            json_t *tv = json_object_get(block, "text");
            const char *t = json_string_value(tv);
            size_t n = t ? json_string_length(tv) : 0;
            bool cited = json_array_size(json_object_get(block, "citations")) > 0;

            /* The usual answer, one text block, is used as it is rather than copied twice. */
            if (n > 0 && !cited && text.len == 0 && !only_text) {
                only_text = tv;
                continue;
            }
            if (only_text) {
                r = buf_append(&text, json_string_value(only_text), json_string_length(only_text));
                only_text = NULL;
            }
            if (r >= 0 && cited)
                r = annotations_add(annotations, block,
                                    utf8_chars(text.data ? text.data : "", text.len),
                                    utf8_chars(t ? t : "", n));
            if (r >= 0 && n > 0)
                r = buf_append(&text, t, n);
        } else if (streq(type, "thinking")) {
            const char *t = json_string_value(json_object_get(block, "thinking"));
            json_t *sig = json_object_get(block, "signature");
            json_t *tb = json_pack("{s:s,s:s}", "type", "thinking", "thinking", t ? t : "");

            if (t)
                r = buf_append_str(&reasoning, t);
            if (tb && json_is_string(sig))
                json_object_set(tb, "signature", sig);
            if (r >= 0 && json_array_append_new(thinking_blocks, tb) < 0)
                r = -ENOMEM;
        } else if (streq(type, "redacted_thinking")) {
            const char *d = json_string_value(json_object_get(block, "data"));

            if (json_array_append_new(
                    thinking_blocks,
                    json_pack("{s:s,s:s}", "type", "redacted_thinking", "data", d ? d : "")) < 0)
                r = -ENOMEM;
        } else if (streq(type, "tool_use")) {
            const char *name = json_string_value(json_object_get(block, "name"));
            const char *tid = json_string_value(json_object_get(block, "id"));
            json_t *input = json_object_get(block, "input");
            json_auto_t *args = NULL;

            if (ctx && ctx->json_tool[0] && name && streq(name, ctx->json_tool)) {
                if (!json_content)
                    json_content = json_stringify(input ? input : json_object());
                continue;
            }
            args = input ? json_stringify(input) : json_string("{}");
            if (!args || json_array_append_new(
                             tool_calls, json_pack("{s:s,s:s,s:{s:s,s:O}}", "id", tid ? tid : "",
                                                   "type", "function", "function", "name",
                                                   name ? name : "", "arguments", args)) < 0)
                r = -ENOMEM;
            if (!first_tool)
                first_tool = json_array_get(tool_calls, json_array_size(tool_calls) - 1);
        }
        /* server_tool_use, web_search_tool_result and unknown blocks: server-side work, not
         * something the client can act on. */
    }
    if (r < 0) {
        buf_free(&text, false);
        buf_free(&reasoning, false);
        return NULL;
    }

    message = json_pack("{s:s}", "role", "assistant");
    if (!message)
        goto fail;
    if (json_content)
        /* Forced-tool JSON mode: the tool's input is the answer (there is no prefix: prefill and
         * a forced tool do not mix). */
        json_object_set(message, "content", json_content);
    else if (only_text)
        json_object_set(message, "content", only_text);
    else if (text.len > 0)
        json_object_set_new(message, "content", json_stringn(text.data, text.len));
    else
        json_object_set_new(message, "content", json_null());
    json_object_set_new(message, "refusal", json_null());
    if (reasoning.len > 0)
        json_object_set_new(message, "reasoning_content",
                            json_stringn(reasoning.data, reasoning.len));
    if (json_array_size(thinking_blocks) > 0)
        json_object_set(message, "thinking_blocks", thinking_blocks);
    if (json_array_size(tool_calls) > 0) {
        if (ctx && ctx->legacy_functions)
            json_object_set(message, "function_call", json_object_get(first_tool, "function"));
        else
            json_object_set(message, "tool_calls", tool_calls);
    }
    if (json_array_size(annotations) > 0)
        json_object_set(message, "annotations", annotations);

    out = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:O,s:n,s:s}]}", "id", id ? id : "chatcmpl-dualroute",
                    "object", "chat.completion", "created", (json_int_t)(ctx ? ctx->created : 0),
                    "model", model ? model : "", "choices", "index", 0, "message", message,
                    "logprobs", "finish_reason", translate_finish_reason(stop_reason, ctx));
    if (!out)
        goto fail;
    v = translate_usage_json(usage, false);
    if (!v || json_object_set_new(out, "usage", v) < 0)
        goto fail;
    {
        const char *tier = service_tier_map(
            json_string_value(json_object_get(json_object_get(msg, "usage"), "service_tier")));
        if (tier)
            json_object_set_new(out, "service_tier", json_string(tier));
    }

    if (ret_usage) {
        *ret_usage = (struct usage){};
        translate_usage_merge(ret_usage, usage);
        ret_usage->stopped = true;
        if (stop_reason)
            snprintf(ret_usage->stop_reason, sizeof ret_usage->stop_reason, "%s", stop_reason);
    }
    buf_free(&text, false);
    buf_free(&reasoning, false);
    return TAKE_PTR(out);

fail:
    buf_free(&text, false);
    buf_free(&reasoning, false);
    return NULL;
}

/* "prompt is too long: 208310 tokens > 200000 maximum", "input length and `max_tokens` exceed
 * context limit: ...": the messages OpenAI clients must see as context_length_exceeded. */
static bool is_context_overflow(const char *m)
{
    return strcasestr(m, "prompt is too long") || strcasestr(m, "exceed context limit") ||
           strcasestr(m, "exceeds the context window") || strcasestr(m, "context window exceeded");
}

/* A 429 without retry-after is a spend cap (errors.md); the headers are not ours to see, so the
 * message decides. */
static bool is_quota(const char *m)
{
    return strcasestr(m, "spend limit") || strcasestr(m, "usage limit") ||
           strcasestr(m, "credit balance") || strcasestr(m, "quota");
}

json_t *translate_error(unsigned status, const json_t *upstream_body, const char *fallback,
                        const struct translate_options *opt, unsigned *ret_status)
{
    json_t *e = json_object_get(upstream_body, "error");
    const char *message = json_string_value(json_object_get(e, "message"));
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *code = NULL, *param = NULL;
    unsigned sent = status;

    /* Some gateways answer OpenAI-shaped: {"error":{"message","type","code"}}, or a bare
     * {"message": ...}. Take the message either way. */
    if (!message)
        message = json_string_value(json_object_get(upstream_body, "message"));
    if (!message || !*message)
        message = fallback && *fallback ? fallback : "upstream error";
    if (status == 0) {
        /* No answer at all: the connection failed. */
        sent = 502;
        if (!type)
            type = "api_error";
        code = "upstream_unreachable";
    }
    if (!type || !*type)
        type = error_type_for_status(sent);

    if (!code) {
        if (streq(type, "invalid_request_error") && is_context_overflow(message)) {
            code = "context_length_exceeded";
            param = "messages";
        } else if (streq(type, "authentication_error"))
            code = "invalid_api_key";
        else if (streq(type, "billing_error"))
            code = "insufficient_quota";
        else if (streq(type, "rate_limit_error"))
            code = is_quota(message) ? "insufficient_quota" : "rate_limit_exceeded";
        else if (streq(type, "not_found_error") && strcasestr(message, "model"))
            code = "model_not_found";
    }
    if (sent == 529 && opt && opt->overloaded_as_503)
        sent = 503;
    if (ret_status)
        *ret_status = sent;
    return json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error", "message", message, "type", type, "param",
                     param, "code", code);
}
