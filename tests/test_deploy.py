#!/usr/bin/env python3
"""test_deploy.py - the files of deploy/ checked by what this machine has (no Kubernetes, Slurm or
Docker here: `docker build` is not possible, so the Dockerfiles are checked for their stages and
commands only).

  - every YAML document of deploy/kubernetes/ parses (python3-yaml); the Deployment has readiness
    (/readyz), liveness (/healthz) probes, CPU, memory and nvidia.com/gpu limits, a grace period
    longer than its --drain-timeout; the Service and an HPA on deeplab_queue_depth (a metric the
    binary serves) exist; the Indexed Job's completions equal the N of its --shard env/N
  - every deeplab command line in deploy/ (YAML args, Dockerfile CMDs, the Slurm and replica
    scripts): each --option it uses is in `deeplab CMD --help`; the rmbg ones also parse (run with
    their own values and missing inputs: exit 66, not a usage error, 64)
  - the shell scripts pass bash -n; the Dockerfiles' COPY --from stages exist; the nginx
    configuration passes `nginx -t` (when nginx is installed)
  - deploy/run-replicas.sh 2 (GPUS=0: CPU replicas) starts two replicas on BASE_PORT and the next,
    both ready, their session ids beginning 00 and 01; SIGTERM drains both and it exits 0
Exit 0 = pass, 1 = fail.
"""
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import dlref
import nginx_util
import requests
import serve_util

T = dlref.TMP
expect = dlref.expect
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEPLOY = os.path.join(ROOT, "deploy")

try:
    import yaml
except ImportError:
    print("FAIL: python3-yaml is missing (apt-get install python3-yaml; tools/install-deps.sh)")
    sys.exit(1)

HELP = {}


def help_of(cmd):
    if cmd not in HELP:
        p = subprocess.run([dlref.DEEPLAB, cmd, "--help"], capture_output=True, text=True)
        HELP[cmd] = p.stdout if p.returncode == 0 else ""
    return HELP[cmd]


def check_command(where, argv):
    """argv: a deeplab command line without the program (["rmbg", "--shard", "env/8", ...])."""
    cmd = argv[0]
    text = help_of(cmd)
    flags = [a.split("=")[0] for a in argv[1:] if a.startswith("-") and a not in ("-", "-o", "-w", "-v")]
    missing = [f for f in flags if not re.search(r"(^|[\s,])" + re.escape(f) + r"([\s=,]|$)", text, re.M)]
    expect(text and not missing, f"{where}: deeplab {cmd} {' '.join(flags)}: every option in its --help"
                                 f"{' (missing: ' + ', '.join(missing) + ')' if missing else ''}")
    if cmd in ("rmbg", "segment"):
        # the values parse too: with the inputs missing the command stops at them (66), not at a usage error (64)
        # its own option values; the paths (output, manifest, inputs) moved into the scratch folder
        empty = os.path.join(T, "no_photos")
        os.makedirs(empty, exist_ok=True)
        args, i = [argv[0]], 1
        while i < len(argv):
            a = re.sub(r"\$\(?\{?(\w+)\}?\)?", "0", argv[i])
            if a in ("-o", "--output", "--manifest") and i + 1 < len(argv):
                args += [a, os.path.join(T, "parsed", "out") + "/" if a != "--manifest" else os.path.join(T, "m.jsonl")]
                i += 2
                continue
            args.append(a if a.startswith("-") or args[-1].startswith("-") and args[-1] != "-v" else empty)
            i += 1
        os.makedirs(os.path.join(T, "parsed"), exist_ok=True)
        env = dict(os.environ, JOB_COMPLETION_INDEX="0", SLURM_ARRAY_TASK_ID="0", DEEPLAB_WEIGHTS="/nonexistent")
        p = subprocess.run([dlref.DEEPLAB] + args, capture_output=True, text=True, env=env)
        expect(p.returncode == 66, f"{where}: its options parse (exit {p.returncode}: {p.stderr.strip()[:160]})")


def shell_commands(path):
    """The deeplab command lines of a shell script: `deeplab CMD ...` or `"$deeplab" CMD ...`,
    continuation lines joined, up to the end of the command."""
    text = open(path).read().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.split(" #")[0]
        m = re.search(r'(?:^|\s)(?:srun\s+)?(?:deeplab|"\$deeplab")\s+(rmbg|segment|serve|bench)\b(.*)', line)
        if m:
            rest = re.split(r"[&|;]", m.group(2))[0]
            out.append([m.group(1)] + shlex.split(rest.replace('"${device[@]}"', "--device cpu")))
    return out


def check_run_replicas():
    st = serve_util.small_model()
    base = next(p for p in (nginx_util.free_port() for _ in range(50)) if p < 65535 and port_free(p + 1))
    photo = os.path.join(T, "p.png")
    dlref.photo(40, 30, 2).save(photo)
    env = dict(os.environ, DEEPLAB=dlref.DEEPLAB, DEEPLAB_WEIGHTS=st, BASE_PORT=str(base), GPUS="0",
               DEEPLAB_SERVE_ARGS="--size 32 --access-log none")
    log = open(os.path.join(T, "run-replicas.log"), "w+")
    proc = subprocess.Popen(["bash", os.path.join(DEPLOY, "run-replicas.sh"), "2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=log)
    try:
        ids, t0 = [], time.time()
        for i in range(2):
            url = f"http://127.0.0.1:{base + i}"
            while time.time() - t0 < 120 and proc.poll() is None:
                try:
                    if requests.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            try:
                r = requests.post(url + "/v1/sessions", files={"image_file": open(photo, "rb")}, timeout=60)
                ids.append(r.json().get("id", "")[:2] if r.status_code == 201 else str(r.status_code))
            except requests.RequestException as e:
                ids.append(type(e).__name__)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        log.seek(0)
        text = log.read()
        expect(ids == ["00", "01"] and rc == 0 and text.count("serve: stopped") == 2,
               f"deploy/run-replicas.sh 2: replicas on {base} and {base + 1}, session ids {ids}; SIGTERM: both "
               f"drained, exit {rc}")
    finally:
        if proc.poll() is None:  # it did not drain: it and its replicas (by the pids it printed) go
            proc.kill()
            proc.wait()
            log.seek(0)
            for pid in re.findall(r"pid (\d+)", log.read()):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        log.close()


def port_free(port):
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def main():
    docs = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml"))):
        try:
            with open(path) as f:
                found = [d for d in yaml.safe_load_all(f) if d]
            expect(bool(found), f"{os.path.relpath(path, ROOT)}: {len(found)} YAML documents parse")
            docs += [(os.path.basename(path), d) for d in found]
        except yaml.YAMLError as e:
            expect(False, f"{os.path.relpath(path, ROOT)}: YAML: {e}")
    kinds = {d.get("kind"): d for _, d in docs}
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "Job"):
        expect(kind in kinds, f"deploy/kubernetes has a {kind}")

    def containers(d):
        return d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])

    dep = kinds.get("Deployment", {})
    for c in containers(dep):
        args = [str(a) for a in c.get("args", [])]
        check_command(f"Deployment {c.get('name')}", args)
        rp, lp = c.get("readinessProbe", {}), c.get("livenessProbe", {})
        expect(rp.get("httpGet", {}).get("path") == "/readyz" and lp.get("httpGet", {}).get("path") == "/healthz",
               "the Deployment's probes: readiness /readyz, liveness /healthz")
        limits = c.get("resources", {}).get("limits", {})
        expect(all(k in limits for k in ("cpu", "memory", "nvidia.com/gpu")),
               f"the Deployment's limits: cpu, memory, nvidia.com/gpu ({sorted(limits)})")
        drain = int(args[args.index("--drain-timeout") + 1]) if "--drain-timeout" in args else 30
        grace = dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        expect(grace > drain, f"terminationGracePeriodSeconds {grace} > --drain-timeout {drain}")
    hpa = kinds.get("HorizontalPodAutoscaler", {})
    names = [m.get("pods", {}).get("metric", {}).get("name") for m in hpa.get("spec", {}).get("metrics", [])]
    binary = open(dlref.DEEPLAB, "rb").read()
    expect(names and all(n and n.encode() + b" " in binary for n in names),
           f"the HPA scales on {names}, which /metrics serves")
    job = kinds.get("Job", {})
    for c in containers(job):
        args = [str(a) for a in c.get("args", [])]
        check_command(f"Job {c.get('name')}", args)
        shard = args[args.index("--shard") + 1] if "--shard" in args else ""
        expect(job["spec"].get("completionMode") == "Indexed" and shard == f"env/{job['spec'].get('completions')}",
               f"the Job is Indexed and its completions ({job['spec'].get('completions')}) are --shard's N ({shard})")

    # the shell scripts and the Dockerfiles
    for path in [os.path.join(DEPLOY, "run-replicas.sh"), os.path.join(DEPLOY, "slurm", "rmbg-array.sbatch")]:
        p = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
        cmds = shell_commands(path)
        expect(p.returncode == 0 and cmds, f"{os.path.relpath(path, ROOT)}: bash -n, {len(cmds)} deeplab command(s)")
        for argv in cmds:
            check_command(os.path.relpath(path, ROOT), [a.replace("env/$n", "env/8") for a in argv])
    for path in sorted(glob.glob(os.path.join(DEPLOY, "Dockerfile*"))):
        text = open(path).read()
        stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I)
        froms = re.findall(r"COPY\s+--from=(\S+)", text)
        cmd = re.search(r'^CMD\s+(\[.*\])', text, re.M)
        expect(froms and all(f in stages for f in froms) and cmd and "ENTRYPOINT [\"deeplab\"]" in text,
               f"{os.path.basename(path)}: stages {stages}, COPY --from {froms}, ENTRYPOINT deeplab, a CMD "
               f"(docker build is not possible on this machine)")
        if cmd:
            check_command(os.path.basename(path), yaml.safe_load(cmd.group(1)))

    # nginx -t on the shipped configuration
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx:
        conf = os.path.join(T, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"pid {T}/nginx.pid;\nerror_log {T}/error.log;\nevents {{}}\n"
                    f"http {{\n  access_log off;\n  client_body_temp_path {T}/body;\n  proxy_temp_path {T}/proxy;\n"
                    f"  include {os.path.join(DEPLOY, 'nginx', 'deeplab.conf')};\n}}\n")
        p = subprocess.run([nginx, "-t", "-p", T, "-c", conf], capture_output=True, text=True)
        expect(p.returncode == 0, f"nginx -t on deploy/nginx/deeplab.conf: {p.stderr.strip().splitlines()[-1:]}")
    else:
        print("nginx not installed: its configuration is checked by tests/test_replicas.py where it is")
    check_run_replicas()
    return dlref.summary("deploy checks")


if __name__ == "__main__":
    sys.exit(main())
