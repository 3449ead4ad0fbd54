//! Build progress output (`boxbuild --progress=...`), as root and as a user with a
//! subordinate range:
//! - the TTY view, run in a tmux pane of fixed size and read with `capture-pane`: a running
//!   step with its elapsed time and last output lines, finished steps collapsed to one line
//!   (`CACHED` on a rebuild), the summary; in a 40-column pane nothing wraps, and a RUN that
//!   prints escape sequences can neither clear the screen nor set the pane's title;
//! - rawjson: JSON lines with vertexes, logs (base64) and statuses;
//! - plain: a 30 MB blob served slowly (tests/fixtures/slow_registry.py) prints a progress
//!   line while it downloads, for `box pull` and for a build's FROM; the lines are stamped
//!   as they arrive, so the test sees that the line came before the end of the transfer.
mod build_common;
mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use build_common::{Env, Who, stderr};

fn whos() -> Vec<Who> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![root, Who::with_range().expect("root")]
}

fn have_tmux() -> bool {
    if common::have_tool("tmux") {
        return true;
    }
    common::skip("tmux is not installed (scripts/install-deps.sh installs it)");
    false
}

// ---------------------------------------------------------------------------------------
// tmux

/// A private tmux server (its own socket) running one command in a pane of fixed size.
struct Tmux {
    dir: tempfile::TempDir,
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Tmux {
    /// Run `cmd` (program, arguments, environment and directory) in a `cols`×`rows` pane.
    /// The shell first sets the pane's title to `fixed-title`, and stays after the command
    /// so the last screen can be read.
    fn run(cmd: &Command, cols: u16, rows: u16) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        // BUILDKIT_PROGRESS would override auto.
        let mut line = String::from(r"printf '\033]2;fixed-title\007'; env -u BUILDKIT_PROGRESS");
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                line.push(' ');
                line.push_str(&shell_quote(&format!(
                    "{}={}",
                    k.to_string_lossy(),
                    v.to_string_lossy()
                )));
            }
        }
        line.push(' ');
        line.push_str(&shell_quote(&cmd.get_program().to_string_lossy()));
        for a in cmd.get_args() {
            line.push(' ');
            line.push_str(&shell_quote(&a.to_string_lossy()));
        }
        line.push_str("; echo BUILD-EXIT=$?; sleep 600");
        let t = Tmux { dir };
        let cwd = cmd.get_current_dir().unwrap_or(Path::new("/"));
        let o = t
            .tmux()
            .args(["new-session", "-d", "-s", "t", "-x", &cols.to_string()])
            .args(["-y", &rows.to_string(), "-c"])
            .arg(cwd)
            .arg(&line)
            .output()
            .unwrap();
        assert!(o.status.success(), "tmux new-session: {}", stderr(&o));
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(self.dir.path().join("sock"));
        c
    }

    /// The pane's text, with lines the terminal wrapped joined again (`-J`), trailing blank
    /// lines dropped.
    fn screen(&self) -> String {
        let o = self
            .tmux()
            .args(["capture-pane", "-p", "-J", "-t", "t"])
            .output()
            .unwrap();
        assert!(o.status.success(), "capture-pane: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    }

    fn title(&self) -> String {
        let o = self
            .tmux()
            .args(["display-message", "-p", "-t", "t", "#{pane_title}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The screen once `pred` holds for it (polled every 50 ms); panics after `secs`.
    fn wait_for(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "no {what} on the screen after {secs}s:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The screen after the build ended.
    fn finished(&self) -> String {
        let s = self.wait_for("end of the build", 120, |s| s.contains("BUILD-EXIT="));
        assert!(s.contains("BUILD-EXIT=0"), "the build failed:\n{s}");
        s
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

/// The line of step `[n/total]` (collapsed or running), `=> [n/total] …` or
/// `=> CACHED [n/total] …`.
fn step_lines(screen: &str, n: usize, total: usize) -> Vec<&str> {
    let tag = format!("[{n}/{total}] ");
    screen
        .lines()
        .filter(|l| l.starts_with("=> ") && !l.starts_with("=> => ") && l.contains(&tag))
        .collect()
}

/// The time at the end of a step line (`… 3.2s`).
fn line_secs(line: &str) -> f64 {
    let last = line.split_whitespace().last().unwrap_or("");
    last.strip_suffix('s')
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no time at the end of {line:?}"))
}

fn tty_build(env: &Env, args: &[&str], cols: u16, rows: u16) -> Tmux {
    let mut c = env.command("boxbuild", &[]);
    c.args(args).arg(env.ctx());
    Tmux::run(&c, cols, rows)
}

#[test]
fn the_tty_view_shows_a_running_step_then_collapses_it() {
    if !have_tmux() {
        return;
    }
    for who in whos() {
        let env = Env::new(who.clone());
        env.boxfile(
            "FROM busybox\nRUN echo setup\n\
             RUN for i in 1 2 3 4 5 6 7 8; do echo out-$i; done; sleep 4; echo after\n\
             LABEL done=yes\n",
        );
        // No --progress: auto is the TTY view on a terminal.
        let t = tty_build(&env, &[], 100, 30);
        let running = t.wait_for("the running step's output", 60, |s| s.contains("out-8"));
        let who = who.label();
        let line = step_lines(&running, 3, 4);
        assert_eq!(line.len(), 1, "{who}: step 3 once:\n{running}");
        assert!(line[0].contains("RUN for i in"), "{who}:\n{running}");
        let t0 = line_secs(line[0]);
        for i in 3..=8 {
            assert!(
                running.contains(&format!("=> => # out-{i}")),
                "{who}: the last six lines are shown:\n{running}"
            );
        }
        assert!(
            !running.contains("out-2"),
            "{who}: only the last six lines:\n{running}"
        );
        assert!(running.contains("[+] Building"), "{who}:\n{running}");
        let setup = step_lines(&running, 2, 4);
        assert!(
            setup.len() == 1 && setup[0].contains("RUN echo setup"),
            "{who}: the finished step is one line:\n{running}"
        );
        line_secs(setup[0]);
        // The elapsed time moves while the step runs.
        std::thread::sleep(Duration::from_millis(1500));
        let later = t.screen();
        if let [l] = step_lines(&later, 3, 4)[..]
            && later.contains("=> => # out-8")
        {
            assert!(
                line_secs(l) > t0,
                "{who}: time goes on:\n{running}\n{later}"
            );
        }

        let done = t.finished();
        assert!(!done.contains("=> => #"), "{who}: no output left:\n{done}");
        for n in 1..=4 {
            assert_eq!(step_lines(&done, n, 4).len(), 1, "{who}: [{n}/4]:\n{done}");
        }
        let slow = step_lines(&done, 3, 4)[0];
        assert!(line_secs(slow) >= 4.0, "{who}: its time:\n{done}");
        let summary = done
            .lines()
            .find(|l| l.starts_with("[+] Building"))
            .unwrap_or_else(|| panic!("{who}: a summary:\n{done}"));
        assert!(summary.ends_with("(4/4) FINISHED"), "{who}:\n{done}");
        assert_eq!(done.matches("[+] Building").count(), 1, "{who}:\n{done}");
        assert!(done.contains("built in"), "{who}:\n{done}");

        // Built again: the layer steps are CACHED.
        drop(t);
        let t = tty_build(&env, &["--progress=tty"], 100, 30);
        let again = t.finished();
        for n in [2, 3] {
            let l = step_lines(&again, n, 4);
            assert!(
                l.len() == 1 && l[0].starts_with("=> CACHED "),
                "{who}: [{n}/4] cached:\n{again}"
            );
        }
        assert!(again.contains("(4/4) FINISHED"), "{who}:\n{again}");
    }
}

#[test]
fn a_narrow_pane_does_not_wrap_and_hostile_output_is_stripped() {
    if !have_tmux() {
        return;
    }
    for who in whos() {
        let env = Env::new(who.clone());
        let long = "a".repeat(120);
        env.boxfile(&format!(
            "FROM busybox\n\
             RUN printf 'evil \\033[2J\\033[H\\033]2;pwned\\007\\033[31mred\\033[0m {long} end\\n'; \
             printf 'tab\\there\\rcarriage\\n'; echo marker-line; sleep 3\n\
             RUN echo a-very-long-command-line-that-is-far-wider-than-forty-columns-of-the-pane\n"
        ));
        let t = tty_build(&env, &["--progress=tty"], 40, 20);
        let who = who.label();
        let running = t.wait_for("the marker", 60, |s| s.contains("marker-line"));
        assert_fits(&running, 40, &who);
        // Neither the clear-screen nor the cursor-home reached the terminal: the first
        // step's line is still there, above the live area.
        assert_eq!(step_lines(&running, 1, 3).len(), 1, "{who}:\n{running}");
        let evil = running
            .lines()
            .find(|l| l.starts_with("=> => # evil"))
            .unwrap_or_else(|| panic!("{who}: the step's line:\n{running}"));
        assert!(
            evil.starts_with("=> => # evil red aaa") && evil.ends_with("a…"),
            "{who}: escapes stripped, cut to the width: {evil:?}"
        );
        assert!(
            running.contains("=> => # carriage"),
            "{who}: a carriage return leaves what it showed:\n{running}"
        );
        assert_eq!(t.title(), "fixed-title", "{who}: OSC 2 did not pass");

        let done = t.finished();
        assert_fits(&done, 40, &who);
        for n in 1..=3 {
            assert_eq!(step_lines(&done, n, 3).len(), 1, "{who}: [{n}/3]:\n{done}");
        }
        assert!(done.contains("(3/3) FINISHED"), "{who}:\n{done}");
        assert_eq!(t.title(), "fixed-title", "{who}");
    }
}

/// No line of the view is wider than the pane (so the terminal wrapped none: `capture-pane
/// -J` joins wrapped lines). The image ID on stdout and the shell's own line may wrap.
fn assert_fits(screen: &str, cols: usize, who: &str) {
    for l in screen.lines() {
        if l.starts_with("sha256:") || l.starts_with("BUILD-EXIT") {
            continue;
        }
        assert!(
            l.chars().count() < cols,
            "{who}: a line the terminal wrapped ({} columns): {l:?}\n{screen}",
            l.chars().count()
        );
    }
}

// ---------------------------------------------------------------------------------------
// rawjson and quiet

#[test]
fn rawjson_prints_vertexes_and_logs_as_json_lines() {
    for who in whos() {
        let env = Env::new(who.clone());
        env.boxfile("FROM busybox\nRUN echo hello-json\nENV A=b\n");
        let o = env.build(&["--progress=rawjson"]);
        let who = who.label();
        assert!(o.status.success(), "{who}: {}", stderr(&o));
        let err = stderr(&o);
        let docs: Vec<serde_json::Value> = err
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{who}: not JSON ({e}): {l:?}\n{err}"))
            })
            .collect();
        let vertexes: Vec<&serde_json::Value> = docs
            .iter()
            .filter_map(|d| d["vertexes"].as_array())
            .flatten()
            .collect();
        for n in 1..=3 {
            let tag = format!("[{n}/3] ");
            let v: Vec<_> = vertexes
                .iter()
                .filter(|v| v["name"].as_str().unwrap().starts_with(&tag))
                .collect();
            assert_eq!(v.len(), 2, "{who}: started and completed [{n}/3]:\n{err}");
            assert!(v[0]["completed"].is_null() && v[1]["completed"].is_string());
            assert_eq!(v[0]["digest"], v[1]["digest"]);
            assert!(v[0]["digest"].as_str().unwrap().starts_with("sha256:"));
            assert!(v[0]["started"].as_str().unwrap().ends_with('Z'));
        }
        let run = vertexes
            .iter()
            .find(|v| v["name"] == "[2/3] RUN echo hello-json")
            .unwrap();
        let log = docs
            .iter()
            .filter_map(|d| d["logs"].as_array())
            .flatten()
            .find(|l| l["vertex"] == run["digest"])
            .unwrap_or_else(|| panic!("{who}: the RUN's log:\n{err}"));
        assert_eq!(log["stream"], 1);
        let data = base64::engine::general_purpose::STANDARD
            .decode(log["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(data, b"hello-json\n");

        // Again: the RUN is cached.
        let o = env.build(&["--progress=rawjson"]);
        let cached = stderr(&o)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|d| d["vertexes"][0].as_object().cloned())
            .any(|v| v["name"] == "[2/3] RUN echo hello-json" && v["cached"] == true);
        assert!(cached, "{who}: cached vertex:\n{}", stderr(&o));
    }
}

#[test]
fn rawjson_reports_the_pull_of_a_base_as_statuses_of_its_step() {
    for who in whos() {
        let env = Env::with_registry(who.clone());
        env.boxfile("FROM busybox\nENV A=b\n");
        let o = env.build(&["--progress=rawjson"]);
        let who = who.label();
        assert!(o.status.success(), "{who}: {}", stderr(&o));
        let err = stderr(&o);
        let docs: Vec<serde_json::Value> = err
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{who}: {e}: {l:?}")))
            .collect();
        let from = docs
            .iter()
            .filter_map(|d| d["vertexes"].as_array())
            .flatten()
            .find(|v| v["name"] == "[1/2] FROM busybox")
            .unwrap_or_else(|| panic!("{who}: the FROM vertex:\n{err}"));
        let statuses: Vec<&serde_json::Value> = docs
            .iter()
            .filter_map(|d| d["statuses"].as_array())
            .flatten()
            .collect();
        assert!(!statuses.is_empty(), "{who}: statuses:\n{err}");
        for s in &statuses {
            assert_eq!(s["vertex"], from["digest"], "{who}: {s}");
            assert!(s["id"].as_str().unwrap().starts_with("sha256:"), "{s}");
        }
        let done = statuses
            .iter()
            .find(|s| s["completed"].is_string())
            .unwrap_or_else(|| panic!("{who}: a completed transfer:\n{err}"));
        assert_eq!(done["current"], done["total"], "{who}: {done}");
        assert!(done["total"].as_u64().unwrap() > 0);
    }
}

#[test]
fn progress_quiet_prints_only_the_image_id() {
    let Some(who) = Who::root() else { return };
    let env = Env::new(who);
    env.boxfile("FROM busybox\nRUN echo not-shown\n");
    let o = env.build(&["--progress=quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("sha256:") && out.lines().count() == 1,
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// plain progress of a slow transfer

/// tests/fixtures/slow_registry.py on a free port, serving `slow/big` with a 30 MB layer at
/// 3 MB/s (ten seconds).
struct SlowRegistry {
    child: Child,
    port: String,
    _dir: tempfile::TempDir,
}

impl SlowRegistry {
    fn start() -> SlowRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/slow_registry.py");
        let child = Command::new("python3")
            .arg(script)
            .arg("--port-file")
            .arg(&port_file)
            .args(["--size", "30000000", "--rate", "3000000"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        while !port_file.exists() {
            assert!(Instant::now() < end, "slow_registry.py did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let port = std::fs::read_to_string(&port_file).unwrap();
        SlowRegistry {
            child,
            port,
            _dir: dir,
        }
    }

    fn image(&self) -> String {
        format!("127.0.0.1:{}/slow/big", self.port)
    }

    /// A registries.conf naming it insecure, readable by the test user.
    fn conf(&self, dir: &Path) -> PathBuf {
        let p = dir.join("slow-registries.conf");
        std::fs::write(
            &p,
            format!(
                "[[registry]]\nlocation = \"127.0.0.1:{}\"\ninsecure = true\n",
                self.port
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }
}

impl Drop for SlowRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `c`, stamping each stderr line with the time it arrived.
fn timed_stderr(mut c: Command) -> (bool, Vec<(Instant, String)>) {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
    });
    let mut lines = vec![];
    for l in BufReader::new(child.stderr.take().unwrap()).lines() {
        lines.push((Instant::now(), l.unwrap()));
    }
    let _ = drain.join();
    (child.wait().unwrap().success(), lines)
}

/// A progress line of the layer (`…: Downloading 12.3 MB of 30.0 MB (41%, …)`) arrived
/// while bytes were still missing, and at least a second before the layer was complete.
fn assert_progress_before_completion(lines: &[(Instant, String)], who: &str) {
    let all: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let progress = lines.iter().find(|(_, l)| {
        l.contains(": Downloading ") && l.contains(" of 30.0 MB (") && !l.contains("(100%")
    });
    let Some((at, line)) = progress else {
        panic!("{who}: no progress line during the download:\n{all:#?}");
    };
    let done = lines
        .iter()
        .find(|(_, l)| l.contains(": Pull complete"))
        .unwrap_or_else(|| panic!("{who}: no completion line:\n{all:#?}"));
    assert!(
        done.0.duration_since(*at) >= Duration::from_secs(1),
        "{who}: the progress line {line:?} came only {:?} before the completion",
        done.0.duration_since(*at)
    );
}

#[test]
fn plain_pull_of_a_slow_blob_prints_progress_before_it_completes() {
    for who in whos() {
        let reg = SlowRegistry::start();
        let env = Env::new(who.clone());
        let conf = reg.conf(env.dir.path());
        let conf = conf.to_string_lossy();
        let mut c = env.command("box", &[("BOX_REGISTRIES_CONF", &conf)]);
        c.args(["pull", &reg.image()]);
        let (ok, lines) = timed_stderr(c);
        assert!(ok, "{}: box pull failed: {lines:#?}", who.label());
        assert_progress_before_completion(&lines, &who.label());
    }
}

#[test]
fn plain_build_pulling_a_slow_base_prints_progress_before_it_completes() {
    for who in whos() {
        let reg = SlowRegistry::start();
        let env = Env::new(who.clone());
        env.boxfile(&format!("FROM {}\nLABEL slow=yes\n", reg.image()));
        let conf = reg.conf(env.dir.path());
        let conf = conf.to_string_lossy();
        let mut c = env.command("boxbuild", &[("BOX_REGISTRIES_CONF", &conf)]);
        c.arg("--progress=plain").arg(env.ctx());
        let (ok, lines) = timed_stderr(c);
        assert!(ok, "{}: boxbuild failed: {lines:#?}", who.label());
        assert!(lines.iter().any(|(_, l)| l.starts_with("[1/2] FROM")));
        assert_progress_before_completion(&lines, &who.label());
    }
}

#[test]
fn on_a_tty_slow_pulls_show_bars_in_box_pull_and_in_the_build_view() {
    if !have_tmux() {
        return;
    }
    for who in whos() {
        let reg = SlowRegistry::start();
        let env = Env::new(who.clone());
        let who = who.label();
        let conf = reg.conf(env.dir.path());
        let conf = conf.to_string_lossy();
        let bar =
            |l: &str| l.contains(": Downloading  [=") && l.contains("MiB/") && l.contains("iB/s");

        // box pull: indicatif bars.
        let mut c = env.command("box", &[("BOX_REGISTRIES_CONF", &conf)]);
        c.args(["pull", &reg.image()]);
        let t = Tmux::run(&c, 120, 20);
        t.wait_for("a pull bar", 60, |s| s.lines().any(bar));
        drop(t);

        // The build view: the bar under the FROM step, which then collapses (a fresh store,
        // where the blob is not yet).
        let env = Env::new(env.who.clone());
        env.boxfile(&format!("FROM {}\nLABEL slow=yes\n", reg.image()));
        let mut c = env.command("boxbuild", &[("BOX_REGISTRIES_CONF", &conf)]);
        c.arg("--progress=tty").arg(env.ctx());
        let t = Tmux::run(&c, 120, 20);
        let s = t.wait_for("a build bar", 60, |s| {
            s.lines().any(|l| l.starts_with("=> => ") && bar(l))
        });
        let from = step_lines(&s, 1, 2);
        assert!(
            from.len() == 1 && from[0].contains("FROM 127.0.0.1:"),
            "{who}: the running FROM:\n{s}"
        );
        let done = t.finished();
        assert!(!done.contains("=> =>"), "{who}: collapsed:\n{done}");
        assert!(
            step_lines(&done, 1, 2)[0].contains("FROM"),
            "{who}:\n{done}"
        );
        assert!(done.contains("(2/2) FINISHED"), "{who}:\n{done}");
    }
}
