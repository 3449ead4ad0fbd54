//! The fix a user without a subordinate id range is told to run: a `usermod` line naming a
//! range no one in /etc/subuid or /etc/subgid has yet, so pasting it never makes two users
//! share container ids (which would let one user's containers own the other's files).

/// Candidate ranges start where `useradd` starts them (SUB_UID_MIN 100000) and step by their
/// size (SUB_UID_COUNT 65536), as `useradd` allocates: a suggestion then never straddles a
/// range `useradd` hands out later.
const FIRST: u64 = 100_000;
const COUNT: u64 = 65_536;

/// The ranges (start, count) of every line of a subuid/subgid file; malformed lines are
/// skipped (the file's owner tools reject them anyway).
fn ranges(text: &str) -> impl Iterator<Item = (u64, u64)> + '_ {
    text.lines().filter_map(|l| {
        let mut f = l.trim().split(':');
        let (_name, start, count) = (f.next()?, f.next()?, f.next()?);
        Some((start.parse().ok()?, count.parse().ok()?))
    })
}

/// The first candidate range that overlaps no range of either file: (first id, last id).
pub fn free_range(subuid: &str, subgid: &str) -> (u64, u64) {
    let taken: Vec<(u64, u64)> = ranges(subuid).chain(ranges(subgid)).collect();
    let mut start = FIRST;
    while let Some(&(s, c)) = taken
        .iter()
        .find(|(s, c)| start < s + c && *s < start + COUNT)
    {
        // Skip to the first candidate past the range in the way.
        start = FIRST + (s + c - FIRST).div_ceil(COUNT) * COUNT;
    }
    (start, start + COUNT - 1)
}

/// `sudo usermod --add-subuids A-B --add-subgids A-B USER`, with a free range read from this
/// host's files.
pub fn usermod_fix(user: &str) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (a, b) = free_range(&read("/etc/subuid"), &read("/etc/subgid"));
    format!("sudo usermod --add-subuids {a}-{b} --add-subgids {a}-{b} {user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_range_is_suggested_when_no_one_has_one() {
        assert_eq!(free_range("", ""), (100_000, 165_535));
    }

    #[test]
    fn a_taken_range_is_skipped_in_either_file() {
        let uid = "alice:100000:65536\n";
        assert_eq!(free_range(uid, ""), (165_536, 231_071));
        assert_eq!(free_range("", uid), (165_536, 231_071));
        // A range overlapping only the end of a candidate still rules it out.
        assert_eq!(free_range("bob:150000:10\n", ""), (165_536, 231_071));
        // Two neighbours and one far away: the gap after them is used.
        let both = "a:100000:65536\nb:165536:65536\nroot:2000000:65536\n";
        assert_eq!(free_range(both, both), (231_072, 296_607));
    }

    #[test]
    fn a_range_off_the_grid_pushes_to_the_next_candidate_past_it() {
        // 90000..=300000 covers the candidates at 100000, 165536, 231072 and 296608.
        assert_eq!(free_range("x:90000:210001\n", ""), (362_144, 427_679));
        // Garbage and comments are ignored.
        assert_eq!(free_range("# c\nbad line\ny:1:2\n", ""), (100_000, 165_535));
    }
}
