/* models.h: the upstream's model list (GET /v1/models, every page), fetched with the router's key
 * at start and once a day, kept in server.model_caps: what each model can do (max_tokens,
 * capabilities) for the translator, and the list /v1/models answers from. */
#pragma once

#include <stdbool.h>

#include <curl/curl.h>
#include <jansson.h>

struct server;
struct models_fetch;

/* Starts a fetch unless one is running or the router has no key. Returns 0 or a negative errno. */
int models_refresh(struct server *s);
/* curl finished one of the fetch's transfers (called by the server, outside curl callbacks). */
void models_transfer_done(struct server *s, CURLcode result);
/* True when e is the fetch's easy handle. */
bool models_owns(const struct server *s, CURL *e);
void models_free(struct server *s);

/* The answer to an OpenAI client's GET /v1/models: the upstream's page (borrowed) in the superset
 * shape both SDKs parse, followed by the mapped aliases, has_more false. Also refreshes the
 * capability cache. Returns a new reference, or NULL. */
json_t *models_superset_list(struct server *s, const json_t *page);
/* One model in the superset shape; alias, when not NULL, is the id shown. New reference or NULL. */
json_t *models_superset_item(const json_t *item, const char *alias);
