/* test-oauth.c: shared/oauth.c against published vectors and every input it must refuse.
 *
 * PKCE uses RFC 7636 Appendix B (octets, verifier and challenge); base64url uses RFC 4648
 * section 10's vectors; RS256 uses RFC 7515 Appendix A.2 (its RSA key, written here as PKCS#8
 * PEM, and its byte-exact signature). Replies and credential files are Google's shapes as
 * PROVIDERS.md 2 quotes them. Times are frozen: every function takes "now". */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "conf.h"
#include "macro.h"
#include "oauth.h"
#include "secret.h"
#include "test.h"
#include "util.h"

/* RFC 7515 Appendix A.2's RSA key (a published test key; never use it for anything else). */
static const char a2_key[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCh+BYK4uPJtGXO\n"
                             "jS1lYmM2K5J9vinh8CR3/BYlzJChNuOL2TSXxbbqY913EeZ8dCn5VrD7io8ImtxL\n"
                             "aYk8wTM/U+3QGbh3hCUv7JFP5IV3aVlL6kKA0ywPVb9ilE8TA5a8bpvfbr3SvaNn\n"
                             "juygxmj3AbONv/s4yDQs4v5tJ/reSlpIdJed1LnPmt7Ex1sFhSwsD174pcF1A5L5\n"
                             "ROjtZMEQxrZHYJqkeDrrnGya11UxMFBji4NmXG9veoKjlnAqH2QbgtPr8jkiGUkf\n"
                             "toaHLFcW9Qr4NY2ai50Xw0Byj3+H2JoY2PyrZ62EWQwuz3WTOTY8BwNNb2BvniHg\n"
                             "VFbK5emhAgMBAAECggEAEq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyW\n"
                             "PEAeP88vLNO97IjlA7/GQ5sLKMgvfTeXZx9SE+7YwVol2NXOoAJe46sui395IW/G\n"
                             "O+pWJ1O0BkTGoVEn2bKVRUCgu+GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzj\n"
                             "kn439X0M/V51gfpRLI9JYanrC4D4qAdGcopV/0ZHHzQlBjudU2QvXt4ehNYTCBr6\n"
                             "XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl/x/jTj3ccPDVZFD9pIuhLhBOneufuBiB\n"
                             "4cS98l2SR/RQyGWSeWjnczT0QU91p1DhOVRuOopznQKBgQDgHMQQ60imZV1URk0K\n"
                             "pLttoLhyt3SmqdEf/kgHePDdtzEafpAu+cS191R2JiuoF2yzWXnwFDcqGigp5BNr\n"
                             "0AHQfD8/Lk8l1Mk09jxxCfui5nYooNyac8YFjm3vItzVCVDnEd3BbVWG8qf6deqE\n"
                             "lMGAg+C2V0L4oNXnP7LZcPAZRwKBgQC5A8R+CZW2MvRTLLHzwZkUXV866cff7tx6\n"
                             "kqa0finGG0KgeqlaZPxgCZnFp7AeAcCMtiynVlJ7vMVgePsLq6XtON4tB5kP9jAP\n"
                             "rq3rbAOal78eUH5OcED6eNuCV8ixEu1eWcPNCS/l1OW1EnXUEoEHKl54Xrrz2uNw\n"
                             "kgMTP1FZ1wKBgAcCn1dwJKufzBWQxWQp1vsM5fggqPN1qGb5y0MAk3g7/Ls5bkUp\n"
                             "5u9SN0Ai3Ya6hNnvWJMb7sXQX6U/zyO2M/hTip7tUeh7CXgwo59dkpN75gJLVds2\n"
                             "9+DAncu3KXU4f2Fa+7bLNrur53k8KwPOq2bbuTG69QtV7Jr5MR0AHWKNAoGBAIf/\n"
                             "evpitUf+4JYbLpvNXWcY052Mpz22aR84mY3nh3F2LF2mjMJDpTg7FmuyPcVw6EcG\n"
                             "yoAe9fa65iNqCq+jdw6PVNGo2hxfjSiZ8IIzHdsPXI89//pMjZcQK9r+CCoRjaZj\n"
                             "OYiIDktVWZzmevJuv6WywUqd57LE3Zar3dLSIkx1AoGAIYd7DHOhrWvxkwPQsRM2\n"
                             "tOgrjbcrfvtQJipd+DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd/QJQ3\n"
                             "ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp/gh6A56\n"
                             "03k2+ZQwVK0JKSHuLFkuQ3U=\n"
                             "-----END PRIVATE KEY-----\n";
static const char a2_pub[] = "-----BEGIN PUBLIC KEY-----\n"
                             "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAofgWCuLjybRlzo0tZWJj\n"
                             "NiuSfb4p4fAkd/wWJcyQoTbji9k0l8W26mPddxHmfHQp+Vaw+4qPCJrcS2mJPMEz\n"
                             "P1Pt0Bm4d4QlL+yRT+SFd2lZS+pCgNMsD1W/YpRPEwOWvG6b32690r2jZ47soMZo\n"
                             "9wGzjb/7OMg0LOL+bSf63kpaSHSXndS5z5rexMdbBYUsLA9e+KXBdQOS+UTo7WTB\n"
                             "EMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6/I5IhlJH7aGhyxX\n"
                             "FvUK+DWNmoudF8NAco9/h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXp\n"
                             "oQIDAQAB\n"
                             "-----END PUBLIC KEY-----\n";
/* Another RSA key's public half: a signature by a2_key must not verify with it. */
static const char other_pub[] = "-----BEGIN PUBLIC KEY-----\n"
                                "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAp07Fxa91yqq6FPkEfHtE\n"
                                "vILOeK0cn3CvRDOM7DHhlFhnQ5rEXWLI+LAVFth8ibk7sCqJi3LjkQ1FrbLfX6u0\n"
                                "MOnyGpXK/RnsKqzCSU/18tqxjZQq/W1W8/hHzmfrY9TLcm7lZOSDaF/Gyte3VTx7\n"
                                "rYlYIJ3JKIPRU+FN8U/ahEsp9zPDJnAOg6M8oXTyao6o7ChcYsEtid44AAPRFY3y\n"
                                "DL9eued91RRQuClfTuUVE3Q88eGdNma2DKeYnBBE3TuYCsvKmKc3GoLRx3ao9SQ2\n"
                                "EucLb2oeoMKrODc/LkgaNqoX+1u73GbSDmebpP8p4Y8Wz8QVWWjRluifnyTkjvw4\n"
                                "YwIDAQAB\n"
                                "-----END PUBLIC KEY-----\n";
/* Too short for RS256 here (1024 bits). */
static const char small_key[] = "-----BEGIN PRIVATE KEY-----\n"
                                "MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAMdpjacs1RwY5pgr\n"
                                "daTHNJgPXLVpAT8D5cxDvLvyXj12hAefyBIfOQVkKi/Sqg9eKt5yIg6bq/pesS10\n"
                                "cTxPa0gJzn1iI1qblSkqQ7iX1qnF5HeDTj2mrnRR+tLnWoG0xKe3T58O9c8NbM8o\n"
                                "YEcKZioUj+yQavR6l+jFIK0cGy6PAgMBAAECgYB2nYPECDfvkaRAqcE9tbzEIocr\n"
                                "5Xz3RdNAMJ6oUV/bQY8BlfqFRQs++LjbX30GzSXE0bEObWzb7c2IUzY0AK23y4K/\n"
                                "ocrlr+067IlNORgL9N3cbbVliJqmZ/lNlnEv7i0r0AccLuJOQjELE41yVm0aAaN1\n"
                                "DaveEBoxVtIVShcyuQJBAPPNSOBHQ2Fe82mr2x4gkgHR1RqG0z7LWGUfRelRPuOH\n"
                                "5ukf1u25mh0xegF6o00vIyQjwtt502nzONbybocQOEUCQQDRY7Vpyc/Mtvgs6EJu\n"
                                "8JCUNRbe5L+qKpPJto/ZwwFSlg6wNX5epW9VzRCg2USmeivmVSXRfTDuVfdTi6io\n"
                                "QSrDAkEAh5iraaH5BdTriOA+dFklG8H6xlAqeYhbV5K3LXc0hRP3B73fqkRKROZZ\n"
                                "tyzgWnNXFiiVnb/6J7lQ6avYcWJCCQJAGi+iDGzUtAFd4B/bzwv+yMoq5g0texaA\n"
                                "DQXrz4v3qmBhzd+iwitmVRCkN7l0QG2e99tGM4C4kdXmbGhW21PrCQJBAOidIKyE\n"
                                "T8aBQQa3pRe7DgtSTTC8TlWpWyvpe/XzQV80XiXdqQaKeUsndEzbc0r0I/Jbtl6J\n"
                                "t89zqTpmUuL9GAA=\n"
                                "-----END PRIVATE KEY-----\n";
static const char ec_key[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBye+C/nac5lJ2Da7\n"
                             "cmEKRPbrUx4vCg1AX0cZQUUwYXqhRANCAATG35Ye6Cq3KigW0+AavhPZre9j4T1O\n"
                             "keoOVIZrg+i1jBdPtvmPIeVFb9oBRDHOlsAW82IRTEe5OSwmJu2DqoSz\n"
                             "-----END PRIVATE KEY-----\n";

#define A2_HEADER "{\"alg\":\"RS256\"}"
#define A2_PAYLOAD                                                                                 \
    "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
#define A2_JWS                                                                                     \
    "eyJhbGciOiJSUzI1NiJ9"                                                                         \
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnV" \
    "lfQ"                                                                                          \
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_"       \
    "O8W2Fp5j"                                                                                     \
    "ujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"                                            \
    "nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Q"                                              \
    "e7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"                                                   \
    "eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8"                                       \
    "np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"

#define NOW_SEC 1700000000
#define NOW ((uint64_t)NOW_SEC * USEC_PER_SEC)

static struct secret *sec(const char *s)
{
    struct secret *x = secret_new(s, strlen(s));
    ASSERT_NOT_NULL(x);
    return x;
}

/* ---- base64url ---- */

static void check_b64(const char *plain, const char *encoded)
{
    _cleanup_free_ char *e = NULL;
    _cleanup_free_ void *d = NULL;
    size_t n = 0;

    ASSERT_OK(oauth_base64url_encode(plain, strlen(plain), &e));
    ASSERT_STREQ(e, encoded);
    ASSERT_OK(oauth_base64url_decode(encoded, strlen(encoded), &d, &n));
    ASSERT_EQ(n, strlen(plain));
    ASSERT_STREQ(d, plain);
}

TEST(base64url_rfc4648_vectors)
{
    check_b64("", "");
    check_b64("f", "Zg");
    check_b64("fo", "Zm8");
    check_b64("foo", "Zm9v");
    check_b64("foob", "Zm9vYg");
    check_b64("fooba", "Zm9vYmE");
    check_b64("foobar", "Zm9vYmFy");
}

TEST(base64url_alphabet_and_roundtrip)
{
    unsigned char all[256];
    _cleanup_free_ char *e = NULL;

    ASSERT_OK(oauth_base64url_encode("\xfb\xff", 2, &e));
    ASSERT_STREQ(e, "-_8");
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (unsigned char)i;
    for (size_t n = 0; n <= sizeof(all); n++) {
        _cleanup_free_ char *enc = NULL;
        _cleanup_free_ void *dec = NULL;
        size_t m = 0;

        ASSERT_OK(oauth_base64url_encode(all + (256 - n), n, &enc));
        ASSERT_EQ(strlen(enc), (4 * n + 2) / 3);
        ASSERT_NULL(strpbrk(enc, "+/="));
        ASSERT_OK(oauth_base64url_decode(enc, strlen(enc), &dec, &m));
        ASSERT_EQ(m, n);
        ASSERT_TRUE(memcmp(dec, all + (256 - n), n) == 0);
    }
}

TEST(base64url_refuses)
{
    void *d = NULL;
    size_t n = 0;

    ASSERT_ERROR(oauth_base64url_decode("Zg==", 4, &d, &n), EINVAL); /* padding */
    ASSERT_ERROR(oauth_base64url_decode("Zg=", 3, &d, &n), EINVAL);
    ASSERT_ERROR(oauth_base64url_decode("Z", 1, &d, &n), EINVAL);   /* 6 bits */
    ASSERT_ERROR(oauth_base64url_decode("Zh", 2, &d, &n), EINVAL);  /* unused bits set */
    ASSERT_ERROR(oauth_base64url_decode("Zm9", 3, &d, &n), EINVAL); /* ditto */
    ASSERT_ERROR(oauth_base64url_decode("+/8", 3, &d, &n), EINVAL); /* standard alphabet */
    ASSERT_ERROR(oauth_base64url_decode("Zm 9v", 5, &d, &n), EINVAL);
    ASSERT_ERROR(oauth_base64url_decode("Zm\0v", 4, &d, &n), EINVAL);
    ASSERT_NULL(d);
}

/* ---- PKCE and state ---- */

TEST(pkce_rfc7636_appendix_b)
{
    static const uint8_t octets[32] = {116, 24,  223, 180, 151, 153, 224, 37,  79,  250, 96,
                                       125, 216, 173, 187, 186, 22,  212, 37,  77,  105, 214,
                                       191, 240, 91,  88,  5,   88,  83,  132, 141, 121};
    struct oauth_pkce p;
    char c[OAUTH_PKCE_CHALLENGE_LEN + 1];

    ASSERT_OK(oauth_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", c));
    ASSERT_STREQ(c, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");

    oauth_pkce_from_bytes(octets, &p);
    ASSERT_STREQ(p.verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    ASSERT_STREQ(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    oauth_pkce_done(&p);
    ASSERT_EQ(p.verifier[0], 0);
}

TEST(pkce_new)
{
    struct oauth_pkce a, b;
    char c[OAUTH_PKCE_CHALLENGE_LEN + 1];

    ASSERT_OK(oauth_pkce_new(&a));
    ASSERT_OK(oauth_pkce_new(&b));
    ASSERT_EQ(strlen(a.verifier), 43);
    ASSERT_EQ(strlen(a.challenge), 43);
    ASSERT_OK(oauth_pkce_challenge(a.verifier, c));
    ASSERT_STREQ(c, a.challenge);
    ASSERT_TRUE(strcmp(a.verifier, b.verifier) != 0);
    oauth_pkce_done(&a);
    oauth_pkce_done(&b);
}

TEST(pkce_verifier_rules)
{
    char c[OAUTH_PKCE_CHALLENGE_LEN + 1];
    char v[200];

    memset(v, 'a', sizeof(v));
    v[42] = '\0';
    ASSERT_ERROR(oauth_pkce_challenge(v, c), EINVAL); /* 42: too short */
    v[42] = 'a';
    v[43] = '\0';
    ASSERT_OK(oauth_pkce_challenge(v, c));
    v[43] = 'a';
    v[128] = '\0';
    ASSERT_OK(oauth_pkce_challenge(v, c));
    v[128] = 'a';
    v[129] = '\0';
    ASSERT_ERROR(oauth_pkce_challenge(v, c), EINVAL); /* 129: too long */
    ASSERT_OK(oauth_pkce_challenge("-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij", c));
    ASSERT_ERROR(oauth_pkce_challenge("dBjftJeZ4CVP+mB92K27uhbUJU1p1r_wW1gFWFOEjXk", c), EINVAL);
    ASSERT_ERROR(oauth_pkce_challenge("dBjftJeZ4CVP mB92K27uhbUJU1p1r_wW1gFWFOEjXk", c), EINVAL);
    ASSERT_ERROR(oauth_pkce_challenge(NULL, c), EINVAL);
}

TEST(state)
{
    char a[OAUTH_STATE_LEN + 1], b[OAUTH_STATE_LEN + 1];

    ASSERT_OK(oauth_state_new(a));
    ASSERT_OK(oauth_state_new(b));
    ASSERT_EQ(strlen(a), 43);
    ASSERT_TRUE(strcmp(a, b) != 0);
    ASSERT_TRUE(oauth_state_matches(a, a));
    ASSERT_FALSE(oauth_state_matches(a, b));
    ASSERT_FALSE(oauth_state_matches("abc", "abcd"));
    ASSERT_FALSE(oauth_state_matches("abcd", "abc"));
    ASSERT_FALSE(oauth_state_matches("", ""));
    ASSERT_FALSE(oauth_state_matches(NULL, "a"));
    ASSERT_FALSE(oauth_state_matches("a", NULL));
}

/* ---- forms and URLs ---- */

TEST(form_encode)
{
    _cleanup_(secret_freep) struct secret *s = NULL;
    const struct oauth_param p[] = {
        {"a", "b c"}, {"skip", NULL}, {"x", "\xc3\xa4/&=~*+"}, {"empty", ""}, {"k y", "-._"},
    };

    /* The same as Python's urllib.parse.urlencode(). */
    ASSERT_OK(oauth_form_encode(p, ELEMENTSOF(p), &s));
    ASSERT_STREQ(s->data, "a=b+c&x=%C3%A4%2F%26%3D~%2A%2B&empty=&k+y=-._");
    s = secret_free(s);
    ASSERT_OK(oauth_form_encode(p, 0, &s));
    ASSERT_STREQ(s->data, "");
    ASSERT_EQ(s->len, 0);
    s = secret_free(s);
    ASSERT_OK(oauth_form_encode(p + 1, 1, &s));
    ASSERT_STREQ(s->data, "");
}

TEST(form_encode_limits)
{
    struct secret *s = NULL;
    _cleanup_free_ char *big = malloc(OAUTH_FORM_MAX / 3 + 10);
    const struct oauth_param nokey[] = {{NULL, "v"}};

    ASSERT_NOT_NULL(big);
    memset(big, '/', OAUTH_FORM_MAX / 3 + 9); /* each becomes %2F: just over the ceiling */
    big[OAUTH_FORM_MAX / 3 + 9] = '\0';
    const struct oauth_param p[] = {{"k", big}};
    ASSERT_ERROR(oauth_form_encode(p, 1, &s), E2BIG);
    ASSERT_ERROR(oauth_form_encode(nokey, 1, &s), EINVAL);
    ASSERT_NULL(s);
}

TEST(authorize_url)
{
    _cleanup_free_ char *u = NULL, *v = NULL, *w = NULL;
    struct oauth_authorize a = {
        .client_id = "123-abc.apps.googleusercontent.com",
        .redirect_uri = "http://127.0.0.1:8085",
        .code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        .state = "st4te",
    };

    ASSERT_OK(oauth_authorize_url(&a, &u));
    ASSERT_STREQ(u, "https://accounts.google.com/o/oauth2/v2/auth"
                    "?client_id=123-abc.apps.googleusercontent.com"
                    "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8085"
                    "&response_type=code"
                    "&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform"
                    "&state=st4te"
                    "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
                    "&code_challenge_method=S256"
                    "&access_type=offline"
                    "&prompt=consent");

    a.endpoint = "http://127.0.0.1:9999/auth?fake=1";
    a.scope = OAUTH_SCOPE_CLOUD_PLATFORM_EMAIL;
    ASSERT_OK(oauth_authorize_url(&a, &v));
    ASSERT_TRUE(startswith(v, "http://127.0.0.1:9999/auth?fake=1&client_id="));
    ASSERT_NOT_NULL(
        strstr(v, "&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform+openid+email&"));

    a.endpoint = "http://localhost/auth";
    ASSERT_OK(oauth_authorize_url(&a, &w));
    ASSERT_TRUE(startswith(w, "http://localhost/auth?client_id="));
}

TEST(authorize_url_refuses)
{
    char *u = NULL;
    struct oauth_authorize good = {
        .client_id = "c",
        .redirect_uri = "http://127.0.0.1:1",
        .code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        .state = "s",
    };
    struct oauth_authorize a;

    a = good, a.endpoint = "http://accounts.google.com/o/oauth2/v2/auth";
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    a = good, a.endpoint = "http://127.0.0.1.evil.example/";
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    a = good, a.endpoint = "https://";
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    a = good, a.endpoint = "https://x/ y";
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    a = good, a.endpoint = "https://x/#frag";
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    a = good, a.client_id = "";
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    a = good, a.redirect_uri = NULL;
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    a = good, a.code_challenge = "short";
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    a = good, a.state = NULL;
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    a = good, a.scope = "";
    ASSERT_ERROR(oauth_authorize_url(&a, &u), EINVAL);
    ASSERT_NULL(u);
}

TEST(redirect_parse_code)
{
    struct oauth_redirect r = {};

    /* Pasted from the browser on a headless host. */
    ASSERT_OK(oauth_redirect_parse("http://127.0.0.1:8085/?state=st4te&code=4%2F0AX4XfW-x+y"
                                   "&scope=https://www.googleapis.com/auth/cloud-platform#x",
                                   &r));
    ASSERT_STREQ(r.code->data, "4/0AX4XfW-x y");
    ASSERT_STREQ(r.state, "st4te");
    ASSERT_NULL(r.error);
    ASSERT_TRUE(oauth_state_matches("st4te", r.state));
    oauth_redirect_done(&r);
    ASSERT_NULL(r.code);

    /* The loopback listener's request target. */
    ASSERT_OK(oauth_redirect_parse("/?code=abc&state=s", &r));
    ASSERT_STREQ(r.code->data, "abc");
    oauth_redirect_done(&r);

    /* Only the query, with empty pairs and a key without a value that we ignore. */
    ASSERT_OK(oauth_redirect_parse("&&code=abc&&authuser&x=%41", &r));
    ASSERT_STREQ(r.code->data, "abc");
    ASSERT_NULL(r.state);
    oauth_redirect_done(&r);
}

TEST(redirect_parse_error)
{
    struct oauth_redirect r = {};

    ASSERT_OK(oauth_redirect_parse(
        "http://127.0.0.1:8085/?error=access_denied&error_description=The+user+said+no&state=s",
        &r));
    ASSERT_NULL(r.code);
    ASSERT_STREQ(r.error, "access_denied");
    ASSERT_STREQ(r.error_description, "The user said no");
    ASSERT_STREQ(r.state, "s");
    oauth_redirect_done(&r);
}

TEST(redirect_parse_refuses)
{
    static const char *const bad[] = {
        "http://127.0.0.1:8085/",         /* no query */
        "/callback",                      /* no query */
        "http://127.0.0.1:8085/?state=s", /* neither code nor error */
        "?code=a&code=b",                 /* a repeated key */
        "?code=a&state=s&state=t",        /* ditto */
        "?code=a&error=access_denied",    /* both */
        "?code=",                         /* empty */
        "?code",                          /* no value */
        "?code=a&state=",                 /* empty state */
        "?code=%4",                       /* truncated escape */
        "?code=%",                        /* ditto */
        "?code=%G1",                      /* not hex */
        "?code=a%00b",                    /* NUL */
        "?code=a%0d%0aX-Injected:1",      /* CR LF */
        "?code=a&error_description=%0a",  /* control character in another field */
        "?state=s#code=a",                /* the fragment does not count */
        "",
    };
    struct oauth_redirect r = {};
    _cleanup_free_ char *big = malloc(OAUTH_URL_MAX + 10);

    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        int k = oauth_redirect_parse(bad[i], &r);
        if (k != -EBADMSG)
            test_fail(__FILE__, __LINE__, "'%s' gave %d", bad[i], k);
        ASSERT_NULL(r.code);
        ASSERT_NULL(r.state);
    }
    ASSERT_ERROR(oauth_redirect_parse(NULL, &r), EBADMSG);
    ASSERT_NOT_NULL(big);
    memset(big, 'a', OAUTH_URL_MAX + 9);
    memcpy(big, "?code=", 6);
    big[OAUTH_URL_MAX + 9] = '\0';
    ASSERT_ERROR(oauth_redirect_parse(big, &r), E2BIG);
}

/* ---- token requests ---- */

TEST(token_request_code)
{
    _cleanup_(secret_freep) struct secret *code = sec("4/0AX4XfW");
    _cleanup_(secret_freep) struct secret *cs = sec("GOCSPX-s3cr3t");
    _cleanup_(secret_freep) struct secret *body = NULL;

    ASSERT_OK(oauth_token_request_code(code, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                                       "http://127.0.0.1:8085", "123.apps.googleusercontent.com",
                                       cs, &body));
    ASSERT_STREQ(body->data, "grant_type=authorization_code&code=4%2F0AX4XfW"
                             "&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
                             "&redirect_uri=http%3A%2F%2F127.0.0.1%3A8085"
                             "&client_id=123.apps.googleusercontent.com"
                             "&client_secret=GOCSPX-s3cr3t");
    body = secret_free(body);
    ASSERT_OK(oauth_token_request_code(code, "v", "r", "c", NULL, &body));
    ASSERT_STREQ(body->data,
                 "grant_type=authorization_code&code=4%2F0AX4XfW&code_verifier=v&redirect_uri=r"
                 "&client_id=c");
    body = secret_free(body);
    ASSERT_ERROR(oauth_token_request_code(NULL, "v", "r", "c", NULL, &body), EINVAL);
    ASSERT_ERROR(oauth_token_request_code(code, "", "r", "c", NULL, &body), EINVAL);
    ASSERT_ERROR(oauth_token_request_code(code, "v", NULL, "c", NULL, &body), EINVAL);
    ASSERT_ERROR(oauth_token_request_code(code, "v", "r", "", NULL, &body), EINVAL);
}

TEST(token_request_refresh_and_jwt)
{
    _cleanup_(secret_freep) struct secret *rt = sec("1//0gAbC-d_e");
    _cleanup_(secret_freep) struct secret *cs = sec("secret");
    _cleanup_(secret_freep) struct secret *jwt = sec("aaa.bbb.ccc");
    _cleanup_(secret_freep) struct secret *empty = sec("");
    _cleanup_(secret_freep) struct secret *body = NULL;

    ASSERT_OK(oauth_token_request_refresh(rt, "c.apps.googleusercontent.com", cs, &body));
    ASSERT_STREQ(body->data, "grant_type=refresh_token&refresh_token=1%2F%2F0gAbC-d_e"
                             "&client_id=c.apps.googleusercontent.com&client_secret=secret");
    body = secret_free(body);
    ASSERT_OK(oauth_token_request_jwt(jwt, &body));
    ASSERT_STREQ(body->data, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
                             "&assertion=aaa.bbb.ccc");
    body = secret_free(body);
    ASSERT_ERROR(oauth_token_request_refresh(empty, "c", cs, &body), EINVAL);
    ASSERT_ERROR(oauth_token_request_refresh(rt, NULL, cs, &body), EINVAL);
    ASSERT_ERROR(oauth_token_request_jwt(NULL, &body), EINVAL);
    ASSERT_ERROR(oauth_token_request_jwt(empty, &body), EINVAL);
}

/* ---- RS256 ---- */

TEST(jws_rfc7515_a2)
{
    _cleanup_(secret_freep) struct secret *key = sec(a2_key);
    _cleanup_(secret_freep) struct secret *jws = NULL;
    json_auto_t *header = NULL, *claims = NULL;

    /* RSASSA-PKCS1-v1_5 is deterministic: the RFC's exact bytes come out. */
    ASSERT_OK(oauth_jws_sign_rs256(key, A2_HEADER, strlen(A2_HEADER), A2_PAYLOAD,
                                   strlen(A2_PAYLOAD), &jws));
    ASSERT_STREQ(jws->data, A2_JWS);

    ASSERT_OK(
        oauth_jwt_verify_rs256(A2_JWS, strlen(A2_JWS), a2_pub, strlen(a2_pub), &header, &claims));
    ASSERT_STREQ(json_string_value(json_object_get(header, "alg")), "RS256");
    ASSERT_STREQ(json_string_value(json_object_get(claims, "iss")), "joe");
    ASSERT_EQ(json_integer_value(json_object_get(claims, "exp")), 1300819380);
    /* The private key verifies too (the fake server may only have that). */
    ASSERT_OK(oauth_jwt_verify_rs256(A2_JWS, strlen(A2_JWS), a2_key, strlen(a2_key), NULL, NULL));
}

TEST(jws_verify_refuses)
{
    char buf[1024];
    const char *sig = strrchr(A2_JWS, '.');

    ASSERT_ERROR(
        oauth_jwt_verify_rs256(A2_JWS, strlen(A2_JWS), other_pub, strlen(other_pub), NULL, NULL),
        EKEYREJECTED);
    /* A changed payload: {"iss":"eve"} */
    snprintf(buf, sizeof(buf), "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJldmUifQ%s", sig);
    ASSERT_ERROR(oauth_jwt_verify_rs256(buf, strlen(buf), a2_pub, strlen(a2_pub), NULL, NULL),
                 EKEYREJECTED);
    /* alg none and HS256 never verify, whatever the signature. */
    snprintf(buf, sizeof(buf), "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UifQ%s", sig);
    ASSERT_ERROR(oauth_jwt_verify_rs256(buf, strlen(buf), a2_pub, strlen(a2_pub), NULL, NULL),
                 EKEYREJECTED);
    snprintf(buf, sizeof(buf), "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UifQ%s", sig);
    ASSERT_ERROR(oauth_jwt_verify_rs256(buf, strlen(buf), a2_pub, strlen(a2_pub), NULL, NULL),
                 EKEYREJECTED);
    snprintf(buf, sizeof(buf), "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UifQ.");
    ASSERT_ERROR(oauth_jwt_verify_rs256(buf, strlen(buf), a2_pub, strlen(a2_pub), NULL, NULL),
                 EKEYREJECTED);
    /* Malformed. */
    ASSERT_ERROR(oauth_jwt_verify_rs256("abc", 3, a2_pub, strlen(a2_pub), NULL, NULL), EBADMSG);
    ASSERT_ERROR(oauth_jwt_verify_rs256("a.b", 3, a2_pub, strlen(a2_pub), NULL, NULL), EBADMSG);
    ASSERT_ERROR(oauth_jwt_verify_rs256("a.b.c.d", 7, a2_pub, strlen(a2_pub), NULL, NULL), EBADMSG);
    snprintf(buf, sizeof(buf), "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UifQ.");
    ASSERT_ERROR(oauth_jwt_verify_rs256(buf, strlen(buf), a2_pub, strlen(a2_pub), NULL, NULL),
                 EBADMSG);
    snprintf(buf, sizeof(buf), "e30.e30%s", sig); /* {} has no alg */
    ASSERT_ERROR(oauth_jwt_verify_rs256(buf, strlen(buf), a2_pub, strlen(a2_pub), NULL, NULL),
                 EKEYREJECTED);
    /* Unusable keys. */
    ASSERT_ERROR(oauth_jwt_verify_rs256(A2_JWS, strlen(A2_JWS), "junk", 4, NULL, NULL), EINVAL);
    ASSERT_ERROR(oauth_jwt_verify_rs256(A2_JWS, strlen(A2_JWS), ec_key, strlen(ec_key), NULL, NULL),
                 EINVAL);
}

TEST(jws_sign_refuses_keys)
{
    _cleanup_(secret_freep) struct secret *small = sec(small_key);
    _cleanup_(secret_freep) struct secret *ec = sec(ec_key);
    _cleanup_(secret_freep) struct secret *junk = sec("-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                                      "-----END PRIVATE KEY-----\n");
    _cleanup_(secret_freep) struct secret *pub = sec(a2_pub);
    struct secret *out = NULL;

    ASSERT_ERROR(oauth_jws_sign_rs256(small, "{}", 2, "{}", 2, &out), EKEYREJECTED);
    ASSERT_ERROR(oauth_jws_sign_rs256(ec, "{}", 2, "{}", 2, &out), EINVAL);
    ASSERT_ERROR(oauth_jws_sign_rs256(junk, "{}", 2, "{}", 2, &out), EINVAL);
    ASSERT_ERROR(oauth_jws_sign_rs256(pub, "{}", 2, "{}", 2, &out), EINVAL);
    ASSERT_ERROR(oauth_jws_sign_rs256(NULL, "{}", 2, "{}", 2, &out), EINVAL);
    ASSERT_NULL(out);
}

/* ---- credential files ---- */

TEST(credentials_authorized_user)
{
    /* google-auth tests/data/authorized_user_cloud_sdk_with_quota_project_id.json */
    static const char adc[] =
        "{\"client_id\": \"764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent."
        "com\",\n \"client_secret\": \"secret\", \"refresh_token\": \"alabalaportocala\",\n"
        " \"type\": \"authorized_user\", \"quota_project_id\": \"quota_project_id\"}";
    struct oauth_credentials c = {};

    ASSERT_OK(oauth_credentials_parse(adc, strlen(adc), &c, NULL));
    ASSERT_EQ(c.type, OAUTH_CREDENTIALS_AUTHORIZED_USER);
    ASSERT_STREQ(c.client_id,
                 "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com");
    ASSERT_STREQ(c.client_secret->data, "secret");
    ASSERT_STREQ(c.refresh_token->data, "alabalaportocala");
    ASSERT_STREQ(c.quota_project_id, "quota_project_id");
    ASSERT_NULL(c.private_key);
    ASSERT_STREQ(oauth_credentials_type_to_string(c.type), "authorized_user");
    oauth_credentials_done(&c);
    ASSERT_NULL(c.client_id);

    /* quota_project_id is optional. */
    static const char minimal[] = "{\"type\":\"authorized_user\",\"client_id\":\"c\","
                                  "\"client_secret\":\"s\",\"refresh_token\":\"r\"}";
    ASSERT_OK(oauth_credentials_parse(minimal, strlen(minimal), &c, NULL));
    ASSERT_NULL(c.quota_project_id);
    oauth_credentials_done(&c);
}

static char *service_account_json(const char *token_uri_field, const char *key)
{
    json_auto_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "service_account", "project_id",
        "example-project", "private_key_id", "1a2b3c4d5e6f", "private_key", key, "client_email",
        "router@example-project.iam.gserviceaccount.com", "client_id", "1234567890");
    ASSERT_NOT_NULL(o);
    if (token_uri_field)
        ASSERT_OK(json_object_set_new(o, "token_uri", json_string(token_uri_field)));
    return json_dumps(o, 0);
}

TEST(credentials_service_account)
{
    _cleanup_free_ char *j = service_account_json("https://oauth2.googleapis.com/token", a2_key);
    _cleanup_free_ char *no_uri = service_account_json(NULL, a2_key);
    _cleanup_free_ char *old_uri =
        service_account_json("https://accounts.google.com/o/oauth2/token", a2_key);
    struct oauth_credentials c = {};

    ASSERT_OK(oauth_credentials_parse(j, strlen(j), &c, NULL));
    ASSERT_EQ(c.type, OAUTH_CREDENTIALS_SERVICE_ACCOUNT);
    ASSERT_STREQ(c.client_email, "router@example-project.iam.gserviceaccount.com");
    ASSERT_STREQ(c.private_key_id, "1a2b3c4d5e6f");
    ASSERT_STREQ(c.private_key->data, a2_key);
    ASSERT_STREQ(c.token_uri, OAUTH_GOOGLE_TOKEN_URL);
    ASSERT_STREQ(c.project_id, "example-project");
    ASSERT_NULL(c.refresh_token);
    oauth_credentials_done(&c);

    ASSERT_OK(oauth_credentials_parse(no_uri, strlen(no_uri), &c, NULL));
    ASSERT_STREQ(c.token_uri, OAUTH_GOOGLE_TOKEN_URL);
    oauth_credentials_done(&c);
    ASSERT_OK(oauth_credentials_parse(old_uri, strlen(old_uri), &c, NULL));
    ASSERT_STREQ(c.token_uri, "https://accounts.google.com/o/oauth2/token");
    oauth_credentials_done(&c);
}

static void check_cred_error(const char *text, int error, const char *message)
{
    struct oauth_credentials c = {};
    struct parse_error err = {};
    int r = oauth_credentials_parse(text, strlen(text), &c, &err);

    if (r != -error || !strstr(err.text, message))
        test_fail(__FILE__, __LINE__, "'%.80s': got %d '%s', expected %d '%s'", text, r, err.text,
                  -error, message);
    ASSERT_NULL(c.client_id);
    ASSERT_NULL(c.client_secret);
    ASSERT_NULL(c.private_key);
}

TEST(credentials_refuses)
{
    _cleanup_free_ char *http_uri = service_account_json("http://attacker.example/token", a2_key);
    _cleanup_free_ char *small = service_account_json(NULL, small_key);
    _cleanup_free_ char *ec = service_account_json(NULL, ec_key);
    _cleanup_free_ char *pub = service_account_json(NULL, a2_pub);
    _cleanup_free_ char *fake_uri = service_account_json("http://127.0.0.1:4000/token", a2_key);
    struct oauth_credentials c = {};
    struct parse_error err = {};

    check_cred_error("{\"type\":\"authorized_user\",\"client_secret\":\"s\","
                     "\"refresh_token\":\"r\"}",
                     EINVAL, "missing 'client_id'");
    check_cred_error("{\"type\":\"authorized_user\",\"client_id\":\"c\","
                     "\"refresh_token\":\"r\"}",
                     EINVAL, "missing 'client_secret'");
    check_cred_error("{\"type\":\"authorized_user\",\"client_id\":\"c\",\"client_secret\":\"s\"}",
                     EINVAL, "missing 'refresh_token'");
    check_cred_error("{\"type\":\"authorized_user\",\"client_id\":\"c\",\"client_secret\":\"s\","
                     "\"refresh_token\":\"\"}",
                     EINVAL, "'refresh_token' is empty");
    check_cred_error("{\"type\":\"authorized_user\",\"client_id\":\"c\",\"client_secret\":\"s\","
                     "\"refresh_token\":\"a\\r\\nb\"}",
                     EINVAL, "'refresh_token' has characters");
    check_cred_error("{\"type\":\"authorized_user\",\"client_id\":7,\"client_secret\":\"s\","
                     "\"refresh_token\":\"r\"}",
                     EINVAL, "'client_id' is not a string");
    check_cred_error("{\"type\":\"authorized_user\",\"client_id\":\"c\",\"client_id\":\"d\"}",
                     EINVAL, "duplicate");
    check_cred_error("{\"type\":\"external_account\"}", EOPNOTSUPP, "'external_account'");
    check_cred_error("{\"type\":\"impersonated_service_account\"}", EOPNOTSUPP, "not supported");
    check_cred_error("{}", EINVAL, "missing 'type'");
    check_cred_error("[]", EINVAL, "not a JSON object");
    check_cred_error("", EINVAL, "");
    check_cred_error(http_uri, EINVAL, "'token_uri' is not an https URL");
    check_cred_error(small, EINVAL, "shorter than 2048 bits");
    check_cred_error(ec, EINVAL, "not an unencrypted RSA private key");
    check_cred_error(pub, EINVAL, "not an unencrypted RSA private key");
    check_cred_error("{\"type\":\"service_account\",\"private_key\":\"k\"}", EINVAL,
                     "missing 'client_email'");

    /* A syntax error says where. */
    ASSERT_ERROR(oauth_credentials_parse("{\n\"type\": }", 11, &c, &err), EINVAL);
    ASSERT_EQ(err.line, 2);
    ASSERT_TRUE(err.column > 0);

    /* A loopback token_uri is for the fake token server. */
    ASSERT_OK(oauth_credentials_parse(fake_uri, strlen(fake_uri), &c, NULL));
    ASSERT_STREQ(c.token_uri, "http://127.0.0.1:4000/token");
    oauth_credentials_done(&c);

    ASSERT_ERROR(oauth_credentials_parse("{}", OAUTH_CREDENTIALS_MAX + 1, &c, &err), EFBIG);
    oauth_credentials_done(NULL);
}

TEST(service_account_assertion)
{
    _cleanup_free_ char *j = service_account_json(NULL, a2_key);
    _cleanup_(secret_freep) struct secret *jwt = NULL;
    json_auto_t *header = NULL, *claims = NULL;
    _cleanup_free_ char *h = NULL, *c = NULL;
    struct oauth_credentials sa = {}, user = {};
    static const char adc[] = "{\"type\":\"authorized_user\",\"client_id\":\"c\","
                              "\"client_secret\":\"s\",\"refresh_token\":\"r\"}";

    ASSERT_OK(oauth_credentials_parse(j, strlen(j), &sa, NULL));
    ASSERT_OK(oauth_service_account_assertion(&sa, NULL, NOW + 999999, &jwt));
    ASSERT_OK(
        oauth_jwt_verify_rs256(jwt->data, jwt->len, a2_pub, strlen(a2_pub), &header, &claims));
    h = json_dumps(header, JSON_COMPACT);
    c = json_dumps(claims, JSON_COMPACT);
    ASSERT_STREQ(h, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"1a2b3c4d5e6f\"}");
    ASSERT_STREQ(c, "{\"iss\":\"router@example-project.iam.gserviceaccount.com\","
                    "\"scope\":\"https://www.googleapis.com/auth/cloud-platform\","
                    "\"aud\":\"https://oauth2.googleapis.com/token\","
                    "\"iat\":1700000000,\"exp\":1700003600}");
    /* Deterministic: the same clock gives the same assertion. */
    {
        _cleanup_(secret_freep) struct secret *again = NULL;
        ASSERT_OK(oauth_service_account_assertion(&sa, NULL, NOW, &again));
        ASSERT_TRUE(secret_equal(again, jwt->data, jwt->len));
    }

    ASSERT_OK(oauth_credentials_parse(adc, strlen(adc), &user, NULL));
    {
        struct secret *none = NULL;
        ASSERT_ERROR(oauth_service_account_assertion(&user, NULL, NOW, &none), EINVAL);
        ASSERT_ERROR(oauth_service_account_assertion(NULL, NULL, NOW, &none), EINVAL);
        ASSERT_NULL(none);
    }
    oauth_credentials_done(&user);
    oauth_credentials_done(&sa);
}

/* ---- token replies ---- */

static int parse_reply(int status, const char *body, struct oauth_token *t, struct oauth_error *err)
{
    return oauth_token_parse(status, body, strlen(body), NOW, t, err);
}

TEST(token_parse_success)
{
    struct oauth_token t = {};
    struct oauth_error err = {};

    ASSERT_OK(parse_reply(200,
                          "{\"access_token\":\"ya29.a0AfH6SM\",\"expires_in\":3599,"
                          "\"refresh_token\":\"1//0gXyz\","
                          "\"scope\":\"https://www.googleapis.com/auth/cloud-platform openid "
                          "https://www.googleapis.com/auth/userinfo.email\","
                          "\"token_type\":\"Bearer\",\"id_token\":\"eyJ.eyJ.sig\"}",
                          &t, &err));
    ASSERT_STREQ(t.access_token->data, "ya29.a0AfH6SM");
    ASSERT_STREQ(t.refresh_token->data, "1//0gXyz");
    ASSERT_STREQ(t.id_token->data, "eyJ.eyJ.sig");
    ASSERT_STREQ(t.token_type, "Bearer");
    ASSERT_TRUE(oauth_scope_has(t.scope, OAUTH_SCOPE_CLOUD_PLATFORM));
    ASSERT_EQ(t.issued_usec, NOW);
    ASSERT_EQ(t.lifetime_usec, 3599 * USEC_PER_SEC);
    ASSERT_EQ(t.expires_usec, NOW + 3599 * USEC_PER_SEC);
    oauth_token_done(&t);
    ASSERT_NULL(t.access_token);

    /* A refresh reply: no refresh_token, no scope; token_type in another case; expires_in as a
     * string of digits. */
    ASSERT_OK(parse_reply(200,
                          "{\"access_token\":\"ya29.b\",\"expires_in\":\"1\","
                          "\"token_type\":\"bearer\"}",
                          &t, &err));
    ASSERT_NULL(t.refresh_token);
    ASSERT_NULL(t.scope);
    ASSERT_NULL(t.id_token);
    ASSERT_STREQ(t.token_type, "Bearer");
    ASSERT_EQ(t.expires_usec, NOW + USEC_PER_SEC);
    oauth_token_done(&t);
    oauth_token_done(NULL);
}

static void check_reply_error(int status, const char *body, int error, enum oauth_error_class class,
                              const char *error_text)
{
    struct oauth_token t = {};
    struct oauth_error err = {};
    int r = parse_reply(status, body, &t, &err);

    if (r != -error || err.class != class || strcmp(err.error, error_text) != 0)
        test_fail(__FILE__, __LINE__, "%d '%.80s': got %d %s '%s' ('%s'), expected %d %s '%s'",
                  status, body, r, oauth_error_class_to_string(err.class), err.error,
                  err.description, -error, oauth_error_class_to_string(class), error_text);
    ASSERT_EQ(err.http_status, status);
    ASSERT_NULL(t.access_token);
}

TEST(token_parse_errors)
{
    check_reply_error(400,
                      "{\"error\":\"invalid_grant\","
                      "\"error_description\":\"Token has been expired or revoked.\"}",
                      EKEYREJECTED, OAUTH_ERROR_NEEDS_LOGIN, "invalid_grant");
    check_reply_error(401,
                      "{\"error\":\"invalid_client\","
                      "\"error_description\":\"The OAuth client was not found.\"}",
                      EKEYREJECTED, OAUTH_ERROR_NEEDS_LOGIN, "invalid_client");
    check_reply_error(401,
                      "{\"error\":\"deleted_client\","
                      "\"error_description\":\"The OAuth client was deleted.\"}",
                      EKEYREJECTED, OAUTH_ERROR_NEEDS_LOGIN, "deleted_client");
    check_reply_error(400, "{\"error\":\"unauthorized_client\"}", EKEYREJECTED,
                      OAUTH_ERROR_NEEDS_LOGIN, "unauthorized_client");
    /* Terminal whatever the status: a 500 with invalid_grant is still a dead grant. */
    check_reply_error(500, "{\"error\":\"invalid_grant\"}", EKEYREJECTED, OAUTH_ERROR_NEEDS_LOGIN,
                      "invalid_grant");
    check_reply_error(503, "{\"error\":\"temporarily_unavailable\"}", EAGAIN, OAUTH_ERROR_RETRYABLE,
                      "temporarily_unavailable");
    check_reply_error(400, "{\"error\":\"server_error\"}", EAGAIN, OAUTH_ERROR_RETRYABLE,
                      "server_error");
    check_reply_error(400, "{\"error\":\"x\",\"error_description\":\"internal_failure\"}", EAGAIN,
                      OAUTH_ERROR_RETRYABLE, "x");
    check_reply_error(500, "<html>oops</html>", EAGAIN, OAUTH_ERROR_RETRYABLE, "");
    check_reply_error(502, "", EAGAIN, OAUTH_ERROR_RETRYABLE, "");
    check_reply_error(429, "{}", EAGAIN, OAUTH_ERROR_RETRYABLE, "");
    check_reply_error(408, "", EAGAIN, OAUTH_ERROR_RETRYABLE, "");
    check_reply_error(400,
                      "{\"error\":\"invalid_scope\",\"error_description\":\"Invalid device flow "
                      "scope: https://www.googleapis.com/auth/cloud-platform\"}",
                      EBADMSG, OAUTH_ERROR_FAILED, "invalid_scope");
    check_reply_error(400, "{\"error\":\"invalid_request\"}", EBADMSG, OAUTH_ERROR_FAILED,
                      "invalid_request");
    check_reply_error(403, "forbidden", EBADMSG, OAUTH_ERROR_FAILED, "");
    check_reply_error(404, "{\"error\":{\"code\":404}}", EBADMSG, OAUTH_ERROR_FAILED, "");
    /* A 200 that says error is an error. */
    check_reply_error(200, "{\"error\":\"invalid_grant\"}", EKEYREJECTED, OAUTH_ERROR_NEEDS_LOGIN,
                      "invalid_grant");
}

TEST(token_parse_error_details)
{
    struct oauth_token t = {};
    struct oauth_error err = {};

    ASSERT_ERROR(parse_reply(400,
                             "{\"error\":\"invalid_grant\",\"error_description\":\"reauth "
                             "related error (invalid_rapt)\",\"error_subtype\":\"invalid_rapt\"}",
                             &t, &err),
                 EKEYREJECTED);
    ASSERT_STREQ(err.subtype, "invalid_rapt");
    ASSERT_STREQ(err.description, "reauth related error (invalid_rapt)");
    /* Control characters never reach the error text. */
    ASSERT_ERROR(
        parse_reply(400, "{\"error\":\"a\\nb\",\"error_description\":\"x\\ty\"}", &t, &err),
        EBADMSG);
    ASSERT_STREQ(err.error, "a?b");
    ASSERT_STREQ(err.description, "x?y");
    ASSERT_STREQ(oauth_error_class_to_string(OAUTH_ERROR_NEEDS_LOGIN), "needs-login");
    ASSERT_NULL(oauth_error_class_to_string(_OAUTH_ERROR_CLASS_MAX));
}

TEST(token_parse_malformed_success)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"access_token\":\"\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
        "{\"access_token\":7,\"expires_in\":3599,\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\\r\\nX: y\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a b\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\",\"expires_in\":3599,\"token_type\":\"mac\"}",
        "{\"access_token\":\"a\",\"expires_in\":3599,\"token_type\":\"Bearerx\"}",
        "{\"access_token\":\"a\",\"expires_in\":3599}",
        "{\"access_token\":\"a\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\",\"expires_in\":0,\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\",\"expires_in\":-5,\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\",\"expires_in\":3599.5,\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\",\"expires_in\":\"\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\",\"expires_in\":\"-1\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\",\"expires_in\":\"1e3\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\",\"expires_in\":9999999999999,\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\",\"expires_in\":1,\"token_type\":\"Bearer\",\"refresh_token\":1}",
        "{\"access_token\":\"a\",\"expires_in\":1,\"token_type\":\"Bearer\",\"id_token\":\"\"}",
        "{\"access_token\":\"a\",\"expires_in\":1,\"token_type\":\"Bearer\",\"scope\":\"\\n\"}",
        "{\"access_token\":\"a\",\"access_token\":\"b\",\"expires_in\":1}",
    };

    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        check_reply_error(200, bad[i], EBADMSG, OAUTH_ERROR_FAILED, "");
}

TEST(token_parse_limits)
{
    struct oauth_token t = {};
    struct oauth_error err = {};
    size_t n = OAUTH_TOKEN_MAX + 100;
    _cleanup_free_ char *body = malloc(n);
    _cleanup_free_ char *tok = malloc(OAUTH_TOKEN_MAX + 2);

    ASSERT_NOT_NULL(body);
    ASSERT_NOT_NULL(tok);
    /* A token of exactly OAUTH_TOKEN_MAX bytes passes; one more does not. */
    memset(tok, 'a', OAUTH_TOKEN_MAX);
    tok[OAUTH_TOKEN_MAX] = '\0';
    snprintf(body, n, "{\"access_token\":\"%s\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
             tok);
    ASSERT_OK(parse_reply(200, body, &t, &err));
    ASSERT_EQ(t.access_token->len, OAUTH_TOKEN_MAX);
    oauth_token_done(&t);
    tok[OAUTH_TOKEN_MAX] = 'a';
    tok[OAUTH_TOKEN_MAX + 1] = '\0';
    snprintf(body, n, "{\"access_token\":\"%s\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
             tok);
    ASSERT_ERROR(parse_reply(200, body, &t, &err), EBADMSG);

    ASSERT_ERROR(oauth_token_parse(200, "{}", OAUTH_TOKEN_REPLY_MAX + 1, NOW, &t, &err), EBADMSG);
    ASSERT_ERROR(oauth_token_parse(503, "{}", OAUTH_TOKEN_REPLY_MAX + 1, NOW, &t, NULL), EAGAIN);

    /* Expiry saturates rather than wrapping. */
    snprintf(body, n, "{\"access_token\":\"a\",\"expires_in\":3599,\"token_type\":\"Bearer\"}");
    ASSERT_OK(oauth_token_parse(200, body, strlen(body), UINT64_MAX - 5, &t, NULL));
    ASSERT_EQ(t.expires_usec, UINT64_MAX);
    oauth_token_done(&t);
}

TEST(scope_has)
{
    ASSERT_TRUE(
        oauth_scope_has("openid " OAUTH_SCOPE_CLOUD_PLATFORM " email", OAUTH_SCOPE_CLOUD_PLATFORM));
    ASSERT_TRUE(oauth_scope_has(OAUTH_SCOPE_CLOUD_PLATFORM, OAUTH_SCOPE_CLOUD_PLATFORM));
    ASSERT_TRUE(oauth_scope_has("  a  b ", "b"));
    ASSERT_FALSE(
        oauth_scope_has(OAUTH_SCOPE_CLOUD_PLATFORM ".read-only", OAUTH_SCOPE_CLOUD_PLATFORM));
    ASSERT_FALSE(oauth_scope_has("openid email", OAUTH_SCOPE_CLOUD_PLATFORM));
    ASSERT_FALSE(oauth_scope_has("", "a"));
    ASSERT_FALSE(oauth_scope_has(NULL, "a"));
    ASSERT_FALSE(oauth_scope_has("a", ""));
}

/* ---- refresh schedule ---- */

#define SEC(x) ((uint64_t)(x)*USEC_PER_SEC)

TEST(refresh_at)
{
    /* Google's 3599 s: 80% (2879.2 s) comes before 5 minutes before expiry (3299 s). */
    ASSERT_EQ(oauth_refresh_at(NOW, NOW + SEC(3599)), NOW + SEC(3599) - SEC(3599) / 5);
    /* 20 minutes: 5 minutes before expiry (900 s) comes before 80% (960 s). */
    ASSERT_EQ(oauth_refresh_at(NOW, NOW + SEC(1200)), NOW + SEC(900));
    /* 25 minutes: both at 1200 s. */
    ASSERT_EQ(oauth_refresh_at(NOW, NOW + SEC(1500)), NOW + SEC(1200));
    /* 10 minutes: the margin says 300 s, which is also half. */
    ASSERT_EQ(oauth_refresh_at(NOW, NOW + SEC(600)), NOW + SEC(300));
    /* 5 minutes and less: half the lifetime, never at once. */
    ASSERT_EQ(oauth_refresh_at(NOW, NOW + SEC(300)), NOW + SEC(150));
    ASSERT_EQ(oauth_refresh_at(NOW, NOW + SEC(1)), NOW + SEC(1) / 2);
    /* Born expired: now. */
    ASSERT_EQ(oauth_refresh_at(NOW, NOW), NOW);
    ASSERT_EQ(oauth_refresh_at(NOW, NOW - 1), NOW);
    /* Huge lifetimes do not overflow. */
    ASSERT_EQ(oauth_refresh_at(0, UINT64_MAX), UINT64_MAX - UINT64_MAX / 5);
}

TEST(refresh_at_jittered)
{
    uint64_t plain = oauth_refresh_at(NOW, NOW + SEC(3599));

    ASSERT_EQ(oauth_refresh_at_jittered(NOW, NOW + SEC(3599), 0), plain);
    /* The span is min(5% of 3599 s, 60 s) = 60 s. */
    ASSERT_EQ(oauth_refresh_at_jittered(NOW, NOW + SEC(3599), SEC(60)), plain - SEC(60));
    ASSERT_EQ(oauth_refresh_at_jittered(NOW, NOW + SEC(3599), SEC(60) + 1), plain);
    for (uint64_t rnd = 1; rnd < UINT64_MAX / 3; rnd = rnd * 7 + 13) {
        uint64_t at = oauth_refresh_at_jittered(NOW, NOW + SEC(3599), rnd);
        ASSERT_TRUE(at <= plain && at >= plain - SEC(60));
        at = oauth_refresh_at_jittered(NOW, NOW + SEC(100), rnd);
        ASSERT_TRUE(at <= oauth_refresh_at(NOW, NOW + SEC(100)) && at >= NOW);
    }
    /* 100 s: span 5 s. */
    ASSERT_EQ(oauth_refresh_at_jittered(NOW, NOW + SEC(100), SEC(5)), NOW + SEC(45));
    ASSERT_EQ(oauth_refresh_at_jittered(NOW, NOW, 12345), NOW);
    ASSERT_EQ(oauth_refresh_at_jittered(NOW, NOW + 1, 12345), NOW + 1 / 2);
}

TEST(backoff)
{
    /* rnd 0 gives the lower end (half, rounded up), a large rnd % (half + 1) == half the top. */
    ASSERT_EQ(oauth_backoff_usec(0, SEC(1), SEC(300), 0), SEC(1) / 2);
    ASSERT_EQ(oauth_backoff_usec(0, SEC(1), SEC(300), SEC(1) / 2), SEC(1));
    ASSERT_EQ(oauth_backoff_usec(1, SEC(1), SEC(300), SEC(1)), SEC(2));
    ASSERT_EQ(oauth_backoff_usec(3, SEC(1), SEC(300), 0), SEC(4));
    ASSERT_EQ(oauth_backoff_usec(8, SEC(1), SEC(300), SEC(128)), SEC(256));
    ASSERT_EQ(oauth_backoff_usec(8, SEC(1), SEC(300), 0), SEC(128));
    ASSERT_EQ(oauth_backoff_usec(9, SEC(1), SEC(300), 0), SEC(150)); /* capped at 300 s */
    ASSERT_EQ(oauth_backoff_usec(UINT32_MAX, SEC(1), SEC(300), SEC(150)), SEC(300));
    ASSERT_EQ(oauth_backoff_usec(70, UINT64_MAX / 3, UINT64_MAX, 0), UINT64_MAX - UINT64_MAX / 2);
    ASSERT_EQ(oauth_backoff_usec(5, 0, SEC(300), 77), 0);
    ASSERT_EQ(oauth_backoff_usec(0, 3, 3, 0), 2); /* odd: [2, 3] */
    ASSERT_EQ(oauth_backoff_usec(0, 3, 3, 1), 3);
    for (unsigned a = 0; a < 100; a++) {
        uint64_t d = oauth_backoff_usec(a, SEC(1), SEC(300), (uint64_t)a * 7919 * 104729);
        ASSERT_TRUE(d >= SEC(1) / 2 && d <= SEC(300));
    }
}
