//! Applying a layer tar to a directory in overlay format — a security boundary.
//!
//! A layer is a tar (uncompressed, gzip or zstd; detected by magic, not by media type) of the
//! files a layer adds or changes, with OCI/AUFS whiteouts for what it deletes
//! (image-spec `layer.md`). We write it straight into the upper directory of an active overlay
//! snapshot, converting whiteouts into overlayfs's own format as we go (the same fast path as
//! containerd's `OverlayConvertWhiteout`):
//!
//! - `DIR/.wh.NAME` becomes a character device 0/0 named `DIR/NAME` (an overlay whiteout);
//! - `DIR/.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y` on `DIR`.
//!
//! **Confinement.** Every entry comes from an untrusted image, so every path is resolved
//! *beneath* the layer root. We first reject, lexically, absolute paths and any `..` component;
//! then we resolve the entry's parent directory with `openat2(2)` and
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` from a descriptor of the root, and create the last
//! component with `*at` calls relative to that parent descriptor, never following a symlink in
//! it (`O_CREAT|O_EXCL|O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without `AT_SYMLINK_FOLLOW`).
//! We chose `openat2` over walking component by component with `O_NOFOLLOW` because the kernel
//! then does the whole resolution atomically, including symlinks that stay inside the root, and
//! refuses (`EXDEV`) any that leave it — absolute symlinks included — rather than us
//! re-implementing path resolution. `RESOLVE_IN_ROOT` (chroot-like, which is what Docker's
//! `FollowSymlinkInScope` emulates) would silently redirect a hostile path instead of refusing
//! it; we would rather fail the import with the entry's name. Needs Linux >= 5.6.
//!
//! Hardlink targets go through the same resolution, so a link can only name a file already in
//! this layer. xattrs in the `trusted.overlay.` namespace are never copied from a tar: they would
//! let a layer forge overlay metadata (redirects, metacopy) that the kernel trusts. Ownership,
//! device nodes and the whiteout/opaque markers need root; without it ownership is left to the
//! current user and device nodes are skipped with a warning.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use sha2::{Digest as _, Sha256};

use super::ImageError;

/// The result of reading a layer: the digest and size of its uncompressed tar stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStats {
    /// `sha256:<hex>` of the uncompressed tar: the layer's diff id.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

/// What the stream is compressed with, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Detects gzip (`1f 8b`) and zstd (`28 b5 2f fd`) by magic.
pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps `r` in the decompressor its magic bytes call for.
pub fn decompressed<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(64 * 1024, r);
    let head = br.fill_buf()?;
    Ok(match detect_compression(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(br)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(br)?),
        Compression::None => Box::new(br),
    })
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    n: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            n: 0,
        }
    }

    /// Reads the rest of the stream (a tar's trailing padding counts towards its digest).
    pub fn finish(mut self) -> io::Result<LayerStats> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(LayerStats {
            diff_id: format!("sha256:{}", hex::encode(self.hasher.finalize())),
            size: self.n,
        })
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// The diff id and size of a (possibly compressed) layer without unpacking it.
pub fn digest_layer<R: Read>(reader: R) -> Result<LayerStats, ImageError> {
    let r = decompressed(reader).map_err(|e| ImageError::InvalidArchive(format!("layer: {e}")))?;
    HashingReader::new(r)
        .finish()
        .map_err(|e| ImageError::InvalidArchive(format!("failed to read layer: {e}")))
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2) with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: `path` must stay beneath `dirfd`.
pub(crate) fn open_beneath(dirfd: RawFd, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    open_how(dirfd, path, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
}

pub(crate) fn open_how(
    dirfd: RawFd,
    path: &Path,
    flags: OFlag,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let p = if path.as_os_str().is_empty() {
        CString::new(".")?
    } else {
        CString::new(path.as_os_str().as_bytes())?
    };
    let how = OpenHow {
        flags: (flags | OFlag::O_CLOEXEC).bits() as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: openat2(2) reads a NUL-terminated path and an `open_how` of the size we pass; both
    // live across the call. The returned fd is new and owned by nobody else.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above: a fresh descriptor from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Splits an entry path into normal components; refuses absolute paths and `..`.
fn components(entry: &str, path: &Path) -> Result<Vec<OsString>, ImageError> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(ImageError::UnsafeEntry {
                    entry: entry.to_string(),
                    reason: "absolute path".into(),
                })
            }
            Component::ParentDir => {
                return Err(ImageError::UnsafeEntry {
                    entry: entry.to_string(),
                    reason: "path contains '..'".into(),
                })
            }
        }
    }
    Ok(out)
}

fn join(comps: &[OsString]) -> PathBuf {
    comps.iter().collect()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A layer being applied: the root descriptor and what is left to do at the end.
struct Applier {
    root: OwnedFd,
    root_path: PathBuf,
    /// Directories whose mtime is set last (creating children changes it).
    dir_times: Vec<(Vec<OsString>, u64)>,
    root_user: bool,
}

/// Maps an error of a resolution beneath the root into an image error naming the entry.
fn resolve_err(entry: &str, e: io::Error) -> ImageError {
    match e.raw_os_error() {
        Some(libc::EXDEV) | Some(libc::ELOOP) => ImageError::UnsafeEntry {
            entry: entry.to_string(),
            reason: "path resolves outside the layer root through a symlink".into(),
        },
        _ => ImageError::Entry {
            entry: entry.to_string(),
            op: "resolve",
            source: e,
        },
    }
}

fn entry_err<'a>(entry: &'a str, op: &'static str) -> impl Fn(nix::Error) -> ImageError + 'a {
    move |e| ImageError::Entry {
        entry: entry.to_string(),
        op,
        source: e.into(),
    }
}

impl Applier {
    /// Opens the directory `comps` beneath the root, creating missing ones (mode 0755).
    fn dir(&self, entry: &str, comps: &[OsString], create: bool) -> Result<OwnedFd, ImageError> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY;
        match open_beneath(self.root.as_raw_fd(), &join(comps), flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {}
            Err(e) => return Err(resolve_err(entry, e)),
        }
        let mut cur = open_beneath(self.root.as_raw_fd(), Path::new(""), flags)
            .map_err(|e| resolve_err(entry, e))?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            match open_beneath(self.root.as_raw_fd(), &prefix, flags) {
                Ok(fd) => cur = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    match nix::sys::stat::mkdirat(
                        Some(cur.as_raw_fd()),
                        comps[i].as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) | Err(nix::Error::EEXIST) => {}
                        Err(e) => return Err(entry_err(entry, "create parent directory")(e)),
                    }
                    cur = open_beneath(self.root.as_raw_fd(), &prefix, flags)
                        .map_err(|e| resolve_err(entry, e))?;
                }
                Err(e) => return Err(resolve_err(entry, e)),
            }
        }
        Ok(cur)
    }

    /// Removes whatever is at `name` in `dir` (recursively for a directory).
    fn remove_existing(&self, entry: &str, dir: &OwnedFd, name: &OsStr) -> Result<(), ImageError> {
        let st = match nix::sys::stat::fstatat(
            Some(dir.as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(entry_err(entry, "stat")(e)),
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            // std's remove_dir_all never follows symlinks inside the tree (CVE-2022-21658 fix);
            // the /proc path names our own descriptor of the already-confined parent.
            let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
            std::fs::remove_dir_all(&p).map_err(|e| ImageError::Entry {
                entry: entry.to_string(),
                op: "remove existing directory",
                source: e,
            })
        } else {
            nix::unistd::unlinkat(
                Some(dir.as_raw_fd()),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )
            .map_err(entry_err(entry, "remove existing file"))
        }
    }

    fn chown_at(
        &self,
        entry: &str,
        dir: &OwnedFd,
        name: &OsStr,
        uid: u32,
        gid: u32,
    ) -> Result<(), ImageError> {
        if !self.root_user {
            return Ok(());
        }
        nix::unistd::fchownat(
            Some(dir.as_raw_fd()),
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(entry_err(entry, "chown"))
    }

    fn times_at(
        &self,
        entry: &str,
        dir: &OwnedFd,
        name: &OsStr,
        mtime: u64,
    ) -> Result<(), ImageError> {
        let t = TimeSpec::new(mtime as libc::time_t, 0);
        nix::sys::stat::utimensat(
            Some(dir.as_raw_fd()),
            name,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(entry_err(entry, "set times"))
    }

    /// Sets xattrs without following a symlink at `name`.
    fn xattrs_at(
        &self,
        entry: &str,
        dir: &OwnedFd,
        name: &OsStr,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<(), ImageError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        let cp = CString::new(p.as_os_str().as_bytes()).map_err(|e| ImageError::Entry {
            entry: entry.to_string(),
            op: "set xattr",
            source: e.into(),
        })?;
        for (k, v) in xattrs {
            let ck = CString::new(k.as_str()).map_err(|e| ImageError::Entry {
                entry: entry.to_string(),
                op: "set xattr",
                source: e.into(),
            })?;
            // SAFETY: lsetxattr(2) with NUL-terminated path and name and a value buffer of the
            // given length, all alive across the call. The path goes through our own descriptor
            // of the confined parent; lsetxattr does not follow a symlink in the last component.
            let r =
                unsafe { libc::lsetxattr(cp.as_ptr(), ck.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
            if r != 0 {
                return Err(ImageError::Entry {
                    entry: entry.to_string(),
                    op: "set xattr",
                    source: io::Error::last_os_error(),
                });
            }
        }
        Ok(())
    }

    fn apply_entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<(), ImageError> {
        let path = e
            .path()
            .map_err(|err| ImageError::InvalidArchive(format!("bad entry path: {err}")))?
            .into_owned();
        let entry = path.to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let comps = components(&entry, &path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(()); // "./" itself: the root's own metadata is ours to keep
        };
        let name_b = name.as_bytes();
        if name_b == b".wh..wh..opq" {
            let dir = self.dir(&entry, parents, true)?;
            return set_opaque(&entry, &dir);
        }
        if name_b.starts_with(b".wh..wh.") {
            // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs) from old docker layers: not files,
            // not whiteouts; containerd skips them too.
            return Ok(());
        }
        if let Some(hidden) = name_b.strip_prefix(b".wh.") {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(ImageError::UnsafeEntry {
                    entry,
                    reason: "invalid whiteout name".into(),
                });
            }
            let dir = self.dir(&entry, parents, true)?;
            let hidden = OsStr::from_bytes(hidden);
            self.remove_existing(&entry, &dir, hidden)?;
            return nix::sys::stat::mknodat(
                Some(dir.as_raw_fd()),
                hidden,
                SFlag::S_IFCHR,
                Mode::empty(),
                0,
            )
            .map_err(entry_err(&entry, "create whiteout"));
        }

        let h = e.header();
        let mode = h.mode().map_err(|er| bad_header(&entry, er))? & 0o7777;
        let uid = u32::try_from(h.uid().map_err(|er| bad_header(&entry, er))?)
            .map_err(|_| bad_field(&entry, "uid"))?;
        let gid = u32::try_from(h.gid().map_err(|er| bad_header(&entry, er))?)
            .map_err(|_| bad_field(&entry, "gid"))?;
        let mtime = h.mtime().map_err(|er| bad_header(&entry, er))?;
        // Only device entries carry meaningful device numbers (others may leave them blank).
        let (major, minor) = if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            (
                h.device_major()
                    .map_err(|er| bad_header(&entry, er))?
                    .unwrap_or(0),
                h.device_minor()
                    .map_err(|er| bad_header(&entry, er))?
                    .unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().map_err(|er| bad_header(&entry, er))? {
            for ext in exts {
                let ext = ext.map_err(|er| bad_header(&entry, er))?;
                let Ok(key) = ext.key() else { continue };
                if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                    if x.starts_with("trusted.overlay.") {
                        tracing::warn!(entry = %entry, xattr = x, "ignoring overlay xattr in layer");
                        continue;
                    }
                    xattrs.push((x.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        let dir = self.dir(&entry, parents, true)?;
        let perm = Mode::from_bits_truncate(mode as libc::mode_t);

        match kind {
            tar::EntryType::Directory => {
                let existing = nix::sys::stat::fstatat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                );
                let is_dir =
                    matches!(&existing, Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR);
                if !is_dir {
                    self.remove_existing(&entry, &dir, name)?;
                    nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name.as_os_str(), perm)
                        .map_err(entry_err(&entry, "create directory"))?;
                }
                self.chown_at(&entry, &dir, name, uid, gid)?;
                nix::sys::stat::fchmodat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    perm,
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(entry_err(&entry, "chmod"))?;
                self.xattrs_at(&entry, &dir, name, &xattrs)?;
                self.dir_times.push((comps.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.remove_existing(&entry, &dir, name)?;
                let fd = nix::fcntl::openat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(entry_err(&entry, "create file"))?;
                // SAFETY: openat just returned this descriptor; the File now owns it.
                let mut f = unsafe { File::from_raw_fd(fd) };
                io::copy(&mut e, &mut f).map_err(|er| ImageError::Entry {
                    entry: entry.clone(),
                    op: "write",
                    source: er,
                })?;
                if self.root_user {
                    nix::unistd::fchown(
                        f.as_raw_fd(),
                        Some(Uid::from_raw(uid)),
                        Some(Gid::from_raw(gid)),
                    )
                    .map_err(entry_err(&entry, "chown"))?;
                }
                // After chown, which clears setuid/setgid bits.
                nix::sys::stat::fchmod(f.as_raw_fd(), perm).map_err(entry_err(&entry, "chmod"))?;
                f.flush().map_err(|er| ImageError::Entry {
                    entry: entry.clone(),
                    op: "write",
                    source: er,
                })?;
                drop(f);
                self.xattrs_at(&entry, &dir, name, &xattrs)?;
                self.times_at(&entry, &dir, name, mtime)?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(|er| bad_header(&entry, er))?
                    .ok_or_else(|| bad_field(&entry, "symlink target"))?
                    .into_owned();
                if target.as_os_str().is_empty() {
                    return Err(bad_field(&entry, "symlink target"));
                }
                self.remove_existing(&entry, &dir, name)?;
                nix::unistd::symlinkat(target.as_os_str(), Some(dir.as_raw_fd()), name.as_os_str())
                    .map_err(entry_err(&entry, "create symlink"))?;
                self.chown_at(&entry, &dir, name, uid, gid)?;
                self.xattrs_at(&entry, &dir, name, &xattrs)?;
                self.times_at(&entry, &dir, name, mtime)?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(|er| bad_header(&entry, er))?
                    .ok_or_else(|| bad_field(&entry, "hardlink target"))?
                    .into_owned();
                let tcomps = components(&entry, &target)?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(bad_field(&entry, "hardlink target"));
                };
                let tdir = self.dir(&entry, tparents, false)?;
                if tcomps == comps {
                    return Ok(());
                }
                self.remove_existing(&entry, &dir, name)?;
                nix::unistd::linkat(
                    Some(tdir.as_raw_fd()),
                    tname.as_os_str(),
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(entry_err(&entry, "create hardlink"))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                if sflag != SFlag::S_IFIFO && !self.root_user {
                    tracing::warn!(entry = %entry, "skipping device node: not root");
                    return Ok(());
                }
                self.remove_existing(&entry, &dir, name)?;
                nix::sys::stat::mknodat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    sflag,
                    perm,
                    nix::sys::stat::makedev(major.into(), minor.into()),
                )
                .map_err(entry_err(&entry, "create device node"))?;
                self.chown_at(&entry, &dir, name, uid, gid)?;
                // The node was just created by us in a directory only we write to.
                nix::sys::stat::fchmodat(
                    Some(dir.as_raw_fd()),
                    name.as_os_str(),
                    perm,
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(entry_err(&entry, "chmod"))?;
                self.xattrs_at(&entry, &dir, name, &xattrs)?;
                self.times_at(&entry, &dir, name, mtime)?;
            }
            other => {
                return Err(ImageError::Unsupported(format!(
                    "layer entry {entry:?} has unsupported type {other:?}"
                )))
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        for (comps, mtime) in self.dir_times.iter().rev() {
            let entry = join(comps).to_string_lossy().into_owned();
            // A later entry may have replaced the directory (or a whiteout removed it): a
            // tar's last word wins, so there is no directory left to date.
            let fd = match self.dir(&entry, comps, false) {
                Ok(fd) => fd,
                Err(ImageError::Entry { source, .. })
                    if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let t = TimeSpec::new(*mtime as libc::time_t, 0);
            nix::sys::stat::futimens(fd.as_raw_fd(), &t, &t)
                .map_err(entry_err(&entry, "set times"))?;
        }
        Ok(())
    }
}

fn set_opaque(entry: &str, dir: &OwnedFd) -> Result<(), ImageError> {
    let name = c"trusted.overlay.opaque";
    // SAFETY: fsetxattr(2) on a directory descriptor we own, with a NUL-terminated name and a
    // one-byte value; all alive across the call.
    let r = unsafe { libc::fsetxattr(dir.as_raw_fd(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if r != 0 {
        return Err(ImageError::Entry {
            entry: entry.to_string(),
            op: "mark directory opaque",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn bad_header(entry: &str, e: io::Error) -> ImageError {
    ImageError::InvalidArchive(format!("layer entry {entry:?}: bad header: {e}"))
}

fn bad_field(entry: &str, what: &str) -> ImageError {
    ImageError::InvalidArchive(format!("layer entry {entry:?}: invalid {what}"))
}

/// Applies the layer tar read from `reader` (compressed or not) into `dest`; see the module docs.
/// Returns the diff id of the uncompressed stream.
pub fn apply_layer<R: Read>(reader: R, dest: &Path) -> Result<LayerStats, ImageError> {
    let root = open_beneath(libc::AT_FDCWD, dest, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
        .or_else(|_| {
            nix::fcntl::open(
                dest,
                OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            // SAFETY: open just returned this descriptor and nothing else owns it.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .map_err(io::Error::from)
        })
        .map_err(|e| ImageError::io("open", dest, e))?;
    let mut applier = Applier {
        root,
        root_path: dest.to_path_buf(),
        dir_times: Vec::new(),
        root_user: is_root(),
    };
    let r = decompressed(reader).map_err(|e| ImageError::InvalidArchive(format!("layer: {e}")))?;
    let mut archive = tar::Archive::new(super::targuard::TarGuard::new(HashingReader::new(r)));
    let entries = archive
        .entries()
        .map_err(|e| ImageError::InvalidArchive(format!("layer: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            ImageError::InvalidArchive(format!(
                "failed to read layer tar in {}: {e}",
                applier.root_path.display()
            ))
        })?;
        applier.apply_entry(entry)?;
    }
    applier.finish_dirs()?;
    archive
        .into_inner()
        .into_inner()
        .finish()
        .map_err(|e| ImageError::InvalidArchive(format!("failed to read layer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_escapes() {
        assert!(components("x", Path::new("/etc/passwd")).is_err());
        assert!(components("x", Path::new("a/../../b")).is_err());
        assert_eq!(
            components("x", Path::new("./a/b")).expect("ok"),
            vec![OsString::from("a"), OsString::from("b")]
        );
    }

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(detect_compression(b"usr/"), Compression::None);
    }
}
