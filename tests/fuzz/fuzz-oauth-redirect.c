/* fuzz-oauth-redirect.c: the OAuth redirect parser (what dualroutectl's loopback listener sees,
 * or what a user pastes) on arbitrary text. It must not crash, must leave the result zeroed on
 * failure, and on success must hold a code or an error, with no control character in the state. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "oauth.h"
#include "secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct oauth_redirect r = {};
    char *url;
    int ret;

    url = malloc(size + 1);
    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';

    ret = oauth_redirect_parse(url, &r);
    if (ret < 0)
        FUZZ_CHECK(!r.code && !r.state && !r.error && !r.error_description);
    else {
        FUZZ_CHECK(r.code || r.error);
        for (const char *p = r.state; p && *p; p++)
            FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    }
    oauth_redirect_done(&r);
    free(url);
    return 0;
}
