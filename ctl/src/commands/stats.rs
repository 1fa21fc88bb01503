//! `minictl stats`: Docker's columns, every running container by default; a live table
//! redrawn each interval, or one sample with `--no-stream`. CPU % is the usage between two
//! samples (the first sample of `--no-stream` is measured over the node's first interval).

use std::collections::HashMap;

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;
use crate::output::{
    bytes_binary, bytes_decimal, print_json_line, print_str, short_id, Format, Table,
};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// One sample, then exit
    #[arg(long)]
    pub no_stream: bool,
    /// Do not cut ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Containers (default: every running one)
    pub containers: Vec<String>,
}

fn cpu_percent(
    prev: Option<&(u64, std::time::Instant)>,
    s: &pb::ContainerStats,
    now: std::time::Instant,
) -> f64 {
    match prev {
        Some((u, t)) => {
            let dt = now.duration_since(*t).as_nanos() as f64;
            if dt <= 0.0 {
                return 0.0;
            }
            (s.cpu_usage_ns.saturating_sub(*u)) as f64 / dt * 100.0
        }
        None => 0.0,
    }
}

impl StatsArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut c = ctx.client.containers.clone();
        // With --no-stream, two samples a short interval apart give a CPU %.
        let mut s = match c
            .stats(pb::StatsRequest {
                containers: self.containers.clone(),
                filters: Vec::new(),
                interval_ms: if self.no_stream { 500 } else { 1000 },
                one_shot: false,
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(st) => return ctx.fail(st),
        };
        let mut prev: HashMap<String, (u64, std::time::Instant)> = HashMap::new();
        let mut first = true;
        loop {
            let msg = match s.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return 0,
                Err(st) => return ctx.fail(st),
            };
            let now = std::time::Instant::now();
            if first && self.no_stream {
                for x in &msg.stats {
                    prev.insert(x.id.clone(), (x.cpu_usage_ns, now));
                }
                first = false;
                continue;
            }
            let mut t = Table::new(&[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS",
            ]);
            for x in &msg.stats {
                let cpu = cpu_percent(prev.get(&x.id), x, now);
                prev.insert(x.id.clone(), (x.cpu_usage_ns, now));
                let limit = if x.memory_limit > 0 && x.memory_limit < (1 << 62) {
                    x.memory_limit
                } else {
                    0
                };
                let mem_pct = if limit > 0 {
                    x.memory_working_set as f64 / limit as f64 * 100.0
                } else {
                    0.0
                };
                if ctx.format == Format::Json {
                    print_json_line(&serde_json::json!({
                        "ID": x.id, "Name": x.name, "CPUPerc": format!("{cpu:.2}%"),
                        "MemUsage": x.memory_working_set, "MemLimit": limit,
                        "MemPerc": format!("{mem_pct:.2}%"), "PIDs": x.pids_current,
                        "BlockRead": x.block_read_bytes, "BlockWrite": x.block_write_bytes,
                        "CPUUsageNs": x.cpu_usage_ns, "NetRx": x.net_rx_bytes, "NetTx": x.net_tx_bytes,
                        "PageFaults": x.page_faults, "MajorPageFaults": x.major_page_faults,
                        "CPUPressure": x.cpu_pressure_some_avg10,
                    }));
                    continue;
                }
                t.row(vec![
                    short_id(&x.id, self.no_trunc),
                    x.name.clone(),
                    format!("{cpu:.2}%"),
                    format!(
                        "{} / {}",
                        bytes_binary(x.memory_working_set),
                        if limit > 0 {
                            bytes_binary(limit)
                        } else {
                            "unlimited".into()
                        }
                    ),
                    format!("{mem_pct:.2}%"),
                    format!(
                        "{} / {}",
                        bytes_decimal(x.net_rx_bytes),
                        bytes_decimal(x.net_tx_bytes)
                    ),
                    format!(
                        "{} / {}",
                        bytes_decimal(x.block_read_bytes),
                        bytes_decimal(x.block_write_bytes)
                    ),
                    x.pids_current.to_string(),
                ]);
            }
            if ctx.format == Format::Table {
                if !self.no_stream && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    // Redraw in place, as docker stats does.
                    print_str("\x1b[2J\x1b[H");
                }
                t.print();
            }
            if self.no_stream {
                return 0;
            }
        }
    }
}
