/* http.h: authd's small HTTP client: libcurl's multi interface on authd's sd-event loop. It POSTs
 * forms and GETs URLs with extra headers, caps every response body at HTTP_BODY_MAX, and reports
 * completion through a callback that always runs from the event loop, never from inside the call
 * that started the request. Request bodies are secrets (token grants) and are wiped when freed; so
 * is the response body. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "macro.h"

struct http_client;
struct http_request;
struct secret;

#define HTTP_BODY_MAX ((size_t)1024 * 1024)
#define HTTP_TIMEOUT_DEFAULT_USEC (30 * USEC_PER_SEC)

/* What came back. body is borrowed for the duration of the callback and NUL-terminated. */
struct http_response {
    int error;          /* 0, or a negative errno: -ETIMEDOUT, -EFBIG (body over the cap), -EIO */
    const char *reason; /* when error: curl's words, one line, never a secret; else NULL */
    long status;        /* the HTTP status, 0 when no reply came */
    const char *body;
    size_t body_len;
};

typedef void (*http_callback_t)(const struct http_response *res, void *userdata);

/* Creates a client on event loop e (borrowed, outlives the client). Calls curl_global_init() the
 * first time. */
int http_client_new(sd_event *e, struct http_client **ret);
/* Cancels every request (their callbacks are not called) and frees. Accepts NULL; returns NULL. */
struct http_client *http_client_free(struct http_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct http_client *, http_client_free);

/* POSTs form (borrowed; copied into a secret the request owns) as
 * application/x-www-form-urlencoded to url. timeout_usec 0 means HTTP_TIMEOUT_DEFAULT_USEC.
 * *ret (may be NULL) lets the caller cancel until the callback has run. */
int http_post_form(struct http_client *c, const char *url, const struct secret *form,
                   uint64_t timeout_usec, http_callback_t cb, void *userdata,
                   struct http_request **ret);
/* GETs url with headers ("Name: value" strings, NULL-terminated; may be NULL). */
int http_get(struct http_client *c, const char *url, const char *const *headers,
             uint64_t timeout_usec, http_callback_t cb, void *userdata, struct http_request **ret);
/* The request's callback will not be called; frees it. Accepts NULL. */
void http_request_cancel(struct http_request *r);
