//! Registries over TLS, and CI job images without a CA bundle (issue 13): a job that only talks
//! to a plain-HTTP mirror needs no CA store at all; a registry whose CA is unknown fails at its
//! first TLS connection with a message that says how to add the CA; `SSL_CERT_FILE` adds it.
//! A real `docker-registry` serves HTTPS with a certificate from a CA made here by openssl.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixtures::{self, Fixture};
use common::registry::Registry;
use common::users::{self, TestUser};

/// Root, then the unprivileged user with a subordinate range.
fn whos() -> [Option<TestUser>; 2] {
    [None, Some(users::with_range())]
}

fn tools() -> bool {
    for t in ["docker-registry", "skopeo", "python3", "openssl"] {
        if !common::have_tool(t) {
            common::skip(&format!("{t} is not installed"));
            return false;
        }
    }
    true
}

/// A test CA and a server certificate for 127.0.0.1 signed by it (PEM files in `dir`).
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn make_certs(dir: &Path) -> Certs {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=boxkit test CA"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "srv.key", "-out", "srv.csr"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "srv.pem",
            "-extfile",
            "ext",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("srv.pem"),
        key: dir.join("srv.key"),
    }
}

/// `box pull --no-unpack IMAGE` into a fresh store, with `registries.conf` as given and the
/// CA environment as given (`None`: the machine's CA store), as root or as `who`.
fn pull(
    dir: &Path,
    conf: &str,
    image: &str,
    ca_env: Option<(&Path, &Path)>,
    who: Option<&TestUser>,
) -> Output {
    let store = tempfile::tempdir_in(dir).unwrap();
    let conf_path = dir.join("registries.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut c = match who {
        None => Command::new(common::bin("box")),
        Some(u) => {
            let owner = format!("{}:{}", u.uid, u.gid);
            let o = Command::new("chown")
                .args(["-R", &owner])
                .arg(dir)
                .output()
                .unwrap();
            assert!(o.status.success(), "chown {}: {o:?}", dir.display());
            // As users::command_as, but keeping the environment set below (setpriv's
            // --reset-env would drop it).
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", u.uid))
                .arg(format!("--regid={}", u.gid))
                .args(["--init-groups", "--"])
                .arg(common::bin("box"))
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("HOME", dir)
                .env("USER", &u.name);
            c
        }
    };
    c.arg("--root")
        .arg(store.path())
        .args(["pull", "--no-unpack", image])
        .env("BOX_REGISTRIES_CONF", &conf_path)
        .env("XDG_RUNTIME_DIR", dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("BOX_ROOT")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    if let Some((file, cert_dir)) = ca_env {
        c.env("SSL_CERT_FILE", file).env("SSL_CERT_DIR", cert_dir);
    }
    c.output().unwrap()
}

/// What a slim job image has: no CA certificates at all (rustls-native-certs reads only the
/// files the variables name when they are set, so empty ones stand for an empty store).
fn no_ca_store(dir: &Path) -> (PathBuf, PathBuf) {
    let file = dir.join("empty.pem");
    std::fs::write(&file, "").unwrap();
    let certs = dir.join("empty-certs");
    std::fs::create_dir_all(&certs).unwrap();
    (file, certs)
}

/// An HTTPS registry with a certificate from a fresh test CA, holding busybox; returns the
/// certificates, the registry (stopped when dropped) and the image's full name.
fn tls_registry(dir: &Path) -> (Certs, Registry, String) {
    let certs = make_certs(dir);
    let reg = Registry::start_tls(&certs.cert, &certs.key);
    fixtures::seed(&reg, &[Fixture::Busybox]);
    let image = reg.image("library/busybox:latest");
    (certs, reg, image)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_job_without_a_ca_bundle_pulls_through_a_plain_http_mirror() {
    if !tools() {
        return;
    }
    let reg = Registry::start();
    fixtures::seed(&reg, &[Fixture::Busybox]);
    let dir = tempfile::tempdir().unwrap();
    let conf = std::fs::read_to_string(reg.registries_conf()).unwrap();
    let (file, certs) = no_ca_store(dir.path());
    for who in whos() {
        let o = pull(
            dir.path(),
            &conf,
            "busybox",
            Some((&file, &certs)),
            who.as_ref(),
        );
        assert!(o.status.success(), "no CA store ({who:?}): {}", stderr(&o));
    }
}

#[test]
fn an_unknown_ca_fails_at_the_tls_connection_saying_how_to_add_it() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_certs, _reg, image) = tls_registry(dir.path());
    let (file, empty) = no_ca_store(dir.path());
    // With the machine's CA store, and with none (the bundled roots then): the test CA is in
    // neither, so both fail, at the connection, naming the fix.
    let envs = [None, Some((file.as_path(), empty.as_path()))];
    for (ca_env, who) in envs.into_iter().flat_map(|e| whos().map(|w| (e, w))) {
        let o = pull(dir.path(), "", &image, ca_env, who.as_ref());
        assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("not signed by a CA boxkit trusts") && e.contains("SSL_CERT_FILE="),
            "the error should say the CA is unknown and how to add it: {e}"
        );
        assert!(
            !e.contains("create HTTP client"),
            "the client itself must build without a CA store: {e}"
        );
    }
}

#[test]
fn ssl_cert_file_and_ssl_cert_dir_add_a_registrys_ca() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (certs, _reg, image) = tls_registry(dir.path());
    let (_, empty) = no_ca_store(dir.path());
    for who in whos() {
        let o = pull(
            dir.path(),
            "",
            &image,
            Some((&certs.ca, &empty)),
            who.as_ref(),
        );
        assert!(
            o.status.success(),
            "SSL_CERT_FILE ({who:?}): {}",
            stderr(&o)
        );
    }
    // A directory of PEM files (OpenSSL's hashed names are not required).
    let ca_dir = dir.path().join("ca-dir");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(&certs.ca, ca_dir.join("test-ca.pem")).unwrap();
    let (empty_file, _) = no_ca_store(dir.path());
    for who in whos() {
        let o = pull(
            dir.path(),
            "",
            &image,
            Some((&empty_file, &ca_dir)),
            who.as_ref(),
        );
        assert!(o.status.success(), "SSL_CERT_DIR ({who:?}): {}", stderr(&o));
    }
}
