//! Reading image archives: docker-archive (`docker save`), OCI image layouts (as a tar or a
//! directory) and plain rootfs tars (`docker import`).
//!
//! An archive tar is read once: every regular file in it is streamed into the content store
//! (hashed on the way) and remembered by its path; the small JSON files are then read back from
//! the store by digest. Nothing is ever created on disk under a name taken from the archive, so
//! reading an archive needs no path confinement; the layers inside are applied later by
//! [`super::unpack`], which does. What this module returns is a list of [`Candidate`]s: the
//! names, config and layer blobs of each image, all already in the content store.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::content::{validate_digest, BlobRef, ContentStore};
use super::reference;
use super::unpack::decompressed;
use super::{host_arch, ImageError, ImportFormat};

/// JSON documents (manifests, configs, indexes) larger than this are refused.
pub const MAX_JSON: u64 = 16 << 20;

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A layer blob of a candidate image.
#[derive(Debug, Clone)]
pub struct CandidateLayer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// One image found in an archive; its blobs are in the content store.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Normalized `repository:tag` names the archive gives it.
    pub names: Vec<String>,
    /// Set when the archive had a manifest blob (OCI); docker archives get one synthesized.
    pub manifest_digest: Option<String>,
    pub config_digest: String,
    pub layers: Vec<CandidateLayer>,
}

/// Everything an import put into the content store, so that a failed import can take it back.
#[derive(Debug, Default)]
pub struct Ingested {
    pub created: Vec<String>,
}

impl Ingested {
    pub fn note(&mut self, b: &BlobRef) {
        if b.created && !self.created.contains(&b.digest) {
            self.created.push(b.digest.clone());
        }
    }
}

/// The resolved format, after [`ImportFormat::Auto`] detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Rootfs,
    Docker,
    Oci,
}

/// Splits an archive path into normal components, refusing absolute paths and `..`.
fn norm(path: &Path) -> Result<String, ImageError> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(ImageError::InvalidArchive(format!(
                    "entry {:?} is absolute or contains '..'",
                    path.display()
                )))
            }
        }
    }
    Ok(parts.join("/"))
}

fn archive_err(path: &Path, e: std::io::Error) -> ImageError {
    ImageError::InvalidArchive(format!("failed to read {}: {e}", path.display()))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Decides what `path` is. Stops reading at the first entry that only a rootfs would have.
pub fn detect(path: &Path, format: ImportFormat) -> Result<Detected, ImageError> {
    match format {
        ImportFormat::RootfsTar => return Ok(Detected::Rootfs),
        ImportFormat::DockerArchive => return Ok(Detected::Docker),
        ImportFormat::OciArchive => return Ok(Detected::Oci),
        ImportFormat::Auto => {}
    }
    if path.is_dir() {
        if path.join("manifest.json").is_file() && !path.join("oci-layout").is_file() {
            return Ok(Detected::Docker);
        }
        if path.join("oci-layout").is_file() && path.join("index.json").is_file() {
            return Ok(Detected::Oci);
        }
        return Err(ImageError::InvalidArchive(format!(
            "{} is a directory but neither an OCI layout nor an extracted docker archive",
            path.display()
        )));
    }
    let f = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
    let r = decompressed(f).map_err(|e| archive_err(path, e))?;
    let mut ar = tar::Archive::new(r);
    let (mut manifest, mut layout, mut index) = (false, false, false);
    for e in ar.entries().map_err(|e| archive_err(path, e))? {
        let e = e.map_err(|e| archive_err(path, e))?;
        let p = e.path().map_err(|e| archive_err(path, e))?;
        let Ok(n) = norm(&p) else {
            return Ok(Detected::Rootfs);
        };
        let top = n.split('/').next().unwrap_or("");
        match top {
            "" => {}
            "manifest.json" if n == top => manifest = true,
            "oci-layout" if n == top => layout = true,
            "index.json" if n == top => index = true,
            "repositories" | "blobs" => {}
            t if is_hex64(t) || t.strip_suffix(".json").is_some_and(is_hex64) => {}
            _ => return Ok(Detected::Rootfs),
        }
    }
    Ok(if manifest {
        Detected::Docker
    } else if layout && index {
        Detected::Oci
    } else {
        Detected::Rootfs
    })
}

/// Where archive files come from: a tar read into the content store, or a directory.
pub trait Source {
    /// The blob holding the archive file `rel`, put into the content store.
    fn file(&mut self, rel: &str, ing: &mut Ingested) -> Result<Option<BlobRef>, ImageError>;
}

/// A tar archive whose regular files have all been ingested.
pub struct TarSource {
    files: HashMap<String, BlobRef>,
    links: HashMap<String, String>,
}

impl TarSource {
    pub fn read(cs: &ContentStore, path: &Path, ing: &mut Ingested) -> Result<Self, ImageError> {
        let f = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
        let r = decompressed(f).map_err(|e| archive_err(path, e))?;
        let mut ar = tar::Archive::new(r);
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        for e in ar.entries().map_err(|e| archive_err(path, e))? {
            let e = e.map_err(|e| archive_err(path, e))?;
            let p = norm(&e.path().map_err(|e| archive_err(path, e))?)?;
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let b = cs.ingest(e, None)?;
                    ing.note(&b);
                    files.insert(p, b);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let is_sym = e.header().entry_type() == tar::EntryType::Symlink;
                    let target = e
                        .link_name()
                        .map_err(|e| archive_err(path, e))?
                        .ok_or_else(|| {
                            ImageError::InvalidArchive(format!("link {p:?} has no target"))
                        })?;
                    // A symlink is relative to its directory; a hardlink to the archive root.
                    let full = if is_sym {
                        Path::new(&p)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(&target)
                    } else {
                        target.into_owned()
                    };
                    links.insert(p, lexical_clean(&full)?);
                }
                _ => {}
            }
        }
        Ok(TarSource { files, links })
    }
}

/// Resolves `..` lexically (for archive-internal links); refuses to climb above the root.
fn lexical_clean(p: &Path) -> Result<String, ImageError> {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop().ok_or_else(|| {
                    ImageError::InvalidArchive(format!(
                        "link target {} leaves the archive",
                        p.display()
                    ))
                })?;
            }
            Component::CurDir => {}
            _ => {
                return Err(ImageError::InvalidArchive(format!(
                    "link target {} is absolute",
                    p.display()
                )))
            }
        }
    }
    Ok(out.join("/"))
}

impl Source for TarSource {
    fn file(&mut self, rel: &str, _ing: &mut Ingested) -> Result<Option<BlobRef>, ImageError> {
        let mut key = norm(Path::new(rel))?;
        for _ in 0..16 {
            if let Some(b) = self.files.get(&key) {
                return Ok(Some(b.clone()));
            }
            match self.links.get(&key) {
                Some(t) => key = t.clone(),
                None => return Ok(None),
            }
        }
        Err(ImageError::InvalidArchive(format!(
            "too many links resolving {rel:?}"
        )))
    }
}

/// An OCI layout (or extracted docker archive) directory; files are ingested on demand.
pub struct DirSource<'a> {
    pub dir: PathBuf,
    pub cs: &'a ContentStore,
}

impl Source for DirSource<'_> {
    fn file(&mut self, rel: &str, ing: &mut Ingested) -> Result<Option<BlobRef>, ImageError> {
        let p = self.dir.join(norm(Path::new(rel))?);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io("open", &p, e)),
        };
        let b = self.cs.ingest(f, None)?;
        ing.note(&b);
        Ok(Some(b))
    }
}

fn require(src: &mut dyn Source, rel: &str, ing: &mut Ingested) -> Result<BlobRef, ImageError> {
    src.file(rel, ing)?
        .ok_or_else(|| ImageError::InvalidArchive(format!("{rel} is missing")))
}

/// The media type a layer blob's magic bytes call for.
pub fn layer_media_type(cs: &ContentStore, digest: &str) -> Result<String, ImageError> {
    let mut f = cs.open_blob(digest)?;
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(ImageError::io("read", cs.blob_path(digest)?, e)),
        }
    }
    Ok(match super::unpack::detect_compression(&head[..n]) {
        super::unpack::Compression::Gzip => MT_LAYER_GZIP,
        super::unpack::Compression::Zstd => MT_LAYER_ZSTD,
        super::unpack::Compression::None => MT_LAYER_TAR,
    }
    .to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Reads a docker-archive (`manifest.json` with Config/RepoTags/Layers per image).
pub fn docker_candidates(
    cs: &ContentStore,
    src: &mut dyn Source,
    ing: &mut Ingested,
) -> Result<Vec<Candidate>, ImageError> {
    let m = require(src, "manifest.json", ing)?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&cs.read(&m.digest, MAX_JSON)?)
        .map_err(|e| ImageError::InvalidArchive(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let config = require(src, &e.config, ing)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let b = require(src, l, ing)?;
            layers.push(CandidateLayer {
                media_type: layer_media_type(cs, &b.digest)?,
                digest: b.digest,
                size: b.size,
            });
        }
        let mut names = Vec::new();
        for t in e.repo_tags.unwrap_or_default() {
            names.push(reference::parse(&t)?.name());
        }
        out.push(Candidate {
            names,
            manifest_digest: None,
            config_digest: config.digest,
            layers,
        });
    }
    if out.is_empty() {
        return Err(ImageError::InvalidArchive(
            "manifest.json lists no images".into(),
        ));
    }
    Ok(out)
}

#[derive(Deserialize, Clone)]
struct OciPlatform {
    architecture: String,
    os: String,
}

#[derive(Deserialize, Clone)]
struct OciDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    platform: Option<OciPlatform>,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciManifest {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciLayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

/// Fetches the blob a descriptor names from `blobs/sha256/<hex>` and checks digest and size.
fn oci_blob(
    src: &mut dyn Source,
    d: &OciDescriptor,
    ing: &mut Ingested,
) -> Result<BlobRef, ImageError> {
    let hex = validate_digest(&d.digest)?;
    let b = require(src, &format!("blobs/sha256/{hex}"), ing)?;
    if b.digest != d.digest {
        return Err(ImageError::DigestMismatch {
            what: format!("blob blobs/sha256/{hex}"),
            expected: d.digest.clone(),
            actual: b.digest,
        });
    }
    if b.size != d.size {
        return Err(ImageError::InvalidArchive(format!(
            "blob {} is {} bytes, its descriptor says {}",
            d.digest, b.size, d.size
        )));
    }
    Ok(b)
}

fn names_of(d: &OciDescriptor) -> Result<Vec<String>, ImageError> {
    let Some(a) = &d.annotations else {
        return Ok(Vec::new());
    };
    if let Some(n) = a.get("io.containerd.image.name") {
        return Ok(vec![reference::parse(n)?.name()]);
    }
    if let Some(n) = a.get("org.opencontainers.image.ref.name") {
        // A bare tag ("latest") names no repository; only a full reference names an image.
        if n.contains('/') || n.contains(':') {
            return Ok(vec![reference::parse(n)?.name()]);
        }
    }
    Ok(Vec::new())
}

/// Reads an OCI image layout (`oci-layout`, `index.json`, `blobs/`), following nested indexes
/// and keeping the manifests for this host's platform (or with no platform).
pub fn oci_candidates(
    cs: &ContentStore,
    src: &mut dyn Source,
    ing: &mut Ingested,
) -> Result<Vec<Candidate>, ImageError> {
    let layout = require(src, "oci-layout", ing)?;
    let layout: OciLayoutFile = serde_json::from_slice(&cs.read(&layout.digest, MAX_JSON)?)
        .map_err(|e| ImageError::InvalidArchive(format!("oci-layout: {e}")))?;
    if !layout.version.starts_with("1.") {
        return Err(ImageError::Unsupported(format!(
            "OCI layout version {}",
            layout.version
        )));
    }
    let index = require(src, "index.json", ing)?;
    let index: OciIndex = serde_json::from_slice(&cs.read(&index.digest, MAX_JSON)?)
        .map_err(|e| ImageError::InvalidArchive(format!("index.json: {e}")))?;
    let mut out: Vec<Candidate> = Vec::new();
    let mut queue: Vec<(OciDescriptor, Vec<String>, usize)> = index
        .manifests
        .into_iter()
        .map(|d| (d, Vec::new(), 0))
        .collect();
    // A hostile layout can list the same nested index many times at every level: visit each
    // index once and bound the descriptors looked at, or the walk grows exponentially.
    let mut visited_indexes = std::collections::HashSet::new();
    let mut seen = 0usize;
    while let Some((d, inherited, depth)) = queue.pop() {
        seen += 1;
        if seen > 10_000 {
            return Err(ImageError::InvalidArchive(
                "the layout's indexes list more than 10000 descriptors".into(),
            ));
        }
        if let Some(p) = &d.platform {
            if p.os != "linux" || p.architecture != host_arch() {
                continue;
            }
        }
        let mut names = names_of(&d)?;
        if names.is_empty() {
            names = inherited;
        }
        match d.media_type.as_str() {
            MT_OCI_INDEX | MT_DOCKER_LIST => {
                if !visited_indexes.insert(d.digest.clone()) {
                    continue;
                }
                if depth > 4 {
                    return Err(ImageError::InvalidArchive("indexes nested too deep".into()));
                }
                let b = oci_blob(src, &d, ing)?;
                let idx: OciIndex = serde_json::from_slice(&cs.read(&b.digest, MAX_JSON)?)
                    .map_err(|e| ImageError::InvalidArchive(format!("index {}: {e}", d.digest)))?;
                for m in idx.manifests {
                    queue.push((m, names.clone(), depth + 1));
                }
            }
            MT_OCI_MANIFEST | MT_DOCKER_MANIFEST | "" => {
                let b = oci_blob(src, &d, ing)?;
                let m: OciManifest = serde_json::from_slice(&cs.read(&b.digest, MAX_JSON)?)
                    .map_err(|e| {
                        ImageError::InvalidArchive(format!("manifest {}: {e}", d.digest))
                    })?;
                if let Some(mt) = &m.media_type {
                    if mt != MT_OCI_MANIFEST && mt != MT_DOCKER_MANIFEST {
                        return Err(ImageError::Unsupported(format!("manifest media type {mt}")));
                    }
                }
                let config = oci_blob(src, &m.config, ing)?;
                let mut layers = Vec::new();
                for l in &m.layers {
                    if l.media_type.contains("foreign") || l.media_type.contains("nondistributable")
                    {
                        return Err(ImageError::Unsupported(format!(
                            "foreign layer {} ({})",
                            l.digest, l.media_type
                        )));
                    }
                    let lb = oci_blob(src, l, ing)?;
                    layers.push(CandidateLayer {
                        digest: lb.digest,
                        size: lb.size,
                        media_type: l.media_type.clone(),
                    });
                }
                // Two tags of one manifest are one image with two names.
                if let Some(c) = out
                    .iter_mut()
                    .find(|c| c.manifest_digest.as_deref() == Some(&d.digest))
                {
                    for n in names {
                        if !c.names.contains(&n) {
                            c.names.push(n);
                        }
                    }
                    continue;
                }
                out.push(Candidate {
                    names,
                    manifest_digest: Some(b.digest),
                    config_digest: config.digest,
                    layers,
                });
            }
            other => {
                tracing::warn!(media_type = other, digest = %d.digest, "skipping index entry");
            }
        }
    }
    if out.is_empty() {
        return Err(ImageError::InvalidArchive(format!(
            "index.json has no image for linux/{}",
            host_arch()
        )));
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_links_cannot_leave_the_archive() {
        assert_eq!(lexical_clean(Path::new("a/../b/c")).expect("ok"), "b/c");
        assert!(lexical_clean(Path::new("../x")).is_err());
        assert!(lexical_clean(Path::new("/x")).is_err());
    }
}
