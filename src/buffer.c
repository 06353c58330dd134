#include "buffer.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

void moltflow_buffer_wipe(void *p, size_t n) {
  if (p && n) OPENSSL_cleanse(p, n);
}

int moltflow_buffer_reserve(buffer *b, size_t extra) {
  if (b->cap - b->len > extra) return 0; /* room for a trailing NUL too */
  size_t need = b->len + extra + 1, cap = b->cap ? b->cap : 256;
  while (cap < need) {
    if (cap > ((size_t)-1) / 2) return -1;
    cap *= 2;
  }
  /* Not realloc: the old block may hold a secret and must be wiped first. */
  char *p = malloc(cap);
  if (!p) return -1;
  if (b->data) {
    memcpy(p, b->data, b->len);
    moltflow_buffer_wipe(b->data, b->len);
    free(b->data);
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

int moltflow_buffer_append(buffer *b, const void *p, size_t n) {
  if (moltflow_buffer_reserve(b, n)) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int moltflow_buffer_putc(buffer *b, char c) { return moltflow_buffer_append(b, &c, 1); }

int moltflow_buffer_puts(buffer *b, const char *s) { return moltflow_buffer_append(b, s, strlen(s)); }

int moltflow_buffer_cstr(buffer *b) {
  if (moltflow_buffer_reserve(b, 0)) return -1;
  b->data[b->len] = '\0';
  return 0;
}

void moltflow_buffer_clear(buffer *b) {
  moltflow_buffer_wipe(b->data, b->len);
  b->len = 0;
}

void moltflow_buffer_free(buffer *b) {
  if (b->data) {
    moltflow_buffer_wipe(b->data, b->len);
    free(b->data);
  }
  b->data = NULL;
  b->len = b->cap = 0;
}
