//! The plan: the ordered steps that build the container's root, computed without touching
//! the kernel, and [`apply`], which runs them through a [`Kernel`].

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::{
    ATTR_NODEV, ATTR_NOEXEC, ATTR_NOSUID, ATTR_RDONLY, Attrs, BindSource, DEV_SYMLINKS, DEVICES,
    Kernel, Kind, Layout, MASKED, NOSUID_NODEV_NOEXEC, Op, READ_ONLY, Result, Target,
    thermal_throttle_paths,
};
use crate::run::spec::MountSpec;

/// The ordered steps that build the container's root (attached at `<scratch>/root`).
pub fn plan(l: &Layout) -> Vec<Op> {
    let mut ops = vec![Op::MakePrivate, Op::Scratch(l.scratch.to_path_buf())];
    for (name, text) in [
        ("hostname", format!("{}\n", l.hostname)),
        ("hosts", l.hosts.to_string()),
        ("resolv.conf", l.resolv_conf.to_string()),
    ] {
        ops.push(Op::WriteScratch {
            name,
            contents: text,
        });
    }
    ops.push(Op::AttachRoot(l.prepared.root.as_raw_fd()));
    proc_and_sys(&mut ops, l.new_proc);
    match l.prepared.dev_from {
        // Built ahead (run::prestart): received and attached on the image's /dev.
        Some(sock) => {
            ops.push(dir(fixed("/dev")));
            ops.push(Op::DevAhead {
                sock,
                shm_size: l.shm_size,
            });
        }
        None => dev(&mut ops, l.shm_size),
    }
    for name in ["hostname", "hosts", "resolv.conf"] {
        let target = Target::in_root(format!("/etc/{name}"));
        ops.push(Op::MountPoint {
            target: target.clone(),
            dir: false,
            optional: true,
        });
        ops.push(Op::BindScratch { name, target });
    }
    user_mounts(l, &mut ops);
    for p in MASKED
        .iter()
        .map(|p| p.to_string())
        .chain(thermal_throttle_paths().iter().cloned())
    {
        ops.push(Op::Mask(Target::in_root(p)));
    }
    for p in READ_ONLY {
        ops.push(Op::ReadOnlyPath(Target::in_root(p)));
    }
    ops.push(Op::PivotRoot);
    if l.read_only {
        ops.push(Op::ReadOnlyRoot);
    }
    ops
}

fn fixed(p: impl Into<PathBuf>) -> Target {
    Target::fixed(p)
}

/// A directory mount point that must exist.
fn dir(t: Target) -> Op {
    Op::MountPoint {
        target: t,
        dir: true,
        optional: false,
    }
}

/// /proc and a read-only /sys.
fn proc_and_sys(ops: &mut Vec<Op>, new_proc: bool) {
    ops.push(dir(fixed("/proc")));
    if new_proc {
        ops.push(Op::Mount {
            fstype: "proc",
            source: "proc",
            target: fixed("/proc"),
            flags: NOSUID_NODEV_NOEXEC,
            data: None,
        });
    } else {
        ops.push(Op::BindHost {
            source: PathBuf::from("/proc"),
            target: fixed("/proc"),
            attrs: Attrs {
                set: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
                recursive: true,
            },
        });
    }
    ops.push(dir(fixed("/sys")));
    ops.push(Op::Sysfs(fixed("/sys")));
}

/// A minimal /dev: a tmpfs with the host's harmless device nodes bound in, devpts, shm,
/// mqueue and the usual symlinks.
fn dev(ops: &mut Vec<Op>, shm_size: Option<u64>) {
    ops.push(dir(fixed("/dev")));
    // nodev: the device nodes below are bind mounts of their own, which keep device access.
    ops.push(Op::Mount {
        fstype: "tmpfs",
        source: "tmpfs",
        target: fixed("/dev"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        data: Some("mode=755,size=65536k".into()),
    });
    for d in DEVICES {
        let t = fixed(format!("/dev/{d}"));
        ops.push(Op::MountPoint {
            target: t.clone(),
            dir: false,
            optional: false,
        });
        ops.push(Op::BindHost {
            source: Path::new("/dev").join(d),
            target: t,
            attrs: Attrs {
                set: ATTR_NOSUID | ATTR_NOEXEC,
                recursive: false,
            },
        });
    }
    ops.push(dir(fixed("/dev/pts")));
    ops.push(Op::Mount {
        fstype: "devpts",
        source: "devpts",
        target: fixed("/dev/pts"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: Some("newinstance,ptmxmode=0666,mode=0620".into()),
    });
    // ptmx first, beside devpts; the others once /dev is complete.
    let (ptmx, links) = DEV_SYMLINKS.split_at(1);
    let symlink = |(l, t): &(&'static str, &'static str)| Op::Symlink {
        target: t,
        link: fixed(format!("/dev/{l}")),
    };
    ops.extend(ptmx.iter().map(symlink));
    ops.push(dir(fixed("/dev/shm")));
    ops.push(Op::Mount {
        fstype: "tmpfs",
        source: "shm",
        target: fixed("/dev/shm"),
        flags: NOSUID_NODEV_NOEXEC,
        data: Some(format!("mode=1777,size={}", shm_size.unwrap_or(64 << 20))),
    });
    ops.push(dir(fixed("/dev/mqueue")));
    ops.push(Op::Mount {
        fstype: "mqueue",
        source: "mqueue",
        target: fixed("/dev/mqueue"),
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    });
    ops.extend(links.iter().map(symlink));
}

/// The caller's volumes, bind mounts and tmpfs mounts, in their order.
fn user_mounts(l: &Layout, ops: &mut Vec<Op>) {
    for (i, m) in l.mounts.iter().enumerate() {
        match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => {
                let t = Target::in_root(target);
                match l.prepared.binds.get(i).and_then(|b| b.as_ref()) {
                    Some((fd, dir)) => {
                        ops.push(Op::MountPoint {
                            target: t.clone(),
                            dir: *dir,
                            optional: false,
                        });
                        ops.push(Op::Attach {
                            fd: fd.as_raw_fd(),
                            target: t,
                        });
                    }
                    // Not prepared (only in tests): bind the host path from inside.
                    None => {
                        ops.push(dir(t.clone()));
                        let ro = if *read_only { ATTR_RDONLY } else { 0 };
                        ops.push(Op::BindHost {
                            source: source.clone(),
                            target: t,
                            attrs: Attrs {
                                set: ATTR_NODEV | ro,
                                recursive: true,
                            },
                        });
                    }
                }
            }
            MountSpec::Tmpfs { target, options } => {
                let t = Target::in_root(target);
                ops.push(dir(t.clone()));
                ops.push(Op::Mount {
                    fstype: "tmpfs",
                    source: "tmpfs",
                    target: t,
                    flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    data: options.clone(),
                });
            }
        }
    }
}

/// Run the plan. A `MountPoint { optional: true }` that fails skips the op after it.
pub fn apply(ops: &[Op], k: &mut impl Kernel) -> Result<()> {
    let mut skip_next = false;
    for op in ops {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match op {
            Op::MakePrivate => k.make_private()?,
            Op::Scratch(at) => k.scratch(at)?,
            Op::WriteScratch { name, contents } => k.write_scratch(name, contents)?,
            Op::AttachRoot(fd) => k.attach_root(*fd)?,
            Op::MountPoint {
                target,
                dir,
                optional,
            } => match k.make_mount_point(target, *dir) {
                Err(_) if *optional => skip_next = true,
                r => r?,
            },
            Op::Mount {
                fstype,
                source,
                target,
                flags,
                data,
            } => k.mount(fstype, source, target, *flags, data.as_deref())?,
            Op::Sysfs(target) => {
                let ro = MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC;
                if k.mount("sysfs", "sysfs", target, ro, None).is_err() {
                    k.bind(
                        BindSource::Host(Path::new("/sys")),
                        target,
                        Attrs {
                            set: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
                            recursive: true,
                        },
                    )?;
                }
            }
            Op::BindHost {
                source,
                target,
                attrs,
            } => k.bind(BindSource::Host(source), target, *attrs)?,
            Op::BindScratch { name, target } => {
                k.bind(BindSource::Scratch(name), target, Attrs::default())?
            }
            Op::Attach { fd, target } => {
                k.bind(BindSource::Detached(*fd), target, Attrs::default())?
            }
            Op::DevAhead { sock, shm_size } => match k.receive_tree(*sock) {
                Some(tree) => k.bind(
                    BindSource::Detached(tree.as_raw_fd()),
                    &fixed("/dev"),
                    Attrs::default(),
                )?,
                // Not built after all: built here, as without a helper.
                None => {
                    let mut here = Vec::new();
                    dev(&mut here, *shm_size);
                    apply(&here, k)?;
                }
            },
            Op::Symlink { target, link } => k.symlink(target, link)?,
            Op::Mask(t) => match k.kind(t)? {
                Kind::Dir => k.mount(
                    "tmpfs",
                    "tmpfs",
                    t,
                    MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC,
                    Some("size=0"),
                )?,
                Kind::File => k.bind(
                    BindSource::Host(Path::new("/dev/null")),
                    t,
                    Attrs::default(),
                )?,
                Kind::Missing => {}
            },
            Op::ReadOnlyPath(t) => {
                if k.kind(t)? != Kind::Missing {
                    k.bind(
                        BindSource::Itself,
                        t,
                        Attrs {
                            set: ATTR_RDONLY,
                            recursive: true,
                        },
                    )?;
                }
            }
            Op::PivotRoot => k.pivot_root()?,
            Op::ReadOnlyRoot => k.read_only_root()?,
        }
    }
    Ok(())
}
