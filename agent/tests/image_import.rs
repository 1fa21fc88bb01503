//! Image import end to end through the library API: a busybox rootfs tar, a docker-archive and
//! an OCI archive synthesised in memory (two layers; the second whites out a file of the first
//! and makes a directory opaque), layer sharing, diff-id verification, removal with garbage
//! collection, and (as root) the mounted rootfs of a bundle.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use minid::engine::image::content::sha256_digest;
use minid::engine::image::{
    create_bundle, remove_bundle, remove_bundle_or, ImageError, ImageStore, ImportFormat,
};
use minid::engine::snapshot::{Kind, Snapshotter};
use minid::engine::ErrorKind;

fn root_reason() -> Option<&'static str> {
    if nix::unistd::geteuid().is_root() {
        None
    } else {
        Some("needs root (whiteouts, overlay mounts)")
    }
}

macro_rules! need_root {
    () => {
        if let Some(r) = root_reason() {
            println!("skipping: {r}");
            return;
        }
    };
}

struct TarBuf(tar::Builder<Vec<u8>>);

impl TarBuf {
    fn new() -> Self {
        TarBuf(tar::Builder::new(Vec::new()))
    }
    fn header(path: &str, kind: tar::EntryType, mode: u32, size: usize) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).expect("path");
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size as u64);
        h.set_mtime(946_684_800);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    fn dir(&mut self, p: &str, mode: u32) -> &mut Self {
        let mut h = Self::header(p, tar::EntryType::Directory, mode, 0);
        h.set_cksum();
        self.0.append(&h, &[][..]).expect("dir");
        self
    }
    fn file(&mut self, p: &str, data: &[u8]) -> &mut Self {
        self.file_mode(p, data, 0o644)
    }
    fn file_mode(&mut self, p: &str, data: &[u8], mode: u32) -> &mut Self {
        let mut h = Self::header(p, tar::EntryType::Regular, mode, data.len());
        h.set_cksum();
        self.0.append(&h, data).expect("file");
        self
    }
    fn symlink(&mut self, p: &str, target: &str) -> &mut Self {
        let mut h = Self::header(p, tar::EntryType::Symlink, 0o777, 0);
        h.set_link_name(target).expect("link");
        h.set_cksum();
        self.0.append(&h, &[][..]).expect("symlink");
        self
    }
    fn done(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .expect("finish")
    }
}

/// A busybox rootfs like tests/images/build-busybox.sh makes (fake binary if busybox is absent).
fn busybox_rootfs() -> Vec<u8> {
    let bin = fs::read("/bin/busybox").unwrap_or_else(|_| b"#!fake busybox\n".to_vec());
    let mut t = TarBuf::new();
    t.dir("bin", 0o755).file_mode("bin/busybox", &bin, 0o755);
    for applet in ["sh", "ls", "cat", "echo"] {
        t.symlink(&format!("bin/{applet}"), "/bin/busybox");
    }
    t.dir("etc", 0o755)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        .dir("tmp", 0o1777)
        .dir("proc", 0o755)
        .dir("sys", 0o755)
        .dir("dev", 0o755)
        .dir("root", 0o700);
    t.done()
}

/// Base layer shared by the docker and OCI images.
fn base_layer() -> Vec<u8> {
    TarBuf::new()
        .dir("etc", 0o755)
        .file("etc/hello", b"hello from base\n")
        .file(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .file("etc/group", b"root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
        .dir("data", 0o755)
        .file("data/gone", b"to be deleted\n")
        .dir("opq", 0o755)
        .file("opq/a", b"a\n")
        .file("opq/b", b"b\n")
        .dir("bin", 0o755)
        .file_mode("bin/tool", b"#!/bin/sh\necho tool\n", 0o755)
        .done()
}

fn top_layer(marker: &str) -> Vec<u8> {
    TarBuf::new()
        .dir("etc", 0o755)
        .file("etc/top", marker.as_bytes())
        .dir("data", 0o755)
        .file("data/.wh.gone", b"")
        .dir("opq", 0o755)
        .file("opq/.wh..wh..opq", b"")
        .file("opq/c", b"c\n")
        .done()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).expect("gzip");
    e.finish().expect("gzip")
}

fn config(diff_ids: &[String], user: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": minid::engine::image::host_arch(),
        "os": "linux",
        "created": "2024-05-01T12:00:00Z",
        "config": {
            "Entrypoint": ["/bin/tool"],
            "Cmd": ["--default"],
            "Env": ["PATH=/bin", "GREETING=hi"],
            "WorkingDir": "/data",
            "User": user,
            "ExposedPorts": {"80/tcp": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "container_config": {"Hostname": "ignored docker field"},
    }))
    .expect("config")
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").expect("sha256")
}

/// `docker save` layout: manifest.json, <cfg>.json, <id>/layer.tar (second layer gzipped).
fn docker_archive(diff_override: Option<&str>) -> Vec<u8> {
    let l1 = base_layer();
    let l2 = top_layer("docker top\n");
    let mut diffs = vec![sha256_digest(&l1), sha256_digest(&l2)];
    if let Some(d) = diff_override {
        diffs[1] = d.to_string();
    }
    let cfg = config(&diffs, "app");
    let cfg_name = format!("{}.json", hex(&sha256_digest(&cfg)));
    let l2gz = gzip(&l2);
    let p1 = format!("{}/layer.tar", hex(&diffs[0]));
    let p2 = format!("{}/layer.tar", hex(&sha256_digest(&l2gz)));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": cfg_name, "RepoTags": ["test/docker-img:v1"], "Layers": [p1, p2],
    }]))
    .expect("manifest");
    let mut t = TarBuf::new();
    t.file(&cfg_name, &cfg).file(&p1, &l1).file(&p2, &l2gz);
    t.file("repositories", b"{}")
        .file("manifest.json", &manifest);
    t.done()
}

/// OCI layout: oci-layout, index.json (ref name), blobs/sha256/* (second layer zstd).
fn oci_files() -> Vec<(String, Vec<u8>)> {
    let l1 = base_layer();
    let l2 = top_layer("oci top\n");
    let l2z = zstd::encode_all(&l2[..], 3).expect("zstd");
    let cfg = config(&[sha256_digest(&l1), sha256_digest(&l2)], "");
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": sha256_digest(b), "size": b.len()});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", &cfg),
        "layers": [
            desc("application/vnd.oci.image.layer.v1.tar", &l1),
            desc("application/vnd.oci.image.layer.v1.tar+zstd", &l2z),
        ],
    }))
    .expect("manifest");
    let mut mdesc = desc("application/vnd.oci.image.manifest.v1+json", &manifest);
    mdesc["annotations"] =
        serde_json::json!({"org.opencontainers.image.ref.name": "test/oci-img:v2"});
    mdesc["platform"] =
        serde_json::json!({"os": "linux", "architecture": minid::engine::image::host_arch()});
    let other = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", "0".repeat(64)), "size": 1,
        "platform": {"os": "windows", "architecture": "amd64"}});
    let index =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [mdesc, other]}))
            .expect("index");
    let mut files = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_string(), index),
    ];
    for b in [cfg, manifest, l1, l2z] {
        files.push((format!("blobs/sha256/{}", hex(&sha256_digest(&b))), b));
    }
    files
}

fn oci_archive() -> Vec<u8> {
    let mut t = TarBuf::new();
    t.dir("blobs", 0o755).dir("blobs/sha256", 0o755);
    for (p, b) in oci_files() {
        t.file(&p, &b);
    }
    t.done()
}

struct Env {
    tmp: tempfile::TempDir,
    store: ImageStore,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(&tmp.path().join("state")).expect("open store");
        Env { tmp, store }
    }
    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::write(&p, data).expect("write");
        p
    }
    fn committed(&self) -> Vec<String> {
        self.store
            .snapshotter()
            .list()
            .expect("list")
            .into_iter()
            .filter(|i| i.kind == Kind::Committed)
            .map(|i| i.key)
            .collect()
    }
    fn import_all(&self) {
        let bb = self.write("busybox.tar.gz", &gzip(&busybox_rootfs()));
        let got = self
            .store
            .import(&bb, ImportFormat::Auto, Some("busybox"))
            .expect("rootfs import");
        assert_eq!(got.len(), 1);
        let d = self.write("docker.tar", &docker_archive(None));
        let got = self
            .store
            .import(&d, ImportFormat::Auto, None)
            .expect("docker import");
        assert_eq!(got[0].name, "docker.io/test/docker-img:v1");
        let o = self.write(
            "oci.tar.zst",
            &zstd::encode_all(&oci_archive()[..], 3).expect("zstd"),
        );
        let got = self
            .store
            .import(&o, ImportFormat::Auto, None)
            .expect("oci import");
        assert_eq!(got[0].name, "docker.io/test/oci-img:v2");
    }
}

#[test]
fn imports_three_formats_and_shares_the_base_layer() {
    need_root!();
    let env = Env::new();
    env.import_all();
    let s = &env.store;
    let names: Vec<_> = s
        .list()
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(
        names,
        vec![
            "docker.io/library/busybox:latest",
            "docker.io/test/docker-img:v1",
            "docker.io/test/oci-img:v2"
        ]
    );
    let bb = s.get("busybox").expect("busybox");
    assert_eq!(bb.layers.len(), 1);
    assert_eq!(
        bb.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(bb.layers[0].diff_id, sha256_digest(&busybox_rootfs()));
    assert_eq!(
        s.get("docker.io/library/busybox:latest").expect("full").id,
        bb.id
    );
    let d = s.get("test/docker-img:v1").expect("docker");
    let o = s.get("test/oci-img:v2").expect("oci");
    assert_eq!(d.layers.len(), 2);
    assert_eq!(
        d.layers[0].chain_id, o.layers[0].chain_id,
        "same base, same chain id"
    );
    assert_ne!(d.layers[1].chain_id, o.layers[1].chain_id);
    assert_eq!(d.layers[0].chain_id, sha256_digest(&base_layer()));
    assert_eq!(
        d.layers[1].chain_id,
        sha256_digest(format!("{} {}", d.layers[0].chain_id, d.layers[1].diff_id).as_bytes())
    );
    assert_eq!(
        d.size,
        d.layers.iter().map(|l| l.unpacked_size).sum::<u64>()
    );
    // busybox + shared base + two different tops.
    let mut committed = env.committed();
    committed.sort();
    assert_eq!(committed.len(), 4, "{committed:?}");
    // Ids and prefixes.
    assert_eq!(s.get(&d.id).expect("by id").name, d.name);
    assert_eq!(s.get(&hex(&o.id)[..12]).expect("by short id").name, o.name);
    assert_eq!(
        s.get(&format!("test/oci-img@{}", o.manifest_digest))
            .expect("by digest")
            .id,
        o.id
    );
    assert_eq!(
        s.get("nosuch").expect_err("must fail").kind(),
        ErrorKind::NotFound
    );
    assert!(d
        .config
        .config()
        .as_ref()
        .expect("cfg")
        .exposed_ports()
        .is_some());
    // Importing again reuses everything.
    let blobs_before = s.content().list().expect("blobs").len();
    let again = env.write("docker2.tar", &docker_archive(None));
    let got = s
        .import(&again, ImportFormat::DockerArchive, None)
        .expect("re-import");
    assert_eq!(got[0].id, d.id);
    assert_eq!(env.committed().len(), 4);
    assert_eq!(s.content().list().expect("blobs").len(), blobs_before);
}

#[test]
fn oci_layout_directory_imports() {
    need_root!();
    let env = Env::new();
    let dir = env.tmp.path().join("layout");
    for (p, b) in oci_files() {
        let f = dir.join(&p);
        fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        fs::write(f, b).expect("write");
    }
    let got = env
        .store
        .import(&dir, ImportFormat::Auto, Some("mine:dev"))
        .expect("import dir");
    assert_eq!(got[0].name, "docker.io/library/mine:dev");
    assert_eq!(got[0].layers.len(), 2);
}

#[test]
fn diff_id_mismatch_is_refused_and_nothing_is_left() {
    need_root!();
    let env = Env::new();
    let before_blobs = env.store.content().list().expect("blobs");
    let bad = env.write("bad.tar", &docker_archive(Some(&sha256_digest(b"lies"))));
    let err = env
        .store
        .import(&bad, ImportFormat::Auto, None)
        .expect_err("mismatch");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(env.store.list().expect("list").is_empty());
    assert_eq!(env.store.content().list().expect("blobs"), before_blobs);
    assert!(env.store.snapshotter().list().expect("snaps").is_empty());
    // And when the base layer already exists, only this import's work is undone.
    env.import_all();
    let committed = env.committed().len();
    let blobs = env.store.content().list().expect("blobs").len();
    let bad = env.write(
        "bad2.tar",
        &docker_archive(Some(&sha256_digest(b"more lies"))),
    );
    env.store
        .import(&bad, ImportFormat::Auto, Some("other"))
        .expect_err("mismatch");
    assert_eq!(env.committed().len(), committed);
    assert_eq!(env.store.content().list().expect("blobs").len(), blobs);
    assert_eq!(env.store.list().expect("list").len(), 3);
}

#[test]
fn remove_untags_and_collects_unused_layers() {
    need_root!();
    let env = Env::new();
    env.import_all();
    let s = &env.store;
    let d = s.get("test/docker-img:v1").expect("docker");
    let o = s.get("test/oci-img:v2").expect("oci");
    s.tag("test/docker-img:v1", "alias:1").expect("tag");
    s.remove("test/docker-img:v1").expect("untag");
    assert!(
        env.committed().contains(&d.layers[1].chain_id),
        "still tagged as alias:1"
    );
    s.remove("alias:1").expect("remove last tag");
    let c = env.committed();
    assert!(
        !c.contains(&d.layers[1].chain_id),
        "docker top layer collected"
    );
    assert!(
        c.contains(&d.layers[0].chain_id),
        "shared base kept for the OCI image"
    );
    assert!(!s.content().exists(&d.layers[1].digest));
    assert!(s.content().exists(&o.layers[0].digest));
    s.remove(&o.id).expect("remove by id");
    assert_eq!(env.committed().len(), 1, "only busybox remains");
    assert_eq!(
        s.remove("test/oci-img:v2").expect_err("must fail").kind(),
        ErrorKind::NotFound
    );
}

struct BundleGuard<'a> {
    store: &'a ImageStore,
    dir: PathBuf,
}

impl Drop for BundleGuard<'_> {
    fn drop(&mut self) {
        if self.dir.join("snapshot.json").exists() {
            if let Err(e) = remove_bundle(self.store, &self.dir) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

#[test]
fn bundle_mounts_the_merged_rootfs_and_fills_the_spec() {
    need_root!();
    let env = Env::new();
    env.import_all();
    let s = &env.store;
    let img = s.get("test/docker-img:v1").expect("docker");
    let dir = env.tmp.path().join("bundle");
    let _g = BundleGuard {
        store: s,
        dir: dir.clone(),
    };
    let b = create_bundle(s, &img, &dir, "ctr-1", None).expect("bundle");
    let r = &b.rootfs;
    assert_eq!(
        fs::read_to_string(r.join("etc/hello")).expect("bottom"),
        "hello from base\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("etc/top")).expect("top"),
        "docker top\n"
    );
    assert!(
        !r.join("data/gone").exists(),
        "whiteout hides the base file"
    );
    assert!(r.join("data").is_dir());
    assert!(
        !r.join("opq/a").exists() && !r.join("opq/b").exists(),
        "opaque dir hides base entries"
    );
    assert_eq!(fs::read_to_string(r.join("opq/c")).expect("c"), "c\n");
    fs::write(r.join("written"), "by container").expect("rootfs is writable");
    let upper = s.snapshotter().upper_dir("ctr-1").expect("upper");
    assert!(
        upper.join("written").exists(),
        "writes land in the container's snapshot"
    );
    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("config.json")).expect("config")).expect("json");
    let p = &spec["process"];
    assert_eq!(p["args"], serde_json::json!(["/bin/tool", "--default"]));
    assert_eq!(p["cwd"], "/data");
    assert_eq!(p["user"]["uid"], 1000);
    assert_eq!(p["user"]["gid"], 1000);
    assert_eq!(p["user"]["additionalGids"], serde_json::json!([2000]));
    let env_list: Vec<String> = serde_json::from_value(p["env"].clone()).expect("env");
    assert!(
        env_list.contains(&"PATH=/bin".to_string())
            && env_list.contains(&"GREETING=hi".to_string())
    );
    assert_eq!(spec["root"]["path"], "rootfs");
    // The image is in use while the bundle exists.
    let err = s.remove("test/docker-img:v1").expect_err("in use");
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition, "{err}");
    remove_bundle(s, &dir).expect("unbundle");
    assert!(!dir.exists(), "bundle dir removed");
    assert!(s.snapshotter().stat("ctr-1").is_err(), "snapshot removed");
    s.remove("test/docker-img:v1").expect("now removable");
}

#[test]
fn a_bundle_with_a_torn_snapshot_reference_is_removed_by_its_known_key() {
    need_root!();
    let env = Env::new();
    env.import_all();
    let s = &env.store;
    let img = s.get("test/docker-img:v1").expect("docker");
    let dir = env.tmp.path().join("torn");
    let _g = BundleGuard {
        store: s,
        dir: dir.clone(),
    };
    create_bundle(s, &img, &dir, "ctr-torn", None).expect("bundle");
    // What a crash can leave of a snapshot.json written without fsync.
    fs::write(dir.join("snapshot.json"), b"").expect("tear");
    assert!(
        remove_bundle(s, &dir).is_err(),
        "nothing says which snapshot"
    );
    remove_bundle_or(s, &dir, Some("ctr-torn")).expect("unbundle by key");
    assert!(!dir.exists(), "bundle dir removed");
    assert!(
        s.snapshotter().stat("ctr-torn").is_err(),
        "snapshot removed"
    );
    s.remove("test/docker-img:v1")
        .expect("the image is free again");
}

#[test]
fn bundle_args_replace_cmd_and_unknown_user_is_refused() {
    need_root!();
    let env = Env::new();
    env.import_all();
    let s = &env.store;
    let bb = s.get("busybox").expect("busybox");
    let dir = env.tmp.path().join("b1");
    let _g = BundleGuard {
        store: s,
        dir: dir.clone(),
    };
    let err = create_bundle(s, &bb, &dir, "k0", None).expect_err("busybox import has no cmd");
    assert!(err.to_string().contains("no entrypoint or cmd"), "{err}");
    assert!(
        !dir.join("snapshot.json").exists(),
        "nothing left after a refused bundle"
    );
    let b = create_bundle(
        s,
        &bb,
        &dir,
        "k1",
        Some(vec!["sh".into(), "-c".into(), "true".into()]),
    )
    .expect("bundle");
    assert_eq!(
        b.spec
            .process()
            .as_ref()
            .expect("process")
            .args()
            .as_ref()
            .expect("args"),
        &vec!["sh", "-c", "true"]
    );
    assert!(b.rootfs.join("bin/busybox").exists());
    drop(_g);
    assert!(!dir.exists());
    // A User the image's /etc/passwd does not know fails and cleans up.
    let path = env.write("nouser.tar", &{
        let l = base_layer();
        let cfg = config(&[sha256_digest(&l)], "ghost");
        let cfg_name = format!("{}.json", hex(&sha256_digest(&cfg)));
        let lp = format!("{}/layer.tar", hex(&sha256_digest(&l)));
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": cfg_name, "RepoTags": ["ghost:1"], "Layers": [lp]}]))
        .expect("m");
        TarBuf::new()
            .file(&cfg_name, &cfg)
            .file(&lp, &l)
            .file("manifest.json", &manifest)
            .done()
    });
    s.import(&path, ImportFormat::Auto, None)
        .expect("import ghost");
    let ghost = s.get("ghost:1").expect("ghost");
    let dir2 = env.tmp.path().join("b2");
    let err = create_bundle(s, &ghost, &dir2, "k2", None).expect_err("unknown user");
    assert!(err.to_string().contains("ghost"), "{err}");
    assert!(
        s.snapshotter().stat("k2").is_err(),
        "snapshot removed after failure"
    );
    assert!(!dir2.join("config.json").exists());
}

#[test]
fn busybox_script_output_imports() {
    need_root!();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/images/build-busybox.sh");
    if !Path::new("/bin/busybox").exists() {
        println!(
            "skipping: /bin/busybox missing (the script would apt-get install busybox-static)"
        );
        return;
    }
    let env = Env::new();
    let out = env.tmp.path().join("bb.tar");
    let st = std::process::Command::new("bash")
        .arg(&script)
        .arg(&out)
        .status()
        .expect("run script");
    assert!(st.success(), "build-busybox.sh failed");
    let img = env
        .store
        .import(&out, ImportFormat::Auto, Some("busybox:script"))
        .expect("import");
    let dir = env.tmp.path().join("bundle");
    let _g = BundleGuard {
        store: &env.store,
        dir: dir.clone(),
    };
    let b =
        create_bundle(&env.store, &img[0], &dir, "bb", Some(vec!["sh".into()])).expect("bundle");
    let meta = fs::symlink_metadata(b.rootfs.join("tmp")).expect("tmp");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::read_link(b.rootfs.join("bin/sh")).expect("sh"),
        Path::new("busybox")
    );
    assert!(fs::read_to_string(b.rootfs.join("etc/passwd"))
        .expect("passwd")
        .contains("nobody"));
}

#[test]
fn layers_and_blobs_are_not_reachable_by_other_users() {
    // Layers keep an image's setuid binaries and device nodes; blobs may hold secrets.
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("state");
    let _store = ImageStore::open(&root).expect("open store");
    use std::os::unix::fs::PermissionsExt;
    // The directory holding the snapshot directories, and the content store.
    let guarded: Vec<PathBuf> = walk_dirs(&root)
        .into_iter()
        .filter(|d| {
            let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(String::from);
            name(d).as_deref() == Some("content")
                || (name(d).as_deref() == Some("snapshots")
                    && d.parent().and_then(name).as_deref() == Some("snapshots"))
        })
        .collect();
    assert_eq!(
        guarded.len(),
        2,
        "content/ and snapshots/snapshots/: {guarded:?}"
    );
    for dir in guarded {
        let mode = fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
    }
}

fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("readdir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push(p.clone());
            out.extend(walk_dirs(&p));
        }
    }
    out
}
