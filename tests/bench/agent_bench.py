#!/usr/bin/env python3
"""minid serve + minictl, end to end over mutual TLS: latency, throughput, memory, CPU, logs.

Driven by tests/bench/agent-bench, which installs crun and builds release binaries; run that.

What it measures, in one run on this machine, against a private `minid serve` (127.0.0.1, a
random port, a temporary state dir, its development PKI) with the busybox image built from the
host's busybox-static:

1. Latency: `minictl run --rm busybox true` (create, attach to logs, start, wait, auto-remove)
   vs `crun run` of a bundle with the same busybox-static rootfs (runc's default spec, args
   /bin/true), alternating, N times each, timed from spawn to exit of the client process.
   crun runs in a private mount namespace with the hybrid layout's cgroup.controllers masked
   (see runtime_bench.py), entered before the clock starts.
2. Concurrency: 50 `minictl run --rm busybox true` from 5 client threads (10 each) at once:
   wall time, runs per second, failures.
3. Memory: minid's RSS (VmRSS) idle, and with 100 `sleep` containers running.
4. CPU: minid's user+system CPU time while one `minictl stats` streams 50 running containers
   every second for 20 s, as a share of one core.
5. Logs: a container writing 1 GiB of 71-byte lines to stdout (`yes ... | head -c 1GiB`), as
   received by the attached `minictl run` (its stdout to a file), vs the same pipeline on the
   host writing straight into a file: bytes per second and the ratio.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runtime_bench  # noqa: E402  (crun's masked mount namespace, the bench bundle)

ENV = dict(runtime_bench.ENV)
LINE = "0123456789" * 7  # 70 bytes + newline
GIB = 1 << 30


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime are fields 14 and 15 (1-based) of the whole line: 12 and 13 after ")".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class AgentBench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="agent-bench.")
        self.state = os.path.join(self.work, "state")
        self.run_root = os.path.join(self.work, "run")
        self.minid = None
        self.addr = None
        self.results = {}
        self.crun = None

    # ------------------------------------------------------------------ agent
    def start_minid(self):
        errlog = open(os.path.join(self.work, "minid.log"), "w")
        self.minid = subprocess.Popen(
            [self.args.minid, "--state-dir", self.state, "serve", "--listen", "127.0.0.1:0", "--no-bridge",
             "--run-root", self.run_root],
            stdout=subprocess.PIPE, stderr=errlog, stdin=subprocess.DEVNULL, env=ENV, text=True)
        line = self.minid.stdout.readline()
        if not line.startswith("minid listening on "):
            raise RuntimeError(f"minid did not start: {line!r}; see {errlog.name}")
        self.addr = line.split()[-1]
        pki = os.path.join(self.state, "pki")
        self.ctl_base = [self.args.minictl, "--node", self.addr, "--tls-ca", f"{pki}/ca.pem",
                         "--tls-cert", f"{pki}/admin.pem", "--tls-key", f"{pki}/admin-key.pem"]
        log(f"minid serving on {self.addr} (pid {self.minid.pid})")

    def ctl(self, *args, check=True, stdout=subprocess.DEVNULL):
        r = subprocess.run(self.ctl_base + list(args), stdout=stdout, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=ENV, text=stdout is subprocess.PIPE)
        if check and r.returncode != 0:
            raise RuntimeError(f"minictl {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return r

    def import_image(self):
        tar = os.path.join(self.work, "busybox.tar")
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([os.path.join(here, "..", "images", "build-busybox.sh"), tar], check=True,
                       stdout=subprocess.DEVNULL, env=ENV)
        self.ctl("import", tar, "busybox")

    def remove_all(self):
        r = self.ctl("ps", "-aq", "--no-trunc", check=False, stdout=subprocess.PIPE)
        ids = r.stdout.split() if r.returncode == 0 else []
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda i: self.ctl("rm", "-f", i, check=False), ids))

    # ------------------------------------------------------------------ parts
    def latency(self):
        n = self.args.n
        self.crun = runtime_bench.Bench(argparse.Namespace(minid=self.args.minid, keep_work=False))
        b = self.crun
        b.make_bundle()
        b.start_helper()
        b.roots["crun"] = os.path.join(b.work, "root-crun")
        os.makedirs(b.roots["crun"])
        ms, rc = b.timed_run("crun", "check")
        if rc != 0:
            raise RuntimeError(f"crun cannot run the bench bundle; see {b.errlog}")
        b.enter("own")
        ours, theirs = [], []
        for w in range(3):  # warm-up, untimed
            self.ctl("run", "--network", "none", "--rm", "busybox", "true")
            b.timed_run("crun", f"warm{w}")
        b.enter("own")
        for i in range(n):
            for who in (("minictl", "crun") if i % 2 == 0 else ("crun", "minictl")):
                if who == "crun":
                    ms, rc = b.timed_run("crun", f"lat{i}")
                    b.enter("own")
                    if rc != 0:
                        raise RuntimeError(f"crun run failed in iteration {i}")
                    theirs.append(ms)
                else:
                    t0 = time.perf_counter_ns()
                    r = self.ctl("run", "--network", "none", "--rm", "busybox", "true", check=False)
                    t1 = time.perf_counter_ns()
                    if r.returncode != 0:
                        raise RuntimeError(f"minictl run failed in iteration {i}: {r.stderr}")
                    ours.append((t1 - t0) / 1e6)
        self.results["latency"] = {"minictl": ours, "crun": theirs}

    def concurrency(self, clients=5, each=10):
        failures = []
        lock = threading.Lock()

        def client(k):
            for j in range(each):
                r = self.ctl("run", "--network", "none", "--rm", "busybox", "true", check=False)
                if r.returncode != 0:
                    with lock:
                        failures.append(f"client {k} run {j}: exit {r.returncode}: {r.stderr.strip()}")

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as ex:
            list(ex.map(client, range(clients)))
        wall = time.perf_counter() - t0
        left = self.ctl("ps", "-aq", stdout=subprocess.PIPE).stdout.split()
        self.results["concurrency"] = {"runs": clients * each, "clients": clients, "wall_s": wall,
                                       "failures": failures, "left_behind": len(left)}

    def memory_and_stats(self, n_mem=100, n_stats=50, seconds=20):
        time.sleep(1)
        idle = rss_kb(self.minid.pid)
        ids = []
        t0 = time.perf_counter()
        for i in range(n_mem):
            r = self.ctl("run", "--network", "none", "-d", "--name", f"sleep{i}", "busybox", "sleep", "3600",
                         stdout=subprocess.PIPE)
            ids.append(r.stdout.strip())
        started = time.perf_counter() - t0
        time.sleep(1)
        loaded = rss_kb(self.minid.pid)
        # Stats: keep n_stats running, stream them for `seconds`.
        for cid in ids[n_stats:]:
            self.ctl("rm", "-f", cid)
        stats = subprocess.Popen(self.ctl_base + ["stats"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=ENV)
        time.sleep(2)  # first samples
        c0, w0 = cpu_s(self.minid.pid), time.perf_counter()
        time.sleep(seconds)
        c1, w1 = cpu_s(self.minid.pid), time.perf_counter()
        stats.terminate()
        stats.wait()
        self.remove_all()
        self.results["memory"] = {"idle_kb": idle, "with_100_kb": loaded, "start_100_s": started}
        self.results["stats_cpu"] = {"containers": n_stats, "seconds": w1 - w0,
                                     "cpu_s": c1 - c0, "core_pct": (c1 - c0) / (w1 - w0) * 100}

    def logs(self):
        size = self.args.log_bytes
        cmd = f"yes {LINE} | head -c {size}"
        # Baseline: the same pipeline on the host, straight into a file.
        base_out = os.path.join(self.work, "baseline.out")
        t0 = time.perf_counter()
        with open(base_out, "wb") as f:
            subprocess.run(["/bin/busybox", "sh", "-c", cmd], stdout=f, check=True, env=ENV)
        base = time.perf_counter() - t0
        os.unlink(base_out)
        ours_out = os.path.join(self.work, "minictl.out")
        t0 = time.perf_counter()
        with open(ours_out, "wb") as f:
            r = subprocess.run(self.ctl_base + ["run", "--network", "none", "--rm", "busybox", "sh", "-c", cmd],
                               stdout=f, stderr=subprocess.PIPE, env=ENV)
        ours = time.perf_counter() - t0
        got = os.path.getsize(ours_out)
        os.unlink(ours_out)
        if r.returncode != 0:
            raise RuntimeError(f"log run failed: {r.stderr}")
        self.results["logs"] = {"bytes": size, "received": got, "minictl_s": ours,
                                "baseline_s": base}

    # ------------------------------------------------------------------ report
    def report(self):
        R = self.results
        out = []
        lat = R.get("latency")
        if lat:
            m, c = statistics.median(lat["minictl"]), statistics.median(lat["crun"])
            p90 = lambda v: runtime_bench.pct(v, 90)  # noqa: E731
            out.append("| measure | minid + minictl | peer | ratio | target |")
            out.append("|---|---|---|---|---|")
            out.append(f"| `run --rm busybox true`, median (p90), N={len(lat['minictl'])} | "
                       f"{m:.1f} ms ({p90(lat['minictl']):.1f}) | crun run {c:.1f} ms "
                       f"({p90(lat['crun']):.1f}) | {m / c:.2f}× | ≤ 2× crun |")
        cc = R.get("concurrency")
        if cc:
            out.append(f"| {cc['runs']} concurrent runs from {cc['clients']} clients | "
                       f"{cc['wall_s']:.2f} s, {cc['runs'] / cc['wall_s']:.1f} runs/s, "
                       f"{len(cc['failures'])} failed, {cc['left_behind']} left | — | — | no failures |")
        mem = R.get("memory")
        if mem:
            out.append(f"| minid RSS idle | {mem['idle_kb'] / 1024:.1f} MiB | containerd 1.6 ≈ 37 MB | — | ≤ 30 MiB |")
            out.append(f"| minid RSS, 100 containers running | {mem['with_100_kb'] / 1024:.1f} MiB "
                       f"(started in {mem['start_100_s']:.1f} s) | — | — | — |")
        sc = R.get("stats_cpu")
        if sc:
            out.append(f"| minid CPU, `stats` of {sc['containers']} containers at 1 s | "
                       f"{sc['core_pct']:.2f} % of a core ({sc['cpu_s']:.2f} s in {sc['seconds']:.0f} s) "
                       f"| — | — | ≤ 2 % |")
        lg = R.get("logs")
        if lg:
            ours = lg["received"] / lg["minictl_s"] / 1e9
            base = lg["bytes"] / lg["baseline_s"] / 1e9
            out.append(f"| log throughput, {lg['bytes'] >> 20} MiB via `minictl run` | {ours:.2f} GB/s "
                       f"({lg['received']} bytes received) | pipe into a file {base:.2f} GB/s | "
                       f"{ours / base:.2f} | ≥ 0.5 |")
        return "\n".join(out)

    def cleanup(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.minid is not None and self.minid.poll() is None:
            try:
                self.remove_all()
            finally:
                self.minid.terminate()
                try:
                    self.minid.wait(10)
                except subprocess.TimeoutExpired:
                    self.minid.kill()
                    self.minid.wait()
        if self.crun is not None:
            self.crun.cleanup()
        with open("/proc/self/mountinfo") as f:
            mnts = [ln.split()[4] for ln in f if ln.split()[4].startswith(self.work + "/")]
        for m in sorted(mnts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        if self.args.keep_work:
            log(f"work dir kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=50)
    ap.add_argument("--minid", required=True)
    ap.add_argument("--minictl", required=True)
    ap.add_argument("--out", help="where results.json goes (default: a new temp dir)")
    ap.add_argument("--log-bytes", type=int, default=GIB)
    ap.add_argument("--only", help="comma-separated parts: latency,concurrency,memory,logs")
    ap.add_argument("--keep-work", action="store_true")
    args = ap.parse_args()
    parts = set((args.only or "latency,concurrency,memory,logs").split(","))
    signal.signal(signal.SIGTERM, runtime_bench.on_term)
    b = AgentBench(args)
    try:
        b.start_minid()
        b.import_image()
        if "latency" in parts:
            log(f"latency: {args.n} runs each")
            b.latency()
        if "concurrency" in parts:
            log("concurrency: 50 runs from 5 clients")
            b.concurrency()
        if "memory" in parts:
            log("memory: 100 containers; then stats of 50 for 20 s")
            b.memory_and_stats()
        if "logs" in parts:
            log(f"logs: {args.log_bytes >> 20} MiB")
            b.logs()
    except (KeyboardInterrupt, runtime_bench.Terminated) as e:
        log(f"interrupted ({e}); cleaning up")
        b.cleanup()
        return 130
    except Exception:
        b.cleanup()
        raise
    out = args.out or tempfile.mkdtemp(prefix="agent-bench-results.")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(b.results, f, indent=2)
    b.cleanup()
    uname = os.uname()
    print(f"minid serve + minictl over mTLS, {uname.sysname} {uname.release}, {os.cpu_count()} CPUs, "
          f"{runtime_bench.versions()}; raw numbers in {out}/results.json\n")
    print(b.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
