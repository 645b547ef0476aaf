/* reqlog.h: the per-request log lines, in anthropic-max-router's formats (-q, -m, default, -V). */
#pragma once

#include <microhttpd.h>

struct request;

/* The start line (default and verbose modes), when a request is sent upstream. */
void reqlog_start(const struct request *req);
/* The closing lines, once the request is over, whatever the way it ended. */
void reqlog_finish(const struct request *req, enum MHD_RequestTerminationCode toe);
