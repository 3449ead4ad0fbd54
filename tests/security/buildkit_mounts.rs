//! BuildKit CVE-2024-23651 (a cache mount whose content steers another mount's target) and
//! CVE-2024-23652 (the cleanup after `RUN --mount` removing host paths).
//!
//! A RUN step's command controls its whole root filesystem, cache mounts included, and so
//! what a later mount target or the stub cleanup walks through. Both must stay inside the
//! container's root and the step's upper directory. The same holds for the agent socket
//! `RUN --mount=type=ssh` binds into a step: its target resolves inside the root, and it
//! never lands in the layer.

use crate::build_common::{Env, Who, stderr};
use crate::support::Canary;

fn envs() -> Vec<Env> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![Env::new(root), Env::new(Who::with_range().unwrap())]
}

/// CVE-2024-23652: the sandbox creates mount points that the image lacks and removes them
/// from the layer afterwards. The step moves a stub's parent away and puts a symlink to a
/// host directory in its place; the cleanup must not follow it.
#[test]
fn stub_cleanup_never_follows_a_symlink_the_step_planted() {
    for env in envs() {
        let canary = Canary::plant_for(&env.who);
        for p in ["b/c", "b/e"] {
            let d = canary.dir.join(p);
            std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        }
        std::fs::create_dir(canary.dir.join("b/c")).unwrap();
        std::fs::write(canary.dir.join("b/e"), "").unwrap();
        if let Who::User(u) = &env.who {
            let _ = std::process::Command::new("chown")
                .args(["-R", &format!("{}:{}", u.uid, u.gid)])
                .arg(&canary.dir)
                .status();
        }
        let fresh = Canary::plant_for(&env.who); // the snapshot below covers `canary` by hand
        env.write("f", "file\n");
        env.boxfile(&format!(
            "FROM busybox\n\
             RUN --mount=type=bind,target=/a/b/c --mount=type=bind,source=f,target=/a/b/e \\\n\
                 mv /a /a2 && ln -s {} /a\n",
            canary.dir.display()
        ));
        let o = env.build(&["-t", "stubs"]);
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        assert!(canary.dir.join("b/c").is_dir(), "host directory removed");
        assert!(canary.dir.join("b/e").is_file(), "host file removed");
        fresh.assert_untouched();
    }
}

/// CVE-2024-23651: one step leaves a symlink to a host directory in a shared cache mount; a
/// later step mounts something below it. The mount target must resolve inside the container
/// root (creating the directory there), never on the host.
#[test]
fn a_mount_target_below_a_cache_symlink_stays_inside_the_container() {
    for env in envs() {
        let canary = Canary::plant_for(&env.who);
        env.boxfile(&format!(
            "FROM busybox\n\
             RUN --mount=type=cache,id=shared,target=/cache ln -sfn {dir} /cache/link\n\
             RUN --mount=type=cache,id=shared,target=/cache \\\n\
                 --mount=type=tmpfs,target=/cache/link/sub \\\n\
                 touch /cache/link/sub/written\n",
            dir = canary.dir.display()
        ));
        let o = env.build(&["-t", "cachelink"]);
        // Building or failing cleanly are both acceptable; touching the host is not.
        let _ = stderr(&o);
        canary.assert_untouched();
        assert!(
            !canary.dir.join("sub").exists(),
            "{}: mount point made on the host",
            env.who.label()
        );
    }
}

/// `RUN --mount=type=ssh`: the relay socket the build binds into the step is never part of
/// its layer, whatever the step does with it (hard link, copy, move).
#[test]
fn the_ssh_agent_socket_never_survives_into_the_layer() {
    for env in envs() {
        let l = env.who.label();
        let agent = crate::build_common::SshAgent::start(&env);
        env.boxfile(
            "FROM busybox\n\
             RUN --mount=type=ssh,target=/agent.sock test -S /agent.sock \
              && { ln /agent.sock /hard; cp -a /agent.sock /copied; mv /agent.sock /moved; \
                   mkdir -p /run/buildkit; true; }\n",
        );
        let tar = env.dir.path().join("fs.tar");
        let sock = agent.socket.to_str().unwrap();
        let o = env.build_env(
            &[
                "--ssh",
                "default",
                "-o",
                &format!("type=tar,dest={}", tar.display()),
            ],
            &[("SSH_AUTH_SOCK", sock)],
        );
        assert!(o.status.success(), "{l}: {}", stderr(&o));
        let list = std::process::Command::new("tar")
            .args(["-tvf"])
            .arg(&tar)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout).into_owned();
        for name in ["agent.sock", "hard", "moved"] {
            assert!(
                !list.lines().any(|x| x.ends_with(&format!(" {name}"))),
                "{l}: {name} is in the layer:\n{list}"
            );
        }
        // Whatever `cp -a` made of it is not a socket (a tar cannot hold one anyway).
        assert!(!list.lines().any(|x| x.starts_with('s')), "{l}: {list}");
    }
}

/// `RUN --mount=type=ssh,target=…` resolves its target inside the container's root: through
/// a symlink to a host directory the step planted, or with `..`, the socket is bound inside
/// the root, never on the host.
#[test]
fn an_ssh_mount_target_never_leaves_the_root() {
    for env in envs() {
        let l = env.who.label();
        let canary = Canary::plant_for(&env.who);
        let agent = crate::build_common::SshAgent::start(&env);
        let dir = canary.dir.display();
        env.boxfile(&format!(
            "FROM busybox\nRUN ln -s {dir} /evil\n\
             RUN --mount=type=ssh,target=/evil/agent.sock test -S /evil/agent.sock\n\
             RUN --mount=type=ssh,target=../../../../../..{dir}/up.sock \
                 test -S {dir}/up.sock\n"
        ));
        let sock = agent.socket.to_str().unwrap();
        let o = env.build_env(
            &["--ssh", "default", "-t", "sshevil"],
            &[("SSH_AUTH_SOCK", sock)],
        );
        assert!(o.status.success(), "{l}: {}", stderr(&o));
        canary.assert_untouched();
    }
}
