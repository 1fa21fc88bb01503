#!/usr/bin/env python3
"""Container start-up latency and shim memory: minid vs crun vs runc (and conmon, containerd-shim).

Driven by tests/bench/runtime-bench, which installs the runtimes and builds minid; run that.

Latency: every runtime runs `RUNTIME --root ROOT run --bundle BUNDLE ID` (create, start, wait,
delete) on one and the same bundle (busybox-static rootfs, `runc spec` config with args
["/bin/true"], terminal false). The harness is one process: it times posix_spawn .. waitpid
(perf_counter_ns) of each run, round-robin over the runtimes, the order rotated every iteration
so drift hits all of them equally. Warm: back to back. Cold: after `--idle` seconds (default 1)
of sleep before each run.

crun 1.8 refuses a hybrid cgroup layout unless /sys/fs/cgroup/unified/cgroup.controllers is
masked. A long-lived helper (`unshare -m`, the file bind-mounted over with /dev/null, then
`sleep`) holds a private mount namespace; the harness setns()es itself into it before spawning
crun and back into its own namespace before spawning the others (untimed, done for every
runtime alike), so neither unshare nor mount is in anybody's time.

Memory: PSS (`Pss:` of /proc/PID/smaps_rollup) of the per-container monitor while its container
runs `sleep`: minid's shim (state.json's shim_pid), conmon (as podman runs it, with runc) and
containerd-shim-runc-v2 (under a private containerd on a socket in the work dir, container from
`ctr run --rootfs`), each with 1 and then 4 containers running at the same time.
"""

import argparse
import csv
import ctypes
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CLONE_NEWNS = 0x00020000
LIBC = ctypes.CDLL(None, use_errno=True)
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def setns(fd):
    if LIBC.setns(fd, CLONE_NEWNS) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns(CLONE_NEWNS): " + os.strerror(e))


class Terminated(Exception):
    pass


def on_term(signum, _frame):
    raise Terminated(f"signal {signum}")


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="runtime-bench.")
        self.own_ns = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self.helper = None  # Popen of the masked-mount-namespace holder
        self.crun_ns = None
        self.current_ns = "own"
        self.containerd = None
        self.conmon_pids = []
        self.minid = args.minid
        self.runtimes = {
            "crun": shutil.which("crun", path=ENV["PATH"]),
            "runc": shutil.which("runc", path=ENV["PATH"]),
            "minid": self.minid,
        }
        # argv prefix of each runtime's OCI command line
        self.cmd = {"crun": [self.runtimes["crun"]], "runc": [self.runtimes["runc"]],
                    "minid": [self.minid, "runtime"]}
        self.roots = {}
        self.devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        self.errlog = os.path.join(self.work, "stderr.log")
        self.errfd = os.open(self.errlog, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.leftovers = 0
        self.notes = []
        self.roots_base = None

    # ---------------------------------------------------------------- set-up
    def make_bundle(self):
        b = os.path.join(self.work, "bundle")
        rootfs = os.path.join(b, "rootfs")
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root"):
            os.makedirs(os.path.join(rootfs, d), exist_ok=True)
        shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
        applets = subprocess.run(["/bin/busybox", "--list-full"], capture_output=True, text=True, check=True)
        for a in applets.stdout.split():
            if a == "bin/busybox":
                continue
            p = os.path.join(rootfs, a)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            if not os.path.lexists(p):
                os.symlink("/bin/busybox", p)
        subprocess.run([self.runtimes["runc"], "spec", "--bundle", b], check=True, env=ENV)
        with open(os.path.join(b, "config.json")) as f:
            cfg = json.load(f)
        cfg["process"]["args"] = ["/bin/true"]
        cfg["process"]["terminal"] = False
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        # Same rootfs, args `sleep`, for the memory part.
        s = os.path.join(self.work, "bundle-sleep")
        os.makedirs(s)
        cfg["process"]["args"] = ["/bin/sleep", "3600"]
        cfg["root"]["path"] = rootfs
        with open(os.path.join(s, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        self.bundle, self.sleep_bundle, self.rootfs = b, s, rootfs

    def hybrid(self):
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                sep = parts.index("-")
                if parts[4] == "/sys/fs/cgroup/unified" and parts[sep + 1] == "cgroup2":
                    return True
        return False

    def start_helper(self):
        if not self.hybrid():
            return
        ctl = "/sys/fs/cgroup/unified/cgroup.controllers"
        ready = os.path.join(self.work, "helper.ready")
        self.helper = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f"mount --bind /dev/null {ctl} && : > {ready} && exec sleep 1000000"],
            env=ENV, stdin=subprocess.DEVNULL, start_new_session=True)
        for _ in range(200):
            if os.path.exists(ready):
                break
            if self.helper.poll() is not None:
                raise RuntimeError("could not mask cgroup.controllers in a private mount namespace")
            time.sleep(0.01)
        time.sleep(0.05)  # `exec sleep`
        self.crun_ns = os.open(f"/proc/{self.helper.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        log(f"crun runs in a private mount namespace (pid {self.helper.pid}) with {ctl} masked")

    def enter(self, rt):
        want = "crun" if (rt == "crun" and self.crun_ns is not None) else "own"
        if want != self.current_ns:
            setns(self.crun_ns if want == "crun" else self.own_ns)
            self.current_ns = want

    # ---------------------------------------------------------------- running
    def spawn(self, rt, argv, stdout=None):
        """posix_spawn argv in rt's mount namespace; returns pid."""
        self.enter(rt)
        out = self.devnull if stdout is None else stdout
        fa = [(os.POSIX_SPAWN_DUP2, self.devnull, 0), (os.POSIX_SPAWN_DUP2, out, 1),
              (os.POSIX_SPAWN_DUP2, self.errfd, 2)]
        return os.posix_spawn(argv[0], argv, ENV, file_actions=fa)

    def call(self, rt, argv, stdout=None):
        pid = self.spawn(rt, argv, stdout)
        _, st = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(st)

    def timed_run(self, rt, cid):
        argv = self.cmd[rt] + ["--root", self.roots[rt], "run", "--bundle", self.bundle, cid]
        self.enter(rt)  # untimed
        t0 = time.perf_counter_ns()
        pid = self.spawn(rt, argv)
        _, st = os.waitpid(pid, 0)
        t1 = time.perf_counter_ns()
        rc = os.waitstatus_to_exitcode(st)
        left = os.listdir(self.roots[rt])
        if left:  # untimed: every run must leave nothing behind
            self.leftovers += 1
            self.delete_all(rt)
        return (t1 - t0) / 1e6, rc

    # What runc and crun allow on top of a spec's device rules, implicitly (runc's
    # specconv AllowedDevices): mknod of any node, the default devices, /dev/pts/*, ptmx, console.
    IMPLICIT_DEVICE_RULES = [
        {"allow": True, "type": "c", "access": "m"},
        {"allow": True, "type": "b", "access": "m"},
        *({"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
          for ma, mi in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2))),
        {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    ]

    def edit_configs(self, fn):
        for b in (self.bundle, self.sleep_bundle):
            p = os.path.join(b, "config.json")
            with open(p) as f:
                cfg = json.load(f)
            fn(cfg)
            with open(p, "w") as f:
                json.dump(cfg, f, indent=2)

    def add_implicit_device_rules(self, cfg):
        cfg["linux"]["resources"]["devices"] += self.IMPLICIT_DEVICE_RULES

    @staticmethod
    def drop_ambient(cfg):
        cfg["process"]["capabilities"].pop("ambient", None)

    def check_runtimes(self):
        """Runs the bundle once per runtime. Where minid fails runc's default spec for a known
        reason, the bundle is changed so that runc and crun behave exactly as before (the
        change spells out what they do implicitly) and the note goes into the report."""
        fixes = [
            ("mknod", self.add_implicit_device_rules,
             "runc and crun allow mknod and the default devices (null, zero, full, random, "
             "urandom, tty, console, ptmx, pts) on top of linux.resources.devices implicitly; "
             "the bench bundle lists those rules explicitly"),
            ("AMBIENT", self.drop_ambient,
             "runc's default spec asks for ambient caps without inheritable ones; runc and crun "
             "ignore the failed raise (CapAmb is 0 in their containers), minid fails; the bench "
             "bundle drops process.capabilities.ambient"),
        ]
        # The --root dirs: in the work dir (under /tmp) unless --roots-in puts them elsewhere
        # (e.g. /run or /dev/shm on tmpfs, where minid's fsyncs cost nothing).
        base = self.work
        if getattr(self.args, "roots_in", None):
            base = self.roots_base = tempfile.mkdtemp(prefix="runtime-bench-roots.", dir=self.args.roots_in)
        for rt in self.runtimes:
            self.roots[rt] = os.path.join(base, "root-" + rt)
            os.makedirs(self.roots[rt])
        for attempt in range(len(fixes) + 1):
            failed = None
            for rt in self.runtimes:
                size = os.path.getsize(self.errlog)
                ms, rc = self.timed_run(rt, f"check{attempt}-{rt}")
                if rc != 0:
                    with open(self.errlog) as f:
                        f.seek(size)
                        failed = (rt, rc, f.read()[-2000:].strip())
                    break
                log(f"{rt}: runs the bundle (first run {ms:.1f} ms)")
            if failed is None:
                return
            rt, rc, err = failed
            fix = next((x for x in fixes if x[0] in err), None) if rt == "minid" else None
            if fix is None:
                raise RuntimeError(f"{rt} run of the bench bundle failed (exit {rc}):\n{err}")
            fixes.remove(fix)
            self.notes.append(f"minid failed runc's default spec (exit {rc}: {err}): {fix[2]}.")
            log("NOTE: " + self.notes[-1])
            self.edit_configs(fix[1])

    def latency(self, phase, n, idle):
        names = list(self.runtimes)
        rows = []
        for i in range(n):
            k = i % len(names)
            order = names[k:] + names[:k]
            for pos, rt in enumerate(order):
                if idle:
                    time.sleep(idle)
                ms, rc = self.timed_run(rt, f"{phase}-{rt}-{i}")
                if rc != 0:
                    raise RuntimeError(f"{rt} exited {rc} in {phase} iteration {i}; see {self.errlog}")
                rows.append((phase, i, pos, rt, round(ms, 3)))
            if (i + 1) % max(1, n // 10) == 0:
                log(f"  {phase}: {i + 1}/{n}")
        return rows

    # ---------------------------------------------------------------- memory
    @staticmethod
    def pss_kb(pid):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")

    def minid_start(self, cid):
        r = self.roots["minid-mem"]
        m = self.cmd["minid"]
        if self.call("minid", m + ["--root", r, "create", "--bundle", self.sleep_bundle, cid]) != 0:
            raise RuntimeError(f"minid create {cid} failed; see {self.errlog}")
        if self.call("minid", m + ["--root", r, "start", cid]) != 0:
            raise RuntimeError(f"minid start {cid} failed; see {self.errlog}")
        with open(os.path.join(r, cid, "state.json")) as f:
            return json.load(f)["shim_pid"]

    def conmon_start(self, cid):
        """As podman does: conmon runs `runc create`, then the caller runs `runc start`."""
        d = os.path.join(self.work, "conmon", cid)
        os.makedirs(d)
        r = self.roots["conmon-runc"]
        argv = [shutil.which("conmon", path=ENV["PATH"]), "--api-version", "1", "-c", cid, "-u", cid,
                "-n", cid, "-r", self.runtimes["runc"], "--runtime-arg", "--root", "--runtime-arg", r,
                "-b", self.sleep_bundle, "-p", os.path.join(d, "pidfile"),
                "-P", os.path.join(d, "conmon.pid"), "-l", "k8s-file:" + os.path.join(d, "ctr.log"),
                "--exit-dir", os.path.join(d, "exits"), "--socket-dir-path", os.path.join(d, "socket"),
                "--log-level", "error", "--full-attach"]
        os.makedirs(os.path.join(d, "exits"))
        os.makedirs(os.path.join(d, "socket"))
        # Without podman's _OCI_SYNCPIPE the conmon parent returns at once, before `runc
        # create` is done: wait for the container's pid file (written by runc create).
        if self.call("conmon", argv) != 0:
            raise RuntimeError(f"conmon for {cid} failed; see {self.errlog}")
        for _ in range(500):
            if os.path.exists(os.path.join(d, "pidfile")):
                break
            time.sleep(0.01)
        else:
            raise RuntimeError(f"runc create under conmon did not write {d}/pidfile in 5 s")
        with open(os.path.join(d, "conmon.pid")) as f:
            pid = int(f.read().strip())
        self.conmon_pids.append(pid)
        if self.call("runc", [self.runtimes["runc"], "--root", r, "start", cid]) != 0:
            raise RuntimeError(f"runc start {cid} (under conmon) failed; see {self.errlog}")
        return pid

    def containerd_up(self):
        exe = shutil.which("containerd", path=ENV["PATH"])
        ctr = shutil.which("ctr", path=ENV["PATH"])
        shim = shutil.which("containerd-shim-runc-v2", path=ENV["PATH"])
        if not (exe and ctr and shim):
            return "containerd, ctr or containerd-shim-runc-v2 not installed"
        d = os.path.join(self.work, "containerd")
        os.makedirs(d)
        # containerd keeps shim sockets and fifos under /run/containerd whatever its config
        # says, and ctr puts containers in cgroups /<namespace>/<id>: remember what was there.
        self.ctr_ns = f"runtime-bench-{os.getpid()}"
        self.run_containerd_existed = os.path.exists("/run/containerd")
        self.run_containerd_before = self.listing("/run/containerd")
        self.ctr_sock = os.path.join(d, "c.sock")
        conf = os.path.join(d, "config.toml")
        with open(conf, "w") as f:
            f.write(f'''version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.ctr_sock}"
[ttrpc]
  address = "{self.ctr_sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
''')
        self.ctr = [ctr, "-a", self.ctr_sock, "-n", self.ctr_ns]
        logf = open(os.path.join(d, "containerd.log"), "w")
        self.enter("containerd")
        self.containerd = subprocess.Popen([exe, "--config", conf], env=ENV, stdin=subprocess.DEVNULL,
                                           stdout=logf, stderr=logf, start_new_session=True)
        logf.close()
        for _ in range(500):
            if os.path.exists(self.ctr_sock):
                break
            if self.containerd.poll() is not None:
                return f"containerd exited {self.containerd.returncode}; see {d}/containerd.log"
            time.sleep(0.02)
        else:
            return "containerd did not open its socket in 10 s"
        return None

    def containerd_start(self, cid):
        argv = self.ctr + ["run", "-d", "--rootfs", self.rootfs, cid, "/bin/sleep", "3600"]
        if self.call("ctr", argv) != 0:
            raise RuntimeError(f"ctr run {cid} failed; see {self.errlog}")
        out = os.path.join(self.work, "ctr-task.out")
        with open(out, "w") as f:
            self.call("ctr", self.ctr + ["task", "ls"], stdout=f.fileno())
        with open(out) as f:
            for line in f:
                p = line.split()
                if p and p[0] == cid:
                    with open(f"/proc/{p[1]}/stat") as s:
                        return int(s.read().rsplit(")", 1)[1].split()[1])  # ppid: the shim
        raise RuntimeError(f"ctr task ls does not list {cid}")

    @staticmethod
    def listing(top):
        out = set()
        for root, dirs, files in os.walk(top):
            out.update(os.path.join(root, x) for x in dirs + files)
        return out

    def containerd_leftovers(self):
        if not self.run_containerd_existed:
            shutil.rmtree("/run/containerd", ignore_errors=True)
        else:
            for p in sorted(self.listing("/run/containerd") - self.run_containerd_before, key=len, reverse=True):
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                elif os.path.lexists(p):
                    os.unlink(p)
        for h in os.listdir("/sys/fs/cgroup"):
            top = os.path.join("/sys/fs/cgroup", h, self.ctr_ns)
            if os.path.isdir(top):
                for root, dirs, _ in sorted(os.walk(top), key=lambda x: len(x[0]), reverse=True):
                    try:
                        os.rmdir(root)
                    except OSError as e:
                        log(f"cleanup: rmdir {root}: {e}")

    def memory(self):
        self.roots["minid-mem"] = os.path.join(self.work, "root-minid-mem")
        self.roots["conmon-runc"] = os.path.join(self.work, "root-conmon-runc")
        os.makedirs(self.roots["minid-mem"])
        os.makedirs(self.roots["conmon-runc"])
        kinds = [("minid shim", self.minid_start), ("conmon", self.conmon_start)]
        why = self.containerd_up()
        if why is None:
            kinds.append(("containerd-shim-runc-v2", self.containerd_start))
        else:
            log(f"containerd-shim-runc-v2: n/a ({why})")
        pids = {k: [] for k, _ in kinds}
        results = {}
        for target in (1, 4):
            for k, start in kinds:
                while len(pids[k]) < target:
                    pids[k].append(start(f"mem{len(pids[k]) + 1}"))
            time.sleep(1.0)  # settle: let every monitor reach its idle loop
            for k, _ in kinds:
                v = [self.pss_kb(p) for p in pids[k]]
                results[(k, target)] = v
        return results, kinds, why

    # ---------------------------------------------------------------- clean-up
    def delete_all(self, rt):
        r = self.roots.get(rt)
        if not r or not os.path.isdir(r):
            return
        exe = {"minid-mem": "minid", "conmon-runc": "runc"}.get(rt, rt)
        for cid in os.listdir(r):
            if not os.path.isdir(os.path.join(r, cid)):
                continue
            try:
                self.call(exe, self.cmd[exe] + ["--root", r, "delete", "--force", cid])
            except Exception as e:  # noqa: BLE001 - keep cleaning
                log(f"cleanup: delete {rt} {cid}: {e}")

    def cleanup(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.containerd is not None and self.containerd.poll() is None:
            for cid in ("mem1", "mem2", "mem3", "mem4"):
                self.call("ctr", self.ctr + ["task", "kill", "-s", "SIGKILL", cid])
            time.sleep(0.3)
            for cid in ("mem1", "mem2", "mem3", "mem4"):
                self.call("ctr", self.ctr + ["task", "delete", "--force", cid])
                self.call("ctr", self.ctr + ["container", "delete", cid])
            self.containerd.terminate()
            try:
                self.containerd.wait(10)
            except subprocess.TimeoutExpired:
                self.containerd.kill()
                self.containerd.wait()
        if self.containerd is not None:
            self.containerd_leftovers()
        for rt in list(self.roots):
            self.delete_all(rt)
        for pid in self.conmon_pids:  # they leave once their container is gone
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.02)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.enter("own")
        if self.helper is not None:
            self.helper.kill()
            self.helper.wait()
        # Nothing should be mounted under the work dir; unmount anything that is, deepest first.
        with open("/proc/self/mountinfo") as f:
            mnts = [ln.split()[4] for ln in f if ln.split()[4].startswith(self.work + "/")]
        for m in sorted(mnts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        if self.roots_base:
            shutil.rmtree(self.roots_base, ignore_errors=True)
        if self.args.keep_work:
            log(f"work dir kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def versions():
    out = []
    for exe in ("crun", "runc"):
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, env=ENV)
        out.append(r.stdout.splitlines()[0] if r.returncode == 0 and r.stdout else exe + " ?")
    return ", ".join(out)


def fstype(path):
    r = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True, env=ENV)
    return f"{path} ({r.stdout.strip() or '?'})"


def pct(v, p):
    s = sorted(v)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=100)
    ap.add_argument("--minid", required=True)
    ap.add_argument("--out", help="directory for the CSV files (default: a new temp dir)")
    ap.add_argument("--idle", type=float, default=1.0, help="seconds of idle before each cold run")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--keep-work", action="store_true")
    ap.add_argument("--roots-in", help="make the runtimes' --root dirs under this directory "
                    "(default: the work dir under /tmp)")
    args = ap.parse_args()
    signal.signal(signal.SIGINT, on_term)  # also when started in the background (SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    load0 = os.getloadavg()

    b = Bench(args)
    try:
        b.make_bundle()
        b.start_helper()
        b.check_runtimes()
        log(f"warm-up: {args.warmup} rounds")
        b.latency("warmup", args.warmup, 0)
        log(f"warm: {args.n} rounds x {len(b.runtimes)} runtimes, back to back")
        rows = b.latency("warm", args.n, 0)
        if not args.no_cold:
            est = args.n * len(b.runtimes) * (args.idle + 0.05)
            log(f"cold: {args.n} rounds x {len(b.runtimes)} runtimes, {args.idle:g} s idle before each (~{est:.0f} s)")
            rows += b.latency("cold", args.n, args.idle)
        mem = None
        if not args.no_memory:
            log("memory: 1 then 4 containers running `sleep` per monitor")
            mem = b.memory()
    except (KeyboardInterrupt, Terminated) as e:
        log(f"interrupted ({e or 'SIGINT'}); cleaning up")
        b.cleanup()
        sys.exit(130)
    except BaseException:
        try:
            with open(b.errlog) as f:
                log("--- last runtime stderr ---\n" + f.read()[-1500:])
        except OSError:
            pass
        b.cleanup()
        raise
    b.cleanup()
    load1 = os.getloadavg()
    out = args.out or tempfile.mkdtemp(prefix="runtime-bench-results.")
    os.makedirs(out, exist_ok=True)

    with open(os.path.join(out, "latency.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["phase", "iteration", "position", "runtime", "ms"])
        w.writerows(rows)

    phases = ["warm"] + ([] if args.no_cold else ["cold"])
    stats = {}
    for ph in phases:
        for rt in b.runtimes:
            v = [r[4] for r in rows if r[0] == ph and r[3] == rt]
            stats[(ph, rt)] = (statistics.median(v), pct(v, 90))
    print()
    print(f"host: {os.uname().release}, {os.cpu_count()} CPUs, load average {load0[0]:.2f} at start, "
          f"{load1[0]:.2f} at end; crun, runc: {versions()}; --root dirs on "
          f"{fstype(args.roots_in or tempfile.gettempdir())}")
    print(f"Container lifecycle (`RUNTIME run` of busybox /bin/true: create, start, wait, delete), "
          f"N={args.n} per runtime and phase, ms")
    hdr = f"{'runtime':<8}{'warm median':>13}{'warm p90':>10}"
    if "cold" in phases:
        hdr += f"{'cold median':>13}{'cold p90':>10}"
    hdr += f"{'ratio warm':>12}" + (f"{'ratio cold':>12}" if "cold" in phases else "")
    print(hdr)
    for rt in b.runtimes:
        line = f"{rt:<8}{stats[('warm', rt)][0]:>10.1f} ms{stats[('warm', rt)][1]:>7.1f} ms"
        if "cold" in phases:
            line += f"{stats[('cold', rt)][0]:>10.1f} ms{stats[('cold', rt)][1]:>7.1f} ms"
        line += f"{stats[('warm', rt)][0] / stats[('warm', 'crun')][0]:>11.2f}x"
        if "cold" in phases:
            line += f"{stats[('cold', rt)][0] / stats[('cold', 'crun')][0]:>11.2f}x"
        print(line)
    if b.leftovers:
        print(f"WARNING: {b.leftovers} runs left state behind in their --root (deleted afterwards)")
    verdict = []
    for ph in phases:
        r = stats[(ph, "minid")][0] / stats[(ph, "crun")][0]
        verdict.append(f"{ph} {r:.2f}x crun ({'met' if r <= 1.0 else 'NOT met'})")
    print("target minid <= 1.0x crun median: " + ", ".join(verdict))

    if mem is not None:
        results, kinds, why = mem
        print()
        print("Monitor memory: PSS (smaps_rollup) per monitor process while its container sleeps, kB")
        print(f"{'monitor':<25}{'1 running':>11}{'4 running (each)':>26}{'4 running (mean)':>18}")
        memrows = []
        for k in ("minid shim", "conmon", "containerd-shim-runc-v2"):
            if (k, 1) in results:
                one, four = results[(k, 1)][0], results[(k, 4)]
                print(f"{k:<25}{one:>8} kB{' '.join(str(x) for x in four):>26}{statistics.mean(four):>15.0f} kB")
                memrows.append([k, 1, one])
                memrows += [[k, 4, x] for x in four]
            else:
                print(f"{k:<25}  n/a ({why})")
        if ("conmon", 1) in results:
            m1, c1 = results[("minid shim", 1)][0], results[("conmon", 1)][0]
            m4 = statistics.mean(results[("minid shim", 4)])
            c4 = statistics.mean(results[("conmon", 4)])
            ok = m1 <= c1 and m4 <= c4
            print(f"target minid shim PSS <= conmon: 1 running {m1} vs {c1} kB, 4 running {m4:.0f} vs "
                  f"{c4:.0f} kB ({'met' if ok else 'NOT met'})")
        with open(os.path.join(out, "memory.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["monitor", "containers_running", "pss_kb"])
            w.writerows(memrows)
    for note in b.notes:
        print()
        print("NOTE: " + note)
    print()
    print(f"raw numbers: {out}/latency.csv" + ("" if mem is None else f", {out}/memory.csv"))


if __name__ == "__main__":
    main()
