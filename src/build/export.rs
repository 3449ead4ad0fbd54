//! `-o/--output`: where a build's result goes, as BuildKit's exporters.
//!
//! - `type=image` (and `docker`, `registry`): the image in the store, tagged with `-t` (the
//!   default when no `-o` is given);
//! - `type=local,dest=DIR` (short form `-o DIR`): the final stage's filesystem as files;
//! - `type=tar,dest=FILE` (`-o -`: to stdout): the same as one tar stream.
//!
//! As with buildx, an explicit `-o` replaces the default: `-o type=local` alone stores no
//! image (its layers stay in the build cache), and `-t` names only the image outputs.
//!
//! Both file exports start from one tar of the final filesystem: the stage's unpacked layers
//! merged read-only ([`MergedMount`]) and packed by [`crate::layer::write_tar`] (owners, modes
//! and times as in the image). `type=tar` writes it as is. `type=local` runs it through
//! [`for_host`], which drops what must not reach the user's files — device nodes, set-id bits,
//! xattrs (file capabilities among them) and the image's owners — and then through the same
//! hardened extractor that unpacks registry layers ([`crate::layer::extract`]): every path is
//! resolved beneath DIR and no symlink, absolute or not, is ever followed while writing, so
//! hostile content cannot write outside DIR. The writes run with the caller's filesystem ids
//! ([`Caller`]): the files are the caller's, and the caller's own permissions apply.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::caller::Caller;
use super::fsview::MergedMount;
use crate::layer::{self, Compression, ExtractMode, Ownership, PackOptions};

/// One `-o` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// The image in the store; `names`: `name=` values (comma separated), tags besides `-t`;
    /// `push`: `type=registry` or `push=true`.
    Image { names: Vec<String>, push: bool },
    /// The filesystem as files in this directory (created when missing).
    Local(PathBuf),
    /// The filesystem as a tar stream.
    Tar(TarDest),
    /// The image's config and manifest stored, but neither tagged nor recorded in
    /// `index.json`: one platform of a multi-platform build, whose index records it
    /// ([`super::multi`]). Never parsed from `-o`.
    IndexMember,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarDest {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("export the filesystem: {0}")]
    Fs(#[from] super::fsview::FsError),
    #[error("export the filesystem: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("export the filesystem: pack: {0}")]
    Pack(#[from] layer::PackError),
    #[error("export the filesystem to {}: {source}", dest.display())]
    Extract {
        dest: PathBuf,
        source: layer::ExtractError,
    },
    #[error("export the filesystem: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "refusing to write a tar stream to a terminal: redirect stdout (`-o - > rootfs.tar`) \
         or give a file (`-o type=tar,dest=rootfs.tar`)"
    )]
    Terminal,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExportError + use<> {
    let path = path.to_path_buf();
    move |source| ExportError::Io { op, path, source }
}

/// Parse one `-o` value: `type=local,dest=DIR`, `type=tar,dest=FILE|-`, `type=image[,name=…]
/// [,push=true]`, `type=docker`, `type=registry`; a bare path is `type=local`, `-` is a tar
/// on stdout (buildx's short forms).
pub fn parse_output(s: &str) -> Result<Export, String> {
    if s == "-" {
        return Ok(Export::Tar(TarDest::Stdout));
    }
    if !s.contains('=') {
        if s.is_empty() {
            return Err("--output needs a value: type=local,dest=DIR, type=tar,dest=FILE".into());
        }
        return Ok(Export::Local(PathBuf::from(s)));
    }
    let mut kind = None;
    let mut dest = None;
    let mut names = vec![];
    let mut push = false;
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("invalid --output {s:?}: {part:?} is not KEY=VALUE"))?;
        match k {
            "type" => kind = Some(v.to_string()),
            "dest" => dest = Some(v.to_string()),
            "name" => names.extend(v.split(',').map(str::to_string)),
            "push" => push = v == "true",
            // Exporter options that change nothing here (the image is stored as built).
            "platform-split" | "compression" | "oci-mediatypes" | "unpack" | "store" => {}
            _ => return Err(format!("invalid --output {s:?}: unknown key {k:?}")),
        }
    }
    let need_dest = |what: &str| {
        dest.clone()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| format!("invalid --output {s:?}: type={what} needs dest="))
    };
    match kind.as_deref() {
        Some("local") => {
            let d = need_dest("local")?;
            if d == "-" {
                return Err(format!(
                    "invalid --output {s:?}: a directory cannot be stdout; use type=tar,dest=-"
                ));
            }
            Ok(Export::Local(PathBuf::from(d)))
        }
        Some("tar") => Ok(Export::Tar(match need_dest("tar")?.as_str() {
            "-" => TarDest::Stdout,
            d => TarDest::File(PathBuf::from(d)),
        })),
        Some("image" | "docker" | "registry") if dest.is_some() => Err(format!(
            "invalid --output {s:?}: writing an image archive is `box save -o FILE IMAGE` \
             after the build"
        )),
        Some("image" | "docker") => Ok(Export::Image { names, push }),
        Some("registry") => Ok(Export::Image { names, push: true }),
        Some(other) => Err(format!(
            "invalid --output {s:?}: unknown type {other:?} (local, tar, image, docker, \
             registry)"
        )),
        None => Err(format!("invalid --output {s:?}: type= is required")),
    }
}

/// Write the filesystem of `lowers` (a stage's unpacked layers, bottom first) to `dest`.
pub fn export_fs(
    merged: &MergedMount,
    exp: &Export,
    caller: &Caller,
    policy: &layer::ContentPolicy,
    sde: Option<i64>,
) -> Result<(), ExportError> {
    let pack = PackOptions {
        compression: Compression::None,
        source_date_epoch: sde,
        ..PackOptions::default()
    };
    match exp {
        Export::Image { .. } | Export::IndexMember => Ok(()),
        Export::Tar(TarDest::Stdout) => {
            let out = io::stdout();
            if nix::unistd::isatty(out.as_fd()).unwrap_or(false) {
                return Err(ExportError::Terminal);
            }
            let mut w = BufWriter::with_capacity(1 << 20, out.lock());
            layer::write_tar(merged.path(), &mut w, &pack)?;
            w.flush().map_err(io_err("write", Path::new("stdout")))
        }
        Export::Tar(TarDest::File(f)) => {
            let dir = f
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            let staged = caller
                .run(|| crate::atomic::Staged::new_in(dir, &format!(".{name}.tmp-"), 0o644))
                .map_err(io_err("create", f))?;
            let mut w = BufWriter::with_capacity(1 << 20, staged);
            layer::write_tar(merged.path(), &mut w, &pack)?;
            let staged = w
                .into_inner()
                .map_err(|e| io_err("write", f)(e.into_error()))?;
            caller
                .run(|| staged.commit(f, crate::atomic::Durability::Durable))
                .map_err(io_err("write", f))
        }
        Export::Local(d) => export_local(merged, d, caller, policy, &pack),
    }
}

/// `type=local`: pack on this thread, filter, and extract into `dest` on the caller's.
fn export_local(
    merged: &MergedMount,
    dest: &Path,
    caller: &Caller,
    policy: &layer::ContentPolicy,
    pack: &PackOptions,
) -> Result<(), ExportError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io_err("create a pipe for", dest)(e.into()))?;
    let opts = layer::ExtractOptions {
        mode: ExtractMode::Plain,
        ownership: Ownership::Ignore,
        max_bytes: policy.max_bytes,
        // One thread: the extraction's fsuid is this thread's alone.
        workers: Some(0),
        ..layer::ExtractOptions::default()
    };
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io_err("create a pipe for", dest)(e.into()))?;
    // pack → (pipe) → for_host → (pipe) → extraction on the caller's thread.
    std::thread::scope(|s| {
        let root = merged.path();
        let packer = s.spawn(move || {
            let mut w = BufWriter::new(File::from(tx));
            layer::write_tar(root, &mut w, pack)?;
            w.flush().map_err(|source| layer::PackError::Write {
                root: root.to_path_buf(),
                source,
            })
        });
        let filter = s.spawn(move || {
            let mut out = BufWriter::with_capacity(1 << 20, File::from(w));
            for_host(File::from(rx), &mut out).and_then(|()| out.flush())
        });
        let extracted = caller.run(|| {
            std::fs::create_dir_all(dest).map_err(io_err("create", dest))?;
            let dir = File::options()
                .read(true)
                .open(dest)
                .map_err(io_err("open", dest))?;
            layer::extract_at(File::from(r), Compression::None, dir.as_fd(), &opts).map_err(
                |source| ExportError::Extract {
                    dest: dest.to_path_buf(),
                    source,
                },
            )
        });
        let filtered = filter
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let packed = packer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        // The extractor's error says why a pipe broke, so it comes first, then the packer's.
        extracted?;
        packed?;
        filtered.map_err(io_err("filter the tar stream for", dest))
    })
}

/// `--metadata-file`: the keys buildx writes for a build. An image output gives
/// `containerimage.digest` (the manifest), `containerimage.config.digest` (the image ID),
/// `containerimage.descriptor` and, when tagged, `image.name` (normalised names, comma
/// separated); a build that stored no image (only `-o type=local|tar`) has none of them, as
/// BuildKit's local and tar exporters report nothing.
pub fn metadata(r: &super::BuildResult) -> String {
    let stored = r.stored.then_some((&r.manifest, Some(&r.image_id)));
    metadata_json(stored, &r.names)
}

/// The metadata file's JSON: for a stored image or index `desc` (with its config digest,
/// which an index has none of), the `containerimage.*` keys and `image.name`; else `{}`.
pub(super) fn metadata_json(
    stored: Option<(&crate::image::Descriptor, Option<&crate::digest::Digest>)>,
    names: &[String],
) -> String {
    let mut m = serde_json::Map::new();
    if let Some((d, config)) = stored {
        if let Some(c) = config {
            m.insert("containerimage.config.digest".into(), c.to_string().into());
        }
        m.insert(
            "containerimage.descriptor".into(),
            serde_json::json!({
                "mediaType": d.media_type,
                "digest": d.digest.to_string(),
                "size": d.size,
            }),
        );
        m.insert("containerimage.digest".into(), d.digest.to_string().into());
        if !names.is_empty() {
            m.insert("image.name".into(), names.join(",").into());
        }
    }
    let mut s = serde_json::to_string_pretty(&m).expect("metadata serialises");
    s.push('\n');
    s
}

/// Copy a tar stream, keeping what a user's directory may get from an image: directories,
/// files, symlinks and hard links, fifos, with their modes less the set-id bits and their
/// times. Device nodes, owners, xattrs and whiteout names are dropped. Names are checked
/// again by the extractor.
pub fn for_host(input: impl Read, out: impl Write) -> io::Result<()> {
    use tar::EntryType;
    let mut ar = tar::Archive::new(input);
    let mut b = tar::Builder::new(out);
    for e in ar.entries()? {
        let mut e = e?;
        let kind = e.header().entry_type();
        if !matches!(
            kind,
            EntryType::Directory
                | EntryType::Regular
                | EntryType::Continuous
                | EntryType::Symlink
                | EntryType::Link
                | EntryType::Fifo
        ) {
            continue;
        }
        let path = e.path()?.into_owned();
        // A one-layer stage is packed from its overlay-form directory, where a whiteout the
        // layer carried comes back as a `.wh.` name: a deletion marker, not a file (OCI
        // reserves the prefix).
        if path
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(b".wh."))
        {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(e.header().mode()? & 0o1777);
        h.set_mtime(e.header().mtime()?);
        h.set_uid(0);
        h.set_gid(0);
        match kind {
            EntryType::Symlink | EntryType::Link => {
                let target = e.link_name()?.unwrap_or_default().into_owned();
                h.set_size(0);
                b.append_link(&mut h, &path, &target)?;
            }
            EntryType::Regular | EntryType::Continuous => {
                h.set_size(e.size());
                b.append_data(&mut h, &path, &mut e)?;
            }
            _ => {
                h.set_size(0);
                b.append_data(&mut h, &path, io::empty())?;
            }
        }
    }
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse_like_buildx() {
        assert_eq!(
            parse_output("type=local,dest=out").unwrap(),
            Export::Local("out".into())
        );
        assert_eq!(parse_output("out").unwrap(), Export::Local("out".into()));
        assert_eq!(parse_output("-").unwrap(), Export::Tar(TarDest::Stdout));
        assert_eq!(
            parse_output("type=tar,dest=-").unwrap(),
            Export::Tar(TarDest::Stdout)
        );
        assert_eq!(
            parse_output("type=tar,dest=x.tar").unwrap(),
            Export::Tar(TarDest::File("x.tar".into()))
        );
        assert_eq!(
            parse_output("type=registry").unwrap(),
            Export::Image {
                names: vec![],
                push: true
            }
        );
        assert_eq!(
            parse_output("type=image,name=a:1").unwrap(),
            Export::Image {
                names: vec!["a:1".into()],
                push: false
            }
        );
        for bad in [
            "type=local",
            "dest=x",
            "type=local,dest=-",
            "type=zip,dest=x",
            "",
        ] {
            assert!(parse_output(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_host_filter_drops_devices_setid_bits_and_owners() {
        let mut src = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_size(2);
        src.append_data(&mut h, "bin/su", &b"hi"[..]).unwrap();
        let mut d = tar::Header::new_gnu();
        d.set_entry_type(tar::EntryType::Char);
        d.set_size(0);
        src.append_data(&mut d, "dev/null", io::empty()).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_mode(0o777);
        l.set_size(0);
        src.append_link(&mut l, "etc/abs", "/etc/passwd").unwrap();
        let mut w = tar::Header::new_gnu();
        w.set_entry_type(tar::EntryType::Regular);
        w.set_mode(0o644);
        w.set_size(0);
        src.append_data(&mut w, "etc/.wh.gone", io::empty())
            .unwrap();
        let tar = src.into_inner().unwrap();
        let mut out = vec![];
        for_host(&tar[..], &mut out).unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        let got: Vec<(String, u32, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("bin/su".to_string(), 0o755, 0),
                ("etc/abs".to_string(), 0o777, 0)
            ]
        );
    }
}
