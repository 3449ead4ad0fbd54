//! Kaniko-style COPY of host symlinks: a context symlink never makes COPY read a host path,
//! and an image's symlink never makes COPY write one. The same for `boxbuild -o
//! type=local`, which writes an image's files on the host: its symlinks (absolute or climbing)
//! are written as links and never followed, even by a later export into the same directory,
//! and set-id bits and device nodes never reach the caller's files.

use crate::build_common::{Env, Who, stderr};
use crate::support::{
    Canary, assert_failed_with, assert_store_owners, boxrun, envs_with_registry, hostile_image,
};

fn envs() -> Vec<Env> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![Env::new(root), Env::new(Who::with_range().unwrap())]
}

fn run(env: &Env, img: &str, cmd: &str) -> String {
    let o = boxrun(env, &["--rm", "--network", "none", img, "sh", "-c", cmd]);
    assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn context_symlinks_to_host_paths_are_copied_as_links_and_never_read() {
    for env in envs() {
        let canary = Canary::plant_for(&env.who);
        env.write("keep", "k\n");
        std::os::unix::fs::symlink(&canary.dir, env.ctx().join("dirlink")).unwrap();
        std::os::unix::fs::symlink(&canary.file, env.ctx().join("filelink")).unwrap();
        // Through a symlinked directory: resolved inside the context, where it is missing.
        env.boxfile("FROM busybox\nCOPY dirlink/file /stolen\n");
        assert_failed_with(&env.build(&["-t", "steal"]), &["dirlink/file", "not found"]);
        // The whole context: the links themselves are copied.
        env.boxfile("FROM busybox\nCOPY . /app/\n");
        let o = env.build(&["-t", "links"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = run(
            &env,
            "links",
            "readlink /app/filelink; readlink /app/dirlink; cat /app/filelink 2>&1; true",
        );
        assert!(out.contains(&canary.file.display().to_string()), "{out}");
        assert!(
            !out.lines().any(|l| l == "canary"),
            "host content reached the image: {out}"
        );
        canary.assert_untouched();
        assert_store_owners(&env);
    }
}

#[test]
fn an_image_symlink_to_a_host_path_is_written_through_inside_the_image() {
    for env in envs() {
        let canary = Canary::plant_for(&env.who);
        env.write("f", "from-context\n");
        env.boxfile(&format!(
            "FROM busybox\nRUN ln -s {dir} /app\nCOPY f /app/\nCOPY f /app/file\n",
            dir = canary.dir.display()
        ));
        let o = env.build(&["-t", "through"]);
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        canary.assert_untouched();
        // Inside the image: where the link points there, or at /app made a directory (the
        // link dangles in the image); never on the host.
        let out = run(&env, "through", "cat /app/f /app/file");
        assert_eq!(out, "from-context\nfrom-context\n");
    }
}

#[test]
fn copy_from_a_stage_resolves_its_symlinks_in_that_stage() {
    for env in envs() {
        let canary = Canary::plant_for(&env.who);
        env.boxfile(&format!(
            "FROM busybox AS s\nRUN ln -s {file} /x && mkdir -p {dir} && echo stage > {file}\n\
             FROM busybox\nCOPY --from=s /x /y\n",
            file = canary.file.display(),
            dir = canary.dir.display()
        ));
        let o = env.build(&["-t", "fromstage"]);
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        // /y is the link or the stage's own file, never the host's canary content.
        let out = run(&env, "fromstage", "cat /y 2>/dev/null; readlink /y; true");
        assert!(
            !out.lines().any(|l| l == "canary"),
            "host content reached the image: {out}"
        );
        canary.assert_untouched();
    }
}

#[test]
fn a_local_export_never_writes_through_the_images_symlinks_or_gives_setid_files() {
    use serde_json::json;
    use std::os::unix::fs::MetadataExt;
    for env in envs_with_registry() {
        let l = env.who.label();
        let canary = Canary::plant_for(&env.who);
        let dir = canary.dir.display().to_string();
        let climb = format!("../../../../../../../..{dir}");
        let links = hostile_image(
            &env,
            "x-export-links",
            json!({"base": null, "layers": [[
                {"name": "abs", "type": "symlink", "link": dir},
                {"name": "rel", "type": "symlink", "link": climb},
                {"name": "file", "type": "symlink", "link": canary.file.display().to_string()},
                {"name": "suid", "type": "file", "mode": 0o6755, "data": "x"},
                {"name": "evil", "type": "char", "major": 1, "minor": 1},
            ]]}),
        );
        let through = hostile_image(
            &env,
            "x-export-through",
            json!({"base": null, "layers": [[
                {"name": "abs", "type": "dir"}, {"name": "abs/pwned", "type": "file", "data": "p"},
                {"name": "rel", "type": "dir"}, {"name": "rel/pwned", "type": "file", "data": "p"},
                {"name": "file", "type": "file", "data": "overwritten"},
            ]]}),
        );
        let out = env.dir.path().join("out");
        for img in [&links, &through, &links] {
            env.boxfile(&format!("FROM {img}\n"));
            let o = env.build(&["-o", &format!("type=local,dest={}", out.display())]);
            assert!(o.status.success(), "{l}: {img}: {}", stderr(&o));
            canary.assert_untouched();
        }
        // What the last export left: the links as links, pointing where the image said.
        assert_eq!(std::fs::read_link(out.join("abs")).unwrap(), canary.dir);
        let suid = std::fs::symlink_metadata(out.join("suid")).unwrap();
        assert_eq!(
            suid.mode() & 0o7777,
            0o755,
            "{l}: set-id bits reached the host"
        );
        let caller = match &env.who {
            Who::Root => 0,
            Who::User(u) => u.uid,
        };
        assert_eq!(suid.uid(), caller, "{l}: not the caller's");
        assert!(
            !out.join("evil").exists(),
            "{l}: a device node was exported"
        );
        canary.assert_untouched();
    }
}
