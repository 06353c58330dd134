/* Layer 3. The libcurl transport, blocking and non-blocking, on one loop's
 * multi handle (loop.h), with easy handles and buffers from a pool that the
 * loop keeps for all its clients: a client's handle holds only options. It knows requests (layer 2), never the client: options and the
 * credential come in as parameters. No Lua: results come back as http_result
 * for the client to push. */
#ifndef MOLTFLOW_HTTP_H
#define MOLTFLOW_HTTP_H

#include <stddef.h>

#include "buffer.h"
#include "loop.h"
#include "request.h"

typedef struct http http;

typedef struct {
  long timeout_ms, connect_timeout_ms;
  size_t max_response_bytes;
  int http1_only; /* http_version = "1.1": no HTTP/2 */
  int insecure_http; /* plain http:// may leave the machine (else its first hop must be loopback) */
  /* owned by the caller, who frees the http handle before them */
  const char *user_agent, *ca_file, *proxy;
} http_options;

/* What a transfer ended with. The pointers are the transfer's, which stays
 * out of the loop's pool until moltflow_http_result_clear: call it once the
 * result was read (it wipes the body, which may hold tokens or a raw key). */
typedef struct {
  long status;              /* the HTTP status when kind is NULL */
  const char *headers, *body;
  size_t headers_len, body_len;
  const char *kind;         /* NULL for an HTTP answer, else "network", "timeout", "too_large" */
  const char *message;      /* with kind */
  int connect_failed;       /* certainly never reached the server: safe to retry */
  void *transfer;           /* held until cleared; NULL when none ran */
} http_result;

void moltflow_http_global_init(void);
const char *moltflow_http_version(void); /* libcurl's */
/* NULL when libcurl fails; the handle holds a reference to lp, and every
 * transfer runs on lp's multi handle. */
http *moltflow_http_new(const http_options *o, moltflow_loop *lp);
void moltflow_http_free(http *h); /* stops what is running, detaching the requests */

/* Blocking: performs r with the credential's header, driving the loop's
 * other transfers meanwhile. */
void moltflow_http_perform(http *h, const request *r, credential cred, http_result *out);
/* Non-blocking: 0 once r runs on h, else -1 with the failure in out. While
 * it runs, r->runner is h and r->stop cancels it (r's finaliser calls it). */
int moltflow_http_start(http *h, request *r, credential cred, http_result *out);
/* The request a finished job of the loop ran (moltflow_loop_next_done). */
const request *moltflow_http_job_request(const moltflow_job *job);
/* 0 with r's result once it finished on h (its transfer is then free), 1
 * while it still runs, -1 when r does not run on h. */
int moltflow_http_finish(http *h, request *r, http_result *out);
/* Stops r and frees its transfer: 0, or -1 when r does not run on h. */
int moltflow_http_cancel(http *h, request *r);
int moltflow_http_running(const http *h);
/* The loop's pool, for diagnostics: how many transfers it holds, how many
 * of them are in use, how many hold a client's credential in their header
 * list (until that client is freed), and the https origins it knows to
 * speak HTTP/1.1 only (*origins: valid until the next call on the loop). */
typedef struct {
  int transfers, in_use, credentials, nhttp1;
  const char *const *http1_origins;
} http_pool_stats;
void moltflow_http_pool_stats(const moltflow_loop *lp, http_pool_stats *out);
void moltflow_http_result_clear(http_result *res);

#endif
