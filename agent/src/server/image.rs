//! ImageService: import (streamed archive), list, inspect, remove, tag.

use std::io::Write;
use std::sync::Arc;

use mini_proto::v1 as pb;
use mini_proto::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status, Streaming};

use super::auth;
use super::convert;
use super::status::to_status;
use crate::daemon::{self, Daemon};
use crate::engine::error::EngineError;
use crate::engine::image::ImportFormat;

pub struct Images {
    pub daemon: Arc<Daemon>,
}

/// Largest archive accepted by Import (a bound on what a client can make us write).
pub const MAX_IMPORT: u64 = 16 << 30;

#[tonic::async_trait]
impl ImageService for Images {
    #[tracing::instrument(skip_all)]
    async fn import(
        &self,
        req: Request<Streaming<pb::ImportRequest>>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        auth::operator(&req, "image import")?;
        let mut stream = req.into_inner();
        // The archive is spooled to a file in the store (same filesystem as the blobs), then
        // imported all-or-nothing by the engine.
        let tmpdir = self.daemon.cfg.state_dir.join("tmp");
        std::fs::create_dir_all(&tmpdir)
            .map_err(|e| to_status(EngineError::io("create", &tmpdir, e), true))?;
        let spool = tempfile::NamedTempFile::new_in(&tmpdir)
            .map_err(|e| to_status(EngineError::io("create", &tmpdir, e), true))?;
        let mut name = String::new();
        let mut total = 0u64;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, spool.as_file());
        while let Some(msg) = stream.message().await? {
            if name.is_empty() && !msg.name.is_empty() {
                name = msg.name;
            }
            total += msg.data.len() as u64;
            if total > MAX_IMPORT {
                return Err(Status::resource_exhausted(format!(
                    "the archive is larger than {} GiB",
                    MAX_IMPORT >> 30
                )));
            }
            w.write_all(&msg.data)
                .map_err(|e| to_status(EngineError::io("write", spool.path(), e), true))?;
        }
        w.flush()
            .map_err(|e| to_status(EngineError::io("write", spool.path(), e), true))?;
        drop(w);
        if total == 0 {
            return Err(Status::invalid_argument("the archive is empty"));
        }
        let d = self.daemon.clone();
        let images = daemon::blocking(move || {
            let name = (!name.is_empty()).then_some(name);
            let r = d
                .images
                .import(spool.path(), ImportFormat::Auto, name.as_deref())
                .map_err(EngineError::from);
            drop(spool);
            r
        })
        .await
        .map_err(|e| to_status(e, true))?;
        let first = images
            .first()
            .ok_or_else(|| Status::invalid_argument("the archive holds no image"))?;
        Ok(Response::new(pb::ImportResponse {
            image: Some(convert::image(first)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let p = auth::peer(&req)?;
        let d = self.daemon.clone();
        let images = daemon::blocking(move || Ok(d.images.list()?))
            .await
            .map_err(|e| to_status(e, p.may_mutate()))?;
        Ok(Response::new(pb::ListImagesResponse {
            images: images.iter().map(convert::image).collect(),
        }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectImageRequest>,
    ) -> Result<Response<pb::ImageInfo>, Status> {
        let p = auth::peer(&req)?;
        let r = req.into_inner().image;
        let d = self.daemon.clone();
        let img = daemon::blocking(move || Ok(d.images.get(&r)?))
            .await
            .map_err(|e| to_status(e, p.may_mutate()))?;
        Ok(Response::new(convert::image(&img)))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveImageRequest>,
    ) -> Result<Response<pb::RemoveImageResponse>, Status> {
        auth::operator(&req, "image remove")?;
        let r = req.into_inner();
        let d = self.daemon.clone();
        let (name, id) = daemon::blocking(move || {
            let img = d.images.get(&r.image)?;
            // Containers removed a moment ago may still be deleting their snapshots, which
            // hold the image's layers.
            d.settle_deletions(std::time::Duration::from_secs(30));
            let users = d.image_users(&img.id);
            if !users.is_empty() && !r.force {
                return Err(EngineError::Precondition(format!(
                    "image {} is used by container(s) {}: remove them first",
                    r.image,
                    users.join(", ")
                )));
            }
            d.images.remove(&r.image)?;
            Ok((img.name, img.id))
        })
        .await
        .map_err(|e| to_status(e, true))?;
        Ok(Response::new(pb::RemoveImageResponse {
            untagged: vec![name],
            deleted: vec![id],
        }))
    }

    async fn tag(
        &self,
        req: Request<pb::TagImageRequest>,
    ) -> Result<Response<pb::TagImageResponse>, Status> {
        auth::operator(&req, "image tag")?;
        let r = req.into_inner();
        let d = self.daemon.clone();
        daemon::blocking(move || Ok(d.images.tag(&r.source, &r.target)?))
            .await
            .map_err(|e| to_status(e, true))?;
        Ok(Response::new(pb::TagImageResponse {}))
    }
}
