/* vertex.h: Claude on Vertex AI, the pure parts: the endpoint URL for a region, project and
 * model, the Messages body rewritten for Vertex, Anthropic model ids mapped to Vertex ids, and
 * the anthropic-beta values Vertex refuses, filtered out. No IO, no globals, no logging. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct json_t;

#define VERTEX_ANTHROPIC_VERSION "vertex-2023-10-16"
#define VERTEX_REGION_MAX 64
#define VERTEX_PROJECT_MAX 128
#define VERTEX_MODEL_MAX 200
#define VERTEX_BETA_HEADER_MAX 4096
#define VERTEX_BODY_MAX (32 * 1024 * 1024)

/* Where a Vertex request goes; every pointer is borrowed. */
struct vertex_target {
    const char
        *base_url;      /* NULL: by region (PROVIDERS.md 1.1); else e.g. http://127.0.0.1:PORT/v1 */
    const char *region; /* "global", "us", "eu", "us-east5", ... */
    const char *project; /* project id */
};

/* The base URL for a region, as the Anthropic SDK picks it: "global" →
 * https://aiplatform.googleapis.com/v1, "us"/"eu" →
 * https://aiplatform.{us,eu}.rep.googleapis.com/v1, any other →
 * https://{region}-aiplatform.googleapis.com/v1. Returns 0 with a new string in *ret, -EINVAL for a
 * region that is not 1..64 chars of [a-z0-9-], or -ENOMEM. */
int vertex_base_url(const char *region, char **ret);

/* Builds {base}/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:VERB,
 * VERB being rawPredict, or streamRawPredict when stream; with count_tokens the model segment is
 * "count-tokens" and VERB rawPredict (model is then ignored and may be NULL). base_url, when set,
 * must be https or http to loopback, without a trailing '/'. Project ids are 1..128 chars of
 * [a-z0-9.:-] (':' for the old domain-scoped "example.com:project" ids); model is a Vertex id
 * (see vertex_model_id_is_valid()). Returns 0 with a new string in *ret, -EINVAL or -ENOMEM. */
int vertex_url(const struct vertex_target *t, const char *model, bool stream, bool count_tokens,
               char **ret);

/* True when s is 1..200 chars of [A-Za-z0-9._-] with at most one '@' (not first or last). A ':'
 * would end the path segment early (":rawPredict" is the verb), so it is refused. */
bool vertex_model_id_is_valid(const char *s);

/* The Vertex id for an Anthropic model id: an id that already has '@' stays as it is; an
 * undated alias in the built-in table gets its dated Vertex id ("claude-sonnet-4-5" →
 * "claude-sonnet-4-5@20250929"); an id ending in -YYYYMMDD gets '@' for that last '-'
 * ("claude-sonnet-4-5-20250929" → "claude-sonnet-4-5@20250929"); anything else (the undated
 * "claude-opus-4-6") stays as it is. Returns 0 with a new string in *ret, -EINVAL when model or
 * the result is not a valid Vertex id, or -ENOMEM. */
int vertex_model_id(const char *model, char **ret);

/* Rewrites a parsed Messages body for Vertex, in place (body is borrowed and modified): sets
 * "anthropic_version" to vertex-2023-10-16 (replacing a client's "2023-06-01", which Vertex
 * answers with 404) and removes "model", which goes into the URL; "stream" stays. With
 * count_tokens "model" stays in the body and, when vertex_model is not NULL, is set to it.
 * Returns 0, -EINVAL when body is not an object, or -ENOMEM. */
int vertex_rewrite_body(struct json_t *body, const char *vertex_model, bool count_tokens);

/* Parses body[0..len), rewrites it as vertex_rewrite_body() does and prints it compactly.
 * Numbers keep their type (integers stay integers), "\u0000" in strings survives. Returns 0 with
 * a new string in *ret and its length in *ret_len (may be NULL), -EINVAL for a body that is not
 * a JSON object (or has an integer jansson cannot hold), -EFBIG over VERTEX_BODY_MAX, or
 * -ENOMEM. */
int vertex_body(const char *body, size_t len, const char *vertex_model, bool count_tokens,
                char **ret, size_t *ret_len);

/* Filters an anthropic-beta header value ("a,b, c") for Vertex: drops the values in the
 * built-in table of betas Vertex refuses with 400 (and those refused on count-tokens when
 * count_tokens), then those in extra_deny (a comma-separated list from configuration, split the
 * same way; may be NULL). Items are trimmed of spaces and tabs, empty ones dropped, the rest joined
 * with ",". *ret_value gets a new string, or NULL when nothing remains; *ret_dropped (may be NULL)
 * gets the dropped values joined with ",", or NULL when none, for the log line. Returns 0, -E2BIG
 * over VERTEX_BETA_HEADER_MAX, -EINVAL for a control character, or -ENOMEM. */
int vertex_filter_betas(const char *value, bool count_tokens, const char *extra_deny,
                        char **ret_value, char **ret_dropped);
