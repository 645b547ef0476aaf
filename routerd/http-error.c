/* http-error.c: error bodies in the Anthropic and OpenAI shapes.
 *
 * The body is built with jansson so a message with quotes or non-ASCII text stays valid JSON.
 * Which shape a request gets is decided once, when it is routed (struct request.format): the
 * Anthropic paths get Anthropic errors, /v1/chat/completions gets OpenAI errors, and shared paths
 * follow the presence of an anthropic-version header. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "http-error.h"
#include "macro.h"
#include "proxy.h"
#include "translate.h"

const char *error_type_for_status(unsigned status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 409:
        return "conflict_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 504:
        return "timeout_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

const char *openai_error_code_for_status(unsigned status)
{
    switch (status) {
    case 401:
        return "invalid_api_key";
    case 402:
        return "insufficient_quota";
    case 429:
        return "rate_limit_exceeded";
    case 502:
        return "upstream_unreachable";
    default:
        return NULL;
    }
}

static json_t *string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

char *error_body_new(enum api_format fmt, unsigned status, const char *type, const char *message,
                     const char *param, const char *code, const char *request_id)
{
    json_auto_t *root = NULL;

    if (!type)
        type = error_type_for_status(status);
    if (fmt == API_FORMAT_OPENAI)
        root =
            json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message", string_or_null(message), "type",
                      type, "param", string_or_null(param), "code", string_or_null(code));
    else {
        root = json_pack("{s:s,s:{s:s,s:o}}", "type", "error", "error", "type", type, "message",
                         string_or_null(message));
        if (root && request_id)
            json_object_set_new(root, "request_id", json_string(request_id));
    }
    if (!root)
        return NULL;
    /* Not json_dumps(): inside a json-arena scope its text would not be free()'s to free. */
    return translate_json_text(root, 256, NULL);
}

int http_reply_error_openai(struct request *req, unsigned status, const char *message,
                            const char *param, const char *code)
{
    _cleanup_free_ char *body = NULL;

    if (req->format == API_FORMAT_OPENAI && !code)
        code = openai_error_code_for_status(status);
    body = error_body_new(req->format, status, NULL, message, param, code, req->id);
    if (!body)
        return -ENOMEM;
    req->router_error = true;
    snprintf(req->error_text, sizeof req->error_text, "%s", message);
    return request_reply_buffer(req, status, "application/json", TAKE_PTR(body));
}

int http_reply_error_param(struct request *req, unsigned status, const char *message,
                           const char *param)
{
    return http_reply_error_openai(req, status, message, param, NULL);
}

int http_reply_error(struct request *req, unsigned status, const char *message)
{
    return http_reply_error_param(req, status, message, NULL);
}
