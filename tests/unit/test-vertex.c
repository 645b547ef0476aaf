/* test-vertex.c: routerd/vertex.c: URLs for every kind of region (PROVIDERS.md 1.1), the body
 * rewrite (1.2), model ids (1.4) and the anthropic-beta filter (1.3, 1.5). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "macro.h"
#include "test.h"
#include "vertex.h"

static void check_url(const char *base, const char *region, const char *project, const char *model,
                      bool stream, bool count, const char *expected)
{
    _cleanup_free_ char *u = NULL;
    struct vertex_target t = {.base_url = base, .region = region, .project = project};

    ASSERT_OK(vertex_url(&t, model, stream, count, &u));
    ASSERT_STREQ(u, expected);
}

TEST(url_regions)
{
    check_url(NULL, "us-east5", "my-proj", "claude-sonnet-4-5@20250929", false, false,
              "https://us-east5-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-east5/"
              "publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict");
    check_url(NULL, "europe-west1", "my-proj", "claude-sonnet-4-5@20250929", true, false,
              "https://europe-west1-aiplatform.googleapis.com/v1/projects/my-proj/locations/"
              "europe-west1/publishers/anthropic/models/claude-sonnet-4-5@20250929:"
              "streamRawPredict");
    /* global: no region prefix on the host, locations/global in the path. */
    check_url(NULL, "global", "my-proj", "claude-opus-4-6", true, false,
              "https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/publishers/"
              "anthropic/models/claude-opus-4-6:streamRawPredict");
    check_url(NULL, "us", "p", "m@1", false, false,
              "https://aiplatform.us.rep.googleapis.com/v1/projects/p/locations/us/publishers/"
              "anthropic/models/m@1:rawPredict");
    check_url(NULL, "eu", "p", "m@1", false, false,
              "https://aiplatform.eu.rep.googleapis.com/v1/projects/p/locations/eu/publishers/"
              "anthropic/models/m@1:rawPredict");
    /* An old domain-scoped project id. */
    check_url(NULL, "us-east5", "example.com:proj", "m", false, false,
              "https://us-east5-aiplatform.googleapis.com/v1/projects/example.com:proj/locations/"
              "us-east5/publishers/anthropic/models/m:rawPredict");
}

TEST(url_count_tokens_and_base)
{
    check_url(NULL, "us-east5", "p", NULL, false, true,
              "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/"
              "publishers/anthropic/models/count-tokens:rawPredict");
    /* Count tokens never streams, and ignores the model. */
    check_url(NULL, "global", "p", "claude-x", true, true,
              "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/"
              "anthropic/models/count-tokens:rawPredict");
    check_url("http://127.0.0.1:8099/v1", "global", "p", "claude-haiku-4-5@20251001", false, false,
              "http://127.0.0.1:8099/v1/projects/p/locations/global/publishers/anthropic/models/"
              "claude-haiku-4-5@20251001:rawPredict");
    check_url("https://vertex.example", "us-east5", "p", "m", false, false,
              "https://vertex.example/projects/p/locations/us-east5/publishers/anthropic/models/"
              "m:rawPredict");
}

TEST(url_refuses)
{
    char *u = NULL;
    struct vertex_target good = {.region = "us-east5", .project = "p"}, t;

    t = good, t.region = NULL;
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.region = "";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.region = "US-EAST5";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.region = "us-east5/../x";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.region = "evil.com#";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.region = "-x";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.project = "";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.project = "a/b";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.project = "a?b";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.base_url = "http://vertex.example/v1";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.base_url = "http://127.0.0.1.evil/v1";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.base_url = "https://x/v1/";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good, t.base_url = "https://x/v1?a";
    ASSERT_ERROR(vertex_url(&t, "m", false, false, &u), EINVAL);
    t = good;
    ASSERT_ERROR(vertex_url(&t, NULL, false, false, &u), EINVAL);
    ASSERT_ERROR(vertex_url(&t, "", false, false, &u), EINVAL);
    ASSERT_ERROR(vertex_url(&t, "a/b", false, false, &u), EINVAL);
    ASSERT_ERROR(vertex_url(&t, "m:rawPredict", false, false, &u), EINVAL);
    ASSERT_ERROR(vertex_url(&t, "..", false, false, &u), EINVAL);
    ASSERT_ERROR(vertex_url(&t, "a@b@c", false, false, &u), EINVAL);
    ASSERT_NULL(u);
}

TEST(base_url)
{
    _cleanup_free_ char *g = NULL, *r = NULL;
    char *x = NULL;

    ASSERT_OK(vertex_base_url("global", &g));
    ASSERT_STREQ(g, "https://aiplatform.googleapis.com/v1");
    ASSERT_OK(vertex_base_url("asia-southeast1", &r));
    ASSERT_STREQ(r, "https://asia-southeast1-aiplatform.googleapis.com/v1");
    ASSERT_ERROR(vertex_base_url("a b", &x), EINVAL);
    ASSERT_NULL(x);
}

static void check_model(const char *in, const char *expected)
{
    _cleanup_free_ char *out = NULL;

    ASSERT_OK(vertex_model_id(in, &out));
    ASSERT_STREQ(out, expected);
}

TEST(model_ids)
{
    /* The table (PROVIDERS.md 1.4). */
    check_model("claude-sonnet-4-5", "claude-sonnet-4-5@20250929");
    check_model("claude-sonnet-4", "claude-sonnet-4@20250514");
    check_model("claude-sonnet-4-0", "claude-sonnet-4@20250514");
    check_model("claude-opus-4-1", "claude-opus-4-1@20250805");
    check_model("claude-opus-4", "claude-opus-4@20250514");
    check_model("claude-opus-4-5", "claude-opus-4-5@20251101");
    check_model("claude-haiku-4-5", "claude-haiku-4-5@20251001");
    check_model("claude-3-5-haiku", "claude-3-5-haiku@20241022");
    check_model("claude-3-5-haiku-latest", "claude-3-5-haiku@20241022");
    check_model("claude-3-haiku", "claude-3-haiku@20240307");
    /* Dated Anthropic ids: the last '-' becomes '@'. */
    check_model("claude-sonnet-4-5-20250929", "claude-sonnet-4-5@20250929");
    check_model("claude-3-7-sonnet-20250219", "claude-3-7-sonnet@20250219");
    check_model("claude-future-9-20310101", "claude-future-9@20310101");
    /* Already Vertex ids, and undated ids Vertex knows by that name. */
    check_model("claude-sonnet-4-5@20250929", "claude-sonnet-4-5@20250929");
    check_model("claude-opus-4-6", "claude-opus-4-6");
    check_model("claude-sonnet-4-6", "claude-sonnet-4-6");
    check_model("claude-opus-4-7", "claude-opus-4-7");
    /* Not a date: 7 or 9 digits, or no dash before them. */
    check_model("claude-x-2025092", "claude-x-2025092");
    check_model("claude-x-202509291", "claude-x-202509291");
    check_model("claude-x20250929", "claude-x20250929");
    check_model("-20250929", "-20250929");
}

TEST(model_ids_refuse)
{
    char *out = NULL;

    ASSERT_ERROR(vertex_model_id(NULL, &out), EINVAL);
    ASSERT_ERROR(vertex_model_id("", &out), EINVAL);
    ASSERT_ERROR(vertex_model_id("anthropic.claude-3-haiku-20240307-v1:0", &out), EINVAL);
    ASSERT_ERROR(vertex_model_id("claude@", &out), EINVAL);
    ASSERT_ERROR(vertex_model_id("@20250929", &out), EINVAL);
    ASSERT_ERROR(vertex_model_id("a b", &out), EINVAL);
    ASSERT_ERROR(vertex_model_id("a/b", &out), EINVAL);
    /* "x-20250929" with an '@' already: "a@b-20250929" stays, one '@'. */
    ASSERT_OK(vertex_model_id("a@b-20250929", &out));
    ASSERT_STREQ(out, "a@b-20250929");
    free(out);
    ASSERT_TRUE(vertex_model_id_is_valid("claude-sonnet-4-5@20250929"));
    ASSERT_FALSE(vertex_model_id_is_valid("claude-sonnet-4-5@2025@0929"));
}

static void check_body(const char *in, const char *model, bool count, const char *expected)
{
    _cleanup_free_ char *out = NULL;
    size_t n = 0;

    ASSERT_OK(vertex_body(in, strlen(in), model, count, &out, &n));
    ASSERT_STREQ(out, expected);
    ASSERT_EQ(n, strlen(expected));
}

TEST(body_rewrite)
{
    check_body("{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"stream\":true,"
               "\"temperature\":0.5,\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
               "claude-sonnet-4-5@20250929", false,
               "{\"max_tokens\":1024,\"stream\":true,\"temperature\":0.5,"
               "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
               "\"anthropic_version\":\"vertex-2023-10-16\"}");
    /* A client's anthropic_version is replaced; no model is fine. */
    check_body("{\"anthropic_version\":\"2023-06-01\",\"max_tokens\":1}", NULL, false,
               "{\"anthropic_version\":\"vertex-2023-10-16\",\"max_tokens\":1}");
    /* Count tokens keeps the model, as the Vertex id. */
    check_body("{\"model\":\"claude-sonnet-4-5\",\"messages\":[]}", "claude-sonnet-4-5@20250929",
               true,
               "{\"model\":\"claude-sonnet-4-5@20250929\",\"messages\":[],"
               "\"anthropic_version\":\"vertex-2023-10-16\"}");
    check_body("{\"model\":\"claude-sonnet-4-5\"}", NULL, true,
               "{\"model\":\"claude-sonnet-4-5\",\"anthropic_version\":\"vertex-2023-10-16\"}");
    /* NUL and non-ASCII text survive. */
    check_body("{\"model\":\"m\",\"s\":\"a\\u0000b \xc3\xa4\"}", NULL, false,
               "{\"s\":\"a\\u0000b \xc3\xa4\",\"anthropic_version\":\"vertex-2023-10-16\"}");
}

TEST(body_refuses)
{
    char *out = NULL;
    json_auto_t *arr = json_array();

    ASSERT_ERROR(vertex_body("[]", 2, NULL, false, &out, NULL), EINVAL);
    ASSERT_ERROR(vertex_body("", 0, NULL, false, &out, NULL), EINVAL);
    ASSERT_ERROR(vertex_body("{\"a\":", 5, NULL, false, &out, NULL), EINVAL);
    ASSERT_ERROR(vertex_body("{\"a\":99999999999999999999999}", 29, NULL, false, &out, NULL),
                 EINVAL);
    ASSERT_ERROR(vertex_body("{}", VERTEX_BODY_MAX + 1, NULL, false, &out, NULL), EFBIG);
    ASSERT_NULL(out);
    ASSERT_ERROR(vertex_rewrite_body(arr, NULL, false), EINVAL);
    ASSERT_ERROR(vertex_rewrite_body(NULL, NULL, false), EINVAL);
}

static void check_betas(const char *in, bool count, const char *extra, const char *kept,
                        const char *dropped)
{
    _cleanup_free_ char *k = NULL, *d = NULL;

    ASSERT_OK(vertex_filter_betas(in, count, extra, &k, &d));
    if (kept)
        ASSERT_STREQ(k, kept);
    else
        ASSERT_NULL(k);
    if (dropped)
        ASSERT_STREQ(d, dropped);
    else
        ASSERT_NULL(d);
}

TEST(betas)
{
    static const char extra[] = " files-api-2025-04-14 ,,";

    check_betas("interleaved-thinking-2025-05-14", false, NULL, "interleaved-thinking-2025-05-14",
                NULL);
    check_betas("code-execution-2025-05-22", false, NULL, NULL, "code-execution-2025-05-22");
    check_betas(" a , code-execution-2025-05-22,b,, \t", false, NULL, "a,b",
                "code-execution-2025-05-22");
    /* web-search is refused on count-tokens only. */
    check_betas("web-search-2025-03-05,a", false, NULL, "web-search-2025-03-05,a", NULL);
    check_betas("web-search-2025-03-05,a", true, NULL, "a", "web-search-2025-03-05");
    /* The configured list adds to the table. */
    check_betas("files-api-2025-04-14,code-execution-2025-05-22,c", false, extra, "c",
                "files-api-2025-04-14,code-execution-2025-05-22");
    /* Exact matches only. */
    check_betas("code-execution-2025-05-22x,xcode-execution-2025-05-22", false, NULL,
                "code-execution-2025-05-22x,xcode-execution-2025-05-22", NULL);
    /* What Claude Code sends that Vertex refuses (sources in vertex.c's table). */
    check_betas("claude-code-20250219,effort-2025-11-24,prompt-caching-scope-2026-01-05", false,
                NULL, "claude-code-20250219", "effort-2025-11-24,prompt-caching-scope-2026-01-05");
    check_betas("context-1m-2025-08-07", false, NULL, "context-1m-2025-08-07", NULL);
    check_betas("context-1m-2025-08-07", true, NULL, NULL, "context-1m-2025-08-07");
    check_betas("", false, NULL, NULL, NULL);
    check_betas(" , ,", false, NULL, NULL, NULL);
    check_betas(NULL, false, NULL, NULL, NULL);
}

TEST(betas_refuse)
{
    char *k = NULL;
    _cleanup_free_ char *big = malloc(VERTEX_BETA_HEADER_MAX + 2);

    ASSERT_ERROR(vertex_filter_betas("a\r\nX-Evil: 1", false, NULL, &k, NULL), EINVAL);
    ASSERT_NOT_NULL(big);
    memset(big, 'a', VERTEX_BETA_HEADER_MAX + 1);
    big[VERTEX_BETA_HEADER_MAX + 1] = '\0';
    ASSERT_ERROR(vertex_filter_betas(big, false, NULL, &k, NULL), E2BIG);
    big[VERTEX_BETA_HEADER_MAX] = '\0';
    ASSERT_OK(vertex_filter_betas(big, false, NULL, &k, NULL));
    ASSERT_EQ(strlen(k), VERTEX_BETA_HEADER_MAX);
    free(k);
}
