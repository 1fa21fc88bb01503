//! The image store: content store + image index + layer snapshots.
//!
//! On disk, under the root (default `/var/lib/minid`):
//!
//! ```text
//! content/blobs/sha256/<hex>  manifests, configs, layers (see super::content)
//! content/ingest/             blobs being written
//! images.json                 {"version":1,"images":{"docker.io/library/busybox:latest":{...}}}
//! images.lock                 flock(2): imports, removals and tags run one at a time
//! snapshots/                  the OverlaySnapshotter; committed layers keyed by chain id
//! ```
//!
//! An index record holds the manifest digest, the config digest (the image id) and the layer
//! chain (blob digest, diff id, chain id, sizes). Layers are unpacked once into a committed
//! snapshot named by the layer's chain id (image-spec `config.md`, "Layer ChainID"), so images
//! sharing a base share its snapshots. Imports are all-or-nothing: the index is written once at
//! the end, and on any error the blobs and snapshots this import created are removed again.
//! Removal untags, then collects blobs and layer snapshots that no image references.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::content::{sha256_digest, validate_digest, ContentStore};
use super::import::{self, Candidate, Detected, DirSource, Ingested, Source, TarSource, MAX_JSON};
use super::reference::{self, familiar_repository};
use super::unpack::{apply_layer, digest_layer, LayerStats};
use super::{format_rfc3339, host_arch, Image, ImageError, ImportFormat, Layer};
use crate::engine::fsutil::{read_json, write_json_atomic};
use crate::engine::snapshot::{Kind, Mount, OverlaySnapshotter, Snapshotter};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Record {
    manifest: String,
    config: String,
    layers: Vec<Layer>,
    size: u64,
    created: Option<String>,
    imported: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: BTreeMap<String, Record>,
}

impl Default for IndexFile {
    fn default() -> Self {
        IndexFile {
            version: 1,
            images: BTreeMap::new(),
        }
    }
}

/// The image store; see the module docs.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    snapshotter: OverlaySnapshotter,
}

/// What an import created so far, for rollback.
#[derive(Default)]
struct Tx {
    ing: Ingested,
    active: Vec<String>,
    committed: Vec<String>,
}

static NONCE: AtomicU64 = AtomicU64::new(0);

/// The OCI chain id of a layer on top of `parent` (a chain id itself).
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(p) => sha256_digest(format!("{p} {diff_id}").as_bytes()),
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        std::fs::create_dir_all(root).map_err(|e| ImageError::io("create", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| ImageError::io("resolve", root, e))?;
        Ok(ImageStore {
            content: ContentStore::open(&root)?,
            snapshotter: OverlaySnapshotter::open(&root.join("snapshots"))?,
            root,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn snapshotter(&self) -> &OverlaySnapshotter {
        &self.snapshotter
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    fn lock(&self) -> Result<Flock<File>, ImageError> {
        let p = self.root.join("images.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| ImageError::io("open", &p, e))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| ImageError::io("lock", &p, e.into()))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    fn read_index(&self) -> Result<IndexFile, ImageError> {
        let p = self.index_path();
        if !p.exists() {
            return Ok(IndexFile::default());
        }
        let idx: IndexFile = read_json(&p)?;
        if idx.version != 1 {
            return Err(ImageError::Metadata(format!(
                "{} has version {}, this minid understands 1",
                p.display(),
                idx.version
            )));
        }
        Ok(idx)
    }

    fn write_index(&self, idx: &IndexFile) -> Result<(), ImageError> {
        write_json_atomic(&self.index_path(), idx)?;
        Ok(())
    }

    fn image(&self, name: &str, r: &Record) -> Result<Image, ImageError> {
        let config = self.content.read(&r.config, MAX_JSON)?;
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config)
            .map_err(|e| ImageError::Metadata(format!("config {} of {name}: {e}", r.config)))?;
        Ok(Image {
            name: name.to_string(),
            id: r.config.clone(),
            manifest_digest: r.manifest.clone(),
            config,
            layers: r.layers.clone(),
            size: r.size,
            created: r.created.clone(),
        })
    }

    /// Every image, one per name, sorted by name.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let idx = self.read_index()?;
        idx.images.iter().map(|(n, r)| self.image(n, r)).collect()
    }

    /// The names `reference` means: one for a name, every name of the image for an id.
    fn lookup(idx: &IndexFile, reference: &str) -> Result<Vec<String>, ImageError> {
        let by_id = |prefix: &str| -> Result<Vec<String>, ImageError> {
            let ids: HashSet<&str> = idx
                .images
                .values()
                .filter(|r| r.config["sha256:".len()..].starts_with(prefix))
                .map(|r| r.config.as_str())
                .collect();
            match ids.len() {
                0 => Err(ImageError::NotFound(reference.to_string())),
                1 => {
                    let id = ids.into_iter().next().unwrap_or_default();
                    Ok(idx
                        .images
                        .iter()
                        .filter(|(_, r)| r.config == id)
                        .map(|(n, _)| n.clone())
                        .collect())
                }
                _ => Err(ImageError::Ambiguous(reference.to_string())),
            }
        };
        if let Some(hex) = reference.strip_prefix("sha256:") {
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ImageError::InvalidDigest(reference.to_string()));
            }
            return by_id(&hex.to_ascii_lowercase());
        }
        let parsed = reference::parse(reference);
        if let Ok(r) = &parsed {
            if let Some(d) = &r.digest {
                let hits: Vec<String> = idx
                    .images
                    .iter()
                    .filter(|(n, rec)| {
                        reference::split_name(n).0 == r.repository && &rec.manifest == d
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                return hits
                    .into_iter()
                    .next()
                    .map(|n| vec![n])
                    .ok_or_else(|| ImageError::NotFound(reference.to_string()));
            }
            if idx.images.contains_key(&r.name()) {
                return Ok(vec![r.name()]);
            }
        }
        if !reference.is_empty()
            && reference.len() <= 64
            && reference.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return by_id(&reference.to_ascii_lowercase());
        }
        match parsed {
            Err(e) => Err(e),
            Ok(_) => Err(ImageError::NotFound(reference.to_string())),
        }
    }

    /// Resolves `busybox`, `busybox:1.36`, `docker.io/library/busybox:1.36`, `name@sha256:...`,
    /// a full `sha256:` id or a unique id prefix.
    pub fn get(&self, reference: &str) -> Result<Image, ImageError> {
        let idx = self.read_index()?;
        let names = Self::lookup(&idx, reference)?;
        let name = names
            .first()
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        let r = idx
            .images
            .get(name)
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        self.image(name, r)
    }

    /// Adds the name `new_name` to the image `reference` (moving it if it named another image).
    pub fn tag(&self, reference: &str, new_name: &str) -> Result<(), ImageError> {
        let _l = self.lock()?;
        let mut idx = self.read_index()?;
        let names = Self::lookup(&idx, reference)?;
        let rec = names
            .first()
            .and_then(|n| idx.images.get(n))
            .cloned()
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        let new = reference::parse(new_name)?;
        if new.digest.is_some() {
            return Err(ImageError::InvalidReference {
                reference: new_name.to_string(),
                reason: "a tag cannot contain a digest".into(),
            });
        }
        idx.images.insert(new.name(), rec);
        self.write_index(&idx)?;
        self.gc(&idx);
        Ok(())
    }

    /// Untags `reference` (every name of the image when given an id) and removes the blobs and
    /// layer snapshots no remaining image uses. Refuses while a container's snapshot sits on a
    /// layer that would otherwise go.
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let _l = self.lock()?;
        let mut idx = self.read_index()?;
        let names = Self::lookup(&idx, reference)?;
        let mut removed = Vec::new();
        for n in &names {
            if let Some(r) = idx.images.remove(n) {
                removed.push((n.clone(), r));
            }
        }
        let still_used: HashSet<&str> = idx
            .images
            .values()
            .flat_map(|r| r.layers.iter().map(|l| l.chain_id.as_str()))
            .collect();
        let infos = self.snapshotter.list()?;
        for (name, r) in &removed {
            for l in &r.layers {
                if still_used.contains(l.chain_id.as_str()) {
                    continue;
                }
                if let Some(child) = infos.iter().find(|i| {
                    i.parent.as_deref() == Some(l.chain_id.as_str()) && i.kind != Kind::Committed
                }) {
                    return Err(ImageError::InUse {
                        image: name.clone(),
                        snapshot: child.key.clone(),
                    });
                }
            }
        }
        self.write_index(&idx)?;
        self.gc(&idx);
        Ok(())
    }

    /// Removes blobs and layer snapshots that no image in `idx` references. Best effort: a
    /// failure is logged, the index is already right, and the next run retries.
    fn gc(&self, idx: &IndexFile) {
        let mut blobs: HashSet<&str> = HashSet::new();
        let mut chains: HashSet<&str> = HashSet::new();
        for r in idx.images.values() {
            blobs.insert(&r.manifest);
            blobs.insert(&r.config);
            for l in &r.layers {
                blobs.insert(&l.digest);
                chains.insert(&l.chain_id);
            }
        }
        match self.content.list() {
            Ok(all) => {
                for d in all.iter().filter(|d| !blobs.contains(d.as_str())) {
                    if let Err(e) = self.content.remove(d) {
                        tracing::warn!(digest = %d, error = %e, "failed to remove unused blob");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "failed to list blobs"),
        }
        // Children first: repeat until nothing more can go.
        loop {
            let Ok(infos) = self.snapshotter.list() else {
                return;
            };
            let parents: HashSet<&str> = infos.iter().filter_map(|i| i.parent.as_deref()).collect();
            let mut progress = false;
            for i in &infos {
                if i.kind == Kind::Committed
                    && i.key.starts_with("sha256:")
                    && !chains.contains(i.key.as_str())
                    && !parents.contains(i.key.as_str())
                {
                    match self.snapshotter.remove(&i.key) {
                        Ok(()) => progress = true,
                        Err(e) => {
                            tracing::warn!(key = %i.key, error = %e, "failed to remove unused layer")
                        }
                    }
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// Removes what a crashed import left (with the lock held, no import can be running).
    fn clean_stale(&self) {
        self.content.clean_ingest();
        if let Ok(infos) = self.snapshotter.list() {
            for i in infos.iter().filter(|i| i.key.starts_with("extract-")) {
                if let Err(e) = self.snapshotter.remove(&i.key) {
                    tracing::warn!(key = %i.key, error = %e, "failed to remove stale extraction");
                }
            }
        }
    }

    /// Imports images from `path`; see [`ImportFormat`]. `name` tags the (single) imported
    /// image; a rootfs tar without a name is called `imported:<short id>`.
    pub fn import(
        &self,
        path: &Path,
        format: ImportFormat,
        name: Option<&str>,
    ) -> Result<Vec<Image>, ImageError> {
        let _l = self.lock()?;
        self.clean_stale();
        let mut tx = Tx::default();
        match self.import_locked(path, format, name, &mut tx) {
            Ok((images, used)) => {
                for d in tx.ing.created.iter().filter(|d| !used.contains(*d)) {
                    let _ = self.content.remove(d);
                }
                Ok(images)
            }
            Err(e) => {
                let mut problems = Vec::new();
                for k in tx.active.iter().chain(tx.committed.iter().rev()) {
                    if let Err(ce) = self.snapshotter.remove(k) {
                        problems.push(format!("snapshot {k}: {ce}"));
                    }
                }
                for d in &tx.ing.created {
                    if let Err(ce) = self.content.remove(d) {
                        problems.push(format!("blob {d}: {ce}"));
                    }
                }
                if problems.is_empty() {
                    Err(e)
                } else {
                    Err(ImageError::WithCleanup {
                        error: Box::new(e),
                        cleanup: problems.join("; "),
                    })
                }
            }
        }
    }

    fn import_locked(
        &self,
        path: &Path,
        format: ImportFormat,
        name: Option<&str>,
        tx: &mut Tx,
    ) -> Result<(Vec<Image>, HashSet<String>), ImageError> {
        let name = name.map(reference::parse).transpose()?;
        if let Some(n) = &name {
            if n.digest.is_some() {
                return Err(ImageError::InvalidReference {
                    reference: n.name(),
                    reason: "a name cannot contain a digest".into(),
                });
            }
        }
        let detected = import::detect(path, format)?;
        let mut records: Vec<(Record, Vec<String>)> = Vec::new();
        match detected {
            Detected::Rootfs => records.push((self.import_rootfs(path, tx)?, Vec::new())),
            Detected::Docker | Detected::Oci => {
                let mut src: Box<dyn Source + '_> = if path.is_dir() {
                    Box::new(DirSource {
                        dir: path.to_path_buf(),
                        cs: &self.content,
                    })
                } else {
                    Box::new(TarSource::read(&self.content, path, &mut tx.ing)?)
                };
                let cands = if detected == Detected::Docker {
                    import::docker_candidates(&self.content, src.as_mut(), &mut tx.ing)?
                } else {
                    import::oci_candidates(&self.content, src.as_mut(), &mut tx.ing)?
                };
                for c in cands {
                    let names = c.names.clone();
                    records.push((self.materialize(c, tx)?, names));
                }
            }
        }
        if name.is_some() && records.len() > 1 {
            return Err(ImageError::InvalidReference {
                reference: name.map(|n| n.name()).unwrap_or_default(),
                reason: format!(
                    "the archive holds {} images; a name can tag only one",
                    records.len()
                ),
            });
        }
        let mut idx = self.read_index()?;
        let mut used = HashSet::new();
        let mut images = Vec::new();
        for (rec, mut names) in records {
            if let Some(n) = &name {
                names = vec![n.name()];
            }
            if names.is_empty() {
                let short = &rec.config["sha256:".len().."sha256:".len() + 12];
                names.push(reference::parse(&format!("imported:{short}"))?.name());
            }
            used.insert(rec.manifest.clone());
            used.insert(rec.config.clone());
            for l in &rec.layers {
                used.insert(l.digest.clone());
            }
            for n in names {
                idx.images.insert(n.clone(), rec.clone());
                images.push(self.image(&n, &rec)?);
            }
        }
        self.write_index(&idx)?;
        // A moved tag may have orphaned an older image.
        self.gc(&idx);
        Ok((images, used))
    }

    /// Makes sure the layer blob `digest` is a committed snapshot on top of `parent`; returns
    /// its stats and chain id. With `expected` (a diff id from the config), an existing snapshot
    /// is reused after checking the blob's digest; otherwise the layer is unpacked.
    fn ensure_layer(
        &self,
        digest: &str,
        expected: Option<&str>,
        parent: Option<&str>,
        tx: &mut Tx,
    ) -> Result<(LayerStats, String), ImageError> {
        let mismatch = |actual: &str, exp: &str| ImageError::DigestMismatch {
            what: format!("layer {digest} diff id (config rootfs.diff_ids)"),
            expected: exp.to_string(),
            actual: actual.to_string(),
        };
        if let Some(exp) = expected {
            let chain = chain_id(parent, exp);
            if self.snapshotter.stat(&chain).is_ok() {
                let stats = digest_layer(self.content.open_blob(digest)?)?;
                if stats.diff_id != exp {
                    return Err(mismatch(&stats.diff_id, exp));
                }
                return Ok((stats, chain));
            }
        }
        let key = format!(
            "extract-{}-{}",
            std::process::id(),
            NONCE.fetch_add(1, Ordering::Relaxed)
        );
        self.snapshotter.prepare(&key, parent)?;
        tx.active.push(key.clone());
        let upper = self.snapshotter.upper_dir(&key)?;
        let stats = apply_layer(self.content.open_blob(digest)?, &upper)?;
        if let Some(exp) = expected {
            if stats.diff_id != exp {
                return Err(mismatch(&stats.diff_id, exp));
            }
        }
        let chain = chain_id(parent, &stats.diff_id);
        // A committed layer is reused without another look: its files must be on disk
        // before the commit (and the index naming it) can be.
        sync_fs(&upper)?;
        if self.snapshotter.stat(&chain).is_ok() {
            self.snapshotter.remove(&key)?;
        } else {
            self.snapshotter.commit(&chain, &key)?;
            tx.committed.push(chain.clone());
        }
        tx.active.retain(|k| k != &key);
        Ok((stats, chain))
    }

    fn layers(
        &self,
        blobs: &[import::CandidateLayer],
        diff_ids: Option<&[String]>,
        tx: &mut Tx,
    ) -> Result<Vec<Layer>, ImageError> {
        let mut out: Vec<Layer> = Vec::new();
        for (i, b) in blobs.iter().enumerate() {
            let expected = diff_ids.map(|d| d[i].as_str());
            if let Some(e) = expected {
                validate_digest(e)?;
            }
            let parent = out.last().map(|l| l.chain_id.clone());
            let (stats, chain) = self.ensure_layer(&b.digest, expected, parent.as_deref(), tx)?;
            out.push(Layer {
                digest: b.digest.clone(),
                diff_id: stats.diff_id,
                chain_id: chain,
                size: b.size,
                media_type: b.media_type.clone(),
                unpacked_size: stats.size,
            });
        }
        Ok(out)
    }

    fn materialize(&self, c: Candidate, tx: &mut Tx) -> Result<Record, ImageError> {
        let raw = self.content.read(&c.config_digest, MAX_JSON)?;
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&raw)
            .map_err(|e| ImageError::InvalidConfig(format!("{}: {e}", c.config_digest)))?;
        let os = serde_json::to_value(config.os()).unwrap_or_default();
        if os != "linux" {
            return Err(ImageError::Unsupported(format!("image for os {os}")));
        }
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != c.layers.len() {
            return Err(ImageError::InvalidArchive(format!(
                "config {} lists {} diff ids for {} layers",
                c.config_digest,
                diff_ids.len(),
                c.layers.len()
            )));
        }
        let layers = self.layers(&c.layers, Some(diff_ids), tx)?;
        let manifest = match c.manifest_digest {
            Some(m) => m,
            None => self.synthesize_manifest(&c.config_digest, raw.len() as u64, &layers, tx)?,
        };
        Ok(Record {
            manifest,
            config: c.config_digest,
            size: layers.iter().map(|l| l.unpacked_size).sum(),
            layers,
            created: config.created().clone(),
            imported: format_rfc3339(SystemTime::now()),
        })
    }

    fn synthesize_manifest(
        &self,
        config: &str,
        config_size: u64,
        layers: &[Layer],
        tx: &mut Tx,
    ) -> Result<String, ImageError> {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": import::MT_OCI_MANIFEST,
            "config": {"mediaType": import::MT_OCI_CONFIG, "digest": config, "size": config_size},
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": l.media_type, "digest": l.digest, "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&m)
            .map_err(|e| ImageError::Metadata(format!("encode manifest: {e}")))?;
        let b = self.content.ingest_bytes(&bytes)?;
        tx.ing.note(&b);
        Ok(b.digest)
    }

    fn import_rootfs(&self, path: &Path, tx: &mut Tx) -> Result<Record, ImageError> {
        if path.is_dir() {
            return Err(ImageError::InvalidArchive(format!(
                "{} is a directory; a rootfs import takes a tar",
                path.display()
            )));
        }
        let f = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
        let blob = self.content.ingest(f, None)?;
        tx.ing.note(&blob);
        let media_type = import::layer_media_type(&self.content, &blob.digest)?;
        let layers = self.layers(
            &[import::CandidateLayer {
                digest: blob.digest.clone(),
                size: blob.size,
                media_type,
            }],
            None,
            tx,
        )?;
        let now = format_rfc3339(SystemTime::now());
        let config = serde_json::json!({
            "created": now,
            "architecture": host_arch(),
            "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": [{"created": now, "created_by": format!("minid image import {}", path.display())}],
        });
        let raw = serde_json::to_vec(&config)
            .map_err(|e| ImageError::Metadata(format!("encode config: {e}")))?;
        let cb = self.content.ingest_bytes(&raw)?;
        tx.ing.note(&cb);
        let manifest = self.synthesize_manifest(&cb.digest, cb.size, &layers, tx)?;
        Ok(Record {
            manifest,
            config: cb.digest,
            size: layers.iter().map(|l| l.unpacked_size).sum(),
            layers,
            created: Some(now.clone()),
            imported: now,
        })
    }

    /// A writable active snapshot `key` for a container, on top of the image's top layer.
    pub fn prepare_rootfs(&self, image: &Image, key: &str) -> Result<Vec<Mount>, ImageError> {
        let top = image.top_chain_id();
        self.snapshotter.prepare(key, top).map_err(|e| match e {
            crate::engine::snapshot::SnapshotError::NotFound(k) if Some(k.as_str()) == top => {
                ImageError::Metadata(format!(
                    "layer snapshot {k} of image {} is missing; re-import the image",
                    image.name
                ))
            }
            other => other.into(),
        })
    }
}

/// `busybox`, `latest` for showing a stored name.
pub fn display_name(name: &str) -> (String, String) {
    let (repo, tag) = reference::split_name(name);
    (familiar_repository(repo).to_string(), tag.to_string())
}

/// syncfs(2) of the filesystem holding `dir`.
fn sync_fs(dir: &Path) -> Result<(), ImageError> {
    let f = std::fs::File::open(dir).map_err(|e| ImageError::io("open", dir, e))?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } < 0 {
        return Err(ImageError::io(
            "syncfs",
            dir,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(chain_id(None, &a), a);
        assert_eq!(
            chain_id(Some(&a), &b),
            sha256_digest(format!("{a} {b}").as_bytes())
        );
    }
}
