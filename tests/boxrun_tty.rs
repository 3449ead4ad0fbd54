//! `boxrun -it` and `box exec -it` in a real terminal (tmux): line editing, Ctrl-C to the
//! container, window resize, and Ctrl-D ending the shell with 0.

mod boxrun_common;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use boxrun_common::{Cleanup, Who, stderr, stdout, unique};

/// A private tmux server running one window of the given size.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let socket = unique("tmux");
        let st = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                "m",
                "-x",
                "80",
                "-y",
                "24",
                cmd,
            ])
            .status()
            .unwrap();
        assert!(st.success());
        Tmux { socket }
    }
    fn tmux(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn keys(&self, keys: &[&str]) {
        let mut v = vec!["send-keys", "-t", "m"];
        v.extend_from_slice(keys);
        self.tmux(&v);
    }
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "m"])
    }
    /// Wait until the screen shows `text` (counting occurrences).
    fn wait_for(&self, text: &str, times: usize) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.matches(text).count() >= times {
                return s;
            }
            assert!(Instant::now() < end, "waiting for {text:?}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

fn need_tmux() -> bool {
    if !common::have_tool("tmux") {
        common::skip("tmux is not installed");
        return false;
    }
    true
}

/// The shell command line that runs boxkit's `bin` as `who`.
fn command_line(who: &Who, bin: &str, args: &str) -> String {
    let b = common::bin(bin);
    let store = boxrun_common::store(who);
    let prefix = match who {
        Who::Root => String::new(),
        Who::User(u) => format!(
            "setpriv --reuid={} --regid={} --init-groups --reset-env -- ",
            u.uid, u.gid
        ),
    };
    format!("{prefix}{} --root {} {args}", b.display(), store.display())
}

/// Type into an interactive shell: edit a line, resize, interrupt, then Ctrl-D.
fn drive_shell(t: &Tmux, exit_file: &std::path::Path) {
    // capture-pane drops trailing blanks: the prompt reads "/ #".
    t.wait_for("/ #", 1);
    // Line editing: type, rub out a character, run.
    t.keys(&["echo abcd", "BSpace", "Enter"]);
    let s = t.wait_for("\nabc\n", 1);
    assert!(!s.contains("abcd\n"), "{s}");
    // The container sees the window size, and a resize.
    t.keys(&["stty size", "Enter"]);
    t.wait_for("24 80", 1);
    t.tmux(&["resize-window", "-t", "m", "-x", "100", "-y", "30"]);
    // tmux propagates SIGWINCH asynchronously; ask until the new size shows.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        t.keys(&["clear; stty size", "Enter"]);
        std::thread::sleep(Duration::from_millis(200));
        if t.screen().contains("30 100") {
            break;
        }
        assert!(Instant::now() < end, "resize never reached the container");
    }
    // Ctrl-C interrupts the foreground command in the container, not boxrun.
    t.keys(&["sleep 1000", "Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["C-c"]);
    t.keys(&["echo still-here", "Enter"]);
    t.wait_for("\nstill-here", 1);
    // Ctrl-D ends the shell and boxrun with 0.
    t.keys(&["C-d"]);
    let end = Instant::now() + Duration::from_secs(20);
    while !exit_file.exists() {
        assert!(
            Instant::now() < end,
            "boxrun did not exit; screen:\n{}",
            t.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(std::fs::read_to_string(exit_file).unwrap().trim(), "0");
}

#[test]
fn boxrun_it_busybox_sh_edits_resizes_interrupts_and_exits_0_on_ctrl_d() {
    let Some(all) = Who::all() else { return };
    if !need_tmux() {
        return;
    }
    for who in all {
        let d = boxrun_common::tempdir();
        let exit_file = d.path().join("exit");
        let cmd = format!(
            "{}; echo $? > {}; sleep 60",
            command_line(&who, "boxrun", "--rm -it --network none busybox sh"),
            exit_file.display()
        );
        let t = Tmux::start(&cmd);
        drive_shell(&t, &exit_file);
    }
}

#[test]
fn box_exec_it_gives_a_terminal_in_a_running_container() {
    let Some(all) = Who::all() else { return };
    if !need_tmux() {
        return;
    }
    for who in all {
        let name = unique("execit");
        let _c = Cleanup(&who, name.clone());
        let o = who.boxrun(&[
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "busybox",
            "sleep",
            "1000",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o).trim().len(), 64);
        let d = boxrun_common::tempdir();
        let exit_file = d.path().join("exit");
        let cmd = format!(
            "{}; echo $? > {}; sleep 60",
            command_line(&who, "box", &format!("exec -it {name} sh")),
            exit_file.display()
        );
        let t = Tmux::start(&cmd);
        drive_shell(&t, &exit_file);
    }
}

/// Killing the terminal (its tmux server) hangs up the container's terminal: the shell in it
/// ends, boxrun exits and its `--rm` container is removed, instead of lingering.
#[test]
fn boxrun_it_ends_when_its_terminal_is_killed() {
    let Some(all) = Who::all() else { return };
    if !need_tmux() {
        return;
    }
    for who in all {
        let name = unique("hup");
        let _c = Cleanup(&who, name.clone());
        let cmd = command_line(
            &who,
            "boxrun",
            &format!("--rm -it --network none --name {name} busybox sh"),
        );
        let t = Tmux::start(&cmd);
        t.wait_for("/ #", 1);
        let listed = || stdout(&who.box_(&["ps", "-a"]));
        assert!(listed().contains(&name), "{}", listed());
        drop(t);
        let end = Instant::now() + Duration::from_secs(20);
        while listed().contains(&name) {
            assert!(
                Instant::now() < end,
                "{}: the container outlived its terminal by 20 s",
                who.label()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
