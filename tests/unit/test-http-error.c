/* test-http-error.c: error bodies in both API shapes. */
#include <jansson.h>

#include "http-error.h"
#include "test.h"

TEST(types_by_status)
{
    ASSERT_STREQ(error_type_for_status(400), "invalid_request_error");
    ASSERT_STREQ(error_type_for_status(401), "authentication_error");
    ASSERT_STREQ(error_type_for_status(404), "not_found_error");
    ASSERT_STREQ(error_type_for_status(405), "invalid_request_error");
    ASSERT_STREQ(error_type_for_status(413), "request_too_large");
    ASSERT_STREQ(error_type_for_status(429), "rate_limit_error");
    ASSERT_STREQ(error_type_for_status(502), "api_error");
    ASSERT_STREQ(error_type_for_status(504), "timeout_error");
    ASSERT_STREQ(error_type_for_status(529), "overloaded_error");
    ASSERT_STREQ(openai_error_code_for_status(401), "invalid_api_key");
    ASSERT_NULL(openai_error_code_for_status(500));
}

TEST(anthropic_shape)
{
    char *body =
        error_body_new(API_FORMAT_ANTHROPIC, 400, NULL, "bad \"quote\" é", NULL, NULL, "rq_1");
    json_t *j;

    ASSERT_NOT_NULL(body);
    j = json_loads(body, 0, NULL);
    ASSERT_NOT_NULL(j);
    ASSERT_STREQ(json_string_value(json_object_get(j, "type")), "error");
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
                 "invalid_request_error");
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                 "bad \"quote\" é");
    ASSERT_STREQ(json_string_value(json_object_get(j, "request_id")), "rq_1");
    json_decref(j);
    free(body);
}

/* OpenAI's Error schema requires all four keys, param and code possibly null. */
TEST(openai_shape_has_four_keys)
{
    char *body =
        error_body_new(API_FORMAT_OPENAI, 401, NULL, "no key", NULL, "invalid_api_key", "rq_2");
    json_t *j, *e;

    ASSERT_NOT_NULL(body);
    j = json_loads(body, 0, NULL);
    e = json_object_get(j, "error");
    ASSERT_EQ(json_object_size(j), 1);
    ASSERT_EQ(json_object_size(e), 4);
    ASSERT_STREQ(json_string_value(json_object_get(e, "message")), "no key");
    ASSERT_STREQ(json_string_value(json_object_get(e, "type")), "authentication_error");
    ASSERT_TRUE(json_is_null(json_object_get(e, "param")));
    ASSERT_STREQ(json_string_value(json_object_get(e, "code")), "invalid_api_key");
    json_decref(j);
    free(body);
}
