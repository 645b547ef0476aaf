/* translate-request.c: OpenAI chat.completion request -> Anthropic Messages request
 * (TRANSLATION.md section (a): 2.1-2.6 and the 2.8 validation).
 *
 * The Anthropic body is built fresh, field by field, so an OpenAI field without an Anthropic
 * meaning (seed, logit_bias, metadata, store, ...) is dropped simply by never being copied;
 * Anthropic answers 400 "Extra inputs are not permitted" to anything it does not know.
 *
 * The order of the steps matters, because the model's rules tie them together:
 *   1. tools, tool_choice and parallel_tool_calls (a forced choice turns manual thinking off);
 *   2. thinking, from reasoning_effort or the client's own thinking object, per model family;
 *   3. response_format (native output_config.format, or a forced json_tool_call tool, or a
 *      system instruction when that tool would collide with the client's tools);
 *   4. messages: system/developer hoisted into system blocks, same-role turns merged, tool
 *      results gathered first in one user turn, ids sanitised, empty text dropped;
 *   5. checks on the whole conversation: every tool call answered in the next turn, every tool
 *      result answering a call, manual thinking dropped when the tool turn lacks its thinking
 *      block;
 *   6. max_tokens (raised above a thinking budget), then the trailing-assistant (prefill) rules;
 *   7. sampling parameters, dropped or clamped by what the model and thinking allow.
 *
 * A request the router refuses fills struct translate_error with status 400 and the offending
 * field in OpenAI's "messages[3].tool_calls[0].id" style. Pure: no IO, no globals, no logging. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "macro.h"
#include "translate.h"
#include "util.h"

/* The forced tool of the JSON-mode fallback (TRANSLATION.md 2.5). */
#define JSON_TOOL_NAME "json_tool_call"
/* Anthropic Files API ids need this beta upstream (TRANSLATION.md 2.7). */
#define FILES_BETA "files-api-2025-04-14"
#define JSON_OBJECT_INSTRUCTION "Respond with a single valid JSON object and nothing else."
/* The JSON-schema instruction of 2.5's tool-collision case, schema included. */
#define SCHEMA_TEXT_MAX (16u * 1024 * 1024)
/* Anthropic honours at most four cache breakpoints. */
#define CACHE_BREAKPOINTS_MAX 4
/* Markers kept on tool_use/tool_result blocks while the conversation is checked, then removed:
 * the OpenAI field an error names, and the id as the client wrote it. */
#define KEY_PARAM "__dualroute_param"
#define KEY_ORIG "__dualroute_orig"

enum part_mode { PART_SYSTEM, PART_USER, PART_ASSISTANT, PART_TOOL };

struct req {
    const json_t *in;
    const struct model_info *m;
    const struct translate_options *opt;
    struct translate_error err;
    struct translate_context ctx;
    bool stream;

    json_t *system;      /* text blocks */
    json_t *system_tail; /* our own instructions, after the client's system text */
    json_t *turns;       /* [{"role", "content": [blocks]}] */
    json_t *tools;       /* Anthropic tool definitions */
    json_t *tool_choice; /* or NULL */
    bool forced_choice;  /* the client forced a tool (any/tool) */
    json_t *thinking;    /* or NULL */
    const char *effort;  /* output_config.effort, or NULL */
    json_t *format;      /* output_config.format, or NULL */
    int64_t max_tokens;
    json_t *id_groups;     /* sanitised id -> {original id: true} */
    json_t *history_tools; /* tool names used in the history -> true, in order */
    json_t *breakpoints;   /* blocks given cache_control by prompt_cache_breakpoint */
    const char *cache_ttl; /* "1h" when the client asked for OpenAI's 30m minimum */
    char legacy_id[64];    /* the id given to the latest legacy function_call */
};

static void req_done(struct req *r)
{
    json_decref(r->system);
    json_decref(r->system_tail);
    json_decref(r->turns);
    json_decref(r->tools);
    json_decref(r->tool_choice);
    json_decref(r->thinking);
    json_decref(r->format);
    json_decref(r->id_groups);
    json_decref(r->history_tools);
    json_decref(r->breakpoints);
}

/* Records a refusal: status 400, param (may be NULL for null), message. Returns -EINVAL. */
_printf_(3, 4) static int fail(struct req *r, const char *param, const char *fmt, ...)
{
    va_list ap;

    r->err.status = 400;
    snprintf(r->err.param, sizeof r->err.param, "%s", param ? param : "");
    r->err.code[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(r->err.message, sizeof r->err.message, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int oom(struct req *r)
{
    (void)fail(r, NULL, "Out of memory.");
    r->err.status = 500;
    return -ENOMEM;
}

/* o[key] (borrowed) when present and not null, else NULL. */
static json_t *field(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_null(v) ? NULL : v;
}

static bool is_blank(const char *s)
{
    for (; s && *s; s++)
        if (!strchr(" \t\r\n\f\v", *s))
            return false;
    return true;
}

static bool json_is_num(const json_t *v)
{
    return json_is_integer(v) || json_is_real(v);
}

static void sha256_hex(const char *s, size_t n, char out[static 65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;

    if (EVP_Digest(s, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32) {
        /* Only an OpenSSL without SHA-256 gets here; a fixed value keeps the output defined. */
        memset(out, '0', 64);
        out[64] = '\0';
        return;
    }
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- tool ids (TRANSLATION.md 2.4) ---- */

static bool id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* id with every character outside [a-zA-Z0-9_-] replaced by '_'. Caller frees. */
static char *id_basic(const char *id, bool *ret_changed)
{
    char *s = strdup(id);

    *ret_changed = false;
    if (!s)
        return NULL;
    for (char *p = s; *p; p++)
        if (!id_char_ok(*p)) {
            *p = '_';
            *ret_changed = true;
        }
    return s;
}

static int id_note(struct req *r, const char *id)
{
    bool changed;
    _cleanup_free_ char *basic = id_basic(id, &changed);
    json_t *group;

    if (!basic)
        return -ENOMEM;
    group = json_object_get(r->id_groups, basic);
    if (!group) {
        group = json_object();
        if (!group || json_object_set_new(r->id_groups, basic, group) < 0)
            return -ENOMEM;
    }
    return json_object_set_new(group, id, json_true());
}

/* The id Anthropic gets for a client id: sanitised; when two different client ids sanitise to
 * the same string, a changed one gets "_" and 8 hex digits of the SHA-256 of the original, so
 * they stay distinct and tool_use/tool_result pairs still match. A new reference, or NULL. */
static json_t *id_map(struct req *r, const char *id)
{
    bool changed;
    _cleanup_free_ char *basic = id_basic(id, &changed);
    char hex[65];

    if (!basic)
        return NULL;
    if (!changed || json_object_size(json_object_get(r->id_groups, basic)) <= 1)
        return json_string(basic);
    sha256_hex(id, strlen(id), hex);
    return json_sprintf("%s_%.8s", basic, hex);
}

/* ---- content parts (TRANSLATION.md 2.3) ---- */

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decodes base64 (padding and white space ignored) into out, at most max bytes. Returns the
 * number of bytes written, or -EINVAL on a character outside the alphabet. */
static ssize_t b64_decode(const char *s, size_t n, unsigned char *out, size_t max)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0;

    for (size_t i = 0; i < n && k < max; i++) {
        int v;

        if (s[i] == '=' || strchr(" \t\r\n", s[i]))
            continue;
        v = b64_value(s[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (unsigned char)(acc >> bits);
        }
    }
    return (ssize_t)k;
}

/* The media type the first bytes of base64 data show, or NULL. */
static const char *sniff(const char *b64, size_t n)
{
    unsigned char h[12];
    ssize_t k = b64_decode(b64, MIN(n, (size_t)24), h, sizeof h);

    if (k >= 4 && memcmp(h, "\x89PNG", 4) == 0)
        return "image/png";
    if (k >= 3 && memcmp(h, "\xff\xd8\xff", 3) == 0)
        return "image/jpeg";
    if (k >= 4 && memcmp(h, "GIF8", 4) == 0)
        return "image/gif";
    if (k >= 12 && memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WEBP", 4) == 0)
        return "image/webp";
    if (k >= 4 && memcmp(h, "%PDF", 4) == 0)
        return "application/pdf";
    return NULL;
}

struct data_url {
    char mime[128];
    bool base64;
    const char *data;
    size_t len;
};

/* Parses "data:<mime>[;params][;base64],<data>". The mime type comes back lower-cased, with
 * image/jpg normalised to image/jpeg. */
static bool data_url_parse(const char *url, size_t len, struct data_url *ret)
{
    const char *comma, *p, *meta_end;
    size_t mlen;

    if (len < 5 || strncasecmp(url, "data:", 5) != 0)
        return false;
    comma = memchr(url, ',', len);
    if (!comma)
        return false;
    p = url + 5;
    meta_end = comma;
    mlen = strcspn(p, ";,");
    if (p + mlen > meta_end)
        mlen = (size_t)(meta_end - p);
    *ret = (struct data_url){};
    snprintf(ret->mime, sizeof ret->mime, "%.*s", (int)MIN(mlen, sizeof ret->mime - 1), p);
    for (char *c = ret->mime; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    if (streq(ret->mime, "image/jpg"))
        snprintf(ret->mime, sizeof ret->mime, "image/jpeg");
    for (const char *q = p + mlen; q < meta_end; q++)
        if ((size_t)(meta_end - q) >= 7 && strncasecmp(q, ";base64", 7) == 0)
            ret->base64 = true;
    ret->data = comma + 1;
    ret->len = len - (size_t)(ret->data - url);
    return true;
}

static bool image_type_ok(const char *t)
{
    return t && (streq(t, "image/jpeg") || streq(t, "image/png") || streq(t, "image/gif") ||
                 streq(t, "image/webp"));
}

static json_t *base64_source(const char *media_type, const char *data, size_t len)
{
    return json_pack("{s:s,s:s,s:s%}", "type", "base64", "media_type", media_type, "data", data,
                     len);
}

/* An image_url value (borrowed) -> *ret, a new reference to an image block (a document block for
 * a PDF data URL). */
static int image_block(struct req *r, const json_t *image_url, const char *where, json_t **ret)
{
    json_t *u = json_is_string(image_url) ? (json_t *)image_url : field(image_url, "url");
    const char *url = json_string_value(u);
    size_t len = json_string_length(u);
    struct data_url d;
    char param[160];

    snprintf(param, sizeof param, "%s.image_url", where);
    if (!url)
        return fail(r, param, "Expected an object with a 'url' string.");
    if (data_url_parse(url, len, &d)) {
        const char *sniffed = sniff(d.data, d.len);
        const char *type = sniffed ? sniffed : d.mime;

        if (!d.base64)
            return fail(r, param, "Only base64 data URLs are supported for images.");
        if (streq(type, "application/pdf")) {
            *ret = json_pack("{s:s,s:o}", "type", "document", "source",
                             base64_source("application/pdf", d.data, d.len));
            return *ret ? 0 : oom(r);
        }
        if (!image_type_ok(type))
            return fail(r, param,
                        "Unsupported image media type '%s': use image/jpeg, image/png, image/gif "
                        "or image/webp.",
                        type);
        *ret =
            json_pack("{s:s,s:o}", "type", "image", "source", base64_source(type, d.data, d.len));
        return *ret ? 0 : oom(r);
    }
    if (strncasecmp(url, "https://", 8) == 0 || strncasecmp(url, "http://", 7) == 0) {
        /* Anthropic fetches it: no router egress, no SSRF surface. */
        *ret = json_pack("{s:s,s:{s:s,s:O}}", "type", "image", "source", "type", "url", "url", u);
        return *ret ? 0 : oom(r);
    }
    return fail(r, param, "Invalid image URL: expected an http(s) URL or a base64 data URL.");
}

/* A file part's "file" object (borrowed) -> *ret, a new reference to a document or image block. */
static int file_block(struct req *r, const json_t *file, const char *where, json_t **ret)
{
    json_t *fid = field(file, "file_id"), *fdata = field(file, "file_data");
    const char *filename = json_string_value(field(file, "filename"));
    json_auto_t *block = NULL;
    char param[160];

    if (!json_is_object(file)) {
        snprintf(param, sizeof param, "%s.file", where);
        return fail(r, param, "Expected a 'file' object.");
    }
    if (json_is_string(fid)) {
        /* Only Anthropic Files API ids mean anything upstream (files beta). */
        if (strncmp(json_string_value(fid), "file_", 5) != 0) {
            snprintf(param, sizeof param, "%s.file.file_id", where);
            return fail(r, param, "Unknown file id '%s': only Anthropic Files API ids work here.",
                        json_string_value(fid));
        }
        block = json_pack("{s:s,s:{s:s,s:O}}", "type", "document", "source", "type", "file",
                          "file_id", fid);
        snprintf(r->ctx.anthropic_beta, sizeof r->ctx.anthropic_beta, "%s", FILES_BETA);
    } else if (json_is_string(fdata)) {
        const char *s = json_string_value(fdata);
        size_t n = json_string_length(fdata);
        struct data_url d = {};
        const char *type;

        snprintf(param, sizeof param, "%s.file.file_data", where);
        if (!data_url_parse(s, n, &d)) {
            /* Bare base64, as some clients send it. */
            d.base64 = true;
            d.data = s;
            d.len = n;
        }
        type = sniff(d.data, d.len);
        if (!type || !d.base64)
            type = d.mime;
        if (!d.base64)
            return fail(r, param, "Only base64 data URLs are supported for files.");
        if (streq(type, "application/pdf"))
            block = json_pack("{s:s,s:o}", "type", "document", "source",
                              base64_source("application/pdf", d.data, d.len));
        else if (streq(type, "text/plain")) {
            _cleanup_free_ unsigned char *text = malloc(d.len + 1);
            ssize_t k;

            if (!text)
                return oom(r);
            k = b64_decode(d.data, d.len, text, d.len);
            if (k < 0 || !utf8_is_valid((const char *)text, (size_t)k))
                return fail(r, param, "The text file is not valid base64-encoded UTF-8.");
            block =
                json_pack("{s:s,s:{s:s,s:s,s:s%}}", "type", "document", "source", "type", "text",
                          "media_type", "text/plain", "data", (const char *)text, (size_t)k);
        } else if (image_type_ok(type)) {
            *ret = json_pack("{s:s,s:o}", "type", "image", "source",
                             base64_source(type, d.data, d.len));
            return *ret ? 0 : oom(r);
        } else
            return fail(r, param,
                        "Unsupported file type '%s': use application/pdf, text/plain or an "
                        "image.",
                        *type ? type : "unknown");
    } else {
        snprintf(param, sizeof param, "%s.file", where);
        return fail(r, param, "A file part needs 'file_data' or 'file_id'.");
    }
    if (!block)
        return oom(r);
    if (filename && *filename && json_object_set_new(block, "title", json_string(filename)) < 0)
        return oom(r);
    *ret = TAKE_PTR(block);
    return 0;
}

/* Gives block (borrowed) the cache_control of part (borrowed), or one made from an OpenAI
 * prompt_cache_breakpoint; such a block is also recorded, to keep only the last four. */
static int cache_apply(struct req *r, const json_t *part, json_t *block)
{
    json_t *cc = field(part, "cache_control");

    if (json_is_object(cc))
        return json_object_set_new(block, "cache_control", json_deep_copy(cc)) < 0 ? oom(r) : 0;
    if (json_is_object(field(part, "prompt_cache_breakpoint"))) {
        json_t *c = r->cache_ttl ? json_pack("{s:s,s:s}", "type", "ephemeral", "ttl", r->cache_ttl)
                                 : json_pack("{s:s}", "type", "ephemeral");
        if (json_object_set_new(block, "cache_control", c) < 0 ||
            json_array_append(r->breakpoints, block) < 0)
            return oom(r);
    }
    return 0;
}

/* One OpenAI content part (borrowed) -> *ret, a new block, or NULL when the part is dropped
 * (empty text, an assistant refusal). where is "messages[i].content[j]". */
static int part_block(struct req *r, const json_t *part, enum part_mode mode, const char *where,
                      json_t **ret)
{
    const char *type = json_string_value(json_object_get(part, "type"));
    json_auto_t *block = NULL;
    char param[160];
    int k;

    *ret = NULL;
    if (!json_is_object(part))
        return fail(r, where, "Expected a content part object.");
    if (!type) {
        snprintf(param, sizeof param, "%s.type", where);
        return fail(r, param, "Missing content part type.");
    }
    if (streq(type, "text")) {
        json_t *t = json_object_get(part, "text");

        if (!json_is_string(t)) {
            snprintf(param, sizeof param, "%s.text", where);
            return fail(r, param, "Expected a string.");
        }
        /* Anthropic refuses empty and white-space-only text blocks. */
        if (is_blank(json_string_value(t)))
            return 0;
        block = json_pack("{s:s,s:O}", "type", "text", "text", t);
    } else if (streq(type, "refusal") && mode == PART_ASSISTANT)
        return 0;
    else if (streq(type, "image_url") && (mode == PART_USER || mode == PART_TOOL)) {
        k = image_block(r, json_object_get(part, "image_url"), where, &block);
        if (k < 0)
            return k;
    } else if (streq(type, "file") && (mode == PART_USER || mode == PART_TOOL)) {
        k = file_block(r, json_object_get(part, "file"), where, &block);
        if (k < 0)
            return k;
    } else if (streq(type, "input_audio") && (mode == PART_USER || mode == PART_TOOL))
        return fail(r, where, "Content part type 'input_audio': audio input is not supported.");
    else if ((streq(type, "image") || streq(type, "document")) &&
             json_is_object(json_object_get(part, "source")) &&
             (mode == PART_USER || mode == PART_TOOL)) {
        /* Already Anthropic-shaped (an extension some clients use): as is. */
        *ret = json_deep_copy(part);
        return *ret ? 0 : oom(r);
    } else {
        snprintf(param, sizeof param, "%s.type", where);
        return fail(r, param, "Unsupported content part type '%s' here.", type);
    }
    if (!block)
        return oom(r);
    k = cache_apply(r, part, block);
    if (k < 0)
        return k;
    *ret = TAKE_PTR(block);
    return 0;
}

/* A message's content (borrowed: a string or an array of parts) -> new blocks appended to
 * blocks. */
static int content_blocks(struct req *r, const json_t *content, enum part_mode mode, size_t i,
                          json_t *blocks)
{
    char where[128];
    size_t j;
    json_t *part;

    if (json_is_string(content)) {
        if (is_blank(json_string_value(content)))
            return 0;
        if (json_array_append_new(blocks, json_pack("{s:s,s:O}", "type", "text", "text", content)) <
            0)
            return oom(r);
        return 0;
    }
    json_array_foreach (content, j, part) {
        json_t *block;
        int k;

        snprintf(where, sizeof where, "messages[%zu].content[%zu]", i, j);
        k = part_block(r, part, mode, where, &block);
        if (k < 0)
            return k;
        if (block && json_array_append_new(blocks, block) < 0)
            return oom(r);
    }
    return 0;
}

/* ---- messages (TRANSLATION.md 2.2) ---- */

static bool block_is(const json_t *block, const char *type)
{
    const char *t = json_string_value(json_object_get(block, "type"));

    return t && streq(t, type);
}

static bool block_is_thinking(const json_t *block)
{
    return block_is(block, "thinking") || block_is(block, "redacted_thinking");
}

/* Appends blocks (stolen) as a turn of role, merging into the previous turn when it has the same
 * role. In a merged user turn tool_result blocks stay first; in a merged assistant turn thinking
 * blocks do (Anthropic requires both). Empty block lists add nothing. */
static int turn_add(struct req *r, const char *role, json_t *blocks)
{
    json_auto_t *b = blocks;
    json_t *last = json_array_get(r->turns, json_array_size(r->turns) - 1), *content, *block;
    size_t j;

    if (!b)
        return oom(r);
    if (json_array_size(b) == 0)
        return 0;
    if (!last || !streq(json_string_value(json_object_get(last, "role")), role)) {
        if (json_array_append_new(r->turns, json_pack("{s:s,s:O}", "role", role, "content", b)) < 0)
            return oom(r);
        return 0;
    }
    content = json_object_get(last, "content");
    json_array_foreach (b, j, block) {
        size_t at = json_array_size(content);

        if (streq(role, "user") && block_is(block, "tool_result"))
            at = 0;
        else if (streq(role, "assistant") && block_is_thinking(block))
            at = 0;
        if (at == 0) {
            /* After the blocks of the same kind already at the front. */
            while (at < json_array_size(content)) {
                json_t *c = json_array_get(content, at);
                bool same = streq(role, "user") ? block_is(c, "tool_result") : block_is_thinking(c);
                if (!same)
                    break;
                at++;
            }
        }
        if (json_array_insert(content, at, block) < 0)
            return oom(r);
    }
    return 0;
}

/* The message-level cache_control (an extension) of msg (borrowed) goes on the last of blocks
 * (borrowed). */
static int message_cache(struct req *r, const json_t *msg, json_t *blocks)
{
    json_t *cc = field(msg, "cache_control");
    json_t *last = json_array_get(blocks, json_array_size(blocks) - 1);

    if (!json_is_object(cc) || !last)
        return 0;
    return json_object_set_new(last, "cache_control", json_deep_copy(cc)) < 0 ? oom(r) : 0;
}

/* A system or developer message (borrowed): its text goes to the top-level system blocks. */
static int system_add(struct req *r, const json_t *msg, size_t i)
{
    json_t *content = json_object_get(msg, "content"), *part;
    json_auto_t *blocks = json_array();
    char where[128];
    size_t j;
    int k;

    if (!blocks)
        return oom(r);
    if (json_is_string(content)) {
        k = content_blocks(r, content, PART_SYSTEM, i, blocks);
        if (k < 0)
            return k;
    } else if (json_is_array(content)) {
        json_array_foreach (content, j, part) {
            json_t *block;

            snprintf(where, sizeof where, "messages[%zu].content[%zu]", i, j);
            k = part_block(r, part, PART_SYSTEM, where, &block);
            if (k < 0)
                return k;
            if (block && json_array_append_new(blocks, block) < 0)
                return oom(r);
        }
    } else {
        snprintf(where, sizeof where, "messages[%zu].content", i);
        return fail(r, where, "Expected a string or an array of text parts.");
    }
    k = message_cache(r, msg, blocks);
    if (k < 0)
        return k;
    return json_array_extend(r->system, blocks) < 0 ? oom(r) : 0;
}

/* A user message (borrowed) -> a user turn. */
static int user_add(struct req *r, const json_t *msg, size_t i)
{
    json_t *content = json_object_get(msg, "content");
    json_auto_t *blocks = json_array();
    char where[128];
    int k;

    if (!blocks)
        return oom(r);
    if (!json_is_string(content) && !json_is_array(content)) {
        snprintf(where, sizeof where, "messages[%zu].content", i);
        return fail(r, where, "Expected a string or an array of content parts.");
    }
    k = content_blocks(r, content, PART_USER, i, blocks);
    if (k < 0)
        return k;
    k = message_cache(r, msg, blocks);
    if (k < 0)
        return k;
    return turn_add(r, "user", TAKE_PTR(blocks));
}

/* Tool arguments as the client sent them (borrowed; a JSON string, usually) -> *ret, a new
 * reference to the tool_use input object.
 * "" -> {}; invalid JSON -> {} (or a 400 with strict_tool_arguments); a JSON value that is not an
 * object -> {"value": v} (or a 400). */
static int arguments_parse(struct req *r, const json_t *args, const char *param, json_t **ret)
{
    json_auto_t *v = NULL;

    if (!args) {
        *ret = json_object();
        return *ret ? 0 : oom(r);
    }
    if (json_is_string(args)) {
        if (is_blank(json_string_value(args))) {
            *ret = json_object();
            return *ret ? 0 : oom(r);
        }
        v = json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY, NULL);
        if (!v) {
            if (r->opt->strict_tool_arguments)
                return fail(r, param, "Tool call arguments are not valid JSON.");
            *ret = json_object();
            return *ret ? 0 : oom(r);
        }
    } else
        v = json_deep_copy(args);
    if (!v)
        return oom(r);
    if (json_is_object(v)) {
        *ret = TAKE_PTR(v);
        return 0;
    }
    if (r->opt->strict_tool_arguments)
        return fail(r, param, "Tool call arguments must be a JSON object.");
    *ret = json_pack("{s:O}", "value", v);
    return *ret ? 0 : oom(r);
}

static int history_tool_note(struct req *r, const char *name)
{
    return json_object_set_new(r->history_tools, name, json_true()) < 0 ? oom(r) : 0;
}

/* Appends a tool_use block to blocks (borrowed), with the markers pairing_check() reads. Steals
 * id and input, also on failure. */
static int tool_use_block(struct req *r, json_t *id, const char *orig, const char *name,
                          json_t *input, const char *param, json_t *blocks)
{
    json_t *b = json_pack("{s:s,s:o,s:s,s:o,s:s,s:s}", "type", "tool_use", "id", id, "name", name,
                          "input", input, KEY_PARAM, param, KEY_ORIG, orig);

    if (!b || json_array_append_new(blocks, b) < 0)
        return oom(r);
    return history_tool_note(r, name);
}

/* Thinking blocks sent back by the client on msg (borrowed), appended to blocks (borrowed):
 * LiteLLM's thinking_blocks, OpenRouter's reasoning_details, Portkey's content_blocks. A block
 * without its signature cannot be replayed and is dropped, as is a bare reasoning_content
 * string. */
static int thinking_blocks_add(struct req *r, const json_t *msg, json_t *blocks)
{
    json_t *list, *b;
    size_t j;

    list = field(msg, "thinking_blocks");
    if (!json_is_array(list))
        list = field(msg, "reasoning_details");
    if (!json_is_array(list))
        list = field(msg, "content_blocks");
    json_array_foreach (list, j, b) {
        const char *type = json_string_value(json_object_get(b, "type"));
        json_t *sig = json_object_get(b, "signature"), *out = NULL;

        if (!type)
            continue;
        if ((streq(type, "thinking") || streq(type, "reasoning.text")) && json_is_string(sig) &&
            json_string_length(sig) > 0) {
            json_t *t = json_object_get(b, streq(type, "thinking") ? "thinking" : "text");
            out = json_pack("{s:s,s:s,s:O}", "type", "thinking", "thinking",
                            json_is_string(t) ? json_string_value(t) : "", "signature", sig);
        } else if (streq(type, "redacted_thinking") || streq(type, "reasoning.encrypted")) {
            json_t *d = json_object_get(b, "data");
            if (!json_is_string(d))
                continue;
            out = json_pack("{s:s,s:O}", "type", "redacted_thinking", "data", d);
        } else
            continue;
        if (!out || json_array_append_new(blocks, out) < 0)
            return oom(r);
    }
    return 0;
}

/* An assistant message (borrowed) -> an assistant turn: thinking blocks, text, tool_use. */
static int assistant_add(struct req *r, const json_t *msg, size_t i)
{
    json_t *content = field(msg, "content"), *calls = field(msg, "tool_calls"), *call;
    json_t *fc = field(msg, "function_call");
    json_auto_t *blocks = json_array();
    char param[160];
    size_t j;
    int k;

    if (!blocks)
        return oom(r);
    k = thinking_blocks_add(r, msg, blocks);
    if (k < 0)
        return k;
    if (content && !json_is_string(content) && !json_is_array(content)) {
        snprintf(param, sizeof param, "messages[%zu].content", i);
        return fail(r, param, "Expected a string, an array of content parts or null.");
    }
    if (content) {
        k = content_blocks(r, content, PART_ASSISTANT, i, blocks);
        if (k < 0)
            return k;
    }
    if (calls && !json_is_array(calls)) {
        snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
        return fail(r, param, "Expected an array.");
    }
    json_array_foreach (calls, j, call) {
        json_t *id = json_object_get(call, "id"), *fn = json_object_get(call, "function");
        const char *type = json_string_value(json_object_get(call, "type"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        json_t *input = NULL, *mapped;
        char args_param[192];

        if (!json_is_object(call)) {
            snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu]", i, j);
            return fail(r, param, "Expected a tool call object.");
        }
        if (type && !streq(type, "function")) {
            snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].type", i, j);
            return fail(r, param, "Unsupported tool call type '%s'.", type);
        }
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].id", i, j);
        if (!json_is_string(id) || json_string_length(id) == 0)
            return fail(r, param, "Missing tool call id.");
        if (!name || !*name) {
            snprintf(args_param, sizeof args_param, "messages[%zu].tool_calls[%zu].function.name",
                     i, j);
            return fail(r, args_param, "Missing function name.");
        }
        snprintf(args_param, sizeof args_param, "messages[%zu].tool_calls[%zu].function.arguments",
                 i, j);
        k = arguments_parse(r, field(fn, "arguments"), args_param, &input);
        if (k < 0)
            return k;
        mapped = id_map(r, json_string_value(id));
        if (!mapped) {
            json_decref(input);
            return oom(r);
        }
        k = tool_use_block(r, mapped, json_string_value(id), name, input, param, blocks);
        if (k < 0)
            return k;
    }
    if (!calls && json_is_object(fc)) {
        /* Legacy function_call: a deterministic id, so the following "function" message pairs
         * with it. */
        const char *name = json_string_value(json_object_get(fc, "name"));
        const char *args = json_string_value(json_object_get(fc, "arguments"));
        json_t *input = NULL;
        _cleanup_free_ char *seed = NULL;
        char hex[65];

        if (!name || !*name) {
            snprintf(param, sizeof param, "messages[%zu].function_call.name", i);
            return fail(r, param, "Missing function name.");
        }
        snprintf(param, sizeof param, "messages[%zu].function_call.arguments", i);
        k = arguments_parse(r, field(fc, "arguments"), param, &input);
        if (k < 0)
            return k;
        if (asprintf(&seed, "%zu:%s:%s", i, name, args ? args : "") < 0) {
            json_decref(input);
            return oom(r);
        }
        sha256_hex(seed, strlen(seed), hex);
        snprintf(r->legacy_id, sizeof r->legacy_id, "call_%.24s", hex);
        snprintf(param, sizeof param, "messages[%zu].function_call", i);
        k = tool_use_block(r, json_string(r->legacy_id), r->legacy_id, name, input, param, blocks);
        if (k < 0)
            return k;
    }
    k = message_cache(r, msg, blocks);
    if (k < 0)
        return k;
    return turn_add(r, "assistant", TAKE_PTR(blocks));
}

/* A tool (or legacy function) result msg (borrowed) -> a tool_result block in a user turn. Steals
 * id, also on failure. Never is_error: OpenAI has no such flag. */
static int result_add(struct req *r, const json_t *msg, size_t i, json_t *id, const char *orig,
                      const char *param)
{
    json_t *content = field(msg, "content");
    json_auto_t *blocks = json_array(), *result = NULL;
    char where[128];
    int k;

    result = json_pack("{s:s,s:o,s:s,s:s}", "type", "tool_result", "tool_use_id", id, KEY_PARAM,
                       param, KEY_ORIG, orig);
    if (!blocks || !result)
        return oom(r);
    if (json_is_string(content)) {
        /* An empty result has no content at all: an empty text block is a 400. */
        if (!is_blank(json_string_value(content)) &&
            json_object_set(result, "content", content) < 0)
            return oom(r);
    } else if (json_is_array(content)) {
        json_auto_t *parts = json_array();

        if (!parts)
            return oom(r);
        k = content_blocks(r, content, PART_TOOL, i, parts);
        if (k < 0)
            return k;
        if (json_array_size(parts) > 0 && json_object_set(result, "content", parts) < 0)
            return oom(r);
    } else if (content) {
        snprintf(where, sizeof where, "messages[%zu].content", i);
        return fail(r, where, "Expected a string or an array of content parts.");
    }
    if (json_is_object(field(msg, "cache_control")) &&
        json_object_set_new(result, "cache_control", json_deep_copy(field(msg, "cache_control"))) <
            0)
        return oom(r);
    if (json_array_append(blocks, result) < 0)
        return oom(r);
    return turn_add(r, "user", TAKE_PTR(blocks));
}

/* A tool message (borrowed). */
static int tool_add(struct req *r, const json_t *msg, size_t i)
{
    json_t *tcid = json_object_get(msg, "tool_call_id"), *id;
    char param[128];

    snprintf(param, sizeof param, "messages[%zu].tool_call_id", i);
    if (!json_is_string(tcid) || json_string_length(tcid) == 0)
        return fail(r, param, "A tool message needs a 'tool_call_id'.");
    id = id_map(r, json_string_value(tcid));
    if (!id)
        return oom(r);
    return result_add(r, msg, i, id, json_string_value(tcid), param);
}

/* A legacy function message (borrowed): it answers the latest function_call. */
static int function_add(struct req *r, const json_t *msg, size_t i)
{
    char param[128];

    snprintf(param, sizeof param, "messages[%zu]", i);
    if (!r->legacy_id[0])
        return fail(r, param, "A function message must follow an assistant function_call.");
    return result_add(r, msg, i, json_string(r->legacy_id), r->legacy_id, param);
}

/* Records every client tool id first, so that collisions after sanitising are known before the
 * first id is mapped. */
static int ids_collect(struct req *r, const json_t *messages)
{
    json_t *msg, *call;
    size_t i, j;

    json_array_foreach (messages, i, msg) {
        json_t *tcid = json_object_get(msg, "tool_call_id");

        if (json_is_string(tcid) && id_note(r, json_string_value(tcid)) < 0)
            return oom(r);
        json_array_foreach (json_object_get(msg, "tool_calls"), j, call) {
            json_t *id = json_object_get(call, "id");
            if (json_is_string(id) && id_note(r, json_string_value(id)) < 0)
                return oom(r);
        }
    }
    return 0;
}

static int messages_convert(struct req *r)
{
    json_t *messages = json_object_get(r->in, "messages"), *msg;
    size_t i;
    int k;

    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return fail(r, "messages", "'messages' must be a non-empty array.");
    k = ids_collect(r, messages);
    if (k < 0)
        return k;
    json_array_foreach (messages, i, msg) {
        const char *role = json_string_value(json_object_get(msg, "role"));
        char param[64];

        if (!json_is_object(msg)) {
            snprintf(param, sizeof param, "messages[%zu]", i);
            return fail(r, param, "Expected a message object.");
        }
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!role)
            return fail(r, param, "Missing message role.");
        if (streq(role, "system") || streq(role, "developer"))
            k = system_add(r, msg, i);
        else if (streq(role, "user"))
            k = user_add(r, msg, i);
        else if (streq(role, "assistant"))
            k = assistant_add(r, msg, i);
        else if (streq(role, "tool"))
            k = tool_add(r, msg, i);
        else if (streq(role, "function"))
            k = function_add(r, msg, i);
        else
            k = fail(r, param,
                     "Invalid role '%s': use 'system', 'developer', 'user', 'assistant', 'tool' "
                     "or 'function'.",
                     role);
        if (k < 0)
            return k;
    }
    if (json_array_size(r->turns) == 0)
        return fail(r, "messages", "'messages' must contain at least one non-empty message.");
    return 0;
}

static bool ids_contain(const json_t *blocks, const char *type, const char *key, const char *id)
{
    json_t *b;
    size_t j;

    json_array_foreach (blocks, j, b)
        if (block_is(b, type) && streq(json_string_value(json_object_get(b, key)), id))
            return true;
    return false;
}

/* Every tool_use must be answered by a tool_result in the very next turn, and every tool_result
 * must answer a tool_use of the turn before (Anthropic 400s otherwise; OpenAI itself refuses both).
 * Then the markers come off. */
static int pairing_check(struct req *r)
{
    json_t *turn, *b;
    size_t t, j;

    json_array_foreach (r->turns, t, turn) {
        json_t *content = json_object_get(turn, "content");
        json_t *next = json_array_get(r->turns, t + 1);
        json_t *prev = t > 0 ? json_array_get(r->turns, t - 1) : NULL;
        json_t *next_content =
            next && streq(json_string_value(json_object_get(next, "role")), "user")
                ? json_object_get(next, "content")
                : NULL;
        json_t *prev_content =
            prev && streq(json_string_value(json_object_get(prev, "role")), "assistant")
                ? json_object_get(prev, "content")
                : NULL;

        json_array_foreach (content, j, b) {
            const char *param = json_string_value(json_object_get(b, KEY_PARAM));
            const char *orig = json_string_value(json_object_get(b, KEY_ORIG));

            if (block_is(b, "tool_use") &&
                !ids_contain(next_content, "tool_result", "tool_use_id",
                             json_string_value(json_object_get(b, "id"))))
                return fail(r, param,
                            "An assistant message with 'tool_calls' must be followed by tool "
                            "messages responding to each 'tool_call_id'. The following "
                            "tool_call_ids did not have response messages: %s",
                            orig ? orig : "");
            if (block_is(b, "tool_result") &&
                !ids_contain(prev_content, "tool_use", "id",
                             json_string_value(json_object_get(b, "tool_use_id"))))
                return fail(r, param,
                            "Messages with role 'tool' must be a response to a preceding message "
                            "with 'tool_calls' (no call has id '%s').",
                            orig ? orig : "");
        }
    }
    json_array_foreach (r->turns, t, turn)
        json_array_foreach (json_object_get(turn, "content"), j, b) {
            json_object_del(b, KEY_PARAM);
            json_object_del(b, KEY_ORIG);
        }
    return 0;
}

/* A trailing assistant turn is a prefill: its final text loses trailing white space (Anthropic
 * 400s otherwise), models that refuse prefill get our own 400, and prefix: true asks for the text
 * to be put back in front of the answer. */
static int prefill_check(struct req *r)
{
    json_t *messages = json_object_get(r->in, "messages");
    json_t *lastmsg = json_array_get(messages, json_array_size(messages) - 1);
    size_t n = json_array_size(r->turns);
    json_t *last = json_array_get(r->turns, n - 1), *content, *b;
    struct buf prefix = BUF_INIT(sizeof r->ctx.prefix - 1);
    size_t j;

    if (!streq(json_string_value(json_object_get(last, "role")), "assistant"))
        return 0;
    content = json_object_get(last, "content");
    for (;;) {
        size_t m = json_array_size(content), len;
        json_t *tb;
        const char *t;

        b = json_array_get(content, m - 1);
        if (!b || !block_is(b, "text"))
            break;
        tb = json_object_get(b, "text");
        t = json_string_value(tb);
        len = json_string_length(tb);
        while (len > 0 && strchr(" \t\r\n\f\v", t[len - 1]))
            len--;
        if (len > 0) {
            if (len < json_string_length(tb) &&
                json_object_set_new(b, "text", json_stringn(t, len)) < 0)
                return oom(r);
            break;
        }
        json_array_remove(content, m - 1);
    }
    if (json_array_size(content) == 0) {
        json_array_remove(r->turns, n - 1);
        if (json_array_size(r->turns) == 0)
            return fail(r, "messages", "'messages' must contain at least one non-empty message.");
        return 0;
    }
    if (r->m->prefill_rejected)
        return fail(r, "messages",
                    "This model does not support assistant message prefill. The conversation must "
                    "end with a user message.");
    if (r->thinking && !block_is(r->thinking, "disabled"))
        return fail(r, "messages",
                    "Assistant message prefill is not supported with thinking on. The "
                    "conversation must end with a user message.");
    if (!json_is_true(json_object_get(lastmsg, "prefix")) ||
        !streq(json_string_value(json_object_get(lastmsg, "role")), "assistant"))
        return 0;
    json_array_foreach (content, j, b)
        if (block_is(b, "text") &&
            buf_append_str(&prefix, json_string_value(json_object_get(b, "text"))) < 0) {
            buf_free(&prefix, false);
            return fail(r, "messages", "The prefix of the final assistant message is too long.");
        }
    if (prefix.len > 0)
        memcpy(r->ctx.prefix, prefix.data, prefix.len + 1);
    buf_free(&prefix, false);
    return 0;
}

/* ---- tools (TRANSLATION.md 2.4) ---- */

static bool tool_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char_ok(s[i]))
            return false;
    return true;
}

/* {name, description, parameters, strict} (borrowed) -> *ret, a new reference to an Anthropic
 * tool definition; outer (borrowed) is the tools[] entry, for its cache_control. where names the
 * function object ("tools[2].function", "functions[0]"). */
static int function_tool(struct req *r, const json_t *fn, const json_t *outer, const char *where,
                         json_t **ret)
{
    const char *name = json_string_value(json_object_get(fn, "name"));
    json_t *desc = field(fn, "description"), *params = field(fn, "parameters");
    json_t *cc = field(outer, "cache_control");
    json_auto_t *tool = NULL, *schema = NULL;
    char param[160];

    if (!json_is_object(fn))
        return fail(r, where, "Expected a function object.");
    if (!tool_name_ok(name)) {
        snprintf(param, sizeof param, "%s.name", where);
        return fail(r, param,
                    "Invalid function name: it must match ^[a-zA-Z0-9_-]{1,64}$ (got '%s').",
                    name ? name : "");
    }
    if (!params)
        schema = json_pack("{s:s,s:{}}", "type", "object", "properties");
    else if (json_is_object(params)) {
        json_t *type = json_object_get(params, "type");

        schema = json_deep_copy(params);
        if (schema && !type && json_object_set_new(schema, "type", json_string("object")) < 0)
            return oom(r);
        if (type && (!json_is_string(type) || !streq(json_string_value(type), "object"))) {
            snprintf(param, sizeof param, "%s.parameters", where);
            return fail(r, param, "The parameters schema must be of type 'object'.");
        }
    } else {
        snprintf(param, sizeof param, "%s.parameters", where);
        return fail(r, param, "Expected a JSON schema object.");
    }
    if (!schema)
        return oom(r);
    tool = json_pack("{s:s,s:O}", "name", name, "input_schema", schema);
    if (!tool)
        return oom(r);
    if (json_is_string(desc) && json_object_set(tool, "description", desc) < 0)
        return oom(r);
    if (json_is_true(field(fn, "strict")) && r->m->structured_outputs &&
        json_object_set_new(tool, "strict", json_true()) < 0)
        return oom(r);
    if (!json_is_object(cc))
        cc = field(fn, "cache_control");
    if (json_is_object(cc) && json_object_set_new(tool, "cache_control", json_deep_copy(cc)) < 0)
        return oom(r);
    *ret = TAKE_PTR(tool);
    return 0;
}

static int tools_convert(struct req *r)
{
    json_t *tools = field(r->in, "tools"), *functions = field(r->in, "functions"), *t;
    char where[64];
    size_t i;
    int k;

    if (tools && !json_is_array(tools))
        return fail(r, "tools", "Expected an array.");
    if (functions && !json_is_array(functions))
        return fail(r, "functions", "Expected an array.");
    json_array_foreach (tools, i, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        json_t *tool = NULL;

        snprintf(where, sizeof where, "tools[%zu]", i);
        if (!json_is_object(t))
            return fail(r, where, "Expected a tool object.");
        if (type && streq(type, "custom")) {
            snprintf(where, sizeof where, "tools[%zu].type", i);
            return fail(r, where, "Custom tools are not supported; use function tools.");
        }
        if ((type && streq(type, "function")) || (!type && json_object_get(t, "function"))) {
            snprintf(where, sizeof where, "tools[%zu].function", i);
            k = function_tool(r, json_object_get(t, "function"), t, where, &tool);
            if (k < 0)
                return k;
        } else if (json_object_get(t, "input_schema") || (type && json_object_get(t, "name"))) {
            /* Anthropic-shaped, or an Anthropic server tool (web_search_..., ...): as is. */
            tool = json_deep_copy(t);
        } else {
            snprintf(where, sizeof where, "tools[%zu].type", i);
            return fail(r, where, "Unsupported tool type '%s'.", type ? type : "");
        }
        if (!tool || json_array_append_new(r->tools, tool) < 0)
            return oom(r);
    }
    if (json_array_size(r->tools) == 0 && json_array_size(functions) > 0) {
        r->ctx.legacy_functions = true;
        json_array_foreach (functions, i, t) {
            json_t *tool = NULL;

            snprintf(where, sizeof where, "functions[%zu]", i);
            k = function_tool(r, t, t, where, &tool);
            if (k < 0)
                return k;
            if (json_array_append_new(r->tools, tool) < 0)
                return oom(r);
        }
    }
    return 0;
}

/* Keeps only the tools that allowed_tools (borrowed) names. */
static int tools_filter(struct req *r, const json_t *allowed)
{
    json_auto_t *kept = json_array();
    json_t *t, *a;
    size_t i, j;

    if (!kept)
        return oom(r);
    json_array_foreach (r->tools, i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));

        json_array_foreach (allowed, j, a) {
            const char *an =
                json_string_value(json_object_get(json_object_get(a, "function"), "name"));
            if (!an)
                an = json_string_value(json_object_get(a, "name"));
            if (name && an && streq(name, an)) {
                if (json_array_append(kept, t) < 0)
                    return oom(r);
                break;
            }
        }
    }
    json_decref(r->tools);
    r->tools = TAKE_PTR(kept);
    return 0;
}

static int tool_choice_convert(struct req *r)
{
    json_t *tc = field(r->in, "tool_choice");
    const char *param = "tool_choice";
    json_auto_t *choice = NULL;
    json_t *parallel = field(r->in, "parallel_tool_calls");
    int k;

    if (!tc && field(r->in, "function_call")) {
        tc = field(r->in, "function_call");
        param = "function_call";
    }
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);

        if (streq(s, "auto"))
            choice = json_pack("{s:s}", "type", "auto");
        else if (streq(s, "required"))
            choice = json_pack("{s:s}", "type", "any");
        else if (streq(s, "none"))
            choice = json_pack("{s:s}", "type", "none");
        else
            return fail(r, param, "Invalid value '%s': use 'none', 'auto' or 'required'.", s);
    } else if (json_is_object(tc)) {
        const char *type = json_string_value(json_object_get(tc, "type"));
        const char *name =
            json_string_value(json_object_get(json_object_get(tc, "function"), "name"));

        if (!type && !name)
            name = json_string_value(json_object_get(tc, "name")); /* legacy {"name": N} */
        if (type && streq(type, "allowed_tools")) {
            json_t *at = json_object_get(tc, "allowed_tools");
            const char *mode = json_string_value(json_object_get(at, "mode"));

            k = tools_filter(r, json_object_get(at, "tools"));
            if (k < 0)
                return k;
            choice = json_pack("{s:s}", "type", mode && streq(mode, "required") ? "any" : "auto");
        } else if ((!type || streq(type, "function")) && name)
            choice = json_pack("{s:s,s:s}", "type", "tool", "name", name);
        else
            return fail(r, param, "Unsupported tool_choice.");
    } else if (tc)
        return fail(r, param, "Expected a string or an object.");
    else if (tc == NULL && json_array_size(r->tools) == 0)
        return 0;

    if (json_array_size(r->tools) == 0)
        return 0; /* nothing to choose from; history tools may set "none" later */
    if (json_is_false(parallel)) {
        if (!choice)
            choice = json_pack("{s:s}", "type", "auto");
        if (choice && !streq(json_string_value(json_object_get(choice, "type")), "none") &&
            json_object_set_new(choice, "disable_parallel_tool_use", json_true()) < 0)
            return oom(r);
    }
    if (tc && !choice)
        return oom(r);
    if (choice) {
        const char *type = json_string_value(json_object_get(choice, "type"));
        r->forced_choice = streq(type, "any") || streq(type, "tool");
    }
    r->tool_choice = TAKE_PTR(choice);
    return 0;
}

/* ---- thinking (TRANSLATION.md 2.6) ---- */

static const char *const efforts[] = {"none", "minimal", "low", "medium", "high", "xhigh", "max"};
/* Budgets for budget-only models, by OpenAI effort (none has none). */
static const int64_t effort_budgets[] = {0, 1024, 1024, 4096, 8192, 16384, 32000};

static int effort_index(const char *e)
{
    for (size_t i = 0; e && i < ELEMENTSOF(efforts); i++)
        if (streq(e, efforts[i]))
            return (int)i;
    return -1;
}

/* The output_config.effort an adaptive model gets for an OpenAI effort, capped at what the model
 * offers. */
static const char *effort_adaptive(const struct model_info *m, int e)
{
    switch (e) {
    case 1:
    case 2:
        return "low";
    case 3:
        return "medium";
    case 4:
        return "high";
    case 5:
        return m->effort_xhigh ? "xhigh" : "high";
    case 6:
        return m->effort_max ? "max" : m->effort_xhigh ? "xhigh" : "high";
    default:
        return NULL;
    }
}

/* The OpenAI effort nearest to a manual thinking budget, for models that only think adaptively. */
static int effort_from_budget(int64_t budget)
{
    if (budget < 4096)
        return 2;
    if (budget < 8192)
        return 3;
    if (budget < 16384)
        return 4;
    if (budget < 32000)
        return 5;
    return 6;
}

static int thinking_convert(struct req *r)
{
    json_t *re = field(r->in, "reasoning_effort"), *th = field(r->in, "thinking");
    const struct model_info *m = r->m;
    bool known = m->thinking_adaptive || m->thinking_enabled;
    int e = -1;

    if (re) {
        e = effort_index(json_string_value(re));
        if (e < 0)
            return fail(r, "reasoning_effort",
                        "Invalid value: use 'none', 'minimal', 'low', 'medium', 'high', 'xhigh' "
                        "or 'max'.");
    }
    if (th && !json_is_object(th))
        return fail(r, "thinking", "Expected an object.");

    if (th) {
        /* The client's own Anthropic thinking object (extra_body): verbatim unless the model
         * would refuse its type. */
        const char *type = json_string_value(json_object_get(th, "type"));
        json_t *budget = json_object_get(th, "budget_tokens");
        json_t *display = field(th, "display");

        if (type && streq(type, "enabled") && !m->thinking_enabled && m->thinking_adaptive) {
            r->thinking = display
                              ? json_pack("{s:s,s:O}", "type", "adaptive", "display", display)
                              : json_pack("{s:s,s:s}", "type", "adaptive", "display", "summarized");
            if (json_is_integer(budget) && m->effort)
                r->effort = effort_adaptive(m, effort_from_budget(json_integer_value(budget)));
        } else if (type && streq(type, "adaptive") && !m->thinking_adaptive && m->thinking_enabled)
            r->thinking = json_pack("{s:s,s:I}", "type", "enabled", "budget_tokens",
                                    (json_int_t)effort_budgets[e > 0 ? e : 3]);
        else if (type && streq(type, "disabled") && !m->thinking_can_disable && known)
            r->thinking = NULL;
        else
            r->thinking = json_deep_copy(th);
        if (th && r->thinking == NULL && !(type && streq(type, "disabled")))
            return oom(r);
        if (!r->effort && e > 0 && m->effort && r->thinking && block_is(r->thinking, "adaptive"))
            r->effort = effort_adaptive(m, e);
    } else if (e >= 0) {
        if (m->thinking_adaptive) {
            if (e == 0) {
                if (m->thinking_default_on && m->thinking_can_disable &&
                    !(r->thinking = json_pack("{s:s}", "type", "disabled")))
                    return oom(r);
            } else {
                /* display: "summarized" explicitly: "omitted" is the newest models' default and
                 * returns empty thinking text. */
                r->thinking = json_pack("{s:s,s:s}", "type", "adaptive", "display", "summarized");
                if (!r->thinking)
                    return oom(r);
                if (m->effort)
                    r->effort = effort_adaptive(m, e);
            }
        } else if (m->thinking_enabled && e > 0) {
            r->thinking = json_pack("{s:s,s:I}", "type", "enabled", "budget_tokens",
                                    (json_int_t)effort_budgets[e]);
            if (!r->thinking)
                return oom(r);
        }
    }

    /* A forced tool choice is the explicit ask; manual thinking cannot coexist with it. */
    if (r->thinking && block_is(r->thinking, "enabled") && r->forced_choice) {
        json_decref(r->thinking);
        r->thinking = NULL;
        r->effort = NULL;
    }
    return 0;
}

/* Manual thinking needs the final assistant turn of a tool loop to start with its thinking
 * block ("Expected `thinking` or `redacted_thinking`, but found `tool_use`"). OpenAI clients
 * rarely send it back; without it, thinking is dropped for this request rather than answered
 * with a 400 (pitfall 1). Adaptive thinking degrades on its own upstream, so it stays. */
static int thinking_history_check(struct req *r)
{
    json_t *turn, *content, *b;
    size_t t, j;
    bool has_tool_use = false;

    if (!block_is(r->thinking, "enabled"))
        return 0;
    for (t = json_array_size(r->turns); t > 0; t--) {
        turn = json_array_get(r->turns, t - 1);
        if (streq(json_string_value(json_object_get(turn, "role")), "assistant"))
            break;
    }
    if (t == 0)
        return 0;
    content = json_object_get(turn, "content");
    json_array_foreach (content, j, b)
        has_tool_use = has_tool_use || block_is(b, "tool_use");
    if (!has_tool_use || block_is_thinking(json_array_get(content, 0)))
        return 0;
    json_decref(r->thinking);
    r->thinking = NULL;
    r->effort = NULL;
    /* The JSON-mode tool can be forced again now. */
    if (r->ctx.json_tool[0] && !r->tool_choice &&
        !(r->tool_choice = json_pack("{s:s,s:s}", "type", "tool", "name", JSON_TOOL_NAME)))
        return oom(r);
    return 0;
}

/* ---- max_tokens (TRANSLATION.md 2.1, 2.6) ---- */

static int max_tokens_convert(struct req *r)
{
    json_t *v = field(r->in, "max_completion_tokens");
    const char *param = "max_completion_tokens";
    int64_t model_max = r->m->max_output_tokens, mt;
    json_t *budget_j = json_object_get(r->thinking, "budget_tokens");

    if (!v) {
        v = field(r->in, "max_tokens");
        param = "max_tokens";
    }
    if (v) {
        /* 100.0 is a JSON number like 100; some clients write integers that way. */
        double d = json_number_value(v);

        if (!json_is_num(v) || d < 1 || d > 1e12 || (double)(int64_t)d != d)
            return fail(r, param, "Expected a positive integer.");
        mt = (int64_t)d;
    } else {
        mt = model_max > 0                          ? model_max
             : r->opt->unknown_model_max_tokens > 0 ? r->opt->unknown_model_max_tokens
                                                    : 8192;
        if (!r->stream && r->opt->nonstream_max_tokens_cap > 0)
            mt = MIN(mt, r->opt->nonstream_max_tokens_cap);
    }

    if (block_is(r->thinking, "enabled") && json_is_integer(budget_j)) {
        int64_t budget = json_integer_value(budget_j);

        if (mt <= budget) {
            mt = budget + MAX(mt, 4096);
            if (model_max > 0)
                mt = MIN(mt, model_max);
        }
        if (mt <= budget) {
            /* The model's maximum leaves no room: shrink the budget, or give up thinking. */
            if (mt - 1 < 1024) {
                json_decref(r->thinking);
                r->thinking = NULL;
            } else if (json_object_set_new(r->thinking, "budget_tokens", json_integer(mt - 1)) < 0)
                return oom(r);
        }
    }
    r->max_tokens = mt;
    return 0;
}

/* ---- response_format (TRANSLATION.md 2.5) ---- */

/* Keywords Anthropic's structured outputs refuse; they move into the description, as the
 * Anthropic SDKs do, so the model may still follow them. */
static const char *const schema_unsupported[] = {
    "minimum",   "maximum",   "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "maxItems",         "minProperties",    "maxProperties",
};
static const char *const string_formats[] = {"date-time", "time", "date", "duration", "email",
                                             "hostname",  "uri",  "ipv4", "ipv6",     "uuid"};

/* "key: value" as the Anthropic SDK writes it (Python's str() of the value). */
static int schema_note(struct buf *note, const char *key, const json_t *v)
{
    int k = buf_append_str(note, note->len > 0 ? ", " : "{");

    if (k >= 0)
        k = buf_append_str(note, key);
    if (k >= 0)
        k = buf_append_str(note, ": ");
    if (k < 0)
        return k;
    if (json_is_string(v))
        return buf_append(note, json_string_value(v), json_string_length(v));
    if (json_is_true(v))
        return buf_append_str(note, "True");
    if (json_is_false(v))
        return buf_append_str(note, "False");
    return translate_json_dump(v, note);
}

static bool schema_is_object(const json_t *s)
{
    json_t *type = json_object_get(s, "type"), *t;
    size_t i;

    if (json_is_string(type))
        return streq(json_string_value(type), "object");
    json_array_foreach (type, i, t)
        if (json_is_string(t) && streq(json_string_value(t), "object"))
            return true;
    return !type && json_object_get(s, "properties");
}

/* Prepares a JSON schema (modified in place) for output_config.format: additionalProperties
 * false on every object, refused keywords moved into the description. */
static int schema_prepare(json_t *s, unsigned depth)
{
    static const char *const subschema_maps[] = {"properties", "$defs", "definitions",
                                                 "patternProperties"};
    static const char *const subschema_lists[] = {"anyOf", "oneOf", "allOf", "prefixItems"};
    struct buf note = BUF_INIT(64 * 1024);
    json_t *v, *item;
    const char *key;
    size_t i;
    int k = 0;

    if (!json_is_object(s) || depth > 64)
        return 0;
    for (i = 0; i < ELEMENTSOF(subschema_maps); i++)
        json_object_foreach (json_object_get(s, subschema_maps[i]), key, item)
            if ((k = schema_prepare(item, depth + 1)) < 0)
                return k;
    for (i = 0; i < ELEMENTSOF(subschema_lists); i++) {
        size_t j;
        json_array_foreach (json_object_get(s, subschema_lists[i]), j, item)
            if ((k = schema_prepare(item, depth + 1)) < 0)
                return k;
    }
    v = json_object_get(s, "items");
    if (json_is_object(v) && (k = schema_prepare(v, depth + 1)) < 0)
        return k;
    json_array_foreach (v, i, item)
        if ((k = schema_prepare(item, depth + 1)) < 0)
            return k;

    if (schema_is_object(s) && !json_is_false(json_object_get(s, "additionalProperties")) &&
        json_object_set_new(s, "additionalProperties", json_false()) < 0)
        return -ENOMEM;

    for (i = 0; i < ELEMENTSOF(schema_unsupported) && k >= 0; i++)
        if ((v = json_object_get(s, schema_unsupported[i]))) {
            k = schema_note(&note, schema_unsupported[i], v);
            json_object_del(s, schema_unsupported[i]);
        }
    v = json_object_get(s, "minItems");
    if (k >= 0 && v && !(json_is_integer(v) && json_integer_value(v) <= 1)) {
        k = schema_note(&note, "minItems", v);
        json_object_del(s, "minItems");
    }
    v = json_object_get(s, "format");
    if (k >= 0 && json_is_string(v)) {
        bool ok = false;
        for (i = 0; i < ELEMENTSOF(string_formats); i++)
            ok = ok || streq(json_string_value(v), string_formats[i]);
        if (!ok) {
            k = schema_note(&note, "format", v);
            json_object_del(s, "format");
        }
    }
    if (k >= 0 && note.len > 0) {
        const char *desc = json_string_value(json_object_get(s, "description"));

        k = buf_append_str(&note, "}");
        if (k >= 0)
            k = json_object_set_new(s, "description",
                                    desc ? json_sprintf("%s\n\n%s", desc, note.data)
                                         : json_string(note.data));
    }
    buf_free(&note, false);
    return k < 0 ? -ENOMEM : 0;
}

static int response_format_convert(struct req *r)
{
    json_t *rf = field(r->in, "response_format"), *js, *schema;
    const char *type;
    int k;

    if (!rf)
        return 0;
    type = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !type)
        return fail(r, "response_format", "Expected an object with a 'type'.");
    if (streq(type, "text"))
        return 0;
    if (streq(type, "json_object")) {
        /* No native equivalent: output_config.format needs a schema, and prefill is refused. */
        if (json_array_append_new(r->system_tail, json_pack("{s:s,s:s}", "type", "text", "text",
                                                            JSON_OBJECT_INSTRUCTION)) < 0)
            return oom(r);
        return 0;
    }
    if (!streq(type, "json_schema"))
        return fail(r, "response_format.type",
                    "Invalid value '%s': use 'text', 'json_object' or 'json_schema'.", type);

    js = json_object_get(rf, "json_schema");
    if (!json_is_object(js))
        return fail(r, "response_format.json_schema", "Expected an object.");
    schema = field(js, "schema");
    if (schema && !json_is_object(schema))
        return fail(r, "response_format.json_schema.schema", "Expected a JSON schema object.");

    if (r->m->structured_outputs) {
        json_auto_t *s = schema ? json_deep_copy(schema) : json_pack("{s:s}", "type", "object");

        if (!s)
            return oom(r);
        k = schema_prepare(s, 0);
        if (k < 0)
            return oom(r);
        r->format = json_pack("{s:s,s:O}", "type", "json_schema", "schema", s);
        return r->format ? 0 : oom(r);
    }
    if (json_array_size(r->tools) > 0) {
        /* A forced tool would collide with the client's tools (LiteLLM #7135): ask in words. */
        struct buf text = BUF_INIT(SCHEMA_TEXT_MAX);
        json_t *block;

        k = buf_append_str(&text, JSON_OBJECT_INSTRUCTION " It must match this JSON schema: ");
        if (k >= 0)
            k = schema ? translate_json_dump(schema, &text) : buf_append_str(&text, "{}");
        block =
            k >= 0 ? json_pack("{s:s,s:s%}", "type", "text", "text", text.data, text.len) : NULL;
        buf_free(&text, false);
        if (!block || json_array_append_new(r->system_tail, block) < 0)
            return oom(r);
        return 0;
    }

    /* The forced-tool fallback: the tool's input comes back as the content. */
    {
        json_auto_t *s = schema ? json_deep_copy(schema) : json_pack("{s:s}", "type", "object");

        if (!s)
            return oom(r);
        if (!json_object_get(s, "type") &&
            json_object_set_new(s, "type", json_string("object")) < 0)
            return oom(r);
        if (json_array_append_new(
                r->tools, json_pack("{s:s,s:O}", "name", JSON_TOOL_NAME, "input_schema", s)) < 0)
            return oom(r);
    }
    snprintf(r->ctx.json_tool, sizeof r->ctx.json_tool, "%s", JSON_TOOL_NAME);
    json_decref(r->tool_choice);
    r->tool_choice = NULL;
    /* Manual thinking refuses a forced choice; then the model is only asked by the tool list. */
    if (!block_is(r->thinking, "enabled")) {
        r->tool_choice = json_pack("{s:s,s:s}", "type", "tool", "name", JSON_TOOL_NAME);
        if (!r->tool_choice)
            return oom(r);
    }
    return 0;
}

/* ---- sampling and the rest (TRANSLATION.md 2.1) ---- */

static int sampling_convert(struct req *r, json_t *out)
{
    json_t *temp = field(r->in, "temperature"), *top_p = field(r->in, "top_p");
    json_t *top_k = field(r->in, "top_k");
    bool thinking_on =
        r->thinking && (block_is(r->thinking, "enabled") || block_is(r->thinking, "adaptive"));
    json_auto_t *t = NULL, *p = NULL;

    if (temp && !json_is_num(temp))
        return fail(r, "temperature", "Expected a number.");
    if (top_p && !json_is_num(top_p))
        return fail(r, "top_p", "Expected a number.");
    if (top_k && !json_is_integer(top_k))
        return fail(r, "top_k", "Expected an integer.");
    /* Opus 4.7+ and the 5 family refuse the fields outright. */
    if (r->m->rejects_sampling)
        return 0;

    if (temp && !thinking_on) {
        double d = json_number_value(temp);
        /* OpenAI allows 0-2, Anthropic 0-1: clamp, as Anthropic's own compatibility layer does. */
        /* The clamped value keeps the client's number type (1.7 -> 1.0, 2 -> 1). */
        if (d > 1 || d < 0)
            t = json_is_real(temp) ? json_real(d > 1 ? 1.0 : 0.0) : json_integer(d > 1 ? 1 : 0);
        else
            t = json_incref(temp);
    }
    if (top_p) {
        double d = json_number_value(top_p);
        p = thinking_on && d < 0.95 ? json_real(0.95) : json_incref(top_p);
    }
    /* The 4.5 family takes one or the other: "Cannot specify both temperature and top_p". */
    if (r->m->sampling_exclusive && t && p) {
        json_decref(p);
        p = NULL;
    }
    if ((t && json_object_set(out, "temperature", t) < 0) ||
        (p && json_object_set(out, "top_p", p) < 0) ||
        (top_k && !thinking_on && json_object_set(out, "top_k", top_k) < 0))
        return oom(r);
    return 0;
}

static int stop_convert(struct req *r, json_t *out)
{
    json_t *stop = field(r->in, "stop"), *s;
    json_auto_t *list = json_array();
    char param[32];
    size_t i;

    if (!list)
        return oom(r);
    if (!stop)
        return 0;
    if (json_is_string(stop)) {
        if (!is_blank(json_string_value(stop)) && json_array_append(list, stop) < 0)
            return oom(r);
    } else if (json_is_array(stop)) {
        json_array_foreach (stop, i, s) {
            snprintf(param, sizeof param, "stop[%zu]", i);
            if (!json_is_string(s))
                return fail(r, param, "Expected a string.");
            /* Anthropic refuses empty and white-space-only stop sequences. */
            if (!is_blank(json_string_value(s)) && json_array_append(list, s) < 0)
                return oom(r);
        }
    } else
        return fail(r, "stop", "Expected a string or an array of strings.");
    if (json_array_size(list) > 0 && json_object_set(out, "stop_sequences", list) < 0)
        return oom(r);
    return 0;
}

static bool looks_like_email(const char *s)
{
    const char *at = strchr(s, '@');

    return at && at > s && strchr(at + 1, '.') && !strpbrk(s, " \t");
}

static bool looks_like_phone(const char *s)
{
    size_t digits = 0;

    for (; *s; s++) {
        if (*s >= '0' && *s <= '9')
            digits++;
        else if (!strchr("+-(). ", *s))
            return false;
    }
    return digits >= 7;
}

/* safety_identifier ?? user -> metadata.user_id; Anthropic asks for an opaque id, so an email
 * address or a phone number goes as its SHA-256. */
static int user_convert(struct req *r, json_t *out)
{
    json_t *v = field(r->in, "safety_identifier");
    const char *s;
    char hex[65];

    if (!json_is_string(v))
        v = field(r->in, "user");
    s = json_string_value(v);
    if (!s || !*s)
        return 0;
    if (looks_like_email(s) || looks_like_phone(s)) {
        sha256_hex(s, strlen(s), hex);
        s = hex;
    }
    return json_object_set_new(out, "metadata", json_pack("{s:s}", "user_id", s)) < 0 ? oom(r) : 0;
}

static int service_tier_convert(struct req *r, json_t *out)
{
    const char *s = json_string_value(field(r->in, "service_tier")), *tier = NULL;

    if (!s)
        return 0;
    if (streq(s, "default"))
        tier = "standard_only";
    else if (streq(s, "auto") || streq(s, "priority") || streq(s, "fast"))
        tier = "auto";
    /* flex and scale have no Anthropic counterpart: dropped. */
    if (tier && json_object_set_new(out, "service_tier", json_string(tier)) < 0)
        return oom(r);
    return 0;
}

/* Keeps cache_control on the last CACHE_BREAKPOINTS_MAX breakpoint blocks only. */
static void breakpoints_trim(struct req *r)
{
    size_t n = json_array_size(r->breakpoints);

    for (size_t i = 0; i + CACHE_BREAKPOINTS_MAX < n; i++)
        json_object_del(json_array_get(r->breakpoints, i), "cache_control");
}

static int output_config(struct req *r, json_t *out)
{
    json_auto_t *oc = NULL;

    if (!r->effort && !r->format)
        return 0;
    oc = json_object();
    if (!oc)
        return oom(r);
    if ((r->effort && json_object_set_new(oc, "effort", json_string(r->effort)) < 0) ||
        (r->format && json_object_set(oc, "format", r->format) < 0) ||
        json_object_set(out, "output_config", oc) < 0)
        return oom(r);
    return 0;
}

/* History with tool calls but no tools offered now: minimal definitions for the names used, and
 * tool_choice none, so the history stays valid and no new call is made. */
static int history_tools_synthesise(struct req *r)
{
    const char *name;
    json_t *v;

    if (json_array_size(r->tools) > 0 || json_object_size(r->history_tools) == 0)
        return 0;
    json_object_foreach (r->history_tools, name, v)
        if (json_array_append_new(r->tools, json_pack("{s:s,s:{s:s}}", "name", name, "input_schema",
                                                      "type", "object")) < 0)
            return oom(r);
    json_decref(r->tool_choice);
    r->tool_choice = json_pack("{s:s}", "type", "none");
    return r->tool_choice ? 0 : oom(r);
}

static int request_convert(struct req *r, json_t *out)
{
    json_t *model = field(r->in, "model"), *n = field(r->in, "n"), *stream;
    json_t *pco = field(r->in, "prompt_cache_options");
    const char *upstream_model;
    int k;

    if (!json_is_string(model) || json_string_length(model) == 0)
        return fail(r, "model", "You must provide a model parameter.");
    if (!r->ctx.model[0])
        snprintf(r->ctx.model, sizeof r->ctx.model, "%s", json_string_value(model));
    upstream_model = r->m->id[0] ? r->m->id : json_string_value(model);
    if (n && (!json_is_integer(n) || json_integer_value(n) != 1))
        return fail(r, "n", "Only n = 1 is supported: Claude returns one choice per request.");
    stream = field(r->in, "stream");
    if (stream && !json_is_boolean(stream))
        return fail(r, "stream", "Expected a boolean.");
    r->stream = json_is_true(stream);
    r->ctx.stream = r->stream;
    r->ctx.include_usage =
        r->stream && json_is_true(json_object_get(field(r->in, "stream_options"), "include_usage"));
    if (json_is_string(json_object_get(pco, "ttl")) &&
        streq(json_string_value(json_object_get(pco, "ttl")), "30m"))
        r->cache_ttl = "1h"; /* OpenAI's minimum lifetime is longer than Anthropic's 5m */

    if ((k = tools_convert(r)) < 0 || (k = tool_choice_convert(r)) < 0 ||
        (k = thinking_convert(r)) < 0 || (k = response_format_convert(r)) < 0 ||
        (k = messages_convert(r)) < 0 || (k = history_tools_synthesise(r)) < 0 ||
        (k = pairing_check(r)) < 0 || (k = thinking_history_check(r)) < 0 ||
        (k = max_tokens_convert(r)) < 0 || (k = prefill_check(r)) < 0)
        return k;
    breakpoints_trim(r);
    if (json_array_extend(r->system, r->system_tail) < 0)
        return oom(r);

    if (json_object_set_new(out, "model", json_string(upstream_model)) < 0 ||
        json_object_set(out, "messages", r->turns) < 0 ||
        json_object_set_new(out, "max_tokens", json_integer(r->max_tokens)) < 0)
        return oom(r);
    if (json_array_size(r->system) > 0 && json_object_set(out, "system", r->system) < 0)
        return oom(r);
    if (r->stream && json_object_set_new(out, "stream", json_true()) < 0)
        return oom(r);
    if ((k = sampling_convert(r, out)) < 0 || (k = stop_convert(r, out)) < 0 ||
        (k = user_convert(r, out)) < 0 || (k = service_tier_convert(r, out)) < 0 ||
        (k = output_config(r, out)) < 0)
        return k;
    if (json_array_size(r->tools) > 0) {
        if (json_object_set(out, "tools", r->tools) < 0 ||
            (r->tool_choice && json_object_set(out, "tool_choice", r->tool_choice) < 0))
            return oom(r);
    }
    if (r->thinking && json_object_set(out, "thinking", r->thinking) < 0)
        return oom(r);
    if (r->opt->auto_cache &&
        json_object_set_new(out, "cache_control", json_pack("{s:s}", "type", "ephemeral")) < 0)
        return oom(r);
    return 0;
}

int translate_request(const json_t *in, const struct model_info *model,
                      const struct translate_options *opt, json_t **ret_out,
                      struct translate_context *ret_ctx, struct translate_error *reterr)
{
    static const struct translate_options defaults = TRANSLATE_OPTIONS_DEFAULT;
    static const struct model_info unknown = {};
    _cleanup_(req_done) struct req r = {
        .in = in,
        .m = model ? model : &unknown,
        .opt = opt ? opt : &defaults,
    };
    json_auto_t *out = NULL;
    int k;

    /* created and model may be preset by the caller; everything else is ours to fill. */
    if (ret_ctx) {
        memcpy(r.ctx.model, ret_ctx->model, sizeof r.ctx.model);
        r.ctx.model[sizeof r.ctx.model - 1] = '\0';
        r.ctx.created = ret_ctx->created;
    }
    if (r.ctx.created == 0)
        r.ctx.created = (int64_t)time(NULL);

    r.system = json_array();
    r.system_tail = json_array();
    r.turns = json_array();
    r.tools = json_array();
    r.id_groups = json_object();
    r.history_tools = json_object();
    r.breakpoints = json_array();
    out = json_object();
    if (!r.system || !r.system_tail || !r.turns || !r.tools || !r.id_groups || !r.history_tools ||
        !r.breakpoints || !out)
        k = oom(&r);
    else if (!json_is_object(in))
        k = fail(&r, NULL, "The request body must be a JSON object.");
    else
        k = request_convert(&r, out);
    if (k < 0) {
        if (reterr)
            *reterr = r.err;
        return k == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    if (ret_ctx)
        *ret_ctx = r.ctx;
    *ret_out = TAKE_PTR(out);
    return 0;
}
