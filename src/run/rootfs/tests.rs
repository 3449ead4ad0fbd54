use super::*;
use std::os::fd::{AsRawFd, OwnedFd};

use super::detached::overlay_params;

/// Stand-ins for the supervisor's detached mounts (the plan only reads their numbers).
fn prepared(binds: usize) -> Prepared {
    let fd = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    Prepared {
        root: fd(),
        binds: (0..binds).map(|_| Some((fd(), true))).collect(),
        scratch: None,
        dev_from: None,
    }
}

fn layout<'a>(mounts: &'a [MountSpec], p: &'a Prepared, ro: bool) -> Layout<'a> {
    Layout {
        mounts,
        scratch: Path::new("/nonexistent-scratch"),
        read_only: ro,
        hostname: "h",
        hosts: "",
        resolv_conf: "",
        shm_size: None,
        prepared: p,
        new_proc: true,
    }
}

fn pos(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
    ops.iter().position(f).expect("op present")
}

fn target(op: &Op) -> Option<&Target> {
    match op {
        Op::MountPoint { target, .. }
        | Op::Mount { target, .. }
        | Op::Sysfs(target)
        | Op::BindHost { target, .. }
        | Op::BindScratch { target, .. }
        | Op::Attach { target, .. }
        | Op::Mask(target)
        | Op::ReadOnlyPath(target)
        | Op::Symlink { link: target, .. } => Some(target),
        _ => None,
    }
}

#[test]
fn overlay_gets_layers_topmost_first_and_always_userxattr() {
    let lowers: Vec<PathBuf> = vec!["/l/top".into(), "/l/bottom".into()];
    let p = overlay_params(&lowers, Path::new("/u"), Path::new("/w"));
    let keys: Vec<(&str, String)> = p
        .iter()
        .map(|(k, v)| {
            let v = v.as_ref().map(|v| v.to_string_lossy().into_owned());
            (*k, v.unwrap_or_default())
        })
        .collect();
    assert_eq!(keys[0], ("lowerdir+", "/l/top".into()));
    assert_eq!(keys[1], ("lowerdir+", "/l/bottom".into()));
    assert!(keys.contains(&("userxattr", String::new())));
    assert!(keys.contains(&("redirect_dir", "nofollow".into())));
}

#[test]
fn order_private_scratch_root_first_pivot_last_masks_after_proc() {
    let p = prepared(0);
    let ops = plan(&layout(&[], &p, true));
    assert_eq!(ops[0], Op::MakePrivate);
    assert_eq!(ops[1], Op::Scratch("/nonexistent-scratch".into()));
    // Nothing is resolved before the root is attached: every target is inside it.
    let attach = pos(&ops, |o| matches!(o, Op::AttachRoot(_)));
    assert!(ops[..attach].iter().all(|o| target(o).is_none()));
    let pivot = pos(&ops, |o| matches!(o, Op::PivotRoot));
    assert_eq!(pivot, ops.len() - 2);
    assert_eq!(ops.last(), Some(&Op::ReadOnlyRoot));
    let proc_ = pos(&ops, |o| matches!(o, Op::Mount { fstype: "proc", .. }));
    let mask = pos(&ops, |o| matches!(o, Op::Mask(_)));
    let devpts = pos(&ops, |o| {
        matches!(
            o,
            Op::Mount {
                fstype: "devpts",
                ..
            }
        )
    });
    let dev = pos(
        &ops,
        |o| matches!(o, Op::Mount { target, .. } if target.path == Path::new("/dev")),
    );
    assert!(attach < proc_ && proc_ < mask && dev < devpts && mask < pivot);
    assert_eq!(
        ops.iter().filter(|o| matches!(o, Op::Mask(_))).count(),
        MASKED.len() + thermal_throttle_paths().len()
    );
    assert!(ops.contains(&Op::Mask(Target::in_root("/proc/interrupts"))));
}

#[test]
fn a_dev_tree_made_ahead_is_received_and_attached_at_dev_or_else_dev_is_built_here() {
    let mut p = prepared(0);
    p.dev_from = Some(42);
    let ops = plan(&layout(&[], &p, false));
    let dev = Target::fixed("/dev");
    let ahead = pos(&ops, |o| matches!(o, Op::DevAhead { sock: 42, .. }));
    // Its mount point is made (inside the root) first, as for the tmpfs it replaces.
    assert_eq!(
        ops[ahead - 1],
        Op::MountPoint {
            target: dev.clone(),
            dir: true,
            optional: false
        }
    );
    let below_dev = |t: &Target| t.path.starts_with("/dev") && t.path != Path::new("/dev");
    assert!(!ops.iter().any(|o| target(o).is_some_and(below_dev)));
    // The masks still go on top of /proc and /sys afterwards.
    assert!(ahead < pos(&ops, |o| matches!(o, Op::Mask(_))));

    // Received: attached at /dev, nothing built there.
    let tree = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let fd = tree.as_raw_fd();
    let mut k = Rec(Vec::new(), Some(tree));
    apply(&ops, &mut k).unwrap();
    let attached = format!("bind Detached({fd}) /dev {:?}", Attrs::default());
    assert!(k.0.contains(&attached), "{:?}", k.0);
    assert!(!k.0.iter().any(|l| l.contains("devpts")), "{:?}", k.0);

    // None came (the helper failed or is gone): /dev is built as without a helper.
    let mut k = Rec::default();
    apply(&ops, &mut k).unwrap();
    assert!(k.0.contains(&"receive 42".to_string()));
    assert!(
        k.0.contains(&"mount devpts /dev/pts".to_string()),
        "{:?}",
        k.0
    );
    assert!(
        k.0.contains(&"mount mqueue /dev/mqueue".to_string()),
        "{:?}",
        k.0
    );
}

#[test]
fn kernel_filesystems_refuse_symlinks_and_user_targets_follow_them_inside_the_root() {
    let mounts = [
        MountSpec::Bind {
            source: "/host".into(),
            target: "/data".into(),
            read_only: false,
        },
        MountSpec::Tmpfs {
            target: "/scratch".into(),
            options: None,
        },
    ];
    let p = prepared(1);
    let ops = plan(&layout(&mounts, &p, false));
    for o in &ops {
        let Some(t) = target(o) else { continue };
        let runtime_owned = ["/proc", "/sys", "/dev"]
            .iter()
            .any(|r| t.path == Path::new(r) || t.path.parent() == Some(Path::new(r)))
            && !matches!(o, Op::Mask(_) | Op::ReadOnlyPath(_));
        let want = if runtime_owned {
            Resolve::NoSymlinks
        } else {
            Resolve::InRoot
        };
        assert_eq!(t.resolve, want, "{o:?}");
    }
    assert!(ops.contains(&Op::Attach {
        fd: p.binds[0].as_ref().unwrap().0.as_raw_fd(),
        target: Target::in_root("/data"),
    }));
}

#[test]
fn every_filesystem_but_devpts_is_nodev_and_only_device_binds_allow_devices() {
    let mounts = [MountSpec::Tmpfs {
        target: "/scratch".into(),
        options: None,
    }];
    let p = prepared(0);
    let ops = plan(&layout(&mounts, &p, false));
    for o in &ops {
        if let Op::Mount { fstype, flags, .. } = o {
            assert_eq!(
                flags.contains(MsFlags::MS_NODEV),
                *fstype != "devpts",
                "{o:?}"
            );
        }
        if let Op::BindHost { source, .. } = o {
            assert!(source.starts_with("/dev/"), "{o:?}");
        }
    }
    assert!(ops.contains(&Op::Mount {
        fstype: "mqueue",
        source: "mqueue",
        target: Target::fixed("/dev/mqueue"),
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    }));
}

/// Records calls; sysfs fails (as with host networking in a user namespace) and mount
/// points under /etc cannot be made. A tree to receive is given back once.
#[derive(Default)]
struct Rec(Vec<String>, Option<OwnedFd>);
impl Kernel for Rec {
    fn make_private(&mut self) -> Result<()> {
        Ok(())
    }
    fn scratch(&mut self, _: &Path) -> Result<()> {
        Ok(())
    }
    fn write_scratch(&mut self, _: &str, _: &str) -> Result<()> {
        Ok(())
    }
    fn attach_root(&mut self, fd: RawFd) -> Result<()> {
        self.0.push(format!("root {fd}"));
        Ok(())
    }
    fn kind(&mut self, t: &Target) -> Result<Kind> {
        Ok(if t.path.starts_with("/proc") {
            Kind::File
        } else {
            Kind::Missing
        })
    }
    fn make_mount_point(&mut self, t: &Target, _: bool) -> Result<()> {
        if t.path.starts_with("/etc") {
            return Err(RootfsError::Resolve {
                op: "create mount point",
                path: t.shown(),
                cause: nix::Error::EACCES,
            });
        }
        Ok(())
    }
    fn mount(&mut self, f: &str, _: &str, t: &Target, _: MsFlags, _: Option<&str>) -> Result<()> {
        if f == "sysfs" {
            return Err(RootfsError::Mount {
                src: "sysfs".into(),
                target: t.shown(),
                fstype: "sysfs".into(),
                flags: MsFlags::empty(),
                data: None,
                cause: nix::Error::EPERM,
            });
        }
        self.0.push(format!("mount {f} {}", t.shown()));
        Ok(())
    }
    fn bind(&mut self, s: BindSource<'_>, t: &Target, a: Attrs) -> Result<()> {
        self.0.push(format!("bind {s:?} {} {a:?}", t.shown()));
        Ok(())
    }
    fn symlink(&mut self, _: &str, _: &Target) -> Result<()> {
        Ok(())
    }
    fn receive_tree(&mut self, sock: RawFd) -> Option<OwnedFd> {
        self.0.push(format!("receive {sock}"));
        self.1.take()
    }
    fn pivot_root(&mut self) -> Result<()> {
        self.0.push("pivot".into());
        Ok(())
    }
    fn read_only_root(&mut self) -> Result<()> {
        Ok(())
    }
}

#[test]
fn sysfs_falls_back_to_a_read_only_bind_and_optional_targets_are_skipped() {
    let p = prepared(0);
    let ops = plan(&layout(&[], &p, false));
    let mut k = Rec::default();
    apply(&ops, &mut k).unwrap();
    let sys = format!(
        "bind Host(\"/sys\") /sys {:?}",
        Attrs {
            set: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
            recursive: true
        }
    );
    assert!(k.0.contains(&sys), "{:?}", k.0);
    assert!(
        !k.0.iter().any(|l| l.contains("/etc/")),
        "binds skipped when their mount point cannot be made: {:?}",
        k.0
    );
    // Masks: Rec says every /proc path is a file, so /dev/null goes over each.
    assert!(
        k.0.iter()
            .any(|l| l.starts_with("bind Host(\"/dev/null\") /proc/interrupts"))
    );
    assert_eq!(k.0.last().map(String::as_str), Some("pivot"));
}

#[test]
fn secure_join_keeps_symlinks_inside_the_root() {
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/../../real", d.path().join("etc")).unwrap();
    assert_eq!(
        secure_join(d.path(), Path::new("/etc/hosts")),
        d.path().join("real/hosts")
    );
    std::os::unix::fs::symlink("../x", d.path().join("up")).unwrap();
    assert_eq!(
        secure_join(d.path(), Path::new("/up/y")),
        d.path().join("x/y")
    );
}

#[test]
fn without_a_new_proc_the_jobs_proc_is_bound_read_only_and_recursively() {
    let p = prepared(0);
    let mut l = layout(&[], &p, false);
    l.new_proc = false;
    let ops = plan(&l);
    assert!(
        !ops.iter()
            .any(|o| matches!(o, Op::Mount { fstype: "proc", .. }))
    );
    let bind = &ops[pos(
        &ops,
        |o| matches!(o, Op::BindHost { target, .. } if target.path == Path::new("/proc")),
    )];
    let Op::BindHost { source, attrs, .. } = bind else {
        unreachable!()
    };
    assert_eq!(source, Path::new("/proc"));
    assert!(attrs.recursive && attrs.set & ATTR_RDONLY != 0, "{attrs:?}");
    // The masks still go over it.
    assert!(pos(&ops, |o| matches!(o, Op::Mask(_))) > pos(&ops, |o| std::ptr::eq(o, bind)));
}
