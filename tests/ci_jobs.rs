//! Issue 13's test matrix: `boxbuild` inside CI job containers (real podman, as root on the
//! test machine; the job root made by `tests/common/jobs.rs`, no image tooling of ours),
//! building, caching and pushing with no flags and no setup, and giving the image a native
//! build on the host gives.
//!
//! Per cell (E1 uid 1000 with default caps and seccomp, E2 root without a subordinate range,
//! E2d root under docker's seccomp profile (no user namespaces), E3 Kubernetes `restricted`,
//! E4 E1 with /dev/fuse):
//! 1. `boxbuild -t REG/x:CELL --push --cache-to REG/x:CELL-cache .` in the job, with
//!    `SOURCE_DATE_EPOCH=0`; the one mode line on stderr must name the modes the table
//!    [`EXPECTED_MODES`] gives for the cell;
//! 2. the same in a second job with a fresh store and `--cache-from`: every step `CACHED`,
//!    the same image ID;
//! 3. on the host: `podman run` of the pushed image prints what the Boxfile made, and its
//!    image ID (config digest) and manifest digest equal those of a native `boxbuild --push`
//!    of the same Boxfile and context on the host.
//!
//! The Boxfile covers what differs between isolation and snapshot backends: COPY, RUN, a RUN
//! that chowns, `COPY --chown`, a RUN that deletes a base file (whiteout), an opaque
//! directory (`rm -rf` + `mkdir` over a base directory), and a multi-stage `COPY --from`.
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::jobs::{Cell, Job, JobRoot};
use common::podman::Podman;
use common::registry::Registry;
use common::users;

/// The one line each build prints naming the modes it chose, per cell: what the probe finds
/// there (see `box info` in each cell, `tests/info.rs`) and the order of issue 13 (strongest
/// first).
const EXPECTED_MODES: [(Cell, &str); 5] = [
    // uid 1000, default caps and seccomp: user, mount and net namespaces and tmpfs work;
    // sethostname is refused (the runtime's seccomp, no CAP_SYS_ADMIN) and a new /proc is
    // refused (masked /proc); the store is on the container's overlayfs root, which overlay
    // refuses as an upper dir.
    (
        Cell::E1,
        "boxbuild: isolation userns (no uts namespace, /proc bound read-only), snapshotter overlay (upper on tmpfs)",
    ),
    // root without CAP_SYS_ADMIN and without a subordinate range: a user namespace mapping
    // container root only, otherwise as E1 (the store on the overlayfs root).
    (
        Cell::E2,
        "boxbuild: isolation userns (no uts namespace, /proc bound read-only), snapshotter overlay (upper on tmpfs)",
    ),
    // docker's profile refuses unshare/clone of namespaces without CAP_SYS_ADMIN: no mount
    // namespace, so chroot (CAP_SYS_CHROOT is in the default set) and the copy backend.
    (Cell::E2d, "boxbuild: isolation chroot, snapshotter copy"),
    // restricted: no capabilities, but a user namespace needs none; the store is in HOME, a
    // volume on the host's ext4, where native overlay works.
    (
        Cell::E3,
        "boxbuild: isolation userns (no uts namespace, /proc bound read-only), snapshotter overlay",
    ),
    // /dev/fuse present, but overlay with its upper on tmpfs ranks above fuse-overlayfs.
    (
        Cell::E4,
        "boxbuild: isolation userns (no uts namespace, /proc bound read-only), snapshotter overlay (upper on tmpfs)",
    ),
];

fn expected_modes(cell: Cell) -> &'static str {
    EXPECTED_MODES.iter().find(|(c, _)| *c == cell).unwrap().1
}

const BOXFILE: &str = r#"# Stage 1: a RUN that chowns what it makes.
FROM busybox AS builder
RUN mkdir -p /out && echo artifact-from-builder > /out/artifact && chown 1000:1000 /out/artifact

# Stage 2 on a two-layer base (layered: /etc/added.txt, /data/new.txt in its top layer).
FROM layered
COPY hello.txt /app/hello.txt
COPY --chown=1000:1000 owned.txt /app/owned.txt
RUN echo ran-in-job > /app/ran.txt && mkdir /app/data && chown -R 1000:1000 /app/ran.txt /app/data
# Deletes a base file: a whiteout.
RUN rm /etc/added.txt
# Replaces a base directory: an opaque directory.
RUN rm -rf /data && mkdir /data && echo fresh > /data/fresh.txt
COPY --from=builder /out/artifact /app/artifact
CMD ["sh", "-c", "cat /app/hello.txt /app/owned.txt /app/ran.txt /app/artifact; ls -a /data; test -e /etc/added.txt && echo added.txt-present || echo added.txt-gone; stat -c '%n %u:%g' /app/owned.txt /app/ran.txt /app/data"]
"#;

/// What the image's CMD prints.
const EXPECTED_OUTPUT: &str = "hello from the context\n\
owned by 1000\n\
ran-in-job\n\
artifact-from-builder\n\
.\n..\nfresh.txt\n\
added.txt-gone\n\
/app/owned.txt 1000:1000\n\
/app/ran.txt 1000:1000\n\
/app/data 1000:1000\n";

/// The build steps of [`BOXFILE`] that make layers (RUN, COPY): all must be `CACHED` in a
/// fresh store that imported the registry cache.
const CACHEABLE_STEPS: usize = 7;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(what: &str, o: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// The build context: the Boxfile and the two files it copies, root-owned and world-readable
/// (the job bind-mounts it read-only, as a CI checkout is).
fn write_context(dir: &Path) {
    std::fs::write(dir.join("Boxfile"), BOXFILE).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from the context\n").unwrap();
    std::fs::write(dir.join("owned.txt"), "owned by 1000\n").unwrap();
}

/// The image ID (`sha256:…` on stdout) of a successful build.
fn image_id(o: &Output) -> String {
    let out = text(&o.stdout);
    let id = out.trim().lines().last().unwrap_or("").to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "no image ID on stdout: {out:?}"
    );
    id
}

/// Lines of stderr that name the chosen modes (the one line each build prints).
fn mode_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("boxbuild: isolation "))
        .collect()
}

/// (manifest digest, config digest) of `repo:tag` in the registry, read with our own HTTP
/// client, not boxkit's.
fn pushed_digests(reg: &Registry, repo: &str, tag: &str) -> (String, String) {
    let r = reg.get(&format!("/v2/{repo}/manifests/{tag}"));
    assert_eq!(r.status, 200, "{repo}:{tag} is not in the registry");
    let manifest = r
        .header("docker-content-digest")
        .expect("Docker-Content-Digest")
        .to_string();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let config = v["config"]["digest"].as_str().unwrap().to_string();
    (manifest, config)
}

/// A native build of `ctx` on the host, as root with root's subordinate range (the way
/// `tests/build_*` build), pushed as `REG/x:native`; returns the image ID.
fn native_build(reg: &Registry, ctx: &Path, scratch: &Path) -> String {
    users::ensure_root_range();
    let reference = reg.image("x:native");
    let o = Command::new(common::bin("boxbuild"))
        .env("BOX_REGISTRIES_CONF", reg.registries_conf())
        .env("SOURCE_DATE_EPOCH", "0")
        .arg("--root")
        .arg(scratch.join("native-store"))
        .args(["-t", &reference, "--push"])
        .arg(ctx)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe("native boxbuild", &o));
    image_id(&o)
}

/// `podman run` the pushed image on the host; returns (stdout, podman's image ID).
fn podman_run(pm: &Podman, reg: &Registry, reference: &str) -> (String, String) {
    let o = pm
        .cmd()
        .env("CONTAINERS_REGISTRIES_CONF", reg.registries_conf())
        .args(["run", "--rm", "--network", "none", reference])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe("podman run", &o));
    let inspect = pm
        .cmd()
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        describe("podman image inspect", &inspect)
    );
    (text(&o.stdout), text(&inspect.stdout).trim().to_string())
}

/// Where the two builds of [`pipeline`] run: `run(n, args)` runs `boxbuild ARGS…` in the
/// context with `SOURCE_DATE_EPOCH=0` and a store that is fresh for each `n`.
struct Builder<'a> {
    tag: &'a str,
    /// The mode line expected on stderr (None: not checked).
    modes: Option<&'a str>,
    warns_not_isolated: bool,
    run: &'a dyn Fn(usize, &[&str]) -> Output,
}

/// Everything a cell must do; see the module comment.
fn pipeline(pm: &Podman, reg: &Registry, ctx: &Path, scratch: &Path, b: &Builder) {
    let tag = b.tag;
    let image = reg.image(&format!("x:{tag}"));
    let cache = reg.image(&format!("x:{tag}-cache"));

    // 1. Build and push, exporting the cache.
    let first = (b.run)(1, &["-t", &image, "--push", "--cache-to", &cache, "."]);
    let what = format!("{tag}: boxbuild --push --cache-to");
    assert!(first.status.success(), "{}", describe(&what, &first));
    let err = text(&first.stderr);
    if let Some(modes) = b.modes {
        assert_eq!(mode_lines(&err), [modes], "{tag}: the mode line\n{err}");
    }
    // The least-isolated modes print one warning naming the mode and what it leaves out;
    // the others none.
    let warnings = err
        .lines()
        .filter(|l| l.starts_with("warning: isolation "))
        .count();
    let want = usize::from(b.warns_not_isolated);
    assert_eq!(
        warnings, want,
        "{tag}: {want} warning(s) about what is not isolated expected:\n{err}"
    );
    let id = image_id(&first);

    // 2. A fresh store (a new job: a new overlay upper, or a new HOME volume) that imports the
    //    cache: nothing runs, the same image comes out.
    let second = (b.run)(2, &["-t", &image, "--cache-from", &cache, "."]);
    let what = format!("{tag}: boxbuild --cache-from with a fresh store");
    assert!(second.status.success(), "{}", describe(&what, &second));
    let err2 = text(&second.stderr);
    let cached = err2.lines().filter(|l| l.contains(" CACHED ")).count();
    assert_eq!(
        cached, CACHEABLE_STEPS,
        "{tag}: every RUN/COPY step must be a cache hit after --cache-from:\n{err2}"
    );
    assert!(
        err2.contains("(0 steps run"),
        "{tag}: nothing may run:\n{err2}"
    );
    assert_eq!(
        image_id(&second),
        id,
        "{tag}: cached rebuild changed the ID"
    );

    // 3. On the host: the pushed image is what a native build gives, and it runs.
    let (manifest, config) = pushed_digests(reg, "x", tag);
    assert_eq!(
        config, id,
        "{tag}: pushed config digest vs printed image ID"
    );
    let native = native_build(reg, ctx, scratch);
    let (native_manifest, native_config) = pushed_digests(reg, "x", "native");
    assert_eq!(native_config, native);
    assert_eq!(
        id, native,
        "{tag}: the image ID differs from the native build's"
    );
    assert_eq!(
        manifest, native_manifest,
        "{tag}: the manifest digest differs from the native build's"
    );
    let (out, podman_id) = podman_run(pm, reg, &image);
    assert_eq!(
        out, EXPECTED_OUTPUT,
        "{tag}: podman run of the pushed image"
    );
    assert_eq!(
        format!("sha256:{podman_id}"),
        id,
        "{tag}: podman's image ID"
    );
}

/// A registry holding the fixtures, and podman; None after a skip.
fn setup() -> Option<(Podman, Registry)> {
    let pm = Podman::new_or_skip()?;
    let reg = Registry::start_or_skip()?;
    common::fixtures::seed(&reg, common::fixtures::Fixture::SMALL);
    Some((pm, reg))
}

/// [`pipeline`] with both builds in job containers of `cell`.
fn cell_builds_pushes_caches_and_matches_native(cell: Cell) {
    let Some((pm, reg)) = setup() else {
        return;
    };
    let root = JobRoot::for_cell(&reg, cell);
    let ctx = root.scratch("ctx");
    write_context(&ctx);
    let run = |n: usize, args: &[&str]| {
        let mut j = Job::new(&pm, &root, cell)
            .context(&ctx)
            .env("SOURCE_DATE_EPOCH", "0");
        if cell.read_only() {
            j = j.home(&root.home_volume(&format!("home-{n}")));
        }
        let mut argv = vec!["boxbuild"];
        argv.extend(args);
        j.run(&argv)
    };
    let b = Builder {
        tag: cell.tag(),
        modes: Some(expected_modes(cell)),
        warns_not_isolated: cell == Cell::E2d,
        run: &run,
    };
    pipeline(&pm, &reg, &ctx, &root.scratch("native"), &b);
}

/// The control: the same pipeline with both builds on the host (as root, a fresh store each),
/// so a failure in a cell is the cell's, not the Boxfile's or the harness's.
#[test]
fn control_on_the_host_the_pipeline_passes() {
    let Some((pm, reg)) = setup() else {
        return;
    };
    users::ensure_root_range();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    write_context(&ctx);
    let run = |n: usize, args: &[&str]| {
        Command::new(common::bin("boxbuild"))
            .env("BOX_REGISTRIES_CONF", reg.registries_conf())
            .env("SOURCE_DATE_EPOCH", "0")
            .arg("--root")
            .arg(dir.path().join(format!("store-{n}")))
            .args(args)
            .current_dir(&ctx)
            .output()
            .unwrap()
    };
    let b = Builder {
        tag: "host",
        modes: None,
        warns_not_isolated: false,
        run: &run,
    };
    pipeline(&pm, &reg, &ctx, dir.path(), &b);
}

#[test]
fn e1_uid_1000_default_caps_builds_pushes_caches_and_matches_native() {
    cell_builds_pushes_caches_and_matches_native(Cell::E1);
}

#[test]
fn e2_root_without_subordinate_range_builds_pushes_caches_and_matches_native() {
    cell_builds_pushes_caches_and_matches_native(Cell::E2);
}

#[test]
fn e2d_root_under_docker_seccomp_gets_least_isolated_mode_and_matches_native() {
    cell_builds_pushes_caches_and_matches_native(Cell::E2d);
}

#[test]
fn e3_kubernetes_restricted_builds_pushes_caches_and_matches_native() {
    cell_builds_pushes_caches_and_matches_native(Cell::E3);
}

#[test]
fn e4_with_dev_fuse_builds_pushes_caches_and_matches_native() {
    cell_builds_pushes_caches_and_matches_native(Cell::E4);
}

/// `box info` must run in every cell (the probe itself may never fail, whatever the runtime
/// takes away) and report the facts each cell's runtime settings make.
#[test]
fn box_info_reports_each_cells_limits() {
    let Some(pm) = Podman::new_or_skip() else {
        return;
    };
    let Some(reg) = Registry::start_or_skip() else {
        return;
    };
    for cell in Cell::ALL {
        let root = JobRoot::for_cell(&reg, cell);
        let mut job = Job::new(&pm, &root, cell);
        if cell.read_only() {
            job = job.home(&root.home_volume("home"));
        }
        let o = job.run(&["box", "info"]);
        let what = format!("{}: box info", cell.tag());
        assert!(o.status.success(), "{}", describe(&what, &o));
        let out = text(&o.stdout);
        eprintln!("--- {} ---\n{out}", cell.tag());
        let state = |name: &str| {
            out.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or_else(|| panic!("{what}: no {name} line:\n{out}"))
                .to_string()
        };
        let userns = if cell == Cell::E2d { "no" } else { "yes" };
        assert_eq!(state("user-namespace"), userns, "{what}:\n{out}");
        assert_eq!(state("uts-namespace"), "no", "{what}:\n{out}");
        assert_eq!(state("pid-namespace-proc"), "no", "{what}:\n{out}");
        let fuse = if cell == Cell::E4 { "yes" } else { "no" };
        assert_eq!(state("fuse-overlayfs"), fuse, "{what}:\n{out}");
        // No /etc/subuid anywhere; root in the job maps the job's own ids 0-65535 (it has
        // CAP_SETUID there), the job user only itself.
        let subids = if cell.is_root() { "yes" } else { "no" };
        assert_eq!(state("subordinate-ids"), subids, "{what}:\n{out}");
        if cell.is_root() {
            assert!(out.contains("the job's own ids 0-65535"), "{what}:\n{out}");
        }
    }
}

/// Forced backends in a job: each `--isolation`/`--snapshotter` choice the cell allows must
/// be the one the mode line names, and give the native build's image ID. `home_store`: the
/// store on a HOME volume instead of the job's overlayfs root (fuse-overlayfs cannot read the
/// whiteouts of layers unpacked on overlayfs, and boxbuild refuses it there).
fn forced_backends_give_the_native_image_id(
    cell: Cell,
    home_store: bool,
    choices: &[(&[&str], &str)],
) {
    let Some((pm, reg)) = setup() else {
        return;
    };
    let root = JobRoot::for_cell(&reg, cell);
    let ctx = root.scratch("ctx");
    write_context(&ctx);
    let native = native_build(&reg, &ctx, &root.scratch("native"));
    for (flags, named) in choices {
        let mut argv = vec!["boxbuild"];
        argv.extend(*flags);
        argv.extend(["-t", "forced", "."]);
        let mut job = Job::new(&pm, &root, cell)
            .context(&ctx)
            .env("SOURCE_DATE_EPOCH", "0");
        if home_store || cell.read_only() {
            job = job.home(&root.home_volume(&format!("home-{}", flags.join("-"))));
        }
        let o = job.run(&argv);
        let what = format!("{}: {}", cell.tag(), argv.join(" "));
        assert!(o.status.success(), "{}", describe(&what, &o));
        let err = text(&o.stderr);
        let lines = mode_lines(&err);
        assert!(
            lines.len() == 1 && lines[0].contains(named),
            "{what}: the mode line must name {named:?}:\n{err}"
        );
        assert_eq!(image_id(&o), native, "{what}: image ID vs the native build");
    }
}

#[test]
fn e4_every_snapshotter_forced_with_the_store_on_a_volume_gives_the_native_image_id() {
    forced_backends_give_the_native_image_id(
        Cell::E4,
        true,
        &[
            (&["--snapshotter", "overlay"], "snapshotter overlay"),
            (&["--snapshotter", "fuse"], "snapshotter fuse"),
            (&["--snapshotter", "copy"], "snapshotter copy"),
        ],
    );
}

#[test]
fn e2_every_isolation_forced_gives_the_native_image_id() {
    forced_backends_give_the_native_image_id(
        Cell::E2,
        false,
        &[
            (&["--isolation", "userns"], "isolation userns"),
            (&["--isolation", "chroot"], "isolation chroot"),
            (&["--isolation", "none"], "isolation none"),
            (
                &["--isolation", "chroot", "--snapshotter", "copy"],
                "isolation chroot, snapshotter copy",
            ),
        ],
    );
}
