"""nginx_util.py - Debian's nginx in front of `deeplab serve` replicas, for tests/test_replicas.py and
tools/bench_scale.py: deploy/nginx/deeplab.conf itself, its replica addresses and port replaced by
loopback ones, run in the foreground from a scratch folder (its own pid file, logs, temp files)."""
import os
import re
import shutil
import socket
import subprocess
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def available():
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def config(ports, listen):
    """deploy/nginx/deeplab.conf for these replica ports: the balanced upstream lists them all, the
    per-replica upstreams of sessions (00, 01) the first two (the first twice with one replica)."""
    conf = open(os.path.join(ROOT, "deploy", "nginx", "deeplab.conf")).read()
    block = re.search(r"upstream deeplab \{.*?\n\}", conf, re.S).group(0)
    line = re.search(r"\n(\s*server 127\.0\.0\.1:7001 [^\n]*)", block).group(1)
    servers = "".join("\n" + line.replace("7001", str(p)) for p in ports)
    new_block = re.sub(r"(\n\s*server 127\.0\.0\.1:700\d [^\n]*)+", lambda m: servers, block, count=1)
    conf = conf.replace(block, new_block)
    conf = conf.replace("127.0.0.1:7001;", f"127.0.0.1:{ports[0]};")
    conf = conf.replace("127.0.0.1:7002;", f"127.0.0.1:{ports[1 % len(ports)]};")
    return conf.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{listen};")


class Nginx:
    """nginx balancing ports (replicas on 127.0.0.1), on a free port: .url, .error_log()."""

    def __init__(self, ports, tmp):
        self.tmp, self.port = tmp, free_port()
        with open(os.path.join(tmp, "deeplab.conf"), "w") as f:
            f.write(config(ports, self.port))
        main = os.path.join(tmp, "nginx.conf")
        with open(main, "w") as f:
            f.write(f"pid {tmp}/nginx.pid;\nerror_log {tmp}/nginx-error.log;\nworker_processes 1;\nevents {{}}\n"
                    f"http {{\n  access_log {tmp}/nginx-access.log;\n  client_body_temp_path {tmp}/body;\n"
                    f"  proxy_temp_path {tmp}/proxy;\n  include {tmp}/deeplab.conf;\n}}\n")
        self.stderr = open(os.path.join(tmp, "nginx-stderr.log"), "w")
        self.proc = subprocess.Popen([available(), "-p", tmp, "-c", main, "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        if not wait_port(self.port):
            self.stop()
            raise RuntimeError("nginx did not start: " + open(os.path.join(tmp, "nginx-stderr.log")).read())
        self.url = f"http://127.0.0.1:{self.port}"

    def error_log(self):
        path = os.path.join(self.tmp, "nginx-error.log")
        return open(path).read() if os.path.exists(path) else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
