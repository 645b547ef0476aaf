/* curl-headers.c: libcurl header lists that hold a secret. */
#include <string.h>

#include "buf.h"
#include "curl-headers.h"

struct curl_slist *curl_slist_append_secret(struct curl_slist *l, const char *prefix,
                                            const char *key, size_t len)
{
    struct buf header = BUF_INIT(0);
    struct curl_slist *r = NULL;

    if (buf_append_str(&header, prefix) >= 0 && buf_append(&header, key, len) >= 0)
        r = curl_slist_append(l, header.data);
    buf_free(&header, true);
    return r;
}

void curl_slist_wipe_free(struct curl_slist *l)
{
    for (struct curl_slist *i = l; i; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}
