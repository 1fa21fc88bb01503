//! `minictl top`: the processes of a running container, as the host sees them.

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;
use crate::output::{print_json_line, Format, Table};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// The container
    pub container: String,
}

impl TopArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let cl = match ctx.node_of(&self.container).await {
            Ok(cl) => cl,
            Err(code) => return code,
        };
        let mut c = cl.containers.clone();
        let r = match c
            .top(pb::TopRequest {
                container: self.container.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return cl.fail(s),
        };
        if ctx.format == Format::Json {
            for p in &r.processes {
                print_json_line(&serde_json::json!({
                    "UID": p.uid, "PID": p.pid, "PPID": p.ppid, "State": p.state,
                    "CPUNanos": p.cpu_ns, "StartedAt": p.started_at, "CMD": p.cmd,
                }));
            }
            return 0;
        }
        let mut t = Table::new(&["UID", "PID", "PPID", "STAT", "STIME", "TIME", "CMD"]);
        for p in &r.processes {
            let secs = p.cpu_ns / 1_000_000_000;
            let stime = p.started_at.get(11..19).unwrap_or("").to_string();
            t.row(vec![
                p.uid.to_string(),
                p.pid.to_string(),
                p.ppid.to_string(),
                p.state.clone(),
                stime,
                format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
                p.cmd.clone(),
            ]);
        }
        t.print();
        0
    }
}
