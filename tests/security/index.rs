//! Hostile image indexes (the class of CVE-2021-41190, ambiguous OCI manifests, and of
//! registry-controlled resource use): an index whose platform entry is itself an index (the
//! nesting a loop needs), an entry that claims to be a manifest but is served as an index, an
//! index with 10,000 entries, and an entry whose digest names other bytes than the registry
//! serves. Each must be refused with an error that says what is wrong, before anything is
//! stored: the store's blobs and index.json are byte-for-byte what they were, and the
//! registry saw no request past the document that gave the problem away.
//!
//! The documents come from tests/security/hostile_index.py (json + hashlib, served by Python's
//! http.server), not from boxkit. Pulls only reach the store, so the host canary is a check
//! that nothing outside it changed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::build_common::{Env, Who, stderr};
use crate::support::{Canary, assert_failed_with, assert_store_owners, root_and_rootless};

/// The hostile registry process; killed on drop.
struct Hostile {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    fn start(dir: &Path) -> Hostile {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/security/hostile_index.py");
        let portfile = dir.join("hostile-port");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&portfile)
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        let log = Arc::new(Mutex::new(vec![]));
        let (err, l) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        let start = Instant::now();
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&portfile) {
                break p.trim().parse().unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "hostile_index.py did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Hostile { child, port, log }
    }

    /// The manifest GETs logged. The server logs each one before it answers, but the lines
    /// reach this process through a pipe and a reader thread, which can lag behind the client
    /// under load: wait (up to 5 s) for `expected` lines, then a moment for any extra one.
    fn requests(&self, expected: usize) -> Vec<String> {
        let start = Instant::now();
        while self.log.lock().unwrap().len() < expected && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// blobs/ names and index.json bytes: everything a pull could have stored.
fn store_state(store: &Path) -> (Vec<String>, Vec<u8>) {
    let mut blobs: Vec<String> = std::fs::read_dir(store.join("blobs/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    blobs.sort();
    (
        blobs,
        std::fs::read(store.join("index.json")).unwrap_or_default(),
    )
}

fn conf_for(e: &Env, port: u16) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = e.dir.path().join("hostile-registries.conf");
    std::fs::write(
        &p,
        format!("[[registry]]\nlocation = \"127.0.0.1:{port}\"\ninsecure = true\n"),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// Pull `repo` from the hostile registry as `who`; assert the refusal names `needles`, that
/// nothing was stored, and that the registry saw only the manifest GETs in `requests`.
fn refused(who: Who, repo: &str, needles: &[&str], requests: usize) {
    let e = Env::new(who);
    let reg = Hostile::start(e.dir.path());
    let conf = conf_for(&e, reg.port);
    let canary = Canary::plant();
    let before = store_state(&e.store());
    let name = format!("127.0.0.1:{}/{repo}:latest", reg.port);
    let o = e.cmd_env(
        "box",
        &["pull", &name],
        &[("BOX_REGISTRIES_CONF", conf.to_str().unwrap())],
    );
    assert_failed_with(&o, needles);
    assert_eq!(
        store_state(&e.store()),
        before,
        "{repo}: the store changed:\n{}",
        stderr(&o)
    );
    let reqs = reg.requests(requests);
    assert_eq!(reqs.len(), requests, "{repo}: requests {reqs:?}");
    assert!(
        reqs.iter().all(|r| r.starts_with(&format!("GET {repo} "))),
        "{reqs:?}"
    );
    canary.assert_untouched();
    assert_store_owners(&e);
}

fn amd64() -> bool {
    let ok = std::env::consts::ARCH == "x86_64";
    if !ok {
        crate::common::skip("the hostile indexes name linux/amd64 as the host's entry");
    }
    ok
}

#[test]
fn an_index_whose_entry_is_an_index_is_refused_before_anything_is_stored() {
    if !amd64() {
        return;
    }
    for who in root_and_rootless() {
        refused(who, "nested", &["nested indexes are not supported"], 1);
    }
}

#[test]
fn an_entry_that_claims_a_manifest_but_is_served_as_an_index_is_refused() {
    if !amd64() {
        return;
    }
    for who in root_and_rootless() {
        refused(who, "liar", &["index entry", "image.index"], 2);
    }
}

#[test]
fn an_index_with_ten_thousand_entries_is_refused_before_any_entry_is_fetched() {
    if !amd64() {
        return;
    }
    for who in root_and_rootless() {
        refused(who, "huge", &["10000 entries", "limit of 1024"], 1);
    }
}

#[test]
fn an_entry_whose_digest_names_other_bytes_is_refused() {
    if !amd64() {
        return;
    }
    for who in root_and_rootless() {
        refused(who, "mismatch", &["hashes to", "not the requested"], 2);
    }
}
