/* Layer 3. A loop: one curl multi handle and one curl share handle (TLS
 * sessions, DNS) that the transfers of every client attached to it run on,
 * blocking or not, so they share connections, TLS sessions and DNS. libcurl
 * only, no Lua: socket and timer callbacks only record into the loop (the
 * host is told after libcurl returns), finished transfers are queued in it
 * until the binding collects them. One loop belongs to one Lua state: the
 * share is not locked, so a loop is never used by two threads. */
#ifndef MOLTFLOW_LOOP_H
#define MOLTFLOW_LOOP_H

#include <curl/curl.h>

typedef struct moltflow_loop moltflow_loop;

/* One transfer's place on a loop: the first member of its owner's struct
 * (CURLOPT_PRIVATE points to it). */
typedef struct {
  CURL *easy;
  int added;       /* on the multi handle */
  int done;        /* finished, result valid */
  int queued;      /* in the loop's finished queue */
  int blocking;    /* a blocking call waits for it: never queued */
  CURLcode result;
} moltflow_job;

/* A socket change libcurl asked for: what is "in", "out", "inout" or "remove". */
typedef struct {
  curl_socket_t fd;
  const char *what;
} moltflow_socket_event;

moltflow_loop *moltflow_loop_new(long pool_size); /* NULL when libcurl fails */
/* Reference counting: the binding holds one, every http handle on it one. */
void moltflow_loop_retain(moltflow_loop *lp);
void moltflow_loop_release(moltflow_loop *lp);
CURLSH *moltflow_loop_share(const moltflow_loop *lp);
/* The transport's pool of transfers (opaque here), kept by the loop for all
 * its clients and freed by free_pool when the loop is released. */
void *moltflow_loop_pool(const moltflow_loop *lp);
void moltflow_loop_set_pool(moltflow_loop *lp, void *pool, void (*free_pool)(void *pool));

/* 0 once job runs on the loop, else -1. */
int moltflow_loop_add(moltflow_loop *lp, moltflow_job *job);
/* Takes job off the loop and out of the finished queue. */
void moltflow_loop_remove(moltflow_loop *lp, moltflow_job *job);
/* Runs job (added as blocking) until it finished, driving every other
 * transfer meanwhile; those that finish are queued, never lost. */
CURLcode moltflow_loop_run(moltflow_loop *lp, moltflow_job *job);
/* Drives the transfers for at most timeout seconds, waiting only while
 * none has finished. */
void moltflow_loop_drive(moltflow_loop *lp, double timeout);
/* curl_multi_socket_action: fd ready for ev_bitmask (CURL_CSELECT_*), or
 * the timer fired when fd is CURL_SOCKET_TIMEOUT. */
void moltflow_loop_action(moltflow_loop *lp, curl_socket_t fd, int ev_bitmask);
/* The next finished job, taken off the queue, or NULL. */
moltflow_job *moltflow_loop_next_done(moltflow_loop *lp);
int moltflow_loop_running(const moltflow_loop *lp); /* transfers on the multi */

/* Event-driven mode: libcurl's socket and timer callbacks record into the
 * loop from now on (off: back to polling). */
int moltflow_loop_watch(moltflow_loop *lp, int on);
/* The recorded changes, oldest first: returns how many are copied (the
 * rest stay); *timer_ms is set (and 1 returned by timer_pending) when the
 * timer changed. */
int moltflow_loop_socket_events(moltflow_loop *lp, moltflow_socket_event *out, int max);
int moltflow_loop_timer_pending(moltflow_loop *lp, long *timer_ms);

#endif
