/* A growable byte buffer whose old contents are wiped whenever they are
 * dropped: request and response bodies carry passwords, tokens and raw keys. */
#ifndef MOLTFLOW_BUFFER_H
#define MOLTFLOW_BUFFER_H

#include <stddef.h>

typedef struct {
  char *data;
  size_t len, cap;
} buffer;

int moltflow_buffer_reserve(buffer *b, size_t extra); /* 0 or -1 when out of memory */
int moltflow_buffer_append(buffer *b, const void *p, size_t n);
int moltflow_buffer_putc(buffer *b, char c);
int moltflow_buffer_puts(buffer *b, const char *s);
/* Terminate with NUL without counting it in len. */
int moltflow_buffer_cstr(buffer *b);
void moltflow_buffer_clear(buffer *b); /* wipe, keep capacity */
void moltflow_buffer_free(buffer *b);  /* wipe and release */
void moltflow_buffer_wipe(void *p, size_t n);

#endif
