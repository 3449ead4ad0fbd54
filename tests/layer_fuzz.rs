//! Extraction must never panic, whatever bytes it is fed.

use boxkit::layer::{self, Compression, ExtractOptions};
use proptest::prelude::*;

fn valid_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (i, name) in ["a/b", "c", "a/d/e"].iter().enumerate() {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(40 * i as u64);
        h.set_cksum();
        b.append_data(&mut h, name, &vec![b'q'; 40 * i][..])
            .unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "a/s", "../c").unwrap();
    b.into_inner().unwrap()
}

fn try_all(bytes: &[u8]) {
    let tmp = tempfile::tempdir().unwrap();
    for (i, c) in [Compression::None, Compression::Gzip, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let target = tmp.path().join(i.to_string());
        std::fs::create_dir(&target).unwrap();
        let _ = layer::extract(bytes, c, &target, &ExtractOptions::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        try_all(&bytes);
    }

    #[test]
    fn mutated_tar_never_panics(flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..12),
                                cut in 0usize..4096) {
        let mut t = valid_tar();
        for (pos, v) in flips {
            let n = t.len();
            t[pos % n] = v;
        }
        let n = t.len();
        t.truncate(cut.max(1).min(n));
        try_all(&t);
    }
}
