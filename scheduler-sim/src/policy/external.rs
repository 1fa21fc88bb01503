//! External policies: `--policy exec:PROGRAM` places tasks by asking a separate program, over
//! a line protocol on its stdin and stdout. This is the one part of the policy library that
//! does I/O (it starts a process and reads a clock for timeouts); everything else stays pure.
//! It uses std threads and pipes only (no async runtime), so `minictl` can use it as is.
//!
//! # Starting the program
//!
//! `PROGRAM` is split on whitespace into argv, with no shell: `exec:./my.py --k 3` runs
//! `./my.py` with the arguments `--k` and `3`; quotes, `$VARS`, globs and pipes mean nothing.
//! A first word containing `/` is a path (relative to the working directory), otherwise it is
//! looked up in `PATH`. The program is started **once per run**, with stdin and stdout piped
//! and stderr inherited (its diagnostics show on the terminal).
//!
//! # Protocol, version 1 ([`VERSION`])
//!
//! Every message is one JSON object on one line (UTF-8, `\n`-terminated). Readers must ignore
//! fields they do not know: later minor additions keep the version number; incompatible
//! changes raise it.
//!
//! 1. minisim sends a hello, once: `{"protocol":"minisim-policy","version":1,"seed":7}`
//!    (`seed` is the run's `--seed`; a program drawing random numbers should seed from it so a
//!    run stays reproducible). The program does not answer it; a program that does not speak
//!    this version should print why on stderr and exit.
//! 2. For every decision with at least one feasible node, minisim sends a request
//!    ([`Request`]): `{"decision":N,"task":{...},"nodes":[...]}`. `decision` counts requests
//!    from 1. `nodes` lists only the nodes that passed minisim's built-in filters (resources,
//!    GPU model, labels and constraints, readiness, max-per-node), in node-index order: the
//!    filters stay hard constraints that minisim enforces; the program only ranks. A decision
//!    with no feasible node is not sent (it is "no placement" without asking).
//! 3. The program answers each request with one line: `{"node":INDEX}`, where `INDEX` is the
//!    `index` of one of the listed nodes, or `{"node":null}` to leave the task unplaced (it
//!    then waits like any task no node fits).
//!
//! An answer naming a node not in the list, a line that is not such an object, the program
//! closing stdout or exiting, or no answer within the timeout ([`DEFAULT_TIMEOUT`] per
//! decision unless configured) is an [`ExternalError`] naming the program and the decision:
//! the run stops with it. At the end of a run minisim closes the program's stdin and waits
//! [`SHUTDOWN_GRACE`] for it to exit, then kills it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::resources::{Node, Resources, Task};

/// The protocol's name, sent in the hello.
pub const PROTOCOL: &str = "minisim-policy";
/// The protocol version this client speaks.
pub const VERSION: u32 = 1;
/// How long one decision may take unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a program may take to exit after its stdin is closed before it is killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The `--policy` prefix naming an external program.
pub const EXEC_PREFIX: &str = "exec:";
/// Answers longer than this are malformed (protects against a program writing without end).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// An external program to run as a policy: `exec:PROGRAM` parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecSpec {
    /// `PROGRAM` as given (for messages).
    pub program: String,
    /// `PROGRAM` split on whitespace; never empty.
    pub argv: Vec<String>,
    /// Per-decision answer timeout.
    pub timeout: Duration,
}

impl ExecSpec {
    /// Parses `PROGRAM` (without the `exec:` prefix).
    pub fn parse(program: &str) -> Result<Self, ExternalError> {
        let argv: Vec<String> = program.split_whitespace().map(str::to_string).collect();
        if argv.is_empty() {
            return Err(ExternalError::EmptyProgram);
        }
        Ok(Self {
            program: program.trim().to_string(),
            argv,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The program's file name (the last path component of the first word): the policy's
    /// name in reports and `compare` tables.
    pub fn name(&self) -> &str {
        let first = self.argv.first().map_or("", String::as_str);
        first.rsplit('/').find(|s| !s.is_empty()).unwrap_or(first)
    }
}

impl fmt::Display for ExecSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{EXEC_PREFIX}{}", self.program)
    }
}

/// What went wrong in one decision.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    #[error("answered node {index}, which is not one of the {feasible} feasible nodes sent")]
    Infeasible { index: u64, feasible: usize },
    #[error(
        "malformed answer {line:?}: {reason} (expected {{\"node\": INDEX}} or {{\"node\": null}})"
    )]
    Malformed { line: String, reason: String },
    #[error("closed its stdout without answering ({status})")]
    Eof { status: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("reading its answer: {0}")]
    Read(String),
}

/// An external policy's failure: the run stops with it.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExternalError {
    #[error("exec: policy needs a program, as in exec:./policy.py")]
    EmptyProgram,
    #[error("policy program {program:?}: cannot start it: {reason}")]
    Spawn { program: String, reason: String },
    #[error("policy program {program:?}, decision {decision}: {problem}")]
    Decision {
        program: String,
        decision: u64,
        problem: Problem,
    },
}

/// The hello, minisim's first line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hello {
    pub protocol: &'static str,
    pub version: u32,
    pub seed: u64,
}

impl Hello {
    pub fn new(seed: u64) -> Self {
        Self {
            protocol: PROTOCOL,
            version: VERSION,
            seed,
        }
    }
}

/// A task's request as sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskRequest {
    pub cpu_milli: u64,
    pub memory_mib: u64,
    /// Number of GPU devices, each needing `gpu_milli` free.
    pub num_gpu: u32,
    /// Share of each GPU in milli-GPUs (1000 = a whole device).
    pub gpu_milli: u32,
    /// Processes (0: none asked).
    pub pids: u64,
}

/// A max-per-node rule as sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaxPerNodeView<'a> {
    pub label: &'a str,
    pub max: u32,
}

/// The task of a request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskView<'a> {
    pub name: &'a str,
    pub request: TaskRequest,
    /// Allowed GPU models; empty means any.
    pub gpu_models: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
    /// Constraints in their text form (`k=v`, `k!=v`, `k in a,b`, `k exists`).
    pub constraints: Vec<String>,
    pub max_per_node: Option<MaxPerNodeView<'a>>,
    /// Host ports the task publishes (`8080/tcp`).
    pub ports: Vec<String>,
}

impl<'a> TaskView<'a> {
    pub fn new(task: &'a Task) -> Self {
        Self {
            name: &task.name,
            request: TaskRequest {
                cpu_milli: task.cpu_milli,
                memory_mib: task.memory_mib,
                num_gpu: task.num_gpu,
                gpu_milli: task.gpu_milli,
                pids: task.pids,
            },
            ports: task.ports.iter().map(|p| p.to_string()).collect(),
            gpu_models: &task.gpu_models,
            labels: &task.labels,
            constraints: task.constraints.iter().map(|c| c.to_string()).collect(),
            max_per_node: task.max_per_node.as_ref().map(|m| MaxPerNodeView {
                label: &m.label,
                max: m.max,
            }),
        }
    }
}

/// One feasible node of a request. Resources are `{"cpu_milli","memory_mib","gpu_milli"}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeView<'a> {
    /// The node's index: what the answer names.
    pub index: usize,
    pub name: &'a str,
    pub capacity: Resources,
    pub allocated: Resources,
    pub free: Resources,
    pub labels: &'a BTreeMap<String, String>,
    pub gpu_model: Option<&'a str>,
    /// Free milli-GPUs of each device, in device order (each device holds 1000).
    pub gpus: Vec<u32>,
    pub ready: bool,
    /// Tasks running on the node.
    pub tasks: u32,
}

impl<'a> NodeView<'a> {
    pub fn new(index: usize, node: &'a Node) -> Self {
        Self {
            index,
            name: &node.name,
            capacity: node.capacity,
            allocated: node.allocated,
            free: node.free(),
            labels: &node.labels,
            gpu_model: node.gpu_model.as_deref(),
            gpus: (0..node.gpus.len()).map(|i| node.gpu_free(i)).collect(),
            ready: node.ready,
            tasks: node.tasks,
        }
    }
}

/// One decision's request line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request<'a> {
    pub decision: u64,
    pub task: TaskView<'a>,
    pub nodes: Vec<NodeView<'a>>,
}

impl<'a> Request<'a> {
    /// The request for `task`, listing `feasible` (indices into `nodes`).
    pub fn new(decision: u64, nodes: &'a [Node], task: &'a Task, feasible: &[usize]) -> Self {
        Self {
            decision,
            task: TaskView::new(task),
            nodes: feasible
                .iter()
                .filter_map(|&i| nodes.get(i).map(|n| NodeView::new(i, n)))
                .collect(),
        }
    }
}

/// Appends `msg` as one JSON line to `out`.
pub fn encode_line(msg: &impl Serialize, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    serde_json::to_writer(&mut *out, msg)?;
    out.push(b'\n');
    Ok(())
}

/// Decodes an answer line: `Ok(Some(index))`, `Ok(None)` for `{"node": null}`.
pub fn decode_answer(line: &str) -> Result<Option<u64>, Problem> {
    let malformed = |reason: &str| Problem::Malformed {
        line: line.trim_end().chars().take(200).collect(),
        reason: reason.to_string(),
    };
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| malformed(&format!("not JSON ({e})")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| malformed("not a JSON object"))?;
    match obj.get("node") {
        None => Err(malformed("no \"node\" field")),
        Some(serde_json::Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| malformed("\"node\" is not a non-negative integer or null")),
    }
}

/// Checks an answer against the feasible set (sorted node indices).
pub fn validate(answer: Option<u64>, feasible: &[usize]) -> Result<Option<usize>, Problem> {
    match answer {
        None => Ok(None),
        Some(index) => usize::try_from(index)
            .ok()
            .filter(|i| feasible.binary_search(i).is_ok())
            .map(Some)
            .ok_or(Problem::Infeasible {
                index,
                feasible: feasible.len(),
            }),
    }
}

/// What the reader thread passes on.
enum Incoming {
    Line(String),
    TooLong,
    Eof,
    Error(String),
}

/// A running external policy program.
pub struct ExternalPolicy {
    spec: ExecSpec,
    child: Child,
    to_child: Option<SyncSender<Vec<u8>>>,
    from_child: Receiver<Incoming>,
    decisions: u64,
    /// After an error the program is stopped and every further call fails the same way.
    failed: Option<ExternalError>,
    buf: Vec<u8>,
}

impl fmt::Debug for ExternalPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalPolicy")
            .field("spec", &self.spec)
            .field("decisions", &self.decisions)
            .finish_non_exhaustive()
    }
}

impl ExternalPolicy {
    /// Starts the program and sends the hello.
    pub fn start(spec: &ExecSpec, seed: u64) -> Result<Self, ExternalError> {
        let spawn_err = |reason: String| ExternalError::Spawn {
            program: spec.program.clone(),
            reason,
        };
        let (prog, args) = spec.argv.split_first().ok_or(ExternalError::EmptyProgram)?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| spawn_err(e.to_string()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err("no pipes".into()));
        };
        // A writer thread, so a program that stops reading cannot block us (the timeout
        // still applies), and a reader thread, so reads can time out. Both end when the
        // program's pipes close; neither is joined, so neither can hang a shutdown.
        let (to_child, rx) = mpsc::sync_channel::<Vec<u8>>(1);
        let (tx, from_child) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("policy-writer".into())
            .spawn(move || writer(stdin, rx))
            .and_then(|_| {
                std::thread::Builder::new()
                    .name("policy-reader".into())
                    .spawn(move || reader(stdout, tx))
            });
        if let Err(e) = spawned {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err(e.to_string()));
        }
        let p = Self {
            spec: spec.clone(),
            child,
            to_child: Some(to_child),
            from_child,
            decisions: 0,
            failed: None,
            buf: Vec::new(),
        };
        let mut hello = Vec::new();
        if encode_line(&Hello::new(seed), &mut hello).is_ok() {
            // A failed send means the writer is gone: the first decision reports why.
            if let Some(tx) = &p.to_child {
                let _ = tx.send(hello);
            }
        }
        Ok(p)
    }

    /// The program's spec.
    pub fn spec(&self) -> &ExecSpec {
        &self.spec
    }

    /// Requests sent so far.
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    /// Asks the program to choose among `feasible` (sorted indices into `nodes`). An empty
    /// `feasible` is `Ok(None)` without asking.
    pub fn choose(
        &mut self,
        nodes: &[Node],
        task: &Task,
        feasible: &[usize],
    ) -> Result<Option<usize>, ExternalError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if feasible.is_empty() {
            return Ok(None);
        }
        self.decisions += 1;
        let decision = self.decisions;
        match self.exchange(nodes, task, feasible) {
            Ok(n) => Ok(n),
            Err(problem) => {
                // Unresponsive programs are killed at once; the others get the grace period.
                if matches!(problem, Problem::Timeout(_)) {
                    let _ = self.child.kill();
                }
                self.shutdown();
                let e = ExternalError::Decision {
                    program: self.spec.program.clone(),
                    decision,
                    problem,
                };
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn exchange(
        &mut self,
        nodes: &[Node],
        task: &Task,
        feasible: &[usize],
    ) -> Result<Option<usize>, Problem> {
        let deadline = Instant::now() + self.spec.timeout;
        let mut line = std::mem::take(&mut self.buf);
        line.clear();
        encode_line(
            &Request::new(self.decisions, nodes, task, feasible),
            &mut line,
        )
        .map_err(|e| Problem::Read(format!("encoding the request: {e}")))?;
        let sent = match &self.to_child {
            Some(tx) => send_until(tx, line, deadline),
            None => Err(SendFailure::Closed),
        };
        match sent {
            Ok(()) => {}
            Err(SendFailure::Closed) => return Err(self.eof()),
            Err(SendFailure::Timeout) => return Err(Problem::Timeout(self.spec.timeout)),
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.from_child.recv_timeout(wait) {
            Ok(Incoming::Line(l)) => validate(decode_answer(&l)?, feasible),
            Ok(Incoming::TooLong) => Err(Problem::Malformed {
                line: String::new(),
                reason: format!("longer than {MAX_ANSWER_BYTES} bytes"),
            }),
            Ok(Incoming::Error(e)) => Err(Problem::Read(e)),
            Ok(Incoming::Eof) | Err(RecvTimeoutError::Disconnected) => Err(self.eof()),
            Err(RecvTimeoutError::Timeout) => Err(Problem::Timeout(self.spec.timeout)),
        }
    }

    /// The EOF problem, with the exit status when the program exits soon.
    fn eof(&mut self) -> Problem {
        let status = wait_for(&mut self.child, Duration::from_millis(500))
            .map_or_else(|| "still running".to_string(), |s| s.to_string());
        Problem::Eof { status }
    }

    /// Closes the program's stdin, waits [`SHUTDOWN_GRACE`] for it to exit, then kills it.
    /// Returns its exit status (`None` when it had to be killed). Idempotent.
    pub fn shutdown(&mut self) -> Option<ExitStatus> {
        self.to_child = None;
        if let Some(s) = wait_for(&mut self.child, SHUTDOWN_GRACE) {
            return Some(s);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl super::stack::Chooser for ExternalPolicy {
    fn name(&self) -> &str {
        self.spec.name()
    }

    fn choose(
        &mut self,
        nodes: &[Node],
        task: &Task,
        feasible: &[usize],
    ) -> Result<Option<usize>, ExternalError> {
        ExternalPolicy::choose(self, nodes, task, feasible)
    }
}

impl Drop for ExternalPolicy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

enum SendFailure {
    Closed,
    Timeout,
}

/// Hands `line` to the writer thread (whose queue holds one line) before `deadline`.
fn send_until(
    tx: &SyncSender<Vec<u8>>,
    mut line: Vec<u8>,
    deadline: Instant,
) -> Result<(), SendFailure> {
    loop {
        match tx.try_send(line) {
            Ok(()) => return Ok(()),
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(SendFailure::Closed),
            Err(mpsc::TrySendError::Full(l)) => {
                if Instant::now() >= deadline {
                    return Err(SendFailure::Timeout);
                }
                line = l;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Waits up to `limit` for `child` to exit.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

fn writer(mut stdin: ChildStdin, rx: Receiver<Vec<u8>>) {
    for line in rx {
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            return;
        }
    }
    // The sender is gone: dropping stdin closes the program's input.
}

fn reader(stdout: ChildStdout, tx: mpsc::Sender<Incoming>) {
    let mut r = BufReader::new(stdout);
    loop {
        let mut buf = Vec::new();
        let msg = match Read::by_ref(&mut r)
            .take(MAX_ANSWER_BYTES + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) => Incoming::Eof,
            Ok(n) if n as u64 > MAX_ANSWER_BYTES => Incoming::TooLong,
            Ok(_) => match String::from_utf8(buf) {
                Ok(s) => Incoming::Line(s),
                Err(_) => Incoming::Error("the answer is not UTF-8".into()),
            },
            Err(e) => Incoming::Error(e.to_string()),
        };
        let last = !matches!(msg, Incoming::Line(_));
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Constraint;

    #[test]
    fn spec_splits_on_whitespace_and_names_the_file() {
        let s = ExecSpec::parse("  ./examples/policies/most_free_gpu.py  --k 3 ").unwrap();
        assert_eq!(s.argv, ["./examples/policies/most_free_gpu.py", "--k", "3"]);
        assert_eq!(s.name(), "most_free_gpu.py");
        assert_eq!(s.program, "./examples/policies/most_free_gpu.py  --k 3");
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(ExecSpec::parse("policy").unwrap().name(), "policy");
        assert_eq!(ExecSpec::parse(" \t"), Err(ExternalError::EmptyProgram));
    }

    #[test]
    fn hello_and_request_encoding() {
        let mut out = Vec::new();
        encode_line(&Hello::new(7), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"protocol\":\"minisim-policy\",\"version\":1,\"seed\":7}\n"
        );

        let mut g = Node::new("g", 8000, 16384, 2, Some("T4")).with_label("zone", "a");
        g.allocate(&Task::new("x", 1000, 1024).with_gpus(1, 300))
            .unwrap();
        let nodes = vec![Node::new("c", 4000, 4096, 0, None), g];
        let task = Task::new("t", 500, 256)
            .with_gpus(1, 500)
            .with_gpu_models(&["T4"])
            .with_label("app", "web")
            .with_constraint("zone in a,b".parse::<Constraint>().unwrap())
            .with_max_per_node("app", 1);
        let mut out = Vec::new();
        encode_line(&Request::new(3, &nodes, &task, &[1]), &mut out).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        assert_eq!(
            line.trim_end(),
            concat!(
                r#"{"decision":3,"task":{"name":"t","request":{"cpu_milli":500,"memory_mib":256,"num_gpu":1,"gpu_milli":500,"pids":0},"#,
                r#""gpu_models":["T4"],"labels":{"app":"web"},"constraints":["zone in a,b"],"max_per_node":{"label":"app","max":1},"ports":[]},"#,
                r#""nodes":[{"index":1,"name":"g","capacity":{"cpu_milli":8000,"memory_mib":16384,"gpu_milli":2000,"pids":0},"#,
                r#""allocated":{"cpu_milli":1000,"memory_mib":1024,"gpu_milli":300,"pids":0},"free":{"cpu_milli":7000,"memory_mib":15360,"gpu_milli":1700,"pids":0},"#,
                r#""labels":{"gpu.model":"T4","zone":"a"},"gpu_model":"T4","gpus":[700,1000],"ready":true,"tasks":1}]}"#
            )
        );
    }

    #[test]
    fn answers_decode_and_validate() {
        assert_eq!(decode_answer("{\"node\": 4}\n"), Ok(Some(4)));
        assert_eq!(decode_answer("{\"node\":null}"), Ok(None));
        assert_eq!(decode_answer("{\"node\":2,\"why\":\"x\"}"), Ok(Some(2)));
        for (bad, why) in [
            ("hello", "not JSON"),
            ("[1]", "not a JSON object"),
            ("{}", "no \"node\" field"),
            ("{\"node\":-1}", "non-negative integer"),
            ("{\"node\":1.5}", "non-negative integer"),
            ("{\"node\":\"1\"}", "non-negative integer"),
            ("", "not JSON"),
        ] {
            let e = decode_answer(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with("malformed answer"), "{e}");
        }
        assert_eq!(validate(Some(3), &[1, 3, 5]), Ok(Some(3)));
        assert_eq!(validate(None, &[1]), Ok(None));
        assert_eq!(
            validate(Some(2), &[1, 3, 5]),
            Err(Problem::Infeasible {
                index: 2,
                feasible: 3
            })
        );
        assert!(validate(Some(u64::MAX), &[1]).is_err());
    }

    #[test]
    fn errors_name_the_program_and_the_decision() {
        let e = ExternalError::Decision {
            program: "./p.py".into(),
            decision: 12,
            problem: Problem::Timeout(Duration::from_millis(300)),
        };
        assert_eq!(
            e.to_string(),
            "policy program \"./p.py\", decision 12: no answer within 300ms"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let s = ExecSpec::parse("/nonexistent/policy-program").unwrap();
        let e = ExternalPolicy::start(&s, 0).unwrap_err().to_string();
        assert!(
            e.starts_with("policy program \"/nonexistent/policy-program\": cannot start it"),
            "{e}"
        );
    }

    /// A shell stand-in for a policy (the integration tests run the Python example).
    #[cfg(unix)]
    fn sh(script: &str, timeout_ms: u64) -> ExternalPolicy {
        let spec = ExecSpec {
            program: "sh -c <script>".into(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
        };
        ExternalPolicy::start(&spec, 1).unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn a_well_behaved_program_answers_and_shuts_down() {
        let nodes = vec![
            Node::new("a", 1000, 1000, 0, None),
            Node::new("b", 1000, 1000, 0, None),
        ];
        let t = Task::new("t", 1, 1);
        // Reads the hello, then answers "node 1", then "null", then exits on EOF.
        let mut p = sh(
            "read h; read r; echo '{\"node\":1}'; read r; echo '{\"node\":null}'; cat >/dev/null",
            5000,
        );
        assert_eq!(p.choose(&nodes, &t, &[0, 1]), Ok(Some(1)));
        assert_eq!(p.choose(&nodes, &t, &[]), Ok(None), "not sent");
        assert_eq!(p.choose(&nodes, &t, &[0]), Ok(None));
        assert_eq!(p.decisions(), 2);
        let s = p.shutdown();
        assert!(s.is_some_and(|s| s.success()), "{s:?}");
    }

    #[cfg(unix)]
    #[test]
    fn misbehaving_programs_give_clear_errors() {
        let nodes = vec![Node::new("a", 1000, 1000, 0, None)];
        let t = Task::new("t", 1, 1);
        let cases = [
            (
                "read h; read r; echo '{\"node\":7}'",
                "decision 1: answered node 7",
            ),
            (
                "read h; read r; echo garbage",
                "decision 1: malformed answer \"garbage\"",
            ),
            (
                "exit 3",
                "decision 1: closed its stdout without answering (exit status: 3)",
            ),
            ("read h; exec sleep 5", "decision 1: no answer within 200ms"),
        ];
        for (script, want) in cases {
            let start = Instant::now();
            let mut p = sh(script, 200);
            let e = p.choose(&nodes, &t, &[0]).unwrap_err().to_string();
            assert!(e.contains(want), "{script}: {e}");
            assert!(e.starts_with("policy program \"sh -c <script>\""), "{e}");
            // Later calls fail the same way without asking again.
            assert_eq!(p.choose(&nodes, &t, &[0]).unwrap_err().to_string(), e);
            assert!(start.elapsed() < Duration::from_secs(4), "{script}");
        }
    }
}
