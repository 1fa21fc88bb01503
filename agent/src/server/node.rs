//! NodeService: what this node is and has (the input of placement) and its version.

use std::sync::Arc;

use mini_proto::v1 as pb;
use mini_proto::v1::node_service_server::NodeService;
use tonic::{Request, Response, Status};

use super::auth;
use crate::daemon::Daemon;

pub struct Node {
    pub daemon: Arc<Daemon>,
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl NodeService for Node {
    async fn info(
        &self,
        req: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        let p = auth::peer(&req)?;
        let d = self.daemon.clone();
        let a = tokio::task::spawn_blocking(move || d.allocated())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let cgroup_version = match crate::engine::cgroups::detect(&self.daemon.cfg.cgroup_root) {
            Ok(crate::engine::cgroups::CgroupVersion::V2) => 2,
            _ => 1,
        };
        let d = &self.daemon;
        Ok(Response::new(pb::NodeInfo {
            name: d.cfg.node_name.clone(),
            labels: d.cfg.labels.clone().into_iter().collect(),
            capacity: Some(pb::NodeResources {
                cpu_millis: d.capacity.cpu_millis,
                memory_bytes: d.capacity.memory_bytes,
                pids: 0,
            }),
            allocated: Some(pb::NodeResources {
                cpu_millis: a.limits.cpu_millis,
                memory_bytes: a.limits.memory_bytes,
                pids: 0,
            }),
            requested: Some(pb::NodeResources {
                cpu_millis: a.requested.cpu_millis,
                memory_bytes: a.requested.memory_bytes,
                pids: 0,
            }),
            containers_running: a.running,
            containers_total: a.total,
            kernel: kernel(),
            cgroup_version,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            os: std::env::consts::OS.into(),
            architecture: crate::engine::image::host_arch().into(),
            caller: p.name.clone(),
            caller_role: p.role.map(|r| r.as_str()).unwrap_or("none").into(),
        }))
    }

    async fn version(
        &self,
        req: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        auth::peer(&req)?;
        Ok(Response::new(pb::VersionResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: mini_proto::API_VERSION.into(),
            git_commit: option_env!("MINI_GIT_COMMIT").unwrap_or("").into(),
        }))
    }
}
