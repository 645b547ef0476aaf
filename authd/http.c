/* http.c: authd's HTTP client, libcurl multi on sd-event (see http.h).
 *
 * The wiring is shared/curl-event.c, as in routerd: after each curl_multi_socket_action() the
 * finished transfers are collected. A finished
 * request's callback runs after its easy handle left the multi handle, so the callback may start
 * or cancel other requests. Requests sit in a doubly linked list so the client can free them all.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include "buf.h"
#include "curl-event.h"
#include "http.h"
#include "log.h"
#include "macro.h"
#include "secret.h"
#include "util.h"

struct http_request {
    struct http_client *client;
    struct http_request *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    struct secret *form; /* the POST body, owned */
    struct buf body;     /* the response, wiped when freed */
    bool too_large;
    char errbuf[CURL_ERROR_SIZE];
    http_callback_t cb;
    void *userdata;
};

struct http_client {
    struct curl_event curl;
    struct http_request *requests;
};

/* Takes r out of its client's list of requests; r->client stays set. */
static void request_unlink(struct http_request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        r->client->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
}

static void request_free(struct http_request *r)
{
    if (!r)
        return;
    if (r->client) {
        request_unlink(r);
        if (r->easy)
            curl_multi_remove_handle(r->client->curl.multi, r->easy);
    }
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    secret_free(r->form);
    buf_free(&r->body, true);
    explicit_bzero(r->errbuf, sizeof(r->errbuf));
    free(r);
}

void http_request_cancel(struct http_request *r)
{
    request_free(r);
}

static int curl_code_to_errno(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

static void request_done(struct http_request *r, CURLcode code)
{
    struct http_response res = {};
    long status = 0;
    char nul = 0;

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    /* Leave the multi handle first, so the callback may start or cancel requests freely. */
    curl_multi_remove_handle(r->client->curl.multi, r->easy);
    request_unlink(r);
    r->client = NULL;

    res.status = status;
    if (code != CURLE_OK) {
        res.error = r->too_large ? -EFBIG : curl_code_to_errno(code);
        res.reason = r->too_large   ? "response body too large"
                     : r->errbuf[0] ? r->errbuf
                                    : curl_easy_strerror(code);
    } else if (buf_append(&r->body, &nul, 1) < 0) {
        res.error = -ENOMEM;
        res.reason = "out of memory";
    } else {
        r->body.len--;
        res.body = r->body.data;
        res.body_len = r->body.len;
    }
    if (!res.body) {
        res.body = "";
        res.body_len = 0;
    }
    r->cb(&res, r->userdata);
    request_free(r);
}

static void client_check_done(struct http_client *c)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(c->curl.multi, &left))) {
        struct http_request *r = NULL;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r)
            request_done(r, m->data.result);
    }
}

/* curl_event's act(): a socket or curl's timeout woke the loop. */
static void client_action(struct curl_event *ce, curl_socket_t fd, int mask)
{
    struct http_client *c = ce->userdata;
    int running = 0;

    curl_multi_socket_action(ce->multi, fd, mask, &running);
    client_check_done(c);
}

int http_client_new(sd_event *e, struct http_client **ret)
{
    static bool curl_initialized = false;
    struct http_client *c;
    int r;

    if (!curl_initialized) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return -EIO;
        curl_initialized = true;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    r = curl_event_init(&c->curl, e, 0, 1000, client_action, c);
    if (r < 0)
        goto fail;
    *ret = c;
    return 0;
fail:
    http_client_free(c);
    return r;
}

struct http_client *http_client_free(struct http_client *c)
{
    if (!c)
        return NULL;
    while (c->requests)
        request_free(c->requests);
    curl_event_done(&c->curl);
    free(c);
    return NULL;
}

static size_t on_write(char *p, size_t size, size_t n, void *userdata)
{
    struct http_request *r = userdata;
    size_t len = size * n;

    if (buf_append(&r->body, p, len) < 0) {
        r->too_large = true;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    return len;
}

static int request_new(struct http_client *c, const char *url, uint64_t timeout_usec,
                       http_callback_t cb, void *userdata, struct http_request **ret)
{
    struct http_request *r;

    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->body = BUF_INIT(HTTP_BODY_MAX);
    r->cb = cb;
    r->userdata = userdata;
    r->easy = curl_easy_init();
    if (!r->easy) {
        free(r);
        return -ENOMEM;
    }
    if (timeout_usec == 0)
        timeout_usec = HTTP_TIMEOUT_DEFAULT_USEC;
    if (curl_easy_setopt(r->easy, CURLOPT_URL, url) != CURLE_OK) {
        request_free(r);
        return -EINVAL;
    }
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)(timeout_usec / USEC_PER_MSEC));
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)MIN(timeout_usec / USEC_PER_MSEC, (uint64_t)10000));
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "dualroute-authd");
    *ret = r;
    return 0;
}

static int request_start(struct http_client *c, struct http_request *r, struct http_request **ret)
{
    if (r->headers)
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    if (curl_multi_add_handle(c->curl.multi, r->easy) != CURLM_OK) {
        request_free(r);
        return -ENOMEM;
    }
    r->client = c;
    r->next = c->requests;
    if (r->next)
        r->next->prev = r;
    c->requests = r;
    if (ret)
        *ret = r;
    return 0;
}

int http_post_form(struct http_client *c, const char *url, const struct secret *form,
                   uint64_t timeout_usec, http_callback_t cb, void *userdata,
                   struct http_request **ret)
{
    struct http_request *r = NULL;
    struct curl_slist *l;
    int k;

    k = request_new(c, url, timeout_usec, cb, userdata, &r);
    if (k < 0)
        return k;
    r->form = secret_new(form->data, form->len);
    l = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    if (!r->form || !l) {
        curl_slist_free_all(l);
        request_free(r);
        return -ENOMEM;
    }
    r->headers = l;
    /* Not COPYPOSTFIELDS: curl's copy would be freed without being wiped. */
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, (char *)&r->form->data[0]);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)r->form->len);
    return request_start(c, r, ret);
}

int http_get(struct http_client *c, const char *url, const char *const *headers,
             uint64_t timeout_usec, http_callback_t cb, void *userdata, struct http_request **ret)
{
    struct http_request *r = NULL;
    int k;

    k = request_new(c, url, timeout_usec, cb, userdata, &r);
    if (k < 0)
        return k;
    for (size_t i = 0; headers && headers[i]; i++) {
        struct curl_slist *l = curl_slist_append(r->headers, headers[i]);

        if (!l) {
            request_free(r);
            return -ENOMEM;
        }
        r->headers = l;
    }
    curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
    return request_start(c, r, ret);
}
