/* test-redact.c: credentials never survive redact_credentials(). */
#include "redact.h"
#include "secret.h"
#include "test.h"

static char *redact(const char *s)
{
    char *r = redact_credentials(s, strlen(s));

    ASSERT_NOT_NULL(r);
    return r;
}

TEST(prefixed_keys)
{
    char fp[9], want[128];
    char *r;

    r = redact("key sk-ant-api03-AbC_dEf-123456 end");
    secret_fp_buf("api03-AbC_dEf-123456", strlen("api03-AbC_dEf-123456"), fp);
    snprintf(want, sizeof want, "key sk-ant-[redacted:%s] end", fp);
    ASSERT_STREQ(r, want);
    free(r);

    r = redact("glued:xsk-ant-api03-gluedgluedglued");
    ASSERT_TRUE(strstr(r, "gluedgluedglued") == NULL);
    free(r);

    r = redact("Authorization: Bearer abcdefghijklmnop");
    ASSERT_TRUE(strstr(r, "abcdefghijklmnop") == NULL);
    free(r);

    r = redact("{\"k\":\"dr-0123456789abcdefghij\"}");
    ASSERT_TRUE(strstr(r, "0123456789abcdefghij") == NULL);
    ASSERT_TRUE(strstr(r, "\"k\":\"dr-[redacted:") != NULL);
    free(r);
}

TEST(secret_fields)
{
    char *r;

    r = redact("{\"api_key\": \"hunter2hunter2\", \"model\": \"claude\"}");
    ASSERT_TRUE(strstr(r, "hunter2") == NULL);
    ASSERT_TRUE(strstr(r, "\"model\": \"claude\"") != NULL);
    free(r);

    r = redact("x-api-key: plainvalue123\r\nanthropic-version: 2023-06-01\r\n");
    ASSERT_TRUE(strstr(r, "plainvalue123") == NULL);
    ASSERT_TRUE(strstr(r, "anthropic-version: 2023-06-01") != NULL);
    free(r);

    /* A header quoted inside a JSON string keeps its closing quote. */
    r = redact("{\"h\":\"Authorization: Bearer abcdefghijklmnop\",\"n\":1}");
    ASSERT_TRUE(strstr(r, "abcdefghijklmnop") == NULL);
    ASSERT_TRUE(strstr(r, "\",\"n\":1}") != NULL);
    free(r);

    r = redact("refresh_token=1//0abcdefgh&x=1");
    ASSERT_TRUE(strstr(r, "0abcdefgh") == NULL);
    free(r);
}

TEST(ordinary_text_untouched)
{
    static const char *const keep[] = {
        "the dr-who episode",
        "task-ant-colony",
        "Bearer a",
        "mask-ant-x",
        "plain text, no keys",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
    };

    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        char *r = redact(keep[i]);
        ASSERT_STREQ(r, keep[i]);
        free(r);
    }
}

TEST(nul_bytes_and_empty)
{
    char *r = redact_credentials("a\0b", 3);

    ASSERT_STREQ(r, "a\\0b");
    free(r);
    r = redact_credentials("", 0);
    ASSERT_STREQ(r, "");
    free(r);
}
