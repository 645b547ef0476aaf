/* curl-event.c: libcurl's multi interface on an sd-event loop (see curl-event.h). */
#include <errno.h>
#include <sys/epoll.h>

#include "curl-event.h"
#include "log.h"
#include "macro.h"
#include "util.h"

static int on_io(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    struct curl_event *ce = userdata;
    int mask = 0;

    if (revents & EPOLLIN)
        mask |= CURL_CSELECT_IN;
    if (revents & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (revents & (EPOLLERR | EPOLLHUP))
        mask |= CURL_CSELECT_ERR;
    ce->act(ce, fd, mask);
    return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata)
{
    struct curl_event *ce = userdata;

    ce->act(ce, CURL_SOCKET_TIMEOUT, 0);
    return 0;
}

static int on_defer(sd_event_source *src, void *userdata)
{
    struct curl_event *ce = userdata;

    ce->act(ce, CURL_SOCKET_TIMEOUT, 0);
    return 0;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct curl_event *ce = userp;
    sd_event_source *src = socketp;
    uint32_t events = 0;
    int r;

    if (what == CURL_POLL_REMOVE) {
        if (src) {
            sd_event_source_disable_unref(src);
            curl_multi_assign(ce->multi, fd, NULL);
        }
        return 0;
    }
    if (what & CURL_POLL_IN)
        events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        events |= EPOLLOUT;

    if (src) {
        r = sd_event_source_set_io_events(src, events);
        if (r >= 0)
            r = sd_event_source_set_enabled(src, SD_EVENT_ON);
    } else {
        r = sd_event_add_io(ce->event, &src, fd, events, on_io, ce);
        if (r >= 0) {
            if (ce->io_priority != 0)
                (void)sd_event_source_set_priority(src, ce->io_priority);
            curl_multi_assign(ce->multi, fd, src);
        }
    }
    if (r < 0)
        log_warning_errno(r, "Failed to watch socket %d for libcurl: %m", fd);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct curl_event *ce = userp;

    if (timeout_ms < 0) {
        sd_event_source_set_enabled(ce->timer, SD_EVENT_OFF);
        return 0;
    }
    if (timeout_ms == 0) {
        sd_event_source_set_enabled(ce->defer, SD_EVENT_ONESHOT);
        return 0;
    }
    sd_event_source_set_time(ce->timer, now_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC);
    sd_event_source_set_enabled(ce->timer, SD_EVENT_ONESHOT);
    return 0;
}

int curl_event_init(struct curl_event *ce, sd_event *e, int64_t io_priority,
                    uint64_t timer_accuracy_usec, curl_event_act_t act, void *userdata)
{
    int r;

    *ce = (struct curl_event){
        .event = e, .io_priority = io_priority, .act = act, .userdata = userdata};
    ce->multi = curl_multi_init();
    if (!ce->multi)
        return -ENOMEM;
    curl_multi_setopt(ce->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(ce->multi, CURLMOPT_SOCKETDATA, ce);
    curl_multi_setopt(ce->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(ce->multi, CURLMOPT_TIMERDATA, ce);

    r = sd_event_add_time(e, &ce->timer, CLOCK_MONOTONIC, UINT64_MAX, timer_accuracy_usec, on_timer,
                          ce);
    if (r < 0)
        return r;
    sd_event_source_set_enabled(ce->timer, SD_EVENT_OFF);
    r = sd_event_add_defer(e, &ce->defer, on_defer, ce);
    if (r < 0)
        return r;
    sd_event_source_set_enabled(ce->defer, SD_EVENT_OFF);
    return 0;
}

void curl_event_cancel_defer(struct curl_event *ce)
{
    sd_event_source_set_enabled(ce->defer, SD_EVENT_OFF);
}

void curl_event_done(struct curl_event *ce)
{
    if (!ce)
        return;
    /* curl_multi_cleanup() may still call socket_cb() for sockets it closes. */
    if (ce->multi)
        curl_multi_cleanup(ce->multi);
    ce->multi = NULL;
    ce->timer = sd_event_source_disable_unref(ce->timer);
    ce->defer = sd_event_source_disable_unref(ce->defer);
}
