#!/usr/bin/env python3
"""Runs a command on a new pseudo-terminal and plays a dialogue with it.

argv[1] is JSON: {"argv": [...], "env": {...}, "steps": [{"expect": text} |
{"send": text}], "timeout": seconds, "ignore": ["SIGINT", ...] (ignored in the
child)}. "expect" waits until the text has
appeared in the output (the terminal's echo included); "send" types the text
(b"\\x03" is Ctrl-C, b"\\x1c" Ctrl-\\, which the line discipline turns into
SIGINT and SIGQUIT). When the child has exited, the terminal's settings are
read from the pty (the child's terminal, kept open here), so a spec can see
whether the child left echo off.

Prints JSON: {"code": exit status or null, "signal": number or null,
"output": everything the child wrote, "echo": bool, "icanon": bool,
"stty": `stty -a` on the pty, "timed_out": bool}.
"""
import json
import os
import select
import signal
import subprocess
import sys
import termios
import time
import fcntl


def main():
    spec = json.loads(sys.argv[1])
    deadline = time.monotonic() + spec.get("timeout", 20)
    master, slave = os.openpty()
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
        try:
            for name in spec.get("ignore") or []:  # e.g. "SIGINT", as nohup or a background job has it
                signal.signal(getattr(signal, name), signal.SIG_IGN)
            env = spec.get("env") or {}  # an empty Lua table arrives as []
            os.execve(spec["argv"][0], spec["argv"], dict(env))
        finally:
            os._exit(127)

    output = b""
    timed_out = False
    status = None

    def pump(wait):
        nonlocal output
        ready, _, _ = select.select([master], [], [], wait)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                return False
            output += data
            return bool(data)
        return True

    for step in spec.get("steps", []):
        if "expect" in step:
            want = step["expect"].encode()
            while want not in output and status is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                pump(0.1)
                done, st = os.waitpid(pid, os.WNOHANG)  # gone without saying it
                if done:
                    status = st
        elif "send" in step:
            os.write(master, step["send"].encode("latin-1"))

    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
            break
        pump(0.05)
    while pump(0):  # what is left in the pty
        if not select.select([master], [], [], 0)[0]:
            break

    attrs = termios.tcgetattr(slave)
    stty = subprocess.run(["stty", "-a"], stdin=slave, capture_output=True, text=True).stdout
    print(json.dumps({
        "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "output": output.decode("utf-8", "replace"),
        "echo": bool(attrs[3] & termios.ECHO),
        "icanon": bool(attrs[3] & termios.ICANON),
        "stty": stty,
        "timed_out": timed_out,
    }))


main()
