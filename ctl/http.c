/* http.c: dualroutectl's HTTP side: routerd's /health and one chat message.
 *
 * Blocking libcurl easy handles: a CLI does one transfer at a time. The chat reply is read as
 * JSON, or with --stream as an SSE stream whose text_delta events are printed as they arrive.
 * Bodies are capped (struct buf) and the request header holding the key is wiped before curl
 * frees it. An HTTP error prints routerd's error message, which it writes for people. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "buf.h"
#include "ctl.h"
#include "curl-headers.h"
#include "http.h"
#include "macro.h"
#include "secret.h"
#include "sse.h"

#define HEALTH_TIMEOUT_MS 2000L
#define CHAT_CONNECT_TIMEOUT_S 5L
#define CHAT_TIMEOUT_S 600L
#define BODY_MAX ((size_t)4 * 1024 * 1024)
#define SSE_LINE_MAX ((size_t)1024 * 1024)
#define CHAT_MAX_TOKENS 1024
#define CHAT_DEFAULT_MODEL "sonnet"

static size_t discard_cb(char *p, size_t size, size_t n, void *userdata)
{
    return size * n;
}

static char *url_join(const char *base, const char *path)
{
    size_t n = strlen(base);
    char *u;

    while (n > 0 && base[n - 1] == '/')
        n--;
    if (asprintf(&u, "%.*s%s", (int)n, base, path) < 0)
        return NULL;
    return u;
}

static bool curl_unreachable(CURLcode c)
{
    return c == CURLE_COULDNT_CONNECT || c == CURLE_COULDNT_RESOLVE_HOST ||
           c == CURLE_COULDNT_RESOLVE_PROXY || c == CURLE_OPERATION_TIMEDOUT ||
           c == CURLE_URL_MALFORMAT || c == CURLE_UNSUPPORTED_PROTOCOL;
}

int http_health(const char *base, char *reterr, size_t errlen)
{
    _cleanup_free_ char *url = url_join(base, "/health");
    CURL *h;
    CURLcode c;
    long status = 0;

    if (!url)
        return -ENOMEM;
    h = curl_easy_init();
    if (!h)
        return -ENOMEM;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, HEALTH_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    c = curl_easy_perform(h);
    if (c == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (c != CURLE_OK) {
        snprintf(reterr, errlen, "%s", curl_easy_strerror(c));
        return -ECONNREFUSED;
    }
    if (status != 200) {
        snprintf(reterr, errlen, "GET /health answered HTTP %ld", status);
        return -EPROTO;
    }
    return 0;
}

struct chat {
    CURL *h;
    bool stream;
    bool sse; /* the reply is an event stream (decided at the first body byte) */
    bool decided;
    bool printed;    /* some text went to stdout */
    struct buf body; /* a non-stream reply, or an error reply */
    struct sse_parser parser;
    char *error; /* an "error" event's message */
};

static int chat_event(const char *event, const char *data, size_t len, void *userdata)
{
    struct chat *ch = userdata;
    json_auto_t *j = NULL;

    j = json_loadb(data, len, 0, NULL);
    if (!j)
        return 0; /* not ours to judge: routerd's stream is tested elsewhere */
    if (streq(event, "content_block_delta")) {
        const json_t *d = json_object_get(j, "delta");
        const char *text = json_string_value(json_object_get(d, "text"));

        if (text && streq(json_string_value(json_object_get(d, "type")) ?: "", "text_delta")) {
            fputs(text, stdout);
            fflush(stdout);
            ch->printed = true;
        }
    } else if (streq(event, "error")) {
        const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));

        free(ch->error);
        ch->error = strdup(m ?: "routerd sent an error event");
    }
    return 0;
}

static size_t chat_write_cb(char *p, size_t size, size_t n, void *userdata)
{
    struct chat *ch = userdata;
    size_t len = size * n;

    if (!ch->decided) {
        long status = 0;
        char *ct = NULL;

        curl_easy_getinfo(ch->h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(ch->h, CURLINFO_CONTENT_TYPE, &ct);
        ch->sse =
            ch->stream && status == 200 && ct && strncasecmp(ct, "text/event-stream", 17) == 0;
        ch->decided = true;
    }
    if (ch->sse)
        return sse_parser_feed(&ch->parser, p, len) < 0 ? 0 : len;
    return buf_append(&ch->body, p, len) < 0 ? 0 : len;
}

/* routerd's error body: {"type":"error","error":{"type","message"}} (Anthropic's shape) or
 * {"error":{"message"}} (OpenAI's). */
static const char *error_message(const json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "message"));
}

static int chat_print_reply(const struct chat *ch)
{
    json_auto_t *j = json_loadb(ch->body.data ? ch->body.data : "", ch->body.len, 0, NULL);
    const json_t *block;
    size_t i;

    if (!j)
        return ctl_fail(CTL_EXIT_FAILED, "routerd's reply is not JSON");
    if (arg_json) {
        char *s = json_dumps(j, JSON_INDENT(2));

        if (!s)
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        puts(s);
        free(s);
        return 0;
    }
    json_array_foreach (json_object_get(j, "content"), i, block) {
        const char *text = json_string_value(json_object_get(block, "text"));

        if (text && streq(json_string_value(json_object_get(block, "type")) ?: "", "text"))
            fputs(text, stdout);
    }
    fputc('\n', stdout);
    return 0;
}

int http_chat(const char *base, const char *model, const char *message, bool stream,
              const struct secret *key)
{
    _cleanup_free_ char *url = url_join(base, "/v1/messages");
    _cleanup_free_ char *body = NULL;
    json_auto_t *req = NULL;
    struct curl_slist *headers = NULL;
    struct chat ch = {.stream = stream, .body = BUF_INIT(BODY_MAX)};
    long status = 0;
    CURLcode c;
    int r;

    if (!url)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    req = json_pack("{s:s, s:i, s:[{s:s, s:s}], s:b}", "model", model ?: CHAT_DEFAULT_MODEL,
                    "max_tokens", CHAT_MAX_TOKENS, "messages", "role", "user", "content", message,
                    "stream", stream);
    if (!req)
        return ctl_fail(CTL_EXIT_USAGE, "the message is not valid UTF-8");
    body = json_dumps(req, JSON_COMPACT);
    if (!body)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    headers = curl_slist_append(headers, "content-type: application/json");
    headers = curl_slist_append(headers, "anthropic-version: 2023-06-01");
    if (key) {
        struct curl_slist *l =
            curl_slist_append_secret(headers, AUTH_HEADER_API_KEY, key->data, key->len);

        if (!l) {
            curl_slist_wipe_free(headers);
            return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        }
        headers = l;
    }
    if (!headers)
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");

    ch.parser = SSE_PARSER_INIT(SSE_LINE_MAX, chat_event, &ch);
    ch.h = curl_easy_init();
    if (!ch.h) {
        curl_slist_wipe_free(headers);
        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
    }
    curl_easy_setopt(ch.h, CURLOPT_URL, url);
    curl_easy_setopt(ch.h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(ch.h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(ch.h, CURLOPT_CONNECTTIMEOUT, CHAT_CONNECT_TIMEOUT_S);
    curl_easy_setopt(ch.h, CURLOPT_TIMEOUT, CHAT_TIMEOUT_S);
    curl_easy_setopt(ch.h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(ch.h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(ch.h, CURLOPT_WRITEFUNCTION, chat_write_cb);
    curl_easy_setopt(ch.h, CURLOPT_WRITEDATA, &ch);
    c = curl_easy_perform(ch.h);
    curl_easy_getinfo(ch.h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(ch.h);
    curl_slist_wipe_free(headers);

    if (c != CURLE_OK && status == 0 && curl_unreachable(c))
        r = ctl_fail(CTL_EXIT_ROUTERD, "routerd is not reachable at %s: %s", base,
                     curl_easy_strerror(c));
    else if (c != CURLE_OK)
        r = ctl_fail(CTL_EXIT_FAILED, "the chat request failed: %s", curl_easy_strerror(c));
    else if (status != 200) {
        json_auto_t *j = json_loadb(ch.body.data ? ch.body.data : "", ch.body.len, 0, NULL);
        const char *m = error_message(j);

        r = ctl_fail(CTL_EXIT_FAILED, "routerd: %s (HTTP %ld)", m ?: "no error message", status);
    } else if (ch.sse) {
        if (ch.printed)
            fputc('\n', stdout);
        r = ch.error ? ctl_fail(CTL_EXIT_FAILED, "routerd: %s", ch.error) : 0;
    } else
        r = chat_print_reply(&ch);

    sse_parser_done(&ch.parser);
    buf_free(&ch.body, true);
    free(ch.error);
    return r;
}
