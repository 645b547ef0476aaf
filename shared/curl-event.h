/* curl-event.h: libcurl's multi interface on an sd-event loop, for routerd and authd.
 *
 * curl's socket callback adds, changes or drops one io source per socket it watches; its timer
 * callback arms one time source, or a defer source when curl asks for "now" (after every
 * curl_multi_add_handle(): serving it from a defer source saves a loop pass and a timerfd read).
 * Each wake-up calls the owner's act() with the socket and curl's event mask (or
 * CURL_SOCKET_TIMEOUT and 0); act() typically calls curl_multi_socket_action() and then collects
 * the finished transfers with curl_multi_info_read(). */
#pragma once

#include <stdint.h>

#include <curl/curl.h>
#include <systemd/sd-event.h>

struct curl_event;
typedef void (*curl_event_act_t)(struct curl_event *ce, curl_socket_t fd, int mask);

struct curl_event {
    sd_event *event; /* borrowed */
    CURLM *multi;    /* owned */
    sd_event_source *timer, *defer;
    int64_t io_priority; /* of the socket sources */
    curl_event_act_t act;
    void *userdata;
};

/* Creates the multi handle and the time and defer sources (off) on e. io_priority applies to the
 * socket sources (routerd reads upstream sockets before serving clients); timer_accuracy_usec is
 * the time source's coalescing. Returns 0, or -ENOMEM or sd-event's error, leaving ce for
 * curl_event_done(). */
int curl_event_init(struct curl_event *ce, sd_event *e, int64_t io_priority,
                    uint64_t timer_accuracy_usec, curl_event_act_t act, void *userdata);
/* Cleans up the multi handle (curl may still drop sockets through the callback) and the sources.
 * The easy handles must have been removed. Accepts a zeroed or half-initialised ce. */
void curl_event_done(struct curl_event *ce);
/* Cancels a pending "now" from curl's timer: the caller is about to act on the timeout itself. */
void curl_event_cancel_defer(struct curl_event *ce);
