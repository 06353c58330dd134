/* Layer 3: a loop, one curl multi handle and one share handle for every
 * client attached to it (see loop.h). libcurl only: its callbacks record
 * into the loop and never call Lua, so no Lua error can longjmp across
 * libcurl. */
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "loop.h"

struct moltflow_loop {
  int refs;
  CURLM *multi;
  CURLSH *share;
  int running;                 /* jobs on the multi */
  long keep;                   /* connections kept open: CURLMOPT_MAXCONNECTS */
  moltflow_job **queue;        /* finished, not yet collected */
  int nqueue, capqueue;
  int watching;
  moltflow_socket_event *events; /* socket changes not yet told */
  int nevents, capevents;
  int timer_pending;
  long timer_ms;
  void *pool; /* the transport's transfers (http.c), freed before the multi handle */
  void (*free_pool)(void *pool);
};

static int grow(void **p, int *cap, int need, size_t size) {
  if (need <= *cap) return 0;
  int n = *cap ? *cap * 2 : 8;
  while (n < need) n *= 2;
  void *q = realloc(*p, (size_t)n * size);
  if (!q) return -1;
  *p = q;
  *cap = n;
  return 0;
}

moltflow_loop *moltflow_loop_new(long pool_size) {
  moltflow_loop *lp = calloc(1, sizeof *lp);
  if (!lp) return NULL;
  lp->refs = 1;
  lp->multi = curl_multi_init();
  lp->share = curl_share_init();
  int rc = !lp->multi || !lp->share;
  if (!rc) {
    /* Connections need no share: every transfer of the loop, blocking or
     * not, runs on its multi handle, whose connection cache they all use
     * (and whose limits below then hold for all of them). TLS sessions are
     * kept per easy handle unless shared. No lock functions: a loop
     * belongs to one Lua state, used by one thread at a time. */
    rc |= (int)curl_share_setopt(lp->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    rc |= (int)curl_share_setopt(lp->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    /* the pool: connections kept open, pool_size or, when more calls ran
     * at once, that many (a smaller cache would close connections a
     * batch's next calls are about to reuse). Not a cap on calls in
     * flight: a batch's concurrency says how many run at once. */
    lp->keep = pool_size;
    rc |= (int)curl_multi_setopt(lp->multi, CURLMOPT_MAXCONNECTS, pool_size);
    rc |= (int)curl_multi_setopt(lp->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  }
  if (rc) {
    lp->refs = 0;
    moltflow_loop_release(lp); /* frees what was made */
    return NULL;
  }
  return lp;
}

void moltflow_loop_retain(moltflow_loop *lp) { lp->refs++; }

void moltflow_loop_release(moltflow_loop *lp) {
  if (!lp || --lp->refs > 0) return;
  if (lp->free_pool) lp->free_pool(lp->pool);
  if (lp->multi) curl_multi_cleanup(lp->multi);
  if (lp->share) curl_share_cleanup(lp->share);
  free(lp->queue);
  free(lp->events);
  free(lp);
}

CURLSH *moltflow_loop_share(const moltflow_loop *lp) { return lp->share; }

void *moltflow_loop_pool(const moltflow_loop *lp) { return lp->pool; }

void moltflow_loop_set_pool(moltflow_loop *lp, void *pool, void (*free_pool)(void *pool)) {
  lp->pool = pool;
  lp->free_pool = free_pool;
}

int moltflow_loop_running(const moltflow_loop *lp) { return lp->running; }

int moltflow_loop_add(moltflow_loop *lp, moltflow_job *job) {
  job->done = job->queued = 0;
  /* room to queue it when it finishes: collect() never allocates */
  if (grow((void **)&lp->queue, &lp->capqueue, lp->running + lp->nqueue + 1, sizeof *lp->queue)) return -1;
  if (curl_multi_add_handle(lp->multi, job->easy) != CURLM_OK) return -1;
  job->added = 1;
  if (++lp->running > lp->keep && curl_multi_setopt(lp->multi, CURLMOPT_MAXCONNECTS, (long)lp->running) == CURLM_OK)
    lp->keep = lp->running;
  return 0;
}

static void unqueue(moltflow_loop *lp, moltflow_job *job) {
  for (int i = 0; i < lp->nqueue; i++)
    if (lp->queue[i] == job) {
      memmove(lp->queue + i, lp->queue + i + 1, (size_t)(lp->nqueue - i - 1) * sizeof *lp->queue);
      lp->nqueue--;
      break;
    }
  job->queued = 0;
}

void moltflow_loop_remove(moltflow_loop *lp, moltflow_job *job) {
  if (job->added) {
    curl_multi_remove_handle(lp->multi, job->easy);
    job->added = 0;
    lp->running--;
  }
  if (job->queued) unqueue(lp, job);
}

/* Takes the finished transfers off the multi handle; queues them unless a
 * blocking call waits for them. */
static void collect(moltflow_loop *lp) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(lp->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    char *priv = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
    moltflow_job *job = (moltflow_job *)(void *)priv;
    if (!job || !job->added) continue;
    job->result = m->data.result;
    curl_multi_remove_handle(lp->multi, job->easy);
    job->added = 0;
    job->done = 1;
    lp->running--;
    if (job->blocking) continue;
    lp->queue[lp->nqueue++] = job; /* room made when it was added */
    job->queued = 1;
  }
}

static int wait_ms(double timeout) {
  /* round down: waiting a little less is fine, a little longer is not */
  return timeout >= 86400 ? 86400 * 1000 : timeout > 0 ? (int)(timeout * 1000) : 0;
}

void moltflow_loop_drive(moltflow_loop *lp, double timeout) {
  int still;
  curl_multi_perform(lp->multi, &still);
  collect(lp);
  int ms = wait_ms(timeout);
  if (lp->nqueue || !lp->running || ms <= 0) return;
  curl_multi_poll(lp->multi, NULL, 0, ms, NULL);
  curl_multi_perform(lp->multi, &still);
  collect(lp);
}

CURLcode moltflow_loop_run(moltflow_loop *lp, moltflow_job *job) {
  job->blocking = 1;
  if (moltflow_loop_add(lp, job)) {
    job->blocking = 0;
    return CURLE_FAILED_INIT;
  }
  int still;
  for (;;) {
    curl_multi_perform(lp->multi, &still);
    collect(lp);
    if (job->done) break;
    /* libcurl caps the wait at its own next timeout */
    curl_multi_poll(lp->multi, NULL, 0, 1000, NULL);
  }
  job->blocking = 0;
  return job->result;
}

void moltflow_loop_action(moltflow_loop *lp, curl_socket_t fd, int ev_bitmask) {
  int still;
  curl_multi_socket_action(lp->multi, fd, ev_bitmask, &still);
  collect(lp);
}

moltflow_job *moltflow_loop_next_done(moltflow_loop *lp) {
  if (!lp->nqueue) return NULL;
  moltflow_job *job = lp->queue[0];
  unqueue(lp, job);
  return job;
}

/* ------------------------------------------------------ event-driven */

static const char *const EVENT_NAMES[] = {"remove", "in", "out", "inout", "remove"};

static int record_event(moltflow_loop *lp, curl_socket_t fd, int what) {
  if (grow((void **)&lp->events, &lp->capevents, lp->nevents + 1, sizeof *lp->events)) return -1;
  lp->events[lp->nevents].fd = fd;
  lp->events[lp->nevents].what = EVENT_NAMES[what];
  lp->nevents++;
  return 0;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *socketp) {
  (void)easy;
  (void)socketp;
  moltflow_loop *lp = ud;
  if (what < CURL_POLL_NONE || what > CURL_POLL_REMOVE) return 0;
  if (what == CURL_POLL_NONE) return 0;
  if (what == CURL_POLL_REMOVE) {
    /* a socket opened and closed before the host heard of it: the host
     * must not watch a closed descriptor, so only the removal is told */
    int kept = 0;
    for (int i = 0; i < lp->nevents; i++)
      if (lp->events[i].fd != fd) lp->events[kept++] = lp->events[i];
    lp->nevents = kept;
  }
  return record_event(lp, fd, what);
}

static int event_recorded(const moltflow_loop *lp, curl_socket_t fd) {
  for (int i = 0; i < lp->nevents; i++)
    if (lp->events[i].fd == fd) return 1;
  return 0;
}

/* The sockets and the timer of the transfers already running, for a host
 * that starts watching (again) while they wait. libcurl reports a socket
 * only when what it waits for changes, and acts only on sockets it reported
 * through the callback: a socket of a transfer started while the loop was
 * polled was never reported, one reported to a host since detached will not
 * be again, and a call waiting for its answer would stall until its timeout.
 * curl_multi_socket_all (deprecated, yet the one call that makes libcurl
 * report every transfer's sockets through the callback) reports the first
 * kind; curl_multi_fdset lists every socket libcurl waits on now, for the
 * second (those below FD_SETSIZE: a host with more descriptors open still
 * gets the timer, and libcurl's next change of each socket). */
static int tell_live(moltflow_loop *lp) {
  int still, rc = 0;
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
  curl_multi_socket_all(lp->multi, &still);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
  collect(lp); /* it may have finished some */
  fd_set in, out, err;
  int maxfd = -1;
  FD_ZERO(&in);
  FD_ZERO(&out);
  FD_ZERO(&err);
  if (curl_multi_fdset(lp->multi, &in, &out, &err, &maxfd) != CURLM_OK) maxfd = -1;
  for (int fd = 0; fd <= maxfd && !rc; fd++) {
    int what = (FD_ISSET(fd, &in) ? CURL_POLL_IN : 0) | (FD_ISSET(fd, &out) ? CURL_POLL_OUT : 0);
    if (what && !event_recorded(lp, (curl_socket_t)fd)) rc = record_event(lp, (curl_socket_t)fd, what);
  }
  /* the timer libcurl wants now; 0 (act at once) when it cannot say or a
   * transfer already finished */
  long ms = 0;
  if (lp->nqueue || curl_multi_timeout(lp->multi, &ms) != CURLM_OK) ms = 0; /* finished ones: at once */
  lp->timer_pending = 1;
  lp->timer_ms = ms;
  return rc;
}

static int on_timer(CURLM *multi, long timeout_ms, void *ud) {
  (void)multi;
  moltflow_loop *lp = ud;
  lp->timer_pending = 1;
  lp->timer_ms = timeout_ms;
  return 0;
}

int moltflow_loop_watch(moltflow_loop *lp, int on) {
  int rc = 0;
  rc |= (int)curl_multi_setopt(lp->multi, CURLMOPT_SOCKETFUNCTION, on ? on_socket : NULL);
  rc |= (int)curl_multi_setopt(lp->multi, CURLMOPT_SOCKETDATA, on ? (void *)lp : NULL);
  rc |= (int)curl_multi_setopt(lp->multi, CURLMOPT_TIMERFUNCTION, on ? on_timer : NULL);
  rc |= (int)curl_multi_setopt(lp->multi, CURLMOPT_TIMERDATA, on ? (void *)lp : NULL);
  lp->watching = on;
  lp->nevents = 0;
  lp->timer_pending = 0;
  if (on && lp->running) rc |= tell_live(lp);
  return rc ? -1 : 0;
}

int moltflow_loop_socket_events(moltflow_loop *lp, moltflow_socket_event *out, int max) {
  int n = lp->nevents < max ? lp->nevents : max;
  if (n <= 0) return 0; /* events may be NULL: nothing was ever recorded */
  memcpy(out, lp->events, (size_t)n * sizeof *out);
  memmove(lp->events, lp->events + n, (size_t)(lp->nevents - n) * sizeof *out);
  lp->nevents -= n;
  return n;
}

int moltflow_loop_timer_pending(moltflow_loop *lp, long *timer_ms) {
  if (!lp->timer_pending) return 0;
  lp->timer_pending = 0;
  *timer_ms = lp->timer_ms;
  return 1;
}
