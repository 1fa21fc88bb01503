//! `minictl events`: lifecycle events as they happen (`--since` replays recent ones).

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;
use crate::output::{print_json_line, print_str, Format};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Replay events since this time first
    #[arg(long)]
    pub since: Option<String>,
    /// Filters: container=, event=, image=, label=
    #[arg(short = 'f', long = "filter")]
    pub filters: Vec<String>,
}

impl EventsArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut c = ctx.client.containers.clone();
        let mut s = match c
            .events(pb::EventsRequest {
                since: self.since.clone().unwrap_or_default(),
                filters: self.filters.clone(),
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(st) => return ctx.fail(st),
        };
        loop {
            match s.message().await {
                Ok(Some(e)) => {
                    if ctx.format == Format::Json {
                        print_json_line(&serde_json::json!({
                            "time": e.time, "action": e.action, "id": e.container_id,
                            "name": e.container_name, "image": e.image, "attributes": e.attributes,
                        }));
                    } else {
                        let mut attrs: Vec<_> = e
                            .attributes
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        attrs.sort();
                        attrs.insert(0, format!("image={}", e.image));
                        attrs.insert(1, format!("name={}", e.container_name));
                        print_str(&format!(
                            "{} container {} {} ({})\n",
                            e.time,
                            e.action,
                            e.container_id,
                            attrs.join(", ")
                        ));
                    }
                }
                Ok(None) => return 0,
                Err(st) => return ctx.fail(st),
            }
        }
    }
}
