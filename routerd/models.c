/* models.c: fetching the upstream's model list.
 *
 * One fetch at a time, one page at a time (limit=1000, then after_id=<last_id> while has_more),
 * through the server's curl multi handle like any other transfer. The pages are collected into a
 * new object (id -> item) that replaces server.model_caps only when the last page arrived, so a
 * failed fetch never leaves half a list. A failure is retried after five minutes; a success is
 * refreshed after a day. Without a router key there is nothing to fetch with, and the
 * translator's static table stands alone. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "buf.h"
#include "log.h"
#include "model-map.h"
#include "models.h"
#include "secret.h"
#include "server.h"
#include "util.h"

#define MODELS_BODY_MAX (8 * 1024 * 1024)
#define MODELS_PAGES_MAX 50
#define MODELS_RETRY_USEC (300 * USEC_PER_SEC)
#define MODELS_REFRESH_USEC (24 * 3600 * USEC_PER_SEC)

struct models_fetch {
    CURL *easy;
    struct curl_slist *headers;
    struct buf body;
    json_t *items; /* id -> item, being collected */
    unsigned pages;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *userdata)
{
    struct models_fetch *f = userdata;

    return buf_append(&f->body, p, size * nmemb) < 0 ? 0 : size * nmemb;
}

static void fetch_free(struct server *s)
{
    struct models_fetch *f = s->models_fetch;

    if (!f)
        return;
    if (f->easy) {
        curl_multi_remove_handle(s->curl.multi, f->easy);
        curl_easy_cleanup(f->easy);
    }
    curl_slist_wipe_free(f->headers);
    buf_free(&f->body, false);
    json_decref(f->items);
    free(f);
    s->models_fetch = NULL;
}

static int on_refresh_timer(sd_event_source *src, uint64_t usec, void *userdata)
{
    (void)models_refresh(userdata);
    return 0;
}

static void schedule(struct server *s, uint64_t delay)
{
    if (!s->models_timer) {
        if (sd_event_add_time_relative(s->event, &s->models_timer, CLOCK_MONOTONIC, delay,
                                       USEC_PER_SEC, on_refresh_timer, s) < 0)
            s->models_timer = NULL;
        return;
    }
    sd_event_source_set_time_relative(s->models_timer, delay);
    sd_event_source_set_enabled(s->models_timer, SD_EVENT_ONESHOT);
}

/* Starts the transfer of the page after after_id (NULL: the first). */
static int fetch_page(struct server *s, const char *after_id)
{
    struct models_fetch *f = s->models_fetch;
    _cleanup_free_ char *url = NULL;
    char *escaped = NULL;
    struct curl_slist *l;

    f->easy = curl_easy_init();
    if (!f->easy)
        return -ENOMEM;
    if (after_id) {
        escaped = curl_easy_escape(f->easy, after_id, 0);
        if (!escaped)
            return -ENOMEM;
    }
    if (asprintf(&url, "%s/v1/models?limit=1000%s%s", s->upstream_base, escaped ? "&after_id=" : "",
                 escaped ? escaped : "") < 0) {
        curl_free(escaped);
        return -ENOMEM;
    }
    curl_free(escaped);

    if (!f->headers) {
        l = curl_slist_append_secret(NULL, AUTH_HEADER_API_KEY, s->api_key->data, s->api_key->len);
        if (l)
            l = curl_slist_append(l, "anthropic-version: 2023-06-01");
        if (l)
            l = curl_slist_append(l, "User-Agent: dualroute/" DUALROUTE_VERSION);
        if (!l)
            return -ENOMEM;
        f->headers = l;
    }
    buf_clear(&f->body);

    curl_easy_setopt(f->easy, CURLOPT_URL, url);
    curl_easy_setopt(f->easy, CURLOPT_PROTOCOLS_STR, s->upstream_plain_http ? "http" : "https");
    curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(f->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(s->cfg->upstream_connect_timeout / USEC_PER_MSEC));
    curl_easy_setopt(f->easy, CURLOPT_TIMEOUT, 60L);
    if (curl_multi_add_handle(s->curl.multi, f->easy) != CURLM_OK)
        return -EIO;
    f->pages++;
    return 0;
}

int models_refresh(struct server *s)
{
    int r;

    if (s->models_fetch || !s->api_key)
        return 0;
    s->models_fetch = calloc(1, sizeof(*s->models_fetch));
    if (!s->models_fetch)
        return -ENOMEM;
    s->models_fetch->body = BUF_INIT(MODELS_BODY_MAX);
    s->models_fetch->items = json_object();
    r = s->models_fetch->items ? fetch_page(s, NULL) : -ENOMEM;
    if (r < 0) {
        fetch_free(s);
        schedule(s, MODELS_RETRY_USEC);
        return log_warning_errno(r, "Failed to start fetching the model list: %m");
    }
    return 0;
}

bool models_owns(const struct server *s, CURL *e)
{
    return s->models_fetch && s->models_fetch->easy == e;
}

static int fetch_fail(struct server *s, const char *why)
{
    log_warning("Could not fetch the upstream's model list (%s); using the built-in table, "
                "retrying in %llu s.",
                why, (unsigned long long)(MODELS_RETRY_USEC / USEC_PER_SEC));
    fetch_free(s);
    schedule(s, MODELS_RETRY_USEC);
    return 0;
}

void models_transfer_done(struct server *s, CURLcode result)
{
    struct models_fetch *f = s->models_fetch;
    json_auto_t *page = NULL;
    const char *last_id;
    json_t *data, *item;
    long status = 0;
    size_t i;
    int r;

    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(s->curl.multi, f->easy);
    curl_easy_cleanup(f->easy);
    f->easy = NULL;
    if (result != CURLE_OK) {
        (void)fetch_fail(s, curl_easy_strerror(result));
        return;
    }
    if (status != 200) {
        char why[64];
        snprintf(why, sizeof why, "HTTP status %ld", status);
        (void)fetch_fail(s, why);
        return;
    }
    page = json_loadb(f->body.data ? f->body.data : "", f->body.len, 0, NULL);
    data = json_object_get(page, "data");
    if (!json_is_array(data)) {
        (void)fetch_fail(s, "not a model list");
        return;
    }
    json_array_foreach (data, i, item) {
        const char *id = json_string_value(json_object_get(item, "id"));
        if (id && json_object_set(f->items, id, item) < 0) {
            (void)fetch_fail(s, "out of memory");
            return;
        }
    }

    last_id = json_string_value(json_object_get(page, "last_id"));
    if (json_is_true(json_object_get(page, "has_more")) && last_id && f->pages < MODELS_PAGES_MAX) {
        r = fetch_page(s, last_id);
        if (r < 0)
            (void)fetch_fail(s, "cannot request the next page");
        return;
    }

    json_decref(s->model_caps);
    s->model_caps = f->items;
    f->items = NULL;
    log_info("Read %zu models from the upstream.", json_object_size(s->model_caps));
    fetch_free(s);
    schedule(s, MODELS_REFRESH_USEC);
}

void models_free(struct server *s)
{
    fetch_free(s);
    s->models_timer = sd_event_source_disable_unref(s->models_timer);
}

/* An RFC 3339 time ("2025-02-19T00:00:00Z", fractions and offsets allowed) as unix seconds; 0 when
 * it does not parse. */
static int64_t rfc3339_to_unix(const char *s)
{
    struct tm tm = {};
    const char *rest;
    int64_t t;

    if (!s)
        return 0;
    rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        return 0;
    t = (int64_t)timegm(&tm);
    if (*rest == '.')
        while (*++rest >= '0' && *rest <= '9')
            ;
    if ((*rest == '+' || *rest == '-') && strlen(rest) >= 6) {
        int64_t off = ((rest[1] - '0') * 10 + (rest[2] - '0')) * 3600 +
                      ((rest[4] - '0') * 10 + (rest[5] - '0')) * 60;
        t += *rest == '+' ? -off : off;
    }
    return t;
}

/* A copy of an Anthropic ModelInfo item with OpenAI's Model fields added (TRANSLATION.md 3.6):
 * id, object, created, owned_by beside type, display_name, created_at and the rest. id replaces
 * the item's own id when not NULL (an alias). Returns a new reference, or NULL. */
static json_t *model_superset(const json_t *item, const char *id)
{
    json_t *m = json_deep_copy(item);

    if (!json_is_object(m)) {
        json_decref(m);
        return NULL;
    }
    if (id)
        json_object_set_new(m, "id", json_string(id));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(
        m, "created",
        json_integer(rfc3339_to_unix(json_string_value(json_object_get(item, "created_at")))));
    json_object_set_new(m, "owned_by", json_string("anthropic"));
    if (!json_object_get(m, "type"))
        json_object_set_new(m, "type", json_string("model"));
    return m;
}

struct alias_ctx {
    const json_t *by_id;
    json_t *data;
};

static void add_alias(const char *alias, const char *target, void *userdata)
{
    struct alias_ctx *c = userdata;
    const json_t *item = json_object_get(c->by_id, target);
    json_t *m;

    if (json_object_get(c->by_id, alias))
        return; /* a real model of that name is listed already */
    if (item)
        m = model_superset(item, alias);
    else {
        json_t *stub =
            json_pack("{s:s,s:s,s:s}", "type", "model", "id", target, "display_name", target);
        m = stub ? model_superset(stub, alias) : NULL;
        json_decref(stub);
    }
    if (m)
        json_array_append_new(c->data, m);
}

json_t *models_superset_list(struct server *s, const json_t *page)
{
    json_auto_t *by_id = json_object();
    json_t *data = json_array(), *item, *out;
    struct alias_ctx c = {.by_id = by_id, .data = data};
    size_t i;

    if (!by_id || !data) {
        json_decref(data);
        return NULL;
    }
    json_array_foreach (json_object_get(page, "data"), i, item) {
        const char *id = json_string_value(json_object_get(item, "id"));
        json_t *m = model_superset(item, NULL);

        if (!id || !m) {
            json_decref(m);
            continue;
        }
        json_object_set(by_id, id, item);
        json_array_append_new(data, m);
    }
    /* The page also refreshes the capabilities the translator uses. */
    if (json_object_size(by_id) > 0) {
        json_decref(s->model_caps);
        s->model_caps = json_incref(by_id);
    }
    model_map_aliases(&s->model_map, add_alias, &c);

    out = json_pack("{s:s,s:o,s:b}", "object", "list", "data", data, "has_more", 0);
    if (out && json_array_size(data) > 0) {
        json_object_set(out, "first_id", json_object_get(json_array_get(data, 0), "id"));
        json_object_set(out, "last_id",
                        json_object_get(json_array_get(data, json_array_size(data) - 1), "id"));
    }
    return out;
}

json_t *models_superset_item(const json_t *item, const char *alias)
{
    return model_superset(item, alias);
}
