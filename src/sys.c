/* core.sys: private files and directories, terminal prompts, ownership
 * checks and advisory locks, so that library code and the command line never
 * shell out. A leaf module: POSIX calls only, no client, no libcurl.
 *
 * Failures return nil, a message naming the path, and the errno. */

/* glibc declares F_OFD_SETLK (open-file-description locks) only under
 * _GNU_SOURCE. Without them, F_SETLK locks belong to the process: two handles
 * in one process would not exclude each other, and closing any descriptor of
 * the file would drop both. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "compat.h"
#include "sys.h"

#ifdef F_OFD_SETLK
#define SYS_SETLK F_OFD_SETLK
#else
#define SYS_SETLK F_SETLK
#endif

#define LOCK_MT "moltflow.sys.lock"

static int push_failure(lua_State *L, const char *what, const char *path, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", what, path, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

static const char *check_path(lua_State *L, int idx, const char *fn) {
  size_t n;
  const char *path = lua_tolstring(L, idx, &n);
  if (!path || n == 0 || strlen(path) != n)
    luaL_error(L, "moltflow.sys.%s: 'path' must be a non-empty string without NUL bytes", fn);
  return path;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Eight unpredictable bytes as hex: a temporary name nobody can pre-create
 * on purpose (O_EXCL already makes a collision harmless). */
static void random_suffix(char out[17]) {
  unsigned char bytes[8];
  if (getentropy(bytes, sizeof bytes) != 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t v = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
    memcpy(bytes, &v, sizeof bytes);
  }
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < sizeof bytes; i++) {
    out[2 * i] = hex[bytes[i] >> 4];
    out[2 * i + 1] = hex[bytes[i] & 15];
  }
  out[16] = '\0';
}

/* The directory part of path ("." when there is none), in dir. */
static int dir_of(const char *path, buffer *dir) {
  const char *slash = strrchr(path, '/');
  if (!slash) return moltflow_buffer_puts(dir, ".");
  if (slash == path) return moltflow_buffer_puts(dir, "/");
  return moltflow_buffer_append(dir, path, (size_t)(slash - path)) || moltflow_buffer_cstr(dir);
}

/* sys.write_private(path, data): true, or nil, err, errno. Writes data to a
 * new mode-0600 file beside path (O_EXCL, unpredictable name), syncs it and
 * renames it over path, then syncs the directory. On any failure the
 * temporary file is removed and the old file stays as it was. */
static int l_write_private(lua_State *L) {
  const char *path = check_path(L, 1, "write_private");
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  buffer dir = {NULL, 0, 0}, tmp = {NULL, 0, 0};
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  int fd = -1, err = 0;
  const char *what = "cannot create a temporary file beside";
  if (dir_of(path, &dir) || moltflow_buffer_cstr(&dir)) {
    err = ENOMEM;
    goto done;
  }
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
    char suffix[17];
    random_suffix(suffix);
    moltflow_buffer_clear(&tmp);
    if ((slash && moltflow_buffer_append(&tmp, path, (size_t)(base - path))) || moltflow_buffer_puts(&tmp, ".") ||
        moltflow_buffer_puts(&tmp, base) || moltflow_buffer_puts(&tmp, ".") || moltflow_buffer_puts(&tmp, suffix) ||
        moltflow_buffer_puts(&tmp, ".tmp") || moltflow_buffer_cstr(&tmp)) {
      err = ENOMEM;
      goto done;
    }
    fd = open(tmp.data, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    err = errno;
    goto done;
  }
  what = "cannot write";
  /* 0600 whatever the umask, which could also have taken the owner's bits */
  if (fchmod(fd, 0600) || write_all(fd, data, n) || fsync(fd)) {
    err = errno;
    close(fd);
    unlink(tmp.data);
    goto done;
  }
  if (close(fd)) {
    err = errno;
    unlink(tmp.data);
    goto done;
  }
  if (rename(tmp.data, path)) {
    err = errno;
    what = "cannot replace";
    unlink(tmp.data);
    goto done;
  }
  /* the rename is durable once the directory is synced; file systems that
   * cannot sync a directory say EINVAL, which changes nothing here */
  int dfd = open(dir.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync(dfd) && errno != EINVAL) {
      err = errno;
      what = "cannot sync the directory of";
    }
    close(dfd);
  }
done:
  moltflow_buffer_free(&dir);
  moltflow_buffer_free(&tmp);
  if (err) return push_failure(L, what, path, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* Owned by this user and a directory; errno-style code otherwise (EPERM:
 * another user's; EACCES: group or others may write to it, *mode set). */
static int check_own_dir(const char *path, mode_t *mode) {
  struct stat st;
  if (stat(path, &st)) return errno;
  if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  if (st.st_uid != geteuid()) return EPERM;
  *mode = st.st_mode & 07777;
  if (st.st_mode & (S_IWGRP | S_IWOTH)) return EACCES;
  return 0;
}

/* sys.write_pipe(path, data): true, or nil, err, errno. Writes data into
 * the named pipe at path in place (a reader on its other end, as with
 * `export -o fifo`): opened without following a symbolic link and without
 * becoming the controlling terminal, then checked to be a pipe, so nothing
 * else is written to or replaced. Blocks until a reader opens the pipe. */
static int l_write_pipe(lua_State *L) {
  const char *path = check_path(L, 1, "write_pipe");
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  int fd = open(path, O_WRONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return push_failure(L, "cannot open", path, errno);
  struct stat st;
  if (fstat(fd, &st) || !S_ISFIFO(st.st_mode)) {
    close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "refusing %s: not a named pipe", path);
    lua_pushinteger(L, EINVAL);
    return 3;
  }
  int err = write_all(fd, data, n) ? errno : 0;
  if (close(fd) && !err) err = errno;
  if (err) return push_failure(L, "cannot write", path, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* sys.mkdir_private(path): true, or nil, err, errno. Like mkdir -p with
 * mode 0700 for what it creates; refuses a final directory that exists but
 * belongs to another user, or that group or others may write to (they could
 * plant or replace the files the caller then trusts). */
static int l_mkdir_private(lua_State *L) {
  const char *path = check_path(L, 1, "mkdir_private");
  buffer copy = {NULL, 0, 0};
  int err = 0;
  if (moltflow_buffer_puts(&copy, path) || moltflow_buffer_cstr(&copy)) return push_failure(L, "cannot create", path, ENOMEM);
  char *p = copy.data;
  /* the parents, one component at a time */
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0700) && errno != EEXIST) err = errno;
    *s = '/';
    if (err) break;
  }
  moltflow_buffer_free(&copy);
  if (err) return push_failure(L, "cannot create", path, err);
  if (mkdir(path, 0700) == 0) {
    if (chmod(path, 0700)) return push_failure(L, "cannot set the mode of", path, errno);
  } else if (errno != EEXIST) {
    return push_failure(L, "cannot create", path, errno);
  }
  mode_t mode = 0;
  err = check_own_dir(path, &mode);
  if (err == EPERM) {
    lua_pushnil(L);
    lua_pushfstring(L, "refusing %s: the directory belongs to another user", path);
    lua_pushinteger(L, EPERM);
    return 3;
  }
  if (err == EACCES) {
    char octal[8];
    snprintf(octal, sizeof octal, "%03o", (unsigned)mode);
    lua_pushnil(L);
    lua_pushfstring(L, "refusing %s: group or others may write to the directory (mode %s); chmod go-w it", path,
                    octal);
    lua_pushinteger(L, EACCES);
    return 3;
  }
  if (err) return push_failure(L, "cannot use", path, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* sys.isatty(fd): whether the descriptor is a terminal. */
static int l_isatty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  lua_pushboolean(L, fd >= 0 && fd <= 1 << 20 && isatty((int)fd));
  return 1;
}

/* The signals a prompt turns into an answer: the terminal is restored before
 * the caller decides what to do (exit 128 + signal, as shells expect). */
static const int PROMPT_SIGNALS[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP};
#define N_PROMPT_SIGNALS (sizeof PROMPT_SIGNALS / sizeof PROMPT_SIGNALS[0])

/* A pending signal of the held set, consumed; 0 when none. */
static int take_signal(const sigset_t *held) {
  sigset_t pending;
  if (sigpending(&pending)) return 0;
  for (size_t i = 0; i < N_PROMPT_SIGNALS; i++) {
    if (sigismember(held, PROMPT_SIGNALS[i]) && sigismember(&pending, PROMPT_SIGNALS[i])) {
      sigset_t one;
      int sig;
      sigemptyset(&one);
      sigaddset(&one, PROMPT_SIGNALS[i]);
      sigwait(&one, &sig);
      return sig;
    }
  }
  return 0;
}

enum { READ_OK, READ_EOF, READ_SIGNAL, READ_ERROR, READ_TOO_LONG };

/* Whether sig is pending (held). */
static int is_pending(int sig) {
  sigset_t pending;
  return sigpending(&pending) == 0 && sigismember(&pending, sig) == 1;
}

/* Ctrl-Z (SIGTSTP, held while echo is off): the terminal is restored and the
 * signal let through, so the process stops (or the host's own handler runs)
 * with echo on for the shell; once continued (SIGCONT: this returns), the
 * echo is hidden again and the prompt shown again (TCSAFLUSH dropped what
 * was typed before). In the background after `bg`, hiding the echo stops the
 * process again (SIGTTOU) until `fg`. No handler, so no global state: the
 * read loop polls for the held signal as it does for the others. 0, or -1
 * with errno. */
static int stop_at_prompt(int fd, const struct termios *saved, const struct termios *quiet, const char *prompt) {
  sigset_t tstp;
  sigemptyset(&tstp);
  sigaddset(&tstp, SIGTSTP);
  tcsetattr(fd, TCSAFLUSH, saved);
  write_all(fd, "\n", 1); /* the shell's next line starts on a line of its own */
  sigprocmask(SIG_UNBLOCK, &tstp, NULL); /* delivered here: stopped until SIGCONT */
  sigprocmask(SIG_BLOCK, &tstp, NULL);
  if (tcsetattr(fd, TCSAFLUSH, quiet)) return -1;
  return write_all(fd, prompt, strlen(prompt));
}

/* sys.read_tty(prompt, echo): the line typed on the controlling terminal
 * (without its newline), or nil, err[, signal]. With echo false the terminal
 * does not show it. SIGINT, SIGQUIT, SIGTERM and SIGHUP are held while it
 * waits (no handler, so no global state; a signal the process ignores stays
 * ignored): one of them ends the read, the terminal is restored, and the
 * answer is nil, "interrupted", the signal number. With echo off SIGTSTP is
 * held too, and Ctrl-Z stops the process with the terminal restored
 * (stop_at_prompt). The line's buffer is wiped. */
static int l_read_tty(lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "");
  int echo = lua_toboolean(L, 2);
  int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return push_failure(L, "cannot open", "/dev/tty", errno);

  struct termios saved, quiet;
  int restore = 0;
  if (!echo) {
    if (tcgetattr(fd, &saved)) {
      int e = errno;
      close(fd);
      return push_failure(L, "cannot turn off echo on", "/dev/tty", e);
    }
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
  }
  /* a blocked signal stays pending even when ignored: hold only the others */
  sigset_t held, old_mask;
  sigemptyset(&held);
  for (size_t i = 0; i < N_PROMPT_SIGNALS; i++) {
    struct sigaction now;
    if (sigaction(PROMPT_SIGNALS[i], NULL, &now) == 0 && now.sa_handler != SIG_IGN)
      sigaddset(&held, PROMPT_SIGNALS[i]);
  }
  sigset_t blocked = held;
  struct sigaction tstp_now;
  int hold_tstp = !echo && sigaction(SIGTSTP, NULL, &tstp_now) == 0 && tstp_now.sa_handler != SIG_IGN;
  if (hold_tstp) sigaddset(&blocked, SIGTSTP);
  sigprocmask(SIG_BLOCK, &blocked, &old_mask);
  /* already held by the caller: it is the caller's to deliver */
  if (hold_tstp && sigismember(&old_mask, SIGTSTP) == 1) hold_tstp = 0;

  char line[4096];
  size_t len = 0;
  int result = READ_ERROR, err = 0, sig = 0;
  if (!echo) {
    if (tcsetattr(fd, TCSAFLUSH, &quiet)) {
      err = errno;
      goto restore_terminal;
    }
    restore = 1;
  }
  if (write_all(fd, prompt, strlen(prompt))) {
    err = errno;
    goto restore_terminal;
  }
  for (;;) {
    if ((sig = take_signal(&held))) {
      result = READ_SIGNAL;
      break;
    }
    if (hold_tstp && is_pending(SIGTSTP)) {
      len = 0; /* what was read before is dropped with the rest of the line */
      if (stop_at_prompt(fd, &saved, &quiet, prompt)) {
        err = errno;
        break;
      }
      continue;
    }
    /* held signals cannot interrupt a blocking read: wake up to look */
    struct pollfd pfd = {fd, POLLIN, 0};
    int r = poll(&pfd, 1, 100);
    if (r < 0 && errno != EINTR) {
      err = errno;
      break;
    }
    if (r <= 0) continue;
    ssize_t k = read(fd, line + len, sizeof line - len);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      err = errno;
      break;
    }
    if (k == 0) { /* Ctrl-D: end of input, or the end of a line without newline */
      result = len ? READ_OK : READ_EOF;
      break;
    }
    char *nl = memchr(line + len, '\n', (size_t)k);
    len += (size_t)k;
    if (nl) {
      len = (size_t)(nl - line);
      result = READ_OK;
      break;
    }
    if (len == sizeof line) {
      result = READ_TOO_LONG;
      break;
    }
  }
  if (len > 0 && line[len - 1] == '\r') len--;
  if (!echo && result != READ_ERROR) write_all(fd, "\n", 1); /* the newline echo did not show */

restore_terminal:
  if (restore) tcsetattr(fd, TCSAFLUSH, &saved);
  close(fd);
  /* a signal that came with the last keystroke still counts */
  if (!sig && result == READ_OK) sig = take_signal(&held);
  sigprocmask(SIG_SETMASK, &old_mask, NULL);

  int nret;
  if (sig) {
    lua_pushnil(L);
    lua_pushliteral(L, "interrupted");
    lua_pushinteger(L, sig);
    nret = 3;
  } else if (result == READ_OK) {
    lua_pushlstring(L, line, len);
    nret = 1;
  } else if (result == READ_EOF) {
    lua_pushnil(L);
    lua_pushliteral(L, "end of input");
    nret = 2;
  } else if (result == READ_TOO_LONG) {
    lua_pushnil(L);
    lua_pushliteral(L, "the line is too long");
    nret = 2;
  } else {
    nret = push_failure(L, "cannot read from", "/dev/tty", err);
  }
  moltflow_buffer_wipe(line, sizeof line);
  return nret;
}

/* sys.stat(path): {mode = permission bits, uid =, owned = whether this user
 * owns it, kind = "file"|"directory"|"link"|"other", size =}, or nil, err,
 * errno (sys.ENOENT when it does not exist). Follows symbolic links unless
 * nofollow. */
static int l_stat(lua_State *L) {
  const char *path = check_path(L, 1, "stat");
  int nofollow = lua_toboolean(L, 2);
  struct stat st;
  if (nofollow ? lstat(path, &st) : stat(path, &st)) return push_failure(L, "cannot stat", path, errno);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)st.st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushboolean(L, st.st_uid == geteuid());
  lua_setfield(L, -2, "owned");
  lua_pushstring(L, S_ISREG(st.st_mode)    ? "file"
                    : S_ISDIR(st.st_mode)  ? "directory"
                    : S_ISLNK(st.st_mode)  ? "link"
                    : S_ISFIFO(st.st_mode) ? "fifo"
                                           : "other");
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  return 1;
}

typedef struct {
  int fd;
} sys_lock;

static void lock_release(sys_lock *lk) {
  if (lk->fd < 0) return;
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  fcntl(lk->fd, SYS_SETLK, &fl);
  close(lk->fd);
  lk->fd = -1;
}

/* lock:unlock() (also its finaliser): releases it; idempotent. */
static int l_lock_unlock(lua_State *L) {
  lock_release(luaL_checkudata(L, 1, LOCK_MT));
  return 0;
}

static int l_lock_tostring(lua_State *L) {
  sys_lock *lk = luaL_checkudata(L, 1, LOCK_MT);
  lua_pushstring(L, lk->fd >= 0 ? "moltflow.sys.lock (held)" : "moltflow.sys.lock (released)");
  return 1;
}

/* sys.try_lock(path): a lock handle, or false when another holder has it, or
 * nil, err, errno. An exclusive fcntl lock on path (opened O_NOFOLLOW, created
 * 0600, which must be a regular file this user owns), without waiting. The
 * kernel drops it when the holder exits, so a killed process leaves no stale
 * lock. */
static int l_try_lock(lua_State *L) {
  const char *path = check_path(L, 1, "try_lock");
  sys_lock *lk = lua_newuserdata(L, sizeof *lk);
  lk->fd = -1;
  luaL_getmetatable(L, LOCK_MT);
  lua_setmetatable(L, -2);
  int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return push_failure(L, "cannot open the lock file", path, errno);
  struct stat st;
  int e = fstat(fd, &st) ? errno : 0;
  if (e || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    close(fd);
    if (e) return push_failure(L, "cannot use the lock file", path, e);
    lua_pushnil(L);
    lua_pushfstring(L, "refusing the lock file %s: not a regular file of this user", path);
    lua_pushinteger(L, EPERM);
    return 3;
  }
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, SYS_SETLK, &fl)) {
    int e = errno;
    close(fd);
    if (e == EAGAIN || e == EACCES) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return push_failure(L, "cannot lock", path, e);
  }
  lk->fd = fd;
  return 1;
}

void moltflow_sys_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"write_private", l_write_private},
      {"write_pipe", l_write_pipe},
      {"mkdir_private", l_mkdir_private},
      {"isatty", l_isatty},
      {"read_tty", l_read_tty},
      {"stat", l_stat},
      {"try_lock", l_try_lock},
      {NULL, NULL},
  };
  static const luaL_Reg lock_methods[] = {{"unlock", l_lock_unlock}, {NULL, NULL}};
  luaL_newmetatable(L, LOCK_MT);
  lua_newtable(L);
  luaL_setfuncs(L, lock_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_lock_unlock);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_lock_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_pushinteger(L, ENOENT);
  lua_setfield(L, -2, "ENOENT");
  lua_setfield(L, -2, "sys");
}
