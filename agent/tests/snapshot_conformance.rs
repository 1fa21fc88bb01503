//! The snapshotter conformance suite: every `Snapshotter` implementation must pass it.
//!
//! Each case is a function taking a freshly made snapshotter; [`run_suite`] runs them all
//! against a factory, and there is one `#[test]` per case for the overlay snapshotter so a
//! failure names its case. Cases that mount need root; they print `skipping: <reason>`
//! otherwise. Every mount is undone by a guard, also when an assertion fails.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use minid::engine::snapshot::{mount_all, unmount_all, Kind, OverlaySnapshotter, Snapshotter};
use minid::engine::ErrorKind;

type Factory = dyn Fn(&Path) -> Box<dyn Snapshotter>;

fn overlay(root: &Path) -> Box<dyn Snapshotter> {
    Box::new(OverlaySnapshotter::open(root).expect("open overlay snapshotter"))
}

/// Unmounts its target when dropped.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = unmount_all(&self.0) {
            eprintln!("cleanup: {e}");
        }
    }
}

fn mount(s: &dyn Snapshotter, key: &str, at: &Path) -> MountGuard {
    fs::create_dir_all(at).expect("mkdir target");
    let m = s.mounts(key).expect("mounts");
    mount_all(&m, at).expect("mount");
    MountGuard(at.to_path_buf())
}

fn privileged() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root to mount".into());
    }
    if !fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .contains("overlay")
    {
        return Err("overlayfs is not available".into());
    }
    Ok(())
}

macro_rules! need_root {
    () => {
        if let Err(reason) = privileged() {
            println!("skipping: {reason}");
            return;
        }
    };
}

/// A committed layer with `files` (name, content) on top of `parent`.
fn layer(s: &dyn Snapshotter, name: &str, parent: Option<&str>, files: &[(&str, &str)]) {
    let key = format!("{name}-active");
    s.prepare(&key, parent).expect("prepare");
    let up = s.upper_dir(&key).expect("upper");
    for (f, c) in files {
        let p = up.join(f);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, c).expect("write");
    }
    s.commit(name, &key).expect("commit");
}

fn case_prepare_commit_view_remove(s: &dyn Snapshotter, _tmp: &Path) {
    layer(s, "base", None, &[("f", "base")]);
    assert_eq!(s.stat("base").expect("stat").kind, Kind::Committed);
    assert_eq!(
        s.stat("base-active").expect_err("must fail").kind(),
        ErrorKind::NotFound,
        "commit must consume the active key"
    );
    let m = s.view("v", Some("base")).expect("view");
    assert!(!m.is_empty());
    assert_eq!(s.stat("v").expect("stat view").kind, Kind::View);
    assert_eq!(s.stat("v").expect("stat").parent.as_deref(), Some("base"));
    s.remove("v").expect("remove view");
    s.remove("base").expect("remove base");
    assert!(s.list().expect("list").is_empty());
}

fn case_stat_and_list(s: &dyn Snapshotter, _tmp: &Path) {
    layer(s, "l1", None, &[]);
    layer(s, "l2", Some("l1"), &[]);
    s.prepare("c", Some("l2")).expect("prepare");
    let list = s.list().expect("list");
    let mut keys: Vec<_> = list
        .iter()
        .map(|i| (i.key.as_str(), i.kind, i.parent.as_deref()))
        .collect();
    keys.sort_by_key(|k| k.0);
    assert_eq!(
        keys,
        vec![
            ("c", Kind::Active, Some("l2")),
            ("l1", Kind::Committed, None),
            ("l2", Kind::Committed, Some("l1")),
        ]
    );
    let info = s.stat("c").expect("stat");
    assert!(info.created <= std::time::SystemTime::now());
}

fn case_parent_remove_refused(s: &dyn Snapshotter, _tmp: &Path) {
    layer(s, "base", None, &[]);
    s.prepare("child", Some("base")).expect("prepare");
    let e = s.remove("base").expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("child"), "{e}");
    assert_eq!(s.stat("base").expect("still there").kind, Kind::Committed);
    s.remove("child").expect("remove child");
    s.remove("base").expect("then base");
}

fn case_errors(s: &dyn Snapshotter, _tmp: &Path) {
    s.prepare("a", None).expect("prepare");
    assert_eq!(
        s.prepare("a", None).expect_err("must fail").kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        s.prepare("b", Some("nope")).expect_err("must fail").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.prepare("b", Some("a")).expect_err("must fail").kind(),
        ErrorKind::FailedPrecondition,
        "an active snapshot cannot be a parent"
    );
    s.commit("c", "a").expect("commit");
    s.view("v", Some("c")).expect("view");
    assert!(s.commit("v2", "v").is_err(), "a view cannot be committed");
    assert!(
        s.upper_dir("c").is_err(),
        "a committed snapshot has no writable dir"
    );
    assert_eq!(
        s.commit("x", "missing").expect_err("must fail").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.remove("missing").expect_err("must fail").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.prepare("", None).expect_err("must fail").kind(),
        ErrorKind::InvalidArgument
    );
}

fn case_writes_land_in_upper(s: &dyn Snapshotter, tmp: &Path) {
    need_root!();
    layer(s, "base", None, &[("f", "base")]);
    s.prepare("c", Some("base")).expect("prepare");
    {
        let _g = mount(s, "c", &tmp.join("mnt"));
        fs::write(tmp.join("mnt/new"), "new").expect("write new");
        fs::write(tmp.join("mnt/f"), "changed").expect("modify f");
        assert_eq!(
            fs::read_to_string(tmp.join("mnt/f")).expect("read"),
            "changed"
        );
    }
    let up = s.upper_dir("c").expect("upper");
    assert_eq!(
        fs::read_to_string(up.join("new")).expect("new in upper"),
        "new"
    );
    assert_eq!(
        fs::read_to_string(up.join("f")).expect("copied up"),
        "changed"
    );
    s.view("v", Some("base")).expect("view");
    let _g = mount(s, "v", &tmp.join("view"));
    assert_eq!(
        fs::read_to_string(tmp.join("view/f")).expect("base f"),
        "base"
    );
    assert!(
        !tmp.join("view/new").exists(),
        "committed layer must not change"
    );
    assert!(
        fs::write(tmp.join("view/x"), "x").is_err(),
        "a view is read-only"
    );
}

fn case_chain_of_128_layers_mounts(s: &dyn Snapshotter, tmp: &Path) {
    need_root!();
    let mut parent: Option<String> = None;
    for i in 0..128 {
        let name = format!("layer-{i}");
        let content = format!("from layer {i}");
        layer(
            s,
            &name,
            parent.as_deref(),
            &[(&format!("file-{i}"), &content)],
        );
        parent = Some(name);
    }
    s.prepare("top", parent.as_deref())
        .expect("prepare on 128 layers");
    let m = s.mounts("top").expect("mounts");
    let opts: usize = m.iter().map(|m| m.options.join(",").len()).sum();
    println!("128-layer option string is {opts} bytes");
    let _g = mount(s, "top", &tmp.join("mnt"));
    assert_eq!(
        fs::read_to_string(tmp.join("mnt/file-0")).expect("bottom"),
        "from layer 0"
    );
    assert_eq!(
        fs::read_to_string(tmp.join("mnt/file-127")).expect("top"),
        "from layer 127"
    );
    assert_eq!(
        fs::read_to_string(tmp.join("mnt/file-64")).expect("middle"),
        "from layer 64"
    );
}

fn case_whiteout_hides_lower_file(s: &dyn Snapshotter, tmp: &Path) {
    need_root!();
    layer(
        s,
        "base",
        None,
        &[("gone", "x"), ("kept", "y"), ("d/old", "z")],
    );
    s.prepare("c-active", Some("base")).expect("prepare");
    let up = s.upper_dir("c-active").expect("upper");
    nix::sys::stat::mknod(
        &up.join("gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .expect("whiteout");
    fs::create_dir(up.join("d")).expect("mkdir d");
    xattr_set(&up.join("d"), "trusted.overlay.opaque", b"y");
    fs::write(up.join("d/new"), "n").expect("write");
    s.commit("child", "c-active").expect("commit");
    s.view("v", Some("child")).expect("view");
    let _g = mount(s, "v", &tmp.join("mnt"));
    assert!(
        !tmp.join("mnt/gone").exists(),
        "whiteout must hide the lower file"
    );
    assert_eq!(fs::read_to_string(tmp.join("mnt/kept")).expect("kept"), "y");
    assert!(
        !tmp.join("mnt/d/old").exists(),
        "opaque dir must hide lower entries"
    );
    assert!(tmp.join("mnt/d/new").exists());
    let st = fs::metadata(up.join("gone")).expect("whiteout is still in the layer");
    assert_eq!(st.rdev(), 0);
}

fn xattr_set(p: &Path, name: &str, val: &[u8]) {
    let cp = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    let cn = std::ffi::CString::new(name).expect("name");
    // SAFETY: NUL-terminated path and name, value buffer with its exact length.
    let r = unsafe { libc::setxattr(cp.as_ptr(), cn.as_ptr(), val.as_ptr().cast(), val.len(), 0) };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
}

type Case = fn(&dyn Snapshotter, &Path);

const CASES: &[(&str, Case)] = &[
    (
        "prepare_commit_view_remove",
        case_prepare_commit_view_remove,
    ),
    ("stat_and_list", case_stat_and_list),
    ("parent_remove_refused", case_parent_remove_refused),
    ("errors", case_errors),
    ("writes_land_in_upper", case_writes_land_in_upper),
    (
        "chain_of_128_layers_mounts",
        case_chain_of_128_layers_mounts,
    ),
    ("whiteout_hides_lower_file", case_whiteout_hides_lower_file),
];

/// Runs one case against a fresh snapshotter in its own temp dir.
fn run_case(factory: &Factory, case: Case) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = factory(&tmp.path().join("root"));
    case(s.as_ref(), tmp.path());
}

/// Runs the whole suite against `factory`; a new implementation adds one test calling this.
#[allow(dead_code)]
pub fn run_suite(factory: &Factory) {
    for (name, case) in CASES {
        println!("case {name}");
        run_case(factory, *case);
    }
}

#[test]
fn overlay_prepare_commit_view_remove() {
    run_case(&overlay, case_prepare_commit_view_remove);
}

#[test]
fn overlay_stat_and_list() {
    run_case(&overlay, case_stat_and_list);
}

#[test]
fn overlay_parent_remove_refused() {
    run_case(&overlay, case_parent_remove_refused);
}

#[test]
fn overlay_errors() {
    run_case(&overlay, case_errors);
}

#[test]
fn overlay_writes_land_in_upper() {
    run_case(&overlay, case_writes_land_in_upper);
}

#[test]
fn overlay_chain_of_128_layers_mounts() {
    run_case(&overlay, case_chain_of_128_layers_mounts);
}

#[test]
fn overlay_whiteout_hides_lower_file() {
    run_case(&overlay, case_whiteout_hides_lower_file);
}
