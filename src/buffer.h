/* A growable byte buffer whose old contents are wiped whenever they are
 * dropped: request and response bodies carry passwords, tokens and raw keys. */
#ifndef MOLTFLOW_BUFFER_H
#define MOLTFLOW_BUFFER_H

#include <stddef.h>

typedef struct {
  char *data;
  size_t len, cap;
} buffer;

int buffer_reserve(buffer *b, size_t extra); /* 0 or -1 when out of memory */
int buffer_append(buffer *b, const void *p, size_t n);
int buffer_putc(buffer *b, char c);
int buffer_puts(buffer *b, const char *s);
/* Terminate with NUL without counting it in len. */
int buffer_cstr(buffer *b);
void buffer_clear(buffer *b); /* wipe, keep capacity */
void buffer_free(buffer *b);  /* wipe and release */
void buffer_wipe(void *p, size_t n);

#endif
