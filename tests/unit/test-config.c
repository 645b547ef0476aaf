/* test-config.c: routerd's command line, environment and file, and their precedence. */
#include <unistd.h>

#include "config.h"
#include "test.h"

static int load(struct router_config *cfg, enum config_action *action, int argc, const char **argv)
{
    return router_config_load(argc, (char **)argv, cfg, action);
}

static char *write_temp(const char *text)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof path, "/tmp/test-config-XXXXXX");
    fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, text, strlen(text)), (int64_t)strlen(text));
    close(fd);
    return path;
}

TEST(defaults)
{
    const char *argv[] = {"routerd", "--config", "/nonexistent/dir/../routerd.conf"};
    struct router_config cfg = {};
    enum config_action a;

    /* An explicit --config that does not exist is an error... */
    ASSERT_TRUE(load(&cfg, &a, 3, argv) < 0);
    router_config_done(&cfg);

    /* ...the defaults otherwise. */
    {
        const char *argv2[] = {"routerd"};
        unsetenv("ROUTER_PORT");
        ASSERT_OK(load(&cfg, &a, 1, argv2));
        ASSERT_EQ(a, CONFIG_RUN);
        ASSERT_EQ(cfg.port, 3000);
        ASSERT_STREQ(cfg.listen, "127.0.0.1");
        ASSERT_STREQ(cfg.upstream, "https://api.anthropic.com");
        ASSERT_TRUE(cfg.enable_anthropic && cfg.enable_openai && cfg.bearer_passthrough);
        ASSERT_FALSE(cfg.allow_unauthenticated);
        ASSERT_EQ(cfg.max_body_size, 32 * 1024 * 1024);
        ASSERT_EQ(cfg.log_mode, LOG_MODE_NORMAL);
        router_config_done(&cfg);
    }
}

TEST(flags_of_anthropic_max_router)
{
    const char *argv[] = {"routerd",
                          "-p",
                          "8080",
                          "--disable-openai",
                          "--disable-bearer-passthrough",
                          "-m",
                          "--disable-anthropic",
                          "--enable-all-endpoints"};
    struct router_config cfg = {};
    enum config_action a;

    unsetenv("ROUTER_PORT");
    ASSERT_OK(load(&cfg, &a, 8, argv));
    ASSERT_EQ(cfg.port, 8080);
    ASSERT_TRUE(cfg.enable_openai);
    ASSERT_TRUE(cfg.enable_anthropic);
    ASSERT_FALSE(cfg.bearer_passthrough);
    ASSERT_EQ(cfg.log_mode, LOG_MODE_MINIMAL);
    router_config_done(&cfg);
}

TEST(precedence_cli_env_file)
{
    char *path = write_temp("# test\nport = 1111\nmax_body_size = 1M\nlog_mode = quiet\n");
    const char *argv_file[] = {"routerd", "--config", path};
    const char *argv_cli[] = {"routerd", "--config", path, "--port", "3333", "-V"};
    struct router_config cfg = {};
    enum config_action a;

    unsetenv("ROUTER_PORT");
    ASSERT_OK(load(&cfg, &a, 3, argv_file));
    ASSERT_EQ(cfg.port, 1111);
    ASSERT_EQ(cfg.max_body_size, 1024 * 1024);
    ASSERT_EQ(cfg.log_mode, LOG_MODE_QUIET);
    router_config_done(&cfg);

    setenv("ROUTER_PORT", "2222", 1);
    ASSERT_OK(load(&cfg, &a, 3, argv_file));
    ASSERT_EQ(cfg.port, 2222);
    router_config_done(&cfg);

    ASSERT_OK(load(&cfg, &a, 6, argv_cli));
    ASSERT_EQ(cfg.port, 3333);
    ASSERT_EQ(cfg.log_mode, LOG_MODE_VERBOSE);
    router_config_done(&cfg);
    unsetenv("ROUTER_PORT");
    unlink(path);
}

TEST(errors)
{
    char *path = write_temp("port = 1\nbogus_key = 2\n");
    const char *argv_file[] = {"routerd", "--config", path};
    const char *argv_range[] = {"routerd", "--port", "70000"};
    const char *argv_set[] = {"routerd", "--set", "max_body_size"};
    const char *argv_set_ok[] = {"routerd", "--set", "drain_timeout=5s", "--check-config"};
    struct router_config cfg = {};
    enum config_action a;

    unsetenv("ROUTER_PORT");
    ASSERT_ERROR(load(&cfg, &a, 3, argv_file), ENOENT);
    router_config_done(&cfg);
    ASSERT_ERROR(load(&cfg, &a, 3, argv_range), ERANGE);
    router_config_done(&cfg);
    ASSERT_ERROR(load(&cfg, &a, 3, argv_set), EINVAL);
    router_config_done(&cfg);
    ASSERT_OK(load(&cfg, &a, 4, argv_set_ok));
    ASSERT_EQ(a, CONFIG_CHECK);
    ASSERT_EQ(cfg.drain_timeout, 5 * 1000000);
    router_config_done(&cfg);
    unlink(path);
}
