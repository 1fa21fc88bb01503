//! Layer unpacking: overlay conversion of whiteouts, metadata, and — above all — hostile layers.
//!
//! Each hostile case builds its tar in memory (raw headers, so the tar crate's own path checks
//! cannot save us), applies it into `<tmp>/layer`, and proves that nothing outside changed: a
//! sentinel file beside the layer and one in a sibling directory keep their content and mtime,
//! and no new name appears in the parent temp directory or the sibling. Needs root (whiteouts,
//! trusted xattrs, ownership); prints `skipping: <reason>` otherwise.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use minid::engine::image::unpack::apply_layer;
use minid::engine::image::{ImageError, ImageStore, ImportFormat};
use minid::engine::ErrorKind;

fn need_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        println!("skipping: needs root (whiteouts, trusted xattrs, ownership)");
        false
    }
}

/// A tar built entry by entry with raw names, so hostile names survive.
struct RawTar(tar::Builder<Vec<u8>>);

impl RawTar {
    fn new() -> Self {
        RawTar(tar::Builder::new(Vec::new()))
    }

    fn entry(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        data: &[u8],
        link: Option<&str>,
    ) -> &mut Self {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        self.0.append(&h, data).expect("append");
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name, tar::EntryType::Regular, data, None)
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Directory, b"", None)
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Symlink, b"", Some(target))
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Link, b"", Some(target))
    }
    fn chardev(&mut self, name: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Char, b"", None)
    }
    fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().expect("finish")
    }
}

/// `<tmp>/layer` (the destination), `<tmp>/sentinel`, `<tmp>/outside/sentinel`.
struct Scene {
    tmp: tempfile::TempDir,
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    parent: BTreeSet<String>,
    outside: BTreeSet<String>,
    sentinels: Vec<(Vec<u8>, i64, u32)>,
}

impl Scene {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir(tmp.path().join("layer")).expect("mkdir layer");
        fs::create_dir(tmp.path().join("outside")).expect("mkdir outside");
        for p in [
            tmp.path().join("sentinel"),
            tmp.path().join("outside/sentinel"),
        ] {
            fs::write(&p, b"do not touch").expect("sentinel");
            let t = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
            nix::sys::stat::utimensat(
                None,
                &p,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .expect("set sentinel time");
        }
        Scene { tmp }
    }
    fn path(&self) -> &Path {
        self.tmp.path()
    }
    fn layer(&self) -> PathBuf {
        self.path().join("layer")
    }
    fn outside(&self) -> String {
        self.path().join("outside").to_string_lossy().into_owned()
    }
    fn state(&self) -> Snapshot {
        let names = |d: &Path| -> BTreeSet<String> {
            fs::read_dir(d)
                .expect("readdir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        };
        let sentinel = |p: PathBuf| {
            let m = fs::symlink_metadata(&p).expect("sentinel still there");
            (fs::read(&p).unwrap_or_default(), m.mtime(), m.mode())
        };
        Snapshot {
            parent: names(self.path()),
            outside: names(&self.path().join("outside")),
            sentinels: vec![
                sentinel(self.path().join("sentinel")),
                sentinel(self.path().join("outside/sentinel")),
            ],
        }
    }

    /// Applies `tar`, expects an unsafe-entry error naming `entry`, and checks nothing outside
    /// the layer changed.
    fn expect_refused(&self, tar: Vec<u8>, entry: &str) {
        let before = self.state();
        let err = apply_layer(&tar[..], &self.layer()).expect_err("hostile layer must fail");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(
            err.to_string().contains(entry),
            "error {err} should name {entry}"
        );
        assert_eq!(self.state(), before, "something outside the layer changed");
    }
}

#[test]
fn dotdot_path_is_refused() {
    let s = Scene::new();
    s.expect_refused(RawTar::new().file("../escape", b"x").finish(), "../escape");
    s.expect_refused(
        RawTar::new().file("a/../../escape", b"x").finish(),
        "a/../../escape",
    );
}

#[test]
fn absolute_path_is_refused() {
    let s = Scene::new();
    let abs = format!("{}/escape", s.outside());
    s.expect_refused(RawTar::new().file(&abs, b"x").finish(), &abs);
}

#[test]
fn path_through_an_outside_symlink_is_refused() {
    if !need_root() {
        return;
    }
    let s = Scene::new();
    // Relative and absolute symlinks created by the same tar, then written through.
    s.expect_refused(
        RawTar::new()
            .symlink("up", "..")
            .file("up/escape", b"x")
            .finish(),
        "up/escape",
    );
    let out = s.outside();
    s.expect_refused(
        RawTar::new()
            .symlink("abs", &out)
            .file("abs/escape", b"x")
            .finish(),
        "abs/escape",
    );
    s.expect_refused(
        RawTar::new()
            .symlink("abs2", &out)
            .dir("abs2/newdir")
            .finish(),
        "abs2/newdir",
    );
    // A chain of symlinks that ends outside.
    s.expect_refused(
        RawTar::new()
            .dir("d")
            .symlink("d/hop", "../up2")
            .symlink("up2", "..")
            .file("d/hop/escape", b"x")
            .finish(),
        "d/hop/escape",
    );
}

#[test]
fn file_over_outside_symlink_replaces_the_link_not_the_target() {
    if !need_root() {
        return;
    }
    let s = Scene::new();
    let before = s.state();
    let target = format!("{}/sentinel", s.outside());
    let tar = RawTar::new()
        .symlink("evil", &target)
        .file("evil", b"overwritten")
        .finish();
    apply_layer(&tar[..], &s.layer()).expect("apply");
    assert_eq!(
        fs::read(s.layer().join("evil")).expect("read"),
        b"overwritten"
    );
    assert!(!fs::symlink_metadata(s.layer().join("evil"))
        .expect("meta")
        .file_type()
        .is_symlink());
    assert_eq!(s.state(), before);
}

#[test]
fn hardlink_to_outside_is_refused() {
    if !need_root() {
        return;
    }
    let s = Scene::new();
    s.expect_refused(RawTar::new().hardlink("hl", "../sentinel").finish(), "hl");
    let abs = format!("{}/sentinel", s.outside());
    s.expect_refused(RawTar::new().hardlink("hl2", &abs).finish(), "hl2");
    s.expect_refused(
        RawTar::new()
            .symlink("o", &s.outside())
            .hardlink("hl3", "o/sentinel")
            .finish(),
        "hl3",
    );
    // The sentinel's link count proves no link to it was made anywhere.
    assert_eq!(
        fs::metadata(s.path().join("sentinel"))
            .expect("meta")
            .nlink(),
        1
    );
    assert_eq!(
        fs::metadata(s.path().join("outside/sentinel"))
            .expect("meta")
            .nlink(),
        1
    );
}

#[test]
fn device_node_outside_is_refused() {
    if !need_root() {
        return;
    }
    let s = Scene::new();
    s.expect_refused(RawTar::new().chardev("../dev").finish(), "../dev");
    s.expect_refused(
        RawTar::new()
            .symlink("o", &s.outside())
            .chardev("o/dev")
            .finish(),
        "o/dev",
    );
}

#[test]
fn whiteout_and_opaque_through_outside_symlink_are_refused() {
    if !need_root() {
        return;
    }
    let s = Scene::new();
    s.expect_refused(
        RawTar::new()
            .symlink("o", &s.outside())
            .file("o/.wh.sentinel", b"")
            .finish(),
        "o/.wh.sentinel",
    );
    s.expect_refused(
        RawTar::new()
            .symlink("o", &s.outside())
            .file("o/.wh..wh..opq", b"")
            .finish(),
        "o/.wh..wh..opq",
    );
    s.expect_refused(
        RawTar::new().file("../.wh.sentinel", b"").finish(),
        "../.wh.sentinel",
    );
    let mut buf = vec![0u8; 64];
    let n = nix_getxattr(
        &s.path().join("outside"),
        "trusted.overlay.opaque",
        &mut buf,
    );
    assert!(n < 0, "opaque xattr must not be set outside");
}

fn nix_getxattr(p: &Path, name: &str, buf: &mut [u8]) -> isize {
    let cp = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    let cn = std::ffi::CString::new(name).expect("name");
    // SAFETY: NUL-terminated path and name; the buffer and its length are ours.
    unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
}

#[test]
fn benign_layer_converts_whiteouts_and_keeps_metadata() {
    if !need_root() {
        return;
    }
    let s = Scene::new();
    let mut t = RawTar::new();
    t.dir("etc").file("etc/hosts", b"127.0.0.1 localhost\n");
    t.symlink("etc/link", "/etc/hosts"); // absolute, but never followed while unpacking
    t.hardlink("etc/hosts2", "etc/hosts");
    t.file("etc/.wh.gone", b"");
    t.dir("opq").file("opq/.wh..wh..opq", b"");
    t.chardev("null");
    // A setuid binary owned by 1000:1000 with PAX xattrs.
    let mut h = tar::Header::new_ustar();
    h.set_path("suid").expect("path");
    h.set_mode(0o4755);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(1_500_000_000);
    h.set_size(2);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    t.0.append_pax_extensions([
        ("SCHILY.xattr.user.note", &b"hi"[..]),
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
    ])
    .expect("pax");
    t.0.append(&h, &b"#!"[..]).expect("append");
    let tar = t.finish();
    let stats = apply_layer(&tar[..], &s.layer()).expect("apply");
    let d = s.layer();
    assert_eq!(stats.size, tar.len() as u64);
    assert_eq!(
        stats.diff_id,
        minid::engine::image::content::sha256_digest(&tar)
    );
    assert_eq!(
        fs::read_to_string(d.join("etc/hosts")).expect("hosts"),
        "127.0.0.1 localhost\n"
    );
    assert_eq!(
        fs::read_link(d.join("etc/link")).expect("link"),
        Path::new("/etc/hosts")
    );
    assert_eq!(
        fs::metadata(d.join("etc/hosts")).expect("m").ino(),
        fs::metadata(d.join("etc/hosts2")).expect("m").ino()
    );
    let wh = fs::symlink_metadata(d.join("etc/gone")).expect("whiteout");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(wh.rdev(), 0);
    assert!(!d.join("etc/.wh.gone").exists());
    let mut buf = [0u8; 8];
    assert_eq!(
        nix_getxattr(&d.join("opq"), "trusted.overlay.opaque", &mut buf),
        1
    );
    assert_eq!(&buf[..1], b"y");
    let m = fs::metadata(d.join("suid")).expect("suid");
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    assert_eq!(
        m.permissions().mode() & 0o7777,
        0o4755,
        "setuid survives chown"
    );
    assert_eq!(m.mtime(), 1_500_000_000);
    assert_eq!(nix_getxattr(&d.join("suid"), "user.note", &mut buf), 2);
    assert!(
        nix_getxattr(&d.join("suid"), "trusted.overlay.redirect", &mut buf) < 0,
        "overlay xattrs from a tar are dropped"
    );
    assert_eq!(
        fs::metadata(d.join("etc")).expect("etc").mtime(),
        1_600_000_000,
        "dir mtimes are set last"
    );
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &fs::symlink_metadata(d.join("null"))
            .expect("null")
            .file_type()
    ));
}

#[test]
fn compressed_layers_unpack_to_the_same_diff_id() {
    if !need_root() {
        return;
    }
    let tar = RawTar::new().dir("a").file("a/b", b"content").finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    let mut ids = Vec::new();
    for blob in [&tar, &gz, &zst] {
        let s = Scene::new();
        ids.push(apply_layer(&blob[..], &s.layer()).expect("apply").diff_id);
        assert_eq!(fs::read(s.layer().join("a/b")).expect("read"), b"content");
    }
    assert!(ids.iter().all(|i| i == &ids[0]));
}

#[test]
fn hostile_rootfs_import_leaves_no_partial_image() {
    if !need_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&tmp.path().join("store")).expect("store");
    let tar = RawTar::new()
        .dir("ok")
        .file("ok/file", b"fine")
        .symlink("up", "../../..")
        .file("up/escape", b"x")
        .finish();
    let path = tmp.path().join("evil.tar");
    fs::write(&path, &tar).expect("write tar");
    let err = store
        .import(&path, ImportFormat::RootfsTar, Some("evil"))
        .expect_err("must fail");
    assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    assert!(err.to_string().contains("up/escape"), "{err}");
    assert!(store.list().expect("list").is_empty());
    assert!(
        store.content().list().expect("blobs").is_empty(),
        "no blob left behind"
    );
    use minid::engine::snapshot::Snapshotter;
    assert!(
        store.snapshotter().list().expect("snapshots").is_empty(),
        "no snapshot left behind"
    );
    let ids: Vec<_> = fs::read_dir(tmp.path().join("store/snapshots/snapshots"))
        .expect("rd")
        .collect();
    assert!(ids.is_empty(), "no snapshot directory left behind");
}

#[test]
fn a_gzip_bomb_in_a_pax_header_is_refused_without_reading_it() {
    if !need_root() {
        return;
    }
    // A PAX record claiming 16 GiB of zeros compresses to a few kB; the tar reader would
    // hold it all in memory. The import must refuse it and leave nothing behind.
    let mut h = tar::Header::new_ustar();
    h.set_path("pax").expect("path");
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(16 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bomb.tar.gz");
    {
        let f = fs::File::create(&path).expect("create");
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        use std::io::Write;
        gz.write_all(h.as_bytes()).expect("header");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).expect("zeros");
        }
        gz.finish().expect("finish");
    }
    assert!(
        fs::metadata(&path).expect("stat").len() < 1 << 20,
        "a small file"
    );
    let store = ImageStore::open(&tmp.path().join("store")).expect("store");
    let err = store
        .import(&path, ImportFormat::RootfsTar, Some("bomb"))
        .expect_err("must fail");
    assert!(err.to_string().contains("exceeds"), "{err}");
    assert!(store.list().expect("list").is_empty());
    use minid::engine::snapshot::Snapshotter;
    assert!(store.snapshotter().list().expect("snapshots").is_empty());
}
