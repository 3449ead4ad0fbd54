//! The examples under examples/ build (hello, multi-stage, cache mount) and do what their
//! comments say.

mod build_common;
mod common;

use build_common::{Env, Who, stderr};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn example(dir: &str) -> Env {
    let who = Who::root().unwrap();
    let e = Env::with_registry(who);
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir),
        &e.ctx(),
    );
    e
}

#[test]
fn hello_example_builds_and_boxrun_prints_the_greeting() {
    if Who::root().is_none() {
        return;
    }
    let e = example("examples");
    e.build_ok(&["-t", "hello"]);
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("hello", t.path());
    assert!(root.join("etc/greeting").is_file());
    assert!(
        std::fs::read_to_string(root.join("etc/built-by"))
            .unwrap()
            .starts_with("built by boxbuild on ")
    );
    // What README's example command shows.
    let o = e.box_cmd(&["run", "--rm", "hello"]);
    assert!(o.status.success(), "boxrun hello: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("Hello from boxkit!\nbuilt by boxbuild on "),
        "{out}"
    );
}

#[test]
fn multi_stage_example_builds_only_what_the_final_stage_needs() {
    if Who::root().is_none() {
        return;
    }
    let e = example("examples/multi-stage");
    let err = e.build_ok(&["-t", "multi", "--build-arg", "VERSION=2.5"]);
    assert!(!err.contains("documentation would be"), "{err}");
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("multi", t.path());
    assert_eq!(
        std::fs::read_to_string(root.join("BUILDINFO")).unwrap(),
        "built version 2.5\n"
    );
    assert!(root.join("bin/app").is_file() && root.join("bin/busybox").is_file());
    assert!(!root.join("src").exists());
    let o = e.build(&["-t", "multi-builder", "--target", "builder"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn cache_mount_example_reuses_its_download_across_no_cache_builds() {
    if Who::root().is_none() {
        return;
    }
    let e = example("examples/cache-mount");
    let first = e.build_ok(&["-t", "cached"]);
    assert!(first.contains("cache miss"), "{first}");
    let second = e.build_ok(&["-t", "cached", "--no-cache"]);
    assert!(second.contains("cache hit: reusing"), "{second}");
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("cached", t.path());
    assert_eq!(
        std::fs::read_to_string(root.join("opt/pkg/size"))
            .unwrap()
            .trim(),
        "65536"
    );
    assert!(!root.join("var/cache/demo/package.tar").exists());
}
