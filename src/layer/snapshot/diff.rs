//! The diff: a tree now against its snapshot before a step, written as overlayfs's upper dir.
//!
//! overlayfs (as boxkit mounts it: `userxattr`, no redirects, no metacopy, `index=off`)
//! leaves in its upper dir: every object the step created or touched, copied whole with its
//! metadata; the parent directories of each, copied up with their current attributes; a 0/0
//! character device for each deleted path that existed below (only the topmost one of a
//! deleted subtree); and `user.overlay.opaque=y` on a directory made where a lower path had
//! been deleted (`rm -rf d && mkdir d`), holding all its content. This module derives the same
//! from two stat walks:
//! - *new* (path not in the snapshot) or *replaced* (another object: inode, birth time or type
//!   differ): copied; a replaced directory is opaque; everything below either is copied too;
//! - *changed* (same object, other stat, or racy): copied;
//! - *deleted* (in the snapshot, gone now) below a directory that is still the same object:
//!   a whiteout;
//! - the ancestors of all of these: copied, attributes only.
//!
//! A directory above a skipped path (a mount-point stub such as `etc/hosts`) that changed only
//! in its times and holds nothing else to report is left out, as `remove_stubs` does for
//! overlay. Hardlinks the step made are kept in the upper dir, then broken in the tree (each
//! name but the first gets its own copy): that is what the next step would see through overlay,
//! where a layer's hardlinks break on copy-up.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;

use super::fsops::{self, Ctx, R, Stat};
use super::{Skip, Snapshot, SnapshotError, io_err, seal, walk};
use crate::layer::whiteout::{self, OverlayXattr};

/// What a path is, compared with the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Same,
    Changed,
    New,
    Replaced,
}

struct Node<'a> {
    rel: &'a [u8],
    st: Stat,
    status: Status,
    parent: usize,
    /// A directory whose whole content goes to the upper dir (new, replaced, or inside one).
    fresh: bool,
    /// Written because of itself.
    own: bool,
    /// Written because something below it is.
    below: bool,
}

/// One entry of the upper dir to write.
enum Item<'a> {
    Copy {
        rel: &'a [u8],
        st: Stat,
        opaque: bool,
    },
    Whiteout(&'a [u8]),
}

impl Item<'_> {
    fn rel(&self) -> &[u8] {
        match self {
            Item::Copy { rel, .. } | Item::Whiteout(rel) => rel,
        }
    }
}

/// Compare the tree at `root` with `before` and write the difference into `upper` (an empty
/// directory) in overlay form. Paths in `skip` (relative: `proc`, `etc/hosts`…) and below are
/// neither walked nor reported. Returns the snapshot of `root` after, for the next step.
pub fn diff(
    root: &Path,
    before: &Snapshot,
    upper: &Path,
    skip: &[&str],
) -> Result<Snapshot, SnapshotError> {
    let skip = Skip::new(skip);
    let mut after = walk(root, &skip)?;
    {
        let mut keys: Vec<&Vec<u8>> = after.keys().collect();
        keys.sort_unstable_by(|a, b| tree_order(a, b));
        let nodes = classify(&keys, &after, before, &skip);
        let items = plan(nodes, &keys, &after, before, &skip);
        write_upper(root, upper, &items)?;
    }
    break_links(root, &mut after)?;
    Ok(seal(after))
}

/// Depth-first order: a directory, then everything below it, then its next sibling. Plain
/// byte order is not that (`a.d` sorts between `a` and `a/x`), so `/` compares lowest.
pub(super) fn tree_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

fn is_under(parent: &[u8], p: &[u8]) -> bool {
    parent.is_empty()
        || (p.len() > parent.len() && p.starts_with(parent) && p[parent.len()] == b'/')
}

/// Status and own-inclusion of every walked path, in [`tree_order`].
fn classify<'a>(
    keys: &[&'a Vec<u8>],
    after: &HashMap<Vec<u8>, Stat>,
    before: &Snapshot,
    skip: &Skip,
) -> Vec<Node<'a>> {
    let mut nodes: Vec<Node> = Vec::with_capacity(keys.len());
    let mut stack: Vec<usize> = Vec::new();
    for (i, rel) in keys.iter().enumerate() {
        let st = after[*rel];
        while let Some(&top) = stack.last() {
            if is_under(nodes[top].rel, rel) {
                break;
            }
            stack.pop();
        }
        let parent = stack.last().copied().unwrap_or(usize::MAX);
        let inside = parent != usize::MAX && nodes[parent].fresh;
        let status = match before.entries.get(*rel) {
            None => Status::New,
            Some(b) if !b.same_object(&st) => Status::Replaced,
            Some(b) if !b.unchanged(&st) || before.racy(b) => Status::Changed,
            Some(_) => Status::Same,
        };
        let own = !rel.is_empty()
            && match status {
                _ if inside => true,
                Status::Same => false,
                Status::New | Status::Replaced => true,
                // Only times changed, by a stub made below it: overlay's remove_stubs drops it.
                Status::Changed => {
                    let b = before.entries[*rel];
                    !(st.is_dir()
                        && skip.above(rel)
                        && (b.mode, b.uid, b.gid) == (st.mode, st.uid, st.gid))
                }
            };
        let fresh = !rel.is_empty()
            && st.is_dir()
            && (inside || matches!(status, Status::New | Status::Replaced));
        nodes.push(Node {
            rel,
            st,
            status,
            parent,
            fresh,
            own,
            below: false,
        });
        if st.is_dir() {
            stack.push(i);
        }
    }
    nodes
}

fn mark_up(nodes: &mut [Node], mut j: usize) {
    // Index 0 is the root, which has no entry of its own in the upper dir.
    while j != usize::MAX && j != 0 && !nodes[j].below {
        nodes[j].below = true;
        j = nodes[j].parent;
    }
}

/// The upper dir's entries in [`tree_order`] (parents before children).
fn plan<'a>(
    mut nodes: Vec<Node<'a>>,
    keys: &[&'a Vec<u8>],
    after: &HashMap<Vec<u8>, Stat>,
    before: &'a Snapshot,
    skip: &Skip,
) -> Vec<Item<'a>> {
    for i in 0..nodes.len() {
        if nodes[i].own {
            let p = nodes[i].parent;
            mark_up(&mut nodes, p);
        }
    }
    let mut items = Vec::new();
    for (rel, _) in before.entries.iter() {
        if rel.is_empty() || after.contains_key(rel) || skip.covers(rel) {
            continue;
        }
        let prel = match rel.iter().rposition(|&b| b == b'/') {
            Some(k) => &rel[..k],
            None => &rel[..0],
        };
        let Ok(p) = keys.binary_search_by(|k| tree_order(k, prel)) else {
            continue; // the parent went too: its own whiteout covers this
        };
        let pn = &nodes[p];
        if pn.st.is_dir() && !pn.fresh && matches!(pn.status, Status::Same | Status::Changed) {
            items.push(Item::Whiteout(rel));
            mark_up(&mut nodes, p);
        }
    }
    for n in &nodes {
        if n.own || n.below {
            items.push(Item::Copy {
                rel: n.rel,
                st: n.st,
                opaque: n.st.is_dir() && n.status == Status::Replaced && !n.fresh_by_parent(&nodes),
            });
        }
    }
    items.sort_unstable_by(|a, b| tree_order(a.rel(), b.rel()));
    items
}

impl Node<'_> {
    /// Inside a new or replaced directory: then it holds no lower content to hide.
    fn fresh_by_parent(&self, nodes: &[Node]) -> bool {
        self.parent != usize::MAX && nodes[self.parent].fresh
    }
}

fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(k) => (&rel[..k], &rel[k + 1..]),
        None => (&rel[..0], rel),
    }
}

/// Open the directory `rel` below `base`, one component at a time, following no symlink.
fn open_rel(base: BorrowedFd<'_>, rel: &[u8]) -> R<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd = openat(base, c".", flags, Mode::empty()).op("open directory")?;
    if rel.is_empty() {
        return Ok(fd);
    }
    for c in rel.split(|&b| b == b'/') {
        fd = openat(&fd, fsops::cstr(c).as_c_str(), flags, Mode::empty()).op("open directory")?;
    }
    Ok(fd)
}

struct Dirs<'a> {
    root: BorrowedFd<'a>,
    upper: BorrowedFd<'a>,
    /// The parent both entries were last opened for: (rel, in root, in upper).
    cur: Option<(Vec<u8>, OwnedFd, OwnedFd)>,
}

impl Dirs<'_> {
    fn parent(&mut self, prel: &[u8]) -> R<(BorrowedFd<'_>, BorrowedFd<'_>)> {
        if self.cur.as_ref().is_none_or(|(r, _, _)| r != prel) {
            let s = open_rel(self.root, prel)?;
            let u = open_rel(self.upper, prel)?;
            self.cur = Some((prel.to_vec(), s, u));
        }
        let (_, s, u) = self.cur.as_ref().expect("just set");
        Ok((s.as_fd(), u.as_fd()))
    }
}

fn open_root(p: &Path) -> Result<OwnedFd, SnapshotError> {
    openat(
        nix::fcntl::AT_FDCWD,
        p,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .op("open directory")
    .map_err(|e| io_err(e, p.to_path_buf()))
}

fn write_upper(root: &Path, upper: &Path, items: &[Item]) -> Result<(), SnapshotError> {
    let rfd = open_root(root)?;
    let ufd = open_root(upper)?;
    let mut dirs = Dirs {
        root: rfd.as_fd(),
        upper: ufd.as_fd(),
        cur: None,
    };
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut made_dirs = Vec::new();
    let at = |rel: &[u8]| upper.join(fsops::os(rel));
    for item in items {
        let rel = item.rel();
        let (prel, name) = split(rel);
        let name = fsops::cstr(name);
        let (src, dst) = dirs.parent(prel).map_err(|e| io_err(e, at(prel)))?;
        let r = match item {
            Item::Whiteout(_) => whiteout::make_overlay_whiteout(dst, &name).op("create whiteout"),
            Item::Copy { st, opaque, .. } if st.is_dir() => {
                made_dirs.push((rel, *st, *opaque));
                nix::sys::stat::mkdirat(dst, name.as_c_str(), Mode::from_bits_truncate(0o700))
                    .op("create directory")
            }
            Item::Copy { st, .. } if st.is_file() && st.nlink > 1 => {
                match links.get(&(st.dev, st.ino)) {
                    Some(first) => nix::unistd::linkat(
                        ufd.as_fd(),
                        fsops::cstr(first).as_c_str(),
                        dst,
                        name.as_c_str(),
                        AtFlags::empty(),
                    )
                    .op("hardlink"),
                    None => {
                        links.insert((st.dev, st.ino), rel.to_vec());
                        fsops::copy_entry(src, &name, st, dst, &name)
                    }
                }
            }
            Item::Copy { st, .. } => fsops::copy_entry(src, &name, st, dst, &name),
        };
        r.map_err(|e| io_err(e, at(rel)))?;
    }
    drop(dirs);
    // Directory attributes last, children first: writing into a directory changes its times.
    for (rel, st, opaque) in made_dirs.into_iter().rev() {
        let meta = || -> R<()> {
            let s = open_rel(rfd.as_fd(), rel)?;
            let d = open_rel(ufd.as_fd(), rel)?;
            if opaque {
                whiteout::set_overlay_opaque(d.as_fd(), OverlayXattr::User).op("mark opaque")?;
            }
            fsops::copy_dir_meta(s.as_fd(), d.as_fd(), &st, false)
        };
        meta().map_err(|e| io_err(e, at(rel)))?;
    }
    Ok(())
}

/// Give every name of a multiply-linked regular file but the first its own copy, keeping the
/// parent's times, and record the new stats in `after`.
fn break_links(root: &Path, after: &mut HashMap<Vec<u8>, Stat>) -> Result<(), SnapshotError> {
    let mut groups: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    for (rel, st) in after.iter() {
        if st.is_file() && st.nlink > 1 {
            groups
                .entry((st.dev, st.ino))
                .or_default()
                .push(rel.clone());
        }
    }
    let groups: Vec<Vec<Vec<u8>>> = groups.into_values().filter(|g| g.len() > 1).collect();
    if groups.is_empty() {
        return Ok(());
    }
    let rfd = open_root(root)?;
    for mut g in groups {
        g.sort();
        for rel in &g[1..] {
            let at = root.join(fsops::os(rel));
            unlink_copy(rfd.as_fd(), rel, after).map_err(|e| io_err(e, at))?;
        }
        // The first name keeps the inode, whose link count (and so ctime) just changed.
        let first = &g[0];
        let (prel, name) = split(first);
        let restat = || -> R<Stat> {
            let dir = open_rel(rfd.as_fd(), prel)?;
            fsops::statx_at(dir.as_fd(), &fsops::cstr(name)).op("lstat")
        };
        let st = restat().map_err(|e| io_err(e, root.join(fsops::os(first))))?;
        after.insert(first.clone(), st);
    }
    Ok(())
}

fn unlink_copy(root: BorrowedFd<'_>, rel: &[u8], after: &mut HashMap<Vec<u8>, Stat>) -> R<()> {
    let (prel, name) = split(rel);
    let dir = open_rel(root, prel)?;
    let name = fsops::cstr(name);
    let st = after[rel];
    let tmp = CString::new(format!(".boxkit-unlink-{}", st.ino)).expect("no NUL");
    fsops::copy_entry(dir.as_fd(), &name, &st, dir.as_fd(), &tmp)?;
    nix::fcntl::renameat(dir.as_fd(), tmp.as_c_str(), dir.as_fd(), name.as_c_str()).op("rename")?;
    let pst = after[prel];
    let t = |(s, n): (i64, u32)| TimeSpec::new(s, n as i64);
    nix::sys::stat::futimens(&dir, &t(pst.atime), &t(pst.mtime)).op("set times of")?;
    after.insert(
        rel.to_vec(),
        fsops::statx_at(dir.as_fd(), &name).op("lstat")?,
    );
    after.insert(
        prel.to_vec(),
        fsops::statx_at(dir.as_fd(), c".").op("lstat")?,
    );
    Ok(())
}
