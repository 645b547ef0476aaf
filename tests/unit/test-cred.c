/* test-cred.c: authd's credential manager against tests/fakes/oauth, on a real sd-event loop.
 *
 * Each test starts its own fake-oauth (path from $DUALROUTE_FAKE_OAUTH, else fakes/fake-oauth
 * next to this binary), reads its PORT= line, configures it through /_fake/ with blocking libcurl
 * calls (the fake is another process, so blocking here is fine while the loop is idle), and
 * drives cred_* on an sd-event loop over an in-memory store. The fake records every request, so
 * the tests count what reached the token endpoint. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <systemd/sd-event.h>

#include "buf.h"
#include "cred.h"
#include "ipc.h"
#include "oauth.h"
#include "secret.h"
#include "store.h"
#include "test.h"
#include "util.h"

struct fake {
    pid_t pid;
    char base[64];
};

struct env {
    struct fake fake;
    sd_event *event;
    struct store *store;
    struct cred_manager *m;
    char auth_url[128], token_url[128], revoke_url[128];
};

struct result {
    int n; /* results received */
    int error;
    char code[32];
    char message[256];
    char token[OAUTH_TOKEN_MAX + 1];
    char kind[16];
    int64_t expires_at;
    bool revoked;
};

static void fake_start(struct fake *f)
{
    char path[PATH_MAX], line[64] = "";
    const char *env = getenv("DUALROUTE_FAKE_OAUTH");
    int fds[2];
    size_t n = 0;
    unsigned port = 0;

    if (env)
        snprintf(path, sizeof(path), "%s", env);
    else {
        ssize_t k = readlink("/proc/self/exe", path, sizeof(path) - 1);

        ASSERT_TRUE(k > 0);
        path[k] = 0;
        *strrchr(path, '/') = 0;
        ASSERT_TRUE(strlen(path) + 20 < sizeof(path));
        strncat(path, "/fakes/fake-oauth", sizeof(path) - strlen(path) - 1);
    }
    ASSERT_OK(access(path, X_OK) < 0 ? -errno : 0);
    ASSERT_OK(pipe2(fds, O_CLOEXEC));
    f->pid = fork();
    ASSERT_TRUE(f->pid >= 0);
    if (f->pid == 0) {
        /* Dies with the test, even one that fails half-way. */
        (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(fds[1], STDOUT_FILENO);
        execl(path, path, "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while (n < sizeof(line) - 1 && read(fds[0], line + n, 1) == 1 && line[n] != '\n')
        n++;
    close(fds[0]);
    ASSERT_EQ(sscanf(line, "PORT=%u", &port), 1);
    snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%u", port);
}

static void fake_stop(struct fake *f)
{
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
        f->pid = 0;
    }
}

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
    return buf_append(userdata, p, size * n) < 0 ? 0 : size * n;
}

/* A blocking request to the fake. Returns the status; *ret_body (may be NULL) gets the body,
 * *ret_location (may be NULL) the redirect target. */
static long fake_http(struct fake *f, const char *method, const char *path, const char *json_body,
                      const char *form_body, char **ret_body, char **ret_location)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct buf b = BUF_INIT(4 * 1024 * 1024);
    char url[512], *loc = NULL;
    long status = 0;

    ASSERT_NOT_NULL(c);
    snprintf(url, sizeof(url), "%s%s", startswith(path, "http") ? "" : f->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (json_body || form_body) {
        h = curl_slist_append(NULL, json_body ? "Content-Type: application/json"
                                              : "Content-Type: application/x-www-form-urlencoded");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body ?: form_body);
    }
    ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
    if (ret_location)
        *ret_location = loc ? strdup(loc) : NULL;
    ASSERT_OK(buf_append(&b, "", 1));
    if (ret_body)
        *ret_body = buf_steal(&b);
    buf_free(&b, false);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* POSTs a JSON control request to the fake and returns its reply (a new reference). */
static json_t *fake_control(struct fake *f, const char *path, json_t *body_steal)
{
    char *text = json_dumps(body_steal, JSON_COMPACT), *reply = NULL;
    json_t *j;

    ASSERT_NOT_NULL(text);
    ASSERT_EQ(fake_http(f, "POST", path, text, NULL, &reply, NULL), 200);
    j = json_loads(reply, 0, NULL);
    ASSERT_NOT_NULL(j);
    free(text);
    free(reply);
    json_decref(body_steal);
    return j;
}

static void fake_config(struct fake *f, json_t *body_steal)
{
    json_decref(fake_control(f, "/_fake/config", body_steal));
}

/* How many recorded requests went to a path starting with prefix (method NULL: any). */
static int fake_count(struct fake *f, const char *method, const char *prefix)
{
    char *text = NULL;
    json_t *list, *rec;
    size_t i;
    int n = 0;

    ASSERT_EQ(fake_http(f, "GET", "/_fake/requests", NULL, NULL, &text, NULL), 200);
    list = json_loads(text, 0, NULL);
    ASSERT_TRUE(json_is_array(list));
    json_array_foreach (list, i, rec) {
        const char *p = json_string_value(json_object_get(rec, "path")),
                   *m = json_string_value(json_object_get(rec, "method"));

        if (p && startswith(p, prefix) && (!method || (m && streq(m, method))))
            n++;
    }
    json_decref(list);
    free(text);
    return n;
}

static void fake_clear(struct fake *f)
{
    ASSERT_EQ(fake_http(f, "DELETE", "/_fake/requests", NULL, NULL, NULL, NULL), 200);
}

/* The fake's record of an access token: a new reference, NULL when it never issued it. */
static json_t *fake_token_info(struct fake *f, const char *token)
{
    char path[OAUTH_TOKEN_MAX + 64], *text = NULL;
    json_t *list, *item;

    snprintf(path, sizeof(path), "/_fake/tokens?token=%s", token);
    ASSERT_EQ(fake_http(f, "GET", path, NULL, NULL, &text, NULL), 200);
    list = json_loads(text, 0, NULL);
    free(text);
    ASSERT_TRUE(json_is_array(list));
    item = json_incref(json_array_get(list, 0));
    json_decref(list);
    return item;
}

static void env_start(struct env *v)
{
    memset(v, 0, sizeof(*v));
    fake_start(&v->fake);
    snprintf(v->auth_url, sizeof(v->auth_url), "%s/o/oauth2/v2/auth", v->fake.base);
    snprintf(v->token_url, sizeof(v->token_url), "%s/token", v->fake.base);
    snprintf(v->revoke_url, sizeof(v->revoke_url), "%s/revoke", v->fake.base);
    ASSERT_OK(sd_event_new(&v->event));
    ASSERT_OK(store_open(":memory:", &v->store));
    ASSERT_OK(cred_manager_new(v->event, v->store,
                               &(const struct cred_endpoints){.auth_url = v->auth_url,
                                                              .token_url = v->token_url,
                                                              .revoke_url = v->revoke_url,
                                                              .metadata_url = v->fake.base},
                               &v->m));
    ASSERT_OK(cred_manager_start(v->m));
    json_decref(
        fake_control(&v->fake, "/_fake/clients",
                     json_pack("{s:s,s:s}", "client_id", "cid", "client_secret", "csecret")));
}

static void env_stop(struct env *v)
{
    v->m = cred_manager_free(v->m);
    v->store = store_free(v->store);
    v->event = sd_event_unref(v->event);
    fake_stop(&v->fake);
}

static void on_result(const struct cred_result *res, void *userdata)
{
    struct result *r = userdata;

    r->n++;
    r->error = res->error;
    snprintf(r->code, sizeof(r->code), "%s", res->code ?: "");
    snprintf(r->message, sizeof(r->message), "%s", res->message ?: "");
    snprintf(r->token, sizeof(r->token), "%s", res->token ? res->token->data : "");
    snprintf(r->kind, sizeof(r->kind), "%s", res->kind ?: "");
    r->expires_at = res->expires_at;
    r->revoked = res->revoked;
}

/* Runs the loop until *n reaches want, failing after timeout_ms. */
static void run_until(struct env *v, const int *n, int want, unsigned timeout_ms)
{
    uint64_t deadline = now_usec() + timeout_ms * USEC_PER_MSEC;

    while (*n < want && now_usec() < deadline)
        ASSERT_OK(sd_event_run(v->event, 50 * USEC_PER_MSEC));
    ASSERT_EQ(*n, want);
}

/* Runs the loop for ms milliseconds. */
static void run_for(struct env *v, unsigned ms)
{
    uint64_t deadline = now_usec() + ms * USEC_PER_MSEC;

    while (now_usec() < deadline)
        ASSERT_OK(sd_event_run(v->event, 50 * USEC_PER_MSEC));
}

static void token_get(struct env *v, const char *account, struct result *r)
{
    int before = r->n;

    ASSERT_OK(cred_token_get(v->m, account, on_result, r, NULL));
    ASSERT_EQ(r->n, before); /* never from inside the call */
    run_until(v, &r->n, before + 1, 10000);
}

static void account_add(struct env *v, json_t *req_steal, struct result *r)
{
    int before = r->n;

    ASSERT_OK(cred_account_add(v->m, req_steal, on_result, r, NULL));
    json_decref(req_steal);
    ASSERT_EQ(r->n, before);
    run_until(v, &r->n, before + 1, 10000);
}

/* Seeds a refresh token at the fake and adds a gcloud_adc account that uses it. Returns the
 * refresh token (caller frees). */
static char *add_adc_account(struct env *v, const char *name)
{
    json_t *seed =
        fake_control(&v->fake, "/_fake/refresh-tokens", json_pack("{s:s}", "client_id", "cid"));
    char *rt = strdup(json_string_value(json_object_get(seed, "refresh_token")));
    json_t *adc = json_pack("{s:s,s:s,s:s,s:s}", "type", "authorized_user", "client_id", "cid",
                            "client_secret", "csecret", "refresh_token", rt);
    char *adc_text = json_dumps(adc, 0);
    struct result r = {};

    account_add(v,
                json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "name", name, "provider", "vertex", "auth",
                          "gcloud_adc", "adc_json", adc_text, "project", "p1", "region",
                          "us-east5"),
                &r);
    ASSERT_EQ(r.error, 0);
    free(adc_text);
    json_decref(adc);
    json_decref(seed);
    return rt;
}

/* A fresh 2048-bit RSA key as PKCS#8 and public PEM (both new strings). */
static void rsa_keypair(char **ret_private, char **ret_public)
{
    EVP_PKEY *k = EVP_RSA_gen(2048);
    BIO *b1 = BIO_new(BIO_s_mem()), *b2 = BIO_new(BIO_s_mem());
    char *p;
    long n;

    ASSERT_NOT_NULL(k);
    ASSERT_TRUE(PEM_write_bio_PrivateKey(b1, k, NULL, NULL, 0, NULL, NULL) == 1);
    ASSERT_TRUE(PEM_write_bio_PUBKEY(b2, k) == 1);
    n = BIO_get_mem_data(b1, &p);
    *ret_private = strndup(p, (size_t)n);
    n = BIO_get_mem_data(b2, &p);
    *ret_public = strndup(p, (size_t)n);
    BIO_free(b1);
    BIO_free(b2);
    EVP_PKEY_free(k);
}

/* A service-account key file for the fake; registers the public key when register_key. */
static char *sa_key_json(struct env *v, bool register_key)
{
    char *priv = NULL, *pub = NULL, *text;
    json_t *j;

    rsa_keypair(&priv, &pub);
    if (register_key)
        json_decref(
            fake_control(&v->fake, "/_fake/service-accounts",
                         json_pack("{s:s,s:s,s:s}", "client_email", "sa@p1.iam.gserviceaccount.com",
                                   "public_key_pem", pub, "private_key_id", "kid-1")));
    j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "type", "service_account", "project_id", "p1",
                  "private_key_id", "kid-1", "private_key", priv, "client_email",
                  "sa@p1.iam.gserviceaccount.com", "token_uri", v->token_url);
    text = json_dumps(j, 0);
    json_decref(j);
    free(priv);
    free(pub);
    return text;
}

static enum account_state store_state(struct env *v, const char *name)
{
    struct account_record *rec = NULL;
    enum account_state st;

    ASSERT_OK(store_account_get(v->store, name, &rec));
    st = rec->state;
    account_record_free(rec);
    return st;
}

TEST(cred_service_account_add_and_token_get)
{
    struct env v;
    struct result add = {}, r = {}, r2 = {};
    char *sa = NULL;
    json_t *info;

    env_start(&v);
    sa = sa_key_json(&v, true);
    account_add(&v,
                json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", "sa1", "provider", "vertex", "auth",
                          "service_account", "service_account_json", sa, "region", "us-east5"),
                &add);
    ASSERT_EQ(add.error, 0);
    ASSERT_EQ(store_state(&v, "sa1"), ACCOUNT_STATE_OK);

    token_get(&v, "sa1", &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_STREQ(r.kind, "access_token");
    ASSERT_TRUE(r.expires_at > (int64_t)(now_realtime_usec() / USEC_PER_SEC) + 3000);
    /* The fake verified the JWT and issued this very token on the jwt-bearer grant. */
    info = fake_token_info(&v.fake, r.token);
    ASSERT_NOT_NULL(info);
    ASSERT_TRUE(json_is_true(json_object_get(info, "valid")));
    ASSERT_STREQ(json_string_value(json_object_get(info, "grant")), "jwt-bearer");
    json_decref(info);
    ASSERT_EQ(cred_account_state(v.m, "sa1", NULL)[0], 'o');

    /* Cached: the second call does not reach the token endpoint. */
    fake_clear(&v.fake);
    token_get(&v, "sa1", &r2);
    ASSERT_STREQ(r2.token, r.token);
    ASSERT_EQ(fake_count(&v.fake, NULL, "/token"), 0);

    /* A restarted manager reuses the stored token. */
    v.m = cred_manager_free(v.m);
    ASSERT_OK(cred_manager_new(v.event, v.store,
                               &(const struct cred_endpoints){.token_url = v.token_url}, &v.m));
    ASSERT_OK(cred_manager_start(v.m));
    token_get(&v, "sa1", &r2);
    ASSERT_STREQ(r2.token, r.token);
    ASSERT_EQ(fake_count(&v.fake, NULL, "/token"), 0);

    free(sa);
    env_stop(&v);
}

TEST(cred_account_add_refusals)
{
    struct env v;
    struct result r = {}, t = {};
    struct account_record *rec = NULL;
    char *sa = NULL;

    env_start(&v);
    account_add(
        &v,
        json_pack("{s:s,s:s,s:s}", "name", "Bad Name", "provider", "anthropic", "api_key", "sk-1"),
        &r);
    ASSERT_STREQ(r.code, IPC_ERROR_BAD_REQUEST);
    ASSERT_TRUE(strstr(r.message, "name") != NULL);
    account_add(
        &v,
        json_pack("{s:s,s:s,s:s}", "name", "v1", "provider", "vertex", "auth", "service_account"),
        &r);
    ASSERT_STREQ(r.code, IPC_ERROR_BAD_REQUEST);
    ASSERT_TRUE(strstr(r.message, "service_account_json") != NULL);

    account_add(&v,
                json_pack("{s:s,s:s,s:s}", "name", "a1", "provider", "anthropic", "api_key",
                          "sk-ant-test-1"),
                &r);
    ASSERT_EQ(r.error, 0);
    token_get(&v, "a1", &t);
    ASSERT_EQ(t.error, 0);
    ASSERT_STREQ(t.kind, "api_key");
    ASSERT_STREQ(t.token, "sk-ant-test-1");
    ASSERT_EQ(t.expires_at, 0);
    account_add(
        &v, json_pack("{s:s,s:s,s:s}", "name", "a1", "provider", "anthropic", "api_key", "sk-2"),
        &r);
    ASSERT_STREQ(r.code, IPC_ERROR_EXISTS);

    /* A key the provider does not know: upstream, and nothing stored. */
    sa = sa_key_json(&v, false);
    account_add(&v,
                json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", "sa2", "provider", "vertex", "auth",
                          "service_account", "service_account_json", sa, "region", "us-east5"),
                &r);
    ASSERT_STREQ(r.code, IPC_ERROR_UPSTREAM);
    ASSERT_TRUE(strstr(r.message, "invalid_grant") != NULL);
    ASSERT_ERROR(store_account_get(v.store, "sa2", &rec), ENOENT);

    token_get(&v, "nobody", &t);
    ASSERT_STREQ(t.code, IPC_ERROR_NOT_FOUND);
    free(sa);
    env_stop(&v);
}

TEST(cred_gcloud_adc_refresh_grant)
{
    struct env v;
    struct result r = {};
    char *rt;
    json_t *info;

    env_start(&v);
    rt = add_adc_account(&v, "adc1");
    token_get(&v, "adc1", &r);
    ASSERT_EQ(r.error, 0);
    info = fake_token_info(&v.fake, r.token);
    ASSERT_NOT_NULL(info);
    ASSERT_STREQ(json_string_value(json_object_get(info, "grant")), "refresh_token");
    ASSERT_STREQ(json_string_value(json_object_get(info, "origin_refresh_token")), rt);
    json_decref(info);
    free(rt);
    env_stop(&v);
}

TEST(cred_metadata_server)
{
    struct env v;
    struct result add = {}, r = {};
    json_t *info;

    env_start(&v);
    account_add(&v,
                json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", "gce", "provider", "vertex", "auth",
                          "metadata", "project", "p1", "region", "us-east5"),
                &add);
    ASSERT_EQ(add.error, 0);
    token_get(&v, "gce", &r);
    ASSERT_EQ(r.error, 0);
    info = fake_token_info(&v.fake, r.token);
    ASSERT_NOT_NULL(info);
    ASSERT_STREQ(json_string_value(json_object_get(info, "grant")), "metadata");
    json_decref(info);
    /* The fake answers 403 without Metadata-Flavor, so a token proves the header went out. */
    ASSERT_EQ(
        fake_count(&v.fake, "GET", "/computeMetadata/v1/instance/service-accounts/default/token"),
        1);

    fake_config(&v.fake, json_pack("{s:i}", "fail_next_metadata_requests", 1));
    v.m = cred_manager_free(v.m); /* forget the cached token, and the store's too */
    ASSERT_OK(store_token_put(v.store, "gce", NULL, 0));
    ASSERT_OK(cred_manager_new(v.event, v.store,
                               &(const struct cred_endpoints){.metadata_url = v.fake.base}, &v.m));
    token_get(&v, "gce", &r);
    ASSERT_STREQ(r.code, IPC_ERROR_UNAVAILABLE);
    ASSERT_TRUE(strstr(r.message, "503") != NULL);
    ASSERT_STREQ(cred_account_state(v.m, "gce", NULL), "error");
    env_stop(&v);
}

/* login.start, then the "browser": GET the authorize URL, take code and state from Location. */
static void login_start(struct env *v, const char *account, char **ret_id, char **ret_code,
                        char **ret_state)
{
    json_t *reply = NULL, *req;
    const char *message = NULL, *url;
    char *location = NULL;
    struct oauth_redirect rd = {};

    req = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "account", account, "provider", "vertex",
                    "client_id", "cid", "client_secret", "csecret", "redirect_uri",
                    "http://127.0.0.1:8765/", "project", "p1", "region", "us-east5");
    ASSERT_OK(cred_login_start(v->m, req, &reply, &message));
    json_decref(req);
    url = json_string_value(json_object_get(reply, "authorize_url"));
    ASSERT_NOT_NULL(url);
    ASSERT_TRUE(startswith(url, v->auth_url));
    ASSERT_TRUE(strstr(url, "code_challenge_method=S256") != NULL);
    ASSERT_TRUE(strstr(url, "access_type=offline") != NULL);
    ASSERT_TRUE(strstr(url, "prompt=consent") != NULL);
    ASSERT_TRUE(strstr(url, "cloud-platform") != NULL);
    ASSERT_TRUE(json_integer_value(json_object_get(reply, "expires_at")) >
                (json_int_t)(now_realtime_usec() / USEC_PER_SEC) + 500);

    ASSERT_EQ(fake_http(&v->fake, "GET", url, NULL, NULL, NULL, &location), 302);
    ASSERT_NOT_NULL(location);
    ASSERT_TRUE(startswith(location, "http://127.0.0.1:8765/"));
    ASSERT_OK(oauth_redirect_parse(location, &rd));
    ASSERT_NOT_NULL(rd.code);
    ASSERT_NOT_NULL(rd.state);
    *ret_id = strdup(json_string_value(json_object_get(reply, "login_id")));
    *ret_code = strdup(rd.code->data);
    *ret_state = strdup(rd.state);
    oauth_redirect_done(&rd);
    free(location);
    json_decref(reply);
}

static void login_finish(struct env *v, const char *id, const char *code, const char *state,
                         struct result *r)
{
    json_t *req = json_pack("{s:s,s:s,s:s}", "login_id", id, "code", code, "state", state);
    int before = r->n;

    ASSERT_OK(cred_login_finish(v->m, req, on_result, r, NULL));
    json_decref(req);
    run_until(v, &r->n, before + 1, 10000);
}

TEST(cred_login_pkce_flow)
{
    struct env v;
    struct result r = {}, t = {};
    char *id = NULL, *code = NULL, *state = NULL;
    struct account_record *rec = NULL;
    json_t *info;

    env_start(&v);
    /* A wrong state is refused, and the session is spent. */
    login_start(&v, "me", &id, &code, &state);
    login_finish(&v, id, code, "not-the-state-we-sent", &r);
    ASSERT_STREQ(r.code, IPC_ERROR_BAD_REQUEST);
    ASSERT_TRUE(strstr(r.message, "state") != NULL);
    login_finish(&v, id, code, state, &r);
    ASSERT_STREQ(r.code, IPC_ERROR_NOT_FOUND);
    ASSERT_ERROR(store_account_get(v.store, "me", &rec), ENOENT);
    free(id), free(code), free(state);

    login_start(&v, "me", &id, &code, &state);
    login_finish(&v, id, code, state, &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_OK(store_account_get(v.store, "me", &rec));
    ASSERT_EQ(rec->provider, ACCOUNT_PROVIDER_VERTEX);
    ASSERT_EQ(rec->state, ACCOUNT_STATE_OK);
    ASSERT_TRUE(strstr(rec->config, "\"login\"") != NULL);
    ASSERT_TRUE(strstr(rec->secret->data, "refresh_token") != NULL);
    rec = account_record_free(rec);
    /* The PKCE verifier reached the token endpoint (the fake requires S256 PKCE). */
    ASSERT_EQ(fake_count(&v.fake, "POST", "/token"), 1);

    /* Reusing the login_id: not_found. */
    login_finish(&v, id, code, state, &r);
    ASSERT_STREQ(r.code, IPC_ERROR_NOT_FOUND);

    token_get(&v, "me", &t);
    ASSERT_EQ(t.error, 0);
    info = fake_token_info(&v.fake, t.token);
    ASSERT_NOT_NULL(info);
    ASSERT_TRUE(json_is_true(json_object_get(info, "valid")));
    ASSERT_STREQ(json_string_value(json_object_get(info, "grant")), "authorization_code");
    json_decref(info);
    ASSERT_EQ(fake_count(&v.fake, "POST", "/token"), 1); /* the login's token was cached */
    free(id), free(code), free(state);
    env_stop(&v);
}

TEST(cred_concurrent_token_get_one_refresh)
{
    struct env v;
    struct result r[3] = {};
    int done = 0;
    char *rt;

    env_start(&v);
    /* Tokens of 30 s are below the 60 s a cached one must have left: each token.get refreshes. */
    fake_config(&v.fake, json_pack("{s:i}", "access_token_lifetime_s", 30));
    rt = add_adc_account(&v, "adc1");
    fake_config(&v.fake, json_pack("{s:i}", "delay_ms", 300));
    fake_clear(&v.fake);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(cred_token_get(v.m, "adc1", on_result, &r[i], NULL));
    ASSERT_STREQ(cred_account_state(v.m, "adc1", NULL), "refreshing");
    for (uint64_t deadline = now_usec() + 5 * USEC_PER_SEC; done < 3 && now_usec() < deadline;) {
        ASSERT_OK(sd_event_run(v.event, 50 * USEC_PER_MSEC));
        done = r[0].n + r[1].n + r[2].n;
    }
    ASSERT_EQ(done, 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(r[i].error, 0);
        ASSERT_STREQ(r[i].token, r[0].token);
    }
    ASSERT_EQ(fake_count(&v.fake, "POST", "/token"), 1);
    ASSERT_STREQ(cred_account_state(v.m, "adc1", NULL), "ok");

    /* A cancelled waiter is not called. */
    {
        struct result c = {}, k = {};
        struct cred_op *op = NULL;

        ASSERT_OK(cred_token_get(v.m, "adc1", on_result, &c, &op));
        ASSERT_OK(cred_token_get(v.m, "adc1", on_result, &k, NULL));
        cred_op_cancel(op);
        run_until(&v, &k.n, 1, 5000);
        ASSERT_EQ(c.n, 0);
    }
    free(rt);
    env_stop(&v);
}

TEST(cred_background_refresh_before_expiry)
{
    struct env v;
    struct result r = {};
    struct secret *stored = NULL;
    int64_t expires = 0;
    char *rt;

    env_start(&v);
    fake_config(&v.fake, json_pack("{s:i}", "access_token_lifetime_s", 4));
    rt = add_adc_account(&v, "adc1");
    ASSERT_OK(store_token_get(v.store, "adc1", &stored, &expires));
    snprintf(r.token, sizeof(r.token), "%s", stored->data);
    stored = secret_free(stored);
    fake_clear(&v.fake);
    /* A 4 s token is refreshed at half its life, with no token.get asking. */
    run_for(&v, 3000);
    ASSERT_TRUE(fake_count(&v.fake, "POST", "/token") >= 1);
    ASSERT_OK(store_token_get(v.store, "adc1", &stored, &expires));
    ASSERT_FALSE(streq(stored->data, r.token));
    ASSERT_TRUE(expires > (int64_t)now_realtime_usec());
    stored = secret_free(stored);
    free(rt);
    env_stop(&v);
}

TEST(cred_revoked_grant_needs_login)
{
    struct env v;
    struct result r = {};
    const char *last = NULL;
    char form[512], *rt;

    env_start(&v);
    fake_config(&v.fake, json_pack("{s:i}", "access_token_lifetime_s", 30));
    rt = add_adc_account(&v, "adc1");
    snprintf(form, sizeof(form), "token=%s", rt);
    ASSERT_EQ(fake_http(&v.fake, "POST", "/revoke", NULL, form, NULL, NULL), 200);

    token_get(&v, "adc1", &r);
    ASSERT_STREQ(r.code, IPC_ERROR_NEEDS_LOGIN);
    ASSERT_TRUE(strstr(r.message, "dualroutectl login vertex --account adc1") != NULL);
    ASSERT_TRUE(strstr(r.message, rt) == NULL);
    ASSERT_EQ(store_state(&v, "adc1"), ACCOUNT_STATE_NEEDS_LOGIN);
    ASSERT_STREQ(cred_account_state(v.m, "adc1", &last), "needs_login");
    ASSERT_NOT_NULL(last);
    ASSERT_TRUE(strstr(last, "invalid_grant") != NULL);

    /* From now on at once, without asking the provider. */
    fake_clear(&v.fake);
    token_get(&v, "adc1", &r);
    ASSERT_STREQ(r.code, IPC_ERROR_NEEDS_LOGIN);
    ASSERT_EQ(fake_count(&v.fake, NULL, "/token"), 0);
    free(rt);
    env_stop(&v);
}

TEST(cred_failing_endpoint_backs_off_and_recovers)
{
    struct env v;
    struct result r = {};
    const char *last = NULL;
    uint64_t deadline;
    char *rt;

    env_start(&v);
    fake_config(&v.fake, json_pack("{s:i}", "access_token_lifetime_s", 30));
    rt = add_adc_account(&v, "adc1");
    fake_config(&v.fake, json_pack("{s:i}", "fail_next_token_requests", 2));
    fake_clear(&v.fake);

    token_get(&v, "adc1", &r);
    ASSERT_STREQ(r.code, IPC_ERROR_UNAVAILABLE);
    ASSERT_TRUE(strstr(r.message, "temporarily_unavailable") != NULL);
    ASSERT_TRUE(strstr(r.message, "503") != NULL);
    ASSERT_STREQ(cred_account_state(v.m, "adc1", &last), "error");
    ASSERT_NOT_NULL(last);
    ASSERT_EQ(store_state(&v, "adc1"), ACCOUNT_STATE_OK); /* transient: no login needed */

    /* During the backoff a token.get does not hammer the endpoint. */
    token_get(&v, "adc1", &r);
    ASSERT_STREQ(r.code, IPC_ERROR_UNAVAILABLE);
    ASSERT_EQ(fake_count(&v.fake, "POST", "/token"), 1);

    /* The timer retries (0.5-1 s, then 1-2 s) and the third attempt succeeds. */
    deadline = now_usec() + 6 * USEC_PER_SEC;
    while (!streq(cred_account_state(v.m, "adc1", NULL), "ok") && now_usec() < deadline)
        ASSERT_OK(sd_event_run(v.event, 50 * USEC_PER_MSEC));
    ASSERT_STREQ(cred_account_state(v.m, "adc1", NULL), "ok");
    ASSERT_EQ(fake_count(&v.fake, "POST", "/token"), 3);
    token_get(&v, "adc1", &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_STREQ(r.kind, "access_token");
    free(rt);
    env_stop(&v);
}

TEST(cred_logout_revokes)
{
    struct env v;
    struct result r = {}, t = {};
    struct account_record *rec = NULL;
    char *id = NULL, *code = NULL, *state = NULL, *sa;

    env_start(&v);
    login_start(&v, "me", &id, &code, &state);
    login_finish(&v, id, code, state, &r);
    ASSERT_EQ(r.error, 0);
    token_get(&v, "me", &t);
    ASSERT_EQ(t.error, 0);

    ASSERT_OK(cred_logout(v.m, "me", on_result, &r, NULL));
    run_until(&v, &r.n, 2, 10000);
    ASSERT_EQ(r.error, 0);
    ASSERT_TRUE(r.revoked);
    ASSERT_EQ(fake_count(&v.fake, "POST", "/revoke"), 1);
    ASSERT_OK(store_account_get(v.store, "me", &rec));
    ASSERT_EQ(rec->state, ACCOUNT_STATE_NEEDS_LOGIN);
    ASSERT_FALSE(rec->has_secret);
    ASSERT_EQ(rec->token_expires_usec, 0);
    rec = account_record_free(rec);
    /* The provider revoked the grant: the old access token is dead too. */
    {
        json_t *info = fake_token_info(&v.fake, t.token);

        ASSERT_FALSE(json_is_true(json_object_get(info, "valid")));
        json_decref(info);
    }
    token_get(&v, "me", &t);
    ASSERT_STREQ(t.code, IPC_ERROR_NEEDS_LOGIN);

    /* A service account has nothing to revoke. */
    sa = sa_key_json(&v, true);
    account_add(&v,
                json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", "sa1", "provider", "vertex", "auth",
                          "service_account", "service_account_json", sa, "region", "us-east5"),
                &r);
    ASSERT_EQ(r.error, 0);
    ASSERT_OK(cred_logout(v.m, "sa1", on_result, &r, NULL));
    run_until(&v, &r.n, 4, 10000);
    ASSERT_EQ(r.error, 0);
    ASSERT_FALSE(r.revoked);
    ASSERT_EQ(store_state(&v, "sa1"), ACCOUNT_STATE_NEEDS_LOGIN);
    ASSERT_EQ(fake_count(&v.fake, "POST", "/revoke"), 1);

    ASSERT_OK(cred_logout(v.m, "ghost", on_result, &r, NULL));
    run_until(&v, &r.n, 5, 10000);
    ASSERT_STREQ(r.code, IPC_ERROR_NOT_FOUND);
    free(sa);
    free(id), free(code), free(state);
    env_stop(&v);
}

TEST(cred_start_schedules_and_forget_answers_waiters)
{
    struct env v;
    struct result r = {};
    char *rt;

    env_start(&v);
    fake_config(&v.fake, json_pack("{s:i}", "access_token_lifetime_s", 30));
    rt = add_adc_account(&v, "adc1");

    /* A restarted authd refreshes a token that is about to expire on its own (within 1 s). */
    v.m = cred_manager_free(v.m);
    ASSERT_OK(cred_manager_new(v.event, v.store,
                               &(const struct cred_endpoints){.token_url = v.token_url}, &v.m));
    fake_clear(&v.fake);
    ASSERT_OK(cred_manager_start(v.m));
    run_for(&v, 1500);
    ASSERT_EQ(fake_count(&v.fake, "POST", "/token"), 1);
    ASSERT_STREQ(cred_account_state(v.m, "adc1", NULL), "ok");

    /* account.remove while a token.get waits: the waiter gets not_found. */
    fake_config(&v.fake, json_pack("{s:i}", "delay_ms", 500));
    ASSERT_OK(cred_token_get(v.m, "adc1", on_result, &r, NULL));
    ASSERT_OK(store_account_remove(v.store, "adc1"));
    cred_account_forget(v.m, "adc1");
    run_until(&v, &r.n, 1, 5000);
    ASSERT_STREQ(r.code, IPC_ERROR_NOT_FOUND);
    free(rt);
    env_stop(&v);
}
