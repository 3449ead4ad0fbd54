//! Owners where only container root is mapped (a user without a subordinate range, as in a CI
//! job container): base-image owners, `COPY --chown` and `RUN chown` are recorded in the
//! `user.boxkit.owner` xattr and come back as the tar header's ids, so the image is the one a
//! native build gives. (A layer that carries the xattr itself: tests/security/owner_xattr.rs.) The base image is made by Python's tarfile (tests/fixtures/images/
//! hostile.py) and skopeo, the layers are read back by Python's tarfile: never by boxkit.

mod build_common;
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use build_common::{Env, Who, stderr};
use serde_json::{Value, json};

/// A tar entry as Python reads it: name, uid, gid, PAX keys.
type Entry = (String, u64, u64, Vec<String>);

/// Every layer of image `tag` in the store, as Python's tarfile reads it: per layer, the
/// entries' `[name, uid, gid, [PAX keys]]`.
fn layers(env: &Env, tag: &str) -> Vec<Vec<Entry>> {
    const PY: &str = r#"
import json, os, sys, tarfile
lay, tag = sys.argv[1], sys.argv[2]
blob = lambda d: os.path.join(lay, "blobs", "sha256", d.split(":")[1])
for m in json.load(open(os.path.join(lay, "index.json")))["manifests"]:
    if m.get("annotations", {}).get("org.opencontainers.image.ref.name", "").endswith("/" + tag + ":latest"):
        out = []
        for l in json.load(open(blob(m["digest"])))["layers"]:
            with tarfile.open(blob(l["digest"])) as t:
                out.append([[e.name, e.uid, e.gid, sorted(e.pax_headers)] for e in t.getmembers()])
        print(json.dumps(out))
"#;
    let o = Command::new("python3")
        .args(["-c", PY])
        .arg(env.store())
        .arg(tag)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", o.stdout))
}

/// The entry `name` in the layer `layer` (a list from [`layers`]).
fn entry<'a>(layer: &'a [Entry], name: &str) -> &'a Entry {
    layer
        .iter()
        .find(|e| e.0.trim_end_matches('/') == name)
        .unwrap_or_else(|| panic!("{name} not in {layer:?}"))
}

/// The owner of `name` in `layer`.
fn owner(layer: &[Entry], name: &str) -> (u64, u64) {
    let e = entry(layer, name);
    (e.1, e.2)
}

/// busybox plus a layer with a file and a directory owned by 1234 (a base image of another
/// owner, as debian's /var/mail or an app user's home).
fn owned_base() -> Value {
    json!({
        "base": "busybox",
        "layers": [[
            {"name": "owned", "data": "base\n", "uid": 1234, "gid": 1234},
            {"name": "odir", "type": "dir", "uid": 1234, "gid": 1234},
            {"name": "odir/in", "data": "x\n", "uid": 1234, "gid": 1234},
        ]],
    })
}

const BOXFILE: &str = "FROM owned\n\
COPY --chown=1234:1234 f /copied\n\
RUN touch /f /h && chown 1234:1234 /f && chown -h 1234:1234 /h && chown 5:1234 /odir/in \
&& mkdir /d && cd /d && chown 7:8 . && chown 9:9 /f && chown 1234:1234 /f\n\
RUN touch /g /owned\n";

fn build(who: Who) -> (Env, String) {
    let e = Env::with_registry(who);
    build_common::hostile_image(&e, "owned", owned_base());
    e.write("f", "copied\n");
    e.boxfile(BOXFILE);
    let o = e.build_env(&["-t", "owners"], &[("SOURCE_DATE_EPOCH", "0")]);
    assert!(
        o.status.success(),
        "{}: boxbuild failed:\n{}",
        e.who.label(),
        stderr(&o)
    );
    let id = e.inspect("owners")["Id"].as_str().unwrap().to_string();
    (e, id)
}

#[test]
fn without_a_subordinate_range_chown_and_copy_chown_give_the_native_image() {
    let Some(nosub) = Who::without_range() else {
        return;
    };
    let (e, single) = build(nosub);
    let ls = layers(&e, "owners");
    assert_eq!(ls.len(), 5, "{ls:?}");
    // COPY --chown.
    assert_eq!(owner(&ls[2], "copied"), (1234, 1234));
    // RUN chown, chown -h (a regular file), a base file, "." from a cwd, and owners changed
    // twice. (Only full user:group pairs: busybox fills a missing half from stat, which
    // shows the real owner, see docs/internals.md, "Owners where only container root is mapped".)
    let run = &ls[3];
    assert_eq!(owner(run, "f"), (1234, 1234));
    assert_eq!(owner(run, "h"), (1234, 1234));
    assert_eq!(owner(run, "odir/in"), (5, 1234));
    assert_eq!(owner(run, "d"), (7, 8));
    // A base file the RUN only touched keeps the base image's owner when copied up.
    assert_eq!(owner(&ls[4], "owned"), (1234, 1234));
    assert_eq!(owner(&ls[4], "g"), (0, 0));
    // boxkit's xattr never reaches a layer.
    for l in &ls[2..] {
        for (name, _, _, pax) in l {
            assert!(pax.iter().all(|k| !k.contains("boxkit")), "{name}: {pax:?}");
        }
    }

    let (_root_env, native) = build(Who::root().unwrap());
    assert_eq!(single, native, "the single-id build differs from root's");
}

#[test]
fn without_a_subordinate_range_chown_errors_are_the_kernels() {
    let Some(nosub) = Who::without_range() else {
        return;
    };
    let e = Env::new(nosub);
    e.boxfile(
        "FROM busybox\n\
RUN touch /x; chown 70000 /x; echo out=$?; chown 1 /missing; echo missing=$?; \
chown 1 /x/y; echo notdir=$?; chown 1 /proc/self/root/x; echo magic=$?; \
ln -s x /l; chown -h 1 /l; echo link=$?\n",
    );
    let o = e.build(&["-t", "errs"]);
    let err = format!("{}{}", build_common::stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    // An id outside the container range: EINVAL, like the kernel. ENOENT and ENOTDIR as
    // the kernel gives them; a magic link is refused (ELOOP); a symlink is accepted (it
    // cannot carry the owner, see docs/internals.md, "Owners where only container root is mapped").
    for want in ["out=1", "missing=1", "notdir=1", "magic=1", "link=0"] {
        assert!(err.contains(want), "{want}: {err}");
    }
}

#[test]
fn pack_takes_the_owner_from_the_xattr_and_refuses_a_value_outside_the_range() {
    use boxkit::layer::{Compression, PackOptions, pack_dir};
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a"), "a").unwrap();
    std::fs::set_permissions(tree.join("a"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = std::ffi::CString::new(tree.join("a").as_os_str().as_encoded_bytes()).unwrap();
    let set = |v: &str| {
        // SAFETY: NUL-terminated strings and a live value slice.
        let rc = unsafe {
            libc::setxattr(
                path.as_ptr(),
                c"user.boxkit.owner".as_ptr(),
                v.as_ptr().cast(),
                v.len(),
                0,
            )
        };
        assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
    };
    set("1234:99");
    let opts = PackOptions {
        compression: Compression::None,
        ..PackOptions::default()
    };
    let mut out = Vec::new();
    pack_dir(&tree, &mut out, &opts).unwrap();
    let mut ar = tar::Archive::new(&out[..]);
    let mut e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (1234, 99)
    );
    assert!(e.pax_extensions().unwrap().is_none());
    for bad in ["65536:0", "1:x", "-1:0"] {
        set(bad);
        let err = pack_dir(&tree, &mut Vec::new(), &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("user.boxkit.owner"), "{bad}: {err}");
    }
}

#[test]
fn extraction_records_owners_in_the_xattr_and_warns_once_for_symlinks() {
    use boxkit::layer::{Compression, ExtractMode, ExtractOptions, Ownership, extract};
    let t = tempfile::tempdir().unwrap();
    let tar = t.path().join("l.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/hostile.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args(["--tar"])
        .arg(&tar)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let entries = json!([
        {"name": "d", "type": "dir", "uid": 7, "gid": 8},
        {"name": "d/f", "data": "x", "uid": 1234, "gid": 1234},
        {"name": "root", "data": "x"},
        {"name": "l1", "type": "symlink", "link": "root", "uid": 5, "gid": 5},
        {"name": "l2", "type": "symlink", "link": "root", "uid": 6, "gid": 6},
        {"name": "big", "data": "x", "uid": 65536, "gid": 0},
    ]);
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        entries.to_string().as_bytes(),
    )
    .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let opts = ExtractOptions {
        mode: ExtractMode::Flatten,
        ownership: Ownership::Xattr,
        ..ExtractOptions::default()
    };
    // 65536 is outside the container range, as with chown.
    let err = extract(
        std::fs::File::open(&tar).unwrap(),
        Compression::None,
        &out,
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("entry big") && err.contains("65536"), "{err}");

    let out = t.path().join("out2");
    std::fs::create_dir(&out).unwrap();
    let mut c = Command::new("python3");
    // The same layer without the out-of-range entry.
    c.arg("-c").arg(format!(
        "import tarfile; s=tarfile.open('{0}'); d=tarfile.open('{0}.ok','w',format=tarfile.PAX_FORMAT)\n\
         for m in s.getmembers():\n    m.name!='big' and d.addfile(m, s.extractfile(m) if m.isfile() else None)\nd.close()",
        tar.display()
    ));
    assert!(c.status().unwrap().success());
    let ok = std::path::PathBuf::from(format!("{}.ok", tar.display()));
    let report = extract(
        std::fs::File::open(&ok).unwrap(),
        Compression::None,
        &out,
        &opts,
    )
    .unwrap();
    let x = |p: &str| build_common::owner_xattr(&out.join(p));
    assert_eq!(x("d").as_deref(), Some(&b"7:8"[..]));
    assert_eq!(x("d/f").as_deref(), Some(&b"1234:1234"[..]));
    assert_eq!(x("root"), None);
    let warned: Vec<_> = report
        .warnings
        .iter()
        .filter(|w| w.contains("symlink"))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", report.warnings);
    assert!(warned[0].starts_with("2 symlink"), "{warned:?}");
}

#[test]
fn gnu_chown_and_cp_keep_recorded_owners_as_a_native_build_does() {
    let Some(nosub) = Who::without_range() else {
        return;
    };
    let boxfile = "FROM debian:bookworm\n\
RUN touch /f /g && mkdir /d && chown 1234:1234 /f /g /d && chown 5 /f && chgrp 7 /g \
&& cp -a /f /fc && chown -R 99 /d\n";
    let mut ids = Vec::new();
    for who in [nosub, Who::root().unwrap()] {
        let e = Env::with_registry(who);
        common::fixtures::seed(
            e.registry.as_ref().unwrap(),
            &[common::fixtures::Fixture::Debian],
        );
        e.boxfile(boxfile);
        let o = e.build_env(&["-t", "gnu"], &[("SOURCE_DATE_EPOCH", "0")]);
        assert!(o.status.success(), "{}: {}", e.who.label(), stderr(&o));
        let ls = layers(&e, "gnu");
        let run = ls.last().unwrap();
        // GNU chown passes -1 for the half it keeps; cp -a copies the owner (with the
        // xattrs). (`chown --from` compares with stat's owner, which is not emulated.)
        assert_eq!(owner(run, "f"), (5, 1234), "{}", e.who.label());
        assert_eq!(owner(run, "g"), (1234, 7), "{}", e.who.label());
        assert_eq!(owner(run, "d"), (99, 1234), "{}", e.who.label());
        assert_eq!(owner(run, "fc"), (5, 1234), "{}", e.who.label());
        ids.push(e.inspect("gnu")["Id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids[0], ids[1], "the single-id build differs from root's");
}
