/* http-error.h: every error routerd makes itself, in the caller's API format. */
#pragma once

#include <errno.h>

struct request;

enum api_format {
    API_FORMAT_ANTHROPIC, /* {"type":"error","error":{"type","message"},"request_id"} */
    API_FORMAT_OPENAI,    /* {"error":{"message","type","param","code"}} */
    _API_FORMAT_MAX,
    _API_FORMAT_INVALID = -EINVAL,
};

/* The Anthropic error type for an HTTP status ("invalid_request_error", "not_found_error", ...). */
const char *error_type_for_status(unsigned status);
/* OpenAI's error code for a status, or NULL (encoded as null). */
const char *openai_error_code_for_status(unsigned status);

/* Builds an error body. type NULL means "by status"; param and code may be NULL (OpenAI only).
 * Returns a new NUL-terminated string (caller frees), or NULL on allocation failure. */
char *error_body_new(enum api_format fmt, unsigned status, const char *type, const char *message,
                     const char *param, const char *code, const char *request_id);

/* Answers req with an error in its API's format: the only place routerd picks an error status and
 * body. Works from the access handler and, for a suspended connection, from anywhere (the
 * connection is resumed). Returns 0 or a negative errno (the connection is then closed). */
int http_reply_error(struct request *req, unsigned status, const char *message);
/* The same with an explicit OpenAI param (validation errors name the field). */
int http_reply_error_param(struct request *req, unsigned status, const char *message,
                           const char *param);
/* The same with an explicit OpenAI param and code (NULL: by status). */
int http_reply_error_openai(struct request *req, unsigned status, const char *message,
                            const char *param, const char *code);
