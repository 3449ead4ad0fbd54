//! Which runs go alone: the command-line prescan that tells, before any parse, whether a
//! foreground `boxrun` / `box run` needs nothing of the host side (see
//! `run::userns::enter_if_needed`'s `alone`).

use super::box_subcommand_at;

/// Whether a `boxrun` / `box run` command line can run with no host agent
/// (`run::userns::enter_if_needed`'s `alone`): `--network none`, and every other option before
/// the image one that the agent has no part in. Conservative: an option not listed here
/// (limits, ports, `--cidfile`, `--restart`, devices, a TTY, `--userns`, …) or anything it
/// cannot tell keeps the agent, which handles every run.
pub(super) fn runs_alone(prog: &str, args: &[String]) -> bool {
    let rest = match prog {
        "boxrun" => args.get(1..).unwrap_or_default(),
        "box" => match box_subcommand_at(args) {
            Some(at) if args[at] == "run" => &args[at + 1..],
            _ => return false,
        },
        _ => return false,
    };
    if std::env::var("BOX_USERNS").is_ok_and(|v| v == "host") {
        return false;
    }
    // Flags without a value, and options that take one (the value may follow as
    // `--opt=value`, or as the next argument).
    const FLAGS: [&str; 3] = ["--rm", "--interactive", "--read-only"];
    const VALUED: [&str; 11] = [
        "--root",
        "--name",
        "--env",
        "--workdir",
        "--user",
        "--entrypoint",
        "--hostname",
        "--label",
        "--pull",
        "--network",
        "--platform",
    ];
    let mut network_none = false;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if !a.starts_with('-') {
            // The image: what follows is the container's command.
            return network_none;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (a.as_str(), None),
        };
        let valued = match name {
            n if FLAGS.contains(&n) => false,
            n if VALUED.contains(&n) => true,
            // Short flags: `-i`, `--rm`'s companions; `-e`, `-w`, `-u`, `-h`, `-l` alone.
            "-i" => false,
            "-e" | "-w" | "-u" | "-h" | "-l" => true,
            _ => return false,
        };
        if !valued {
            if inline.is_some() {
                return false;
            }
            continue;
        }
        let Some(value) = inline.or_else(|| it.next().map(String::as_str)) else {
            return false;
        };
        if name == "--network" {
            network_none = value == "none";
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_that_need_nothing_of_the_host_side_go_alone() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let alone = |p: &str, a: &[&str]| runs_alone(p, &v(a));
        assert!(alone(
            "boxrun",
            &["boxrun", "--rm", "--network", "none", "busybox", "true"]
        ));
        assert!(alone(
            "boxrun",
            &["boxrun", "--network=none", "-i", "busybox"]
        ));
        assert!(alone(
            "boxrun",
            &[
                "boxrun",
                "--root",
                "/s",
                "-e",
                "A=1",
                "--env=B=2",
                "-w",
                "/",
                "-u",
                "1:1",
                "--name",
                "n",
                "-h",
                "h",
                "--read-only",
                "--network",
                "none",
                "img",
                "-m",
                "1g"
            ]
        ));
        assert!(alone(
            "box",
            &[
                "box",
                "--root",
                "run",
                "run",
                "--network",
                "none",
                "busybox"
            ]
        ));
        // The default network is the bridge; the host's needs nothing of the agent but is
        // left to it too.
        assert!(!alone("boxrun", &["boxrun", "--rm", "busybox", "true"]));
        assert!(!alone(
            "boxrun",
            &["boxrun", "--network", "host", "busybox"]
        ));
        assert!(!alone(
            "boxrun",
            &["boxrun", "--network", "none", "--network", "bridge", "b"]
        ));
        // Anything the agent does, or that this scan does not know, keeps the agent.
        for flag in [
            &["-m", "32m"][..],
            &["--memory=32m"],
            &["--pids-limit", "5"],
            &["--cpus", "1"],
            &["--cidfile", "/tmp/c"],
            &["-p", "80"],
            &["-P"],
            &["--restart", "always"],
            &["--userns", "host"],
            &["-d"],
            &["-it"],
            &["-t"],
            &["--device", "/dev/fuse"],
            &["-v", "/a:/b"],
            &["--rm=true"],
            &["--"],
        ] {
            let mut a = vec!["boxrun", "--network", "none"];
            a.extend_from_slice(flag);
            a.extend_from_slice(&["busybox", "true"]);
            assert!(!alone("boxrun", &a), "{a:?}");
        }
        assert!(!alone(
            "box",
            &["box", "sandbox-run", "--network", "none", "x"]
        ));
        assert!(!alone("box", &["box", "start", "-ai", "c"]));
        assert!(!alone("boxbuild", &["boxbuild", "."]));
    }
}
