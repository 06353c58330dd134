/* The buffer wipes what it drops: valgrind and ASan cannot see a missing
 * wipe, so this test looks at the bytes themselves. Linked with
 * -Wl,--wrap=free: every free() in buffer.c goes through wrapped_free, which
 * checks that the first `expect_zero` bytes of the block are zero before it
 * is released. buffer_clear keeps its block, so it is read directly. */
#include "buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void __real_free(void *p);
void __wrap_free(void *p);

static const char SECRET[] = "mf_live_SecretKeyMaterial0123456789abcdef";
static const void *watched; /* the block whose release is checked */
static size_t expect_zero;
static int frees_checked, failures;

static void fail(const char *what) {
  fprintf(stderr, "buffer_wipe_test: FAIL: %s\n", what);
  failures++;
}

static int all_zero(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

void __wrap_free(void *p) {
  if (p && p == watched) {
    frees_checked++;
    if (!all_zero(p, expect_zero)) fail("a released block still holds its bytes");
    watched = NULL;
  }
  __real_free(p);
}

static void fill(buffer *b) {
  if (moltflow_buffer_append(b, SECRET, sizeof SECRET - 1)) {
    fail("buffer_append: out of memory");
    exit(1);
  }
}

int main(void) {
  /* buffer_free: the whole content is zero when the block goes back */
  buffer b = {0};
  fill(&b);
  watched = b.data;
  expect_zero = b.len;
  moltflow_buffer_free(&b);
  if (frees_checked != 1) fail("buffer_free released no block");
  if (b.data || b.len || b.cap) fail("buffer_free left the buffer non-empty");

  /* buffer_clear: the block is kept, its old bytes are zero */
  fill(&b);
  size_t n = b.len;
  moltflow_buffer_clear(&b);
  if (b.len != 0) fail("buffer_clear kept the length");
  if (!all_zero(b.data, n)) fail("buffer_clear left the old bytes");

  /* growth: the old, smaller block is wiped before it is released */
  fill(&b);
  watched = b.data;
  expect_zero = b.len;
  char big[4096];
  memset(big, 'x', sizeof big);
  if (moltflow_buffer_append(&b, big, sizeof big)) fail("buffer_append: out of memory");
  if (frees_checked != 2) fail("growing did not release the old block");
  if (memcmp(b.data, SECRET, sizeof SECRET - 1)) fail("growing lost the content");
  watched = b.data;
  expect_zero = b.len;
  moltflow_buffer_free(&b);
  if (frees_checked != 3) fail("buffer_free released no block after growth");

  if (failures) return 1;
  printf("buffer_wipe_test: ok (%d released blocks and one cleared block checked)\n", frees_checked);
  return 0;
}
