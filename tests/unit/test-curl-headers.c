/* test-curl-headers.c: unit tests for shared/curl-headers.c.
 *
 * The header must hold exactly prefix and key (the key may be the start of a longer buffer, as a
 * client key inside an HTTP header is), be appended after what the list already holds, and the
 * list must come back whole for curl_slist_wipe_free(). */
#include <string.h>

#include "curl-headers.h"
#include "test.h"

TEST(append_secret_new_list)
{
    struct curl_slist *l = curl_slist_append_secret(NULL, AUTH_HEADER_API_KEY, "sk-ant-x", 8);

    ASSERT_NOT_NULL(l);
    ASSERT_STREQ(l->data, "x-api-key: sk-ant-x");
    ASSERT_NULL(l->next);
    curl_slist_wipe_free(l);
}

TEST(append_secret_takes_len_bytes)
{
    const char *header = "Bearer tok123, more";
    struct curl_slist *l = curl_slist_append_secret(NULL, AUTH_HEADER_BEARER, header + 7, 6);

    ASSERT_NOT_NULL(l);
    ASSERT_STREQ(l->data, "Authorization: Bearer tok123");
    curl_slist_wipe_free(l);
}

TEST(append_secret_keeps_the_list)
{
    struct curl_slist *l = curl_slist_append(NULL, "content-type: application/json"), *r;

    ASSERT_NOT_NULL(l);
    r = curl_slist_append_secret(l, AUTH_HEADER_API_KEY, "k", 1);
    ASSERT_TRUE(r == l);
    ASSERT_STREQ(r->data, "content-type: application/json");
    ASSERT_NOT_NULL(r->next);
    ASSERT_STREQ(r->next->data, "x-api-key: k");
    curl_slist_wipe_free(r);
}

TEST(wipe_free_accepts_null)
{
    curl_slist_wipe_free(NULL);
}
