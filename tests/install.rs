//! Install and shell integration (issue 15): completion scripts that the shells really load,
//! man pages that `man` really renders, `box info`'s fixes, and the rootless keeper's name.
mod common;

use std::process::{Command, Output};

use common::users;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn box_(args: &[&str]) -> Output {
    Command::new(common::bin("box"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bash_completion_loads_for_all_three_binaries() {
    let script = format!(
        "source <('{}' completion bash) && complete -p box boxbuild boxrun",
        common::bin("box").display()
    );
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    for b in ["_box box", "_boxbuild boxbuild", "_boxrun boxrun"] {
        assert!(out.contains(&format!("-F {b}\n")), "{b}: {out}");
    }
    // And it completes: `box ru<TAB>` offers run.
    let script = format!(
        "source <('{}' completion bash --bin box) && COMP_WORDS=(box ru) COMP_CWORD=1 \
         COMP_LINE='box ru' COMP_POINT=6 && _box box ru box && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        common::bin("box").display()
    );
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), "run", "{o:?}");
}

#[test]
fn zsh_and_fish_scripts_name_the_subcommands_and_not_the_hidden_ones() {
    for shell in ["zsh", "fish"] {
        let o = box_(&["completion", shell]);
        assert!(o.status.success(), "{o:?}");
        let out = stdout(&o);
        for sub in ["run", "build", "images", "pull", "ps", "info", "completion"] {
            assert!(out.contains(sub), "{shell}: no {sub}");
        }
        assert!(
            !out.contains("sandbox-run"),
            "{shell}: hidden command listed"
        );
        for b in ["box", "boxbuild", "boxrun"] {
            let one = stdout(&box_(&["completion", shell, "--bin", b]));
            assert!(!one.is_empty() && out.contains(&one), "{shell} {b}");
        }
    }
    let o = box_(&["completion", "fish", "--bin", "boxrun"]);
    assert!(stdout(&o).contains("complete -c boxrun"), "{o:?}");
    let o = box_(&["completion", "zsh", "--bin", "boxbuild"]);
    assert!(stdout(&o).starts_with("#compdef boxbuild"), "{o:?}");
}

#[test]
fn zsh_and_fish_load_the_scripts() {
    for shell in ["zsh", "fish"] {
        if !common::have_tool(shell) {
            return common::skip(&format!(
                "{shell} is not installed (scripts/install-deps.sh)"
            ));
        }
    }
    // fish: `box ima<TAB>` offers images.
    let script = format!(
        "'{}' completion fish | source; complete -C 'box ima'",
        common::bin("box").display()
    );
    let o = Command::new("fish").args(["-c", &script]).output().unwrap();
    assert!(stdout(&o).contains("images"), "{o:?}");
    // zsh: sourcing registers a completion function for each binary.
    let script = format!(
        "autoload -U compinit && compinit -u && source <('{}' completion zsh) && \
         print -r -- $_comps[box] $_comps[boxbuild] $_comps[boxrun]",
        common::bin("box").display()
    );
    let o = Command::new("zsh")
        .args(["-f", "-c", &script])
        .env("HOME", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "_box _boxbuild _boxrun", "{o:?}");
}

#[test]
fn man_pages_are_written_for_every_command_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let man_dir = dir.path().join("man1");
    let o = box_(&["man", man_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    for page in [
        "box.1",
        "box-run.1",
        "box-build.1",
        "box-images.1",
        "box-info.1",
        "box-completion.1",
        "box-system-migrate.1",
        "boxbuild.1",
        "boxrun.1",
    ] {
        assert!(man_dir.join(page).is_file(), "no {page}");
    }
    assert!(!man_dir.join("box-sandbox-run.1").exists());
    assert!(
        common::have_tool("man"),
        "man-db is needed (scripts/install-deps.sh)"
    );
    for (page, expect) in [
        ("box-run.1", "--publish"),
        ("boxbuild.1", "Build an image from a Boxfile"),
        ("box.1", "box-images(1)"),
    ] {
        let o = Command::new("man")
            .arg("-l")
            .arg(man_dir.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = stdout(&o);
        assert!(o.status.success(), "{page}: {o:?}");
        assert!(
            text.contains("NAME") && text.contains(expect),
            "{page}:\n{text}"
        );
        assert!(o.stderr.is_empty(), "{page}: groff warnings: {o:?}");
    }
}
#[test]
fn info_as_a_user_without_a_range_prints_the_usermod_fix() {
    let n = users::without_range();
    let o = users::command_as(&n, &common::bin("box"))
        .arg("info")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let fix = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("subordinate-ids"))
        .find(|l| l.contains("fix:"))
        .unwrap_or_else(|| panic!("no fix for subordinate-ids:\n{out}"));
    assert!(
        fix.contains("sudo usermod --add-subuids")
            && fix.contains("--add-subgids")
            && fix.ends_with(&n.name),
        "{fix}"
    );
    // The suggested range is free: it overlaps no one's range in either file.
    let range = fix.split_whitespace().nth(4).unwrap();
    let (a, b) = range.split_once('-').unwrap();
    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
    assert_eq!(b - a + 1, 65536, "{fix}");
    for file in ["/etc/subuid", "/etc/subgid"] {
        for l in std::fs::read_to_string(file).unwrap().lines() {
            let f: Vec<&str> = l.split(':').collect();
            let (Ok(s), Ok(c)) = (f[1].parse::<u64>(), f[2].parse::<u64>()) else {
                continue;
            };
            assert!(b < s || a >= s + c, "{fix} overlaps {file}: {l}");
        }
    }
    assert!(out.contains("\nstore: "), "{out}");
    assert!(
        out.contains("\nboxrun would use: isolation userns\n"),
        "{out}"
    );
}

#[test]
fn the_rootless_keeper_is_named_box_keeper_in_ps() {
    // A user of its own: `system migrate` below must not stop another test's keeper.
    let u = users::with_exact_range("boxkit-kname", (4_500_000, 65536));
    let as_u = |args: &[&str]| {
        users::command_as(&u, &common::bin("box"))
            .args(args)
            .output()
            .unwrap()
    };
    as_u(&["system", "migrate"]);
    // Any command that enters the tool's namespace starts the keeper; this pull fails after.
    let store = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        store.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let root = store.path().join("s");
    as_u(&["--root", root.to_str().unwrap(), "pull", "127.0.0.1:1/none"]);
    let pid = std::fs::read_to_string(format!("/tmp/boxkit-{}/keeper.pid", u.uid))
        .expect("a keeper was started")
        .trim()
        .to_string();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let words: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .collect();
    assert_eq!(
        words,
        [b"box-keeper"],
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    for field in ["comm=", "args="] {
        let o = Command::new("ps")
            .args(["-o", field, "-p", &pid])
            .output()
            .unwrap();
        assert_eq!(stdout(&o).trim(), "box-keeper", "ps -o {field}");
    }
    let o = as_u(&["system", "migrate"]);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn a_debian_pull_reports_its_device_nodes_in_one_line() {
    if !common::is_root() {
        return common::skip("the Debian fixture is made as root");
    }
    use common::fixtures::{self, Fixture};
    let reg = common::registry::Registry::start();
    fixtures::seed(&reg, &[Fixture::Debian]);
    // The layer holds 8 device nodes (/dev/null, /dev/zero, … of debootstrap's minbase).
    let tar = fixtures::debian_rootfs_tar();
    let list = Command::new("tar").arg("tvf").arg(&tar).output().unwrap();
    let devices = stdout(&list)
        .lines()
        .filter(|l| l.starts_with('c') || l.starts_with('b'))
        .count();
    assert!(devices > 1, "{devices}");
    let store = tempfile::tempdir().unwrap();
    let o = Command::new(common::bin("box"))
        .args(["--root", store.path().to_str().unwrap(), "pull"])
        .arg(reg.image(Fixture::Debian.name()))
        .env("BOX_REGISTRIES_CONF", reg.registries_conf())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("device node")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains(&format!("{devices} device node(s) not created")),
        "{err}"
    );
}

#[test]
fn info_without_user_namespaces_prints_the_sysctl_fix() {
    // As tests/info.rs does: 0 user namespaces allowed, in a private user namespace only.
    let o = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" info")
        .arg(common::bin("box"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let mut lines = out.lines().skip_while(|l| !l.contains("user-namespace "));
    assert!(lines.next().unwrap().contains(" no "), "{out}");
    let fix = lines.next().unwrap().trim();
    assert!(
        fix.starts_with("fix: sudo sysctl -w user.max_user_namespaces="),
        "{out}"
    );
    // Checks that were not tried have nothing to fix.
    let mount = out
        .lines()
        .position(|l| l.contains("mount-namespace "))
        .unwrap();
    assert!(
        !out.lines().nth(mount + 1).unwrap().contains("fix:"),
        "{out}"
    );
}

#[test]
fn info_json_carries_each_check_with_its_fix_and_the_drivers() {
    let n = users::without_range();
    let o = users::command_as(&n, &common::bin("box"))
        .args(["info", "--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    let checks = v["Checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["Name"].as_str().unwrap()).collect();
    for want in [
        "user-namespace",
        "overlay",
        "subordinate-ids",
        "cgroups",
        "seccomp",
        "pasta",
        "slirp4netns",
        "apparmor",
    ] {
        assert!(names.contains(&want), "{want}: {names:?}");
    }
    for c in checks {
        assert_eq!(c["Ok"] == true, c.get("Fix").is_none(), "{c}");
    }
    let sub = checks
        .iter()
        .find(|c| c["Name"] == "subordinate-ids")
        .unwrap();
    assert!(
        sub["Fix"]
            .as_str()
            .unwrap()
            .starts_with("sudo usermod --add-subuids ")
    );
    assert_eq!(v["Isolation"], "userns", "{v}");
    assert!(v["Network"].as_str().unwrap().contains("pasta"), "{v}");
    assert!(v["StoreRoot"].as_str().is_some(), "{v}");
}
