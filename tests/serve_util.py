"""serve_util.py - what the tests of `deeplab serve` share: a server started on a free loopback
port (--port 0, the port read from its first line), waited for until /readyz says ready, and
stopped with SIGTERM, its exit status checked; never left running (killed if a test fails)."""
import os
import re
import signal
import subprocess
import time
import urllib.request

import dlref


def serve_available():
    """None when `deeplab serve` is built in, else why the tests skip."""
    p = subprocess.run([dlref.DEEPLAB, "serve", "--help"], capture_output=True, text=True)
    return None if p.returncode == 0 else p.stderr.strip()


class Server:
    """`deeplab serve ARGS` on 127.0.0.1; .url, .port, .log() (its standard error so far)."""

    def __init__(self, args, name="serve", env=None, wait_ready=True, timeout=60):
        self.log_path = os.path.join(dlref.TMP, f"{name}.log")
        self.err = open(self.log_path, "w+")
        self.proc = subprocess.Popen([dlref.DEEPLAB, "serve", "--port", "0"] + [str(a) for a in args],
                                     stdout=subprocess.DEVNULL, stderr=self.err, env=env)
        self.port = None
        t0 = time.time()
        while self.port is None and time.time() - t0 < timeout:
            m = re.search(r"listening on http://[^:]+:(\d+)/", self.log())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
        if self.port is None:
            self.kill()
            raise RuntimeError(f"the server did not start: {self.log().strip()}")
        self.url = f"http://127.0.0.1:{self.port}"
        while wait_ready and time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited {self.proc.returncode}: {self.log().strip()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                time.sleep(0.1)
        if wait_ready:
            self.kill()
            raise RuntimeError(f"the server was not ready in {timeout} s: {self.log().strip()}")

    def log(self):
        self.err.flush()
        with open(self.log_path) as f:
            return f.read()

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self, timeout=60):
        """SIGTERM, then the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.err.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def small_model(seed=11, arch="resnet50"):
    """The seeded random model the rmbg tests use (dlref), its classifier scaled by 20 so that class
    masses span 0 to 1 as a trained model's do. Made once and kept in BUILD/test-cache/ under a
    hash of the code that makes it (the serve tests share it; torchvision takes ~10 s)."""
    import hashlib
    here = os.path.dirname(os.path.abspath(__file__))
    key = hashlib.sha256()
    for f in ("dlref.py", "serve_util.py"):
        key.update(open(os.path.join(here, f), "rb").read())
    key.update(f"{arch} {seed}".encode())
    cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(dlref.TMP))), "test-cache")
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f"serve-{arch}-{seed}-{key.hexdigest()[:16]}.safetensors")
    if not os.path.exists(path):
        import torch
        model = dlref.make_model(arch, 21, seed=seed)
        with torch.no_grad():
            model.classifier[4].weight *= 20
            model.classifier[4].bias *= 20
        dlref.save_safetensors(path + ".tmp", model.state_dict())
        os.replace(path + ".tmp", path)
    return path
