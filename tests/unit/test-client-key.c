/* test-client-key.c: which key a client sent, and what kind it is. */
#include "client-key.h"
#include "test.h"

TEST(classify)
{
    ASSERT_EQ(client_key_classify(NULL, 0), CLIENT_KEY_NONE);
    ASSERT_EQ(client_key_classify("", 0), CLIENT_KEY_NONE);
    ASSERT_EQ(client_key_classify("sk-ant-api03-abc", 16), CLIENT_KEY_ANTHROPIC);
    ASSERT_EQ(client_key_classify("sk-ant-admin01-abc", 18), CLIENT_KEY_ANTHROPIC);
    ASSERT_EQ(client_key_classify("sk-ant-oat01-abc", 16), CLIENT_KEY_SUBSCRIPTION);
    ASSERT_EQ(client_key_classify("sk-ant-", 7), CLIENT_KEY_OTHER);
    ASSERT_EQ(client_key_classify("dr-abc", 6), CLIENT_KEY_MEMBER);
    ASSERT_EQ(client_key_classify("not-used", 8), CLIENT_KEY_OTHER);
    ASSERT_EQ(client_key_classify("dummy", 5), CLIENT_KEY_OTHER);
    /* The length decides, not a NUL: a prefix cut short is not a key. */
    ASSERT_EQ(client_key_classify("sk-ant-oat01", 6), CLIENT_KEY_OTHER);
}

TEST(from_headers)
{
    struct client_key k;

    k = client_key_from_headers("  sk-ant-api03-x  ", NULL);
    ASSERT_EQ(k.kind, CLIENT_KEY_ANTHROPIC);
    ASSERT_EQ(k.len, strlen("sk-ant-api03-x"));
    ASSERT_TRUE(strncmp(k.value, "sk-ant-api03-x", k.len) == 0);

    k = client_key_from_headers(NULL, "Bearer sk-ant-api03-y");
    ASSERT_EQ(k.kind, CLIENT_KEY_ANTHROPIC);
    ASSERT_TRUE(strncmp(k.value, "sk-ant-api03-y", k.len) == 0);

    k = client_key_from_headers(NULL, "bearer   not-used ");
    ASSERT_EQ(k.kind, CLIENT_KEY_OTHER);
    ASSERT_EQ(k.len, strlen("not-used"));

    /* x-api-key wins over Authorization. */
    k = client_key_from_headers("sk-ant-oat01-z", "Bearer sk-ant-api03-y");
    ASSERT_EQ(k.kind, CLIENT_KEY_SUBSCRIPTION);

    /* An empty x-api-key falls back to the bearer token; Basic auth is not a key. */
    k = client_key_from_headers("   ", "Bearer dr-member");
    ASSERT_EQ(k.kind, CLIENT_KEY_MEMBER);
    k = client_key_from_headers(NULL, "Basic dXNlcjpwYXNz");
    ASSERT_EQ(k.kind, CLIENT_KEY_NONE);
    ASSERT_NULL(k.value);
    k = client_key_from_headers(NULL, NULL);
    ASSERT_EQ(k.kind, CLIENT_KEY_NONE);
    ASSERT_STREQ(client_key_kind_to_string(CLIENT_KEY_SUBSCRIPTION), "subscription");
    ASSERT_STREQ(client_key_kind_to_string(_CLIENT_KEY_KIND_INVALID), "invalid");
}
