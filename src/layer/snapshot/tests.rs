use std::fs;

use super::*;

fn upper_names(upper: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(upper)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn skip_covers_paths_and_what_is_below_them() {
    let s = Skip::new(&["proc", "/etc/hosts/"]);
    assert!(s.covers(b"proc") && s.covers(b"proc/1/status") && s.covers(b"etc/hosts"));
    assert!(!s.covers(b"procfs") && !s.covers(b"etc") && !s.covers(b"etc/hosts.allow"));
    assert!(s.above(b"etc") && s.above(b"") && !s.above(b"et") && !s.above(b"etc/hosts"));
}

/// The race guard alone: a snapshot taken (unsealed) right after a file was written records
/// exactly the file's current stat, yet the diff reports the file, because a change within the
/// same clock tick would not have moved its ctime. Sealed, the same tree reports nothing.
#[test]
fn a_racy_entry_counts_as_changed_and_sealing_removes_the_race() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("f"), "same size").unwrap();
    let entries = walk(&root, &Skip(Vec::new())).unwrap();
    let racy = Snapshot {
        entries: entries.clone(),
        taken: now_ns(),
        window: RACY_WINDOW_NS,
    };
    assert!(racy.racy(racy.get(Path::new("f")).unwrap()));
    let up = t.path().join("up1");
    fs::create_dir(&up).unwrap();
    diff(&root, &racy, &up, &[]).unwrap();
    assert_eq!(upper_names(&up), ["f"]);

    let sealed = seal(entries);
    assert!(!sealed.racy(sealed.get(Path::new("f")).unwrap()));
    let up = t.path().join("up2");
    fs::create_dir(&up).unwrap();
    let again = diff(&root, &sealed, &up, &[]).unwrap();
    assert!(upper_names(&up).is_empty());
    assert_eq!(again.len(), sealed.len());
}

#[test]
fn sealing_waits_out_the_window_after_the_newest_change() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("f"), "x").unwrap();
    let s = snapshot(t.path()).unwrap();
    let newest = s.entries.values().map(|e| ns(e.ctime)).max().unwrap();
    assert!(newest + s.window < s.taken, "sealed inside the racy window");
}

/// What `Stat::same_object` must tell apart: a directory removed and made again, even when
/// the filesystem hands out the old inode number again (ext4 and xfs do), has another birth
/// time.
#[test]
fn a_directory_made_again_is_another_object() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    fs::create_dir(&d).unwrap();
    let a = walk(t.path(), &Skip(Vec::new())).unwrap()[b"d".as_slice()];
    std::thread::sleep(std::time::Duration::from_millis(30));
    fs::remove_dir(&d).unwrap();
    fs::create_dir(&d).unwrap();
    let b = walk(t.path(), &Skip(Vec::new())).unwrap()[b"d".as_slice()];
    if a.btime.is_some() {
        assert!(!a.same_object(&b));
    }
}

#[test]
fn tree_order_puts_a_directory_before_its_content_and_its_content_before_siblings() {
    let mut v: Vec<&[u8]> = vec![b"a.d/x", b"a/x", b"a", b"a.d", b"a/x/y", b"", b"a-b"];
    v.sort_by(|a, b| super::diff::tree_order(a, b));
    let want: Vec<&[u8]> = vec![b"", b"a", b"a/x", b"a/x/y", b"a-b", b"a.d", b"a.d/x"];
    assert_eq!(v, want);
}
