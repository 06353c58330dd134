#!/usr/bin/env python3
"""Runs a command on a new pseudo-terminal and plays a dialogue with it.

argv[1] is JSON: {"argv": [...], "env": {...}, "steps": [{"expect": text[,
"count": n]} | {"send": text} | {"await_stop": true} | {"resume": true}],
"timeout": seconds, "ignore": ["SIGINT", ...] (ignored in the child),
"job_control": bool}. "expect" waits until the text has
appeared in the output (the terminal's echo included), `count` times when
given; "send" types the text
(b"\\x03" is Ctrl-C, b"\\x1c" Ctrl-\\, which the line discipline turns into
SIGINT and SIGQUIT, b"\\x1a" Ctrl-Z, SIGTSTP). When the child has exited, the
terminal's settings are read from the pty (the child's terminal, kept open
here), so a spec can see whether the child left echo off.

With "job_control", a small shell sits between: the session leader runs the
command in a process group of its own in the foreground, as an interactive
shell does (so a stop signal stops it: an orphaned process group would
ignore Ctrl-Z). "await_stop" waits until the command has stopped, and
records the terminal's echo then, as the shell gets it back; "resume" gives
it the terminal again and continues it (SIGCONT), as `fg` does.

Prints JSON: {"code": exit status or null, "signal": number or null,
"output": everything the child wrote, "echo": bool, "icanon": bool,
"stty": `stty -a` on the pty, "stops": [{"echo": bool}, ...] (one per
await_stop), "timed_out": bool}.
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


def run_command(spec, slave):
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


def shell(spec, slave, stopped_w, resume_r):
    """The session leader as a job-control shell: never returns."""
    ready_r, ready_w = os.pipe()
    job = os.fork()
    if job == 0:
        os.setpgid(0, 0)
        os.read(ready_r, 1)  # in the foreground now
        run_command(spec, slave)
    os.setpgid(job, job)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a shell takes the terminal back from the background
    os.tcsetpgrp(slave, job)
    os.write(ready_w, b"x")
    while True:
        _, status = os.waitpid(job, os.WUNTRACED)
        if os.WIFSTOPPED(status):
            os.tcsetpgrp(slave, os.getpgrp())
            os.write(stopped_w, b"S")
            os.read(resume_r, 1)
            os.tcsetpgrp(slave, job)
            os.killpg(job, signal.SIGCONT)
        elif os.WIFEXITED(status):
            os._exit(os.WEXITSTATUS(status))
        else:
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
            os.kill(os.getpid(), os.WTERMSIG(status))
            os._exit(128 + os.WTERMSIG(status))


def main():
    spec = json.loads(sys.argv[1])
    deadline = time.monotonic() + spec.get("timeout", 20)
    master, slave = os.openpty()
    job_control = spec.get("job_control")
    stopped_r, stopped_w = os.pipe()  # the shell says "stopped"
    resume_r, resume_w = os.pipe()  # and is told to continue the command
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        if job_control:
            shell(spec, slave, stopped_w, resume_r)
        run_command(spec, slave)

    os.close(stopped_w)
    os.close(resume_r)
    stops = []

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
            while output.count(want) < step.get("count", 1) and status is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                pump(0.1)
                done, st = os.waitpid(pid, os.WNOHANG)  # gone without saying it
                if done:
                    status = st
        elif "send" in step:
            os.write(master, step["send"].encode("latin-1"))
        elif "await_stop" in step:
            while status is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                if select.select([stopped_r], [], [], 0.05)[0]:
                    os.read(stopped_r, 1)
                    stops.append({"echo": bool(termios.tcgetattr(slave)[3] & termios.ECHO)})
                    break
                pump(0)
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
        elif "resume" in step:
            os.write(resume_w, b"c")

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
        "stops": stops,
        "timed_out": timed_out,
    }))


main()
