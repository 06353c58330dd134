/* Layer 2. Reading a response: header lines, the decoded body, and the error
 * tables (built here only). No I/O: every transport hands in what it got. */
#ifndef MOLTFLOW_RESPONSE_H
#define MOLTFLOW_RESPONSE_H

#include <stddef.h>
#include <lua.h>

#include "buffer.h"
#include "request.h"

#define ERROR_MT "moltflow.error"
#define RESPONSE_MT "moltflow.response"
#define RESPONSE_RAW_HEADERS "moltflow.response.raw_headers" /* registry: res -> raw header block */

/* core.error_mt, core.new_error, the response class. */
void moltflow_response_open(lua_State *L);
/* Pushes value, res or nil, err; returns 2. scratch holds unescaped strings
 * while the body is decoded. */
int moltflow_response_push(lua_State *L, buffer *scratch, const request *r, long status, const char *headers,
                           size_t hlen, const char *body, size_t blen);
/* Pushes nil, err for a failure before or without an HTTP answer; returns 2. */
int moltflow_response_push_error(lua_State *L, const request *r, const char *kind, const char *message,
                                 int connect_failed);
/* Pushes a lower-case header table parsed from raw header lines. */
void moltflow_response_push_headers(lua_State *L, const char *h, size_t n);
double moltflow_response_retry_after(const char *v, size_t n, double now);

#endif
