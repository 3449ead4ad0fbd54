//! `--format` (Go templates, `json`, `table`) and `--filter` on `box ps`, `box images`,
//! `box inspect` and `box info`, through the real binaries, as root and rootless. Each test
//! has a private store holding the busybox fixture plus two images umoci derives from it (one
//! tagged with labels, one untagged), so other tests' containers never show up in `ps`.

mod boxrun_common;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use boxrun_common::{Who, stderr, stdout, unique};
use common::fixtures::{self, Fixture};

/// The labeled (`labeled:v1`, created 2025-06-01, app=web tier=front) and untagged (created
/// 2025-07-01, tier=back) archives, made by umoci and skopeo from the busybox layout, and
/// kept under target/tmp beside a key of that layout's fixture cache.
fn archives() -> &'static (PathBuf, PathBuf) {
    static A: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    A.get_or_init(|| {
        let layout = fixtures::layout(Fixture::Busybox);
        let key = layout
            .ancestors()
            .nth(2)
            .and_then(|p| p.file_name())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let done = tmp.join(format!("cli-format-{key}"));
        let paths = (done.join("labeled.tar"), done.join("dangle.tar"));
        if paths.1.exists() {
            return paths;
        }
        let dir = tempfile::Builder::new()
            .prefix("cli-format-new-")
            .tempdir_in(tmp)
            .unwrap();
        let built = archives_in(dir.path(), &layout);
        // Another test process may have finished first: either copy is good.
        let _ = std::fs::rename(built, &done);
        paths
    })
}

/// Make labeled.tar and dangle.tar in `dir`; returns a directory holding just those.
fn archives_in(dir: &Path, layout: &Path) -> PathBuf {
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let l = dir.join("l");
    let ok = |c: &mut Command| {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{c:?}: {}", stderr(&o));
    };
    ok(Command::new("cp").arg("-a").arg(layout).arg(&l));
    let img = |t: &str| format!("{}:{t}", l.display());
    ok(Command::new("umoci").args([
        "config",
        "--image",
        &img("latest"),
        "--tag",
        "labeled",
        "--config.label",
        "app=web",
        "--config.label",
        "tier=front",
        "--created",
        "2025-06-01T00:00:00Z",
    ]));
    ok(Command::new("umoci").args([
        "config",
        "--image",
        &img("latest"),
        "--tag",
        "dangle",
        "--config.label",
        "tier=back",
        "--created",
        "2025-07-01T00:00:00Z",
    ]));
    let labeled = out.join("labeled.tar");
    let dangle = out.join("dangle.tar");
    ok(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("oci:{}", img("labeled")),
        &format!("oci-archive:{}:labeled:v1", labeled.display()),
    ]));
    // No name in the archive: box loads it untagged (dangling).
    ok(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("oci:{}", img("dangle")),
        &format!("oci-archive:{}", dangle.display()),
    ]));
    out
}

/// A private store for `who`, removed (containers first) when dropped.
struct Env {
    who: Who,
    root: PathBuf,
}

impl Env {
    fn new(who: Who) -> Env {
        let base = Path::new(boxrun_common::STORES_DIR)
            .parent()
            .unwrap()
            .join("cli-format");
        std::fs::create_dir_all(&base).unwrap();
        let root = base.join(unique(who.label()));
        std::fs::create_dir_all(&root).unwrap();
        who.own_store(&root);
        let env = Env { who, root };
        let (labeled, dangle) = archives();
        for a in [&fixtures::oci_archive(Fixture::Busybox), labeled, dangle] {
            // Through stdin: the rootless user may not reach the archives.
            let mut c = env.cmd("box");
            c.args(["load", "-q"])
                .stdin(std::fs::File::open(a).unwrap());
            let o = c.output().unwrap();
            assert!(o.status.success(), "load {}: {}", a.display(), stderr(&o));
        }
        env
    }

    fn cmd(&self, bin: &str) -> Command {
        let b = common::bin(bin);
        let mut c = match &self.who {
            Who::Root => Command::new(b),
            Who::User(u) => common::users::command_as(u, &b),
        };
        c.arg("--root").arg(&self.root);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, bin: &str, args: &[&str]) -> Output {
        let o = self.cmd(bin).args(args).output().unwrap();
        eprintln!(
            "[{}] {bin} {}\n  status {:?}\n  stdout {}\n  stderr {}",
            self.who.label(),
            args.join(" "),
            o.status.code(),
            stdout(&o).trim(),
            stderr(&o).trim()
        );
        o
    }

    /// `box ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run("box", args);
        assert_eq!(o.status.code(), Some(0), "box {args:?}: {}", stderr(&o));
        stdout(&o)
    }

    /// `box ARGS`, which must fail with 125; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let o = self.run("box", args);
        assert_eq!(o.status.code(), Some(125), "box {args:?}: {}", stdout(&o));
        stderr(&o)
    }

    /// Two containers: `web` (detached, running, from labeled:v1, a directory bound on
    /// /data) and `done` (busybox, exited 3), created in that order.
    fn containers(&self) -> (String, String) {
        let web = unique("web");
        let done = unique("done");
        let vol = self.root.join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        let bind = format!("{}:/data:ro", vol.display());
        let o = self.run(
            "boxrun",
            &[
                "-d",
                "--name",
                &web,
                "--network",
                "none",
                "-v",
                &bind,
                "labeled:v1",
                "sleep",
                "1000",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // Created after web (times have nanoseconds): ps orders and before/since compare them.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let o = self.run(
            "boxrun",
            &[
                "--name",
                &done,
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "exit 3",
            ],
        );
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        (web, done)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.cmd("box").args(["ps", "-aq", "--no-trunc"]).output();
        if let Ok(o) = ids {
            for id in stdout(&o).lines() {
                let _ = self.cmd("box").args(["rm", "-f", id]).output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn images_format_placeholders_json_and_table() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let e = Env::new(who);
        let out = e.ok(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}",
        ]);
        let l = lines(&out);
        // Newest first; the untagged image is <none>:<none>.
        assert_eq!(l.len(), 3, "{out}");
        assert!(l[0].starts_with("<none>:<none> "), "{out}");
        assert!(l[1].starts_with("labeled:v1 "), "{out}");
        assert!(l[2].starts_with("busybox:latest "), "{out}");
        let id = l[2].split(' ').nth(1).unwrap();
        assert_eq!(id.len(), 12, "{out}");
        assert!(l[2].ends_with("MB") || l[2].ends_with("kB"), "{out}");
        let out = e.ok(&[
            "images",
            "--format",
            "{{.CreatedAt}}|{{.CreatedSince}}|{{.Digest}}",
            "labeled",
        ]);
        assert!(out.starts_with("2025-06-01 00:00:00 +0000 UTC|"), "{out}");
        assert!(out.contains(" ago|sha256:"), "{out}");
        let out = e.ok(&["images", "--no-trunc", "--format", "{{.ID}}", "busybox"]);
        assert!(
            out.trim().starts_with("sha256:") && out.trim().len() == 71,
            "{out}"
        );

        // --format json: one object per line, docker's keys, all strings.
        let out = e.ok(&["images", "--format", "json"]);
        for line in lines(&out) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for k in [
                "Repository",
                "Tag",
                "ID",
                "CreatedSince",
                "CreatedAt",
                "Size",
                "Digest",
            ] {
                assert!(v[k].is_string(), "{k} in {line}");
            }
        }
        assert_eq!(lines(&out).len(), 3);
        // {{json .}} is the same object.
        let j = e.ok(&["images", "--format", "{{json .}}", "busybox"]);
        let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
        assert_eq!(v["Repository"], "busybox");
        assert_eq!(v["Tag"], "latest");

        // table: docker's headers, aligned columns.
        let out = e.ok(&[
            "images",
            "--format",
            r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}",
        ]);
        let l = lines(&out);
        assert_eq!(l.len(), 4, "{out}");
        assert!(l[0].starts_with("REPOSITORY   TAG      IMAGE ID"), "{out}");
        assert!(l[1].starts_with("<none>       <none>   "), "{out}");
        assert!(l[2].starts_with("labeled      v1       "), "{out}");
    }
}

#[test]
fn images_filters_dangling_label_reference_before_since() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let e = Env::new(who);
        let f = |filters: &[&str]| {
            let mut a = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
            for x in filters {
                a.extend(["--filter", x]);
            }
            let out = e.ok(&a);
            out.lines().map(String::from).collect::<Vec<_>>()
        };
        assert_eq!(f(&["dangling=true"]), ["<none>:<none>"]);
        assert_eq!(f(&["dangling=false"]), ["labeled:v1", "busybox:latest"]);
        assert_eq!(f(&["label=app"]), ["labeled:v1"]);
        assert_eq!(f(&["label=tier=back"]), ["<none>:<none>"]);
        assert_eq!(f(&["label=tier"]).len(), 2);
        assert!(f(&["label=tier=none"]).is_empty());
        // label filters must all hold.
        assert!(f(&["label=app=web", "label=tier=back"]).is_empty());
        assert_eq!(f(&["reference=busy*"]), ["busybox:latest"]);
        assert_eq!(f(&["reference=*:v1"]), ["labeled:v1"]);
        // The same key twice: either value.
        assert_eq!(
            f(&["reference=busybox", "reference=labeled"]),
            ["labeled:v1", "busybox:latest"]
        );
        assert_eq!(f(&["before=labeled:v1"]), ["busybox:latest"]);
        assert_eq!(f(&["since=labeled:v1"]), ["<none>:<none>"]);
        assert_eq!(f(&["since=busybox", "dangling=false"]), ["labeled:v1"]);
        let err = e.fails(&["images", "--filter", "colour=red"]);
        assert!(
            err.contains("invalid filter 'colour'")
                && err.contains("before, dangling, label, reference, since"),
            "{err}"
        );
        let err = e.fails(&["images", "--filter", "dangling=maybe"]);
        assert!(err.contains("dangling=maybe"), "{err}");
        let err = e.fails(&["images", "--filter", "noequals"]);
        assert!(err.contains("name=value"), "{err}");
    }
}

#[test]
fn ps_format_placeholders_json_table_and_filters() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let e = Env::new(who);
        let (web, done) = e.containers();
        let out = e.ok(&[
            "ps",
            "-a",
            "--format",
            "{{.ID}}|{{.Image}}|{{.Command}}|{{.Names}}|{{.State}}|{{.Status}}|{{.Labels}}",
        ]);
        let l = lines(&out);
        assert_eq!(l.len(), 2, "{out}");
        let d: Vec<&str> = l[0].split('|').collect();
        assert_eq!(d[0].len(), 12);
        assert_eq!(
            &d[1..5],
            ["busybox", "\"sh -c exit 3\"", done.as_str(), "exited"],
            "{out}"
        );
        assert!(d[5].starts_with("Exited (3)"), "{out}");
        assert_eq!(d[6], "");
        let w: Vec<&str> = l[1].split('|').collect();
        assert_eq!(
            &w[1..5],
            ["labeled:v1", "\"sleep 1000\"", web.as_str(), "running"],
            "{out}"
        );
        assert!(w[5].starts_with("Up "), "{out}");
        assert_eq!(w[6], "app=web,tier=front");
        // Without -a only the running one.
        assert_eq!(e.ok(&["ps", "--format", "{{.Names}}"]).trim(), web);
        let out = e.ok(&[
            "ps",
            "--format",
            r#"{{.CreatedAt}}|{{.RunningFor}}|{{.Label "app"}}"#,
        ]);
        assert!(
            out.contains(" +0000 UTC|") && out.trim().ends_with("|web"),
            "{out}"
        );

        let out = e.ok(&["ps", "-a", "--format", "json"]);
        let v: Vec<serde_json::Value> = out
            .lines()
            .map(|x| serde_json::from_str(x).unwrap())
            .collect();
        assert_eq!(v.len(), 2);
        for k in [
            "ID",
            "Image",
            "Command",
            "Names",
            "Status",
            "State",
            "CreatedAt",
            "Labels",
            "Ports",
        ] {
            assert!(v[0][k].is_string(), "{k} in {out}");
        }
        assert_eq!(v[1]["Names"], web.as_str());

        let out = e.ok(&[
            "ps",
            "-a",
            "--format",
            r"table {{.ID}}\t{{.Names}}\t{{.Status}}",
        ]);
        let l = lines(&out);
        assert_eq!(l.len(), 3, "{out}");
        assert!(l[0].starts_with("CONTAINER ID   NAMES"), "{out}");
        assert!(l[0].trim_end().ends_with("STATUS"), "{out}");

        let f = |args: &[&str]| {
            let mut a = vec!["ps", "--format", "{{.Names}}"];
            a.extend_from_slice(args);
            e.ok(&a).lines().map(String::from).collect::<Vec<_>>()
        };
        // A status filter shows stopped containers without -a, as docker's does.
        assert_eq!(f(&["-f", "status=exited"]), [done.as_str()]);
        assert_eq!(f(&["--filter", "status=running"]), [web.as_str()]);
        assert_eq!(f(&["-f", "status=exited", "-f", "status=running"]).len(), 2);
        assert_eq!(f(&["-a", "-f", &format!("name={web}")]), [web.as_str()]);
        assert_eq!(f(&["-a", "-f", "name=^t-done"]), [done.as_str()]);
        assert_eq!(f(&["-a", "-f", "label=app"]), [web.as_str()]);
        assert_eq!(f(&["-a", "-f", "label=tier=front"]), [web.as_str()]);
        assert!(f(&["-a", "-f", "label=tier=back"]).is_empty());
        assert_eq!(f(&["-a", "-f", "ancestor=busybox"]), [done.as_str()]);
        assert_eq!(f(&["-a", "-f", "ancestor=labeled:v1"]), [web.as_str()]);
        assert_eq!(f(&["-a", "-f", &format!("before={done}")]), [web.as_str()]);
        assert_eq!(f(&["-a", "-f", &format!("since={web}")]), [done.as_str()]);
        assert_eq!(f(&["-a", "-f", "exited=3"]), [done.as_str()]);
        assert_eq!(f(&["-a", "-f", "volume=/data"]), [web.as_str()]);
        assert_eq!(f(&["-a", "-f", "network=none"]).len(), 2);
        assert!(f(&["-a", "-f", "network=host"]).is_empty());
        let id = e.ok(&["ps", "-q"]);
        assert_eq!(f(&["-f", &format!("id={}", id.trim())]), [web.as_str()]);

        let err = e.fails(&["ps", "-f", "colour=red"]);
        assert!(
            err.contains("invalid filter 'colour'")
                && err.contains(
                    "ancestor, before, exited, id, label, name, network, since, status, volume"
                ),
            "{err}"
        );
        let err = e.fails(&["ps", "-f", "status=sleeping"]);
        assert!(err.contains("status=sleeping"), "{err}");
        let err = e.fails(&["ps", "-f", "before=no-such-container"]);
        assert!(err.contains("no-such-container"), "{err}");
    }
}

#[test]
fn inspect_format_fields_nested_json_range_if_index_join() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let e = Env::new(who);
        let (web, _) = e.containers();
        let out = e.ok(&[
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.State.Running}} {{.Config.Cmd}}",
            &web,
        ]);
        assert_eq!(out, format!("/{web} running true [sleep 1000]\n"));
        let id = e.ok(&["inspect", "-f", "{{.Id}}", &web]);
        assert_eq!(id.trim().len(), 64, "{id}");
        let out = e.ok(&[
            "inspect",
            "-f",
            "{{json .Config.Cmd}}|{{json .State.Running}}",
            &web,
        ]);
        assert_eq!(out, "[\"sleep\",\"1000\"]|true\n");
        let out = e.ok(&["inspect", "-f", "{{range .Config.Env}}<{{.}}>{{end}}", &web]);
        assert!(out.starts_with("<PATH="), "{out}");
        let out = e.ok(&["inspect", "-f", "{{if .State.Running}}up{{else}}down{{end}} {{index .Config.Cmd 1}} {{join .Config.Cmd \"+\"}} {{upper .State.Status}} {{lower \"A\"}}", &web]);
        assert_eq!(out, "up 1000 sleep+1000 RUNNING a\n");
        // Images: docker's field names.
        let out = e.ok(&[
            "inspect",
            "-f",
            "{{.RepoTags}} {{.Config.Labels}} {{index .Config.Labels \"app\"}} {{len .RepoTags}}",
            "labeled:v1",
        ]);
        assert_eq!(out, "[labeled:v1] map[app:web tier:front] web 1\n");
        let out = e.ok(&["inspect", "-f", "{{.Id}}", "busybox"]);
        assert!(out.starts_with("sha256:"), "{out}");
        // One line per object; {{json .}} round-trips the object the default prints.
        let out = e.ok(&["inspect", "-f", "{{json .}}", &web, "busybox"]);
        let l = lines(&out);
        assert_eq!(l.len(), 2);
        let arr: serde_json::Value =
            serde_json::from_str(&e.ok(&["inspect", &web, "busybox"])).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(l[0]).unwrap(),
            arr[0]
        );
        // --format json: the JSON array, as docker prints it.
        let j: serde_json::Value =
            serde_json::from_str(&e.ok(&["inspect", "--format", "json", &web])).unwrap();
        assert_eq!(j[0]["Name"], format!("/{web}"));
        let out = e.ok(&["inspect", "-f", "{{.Nope}}", "busybox"]);
        assert_eq!(out, "<no value>\n");
        // An image without labels: index gives "", as docker's typed label map does.
        let out = e.ok(&[
            "inspect",
            "-f",
            r#"[{{index .Config.Labels "app"}}]"#,
            "busybox",
        ]);
        assert_eq!(out, "[]\n");
    }
}

#[test]
fn bad_templates_fail_with_125_naming_template_and_position() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let e = Env::new(who);
        for cmd in [
            vec!["ps"],
            vec!["images"],
            vec!["inspect", "busybox"],
            vec!["info"],
        ] {
            let mut a = cmd.clone();
            a.extend(["--format", "{{.ID}} {{.Bad"]);
            let err = e.fails(&a);
            assert!(
                err.contains("template parsing error")
                    && err.contains("--format \"{{.ID}} {{.Bad\"")
                    && err.contains("line 1, column 9")
                    && err.contains("unclosed action"),
                "{cmd:?}: {err}"
            );
        }
        let err = e.fails(&["images", "--format", "x\n{{nofunc .ID}}"]);
        assert!(
            err.contains("line 2, column 3") && err.contains("function \"nofunc\" not defined"),
            "{err}"
        );
        let err = e.fails(&["inspect", "-f", "{{if .Id}}x", "busybox"]);
        assert!(err.contains("no {{end}}"), "{err}");
        // An execution error names the field and its place too.
        let err = e.fails(&["inspect", "-f", "{{.Id.Short}}", "busybox"]);
        assert!(
            err.contains("template execution error")
                && err.contains("line 1, column 3")
                && err.contains("can't evaluate field Short in type string"),
            "{err}"
        );
        let err = e.fails(&["images", "--format", "{{index .ID 5}}"]);
        assert!(err.contains("error calling index"), "{err}");
    }
}

#[test]
fn info_format_json_and_template() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let e = Env::new(who);
        let j: serde_json::Value =
            serde_json::from_str(&e.ok(&["info", "--format", "json"])).unwrap();
        assert_eq!(j["Version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(j["StoreRoot"], e.root.display().to_string());
        assert!(j["Checks"].as_array().is_some_and(|c| !c.is_empty()), "{j}");
        let out = e.ok(&[
            "info",
            "--format",
            "{{range .Checks}}{{.Name}}={{.Ok}} {{end}}",
        ]);
        assert!(out.contains("user-namespace=true"), "{out}");
        let out = e.ok(&["info", "-f", "{{.Version}}"]);
        assert_eq!(out.trim(), env!("CARGO_PKG_VERSION"));
    }
}
