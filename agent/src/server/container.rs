//! ContainerService: decode, check the caller's role, delegate to [`Daemon`], encode.
//!
//! Streams (logs, stats, events, list) are fed from their own task or blocking thread through
//! a bounded channel; when the client goes away the send fails and the producer stops.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::Stream;
use mini_proto::v1 as pb;
use mini_proto::v1::container_service_server::ContainerService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth;
use super::convert;
use super::status::to_status;
use crate::daemon::{self, logs, Daemon};
use crate::engine::error::EngineError;

pub struct Containers {
    pub daemon: Arc<Daemon>,
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn err(op: bool) -> impl Fn(EngineError) -> Status {
    move |e| to_status(e, op)
}

/// Runs a lifecycle change to its end even if the client goes away: tonic drops the future of
/// a cancelled call, and a create, start or remove stopped half-way would leave the node's
/// state inconsistent (a reserved name, a started container nobody supervises, a removed
/// directory still listed).
async fn to_end<T, F>(f: F) -> Result<T, EngineError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
{
    use tracing::Instrument;
    tokio::spawn(f.in_current_span())
        .await
        .unwrap_or_else(|e| Err(EngineError::Other(format!("the operation failed: {e}"))))
}

fn container_arg(c: &str) -> Result<&str, Status> {
    if c.is_empty() {
        Err(Status::invalid_argument("no container given"))
    } else if c.len() > 256 {
        Err(Status::invalid_argument("container name or id is too long"))
    } else {
        Ok(c)
    }
}

#[tonic::async_trait]
impl ContainerService for Containers {
    #[tracing::instrument(skip_all, fields(name = %req.get_ref().name))]
    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        auth::operator(&req, "create")?;
        let r = req.into_inner();
        let cfg = r
            .config
            .ok_or_else(|| Status::invalid_argument("no container config given"))?;
        let cfg = convert::config_from_pb(cfg).map_err(err(true))?;
        let d = self.daemon.clone();
        let id = to_end(async move { d.create(r.name, cfg).await })
            .await
            .map_err(err(true))?;
        Ok(Response::new(pb::CreateResponse {
            id,
            warnings: Vec::new(),
        }))
    }

    #[tracing::instrument(skip_all, fields(container = %req.get_ref().container))]
    async fn start(
        &self,
        req: Request<pb::StartRequest>,
    ) -> Result<Response<pb::StartResponse>, Status> {
        auth::operator(&req, "start")?;
        let c = container_arg(&req.get_ref().container)?.to_string();
        let d = self.daemon.clone();
        let pid = to_end(async move { d.start(&c).await })
            .await
            .map_err(err(true))?;
        Ok(Response::new(pb::StartResponse { pid }))
    }

    #[tracing::instrument(skip_all, fields(container = %req.get_ref().container))]
    async fn stop(
        &self,
        req: Request<pb::StopRequest>,
    ) -> Result<Response<pb::StopResponse>, Status> {
        auth::operator(&req, "stop")?;
        let r = req.into_inner();
        let c = container_arg(&r.container)?.to_string();
        let d = self.daemon.clone();
        to_end(async move { d.stop(&c, r.timeout_secs, &r.signal).await })
            .await
            .map_err(err(true))?;
        Ok(Response::new(pb::StopResponse {}))
    }

    #[tracing::instrument(skip_all, fields(container = %req.get_ref().container))]
    async fn kill(
        &self,
        req: Request<pb::KillRequest>,
    ) -> Result<Response<pb::KillResponse>, Status> {
        auth::operator(&req, "kill")?;
        let r = req.get_ref();
        self.daemon
            .kill(container_arg(&r.container)?, &r.signal, r.all)
            .await
            .map_err(err(true))?;
        Ok(Response::new(pb::KillResponse {}))
    }

    #[tracing::instrument(skip_all, fields(container = %req.get_ref().container))]
    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        auth::operator(&req, "remove")?;
        let r = req.into_inner();
        let c = container_arg(&r.container)?.to_string();
        let d = self.daemon.clone();
        let removed = to_end(async move { d.remove(&c, r.force).await })
            .await
            .map_err(err(true))?;
        Ok(Response::new(pb::RemoveResponse {
            not_found: removed.is_none(),
            id: removed.unwrap_or_default(),
        }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::ContainerInfo>, Status> {
        let p = auth::peer(&req)?;
        let e = self
            .daemon
            .find(container_arg(&req.get_ref().container)?)
            .map_err(err(p.may_mutate()))?;
        let v = self.daemon.view(&e);
        Ok(Response::new(convert::info(
            &v,
            &self.daemon.cfg.node_name,
            &self.daemon,
        )))
    }

    type ListStream = Stream_<pb::ContainerInfo>;

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let p = auth::peer(&req)?;
        let r = req.into_inner();
        let d = self.daemon.clone();
        let views = daemon::blocking(move || {
            let mut out = Vec::new();
            for e in d.entries() {
                let v = d.view(&e);
                if (r.all || matches!(v.status, "running" | "paused" | "restarting"))
                    && convert::matches(&v, &r.filters)?
                {
                    out.push(v);
                }
            }
            Ok(out)
        })
        .await
        .map_err(err(p.may_mutate()))?;
        let node = self.daemon.cfg.node_name.clone();
        let mut views = views;
        views.sort_by(|a, b| b.meta.created_at.cmp(&a.meta.created_at));
        let items: Vec<Result<pb::ContainerInfo, Status>> = views
            .iter()
            .map(|v| Ok(convert::info(v, &node, &self.daemon)))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    #[tracing::instrument(skip_all, fields(container = %req.get_ref().container))]
    async fn wait(
        &self,
        req: Request<pb::WaitRequest>,
    ) -> Result<Response<pb::WaitResponse>, Status> {
        let p = auth::peer(&req)?;
        let r = req.get_ref();
        let exit = self
            .daemon
            .wait(container_arg(&r.container)?, &r.condition)
            .await
            .map_err(err(p.may_mutate()))?;
        let Some(x) = exit else {
            // Never started, or its end was not recorded (its shim died): no code to report.
            return Ok(Response::new(pb::WaitResponse {
                exit_code: 0,
                signal: 0,
                oom_killed: false,
                error: "the container's exit is unknown (never started, or its shim died)".into(),
            }));
        };
        Ok(Response::new(pb::WaitResponse {
            exit_code: x.code,
            signal: x.signal,
            oom_killed: x.oom_killed,
            error: String::new(),
        }))
    }

    type LogsStream = Stream_<pb::LogsResponse>;

    #[tracing::instrument(skip_all, fields(container = %req.get_ref().container))]
    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let p = auth::peer(&req)?;
        let r = req.into_inner();
        let e = self
            .daemon
            .find(container_arg(&r.container)?)
            .map_err(err(p.may_mutate()))?;
        let now = SystemTime::now();
        let bound = |s: &str, what: &str| -> Result<Option<String>, Status> {
            if s.is_empty() {
                return Ok(None);
            }
            logs::parse_time(s, now)
                .map(|t| Some(logs::format_time(t)))
                .map_err(|m| Status::invalid_argument(format!("--{what}: {m}")))
        };
        let q = logs::Query {
            follow: r.follow,
            tail: match r.tail {
                Some(n) if n >= 0 => Some(n as usize),
                _ => None,
            },
            since: bound(&r.since, "since")?,
            until: bound(&r.until, "until")?,
            stdout: r.stdout,
            stderr: r.stderr,
        };
        Ok(Response::new(follow_log(&self.daemon, &e.id, q)))
    }

    type StartAttachedStream = Stream_<pb::LogsResponse>;

    #[tracing::instrument(skip_all, fields(container = %req.get_ref().container))]
    async fn start_attached(
        &self,
        req: Request<pb::StartRequest>,
    ) -> Result<Response<Self::StartAttachedStream>, Status> {
        auth::operator(&req, "start")?;
        let e = self
            .daemon
            .find(container_arg(&req.get_ref().container)?)
            .map_err(err(true))?;
        // The follower reads from the log's first entry: nothing the container writes once
        // started is missed. A failed start drops the stream, which ends the follower.
        let stream = follow_log(
            &self.daemon,
            &e.id,
            logs::Query {
                follow: true,
                tail: None,
                since: None,
                until: None,
                stdout: false,
                stderr: false,
            },
        );
        let d = self.daemon.clone();
        let id = e.id.clone();
        to_end(async move { d.start(&id).await })
            .await
            .map_err(err(true))?;
        Ok(Response::new(stream))
    }

    type StatsStream = Stream_<pb::StatsResponse>;

    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<Self::StatsStream>, Status> {
        let p = auth::peer(&req)?;
        let r = req.into_inner();
        let d = self.daemon.clone();
        // Resolve named containers now, so a typo is an error and not an empty stream.
        let mut named = Vec::new();
        for c in &r.containers {
            named.push(d.find(c).map_err(err(p.may_mutate()))?);
        }
        let interval = Duration::from_millis(if r.interval_ms == 0 {
            1000
        } else {
            r.interval_ms.max(100) as u64
        });
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let d2 = d.clone();
                let named2 = named.clone();
                let filters = r.filters.clone();
                let sample = daemon::blocking(move || {
                    let entries = if named2.is_empty() {
                        d2.entries()
                    } else {
                        named2
                    };
                    let mut out = Vec::new();
                    for e in entries {
                        let v = d2.view(&e);
                        if !matches!(v.status, "running" | "paused") {
                            continue;
                        }
                        if !convert::matches(&v, &filters)? {
                            continue;
                        }
                        if let Ok((s, net)) = d2.stats(&e) {
                            out.push(convert::stats(&v, &s, net));
                        }
                    }
                    Ok(out)
                })
                .await;
                let msg = match sample {
                    Ok(stats) => Ok(pb::StatsResponse { stats }),
                    Err(e) => Err(to_status(e, false)),
                };
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed || r.one_shot {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ExecStream = Stream_<pb::ExecResponse>;

    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        auth::operator(&req, "exec")?;
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(pb::ExecRequest {
                msg: Some(pb::exec_request::Msg::Start(s)),
            }) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first Exec message must be start",
                ))
            }
        };
        let (tx, rx) = mpsc::channel(16);
        let d = self.daemon.clone();
        let err_tx = tx.clone();
        tokio::spawn(async move {
            if let Err(s) = super::exec::run(d, start, input, tx).await {
                let _ = err_tx.send(Err(s)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all)]
    async fn attach(
        &self,
        req: Request<Streaming<pb::AttachRequest>>,
    ) -> Result<Response<pb::AttachResponse>, Status> {
        use pb::attach_request::Msg;
        use tokio::io::AsyncWriteExt;
        auth::operator(&req, "attach")?;
        let mut input = req.into_inner();
        let key = match input.message().await? {
            Some(pb::AttachRequest {
                msg: Some(Msg::Container(c)),
            }) => c,
            _ => {
                return Err(Status::invalid_argument(
                    "the first Attach message must name the container",
                ))
            }
        };
        let e = self.daemon.find(container_arg(&key)?).map_err(err(true))?;
        let m = e.meta();
        if !m.config.open_stdin {
            return Err(Status::failed_precondition(format!(
                "container {} was not created with an open stdin (-i)",
                m.name
            )));
        }
        let dir = self.daemon.rt.dir(&e.id);
        let closed = || {
            Status::failed_precondition(format!(
                "the stdin of container {} is closed (it ends when its first client leaves)",
                m.name
            ))
        };
        let mut stdin = Some(
            tokio::net::unix::pipe::OpenOptions::new()
                .open_sender(dir.join(crate::shim::monitor::STDIN_FIFO))
                .map_err(|_| closed())?,
        );
        let ctl_path = dir.join(crate::shim::monitor::CTL_FIFO);
        while let Some(msg) = input.message().await? {
            match msg.msg {
                Some(Msg::Stdin(b)) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&b).await.is_err() {
                            return Err(closed());
                        }
                    }
                }
                Some(Msg::StdinClose(true)) => stdin = None,
                Some(Msg::Resize(sz)) => {
                    let line = format!("resize {} {}\n", sz.rows, sz.cols);
                    if let Ok(mut c) =
                        tokio::net::unix::pipe::OpenOptions::new().open_sender(&ctl_path)
                    {
                        let _ = c.write_all(line.as_bytes()).await;
                    }
                }
                _ => {}
            }
        }
        Ok(Response::new(pb::AttachResponse {}))
    }

    type EventsStream = Stream_<pb::Event>;

    async fn events(
        &self,
        req: Request<pb::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        auth::peer(&req)?;
        let r = req.into_inner();
        let since = if r.since.is_empty() {
            None
        } else {
            Some(logs::format_time(
                logs::parse_time(&r.since, SystemTime::now()).map_err(Status::invalid_argument)?,
            ))
        };
        let filters = r.filters;
        for f in &filters {
            match f.split_once('=') {
                Some(("container" | "event" | "label" | "image", _)) => {}
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "event filter {f:?} is not container=, event=, image= or label="
                    )))
                }
            }
        }
        let d = self.daemon.clone();
        let wanted = move |e: &daemon::Event| {
            filters.iter().all(|f| match f.split_once('=') {
                Some(("container", v)) => e.id.starts_with(v) || e.name == v,
                Some(("event", v)) => e.action == v,
                Some(("image", v)) => e.image == v,
                Some(("label", v)) => d
                    .find(&e.id)
                    .map(|x| {
                        let m = x.meta();
                        match v.split_once('=') {
                            Some((k, val)) => m.config.labels.get(k).is_some_and(|x| x == val),
                            None => m.config.labels.contains_key(v),
                        }
                    })
                    .unwrap_or(false),
                _ => false,
            })
        };
        let (past, mut live) = self.daemon.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            if let Some(s) = since {
                for e in past.iter().filter(|e| e.time >= s) {
                    if wanted(e) && tx.send(Ok(convert::event(e))).await.is_err() {
                        return;
                    }
                }
            }
            loop {
                tokio::select! {
                    ev = live.recv() => match ev {
                        Ok(e) => {
                            if wanted(&e) && tx.send(Ok(convert::event(&e))).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let _ = tx.send(Err(Status::data_loss(format!("{n} events were dropped: the client reads too slowly")))).await;
                            return;
                        }
                        Err(_) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all, fields(container = %req.get_ref().container))]
    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        auth::operator(&req, "update")?;
        let r = req.into_inner();
        let c = container_arg(&r.container)?.to_string();
        let restart = match r.restart_policy {
            Some(p) => {
                Some(daemon::RestartPolicy::parse(&p.name, p.max_retries).map_err(err(true))?)
            }
            None => None,
        };
        let change = daemon::ResourceUpdate {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            memory_swap_bytes: r.memory_swap_bytes,
            pids_limit: r.pids_limit,
            cpuset_cpus: r.cpuset_cpus,
            io_weight: r.io_weight,
        };
        let d = self.daemon.clone();
        to_end(async move { d.update(&c, change, restart).await })
            .await
            .map_err(err(true))?;
        Ok(Response::new(pb::UpdateResponse {
            warnings: Vec::new(),
        }))
    }

    async fn top(&self, req: Request<pb::TopRequest>) -> Result<Response<pb::TopResponse>, Status> {
        let p = auth::peer(&req)?;
        let e = self
            .daemon
            .find(container_arg(&req.get_ref().container)?)
            .map_err(err(p.may_mutate()))?;
        let d = self.daemon.clone();
        let procs = daemon::blocking(move || d.top(&e))
            .await
            .map_err(err(p.may_mutate()))?;
        Ok(Response::new(pb::TopResponse {
            processes: procs
                .into_iter()
                .map(|p| pb::ProcessInfo {
                    pid: p.pid,
                    ppid: p.ppid,
                    uid: p.uid,
                    state: p.state,
                    cpu_ns: p.cpu_ns,
                    started_at: logs::format_time(p.started_at),
                    cmd: p.cmd,
                })
                .collect(),
        }))
    }

    async fn pause(
        &self,
        req: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::PauseResponse>, Status> {
        auth::operator(&req, "pause")?;
        self.daemon
            .pause(container_arg(&req.get_ref().container)?, true)
            .await
            .map_err(err(true))?;
        Ok(Response::new(pb::PauseResponse {}))
    }

    async fn resume(
        &self,
        req: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::ResumeResponse>, Status> {
        auth::operator(&req, "resume")?;
        self.daemon
            .pause(container_arg(&req.get_ref().container)?, false)
            .await
            .map_err(err(true))?;
        Ok(Response::new(pb::ResumeResponse {}))
    }
}

/// The stream of container `id`'s log as `q` selects it (Logs, StartAttached): a blocking
/// follower feeds it, and ends when the container is done or the stream is dropped.
fn follow_log(daemon: &Arc<Daemon>, id: &str, q: logs::Query) -> Stream_<pb::LogsResponse> {
    let path = daemon.log_path(id);
    let (tx, rx) = mpsc::channel::<Result<pb::LogsResponse, Status>>(16);
    let d = daemon.clone();
    let id = id.to_string();
    let state_dir = daemon.rt.dir(&id);
    tokio::task::spawn_blocking(move || {
        let log_dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        // Done when the container is, or when the client has gone (a quiet container's
        // follower would otherwise hold this thread until the container exits).
        let probe = tx.clone();
        let follow = logs::Watched::new(
            || probe.is_closed() || d.log_done(&id),
            &log_dir,
            &state_dir,
        );
        let res = logs::read(&path, &q, &follow, |batch| {
            let entries = batch
                .into_iter()
                .map(|e| pb::LogEntry {
                    time: e.time,
                    stream: if e.stderr { "stderr" } else { "stdout" }.into(),
                    data: e.data,
                    partial: e.partial,
                })
                .collect();
            tx.blocking_send(Ok(pb::LogsResponse {
                entries,
                end: false,
            }))
            .is_ok()
        });
        let last = match res {
            Ok(()) => Ok(pb::LogsResponse {
                entries: Vec::new(),
                end: true,
            }),
            Err(e) => Err(Status::internal(format!("reading the log: {e}"))),
        };
        let _ = tx.blocking_send(last);
    });
    Box::pin(ReceiverStream::new(rx))
}
